//! The engine's side of lab 02: turning `--memory` and friends into
//! [`cgroups::Resources`], checking them against this machine before
//! anything is created, and the container's cgroup `berth/<id>`.

use std::path::Path;

use anyhow::{Result, bail};
use cgroups::{CgroupManager, Controller, Hierarchy, Manager, Resources};

/// The group under which every berth container's cgroup lives, on both
/// versions (`/sys/fs/cgroup/memory/berth/<id>`, `/sys/fs/cgroup/berth/<id>`).
pub const PARENT: &str = "berth";

/// The machine's cgroup setup.
pub fn hierarchy() -> Result<Hierarchy> {
    Ok(cgroups::detect(
        Path::new("/sys/fs/cgroup"),
        Path::new("/proc"),
    )?)
}

pub use cgroups::resources::LimitFlags;

// ANCHOR: resources
/// Parses the limit flags into resources and checks that this machine can
/// enforce each one, so that a bad or unsupported flag fails before any
/// container or cgroup exists.
pub fn resources(flags: &LimitFlags, rootless: bool) -> Result<Resources> {
    let res = cgroups::resources::from_flags(flags, Path::new("/sys"))?;
    if rootless {
        if !res.is_empty() {
            bail!(
                "resource limits need root: a rootless berth cannot create cgroups on this \
                 machine (run berth as root to use --memory, --cpus, --pids-limit, --device ...)"
            );
        }
        return Ok(res);
    }
    check(&hierarchy()?, &res)?;
    Ok(res)
}
// ANCHOR_END: resources

/// Checks that every controller `res` needs is usable here, and that swap
/// limits can be enforced.
pub fn check(h: &Hierarchy, res: &Resources) -> Result<()> {
    let wants = [
        (res.memory.is_some(), Controller::Memory),
        (
            res.cpu_shares.is_some() || res.cpu_quota.is_some(),
            Controller::Cpu,
        ),
        (res.cpuset_cpus.is_some(), Controller::Cpuset),
        (res.pids.is_some(), Controller::Pids),
        (!res.devices.is_empty(), Controller::Devices),
    ];
    for (wanted, controller) in wants {
        if wanted {
            h.check(controller)?;
        }
    }
    if res.memory_swap.is_some() && !h.uses_v2() {
        let mount = h.v1.get(&Controller::Memory);
        let has_memsw = mount.is_some_and(|m| m.join("memory.memsw.limit_in_bytes").exists());
        if !has_memsw {
            bail!(
                "--memory-swap needs swap accounting, which this kernel has off on cgroup v1 \
                 (boot with swapaccount=1; cgroup v2 always has it)"
            );
        }
    }
    Ok(())
}

/// The cgroup of container `id`, or `None` for a rootless container
/// (which gets no cgroup of its own).
pub fn manager(id: &str, rootless: bool) -> Result<Option<Manager>> {
    if rootless {
        return Ok(None);
    }
    Ok(Some(Manager::new(&hierarchy()?, PARENT, id)?))
}

/// Removes a container's cgroup if it is still there (after a crash, or
/// from `rm -f`): kills whatever is left in it first.
pub fn cleanup(id: &str, rootless: bool) {
    if let Ok(Some(m)) = manager(id, rootless)
        && m.paths().iter().any(|p| p.exists())
    {
        let _ = m.thaw();
        let _ = m.kill_all();
        if let Err(e) = m.delete() {
            tracing::warn!(container = id, "cannot remove cgroup: {e}");
        }
    }
}

/// The host's total memory, shown as the limit of a container that has none.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
