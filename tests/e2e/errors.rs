//! Bad input: one clear line naming the problem, Docker's exit code, and
//! nothing half-created.

use crate::berth;

fn count(b: &crate::support::Berth) -> usize {
    b.ok(&["ps", "-aq"]).lines().count()
}

#[test]
fn missing_and_unrunnable_commands() {
    let b = berth!();
    let (code, _, err) = b.run(&["run", "--name", "nf", "busybox", "no-such-command"]);
    assert_eq!(code, 127);
    assert!(
        err.contains("exec: \"no-such-command\": executable file not found in $PATH"),
        "{err}"
    );
    assert_eq!(
        b.inspect("nf", "{{.State.Status}} {{.State.ExitCode}}"),
        "created 127"
    );
    let (code, _, err) = b.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(code, 126);
    assert!(err.contains("permission denied"), "{err}");
    // --rm removed the container that could not start; "nf" is still there.
    assert_eq!(count(&b), 1);
    // Detached runs report the same.
    let (code, _, err) = b.run(&["run", "-d", "busybox", "no-such-command"]);
    assert_eq!(code, 127, "{err}");
}

#[test]
fn unknown_image_and_container() {
    let b = berth!();
    // A missing image is pulled, as Docker does; docker.io is out of reach
    // here, and the error says so and what else to do.
    let (code, out, err) = b.run(&["run", "alpine", "true"]);
    assert_eq!(code, 125);
    assert_eq!(out, "");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0], "Unable to find image 'alpine:latest' locally",
        "{err}"
    );
    assert!(
        lines[1].contains("cannot pull alpine:latest: build it"),
        "{err}"
    );
    assert!(err.contains("cannot reach registry docker.io"), "{err}");
    // --pull never does not try.
    let (code, _, err) = b.run(&["create", "--pull", "never", "alpine"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("Unable to find image 'alpine:latest'"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    for cmd in [
        &["stop", "ghost"][..],
        &["rm", "ghost"],
        &["logs", "ghost"],
        &["inspect", "ghost"],
        &["exec", "ghost", "true"],
        &["start", "ghost"],
        &["kill", "ghost"],
    ] {
        let (code, _, err) = b.run(cmd);
        assert_eq!(code, 1, "{cmd:?}");
        assert!(err.contains("No such container: ghost"), "{cmd:?}: {err}");
    }
    assert_eq!(count(&b), 0);
}

#[test]
fn name_in_use() {
    let b = berth!();
    b.ok(&["create", "--name", "twin", "busybox", "true"]);
    let (code, _, err) = b.run(&["run", "--name", "twin", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.contains("The container name \"/twin\" is already in use"),
        "{err}"
    );
    assert_eq!(count(&b), 1);
    let leftovers: Vec<_> = std::fs::read_dir(b.root().join("containers"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn invalid_options() {
    let b = berth!();
    let cases: [(&[&str], &str); 8] = [
        (&["run", "-u", "a:b:c", "busybox", "true"], "invalid --user"),
        (
            &["run", "-u", "ghost", "busybox", "true"],
            "unable to find user ghost",
        ),
        (
            &["run", "-h", &"h".repeat(65), "busybox", "true"],
            "1 to 64 bytes",
        ),
        (
            &["run", "--frobnicate", "busybox"],
            "unexpected argument '--frobnicate'",
        ),
        (
            &["run", "--restart", "sometimes", "busybox"],
            "invalid --restart sometimes",
        ),
        (
            &["run", "--name", "bad/name", "busybox", "true"],
            "invalid container name",
        ),
        (
            &["run", "--network", "nope", "busybox", "true"],
            "network nope not found",
        ),
        (
            &[
                "run",
                "--network",
                "none",
                "-p",
                "8080:80",
                "busybox",
                "true",
            ],
            "published ports need a bridge network",
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = b.run(args);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(count(&b), 0);
}

#[test]
fn an_interrupted_creation_is_cleared() {
    let b = berth!();
    b.ok(&["create", "--name", "first", "busybox", "true"]);
    // What a `berth create` killed half-way leaves behind.
    let abandoned = b.root().join("containers/.creating-0123456789abcdef");
    std::fs::create_dir_all(abandoned.join("rootfs/bin")).unwrap();
    assert_eq!(count(&b), 1, "a half-made container must not be listed");
    b.ok(&["create", "--name", "second", "busybox", "true"]);
    assert!(!abandoned.exists());
    assert_eq!(count(&b), 2);
}
