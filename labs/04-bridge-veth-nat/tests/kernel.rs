//! Lab 04's kernel tests: real namespaces, links and addresses.
//!
//! Each test builds its own "host": a thread with a new network namespace
//! (and mount namespace, for the pinned namespaces' bind mounts), so the
//! machine's own links, addresses and routes are never touched, and
//! everything vanishes with the thread.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;

use network::link::{Netlink, mac_for};
use network::netns::NetNs;

/// Runs `f` on a throwaway host (see `netns::on_a_new_host`); a panic in
/// it fails the test.
fn on_a_new_host<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    network::netns::on_a_new_host(f).unwrap()
}

/// Runs a command on the calling thread's namespaces; (success, output).
fn sh(script: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A container end: a pinned namespace with eth0 at `ip`/24 behind the
/// bridge `bridge`, whose address is `gateway`.
fn plug(
    host: &Netlink,
    dir: &std::path::Path,
    name: &str,
    bridge: &str,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
) -> NetNs {
    let ns = NetNs::create(dir.join(name)).unwrap();
    let veth = format!("vh-{name}");
    host.veth(&veth, "eth0", ns.fd().unwrap().as_fd(), Some(mac_for(ip)))
        .unwrap();
    host.set_master(&veth, bridge).unwrap();
    host.set_up(&veth, true).unwrap();
    ns.run(|| {
        let nl = Netlink::open()?;
        nl.set_up("lo", true)?;
        nl.add_address("eth0", ip, 24)?;
        nl.set_up("eth0", true)?;
        nl.add_default_route(gateway)
    })
    .unwrap();
    ns
}

#[test]
fn step_04_1_a_veth_pair_joins_a_pinned_namespace() {
    testkit::root_test!();
    let dir = tempfile::tempdir().unwrap();
    on_a_new_host(|| {
        let host = Netlink::open().unwrap();
        let ns = NetNs::create(dir.path().join("c1")).unwrap();
        // The namespace outlives the thread that made it.
        let ino = network::netns::inode(ns.path()).unwrap();
        assert_ne!(
            ino,
            network::netns::inode(std::path::Path::new("/proc/self/ns/net")).unwrap()
        );

        let mac = mac_for(Ipv4Addr::new(10, 77, 0, 2));
        host.veth("vh-c1", "eth0", ns.fd().unwrap().as_fd(), Some(mac))
            .unwrap();
        // The host keeps one end; the other is only in the namespace.
        assert!(host.link("vh-c1").unwrap().is_some());
        assert!(host.link("eth0").unwrap().is_none());
        let inside = ns.run(|| Netlink::open()?.links()).unwrap();
        let names: Vec<&str> = inside.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0"]);
        assert_eq!(inside[1].mac, Some(mac));

        // Deleting one end deletes the pair.
        host.delete("vh-c1").unwrap();
        let inside = ns.run(|| Netlink::open()?.links()).unwrap();
        assert_eq!(inside.len(), 1);
        host.delete("vh-c1").unwrap(); // already gone: not an error
        let path = ns.path().to_path_buf();
        ns.remove().unwrap();
        assert!(!path.exists());
    });
}

#[test]
fn step_04_2_containers_on_a_bridge_reach_each_other_and_the_gateway() {
    testkit::root_test!();
    let dir = tempfile::tempdir().unwrap();
    on_a_new_host(|| {
        let host = Netlink::open().unwrap();
        let gateway = Ipv4Addr::new(10, 77, 0, 1);
        host.bridge("br-test").unwrap();
        // Making it again keeps it.
        let index = host.bridge("br-test").unwrap();
        host.add_address("br-test", gateway, 24).unwrap();
        host.set_up("br-test", true).unwrap();
        assert_eq!(host.addresses("br-test").unwrap(), [(gateway, 24)]);

        let a = plug(
            &host,
            dir.path(),
            "a",
            "br-test",
            Ipv4Addr::new(10, 77, 0, 2),
            gateway,
        );
        let b = plug(
            &host,
            dir.path(),
            "b",
            "br-test",
            Ipv4Addr::new(10, 77, 0, 3),
            gateway,
        );
        let veth = host.link("vh-a").unwrap().unwrap();
        assert_eq!((veth.master, veth.up), (Some(index), true));

        let (ok, out) = a
            .run(|| Ok(sh("busybox ping -c1 -W2 10.77.0.3 && busybox ping -c1 -W2 10.77.0.1 && ip -4 route")))
            .unwrap();
        assert!(ok, "{out}");
        assert!(out.contains("default via 10.77.0.1 dev eth0"), "{out}");
        // Without forwarding, nothing beyond the bridge answers.
        let (ok, _) = b.run(|| Ok(sh("busybox ping -c1 -W1 192.0.2.1"))).unwrap();
        assert!(!ok);

        host.delete("vh-a").unwrap();
        host.delete("vh-b").unwrap();
        host.delete("br-test").unwrap();
        a.remove().unwrap();
        b.remove().unwrap();
        assert!(host.link("br-test").unwrap().is_none());
    });
}
