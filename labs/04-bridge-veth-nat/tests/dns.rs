//! Step 04.7's server, end to end on the loopback device: no root needed.
//!
//! Each test runs `dns::serve` on `127.0.0.1:0` on a thread, with a fake
//! "upstream" resolver on another port (a thread that answers every query
//! with one fixed A record), and asks it questions from a client socket,
//! the way a container's C library would.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use network::dns::{self, Entry, FileRecords, Lookup, Records};

const WEB: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 2);
const API1: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 3);
const API2: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 4);
/// What the fake upstream answers, whatever the question.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

fn entry(name: &str, ip: Ipv4Addr) -> Entry {
    Entry {
        name: name.into(),
        ip,
    }
}

fn records() -> Records {
    Records {
        entries: vec![entry("web", WEB), entry("api", API1), entry("api", API2)],
    }
}

/// A running server: its address, its stop flag, its thread.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<network::Result<()>>>,
}

impl Server {
    fn start(lookup: Arc<dyn Lookup + Send + Sync>, upstreams: Vec<SocketAddr>) -> Server {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("dns-serve".into())
            .spawn(move || dns::serve(socket, lookup, upstreams, flag))
            .unwrap();
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Sets the stop flag and waits for `serve` to return; how long it took.
    fn stop(&mut self) -> (network::Result<()>, Duration) {
        let begin = Instant::now();
        self.stop.store(true, Ordering::SeqCst);
        let result = self.thread.take().unwrap().join().unwrap();
        (result, begin.elapsed())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // Not unwrapped: a server that panicked was reported already.
            let _ = thread.join();
        }
    }
}

/// A fake upstream resolver: answers every query with `UPSTREAM_ANSWER`
/// for the name asked, until stopped.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::SeqCst) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let request = Message::from_vec(&buf[..len]).unwrap();
                let mut response =
                    Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
                response.metadata.recursion_desired = request.metadata.recursion_desired;
                response.metadata.recursion_available = true;
                response.queries = request.queries.clone();
                let name = request.queries[0].name().clone();
                response.add_answer(Record::from_rdata(name, 300, RData::A(A(UPSTREAM_ANSWER))));
                socket.send_to(&response.to_vec().unwrap(), from).unwrap();
            }
        });
        Upstream {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An address where nothing listens: the kernel answers "port unreachable".
fn closed_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg.to_vec().unwrap()
}

/// Asks `server` one question from a fresh client socket.
fn ask(server: SocketAddr, id: u16, name: &str, qtype: RecordType) -> Message {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(6)))
        .unwrap();
    client.send_to(&query(id, name, qtype), server).unwrap();
    let mut buf = [0u8; 4096];
    let (len, from) = client.recv_from(&mut buf).unwrap_or_else(|e| {
        panic!("no response to {name} ({e}): if the server panicked, its message is above")
    });
    assert_eq!(from, server);
    Message::from_vec(&buf[..len]).unwrap()
}

fn addresses(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
fn container_names_are_answered_locally() {
    let upstream = Upstream::start();
    let server = Server::start(Arc::new(records()), vec![upstream.addr]);
    let msg = ask(server.addr, 0x1111, "web.", RecordType::A);
    assert_eq!(msg.metadata.id, 0x1111);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&msg), [WEB]);
    // Case and a missing trailing dot do not matter.
    assert_eq!(addresses(&ask(server.addr, 2, "WEB", RecordType::A)), [WEB]);
    // AAAA for a container: the name exists, without IPv6 addresses.
    let msg = ask(server.addr, 3, "web.", RecordType::AAAA);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.answers.is_empty());
}

#[test]
fn an_alias_returns_every_address_in_turn() {
    let server = Server::start(Arc::new(records()), vec![]);
    let mut firsts = Vec::new();
    for id in 0..4 {
        let msg = ask(server.addr, id, "api.", RecordType::A);
        let mut got = addresses(&msg);
        firsts.push(got[0]);
        got.sort();
        assert_eq!(got, [API1, API2]);
        // A client's AAAA query in between does not hold up the rotation.
        ask(server.addr, id, "api.", RecordType::AAAA);
    }
    assert_eq!(firsts, [API1, API2, API1, API2]);
}

#[test]
fn other_names_are_forwarded_and_relayed_with_the_clients_id() {
    let upstream = Upstream::start();
    let server = Server::start(Arc::new(records()), vec![upstream.addr]);
    for (id, name) in [(0xbeef, "example.com."), (0x0102, "web.example.com.")] {
        let msg = ask(server.addr, id, name, RecordType::A);
        assert_eq!(msg.metadata.id, id);
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addresses(&msg), [UPSTREAM_ANSWER], "{name}");
        assert_eq!(msg.answers[0].ttl, 300, "relayed as the upstream sent it");
        assert_eq!(msg.queries[0].name().to_ascii(), name);
    }
}

#[test]
fn a_dead_upstream_is_skipped() {
    let upstream = Upstream::start();
    let server = Server::start(Arc::new(records()), vec![closed_port(), upstream.addr]);
    let begin = Instant::now();
    let msg = ask(server.addr, 7, "example.org.", RecordType::A);
    assert_eq!(addresses(&msg), [UPSTREAM_ANSWER]);
    assert!(
        begin.elapsed() < Duration::from_secs(1),
        "{:?}",
        begin.elapsed()
    );
}

#[test]
fn no_upstream_answering_is_servfail() {
    // A closed port is refused at once.
    let server = Server::start(Arc::new(records()), vec![closed_port()]);
    let msg = ask(server.addr, 0x4242, "example.org.", RecordType::A);
    assert_eq!(msg.metadata.id, 0x4242);
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
    // No upstream at all.
    let server = Server::start(Arc::new(records()), vec![]);
    let msg = ask(server.addr, 5, "example.org.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn a_silent_upstream_times_out_into_servfail_without_holding_up_local_names() {
    // Bound, so nothing refuses, but never read: the query goes unanswered.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = Server::start(Arc::new(records()), vec![silent.local_addr().unwrap()]);

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(6)))
        .unwrap();
    let begin = Instant::now();
    client
        .send_to(&query(0x5151, "example.net.", RecordType::A), server.addr)
        .unwrap();

    // Meanwhile, a container name is answered at once.
    let local = ask(server.addr, 9, "web.", RecordType::A);
    assert_eq!(addresses(&local), [WEB]);
    assert!(
        begin.elapsed() < Duration::from_millis(500),
        "{:?}",
        begin.elapsed()
    );

    let mut buf = [0u8; 4096];
    let len = client.recv(&mut buf).expect("SERVFAIL within the timeout");
    let waited = begin.elapsed();
    let msg = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(msg.metadata.id, 0x5151);
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(3),
        "SERVFAIL after {waited:?}, want about {:?}",
        dns::UPSTREAM_TIMEOUT
    );
}

#[test]
fn the_server_follows_the_records_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.json");
    records().save(&path).unwrap();
    let server = Server::start(Arc::new(FileRecords::new(&path)), vec![]);
    assert_eq!(
        addresses(&ask(server.addr, 1, "web.", RecordType::A)),
        [WEB]
    );

    // The engine connects db and disconnects web.
    let db = Ipv4Addr::new(10, 89, 0, 9);
    Records {
        entries: vec![entry("db", db)],
    }
    .save(&path)
    .unwrap();
    assert_eq!(addresses(&ask(server.addr, 2, "db.", RecordType::A)), [db]);
    // web is not ours any more: forwarded, and with no upstream, SERVFAIL.
    let msg = ask(server.addr, 3, "web.", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn a_closure_is_a_lookup() {
    let lookup = |name: &str| {
        if name == "svc" {
            vec![Ipv4Addr::new(10, 0, 0, 1)]
        } else {
            vec![]
        }
    };
    let server = Server::start(Arc::new(lookup), vec![]);
    let msg = ask(server.addr, 1, "svc.", RecordType::A);
    assert_eq!(addresses(&msg), [Ipv4Addr::new(10, 0, 0, 1)]);
}

#[test]
fn the_stop_flag_stops_the_server() {
    let mut server = Server::start(Arc::new(records()), vec![]);
    assert_eq!(
        addresses(&ask(server.addr, 1, "web.", RecordType::A)),
        [WEB]
    );
    let (result, took) = server.stop();
    result.unwrap();
    assert!(took < Duration::from_secs(1), "stopping took {took:?}");
}
