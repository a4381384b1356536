//! The network part of `cargo xtask bench`: what one container's network
//! costs to build, through lab 04's code and through the `ip` and `nft`
//! commands, and what it adds to `berth run --rm`.
//!
//! Everything runs on one thread that has new network and mount namespaces
//! (with a tmpfs on /run, where `ip netns` pins its namespaces), so the
//! machine's links, firewall and /run are never touched, and all of it is
//! gone when the thread ends.
//!
//! One set-up is: a network namespace pinned to a file, a veth pair with
//! one end created inside it as `eth0`, the host end plugged into a bridge
//! and up, and inside the namespace loopback up, an address on `eth0`,
//! `eth0` up and a default route; then the firewall table with one
//! published port. The rows:
//!
//! - `lab netlink`: lab 04's `NetNs` and `Netlink` (rtnetlink) as an
//!   engine should use them: the bridge's index looked up once, the veth
//!   made with its host end on the bridge and up in one request
//!   (`veth_on_bridge`), one netlink socket opened in the container's
//!   namespace by the thread that makes it, without a thread of its own
//!   (`NetNs::create_with_netlink`), and the container's side sent as one
//!   batch of requests (`configure`);
//! - `lab netlink, a request per step`: the lab's calls that match the
//!   `ip` commands one for one (`veth`, `set_master`, `set_up`, and in the
//!   namespace, inside `NetNs::run` and so on a thread of its own,
//!   `set_up`, `add_address`, `set_up`, `add_default_route`), each naming
//!   its link by name, so each starts with a look-up;
//! - `ip, peer made in the namespace`: seven `ip` commands;
//! - `ip, peer moved`: the same, but the veth made on the host and moved
//!   and renamed, as many tutorials do;
//! - `ip -batch`: the `ip` steps as two `ip -batch` runs (the host's and
//!   the namespace's).
//!
//! The lab makes its veths with one transmit and one receive queue on each
//! end; `ip` leaves the number to the kernel, which gives a veth as many as
//! the machine may have CPUs (see `one_queue_each` in lab 04's link.rs).
//!
//! The firewall rules are timed apart, after the links: the lab's
//! `firewall::apply` against `nft -f` with the same script. Both end in
//! one `nft` process, which costs more than all the links together.
//!
//! Tearing down (deleting the veth and unpinning the namespace) is not
//! timed. Rows alternate round by round, as in the rest of the benchmark,
//! and the figures are medians with p10 and p90.
//!
//! Then `berth run --rm busybox true` with `--network none` and with
//! `--network bridge` (a release build, in the same namespaces).

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use network::firewall::{self, Network, PortMapping, Protocol, Ruleset};
use network::link::{Netlink, mac_for};
use network::netns::NetNs;
use serde_json::{Value, json};

const BRIDGE: &str = "br-bench";
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The first rows, the lab's code; the rest run `ip`.
const LAB_ROWS: usize = 2;

/// Runs a shell command line, failing with its output.
fn sh(line: &str) -> Result<()> {
    let out = Command::new("sh").args(["-c", line]).output()?;
    if !out.status.success() {
        bail!("{line}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `ip [ARGS] -batch -` with `lines` on its input.
fn ip_batch(args: &[&str], lines: &str) -> Result<()> {
    use std::io::Write;
    let mut c = Command::new("ip")
        .args(args)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    c.stdin.take().unwrap().write_all(lines.as_bytes())?;
    let out = c.wait_with_output()?;
    if !out.status.success() {
        bail!("ip -batch: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The firewall of the bench network with one published port to `ip`.
fn rules(ip: Ipv4Addr) -> Ruleset {
    Ruleset {
        networks: vec![Network {
            name: "bench".into(),
            bridge: BRIDGE.into(),
            subnet: "10.77.0.0/16".into(),
            internal: false,
        }],
        ports: vec![PortMapping {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: 8080,
            container_ip: ip,
            container_port: 80,
            bridge: BRIDGE.into(),
            container: "bench".into(),
        }],
    }
}

/// One way to build a container's network: set up (timed) and tear down.
struct Row {
    label: &'static str,
    samples: Vec<f64>,
    rules: Vec<f64>,
}

fn median_p10_p90(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

/// Builds and removes one container's network the way `row` says; returns
/// the milliseconds the links took, and then the firewall rules.
fn once(row: usize, round: usize, dir: &Path) -> Result<(f64, f64)> {
    let ip = Ipv4Addr::new(10, 77, (round / 250) as u8 + 1, (round % 250) as u8 + 2);
    let name = format!("b{row}-{round}");
    let script = firewall::render(&rules(ip));
    let started = Instant::now();
    match row {
        0 => {
            let host = Netlink::open()?;
            let bridge = host.index(BRIDGE)?;
            let (ns, inside) = NetNs::create_with_netlink(dir.join(&name))?;
            let mac = Some(mac_for(ip));
            host.veth_on_bridge(&name, "eth0", ns.fd()?.as_fd(), mac, bridge)?;
            inside.configure("eth0", ip, 16, Some(GATEWAY))?;
        }
        1 => {
            let host = Netlink::open()?;
            let ns = NetNs::create(dir.join(&name))?;
            host.veth(&name, "eth0", ns.fd()?.as_fd(), Some(mac_for(ip)))?;
            host.set_master(&name, BRIDGE)?;
            host.set_up(&name, true)?;
            ns.run(|| {
                let nl = Netlink::open()?;
                nl.set_up("lo", true)?;
                nl.add_address("eth0", ip, 16)?;
                nl.set_up("eth0", true)?;
                nl.add_default_route(GATEWAY)
            })?;
        }
        2 => {
            sh(&format!(
                "ip netns add {name} && ip link add {name} type veth peer name eth0 netns {name} && ip link set {name} master {BRIDGE} up && ip -n {name} link set lo up && ip -n {name} addr add {ip}/16 dev eth0 && ip -n {name} link set eth0 up && ip -n {name} route add default via {GATEWAY}"
            ))?;
        }
        3 => {
            sh(&format!(
                "ip netns add {name} && ip link add {name} type veth peer name p{name} && ip link set p{name} netns {name} && ip -n {name} link set p{name} name eth0 && ip link set {name} master {BRIDGE} up && ip -n {name} link set lo up && ip -n {name} addr add {ip}/16 dev eth0 && ip -n {name} link set eth0 up && ip -n {name} route add default via {GATEWAY}"
            ))?;
        }
        _ => {
            ip_batch(
                &[],
                &format!(
                    "netns add {name}\nlink add {name} type veth peer name eth0 netns {name}\nlink set {name} master {BRIDGE} up\n"
                ),
            )?;
            ip_batch(
                &["-n", &name],
                &format!(
                    "link set lo up\naddr add {ip}/16 dev eth0\nlink set eth0 up\nroute add default via {GATEWAY}\n"
                ),
            )?;
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    // The rules: the lab's `apply` (which validates, renders and runs
    // `nft -f`) for the lab's rows, the script given to `nft -f` for the rest.
    let lab = row < LAB_ROWS;
    let started = Instant::now();
    if lab {
        firewall::apply(&rules(ip))?;
    } else {
        firewall::load(&script)?;
    }
    let rules_ms = started.elapsed().as_secs_f64() * 1e3;
    // Tear down, untimed.
    Netlink::open()?.delete(&name)?;
    if lab {
        network::netns::remove(&dir.join(&name))?;
    } else {
        sh(&format!("ip netns del {name}"))?;
    }
    Ok((ms, rules_ms))
}

/// The network table: printed text and JSON.
pub struct Report {
    pub text: String,
    pub json: Value,
}

/// Measures in fresh namespaces on a thread of its own. `berth` is the
/// release binary.
pub fn measure(runs: usize, berth: &Path) -> Result<Report> {
    let berth = berth.to_path_buf();
    network::netns::on_a_new_host(move || -> Result<Report> {
        nix::mount::mount(
            Some("bench-run"),
            "/run",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )?;
        let scratch = tempfile::Builder::new()
            .prefix("berth-bench-net-")
            .tempdir_in("/var/tmp")?;
        let host = Netlink::open()?;
        host.bridge(BRIDGE)?;
        host.add_address(BRIDGE, GATEWAY, 16)?;
        host.set_up(BRIDGE, true)?;

        let mut rows = vec![
            Row {
                label: "lab netlink (rtnetlink)",
                samples: vec![],
                rules: vec![],
            },
            Row {
                label: "lab netlink, a request per step",
                samples: vec![],
                rules: vec![],
            },
            Row {
                label: "ip, peer made in the namespace",
                samples: vec![],
                rules: vec![],
            },
            Row {
                label: "ip, peer made on the host and moved",
                samples: vec![],
                rules: vec![],
            },
            Row {
                label: "ip -batch (two runs)",
                samples: vec![],
                rules: vec![],
            },
        ];
        eprintln!("==> timing one container's network set-up, {runs} rounds");
        for (i, _) in rows.iter().enumerate() {
            once(i, 0, scratch.path()).with_context(|| format!("warm-up of row {i}"))?;
        }
        for round in 1..=runs {
            for (i, row) in rows.iter_mut().enumerate() {
                let (links, rules) = once(i, round, scratch.path())?;
                row.samples.push(links);
                row.rules.push(rules);
            }
        }
        firewall::remove_all()?;

        // berth run --rm, without and with a network.
        let root = scratch.path().join("root");
        let runroot = scratch.path().join("run");
        let run = |network: &str| -> Result<f64> {
            let started = Instant::now();
            let status = Command::new(&berth)
                .arg("--root")
                .arg(&root)
                .arg("--runroot")
                .arg(&runroot)
                .args(["run", "--rm", "--network", network, "busybox", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("berth run --rm --network {network} busybox true failed");
            }
            Ok(started.elapsed().as_secs_f64() * 1e3)
        };
        let mut runs_none = Vec::new();
        let mut runs_bridge = Vec::new();
        run("none")?;
        run("bridge")?;
        let berth_runs = (runs / 2).max(10);
        eprintln!("==> timing berth run --rm with and without a network, {berth_runs} rounds");
        for _ in 0..berth_runs {
            runs_none.push(run("none")?);
            runs_bridge.push(run("bridge")?);
        }
        firewall::remove_all()?;

        let base = median_p10_p90(&rows[0].samples).0;
        let mut text = String::from(
            "\nOne container's network: namespace, veth, bridge port, address, route, links up\n",
        );
        text.push_str(&format!(
            "  {:<45} {:>9} {:>9} {:>9} {:>8}\n",
            "how", "median", "p10", "p90", "ratio"
        ));
        let mut json_rows = Vec::new();
        for r in &rows {
            let (m, p10, p90) = median_p10_p90(&r.samples);
            text.push_str(&format!(
                "  {:<45} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.1}x\n",
                r.label,
                m,
                p10,
                p90,
                m / base
            ));
            json_rows.push(json!({"label": r.label, "median_ms": m, "p10_ms": p10, "p90_ms": p90, "samples_ms": r.samples, "rules_ms": r.rules}));
        }
        let all_lab: Vec<f64> = rows[..LAB_ROWS]
            .iter()
            .flat_map(|r| r.rules.clone())
            .collect();
        let (lab_rules, l10, l90) = median_p10_p90(&all_lab);
        let all_nft: Vec<f64> = rows[LAB_ROWS..]
            .iter()
            .flat_map(|r| r.rules.clone())
            .collect();
        let (nft_rules, n10, n90) = median_p10_p90(&all_nft);
        text.push_str(&format!(
            "then the firewall table with one published port, one nft -f transaction:\n  {:<45} {lab_rules:>7.2}ms {l10:>7.2}ms {l90:>7.2}ms\n  {:<45} {nft_rules:>7.2}ms {n10:>7.2}ms {n90:>7.2}ms\n",
            "lab firewall::apply (validate, render, nft -f)", "nft -f with the same script"
        ));
        let (none_m, none_10, none_90) = median_p10_p90(&runs_none);
        let (br_m, br_10, br_90) = median_p10_p90(&runs_bridge);
        text.push_str(&format!(
            "\nberth run --rm busybox true ({berth_runs} rounds):\n  --network none     {none_m:>7.2}ms (p10 {none_10:.2}, p90 {none_90:.2})\n  --network bridge   {br_m:>7.2}ms (p10 {br_10:.2}, p90 {br_90:.2}), {:.2}x\n",
            br_m / none_m
        ));
        Ok(Report {
            text,
            json: json!({
                "setup": json_rows,
                "berth_run": {"none_ms": runs_none, "bridge_ms": runs_bridge},
            }),
        })
    })?
}

/// Where the network table's samples go.
pub fn json_path() -> PathBuf {
    crate::setup::target_bin("bench", "network.json")
}
