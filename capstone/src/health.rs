//! Health checks (`HEALTHCHECK`, `--health-cmd`): the container's monitor
//! runs a test command inside the container from time to time, as `berth
//! exec` would, and keeps the result in the container's state: `starting`
//! until the first answer, `healthy` after a test that exits 0, `unhealthy`
//! after `retries` failures in a row. A failure during the start period
//! does not count, so a slow service is not unhealthy while it starts.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::state::Store;

/// How a container is checked: Docker's `Healthcheck` with its defaults
/// filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// `["CMD", program, args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
}

/// Docker's defaults for what a HEALTHCHECK leaves out.
const INTERVAL: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(30);
const RETRIES: u32 = 3;
/// How many results `inspect` shows, the newest last.
const KEPT: usize = 5;
/// How much of a test's output is kept.
const OUTPUT: usize = 4096;

/// The `--health-*` flags of `run` and `create`.
#[derive(Debug, Default, Clone)]
pub struct HealthFlags {
    pub cmd: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub retries: Option<u32>,
    pub none: bool,
}

/// A `--health-*` duration; zero means "as the image says, or Docker's
/// default", as in Docker.
fn duration(flag: &str, text: &str) -> Result<Option<Duration>> {
    match humantime::parse_duration(text) {
        Ok(Duration::ZERO) => Ok(None),
        Ok(d) if d >= Duration::from_millis(1) => Ok(Some(d)),
        Ok(_) => bail!("{flag} {text:?} is too short: give at least 1ms"),
        Err(e) => {
            bail!("invalid {flag} {text:?} ({e}): write a duration such as 30s, 1m30s or 500ms")
        }
    }
}

/// The check a container gets: the image's `Healthcheck` (Docker's JSON),
/// changed by the flags. `None` when there is none, or it is switched off
/// (`HEALTHCHECK NONE`, `--no-healthcheck`).
pub fn resolve(
    image: Option<&serde_json::Value>,
    flags: &HealthFlags,
) -> Result<Option<HealthConfig>> {
    let changed = flags.cmd.is_some()
        || flags.interval.is_some()
        || flags.timeout.is_some()
        || flags.start_period.is_some()
        || flags.retries.is_some();
    if flags.none {
        if changed {
            bail!("--no-healthcheck conflicts with the --health-* options");
        }
        return Ok(None);
    }
    let nanos = |key: &str| {
        image
            .and_then(|h| h.get(key))
            .and_then(serde_json::Value::as_u64)
            .filter(|&n| n > 0)
            .map(Duration::from_nanos)
    };
    let mut test: Vec<String> = image
        .and_then(|h| h.get("Test"))
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .unwrap_or_default();
    if let Some(cmd) = &flags.cmd {
        test = vec!["CMD-SHELL".into(), cmd.clone()];
    }
    match test.first().map(String::as_str) {
        None | Some("NONE") if !changed => return Ok(None),
        None | Some("NONE") => bail!(
            "--health-interval, --health-timeout, --health-start-period and --health-retries need a test: give --health-cmd"
        ),
        Some("CMD") if test.len() > 1 => {}
        Some("CMD-SHELL") if test.len() == 2 => {}
        Some(other) => bail!(
            "the image's health check has a test berth does not know ({other:?}, {} words)",
            test.len()
        ),
    }
    let pick = |flag: &str, given: &Option<String>, image: Option<Duration>, default: Duration| {
        let given = given.as_deref().map(|t| duration(flag, t)).transpose()?;
        Ok::<_, anyhow::Error>(given.flatten().or(image).unwrap_or(default))
    };
    Ok(Some(HealthConfig {
        test,
        interval: pick(
            "--health-interval",
            &flags.interval,
            nanos("Interval"),
            INTERVAL,
        )?,
        timeout: pick(
            "--health-timeout",
            &flags.timeout,
            nanos("Timeout"),
            TIMEOUT,
        )?,
        start_period: pick(
            "--health-start-period",
            &flags.start_period,
            nanos("StartPeriod"),
            Duration::ZERO,
        )?,
        retries: flags
            .retries
            .filter(|&n| n > 0)
            .or_else(|| {
                image
                    .and_then(|h| h.get("Retries"))
                    .and_then(serde_json::Value::as_u64)
                    .filter(|&n| n > 0)
                    .map(|n| n as u32)
            })
            .unwrap_or(RETRIES),
    }))
}

/// What the checks have found so far (`State.Health` in `inspect`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failures in a row.
    pub failing_streak: u32,
    /// The last few results, the newest last.
    pub log: Vec<Probe>,
}

/// One run of the test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub start: SystemTime,
    pub end: SystemTime,
    /// The test's exit code; -1 when it could not run or ran out of time.
    pub exit_code: i32,
    pub output: String,
}

impl Health {
    pub fn starting() -> Health {
        Health {
            status: "starting".into(),
            ..Health::default()
        }
    }

    /// Takes in one result: a pass makes the container healthy; a failure
    /// counts towards `retries` unless it came in the start period while
    /// the container had not yet been healthy.
    pub fn record(&mut self, probe: Probe, retries: u32, in_start_period: bool) {
        if probe.exit_code == 0 {
            self.status = "healthy".into();
            self.failing_streak = 0;
        } else if !(in_start_period && self.status == "starting") {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(probe);
        if self.log.len() > KEPT {
            self.log.remove(0);
        }
    }
}

/// Checks the container `id`, whose first process is `init` (a host pid),
/// until `stop` is set (the monitor sets it when the container exits, and
/// then waits for this thread). Runs on a thread of the monitor. A paused
/// container is not checked, as in Docker.
pub fn watch(store: Store, id: String, init: i32, config: HealthConfig, stop: Arc<AtomicBool>) {
    let started = Instant::now();
    loop {
        let next = Instant::now() + config.interval;
        while Instant::now() < next {
            reap_orphans(init);
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20).min(config.interval));
        }
        match store.load(&id) {
            Ok(c) if c.state.status == crate::state::Status::Running => {}
            _ => continue, // paused, or being removed: wait for the monitor
        }
        // A failure counts unless it comes while the container is still
        // `starting` and within the start period, measured to the probe's
        // start.
        let in_start_period = started.elapsed() < config.start_period;
        let probe = run_test(&store, &id, &config, &stop);
        reap_orphans(init);
        if stop.load(Ordering::Relaxed) {
            return;
        }
        tracing::debug!(container = id, code = probe.exit_code, "health check");
        let _ = store.update(&id, |c| {
            let health = c.state.health.get_or_insert_with(Health::starting);
            health.record(probe.clone(), config.retries, in_start_period);
            Ok(())
        });
    }
}

/// Every process below `pid`, the deepest last.
fn descendants(pid: i32) -> Vec<i32> {
    children(&pid.to_string())
        .into_iter()
        .flat_map(|child| std::iter::once(child).chain(descendants(child)))
        .collect()
}

/// The children of every thread of process `pid` (`self` for this one),
/// from `/proc/PID/task/TID/children`.
fn children(pid: &str) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|task| {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Reaps what a test left behind. The monitor is a child subreaper (lab
/// 01), so a process a test started inside the container whose `berth
/// exec` was killed (a timeout) becomes the monitor's child; and the
/// container's first process cannot finish exiting while any process of
/// its PID namespace is unreaped. Only the monitor's children in the
/// container's PID namespace, other than its first process, are reaped.
fn reap_orphans(init: i32) {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(container_ns) = ns(init) else {
        return;
    };
    for pid in children("self") {
        if pid != init && ns(pid).as_ref() == Some(&container_ns) {
            let _ = waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// Runs the test once, in the container, through `berth exec`; output and
/// exit code are kept. A test that takes longer than the timeout, or is
/// still running when `stop` is set, is killed and fails.
fn run_test(store: &Store, id: &str, config: &HealthConfig, stop: &AtomicBool) -> Probe {
    use std::os::unix::process::CommandExt;
    let start = SystemTime::now();
    let command: Vec<String> = match config.test[0].as_str() {
        "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), config.test[1].clone()],
        _ => config.test[1..].to_vec(),
    };
    let finish = |exit_code: i32, output: String| Probe {
        start,
        end: SystemTime::now(),
        exit_code,
        output,
    };
    // /proc/self/exe: still this program if its file was replaced since.
    let child = Command::new("/proc/self/exe")
        .arg("--root")
        .arg(&store.root)
        .arg("--runroot")
        .arg(&store.runroot)
        .args(["exec", id])
        .args(&command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Not in the terminal's process group: a Ctrl-C for `berth run`
        // is not for the check.
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return finish(-1, format!("cannot start the check: {e}")),
    };
    // The output is read as it comes, without blocking, in the same loop
    // that waits: a process the test leaves behind may hold the pipes
    // open, and must not hold up the check.
    let pipes: Vec<std::fs::File> = [
        child.stdout.take().map(std::os::fd::OwnedFd::from),
        child.stderr.take().map(std::os::fd::OwnedFd::from),
    ]
    .into_iter()
    .flatten()
    .map(std::fs::File::from)
    .collect();
    for pipe in &pipes {
        let _ = nix::fcntl::fcntl(
            pipe,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
    }
    let mut output = Vec::new();
    let drain = |output: &mut Vec<u8>| {
        let mut buf = [0u8; 4096];
        for mut pipe in &pipes {
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                if output.len() < OUTPUT {
                    output.extend_from_slice(&buf[..n]);
                }
            }
        }
    };
    let deadline = Instant::now() + config.timeout;
    let status = loop {
        drain(&mut output);
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline || stop.load(Ordering::Relaxed) => {
                // The test runs in the container as a child of `berth
                // exec`: kill it, give `berth exec` a moment to reap it and
                // exit by itself, and kill `berth exec` only if it does not.
                for pid in descendants(child.id() as i32) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let grace = Instant::now() + Duration::from_millis(500);
                while Instant::now() < grace && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    drain(&mut output);
    output.truncate(OUTPUT);
    let output = String::from_utf8_lossy(&output).into_owned();
    match status {
        Some(s) => finish(s.code().unwrap_or(-1), output),
        None => finish(
            -1,
            format!(
                "Health check exceeded timeout ({})",
                humantime::format_duration(config.timeout)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> Probe {
        Probe {
            start: SystemTime::UNIX_EPOCH,
            end: SystemTime::UNIX_EPOCH,
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn failures_in_a_row_make_it_unhealthy_and_a_pass_heals() {
        let mut h = Health::starting();
        h.record(probe(1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        h.record(probe(1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        h.record(probe(0), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        // Failures during the start period do not count.
        let mut h = Health::starting();
        for _ in 0..5 {
            h.record(probe(1), 1, true);
        }
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        // Once healthy, a failure counts even in the start period.
        h.record(probe(0), 1, true);
        h.record(probe(1), 1, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 1));
        // Only the last few results are kept.
        for _ in 0..10 {
            h.record(probe(0), 1, false);
        }
        assert_eq!(h.log.len(), KEPT);
    }

    #[test]
    fn the_image_check_with_flags_and_defaults() {
        let image = serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64, "Retries": 2});
        let c = resolve(Some(&image), &HealthFlags::default())
            .unwrap()
            .unwrap();
        assert_eq!(c.test, ["CMD-SHELL", "true"]);
        assert_eq!(
            (c.interval, c.timeout, c.retries),
            (Duration::from_secs(5), TIMEOUT, 2)
        );
        let flags = HealthFlags {
            cmd: Some("test -f /ready".into()),
            interval: Some("250ms".into()),
            ..HealthFlags::default()
        };
        let c = resolve(Some(&image), &flags).unwrap().unwrap();
        assert_eq!(c.test, ["CMD-SHELL", "test -f /ready"]);
        assert_eq!((c.interval, c.retries), (Duration::from_millis(250), 2));
        // Off: by the image, by the flag, or because there is none.
        let none = serde_json::json!({"Test": ["NONE"]});
        assert_eq!(resolve(Some(&none), &HealthFlags::default()).unwrap(), None);
        let off = HealthFlags {
            none: true,
            ..HealthFlags::default()
        };
        assert_eq!(resolve(Some(&image), &off).unwrap(), None);
        assert_eq!(resolve(None, &HealthFlags::default()).unwrap(), None);
        // Mistakes say what to write.
        let bad = HealthFlags {
            cmd: Some("true".into()),
            interval: Some("soon".into()),
            ..HealthFlags::default()
        };
        let err = resolve(None, &bad).unwrap_err().to_string();
        assert!(err.contains("invalid --health-interval \"soon\""), "{err}");
        let timing_only = HealthFlags {
            retries: Some(3),
            ..HealthFlags::default()
        };
        assert!(
            resolve(None, &timing_only)
                .unwrap_err()
                .to_string()
                .contains("give --health-cmd")
        );
    }
}
