//! pids controller (the same files on v1 and v2): `pids.max` caps how many
//! processes and threads the cgroup may hold; a fork beyond it fails with
//! EAGAIN, which is what stops a fork bomb.

use std::path::Path;

use crate::error::Result;
use crate::fs;
use crate::resources::Resources;
use crate::stats::Stats;

pub const MAX: &str = "pids.max";
pub const CURRENT: &str = "pids.current";
pub const EVENTS: &str = "pids.events";

// ANCHOR: apply
/// Writes the process limit.
pub fn apply(dir: &Path, r: &Resources) -> Result<()> {
    // BEGIN SOLUTION 02.4
    // STARTER: // Until step 02.4, a container without a pids limit needs nothing here.
    // STARTER: if r.pids.is_none() {
    // STARTER:     return Ok(());
    // STARTER: }
    // STARTER: todo!()
    match r.pids {
        Some(max) => fs::write(dir, MAX, max),
        None => Ok(()),
    }
    // END SOLUTION
}
// ANCHOR_END: apply

/// Current count, limit, and refused forks (`max` in `pids.events`).
pub fn stats(dir: &Path, s: &mut Stats) -> Result<()> {
    s.pids_current = fs::read_u64(dir, CURRENT)?.unwrap_or(0);
    s.pids_limit = fs::read_u64(dir, MAX)?;
    s.pids_refused = fs::read_optional(dir, EVENTS)?
        .and_then(|t| fs::keyed(&t, "max"))
        .unwrap_or(0);
    Ok(())
}
