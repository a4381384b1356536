//! Lab 02 through berth: `--memory`, `--cpus`, `--pids-limit`, `--device`,
//! `stats`, `pause` and `unpause`, as a user types them.

use crate::berth;
use crate::support::cgroups_of;

#[test]
fn an_oom_killed_container_exits_137() {
    let b = berth!();
    let script = "dd if=/dev/zero of=/dev/null bs=64M count=1";
    let (code, _, err) = b.run(&[
        "run", "--name", "hog", "-m", "16m", "busybox", "sh", "-c", script,
    ]);
    assert_eq!(code, 137, "{err}");
    assert_eq!(
        b.inspect(
            "hog",
            "{{.State.OOMKilled}} {{.State.ExitCode}} {{.HostConfig.Memory}}"
        ),
        "true 137 16777216"
    );
    // The container's cgroup went with its process.
    let id = b.inspect("hog", "{{.Id}}");
    assert!(cgroups_of(&id).is_empty(), "{:?}", cgroups_of(&id));
    // A container that stays within its limit is not OOM-killed.
    b.ok(&["run", "--name", "fine", "-m", "64m", "busybox", "true"]);
    assert_eq!(b.inspect("fine", "{{.State.OOMKilled}}"), "false");
}

#[test]
fn limits_are_visible_inside_and_in_inspect() {
    let b = berth!();
    let id = b.create_with_probe(&[
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--pids-limit",
        "50",
        "--cpuset-cpus",
        "0",
        "busybox",
        "/probe",
        "cgroup",
    ]);
    let out = b.ok(&["start", "-a", &id]);
    let report = testkit::probe::parse(out.as_bytes());
    let limits = &report["cgroup"]["limits"];
    assert_eq!(limits["memory_max"], "67108864");
    assert_eq!(limits["pids_max"], "50");
    assert_eq!(limits["cpu_max"], "50000 100000");
    assert_eq!(limits["cpuset_cpus"], "0");
    for line in report["cgroup"]["lines"].as_array().unwrap() {
        assert!(line.as_str().unwrap().ends_with(":/"), "{line}");
    }
    assert_eq!(
        b.inspect(&id, "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} {{.HostConfig.CpusetCpus}}"),
        "500000000 512 50 0"
    );
    // config.json carries the limits where an OCI runtime reads them.
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(b.root().join("containers").join(&id).join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["linux"]["resources"]["memory"]["limit"], 67108864);
    assert_eq!(config["linux"]["cgroupsPath"], format!("berth/{id}"));
}

#[test]
fn pause_stats_and_unpause() {
    let b = berth!();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "spin",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    let json = b.ok(&["stats", "--no-stream", "--format", "json", "spin"]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(row["Name"], "spin");
    assert_eq!(row["PIDs"], "1");
    assert!(
        row["MemUsage"].as_str().unwrap().ends_with(" / 64MiB"),
        "{row}"
    );
    let cpu: f64 = row["CPUPerc"]
        .as_str()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(cpu > 50.0, "a busy loop uses a CPU: {row}");

    assert_eq!(b.ok(&["pause", "spin"]).trim(), "spin");
    assert_eq!(
        b.inspect(
            "spin",
            "{{.State.Status}} {{.State.Paused}} {{.State.Running}}"
        ),
        "paused true true"
    );
    assert!(b.ok(&["ps"]).contains("(Paused)"));
    let out = b.ok(&["stats", "--no-stream", "--format", "{{.CPUPerc}}", "spin"]);
    assert_eq!(out.trim(), "0.00%", "a paused container uses no CPU");
    let (code, _, err) = b.run(&["exec", "spin", "true"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is paused, unpause the container before exec"),
        "{err}"
    );
    let (code, _, err) = b.run(&["pause", "spin"]);
    assert_eq!(code, 1);
    assert!(err.contains("already paused"), "{err}");

    b.ok(&["unpause", "spin"]);
    assert_eq!(b.inspect("spin", "{{.State.Status}}"), "running");
    // exec joins the container's cgroup: its sh is counted too.
    let out = b.ok(&["exec", "spin", "cat", "/proc/self/cgroup"]);
    assert!(out.lines().all(|l| l.ends_with(":/")), "{out}");

    // A paused container can still be stopped.
    b.ok(&["pause", "spin"]);
    b.ok(&["stop", "-t", "1", "spin"]);
    assert_eq!(b.inspect("spin", "{{.State.Status}}"), "exited");
}

#[test]
fn a_fork_bomb_is_contained() {
    let b = berth!();
    let script = "bomb() { bomb | bomb & }; bomb; sleep 2; \
                  cat /sys/fs/cgroup/pids/pids.current 2>/dev/null || cat /sys/fs/cgroup/pids.current";
    let (code, out, err) = b.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "16",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, 0, "{err}");
    let current: u64 = out.trim().lines().last().unwrap().trim().parse().unwrap();
    assert!(current <= 16, "{out}");
    assert!(
        err.contains("can't fork") || err.contains("Resource temporarily unavailable"),
        "{err}"
    );
}

#[test]
fn exec_at_the_pids_limit_says_why() {
    let b = berth!();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "full",
        "--pids-limit",
        "3",
        "busybox",
        "sh",
        "-c",
        "sleep 100 & exec sleep 100",
    ]);
    b.wait_for("full", "{{.State.Status}}", "running", 10);
    let mut err = String::new();
    for _ in 0..50 {
        let (code, _, e) = b.run(&["exec", "full", "true"]);
        err = e;
        if code != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Running: sh's child and sh itself (now sleep). exec needs two more
    // (its intermediate process joins the cgroup, then forks): refused.
    assert!(err.contains("--pids-limit of 3"), "{err}");
    b.ok(&["rm", "-f", "full"]);
}

#[test]
fn a_device_can_be_added() {
    let b = berth!();
    // A harmless character device that is not among the defaults.
    let host = ["/dev/fuse", "/dev/net/tun"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("this machine has neither /dev/fuse nor /dev/net/tun");
    let (major, minor) = {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(host).unwrap().rdev();
        (libc::major(rdev), libc::minor(rdev))
    };
    let denied = format!("mknod /tmp/d c {major} {minor} && head -c 0 /tmp/d");
    let (code, _, err) = b.run(&["run", "--rm", "busybox", "sh", "-c", &denied]);
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    let mapping = format!("{host}:/dev/extra:rw");
    let out = b.ok(&[
        "run",
        "--rm",
        "--device",
        &mapping,
        "busybox",
        "sh",
        "-c",
        "head -c 0 /dev/extra && echo opened",
    ]);
    assert_eq!(out.trim(), "opened");
}

#[test]
fn bad_limits_are_refused_before_anything_is_made() {
    let b = berth!();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--memory", "12q"],
            "invalid --memory \"12q\": expected a size such as 64m",
        ),
        (&["--memory", "1m"], "the minimum memory limit is 6m"),
        (
            &["--memory-swap", "1g"],
            "--memory-swap needs --memory as well",
        ),
        (&["--cpus", "64"], "as this machine has"),
        (&["--cpu-shares", "1"], "the range is 2 to 262144"),
        (&["--cpuset-cpus", "99"], "this machine has no CPU 99"),
        (
            &["--device", "/dev/no-such-device"],
            "--device /dev/no-such-device: No such file",
        ),
    ];
    for (flags, want) in cases {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "true"]);
        let (code, _, err) = b.run(&args);
        assert_eq!(code, 125, "{flags:?}");
        assert!(err.contains(want), "{flags:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(b.ok(&["ps", "-aq"]), "", "nothing was created");
}

/// `--privileged` lifts the device allow-list: a block device node made
/// inside may be opened (here the disk may not exist, ENXIO, but the cgroup
/// no longer says EPERM); without it the cgroup refuses.
#[test]
fn privileged_lifts_the_device_allow_list() {
    let b = berth!();
    let script =
        "mknod /tmp/disk b 8 0 && head -c 1 /tmp/disk > /dev/null 2> /tmp/err; cat /tmp/err; true";
    let out = b.ok(&["run", "--rm", "busybox", "sh", "-c", script]);
    assert!(out.contains("Operation not permitted"), "{out}");
    let out = b.ok(&["run", "--rm", "--privileged", "busybox", "sh", "-c", script]);
    assert!(!out.contains("Operation not permitted"), "{out}");
}
