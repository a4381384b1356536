//! Helpers for lab 02's kernel tests: a busybox container in a fresh
//! cgroup, its output captured, and the cgroup removed afterwards.

#![allow(dead_code)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use cgroups::container::{Limited, spawn_limited};
use cgroups::{CgroupManager, Hierarchy, Manager, Resources};
use namespaces::{ContainerConfig, Exit, Stdio};

/// The machine's cgroup setup.
pub fn hierarchy() -> Hierarchy {
    cgroups::detect(Path::new("/sys/fs/cgroup"), Path::new("/proc")).unwrap()
}

/// A cgroup name no other test uses.
pub fn unique_name(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A busybox root with the probe at /probe.
pub fn rootfs() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("lab02-").tempdir().unwrap();
    namespaces::host::populate_rootfs(dir.path()).unwrap();
    std::fs::copy(testkit::probe::probe_path(), dir.path().join("probe")).unwrap();
    dir
}

/// A container running `sh -c SCRIPT` with `/sys/fs/cgroup` mounted.
pub fn config(root: &tempfile::TempDir, hierarchy: &Hierarchy, args: &[&str]) -> ContainerConfig {
    let mut c = ContainerConfig::new(root.path(), args.iter().map(|s| s.to_string()).collect());
    c.mounts
        .extend(cgroups::container::cgroup_mounts(hierarchy, false));
    c
}

/// A running container; dropping it kills what is left and removes the cgroup.
pub struct Container {
    pub limited: Option<Limited>,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn reader(fd: OwnedFd) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::fs::File::from(fd).read_to_string(&mut s);
        s
    })
}

/// Standard input from `/dev/null`, and pipes for the output, whose read
/// ends are returned too.
fn stdio() -> (Stdio, OwnedFd, OwnedFd) {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let stdio = Stdio {
        stdin: Some(std::fs::File::open("/dev/null").unwrap().into()),
        stdout: Some(out_w),
        stderr: Some(err_w),
    };
    (stdio, out_r, err_r)
}

/// Starts `config` in a new cgroup with `resources`, without step 02.7's
/// `spawn_limited`, so that the tests of the steps before it can run: the
/// cgroup is made with the limits, and lab 1's intermediate process joins
/// it before it creates the namespaces (`cgroup_procs`).
pub fn start(
    hierarchy: &Hierarchy,
    test: &str,
    resources: &Resources,
    mut config: ContainerConfig,
) -> Container {
    let (stdio, out, err) = stdio();
    let group = Manager::new(hierarchy, "berth", &unique_name(test)).unwrap();
    // `create` removes what it made when it fails, but not when it panics
    // (at a `todo!()` of a step not written yet): then this does.
    let made = std::panic::catch_unwind(|| group.create(resources));
    if !matches!(made, Ok(Ok(()))) {
        let _ = group.delete();
    }
    match made {
        Ok(result) => result.unwrap_or_else(|e| panic!("cannot make the container's cgroup: {e}")),
        Err(panic) => std::panic::resume_unwind(panic),
    }
    config.cgroup_procs = group.procs_files();
    let running = namespaces::spawn(&config, stdio).unwrap_or_else(|e| {
        let _ = group.delete();
        panic!("container did not start: {e}")
    });
    Container {
        limited: Some(Limited {
            running,
            cgroup: group,
        }),
        out: Some(reader(out)),
        err: Some(reader(err)),
    }
}

/// Starts `config` in a new cgroup with `resources`, with step 02.7's
/// `spawn_limited`.
pub fn start_limited(
    hierarchy: &Hierarchy,
    test: &str,
    resources: &Resources,
    config: ContainerConfig,
) -> Container {
    let (stdio, out, err) = stdio();
    let limited = spawn_limited(
        hierarchy,
        "berth",
        &unique_name(test),
        resources,
        config,
        stdio,
    )
    .unwrap_or_else(|e| panic!("container did not start: {e}"));
    Container {
        limited: Some(limited),
        out: Some(reader(out)),
        err: Some(reader(err)),
    }
}

/// What a finished container printed, and its cgroup's last counters.
pub struct Output {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    pub stats: cgroups::Stats,
}

impl Container {
    pub fn cgroup(&self) -> &cgroups::Manager {
        &self.limited.as_ref().unwrap().cgroup
    }

    /// Waits for the container's first process, reads the counters, and
    /// removes the cgroup.
    pub fn finish(mut self) -> Output {
        let limited = self.limited.take().unwrap();
        let exit = limited.running.wait().unwrap();
        let stats = limited.cgroup.stats().unwrap();
        limited.cgroup.delete().unwrap();
        Output {
            exit,
            stdout: self.out.take().unwrap().join().unwrap(),
            stderr: self.err.take().unwrap().join().unwrap(),
            stats,
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(limited) = self.limited.take() {
            let _ = limited.cgroup.thaw();
            let _ = limited.cgroup.kill_all();
            let _ = limited.running.wait();
            let _ = limited.cgroup.delete();
        }
    }
}
