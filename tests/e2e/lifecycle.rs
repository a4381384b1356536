//! Detached containers: ps, logs, exec, stop, start, restart, kill, rm,
//! inspect and restart policies.

use std::time::{Duration, Instant};

use crate::berth;

#[test]
fn detached_life_cycle() {
    let b = berth!();
    let id = b.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.2; done",
    ]);
    assert_eq!(id.trim().len(), 64);
    b.wait_for("web", "{{.State.Status}}", "running", 5);
    let ps = b.ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE     COMMAND"), "{ps}");
    assert!(ps.contains("Up ") && ps.contains("web"), "{ps}");
    assert_eq!(
        b.ok(&["ps", "--format", "{{.Names}} {{.State}}"]),
        "web running\n"
    );

    std::thread::sleep(Duration::from_millis(500));
    let logs = b.ok(&["logs", "web"]);
    assert!(
        logs.lines().count() >= 2 && logs.lines().all(|l| l == "tick"),
        "{logs}"
    );

    // exec joins the container: same hostname, another pid than 1.
    let out = b.ok(&["exec", "web", "sh", "-c", "hostname; echo $$"]);
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), &id.trim()[..12]);
    assert_ne!(lines.next().unwrap(), "1");
    assert_eq!(b.run(&["exec", "web", "sh", "-c", "exit 7"]).0, 7);
    // A user name resolves in the container's own files, which (with the
    // overlay driver) are mounted only inside the container.
    b.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "echo 'svc:x:4321:4321::/:/bin/sh' >> /etc/passwd",
    ]);
    assert_eq!(b.ok(&["exec", "-u", "svc", "web", "id", "-u"]), "4321\n");

    // stop: the shell is PID 1 and ignores SIGTERM, so after the grace
    // period it is killed: 137 = 128 + SIGKILL.
    let t = Instant::now();
    assert_eq!(b.ok(&["stop", "-t", "1", "web"]), "web\n");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        b.inspect(
            "web",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}"
        ),
        "exited 137 false"
    );
    assert!(b.ok(&["ps"]).lines().count() == 1);
    assert!(b.ok(&["ps", "-a"]).contains("Exited (137)"));

    // start again, restart, then remove.
    b.ok(&["start", "web"]);
    b.wait_for("web", "{{.State.Status}}", "running", 5);
    let pid1 = b.inspect("web", "{{.State.Pid}}");
    b.ok(&["restart", "-t", "0", "web"]);
    b.wait_for("web", "{{.State.Status}}", "running", 5);
    assert_ne!(b.inspect("web", "{{.State.Pid}}"), pid1);
    let (code, _, err) = b.run(&["rm", "web"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("stop the container before removing or force remove"),
        "{err}"
    );
    assert_eq!(b.ok(&["rm", "-f", "web"]), "web\n");
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

#[test]
fn init_makes_stop_quick() {
    let b = berth!();
    b.ok(&[
        "run", "-d", "--init", "--name", "quick", "busybox", "sh", "-c", "sleep 60",
    ]);
    b.wait_for("quick", "{{.State.Status}}", "running", 5);
    let t = Instant::now();
    b.ok(&["stop", "quick"]);
    // The shell gets SIGTERM through init and dies of it: 128 + 15.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(b.inspect("quick", "{{.State.ExitCode}}"), "143");
}

#[test]
fn kill_with_a_signal() {
    let b = berth!();
    b.ok(&[
        "run", "-d", "--init", "--name", "k", "busybox", "sleep", "60",
    ]);
    b.wait_for("k", "{{.State.Status}}", "running", 5);
    b.ok(&["kill", "-s", "USR1", "k"]);
    b.wait_for("k", "{{.State.ExitCode}}", "138", 5);
    b.ok(&["start", "k"]);
    b.wait_for("k", "{{.State.Status}}", "running", 5);
    b.ok(&["kill", "k"]);
    assert_eq!(
        b.inspect("k", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    let (code, _, err) = b.run(&["kill", "k"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not running"), "{err}");
}

#[test]
fn logs_follow_until_the_container_exits() {
    let b = berth!();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; sleep 0.3; done; echo bye >&2",
    ]);
    let out = b
        .cmd()
        .args(["logs", "-f", "talk"])
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line 1\nline 2\nline 3\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "bye\n");
    // --tail counts lines of both streams: the last two are "line 3" and "bye".
    let (_, out, err) = b.run(&["logs", "--tail", "2", "talk"]);
    assert_eq!((out.as_str(), err.as_str()), ("line 3\n", "bye\n"));
    let stamped = b.ok(&["logs", "-t", "talk"]);
    assert!(
        stamped
            .lines()
            .all(|l| l.contains('T') && l.contains("Z line")),
        "{stamped}"
    );
}

#[test]
fn restart_on_failure_counts_and_stops() {
    let b = berth!();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    b.wait_for(
        "flaky",
        "{{.RestartCount}} {{.State.Status}}",
        "2 exited",
        15,
    );
    assert_eq!(b.inspect("flaky", "{{.State.ExitCode}} {{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"), "1 on-failure 2");
    assert_eq!(b.ok(&["logs", "flaky"]), "run\nrun\nrun\n");
}

#[test]
fn restart_always_until_stopped() {
    let b = berth!();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "again",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while b
        .inspect("again", "{{.RestartCount}}")
        .parse::<u32>()
        .unwrap()
        < 2
    {
        assert!(Instant::now() < deadline, "never restarted twice");
        std::thread::sleep(Duration::from_millis(50));
    }
    b.ok(&["stop", "-t", "1", "again"]);
    let count = b.inspect("again", "{{.RestartCount}}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(b.inspect("again", "{{.State.Status}}"), "exited");
    assert_eq!(
        b.inspect("again", "{{.RestartCount}}"),
        count,
        "restarted after a manual stop"
    );
}

#[test]
fn inspect_is_docker_shaped() {
    let b = berth!();
    b.ok(&[
        "create",
        "--name",
        "shape",
        "-h",
        "shape",
        "--restart",
        "on-failure:3",
        "-e",
        "A=1",
        "busybox",
        "echo",
        "hi",
    ]);
    let json: serde_json::Value = serde_json::from_str(&b.ok(&["inspect", "shape"])).unwrap();
    insta::assert_json_snapshot!("inspect_created", json, {
        "[0].Id" => "[id]",
        "[0].Created" => "[time]",
        "[0].Image" => "[image id]",
        "[0].ResolvConfPath" => "[path]",
        "[0].HostnamePath" => "[path]",
        "[0].HostsPath" => "[path]",
        "[0].LogPath" => "[path]",
        "[0].GraphDriver.Data.MergedDir" => "[path]",
        "[0].GraphDriver.Data.UpperDir" => "[path]",
        "[0].GraphDriver.Data.WorkDir" => "[path]",
        "[0].GraphDriver.Data.LowerDir" => "[path]",
    });
    assert_eq!(b.inspect("shape", "{{json .State.Status}}"), "\"created\"");
    b.ok(&["start", "-a", "shape"]);
    assert_eq!(
        b.inspect("shape", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
}

/// Many `berth run` at once, from two engines sharing the machine's `berth`
/// cgroup parent: each container makes and removes its group while others
/// do the same, and unnamed containers draw from one pool of names. Every
/// run must print its own line; none may fail on a vanished parent group
/// or a name another run took a moment earlier.
#[test]
fn parallel_runs_do_not_trip_over_each_other() {
    let engines = [berth!(), berth!()];
    for b in &engines {
        b.ok(&["run", "--rm", "busybox", "true"]); // makes the image once
    }
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..24)
            .map(|i| {
                let b = &engines[i % 2];
                s.spawn(move || {
                    let word = format!("run-{i}");
                    let (code, out, err) = b.run(&["run", "busybox", "echo", &word]);
                    (word, code, out, err)
                })
            })
            .collect();
        for run in runs {
            let (word, code, out, err) = run.join().unwrap();
            assert_eq!((code, out.trim()), (0, word.as_str()), "stderr: {err}");
        }
    });
    for b in &engines {
        let names = b.ok(&["ps", "-a", "--format", "{{.Names}}"]);
        let unique: std::collections::BTreeSet<_> = names.lines().collect();
        assert_eq!(
            unique.len(),
            12,
            "every container has its own name:\n{names}"
        );
    }
}
