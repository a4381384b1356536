//! The monitor: one process per running container, like podman's conmon.
//!
//! berth has no daemon. Whoever starts a container becomes, or forks, its
//! monitor: the process that holds the container's stdio and terminal,
//! writes the log, waits for the exit, records the exit code and applies the
//! restart policy. `berth run` in the foreground *is* the monitor and also
//! copies the output to the user's terminal; `berth run -d` forks a monitor
//! that outlives it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use cgroups::CgroupManager;
use namespaces::{ContainerConfig, Exit, Stdio};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{ForkResult, fork, pipe2};

use crate::logs::{LineBuffer, Writer};
use crate::options::RestartPolicy;
use crate::state::{Status, Store, process_start_time};

/// How the user is connected to the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Nobody: the monitor runs in the background.
    Detached,
    /// The caller's terminal: output is copied to it, and with
    /// `interactive` its input to the container.
    Foreground { interactive: bool },
}

/// The startup failure of a container, with the exit code Docker uses.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartFailed {
    pub message: String,
    pub code: i32,
}

// ANCHOR: start_detached
/// Starts a container in the background: forks a monitor, waits until the
/// container's command is running (or has failed to start) and returns.
pub fn start_detached(store: &Store, id: &str) -> Result<()> {
    let (ready_r, ready_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: berth is single-threaded here; the child only runs the monitor.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(ready_r);
            // A new session: no terminal, and the user's Ctrl-C can't reach us.
            let _ = nix::unistd::setsid();
            detach_stdio();
            // The monitor writes "ok" or the failure, then closes its end.
            let mut ready = Some(File::from(ready_w));
            let code = match monitor(store, id, Attach::Detached, &mut ready) {
                Ok(_) => 0,
                Err(e) => {
                    if let Some(mut r) = ready.take() {
                        let _ = writeln!(r, "125 {e:#}");
                    }
                    1
                }
            };
            // SAFETY: leave without unwinding into the parent's code.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { .. } => {
            drop(ready_w);
            let mut report = String::new();
            File::from(ready_r).read_to_string(&mut report)?;
            match report.trim() {
                "ok" => Ok(()),
                "" => anyhow::bail!("the monitor of container {id} died while starting it"),
                failure => {
                    // "CODE message" for a start failure.
                    let (code, message) = failure.split_once(' ').unwrap_or(("125", failure));
                    Err(StartFailed {
                        message: message.to_string(),
                        code: code.parse().unwrap_or(125),
                    }
                    .into())
                }
            }
        }
    }
}
// ANCHOR_END: start_detached

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// Starts a container attached to the caller's terminal and returns its exit
/// status once it has ended (restarts, if any, continue in the background).
pub fn start_foreground(store: &Store, id: &str, interactive: bool) -> Result<i32> {
    monitor(store, id, Attach::Foreground { interactive }, &mut None)
}

/// The pipes or terminal through which the monitor talks to one run.
struct Io {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    terminal: Option<OwnedFd>,
}

fn dev_null() -> Result<OwnedFd> {
    Ok(OwnedFd::from(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?,
    ))
}

// ANCHOR: monitor
/// Runs the container until it ends for good: start it, pump its output into
/// the log, record the exit, and start it again while the restart policy
/// says so. `ready` receives "ok" once the first start succeeded.
fn monitor(store: &Store, id: &str, attach: Attach, ready: &mut Option<File>) -> Result<i32> {
    let dir = store.container_dir(id);
    let mut attach = attach;
    loop {
        let record = store.load(id)?;
        let mut config = ContainerConfig::load(&dir)?;
        config.rootfs_mount = crate::storage::rootfs_mount(store, &record)?;
        if config.process.terminal && matches!(attach, Attach::Foreground { .. }) {
            config.process.console_size =
                namespaces::terminal::window_size(0).map(|w| (w.rows, w.cols));
        }
        let o = &record.options;
        let interactive_fg = matches!(attach, Attach::Foreground { interactive: true });

        // stdin: the user's input (foreground -i), a pipe we keep open
        // (detached -i, so the process waits for input as Docker's does), or
        // nothing. stdout/stderr: pipes we read, unless a terminal is used.
        let (stdin_ours, stdin_theirs) = if o.interactive && !o.tty {
            let (r, w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            (Some(w), r)
        } else {
            (None, dev_null()?)
        };
        let (out_r, out_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let (err_r, err_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let stdio = if o.tty {
            Stdio {
                stdin: Some(dev_null()?),
                stdout: Some(dev_null()?),
                stderr: Some(dev_null()?),
            }
        } else {
            Stdio {
                stdin: Some(stdin_theirs),
                stdout: Some(out_w),
                stderr: Some(err_w),
            }
        };
        // Signals we handle ourselves arrive through a signalfd; the
        // container's processes get them unblocked again.
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGWINCH,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
        ] {
            mask.add(s);
        }
        mask.thread_block()?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;

        let started = Instant::now();
        // The network (lab 04) is built before the container exists, in a
        // namespace it joins by path, and taken down when it exits.
        let spawned = crate::network::attach(store, &record, &o.expose)
            .map_err(|e| (125, format!("{e:#}")))
            .and_then(|attachment| {
                if let Some(a) = &attachment {
                    config.namespaces.insert(
                        namespaces::Namespace::Network,
                        namespaces::NsMode::Join(a.netns.clone()),
                    );
                }
                spawn_in_cgroup(id, o, &mut config, stdio).map(|r| (r, attachment))
            });
        let ((running, cgroup), attachment) = match spawned {
            Ok(r) => r,
            Err((code, message)) => {
                crate::network::detach(store, id);
                store.update(id, |c| {
                    c.state.status = if c.restart_count > 0 {
                        Status::Exited
                    } else {
                        Status::Created
                    };
                    c.state.exit_code = code;
                    c.state.error = message.clone();
                    c.state.finished_at = Some(SystemTime::now());
                    Ok(())
                })?;
                // `--rm` removes a container that could not start, too.
                if o.auto_remove {
                    crate::ops::remove_files(store, id);
                }
                if let Some(mut r) = ready.take() {
                    writeln!(r, "{code} {message}")?;
                    return Ok(code);
                }
                return Err(StartFailed { message, code }.into());
            }
        };
        let pid = running.pid.as_raw();
        tracing::debug!(container = id, pid, ?attach, "container started");
        store.update(id, |c| {
            c.state.status = Status::Running;
            c.state.pid = pid;
            c.state.pid_start = process_start_time(pid).unwrap_or(0);
            c.state.monitor_pid = std::process::id() as i32;
            c.state.exit_code = 0;
            c.state.oom_killed = false;
            c.state.error.clear();
            c.state.started_at = Some(SystemTime::now());
            c.state.health = o
                .healthcheck
                .as_ref()
                .map(|_| crate::health::Health::starting());
            Ok(())
        })?;
        if let Some(mut r) = ready.take() {
            writeln!(r, "ok")?;
        }
        // Health checks run on a thread of their own while the container
        // runs, each as a `berth exec` into it.
        let checks_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checks = o.healthcheck.clone().map(|check| {
            let (store, id, stop) = (store.clone(), id.to_string(), checks_stop.clone());
            std::thread::spawn(move || crate::health::watch(store, id, pid, check, stop))
        });

        let io = Io {
            stdin: stdin_ours,
            stdout: Some(out_r),
            stderr: Some(err_r),
            terminal: running
                .terminal
                .as_ref()
                .map(|t| t.try_clone())
                .transpose()?,
        };
        let mut log = Writer::open(&dir.join("container.log"))?;
        let exit = pump(&running, io, &mut log, &signals, attach, interactive_fg);
        // The checks end with the container, before its state says so (and
        // before a restart forks this process, which must then have one
        // thread).
        checks_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(checks) = checks {
            let _ = checks.join();
        }
        let exit = exit?;
        drop(signals);
        mask.thread_unblock()?;
        let code = exit.status();
        tracing::debug!(container = id, ?exit, "container exited");
        let oom_killed = cgroup.as_ref().is_some_and(finish_cgroup);
        drop(attachment);
        crate::network::detach(store, id);

        let decision = store.update(id, |c| {
            c.state.status = Status::Exited;
            c.state.pid = 0;
            c.state.pid_start = 0;
            c.state.exit_code = code;
            c.state.oom_killed = oom_killed;
            c.state.finished_at = Some(SystemTime::now());
            let again = c
                .options
                .restart
                .should_restart(code, c.restart_count, c.manually_stopped);
            if again {
                c.state.status = Status::Restarting;
            }
            Ok(again)
        });
        let again = match decision {
            Ok(again) => again,
            Err(_) if !dir.exists() => return Ok(code), // removed with `rm -f` meanwhile
            Err(e) => return Err(e),
        };
        if !again {
            if o.auto_remove {
                crate::ops::remove_files(store, id);
                // `--rm` takes the anonymous volumes with it, as in Docker.
                crate::volumes::remove_anonymous(store, &o.mounts);
            }
            return Ok(code);
        }
        if let Attach::Foreground { .. } = attach {
            // `docker run` returns when the container first exits, and
            // the daemon restarts it; here a background monitor takes over.
            start_restarter(store, id)?;
            return Ok(code);
        }
        attach = Attach::Detached;
        // Wait out the back-off, but give up at once if someone stops us.
        let delay = RestartPolicy::delay(record.restart_count, started.elapsed());
        let until = Instant::now() + delay;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            if store.load(id).map(|c| c.manually_stopped).unwrap_or(true) {
                store.update(id, |c| {
                    c.state.status = Status::Exited;
                    Ok(())
                })?;
                return Ok(code);
            }
        }
        store.update(id, |c| {
            c.restart_count += 1;
            Ok(())
        })?;
    }
}
// ANCHOR_END: monitor

/// Hands the restart loop of a container to a background monitor.
// ANCHOR: spawn_in_cgroup
/// Creates the container's cgroup with its limits (unless rootless), then
/// starts the container in it; on failure removes the cgroup again and
/// returns the exit code and message to report.
fn spawn_in_cgroup(
    id: &str,
    o: &crate::options::RunOptions,
    config: &mut ContainerConfig,
    stdio: Stdio,
) -> std::result::Result<(namespaces::Running, Option<cgroups::Manager>), (i32, String)> {
    let engine_error = |e: anyhow::Error| (125, format!("{e:#}"));
    let cgroup = crate::cgroup::manager(id, o.rootless).map_err(engine_error)?;
    if let Some(cg) = &cgroup {
        cg.create(&o.resources)
            .map_err(|e| engine_error(e.into()))?;
        config.cgroup_procs = cg.procs_files();
    }
    match namespaces::spawn(config, stdio) {
        Ok(running) => Ok((running, cgroup)),
        Err(e) => {
            if let Some(cg) = &cgroup {
                let _ = cg.delete();
            }
            Err((e.exit_code(), e.to_string()))
        }
    }
}
// ANCHOR_END: spawn_in_cgroup

/// After the container's first process exited: tells whether the kernel's
/// OOM killer struck in the cgroup, then removes the cgroup.
fn finish_cgroup(cg: &cgroups::Manager) -> bool {
    let oom = cg.stats().map(|s| s.oom_kills > 0).unwrap_or(false);
    // Anything left (children of a PID 1 that did not use a PID namespace)
    // dies with it, as Docker's containers do.
    let _ = cg.kill_all();
    if let Err(e) = cg.delete() {
        tracing::warn!("cannot remove cgroup: {e}");
    }
    oom
}

fn start_restarter(store: &Store, id: &str) -> Result<()> {
    // SAFETY: single-threaded; the child runs the monitor and exits.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let _ = nix::unistd::setsid();
            detach_stdio();
            let record = store.load(id);
            let delay = record
                .map(|c| RestartPolicy::delay(c.restart_count, Duration::ZERO))
                .unwrap_or(Duration::from_millis(100));
            std::thread::sleep(delay);
            let ok = store
                .update(id, |c| {
                    let go = !c.manually_stopped;
                    if go {
                        c.restart_count += 1;
                    } else {
                        c.state.status = Status::Exited;
                    }
                    Ok(go)
                })
                .unwrap_or(false);
            if ok {
                let _ = monitor(store, id, Attach::Detached, &mut None);
            }
            // SAFETY: leave without unwinding.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { .. } => Ok(()),
    }
}

fn read_chunk(fd: BorrowedFd, buf: &mut [u8]) -> Option<usize> {
    match nix::unistd::read(fd, buf) {
        Ok(0) => None,
        Ok(n) => Some(n),
        Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => Some(0),
        // EIO is how a terminal's master side says the slave side closed.
        Err(_) => None,
    }
}

fn write_all_fd(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

// ANCHOR: pump
/// Copies data until the container ends: its output into the log (and to
/// the user's terminal in the foreground), the user's input into it, and
/// signals and window-size changes on to it. Returns how it ended.
fn pump(
    running: &namespaces::Running,
    mut io: Io,
    log: &mut Writer,
    signals: &SignalFd,
    attach: Attach,
    interactive: bool,
) -> Result<Exit> {
    let foreground = matches!(attach, Attach::Foreground { .. });
    let _raw = match (&io.terminal, foreground) {
        (Some(t), true) => {
            if let Some(size) = namespaces::terminal::window_size(0) {
                let _ = namespaces::terminal::set_window_size(t.as_raw_fd(), size);
            }
            crate::tty::RawMode::enable(0)
        }
        _ => None,
    };
    let mut user_stdin_open = foreground && (interactive || io.terminal.is_some());
    let (mut out_buf, mut err_buf) = (LineBuffer::default(), LineBuffer::default());
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut buf = vec![0u8; 32 * 1024];
    let mut exited = false;
    loop {
        let stdin_fd = std::io::stdin();
        let mut keys: Vec<u8> = Vec::new();
        let mut polled: Vec<PollFd> = Vec::new();
        let mut add = |k: u8, p: PollFd<'static>| {
            keys.push(k);
            polled.push(p);
        };
        // SAFETY (for the borrows below): every descriptor outlives this
        // iteration of the loop, which is as long as `polled` lives.
        let raw = |fd: std::os::fd::RawFd| unsafe { BorrowedFd::borrow_raw(fd) };
        if !exited {
            add(
                0,
                PollFd::new(raw(running.pidfd.as_raw_fd()), PollFlags::POLLIN),
            );
            add(
                4,
                PollFd::new(raw(signals.as_fd().as_raw_fd()), PollFlags::POLLIN),
            );
        }
        if let Some(fd) = &io.stdout {
            add(1, PollFd::new(raw(fd.as_raw_fd()), PollFlags::POLLIN));
        }
        if let Some(fd) = &io.stderr {
            add(2, PollFd::new(raw(fd.as_raw_fd()), PollFlags::POLLIN));
        }
        if let Some(fd) = &io.terminal {
            add(3, PollFd::new(raw(fd.as_raw_fd()), PollFlags::POLLIN));
        }
        if user_stdin_open && !exited {
            add(5, PollFd::new(raw(0), PollFlags::POLLIN));
        }
        if keys.is_empty() {
            break;
        }
        // Once the process has exited, drain what is left without blocking.
        let timeout = if exited {
            PollTimeout::from(200u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut polled, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<u8> = keys
            .iter()
            .zip(&polled)
            .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(k, _)| *k)
            .collect();
        for key in ready {
            match key {
                0 => exited = true,
                1..=3 => {
                    let fd = match key {
                        1 => io.stdout.as_ref(),
                        2 => io.stderr.as_ref(),
                        _ => io.terminal.as_ref(),
                    };
                    let Some(fd) = fd else { continue };
                    match read_chunk(fd.as_fd(), &mut buf) {
                        Some(0) => {}
                        Some(n) => {
                            let chunk = &buf[..n];
                            let (lines, stream) = if key == 2 {
                                (err_buf.push(chunk), "stderr")
                            } else {
                                (out_buf.push(chunk), "stdout")
                            };
                            for line in lines {
                                log.write(stream, line)?;
                            }
                            if foreground {
                                let target: &mut dyn Write = if key == 2 {
                                    &mut stderr.lock()
                                } else {
                                    &mut stdout.lock()
                                };
                                let _ = target.write_all(chunk);
                                let _ = target.flush();
                            }
                        }
                        None => match key {
                            1 => io.stdout = None,
                            2 => io.stderr = None,
                            _ => io.terminal = None,
                        },
                    }
                }
                4 => {
                    while let Ok(Some(info)) = signals.read_signal() {
                        let sig = Signal::try_from(info.ssi_signo as i32).ok();
                        match (sig, &io.terminal) {
                            (Some(Signal::SIGWINCH), Some(t)) => {
                                if let Some(size) = namespaces::terminal::window_size(0) {
                                    let _ =
                                        namespaces::terminal::set_window_size(t.as_raw_fd(), size);
                                }
                            }
                            (Some(Signal::SIGWINCH), None) => {}
                            // The monitor forwards what it is sent, as
                            // Docker's CLI does (--sig-proxy).
                            (Some(s), _) => {
                                let _ = crate::ops::signal_pidfd(&running.pidfd, s);
                            }
                            (None, _) => {}
                        }
                    }
                }
                5 => {
                    let target = io.terminal.as_ref().or(io.stdin.as_ref());
                    match (read_chunk(stdin_fd.as_fd(), &mut buf), target) {
                        (Some(n), Some(t)) if n > 0 => write_all_fd(t.as_fd(), &buf[..n]),
                        (Some(_), _) => {}
                        (None, _) => {
                            // End of input: close the container's stdin too.
                            user_stdin_open = false;
                            io.stdin = None;
                        }
                    }
                }
                _ => {}
            }
        }
        if exited && io.stdout.is_none() && io.stderr.is_none() && io.terminal.is_none() {
            break;
        }
    }
    for (b, stream) in [(&mut out_buf, "stdout"), (&mut err_buf, "stderr")] {
        if let Some(rest) = b.finish() {
            log.write(stream, rest)?;
        }
    }
    Ok(running.wait()?)
}
// ANCHOR_END: pump
