//! The options a container was created with (Docker's `Config` and
//! `HostConfig`), as plain data, and the pure rules that interpret them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// How a container is connected (`--network`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Its own network namespace with only a loopback device.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Its own network namespace, plugged into the named bridge network
    /// (lab 04): `bridge` is the default one, `berth0`.
    Bridge(String),
}

impl NetworkMode {
    /// The name Docker shows for it (`HostConfig.NetworkMode`).
    pub fn name(&self) -> &str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
            NetworkMode::Bridge(n) => n,
        }
    }
}

impl FromStr for NetworkMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            "bridge" | "default" => Ok(NetworkMode::Bridge("bridge".into())),
            "" => bail!("--network needs a value: none, host, bridge or a network's name"),
            other if other.starts_with("container:") => {
                bail!("--network container:NAME is not supported: use a user-defined network")
            }
            other => Ok(NetworkMode::Bridge(other.to_string())),
        }
    }
}

/// TCP or UDP, for a published port.
pub use network::firewall::Protocol;

/// One `-p` flag: `[IP:][HOST:]CONTAINER[/PROTO]`. No host port means any
/// free one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_ip: Option<std::net::Ipv4Addr>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl FromStr for PortSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let fix = "write it as [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp], e.g. -p 8080:80 or -p 127.0.0.1:8080:80/tcp";
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((r, "tcp")) => (r, Protocol::Tcp),
            Some((r, "udp")) => (r, Protocol::Udp),
            Some((_, p)) => {
                bail!("invalid port spec {s:?}: protocol {p:?} is neither tcp nor udp; {fix}")
            }
            None => (s, Protocol::Tcp),
        };
        let port = |p: &str, what: &str| -> Result<u16> {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => bail!(
                    "invalid port spec {s:?}: {what} {p:?} is not a port from 1 to 65535; {fix}"
                ),
                Ok(n) => Ok(n),
            }
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [c] => (None, None, *c),
            [h, c] => (None, Some(*h), *c),
            [ip, h, c] => (Some(*ip), Some(*h), *c),
            _ => bail!("invalid port spec {s:?}: too many parts; {fix}"),
        };
        let host_ip = match ip {
            None | Some("") => None,
            Some(ip) => Some(ip.parse::<std::net::Ipv4Addr>().map_err(|_| {
                anyhow::anyhow!("invalid port spec {s:?}: {ip:?} is not an IPv4 address; {fix}")
            })?),
        };
        Ok(PortSpec {
            host_ip: host_ip.filter(|ip| !ip.is_unspecified()),
            host_port: match host {
                None | Some("") => None,
                Some(h) => Some(port(h, "host port")?),
            },
            container_port: port(container, "container port")?,
            protocol,
        })
    }
}

/// A `--add-host NAME:IP` entry.
pub fn parse_add_host(s: &str) -> Result<(String, std::net::IpAddr)> {
    let (name, ip) = s.split_once(':').ok_or_else(|| {
        anyhow::anyhow!("invalid --add-host {s:?}: write it as NAME:IP, e.g. db:10.0.0.5")
    })?;
    let ip = ip
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid --add-host {s:?}: {ip:?} is not an IP address"))?;
    if name.is_empty() {
        bail!("invalid --add-host {s:?}: the name is empty");
    }
    Ok((name.to_string(), ip))
}

/// How a container shares System V / POSIX IPC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpcMode {
    /// Its own IPC namespace (Docker's "private"/"shareable").
    #[default]
    Private,
    /// The host's.
    Host,
    /// Another container's (`container:NAME`).
    Container(String),
}

impl FromStr for IpcMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" | "private" | "shareable" => Ok(IpcMode::Private),
            "host" => Ok(IpcMode::Host),
            other => match other.strip_prefix("container:") {
                Some(name) if !name.is_empty() => Ok(IpcMode::Container(name.to_string())),
                _ => bail!("invalid --ipc {other:?}: use private, host or container:NAME"),
            },
        }
    }
}

// ANCHOR: restart_policy
/// What happens when the container's process exits (`--restart`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Never restart (the default).
    #[default]
    No,
    /// Restart after a non-zero exit, at most this many times (0: no limit).
    OnFailure(u32),
    /// Always restart, unless stopped by hand.
    Always,
    /// Like `always`; the difference (not restarted when the engine starts
    /// if it was stopped by hand) matters only to engines with a daemon.
    UnlessStopped,
}

impl RestartPolicy {
    /// Decides whether to start the container again after it ended with
    /// `exit_code`, having been restarted `restarts` times already.
    pub fn should_restart(self, exit_code: i32, restarts: u32, manually_stopped: bool) -> bool {
        if manually_stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => exit_code != 0 && (max == 0 || restarts < max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }

    /// The pause before restart number `restarts + 1`: 100 ms, doubled each
    /// time up to a minute, so a crashing container does not spin the CPU.
    /// A container that ran for 10 s or more starts over at 100 ms.
    pub fn delay(restarts: u32, last_run: Duration) -> Duration {
        if last_run >= Duration::from_secs(10) {
            return Duration::from_millis(100);
        }
        let ms = 100u64.saturating_mul(1u64 << restarts.min(20));
        Duration::from_millis(ms.min(60_000))
    }
}
// ANCHOR_END: restart_policy

impl FromStr for RestartPolicy {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let policy = match (name, count) {
            ("no", None) => RestartPolicy::No,
            ("always", None) => RestartPolicy::Always,
            ("unless-stopped", None) => RestartPolicy::UnlessStopped,
            ("on-failure", None) => RestartPolicy::OnFailure(0),
            ("on-failure", Some(n)) => match n.parse() {
                Ok(n) => RestartPolicy::OnFailure(n),
                Err(_) => bail!("invalid restart count {n:?} in --restart {s}: expected a number"),
            },
            (_, Some(_)) => {
                bail!("invalid --restart {s}: only on-failure takes a maximum (on-failure:3)")
            }
            _ => bail!("invalid --restart {s}: use no, on-failure[:N], always or unless-stopped"),
        };
        Ok(policy)
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure(_) => f.write_str("on-failure"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

/// Everything `berth run`/`create` was told, as stored with the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    pub hostname: String,
    pub env: Vec<String>,
    pub workdir: String,
    /// `--user` as given (resolved against the image at creation).
    pub user: String,
    pub tty: bool,
    pub interactive: bool,
    pub auto_remove: bool,
    pub init: bool,
    pub read_only: bool,
    pub network: NetworkMode,
    pub ipc: IpcMode,
    pub restart: RestartPolicy,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub no_new_privileges: bool,
    /// `INSIDE:OUTSIDE:COUNT` maps for a user namespace (`--uidmap`/`--gidmap`).
    pub uid_maps: Vec<String>,
    pub gid_maps: Vec<String>,
    /// Runs in a user namespace that maps the caller to root (rootless).
    pub rootless: bool,
    pub entrypoint: Option<Vec<String>>,
    /// Seconds `stop` waits before SIGKILL (`--stop-timeout`).
    pub stop_timeout: u64,
    pub stop_signal: String,
    /// Cgroup limits (`--memory`, `--cpus`, ...), lab 02.
    #[serde(default)]
    pub resources: cgroups::Resources,
    /// Volumes, bind mounts and tmpfs mounts (lab 03). At creation this
    /// also receives those of `--volumes-from` and the image's `VOLUME`s.
    #[serde(default)]
    pub mounts: Vec<overlay::volume::VolumeMount>,
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// Published ports (`-p`), lab 04.
    #[serde(default)]
    pub publish: Vec<PortSpec>,
    /// Publish every port the image exposes on a free host port (`-P`).
    #[serde(default)]
    pub publish_all: bool,
    /// More names the container answers to on its networks.
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// The address asked for (`--ip`).
    #[serde(default)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// Nameservers for the container (`--dns`).
    #[serde(default)]
    pub dns: Vec<std::net::IpAddr>,
    /// Extra /etc/hosts lines (`--add-host NAME:IP`).
    #[serde(default)]
    pub add_hosts: Vec<(String, std::net::IpAddr)>,
    /// The ports the container exposes (`PORT/PROTO`): the image's
    /// `EXPOSE`s and `--expose`; `-P` publishes them.
    #[serde(default)]
    pub expose: Vec<String>,
    /// The bridge networks it is on besides the one of `--network`: a
    /// second `--network` flag, or `network connect`.
    #[serde(default)]
    pub also_networks: Vec<Connection>,
    /// The health check: the image's HEALTHCHECK with the `--health-*`
    /// flags applied (lab 05).
    #[serde(default)]
    pub healthcheck: Option<crate::health::HealthConfig>,
}

/// A container's place on one bridge network, as asked for: the network,
/// the extra names it answers to there and the address it wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub network: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ip: Option<std::net::Ipv4Addr>,
}

impl RunOptions {
    /// Every bridge network the container is on, `--network`'s first: the
    /// first gets `eth0`, the next `eth1`, and so on.
    pub fn connections(&self) -> Vec<Connection> {
        let mut out = Vec::new();
        if let NetworkMode::Bridge(name) = &self.network {
            out.push(Connection {
                network: name.clone(),
                aliases: self.network_aliases.clone(),
                ip: self.ip,
            });
        }
        out.extend(self.also_networks.iter().cloned());
        out
    }

    /// Whether the container is on the network `name`.
    pub fn is_on(&self, name: &str) -> bool {
        self.connections().iter().any(|c| c.network == name)
    }

    /// Takes the container off a network in its options (`network
    /// disconnect` of a container that is not running). Leaving the network
    /// of `--network` makes the next one the first, or leaves `none`.
    pub fn leave(&mut self, name: &str) {
        self.also_networks.retain(|c| c.network != name);
        if self.network == NetworkMode::Bridge(name.to_string()) {
            match self.also_networks.first().cloned() {
                Some(next) => {
                    self.also_networks.remove(0);
                    self.network = NetworkMode::Bridge(next.network);
                    self.network_aliases = next.aliases;
                    self.ip = next.ip;
                }
                None => {
                    self.network = NetworkMode::None;
                    self.network_aliases.clear();
                    self.ip = None;
                }
            }
        }
    }
}

/// The networks of repeated `--network` flags: the first is the
/// container's mode; with more than one, all must be bridge networks.
/// Without the flag, root gets the default bridge and rootless `none`
/// (a bridge needs root on the host).
pub fn parse_networks(flags: &[String], rootless: bool) -> Result<(NetworkMode, Vec<Connection>)> {
    let Some((first, rest)) = flags.split_first() else {
        let mode = if rootless {
            NetworkMode::None
        } else {
            NetworkMode::Bridge("bridge".into())
        };
        return Ok((mode, Vec::new()));
    };
    let mode = first.parse::<NetworkMode>()?;
    let mut also = Vec::new();
    for flag in rest {
        match (&mode, flag.parse::<NetworkMode>()?) {
            (NetworkMode::Bridge(a), NetworkMode::Bridge(b)) => {
                if a == &b || also.iter().any(|c: &Connection| c.network == b) {
                    bail!("--network {b} is given twice: give each network once");
                }
                also.push(Connection {
                    network: b,
                    aliases: Vec::new(),
                    ip: None,
                });
            }
            _ => bail!(
                "--network none and host cannot be combined with other networks: give only bridge networks, or one --network"
            ),
        }
    }
    Ok((mode, also))
}

/// Parses `-e` values: `NAME=VALUE` is taken as it is; a bare `NAME` takes the
/// value from berth's own environment, or is dropped if unset (Docker's rule).
pub fn parse_env(items: &[String], lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in items {
        match item.split_once('=') {
            Some(("", _)) => bail!("invalid environment variable {item:?}: the name is empty"),
            Some(_) => out.push(item.clone()),
            None if item.is_empty() => {
                bail!("invalid environment variable \"\": the name is empty")
            }
            None => {
                if let Some(v) = lookup(item) {
                    out.push(format!("{item}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// Merges environment lists: later entries replace earlier ones with the same
/// name, in place, so the image's order is kept.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for item in overrides {
        let name = item.split('=').next().unwrap_or(item);
        match out.iter_mut().find(|e| e.split('=').next() == Some(name)) {
            Some(slot) => *slot = item.clone(),
            None => out.push(item.clone()),
        }
    }
    out
}

/// Parses a signal given as `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow::anyhow!("invalid signal number {n}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| {
        anyhow::anyhow!("invalid signal {s:?}: use a name like TERM or KILL, or a number")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse() {
        assert_eq!("no".parse::<RestartPolicy>().unwrap(), RestartPolicy::No);
        assert_eq!(
            "on-failure".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure(0)
        );
        assert_eq!(
            "on-failure:3".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure(3)
        );
        assert_eq!(
            "always".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::Always
        );
        assert_eq!(
            "unless-stopped".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::UnlessStopped
        );
        for bad in ["sometimes", "always:2", "on-failure:x", ""] {
            assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn restart_decisions() {
        use RestartPolicy::*;
        // (policy, exit code, restarts so far, stopped by hand) -> restart?
        let table = [
            (No, 1, 0, false, false),
            (OnFailure(0), 0, 0, false, false),
            (OnFailure(0), 1, 99, false, true),
            (OnFailure(2), 1, 1, false, true),
            (OnFailure(2), 1, 2, false, false),
            (Always, 0, 5, false, true),
            (Always, 137, 0, true, false),
            (UnlessStopped, 0, 0, false, true),
            (UnlessStopped, 0, 0, true, false),
        ];
        for (policy, code, restarts, manual, want) in table {
            assert_eq!(
                policy.should_restart(code, restarts, manual),
                want,
                "{policy:?} {code} {restarts} {manual}"
            );
        }
        assert_eq!(
            RestartPolicy::delay(0, Duration::ZERO),
            Duration::from_millis(100)
        );
        assert_eq!(
            RestartPolicy::delay(3, Duration::ZERO),
            Duration::from_millis(800)
        );
        assert_eq!(
            RestartPolicy::delay(30, Duration::ZERO),
            Duration::from_secs(60)
        );
        assert_eq!(
            RestartPolicy::delay(30, Duration::from_secs(11)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn env_rules() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let items: Vec<String> = ["A=1", "HOME", "UNSET", "B="]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse_env(&items, lookup).unwrap(),
            vec!["A=1", "HOME=/root", "B="]
        );
        assert!(parse_env(&["=x".to_string()], lookup).is_err());
        let merged = merge_env(
            &["PATH=/bin".into(), "A=1".into()],
            &["A=2".into(), "C=3".into()],
        );
        assert_eq!(merged, vec!["PATH=/bin", "A=2", "C=3"]);
    }

    #[test]
    fn modes_and_signals() {
        assert_eq!(
            "container:db".parse::<IpcMode>().unwrap(),
            IpcMode::Container("db".into())
        );
        assert!("container:".parse::<IpcMode>().is_err());
        assert_eq!(
            "bridge".parse::<NetworkMode>().unwrap(),
            NetworkMode::Bridge("bridge".into())
        );
        assert_eq!(
            "backend".parse::<NetworkMode>().unwrap(),
            NetworkMode::Bridge("backend".into())
        );
        assert!("container:db".parse::<NetworkMode>().is_err());
    }

    #[test]
    fn network_flags_name_the_first_network_and_the_others() {
        let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let bridge = NetworkMode::Bridge("bridge".into());
        assert_eq!(parse_networks(&[], false).unwrap(), (bridge, vec![]));
        assert_eq!(
            parse_networks(&[], true).unwrap(),
            (NetworkMode::None, vec![])
        );
        let (mode, also) = parse_networks(&flags(&["front", "back"]), false).unwrap();
        assert_eq!(mode, NetworkMode::Bridge("front".into()));
        assert_eq!(also.len(), 1);
        assert_eq!(also[0].network, "back");
        let err = parse_networks(&flags(&["host", "back"]), false).unwrap_err();
        assert!(err.to_string().contains("cannot be combined"), "{err}");
        let err = parse_networks(&flags(&["a", "a"]), false).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
    }

    #[test]
    fn leaving_the_first_network_promotes_the_next() {
        let (network, also_networks) =
            parse_networks(&["front".to_string(), "back".to_string()], false).unwrap();
        let mut o = RunOptions {
            network,
            also_networks,
            network_aliases: vec!["web".into()],
            ..RunOptions::default()
        };
        assert!(o.is_on("front") && o.is_on("back"));
        o.leave("front");
        assert_eq!(o.network, NetworkMode::Bridge("back".into()));
        assert!(o.network_aliases.is_empty() && o.also_networks.is_empty());
        o.leave("back");
        assert_eq!(o.network, NetworkMode::None);
        assert!(o.connections().is_empty());
        // Port specs, and errors that say how to write them.
        let p = |s: &str| s.parse::<PortSpec>();
        assert_eq!(
            p("127.0.0.1:8080:80/udp").unwrap(),
            PortSpec {
                host_ip: Some(std::net::Ipv4Addr::LOCALHOST),
                host_port: Some(8080),
                container_port: 80,
                protocol: Protocol::Udp
            }
        );
        assert_eq!(p("80").unwrap().host_port, None);
        assert_eq!(p("0.0.0.0::80").unwrap().host_ip, None);
        for (bad, why) in [
            ("80/sctp", "neither tcp nor udp"),
            ("0:80", "not a port from 1 to 65535"),
            ("a:b:c:d", "too many parts"),
            ("300.1.1.1:80:80", "not an IPv4 address"),
        ] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("-p 8080:80"), "{bad}: {e}");
        }
        assert_eq!(
            parse_signal("term").unwrap(),
            nix::sys::signal::Signal::SIGTERM
        );
        assert_eq!(
            parse_signal("SIGKILL").unwrap(),
            nix::sys::signal::Signal::SIGKILL
        );
        assert_eq!(
            parse_signal("9").unwrap(),
            nix::sys::signal::Signal::SIGKILL
        );
        assert!(parse_signal("FOO").is_err());
    }
}
