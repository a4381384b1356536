//! Container networks: lab 04 in the engine.
//!
//! A bridge network is a record under `ROOT/networks/NAME.json` (its
//! subnet, gateway and bridge device), the address leases of lab 04's IPAM
//! store, and, while containers run on it, a bridge device, one veth pair
//! per container and the engine's nftables table. `bridge` is the default
//! network, on the device `berth0`; user-defined networks get `br-` and
//! the first twelve digits of their id, and a DNS server in each of their
//! containers.
//!
//! Everything made for a container is made when it starts and removed when
//! it stops, by its monitor: a pinned network namespace under the runroot
//! (so the network exists before the container's first process, which
//! joins it by path), the veth pair, the address lease, the firewall rules
//! of its published ports, and the sockets that hold those host ports.
//! `rm` and `system prune` repeat the removal for a container whose monitor
//! was killed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use network::firewall::{self, Protocol};
use network::ipam::{self, Pool, Subnet};
use network::link::{self, Netlink};
use network::netns::{self, NetNs};
use serde::{Deserialize, Serialize};

use crate::options::{Connection, NetworkMode, PortSpec};
use crate::state::{Container, Store};

/// The default network's name and device.
pub const DEFAULT: &str = "bridge";
pub const DEFAULT_BRIDGE: &str = "berth0";

/// A network as berth records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub driver: String,
    /// The bridge device on the host.
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// No way in or out: no NAT, no published ports.
    pub internal: bool,
    pub created: SystemTime,
}

impl Record {
    /// User-defined networks resolve container names; the default does not.
    pub fn has_dns(&self) -> bool {
        self.name != DEFAULT
    }

    /// Refuses an `--ip` outside the network's subnet.
    pub fn check_ip(&self, ip: Option<Ipv4Addr>) -> Result<()> {
        if let Some(ip) = ip
            && !self.subnet.contains(ip)
        {
            bail!(
                "--ip {ip} is outside network {}'s subnet {}: pick an address in {}",
                self.name,
                self.subnet,
                self.subnet
            );
        }
        Ok(())
    }

    fn firewall(&self) -> firewall::Network {
        firewall::Network {
            name: self.name.clone(),
            bridge: self.bridge.clone(),
            subnet: self.subnet.to_string(),
            internal: self.internal,
        }
    }
}

/// What a running container is given on one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// The host end of its veth pair.
    pub veth: String,
    /// Its name inside the container.
    pub interface: String,
    pub aliases: Vec<String>,
}

/// A published port as it is bound: the host port chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub protocol: Protocol,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl Binding {
    /// `0.0.0.0:8080->80/tcp`, as `docker ps` and `docker port` print it.
    pub fn describe(&self) -> String {
        format!(
            "{}:{}->{}/{}",
            self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.host_port,
            self.container_port,
            self.protocol
        )
    }
}

/// The engine's networks: records, leases and locks.
pub struct Networks {
    dir: PathBuf,
    leases: ipam::Store,
    /// The firewall script last installed, in the runroot (a reboot clears
    /// both it and the table).
    installed: PathBuf,
}

/// Network names follow container names' rules.
fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!(
            "invalid network name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        );
    }
    if ["none", "host", "default"].contains(&name) {
        bail!("network name {name:?} is reserved: pick another name");
    }
    Ok(())
}

/// The host's own IPv4 routes (except the default route), which a new
/// network must not overlap: `/proc/net/route` has them in hex.
fn host_routes() -> Vec<Subnet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dest, mask) = (hex(f.get(1)?)?, hex(f.get(7)?)?);
            let prefix = mask.count_ones() as u8;
            // The route's destination is little-endian in the file.
            let addr = Ipv4Addr::from(dest.swap_bytes());
            (prefix > 0 && prefix <= 30)
                .then(|| Subnet::new(addr, prefix).ok())
                .flatten()
        })
        .collect()
}

impl Networks {
    pub fn open(store: &Store) -> Result<Networks> {
        let dir = store.root.join("networks");
        std::fs::create_dir_all(&dir)?;
        Ok(Networks {
            leases: ipam::Store::open(dir.join("leases"))?,
            dir,
            installed: store.runroot.join("firewall.nft"),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)?.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p)?;
                out.push(
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is damaged", p.display()))?,
                );
            }
        }
        out.sort_by(|a: &Record, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A network by name, or by id or a unique prefix of it.
    pub fn get(&self, key: &str) -> Result<Record> {
        if key == DEFAULT {
            return self.default_network();
        }
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.name == key) {
            return Ok(r.clone());
        }
        let by_id: Vec<&Record> = all.iter().filter(|r| r.id.starts_with(key)).collect();
        match by_id.as_slice() {
            [one] if key.len() >= 3 => Ok((*one).clone()),
            [_, _, ..] => bail!("network id prefix {key:?} is ambiguous: give more of it"),
            _ => bail!(
                "network {key} not found: list networks with `berth network ls`, or create it with `berth network create {key}`"
            ),
        }
    }

    /// A lock over every change to networks, their leases and the firewall.
    fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        let path = self.dir.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", path.display()))
    }

    fn save(&self, r: &Record) -> Result<()> {
        let tmp = self.dir.join(format!(".{}.json.tmp", r.name));
        std::fs::write(&tmp, serde_json::to_string_pretty(r)?)?;
        std::fs::rename(&tmp, self.path(&r.name))?;
        Ok(())
    }

    /// The default network, made on first use.
    pub fn default_network(&self) -> Result<Record> {
        if let Ok(text) = std::fs::read_to_string(self.path(DEFAULT)) {
            return Ok(serde_json::from_str(&text)?);
        }
        let _lock = self.lock()?;
        if let Ok(text) = std::fs::read_to_string(self.path(DEFAULT)) {
            return Ok(serde_json::from_str(&text)?);
        }
        self.make(DEFAULT, DEFAULT_BRIDGE.into(), None, None, false)
    }

    /// `berth network create`.
    pub fn create(
        &self,
        name: &str,
        subnet: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
        internal: bool,
    ) -> Result<Record> {
        validate_name(name)?;
        if name == DEFAULT {
            bail!("network name {name:?} is reserved: pick another name");
        }
        self.default_network()?;
        let _lock = self.lock()?;
        if self.path(name).exists() {
            bail!("network with name {name} already exists");
        }
        let id = crate::state::new_id()?;
        let bridge = format!("br-{}", &id[..12]);
        self.make(name, bridge, subnet, gateway, internal)
            .map(|r| Record { id, ..r })
            .and_then(|r| {
                self.save(&r)?;
                Ok(r)
            })
    }

    /// Checks and records a new network (the lock is held).
    fn make(
        &self,
        name: &str,
        bridge: String,
        subnet: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
        internal: bool,
    ) -> Result<Record> {
        let others = self.list()?;
        let subnet = match subnet {
            Some(s) => {
                if let Some(o) = others.iter().find(|o| o.subnet.overlaps(&s)) {
                    bail!(
                        "subnet {s} overlaps network {} ({}): pick a subnet that does not",
                        o.name,
                        o.subnet
                    );
                }
                if let Some(r) = host_routes().iter().find(|r| r.overlaps(&s)) {
                    bail!(
                        "subnet {s} overlaps the host's route to {r}: pick a subnet the host does not use"
                    );
                }
                s
            }
            None => {
                let mut taken: Vec<Subnet> = others.iter().map(|o| o.subnet).collect();
                taken.extend(host_routes());
                ipam::pick_subnet(&taken)?
            }
        };
        if let Some(g) = gateway
            && !subnet.contains(g)
        {
            bail!("gateway {g} is outside subnet {subnet}: pick an address in the subnet");
        }
        let pool = Pool::new(subnet, gateway)?;
        let record = Record {
            id: crate::state::new_id()?,
            name: name.to_string(),
            driver: "bridge".into(),
            bridge,
            subnet,
            gateway: pool.gateway,
            internal,
            created: SystemTime::now(),
        };
        if name == DEFAULT {
            self.save(&record)?;
        }
        Ok(record)
    }

    /// `berth network rm`: refused while a container, running or not, is
    /// on the network.
    pub fn remove(&self, store: &Store, key: &str) -> Result<String> {
        let r = self.get(key)?;
        if r.name == DEFAULT {
            bail!("bridge is a pre-defined network and cannot be removed");
        }
        let users: Vec<String> = store
            .list()?
            .into_iter()
            .filter(|c| c.options.is_on(&r.name))
            .map(|c| c.name)
            .collect();
        if !users.is_empty() {
            bail!(
                "error while removing network {}: network has active endpoints ({}): remove those containers first, or disconnect them",
                r.name,
                users.join(", ")
            );
        }
        let _lock = self.lock()?;
        Netlink::open()?.delete(&r.bridge)?;
        self.leases.remove(&r.name)?;
        std::fs::remove_file(self.path(&r.name))?;
        self.refresh_firewall(store)?;
        Ok(r.name)
    }

    /// Removes every user-defined network no container is on (`network
    /// prune`, and part of `system prune`); returns their names.
    pub fn prune(&self, store: &Store) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for r in self.list()?.into_iter().filter(|r| r.name != DEFAULT) {
            if self.remove(store, &r.name).is_ok() {
                removed.push(r.name);
            }
        }
        Ok(removed)
    }

    /// Makes the network's bridge, if it is not there, with its address;
    /// returns its index.
    fn ensure_bridge(&self, nl: &Netlink, r: &Record) -> Result<u32> {
        let index = nl.bridge(&r.bridge)?;
        nl.add_address(&r.bridge, r.gateway, r.subnet.prefix())?;
        nl.set_up(&r.bridge, true)?;
        network::sysctl::route_localnet(&r.bridge)?;
        Ok(index)
    }

    /// Rewrites the engine's firewall table from every network and every
    /// running container's published ports (the lock is held), unless the
    /// table installed already says exactly that. With no network left,
    /// the table goes.
    fn refresh_firewall(&self, store: &Store) -> Result<()> {
        let networks = self.list()?;
        if networks.is_empty() {
            let _ = std::fs::remove_file(&self.installed);
            return Ok(firewall::remove_all()?);
        }
        let mut rules = firewall::Ruleset {
            networks: networks.iter().map(Record::firewall).collect(),
            ports: Vec::new(),
        };
        for c in store.list()? {
            let Some(first) = c.endpoints.first() else {
                continue;
            };
            let bridge = networks
                .iter()
                .find(|n| n.name == first.network)
                .map(|n| n.bridge.clone())
                .unwrap_or_default();
            for b in &c.ports {
                rules.ports.push(firewall::PortMapping {
                    protocol: b.protocol,
                    host_ip: b.host_ip,
                    host_port: b.host_port,
                    container_ip: first.ip,
                    container_port: b.container_port,
                    bridge: bridge.clone(),
                    container: c.id[..12].to_string(),
                });
            }
        }
        // What is installed is recorded; the same rules again (a container
        // without published ports coming or going) cost only a look at
        // whether the table is still there: a firewall service that flushes
        // the ruleset when it (re)starts takes the engine's table with it,
        // and the next change of any container puts it back.
        let script = firewall::render(&rules);
        if std::fs::read_to_string(&self.installed).is_ok_and(|s| s == script)
            && firewall::installed()?.is_some()
        {
            return Ok(());
        }
        firewall::apply(&rules)?;
        let tmp = self.installed.with_extension("nft.tmp");
        std::fs::write(&tmp, &script)?;
        std::fs::rename(&tmp, &self.installed)?;
        Ok(())
    }

    /// Writes, for every running container, the names its DNS server
    /// answers: the names and aliases of every container on the
    /// user-defined networks it is on (its own included). A file that
    /// would not change is not written.
    fn refresh_dns(&self, store: &Store) -> Result<()> {
        let containers = store.list()?;
        let with_dns: Vec<String> = self
            .list()?
            .into_iter()
            .filter(Record::has_dns)
            .map(|r| r.name)
            .collect();
        let mut by_network: BTreeMap<&str, Vec<network::dns::Entry>> = BTreeMap::new();
        for c in &containers {
            for e in c.endpoints.iter().filter(|e| with_dns.contains(&e.network)) {
                for name in std::iter::once(&c.name).chain(&e.aliases) {
                    by_network
                        .entry(e.network.as_str())
                        .or_default()
                        .push(network::dns::Entry {
                            name: name.to_ascii_lowercase(),
                            ip: e.ip,
                        });
                }
            }
        }
        for c in containers.iter().filter(|c| !c.endpoints.is_empty()) {
            let entries: Vec<network::dns::Entry> = c
                .endpoints
                .iter()
                .flat_map(|e| by_network.get(e.network.as_str()).into_iter().flatten())
                .cloned()
                .collect();
            let path = dns_records_path(store, &c.id);
            let records = network::dns::Records { entries };
            let unchanged =
                path.exists() && network::dns::Records::load(&path).is_ok_and(|old| old == records);
            if !unchanged {
                records.save(&path)?;
            }
        }
        Ok(())
    }
}

/// The names a container's DNS server answers, kept by [`Networks::refresh_dns`].
fn dns_records_path(store: &Store, id: &str) -> PathBuf {
    store.container_dir(id).join("dns.json")
}

/// What the monitor keeps while the container runs.
pub struct Attachment {
    pub netns: PathBuf,
    /// Sockets bound to the published host ports, so nothing else takes them.
    _reserved: Vec<OwnedFd>,
    /// The container's DNS server process.
    dns: Option<nix::unistd::Pid>,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Some(pid) = self.dns.take() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// Where a container's network namespace is pinned.
pub fn netns_path(store: &Store, id: &str) -> PathBuf {
    store.runroot.join("netns").join(id)
}

/// The host-side name of a container's veth pair into its `eth{index}`:
/// `vb` and ten digits of the container id, then `-1`, `-2`, ... after the
/// first, within the kernel's 15 characters.
fn veth_name(id: &str, index: usize) -> String {
    match index {
        0 => format!("vb{}", &id[..10]),
        n => format!("vb{}-{n}", &id[..10]),
    }
}

/// Binds a socket on a published host port (port 0: any free one) and
/// returns it with the port, or Docker's error when the port is taken.
fn reserve(spec: &PortSpec) -> Result<(OwnedFd, u16)> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket,
    };
    let kind = match spec.protocol {
        Protocol::Tcp => SockType::Stream,
        Protocol::Udp => SockType::Datagram,
    };
    let ip = spec.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let fd = socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, None)?;
    let addr = SockaddrIn::from(std::net::SocketAddrV4::new(ip, spec.host_port.unwrap_or(0)));
    if let Err(e) = bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        bail!(
            "Bind for {ip}:{} failed: port is already allocated ({e}): pick another host port, or stop what uses it",
            spec.host_port.unwrap_or(0)
        );
    }
    let bound: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
    Ok((fd, bound.port()))
}

/// Checks that the host ports a container asks for are free, before
/// anything is made for it.
pub fn check_ports(specs: &[PortSpec]) -> Result<()> {
    for s in specs.iter().filter(|s| s.host_port.is_some()) {
        reserve(s)?;
    }
    Ok(())
}

/// The ports to publish: `-p` flags, and with `-P` every exposed port of
/// the image on a free host port.
pub fn port_specs(c: &Container, exposed: &[String]) -> Vec<PortSpec> {
    let mut specs = c.options.publish.clone();
    if c.options.publish_all {
        for e in exposed {
            let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            if let Ok(p) = format!("{port}/{proto}").parse::<PortSpec>()
                && !specs
                    .iter()
                    .any(|s| s.container_port == p.container_port && s.protocol == p.protocol)
            {
                specs.push(p);
            }
        }
    }
    specs
}

/// The container's /etc/resolv.conf: the DNS server at 127.0.0.11 when it
/// is on a user-defined network (which resolves container names), else the
/// host's reachable nameservers or `--dns`.
pub fn resolv_conf(o: &crate::options::RunOptions) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let embedded = o.connections().iter().any(|c| c.network != DEFAULT);
    network::dns::container_resolv_conf(&host, embedded, &o.dns)
}

/// Plugs a container's namespace into one network as `eth{index}`: an
/// address from the network's pool, the bridge (made if missing), a veth
/// pair whose peer is created inside the namespace, the address and, when
/// `route` is set, the default route through the network's gateway. The
/// lock is held.
fn plug(
    nets: &Networks,
    (host, ns, inside): (&Netlink, &NetNs, &Netlink),
    id: &str,
    index: usize,
    (conn, record): (&Connection, &Record),
    route: bool,
) -> Result<Endpoint> {
    let ip = nets.leases.update(
        &record.name,
        || Pool::new(record.subnet, Some(record.gateway)),
        |pool| pool.allocate(id, conn.ip),
    )?;
    let bridge = nets.ensure_bridge(host, record)?;
    network::sysctl::enable_forwarding()?;
    let veth = veth_name(id, index);
    let interface = format!("eth{index}");
    let mac = link::mac_for(ip);
    // One request: the pair, its peer inside the container's namespace,
    // the host end on the bridge and up.
    host.veth_on_bridge(&veth, &interface, ns.fd()?.as_fd(), Some(mac), bridge)?;
    host.set_hairpin(&veth, true)?;
    let (gateway, prefix) = (record.gateway, record.subnet.prefix());
    // The socket `inside` was opened in the container's namespace.
    inside.configure(&interface, ip, prefix, route.then_some(gateway))?;
    Ok(Endpoint {
        network: record.name.clone(),
        network_id: record.id.clone(),
        ip,
        prefix,
        gateway,
        mac: link::format_mac(&mac),
        veth,
        interface,
        aliases: conn.aliases.clone(),
    })
}

// ANCHOR: attach
/// Builds a starting container's network: a pinned namespace, one veth
/// pair per network from the network's bridge into it (`eth0`, `eth1`, ...)
/// with an address, a default route through the first network that has a
/// way out, the host ports it publishes (bound, then DNATed by the
/// firewall to its first address), its /etc/hosts line and a DNS server
/// inside it. Records the endpoints and ports in the container's record.
/// On failure, everything made so far is removed again.
pub fn attach(store: &Store, c: &Container, exposed: &[String]) -> Result<Option<Attachment>> {
    let connections = c.options.connections();
    if connections.is_empty() {
        return Ok(None);
    }
    if c.options.rootless {
        bail!("bridge networks need root: run as root, or use --network none or host");
    }
    let nets = Networks::open(store)?;
    let records = connections
        .iter()
        .map(|conn| nets.get(&conn.network))
        .collect::<Result<Vec<Record>>>()?;
    // A leftover of a monitor that was killed goes first.
    detach(store, &c.id);
    let result = (|| -> Result<Attachment> {
        let mut reserved = Vec::new();
        let mut ports = Vec::new();
        if !records[0].internal {
            for spec in port_specs(c, exposed) {
                let (fd, host_port) = reserve(&spec)?;
                reserved.push(fd);
                ports.push(Binding {
                    protocol: spec.protocol,
                    host_ip: spec.host_ip,
                    host_port,
                    container_port: spec.container_port,
                });
            }
        } else if !c.options.publish.is_empty() {
            bail!(
                "network {} is internal: its containers cannot publish ports",
                records[0].name
            );
        }
        let path = netns_path(store, &c.id);
        let (ns, inside) = NetNs::create_with_netlink(&path)?;
        let lock = nets.lock()?;
        let host = Netlink::open()?;
        let mut route = true;
        for (index, (conn, record)) in connections.iter().zip(&records).enumerate() {
            let endpoint = plug(
                &nets,
                (&host, &ns, &inside),
                &c.id,
                index,
                (conn, record),
                route && !record.internal,
            )?;
            route &= record.internal;
            // Recorded at once, so that a crash leaves nothing unrecorded.
            store.update(&c.id, |rec| {
                rec.endpoints.push(endpoint.clone());
                Ok(())
            })?;
        }
        let c = store.update(&c.id, |rec| {
            rec.ports = ports.clone();
            Ok(rec.clone())
        })?;
        write_hosts(store, &c)?;
        nets.refresh_firewall(store)?;
        nets.refresh_dns(store)?;
        // The DNS server is a child process: it must not inherit the lock.
        drop(lock);
        let dns = start_dns(store, &c.id, &ns, &c.options.dns)?;
        Ok(Attachment {
            netns: path,
            _reserved: reserved,
            dns: Some(dns),
        })
    })();
    if result.is_err() {
        detach(store, &c.id);
    }
    result.map(Some)
}
// ANCHOR_END: attach

/// `berth network connect`: puts a container on one more network. A
/// running container gets a new interface at once (the lowest free
/// `ethN`); a stopped one gets it when it starts.
pub fn connect(store: &Store, c: &Container, mut conn: Connection) -> Result<()> {
    let nets = Networks::open(store)?;
    let record = nets.get(&conn.network)?;
    conn.network = record.name.clone();
    match &c.options.network {
        NetworkMode::Host => bail!(
            "container {} uses the host's network: it cannot be connected to other networks",
            c.name
        ),
        NetworkMode::None if c.options.rootless => {
            bail!("bridge networks need root: run as root, or use --network none or host")
        }
        NetworkMode::None if c.state.status.is_active() => bail!(
            "container {} runs with --network none: stop it first, then connect it",
            c.name
        ),
        _ => {}
    }
    if c.options.is_on(&record.name) {
        bail!(
            "container {} is already on network {}: disconnect it first to change its settings",
            c.name,
            record.name
        );
    }
    record.check_ip(conn.ip)?;
    let add = |rec: &mut Container| -> Result<()> {
        if rec.options.network == NetworkMode::None {
            rec.options.network = NetworkMode::Bridge(conn.network.clone());
            rec.options.network_aliases = conn.aliases.clone();
            rec.options.ip = conn.ip;
        } else {
            rec.options.also_networks.push(conn.clone());
        }
        Ok(())
    };
    let path = netns_path(store, &c.id);
    if !path.exists() {
        // Not running (or running without a network of its own: `none`
        // gets one at its next start).
        store.update(&c.id, add)?;
        return Ok(());
    }
    let ns = NetNs::open(&path)?;
    let inside = ns.netlink()?;
    let lock = nets.lock()?;
    let c = store.load(&c.id)?;
    let taken: Vec<&str> = c.endpoints.iter().map(|e| e.interface.as_str()).collect();
    let index = (0..)
        .find(|n| !taken.contains(&format!("eth{n}").as_str()))
        .unwrap_or(0);
    let routed = c
        .endpoints
        .iter()
        .any(|e| nets.get(&e.network).is_ok_and(|r| !r.internal));
    let host = Netlink::open()?;
    let endpoint = match plug(
        &nets,
        (&host, &ns, &inside),
        &c.id,
        index,
        (&conn, &record),
        !routed && !record.internal,
    ) {
        Ok(e) => e,
        Err(e) => {
            let _ = host.delete(&veth_name(&c.id, index));
            let _ = release(&nets, &record.name, &c.id);
            return Err(e);
        }
    };
    let c = store.update(&c.id, |rec| {
        rec.endpoints.push(endpoint.clone());
        add(rec)?;
        Ok(rec.clone())
    })?;
    nets.refresh_firewall(store)?;
    nets.refresh_dns(store)?;
    drop(lock);
    write_resolv_conf(store, &c)
}

/// `berth network disconnect`: takes a container off a network. A running
/// container loses that interface at once.
pub fn disconnect(store: &Store, c: &Container, network: &str) -> Result<()> {
    let nets = Networks::open(store)?;
    let name = nets
        .get(network)
        .map(|r| r.name)
        .unwrap_or(network.to_string());
    if !c.options.is_on(&name) {
        bail!("container {} is not connected to network {name}", c.name);
    }
    let lock = nets.lock()?;
    let c = store.load(&c.id)?;
    if let Some(e) = c.endpoints.iter().find(|e| e.network == name) {
        Netlink::open()?.delete(&e.veth)?;
    }
    release(&nets, &name, &c.id)?;
    let c = store.update(&c.id, |rec| {
        rec.endpoints.retain(|e| e.network != name);
        rec.options.leave(&name);
        if rec.endpoints.is_empty() {
            rec.ports.clear();
        }
        Ok(rec.clone())
    })?;
    nets.refresh_firewall(store)?;
    nets.refresh_dns(store)?;
    drop(lock);
    if !c.endpoints.is_empty() {
        write_resolv_conf(store, &c)?;
        write_hosts(store, &c)?;
    }
    Ok(())
}

/// Gives back a container's address on one network.
fn release(nets: &Networks, network: &str, id: &str) -> Result<()> {
    nets.leases
        .update(
            network,
            || Err(network::Error::Invalid("no leases".into())),
            |p| {
                p.release(id);
                Ok(())
            },
        )
        .or_else(|e| match e {
            network::Error::Invalid(_) => Ok(()),
            e => Err(e),
        })?;
    Ok(())
}

/// Rewrites a container's /etc/resolv.conf in place (it is bind-mounted):
/// joining a user-defined network switches it to the DNS server.
fn write_resolv_conf(store: &Store, c: &Container) -> Result<()> {
    let path = store.container_dir(&c.id).join("resolv.conf");
    std::fs::write(&path, resolv_conf(&c.options))
        .with_context(|| format!("write {}", path.display()))
}

/// Rewrites the container's /etc/hosts with its own address on its first
/// network (the file is bind-mounted, so it is written in place).
fn write_hosts(store: &Store, c: &Container) -> Result<()> {
    let path = store.container_dir(&c.id).join("hosts");
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let mut names = vec![c.options.hostname.clone()];
    if c.name != c.options.hostname {
        names.push(c.name.clone());
    }
    if let Some(e) = c.endpoints.first() {
        text.push_str(&format!("{}\t{}\n", e.ip, names.join(" ")));
    }
    for (name, addr) in &c.options.add_hosts {
        text.push_str(&format!("{addr}\t{name}\n"));
    }
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}

/// Forks the container's DNS server: a socket on 127.0.0.11:53 inside its
/// namespace, answering from the names of the user-defined networks it is
/// on and forwarding the rest to the host's resolvers. The process dies
/// with the monitor.
fn start_dns(store: &Store, id: &str, ns: &NetNs, extra: &[IpAddr]) -> Result<nix::unistd::Pid> {
    let socket = ns.run(|| {
        UdpSocket::bind(SocketAddr::from((
            network::dns::SERVER_ADDR,
            network::dns::DNS_PORT,
        )))
        .map_err(|e| network::Error::io("bind", "127.0.0.11:53", e))
    })?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstreams = network::dns::server_upstreams(&host_resolv, extra);
    let records = dns_records_path(store, id);
    // SAFETY: the monitor is single-threaded here; the child only serves.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            // SAFETY: prctl sets a flag on this process; the rest only
            // moves and closes descriptors of this new process: the socket
            // becomes fd 3, stdio /dev/null, and nothing else of the
            // monitor's stays open (its pipes, its ports, its locks).
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let fd = std::os::fd::IntoRawFd::into_raw_fd(socket);
                libc::dup2(fd, 3);
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                for std_fd in 0..3 {
                    libc::dup2(null, std_fd);
                }
                libc::close_range(4, u32::MAX, 0);
            }
            // SAFETY: fd 3 is the socket, owned by nothing else now.
            let socket = unsafe { std::os::fd::FromRawFd::from_raw_fd(3) };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let lookup = std::sync::Arc::new(network::dns::FileRecords::new(records));
            let _ = network::dns::serve(socket, lookup, upstreams, stop);
            // SAFETY: leave without running the monitor's destructors.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => Ok(child),
    }
}

/// Removes everything made for a container's network, as far as it exists:
/// its veth pairs, the pinned namespace, its leases, its firewall rules and
/// DNS names. Goes on after errors (logged), so it also cleans up after a
/// crash.
pub fn detach(store: &Store, id: &str) {
    let Ok(c) = store.load(id) else {
        return;
    };
    let Ok(nets) = Networks::open(store) else {
        return;
    };
    let log = |what: &str, r: Result<()>| {
        if let Err(e) = r {
            tracing::warn!(container = id, "{what}: {e:#}");
        }
    };
    // Every network it is on or has an endpoint on, by name.
    let mut networks: Vec<String> = Vec::new();
    for n in c
        .options
        .connections()
        .into_iter()
        .map(|conn| conn.network)
        .chain(c.endpoints.iter().map(|e| e.network.clone()))
    {
        let n = nets.get(&n).map(|r| r.name).unwrap_or(n);
        if !networks.contains(&n) {
            networks.push(n);
        }
    }
    if let Ok(nl) = Netlink::open() {
        let mut veths: Vec<String> = (0..=networks.len()).map(|n| veth_name(id, n)).collect();
        veths.extend(c.endpoints.iter().map(|e| e.veth.clone()));
        veths.dedup();
        for veth in veths {
            log("delete veth", nl.delete(&veth).map_err(Into::into));
        }
    }
    log(
        "unpin network namespace",
        netns::remove(&netns_path(store, id)).map_err(Into::into),
    );
    let lock = nets.lock();
    for n in &networks {
        log("release address", release(&nets, n, id));
    }
    if !c.endpoints.is_empty() || !c.ports.is_empty() {
        log(
            "forget endpoints",
            store
                .update(id, |rec| {
                    rec.endpoints.clear();
                    rec.ports.clear();
                    Ok(())
                })
                .map(|_| ()),
        );
    }
    if lock.is_ok() && !networks.is_empty() {
        log("update DNS names", nets.refresh_dns(store));
        log("update firewall", nets.refresh_firewall(store));
    }
}

/// `docker inspect`'s `NetworkSettings` for a container.
pub fn settings(c: &Container) -> serde_json::Value {
    let mut ports = BTreeMap::new();
    for b in &c.ports {
        ports
            .entry(format!("{}/{}", b.container_port, b.protocol))
            .or_insert_with(Vec::new)
            .push(serde_json::json!({
                "HostIp": b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                "HostPort": b.host_port.to_string(),
            }));
    }
    let first = c.endpoints.first();
    let networks: serde_json::Map<String, serde_json::Value> = c
        .endpoints
        .iter()
        .map(|e| {
            (
                e.network.clone(),
                serde_json::json!({
                    "NetworkID": e.network_id,
                    "IPAddress": e.ip.to_string(),
                    "IPPrefixLen": e.prefix,
                    "Gateway": e.gateway.to_string(),
                    "MacAddress": e.mac,
                    "Aliases": e.aliases,
                }),
            )
        })
        .collect();
    serde_json::json!({
        "IPAddress": first.map(|e| e.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": first.map(|e| e.prefix).unwrap_or(0),
        "Gateway": first.map(|e| e.gateway.to_string()).unwrap_or_default(),
        "MacAddress": first.map(|e| e.mac.clone()).unwrap_or_default(),
        "Ports": ports,
        "Networks": networks,
        "SandboxKey": first.map(|_| format!("netns/{}", c.id)).unwrap_or_default(),
    })
}
