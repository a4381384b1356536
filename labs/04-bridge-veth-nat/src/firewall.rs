//! Steps 04.4 to 04.6: the engine's firewall, with nftables.
//!
//! A bridge and a veth pair connect a container to the host; the firewall
//! decides what the packets may do from there:
//!
//! - **egress** (04.4): a container's address, say 10.88.0.2, means nothing
//!   outside the host, so packets leaving for the outside world get the
//!   host's address instead (*masquerade*, a form of source NAT), and the
//!   replies are translated back by connection tracking;
//! - **published ports** (04.5): `docker run -p 8080:80` makes port 8080 of
//!   the host lead to port 80 of the container: packets for one of the
//!   host's own addresses are rewritten to the container's address
//!   (*destination NAT*), whether they come from elsewhere, from the host
//!   itself or from another container;
//! - **isolation** (04.6): containers on different networks cannot reach
//!   each other, and an `--internal` network has no way out or in at all.
//!
//! The engine owns one nftables table, `ip berth`, and touches nothing
//! else. Like netavark, it keeps the rules as data: [`render`] turns the
//! engine's state (a [`Ruleset`]: its networks and published ports) into
//! an nft script that defines the whole table, and [`apply`] loads that
//! script in one transaction every time something changes. The kernel
//! applies a transaction entirely or not at all, so the table is never
//! half-written, and a rule nobody asks for any more simply is not in the
//! next table. [`remove_all`] deletes the table; [`installed`] shows it as
//! `nft list table ip berth` does, which is exactly the table part of
//! [`render`]'s output.
//!
//! Rendering and checking are plain functions tested without root; the
//! three functions that run `nft` are tested in a throwaway network
//! namespace (`tests/firewall.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The nftables family of the engine's table: `ip` (IPv4 only).
pub const FAMILY: &str = "ip";

/// The name of the engine's table. The engine never touches another one.
pub const TABLE: &str = "berth";

/// The longest interface name the kernel takes: `IFNAMSIZ` (16) less the
/// terminating NUL.
pub const MAX_BRIDGE_NAME: usize = 15;

/// How many characters of a container id go into a rule's comment, as in
/// `docker ps`.
pub const SHORT_ID: usize = 12;

/// The program that loads and lists rules, looked up on `PATH`.
const NFT: &str = "nft";

/// A transport protocol a port is published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A bridge network, as far as the firewall cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The network's name (`bridge` for the default one), for comments.
    pub name: String,
    /// The bridge device: `berth0`, or `br-` and 12 hex digits.
    pub bridge: String,
    /// The subnet, as `10.88.0.0/16`.
    pub subnet: String,
    /// `--internal`: no traffic in or out of the network, only within it.
    pub internal: bool,
}

/// One published port: `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTOCOL]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    /// The host address the port is bound to; `None` (or 0.0.0.0) for all
    /// of the host's addresses.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    /// The bridge of the network the container is reached through.
    pub bridge: String,
    /// The container's id; its first 12 characters go into a comment.
    pub container: String,
}

impl PortMapping {
    /// The host address bound to, with 0.0.0.0 read as "all addresses"
    /// (`None`), as Docker reads `-p 0.0.0.0:8080:80`.
    pub fn bound_to(&self) -> Option<Ipv4Addr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }

    /// `8080/tcp`, or `127.0.0.1:8080/tcp` when bound to one address.
    fn host_binding(&self) -> String {
        match self.bound_to() {
            Some(ip) => format!("{ip}:{}/{}", self.host_port, self.protocol),
            None => format!("{}/{}", self.host_port, self.protocol),
        }
    }
}

/// Everything the firewall is generated from: the engine's networks and
/// the ports published by its running containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ruleset {
    pub networks: Vec<Network>,
    pub ports: Vec<PortMapping>,
}

/// A container id as shown in comments and messages: its first 12
/// characters.
fn short_id(id: &str) -> &str {
    id.char_indices()
        .nth(SHORT_ID)
        .map_or(id, |(i, _)| &id[..i])
}

/// A network's name for a comment, cut short so the comment stays well
/// under nftables' limit of 128 bytes.
fn label(network: &Network) -> String {
    network.name.chars().take(48).collect()
}

/// `"a"` for one interface name, `{ "a", "b" }` for several: an anonymous
/// set matches any of its elements. (nft itself lists a set of one as the
/// plain name, so this renders what `nft list` shows.)
fn names(bridges: &[&str]) -> String {
    let quoted: Vec<String> = bridges.iter().map(|b| format!("\"{b}\"")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        many => format!("{{ {} }}", many.join(", ")),
    }
}

/// The networks that reach the outside world (all but `--internal` ones).
fn outgoing(networks: &[Network]) -> impl Iterator<Item = &Network> {
    networks.iter().filter(|n| !n.internal)
}

// ANCHOR: masquerade
/// Step 04.4, chain `postrouting`: for each network that is not internal,
/// packets from its subnet that leave through any other interface than its
/// own bridge are masqueraded: they leave with the address of the
/// interface they go out of, and connection tracking undoes the change on
/// the replies. Traffic between two containers of the same bridge keeps
/// its addresses.
pub fn masquerade_rules(networks: &[Network]) -> Vec<String> {
    // BEGIN SOLUTION 04.4
    outgoing(networks)
        .map(|n| {
            format!(
                "ip saddr {} oifname != \"{}\" masquerade comment \"{}: egress\"",
                n.subnet,
                n.bridge,
                label(n)
            )
        })
        .collect()
    // END SOLUTION
}

/// Step 04.4, chain `forward`, first after the internal networks' drops:
/// packets of a connection that was allowed when it started (and related
/// ones, such as ICMP errors about it) are accepted, so the drops that
/// follow only ever judge the first packet of a connection, and the
/// replies to a container's outgoing connections come back in.
pub fn reply_rules() -> Vec<String> {
    // BEGIN SOLUTION 04.4
    vec!["ct state established,related accept".to_string()]
    // END SOLUTION
}
// ANCHOR_END: masquerade

// ANCHOR: ports
/// Step 04.5, chain `ports`: one destination NAT rule per published port,
/// in the order given: `[ip daddr HOST_IP] PROTO dport HOST_PORT dnat to
/// CONTAINER_IP:CONTAINER_PORT`, with the short container id as comment.
/// A port bound to all addresses has no `ip daddr` match: the chains that
/// jump here only do so for the host's own addresses.
pub fn port_rules(ports: &[PortMapping]) -> Vec<String> {
    // BEGIN SOLUTION 04.5
    ports
        .iter()
        .map(|p| {
            let daddr = p
                .bound_to()
                .map(|ip| format!("ip daddr {ip} "))
                .unwrap_or_default();
            format!(
                "{daddr}{} dport {} dnat to {}:{} comment \"{}\"",
                p.protocol,
                p.host_port,
                p.container_ip,
                p.container_port,
                short_id(&p.container)
            )
        })
        .collect()
    // END SOLUTION
}
// ANCHOR_END: ports

// ANCHOR: return_paths
/// Step 04.5, chain `postrouting`: the return paths of published ports,
/// for each network that is not internal.
///
/// - Localhost: `curl localhost:8080` on the host is rewritten to the
///   container's address but still comes from 127.0.0.1, an address the
///   container cannot answer. Masquerading it to the bridge's address gives
///   the replies a way back. The kernel drops a packet from 127.0.0.0/8
///   leaving through a bridge as a "martian" unless
///   `net.ipv4.conf.BRIDGE.route_localnet` is 1, which
///   [`sysctl::route_localnet`](crate::sysctl::route_localnet) sets.
/// - Hairpin: a container reaching a published port of a container on its
///   own network through the host's address would get the reply straight
///   from the other container's address, which it did not talk to.
///   Masquerading makes the replies go through the host, where they are
///   translated back.
pub fn return_path_rules(networks: &[Network]) -> Vec<String> {
    // BEGIN SOLUTION 04.5
    outgoing(networks)
        .flat_map(|n| {
            [
                format!(
                    "oifname \"{}\" ip saddr 127.0.0.0/8 masquerade comment \"{}: localhost to a published port\"",
                    n.bridge,
                    label(n)
                ),
                format!(
                    "ct status dnat oifname \"{}\" ip saddr {} masquerade comment \"{}: hairpin to a published port\"",
                    n.bridge,
                    n.subnet,
                    label(n)
                ),
            ]
        })
        .collect()
    // END SOLUTION
}

/// Step 04.5, chain `forward`, before the isolation drops: a connection
/// whose destination was rewritten by a published port is accepted, from
/// wherever it comes. A published port is public: containers of every
/// (non-internal) network reach it through the host's address.
pub fn published_rules() -> Vec<String> {
    // BEGIN SOLUTION 04.5
    vec!["ct status dnat accept".to_string()]
    // END SOLUTION
}
// ANCHOR_END: return_paths

// ANCHOR: isolation
/// Step 04.6, chain `forward`, first of all: an internal network's bridge
/// neither sends packets anywhere but to itself nor receives them from
/// anywhere else. These come before the rules that accept replies and
/// published ports, so nothing crosses the boundary of an internal
/// network, not even through another network's published port.
pub fn internal_rules(networks: &[Network]) -> Vec<String> {
    // BEGIN SOLUTION 04.6
    networks
        .iter()
        .filter(|n| n.internal)
        .flat_map(|n| {
            [
                format!(
                    "iifname \"{b}\" oifname != \"{b}\" drop comment \"{}: internal, no way out\"",
                    label(n),
                    b = n.bridge
                ),
                format!(
                    "oifname \"{b}\" iifname != \"{b}\" drop comment \"{}: internal, no way in\"",
                    label(n),
                    b = n.bridge
                ),
            ]
        })
        .collect()
    // END SOLUTION
}

/// Step 04.6, chain `forward`, last: a packet from one network's bridge to
/// any other network's bridge is dropped, so two networks only meet
/// through published ports. Internal networks are left out: their own
/// rules already drop everything crossing their bridge. Whatever is not
/// dropped (a container reaching the outside world) is accepted by the
/// chain's policy.
pub fn isolation_rules(networks: &[Network]) -> Vec<String> {
    // BEGIN SOLUTION 04.6
    let bridges: Vec<&str> = outgoing(networks).map(|n| n.bridge.as_str()).collect();
    outgoing(networks)
        .filter_map(|n| {
            let others: Vec<&str> = bridges.iter().copied().filter(|b| *b != n.bridge).collect();
            (!others.is_empty()).then(|| {
                format!(
                    "iifname \"{}\" oifname {} drop comment \"{}: isolated from other networks\"",
                    n.bridge,
                    names(&others),
                    label(n)
                )
            })
        })
        .collect()
    // END SOLUTION
}
// ANCHOR_END: isolation

/// One chain of the table, as `nft list` prints it: `hook` is the base
/// chain's `type … hook … priority …` part, `None` for a chain that is only
/// jumped to.
fn chain(name: &str, comment: &str, hook: Option<&str>, rules: &[String]) -> String {
    let mut out = format!("\tchain {name} {{\n\t\tcomment \"{comment}\"\n");
    if let Some(hook) = hook {
        out.push_str(&format!("\t\t{hook}; policy accept;\n"));
    }
    for rule in rules {
        out.push_str(&format!("\t\t{rule}\n"));
    }
    out.push_str("\t}\n");
    out
}

// ANCHOR: render
/// The nft script that replaces the table `ip berth` with one built from
/// `rules`. The same state always gives the same script: networks are
/// sorted by bridge, ports by protocol, host address and host port.
///
/// The script first makes sure the table exists and deletes it, then
/// defines it anew; `nft -f` sends all of it as one transaction, so the
/// table is replaced whole or not at all. Chains:
///
/// - `postrouting` (source NAT): egress masquerade, and the return paths
///   of published ports (localhost and hairpin);
/// - `prerouting` and `output` (destination NAT): packets for one of the
///   host's own addresses (`fib daddr type local`), from elsewhere or from
///   the host itself, go through `ports`;
/// - `ports`: one rule per published port;
/// - `forward` (filter): internal networks, replies, published ports,
///   isolation between networks.
pub fn render(rules: &Ruleset) -> String {
    let mut networks = rules.networks.clone();
    networks.sort_by(|a, b| a.bridge.cmp(&b.bridge).then(a.name.cmp(&b.name)));
    let mut ports = rules.ports.clone();
    ports.sort_by_key(|p| {
        (
            p.protocol,
            p.bound_to(),
            p.host_port,
            p.container_ip,
            p.container_port,
        )
    });

    let postrouting = [masquerade_rules(&networks), return_path_rules(&networks)].concat();
    let local = vec!["fib daddr type local jump ports".to_string()];
    let forward = [
        internal_rules(&networks),
        reply_rules(),
        published_rules(),
        isolation_rules(&networks),
    ]
    .concat();

    let chains = [
        chain(
            "postrouting",
            "source NAT: containers leave with the host's address",
            Some("type nat hook postrouting priority srcnat"),
            &postrouting,
        ),
        chain(
            "prerouting",
            "packets from elsewhere for the host's own addresses: published ports",
            Some("type nat hook prerouting priority dstnat"),
            &local,
        ),
        // -100 is dstnat's value; nft (1.0.6) takes the name `dstnat` only
        // in the prerouting hook.
        chain(
            "output",
            "the host's own connections to its addresses, localhost too: published ports",
            Some("type nat hook output priority -100"),
            &local,
        ),
        chain(
            "ports",
            "published ports: host port to container address and port",
            None,
            &port_rules(&ports),
        ),
        chain(
            "forward",
            "what crosses between bridges; anything else is accepted",
            Some("type filter hook forward priority filter"),
            &forward,
        ),
    ];
    format!(
        "# The berth engine's firewall, generated from its networks and published\n\
         # ports. `nft -f` loads it as one transaction: the first two commands\n\
         # make sure the table exists and delete it, so the new table replaces\n\
         # the old one whole, or nothing changes.\n\
         table {FAMILY} {TABLE} {{}}\n\
         delete table {FAMILY} {TABLE}\n\
         table {FAMILY} {TABLE} {{\n\
         \tcomment \"managed by berth: regenerated on every change, do not edit\"\n\
         {}}}\n",
        chains.join("\n")
    )
}
// ANCHOR_END: render

/// True for a name that may go between double quotes in the script:
/// letters, digits, `-`, `_` and `.`. Notably no quote (which would end
/// the string), no space and no `*` (a wildcard in an nft interface name).
fn is_safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_bridge(network: &Network) -> Result<()> {
    let bridge = &network.bridge;
    if bridge.is_empty() {
        return Err(Error::Invalid(format!(
            "network {:?} has no bridge name: give the name of its bridge device, as in \"berth0\" \
             or \"br-1a2b3c4d5e6f\"",
            network.name
        )));
    }
    if bridge.len() > MAX_BRIDGE_NAME {
        return Err(Error::Invalid(format!(
            "bridge name {bridge:?} is {} bytes long, and the kernel takes at most \
             {MAX_BRIDGE_NAME}: use a shorter name, such as \"br-\" and the first 12 hex digits \
             of the network id",
            bridge.len()
        )));
    }
    if !is_safe(bridge) {
        return Err(Error::Invalid(format!(
            "bridge name {bridge:?} is not usable: a bridge name is written into nft rules \
             between quotes, so it may only hold letters, digits, '-', '_' and '.'; name the \
             bridge with those, as in \"br-1a2b3c4d5e6f\""
        )));
    }
    Ok(())
}

/// Parses `a.b.c.d/n` into its address and prefix length, refusing host
/// bits (nft would quietly clear them, and the listed table would differ
/// from the rendered one).
fn parse_subnet(network: &Network) -> Result<(Ipv4Addr, u8)> {
    let subnet = &network.subnet;
    let bad = || {
        Error::Invalid(format!(
            "network {:?} has subnet {subnet:?}, which is not an IPv4 subnet: write the first \
             address and the prefix length, as in \"10.88.0.0/16\"",
            network.name
        ))
    };
    let (addr, prefix) = subnet.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix > 32 {
        return Err(bad());
    }
    let first = Ipv4Addr::from(u32::from(addr) & mask(prefix));
    if first != addr {
        return Err(Error::Invalid(format!(
            "network {:?} has subnet {subnet:?}, whose address has bits set past the prefix: \
             did you mean \"{first}/{prefix}\"?",
            network.name
        )));
    }
    Ok((addr, prefix))
}

/// The netmask of a prefix length, as a number.
fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// Checks a port mapping on its own, and that it goes through one of the
/// networks (`by_bridge`) and an address of its subnet.
fn check_port(
    p: &PortMapping,
    by_bridge: &BTreeMap<&str, (&Network, (Ipv4Addr, u8))>,
) -> Result<()> {
    let id = short_id(&p.container);
    if !is_safe(&p.container) {
        return Err(Error::Invalid(format!(
            "container id {:?} is not usable: its first {SHORT_ID} characters are written into an \
             nft comment, so it may only hold letters, digits, '-', '_' and '.'; pass the \
             container's hex id",
            p.container
        )));
    }
    if p.host_port == 0 || p.container_port == 0 {
        return Err(Error::Invalid(format!(
            "container {id} publishes port {} as host port {}: port 0 is not a port; for -P, \
             pick a free host port before building the rules",
            p.container_port, p.host_port
        )));
    }
    let Some((network, (addr, prefix))) = by_bridge.get(p.bridge.as_str()) else {
        return Err(Error::Invalid(format!(
            "container {id} publishes {} through bridge {:?}, which belongs to none of the \
             networks: add that network to the ruleset, or use the bridge of a network the \
             container is connected to",
            p.host_binding(),
            p.bridge
        )));
    };
    if network.internal {
        return Err(Error::Invalid(format!(
            "container {id} publishes {} on network {:?}, which is internal (no way in or out): \
             publish it through another network the container is connected to, or drop the -p",
            p.host_binding(),
            network.name
        )));
    }
    if u32::from(p.container_ip) & mask(*prefix) != u32::from(*addr) {
        return Err(Error::Invalid(format!(
            "container {id} publishes {} to {}, which is not in network {:?}'s subnet {}: use \
             the address the container has on that network",
            p.host_binding(),
            p.container_ip,
            network.name,
            network.subnet
        )));
    }
    Ok(())
}

/// Checks that `rules` can be written into a script and mean what they
/// say: bridge and network names that fit between quotes (and bridge names
/// the kernel takes), subnets as `a.b.c.d/n`, one network per bridge, and
/// port mappings that go through a network's bridge to an address of its
/// subnet, with no host port published twice on overlapping host addresses
/// (one bound to all addresses overlaps every other).
pub fn validate(rules: &Ruleset) -> Result<()> {
    let mut by_bridge = BTreeMap::new();
    for network in &rules.networks {
        if !is_safe(&network.name) {
            return Err(Error::Invalid(format!(
                "network name {:?} is not usable: it is written into nft comments, so it may \
                 only hold letters, digits, '-', '_' and '.'",
                network.name
            )));
        }
        check_bridge(network)?;
        let subnet = parse_subnet(network)?;
        if let Some((other, _)) = by_bridge.insert(network.bridge.as_str(), (network, subnet)) {
            return Err(Error::Invalid(format!(
                "networks {:?} and {:?} both use bridge {:?}: each network needs a bridge of \
                 its own",
                other.name, network.name, network.bridge
            )));
        }
    }
    for (i, p) in rules.ports.iter().enumerate() {
        check_port(p, &by_bridge)?;
        let earlier = rules.ports[..i].iter().find(|q| {
            q.protocol == p.protocol
                && q.host_port == p.host_port
                && (q.bound_to().is_none()
                    || p.bound_to().is_none()
                    || q.bound_to() == p.bound_to())
        });
        if let Some(q) = earlier {
            let on = match (q.bound_to(), p.bound_to()) {
                (a, b) if a == b => String::new(),
                (None, _) => " on all addresses".to_string(),
                (Some(ip), _) => format!(" on {ip}"),
            };
            return Err(Error::Invalid(format!(
                "host port {} is already published{on} by container {}: pick another host port \
                 or stop that container",
                p.host_binding(),
                short_id(&q.container)
            )));
        }
    }
    Ok(())
}

/// Runs `nft ARGS`, with `input` on its standard input; the output,
/// whatever the exit status.
fn nft(args: &[&str], input: Option<&str>) -> Result<Output> {
    let command = format!("{NFT} {}", args.join(" "));
    let not_run = |e: std::io::Error| {
        let stderr = if e.kind() == ErrorKind::NotFound {
            "nft is not installed (or not on PATH): install the nftables package, as in \
             `apt install nftables`"
                .to_string()
        } else {
            e.to_string()
        };
        Error::Command {
            command: command.clone(),
            stderr,
        }
    };
    let mut child = Command::new(NFT)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(not_run)?;
    if let Some(input) = input {
        // nft reads the whole script before it writes anything, so writing
        // all of it first cannot block on a full output pipe. Dropping the
        // handle closes the pipe: end of script.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(input.as_bytes()).map_err(not_run)?;
    }
    child.wait_with_output().map_err(not_run)
}

/// An error for a run of nft that failed, with what it said.
fn failed(args: &[&str], out: &Output) -> Error {
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    Error::Command {
        command: format!("{NFT} {}", args.join(" ")),
        stderr: if stderr.is_empty() {
            format!("exited with {}", out.status)
        } else {
            stderr
        },
    }
}

/// Loads an nft script (`nft -f -`) in one transaction: if any part of it
/// fails, nothing changes. [`apply`] is this with a [`render`]ed script;
/// use it directly only for a script of your own.
pub fn load(script: &str) -> Result<()> {
    let args = ["-f", "-"];
    let out = nft(&args, Some(script))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(&args, &out))
    }
}

// ANCHOR: apply
/// Replaces the table `ip berth` with the rules for `rules`, in one
/// transaction, after checking them with [`validate`]. Call it after every
/// change to the networks or the published ports. Needs `CAP_NET_ADMIN` in
/// the calling thread's network namespace.
pub fn apply(rules: &Ruleset) -> Result<()> {
    validate(rules)?;
    let script = render(rules);
    tracing::debug!(
        "nft -f - ({} networks, {} ports):\n{script}",
        rules.networks.len(),
        rules.ports.len()
    );
    load(&script)
}
// ANCHOR_END: apply

/// Deletes the table `ip berth` and every rule in it; nothing else. Not
/// having the table is fine: the script creates it (empty) before deleting
/// it, in the same transaction.
pub fn remove_all() -> Result<()> {
    load(&format!(
        "table {FAMILY} {TABLE} {{}}\ndelete table {FAMILY} {TABLE}\n"
    ))
}

/// The table as the kernel has it (`nft list table ip berth`), or `None`
/// when there is no such table.
pub fn installed() -> Result<Option<String>> {
    let args = ["list", "table", FAMILY, TABLE];
    let out = nft(&args, None)?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    // The kernel answers ENOENT for a table that does not exist; nft's
    // messages are not translated, so this is reliable.
    if String::from_utf8_lossy(&out.stderr).contains("No such file or directory") {
        return Ok(None);
    }
    Err(failed(&args, &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(name: &str, bridge: &str, subnet: &str) -> Network {
        Network {
            name: name.into(),
            bridge: bridge.into(),
            subnet: subnet.into(),
            internal: false,
        }
    }

    fn default_bridge() -> Network {
        network("bridge", "berth0", "10.88.0.0/16")
    }

    fn user_defined() -> Network {
        network("frontend", "br-1a2b3c4d5e6f", "10.89.0.0/24")
    }

    fn internal() -> Network {
        Network {
            internal: true,
            ..network("backend", "br-0f9e8d7c6b5a", "10.89.1.0/24")
        }
    }

    /// A port of the container `container` (a 64-hex id) on the default
    /// bridge.
    fn port(
        protocol: Protocol,
        host_ip: Option<[u8; 4]>,
        host_port: u16,
        container_ip: [u8; 4],
        container_port: u16,
        container: &str,
    ) -> PortMapping {
        PortMapping {
            protocol,
            host_ip: host_ip.map(Ipv4Addr::from),
            host_port,
            container_ip: Ipv4Addr::from(container_ip),
            container_port,
            bridge: "berth0".into(),
            container: container.repeat(64 / container.len()),
        }
    }

    const WEB: &str = "abc123def456";
    const DNS: &str = "5ca1ab1e0000";

    fn published() -> Ruleset {
        Ruleset {
            networks: vec![default_bridge()],
            ports: vec![
                port(Protocol::Tcp, None, 8080, [10, 88, 0, 2], 80, WEB),
                port(
                    Protocol::Tcp,
                    Some([127, 0, 0, 1]),
                    8443,
                    [10, 88, 0, 2],
                    443,
                    WEB,
                ),
                port(Protocol::Udp, None, 5353, [10, 88, 0, 3], 53, DNS),
                port(
                    Protocol::Udp,
                    Some([0, 0, 0, 0]),
                    69,
                    [10, 88, 0, 3],
                    69,
                    DNS,
                ),
                port(
                    Protocol::Tcp,
                    Some([192, 168, 1, 10]),
                    9090,
                    [10, 88, 0, 3],
                    8080,
                    DNS,
                ),
            ],
        }
    }

    fn message(rules: &Ruleset) -> String {
        match validate(rules) {
            Ok(()) => panic!("{rules:?} should be refused"),
            Err(e) => e.to_string(),
        }
    }

    // Step 04.4

    #[test]
    fn masquerade_rules_cover_every_network_with_a_way_out() {
        assert_eq!(
            masquerade_rules(&[default_bridge(), internal(), user_defined()]),
            [
                "ip saddr 10.88.0.0/16 oifname != \"berth0\" masquerade comment \"bridge: egress\"",
                "ip saddr 10.89.0.0/24 oifname != \"br-1a2b3c4d5e6f\" masquerade comment \"frontend: egress\"",
            ]
        );
        assert!(masquerade_rules(&[internal()]).is_empty());
    }

    #[test]
    fn replies_are_accepted() {
        assert_eq!(reply_rules(), ["ct state established,related accept"]);
    }

    // Step 04.5

    #[test]
    fn port_rules_match_the_host_address_only_when_bound_to_one() {
        let ports = published().ports;
        assert_eq!(
            port_rules(&ports),
            [
                "tcp dport 8080 dnat to 10.88.0.2:80 comment \"abc123def456\"",
                "ip daddr 127.0.0.1 tcp dport 8443 dnat to 10.88.0.2:443 comment \"abc123def456\"",
                "udp dport 5353 dnat to 10.88.0.3:53 comment \"5ca1ab1e0000\"",
                // 0.0.0.0 means all addresses, as in Docker.
                "udp dport 69 dnat to 10.88.0.3:69 comment \"5ca1ab1e0000\"",
                "ip daddr 192.168.1.10 tcp dport 9090 dnat to 10.88.0.3:8080 comment \"5ca1ab1e0000\"",
            ]
        );
    }

    #[test]
    fn return_paths_for_localhost_and_hairpin() {
        assert_eq!(
            return_path_rules(&[default_bridge(), internal()]),
            [
                "oifname \"berth0\" ip saddr 127.0.0.0/8 masquerade comment \"bridge: localhost to a published port\"",
                "ct status dnat oifname \"berth0\" ip saddr 10.88.0.0/16 masquerade comment \"bridge: hairpin to a published port\"",
            ]
        );
    }

    #[test]
    fn published_ports_are_accepted_from_every_network() {
        assert_eq!(published_rules(), ["ct status dnat accept"]);
    }

    // Step 04.6

    #[test]
    fn internal_networks_have_no_way_out_or_in() {
        assert_eq!(
            internal_rules(&[default_bridge(), internal()]),
            [
                "iifname \"br-0f9e8d7c6b5a\" oifname != \"br-0f9e8d7c6b5a\" drop comment \"backend: internal, no way out\"",
                "oifname \"br-0f9e8d7c6b5a\" iifname != \"br-0f9e8d7c6b5a\" drop comment \"backend: internal, no way in\"",
            ]
        );
        assert!(internal_rules(&[default_bridge()]).is_empty());
    }

    #[test]
    fn isolation_drops_traffic_to_every_other_network() {
        assert!(isolation_rules(&[default_bridge()]).is_empty());
        assert_eq!(
            isolation_rules(&[default_bridge(), user_defined()]),
            [
                "iifname \"berth0\" oifname \"br-1a2b3c4d5e6f\" drop comment \"bridge: isolated from other networks\"",
                "iifname \"br-1a2b3c4d5e6f\" oifname \"berth0\" drop comment \"frontend: isolated from other networks\"",
            ]
        );
        let third = network("db", "br-aaaaaaaaaaaa", "10.89.2.0/24");
        let rules = isolation_rules(&[default_bridge(), user_defined(), third, internal()]);
        assert_eq!(rules.len(), 3, "{rules:#?}");
        assert!(
            rules[0].starts_with(
                "iifname \"berth0\" oifname { \"br-1a2b3c4d5e6f\", \"br-aaaaaaaaaaaa\" } drop"
            ),
            "{}",
            rules[0]
        );
        // The internal network has rules of its own.
        assert!(!rules.iter().any(|r| r.contains("br-0f9e8d7c6b5a")));
    }

    #[test]
    fn render_default_bridge() {
        insta::assert_snapshot!(
            "default_bridge",
            render(&Ruleset {
                networks: vec![default_bridge()],
                ports: vec![],
            })
        );
    }

    #[test]
    fn render_user_defined_network() {
        insta::assert_snapshot!(
            "user_defined_network",
            render(&Ruleset {
                networks: vec![user_defined(), default_bridge()],
                ports: vec![],
            })
        );
    }

    #[test]
    fn render_published_ports() {
        insta::assert_snapshot!("published_ports", render(&published()));
    }

    #[test]
    fn render_publish_all() {
        // `-P`: every exposed port of one container on a free high port.
        let ports = [(80, 32768), (443, 32769), (8080, 32770)]
            .into_iter()
            .map(|(c, h)| port(Protocol::Tcp, None, h, [10, 88, 0, 4], c, "feedc0ffee00"))
            .collect();
        insta::assert_snapshot!(
            "publish_all",
            render(&Ruleset {
                networks: vec![default_bridge()],
                ports,
            })
        );
    }

    #[test]
    fn render_internal_network() {
        insta::assert_snapshot!(
            "internal_network",
            render(&Ruleset {
                networks: vec![default_bridge(), internal()],
                ports: vec![],
            })
        );
    }

    #[test]
    fn render_does_not_depend_on_the_order_of_the_state() {
        let rules = Ruleset {
            networks: vec![default_bridge(), user_defined(), internal()],
            ports: published().ports,
        };
        let mut reversed = rules.clone();
        reversed.networks.reverse();
        reversed.ports.reverse();
        assert_eq!(render(&rules), render(&reversed));
    }

    // Checks (validate is given; these pass from the start)

    #[test]
    fn the_examples_are_valid() {
        validate(&published()).unwrap();
        validate(&Ruleset {
            networks: vec![default_bridge(), user_defined(), internal()],
            ports: vec![],
        })
        .unwrap();
        validate(&Ruleset::default()).unwrap();
    }

    #[test]
    fn a_host_port_is_published_once() {
        let mut rules = published();
        rules
            .ports
            .push(port(Protocol::Tcp, None, 8080, [10, 88, 0, 9], 80, "9"));
        assert_eq!(
            message(&rules),
            "host port 8080/tcp is already published by container abc123def456: pick another \
             host port or stop that container"
        );

        // The same port for another protocol, or on another address, is free.
        let free = Ruleset {
            networks: vec![default_bridge()],
            ports: vec![
                port(
                    Protocol::Tcp,
                    Some([127, 0, 0, 1]),
                    80,
                    [10, 88, 0, 2],
                    80,
                    "a",
                ),
                port(
                    Protocol::Tcp,
                    Some([10, 0, 0, 5]),
                    80,
                    [10, 88, 0, 3],
                    80,
                    "b",
                ),
                port(Protocol::Udp, None, 80, [10, 88, 0, 4], 80, "c"),
            ],
        };
        validate(&free).unwrap();
    }

    #[test]
    fn validate_errors() {
        let ok = || Ruleset {
            networks: vec![default_bridge(), internal()],
            ports: vec![port(Protocol::Tcp, None, 8080, [10, 88, 0, 2], 80, WEB)],
        };
        let cases: Vec<(&str, Ruleset)> = vec![
            ("bridge name too long", {
                let mut r = ok();
                r.networks[0].bridge = "br-1a2b3c4d5e6f7a8b".into();
                r
            }),
            ("quote in a bridge name", {
                let mut r = ok();
                r.networks[0].bridge = "br\"0".into();
                r
            }),
            ("wildcard bridge name", {
                let mut r = ok();
                r.networks[0].bridge = "br*".into();
                r
            }),
            ("empty bridge name", {
                let mut r = ok();
                r.networks[0].bridge = String::new();
                r
            }),
            ("space in a network name", {
                let mut r = ok();
                r.networks[0].name = "my net".into();
                r
            }),
            ("subnet without a prefix", {
                let mut r = ok();
                r.networks[0].subnet = "10.88.0.0".into();
                r
            }),
            ("prefix too long", {
                let mut r = ok();
                r.networks[0].subnet = "10.88.0.0/33".into();
                r
            }),
            ("not an address", {
                let mut r = ok();
                r.networks[0].subnet = "10.88.0/16".into();
                r
            }),
            ("host bits set", {
                let mut r = ok();
                r.networks[0].subnet = "10.88.0.1/16".into();
                r
            }),
            ("two networks on one bridge", {
                let mut r = ok();
                r.networks[1].bridge = "berth0".into();
                r
            }),
            ("bad container id", {
                let mut r = ok();
                r.ports[0].container = "abc'def".into();
                r
            }),
            ("port 0", {
                let mut r = ok();
                r.ports[0].host_port = 0;
                r
            }),
            ("unknown bridge", {
                let mut r = ok();
                r.ports[0].bridge = "br-ffffffffffff".into();
                r
            }),
            ("port on an internal network", {
                let mut r = ok();
                r.ports[0].bridge = "br-0f9e8d7c6b5a".into();
                r.ports[0].container_ip = Ipv4Addr::new(10, 89, 1, 2);
                r
            }),
            ("container address outside the subnet", {
                let mut r = ok();
                r.ports[0].container_ip = Ipv4Addr::new(10, 89, 0, 2);
                r
            }),
            ("all addresses, then one address", {
                let mut r = ok();
                let mut p = port(
                    Protocol::Tcp,
                    Some([127, 0, 0, 1]),
                    8080,
                    [10, 88, 0, 3],
                    80,
                    "b",
                );
                p.container = "bbbbbbbbbbbbbbbb".into();
                r.ports.push(p);
                r
            }),
            ("one address, then all addresses", {
                let mut r = ok();
                r.ports[0].host_ip = Some(Ipv4Addr::LOCALHOST);
                r.ports.push(port(
                    Protocol::Tcp,
                    Some([0, 0, 0, 0]),
                    8080,
                    [10, 88, 0, 3],
                    80,
                    "b",
                ));
                r
            }),
            ("the same address twice", {
                let mut r = ok();
                r.ports[0].host_ip = Some(Ipv4Addr::LOCALHOST);
                r.ports.push(port(
                    Protocol::Tcp,
                    Some([127, 0, 0, 1]),
                    8080,
                    [10, 88, 0, 3],
                    80,
                    "b",
                ));
                r
            }),
        ];
        let text: String = cases
            .iter()
            .map(|(what, rules)| format!("{what}\n  → {}\n", message(rules)))
            .collect();
        insta::assert_snapshot!("validate_errors", text);
    }
}
