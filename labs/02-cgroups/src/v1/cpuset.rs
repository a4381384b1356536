//! v1 cpuset controller: `cpuset.cpus` and `cpuset.mems` say which CPUs and
//! memory nodes the processes may use.

use std::path::Path;

use crate::error::Result;
use crate::fs;
use crate::resources::Resources;

pub const CPUS: &str = "cpuset.cpus";
pub const MEMS: &str = "cpuset.mems";

/// A new v1 cpuset is empty, and a process cannot join an empty cpuset
/// (ENOSPC). Fill each empty list from the parent directory.
pub fn inherit(dir: &Path) -> Result<()> {
    let parent = dir.parent().expect("a cgroup below the mount point");
    for file in [CPUS, MEMS] {
        if fs::read_optional(dir, file)?.unwrap_or_default().is_empty() {
            let value = fs::read_optional(parent, file)?.unwrap_or_default();
            if !value.is_empty() {
                fs::write(dir, file, value)?;
            }
        }
    }
    Ok(())
}

/// Restricts the CPUs.
pub fn apply(dir: &Path, r: &Resources) -> Result<()> {
    match &r.cpuset_cpus {
        Some(cpus) => fs::write(dir, CPUS, cpus),
        None => Ok(()),
    }
}
