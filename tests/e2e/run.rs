//! `berth run` in the foreground: output, exit codes, options.

use crate::berth;

#[test]
fn prints_output_and_returns_the_exit_code() {
    let b = berth!();
    let (code, out, _) = b.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ]);
    assert_eq!(code, 3);
    assert_eq!(out, "hello\n");
    // --rm: nothing left.
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

#[test]
fn the_container_is_isolated() {
    let b = berth!();
    let out = b.ok(&[
        "run",
        "--rm",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "hostname; echo $$; ps -o pid | wc -l; ip -o link | cut -d: -f2 | cut -d@ -f1",
    ]);
    // hostname, PID 1, three processes (sh, ps, wc) plus the header, and two
    // links: loopback and the default bridge network's eth0.
    assert_eq!(out, "box\n1\n4\n lo\n eth0\n");
}

#[test]
fn probe_sees_a_container() {
    let b = berth!();
    let id = b.create_with_probe(&[
        "--name",
        "p",
        "-h",
        "probed",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "busybox",
        "/probe",
        "pid",
        "hostname",
        "cwd",
        "env",
        "uid",
        "interfaces",
        "hosts",
        "hostname_file",
    ]);
    let out = b.ok(&["start", "-a", &id]);
    let report = testkit::probe::parse(out.as_bytes());
    insta::assert_json_snapshot!("run_probe", report, {
        ".env.HOSTNAME" => "[hostname]",
    });
    assert_eq!(report["env"]["GREETING"], "hi");
}

#[test]
fn environment_workdir_and_user() {
    let b = berth!();
    let out = b.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-e",
        "B",
        "-w",
        "/made/here",
        "-u",
        "4242:4343",
        "busybox",
        "sh",
        "-c",
        "echo $A-$B-$HOME; pwd; id",
    ]);
    assert_eq!(out, "1--/\n/made/here\nuid=4242 gid=4343 groups=4343\n");
    let out = b.ok(&["run", "--rm", "-u", "nobody", "busybox", "id", "-u"]);
    assert_eq!(out, "65534\n");
}

#[test]
fn read_only_root() {
    let b = berth!();
    let (code, _, err) = b.run(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_eq!(code, 1);
    assert!(err.contains("Read-only file system"), "{err}");
    // The files berth mounts stay where they are, and /dev/shm is writable.
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--read-only",
            "busybox",
            "sh",
            "-c",
            "touch /dev/shm/y && cat /etc/hostname | wc -l"
        ]),
        "1\n"
    );
}

#[test]
fn stdin_with_dash_i() {
    let b = berth!();
    let out = b
        .cmd()
        .args(["run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z"])
        .write_stdin("hello\n")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO\n");
    // Without -i the container's stdin is empty.
    let out = b
        .cmd()
        .args(["run", "--rm", "busybox", "cat"])
        .write_stdin("ignored\n")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn network_host_and_none() {
    let b = berth!();
    // The engine's host is its own network namespace: give it a link of its
    // own, then count its links there (with `ip`: /sys/class/net shows the
    // namespace of whoever mounted it).
    let added = b
        .on_host("ip")
        .args(["link", "add", "hostonly0", "type", "bridge"])
        .status()
        .unwrap();
    assert!(added.success());
    let host = b.on_host("ip").args(["-o", "link"]).output().unwrap();
    let host_links = String::from_utf8_lossy(&host.stdout).lines().count();
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "sh",
        "-c",
        "ip -o link | wc -l; ip -o link | grep -c hostonly0",
    ]);
    assert_eq!(out, format!("{host_links}\n1\n"));
    let out = b.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(out, "lo\n");
}

#[test]
fn ipc_shared_with_another_container() {
    let b = berth!();
    b.ok(&[
        "run", "-d", "--name", "owner", "--init", "busybox", "sleep", "30",
    ]);
    b.wait_for("owner", "{{.State.Status}}", "running", 5);
    // Make a shared memory segment inside the owner's IPC namespace.
    let pid = b.inspect("owner", "{{.State.Pid}}");
    let made = std::process::Command::new("nsenter")
        .args(["-t", &pid, "--ipc", "ipcmk", "-M", "4096"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let count = "tail -n +2 /proc/sysvipc/shm | wc -l";
    let shared = b.ok(&[
        "run",
        "--rm",
        "--ipc",
        "container:owner",
        "busybox",
        "sh",
        "-c",
        count,
    ]);
    let private = b.ok(&["run", "--rm", "busybox", "sh", "-c", count]);
    assert_eq!((shared.trim(), private.trim()), ("1", "0"));
}

#[test]
fn capabilities_can_be_dropped_and_added() {
    let b = berth!();
    let caps = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sh", "-c", "grep CapEff /proc/self/status"]);
        u64::from_str_radix(b.ok(&args).split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    let default = caps(&[]);
    assert_eq!(default.count_ones(), 14);
    let chown = 1 << 0;
    let net_admin = 1 << 12;
    assert_eq!(caps(&["--cap-drop", "CHOWN"]), default & !chown);
    assert_eq!(caps(&["--cap-add", "NET_ADMIN"]), default | net_admin);
    assert_eq!(caps(&["--cap-drop", "ALL"]), 0);
}

#[test]
fn five_hundred_runs_never_hang() {
    let b = berth!();
    // A process that exits at once must always be reaped: each run gets
    // ten seconds, the loop as a whole a few minutes.
    let start = std::time::Instant::now();
    for i in 0..500 {
        let out = b
            .cmd()
            .args(["run", "--rm", "busybox", "true"])
            .timeout(std::time::Duration::from_secs(10))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {i} failed: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("500 runs in {:?}", start.elapsed());
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}
