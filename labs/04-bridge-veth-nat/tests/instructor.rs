//! Lab 04's instructor tests: edge cases of the students' code that the
//! tests they have do not reach. This file is not in the starter
//! repository; the grader copies it in and scores it (see the
//! `instructor_tests` of steps.toml).
//!
//! Each test uses only its own step's code and the steps before it. The
//! kernel tests make their throwaway host themselves (a thread with new
//! network and mount namespaces) rather than with `netns::on_a_new_host`,
//! which brings the loopback device up with step 04.2's `set_up`: step
//! 04.1's tests must pass before 04.2 is written.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use network::dns::{self, Reply};
use network::firewall::{
    self, Network, PortMapping, Protocol, Ruleset, internal_rules, isolation_rules,
    masquerade_rules, port_rules, published_rules, render, reply_rules, return_path_rules,
};
use network::ipam::{Pool, Subnet, pick_subnet};
use network::link::{Netlink, mac_for};
use network::netns::{self, NetNs};
use nix::sched::{CloneFlags, unshare};

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lab04-instructor-")
        .tempdir()
        .unwrap()
}

/// Runs `f` on a throwaway host: a thread with new network and mount
/// namespaces (mounts private, so pinned namespaces vanish with it). The
/// loopback device stays down; nothing here needs it.
fn fresh_host<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).unwrap();
            namespaces::fsmount::make_mounts_private().unwrap();
            f()
        })
        .join()
        .expect("the test's host thread panicked (its message is above)")
    })
}

/// The network namespace of the calling thread, as a number.
fn my_netns() -> u64 {
    netns::inode(Path::new("/proc/thread-self/ns/net")).unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn subnet(s: &str) -> Subnet {
    s.parse().unwrap()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// --- 04.1 a network namespace and a veth pair -------------------------------------

#[test]
fn run_joins_the_namespace_and_leaves_the_caller_alone() {
    testkit::root_test!();
    let dir = tmp();
    fresh_host(|| {
        let host = my_netns();
        let a = NetNs::create(dir.path().join("a")).unwrap();
        let b = NetNs::create(dir.path().join("more/b")).unwrap();
        let (ia, ib) = (
            netns::inode(a.path()).unwrap(),
            netns::inode(b.path()).unwrap(),
        );
        // Two new namespaces, neither of them the caller's, and making
        // them did not move the calling thread.
        assert_ne!(ia, ib);
        assert!(ia != host && ib != host);
        assert_eq!(my_netns(), host);

        // The closure runs in the namespace; the caller stays where it was.
        assert_eq!(a.run(|| Ok(my_netns())).unwrap(), ia);
        assert_eq!(b.run(|| Ok(my_netns())).unwrap(), ib);
        assert_eq!(my_netns(), host);
        // The closure's error comes back as it is.
        let e = a
            .run(|| -> network::Result<()> { Err(network::Error::Invalid("from inside".into())) })
            .unwrap_err();
        assert!(
            matches!(&e, network::Error::Invalid(m) if m == "from inside"),
            "{e:?}"
        );

        // A namespace opened by its path is the same namespace.
        let again = NetNs::open(a.path()).unwrap();
        assert_eq!(again.run(|| Ok(my_netns())).unwrap(), ia);
        // A new namespace has a loopback device and nothing else, down.
        let links = b.run(|| Netlink::open()?.links()).unwrap();
        assert_eq!(links.len(), 1, "{links:?}");
        assert_eq!(links[0].name, "lo");
        assert!(!links[0].up);

        let path = a.path().to_path_buf();
        a.remove().unwrap();
        assert!(!path.exists());
        assert!(NetNs::open(&path).is_err());
        netns::remove(&path).unwrap();
        b.remove().unwrap();
    });
}

#[test]
fn veth_pairs_with_and_without_a_mac() {
    testkit::root_test!();
    let dir = tmp();
    fresh_host(|| {
        let host = Netlink::open().unwrap();
        let a = NetNs::create(dir.path().join("a")).unwrap();
        let b = NetNs::create(dir.path().join("b")).unwrap();
        let eth0 = |ns: &NetNs| ns.run(|| Netlink::open()?.link("eth0")).unwrap();

        // Both peers are called eth0, each in its own namespace; the index
        // returned is the host end's.
        let mac = mac_for(ip("10.77.0.9"));
        let ia = host
            .veth("vh-a", "eth0", a.fd().unwrap().as_fd(), Some(mac))
            .unwrap();
        let ib = host
            .veth("vh-b", "eth0", b.fd().unwrap().as_fd(), None)
            .unwrap();
        assert_eq!(host.link("vh-a").unwrap().unwrap().index, ia);
        assert_eq!(host.link("vh-b").unwrap().unwrap().index, ib);
        assert!(host.link("eth0").unwrap().is_none());
        assert_eq!(eth0(&a).unwrap().mac, Some(mac));
        // Without a MAC address the kernel picks one.
        let picked = eth0(&b).unwrap().mac.expect("a veth has a MAC address");
        assert_ne!(picked, mac);
        assert_ne!(picked, [0; 6]);

        // A peer may have any name.
        host.veth("vh-c", "uplink0", a.fd().unwrap().as_fd(), None)
            .unwrap();
        let names: Vec<String> = a
            .run(|| Netlink::open()?.links())
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, ["lo", "eth0", "uplink0"]);

        // A name that is taken, on either side, is an error, and leaves
        // nothing half made.
        assert!(
            host.veth("vh-a", "eth1", b.fd().unwrap().as_fd(), None)
                .is_err()
        );
        assert!(b.run(|| Netlink::open()?.link("eth1")).unwrap().is_none());
        assert!(
            host.veth("vh-d", "eth0", a.fd().unwrap().as_fd(), None)
                .is_err()
        );
        assert!(host.link("vh-d").unwrap().is_none());
        assert_eq!(host.link("vh-a").unwrap().unwrap().index, ia);
        assert_eq!(eth0(&a).unwrap().mac, Some(mac));

        for end in ["vh-a", "vh-b", "vh-c"] {
            host.delete(end).unwrap();
        }
        assert!(eth0(&a).is_none() && eth0(&b).is_none());
        a.remove().unwrap();
        b.remove().unwrap();
    });
}

// --- 04.2 a bridge, addresses and routes ------------------------------------------

#[test]
fn links_move_between_bridges_and_go_down() {
    testkit::root_test!();
    let dir = tmp();
    fresh_host(|| {
        let host = Netlink::open().unwrap();
        let one = host.bridge("br-one").unwrap();
        let two = host.bridge("br-two").unwrap();
        assert_ne!(one, two);
        // A bridge is made up.
        assert!(host.link("br-one").unwrap().unwrap().up);

        let ns = NetNs::create(dir.path().join("c")).unwrap();
        host.veth("vh-c", "eth0", ns.fd().unwrap().as_fd(), None)
            .unwrap();
        let master = || host.link("vh-c").unwrap().unwrap().master;
        let up = |name: &str| host.link(name).unwrap().unwrap().up;
        assert_eq!(master(), None);
        host.set_master("vh-c", "br-one").unwrap();
        assert_eq!(master(), Some(one));
        // Plugging it elsewhere unplugs it from the first bridge.
        host.set_master("vh-c", "br-two").unwrap();
        assert_eq!(master(), Some(two));
        assert!(host.set_master("vh-c", "br-none").is_err());
        assert_eq!(master(), Some(two));

        // Up, down, and down again.
        host.set_up("vh-c", true).unwrap();
        assert!(up("vh-c"));
        host.set_up("vh-c", false).unwrap();
        assert!(!up("vh-c"));
        host.set_up("vh-c", false).unwrap();
        assert!(!up("vh-c"));
        host.set_up("br-two", false).unwrap();
        assert!(!up("br-two"));

        // The same address twice is one address; another is added beside it.
        for _ in 0..2 {
            host.add_address("br-one", ip("10.77.0.1"), 24).unwrap();
        }
        host.add_address("br-one", ip("192.168.77.1"), 28).unwrap();
        let mut addrs = host.addresses("br-one").unwrap();
        addrs.sort();
        assert_eq!(addrs, [(ip("10.77.0.1"), 24), (ip("192.168.77.1"), 28)]);

        // A default route needs a gateway the namespace can reach.
        let (unreachable, route) = ns
            .run(|| {
                let nl = Netlink::open()?;
                nl.add_address("eth0", ip("10.77.0.2"), 24)?;
                nl.set_up("eth0", true)?;
                let unreachable = nl.add_default_route(ip("10.99.0.1")).is_err();
                nl.add_default_route(ip("10.77.0.1"))?;
                let out = Command::new("ip").args(["-4", "route"]).output().unwrap();
                Ok((
                    unreachable,
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                ))
            })
            .unwrap();
        assert!(unreachable, "a route via 10.99.0.1 was accepted:\n{route}");
        assert!(route.contains("default via 10.77.0.1 dev eth0"), "{route}");
        assert!(!route.contains("10.99.0.1"), "{route}");

        host.delete("vh-c").unwrap();
        ns.remove().unwrap();
    });
}

// --- 04.3 handing out addresses ---------------------------------------------------

#[test]
fn a_slash_30_holds_one_container() {
    let s = subnet("192.168.7.4/30");
    assert_eq!(s.netmask(), ip("255.255.255.252"));
    assert_eq!(s.broadcast(), ip("192.168.7.7"));
    assert_eq!(s.first_host(), ip("192.168.7.5"));
    assert_eq!(s.size(), 2);

    let mut pool = Pool::new(s, None).unwrap();
    assert_eq!(pool.gateway, ip("192.168.7.5"));
    assert_eq!(pool.allocate("a", None).unwrap(), ip("192.168.7.6"));
    assert!(pool.allocate("b", None).is_err(), "the /30 is full");
    // Nothing else may be asked for either: taken, broadcast, network,
    // gateway, outside.
    for asked in [
        "192.168.7.6",
        "192.168.7.7",
        "192.168.7.4",
        "192.168.7.5",
        "192.168.7.8",
    ] {
        assert!(pool.allocate("b", Some(ip(asked))).is_err(), "{asked}");
    }
    assert_eq!(pool.leases.len(), 1);
    // Its one address comes back once released: there is no other.
    assert_eq!(pool.release("a"), [ip("192.168.7.6")]);
    assert!(pool.leases.is_empty());
    assert_eq!(pool.allocate("b", None).unwrap(), ip("192.168.7.6"));
    assert_eq!(pool.allocate("b", None).unwrap(), ip("192.168.7.6"));

    // With the gateway on the last host, the container gets the first.
    let mut pool = Pool::new(s, Some(ip("192.168.7.6"))).unwrap();
    assert_eq!(pool.allocate("a", None).unwrap(), ip("192.168.7.5"));
    assert!(pool.allocate("b", None).is_err());
    for gateway in ["192.168.7.4", "192.168.7.7", "192.168.7.8", "192.168.7.3"] {
        assert!(Pool::new(s, Some(ip(gateway))).is_err(), "{gateway}");
    }

    // Neighbouring /30s do not overlap; the blocks around them do.
    for (a, b, want) in [
        ("192.168.7.4/30", "192.168.7.0/30", false),
        ("192.168.7.4/30", "192.168.7.8/30", false),
        ("192.168.7.4/30", "192.168.7.4/30", true),
        ("192.168.7.4/30", "192.168.7.0/29", true),
        ("192.168.7.8/29", "192.168.7.4/30", false),
        ("192.168.0.0/16", "192.168.7.4/30", true),
        ("0.0.0.0/1", "128.0.0.0/1", false),
    ] {
        assert_eq!(subnet(a).overlaps(&subnet(b)), want, "{a} {b}");
        assert_eq!(subnet(b).overlaps(&subnet(a)), want, "{b} {a}");
    }
    // A host route as small as a /30 still rules out the /16 around it; a
    // /13 rules out eight of them.
    assert_eq!(
        pick_subnet(&[subnet("172.17.200.4/30")]).unwrap(),
        subnet("172.18.0.0/16")
    );
    assert_eq!(
        pick_subnet(&[subnet("172.16.0.0/13")]).unwrap(),
        subnet("172.24.0.0/16")
    );
}

#[test]
fn round_robin_survives_releases_and_the_file() {
    // Hosts .1 to .6; the gateway takes .1.
    let mut pool = Pool::new(subnet("10.9.0.0/29"), None).unwrap();
    for (owner, want) in [("a", ".2"), ("b", ".3"), ("c", ".4")] {
        assert_eq!(
            pool.allocate(owner, None).unwrap(),
            ip(&format!("10.9.0{want}"))
        );
    }
    // Releasing the last address picked does not move the position back.
    assert_eq!(pool.release("b"), [ip("10.9.0.3")]);
    assert_eq!(pool.release("c"), [ip("10.9.0.4")]);
    assert_eq!(pool.allocate("d", None).unwrap(), ip("10.9.0.5"));
    // A requested address leaves the position alone.
    assert_eq!(
        pool.allocate("e", Some(ip("10.9.0.6"))).unwrap(),
        ip("10.9.0.6")
    );
    // Past the end: round again, over the gateway and .2.
    assert_eq!(pool.allocate("f", None).unwrap(), ip("10.9.0.3"));
    assert_eq!(pool.allocate("g", None).unwrap(), ip("10.9.0.4"));
    assert!(pool.allocate("h", None).is_err());
    // An owner that has an address gets it again, full pool or not.
    assert_eq!(pool.allocate("f", None).unwrap(), ip("10.9.0.3"));

    // The position goes through the file.
    let json = serde_json::to_string(&pool).unwrap();
    let back: Pool = serde_json::from_str(&json).unwrap();
    assert_eq!(back, pool);
    let from_file = |last: &str| -> Pool {
        serde_json::from_str(&format!(
            r#"{{"subnet":"10.9.1.0/24","gateway":"10.9.1.1","leases":{{"10.9.1.201":"x"}},"last":"{last}"}}"#
        ))
        .unwrap()
    };
    let mut pool = from_file("10.9.1.199");
    assert_eq!(pool.allocate("y", None).unwrap(), ip("10.9.1.200"));
    assert_eq!(pool.allocate("z", None).unwrap(), ip("10.9.1.202"));
    // The last host address: wrap to the first, which is the gateway.
    let mut pool = from_file("10.9.1.254");
    assert_eq!(pool.allocate("y", None).unwrap(), ip("10.9.1.2"));
    assert_eq!(pool.release("x"), [ip("10.9.1.201")]);
    assert!(pool.release("x").is_empty());
}

// --- 04.4 forwarding and masquerade -----------------------------------------------

fn net(name: &str, bridge: &str, subnet: &str, internal: bool) -> Network {
    Network {
        name: name.into(),
        bridge: bridge.into(),
        subnet: subnet.into(),
        internal,
    }
}

#[test]
fn masquerade_keeps_the_order_and_skips_internal_networks() {
    let networks = [
        net("zeta", "br-zzzzzzzzzzzz", "10.99.0.0/24", false),
        net("vault", "br-vvvvvvvvvvvv", "10.98.0.0/24", true),
        net("bridge", "berth0", "10.88.0.0/16", false),
        net("tiny", "br-tiny", "10.97.0.4/30", false),
    ];
    assert_eq!(
        sorted(masquerade_rules(&networks)),
        [
            "ip saddr 10.88.0.0/16 oifname != \"berth0\" masquerade comment \"bridge: egress\"",
            "ip saddr 10.97.0.4/30 oifname != \"br-tiny\" masquerade comment \"tiny: egress\"",
            "ip saddr 10.99.0.0/24 oifname != \"br-zzzzzzzzzzzz\" masquerade comment \"zeta: egress\"",
        ]
    );
    assert!(masquerade_rules(&[]).is_empty());
    assert!(masquerade_rules(&networks[1..2]).is_empty());
    assert_eq!(reply_rules(), ["ct state established,related accept"]);
}

// --- 04.5 published ports ---------------------------------------------------------

#[test]
fn udp_ports_bound_to_one_host_address() {
    let port = |protocol, host_ip: Option<&str>, host_port, to: &str, container_port, id: &str| {
        PortMapping {
            protocol,
            host_ip: host_ip.map(ip),
            host_port,
            container_ip: ip(to),
            container_port,
            bridge: "berth0".into(),
            container: id.into(),
        }
    };
    let ports = [
        port(
            Protocol::Tcp,
            Some("0.0.0.0"),
            9000,
            "10.88.0.8",
            9000,
            "c1",
        ),
        port(
            Protocol::Udp,
            Some("10.0.0.5"),
            53,
            "10.88.0.7",
            5353,
            "0123456789abcdef0123",
        ),
        port(Protocol::Udp, None, 1, "10.88.0.9", 65535, "feedfacecafe"),
        port(
            Protocol::Udp,
            Some("127.0.0.1"),
            65535,
            "10.88.0.9",
            1,
            "feedfacecafe1",
        ),
    ];
    // In the order given, each with its short container id.
    assert_eq!(
        port_rules(&ports),
        [
            "tcp dport 9000 dnat to 10.88.0.8:9000 comment \"c1\"",
            "ip daddr 10.0.0.5 udp dport 53 dnat to 10.88.0.7:5353 comment \"0123456789ab\"",
            "udp dport 1 dnat to 10.88.0.9:65535 comment \"feedfacecafe\"",
            "ip daddr 127.0.0.1 udp dport 65535 dnat to 10.88.0.9:1 comment \"feedfacecafe\"",
        ]
    );
    assert!(port_rules(&[]).is_empty());

    let networks = [
        net("web", "br-web", "10.90.0.0/24", false),
        net("vault", "br-vault", "10.91.0.0/24", true),
        net("tiny", "br-tiny", "10.92.0.4/30", false),
    ];
    assert_eq!(
        sorted(return_path_rules(&networks)),
        [
            "ct status dnat oifname \"br-tiny\" ip saddr 10.92.0.4/30 masquerade comment \"tiny: hairpin to a published port\"",
            "ct status dnat oifname \"br-web\" ip saddr 10.90.0.0/24 masquerade comment \"web: hairpin to a published port\"",
            "oifname \"br-tiny\" ip saddr 127.0.0.0/8 masquerade comment \"tiny: localhost to a published port\"",
            "oifname \"br-web\" ip saddr 127.0.0.0/8 masquerade comment \"web: localhost to a published port\"",
        ]
    );
    assert!(return_path_rules(&networks[1..2]).is_empty());
    assert_eq!(published_rules(), ["ct status dnat accept"]);
}

// --- 04.6 isolated networks -------------------------------------------------------

#[test]
fn isolation_between_three_networks_and_two_internal_ones() {
    let a = net("a", "br-a", "10.1.0.0/24", false);
    let b = net("b", "br-b", "10.2.0.0/24", false);
    let c = net("c", "br-c", "10.3.0.0/24", false);
    let i1 = net("i1", "br-i1", "10.4.0.0/24", true);
    let i2 = net("i2", "br-i2", "10.5.0.0/24", true);
    let all = [a.clone(), i1.clone(), b.clone(), c.clone(), i2.clone()];

    assert_eq!(
        sorted(isolation_rules(&all)),
        [
            "iifname \"br-a\" oifname { \"br-b\", \"br-c\" } drop comment \"a: isolated from other networks\"",
            "iifname \"br-b\" oifname { \"br-a\", \"br-c\" } drop comment \"b: isolated from other networks\"",
            "iifname \"br-c\" oifname { \"br-a\", \"br-b\" } drop comment \"c: isolated from other networks\"",
        ]
    );
    // One network with a way out among internal ones is alone.
    assert!(isolation_rules(&[i1.clone(), a.clone(), i2.clone()]).is_empty());
    assert!(isolation_rules(&[i1.clone(), i2.clone()]).is_empty());

    assert_eq!(
        sorted(internal_rules(&all)),
        [
            "iifname \"br-i1\" oifname != \"br-i1\" drop comment \"i1: internal, no way out\"",
            "iifname \"br-i2\" oifname != \"br-i2\" drop comment \"i2: internal, no way out\"",
            "oifname \"br-i1\" iifname != \"br-i1\" drop comment \"i1: internal, no way in\"",
            "oifname \"br-i2\" iifname != \"br-i2\" drop comment \"i2: internal, no way in\"",
        ]
    );
    assert!(internal_rules(&[a.clone(), b.clone(), c.clone()]).is_empty());

    // In the forward chain the internal drops come first, then replies and
    // published ports, then isolation.
    let script = render(&Ruleset {
        networks: all.to_vec(),
        ports: vec![],
    });
    let at = |text: &str| {
        script
            .find(text)
            .unwrap_or_else(|| panic!("{text:?} missing from\n{script}"))
    };
    assert!(at("i2: internal, no way in") < at("ct state established,related accept"));
    assert!(at("ct state established,related accept") < at("ct status dnat accept"));
    assert!(at("ct status dnat accept") < at("a: isolated from other networks"));
    // Internal networks have no way out: no masquerade for them.
    assert!(!script.contains("i1: egress") && !script.contains("i2: egress"));
    assert!(script.contains("c: egress"));
}

/// A pinned namespace whose eth0 is `addr`/24 on `bridge`, with the
/// bridge's `.1` as its default route.
fn container(host: &Netlink, dir: &Path, name: &str, bridge: &str, addr: Ipv4Addr) -> NetNs {
    let ns = NetNs::create(dir.join(name)).unwrap();
    let end = format!("vh-{name}");
    host.veth(&end, "eth0", ns.fd().unwrap().as_fd(), Some(mac_for(addr)))
        .unwrap();
    host.set_master(&end, bridge).unwrap();
    host.set_up(&end, true).unwrap();
    let o = addr.octets();
    let gateway = Ipv4Addr::new(o[0], o[1], o[2], 1);
    ns.run(|| {
        let nl = Netlink::open()?;
        nl.set_up("lo", true)?;
        nl.add_address("eth0", addr, 24)?;
        nl.set_up("eth0", true)?;
        nl.add_default_route(gateway)
    })
    .unwrap();
    ns
}

/// True when a TCP connection from inside `ns` to `to` is accepted within
/// a second.
fn reaches(ns: &NetNs, to: &str) -> bool {
    let to: SocketAddr = to.parse().unwrap();
    ns.run(|| Ok(TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok()))
        .unwrap()
}

#[test]
fn an_internal_network_talks_only_to_itself() {
    testkit::root_test!();
    let dir = tmp();
    fresh_host(|| {
        let host = Netlink::open().unwrap();
        for (bridge, gateway) in [
            ("br-a", "10.77.0.1"),
            ("br-b", "10.78.0.1"),
            ("br-i", "10.79.0.1"),
        ] {
            host.bridge(bridge).unwrap();
            host.add_address(bridge, ip(gateway), 24).unwrap();
            host.set_up(bridge, true).unwrap();
        }
        let d = dir.path();
        let a1 = container(&host, d, "a1", "br-a", ip("10.77.0.2"));
        let b1 = container(&host, d, "b1", "br-b", ip("10.78.0.2"));
        let i1 = container(&host, d, "i1", "br-i", ip("10.79.0.2"));
        let i2 = container(&host, d, "i2", "br-i", ip("10.79.0.3"));
        // Listening is enough: the kernel completes the handshake.
        let _listeners: Vec<TcpListener> = [&a1, &i1]
            .iter()
            .map(|ns| {
                ns.run(|| Ok(TcpListener::bind("0.0.0.0:80").unwrap()))
                    .unwrap()
            })
            .collect();
        network::sysctl::enable_forwarding().unwrap();
        // Forwarding on and no rules: everything reaches everything.
        assert!(reaches(&a1, "10.79.0.2:80"));

        firewall::apply(&Ruleset {
            networks: vec![
                net("a", "br-a", "10.77.0.0/24", false),
                net("b", "br-b", "10.78.0.0/24", false),
                net("vault", "br-i", "10.79.0.0/24", true),
            ],
            ports: vec![PortMapping {
                protocol: Protocol::Tcp,
                host_ip: None,
                host_port: 8080,
                container_ip: ip("10.77.0.2"),
                container_port: 80,
                bridge: "br-a".into(),
                container: "a1a1a1a1a1a1".into(),
            }],
        })
        .unwrap();

        // Within the internal network: as before.
        assert!(reaches(&i2, "10.79.0.2:80"));
        // No way in, no way out.
        assert!(!reaches(&a1, "10.79.0.2:80"), "a1 reached the internal i1");
        assert!(!reaches(&i1, "10.77.0.2:80"), "the internal i1 reached a1");
        // A published port is open to every network but the internal one,
        // even through the host's address on the internal bridge.
        assert!(reaches(&b1, "10.78.0.1:8080"));
        assert!(
            !reaches(&i1, "10.79.0.1:8080"),
            "the internal i1 reached a published port"
        );

        firewall::remove_all().unwrap();
        for ns in [a1, b1, i1, i2] {
            ns.remove().unwrap();
        }
    });
}

// --- 04.7 a DNS server per network ------------------------------------------------

fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg.to_vec().unwrap()
}

#[test]
fn a_answers_rotate_whatever_the_turn_and_the_case() {
    let (d1, d2, d3) = (ip("10.89.0.11"), ip("10.89.0.12"), ip("10.89.0.13"));
    let cache = ip("10.89.0.20");
    let lookup = move |name: &str| match name {
        "db" => vec![d1, d2, d3],
        "cache" => vec![cache],
        _ => vec![],
    };
    let ask = |name: &str, qtype, turn| match dns::answer(&query(0x77, name, qtype), &lookup, turn)
    {
        Some(Reply::Answer(bytes)) => Message::from_vec(&bytes).unwrap(),
        other => panic!("{name} {qtype}: expected an answer, got {other:?}"),
    };

    // The counter wraps, so any turn must work.
    for (turn, want) in [
        (0, [d1, d2, d3]),
        (1, [d2, d3, d1]),
        (2, [d3, d1, d2]),
        (4, [d2, d3, d1]),
        (usize::MAX, [d1, d2, d3]),
        (usize::MAX - 1, [d3, d1, d2]),
    ] {
        let msg = ask("dB.", RecordType::A, turn);
        assert_eq!(msg.metadata.id, 0x77);
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        let got: Vec<Ipv4Addr> = msg
            .answers
            .iter()
            .map(|r| {
                // Each record answers the question as asked.
                assert_eq!(r.name.to_ascii(), "dB.");
                assert_eq!(r.ttl, dns::TTL);
                assert_eq!(r.dns_class, DNSClass::IN);
                match &r.data {
                    RData::A(a) => a.0,
                    other => panic!("not an A record: {other:?}"),
                }
            })
            .collect();
        assert_eq!(got, want, "turn {turn}");
    }
    for turn in [0, 1, 7, usize::MAX] {
        let msg = ask("CACHE", RecordType::A, turn);
        assert_eq!(msg.answers.len(), 1);
        assert_eq!(msg.answers[0].data, RData::A(cache.into()));
    }
    // Other types for a name of ours: it exists, with nothing of that type.
    for qtype in [RecordType::AAAA, RecordType::MX, RecordType::ANY] {
        let msg = ask("Db.", qtype, 1);
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{qtype}");
        assert!(msg.answers.is_empty(), "{qtype}");
    }
    // Only whole names are ours.
    for name in ["d.", "dbx.", "db.internal.", "cache.db.", "x.cache."] {
        assert_eq!(
            dns::answer(&query(1, name, RecordType::A), &lookup, 0),
            Some(Reply::Forward),
            "{name}"
        );
    }
}
