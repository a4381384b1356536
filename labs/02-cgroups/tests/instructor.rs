//! Lab 02's instructor tests: edge cases of the students' code that the
//! tests they have do not reach. This file is not in the starter
//! repository; the grader copies it in and scores it (see the
//! `instructor_tests` of steps.toml). None of these needs root.

use std::path::{Path, PathBuf};

use cgroups::devices::{DeviceKind, DeviceRule, allowed, parse_device};
use cgroups::mode::parse_mountinfo;
use cgroups::resources::{
    parse_bytes, parse_cpus, parse_memory, parse_memory_swap, parse_pids_limit, shares_to_weight,
};
use cgroups::{Controller, Mode};

// --- 02.1 finding the cgroup hierarchy -------------------------------------------

#[test]
fn mountinfo_lines_as_real_machines_write_them() {
    // Optional fields vary from none to several, a mount point may hold an
    // escaped space, `cpuset` is not `cpu`, a named hierarchy has no
    // controller, and controllers this lab does not use are ignored.
    let text = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/cpuset rw,nosuid shared:11 master:3 propagate_from:2 - cgroup cgroup rw,cpuset
32 30 0:28 / /sys/fs/cgroup/my\\040pids rw,nosuid - cgroup cgroup rw,pids
33 30 0:29 / /sys/fs/cgroup/net_cls,net_prio rw shared:12 - cgroup cgroup rw,net_cls,net_prio
34 30 0:30 / /sys/fs/cgroup/systemd rw shared:13 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory,clone_children

";
    let h = parse_mountinfo(text, Path::new("/sys/fs/cgroup"));
    assert_eq!(h.mode, Mode::Legacy);
    assert_eq!(h.v2, None);
    let mut want = std::collections::BTreeMap::new();
    want.insert(Controller::Cpuset, PathBuf::from("/sys/fs/cgroup/cpuset"));
    want.insert(Controller::Pids, PathBuf::from("/sys/fs/cgroup/my pids"));
    want.insert(Controller::Memory, PathBuf::from("/sys/fs/cgroup/memory"));
    assert_eq!(h.v1, want);

    // A file that only mentions cgroup2 in a path is not a cgroup2 mount.
    let decoy = "40 22 0:40 / /mnt/cgroup2 rw - ext4 /dev/sdb1 rw,cgroup2\n";
    let h = parse_mountinfo(decoy, Path::new("/sys/fs/cgroup"));
    assert_eq!((h.mode, h.v2, h.v1.len()), (Mode::Legacy, None, 0));
}

// --- 02.2 memory limits ----------------------------------------------------------

#[test]
fn sizes_in_every_unit_and_case() {
    for (text, bytes) in [
        ("0", 0),
        ("1b", 1),
        ("7B", 7),
        ("2k", 2 << 10),
        ("2KB", 2 << 10),
        ("0.5k", 512),
        ("3m", 3 << 20),
        ("1.5M", 3 << 19),
        ("4G", 4 << 30),
        ("4gB", 4 << 30),
        ("3t", 3 << 40),
        ("2TB", 2 << 40),
        ("16777215t", (16_777_215u64) << 40),
    ] {
        assert_eq!(parse_bytes("--memory", text).unwrap(), bytes, "{text}");
    }
    // No number, two units, an unknown unit, a number too large for 64
    // bits: each is refused, and never wraps around.
    for bad in [
        "",
        "k",
        "kb",
        "1kk",
        "1bb",
        "1p",
        "1e3",
        "1..5m",
        "16777216t",
    ] {
        let err = parse_bytes("--memory", bad).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("invalid --memory {bad:?}")),
            "{err}"
        );
    }
    // The flag's name is the one the caller gave.
    let err = parse_bytes("--memory-swap", "lots")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("invalid --memory-swap \"lots\""), "{err}");
}

#[test]
fn memory_limits_at_their_edges() {
    // 6m is the floor: one byte less is refused.
    assert_eq!(parse_memory("6m").unwrap(), 6 << 20);
    assert_eq!(parse_memory("6291456").unwrap(), 6 << 20);
    assert!(parse_memory("6291455").is_err());
    // memory-swap may equal memory (no swap at all).
    assert_eq!(parse_memory_swap("64m", Some(64 << 20)).unwrap(), 64 << 20);
    assert!(parse_memory_swap("67108863", Some(64 << 20)).is_err());
    assert!(parse_memory_swap("12q", Some(64 << 20)).is_err());
}

// --- 02.3 cpu weight and quota ---------------------------------------------------

#[test]
fn cpu_quotas_at_their_edges() {
    assert_eq!(parse_cpus("0.01", 1).unwrap(), (1_000, 100_000));
    assert_eq!(parse_cpus("4", 4).unwrap(), (400_000, 100_000));
    assert_eq!(parse_cpus("0.333", 1).unwrap(), (33_300, 100_000));
    assert_eq!(parse_cpus("1.25", 2).unwrap(), (125_000, 100_000));
    for bad in ["0", "0.009", "-1", "4.01", "", "1/2"] {
        assert!(parse_cpus(bad, 4).is_err(), "{bad:?}");
    }
    let err = parse_cpus("1.5", 1).unwrap_err().to_string();
    assert!(err.contains("the range is 0.01 to 1.00"), "{err}");
}

#[test]
fn weights_follow_the_linear_formula_over_the_whole_range() {
    // 1 + (shares - 2) * 9999 / 262142, in whole numbers.
    assert_eq!(shares_to_weight(3), 1);
    assert_eq!(shares_to_weight(100), 4);
    assert_eq!(shares_to_weight(2048), 79);
    assert_eq!(shares_to_weight(262_143), 9_999);
    let mut last = 0;
    for shares in (2..=262_144).step_by(97) {
        let w = shares_to_weight(shares);
        assert!((1..=10_000).contains(&w), "{shares} -> {w}");
        assert!(
            w >= last,
            "weights never go down: {shares} -> {w} after {last}"
        );
        last = w;
    }
}

// --- 02.4 the pids limit ---------------------------------------------------------

#[test]
fn pids_limits_at_their_edges() {
    assert_eq!(parse_pids_limit("1").unwrap(), Some(1));
    assert_eq!(parse_pids_limit("-100").unwrap(), None);
    assert_eq!(
        parse_pids_limit("9223372036854775807").unwrap(),
        Some(i64::MAX as u64)
    );
    for bad in ["", "1.5", "ten", "0x10", "--1"] {
        assert!(parse_pids_limit(bad).is_err(), "{bad:?}");
    }
}

// --- 02.5 devices ----------------------------------------------------------------

#[test]
fn device_flags_in_every_form() {
    let d = parse_device("/dev/sda:/dev/xvda").unwrap();
    assert_eq!(
        (d.host.as_path(), d.container.as_path(), d.access.as_str()),
        (Path::new("/dev/sda"), Path::new("/dev/xvda"), "rwm")
    );
    // Permissions come out in r, w, m order whatever order they came in.
    assert_eq!(parse_device("/dev/sda:mwr").unwrap().access, "rwm");
    assert_eq!(parse_device("/dev/sda:/dev/xvda:mr").unwrap().access, "rm");
    assert_eq!(parse_device("/dev/sda:/dev/xvda:m").unwrap().access, "m");
    // A relative container path, empty parts and empty permissions are refused.
    for bad in [
        "/dev/sda:xvda",
        "/dev/sda:xvda:r",
        "/dev/sda::r",
        "/dev/sda:/dev/xvda:",
        "",
    ] {
        let err = parse_device(bad).unwrap_err().to_string();
        assert!(err.starts_with("invalid --device"), "{bad:?}: {err}");
    }
}

#[test]
fn the_last_matching_rule_wins_in_both_directions() {
    let deny = |kind, major, minor, access: &str| DeviceRule {
        allow: false,
        kind,
        major,
        minor,
        access: access.into(),
    };
    let allow = |kind, major, minor, access: &str| DeviceRule {
        allow: true,
        ..deny(kind, major, minor, access)
    };
    // Nothing matches: denied.
    assert!(!allowed(&[], DeviceKind::Char, 1, 3, 'r'));
    // `a`, written without access letters as in cgroup v1's `devices.deny`,
    // matches every device and every access.
    let all = [allow(DeviceKind::All, None, None, "")];
    assert!(allowed(&all, DeviceKind::Block, 8, 0, 'w'));
    // A later deny overrides an earlier allow, and a later allow a deny.
    let rules = [
        allow(DeviceKind::Char, Some(1), None, "rwm"),
        deny(DeviceKind::Char, Some(1), Some(1), "rw"),
        allow(DeviceKind::Char, Some(1), Some(1), "r"),
    ];
    assert!(allowed(&rules, DeviceKind::Char, 1, 1, 'r'));
    assert!(!allowed(&rules, DeviceKind::Char, 1, 1, 'w'));
    assert!(allowed(&rules, DeviceKind::Char, 1, 1, 'm'));
    assert!(allowed(&rules, DeviceKind::Char, 1, 9, 'w'));
    // A rule matches only its kind, numbers and access letters.
    assert!(!allowed(&rules, DeviceKind::Block, 1, 9, 'w'));
    assert!(!allowed(&rules, DeviceKind::Char, 2, 9, 'r'));
    let only_minor = [allow(DeviceKind::Char, None, Some(5), "r")];
    assert!(allowed(&only_minor, DeviceKind::Char, 42, 5, 'r'));
    assert!(!allowed(&only_minor, DeviceKind::Char, 42, 6, 'r'));
    assert!(!allowed(&only_minor, DeviceKind::Char, 42, 5, 'w'));
}
