//! v1 cpu controller: `cpu.shares` is the relative weight, `cpu.cfs_quota_us`
//! per `cpu.cfs_period_us` the hard cap. Usage is in the separate cpuacct
//! controller (often mounted together with cpu as `cpu,cpuacct`).

use std::path::Path;

use crate::error::Result;
use crate::fs;
use crate::resources::Resources;
use crate::stats::Stats;

pub const SHARES: &str = "cpu.shares";
pub const CFS_QUOTA: &str = "cpu.cfs_quota_us";
pub const CFS_PERIOD: &str = "cpu.cfs_period_us";
pub const STAT: &str = "cpu.stat";
pub const USAGE: &str = "cpuacct.usage";

// ANCHOR: apply
/// Writes shares, then period before quota (the kernel checks the quota
/// against the period in force).
pub fn apply(dir: &Path, r: &Resources) -> Result<()> {
    // BEGIN SOLUTION 02.3
    // STARTER: // Until step 02.3, a container without CPU limits needs nothing here.
    // STARTER: if r.cpu_shares.is_none() && r.cpu_period.is_none() && r.cpu_quota.is_none() {
    // STARTER:     return Ok(());
    // STARTER: }
    // STARTER: todo!()
    if let Some(shares) = r.cpu_shares {
        fs::write(dir, SHARES, shares)?;
    }
    if let Some(period) = r.cpu_period {
        fs::write(dir, CFS_PERIOD, period)?;
    }
    if let Some(quota) = r.cpu_quota {
        fs::write(dir, CFS_QUOTA, quota)?;
    }
    Ok(())
    // END SOLUTION
}
// ANCHOR_END: apply

/// Throttling counters from `cpu.stat` (v1 reports time in nanoseconds).
pub fn stats(dir: &Path, s: &mut Stats) -> Result<()> {
    let text = fs::read(dir, STAT)?;
    s.cpu_periods = fs::keyed(&text, "nr_periods").unwrap_or(0);
    s.cpu_throttled_periods = fs::keyed(&text, "nr_throttled").unwrap_or(0);
    s.cpu_throttled_ns = fs::keyed(&text, "throttled_time").unwrap_or(0);
    Ok(())
}

/// CPU time used, from the cpuacct controller's directory.
pub fn usage(dir: &Path, s: &mut Stats) -> Result<()> {
    s.cpu_usage_ns = fs::read_u64(dir, USAGE)?.unwrap_or(0);
    Ok(())
}
