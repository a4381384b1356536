//! What a cgroup reports about its processes: the numbers behind
//! `docker stats`.

use serde::Serialize;

/// One reading of a cgroup's counters. Counters only grow; compare two
/// readings to get a rate (CPU %).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// CPU time used by every process in the cgroup, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// CFS periods in which the cgroup was runnable, and how many of those
    /// ended with the quota used up (the processes had to wait).
    pub cpu_periods: u64,
    pub cpu_throttled_periods: u64,
    /// Total time the processes spent throttled, in nanoseconds.
    pub cpu_throttled_ns: u64,
    /// Memory charged to the cgroup now (page cache included), in bytes.
    pub memory_usage: u64,
    /// The highest `memory_usage` seen, where the kernel records it.
    pub memory_peak: Option<u64>,
    /// The memory limit, `None` for none.
    pub memory_limit: Option<u64>,
    /// How many processes the kernel's OOM killer has killed in this cgroup.
    pub oom_kills: u64,
    /// Processes (and threads) in the cgroup, and the limit.
    pub pids_current: u64,
    pub pids_limit: Option<u64>,
    /// How many times a fork failed because of the limit.
    pub pids_refused: u64,
    /// Whether the cgroup is frozen (paused).
    pub frozen: bool,
}

/// Percent of one CPU used between two readings `elapsed_ns` apart, as
/// Docker shows it (200% means two CPUs kept busy).
pub fn cpu_percent(before: &Stats, after: &Stats, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        return 0.0;
    }
    let used = after.cpu_usage_ns.saturating_sub(before.cpu_usage_ns);
    used as f64 / elapsed_ns as f64 * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_is_a_rate() {
        let a = Stats {
            cpu_usage_ns: 1_000_000_000,
            ..Stats::default()
        };
        let b = Stats {
            cpu_usage_ns: 1_500_000_000,
            ..Stats::default()
        };
        assert_eq!(cpu_percent(&a, &b, 1_000_000_000), 50.0);
        assert_eq!(cpu_percent(&a, &b, 0), 0.0);
    }
}
