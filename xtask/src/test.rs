//! `cargo xtask test`: everything CI checks, in the order a failure is
//! cheapest to find — formatting, lints, the step manifests, every test,
//! the book — and then a check that the tests left the machine as they
//! found it.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::setup::{self, cargo};

/// What the machine holds that a test could leave behind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Machine {
    mounts: BTreeSet<String>,
    netns: BTreeSet<String>,
    links: BTreeSet<String>,
    processes: BTreeSet<String>,
    cgroups: BTreeSet<String>,
    berth_state: bool,
    /// `nft list tables`: the engine's `ip berth` must not stay behind.
    nft_tables: BTreeSet<String>,
    /// Tests run networks in namespaces of their own; the host's own
    /// setting must not change.
    ip_forward: String,
}

fn snapshot() -> Machine {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect();
    let names = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect()
    };
    let mut processes = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let comm = comm.trim();
        if ["berth", "lab01-demo", "probe", "busybox", "httpd"].contains(&comm) {
            processes.insert(format!("{} {comm}", entry.file_name().to_string_lossy()));
        }
    }
    // The engine's cgroups: `berth` under the v2 root or any v1 hierarchy.
    let mut cgroups = BTreeSet::new();
    let root = std::path::Path::new("/sys/fs/cgroup");
    let hierarchies = std::iter::once(root.to_path_buf()).chain(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    for h in hierarchies {
        let parent = h.join("berth");
        if parent.is_dir() {
            cgroups.insert(parent.display().to_string());
        }
    }
    Machine {
        cgroups,
        mounts,
        netns: names("/run/netns"),
        links: names("/sys/class/net"),
        processes,
        berth_state: std::path::Path::new("/run/berth/locks").exists(),
        nft_tables: std::process::Command::new("nft")
            .args(["list", "tables"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default(),
    }
}

/// Lists what `after` has that `before` had not.
fn leaks(before: &Machine, after: &Machine) -> Vec<String> {
    let mut out = Vec::new();
    let new = |what: &str, a: &BTreeSet<String>, b: &BTreeSet<String>, out: &mut Vec<String>| {
        for item in b.difference(a) {
            out.push(format!("{what}: {item}"));
        }
    };
    new("mount", &before.mounts, &after.mounts, &mut out);
    new("network namespace", &before.netns, &after.netns, &mut out);
    new("network link", &before.links, &after.links, &mut out);
    new("process", &before.processes, &after.processes, &mut out);
    new("cgroup", &before.cgroups, &after.cgroups, &mut out);
    new("nftables", &before.nft_tables, &after.nft_tables, &mut out);
    if before.ip_forward != after.ip_forward {
        out.push(format!(
            "sysctl: net.ipv4.ip_forward changed from {} to {} (network tests must run in a namespace of their own)",
            before.ip_forward.trim(),
            after.ip_forward.trim()
        ));
    }
    if after.berth_state && !before.berth_state {
        out.push("state: /run/berth was created (tests must use a temporary root)".into());
    }
    out
}

/// Prints a stage's heading with the disk space left where the build goes:
/// a CI machine's disk is finite, and a log that shows it running low says
/// why a later stage failed.
fn stage(name: &str) {
    let free = nix::sys::statvfs::statvfs(&setup::workspace())
        .map(|s| {
            format!(
                " ({:.1} GB free)",
                s.blocks_available() as f64 * s.fragment_size() as f64 / 1e9
            )
        })
        .unwrap_or_default();
    eprintln!("\n\x1b[1m==> {name}\x1b[0m{free}");
}

pub fn run(install: bool) -> Result<()> {
    let started = Instant::now();
    if install {
        setup::install(&[])?;
    }
    if !setup::is_root() {
        eprintln!(
            "note: not root: kernel tests will say they did not run (under CI=true that fails them); run `sudo -E cargo xtask test` for everything"
        );
    }

    stage("format (cargo fmt --check)");
    setup::run(&mut cargo(&["fmt", "--all", "--check"]))?;

    stage("lints (cargo clippy -D warnings)");
    setup::run(&mut cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ]))?;

    stage("step manifests");
    let problems = crate::steps::check(&setup::workspace())?;
    if !problems.is_empty() {
        bail!("step manifests have problems:\n{}", problems.join("\n"));
    }
    for lab in crate::steps::load_all(&setup::workspace())? {
        let points: u32 = lab.steps.iter().map(|s| s.points).sum();
        let root = lab.steps.iter().filter(|s| s.root).count();
        eprintln!(
            "lab {}: {} steps, {points} points, {root} need root",
            lab.lab,
            lab.steps.len()
        );
    }
    eprintln!("every step names real tests, hints and book sections");

    stage("the probe (a static binary the tests run inside containers)");
    let probe = build_probe()?;

    let before = snapshot();
    stage("tests (cargo test --workspace)");
    setup::run(cargo(&["test", "--workspace", "--no-fail-fast"]).env("BERTH_PROBE", &probe))?;

    stage("kernel tests on cgroup v2 (qemu)");
    crate::vmtest::run(
        None,
        std::time::Duration::from_secs(crate::vmtest::DEFAULT_TIMEOUT),
        false,
    )?;

    if setup::is_root() {
        stage("the grader: the reference scores every point, the starter none");
        let reference = crate::grade::grade(None, None, std::time::Duration::from_secs(300), None)?;
        let (score, max) = totals(&reference);
        eprintln!("reference: {score:.2} / {max:.2}");
        if score < max {
            bail!(
                "the reference solution lost points:\n{}",
                crate::grade::table(&reference)
            );
        }
        // --vm: the same step in the QEMU machine, as a grader without
        // privileges runs it.
        let in_vm = crate::grade::grade(
            None,
            Some("01.2"),
            std::time::Duration::from_secs(300),
            Some(crate::grade::Vm::default()),
        )?;
        let (score, max) = totals(&in_vm);
        eprintln!("reference step 01.2 in the QEMU machine (--vm): {score:.2} / {max:.2}");
        if score < max || in_vm.is_empty() {
            bail!(
                "grading in the QEMU machine lost points:\n{}",
                crate::grade::table(&in_vm)
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-starter-")
            .tempdir()?;
        crate::student::export(&setup::workspace(), dir.path())?;
        let starter = crate::grade::grade(
            Some(dir.path()),
            None,
            std::time::Duration::from_secs(300),
            None,
        )?;
        let (score, max) = totals(&starter);
        let silent: Vec<&str> = starter
            .iter()
            .filter(|r| !r.output.contains("not yet implemented: step"))
            .map(|r| r.test.as_str())
            .collect();
        eprintln!("starter: {score:.2} / {max:.2}");
        if score > 0.0 || !silent.is_empty() {
            // The table first and the tests that went wrong last, with the
            // end of their output: a CI log keeps the end.
            let mut why = String::new();
            for r in starter
                .iter()
                .filter(|r| !r.output.contains("not yet implemented: step"))
            {
                let tail: String = r
                    .output
                    .chars()
                    .rev()
                    .take(1500)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                why.push_str(&format!("\n--- {} ({:?}):\n{tail}\n", r.test, r.outcome));
            }
            bail!(
                "{}\nthe starter must fail every test with its step's message; these did not: {silent:?}{why}",
                crate::grade::table(&starter)
            );
        }
    } else {
        eprintln!("(grader check skipped: it needs root to run the kernel tests)");
    }

    stage("the book");
    crate::book::run()?;

    stage("nothing left behind");
    // Monitors of removed containers exit within moments.
    let mut found = leaks(&before, &snapshot());
    for _ in 0..50 {
        if found.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        found = leaks(&before, &snapshot());
    }
    if !found.is_empty() {
        bail!("the tests left these behind:\n{}", found.join("\n"));
    }
    eprintln!("no new mounts, network namespaces, links or processes");
    stage("done");
    eprintln!("\nall checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Builds the probe as a static executable, into its own target directory
/// (`target/probe`, where `testkit::probe` looks for it too), and returns
/// its path.
pub fn build_probe() -> Result<std::path::PathBuf> {
    let probe_target = setup::workspace().join("target/probe");
    setup::run(
        cargo(&[
            "build",
            "--quiet",
            "--release",
            "-p",
            "berth-probe",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &probe_target),
    )?;
    Ok(probe_target.join("x86_64-unknown-linux-gnu/release/probe"))
}

fn totals(results: &[crate::grade::TestResult]) -> (f64, f64) {
    (
        results.iter().map(|r| r.score).sum(),
        results.iter().map(|r| r.max_score).sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_are_what_is_new() {
        let before = Machine {
            mounts: ["/".to_string()].into(),
            ..Default::default()
        };
        let after = Machine {
            mounts: ["/".to_string(), "/tmp/x/rootfs".to_string()].into(),
            processes: ["42 berth".to_string()].into(),
            nft_tables: ["table ip berth".to_string()].into(),
            ip_forward: "1\n".into(),
            ..Default::default()
        };
        assert_eq!(
            leaks(&before, &after),
            vec![
                "mount: /tmp/x/rootfs",
                "process: 42 berth",
                "nftables: table ip berth",
                "sysctl: net.ipv4.ip_forward changed from  to 1 (network tests must run in a namespace of their own)"
            ]
        );
        // What went away is no leak; a setting that changed is, either way.
        assert_eq!(leaks(&after, &before).len(), 1);
    }
}
