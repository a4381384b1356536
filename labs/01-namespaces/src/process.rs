//! Starting a container: the chain of processes, from the caller to the
//! container's command.
//!
//! ```text
//! caller (the engine's monitor)              sets PR_SET_CHILD_SUBREAPER
//!   └─ fork → intermediate                   setns() into namespaces to join
//!                                            unshare(CLONE_NEWUSER); maps written by the caller
//!                                            unshare() the rest
//!        └─ fork → init (PID 1 inside)       mounts, pivot_root, hostname, user, capabilities
//!                                            execve(command)   — or, with --init:
//!             └─ fork → command (PID 2)      execve(command) while PID 1 forwards signals and reaps
//! ```
//!
//! Why two forks? `unshare(CLONE_NEWPID)` does not move the caller into the
//! new PID namespace, only its future children; so the intermediate process
//! creates the namespaces and its child is the first process inside. The
//! intermediate then exits, and because the caller is a *subreaper*, the
//! kernel hands init over to the caller, which can wait for it like any child.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};

use crate::capabilities;
use crate::channel::{Channel, Failure, Message};
use crate::config::{ContainerConfig, DEFAULT_PATH, ProcessSpec};
use crate::error::{Error, Result, SysContext};
use crate::idmap::{self, IdMap};
use crate::namespace::{Namespace, NsMode};
use crate::rootfs::{self, RootfsOptions};
use crate::syscall::Linux;

/// Where the container's standard streams go. `None` inherits the caller's.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// A started container process, as its parent holds it.
#[derive(Debug)]
pub struct Running {
    /// The pid of the container's first process, in the caller's namespace.
    pub pid: Pid,
    /// A pidfd for it: becomes readable when the process exits, and can be
    /// polled together with other descriptors. It always refers to this
    /// process, even if the pid number is later reused.
    pub pidfd: OwnedFd,
    /// The master side of the container's terminal, when one was asked for.
    pub terminal: Option<OwnedFd>,
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It called exit with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Exit {
    /// The number a shell (and Docker) reports: the code, or 128 + signal.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl Running {
    /// Blocks until the container's first process exits and reaps it.
    pub fn wait(&self) -> Result<Exit> {
        wait_exit(self.pid)
    }
}

/// Waits for a child and tells how it ended, retrying on EINTR.
pub fn wait_exit(pid: Pid) -> Result<Exit> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Exit::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Exit::Signal(sig as i32)),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("waitpid {pid}"), e)),
        }
    }
}

/// What the intermediate process must do; shared by [`spawn`] and [`enter`].
struct Plan<'a> {
    namespaces: BTreeMap<Namespace, NsMode>,
    uid_mappings: &'a [IdMap],
    gid_mappings: &'a [IdMap],
    /// Set when creating a container: build its filesystem view first.
    create: Option<&'a ContainerConfig>,
    init: bool,
    process: &'a ProcessSpec,
    /// `cgroup.procs` files to write our pid into before anything else.
    cgroup_procs: &'a [PathBuf],
}

// ANCHOR: spawn
/// Starts a container as described by `config` and returns once its command
/// is running (or reports why it could not start: a missing command is
/// [`Error::NotFound`], exit code 127).
///
/// The caller becomes a child subreaper, so that the container's first
/// process becomes its child; reap it with [`Running::wait`].
pub fn spawn(config: &ContainerConfig, stdio: Stdio) -> Result<Running> {
    config.validate()?;
    let plan = Plan {
        namespaces: config.namespaces.clone(),
        uid_mappings: &config.uid_mappings,
        gid_mappings: &config.gid_mappings,
        create: Some(config),
        init: config.init,
        process: &config.process,
        cgroup_procs: &config.cgroup_procs,
    };
    launch(&plan, stdio)
}
// ANCHOR_END: spawn

// ANCHOR: enter
/// Runs another process inside the running container whose first process is
/// `target` (what `docker exec` and `nsenter` do): joins each of its
/// namespaces that differs from ours with `setns(2)`, then starts `process`.
pub fn enter(target: Pid, process: &ProcessSpec, stdio: Stdio) -> Result<Running> {
    enter_with_cgroups(target, process, stdio, &[])
}

/// [`enter`], also joining the container's cgroups (lab 02) by writing the
/// new process's pid into each of `cgroup_procs` first, so that what runs
/// in the container counts against the container's limits.
pub fn enter_with_cgroups(
    target: Pid,
    process: &ProcessSpec,
    stdio: Stdio,
    cgroup_procs: &[PathBuf],
) -> Result<Running> {
    // BEGIN SOLUTION 01.9
    let proc_root = Path::new("/proc");
    let ours = crate::namespace::namespace_ids(proc_root, std::process::id() as i32)?;
    let theirs = crate::namespace::namespace_ids(proc_root, target.as_raw())?;
    let namespaces = Namespace::ALL
        .into_iter()
        .filter(|ns| ours.get(ns) != theirs.get(ns))
        .map(|ns| (ns, NsMode::Join(ns.path_for(proc_root, target.as_raw()))))
        .collect();
    let plan = Plan {
        namespaces,
        uid_mappings: &[],
        gid_mappings: &[],
        create: None,
        init: false,
        process,
        cgroup_procs,
    };
    launch(&plan, stdio)
    // END SOLUTION
}
// ANCHOR_END: enter

/// The caller's half of the start-up protocol.
fn launch(plan: &Plan, stdio: Stdio) -> Result<Running> {
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let (ours, theirs) = Channel::pair()?;

    // SAFETY: glibc's fork resets the allocator's locks in the child, so the
    // child may allocate even if the caller had other threads; the child only
    // runs our code and then execs or exits.
    let intermediate = match unsafe { fork() }.ctx(|| "fork".into())? {
        ForkResult::Child => {
            drop(ours);
            child_body(&theirs, || intermediate_main(plan, stdio, &theirs))
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    drop(stdio); // the child holds its copies; ours must not keep pipes open

    let mut init_pid = None;
    let mut terminal = None;
    let mut failure = None;
    // Serve the child until every copy of its end is closed: that happens
    // when the command is executed (close-on-exec) or everything has exited.
    loop {
        match ours.recv() {
            // ANCHOR: maps_written
            Ok(Some((Message::UserNamespaceReady, _))) => {
                let deny = !Uid::effective().is_root();
                let result = idmap::write_maps(
                    Path::new("/proc"),
                    intermediate.as_raw(),
                    plan.uid_mappings,
                    plan.gid_mappings,
                    deny,
                );
                match result {
                    Ok(()) => ours.send(&Message::MapsWritten)?,
                    Err(e) => {
                        failure.get_or_insert(e);
                        let _ = kill(intermediate, Signal::SIGKILL);
                    }
                }
            }
            // ANCHOR_END: maps_written
            Ok(Some((Message::Pid(p), _))) => init_pid = Some(Pid::from_raw(p)),
            Ok(Some((Message::Terminal, fd))) => terminal = fd,
            Ok(Some((Message::Failed(f), _))) => {
                failure.get_or_insert(f.into());
            }
            Ok(Some((other, _))) => {
                failure.get_or_insert(Error::Channel(format!("unexpected message {other:?}")));
            }
            Ok(None) => break,
            Err(e) => {
                failure.get_or_insert(e);
                break;
            }
        }
    }
    let intermediate_exit = wait_exit(intermediate)?;
    tracing::debug!(
        ?init_pid,
        ?intermediate_exit,
        failed = failure.is_some(),
        "container process chain done"
    );
    match (failure, init_pid) {
        (Some(err), pid) => {
            if let Some(pid) = pid {
                // The command never ran; make sure the half-built container is gone.
                let _ = kill(pid, Signal::SIGKILL);
                let _ = wait_exit(pid);
            }
            Err(err)
        }
        (None, Some(pid)) => {
            let pidfd = pidfd_open(pid)?;
            Ok(Running {
                pid,
                pidfd,
                terminal,
            })
        }
        (None, None) => Err(Error::Child(format!(
            "the intermediate process ended ({intermediate_exit:?}) without starting the container"
        ))),
    }
}

/// Runs the body of a forked child: whatever error it returns, or panic it
/// raises, goes back to the parent over the channel, and the child ends
/// with `_exit` — it must never return or unwind into the code it was forked
/// from (in a test, that would be a second copy of the test harness).
fn child_body(chan: &Channel, body: impl FnOnce() -> Result<std::convert::Infallible>) -> ! {
    let failure = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(Err(err)) => Failure::from(&err),
        Ok(Ok(never)) => match never {},
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Failure::Other(format!("panicked: {text}"))
        }
    };
    let _ = chan.send(&Message::Failed(failure));
    // SAFETY: leave at once, without the parent's exit handlers.
    unsafe { libc::_exit(1) }
}

/// `pidfd_open(2)`: a descriptor that stands for one process.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd> {
    // SAFETY: a plain system call; on success it returns a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(Error::sys(
            format!("pidfd_open {pid}"),
            nix::errno::Errno::last(),
        ));
    }
    // SAFETY: the kernel returned a fresh descriptor.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as RawFd) })
}

/// Puts every signal back to its default and unblocks them all. Signal
/// dispositions set to "ignore" and the blocked mask survive `execve`; a
/// container must not inherit the engine's (Rust ignores SIGPIPE, for one).
fn reset_signals() -> Result<()> {
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours.
        unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) }
            .ctx(|| format!("reset {sig}"))?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .ctx(|| "unblock signals".into())
}

/// Points fd 0, 1 or 2 at `fd`.
fn redirect(fd: &Option<OwnedFd>, target: RawFd) -> Result<()> {
    if let Some(fd) = fd {
        // SAFETY: dup2 on descriptors we hold; the target is a standard stream.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return Err(Error::sys(
                format!("dup2 onto fd {target}"),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

// ANCHOR: intermediate
/// The intermediate process: enters or creates the namespaces, then forks
/// the container's first process and reports its pid.
fn intermediate_main(
    plan: &Plan,
    stdio: Stdio,
    chan: &Channel,
) -> Result<std::convert::Infallible> {
    // BEGIN SOLUTION 01.2
    reset_signals()?;
    // If the caller dies while we are setting up, die with it.
    // SAFETY: prctl only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    redirect(&stdio.stdin, 0)?;
    redirect(&stdio.stdout, 1)?;
    redirect(&stdio.stderr, 2)?;
    drop(stdio);
    join_cgroups(plan.cgroup_procs)?;

    // Open everything we will join *before* joining anything: once we are
    // in another mount namespace, /proc/PID may name a different process.
    let mut joins = Vec::new();
    for (ns, mode) in &plan.namespaces {
        if let NsMode::Join(path) = mode {
            let fd = std::fs::File::open(path).map_err(|e| Error::io("open namespace", path, e))?;
            joins.push((*ns, fd));
        }
    }
    joins.sort_by_key(|(ns, _)| Namespace::ALL.iter().position(|n| n == ns));

    // Namespaces to join are joined first, as far as the caller's
    // privileges go. Each namespace belongs to the user namespace that made
    // it: from inside a user namespace we would be nobody to, say, the
    // network namespace the engine made on the host (setns: EPERM). Those
    // refused now (an ordinary user joining a mount namespace needs
    // privileges it has only inside the container's user namespace) are
    // joined again after the user namespace.
    let mut refused = Vec::new();
    for (ns, fd) in joins.iter().filter(|(ns, _)| *ns != Namespace::User) {
        match nix::sched::setns(fd.as_fd(), ns.clone_flag()) {
            Ok(()) => {}
            Err(nix::errno::Errno::EPERM) => refused.push((ns, fd)),
            Err(e) => return Err(Error::sys(format!("join the {ns} namespace"), e)),
        }
    }
    if let Some((_, fd)) = joins.iter().find(|(ns, _)| *ns == Namespace::User) {
        nix::sched::setns(fd.as_fd(), CloneFlags::CLONE_NEWUSER)
            .ctx(|| "join the user namespace".into())?;
        become_root_if_mapped()?;
    }
    for (ns, fd) in refused {
        nix::sched::setns(fd.as_fd(), ns.clone_flag())
            .ctx(|| format!("join the {ns} namespace"))?;
    }
    // Then a new user namespace: it is what makes us root enough for the
    // namespaces still to make, also when the caller is an ordinary user.
    if plan.namespaces.get(&Namespace::User) == Some(&NsMode::New) {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
            .ctx(|| "unshare the user namespace".into())?;
        chan.send(&Message::UserNamespaceReady)?;
        chan.expect(&Message::MapsWritten)?;
        become_root_if_mapped()?;
    }
    let mut flags = CloneFlags::empty();
    for (ns, mode) in &plan.namespaces {
        if *mode == NsMode::New && *ns != Namespace::User {
            flags |= ns.clone_flag();
        }
    }
    nix::sched::unshare(flags).ctx(|| format!("unshare {flags:?}"))?;

    // SAFETY: we are single-threaded (a forked child), so fork is safe.
    match unsafe { fork() }.ctx(|| "fork the container's first process".into())? {
        ForkResult::Child => child_body(chan, || container_main(plan, chan)),
        ForkResult::Parent { child } => {
            chan.send(&Message::Pid(child.as_raw()))?;
            // SAFETY: our job is done; the caller adopts `child`.
            unsafe { libc::_exit(0) }
        }
    }
    // END SOLUTION
}
// ANCHOR_END: intermediate

/// Joins the cgroups the caller chose (lab 02) by writing `0`, meaning
/// "the writer", into each `cgroup.procs`. This happens before any
/// namespace is created: every process of the container then starts inside
/// the limits, and a new cgroup namespace takes this cgroup as its root.
fn join_cgroups(procs: &[PathBuf]) -> Result<()> {
    for file in procs {
        std::fs::write(file, "0").map_err(|e| Error::io("join cgroup: write 0 to", file, e))?;
    }
    Ok(())
}

/// Mounts the container's root filesystem (an overlay, lab 03) on `rootfs`.
/// Our mounts are made private first: this mount namespace is a copy of the
/// host's, and on a shared mount the new one would show up there too.
fn mount_root(root: &crate::fsmount::RootfsMount, rootfs: &Path) -> Result<()> {
    crate::fsmount::make_mounts_private()?;
    root.mount_on(rootfs)
}

/// After entering a user namespace our ids are whatever our host ids map
/// to; switch to the namespace's root when it exists, so that we create
/// files and mounts as root inside.
fn become_root_if_mapped() -> Result<()> {
    let uid_mapped = std::fs::read_to_string("/proc/self/uid_map")
        .ok()
        .and_then(|t| idmap::parse_proc_map(&t).ok())
        .is_some_and(|maps| maps.iter().any(|m| m.to_host(0).is_some()));
    if uid_mapped {
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .ctx(|| "setresgid 0 in the user namespace".into())?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .ctx(|| "setresuid 0 in the user namespace".into())?;
    }
    Ok(())
}

// ANCHOR: container_main
/// The container's first process: builds the filesystem view (when creating),
/// then becomes the command — or, with `--init`, stays as PID 1 and runs the
/// command as its child.
fn container_main(plan: &Plan, chan: &Channel) -> Result<std::convert::Infallible> {
    if let Some(config) = plan.create {
        let in_user_ns = config.new_namespace(Namespace::User);
        let opts = RootfsOptions {
            in_user_ns,
            new_net_ns: config.new_namespace(Namespace::Network),
            new_ipc_ns: config.new_namespace(Namespace::Ipc),
            tty_gid_mapped: !in_user_ns
                || config.gid_mappings.iter().any(|m| m.to_host(5).is_some()),
        };
        // Device nodes need exact permissions, not ones filtered by our umask.
        nix::sys::stat::umask(Mode::empty());
        if let Some(root) = &config.rootfs_mount {
            mount_root(root, &config.rootfs)?;
        }
        rootfs::setup(&Linux, config, &opts)?;
        if config.new_namespace(Namespace::Network) {
            // A new network namespace has only a loopback device, and it is
            // down. Docker brings it up, so `localhost` works inside.
            crate::netns::loopback_up()?;
        }
    }
    if plan.init {
        // Block every signal before forking, so none is lost before the
        // init loop starts waiting for them.
        let all = SigSet::all();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None).ctx(|| "block signals".into())?;
        // SAFETY: single-threaded; the child execs or exits.
        match unsafe { fork() }.ctx(|| "fork the command under init".into())? {
            ForkResult::Child => {
                reset_signals()?;
                exec_command(plan.process, chan)
            }
            ForkResult::Parent { child } => {
                // Init never executes anything, so nothing closes the
                // descriptors it inherited from the engine: close them all
                // but stdio. That includes our copy of the channel, so the
                // caller learns of the command's exec from the child's copy
                // alone. (We never return from here; nothing is dropped.)
                let _ = chan.as_raw_fd();
                // SAFETY: closes descriptors this process no longer uses.
                unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
                crate::init::run(child)
            }
        }
    } else {
        exec_command(plan.process, chan)
    }
}
// ANCHOR_END: container_main

// ANCHOR: exec_command
/// The last steps before the command runs: a session (and terminal) of its
/// own, the user's ids, the capabilities, the working directory, and finally
/// `execve`. From here on no engine code runs in this process.
fn exec_command(p: &ProcessSpec, chan: &Channel) -> Result<std::convert::Infallible> {
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if p.terminal {
        let master = crate::terminal::open_in_container()?;
        if let Some((rows, cols)) = p.console_size {
            crate::terminal::set_window_size(0, crate::terminal::WindowSize { rows, cols })?;
        }
        chan.send_with_fd(&Message::Terminal, Some(master.as_raw_fd()))?;
    }
    // Capabilities leave the bounding set while we are still root, since
    // dropping them needs CAP_SETPCAP.
    capabilities::limit_bounding(&p.capabilities)?;
    let groups: Vec<Gid> = p
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match nix::unistd::setgroups(&groups) {
        Ok(()) => {}
        // In a user namespace with setgroups denied (rootless), we cannot
        // set groups; that is harmless when the list holds nothing beyond
        // the primary group, which setresgid below gives us anyway.
        Err(nix::errno::Errno::EPERM) if p.additional_gids.iter().all(|g| *g == p.gid) => {}
        Err(e) => return Err(Error::sys(format!("setgroups {:?}", p.additional_gids), e)),
    }
    let (uid, gid) = (Uid::from_raw(p.uid), Gid::from_raw(p.gid));
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("setresgid {gid}"))?;
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("setresuid {uid}"))?;
    capabilities::apply(&p.capabilities)?;
    if p.no_new_privileges {
        // SAFETY: prctl only sets a flag on this process.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(Error::sys("set no_new_privs", nix::errno::Errno::last()));
        }
    }
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    nix::unistd::chdir(&p.cwd)
        .ctx(|| format!("chdir to the working directory {}", p.cwd.display()))?;

    let env: Vec<CString> = p.env.iter().map(|e| cstring(e)).collect::<Result<_>>()?;
    let args: Vec<CString> = p.args.iter().map(|a| cstring(a)).collect::<Result<_>>()?;
    let path_var = p
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    // Anything the engine left open must not leak into the container.
    // SAFETY: close_range only marks descriptors close-on-exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Err(execvpe(&p.args[0], path_var, &args, &env))
}
// ANCHOR_END: exec_command

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Invalid(format!("{s:?} contains a NUL byte")))
}

// ANCHOR: execvpe
/// Looks `cmd` up in `path_var` the way a shell does and executes the first
/// match. Returns only on failure, with Docker's distinction: nothing found
/// at all is "not found" (127); found but refused is "permission denied" (126).
fn execvpe(cmd: &str, path_var: &str, args: &[CString], env: &[CString]) -> Error {
    // BEGIN SOLUTION 01.2
    let candidates: Vec<PathBuf> = if cmd.contains('/') {
        vec![PathBuf::from(cmd)]
    } else {
        path_var
            .split(':')
            .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(cmd))
            .collect()
    };
    let mut denied = false;
    for candidate in candidates {
        let Ok(c) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        let mut attempts = 0;
        let result = loop {
            match nix::unistd::execve(&c, args, env) {
                // "Text file busy": some process still has the file open for
                // writing — often a forked child that inherited the
                // descriptor of a copy in progress and has not exec'd yet.
                // It goes away within milliseconds; try again.
                Err(nix::errno::Errno::ETXTBSY) if attempts < 200 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other,
            }
        };
        match result {
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => continue,
            Err(nix::errno::Errno::EACCES) => denied = true,
            Err(e) => return Error::Child(format!("exec {}: {e}", candidate.display())),
        }
    }
    if denied {
        Error::NotExecutable(cmd.to_string())
    } else {
        Error::NotFound(cmd.to_string())
    }
    // END SOLUTION
}
// ANCHOR_END: execvpe
