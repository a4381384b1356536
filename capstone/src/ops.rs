//! The commands that act on existing containers: stop, kill, rm, exec, logs.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use cgroups::CgroupManager;
use namespaces::{ContainerConfig, ProcessSpec, Stdio};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::state::{Container, Status, Store, process_alive};

/// Error for an operation that needs a running container.
#[derive(Debug, thiserror::Error)]
#[error("container {0} is not running")]
pub struct NotRunning(pub String);

// ANCHOR: signal_pidfd
/// Sends a signal through a pidfd (`pidfd_send_signal(2)`). Unlike
/// `kill(pid)`, this can never hit an unrelated process that happens to have
/// been given the same pid number after the container's process ended.
pub fn signal_pidfd(pidfd: &OwnedFd, sig: Signal) -> Result<()> {
    // SAFETY: a plain system call on a descriptor we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(anyhow!("signal {sig}: {}", nix::errno::Errno::last()));
    }
    Ok(())
}
// ANCHOR_END: signal_pidfd

/// Opens a pidfd for the container's first process, after checking that the
/// pid still belongs to it (same start time as recorded).
fn container_pidfd(c: &Container) -> Option<OwnedFd> {
    if !process_alive(c.state.pid, c.state.pid_start) {
        return None;
    }
    let fd = namespaces::process::pidfd_open(Pid::from_raw(c.state.pid)).ok()?;
    // Check again now that the descriptor pins the process.
    process_alive(c.state.pid, c.state.pid_start).then_some(fd)
}

/// Waits until the pidfd says the process is gone, at most `timeout`.
fn wait_pidfd(fd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Ok(_) if left.is_zero() => return false,
            _ => {}
        }
    }
}

/// Waits until the monitor has recorded that the container is no longer
/// running. If the monitor itself is gone (killed), records it ourselves.
fn wait_recorded(store: &Store, id: &str, exit_code: i32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = store.load(id)?;
        if !c.state.status.is_active() {
            return Ok(());
        }
        let monitor_alive = c.state.monitor_pid > 0
            && nix::sys::signal::kill(Pid::from_raw(c.state.monitor_pid), None).is_ok();
        if !monitor_alive || Instant::now() > deadline {
            return store.update(id, |c| {
                if c.state.status.is_active() {
                    c.state.status = Status::Exited;
                    c.state.exit_code = exit_code;
                    c.state.pid = 0;
                    c.state.finished_at = Some(std::time::SystemTime::now());
                }
                Ok(())
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ANCHOR: stop
/// Stops a container the way `docker stop` does: its stop signal (SIGTERM
/// unless the image or `--stop-signal` says otherwise), then SIGKILL if it
/// is still there after `timeout`. Marks it stopped by hand first, so that
/// its restart policy leaves it alone.
pub fn stop(store: &Store, key: &str, timeout: Option<u64>) -> Result<()> {
    let c = store.find(key)?;
    let c = store.update(&c.id, |c| {
        c.manually_stopped = true;
        Ok(c.clone())
    })?;
    if !c.state.status.is_active() {
        return Ok(());
    }
    let timeout = Duration::from_secs(timeout.unwrap_or(c.options.stop_timeout));
    if let Some(fd) = container_pidfd(&c) {
        let sig = crate::options::parse_signal(&c.options.stop_signal)?;
        signal_pidfd(&fd, sig)?;
        thaw_if_paused(&c);
        if !wait_pidfd(&fd, timeout) {
            signal_pidfd(&fd, Signal::SIGKILL)?;
            wait_pidfd(&fd, Duration::from_secs(10));
        }
    }
    wait_recorded(store, &c.id, 137)
}
// ANCHOR_END: stop

/// Sends a signal to a running container (`docker kill`, SIGKILL by default).
pub fn kill(store: &Store, key: &str, sig: Signal) -> Result<()> {
    let c = store.find(key)?;
    if c.state.status != Status::Running && c.state.status != Status::Paused {
        bail!(NotRunning(c.name));
    }
    store.update(&c.id, |c| {
        c.manually_stopped = true;
        Ok(())
    })?;
    let fd = container_pidfd(&c).ok_or_else(|| NotRunning(c.name.clone()))?;
    signal_pidfd(&fd, sig)?;
    if sig == Signal::SIGKILL {
        thaw_if_paused(&c);
        wait_pidfd(&fd, Duration::from_secs(10));
        wait_recorded(store, &c.id, 137)?;
    }
    Ok(())
}

/// A paused container's processes cannot act on a signal until they are
/// thawed (on cgroup v1, not even SIGKILL): thaw after signalling.
fn thaw_if_paused(c: &Container) {
    if c.state.status == Status::Paused
        && let Ok(Some(m)) = crate::cgroup::manager(&c.id, c.options.rootless)
    {
        let _ = m.thaw();
    }
}

// ANCHOR: pause
/// Freezes every process of a running container (`docker pause`): they
/// stay in memory but get no CPU time until `unpause`. The state changes
/// under the container's lock, so the monitor cannot record an exit halfway.
pub fn pause(store: &Store, key: &str) -> Result<()> {
    let c = store.find(key)?;
    let Some(m) = crate::cgroup::manager(&c.id, c.options.rootless)? else {
        bail!(
            "cannot pause {}: a rootless container has no cgroup to freeze",
            c.name
        );
    };
    store.update(&c.id, |c| {
        match c.state.status {
            Status::Running => {}
            Status::Paused => bail!("container {} is already paused", c.name),
            _ => bail!(NotRunning(c.name.clone())),
        }
        m.freeze()?;
        c.state.status = Status::Paused;
        Ok(())
    })
}
// ANCHOR_END: pause

/// Lets a paused container run again (`docker unpause`).
pub fn unpause(store: &Store, key: &str) -> Result<()> {
    let c = store.find(key)?;
    let Some(m) = crate::cgroup::manager(&c.id, c.options.rootless)? else {
        bail!("container {} is not paused", c.name);
    };
    store.update(&c.id, |c| {
        if c.state.status != Status::Paused {
            bail!("container {} is not paused", c.name);
        }
        m.thaw()?;
        c.state.status = Status::Running;
        Ok(())
    })
}

/// Deletes a container's files and lock. Tolerates a partly removed one.
pub fn remove_files(store: &Store, id: &str) {
    let dir = store.container_dir(id);
    // Rename first: the container disappears from listings at once, and a
    // crash during the slow delete leaves only a hidden directory.
    let doomed = store.containers_dir().join(format!(".removing-{id}"));
    let target = if std::fs::rename(&dir, &doomed).is_ok() {
        doomed
    } else {
        dir
    };
    remove_tree(&target);
    store.remove_lock(id);
}

/// Removes a directory tree, first making our own unreadable directories
/// readable when needed: overlayfs leaves `work/work` with mode 000, which
/// a rootless engine (not root on the host) could not otherwise descend.
pub fn remove_tree(dir: &std::path::Path) {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    fn open_up(dir: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&entry.path());
            }
        }
    }
    open_up(dir);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!("cannot remove {}: {e}", dir.display());
    }
}

// ANCHOR: remove
/// Removes a container (`docker rm`). A running one is refused unless
/// `force`, in which case it is killed first.
pub fn remove(store: &Store, key: &str, force: bool) -> Result<()> {
    let c = store.find(key)?;
    if c.state.status.is_active() {
        if !force {
            bail!(
                "cannot remove container \"/{}\": container is {}: stop the container before removing or force remove (rm -f)",
                c.name,
                c.state.status.as_str()
            );
        }
        store.update(&c.id, |c| {
            c.manually_stopped = true;
            Ok(())
        })?;
        if let Some(fd) = container_pidfd(&c) {
            signal_pidfd(&fd, Signal::SIGKILL)?;
            thaw_if_paused(&c);
            wait_pidfd(&fd, Duration::from_secs(10));
        }
        wait_recorded(store, &c.id, 137)?;
    }
    // The monitor removes the cgroup and the network when the container
    // exits; if the monitor was killed, that is left to us.
    crate::network::detach(store, &c.id);
    let _lock = store.lock(&c.id)?;
    crate::cgroup::cleanup(&c.id, c.options.rootless);
    remove_files(store, &c.id);
    Ok(())
}
// ANCHOR_END: remove

/// What `berth exec` was asked.
pub struct ExecRequest {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
}

// ANCHOR: exec
/// Runs a command in a running container (`docker exec`): the container's
/// configuration gives the environment, user and capabilities, the request
/// may override them, and `namespaces::enter` joins the namespaces.
pub fn exec(store: &Store, key: &str, req: ExecRequest) -> Result<i32> {
    let c = store.find(key)?;
    match c.state.status {
        Status::Running => {}
        Status::Paused => bail!(
            "container {} is paused, unpause the container before exec",
            c.name
        ),
        _ => bail!(NotRunning(c.name)),
    }
    let dir = store.container_dir(&c.id);
    let config = ContainerConfig::load(&dir)?;
    let mut process: ProcessSpec = config.process.clone();
    process.args = req.command;
    process.env = crate::options::merge_env(&process.env, &req.env);
    process.terminal = req.tty;
    process.console_size = if req.tty {
        namespaces::terminal::window_size(0).map(|w| (w.rows, w.cols))
    } else {
        None
    };
    if let Some(w) = req.workdir {
        process.cwd = w.into();
    }
    if let Some(u) = req.user {
        // Names resolve in the container's files as they are now. Its root
        // is mounted only inside its own mount namespace (an overlay leaves
        // nothing on the host), so read it through the init process.
        let user = namespaces::user::resolve_in_rootfs(
            &namespaces::user::UserSpec::parse(&u)?,
            std::path::Path::new(&format!("/proc/{}/root", c.state.pid)),
        )?;
        process.uid = user.uid;
        process.gid = user.gid;
        process.additional_gids = user.additional_gids;
    }
    // Hold the process before we join it, so the pid cannot be recycled.
    let _pin = container_pidfd(&c).ok_or_else(|| NotRunning(c.name.clone()))?;
    let null = || -> Result<OwnedFd> {
        Ok(OwnedFd::from(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?,
        ))
    };
    let stdio = Stdio {
        stdin: if req.interactive && !req.detach {
            None
        } else {
            Some(null()?)
        },
        stdout: if req.detach { Some(null()?) } else { None },
        stderr: if req.detach { Some(null()?) } else { None },
    };
    // The new process joins the container's cgroups too, so that it
    // counts against the same limits.
    let cgroup_procs = crate::cgroup::manager(&c.id, c.options.rootless)?
        .map(|m| m.procs_files())
        .unwrap_or_default();
    let running = namespaces::process::enter_with_cgroups(
        Pid::from_raw(c.state.pid),
        &process,
        stdio,
        &cgroup_procs,
    )
    .map_err(|e| {
        // A fork refused with EAGAIN inside a pids-limited cgroup: say so.
        match c.options.resources.pids {
            Some(limit) if e.to_string().contains("EAGAIN") => anyhow::anyhow!(
                "cannot start a process in {}: it already runs as many processes as its --pids-limit of {limit} allows ({e})",
                c.name
            ),
            _ => e.into(),
        }
    })?;
    if req.detach {
        return Ok(0);
    }
    match running.terminal.as_ref() {
        Some(t) => crate::attach::copy_terminal(&running, t, req.interactive),
        None => Ok(running.wait()?.status()),
    }
}
// ANCHOR_END: exec
