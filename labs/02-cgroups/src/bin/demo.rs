//! `lab02-demo`: lab 02 step by step, on a busybox root made from the host.
//!
//! ```text
//! lab02-demo                       the tour: each limit, enforced, with the numbers
//! lab02-demo mode                  this machine's cgroup setup and where each controller is
//! lab02-demo run [LIMITS] ROOTFS CMD...
//!                                  run CMD in a container in its own cgroup, then print
//!                                  the cgroup's counters; LIMITS are --memory 64m,
//!                                  --memory-swap 64m, --cpus 0.5, --cpu-shares 512,
//!                                  --cpuset-cpus 0, --pids-limit 20, --device /dev/fuse
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cgroups::container::{cgroup_mounts, spawn_limited};
use cgroups::{CgroupManager, Hierarchy, Resources, Stats};
use namespaces::ContainerConfig;

fn usage() -> ExitCode {
    eprintln!(
        "usage: lab02-demo [mode | run [--memory B] [--memory-swap B] [--cpus N] [--cpu-shares N] \
         [--cpuset-cpus LIST] [--pids-limit N] [--device PATH] ROOTFS CMD...]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    // Like any Unix tool, end quietly when the reader of our output goes
    // away (`lab-demo tour | head`) instead of panicking on EPIPE.
    // SAFETY: restores the default action of one signal before any thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("tour") => tour(),
        Some("mode") => mode(),
        Some("run") if args.len() >= 3 => run(&args[1..]),
        _ => return usage(),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("lab02-demo: {e}");
            ExitCode::from(125)
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn hierarchy() -> Result<Hierarchy> {
    Ok(cgroups::detect(
        Path::new("/sys/fs/cgroup"),
        Path::new("/proc"),
    )?)
}

/// Prints the mode, each controller's home and this process's cgroups.
fn mode() -> Result<i32> {
    let h = hierarchy()?;
    println!("mode: {}", h.mode);
    for c in cgroups::Controller::ALL {
        let place = if h.uses_v2() {
            match h.check(c) {
                Ok(()) => format!("{} (v2)", h.v2.as_ref().unwrap().display()),
                Err(_) => "not available".into(),
            }
        } else {
            h.v1.get(&c)
                .map_or("not mounted".into(), |p| format!("{} (v1)", p.display()))
        };
        println!("  {:<8} {place}", c.name());
    }
    if let Some(v2) = &h.v2 {
        let list = if h.v2_controllers.is_empty() {
            "none".to_string()
        } else {
            h.v2_controllers.join(" ")
        };
        println!("v2 tree at {} with controllers: {list}", v2.display());
    }
    println!("this process (/proc/self/cgroup):");
    for (controllers, path) in cgroups::mode::membership(Path::new("/proc"), "self")? {
        let name = if controllers.is_empty() {
            "(v2)"
        } else {
            controllers.as_str()
        };
        println!("  {name:<16} {path}");
    }
    Ok(0)
}

/// Parses the limit flags in front of ROOTFS CMD...
fn parse(args: &[String]) -> Result<(Resources, &[String])> {
    let mut flags = cgroups::resources::LimitFlags::default();
    let mut i = 0;
    while i < args.len() && args[i].starts_with("--") {
        let Some(value) = args.get(i + 1).cloned() else {
            return Err(format!("{} needs a value", args[i]).into());
        };
        match args[i].as_str() {
            "--memory" => flags.memory = Some(value),
            "--memory-swap" => flags.memory_swap = Some(value),
            "--cpus" => flags.cpus = Some(value),
            "--cpu-shares" => flags.cpu_shares = Some(value),
            "--cpuset-cpus" => flags.cpuset_cpus = Some(value),
            "--pids-limit" => flags.pids_limit = Some(value),
            "--device" => flags.devices.push(value),
            other => return Err(format!("unknown flag {other}").into()),
        }
        i += 2;
    }
    let res = cgroups::resources::from_flags(&flags, Path::new("/sys"))?;
    Ok((res, &args[i..]))
}

/// Runs a command in a container in its own cgroup and reports the counters.
fn run(args: &[String]) -> Result<i32> {
    let (res, rest) = parse(args)?;
    let [rootfs, cmd @ ..] = rest else {
        return Err("expected ROOTFS CMD...".into());
    };
    if cmd.is_empty() {
        return Err("expected a command after the root filesystem".into());
    }
    let h = hierarchy()?;
    let rootfs = std::fs::canonicalize(rootfs)?;
    let mut config = ContainerConfig::new(&rootfs, cmd.to_vec());
    config.hostname = Some("lab02".into());
    config.mounts.extend(cgroup_mounts(&h, false));
    for node in &res.device_nodes {
        config.mounts.push(namespaces::MountSpec::bind(
            &node.host,
            &node.path.to_string_lossy(),
            false,
        ));
    }
    let name = format!("demo-{}", std::process::id());
    let limited = spawn_limited(
        &h,
        "berth",
        &name,
        &res,
        config,
        namespaces::Stdio::default(),
    )?;
    let paths = limited.cgroup.paths();
    match paths.as_slice() {
        [one] => eprintln!("[cgroup {}]", one.display()),
        [first, ..] => eprintln!(
            "[cgroup {} and the same in {} more v1 hierarchies]",
            first.display(),
            paths.len() - 1
        ),
        [] => {}
    }
    let started = Instant::now();
    let exit = limited.running.wait()?;
    let stats = limited.cgroup.stats()?;
    limited.cgroup.kill_all()?;
    limited.cgroup.delete()?;
    eprintln!("[{}]", summary(&stats, started.elapsed()));
    Ok(exit.status())
}

fn summary(s: &Stats, elapsed: Duration) -> String {
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
    format!(
        "cpu {:.2}s in {:.2}s, throttled {} of {} periods; memory peak {}, limit {}, \
         oom kills {}; pids limit {}, forks refused {}",
        s.cpu_usage_ns as f64 / 1e9,
        elapsed.as_secs_f64(),
        s.cpu_throttled_periods,
        s.cpu_periods,
        s.memory_peak.map_or("n/a".into(), mib),
        s.memory_limit.map_or("none".into(), mib),
        s.oom_kills,
        s.pids_limit.map_or("none".into(), |l| l.to_string()),
        s.pids_refused,
    )
}

/// The tour: each limit of the lab, enforced by the kernel, with numbers.
fn tour() -> Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the tour creates cgroups and containers: run it as root".into());
    }
    let root = tempfile_dir()?;
    namespaces::host::populate_rootfs(&root)?;
    let r = root.to_string_lossy().to_string();
    let step = |title: &str, args: &[&str]| -> Result<()> {
        println!("\n== {title}");
        let shown: Vec<String> = args
            .iter()
            .map(|a| match a {
                a if *a == r => "ROOTFS".to_string(),
                a if a.contains([' ', ';', '$', '&', '|']) => format!("'{a}'"),
                a => a.to_string(),
            })
            .collect();
        println!("$ lab02-demo run {}", shown.join(" "));
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run(&args)?;
        Ok(())
    };
    println!("== 02.1 this machine");
    mode()?;
    step(
        "02.2 a 16 MiB limit, and dd asking for 64 MiB: the OOM killer strikes",
        &[
            "--memory",
            "16m",
            "--memory-swap",
            "16m",
            &r,
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd exited $?",
        ],
    )?;
    step(
        "02.3 --cpus 0.25: a busy loop gets a quarter of a CPU",
        &[
            "--cpus",
            "0.25",
            &r,
            "sh",
            "-c",
            "while :; do :; done & sleep 2; kill $!",
        ],
    )?;
    step(
        "02.4 --pids-limit 20: a fork bomb hits the ceiling",
        &[
            "--pids-limit",
            "20",
            &r,
            "sh",
            "-c",
            "bomb() { bomb | bomb & }; bomb; sleep 2",
        ],
    )?;
    step(
        "02.5 devices: creating a disk node is allowed, opening it is not",
        &[&r, "sh", "-c", "mknod /tmp/disk b 7 0; head -c 1 /tmp/disk"],
    )?;
    println!("\n== 02.6 the freezer: see `berth pause`, or the kernel tests");
    std::fs::remove_dir_all(&root)?;
    Ok(0)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("lab02-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
