//! v2 cpu controller: `cpu.weight` is the relative weight (1..10000,
//! default 100), `cpu.max` holds "quota period" (or "max period").

use std::path::Path;

use crate::error::Result;
use crate::fs;
use crate::resources::{Resources, shares_to_weight};
use crate::stats::Stats;

pub const WEIGHT: &str = "cpu.weight";
pub const MAX: &str = "cpu.max";
pub const STAT: &str = "cpu.stat";

// ANCHOR: apply
/// Converts shares to a weight, and writes quota and period in one line.
pub fn apply(dir: &Path, r: &Resources) -> Result<()> {
    // BEGIN SOLUTION 02.3
    // STARTER: // Until step 02.3, a container without CPU limits needs nothing here.
    // STARTER: if r.cpu_shares.is_none() && r.cpu_period.is_none() && r.cpu_quota.is_none() {
    // STARTER:     return Ok(());
    // STARTER: }
    // STARTER: todo!()
    if let Some(shares) = r.cpu_shares {
        fs::write(dir, WEIGHT, shares_to_weight(shares))?;
    }
    if let Some(quota) = r.cpu_quota {
        let period = r.cpu_period.unwrap_or(crate::resources::CPU_PERIOD_US);
        fs::write(dir, MAX, format!("{quota} {period}"))?;
    }
    Ok(())
    // END SOLUTION
}
// ANCHOR_END: apply

/// Usage and throttling from `cpu.stat` (v2 reports microseconds). The
/// file exists in every v2 cgroup, with or without the cpu controller.
pub fn stats(dir: &Path, s: &mut Stats) -> Result<()> {
    let Some(text) = fs::read_optional(dir, STAT)? else {
        return Ok(());
    };
    s.cpu_usage_ns = fs::keyed(&text, "usage_usec").unwrap_or(0) * 1000;
    s.cpu_periods = fs::keyed(&text, "nr_periods").unwrap_or(0);
    s.cpu_throttled_periods = fs::keyed(&text, "nr_throttled").unwrap_or(0);
    s.cpu_throttled_ns = fs::keyed(&text, "throttled_usec").unwrap_or(0) * 1000;
    Ok(())
}
