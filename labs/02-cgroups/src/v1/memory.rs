//! v1 memory controller: `memory.limit_in_bytes` caps memory (page cache
//! included), `memory.memsw.limit_in_bytes` caps memory plus swap.

use std::path::Path;

use crate::error::{Error, Result};
use crate::fs;
use crate::resources::Resources;
use crate::stats::Stats;

pub const LIMIT: &str = "memory.limit_in_bytes";
pub const MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";
pub const USAGE: &str = "memory.usage_in_bytes";
pub const MAX_USAGE: &str = "memory.max_usage_in_bytes";
pub const OOM_CONTROL: &str = "memory.oom_control";

/// v1 writes "no limit" as the largest page-aligned number; anything this
/// big means unlimited.
const UNLIMITED: u64 = 1 << 62;

// ANCHOR: apply
/// Writes the memory and swap limits. Order matters: the kernel insists
/// that memory+swap is never below memory, so memory goes first.
pub fn apply(dir: &Path, r: &Resources) -> Result<()> {
    // BEGIN SOLUTION 02.2
    let Some(memory) = r.memory else {
        return Ok(());
    };
    fs::write(dir, LIMIT, memory)?;
    // Docker's default when only --memory is given: as much swap as memory.
    let swap = r.memory_swap.unwrap_or(2 * memory as i64);
    if !dir.join(MEMSW_LIMIT).exists() {
        if r.memory_swap.is_some() {
            return Err(Error::Unsupported(
                "--memory-swap needs swap accounting, which this kernel has off \
                 (boot with swapaccount=1, or use cgroup v2)"
                    .into(),
            ));
        }
        return Ok(());
    }
    fs::write(dir, MEMSW_LIMIT, swap)
    // END SOLUTION
}
// ANCHOR_END: apply

/// Usage, peak, limit and the OOM kill count (`oom_kill` in
/// `memory.oom_control`).
pub fn stats(dir: &Path, s: &mut Stats) -> Result<()> {
    s.memory_usage = fs::read_u64(dir, USAGE)?.unwrap_or(0);
    s.memory_peak = fs::read_u64(dir, MAX_USAGE)?;
    s.memory_limit = fs::read_u64(dir, LIMIT)?.filter(|l| *l < UNLIMITED);
    let oom = fs::read(dir, OOM_CONTROL)?;
    s.oom_kills = fs::keyed(&oom, "oom_kill").unwrap_or(0);
    Ok(())
}
