//! Lab 04's firewall against the real kernel: the table `ip berth` loaded,
//! replaced, listed and deleted with `nft`.
//!
//! Each test runs on a thread with a network namespace of its own, and
//! nftables tables belong to a network namespace: `nft`, started from that
//! thread, inherits its namespace and sees an empty ruleset, so the
//! machine's own firewall is never touched. Each test checks that too.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use network::Error;
use network::firewall::{
    Network, PortMapping, Protocol, Ruleset, apply, installed, load, remove_all, render,
};
use nix::sched::{CloneFlags, unshare};

/// The host's tables (`nft list tables`), run from the calling thread.
fn tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(out.status.success(), "nft list tables: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `f` on a thread with a new network namespace, and checks that the
/// tables of the test's own namespace are the same afterwards.
fn on_a_new_host<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let before = tables();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).unwrap();
            assert_eq!(tables(), "", "a new network namespace has no tables");
            f()
        })
        .join()
        .unwrap()
    });
    assert_eq!(tables(), before, "the host's own tables changed");
    result
}

/// Runs `ip ARGS` on the calling thread's namespace.
fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert!(out.status.success(), "ip {args}: {out:?}");
}

fn network(name: &str, bridge: &str, subnet: &str, internal: bool) -> Network {
    Network {
        name: name.into(),
        bridge: bridge.into(),
        subnet: subnet.into(),
        internal,
    }
}

fn tcp(host_port: u16, container_ip: [u8; 4], container_port: u16, id: &str) -> PortMapping {
    PortMapping {
        protocol: Protocol::Tcp,
        host_ip: None,
        host_port,
        container_ip: container_ip.into(),
        container_port,
        bridge: "berth0".into(),
        container: id.repeat(64 / id.len()),
    }
}

/// The table part of a rendered script: what `nft list table ip berth`
/// shows once it is loaded.
fn table_of(rules: &Ruleset) -> String {
    let script = render(rules);
    let (_, table) = script.split_once("delete table ip berth\n").unwrap();
    table.to_string()
}

fn first() -> Ruleset {
    Ruleset {
        networks: vec![network("bridge", "berth0", "10.88.0.0/16", false)],
        ports: vec![
            tcp(8080, [10, 88, 0, 2], 80, "abc123def456"),
            PortMapping {
                protocol: Protocol::Udp,
                host_ip: Some(Ipv4Addr::LOCALHOST),
                ..tcp(5353, [10, 88, 0, 3], 53, "5ca1ab1e0000")
            },
        ],
    }
}

fn second() -> Ruleset {
    Ruleset {
        networks: vec![
            network("bridge", "berth0", "10.88.0.0/16", false),
            network("frontend", "br-1a2b3c4d5e6f", "10.89.0.0/24", false),
            network("backend", "br-0f9e8d7c6b5a", "10.89.1.0/24", true),
        ],
        ports: vec![tcp(8443, [10, 88, 0, 2], 443, "abc123def456")],
    }
}

#[test]
fn step_04_6_the_table_is_replaced_whole() {
    testkit::root_test!();
    on_a_new_host(|| {
        assert_eq!(installed().unwrap(), None);
        // Removing what is not there is fine.
        remove_all().unwrap();

        apply(&first()).unwrap();
        let table = installed().unwrap().expect("the table after apply");
        // What the kernel lists is exactly what was rendered.
        assert_eq!(table, table_of(&first()));
        for line in [
            "type nat hook postrouting priority srcnat; policy accept;",
            "ip saddr 10.88.0.0/16 oifname != \"berth0\" masquerade",
            "fib daddr type local jump ports",
            "tcp dport 8080 dnat to 10.88.0.2:80 comment \"abc123def456\"",
            "ip daddr 127.0.0.1 udp dport 5353 dnat to 10.88.0.3:53",
            "type filter hook forward priority filter; policy accept;",
            "ct state established,related accept",
        ] {
            assert!(table.contains(line), "{line:?} missing from\n{table}");
        }

        // A change replaces the table: the old port is gone, nothing is
        // doubled.
        apply(&second()).unwrap();
        let table = installed().unwrap().expect("the table after the change");
        assert_eq!(table, table_of(&second()));
        assert!(!table.contains("dport 8080"), "{table}");
        assert_eq!(
            table.matches("ct state established,related accept").count(),
            1
        );
        assert_eq!(table.matches("chain postrouting").count(), 1);
        assert!(table.contains(
            "iifname \"berth0\" oifname \"br-1a2b3c4d5e6f\" drop comment \"bridge: isolated from other networks\""
        ));

        // The same state twice gives the same table, not two copies.
        apply(&second()).unwrap();
        assert_eq!(installed().unwrap().unwrap(), table_of(&second()));

        remove_all().unwrap();
        assert_eq!(installed().unwrap(), None);
        assert_eq!(tables(), "");
    });
}

#[test]
fn step_04_6_a_failed_change_leaves_the_table_as_it_was() {
    testkit::root_test!();
    on_a_new_host(|| {
        apply(&first()).unwrap();
        let before = installed().unwrap().unwrap();

        // The kernel refuses the last rule (a jump to a chain that does not
        // exist) after the table was deleted in the same transaction: the
        // whole transaction is undone.
        let refused = "table ip berth {}\ndelete table ip berth\n\
                       table ip berth {\n\tchain forward {\n\t\tjump nowhere\n\t}\n}\n";
        match load(refused) {
            Err(Error::Command { command, stderr }) => {
                assert_eq!(command, "nft -f -");
                assert!(stderr.contains("No such file or directory"), "{stderr}");
            }
            other => panic!("expected nft to fail, got {other:?}"),
        }
        assert_eq!(installed().unwrap().unwrap(), before);

        // A syntax error: nft sends nothing at all.
        let broken = render(&second()).replace("masquerade", "masquerade now");
        match load(&broken) {
            Err(Error::Command { stderr, .. }) => {
                assert!(stderr.contains("syntax error"), "{stderr}")
            }
            other => panic!("expected nft to fail, got {other:?}"),
        }
        assert_eq!(installed().unwrap().unwrap(), before);

        // A ruleset that does not validate never reaches nft.
        let mut bad = second();
        bad.networks[1].bridge = "br\"; flush ruleset; \"".into();
        assert!(matches!(apply(&bad), Err(Error::Invalid(_))));
        assert_eq!(installed().unwrap().unwrap(), before);

        remove_all().unwrap();
    });
}

#[test]
fn step_04_6_a_published_port_answers_on_localhost() {
    testkit::root_test!();
    on_a_new_host(|| {
        ip("link set lo up");
        ip("link add berth0 type bridge");
        ip("addr add 10.88.0.1/16 dev berth0");
        ip("link set berth0 up");
        // The "container" is a listener on the bridge's own address: the
        // output chain's destination NAT is what gets a connection there.
        let listener = TcpListener::bind("10.88.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rules = Ruleset {
            networks: vec![network("bridge", "berth0", "10.88.0.0/16", false)],
            ports: vec![tcp(8080, [10, 88, 0, 1], port, "c0ffee")],
        };

        let connect = |to: [u8; 4]| {
            let addr = SocketAddr::from((to, 8080));
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        };
        let refused = connect([127, 0, 0, 1]).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

        apply(&rules).unwrap();
        for to in [[127, 0, 0, 1], [10, 88, 0, 1]] {
            let mut client = connect(to).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            client.write_all(b"ping").unwrap();
            let mut got = [0; 4];
            server.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping", "through {to:?}:8080");
        }

        remove_all().unwrap();
        let refused = connect([127, 0, 0, 1]).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    });
}

#[test]
fn step_04_6_localhost_reaches_a_container_through_the_bridge() {
    testkit::root_test!();
    on_a_new_host(|| {
        ip("link set lo up");
        ip("link add berth0 type bridge");
        ip("addr add 10.88.0.1/16 dev berth0");
        ip("link set berth0 up");
        let (tid_tx, tid_rx) = mpsc::channel();
        let (plugged_tx, plugged_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::scope(|s| {
            // The container: a thread with a namespace of its own, whose
            // eth0 is the other end of a veth pair on berth0. It answers
            // one connection on port 80 with the address it came from.
            let container = s.spawn(move || {
                unshare(CloneFlags::CLONE_NEWNET).unwrap();
                tid_tx.send(nix::unistd::gettid()).unwrap();
                plugged_rx.recv().unwrap();
                ip("link set lo up");
                ip("addr add 10.88.0.2/16 dev eth0");
                ip("link set eth0 up");
                ip("route add default via 10.88.0.1");
                let listener = TcpListener::bind("10.88.0.2:80").unwrap();
                listener.set_nonblocking(true).unwrap();
                ready_tx.send(()).unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match listener.accept() {
                        Ok((mut conn, peer)) => {
                            conn.set_nonblocking(false).unwrap();
                            conn.write_all(peer.ip().to_string().as_bytes()).unwrap();
                            return;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            assert!(Instant::now() < deadline, "no connection came in");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            });
            let tid = tid_rx.recv().unwrap();
            ip(&format!(
                "link add vh-c1 type veth peer name eth0 netns {tid}"
            ));
            ip("link set vh-c1 master berth0");
            ip("link set vh-c1 up");
            plugged_tx.send(()).unwrap();
            ready_rx.recv().unwrap();

            apply(&Ruleset {
                networks: vec![network("bridge", "berth0", "10.88.0.0/16", false)],
                ports: vec![tcp(8080, [10, 88, 0, 2], 80, "c0ffee")],
            })
            .unwrap();
            let localhost = SocketAddr::from(([127, 0, 0, 1], 8080));

            // Without route_localnet, a packet from 127.0.0.1 may not leave
            // through berth0: the kernel drops it.
            let route_localnet = "/proc/sys/net/ipv4/conf/berth0/route_localnet";
            assert_eq!(std::fs::read_to_string(route_localnet).unwrap(), "0\n");
            assert!(TcpStream::connect_timeout(&localhost, Duration::from_secs(1)).is_err());

            // With it, the connection goes through, masqueraded to the
            // bridge's address so the container's reply finds its way back.
            std::fs::write(route_localnet, "1").unwrap();
            let mut conn = TcpStream::connect_timeout(&localhost, Duration::from_secs(5)).unwrap();
            let mut peer = String::new();
            conn.read_to_string(&mut peer).unwrap();
            assert_eq!(peer, "10.88.0.1");
            container.join().unwrap();
        });
        remove_all().unwrap();
    });
}
