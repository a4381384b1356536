//! The `cgroup` section: this process's cgroup membership and, best effort,
//! the limits that apply to it, from cgroup v2 or else cgroup v1 files.

use std::iter;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::util::{read_text, read_trimmed};

/// Where cgroup filesystems are conventionally mounted.
const ROOT: &str = "/sys/fs/cgroup";

/// The `cgroup` section.
#[derive(Debug, Serialize)]
pub struct Cgroup {
    /// The raw lines of /proc/self/cgroup (`0::/path` on a v2-only system).
    pub lines: Option<Vec<String>>,
    pub limits: Limits,
}

/// The limits found for this process, each the raw trimmed content of its
/// file (`max` for no limit in v2), `None` (null) when no such file exists.
#[derive(Debug, Default, Serialize)]
pub struct Limits {
    /// v2 `memory.max`, else v1 `memory/memory.limit_in_bytes`.
    pub memory_max: Option<String>,
    /// v2 `pids.max`, else v1 `pids/pids.max`.
    pub pids_max: Option<String>,
    /// v2 `cpu.max` (`quota period`), else v1 `cpu.cfs_quota_us` and
    /// `cpu.cfs_period_us` joined by a space.
    pub cpu_max: Option<String>,
    /// v2 `cpu.weight`, else v1 `cpu/cpu.shares`.
    pub cpu_weight: Option<String>,
    /// v2 `cpuset.cpus`, else v1 `cpuset/cpuset.cpus`.
    pub cpuset_cpus: Option<String>,
}

/// Reads this process's cgroups and limits.
pub fn read() -> Cgroup {
    let lines: Option<Vec<String>> =
        read_text("/proc/self/cgroup").map(|text| text.lines().map(str::to_owned).collect());
    let membership = lines.as_deref().unwrap_or_default();
    let v2 = |file: &str| read_knob(Path::new(ROOT), own_path(membership, None), file);
    let v1 = |controller: &str, file: &str| {
        read_knob(
            &Path::new(ROOT).join(controller),
            own_path(membership, Some(controller)),
            file,
        )
    };
    let limits = Limits {
        memory_max: v2("memory.max").or_else(|| v1("memory", "memory.limit_in_bytes")),
        pids_max: v2("pids.max").or_else(|| v1("pids", "pids.max")),
        cpu_max: v2("cpu.max").or_else(|| {
            let quota = v1("cpu", "cpu.cfs_quota_us")?;
            let period = v1("cpu", "cpu.cfs_period_us")?;
            Some(format!("{quota} {period}"))
        }),
        cpu_weight: v2("cpu.weight").or_else(|| v1("cpu", "cpu.shares")),
        cpuset_cpus: v2("cpuset.cpus").or_else(|| v1("cpuset", "cpuset.cpus")),
    };
    Cgroup { lines, limits }
}

/// Reads `file` from the process's own cgroup directory under `mount`, or
/// failing that from `mount` itself. The own directory is where the limits
/// are when the host's hierarchy is visible; inside a cgroup namespace the
/// own path is `/` and both are the same.
fn read_knob(mount: &Path, own: Option<&str>, file: &str) -> Option<String> {
    let own_dir: Option<PathBuf> = own
        // A path outside the namespace's root shows as `/../..`: unusable.
        .filter(|path| !path.split('/').any(|part| part == ".."))
        .map(|path| mount.join(path.trim_start_matches('/')));
    own_dir
        .into_iter()
        .chain(iter::once(mount.to_path_buf()))
        .find_map(|dir| read_trimmed(dir.join(file)))
}

/// Finds this process's cgroup path in the lines of /proc/self/cgroup
/// (`hierarchy-id:controllers:path`): the v2 path (`0::/path`) when
/// `controller` is `None`, else the path in the v1 hierarchy holding that
/// controller (`4:cpu,cpuacct:/path`).
pub fn own_path<'a>(lines: &'a [String], controller: Option<&str>) -> Option<&'a str> {
    lines.iter().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (hierarchy, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match controller {
            None => hierarchy == "0" && controllers.is_empty(),
            Some(wanted) => controllers.split(',').any(|c| c == wanted),
        };
        matches.then_some(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn finds_v2_path() {
        let v2 = lines("0::/user.slice/session-1.scope\n");
        assert_eq!(own_path(&v2, None), Some("/user.slice/session-1.scope"));
        assert_eq!(own_path(&v2, Some("memory")), None);
    }

    #[test]
    fn finds_v1_paths() {
        let v1 = lines("12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/\n");
        assert_eq!(own_path(&v1, Some("cpu")), Some("/docker/abc"));
        assert_eq!(own_path(&v1, Some("cpuacct")), Some("/docker/abc"));
        assert_eq!(own_path(&v1, Some("memory")), None);
        assert_eq!(own_path(&v1, None), Some("/"));
    }

    #[test]
    fn missing_knob_is_none() {
        let mount = Path::new("/nonexistent/cgroup");
        assert_eq!(read_knob(mount, Some("/a/b"), "memory.max"), None);
    }
}
