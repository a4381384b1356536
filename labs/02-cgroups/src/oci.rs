//! Limits in the OCI runtime spec: `linux.resources` in `config.json` is
//! where runc, crun and berth read a container's cgroup limits from.

use oci_spec::runtime as oci;

use crate::devices::{DeviceKind, DeviceRule};
use crate::error::{Error, Result};
use crate::resources::Resources;

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("OCI resources: {e}"))
}

/// `Resources` as the OCI spec's `linux.resources`.
pub fn to_oci(r: &Resources) -> Result<oci::LinuxResources> {
    let mut memory = oci::LinuxMemoryBuilder::default();
    if let Some(m) = r.memory {
        memory = memory.limit(m as i64);
    }
    if let Some(s) = r.memory_swap {
        memory = memory.swap(s);
    }
    let mut cpu = oci::LinuxCpuBuilder::default();
    if let Some(s) = r.cpu_shares {
        cpu = cpu.shares(s);
    }
    if let Some(q) = r.cpu_quota {
        cpu = cpu.quota(q as i64);
    }
    if let Some(p) = r.cpu_period {
        cpu = cpu.period(p);
    }
    if let Some(c) = &r.cpuset_cpus {
        cpu = cpu.cpus(c.clone());
    }
    let mut devices = vec![
        oci::LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .map_err(invalid)?,
    ];
    for rule in crate::devices::default_rules().iter().chain(&r.devices) {
        devices.push(device_to_oci(rule)?);
    }
    let mut builder = oci::LinuxResourcesBuilder::default()
        .memory(memory.build().map_err(invalid)?)
        .cpu(cpu.build().map_err(invalid)?)
        .devices(devices);
    if let Some(p) = r.pids {
        builder = builder.pids(
            oci::LinuxPidsBuilder::default()
                .limit(p as i64)
                .build()
                .map_err(invalid)?,
        );
    }
    builder.build().map_err(invalid)
}

fn device_to_oci(rule: &DeviceRule) -> Result<oci::LinuxDeviceCgroup> {
    let mut b = oci::LinuxDeviceCgroupBuilder::default()
        .allow(rule.allow)
        .typ(match rule.kind {
            DeviceKind::All => oci::LinuxDeviceType::A,
            DeviceKind::Char => oci::LinuxDeviceType::C,
            DeviceKind::Block => oci::LinuxDeviceType::B,
        })
        .access(rule.access.clone());
    if let Some(m) = rule.major {
        b = b.major(m as i64);
    }
    if let Some(m) = rule.minor {
        b = b.minor(m as i64);
    }
    b.build().map_err(invalid)
}

/// Reads `linux.resources` back. The leading deny-all and the default
/// rules are the engine's own and are not repeated in `devices`.
pub fn from_oci(res: &oci::LinuxResources) -> Resources {
    let mut r = Resources::default();
    if let Some(m) = res.memory() {
        r.memory = m.limit().map(|l| l as u64);
        r.memory_swap = m.swap();
    }
    if let Some(c) = res.cpu() {
        r.cpu_shares = c.shares();
        r.cpu_quota = c.quota().map(|q| q as u64);
        r.cpu_period = c.period();
        r.cpuset_cpus = c.cpus().clone();
    }
    r.pids = res.pids().as_ref().map(|p| p.limit() as u64);
    let defaults = crate::devices::default_rules();
    for d in res.devices().iter().flatten() {
        let kind = match d.typ() {
            Some(oci::LinuxDeviceType::C) => DeviceKind::Char,
            Some(oci::LinuxDeviceType::B) => DeviceKind::Block,
            _ => DeviceKind::All,
        };
        if kind == DeviceKind::All && !d.allow() {
            continue;
        }
        let rule = DeviceRule {
            allow: d.allow(),
            kind,
            major: d.major().map(|m| m as u32),
            minor: d.minor().map(|m| m as u32),
            access: d.access().clone().unwrap_or_default(),
        };
        if !defaults.contains(&rule) {
            r.devices.push(rule);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpuset_cpus: Some("0".into()),
            pids: Some(20),
            devices: vec![DeviceRule::allow_char(Some(10), Some(229), "rw")],
            device_nodes: Vec::new(),
        };
        let oci = to_oci(&r).unwrap();
        let json = serde_json::to_value(&oci).unwrap();
        assert_eq!(json["memory"]["limit"], 64 << 20);
        assert_eq!(json["cpu"]["quota"], 50_000);
        assert_eq!(json["pids"]["limit"], 20);
        assert_eq!(json["devices"][0]["allow"], false);
        assert_eq!(from_oci(&oci), r);
    }
}
