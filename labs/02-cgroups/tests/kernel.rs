//! Lab 02's steps, each checked against the real kernel (as root), on
//! whichever cgroup version the machine runs. `cargo xtask vmtest` runs
//! this same file in a virtual machine with the other version.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cgroups::{CgroupManager, Controller, Mode, Resources};
use common::{config, hierarchy, rootfs, start, start_limited};
use namespaces::Exit;
use testkit::root_test;

// --- 02.1 the machine's cgroup setup ----------------------------------------

#[test]
fn step_02_1_detects_the_machines_mode() {
    let h = hierarchy();
    let magic = cgroups::mode::fs_magic(Path::new("/sys/fs/cgroup")).unwrap();
    match h.mode {
        Mode::Unified => assert_eq!(magic, cgroups::mode::CGROUP2_SUPER_MAGIC),
        Mode::Hybrid | Mode::Legacy => assert_eq!(magic, cgroups::mode::TMPFS_MAGIC),
    }
    // /proc/self/cgroup agrees: a v2-only machine has just the `0::` line.
    let lines = cgroups::mode::membership(Path::new("/proc"), "self").unwrap();
    let only_v2 = lines.iter().all(|(controllers, _)| controllers.is_empty());
    assert_eq!(only_v2, h.mode == Mode::Unified, "{lines:?}");
    for c in [
        Controller::Memory,
        Controller::Cpu,
        Controller::Pids,
        Controller::Cpuset,
    ] {
        h.check(c).unwrap_or_else(|e| panic!("{c}: {e}"));
    }
    eprintln!("cgroup mode: {}", h.mode);
}

#[test]
fn step_02_7_the_container_sees_its_cgroup_as_the_root() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    let limits = Resources {
        memory: Some(64 << 20),
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        cpuset_cpus: Some("0".into()),
        pids: Some(20),
        ..Resources::default()
    };
    let c = start_limited(
        &h,
        "view",
        &limits,
        config(&root, &h, &["/probe", "cgroup"]),
    );
    let out = c.finish();
    assert_eq!(out.exit, Exit::Code(0), "{}", out.stderr);
    let mut report = testkit::probe::parse(out.stdout.as_bytes());
    // With a cgroup namespace every line of /proc/self/cgroup ends in `:/`.
    let lines = report["cgroup"]["lines"].as_array().unwrap().clone();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(line.as_str().unwrap().ends_with(":/"), "{lines:?}");
    }
    // The weight is the one number that differs between versions.
    let weight = report["cgroup"]["limits"]["cpu_weight"].take();
    let expected = if h.uses_v2() { "20" } else { "512" };
    assert_eq!(weight, expected);
    insta::assert_json_snapshot!(report["cgroup"]["limits"], @r#"
    {
      "cpu_max": "50000 100000",
      "cpu_weight": null,
      "cpuset_cpus": "0",
      "memory_max": "67108864",
      "pids_max": "20"
    }
    "#);
}

// --- 02.2 memory ---------------------------------------------------------------

#[test]
fn step_02_2_a_memory_hog_is_oom_killed() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    let limits = Resources {
        memory: Some(16 << 20),
        memory_swap: Some(16 << 20), // no swap: the kernel must kill
        ..Resources::default()
    };
    // dd allocates a 64 MiB buffer and fills it from /dev/zero, touching
    // every page; the shell (PID 1) survives and reports dd's fate.
    let script = "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd exited $?";
    let c = start(&h, "oom", &limits, config(&root, &h, &["sh", "-c", script]));
    let out = c.finish();
    assert_eq!(out.exit, Exit::Code(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "dd exited 137", "SIGKILL is 128 + 9");
    assert!(out.stats.oom_kills >= 1, "{:?}", out.stats);
    assert_eq!(out.stats.memory_limit, Some(16 << 20));
    // The host is unharmed: this process and its memory are untouched.
    assert!(
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .contains("VmRSS")
    );
}

#[test]
fn step_02_2_a_limit_is_not_a_reservation() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    // A limit far above what the container uses costs the host nothing:
    // usage stays what the processes touch.
    let limits = Resources {
        memory: Some(1 << 40),
        ..Resources::default()
    };
    let c = start(&h, "noreserve", &limits, config(&root, &h, &["sleep", "1"]));
    let stats = c.cgroup().stats().unwrap();
    let out = c.finish();
    assert_eq!(out.exit, Exit::Code(0));
    assert!(stats.memory_usage < 32 << 20, "{stats:?}");
}

// --- 02.3 CPU --------------------------------------------------------------------

#[test]
fn step_02_3_a_cpu_quota_is_enforced() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    let (quota, period) = cgroups::resources::parse_cpus("0.2", 1).unwrap();
    let limits = Resources {
        cpu_quota: Some(quota),
        cpu_period: Some(period),
        ..Resources::default()
    };
    let c = start(
        &h,
        "quota",
        &limits,
        config(&root, &h, &["sh", "-c", "while :; do :; done"]),
    );
    let before = c.cgroup().stats().unwrap();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let after = c.cgroup().stats().unwrap();
    let elapsed = t0.elapsed().as_nanos() as u64;
    drop(c);
    let percent = cgroups::stats::cpu_percent(&before, &after, elapsed);
    // 20% of one CPU, with room for the period boundaries at both ends.
    assert!(percent < 30.0, "used {percent:.1}% of a CPU: {after:?}");
    assert!(percent > 5.0, "the loop hardly ran: {percent:.1}%");
    assert!(
        after.cpu_throttled_periods > before.cpu_throttled_periods,
        "{after:?}"
    );
}

#[test]
fn step_02_3_shares_divide_a_contended_cpu() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    // Both containers on CPU 0, both busy: the CPU is contended, and the
    // scheduler divides it by weight, 1024 against 512.
    let busy = || config(&root, &h, &["sh", "-c", "while :; do :; done"]);
    let limits = |shares| Resources {
        cpu_shares: Some(shares),
        cpuset_cpus: Some("0".into()),
        ..Resources::default()
    };
    let heavy = start(&h, "heavy", &limits(1024), busy());
    let light = start(&h, "light", &limits(512), busy());
    std::thread::sleep(Duration::from_millis(300));
    let (h0, l0) = (
        heavy.cgroup().stats().unwrap(),
        light.cgroup().stats().unwrap(),
    );
    std::thread::sleep(Duration::from_millis(2000));
    let (h1, l1) = (
        heavy.cgroup().stats().unwrap(),
        light.cgroup().stats().unwrap(),
    );
    drop((heavy, light));
    let used_heavy = (h1.cpu_usage_ns - h0.cpu_usage_ns) as f64;
    let used_light = (l1.cpu_usage_ns - l0.cpu_usage_ns) as f64;
    let ratio = used_heavy / used_light;
    eprintln!("cpu.shares 1024 against 512 on one CPU: {ratio:.2} to 1");
    assert!(
        (1.5..2.7).contains(&ratio),
        "ratio {ratio:.2} ({used_heavy} ns against {used_light} ns)"
    );
}

#[test]
fn step_02_3_cpuset_pins_the_container() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    let online = cgroups::resources::online_cpus(Path::new("/sys"));
    let last = *cgroups::resources::parse_cpu_list(&online)
        .unwrap()
        .last()
        .unwrap();
    let limits = Resources {
        cpuset_cpus: Some(last.to_string()),
        ..Resources::default()
    };
    let cmd = ["sh", "-c", "grep Cpus_allowed_list /proc/self/status"];
    let out = start(&h, "cpuset", &limits, config(&root, &h, &cmd)).finish();
    assert_eq!(out.stdout.trim(), format!("Cpus_allowed_list:\t{last}"));
}

// --- 02.4 pids ---------------------------------------------------------------------

#[test]
fn step_02_4_a_fork_bomb_stops_at_the_limit() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    let limits = Resources {
        pids: Some(20),
        ..Resources::default()
    };
    // The classic bomb: every call starts two more, in the background.
    let script = "bomb() { bomb | bomb & }; bomb; sleep 3";
    let c = start(
        &h,
        "forkbomb",
        &limits,
        config(&root, &h, &["sh", "-c", script]),
    );
    let mut peak = 0;
    let t0 = Instant::now();
    let mut stats = c.cgroup().stats().unwrap();
    while t0.elapsed() < Duration::from_secs(1) {
        stats = c.cgroup().stats().unwrap();
        peak = peak.max(stats.pids_current);
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(c);
    assert!(peak <= 20, "{peak} processes");
    assert!(stats.pids_refused > 0, "no fork was refused: {stats:?}");
    assert_eq!(stats.pids_limit, Some(20));
}

// --- 02.5 devices ------------------------------------------------------------------

#[test]
fn step_02_5_devices_outside_the_allow_list_are_refused() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    // Creating a node is allowed (`m`); opening the disk behind it is not.
    // Loop device 0 (block 7:0) exists on most machines; what matters is
    // the reason the open fails.
    let script = "mknod /tmp/disk b 7 0 && head -c 1 /tmp/disk; \
                  head -c 1 /dev/null && echo null ok";
    let c = start(
        &h,
        "devices",
        &Resources::default(),
        config(&root, &h, &["sh", "-c", script]),
    );
    let out = c.finish();
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("null ok"), "{}", out.stdout);

    // With a rule for 7:0, the same open is no longer refused by the cgroup.
    let allowed = Resources {
        devices: vec![cgroups::devices::DeviceRule {
            kind: cgroups::devices::DeviceKind::Block,
            ..cgroups::devices::DeviceRule::allow_char(Some(7), Some(0), "r")
        }],
        ..Resources::default()
    };
    let c = start(
        &h,
        "devices-ok",
        &allowed,
        config(&root, &h, &["sh", "-c", script]),
    );
    let out = c.finish();
    assert!(
        !out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
}

// --- 02.6 freezer ------------------------------------------------------------------

#[test]
fn step_02_6_a_paused_container_makes_no_progress() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    let c = start(
        &h,
        "pause",
        &Resources::default(),
        config(&root, &h, &["sh", "-c", "while :; do :; done"]),
    );
    let cg = c.cgroup();
    std::thread::sleep(Duration::from_millis(100));
    cg.freeze().unwrap();
    let frozen = cg.stats().unwrap();
    assert!(frozen.frozen);
    std::thread::sleep(Duration::from_millis(300));
    let still = cg.stats().unwrap();
    assert_eq!(
        frozen.cpu_usage_ns, still.cpu_usage_ns,
        "a frozen cgroup used CPU"
    );
    cg.thaw().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let resumed = cg.stats().unwrap();
    assert!(!resumed.frozen);
    assert!(
        resumed.cpu_usage_ns > still.cpu_usage_ns,
        "it did not resume"
    );
}

// --- 02.7 the manager and a whole container -------------------------------------

#[test]
fn step_02_7_every_process_of_the_container_is_in_the_cgroup() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    let c = start_limited(
        &h,
        "members",
        &Resources::default(),
        config(&root, &h, &["sh", "-c", "sleep 5 & sleep 5; echo done"]),
    );
    std::thread::sleep(Duration::from_millis(200));
    let pids = c.cgroup().pids().unwrap();
    assert_eq!(pids.len(), 3, "sh and two sleeps: {pids:?}");
    let first = c.limited.as_ref().unwrap().running.pid.as_raw();
    assert!(pids.contains(&first));
    let paths = c.cgroup().paths();
    c.cgroup().kill_all().unwrap();
    let out = c.finish();
    assert_eq!(out.exit, Exit::Signal(9));
    for p in paths {
        assert!(!p.exists(), "{} is left behind", p.display());
    }
}

#[test]
fn step_02_7_a_failed_start_leaves_no_cgroup() {
    root_test!();
    let h = hierarchy();
    let root = rootfs();
    let name = common::unique_name("nostart");
    let cfg = config(&root, &h, &["/no/such/command"]);
    let stdio = namespaces::Stdio::default();
    let err =
        cgroups::container::spawn_limited(&h, "berth", &name, &Resources::default(), cfg, stdio)
            .err()
            .expect("must fail");
    assert!(err.to_string().contains("/no/such/command"), "{err}");
    let m = cgroups::Manager::new(&h, "berth", &name).unwrap();
    for p in m.paths() {
        assert!(!p.exists(), "{} is left behind", p.display());
    }
}
