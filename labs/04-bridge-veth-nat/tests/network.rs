//! Lab 04 as a whole: two networks of containers behind one host, a
//! "remote" machine beyond it, forwarding, masquerade, a published port and
//! isolation, all made with the lab's own code and checked with real
//! traffic (busybox `httpd` and `wget`).
//!
//! The "host" is a thread with new network and mount namespaces, so the
//! machine's links, addresses, sysctls and firewall are never touched; the
//! "remote" machine is one more namespace, reached through a veth pair, so
//! no test needs the internet.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use network::firewall::{self, Network, PortMapping, Protocol, Ruleset};
use network::link::{Netlink, mac_for};
use network::netns::NetNs;
use network::sysctl;

/// Runs `f` on a throwaway host (see `netns::on_a_new_host`); a panic in
/// it fails the test.
fn on_a_new_host<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    network::netns::on_a_new_host(f).unwrap()
}

/// A pinned namespace whose eth0 is `ip`/`prefix`, with a veth `host_end`
/// on the host side, plugged into `bridge` if there is one.
fn machine(
    host: &Netlink,
    dir: &Path,
    name: &str,
    bridge: Option<&str>,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
) -> NetNs {
    let ns = NetNs::create(dir.join(name)).unwrap();
    let host_end = format!("vh-{name}");
    host.veth(
        &host_end,
        "eth0",
        ns.fd().unwrap().as_fd(),
        Some(mac_for(ip)),
    )
    .unwrap();
    if let Some(b) = bridge {
        host.set_master(&host_end, b).unwrap();
    }
    host.set_up(&host_end, true).unwrap();
    ns.run(|| {
        let nl = Netlink::open()?;
        nl.set_up("lo", true)?;
        nl.add_address("eth0", ip, prefix)?;
        nl.set_up("eth0", true)?;
        match gateway {
            Some(g) => nl.add_default_route(g),
            None => Ok(()),
        }
    })
    .unwrap();
    ns
}

/// A server process that is killed when dropped, also when an assertion
/// fails before the end of the test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `text` over HTTP on port 80 inside `ns`.
fn web_server(ns: &NetNs, dir: &Path, text: &str) -> Server {
    let root = dir.join(format!("www-{text}"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), text).unwrap();
    let child = ns
        .run(|| {
            Ok(Command::new("busybox")
                .args(["httpd", "-f", "-p", "80", "-h"])
                .arg(&root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap())
        })
        .unwrap();
    // Until it listens.
    let ready = ns
        .run(|| Ok(fetch("http://127.0.0.1/", 20).is_some()))
        .unwrap();
    let server = Server(child);
    assert!(ready, "httpd did not start");
    server
}

/// The body at `url`, or None; retries a few times, 100 ms apart.
fn fetch(url: &str, tries: usize) -> Option<String> {
    for _ in 0..tries {
        // Debian 12's busybox wget crashes with -T, so coreutils' timeout
        // bounds it instead.
        let out = Command::new("timeout")
            .args(["2", "busybox", "wget", "-q", "-O", "-", url])
            .output()
            .unwrap();
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

/// One try from inside `ns`.
fn fetch_from(ns: &NetNs, url: &str) -> Option<String> {
    ns.run(|| Ok(fetch(url, 1))).unwrap()
}

#[test]
fn step_04_6_egress_published_ports_and_isolation() {
    testkit::root_test!();
    let dir = tempfile::tempdir().unwrap();
    on_a_new_host(|| {
        let host = Netlink::open().unwrap();
        let a_gw = Ipv4Addr::new(10, 77, 0, 1);
        let b_gw = Ipv4Addr::new(10, 78, 0, 1);
        for (bridge, gw) in [("br-a", a_gw), ("br-b", b_gw)] {
            host.bridge(bridge).unwrap();
            host.add_address(bridge, gw, 24).unwrap();
            host.set_up(bridge, true).unwrap();
        }
        let a1 = machine(
            &host,
            dir.path(),
            "a1",
            Some("br-a"),
            Ipv4Addr::new(10, 77, 0, 2),
            24,
            Some(a_gw),
        );
        let a2 = machine(
            &host,
            dir.path(),
            "a2",
            Some("br-a"),
            Ipv4Addr::new(10, 77, 0, 3),
            24,
            Some(a_gw),
        );
        let b1 = machine(
            &host,
            dir.path(),
            "b1",
            Some("br-b"),
            Ipv4Addr::new(10, 78, 0, 2),
            24,
            Some(b_gw),
        );
        // The remote machine knows only its own link: replies to a
        // container's address have nowhere to go unless it is masqueraded.
        let remote = machine(
            &host,
            dir.path(),
            "remote",
            None,
            Ipv4Addr::new(192, 0, 2, 2),
            24,
            None,
        );
        host.add_address("vh-remote", Ipv4Addr::new(192, 0, 2, 1), 24)
            .unwrap();
        let servers = vec![
            web_server(&a1, dir.path(), "a1"),
            web_server(&remote, dir.path(), "remote"),
        ];

        // Without forwarding, a container gets no further than its bridge.
        assert_eq!(fetch_from(&a1, "http://192.0.2.2/"), None);
        sysctl::enable_forwarding().unwrap();
        sysctl::route_localnet("br-a").unwrap();
        sysctl::route_localnet("br-b").unwrap();
        // Forwarded, but not masqueraded: the remote machine cannot answer.
        assert_eq!(fetch_from(&a1, "http://192.0.2.2/"), None);

        let rules = Ruleset {
            networks: vec![
                Network {
                    name: "a".into(),
                    bridge: "br-a".into(),
                    subnet: "10.77.0.0/24".into(),
                    internal: false,
                },
                Network {
                    name: "b".into(),
                    bridge: "br-b".into(),
                    subnet: "10.78.0.0/24".into(),
                    internal: false,
                },
            ],
            ports: vec![PortMapping {
                protocol: Protocol::Tcp,
                host_ip: None,
                host_port: 8080,
                container_ip: Ipv4Addr::new(10, 77, 0, 2),
                container_port: 80,
                bridge: "br-a".into(),
                container: "a1".into(),
            }],
        };
        firewall::apply(&rules).unwrap();

        // Egress: out through the host, masqueraded.
        assert_eq!(
            fetch_from(&a1, "http://192.0.2.2/").as_deref(),
            Some("remote")
        );
        assert_eq!(
            fetch_from(&b1, "http://192.0.2.2/").as_deref(),
            Some("remote")
        );
        // The published port: from the host on localhost and on its own
        // address, from the remote machine, from a container on the same
        // network and from one on another network.
        assert_eq!(fetch("http://127.0.0.1:8080/", 1).as_deref(), Some("a1"));
        assert_eq!(fetch("http://192.0.2.1:8080/", 1).as_deref(), Some("a1"));
        assert_eq!(
            fetch_from(&remote, "http://192.0.2.1:8080/").as_deref(),
            Some("a1")
        );
        assert_eq!(
            fetch_from(&a2, "http://192.0.2.1:8080/").as_deref(),
            Some("a1")
        );
        assert_eq!(
            fetch_from(&b1, "http://192.0.2.1:8080/").as_deref(),
            Some("a1")
        );
        // Same network: direct. Another network: dropped.
        assert_eq!(fetch_from(&a2, "http://10.77.0.2/").as_deref(), Some("a1"));
        assert_eq!(fetch_from(&b1, "http://10.77.0.2/"), None);

        // Without the rules, the port is closed and egress fails again.
        firewall::remove_all().unwrap();
        assert_eq!(fetch("http://127.0.0.1:8080/", 1), None);
        assert_eq!(fetch_from(&a1, "http://192.0.2.2/"), None);

        drop(servers);
        for ns in [a1, a2, b1, remote] {
            ns.remove().unwrap();
        }
    });
}
