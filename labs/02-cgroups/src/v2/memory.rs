//! v2 memory controller: `memory.max` caps memory, `memory.swap.max` caps
//! swap alone (v1 capped memory plus swap together).

use std::path::Path;

use crate::error::Result;
use crate::fs;
use crate::resources::Resources;
use crate::stats::Stats;

pub const MAX: &str = "memory.max";
pub const SWAP_MAX: &str = "memory.swap.max";
pub const CURRENT: &str = "memory.current";
pub const PEAK: &str = "memory.peak";
pub const EVENTS: &str = "memory.events";

// ANCHOR: apply
/// Writes the memory limit and the swap limit, converting Docker's
/// memory-plus-swap figure into swap alone.
pub fn apply(dir: &Path, r: &Resources) -> Result<()> {
    // BEGIN SOLUTION 02.2
    let Some(memory) = r.memory else {
        return Ok(());
    };
    fs::write(dir, MAX, memory)?;
    let swap = match r.memory_swap {
        Some(-1) => "max".to_string(),
        Some(total) => (total as u64).saturating_sub(memory).to_string(),
        None => memory.to_string(), // Docker's default: as much swap as memory
    };
    if dir.join(SWAP_MAX).exists() || !crate::manager::is_cgroupfs(dir) {
        fs::write(dir, SWAP_MAX, swap)?;
    } else if r.memory_swap.is_some() {
        return Err(crate::Error::Unsupported(
            "--memory-swap needs swap accounting, which this kernel lacks \
             (memory.swap.max is missing: build it with CONFIG_MEMCG_SWAP)"
                .into(),
        ));
    }
    Ok(())
    // END SOLUTION
}
// ANCHOR_END: apply

/// Usage, peak (Linux 5.19+), limit, and `oom_kill` from `memory.events`.
pub fn stats(dir: &Path, s: &mut Stats) -> Result<()> {
    s.memory_usage = fs::read_u64(dir, CURRENT)?.unwrap_or(0);
    s.memory_peak = fs::read_optional(dir, PEAK)?.and_then(|t| t.parse().ok());
    s.memory_limit = fs::read_u64(dir, MAX)?;
    let events = fs::read(dir, EVENTS)?;
    s.oom_kills = fs::keyed(&events, "oom_kill").unwrap_or(0);
    Ok(())
}
