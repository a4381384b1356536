//! One interface over both cgroup versions.
//!
//! A container's cgroup is a directory: `berth/<id>` under every v1
//! controller's hierarchy, or once in the v2 tree. The engine asks the same
//! things of either (create it with limits, put a process in, read the
//! counters, freeze, delete) and [`Manager`] picks the implementation that
//! matches the machine.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mode::Hierarchy;
use crate::resources::Resources;
use crate::stats::Stats;
use crate::{v1, v2};

// ANCHOR: trait
/// What the engine does with a container's cgroup, whatever the version.
pub trait CgroupManager {
    /// Creates the cgroup (and the engine's parent group) and writes the
    /// limits. On failure nothing is left behind.
    fn create(&self, resources: &Resources) -> Result<()>;
    /// The `cgroup.procs` files a process writes `0` into to join this
    /// cgroup (one per v1 hierarchy, one on v2).
    fn procs_files(&self) -> Vec<PathBuf>;
    /// Moves the process `pid` (all its threads) into the cgroup.
    fn add(&self, pid: i32) -> Result<()> {
        for file in self.procs_files() {
            std::fs::write(&file, pid.to_string())
                .map_err(|e| Error::io(format!("write {pid} to"), &file, e))?;
        }
        Ok(())
    }
    /// The processes in the cgroup.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Reads the counters.
    fn stats(&self) -> Result<Stats>;
    /// Stops every process in the cgroup where it stands (`docker pause`),
    /// and returns once they all are stopped.
    fn freeze(&self) -> Result<()>;
    /// Lets them run again (`docker unpause`).
    fn thaw(&self) -> Result<()>;
    /// Kills every process in the cgroup.
    fn kill_all(&self) -> Result<()>;
    /// Removes the cgroup once its processes are gone, and the engine's
    /// parent group if nothing else is in it.
    fn delete(&self) -> Result<()>;
    /// The cgroup's directories, for `inspect` and for debugging.
    fn paths(&self) -> Vec<PathBuf>;
}
// ANCHOR_END: trait

/// The implementation for this machine.
#[derive(Debug, Clone)]
pub enum Manager {
    V1(v1::Manager),
    V2(v2::Manager),
}

impl Manager {
    /// The cgroup `parent/name` on `hierarchy` (nothing is created yet).
    /// `parent` is the engine's own group, `berth` by default.
    pub fn new(hierarchy: &Hierarchy, parent: &str, name: &str) -> Result<Self> {
        for (what, part) in [("parent", parent), ("name", name)] {
            if part.is_empty() || part.contains('/') || part.starts_with('.') {
                return Err(Error::Invalid(format!(
                    "invalid cgroup {what} {part:?}: use a plain directory name"
                )));
            }
        }
        Ok(if hierarchy.uses_v2() {
            Manager::V2(v2::Manager::new(hierarchy, parent, name)?)
        } else {
            Manager::V1(v1::Manager::new(hierarchy, parent, name))
        })
    }

    fn inner(&self) -> &dyn CgroupManager {
        match self {
            Manager::V1(m) => m,
            Manager::V2(m) => m,
        }
    }
}

impl CgroupManager for Manager {
    fn create(&self, resources: &Resources) -> Result<()> {
        self.inner().create(resources)
    }
    fn procs_files(&self) -> Vec<PathBuf> {
        self.inner().procs_files()
    }
    fn pids(&self) -> Result<Vec<i32>> {
        self.inner().pids()
    }
    fn stats(&self) -> Result<Stats> {
        self.inner().stats()
    }
    fn freeze(&self) -> Result<()> {
        self.inner().freeze()
    }
    fn thaw(&self) -> Result<()> {
        self.inner().thaw()
    }
    fn kill_all(&self) -> Result<()> {
        self.inner().kill_all()
    }
    fn delete(&self) -> Result<()> {
        self.inner().delete()
    }
    fn paths(&self) -> Vec<PathBuf> {
        self.inner().paths()
    }
}

/// Reads the pids listed in `dir/cgroup.procs`.
pub(crate) fn read_pids(dir: &Path) -> Result<Vec<i32>> {
    let text = crate::fs::read(dir, "cgroup.procs")?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Removes a cgroup directory. Only `rmdir` works on a cgroup (its files
/// are not real files), and only once no process is left; processes that
/// were just killed take a moment to leave, so busy is retried for a while.
pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && !is_cgroupfs(dir) => {
                // A test's temporary directory: remove what the test wrote.
                return std::fs::remove_dir_all(dir).map_err(|e| Error::io("remove", dir, e));
            }
            Err(e) => return Err(Error::io("remove cgroup", dir, e)),
        }
    }
}

/// Removes the engine's parent group if it is empty; another container's
/// cgroup in it keeps it (EBUSY or ENOTEMPTY), which is fine.
pub(crate) fn remove_parent_if_empty(dir: &Path) {
    if is_cgroupfs(dir) {
        let _lock = ParentLock::take(dir);
        let _ = std::fs::remove_dir(dir);
    }
}

/// Serialises the engine's parent group between `berth` processes.
///
/// One process removing the empty parent (`rmdir berth`) while another has
/// just made it and is about to make its own container's group inside would
/// leave the second with ENOENT, or (v1 cpuset) with a fresh parent whose
/// CPU list is still empty. Both steps therefore run under an exclusive
/// `flock` on the directory that holds the parent, usually the hierarchy's
/// mount point: `flock` works on any directory, cgroupfs included.
pub(crate) struct ParentLock {
    _held: Option<std::fs::File>,
}

impl ParentLock {
    /// Blocks until the lock is ours; released on drop. Without a directory
    /// to lock (the parent is a mount point itself) it does nothing.
    pub(crate) fn take(parent: &Path) -> Self {
        let file = parent
            .parent()
            .and_then(|holder| std::fs::File::open(holder).ok())
            .filter(|f| {
                use std::os::fd::AsRawFd;
                // SAFETY: flock on a descriptor we own; EINTR is retried.
                loop {
                    match unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } {
                        0 => return true,
                        _ if std::io::Error::last_os_error().raw_os_error()
                            == Some(libc::EINTR) => {}
                        _ => return false,
                    }
                }
            });
        ParentLock { _held: file }
    }
}

/// Whether `dir` is on a real cgroup filesystem (and not a test's tmpdir).
pub(crate) fn is_cgroupfs(dir: &Path) -> bool {
    crate::mode::fs_magic(dir).is_ok_and(|m| {
        m == crate::mode::CGROUP2_SUPER_MAGIC || m == crate::mode::CGROUP_SUPER_MAGIC
    })
}

/// Creates `dir` unless it exists (a cgroup left from an earlier start of
/// the same container is reused).
pub(crate) fn make_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("create cgroup", dir, e)),
    }
}

/// Creates `dir` and any missing parents (the engine's group).
pub(crate) fn make_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create cgroup", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::DeviceRule;

    fn limits() -> Resources {
        Resources {
            memory: Some(64 << 20),
            memory_swap: None,
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpuset_cpus: Some("1".into()),
            pids: Some(20),
            devices: vec![DeviceRule::allow_char(Some(10), Some(229), "rwm")],
            device_nodes: Vec::new(),
        }
    }

    #[test]
    fn v1_writes_each_controller_in_its_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::legacy(root.path());
        for c in crate::mode::Controller::ALL {
            std::fs::create_dir(root.path().join(c.name())).unwrap();
        }
        std::fs::write(root.path().join("cpuset/cpuset.cpus"), "0-1").unwrap();
        std::fs::write(root.path().join("cpuset/cpuset.mems"), "0").unwrap();
        // The kernel would create this file in the new group (when swap
        // accounting is on); pretend it did.
        std::fs::create_dir_all(root.path().join("memory/berth/c1")).unwrap();
        std::fs::write(
            root.path()
                .join("memory/berth/c1/memory.memsw.limit_in_bytes"),
            "",
        )
        .unwrap();
        let _ = crate::fs::take_writes(root.path());
        let m = Manager::new(&hierarchy, "berth", "c1").unwrap();
        m.create(&limits()).unwrap();
        insta::assert_snapshot!(crate::fs::take_writes(root.path()));
        let procs: Vec<String> = m
            .procs_files()
            .iter()
            .map(|p| p.strip_prefix(root.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(procs.len(), 7, "{procs:?}");
        assert!(procs.contains(&"memory/berth/c1/cgroup.procs".to_string()));
        m.delete().unwrap();
        assert!(!root.path().join("memory/berth/c1").exists());
    }

    #[test]
    fn v2_writes_one_directory() {
        let root = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::unified(
            root.path(),
            &["cpuset", "cpu", "io", "memory", "hugetlb", "pids"],
        );
        let m = Manager::new(&hierarchy, "berth", "c1").unwrap();
        m.create(&limits()).unwrap();
        insta::assert_snapshot!(crate::fs::take_writes(root.path()));
        assert_eq!(
            m.procs_files(),
            vec![root.path().join("berth/c1/cgroup.procs")]
        );
        m.delete().unwrap();
        assert!(!root.path().join("berth/c1").exists());
    }

    #[test]
    fn v2_says_which_controller_is_missing() {
        let root = tempfile::tempdir().unwrap();
        let hierarchy = Hierarchy::unified(root.path(), &["cpu", "memory"]);
        let m = Manager::new(&hierarchy, "berth", "c1").unwrap();
        let err = m.create(&limits()).unwrap_err().to_string();
        assert!(
            err.starts_with("the cpuset controller is not enabled"),
            "{err}"
        );
        assert!(err.contains("echo +cpuset >"), "{err}");
        assert!(
            !root.path().join("berth/c1").exists(),
            "nothing is left behind"
        );
    }

    #[test]
    fn v1_says_which_controller_is_missing() {
        let root = tempfile::tempdir().unwrap();
        let mut hierarchy = Hierarchy::legacy(root.path());
        hierarchy.v1.remove(&crate::mode::Controller::Pids);
        let m = Manager::new(&hierarchy, "berth", "c1").unwrap();
        let err = m.create(&limits()).unwrap_err().to_string();
        assert!(
            err.starts_with("the pids controller is not mounted"),
            "{err}"
        );
    }

    #[test]
    fn names_are_plain() {
        let h = Hierarchy::unified("/sys/fs/cgroup", &[]);
        assert!(Manager::new(&h, "berth", "../escape").is_err());
        assert!(Manager::new(&h, "", "x").is_err());
    }
}
