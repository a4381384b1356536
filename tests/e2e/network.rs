//! Bridge networks (lab 04) through `berth`: names, aliases, published
//! ports, isolation, egress and the errors. Each test's engine runs in a
//! network namespace of its own (see `Berth::in_own_network`), so its
//! bridges, veth pairs and firewall table are made there and never on the
//! machine.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use network::link::Netlink;
use network::netns::NetNs;

use crate::support::Berth;

macro_rules! berth_net {
    () => {
        match Berth::in_own_network(module_path!()) {
            Some(b) => b,
            None => return,
        }
    };
}

/// A body over HTTP, fetched on the engine's host (or None).
fn fetch_on_host(b: &Berth, url: &str) -> Option<String> {
    let out = b
        .on_host("timeout")
        .args(["3", "busybox", "wget", "-q", "-O", "-", url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A body fetched from a new container on `network` (or None).
fn fetch_from_container(b: &Berth, network: &str, url: &str) -> Option<String> {
    let (code, out, _) = b.run(&[
        "run",
        "--rm",
        "--network",
        network,
        "busybox",
        "timeout",
        "3",
        "wget",
        "-q",
        "-O",
        "-",
        url,
    ]);
    (code == 0).then_some(out)
}

/// Starts busybox httpd serving its own hostname at /hostname.
fn web(b: &Berth, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "httpd", "-f", "-p", "80", "-h", "/etc"]);
    b.ok(&args).trim().to_string()
}

#[test]
fn containers_on_a_network_reach_each_other_by_name() {
    let b = berth_net!();
    b.ok(&["network", "create", "app"]);
    let id = web(&b, "web", &["--network", "app"]);
    let page = fetch_from_container(&b, "app", "http://web/hostname");
    assert_eq!(page.as_deref(), Some(format!("{}\n", &id[..12]).as_str()));
    // The default bridge has no name resolution, as in Docker.
    web(&b, "plain", &["--network", "bridge"]);
    assert_eq!(
        fetch_from_container(&b, "bridge", "http://plain/hostname"),
        None
    );
    // /etc/hosts names the container itself.
    let hosts = b.ok(&["exec", "web", "cat", "/etc/hosts"]);
    let ip = b.inspect("web", "{{.NetworkSettings.IPAddress}}");
    assert!(
        hosts.contains(&format!("{ip}\t{} web", &id[..12])),
        "{hosts}"
    );
}

#[test]
fn an_alias_shared_by_two_containers_answers_both_in_turn() {
    let b = berth_net!();
    b.ok(&["network", "create", "app"]);
    for n in ["one", "two"] {
        b.ok(&[
            "run",
            "-d",
            "--name",
            n,
            "--network",
            "app",
            "--network-alias",
            "svc",
            "busybox",
            "sleep",
            "1000",
        ]);
    }
    let ips: Vec<String> = ["one", "two"]
        .iter()
        .map(|n| b.inspect(n, "{{.NetworkSettings.IPAddress}}"))
        .collect();
    let out = b.ok(&[
        "run", "--rm", "--network", "app", "busybox", "sh", "-c",
        "for i in 1 2 3 4; do nslookup -type=a svc 127.0.0.11 | sed -n 's/^Address: //p' | head -n 1; done",
    ]);
    let firsts: Vec<&str> = out.lines().collect();
    assert_eq!(firsts.len(), 4, "{out}");
    for ip in &ips {
        assert!(
            firsts.contains(&ip.as_str()),
            "{ip} never came first: {out}"
        );
    }
}

#[test]
fn a_published_port_serves_the_host_remote_hosts_and_containers() {
    let b = berth_net!();
    let id = web(&b, "site", &["--network", "bridge", "-p", "8080:80"]);
    let want = format!("{}\n", &id[..12]);
    assert_eq!(b.ok(&["port", "site"]), "80/tcp -> 0.0.0.0:8080\n");
    assert_eq!(b.ok(&["port", "site", "80"]), "0.0.0.0:8080\n");
    assert!(b.ok(&["ps"]).contains("0.0.0.0:8080->80/tcp"));
    // From the host, on localhost and on the host's own address.
    assert_eq!(
        fetch_on_host(&b, "http://127.0.0.1:8080/hostname").as_deref(),
        Some(want.as_str())
    );
    let remote = remote_host(&b);
    assert_eq!(
        fetch_on_host(&b, "http://192.0.2.1:8080/hostname").as_deref(),
        Some(want.as_str())
    );
    // From another machine, and from containers on both kinds of network.
    let from_remote = remote
        .run(|| {
            Ok(std::process::Command::new("timeout")
                .args([
                    "3",
                    "busybox",
                    "wget",
                    "-q",
                    "-O",
                    "-",
                    "http://192.0.2.1:8080/hostname",
                ])
                .output()
                .unwrap())
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&from_remote.stdout), want);
    assert_eq!(
        fetch_from_container(&b, "bridge", "http://192.0.2.1:8080/hostname").as_deref(),
        Some(want.as_str())
    );
    b.ok(&["network", "create", "other"]);
    assert_eq!(
        fetch_from_container(&b, "other", "http://192.0.2.1:8080/hostname").as_deref(),
        Some(want.as_str())
    );
    // Gone with the container.
    b.ok(&["rm", "-f", "site"]);
    assert_eq!(fetch_on_host(&b, "http://127.0.0.1:8080/hostname"), None);
    kill_remote_server(&remote);
    remote.remove().unwrap();
}

/// A "remote" machine behind the engine's host: a namespace at 192.0.2.2
/// on a veth link whose host end is 192.0.2.1, serving "remote" over HTTP.
fn remote_host(b: &Berth) -> NetNs {
    let host_ns = b.host_netns.as_ref().unwrap();
    let remote = NetNs::create(b.dir.path().join("remote-netns")).unwrap();
    let fd = remote.fd().unwrap();
    host_ns
        .run(|| {
            let nl = Netlink::open()?;
            nl.veth("to-remote", "eth0", fd.as_fd(), None)?;
            nl.add_address("to-remote", Ipv4Addr::new(192, 0, 2, 1), 24)?;
            nl.set_up("to-remote", true)
        })
        .unwrap();
    let www = b.dir.path().join("remote-www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "remote\n").unwrap();
    remote
        .run(|| {
            let nl = Netlink::open()?;
            nl.set_up("lo", true)?;
            nl.add_address("eth0", Ipv4Addr::new(192, 0, 2, 2), 24)?;
            nl.set_up("eth0", true)?;
            // httpd without -f goes to the background; kill_remote_server
            // stops it.
            std::process::Command::new("busybox")
                .args(["httpd", "-p", "80", "-h"])
                .arg(&www)
                .status()
                .unwrap();
            Ok(())
        })
        .unwrap();
    remote
}

#[test]
fn containers_reach_a_remote_host_through_masquerade() {
    let b = berth_net!();
    let remote = remote_host(&b);
    assert_eq!(
        fetch_from_container(&b, "bridge", "http://192.0.2.2/").as_deref(),
        Some("remote\n")
    );
    b.ok(&["network", "create", "app"]);
    assert_eq!(
        fetch_from_container(&b, "app", "http://192.0.2.2/").as_deref(),
        Some("remote\n")
    );
    // An internal network has no way out.
    b.ok(&["network", "create", "--internal", "sealed"]);
    assert_eq!(
        fetch_from_container(&b, "sealed", "http://192.0.2.2/"),
        None
    );
    kill_remote_server(&remote);
    remote.remove().unwrap();
}

/// Stops the httpd that `remote_host` started (it runs as a daemon).
fn kill_remote_server(remote: &NetNs) {
    let www = remote.path().parent().unwrap().join("remote-www");
    for (pid, _) in testkit::leaks::processes_mentioning(&www.to_string_lossy()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn networks_are_isolated_from_each_other() {
    let b = berth_net!();
    b.ok(&["network", "create", "front"]);
    b.ok(&["network", "create", "back"]);
    web(&b, "api", &["--network", "back"]);
    let ip = b.inspect("api", "{{.NetworkSettings.IPAddress}}");
    let url = format!("http://{ip}/hostname");
    assert!(fetch_from_container(&b, "back", &url).is_some());
    assert_eq!(fetch_from_container(&b, "front", &url), None);
    assert_eq!(fetch_from_container(&b, "bridge", &url), None);
}

#[test]
fn network_none_has_only_loopback() {
    let b = berth_net!();
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ip -o link | cut -d: -f2; ip route | wc -l",
    ]);
    assert_eq!(out, " lo\n0\n");
}

#[test]
fn parallel_runs_on_one_network_get_different_addresses() {
    let b = berth_net!();
    b.ok(&["network", "create", "--subnet", "10.89.0.0/24", "app"]);
    std::thread::scope(|s| {
        for i in 0..8 {
            let b = &b;
            s.spawn(move || {
                b.ok(&[
                    "run",
                    "-d",
                    "--name",
                    &format!("p{i}"),
                    "--network",
                    "app",
                    "busybox",
                    "sleep",
                    "1000",
                ]);
            });
        }
    });
    let mut ips: Vec<String> = (0..8)
        .map(|i| b.inspect(&format!("p{i}"), "{{.NetworkSettings.IPAddress}}"))
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 8, "{ips:?}");
    assert!(ips.iter().all(|ip| ip.starts_with("10.89.0.")), "{ips:?}");
}

#[test]
fn network_commands_and_their_errors() {
    let b = berth_net!();
    let err = |args: &[&str]| {
        let (code, _, e) = b.run(args);
        assert_ne!(code, 0, "berth {args:?} succeeded");
        e
    };
    b.ok(&["network", "create", "--subnet", "10.89.0.0/24", "app"]);
    assert!(err(&["network", "create", "app"]).contains("network with name app already exists"));
    assert!(
        err(&["network", "create", "--subnet", "10.89.0.128/25", "other"])
            .contains("overlaps network app")
    );
    assert!(err(&["network", "create", "--subnet", "10.89.0.1/24", "other"]).contains("host bits"));
    assert!(
        err(&["run", "--rm", "--network", "nope", "busybox", "true"])
            .contains("network nope not found")
    );
    assert!(
        err(&[
            "run",
            "--rm",
            "--network",
            "app",
            "--ip",
            "10.90.0.5",
            "busybox",
            "true"
        ])
        .contains("outside network app's subnet 10.89.0.0/24")
    );
    assert!(
        err(&["run", "--rm", "-p", "80:80:80:80", "busybox", "true"]).contains("invalid port spec")
    );
    assert!(
        err(&[
            "run",
            "--rm",
            "--network",
            "bridge",
            "-p",
            "99999:80",
            "busybox",
            "true"
        ])
        .contains("not a port from 1 to 65535")
    );
    // A host port in use is refused before anything is made.
    web(&b, "first", &["--network", "bridge", "-p", "8080:80"]);
    let before = b.ok(&["ps", "-aq"]);
    assert!(
        err(&[
            "run",
            "-d",
            "--network",
            "bridge",
            "-p",
            "8080:80",
            "busybox",
            "true"
        ])
        .contains("port is already allocated")
    );
    assert_eq!(b.ok(&["ps", "-aq"]), before);
    // A network in use cannot go; an --ip inside it is taken as asked.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "fixed",
        "--network",
        "app",
        "--ip",
        "10.89.0.50",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(
        b.inspect("fixed", "{{.NetworkSettings.IPAddress}}"),
        "10.89.0.50"
    );
    assert!(err(&["network", "rm", "app"]).contains("network has active endpoints (fixed)"));
    let listed = b.ok(&["network", "ls"]);
    for n in ["app", "bridge", "host", "none"] {
        assert!(listed.contains(n), "{listed}");
    }
    let inspect = b.ok(&[
        "network",
        "inspect",
        "--format",
        "{{json .IPAM.Config}}",
        "app",
    ]);
    assert_eq!(
        inspect.trim(),
        r#"[{"Gateway":"10.89.0.1","Subnet":"10.89.0.0/24"}]"#
    );
    b.ok(&["rm", "-f", "fixed", "first"]);
    assert_eq!(b.ok(&["network", "rm", "app"]), "app\n");
    // The bridge went with it; the default one stays, like docker0.
    let links = b.on_host("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(!links.contains("br-"), "{links}");
    assert!(links.contains("berth0"), "{links}");
    assert!(!links.contains("vb"), "veth pairs left: {links}");
    // system prune takes unused user-defined networks with it.
    b.ok(&["network", "create", "spare"]);
    let pruned = b.ok(&["system", "prune", "-f"]);
    assert!(pruned.contains("Deleted Networks:\nspare\n"), "{pruned}");
    assert!(!b.ok(&["network", "ls"]).contains("spare"));
}
