//! Lab 01's instructor tests: edge cases of the students' code that the
//! tests they have do not reach. This file is not in the starter
//! repository; the grader copies it in and scores it (see the
//! `instructor_tests` of steps.toml). None of these needs root.

use std::collections::BTreeMap;
use std::path::Path;

use namespaces::capabilities;
use namespaces::idmap::{IdMap, format_map, parse_proc_map};
use namespaces::namespace::{Namespace, group_namespaces, parse_ns_link};
use namespaces::rootfs::{parse_options, secure_join};
use namespaces::user::{UserSpec, resolve_user};
use nix::mount::MsFlags;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// --- 01.1 namespace ids ----------------------------------------------------------

#[test]
fn ns_links_need_the_whole_bracketed_number() {
    // The whole range of an inode number, and nothing beyond it.
    assert_eq!(
        parse_ns_link("mnt:[18446744073709551615]"),
        Some(("mnt", u64::MAX))
    );
    assert_eq!(parse_ns_link("mnt:[18446744073709551616]"), None);
    for bad in [
        "net:[]",
        "net:[-1]",
        "net:[12]x",
        "net:[12",
        "net:12]",
        "net:[0x1f]",
        "net[12]",
        "",
    ] {
        assert_eq!(parse_ns_link(bad), None, "{bad:?}");
    }
}

#[test]
fn lsns_groups_whatever_order_the_processes_come_in() {
    let ids = |pairs: &[(Namespace, u64)]| -> BTreeMap<Namespace, u64> {
        pairs.iter().copied().collect()
    };
    // /proc lists processes in no particular order: here the highest pid
    // comes first, and two processes share only their network namespace.
    let processes = vec![
        (
            300,
            "sleep".to_string(),
            ids(&[(Namespace::Uts, 7), (Namespace::Network, 50)]),
        ),
        (
            12,
            "sh".to_string(),
            ids(&[(Namespace::Uts, 9), (Namespace::Network, 50)]),
        ),
        (40, "nginx".to_string(), ids(&[(Namespace::Uts, 7)])),
    ];
    let listing = group_namespaces(&processes);
    let rows: Vec<(Namespace, u64, usize, i32, &str)> = listing
        .iter()
        .map(|u| (u.kind, u.inode, u.nprocs, u.pid, u.command.as_str()))
        .collect();
    let mut want = vec![
        (Namespace::Uts, 7, 2, 40, "nginx"),
        (Namespace::Uts, 9, 1, 12, "sh"),
        (Namespace::Network, 50, 2, 12, "sh"),
    ];
    want.sort_by_key(|row| (row.0, row.1));
    assert_eq!(rows, want);
    assert!(group_namespaces(&[]).is_empty());
}

// --- 01.3 the mount namespace ----------------------------------------------------

#[test]
fn later_mount_options_override_earlier_ones() {
    let o = parse_options(&strings(&["ro", "rw"]));
    assert!(!o.flags.contains(MsFlags::MS_RDONLY), "{o:?}");
    let o = parse_options(&strings(&["rw", "ro"]));
    assert!(o.flags.contains(MsFlags::MS_RDONLY), "{o:?}");
    let o = parse_options(&strings(&["nosuid", "nodev", "suid", "dev", "noexec"]));
    assert_eq!(o.flags, MsFlags::MS_NOEXEC);
    // `bind` alone is not recursive; propagation never lands in the flags.
    let o = parse_options(&strings(&["bind", "rslave"]));
    assert_eq!(o.flags, MsFlags::MS_BIND);
    assert_eq!(o.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // What mount(2) does not know goes to the filesystem, in order.
    let o = parse_options(&strings(&["uid=0", "ro", "size=1m", "mode=700"]));
    assert_eq!(o.data, "uid=0,size=1m,mode=700");
    assert_eq!(parse_options(&[]).data, "");
}

#[test]
fn secure_join_follows_relative_links_and_chains_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("a/deep")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    // a/b -> ../c -> /data: a relative link, then an absolute one.
    std::os::unix::fs::symlink("../c", root.join("a/b")).unwrap();
    std::os::unix::fs::symlink("/data", root.join("c")).unwrap();
    // A link to the root itself, and one that climbs far too high.
    std::os::unix::fs::symlink("/", root.join("top")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc", root.join("a/deep/esc")).unwrap();

    let join = |p: &str| secure_join(root, Path::new(p)).unwrap();
    assert_eq!(join("/a/b/file"), root.join("data/file"));
    // `..` after a link climbs from where the link led (/data), as the
    // kernel does, not from where the link was (/a).
    assert_eq!(join("/a/./b/../b/x"), root.join("b/x"));
    assert_eq!(join("/top/top/a"), root.join("a"));
    assert_eq!(join("/a/deep/esc/passwd"), root.join("etc/passwd"));
    assert_eq!(join("/"), root.to_path_buf());
    // A path that does not exist (yet) is joined as it is.
    assert_eq!(join("/new/dir"), root.join("new/dir"));
    // A relative path is taken from the container's root too.
    assert_eq!(join("a/b"), root.join("data"));
    // Whatever the path, the result never leaves the root.
    for p in ["/..", "/../../..", "/a/deep/esc/../../..", "/top/.."] {
        assert!(join(p).starts_with(root), "{p}: {}", join(p).display());
    }
}

// --- 01.6 the user namespace -----------------------------------------------------

#[test]
fn id_maps_at_the_kernels_limits() {
    // The initial namespace maps every id but the last one onto itself.
    let all = IdMap::new(0, 0, u32::MAX);
    assert_eq!(format_map(&[all]).unwrap(), "0 0 4294967295\n");
    assert_eq!(
        parse_proc_map("         0          0 4294967295\n").unwrap(),
        vec![all]
    );
    // 340 lines are allowed, 341 are not.
    let lines = |n: u32| -> Vec<IdMap> { (0..n).map(|i| IdMap::new(i, 1000 + i, 1)).collect() };
    assert_eq!(format_map(&lines(340)).unwrap().lines().count(), 340);
    assert!(format_map(&lines(341)).is_err());
    // Overlaps are found between any two lines, not only neighbours, and
    // when one range lies inside another.
    let far_apart = [
        IdMap::new(0, 1000, 10),
        IdMap::new(100, 2000, 10),
        IdMap::new(5, 3000, 10),
    ];
    assert!(format_map(&far_apart).is_err());
    assert!(format_map(&[IdMap::new(0, 1000, 100), IdMap::new(200, 1010, 5)]).is_err());
    // Lines need not be sorted.
    assert_eq!(
        format_map(&[IdMap::new(10, 2000, 5), IdMap::new(0, 1000, 10)]).unwrap(),
        "10 2000 5\n0 1000 10\n"
    );
}

#[test]
fn proc_maps_before_and_after_writing() {
    // A namespace whose maps nobody has written shows empty files.
    assert_eq!(parse_proc_map("").unwrap(), vec![]);
    assert_eq!(
        parse_proc_map("0 1000 1\n\n").unwrap(),
        vec![IdMap::new(0, 1000, 1)]
    );
    for bad in ["0 1000\n", "0 1000 1 1\n", "0 x 1\n", "0 -1 1\n"] {
        assert!(parse_proc_map(bad).is_err(), "{bad:?}");
    }
}

// --- 01.7 users and capabilities -------------------------------------------------

#[test]
fn user_names_match_whole_entries_only() {
    let passwd = "\
# www:x:1:1:commented out:/nowhere:/bin/false
wwwdata:x:70:70:not www:/srv:/bin/sh
www:x:33:34:web:/var/www:/bin/false
";
    let group = "\
#www:x:5:www
wwwgroup:x:70:wwwdata
sites:x:80:wwwx,www
web:x:34:
";
    let resolve = |s: &str| resolve_user(&UserSpec::parse(s).unwrap(), passwd, group);
    let www = resolve("www").unwrap();
    assert_eq!((www.uid, www.gid, www.home.as_str()), (33, 34, "/var/www"));
    // Member lists match whole names: `wwwx` is not `www`, and a comment
    // is not a group.
    assert_eq!(www.additional_gids, vec![34, 80]);
    // A prefix of a name is not the name.
    let err = resolve("ww").unwrap_err().to_string();
    assert!(err.contains("unable to find user ww"), "{err}");
    // A group given by number needs no entry; given by name it must exist.
    assert_eq!(resolve("www:4000").unwrap().gid, 4000);
    assert_eq!(resolve("www:web").unwrap().gid, 34);
    // A member of its own primary group has that group once.
    let wwwdata = resolve("wwwdata").unwrap();
    assert_eq!(wwwdata.additional_gids, vec![70]);
    // No passwd at all: numbers work, names do not.
    let nobody = resolve_user(&UserSpec::parse("1234").unwrap(), "", "").unwrap();
    assert_eq!((nobody.uid, nobody.gid), (1234, 1234));
    assert_eq!(nobody.additional_gids, vec![1234]);
    assert!(resolve_user(&UserSpec::parse("www").unwrap(), "", "").is_err());
}

#[test]
fn capability_names_in_any_spelling() {
    use caps::Capability;
    assert_eq!(
        capabilities::parse("Cap_Net_Raw").unwrap(),
        Capability::CAP_NET_RAW
    );
    assert_eq!(
        capabilities::parse("sys_time").unwrap(),
        Capability::CAP_SYS_TIME
    );
    for bad in ["", "CAP_", "NET ADMIN", "CAP_CAP_NET_ADMIN"] {
        assert!(capabilities::parse(bad).is_err(), "{bad:?}");
    }
    // The same capability named twice, in two spellings, appears once;
    // the result is sorted.
    let set = capabilities::resolve(
        &strings(&["net_admin", "CAP_NET_ADMIN", "sys_time"]),
        &strings(&["all"]),
        false,
    )
    .unwrap();
    assert_eq!(set, strings(&["CAP_NET_ADMIN", "CAP_SYS_TIME"]));
    assert!(
        capabilities::resolve(&[], &strings(&["ALL"]), false)
            .unwrap()
            .is_empty()
    );
    // An unknown name is an error on either side.
    assert!(capabilities::resolve(&[], &strings(&["FLY"]), false).is_err());
}
