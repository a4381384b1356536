//! Kernel settings the network needs, through `/proc/sys`.
//!
//! `sysctl net.ipv4.ip_forward=1` writes `1` to
//! `/proc/sys/net/ipv4/ip_forward`. The `net.*` settings belong to a network
//! namespace: each namespace has its own, so these writes change only the
//! namespace of the calling thread. A new namespace starts from the
//! defaults, except the IPv4 ones (`ip_forward` among them), which Linux
//! copies from the machine's first namespace unless
//! `net.core.devconf_inherit_init_net` says otherwise.
//!
//! Two settings are needed: `ip_forward` and, on each bridge,
//! `route_localnet`. The bridge netfilter settings
//! (`net.bridge.bridge-nf-call-iptables`, present when `br_netfilter` is
//! loaded) are left as they are: they make frames switched *within* a
//! bridge pass the IP firewall, which Docker relies on for replies of a
//! container reaching another one through a published port. The engine's
//! rules masquerade that "hairpin" traffic instead (see
//! [`crate::firewall::return_path_rules`]), so replies come back through the host
//! either way and the rules work with `br_netfilter` on, off or absent.

use std::path::PathBuf;

use crate::{Error, Result};

/// The file behind a dotted key: `net.ipv4.ip_forward` is
/// `/proc/sys/net/ipv4/ip_forward`. Interface names may hold dots, so a
/// key's parts are given separately where that matters.
pub fn path(parts: &[&str]) -> PathBuf {
    let mut p = PathBuf::from("/proc/sys");
    for part in parts {
        p.push(part);
    }
    p
}

/// Reads a setting.
pub fn get(parts: &[&str]) -> Result<String> {
    let p = path(parts);
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::io("read", p, e))
}

/// Writes a setting, unless it already has that value.
pub fn set(parts: &[&str], value: &str) -> Result<()> {
    if get(parts).is_ok_and(|v| v == value) {
        return Ok(());
    }
    let p = path(parts);
    std::fs::write(&p, value).map_err(|e| Error::io(format!("write {value} to"), p, e))
}

// ANCHOR: forwarding
/// Lets the kernel route packets between interfaces: without it, a packet
/// from a container to the outside reaches the host on the bridge and goes
/// no further. Docker sets the same.
pub fn enable_forwarding() -> Result<()> {
    set(&["net", "ipv4", "ip_forward"], "1")
}

/// Lets packets from 127.0.0.0/8 be routed out of `bridge`. A connection to
/// a published port on localhost is rewritten to the container's address
/// and then leaves through the bridge still carrying source 127.0.0.1,
/// which the kernel drops as a "martian" unless this is set (the firewall
/// then masquerades it to the bridge's address).
pub fn route_localnet(bridge: &str) -> Result<()> {
    set(&["net", "ipv4", "conf", bridge, "route_localnet"], "1")
}
// ANCHOR_END: forwarding

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_sys() {
        assert_eq!(
            path(&["net", "ipv4", "conf", "br-x.1", "route_localnet"]),
            PathBuf::from("/proc/sys/net/ipv4/conf/br-x.1/route_localnet")
        );
        assert!(get(&["net", "ipv4", "ip_forward"]).is_ok_and(|v| v == "0" || v == "1"));
    }
}
