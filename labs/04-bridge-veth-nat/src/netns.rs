//! Named network namespaces.
//!
//! A namespace lives as long as something refers to it: a process in it, an
//! open descriptor, or a bind mount of its `/proc/…/ns/net` file. Bind-mounting
//! it onto an ordinary file gives it a name in the filesystem that outlives
//! every process, which is what `ip netns add NAME` does under
//! `/run/netns/NAME`. An engine does the same, so that it can build a
//! container's network *before* the container's first process exists, and
//! hand the namespace to it by path (runc's `"path"` in `config.json`, lab
//! 01's `NsMode::Join`).
//!
//! Joining a namespace with `setns(2)` changes only the calling *thread*.
//! So [`NetNs::run`] does its work on a new thread, which joins the
//! namespace, runs the closure and ends; the caller's thread never moves.
//! A socket, though, stays in the namespace it was made in, whichever
//! thread uses it afterwards. To get a netlink socket in a namespace
//! ([`NetNs::netlink`], [`NetNs::create_with_netlink`]), the calling thread
//! goes in for the one `socket(2)` call and comes straight back, which is
//! much cheaper than a thread.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::link::Netlink;
use crate::{Error, Result};

/// A network namespace kept alive by a bind mount at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNs {
    path: PathBuf,
}

// ANCHOR: create
impl NetNs {
    /// Makes a new network namespace and pins it at `path` (an empty file is
    /// created there for the bind mount). The namespace starts with only a
    /// loopback device, down.
    pub fn create(path: impl Into<PathBuf>) -> Result<NetNs> {
        let path = path.into();
        NetNs::prepare(&path)?;
        let target = path.clone();
        // A thread of its own: unshare moves only the calling thread, and
        // this one ends right after, leaving the namespace to the mount.
        let made = std::thread::spawn(move || NetNs::unshare_and_pin(&target))
            .join()
            .map_err(|_| Error::Invalid("the namespace thread panicked".into()))?;
        Ok(NetNs::made(path, made)?.0)
    }

    /// Like [`NetNs::create`], and also opens a netlink socket in the new
    /// namespace, without starting a thread: the calling thread makes the
    /// namespace, which puts it inside, opens the socket there and goes
    /// back to its own namespace (see `visit` below). Starting a thread and
    /// waiting for it to end is two trips through the scheduler, which on
    /// a busy machine take longer than making the namespace.
    pub fn create_with_netlink(path: impl Into<PathBuf>) -> Result<(NetNs, Netlink)> {
        let path = path.into();
        NetNs::prepare(&path)?;
        let made = visit(|| NetNs::unshare_and_pin(&path), Netlink::open);
        NetNs::made(path, made)
    }

    /// Makes the directories of `path` and the empty file to mount on.
    fn prepare(path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        File::create(path).map_err(|e| Error::io("create", path, e))?;
        Ok(())
    }

    /// The namespace pinned at `path`, with `value`; if making it failed,
    /// the error, once the pin (if there is one) and the file are gone.
    fn made<T>(path: PathBuf, made: Result<T>) -> Result<(NetNs, T)> {
        match made {
            Ok(value) => Ok((NetNs { path }, value)),
            Err(e) => {
                let _ = umount2(&path, MntFlags::MNT_DETACH);
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Moves the calling thread into a new network namespace and bind-mounts
    /// that namespace on `target`, which keeps it alive after the thread
    /// ends.
    fn unshare_and_pin(target: &Path) -> Result<()> {
        // BEGIN SOLUTION 04.1
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::sys("unshare(CLONE_NEWNET)", e))?;
        let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
        mount(
            Some(own.as_str()),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("bind {own} on {}", target.display()), e))
        // END SOLUTION
    }
    // ANCHOR_END: create

    /// Refers to a namespace pinned earlier (by this engine or by `ip netns
    /// add`).
    pub fn open(path: impl Into<PathBuf>) -> Result<NetNs> {
        let path = path.into();
        let ns = NetNs { path };
        ns.fd()?;
        Ok(ns)
    }

    /// Where the namespace is pinned.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A descriptor of the namespace, which `setns(2)` and netlink's
    /// `IFLA_NET_NS_FD` accept.
    pub fn fd(&self) -> Result<OwnedFd> {
        File::open(&self.path)
            .map(OwnedFd::from)
            .map_err(|e| Error::io("open network namespace", &self.path, e))
    }

    // ANCHOR: run
    /// Runs `f` on a new thread that has joined this namespace: sockets it
    /// opens (netlink included) belong to the namespace, and the caller's
    /// own thread stays where it was.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        let fd = self.fd()?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // BEGIN SOLUTION 04.1
                setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::sys(format!("setns {}", self.path.display()), e))?;
                f()
                // END SOLUTION
            })
            .join()
            .map_err(|_| Error::Invalid("a thread in the network namespace panicked".into()))?
        })
    }
    // ANCHOR_END: run

    /// Opens a netlink socket in this namespace and hands it to the
    /// caller. A netlink socket acts on the namespace it was made in,
    /// whichever thread uses it later, so one socket serves the whole
    /// set-up of a container from the caller's thread, where [`NetNs::run`]
    /// for each request would start a thread per request. The socket is
    /// made by the calling thread during a short visit to the namespace
    /// (see `visit` below).
    pub fn netlink(&self) -> Result<Netlink> {
        let fd = self.fd()?;
        visit(
            || {
                setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::sys(format!("setns {}", self.path.display()), e))
            },
            Netlink::open,
        )
    }

    /// Unpins the namespace and removes its file. The namespace itself ends
    /// when nothing else refers to it. Removing one that is already gone
    /// is not an error.
    pub fn remove(self) -> Result<()> {
        remove(&self.path)
    }
}

/// Runs `enter`, which moves the calling thread into another network
/// namespace (`unshare` or `setns`), then `f` there, and brings the thread
/// back to the namespace it was in, with `setns(2)` on a descriptor of that
/// namespace opened before it left; returns what `f` returned. This is how
/// a thread makes a socket in another namespace without starting a thread
/// for it: the socket stays in the namespace it was made in. The thread is
/// away only for those few system calls, and nothing else runs on it
/// meanwhile. Should it fail to come back, it would go on acting on the
/// wrong namespace without knowing it, so the process aborts instead
/// (`setns` to a namespace the thread was just in fails only when memory
/// runs out).
fn visit<T>(enter: impl FnOnce() -> Result<()>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let home = File::open("/proc/thread-self/ns/net")
        .map_err(|e| Error::io("open", "/proc/thread-self/ns/net", e))?;
    let result = enter().and_then(|()| f());
    if let Err(e) = setns(home.as_fd(), CloneFlags::CLONE_NEWNET) {
        eprintln!("cannot return to the thread's own network namespace: {e}");
        std::process::abort();
    }
    result
}

/// Runs `f` on a new thread with network and mount namespaces of its own
/// (every mount made private, loopback up, IP forwarding off): a throwaway
/// "host" for tests and benchmarks. The links, addresses, sysctls, firewall
/// tables and pinned namespaces made there vanish when the thread ends, and
/// the machine's own are never touched. (Forwarding is switched off because
/// a new namespace copies the IPv4 settings of the machine's first one,
/// which may have it on.)
pub fn on_a_new_host<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
                .map_err(|e| Error::sys("unshare(CLONE_NEWNET | CLONE_NEWNS)", e))?;
            namespaces::fsmount::make_mounts_private()
                .map_err(|e| Error::Invalid(e.to_string()))?;
            // Lab 01's loopback (step 01.5), not this lab's set_up (04.2):
            // step 04.1's tests run here before 04.2 is written.
            namespaces::netns::loopback_up().map_err(|e| Error::Invalid(e.to_string()))?;
            crate::sysctl::set(&["net", "ipv4", "ip_forward"], "0")?;
            Ok(f())
        })
        .join()
        .map_err(|_| Error::Invalid("the new host's thread panicked".into()))?
    })
}

/// Unpins the namespace at `path` and removes the file, if they exist.
pub fn remove(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("unmount {}", path.display()), e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// The identity of a namespace file (`net:[4026532271]` as a number): two
/// paths name the same namespace exactly when these are equal.
pub fn inode(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| Error::io("stat", path, e))
}
