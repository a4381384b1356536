//! Limits as plain data, and the parsing of Docker's flags into them.
//!
//! Nothing here touches the kernel: `--memory 64m` becomes 67108864 bytes,
//! `--cpus 0.5` becomes a quota of 50 ms per 100 ms period, and the v1/v2
//! managers turn the numbers into file writes.

use serde::{Deserialize, Serialize};

use crate::devices::{DeviceRule, ResolvedDevice};
use crate::error::{Error, Result};

/// The smallest memory limit Docker accepts; below it a container cannot
/// even start its first process.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// The CFS period berth uses with `--cpus`, as Docker does: 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;
/// cgroup v1's range for `cpu.shares`, and its default.
pub const SHARES_MIN: u64 = 2;
pub const SHARES_MAX: u64 = 262_144;
pub const SHARES_DEFAULT: u64 = 1024;
/// cgroup v2's range for `cpu.weight`, and its default.
pub const WEIGHT_MIN: u64 = 1;
pub const WEIGHT_MAX: u64 = 10_000;
pub const WEIGHT_DEFAULT: u64 = 100;

// ANCHOR: resources
/// What a container may use. `None` means "no limit" (or the kernel's
/// default, for relative settings such as CPU shares).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes (`--memory`).
    pub memory: Option<u64>,
    /// Memory plus swap in bytes (`--memory-swap`); `Some(-1)` is unlimited swap.
    pub memory_swap: Option<i64>,
    /// Relative CPU weight in v1 shares (`--cpu-shares`, default 1024).
    pub cpu_shares: Option<u64>,
    /// CFS quota: this many microseconds of CPU time per period (`--cpus`).
    pub cpu_quota: Option<u64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// CPUs the container may run on, as a list like `0-1,3` (`--cpuset-cpus`).
    pub cpuset_cpus: Option<String>,
    /// Maximum number of processes (and threads) (`--pids-limit`).
    pub pids: Option<u64>,
    /// Device rules after the defaults, from `--device`.
    pub devices: Vec<DeviceRule>,
    /// Device nodes to create in the container for those rules.
    #[serde(default)]
    pub device_nodes: Vec<ResolvedDevice>,
}
// ANCHOR_END: resources

impl Resources {
    /// True when nothing is limited.
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

// ANCHOR: parse_bytes
/// Parses a size as Docker does: a number with an optional unit `b`, `k`,
/// `m`, `g` or `t` (powers of 1024, any case, an optional trailing `b` as
/// in `64mb`): `64m` is 67108864.
pub fn parse_bytes(flag: &str, text: &str) -> Result<u64> {
    // BEGIN SOLUTION 02.2
    let bad = || {
        Error::Invalid(format!(
            "invalid {flag} {text:?}: expected a size such as 64m, 512k or 1g \
             (units b, k, m, g, t; powers of 1024)"
        ))
    };
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
    // END SOLUTION
}
// ANCHOR_END: parse_bytes

/// `--memory`: a size no smaller than [`MIN_MEMORY`].
pub fn parse_memory(text: &str) -> Result<u64> {
    let bytes = parse_bytes("--memory", text)?;
    if bytes < MIN_MEMORY {
        return Err(Error::Invalid(format!(
            "invalid --memory {text:?}: the minimum memory limit is 6m \
             (a smaller cgroup cannot even start a process)"
        )));
    }
    Ok(bytes)
}

/// `--memory-swap`: memory plus swap, `-1` for unlimited swap. It must be
/// at least `--memory`, and means nothing without it.
pub fn parse_memory_swap(text: &str, memory: Option<u64>) -> Result<i64> {
    let Some(memory) = memory else {
        return Err(Error::Invalid(
            "--memory-swap needs --memory as well (it is memory plus swap)".into(),
        ));
    };
    if text.trim() == "-1" {
        return Ok(-1);
    }
    let total = parse_bytes("--memory-swap", text)?;
    if total < memory {
        return Err(Error::Invalid(format!(
            "invalid --memory-swap {text:?}: it is memory plus swap, so it must be at least \
             --memory ({memory} bytes); use -1 for unlimited swap"
        )));
    }
    Ok(total as i64)
}

// ANCHOR: parse_cpus
/// `--cpus 1.5`: a CFS quota of 1.5 periods of CPU time per period, so the
/// container may keep one and a half CPUs busy. Returns (quota, period) in
/// microseconds; `available` is the machine's CPU count.
pub fn parse_cpus(text: &str, available: usize) -> Result<(u64, u64)> {
    // BEGIN SOLUTION 02.3
    let cpus: f64 = text.trim().parse().map_err(|_| {
        Error::Invalid(format!(
            "invalid --cpus {text:?}: expected a number such as 0.5 or 2"
        ))
    })?;
    if !(0.01..=available as f64).contains(&cpus) {
        return Err(Error::Invalid(format!(
            "invalid --cpus {text:?}: the range is 0.01 to {available}.00, as this machine has \
             {available} CPUs"
        )));
    }
    let quota = (cpus * CPU_PERIOD_US as f64).round() as u64;
    Ok((quota, CPU_PERIOD_US))
    // END SOLUTION
}
// ANCHOR_END: parse_cpus

/// `--cpu-shares`: a relative weight between 2 and 262144 (default 1024).
pub fn parse_cpu_shares(text: &str) -> Result<u64> {
    let shares: u64 = text.trim().parse().map_err(|_| {
        Error::Invalid(format!(
            "invalid --cpu-shares {text:?}: expected a whole number such as 512"
        ))
    })?;
    if !(SHARES_MIN..=SHARES_MAX).contains(&shares) {
        return Err(Error::Invalid(format!(
            "invalid --cpu-shares {shares}: the range is {SHARES_MIN} to {SHARES_MAX} (default 1024)"
        )));
    }
    Ok(shares)
}

// ANCHOR: shares_to_weight
/// Converts cgroup v1 `cpu.shares` (2..262144, default 1024) into cgroup v2
/// `cpu.weight` (1..10000, default 100) the way runc and crun do: map the
/// range linearly, `weight = 1 + (shares - 2) * 9999 / 262142`. The ends
/// meet (2 → 1, 262144 → 10000), but the defaults do not quite: 1024 → 39,
/// not 100. Only ratios between containers matter, and those are kept.
pub fn shares_to_weight(shares: u64) -> u64 {
    // BEGIN SOLUTION 02.3
    let shares = shares.clamp(SHARES_MIN, SHARES_MAX);
    1 + (shares - SHARES_MIN) * (WEIGHT_MAX - WEIGHT_MIN) / (SHARES_MAX - SHARES_MIN)
    // END SOLUTION
}
// ANCHOR_END: shares_to_weight

/// The inverse of [`shares_to_weight`], for reading v2 weights back as
/// shares (rounded to the nearest share).
pub fn weight_to_shares(weight: u64) -> u64 {
    let weight = weight.clamp(WEIGHT_MIN, WEIGHT_MAX);
    let num = (weight - WEIGHT_MIN) * (SHARES_MAX - SHARES_MIN);
    let den = WEIGHT_MAX - WEIGHT_MIN;
    SHARES_MIN + (num + den / 2) / den
}

/// `--pids-limit N`: at most N processes; `0` or `-1` mean no limit, as in
/// Docker.
pub fn parse_pids_limit(text: &str) -> Result<Option<u64>> {
    // BEGIN SOLUTION 02.4
    let n: i64 = text.trim().parse().map_err(|_| {
        Error::Invalid(format!(
            "invalid --pids-limit {text:?}: expected a whole number (-1 for no limit)"
        ))
    })?;
    match n {
        ..=0 => Ok(None),
        n => Ok(Some(n as u64)),
    }
    // END SOLUTION
}

// ANCHOR: parse_cpu_list
/// Parses a CPU list such as `0-2,5` into CPU numbers, and checks each one
/// is in `available` (the machine's `cpuset.cpus`, in the same syntax).
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>> {
    let bad = || {
        Error::Invalid(format!(
            "invalid CPU list {text:?}: expected numbers and ranges such as 0-2,5"
        ))
    };
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => {
                let n: u32 = part.parse().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    if cpus.is_empty() {
        return Err(bad());
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}
// ANCHOR_END: parse_cpu_list

/// `--cpuset-cpus`: a CPU list naming only CPUs the machine has.
pub fn parse_cpuset(text: &str, available: &str) -> Result<String> {
    let wanted = parse_cpu_list(text).map_err(|e| Error::Invalid(format!("--cpuset-cpus: {e}")))?;
    let have = parse_cpu_list(available)?;
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| !have.contains(c))
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "invalid --cpuset-cpus {text:?}: this machine has no CPU {} (available: {})",
            missing.join(", "),
            available.trim()
        )));
    }
    Ok(text.trim().to_string())
}

/// The CPUs this machine has online, in the kernel's list syntax.
pub fn online_cpus(sys_root: &std::path::Path) -> String {
    std::fs::read_to_string(sys_root.join("devices/system/cpu/online"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "0".into())
}

/// Docker's limit flags as the user typed them (`--memory 64m`, ...).
#[derive(Debug, Default, Clone)]
pub struct LimitFlags {
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub cpu_shares: Option<String>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<String>,
    pub devices: Vec<String>,
}

// ANCHOR: from_flags
/// Parses every limit flag into [`Resources`], checking numbers against
/// this machine (its CPUs, from `sys_root`, normally `/sys`) and device
/// paths against the host.
pub fn from_flags(flags: &LimitFlags, sys_root: &std::path::Path) -> Result<Resources> {
    let mut res = Resources::default();
    if let Some(m) = &flags.memory {
        res.memory = Some(parse_memory(m)?);
    }
    if let Some(s) = &flags.memory_swap {
        res.memory_swap = Some(parse_memory_swap(s, res.memory)?);
    }
    let online = online_cpus(sys_root);
    if let Some(c) = &flags.cpus {
        let count = parse_cpu_list(&online).map(|v| v.len()).unwrap_or(1);
        let (quota, period) = parse_cpus(c, count)?;
        res.cpu_quota = Some(quota);
        res.cpu_period = Some(period);
    }
    if let Some(s) = &flags.cpu_shares {
        res.cpu_shares = Some(parse_cpu_shares(s)?);
    }
    if let Some(c) = &flags.cpuset_cpus {
        res.cpuset_cpus = Some(parse_cpuset(c, &online)?);
    }
    if let Some(p) = &flags.pids_limit {
        res.pids = parse_pids_limit(p)?;
    }
    for d in &flags.devices {
        let (node, rule) = crate::devices::parse_device(d)?.resolve()?;
        res.devices.push(rule);
        res.device_nodes.push(node);
    }
    Ok(res)
}
// ANCHOR_END: from_flags

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("--memory", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("--memory", "64MB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("--memory", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("--memory", "512k").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("--memory", "1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("--memory", "4096").unwrap(), 4096);
        let err = parse_bytes("--memory", "12q").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid --memory \"12q\": expected a size such as 64m, 512k or 1g \
             (units b, k, m, g, t; powers of 1024)"
        );
        assert!(parse_bytes("--memory", "m").is_err());
        assert!(parse_bytes("--memory", "-5m").is_err());
    }

    #[test]
    fn memory_has_a_floor() {
        assert!(parse_memory("6m").is_ok());
        let err = parse_memory("4m").unwrap_err().to_string();
        assert!(err.contains("minimum memory limit is 6m"), "{err}");
    }

    #[test]
    fn memory_swap_is_memory_plus_swap() {
        assert_eq!(
            parse_memory_swap("128m", Some(64 << 20)).unwrap(),
            128 << 20
        );
        assert_eq!(parse_memory_swap("-1", Some(64 << 20)).unwrap(), -1);
        assert!(parse_memory_swap("32m", Some(64 << 20)).is_err());
        assert!(parse_memory_swap("128m", None).is_err());
    }

    #[test]
    fn cpus_become_a_quota() {
        assert_eq!(parse_cpus("0.5", 2).unwrap(), (50_000, 100_000));
        assert_eq!(parse_cpus("1.5", 2).unwrap(), (150_000, 100_000));
        let err = parse_cpus("3", 2).unwrap_err().to_string();
        assert!(err.contains("the range is 0.01 to 2.00"), "{err}");
        assert!(parse_cpus("half", 2).is_err());
    }

    #[test]
    fn shares_and_weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        // The ratio 2:1 survives the conversion (to within rounding).
        let ratio = shares_to_weight(1024) as f64 / shares_to_weight(512) as f64;
        assert!((ratio - 2.0).abs() < 0.1, "{ratio}");
        for shares in [2, 512, 1024, 4096, 262_144] {
            let back = weight_to_shares(shares_to_weight(shares));
            assert!(back.abs_diff(shares) <= 27, "{shares} -> {back}");
        }
    }

    #[test]
    fn pids_limits() {
        assert_eq!(parse_pids_limit("100").unwrap(), Some(100));
        assert_eq!(parse_pids_limit("-1").unwrap(), None);
        assert_eq!(parse_pids_limit("0").unwrap(), None);
        assert!(parse_pids_limit("many").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("").is_err());
        assert_eq!(parse_cpuset("1", "0-1").unwrap(), "1");
        let err = parse_cpuset("0,7", "0-1").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid --cpuset-cpus \"0,7\": this machine has no CPU 7 (available: 0-1)"
        );
    }
}
