//! v2 cpuset controller: `cpuset.cpus` as in v1, but an empty list means
//! "the parent's", so nothing needs copying down.

use std::path::Path;

use crate::error::Result;
use crate::fs;
use crate::resources::Resources;

pub const CPUS: &str = "cpuset.cpus";

/// Restricts the CPUs.
pub fn apply(dir: &Path, r: &Resources) -> Result<()> {
    match &r.cpuset_cpus {
        Some(cpus) => fs::write(dir, CPUS, cpus),
        None => Ok(()),
    }
}
