//! Step 04.3: subnets and addresses, handed out once.
//!
//! Every container on a bridge network needs an address from the bridge's
//! subnet, and no two containers may get the same one: two hosts answering
//! ARP for one address make traffic go to whichever answered last. IP
//! address management (IPAM) is the bookkeeping that prevents this:
//!
//! - a network has a [`Subnet`] (`docker network create --subnet
//!   10.89.0.0/24`), or gets one that collides with nothing on the host from
//!   [`pick_subnet`];
//! - the bridge itself holds the *gateway* address, the containers' default
//!   route; the first and last addresses of the subnet (the network and
//!   broadcast addresses) belong to no host;
//! - a [`Pool`] records which container holds which address and hands out
//!   the next free one, or the one asked for with `--ip`;
//! - a [`Store`] keeps each network's pool in a JSON file and changes it
//!   under a lock, because two `berth run` processes may start containers
//!   on one network at the same moment.
//!
//! Everything here is plain data and files: no root needed to test it.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How to write a subnet, for error messages.
const SUBNET_FORM: &str = "write it as ADDRESS/PREFIX, e.g. 10.89.0.0/24";

/// An IPv4 subnet such as 10.88.0.0/16: a network address whose first
/// `prefix` bits are fixed, and whose remaining (host) bits are all zero.
/// The addresses that share those first bits are the subnet's members.
///
/// It is written, parsed and serialized as the text `10.88.0.0/16`. A
/// subnet always has room for a gateway and at least one container, so
/// the prefix is at most 30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// Checks and builds a subnet: the prefix must be 0 to 30, and the
    /// address must be the network's own (no host bits set), so that
    /// `10.88.0.1/16` is caught as the likely typo it is.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self> {
        if prefix > 32 {
            return Err(Error::Invalid(format!(
                "invalid subnet {addr}/{prefix}: {prefix} is not a prefix length from 0 to 32; \
                 {SUBNET_FORM}"
            )));
        }
        let subnet = Subnet { addr, prefix };
        let network = Ipv4Addr::from(u32::from(addr) & u32::from(subnet.netmask()));
        if network != addr {
            return Err(Error::Invalid(format!(
                "{addr}/{prefix} has host bits set: the network is {network}/{prefix}"
            )));
        }
        if prefix > 30 {
            return Err(Error::Invalid(format!(
                "{addr}/{prefix} is too small: a /31 or /32 has no room for a gateway and a \
                 container; use /30 or larger"
            )));
        }
        Ok(subnet)
    }

    /// The network address, the first address of the subnet.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The number of leading bits every member shares with the network
    /// address.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    // ANCHOR: subnet
    /// The prefix as a mask: `prefix` one bits followed by zeros, so /16 is
    /// 255.255.0.0. An address ANDed with it gives its network address.
    pub fn netmask(&self) -> Ipv4Addr {
        // BEGIN SOLUTION 04.3
        // Shifting a u32 by 32 overflows: /0 is the empty mask.
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix))
                .unwrap_or(0),
        )
        // END SOLUTION
    }

    /// The last address of the subnet, all host bits set; a packet sent
    /// there goes to every host on the link, so no host may own it.
    pub fn broadcast(&self) -> Ipv4Addr {
        // BEGIN SOLUTION 04.3
        Ipv4Addr::from(u32::from(self.addr) | !u32::from(self.netmask()))
        // END SOLUTION
    }

    /// True when `ip` is a member: masking off its host bits leaves the
    /// network address.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        // BEGIN SOLUTION 04.3
        u32::from(ip) & u32::from(self.netmask()) == u32::from(self.addr)
        // END SOLUTION
    }

    /// True when the two subnets share at least one address. Subnets are
    /// aligned blocks, so they either nest or are disjoint: they overlap
    /// exactly when one contains the other's network address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        // BEGIN SOLUTION 04.3
        self.contains(other.addr) || other.contains(self.addr)
        // END SOLUTION
    }
    // ANCHOR_END: subnet

    /// The first address after the network address; bridges conventionally
    /// take it as the gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        // BEGIN SOLUTION 04.3
        Ipv4Addr::from(u32::from(self.addr) + 1)
        // END SOLUTION
    }

    /// How many addresses hosts can use: all of them but the network and
    /// broadcast addresses (the gateway is one of these hosts).
    pub fn size(&self) -> u64 {
        // BEGIN SOLUTION 04.3
        (1u64 << (32 - u32::from(self.prefix))) - 2
        // END SOLUTION
    }
}

impl FromStr for Subnet {
    type Err = Error;

    /// Parses `ADDRESS/PREFIX`, as `--subnet` takes it.
    fn from_str(s: &str) -> Result<Self> {
        let fail =
            |why: String| Error::Invalid(format!("invalid subnet {s:?}: {why}; {SUBNET_FORM}"));
        let Some((addr, prefix)) = s.split_once('/') else {
            return Err(fail("the prefix length is missing".into()));
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| fail(format!("{addr:?} is not an IPv4 address")))?;
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 32 && !prefix.starts_with('+'))
            .ok_or_else(|| fail(format!("{prefix:?} is not a prefix length from 0 to 32")))?;
        Subnet::new(addr, prefix)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl TryFrom<String> for Subnet {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(subnet: Subnet) -> String {
        subnet.to_string()
    }
}

/// A container id as error messages show it: its first 12 characters.
fn short(owner: &str) -> &str {
    owner
        .char_indices()
        .nth(12)
        .map_or(owner, |(i, _)| &owner[..i])
}

/// The addresses of one network: its subnet, its gateway, and which
/// container holds which address. Allocation goes round-robin, as Docker's
/// does: the search for a free address starts after the last one handed
/// out, so an address a container just released is not given to the next
/// container at once (whose peers may still have the old owner's MAC
/// address in their ARP caches).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// The network's subnet.
    pub subnet: Subnet,
    /// The bridge's own address, never leased to a container.
    pub gateway: Ipv4Addr,
    /// Address → owner (a container id), one entry per lease.
    pub leases: BTreeMap<Ipv4Addr, String>,
    /// The last address [`Pool::allocate`] picked by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<Ipv4Addr>,
}

impl Pool {
    /// An empty pool. The gateway defaults to the subnet's first host; one
    /// given must be a host address inside the subnet.
    pub fn new(subnet: Subnet, gateway: Option<Ipv4Addr>) -> Result<Pool> {
        // BEGIN SOLUTION 04.3
        let gateway = gateway.unwrap_or_else(|| subnet.first_host());
        let fix = format!(
            "pick a host address in {subnet}, or leave the gateway out to use {}",
            subnet.first_host()
        );
        if !subnet.contains(gateway) {
            return Err(Error::Invalid(format!(
                "gateway {gateway} is outside subnet {subnet}: {fix}"
            )));
        }
        if gateway == subnet.addr() {
            return Err(Error::Invalid(format!(
                "gateway {gateway} is the network address of {subnet}: {fix}"
            )));
        }
        if gateway == subnet.broadcast() {
            return Err(Error::Invalid(format!(
                "gateway {gateway} is the broadcast address of {subnet}: {fix}"
            )));
        }
        Ok(Pool {
            subnet,
            gateway,
            leases: BTreeMap::new(),
            last: None,
        })
        // END SOLUTION
    }

    // ANCHOR: allocate
    /// Leases an address to `owner` and returns it.
    ///
    /// With `requested` (`--ip`), that address, if it is a free host address
    /// of the subnet other than the gateway. Without, the next free address
    /// after the last one handed out, wrapping around to the start of the
    /// subnet. An owner that already holds a lease gets it back unchanged,
    /// so a retried `network connect` does not take a second address.
    pub fn allocate(&mut self, owner: &str, requested: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
        // BEGIN SOLUTION 04.3
        let subnet = self.subnet;
        if let Some((&held, _)) = self.leases.iter().find(|(_, o)| *o == owner) {
            return match requested {
                Some(ip) if ip != held => Err(Error::Invalid(format!(
                    "container {} already has address {held} in {subnet}: disconnect it from \
                     the network before asking for {ip}",
                    short(owner)
                ))),
                _ => Ok(held),
            };
        }

        if let Some(ip) = requested {
            let refuse = |what: &str| {
                Err(Error::Invalid(format!(
                    "--ip {ip} is {what} of {subnet}: pick another address in {subnet}"
                )))
            };
            if !subnet.contains(ip) {
                return Err(Error::Invalid(format!(
                    "--ip {ip} is outside network's subnet {subnet}: pick an address in {subnet}"
                )));
            }
            if ip == subnet.addr() {
                return refuse("the network address");
            }
            if ip == subnet.broadcast() {
                return refuse("the broadcast address");
            }
            if ip == self.gateway {
                return refuse("the gateway");
            }
            if let Some(other) = self.leases.get(&ip) {
                return Err(Error::Invalid(format!(
                    "address {ip} is already in use by container {}: pick another address, or \
                     leave out --ip to get a free one",
                    short(other)
                )));
            }
            // A chosen address does not move the round-robin position.
            self.leases.insert(ip, owner.to_string());
            return Ok(ip);
        }

        // Host addresses as numbers, first..=last, and a step that wraps.
        let first = u32::from(subnet.addr()) + 1;
        let last = u32::from(subnet.broadcast()) - 1;
        let next = |n: u32| if n >= last { first } else { n + 1 };
        let start = match self.last {
            Some(ip) if subnet.contains(ip) => next(u32::from(ip)),
            _ => first,
        };
        let mut n = start;
        loop {
            let ip = Ipv4Addr::from(n);
            if ip != self.gateway && !self.leases.contains_key(&ip) {
                self.leases.insert(ip, owner.to_string());
                self.last = Some(ip);
                return Ok(ip);
            }
            n = next(n);
            if n == start {
                return Err(Error::Invalid(format!(
                    "no free address left in {subnet}: remove a container from the network or \
                     create a network with a larger subnet"
                )));
            }
        }
        // END SOLUTION
    }
    // ANCHOR_END: allocate

    /// Frees every address `owner` holds and returns them, lowest first.
    /// The round-robin position stays where it is, so they are handed out
    /// again only once allocation has gone round the subnet.
    pub fn release(&mut self, owner: &str) -> Vec<Ipv4Addr> {
        // BEGIN SOLUTION 04.3
        let freed: Vec<Ipv4Addr> = self
            .leases
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &freed {
            self.leases.remove(ip);
        }
        freed
        // END SOLUTION
    }
}

// ANCHOR: pick_subnet
/// The subnets [`pick_subnet`] tries, in order: Docker's default address
/// pools, 172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/16 cut into
/// sixteen /20s.
fn default_candidates() -> impl Iterator<Item = Subnet> {
    let wide = (17..=31).map(|b| Subnet {
        addr: Ipv4Addr::new(172, b, 0, 0),
        prefix: 16,
    });
    let narrow = (0..16).map(|i| Subnet {
        addr: Ipv4Addr::new(192, 168, i * 16, 0),
        prefix: 20,
    });
    wide.chain(narrow)
}

/// Picks a subnet for a new network that overlaps none of `taken`: the
/// other networks' subnets and the host's own routes and addresses (leave
/// out the default route, 0.0.0.0/0, which overlaps everything). The
/// candidates, in order, are Docker's default address pools: 172.17.0.0/16
/// to 172.31.0.0/16, then 192.168.0.0/20, 192.168.16.0/20 … 192.168.240.0/20.
pub fn pick_subnet(taken: &[Subnet]) -> Result<Subnet> {
    // BEGIN SOLUTION 04.3
    default_candidates()
        .find(|c| !taken.iter().any(|t| t.overlaps(c)))
        .ok_or_else(|| {
            Error::Invalid(
                "every default subnet is in use: give one with --subnet, e.g. --subnet \
                 10.89.0.0/24"
                    .into(),
            )
        })
    // END SOLUTION
}
// ANCHOR_END: pick_subnet

/// Leases on disk: one JSON file per network (`DIR/NAME.json`), changed
/// only under an exclusive lock on `DIR/NAME.lock`, so that concurrent
/// `berth` processes never hand out one address twice.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Checks a network name before it becomes part of a file name.
fn check_network_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{name:?} is not a valid network name: use letters, digits, '_', '.' and '-', starting \
         with a letter or digit"
    )))
}

impl Store {
    /// Opens the store in `dir`, creating the directory if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| Error::io("create IPAM directory", &dir, e))?;
        Ok(Store { dir })
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn pool_path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}.json"))
    }

    fn lock_path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}.lock"))
    }

    /// Takes the network's exclusive lock, waiting for whoever holds it.
    /// The lock is released when the returned value is dropped.
    ///
    /// `flock(2)` locks an open file, not a path. [`Store::remove`] deletes
    /// the lock file while holding the lock, so a process that was waiting
    /// on it then holds a lock nobody else can see; after locking, we check
    /// that the path still names the file we locked, and start over if not.
    fn lock(&self, network: &str) -> Result<Flock<File>> {
        // BEGIN SOLUTION 04.3
        let path = self.lock_path(network);
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io("open lock file", &path, e))?;
            let locked = match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(locked) => locked,
                Err((_, Errno::EINTR)) => continue,
                Err((_, errno)) => return Err(Error::io("lock", &path, errno.into())),
            };
            let held = locked
                .metadata()
                .map_err(|e| Error::io("stat lock file", &path, e))?;
            match fs::metadata(&path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(locked);
                }
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat lock file", &path, e)),
            }
        }
        // END SOLUTION
    }

    /// Writes the pool to a temporary file and renames it over the pool
    /// file, so a reader (or a crash) sees the old file or the new one,
    /// never half of one.
    fn write_pool(&self, network: &str, pool: &Pool) -> Result<()> {
        // BEGIN SOLUTION 04.3
        let path = self.pool_path(network);
        let tmp = self.dir.join(format!(".{network}.json.tmp"));
        let mut json = serde_json::to_vec_pretty(pool).expect("a pool always serializes");
        json.push(b'\n');
        let mut file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("rename into place", &path, e))?;
        // Make the rename itself durable.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("sync", &self.dir, e))
        // END SOLUTION
    }

    fn read_pool(&self, network: &str) -> Result<Option<Pool>> {
        let path = self.pool_path(network);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Invalid(format!(
                "the leases of network {network} in {} are damaged ({e}): remove the network \
                 and create it again",
                path.display()
            ))
        })
    }

    // ANCHOR: store_update
    /// Runs `f` on the network's pool with the network's lock held, then,
    /// if `f` succeeded, writes the pool back atomically and returns what
    /// `f` returned. A network without a file starts from the pool `init`
    /// makes (usually `Pool::new(subnet, gateway)`). Reading, changing and
    /// writing all happen under one lock, so two processes can never both
    /// see an address as free.
    pub fn update<T>(
        &self,
        network: &str,
        init: impl FnOnce() -> Result<Pool>,
        f: impl FnOnce(&mut Pool) -> Result<T>,
    ) -> Result<T> {
        check_network_name(network)?;
        // BEGIN SOLUTION 04.3
        let _lock = self.lock(network)?;
        let mut pool = match self.read_pool(network)? {
            Some(pool) => pool,
            None => init()?,
        };
        let value = f(&mut pool)?;
        self.write_pool(network, &pool)?;
        Ok(value)
        // END SOLUTION
    }
    // ANCHOR_END: store_update

    /// The network's pool as last written, or `None` if it has none. No
    /// lock is needed to read: the file is only ever replaced whole.
    pub fn load(&self, network: &str) -> Result<Option<Pool>> {
        check_network_name(network)?;
        self.read_pool(network)
    }

    /// Deletes the network's pool file and lock file (a missing one is not
    /// an error). It holds the lock while deleting, so it never pulls a
    /// file from under an update in progress.
    pub fn remove(&self, network: &str) -> Result<()> {
        check_network_name(network)?;
        let _lock = self.lock(network)?;
        let tmp = self.dir.join(format!(".{network}.json.tmp"));
        for path in [self.pool_path(network), tmp, self.lock_path(network)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &path, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn net(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn err<T: fmt::Debug>(r: Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn parse_and_display() {
        for s in [
            "10.88.0.0/16",
            "10.89.0.0/24",
            "10.0.0.0/8",
            "192.168.1.4/30",
            "0.0.0.0/0",
        ] {
            assert_eq!(net(s).to_string(), s);
        }
        let s = net("172.17.0.0/16");
        assert_eq!((s.addr(), s.prefix()), (ip("172.17.0.0"), 16));
        assert_eq!(Subnet::new(ip("172.17.0.0"), 16).unwrap(), s);
        assert!(net("10.0.0.0/8") < net("10.0.0.0/16"));
        assert!(net("10.0.0.0/16") < net("10.1.0.0/16"));
    }

    #[test]
    fn parse_errors_name_the_fix() {
        // A valid one first: these checks run the solution code.
        assert_eq!(net("10.88.0.0/16").prefix(), 16);
        let cases = [
            (
                "10.88.0.0",
                "invalid subnet \"10.88.0.0\": the prefix length is missing; write it as \
                 ADDRESS/PREFIX, e.g. 10.89.0.0/24",
            ),
            (
                "10.88.0/16",
                "invalid subnet \"10.88.0/16\": \"10.88.0\" is not an IPv4 address; write it as \
                 ADDRESS/PREFIX, e.g. 10.89.0.0/24",
            ),
            (
                "db/16",
                "invalid subnet \"db/16\": \"db\" is not an IPv4 address; write it as \
                 ADDRESS/PREFIX, e.g. 10.89.0.0/24",
            ),
            (
                "10.88.0.0/33",
                "invalid subnet \"10.88.0.0/33\": \"33\" is not a prefix length from 0 to 32; \
                 write it as ADDRESS/PREFIX, e.g. 10.89.0.0/24",
            ),
            (
                "10.88.0.0/",
                "invalid subnet \"10.88.0.0/\": \"\" is not a prefix length from 0 to 32; write \
                 it as ADDRESS/PREFIX, e.g. 10.89.0.0/24",
            ),
            (
                "10.88.0.0/+16",
                "invalid subnet \"10.88.0.0/+16\": \"+16\" is not a prefix length from 0 to 32; \
                 write it as ADDRESS/PREFIX, e.g. 10.89.0.0/24",
            ),
            (
                "10.88.0.1/16",
                "10.88.0.1/16 has host bits set: the network is 10.88.0.0/16",
            ),
            (
                "192.168.1.5/30",
                "192.168.1.5/30 has host bits set: the network is 192.168.1.4/30",
            ),
            (
                "10.88.0.0/31",
                "10.88.0.0/31 is too small: a /31 or /32 has no room for a gateway and a \
                 container; use /30 or larger",
            ),
            (
                "10.88.0.7/32",
                "10.88.0.7/32 is too small: a /31 or /32 has no room for a gateway and a \
                 container; use /30 or larger",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(err(input.parse::<Subnet>()), want, "{input}");
        }
        assert_eq!(
            err(Subnet::new(ip("10.88.0.0"), 40)),
            "invalid subnet 10.88.0.0/40: 40 is not a prefix length from 0 to 32; write it as \
             ADDRESS/PREFIX, e.g. 10.89.0.0/24"
        );
    }

    #[test]
    fn serializes_as_text() {
        let s = net("10.88.0.0/16");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"10.88.0.0/16\"");
        assert_eq!(
            serde_json::from_str::<Subnet>("\"10.88.0.0/16\"").unwrap(),
            s
        );
        let e = serde_json::from_str::<Subnet>("\"10.88.0.1/16\"").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("10.88.0.1/16 has host bits set: the network is 10.88.0.0/16"),
            "{e}"
        );
    }

    #[test]
    fn netmask_broadcast_size() {
        let cases = [
            (
                "192.168.1.4/30",
                "255.255.255.252",
                "192.168.1.7",
                "192.168.1.5",
                2,
            ),
            (
                "10.89.0.0/24",
                "255.255.255.0",
                "10.89.0.255",
                "10.89.0.1",
                254,
            ),
            (
                "10.88.0.0/16",
                "255.255.0.0",
                "10.88.255.255",
                "10.88.0.1",
                65_534,
            ),
            (
                "10.0.0.0/8",
                "255.0.0.0",
                "10.255.255.255",
                "10.0.0.1",
                16_777_214,
            ),
            (
                "0.0.0.0/0",
                "0.0.0.0",
                "255.255.255.255",
                "0.0.0.1",
                4_294_967_294,
            ),
        ];
        for (s, mask, broadcast, first, size) in cases {
            let s = net(s);
            assert_eq!(s.netmask(), ip(mask), "{s}");
            assert_eq!(s.broadcast(), ip(broadcast), "{s}");
            assert_eq!(s.first_host(), ip(first), "{s}");
            assert_eq!(s.size(), size, "{s}");
        }
    }

    #[test]
    fn contains_edges() {
        let s30 = net("192.168.1.4/30");
        for a in ["192.168.1.4", "192.168.1.5", "192.168.1.6", "192.168.1.7"] {
            assert!(s30.contains(ip(a)), "{a}");
        }
        for a in ["192.168.1.3", "192.168.1.8", "192.168.2.5"] {
            assert!(!s30.contains(ip(a)), "{a}");
        }
        let s16 = net("10.88.0.0/16");
        assert!(s16.contains(ip("10.88.0.0")));
        assert!(s16.contains(ip("10.88.255.255")));
        assert!(!s16.contains(ip("10.87.255.255")));
        assert!(!s16.contains(ip("10.89.0.0")));
        let s8 = net("10.0.0.0/8");
        assert!(s8.contains(ip("10.255.255.255")));
        assert!(!s8.contains(ip("11.0.0.0")));
        assert!(!s8.contains(ip("9.255.255.255")));
        assert!(net("0.0.0.0/0").contains(ip("255.255.255.255")));
    }

    #[test]
    fn overlaps_cases() {
        let pairs = [
            ("10.88.0.0/16", "10.88.0.0/16", true),
            ("10.88.0.0/16", "10.88.4.0/24", true),
            ("10.88.4.0/24", "10.88.0.0/16", true),
            ("10.0.0.0/8", "10.255.255.252/30", true),
            ("10.88.0.0/16", "10.89.0.0/16", false),
            ("192.168.1.4/30", "192.168.1.8/30", false),
            ("192.168.1.4/30", "192.168.1.0/30", false),
            ("172.16.0.0/12", "172.31.0.0/16", true),
            ("172.16.0.0/12", "172.32.0.0/16", false),
            ("0.0.0.0/0", "192.168.240.0/20", true),
        ];
        for (a, b, want) in pairs {
            assert_eq!(net(a).overlaps(&net(b)), want, "{a} {b}");
        }
    }

    #[test]
    fn gateway_defaults_and_checks() {
        let s = net("10.88.0.0/16");
        let pool = Pool::new(s, None).unwrap();
        assert_eq!(pool.gateway, ip("10.88.0.1"));
        assert!(pool.leases.is_empty());
        assert_eq!(
            Pool::new(s, Some(ip("10.88.255.254"))).unwrap().gateway,
            ip("10.88.255.254")
        );
        let fix = "pick a host address in 10.88.0.0/16, or leave the gateway out to use 10.88.0.1";
        assert_eq!(
            err(Pool::new(s, Some(ip("10.89.0.1")))),
            format!("gateway 10.89.0.1 is outside subnet 10.88.0.0/16: {fix}")
        );
        assert_eq!(
            err(Pool::new(s, Some(ip("10.88.0.0")))),
            format!("gateway 10.88.0.0 is the network address of 10.88.0.0/16: {fix}")
        );
        assert_eq!(
            err(Pool::new(s, Some(ip("10.88.255.255")))),
            format!("gateway 10.88.255.255 is the broadcast address of 10.88.0.0/16: {fix}")
        );
    }

    #[test]
    fn allocates_in_order_skipping_reserved_addresses() {
        let mut pool = Pool::new(net("10.89.0.0/24"), None).unwrap();
        let got: Vec<Ipv4Addr> = (0..3)
            .map(|i| pool.allocate(&format!("c{i}"), None).unwrap())
            .collect();
        assert_eq!(got, [ip("10.89.0.2"), ip("10.89.0.3"), ip("10.89.0.4")]);

        // A gateway in the middle is stepped over; the network and
        // broadcast addresses are never handed out.
        let mut pool = Pool::new(net("192.168.1.8/29"), Some(ip("192.168.1.11"))).unwrap();
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| pool.allocate(&format!("c{i}"), None).unwrap())
            .collect();
        let want = [
            "192.168.1.9",
            "192.168.1.10",
            "192.168.1.12",
            "192.168.1.13",
            "192.168.1.14",
        ];
        assert_eq!(got, want.map(ip));
        assert_eq!(pool.leases.len(), 5);
        assert!(pool.allocate("c5", None).is_err());
    }

    #[test]
    fn released_address_waits_until_the_pool_wraps() {
        let mut pool = Pool::new(net("192.168.1.0/29"), None).unwrap();
        // Hosts .1-.6, gateway .1: containers get .2-.6.
        for owner in ["a", "b", "c"] {
            pool.allocate(owner, None).unwrap();
        }
        assert_eq!(pool.release("b"), [ip("192.168.1.3")]);
        assert_eq!(pool.allocate("d", None).unwrap(), ip("192.168.1.5"));
        assert_eq!(pool.allocate("e", None).unwrap(), ip("192.168.1.6"));
        // The end of the subnet: wrap around, skip the gateway and .2.
        assert_eq!(pool.allocate("f", None).unwrap(), ip("192.168.1.3"));
        assert_eq!(pool.release("a"), [ip("192.168.1.2")]);
        assert_eq!(pool.allocate("g", None).unwrap(), ip("192.168.1.2"));
        let owners: Vec<&str> = pool.leases.values().map(String::as_str).collect();
        assert_eq!(owners, ["g", "f", "c", "d", "e"]);
    }

    #[test]
    fn requested_addresses() {
        let s = net("10.88.0.0/16");
        let mut pool = Pool::new(s, None).unwrap();
        let id = "4f1c2a9b0e7d5c3a8f6b1d2e";
        assert_eq!(
            pool.allocate(id, Some(ip("10.88.0.5"))).unwrap(),
            ip("10.88.0.5")
        );
        // Asking again for the same address, or for none, is idempotent.
        assert_eq!(
            pool.allocate(id, Some(ip("10.88.0.5"))).unwrap(),
            ip("10.88.0.5")
        );
        assert_eq!(pool.allocate(id, None).unwrap(), ip("10.88.0.5"));
        // A chosen address does not move the round-robin position.
        assert_eq!(pool.allocate("x", None).unwrap(), ip("10.88.0.2"));

        let refusals = [
            (
                "10.99.0.5",
                "--ip 10.99.0.5 is outside network's subnet 10.88.0.0/16: pick an address in \
                 10.88.0.0/16",
            ),
            (
                "10.88.0.0",
                "--ip 10.88.0.0 is the network address of 10.88.0.0/16: pick another address in \
                 10.88.0.0/16",
            ),
            (
                "10.88.255.255",
                "--ip 10.88.255.255 is the broadcast address of 10.88.0.0/16: pick another \
                 address in 10.88.0.0/16",
            ),
            (
                "10.88.0.1",
                "--ip 10.88.0.1 is the gateway of 10.88.0.0/16: pick another address in \
                 10.88.0.0/16",
            ),
            (
                "10.88.0.5",
                "address 10.88.0.5 is already in use by container 4f1c2a9b0e7d: pick another \
                 address, or leave out --ip to get a free one",
            ),
        ];
        for (addr, want) in refusals {
            assert_eq!(err(pool.allocate("other", Some(ip(addr)))), want, "{addr}");
        }
        assert_eq!(
            err(pool.allocate(id, Some(ip("10.88.0.9")))),
            "container 4f1c2a9b0e7d already has address 10.88.0.5 in 10.88.0.0/16: disconnect \
             it from the network before asking for 10.88.0.9"
        );
        assert_eq!(pool.leases.len(), 2);
        assert!(!pool.leases.values().any(|o| o == "other"));
    }

    #[test]
    fn full_pool_is_an_error() {
        let mut pool = Pool::new(net("10.88.0.0/30"), None).unwrap();
        assert_eq!(pool.allocate("a", None).unwrap(), ip("10.88.0.2"));
        let want = "no free address left in 10.88.0.0/30: remove a container from the network \
                    or create a network with a larger subnet";
        assert_eq!(err(pool.allocate("b", None)), want);
        // Still full after a failed attempt; free again after a release.
        assert_eq!(err(pool.allocate("b", None)), want);
        assert_eq!(pool.release("a"), [ip("10.88.0.2")]);
        assert_eq!(pool.allocate("b", None).unwrap(), ip("10.88.0.2"));
    }

    #[test]
    fn owner_gets_its_lease_again() {
        let mut pool = Pool::new(net("10.89.0.0/24"), None).unwrap();
        let a = pool.allocate("a", None).unwrap();
        assert_eq!(pool.allocate("a", None).unwrap(), a);
        assert_eq!(pool.leases.len(), 1);
        assert_eq!(pool.allocate("b", None).unwrap(), ip("10.89.0.3"));
    }

    #[test]
    fn release_frees_every_lease_of_the_owner() {
        let mut pool = Pool::new(net("10.89.0.0/24"), None).unwrap();
        pool.allocate("a", None).unwrap();
        pool.allocate("b", None).unwrap();
        // Two leases for one owner can only come from outside (a file
        // edited by hand, another tool): release frees them all.
        pool.leases.insert(ip("10.89.0.9"), "a".into());
        assert_eq!(pool.release("a"), [ip("10.89.0.2"), ip("10.89.0.9")]);
        assert!(pool.release("a").is_empty());
        assert!(pool.release("nobody").is_empty());
        assert_eq!(
            pool.leases,
            BTreeMap::from([(ip("10.89.0.3"), "b".to_string())])
        );
    }

    #[test]
    fn pick_subnet_skips_taken_ranges() {
        assert_eq!(pick_subnet(&[]).unwrap(), net("172.17.0.0/16"));
        assert_eq!(
            pick_subnet(&[net("172.17.0.0/16"), net("172.18.5.0/24")]).unwrap(),
            net("172.19.0.0/16")
        );
        // A host route over all of 172.16.0.0/12 blocks every 172 candidate.
        assert_eq!(
            pick_subnet(&[net("172.16.0.0/12")]).unwrap(),
            net("192.168.0.0/20")
        );
        assert_eq!(
            pick_subnet(&[net("172.16.0.0/12"), net("192.168.1.0/24")]).unwrap(),
            net("192.168.16.0/20")
        );
        // Unrelated ranges change nothing.
        assert_eq!(
            pick_subnet(&[net("10.0.0.0/8"), net("172.32.0.0/16")]).unwrap(),
            net("172.17.0.0/16")
        );
        let mut taken = vec![net("172.16.0.0/12")];
        taken.extend((0..15).map(|i| Subnet::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).unwrap()));
        assert_eq!(pick_subnet(&taken).unwrap(), net("192.168.240.0/20"));
        let full = "every default subnet is in use: give one with --subnet, e.g. --subnet \
                    10.89.0.0/24";
        assert_eq!(
            err(pick_subnet(&[net("172.16.0.0/12"), net("192.168.0.0/16")])),
            full
        );
        assert_eq!(err(pick_subnet(&[net("0.0.0.0/0")])), full);
    }

    fn init(subnet: &str) -> impl FnOnce() -> Result<Pool> {
        let subnet = net(subnet);
        move || Pool::new(subnet, None)
    }

    #[test]
    fn store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("ipam")).unwrap();
        assert_eq!(store.dir(), dir.path().join("ipam"));
        assert_eq!(store.load("web").unwrap(), None);

        let a = store
            .update("web", init("10.89.0.0/24"), |p| p.allocate("a", None))
            .unwrap();
        assert_eq!(a, ip("10.89.0.2"));
        // The second update reads the file: `init` is not called again.
        let b = store
            .update(
                "web",
                || panic!("the pool exists"),
                |p| p.allocate("b", None),
            )
            .unwrap();
        assert_eq!(b, ip("10.89.0.3"));

        let pool = store.load("web").unwrap().unwrap();
        assert_eq!(pool.subnet, net("10.89.0.0/24"));
        assert_eq!(pool.gateway, ip("10.89.0.1"));
        assert_eq!(pool.leases.len(), 2);
        let json = fs::read_to_string(dir.path().join("ipam/web.json")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "subnet": "10.89.0.0/24",
                "gateway": "10.89.0.1",
                "leases": { "10.89.0.2": "a", "10.89.0.3": "b" },
                "last": "10.89.0.3",
            })
        );
        // The round-robin position survives the trip through the file.
        store
            .update("web", init("10.89.0.0/24"), |p| Ok(p.release("b")))
            .unwrap();
        let c = store
            .update("web", init("10.89.0.0/24"), |p| p.allocate("c", None))
            .unwrap();
        assert_eq!(c, ip("10.89.0.4"));

        // Networks are independent.
        let other = store
            .update("db", init("10.90.0.0/24"), |p| p.allocate("a", None))
            .unwrap();
        assert_eq!(other, ip("10.90.0.2"));

        store.remove("web").unwrap();
        assert_eq!(store.load("web").unwrap(), None);
        store.remove("web").unwrap();
        let mut left: Vec<String> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["db.json", "db.lock"]);

        for bad in ["", "../x", "a/b", ".hidden", "-x"] {
            assert_eq!(
                err(store.load(bad)),
                format!(
                    "{bad:?} is not a valid network name: use letters, digits, '_', '.' and \
                     '-', starting with a letter or digit"
                )
            );
        }
    }

    #[test]
    fn store_failed_update_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // A failing init or f leaves no pool behind.
        let e = store.update(
            "web",
            || Pool::new(net("10.89.0.0/24"), Some(ip("10.0.0.1"))),
            |p| p.allocate("a", None),
        );
        assert!(e.is_err());
        let e = store.update("web", init("10.89.0.0/30"), |p| {
            p.allocate("a", Some(ip("10.89.0.9")))
        });
        assert!(e.is_err());
        assert_eq!(store.load("web").unwrap(), None);

        store
            .update("web", init("10.89.0.0/30"), |p| p.allocate("a", None))
            .unwrap();
        let before = store.load("web").unwrap();
        assert!(
            store
                .update("web", init("10.89.0.0/30"), |p| p.allocate("b", None))
                .is_err()
        );
        assert_eq!(store.load("web").unwrap(), before);
    }

    #[test]
    fn store_damaged_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(dir.path().join("web.json"), "{ not json").unwrap();
        let e = err(store.update("web", init("10.89.0.0/24"), |p| p.allocate("a", None)));
        let path = dir.path().join("web.json");
        assert!(
            e.starts_with(&format!(
                "the leases of network web in {} are damaged (",
                path.display()
            )),
            "{e}"
        );
        assert!(
            e.ends_with("): remove the network and create it again"),
            "{e}"
        );
    }

    #[test]
    fn store_concurrent_allocations_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let got: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let path = path.clone();
                    s.spawn(move || {
                        // A Store of its own, as another process would have.
                        let store = Store::open(path).unwrap();
                        (0..25)
                            .map(|i| {
                                store
                                    .update("busy", init("10.89.0.0/24"), |p| {
                                        p.allocate(&format!("t{t}-c{i}"), None)
                                    })
                                    .unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(got.len(), 200);
        let distinct: BTreeSet<Ipv4Addr> = got.iter().copied().collect();
        assert_eq!(distinct.len(), 200, "an address was handed out twice");
        assert!(!distinct.contains(&ip("10.89.0.1")));

        let pool = Store::open(&path).unwrap().load("busy").unwrap().unwrap();
        assert_eq!(pool.leases.len(), 200);
        assert_eq!(
            pool.leases.keys().copied().collect::<BTreeSet<_>>(),
            distinct
        );
        let owners: BTreeSet<&String> = pool.leases.values().collect();
        assert_eq!(owners.len(), 200);
    }
}
