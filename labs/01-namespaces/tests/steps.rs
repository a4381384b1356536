//! Lab 01's steps, each checked against the real kernel (as root).
//!
//! Every test starts a container from a busybox root with the probe in it,
//! and checks what the probe saw. Without root the tests say why they did
//! not run; under CI=true that is a failure.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{config, mount_summary, pick, probe, rootfs, run};
use namespaces::{Exit, IdMap, Namespace, NsMode};
use testkit::root_test;

// --- 01.1 namespaces and their ids -----------------------------------------

#[test]
fn step_01_1_every_process_has_namespace_ids() {
    let me = std::process::id() as i32;
    let ids = namespaces::namespace::namespace_ids(Path::new("/proc"), me).unwrap();
    assert_eq!(ids.len(), 7, "{ids:?}");
    let all = namespaces::namespace::list_namespaces(Path::new("/proc")).unwrap();
    for ns in Namespace::ALL {
        assert!(
            all.iter().any(|u| u.kind == ns && u.inode == ids[&ns]),
            "{ns} not listed"
        );
    }
}

// --- 01.2 UTS and PID: hostname, PID 1 ---------------------------------------

#[test]
fn step_01_2_a_container_has_its_own_namespaces() {
    root_test!();
    let root = rootfs();
    let report = probe(&config(&root, &["/probe", "namespaces"]));
    let host = namespaces::namespace::namespace_ids(Path::new("/proc"), std::process::id() as i32)
        .unwrap();
    for ns in [
        Namespace::Uts,
        Namespace::Pid,
        Namespace::Mount,
        Namespace::Ipc,
        Namespace::Network,
        Namespace::Cgroup,
    ] {
        let inside = report["namespaces"][ns.proc_name()].as_u64().unwrap();
        assert_ne!(inside, host[&ns], "{ns} is shared with the host");
    }
    // No user namespace was asked for: that one is shared.
    assert_eq!(
        report["namespaces"]["user"].as_u64().unwrap(),
        host[&Namespace::User]
    );
}

#[test]
fn step_01_2_hostname_and_pid_1() {
    root_test!();
    let root = rootfs();
    let mut c = config(
        &root,
        &["/probe", "pid", "ppid", "hostname", "pid_namespace_view"],
    );
    c.hostname = Some("lab01".into());
    let report = probe(&c);
    insta::assert_json_snapshot!("uts_pid", report);
    // The host's hostname is untouched.
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "lab01"
    );
}

#[test]
fn step_01_2_the_host_sees_another_pid() {
    root_test!();
    let root = rootfs();
    let (running, out, err) =
        common::start(&config(&root, &["sh", "-c", "echo $$; sleep 0.3"])).unwrap();
    assert_ne!(running.pid.as_raw(), 1);
    assert!(Path::new(&format!("/proc/{}", running.pid)).exists());
    let output = common::finish(running, out, err);
    assert_eq!(output.stdout.trim(), "1");
}

#[test]
fn step_01_2_missing_and_unrunnable_commands() {
    root_test!();
    let root = rootfs();
    let err = common::start(&config(&root, &["no-such-command"])).unwrap_err();
    assert_eq!(err.exit_code(), 127);
    assert_eq!(
        err.to_string(),
        "exec: \"no-such-command\": executable file not found in $PATH"
    );
    let err = common::start(&config(&root, &["/etc/passwd"])).unwrap_err();
    assert_eq!(err.exit_code(), 126);
}

// --- 01.3 mount namespace: pivot_root, /proc, /dev, /sys ----------------------

#[test]
fn step_01_3_the_mount_table_is_the_containers() {
    root_test!();
    let root = rootfs();
    let report = probe(&config(&root, &["/probe", "mounts"]));
    insta::assert_json_snapshot!("mounts", mount_summary(&report));
    // Nothing of the host's root is visible: the old root was detached.
    let host_root = root.path().to_string_lossy().to_string();
    for m in report["mounts"].as_array().unwrap() {
        assert!(!m["mount_point"].as_str().unwrap().contains(&host_root));
    }
    testkit::leaks::assert_clean(root.path());
}

#[test]
fn step_01_3_minimal_devices() {
    root_test!();
    let root = rootfs();
    let out = run(&config(
        &root,
        &[
            "sh",
            "-c",
            "ls /dev; echo x > /dev/null && head -c 4 /dev/zero | wc -c",
        ],
    ));
    assert_eq!(out.exit, Exit::Code(0), "{}", out.stderr);
    insta::assert_snapshot!("dev_listing", out.stdout);
}

#[test]
fn step_01_3_read_only_root() {
    root_test!();
    let root = rootfs();
    let mut c = config(
        &root,
        &[
            "sh",
            "-c",
            "touch /x; echo $?; touch /dev/shm/ok && echo tmpfs-writable",
        ],
    );
    c.readonly_rootfs = true;
    let out = run(&c);
    assert_eq!(out.stdout, "1\ntmpfs-writable\n");
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    assert!(!root.path().join("x").exists());
}

#[test]
fn step_01_3_chroot_can_be_escaped_but_pivot_root_cannot() {
    root_test!();
    // Inside a pivot_root'ed container with CAP_SYS_CHROOT, the classic
    // escape (chroot into a subdirectory, then climb out with ..) only
    // reaches the container's own root.
    let root = rootfs();
    std::fs::write(root.path().join("marker"), "container root\n").unwrap();
    let script =
        "mkdir -p /jail && chroot /jail /bin/busybox true 2>/dev/null; cd / && cat /marker";
    let out = run(&config(&root, &["sh", "-c", script]));
    assert_eq!(out.stdout, "container root\n");
    let escape = namespaces::rootfs::secure_join(root.path(), Path::new("/../../..")).unwrap();
    assert_eq!(escape, root.path());
}

// --- 01.4 IPC ------------------------------------------------------------------

#[test]
fn step_01_4_ipc_is_private_or_shared() {
    root_test!();
    // A System V shared memory segment made on the host...
    // SAFETY: creating and later removing a small private segment.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0);
    let root = rootfs();
    // ...is invisible in a new IPC namespace,
    let private = probe(&config(&root, &["/probe", "ipc"]));
    // ...and visible when the container shares the host's.
    let mut c = config(&root, &["/probe", "ipc"]);
    c.namespaces.remove(&Namespace::Ipc);
    let shared = probe(&c);
    // SAFETY: removes the segment made above.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    let ids = |r: &serde_json::Value| {
        r["ipc"]["sysv_shm_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(ids(&private).is_empty(), "{private}");
    assert!(ids(&shared).contains(&(id as i64)), "{shared}");
}

// --- 01.5 network --------------------------------------------------------------

#[test]
fn step_01_5_a_new_network_namespace_has_only_loopback() {
    root_test!();
    let root = rootfs();
    let report = probe(&config(&root, &["/probe", "interfaces", "routes"]));
    let names: Vec<_> = report["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["lo"]);
    insta::assert_json_snapshot!("network_none", pick(&report, &["interfaces"]));
    // With the host's network namespace, the host's interfaces show.
    let mut c = config(&root, &["/probe", "interfaces"]);
    c.namespaces.remove(&Namespace::Network);
    let host = probe(&c);
    assert_eq!(host["namespaces"], serde_json::Value::Null);
    let host_count = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(host["interfaces"].as_array().unwrap().len(), host_count);
}

// --- 01.6 user namespaces ------------------------------------------------------

#[test]
fn step_01_6_root_inside_is_5000_outside() {
    root_test!();
    let root = rootfs();
    // The container's files must belong to the mapped ids to be its own.
    chown_tree(root.path(), &|uid, gid| (uid + 5000, gid + 5000));
    let mut c = config(&root, &["/probe", "uid", "gid", "uid_map", "gid_map"]);
    c.namespaces.insert(Namespace::User, NsMode::New);
    c.uid_mappings = vec![IdMap::new(0, 5000, 1000)];
    c.gid_mappings = vec![IdMap::new(0, 5000, 1000)];
    let report = probe(&c);
    insta::assert_json_snapshot!("user_map", report);
}

/// Changes the owner of every file under `dir` to `owner(uid, gid)`.
fn chown_tree(dir: &Path, owner: &dyn Fn(u32, u32) -> (u32, u32)) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).unwrap();
    let (uid, gid) = owner(meta.uid(), meta.gid());
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            chown_tree(&e.unwrap().path(), owner);
        }
    }
}

#[test]
fn step_01_6_an_unprivileged_user_runs_a_container() {
    root_test!();
    // The demo binary, run as nobody, starts a rootless container in a user
    // namespace that maps nobody to root.
    let root = rootfs();
    let nobody = testkit::NOBODY;
    chown_tree(root.path(), &|_, _| (nobody, nobody));
    let (_bin, mut nobody_cmd) = testkit::as_nobody(Path::new(env!("CARGO_BIN_EXE_lab01-demo")));
    let out = nobody_cmd
        .args([
            "rootless",
            root.path().to_str().unwrap(),
            "/probe",
            "uid",
            "uid_map",
            "pid",
            "hostname",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = testkit::probe::parse(&out.stdout);
    assert_eq!(report["uid"], 0);
    assert_eq!(report["pid"], 1);
    assert_eq!(report["uid_map"][0]["outside"], 65534);
    assert_eq!(report["uid_map"][0]["count"], 1);
}

// --- 01.7 users and capabilities ----------------------------------------------

#[test]
fn step_01_7_users_without_passwd_entries() {
    root_test!();
    let root = rootfs();
    let user = namespaces::user::resolve_in_rootfs(
        &namespaces::user::UserSpec::parse("4242:4343").unwrap(),
        root.path(),
    )
    .unwrap();
    let mut c = config(
        &root,
        &["/probe", "uid", "gid", "euid", "groups", "capabilities"],
    );
    c.process.uid = user.uid;
    c.process.gid = user.gid;
    let report = probe(&c);
    assert_eq!(
        (report["uid"].as_u64(), report["gid"].as_u64()),
        (Some(4242), Some(4343))
    );
    // A non-root user keeps no effective capabilities.
    assert_eq!(report["capabilities"]["effective"], serde_json::json!([]));
    assert_eq!(
        report["capabilities"]["bounding"].as_array().unwrap().len(),
        namespaces::capabilities::DEFAULT.len()
    );
}

#[test]
fn step_01_7_root_keeps_only_the_default_capabilities() {
    root_test!();
    let root = rootfs();
    let report = probe(&config(&root, &["/probe", "capabilities"]));
    insta::assert_json_snapshot!("capabilities_root", report["capabilities"]);
    let mut c = config(&root, &["/probe", "capabilities"]);
    c.process.capabilities =
        namespaces::capabilities::resolve(&["NET_ADMIN".into()], &["CHOWN".into()], false).unwrap();
    let changed = probe(&c);
    let eff: Vec<_> = changed["capabilities"]["effective"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        eff.contains(&"CAP_NET_ADMIN") && !eff.contains(&"CAP_CHOWN"),
        "{eff:?}"
    );
}

// --- 01.8 PID 1: signals and zombies ------------------------------------------

fn stop_after(running: &namespaces::Running, delay_ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(delay_ms));
    nix::sys::signal::kill(running.pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

#[test]
fn step_01_8_pid_1_ignores_sigterm_without_a_handler() {
    root_test!();
    let root = rootfs();
    let (running, out, err) =
        common::start(&config(&root, &["sh", "-c", "sleep 2; echo survived"])).unwrap();
    stop_after(&running, 300);
    let output = common::finish(running, out, err);
    // The shell as PID 1 never saw the SIGTERM: it ran to the end.
    assert_eq!(output.exit, Exit::Code(0));
    assert_eq!(output.stdout, "survived\n");
}

#[test]
fn step_01_8_init_forwards_signals_and_reaps_zombies() {
    root_test!();
    let root = rootfs();
    // An orphan that exits at once becomes a zombie unless PID 1 reaps it.
    let mut c = config(
        &root,
        &[
            "sh",
            "-c",
            "(sleep 0.1 &) ; sleep 0.4; ps -o pid,stat,comm; sleep 5; echo survived",
        ],
    );
    c.init = true;
    let (running, out, err) = common::start(&c).unwrap();
    stop_after(&running, 800);
    let output = common::finish(running, out, err);
    // The command got SIGTERM through init and died of it: 128 + 15.
    assert_eq!(output.exit, Exit::Code(143), "{}", output.stderr);
    assert!(!output.stdout.contains("survived"));
    assert!(
        !output.stdout.contains(" Z "),
        "a zombie was left: {}",
        output.stdout
    );
}

// --- 01.9 joining a running container (exec) ----------------------------------

#[test]
fn step_01_9_enter_joins_every_namespace() {
    root_test!();
    let root = rootfs();
    let mut c = config(&root, &["/probe", "namespaces", "--sleep", "3"]);
    c.hostname = Some("joined".into());
    let (running, out, err) = common::start(&c).unwrap();
    let mut process = c.process.clone();
    process.args = vec![
        "/probe".into(),
        "namespaces".into(),
        "hostname".into(),
        "pid".into(),
    ];
    let (er, ew) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let stdio = namespaces::Stdio {
        stdin: None,
        stdout: Some(ew),
        stderr: None,
    };
    let entered = namespaces::enter(running.pid, &process, stdio).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(er), &mut text).unwrap();
    assert_eq!(entered.wait().unwrap(), Exit::Code(0));
    nix::sys::signal::kill(running.pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let first = common::finish(running, out, err);
    let a = testkit::probe::parse(first.stdout.as_bytes());
    let b = testkit::probe::parse(text.as_bytes());
    assert_eq!(a["namespaces"], b["namespaces"]);
    assert_eq!(b["hostname"], "joined");
    assert_ne!(b["pid"], 1);
}

// --- 01.10 terminals -----------------------------------------------------------

#[test]
fn step_01_10_a_terminal_of_its_own() {
    root_test!();
    let root = rootfs();
    let mut c = config(&root, &["sh", "-c", "tty; stty size"]);
    c.process.terminal = true;
    let running = namespaces::spawn(&c, namespaces::Stdio::default()).unwrap();
    let master = running.terminal.as_ref().expect("a terminal");
    let mut text = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = nix::unistd::read(master, &mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    assert_eq!(running.wait().unwrap(), Exit::Code(0));
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with("/dev/pts/0\r\n"), "{text:?}");
}

// --- configuration round trip ------------------------------------------------

#[test]
fn config_json_is_an_oci_runtime_spec() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = namespaces::ContainerConfig::new(dir.path().join("rootfs"), vec!["sh".into()]);
    c.namespaces = BTreeMap::from([(Namespace::Mount, NsMode::New)]);
    c.save(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["ociVersion"], "1.2.0");
    assert_eq!(json["root"]["path"], "rootfs");
    assert_eq!(namespaces::ContainerConfig::load(dir.path()).unwrap(), c);
}
