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

/// A body fetched from a new container on `network` (or None). The
/// container runs `--init`: busybox's `timeout` execs the command in its
/// own process and signals it from a child, and as a namespace's PID 1 the
/// command would ignore that SIGTERM (PID 1 gets only the signals it has
/// handlers for), so a dropped connection would hang for minutes.
fn fetch_from_container(b: &Berth, network: &str, url: &str) -> Option<String> {
    let (code, out, _) = b.run(&[
        "run",
        "--rm",
        "--init",
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
    let b = crate::berth!();
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
    let b = crate::berth!();
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
    let b = crate::berth!();
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
    // And from the container itself, through the host's addresses: its
    // bridge port is in hairpin mode, for hosts where br_netfilter applies
    // the DNAT on the bridge and sends the frame back where it came from.
    let gateway = b.inspect("site", "{{.NetworkSettings.Gateway}}");
    for host in [gateway.as_str(), "192.0.2.1"] {
        let url = format!("http://{host}:8080/hostname");
        let (code, out, err) = b.run(&["exec", "site", "timeout", "3", "wget", "-qO-", &url]);
        assert_eq!((code, out.as_str()), (0, want.as_str()), "{url}: {err}");
    }
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
    let b = crate::berth!();
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
    let b = crate::berth!();
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
    let b = crate::berth!();
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
    let b = crate::berth!();
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
    let b = crate::berth!();
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

/// The IPv4 addresses of a container's interfaces other than loopback, as
/// `NAME ADDRESS/PREFIX` lines.
fn interfaces(b: &Berth, name: &str) -> Vec<String> {
    let out = b.ok(&[
        "exec",
        name,
        "sh",
        "-c",
        "ip -o -4 addr show | grep -v ' lo ' | while read -r _ dev _ addr _; do echo \"$dev $addr\"; done",
    ]);
    out.lines().map(str::to_string).collect()
}

#[test]
fn the_default_network_is_the_bridge() {
    let b = crate::berth!();
    b.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "1000"]);
    assert_eq!(b.inspect("plain", "{{.HostConfig.NetworkMode}}"), "bridge");
    let ip = b.inspect("plain", "{{.NetworkSettings.IPAddress}}");
    let gateway = b.inspect("plain", "{{.NetworkSettings.Gateway}}");
    let config: serde_json::Value = serde_json::from_str(&b.ok(&[
        "network",
        "inspect",
        "--format",
        "{{json .IPAM.Config}}",
        "bridge",
    ]))
    .unwrap();
    let subnet: network::ipam::Subnet = config[0]["Subnet"].as_str().unwrap().parse().unwrap();
    assert!(subnet.contains(ip.parse().unwrap()), "{ip} not in {subnet}");
    assert_eq!(
        interfaces(&b, "plain"),
        [format!("eth0 {ip}/{}", subnet.prefix())]
    );
    let route = b.ok(&["exec", "plain", "ip", "route", "show", "default"]);
    assert!(
        route.starts_with(&format!("default via {gateway} dev eth0")),
        "{route}"
    );
    // The host's end is on berth0.
    let master = b
        .on_host("ip")
        .args(["-o", "link", "show", "master", "berth0"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&master.stdout).lines().count(), 1);
}

#[test]
fn a_container_on_two_networks_has_an_interface_on_each() {
    let b = crate::berth!();
    b.ok(&["network", "create", "--subnet", "10.89.1.0/24", "front"]);
    b.ok(&["network", "create", "--subnet", "10.89.2.0/24", "back"]);
    let ui = web(&b, "ui", &["--network", "front"]);
    let api = web(&b, "api", &["--network", "back"]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "proxy",
        "--network",
        "front",
        "--network",
        "back",
        "busybox",
        "sleep",
        "1000",
    ]);
    let ifs = interfaces(&b, "proxy");
    assert_eq!(ifs.len(), 2, "{ifs:?}");
    assert!(ifs[0].starts_with("eth0 10.89.1."), "{ifs:?}");
    assert!(ifs[1].starts_with("eth1 10.89.2."), "{ifs:?}");
    let networks: serde_json::Value =
        serde_json::from_str(&b.inspect("proxy", "{{json .NetworkSettings.Networks}}")).unwrap();
    let names: Vec<&String> = networks.as_object().unwrap().keys().collect();
    assert_eq!(names, ["back", "front"]);
    // The proxy reaches both sides by name; each side only its own.
    let get = |from: &str, url: &str| {
        let (code, out, _) = b.run(&["exec", from, "timeout", "3", "wget", "-qO-", url]);
        (code == 0).then_some(out)
    };
    assert_eq!(
        get("proxy", "http://ui/hostname"),
        Some(format!("{}\n", &ui[..12]))
    );
    assert_eq!(
        get("proxy", "http://api/hostname"),
        Some(format!("{}\n", &api[..12]))
    );
    let api_ip = b.inspect("api", "{{.NetworkSettings.IPAddress}}");
    assert_eq!(
        fetch_from_container(&b, "front", &format!("http://{api_ip}/hostname")),
        None
    );
    assert!(b.run(&["network", "rm", "back"]).2.contains("proxy"));
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let b = crate::berth!();
    b.ok(&["network", "create", "--subnet", "10.89.3.0/24", "app"]);
    let api = web(&b, "api", &["--network", "app"]);
    b.ok(&["run", "-d", "--name", "client", "busybox", "sleep", "1000"]);
    let get = || {
        let (code, out, _) = b.run(&[
            "exec",
            "client",
            "timeout",
            "3",
            "wget",
            "-qO-",
            "http://api/hostname",
        ]);
        (code == 0).then_some(out)
    };
    // On the default bridge the name means nothing.
    assert_eq!(get(), None);
    b.ok(&[
        "network",
        "connect",
        "--alias",
        "c",
        "--ip",
        "10.89.3.99",
        "app",
        "client",
    ]);
    let ifs = interfaces(&b, "client");
    assert_eq!(ifs.len(), 2, "{ifs:?}");
    assert_eq!(ifs[1], "eth1 10.89.3.99/24");
    let resolv = b.ok(&["exec", "client", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    assert_eq!(get(), Some(format!("{}\n", &api[..12])));
    // Its alias answers on that network.
    let (code, out, _) = b.run(&["exec", "api", "nslookup", "c", "127.0.0.11"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("10.89.3.99"), "{out}");
    let err = b.run(&["network", "connect", "app", "client"]).2;
    assert!(err.contains("already on network app"), "{err}");
    b.ok(&["network", "disconnect", "app", "client"]);
    assert_eq!(interfaces(&b, "client").len(), 1);
    assert_eq!(get(), None);
    let err = b.run(&["network", "disconnect", "app", "client"]).2;
    assert!(err.contains("is not connected to network app"), "{err}");
    // A stopped container gets its new network when it starts.
    b.ok(&["create", "--name", "later", "busybox", "sleep", "1000"]);
    b.ok(&["network", "connect", "app", "later"]);
    b.ok(&["start", "later"]);
    let ifs = interfaces(&b, "later");
    assert_eq!(ifs.len(), 2, "{ifs:?}");
    assert!(ifs[1].starts_with("eth1 10.89.3."), "{ifs:?}");
    // Host networking cannot be connected.
    b.ok(&[
        "create",
        "--name",
        "hosted",
        "--network",
        "host",
        "busybox",
        "true",
    ]);
    let err = b.run(&["network", "connect", "app", "hosted"]).2;
    assert!(err.contains("uses the host's network"), "{err}");
}

#[test]
fn a_killed_monitor_leaves_nothing_behind_after_rm() {
    let b = crate::berth!();
    b.ok(&["network", "create", "--subnet", "10.89.4.0/24", "app"]);
    let id = web(
        &b,
        "victim",
        &[
            "--network",
            "app",
            "--network",
            "bridge",
            "--ip",
            "10.89.4.7",
            "-p",
            "8081:80",
        ],
    );
    assert!(fetch_on_host(&b, "http://127.0.0.1:8081/hostname").is_some());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(b.root().join("containers").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let monitor = state["state"]["monitor_pid"].as_i64().unwrap() as i32;
    assert!(monitor > 0, "{state}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    b.ok(&["rm", "-f", "victim"]);
    let links = b.on_host("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(
        !links.contains(&format!("vb{}", &id[..10])),
        "veth pairs left: {links}"
    );
    assert!(!b.runroot().join("netns").join(&id).exists());
    let rules = b
        .on_host("nft")
        .args(["list", "table", "ip", "berth"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
    assert!(!rules.contains("8081"), "{rules}");
    // Its address and its port are free again.
    web(
        &b,
        "again",
        &["--network", "app", "--ip", "10.89.4.7", "-p", "8081:80"],
    );
    assert!(fetch_on_host(&b, "http://127.0.0.1:8081/hostname").is_some());
}

#[test]
fn a_flushed_firewall_comes_back_with_the_next_container() {
    let b = crate::berth!();
    web(&b, "site", &["-p", "8082:80"]);
    let url = "http://127.0.0.1:8082/hostname";
    assert!(fetch_on_host(&b, url).is_some());
    // What Debian's nftables service does when it starts.
    assert!(
        b.on_host("nft")
            .args(["flush", "ruleset"])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(fetch_on_host(&b, url), None);
    b.ok(&["run", "--rm", "busybox", "true"]);
    assert!(fetch_on_host(&b, url).is_some());
}
