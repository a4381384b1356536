//! Step 04.7: names answered per network.
//!
//! A container's address is an accident of the order in which containers
//! were started: restart the database and it may come back with another
//! one. Containers should find each other by name. On a user-defined
//! network (`docker network create app`, then `docker run --network app
//! --name db …`), Docker gives every container a DNS server at
//! `127.0.0.11`, inside the container's own network namespace, that
//! answers:
//!
//! - the names of the other containers on the same networks, and their
//!   network aliases (`--network-alias search`); an alias shared by several
//!   containers returns all their addresses, in a rotating order, so that
//!   clients, which mostly take the first address, spread over the
//!   replicas (round-robin DNS, the poor man's load balancer);
//! - everything else by forwarding the query to the host's resolvers.
//!
//! The default bridge has no such server (that is what the legacy `--link`
//! and its `/etc/hosts` lines were for): its containers get a copy of the
//! host's nameservers instead, minus the loopback ones (`127.0.0.53` is
//! systemd-resolved on the host, but inside the container it is the
//! container's own loopback device, where nothing listens).
//!
//! The pieces:
//!
//! - [`Lookup`] is what the server knows: a name to its addresses. The
//!   engine writes the names of each container's networks to a records file
//!   ([`Records`], JSON) whenever a container joins or leaves, and
//!   [`FileRecords`] re-reads it when it changes;
//! - [`answer`] decides the reply to one query packet: an answer from
//!   [`Lookup`], or [`Reply::Forward`] when the name is not ours;
//! - [`serve`] runs the server on a UDP socket: it answers, forwards, and
//!   relays the upstream's response;
//! - [`container_resolv_conf`] writes the container's `/etc/resolv.conf`,
//!   and [`server_upstreams`] picks where the server forwards to.
//!
//! The server is one process per container, started by the engine with its
//! listening socket opened inside the container's namespace and its thread
//! back in the host's, so that the sockets it opens to forward queries
//! reach the host's resolvers, `127.0.0.53` included. This module only
//! sees sockets and addresses; answers are plain functions on bytes,
//! tested without root.

use std::collections::HashMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where a container on a user-defined network finds the server, as in
/// Docker: an address on the container's loopback device, so it is the
/// same in every container and reachable before any route exists.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// The DNS port, for the server and for every upstream.
pub const DNS_PORT: u16 = 53;

/// How long clients may cache a local answer, in seconds (Docker's value).
pub const TTL: u32 = 600;

/// The nameservers a container on the default bridge gets when the host
/// has none it could reach, as Docker does: Google's public resolvers.
pub const FALLBACK_NAMESERVERS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// How long the server waits for one upstream before trying the next.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How many queries may be forwarded at once (one thread each); beyond
/// that, a query gets SERVFAIL at once rather than a thread.
pub const MAX_FORWARDS: usize = 64;

/// How often [`serve`] looks at its stop flag.
const POLL: Duration = Duration::from_millis(200);

/// The largest UDP datagram: the size of the receive buffers.
const DATAGRAM: usize = 65_536;

/// The EDNS payload size the server advertises in its answers: what fits
/// in one unfragmented packet on nearly every path (DNS flag day 2020).
const EDNS_PAYLOAD: u16 = 1232;

/// Forget rotation counters when this many names have one (names come and
/// go with containers; the map must not grow forever).
const MAX_TURNS: usize = 4096;

/// Header bits and response codes read straight from a packet.
const QR_BIT: u8 = 0x80;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;

/// What the server knows: names and their IPv4 addresses. Names are
/// container names and network aliases, asked for in lower case, without
/// a trailing dot; no addresses means "not ours". A closure
/// `Fn(&str) -> Vec<Ipv4Addr>` is a `Lookup` too.
pub trait Lookup {
    /// The addresses of `name`, in a stable order (the server rotates them).
    fn lookup(&self, name: &str) -> Vec<Ipv4Addr>;
}

impl<F: Fn(&str) -> Vec<Ipv4Addr>> Lookup for F {
    fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        self(name)
    }
}

/// One name and one address: a container's name, or one of its aliases,
/// on one of the networks the server's container is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub ip: Ipv4Addr,
}

/// The engine's records file for one container's server:
/// `{"entries":[{"name":"web","ip":"10.89.0.2"}, …]}`. A name listed with
/// several addresses (an alias of several containers) has them all, in
/// the file's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    #[serde(default)]
    pub entries: Vec<Entry>,
}

impl Records {
    /// Reads a records file; a missing file is no records (no container
    /// has joined yet).
    pub fn load(path: impl AsRef<Path>) -> Result<Records> {
        let path = path.as_ref();
        match fs::read(path) {
            Ok(bytes) => parse_records(path, &bytes),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Records::default()),
            Err(e) => Err(Error::io("read DNS records", path, e)),
        }
    }

    /// Writes a records file atomically: to a temporary file next to it,
    /// then renamed over it, so that a server reading it at the same moment
    /// sees the old records or the new ones, never half of them.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Invalid(format!("cannot encode DNS records: {e}")))?;
        text.push(b'\n');
        fs::write(&tmp, text).map_err(|e| Error::io("write DNS records", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("replace DNS records", path, e)
        })
    }
}

/// Reads a records file: see [`Records::load`].
pub fn load(path: impl AsRef<Path>) -> Result<Records> {
    Records::load(path)
}

fn parse_records(path: &Path, bytes: &[u8]) -> Result<Records> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Invalid(format!(
            "{}: not a DNS records file ({e}); the engine writes it as \
             {{\"entries\":[{{\"name\":\"web\",\"ip\":\"10.89.0.2\"}}]}}: \
             remove it and reconnect the container to its networks to rebuild it",
            path.display()
        ))
    })
}

impl Lookup for Records {
    /// Every address listed for `name` (compared without regard to case or
    /// a trailing dot), each once, in the file's order.
    fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut found = Vec::new();
        for entry in &self.entries {
            let listed = entry.name.strip_suffix('.').unwrap_or(&entry.name);
            if listed.eq_ignore_ascii_case(name) && !found.contains(&entry.ip) {
                found.push(entry.ip);
            }
        }
        found
    }
}

/// What identifies one version of a file: replacing it by rename gives a
/// new inode, rewriting it in place a new mtime or size.
type Stamp = (u64, u64, i64, i64, u64);

fn stamp(meta: &fs::Metadata) -> Stamp {
    (
        meta.dev(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.size(),
    )
}

/// A records file, re-read whenever it changes. Each lookup looks at the
/// file's metadata (one `stat`) and parses it again only when the file was
/// replaced or modified since the last read. A file that does not parse
/// is reported once and the last good records are kept, so a broken write
/// does not make every container name vanish.
#[derive(Debug)]
pub struct FileRecords {
    path: PathBuf,
    cache: Mutex<Option<(Stamp, Records)>>,
}

impl FileRecords {
    /// Records from `path`, read on the first lookup.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileRecords {
            path: path.into(),
            cache: Mutex::new(None),
        }
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records as they are in the file now.
    pub fn current(&self) -> Records {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let meta = match fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) => {
                if e.kind() != ErrorKind::NotFound {
                    tracing::warn!("stat DNS records {}: {e}", self.path.display());
                }
                *cache = None;
                return Records::default();
            }
        };
        let now = stamp(&meta);
        if let Some((seen, records)) = cache.as_ref()
            && *seen == now
        {
            return records.clone();
        }
        let fresh = fs::read(&self.path)
            .map_err(|e| Error::io("read DNS records", &self.path, e))
            .and_then(|bytes| parse_records(&self.path, &bytes));
        let records = match fresh {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!("{e}; keeping the records read before");
                cache.take().map(|(_, old)| old).unwrap_or_default()
            }
        };
        *cache = Some((now, records.clone()));
        records
    }
}

impl Lookup for FileRecords {
    fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        self.current().lookup(name)
    }
}

/// How the server answers one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back to the client.
    Answer(Vec<u8>),
    /// Not one of ours: ask the upstream resolvers.
    Forward,
}

/// The name a question asks for, as [`Lookup`] wants it: lower case,
/// without the trailing dot.
fn local_name(name: &Name) -> String {
    let mut text = name.to_ascii().to_ascii_lowercase();
    if text.ends_with('.') {
        text.pop();
    }
    text
}

/// A response to `request` with code `code`: same id and question, the
/// recursion-desired bit copied, recursion available (the server does
/// recurse, through its upstreams), and an EDNS record when the query had
/// one (RFC 6891 asks for it).
fn response_to(request: &Message, code: ResponseCode) -> Message {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = true;
    metadata.response_code = code;
    let mut response = Message::new(metadata.id, MessageType::Response, metadata.op_code);
    response.metadata = metadata;
    response.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.edns = Some(edns);
    }
    response
}

/// Encodes `response` to fit in `limit` bytes: answers that do not fit
/// are left out and the TC bit tells the client the list is cut short.
fn encode(mut response: Message, limit: usize) -> Option<Vec<u8>> {
    loop {
        let bytes = response.to_vec().ok()?;
        if bytes.len() <= limit || response.answers.is_empty() {
            return Some(bytes);
        }
        response.metadata.truncation = true;
        response.answers.pop();
    }
}

/// An error response to a packet that could not be parsed: its id and
/// opcode read from the raw header, nothing else.
fn raw_error(query: &[u8], code: ResponseCode) -> Option<Vec<u8>> {
    let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
    let op = query
        .get(2)
        .map_or(OpCode::Query, |flags| OpCode::from_u8((flags >> 3) & 0x0f));
    let mut response = Message::error_msg(id, op, code);
    response.metadata.recursion_desired = query.get(2).is_some_and(|flags| flags & 1 != 0);
    response.metadata.recursion_available = true;
    response.to_vec().ok()
}

// ANCHOR: answer
/// Decides the reply to one query packet.
///
/// - A name `lookup` knows (case does not matter, nor a trailing dot): an
///   `A` query gets all its addresses, the list rotated by `turn` (starting
///   at address `turn % n`), so that successive answers put each address
///   first in turn; any other type (`AAAA`, `MX` …) gets NOERROR with no
///   answers: the name exists, with no records of that type. (NXDOMAIN
///   would say that the name does not exist at all, and resolvers that ask
///   for `A` and `AAAA` together, such as musl's, would give up on it.)
/// - Any other name, including a container name with a search domain
///   appended (`web.example.com`), or a class other than IN, is
///   [`Reply::Forward`]: names match exactly.
/// - A packet that does not parse, or asks more or fewer than one question,
///   gets FORMERR if at least its id can be read; an opcode other than
///   QUERY gets NOTIMP.
/// - `None` means send nothing: fewer than two bytes, or a response rather
///   than a query (answering responses could make two servers talk to each
///   other forever).
pub fn answer(query: &[u8], lookup: &dyn Lookup, turn: usize) -> Option<Reply> {
    if query.len() < 2 || query.get(2).is_some_and(|flags| flags & QR_BIT != 0) {
        return None;
    }
    let Ok(request) = Message::from_vec(query) else {
        return raw_error(query, ResponseCode::FormErr).map(Reply::Answer);
    };
    let limit = usize::from(request.max_payload());
    if request.metadata.op_code != OpCode::Query {
        return encode(response_to(&request, ResponseCode::NotImp), limit).map(Reply::Answer);
    }
    let [question] = request.queries.as_slice() else {
        return encode(response_to(&request, ResponseCode::FormErr), limit).map(Reply::Answer);
    };
    let name = local_name(question.name());
    if question.query_class() != DNSClass::IN || name.is_empty() {
        return Some(Reply::Forward);
    }
    let addrs = lookup.lookup(&name);
    if addrs.is_empty() {
        return Some(Reply::Forward);
    }

    let mut response = response_to(&request, ResponseCode::NoError);
    if question.query_type() == RecordType::A {
        // BEGIN SOLUTION 04.7
        let first = turn % addrs.len();
        let rotated = addrs[first..].iter().chain(&addrs[..first]);
        for &ip in rotated {
            let rdata = RData::A(A(ip));
            response.add_answer(Record::from_rdata(question.name().clone(), TTL, rdata));
        }
        // END SOLUTION
    }
    encode(response, limit).map(Reply::Answer)
}
// ANCHOR_END: answer

/// The name of an `A` question in a well-formed query, as [`Lookup`] wants
/// it: the key of the server's rotation counters.
fn a_question(query: &[u8]) -> Option<String> {
    let request = Message::from_vec(query).ok()?;
    match request.queries.as_slice() {
        [q] if q.query_type() == RecordType::A => Some(local_name(q.name())),
        _ => None,
    }
}

/// The address of a `nameserver` value: an IPv4 or IPv6 address, the
/// latter with an optional zone (`fe80::1%eth0`, or `%2`) naming the link.
fn nameserver_addr(value: &str) -> Option<(IpAddr, u32)> {
    let (addr, zone) = match value.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (value, None),
    };
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(ip) => zone.is_none().then_some((IpAddr::V4(ip), 0)),
        IpAddr::V6(ip) => {
            let scope = match zone {
                None => 0,
                Some(zone) => zone.parse().ok().or_else(|| interface_index(zone))?,
            };
            Some((IpAddr::V6(ip), scope))
        }
    }
}

fn interface_index(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: name is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The values of the `nameserver` lines, in order. Comments (`#`, `;`) and
/// other keywords are skipped.
fn nameserver_values(resolv_conf: &str) -> impl Iterator<Item = &str> {
    resolv_conf.lines().filter_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next())
            .flatten()
    })
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn socket_addr(ip: IpAddr, scope: u32) -> SocketAddr {
    match ip {
        IpAddr::V4(v4) => SocketAddr::from((v4, DNS_PORT)),
        IpAddr::V6(v6) => SocketAddrV6::new(v6, DNS_PORT, 0, scope).into(),
    }
}

/// The host's resolvers from the text of its `resolv.conf`: one per
/// `nameserver` line, IPv4 or IPv6, on port 53, in order. Values that are
/// not addresses are skipped (the C library skips them too); an empty
/// list means none is configured.
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    nameserver_values(resolv_conf)
        .filter_map(nameserver_addr)
        .map(|(ip, scope)| socket_addr(ip, scope))
        .collect()
}

/// Where the server of a container on a user-defined network forwards
/// queries: the `--dns` servers if any were given, else every resolver of
/// the host, loopback ones included (the server's upstream sockets are in
/// the host's namespace, where `127.0.0.53` is systemd-resolved), else
/// [`FALLBACK_NAMESERVERS`].
pub fn server_upstreams(host_resolv: &str, extra_dns: &[IpAddr]) -> Vec<SocketAddr> {
    if !extra_dns.is_empty() {
        return extra_dns.iter().map(|&ip| socket_addr(ip, 0)).collect();
    }
    let host = upstreams(host_resolv);
    if host.is_empty() {
        return FALLBACK_NAMESERVERS
            .iter()
            .map(|&ip| SocketAddr::from((ip, DNS_PORT)))
            .collect();
    }
    host
}

/// The host's search domains: the last `search` or `domain` line wins, as
/// in the C library.
fn search_domains(resolv_conf: &str) -> Option<String> {
    resolv_conf.lines().rev().find_map(|line| {
        let mut words = line.split_whitespace();
        let keyword = words.next()?;
        let domains: Vec<&str> = words.collect();
        (matches!(keyword, "search" | "domain") && !domains.is_empty()).then(|| domains.join(" "))
    })
}

/// The host's options, from every `options` line, in order.
fn resolver_options(resolv_conf: &str) -> Vec<&str> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("options")).then_some(words)
        })
        .flatten()
        .collect()
}

// ANCHOR: resolv_conf
/// The `/etc/resolv.conf` of a new container, made from the host's.
///
/// - `embedded` (a user-defined network): `nameserver 127.0.0.11`, the
///   server; the host's search domains and options, with `ndots:0` in place
///   of any `ndots`, so that a bare name such as `db` is first asked as it
///   is (and answered by the server) rather than with each search domain
///   appended (and forwarded to the host's resolvers, which do not know
///   it). `--dns` servers do not appear: they are the server's upstreams
///   (see [`server_upstreams`]).
/// - not embedded (the default bridge): the `--dns` servers if any, else
///   the host's nameservers minus the loopback ones, which the container
///   cannot reach, else [`FALLBACK_NAMESERVERS`]; the host's search domains
///   and options as they are.
pub fn container_resolv_conf(host: &str, embedded: bool, extra_dns: &[IpAddr]) -> String {
    let servers: Vec<String> = if embedded {
        vec![SERVER_ADDR.to_string()]
    } else if !extra_dns.is_empty() {
        extra_dns.iter().map(ToString::to_string).collect()
    } else {
        let reachable: Vec<String> = nameserver_values(host)
            .filter(|value| nameserver_addr(value).is_some_and(|(ip, _)| !is_loopback(ip)))
            .map(String::from)
            .collect();
        if reachable.is_empty() {
            FALLBACK_NAMESERVERS
                .iter()
                .map(ToString::to_string)
                .collect()
        } else {
            reachable
        }
    };
    let mut options = resolver_options(host);
    if embedded {
        options.retain(|option| !option.starts_with("ndots:"));
        options.push("ndots:0");
    }

    let mut out = String::new();
    if embedded {
        out.push_str(
            "# Generated by berth. 127.0.0.11 is the network's DNS server: it answers\n\
             # container names and aliases and forwards other names upstream.\n",
        );
    } else {
        out.push_str("# Generated by berth from the host's resolvers.\n");
    }
    for server in servers {
        let _ = writeln!(out, "nameserver {server}");
    }
    if let Some(domains) = search_domains(host) {
        let _ = writeln!(out, "search {domains}");
    }
    if !options.is_empty() {
        let _ = writeln!(out, "options {}", options.join(" "));
    }
    out
}
// ANCHOR_END: resolv_conf

/// Two random bytes from the kernel: the id of a forwarded query, so that
/// a spoofed response must guess it as well as the random source port.
fn random_id() -> u16 {
    let mut id = [0u8; 2];
    // SAFETY: the pointer and length describe `id`.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n == 2 {
        u16::from_ne_bytes(id)
    } else {
        // Not random, but still a valid id; getrandom does not fail for
        // two bytes once the kernel's generator is seeded.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.subsec_nanos() as u16)
    }
}

/// Asks one upstream, from a fresh socket with a random source port, under
/// a random id; returns the response with the client's id put back.
/// Datagrams that are not the response (wrong id, not a response) are
/// ignored until the timeout.
fn ask_upstream(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    // Connected: the kernel drops datagrams from anyone but the upstream,
    // and reports its "port unreachable" as ECONNREFUSED.
    socket.connect(upstream)?;
    let id = random_id().to_be_bytes();
    let mut outgoing = query.to_vec();
    outgoing[..2].copy_from_slice(&id);
    socket.send(&outgoing)?;

    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        socket.set_read_timeout(Some(left))?;
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ErrorKind::TimedOut.into());
            }
            Err(e) => return Err(e),
        };
        let response = &buf[..len];
        if len >= 12 && response[..2] == id && response[2] & QR_BIT != 0 {
            let mut relayed = response.to_vec();
            relayed[..2].copy_from_slice(&query[..2]);
            return Ok(relayed);
        }
    }
}

/// Asks each upstream in turn. SERVFAIL and REFUSED send the query on to
/// the next one (another resolver may do better), and are relayed only
/// when no upstream does better; `None` when no upstream answered at all.
fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let mut refusal = None;
    for &upstream in upstreams {
        match ask_upstream(query, upstream) {
            Ok(response) if matches!(response[3] & 0x0f, RCODE_SERVFAIL | RCODE_REFUSED) => {
                tracing::debug!("upstream {upstream} refused or failed; trying the next");
                refusal = Some(response);
            }
            Ok(response) => return Some(response),
            Err(e) => tracing::debug!("upstream {upstream}: {e}"),
        }
    }
    refusal
}

/// SERVFAIL for a query the server could not get answered.
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    match Message::from_vec(query) {
        Ok(request) => encode(
            response_to(&request, ResponseCode::ServFail),
            usize::from(request.max_payload()),
        ),
        Err(_) => raw_error(query, ResponseCode::ServFail),
    }
}

fn send(socket: &UdpSocket, bytes: &[u8], client: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, client) {
        tracing::warn!("send DNS response to {client}: {e}");
    }
}

/// One forward in flight; counted down when dropped, whichever way the
/// forwarding thread ends (or fails to start).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Forwards `query` on a thread of its own, which sends the client the
/// upstream's response or SERVFAIL. With [`MAX_FORWARDS`] threads busy
/// already, the client gets SERVFAIL at once.
fn spawn_forward(
    socket: &Arc<UdpSocket>,
    query: &[u8],
    client: SocketAddr,
    upstreams: &Arc<[SocketAddr]>,
    in_flight: &Arc<AtomicUsize>,
) {
    if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_FORWARDS {
        in_flight.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!("{MAX_FORWARDS} queries are being forwarded already: SERVFAIL to {client}");
        if let Some(bytes) = servfail(query) {
            send(socket, &bytes, client);
        }
        return;
    }
    let guard = InFlight(Arc::clone(in_flight));
    let (thread_socket, upstreams, owned) =
        (Arc::clone(socket), Arc::clone(upstreams), query.to_vec());
    let spawned = thread::Builder::new()
        .name("dns-forward".into())
        .spawn(move || {
            let _guard = guard;
            if let Some(bytes) = forward(&owned, &upstreams).or_else(|| servfail(&owned)) {
                send(&thread_socket, &bytes, client);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a thread to forward a query: {e}; SERVFAIL to {client}");
        if let Some(bytes) = servfail(query) {
            send(socket, &bytes, client);
        }
    }
}

// ANCHOR: serve
/// Serves DNS on `socket` until `stop` is set (it is looked at every 200
/// ms): each query is answered from `lookup`, or forwarded to `upstreams`,
/// each in turn, from a fresh socket bound in the namespace of the calling
/// thread, with [`UPSTREAM_TIMEOUT`] for each. The first response is relayed
/// unchanged but for the id; when no upstream answers (or there are none),
/// the client gets SERVFAIL.
///
/// Forwarding happens on a short-lived thread per query (at most
/// [`MAX_FORWARDS`] at once), so a slow upstream never holds up the answers
/// to container names. Each name's `A` answers rotate on their own counter,
/// so that an `A` and an `AAAA` query for every lookup (which the C library
/// sends), or queries for other names in between, do not keep one address
/// first. Forwards still in flight when `serve` returns finish on their own.
///
/// Fails only if the socket does: when its read timeout cannot be set, or
/// receiving fails for a reason other than the timeout.
pub fn serve(
    socket: UdpSocket,
    lookup: Arc<dyn Lookup + Send + Sync>,
    upstreams: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let here = socket
        .local_addr()
        .map_or_else(|_| "the DNS socket".to_string(), |addr| addr.to_string());
    socket
        .set_read_timeout(Some(POLL))
        .map_err(|e| Error::io("set a read timeout on DNS socket", &here, e))?;
    let socket = Arc::new(socket);
    let upstreams: Arc<[SocketAddr]> = upstreams.into();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut turns: HashMap<String, usize> = HashMap::new();
    let mut buf = vec![0u8; DATAGRAM];

    while !stop.load(Ordering::SeqCst) {
        let (len, client) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock
                        | ErrorKind::TimedOut
                        | ErrorKind::Interrupted
                        | ErrorKind::ConnectionRefused
                ) =>
            {
                continue;
            }
            Err(e) => return Err(Error::io("receive a DNS query on", &here, e)),
        };
        let query = &buf[..len];
        let key = a_question(query);
        let turn = key
            .as_ref()
            .and_then(|k| turns.get(k))
            .copied()
            .unwrap_or(0);
        match answer(query, &*lookup, turn) {
            None => tracing::debug!("ignored a {len}-byte packet from {client}"),
            Some(Reply::Answer(bytes)) => {
                if let Some(key) = key {
                    if turns.len() >= MAX_TURNS && !turns.contains_key(&key) {
                        turns.clear();
                    }
                    let counter = turns.entry(key).or_default();
                    *counter = counter.wrapping_add(1);
                }
                send(&socket, &bytes, client);
            }
            Some(Reply::Forward) => spawn_forward(&socket, query, client, &upstreams, &in_flight),
        }
    }
    Ok(())
}
// ANCHOR_END: serve

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    const WEB: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 2);
    const API1: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 3);
    const API2: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 4);

    fn records() -> Records {
        let entry = |name: &str, ip| Entry {
            name: name.into(),
            ip,
        };
        Records {
            entries: vec![
                entry("web", WEB),
                entry("api-1", API1),
                entry("api", API1),
                entry("api-2", API2),
                entry("api", API2),
            ],
        }
    }

    fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
        let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        msg.to_vec().unwrap()
    }

    fn reply(query: &[u8], turn: usize) -> Message {
        match answer(query, &records(), turn) {
            Some(Reply::Answer(bytes)) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn a_records(msg: &Message) -> Vec<Ipv4Addr> {
        msg.answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0,
                other => panic!("not an A record: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_query_for_a_container_name_gets_its_address() {
        let msg = reply(&query(0x1234, "web.", RecordType::A), 0);
        assert_eq!(msg.metadata.id, 0x1234);
        assert_eq!(msg.metadata.message_type, MessageType::Response);
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        assert!(msg.metadata.recursion_desired && msg.metadata.recursion_available);
        assert_eq!(msg.queries.len(), 1, "the question is echoed");
        assert_eq!(a_records(&msg), [WEB]);
        assert_eq!(msg.answers[0].ttl, TTL);
        assert_eq!(msg.answers[0].name.to_ascii(), "web.");
    }

    #[test]
    fn an_alias_of_two_containers_gets_both_addresses_in_turn() {
        let q = query(7, "api.", RecordType::A);
        assert_eq!(a_records(&reply(&q, 0)), [API1, API2]);
        assert_eq!(a_records(&reply(&q, 1)), [API2, API1]);
        assert_eq!(a_records(&reply(&q, 2)), [API1, API2]);
        assert_eq!(a_records(&reply(&q, 5)), [API2, API1]);
        // One address: the same answer whatever the turn.
        let one = query(8, "web.", RecordType::A);
        assert_eq!(a_records(&reply(&one, 3)), [WEB]);
    }

    #[test]
    fn rotation_covers_every_address_first() {
        let many: Vec<Ipv4Addr> = (1..=5).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let lookup = |name: &str| {
            if name == "pool" { many.clone() } else { vec![] }
        };
        let q = query(1, "pool.", RecordType::A);
        let mut firsts = Vec::new();
        for turn in 0..5 {
            let Some(Reply::Answer(bytes)) = answer(&q, &lookup, turn) else {
                panic!("no answer");
            };
            let got = a_records(&Message::from_vec(&bytes).unwrap());
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(sorted, many, "every address, each once");
            firsts.push(got[0]);
        }
        assert_eq!(firsts, many);
    }

    #[test]
    fn names_match_whatever_their_case_and_trailing_dot() {
        for name in ["WEB.", "Web.", "web", "wEb"] {
            let msg = reply(&query(1, name, RecordType::A), 0);
            assert_eq!(a_records(&msg), [WEB], "{name}");
        }
        // The question is echoed as asked (resolvers may randomize case).
        let msg = reply(&query(1, "WeB.", RecordType::A), 0);
        assert_eq!(msg.answers[0].name.to_ascii(), "WeB.");
        // The file's case does not matter either.
        let upper = Records {
            entries: vec![Entry {
                name: "Web.".into(),
                ip: WEB,
            }],
        };
        assert_eq!(upper.lookup("web"), [WEB]);
    }

    #[test]
    fn unknown_names_and_search_domains_are_forwarded() {
        for name in [
            "example.com.",
            "db.",
            "web.example.com.",
            "api.localdomain.",
            ".",
        ] {
            let q = query(1, name, RecordType::A);
            assert_eq!(answer(&q, &records(), 0), Some(Reply::Forward), "{name}");
        }
        let mut chaos = Message::new(2, MessageType::Query, OpCode::Query);
        let mut q = Query::query(Name::from_ascii("web.").unwrap(), RecordType::A);
        q.set_query_class(DNSClass::CH);
        chaos.add_query(q);
        let chaos = chaos.to_vec().unwrap();
        assert_eq!(answer(&chaos, &records(), 0), Some(Reply::Forward));
    }

    #[test]
    fn other_types_for_a_known_name_get_noerror_and_no_answers() {
        for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
            let msg = reply(&query(9, "web.", qtype), 0);
            assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{qtype}");
            assert!(msg.answers.is_empty(), "{qtype}");
            assert_eq!(msg.queries[0].query_type(), qtype);
        }
    }

    #[test]
    fn malformed_packets_get_formerr_or_nothing() {
        // A header that promises a question that is not there.
        let mut bad = query(0xabcd, "web.", RecordType::A);
        bad.truncate(14);
        let msg = reply(&bad, 0);
        assert_eq!(msg.metadata.id, 0xabcd);
        assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(msg.metadata.message_type, MessageType::Response);
        // Just an id: FORMERR too.
        let msg = reply(&[0x12, 0x34], 0);
        assert_eq!(msg.metadata.id, 0x1234);
        assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
        // No id to answer to.
        assert_eq!(answer(&[], &records(), 0), None);
        assert_eq!(answer(&[0x12], &records(), 0), None);
        // No question, or two.
        let none = Message::new(5, MessageType::Query, OpCode::Query)
            .to_vec()
            .unwrap();
        assert_eq!(
            reply(&none, 0).metadata.response_code,
            ResponseCode::FormErr
        );
        let mut two = Message::new(6, MessageType::Query, OpCode::Query);
        two.add_query(Query::query(
            Name::from_ascii("web.").unwrap(),
            RecordType::A,
        ));
        two.add_query(Query::query(
            Name::from_ascii("api.").unwrap(),
            RecordType::A,
        ));
        let two = two.to_vec().unwrap();
        assert_eq!(reply(&two, 0).metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn responses_and_other_opcodes_are_not_answered_as_queries() {
        let mut response = query(3, "web.", RecordType::A);
        response[2] |= QR_BIT;
        assert_eq!(answer(&response, &records(), 0), None);
        let mut notify = Message::new(4, MessageType::Query, OpCode::Notify);
        notify.add_query(Query::query(
            Name::from_ascii("web.").unwrap(),
            RecordType::SOA,
        ));
        let notify = notify.to_vec().unwrap();
        assert_eq!(
            reply(&notify, 0).metadata.response_code,
            ResponseCode::NotImp
        );
    }

    #[test]
    fn an_answer_too_big_for_udp_is_cut_and_flagged() {
        let many: Vec<Ipv4Addr> = (0..200).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect();
        let lookup = |_: &str| many.clone();
        let Some(Reply::Answer(bytes)) = answer(&query(1, "big.", RecordType::A), &lookup, 0)
        else {
            panic!("no answer");
        };
        assert!(bytes.len() <= 512, "{} bytes", bytes.len());
        let msg = Message::from_vec(&bytes).unwrap();
        assert!(msg.metadata.truncation);
        assert!(!msg.answers.is_empty() && msg.answers.len() < 200);
    }

    #[test]
    fn an_edns_query_gets_an_edns_answer() {
        let mut msg = Message::new(1, MessageType::Query, OpCode::Query);
        msg.add_query(Query::query(
            Name::from_ascii("web.").unwrap(),
            RecordType::A,
        ));
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        msg.edns = Some(edns);
        let got = reply(&msg.to_vec().unwrap(), 0);
        assert_eq!(a_records(&got), [WEB]);
        assert_eq!(got.edns.map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
    }

    #[test]
    fn upstreams_are_the_nameserver_lines() {
        let conf = "# generated by NetworkManager\n\
                    search example.com\n\
                    nameserver 192.168.1.1\n\
                    ;nameserver 10.0.0.1\n\
                    #nameserver 10.0.0.2\n\
                    nameserver   2001:4860:4860::8888  # Google\n\
                    nameserver 127.0.0.53\n\
                    nameserver fe80::1%2\n\
                    nameserver not-an-address\n\
                    nameserver\n\
                    options edns0\n";
        let got = upstreams(conf);
        let want: Vec<SocketAddr> = vec![
            "192.168.1.1:53".parse().unwrap(),
            "[2001:4860:4860::8888]:53".parse().unwrap(),
            "127.0.0.53:53".parse().unwrap(),
            SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 2).into(),
        ];
        assert_eq!(got, want);
        assert!(upstreams("").is_empty());
        assert!(upstreams("search example.com\n").is_empty());
        // A zone naming no interface of this machine is skipped.
        assert!(upstreams("nameserver fe80::1%no-such-link0\n").is_empty());
    }

    #[test]
    fn server_upstreams_filter_nothing_and_prefer_dns_flags() {
        let host = "nameserver 127.0.0.53\nnameserver ::1\n";
        assert_eq!(
            server_upstreams(host, &[]),
            [
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ] as [SocketAddr; 2]
        );
        let dns: [IpAddr; 2] = ["9.9.9.9".parse().unwrap(), "2620:fe::fe".parse().unwrap()];
        assert_eq!(
            server_upstreams(host, &dns),
            [
                "9.9.9.9:53".parse().unwrap(),
                "[2620:fe::fe]:53".parse().unwrap()
            ] as [SocketAddr; 2]
        );
        assert_eq!(
            server_upstreams("", &[]),
            ["8.8.8.8:53".parse().unwrap(), "8.8.4.4:53".parse().unwrap()] as [SocketAddr; 2]
        );
    }

    const RESOLVED_HOST: &str = "# This is /run/systemd/resolve/stub-resolv.conf\n\
                                 nameserver 127.0.0.53\n\
                                 options edns0 trust-ad\n\
                                 search corp.example.com\n";

    #[test]
    fn a_user_defined_network_points_at_the_server() {
        let conf = container_resolv_conf(RESOLVED_HOST, true, &[]);
        let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "nameserver 127.0.0.11",
                "search corp.example.com",
                "options edns0 trust-ad ndots:0"
            ]
        );
        // --dns servers go to the server, not into the file; ndots is replaced.
        let dns: [IpAddr; 1] = ["9.9.9.9".parse().unwrap()];
        let conf = container_resolv_conf("nameserver 1.1.1.1\noptions ndots:5\n", true, &dns);
        let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["nameserver 127.0.0.11", "options ndots:0"]);
    }

    #[test]
    fn the_default_bridge_gets_the_hosts_reachable_nameservers() {
        let host = "nameserver 127.0.0.53\n\
                    nameserver 192.168.1.1\n\
                    nameserver ::1\n\
                    nameserver 2001:db8::53\n\
                    domain home.arpa\n\
                    options ndots:2\n";
        let conf = container_resolv_conf(host, false, &[]);
        let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "nameserver 192.168.1.1",
                "nameserver 2001:db8::53",
                "search home.arpa",
                "options ndots:2"
            ]
        );
        // Only loopback resolvers on the host: Google's, as Docker does.
        let conf = container_resolv_conf(RESOLVED_HOST, false, &[]);
        let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "nameserver 8.8.8.8",
                "nameserver 8.8.4.4",
                "search corp.example.com",
                "options edns0 trust-ad"
            ]
        );
        // --dns replaces the host's servers.
        let dns: [IpAddr; 2] = [
            "1.1.1.1".parse().unwrap(),
            "2606:4700:4700::1111".parse().unwrap(),
        ];
        let conf = container_resolv_conf(host, false, &dns);
        let servers: Vec<&str> = conf
            .lines()
            .filter(|l| l.starts_with("nameserver"))
            .collect();
        assert_eq!(
            servers,
            ["nameserver 1.1.1.1", "nameserver 2606:4700:4700::1111"]
        );
        // Nothing at all on the host.
        let conf = container_resolv_conf("", false, &[]);
        let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]);
    }

    #[test]
    fn records_round_trip_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.json");
        assert_eq!(load(&path).unwrap(), Records::default(), "missing file");
        records().save(&path).unwrap();
        assert_eq!(load(&path).unwrap(), records());
        let text = fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["entries"][0]["name"], "web");
        assert_eq!(value["entries"][0]["ip"], "10.89.0.2");
        // The engine's compact form reads too, and `{}` is no records.
        fs::write(&path, r#"{"entries":[{"name":"db","ip":"10.89.0.9"}]}"#).unwrap();
        assert_eq!(
            load(&path).unwrap().lookup("db"),
            [Ipv4Addr::new(10, 89, 0, 9)]
        );
        fs::write(&path, "{}").unwrap();
        assert_eq!(load(&path).unwrap(), Records::default());
        fs::write(&path, "[1, 2").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("not a DNS records file"), "{err}");
    }

    #[test]
    fn records_list_each_address_once() {
        let mut r = records();
        r.entries.push(Entry {
            name: "api".into(),
            ip: API1,
        });
        assert_eq!(r.lookup("api"), [API1, API2]);
        assert_eq!(r.lookup("api."), [API1, API2]);
        assert!(r.lookup("nope").is_empty());
    }

    #[test]
    fn file_records_follow_rewrites_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.json");
        let file = FileRecords::new(&path);
        assert!(file.lookup("web").is_empty(), "no file yet");

        records().save(&path).unwrap();
        assert_eq!(file.lookup("web"), [WEB]);

        // web leaves, db joins: an atomic rewrite, at once.
        let new = Records {
            entries: vec![Entry {
                name: "db".into(),
                ip: Ipv4Addr::new(10, 89, 0, 7),
            }],
        };
        new.save(&path).unwrap();
        assert!(file.lookup("web").is_empty());
        assert_eq!(file.lookup("db"), [Ipv4Addr::new(10, 89, 0, 7)]);

        // A broken write keeps the last good records.
        fs::write(&path, "{\"entries\": [").unwrap();
        assert_eq!(file.lookup("db"), [Ipv4Addr::new(10, 89, 0, 7)]);

        // Removed: nobody is left.
        fs::remove_file(&path).unwrap();
        assert!(file.lookup("db").is_empty());
    }
}
