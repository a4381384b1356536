//! Lab 05 through berth: `berth build` from Dockerfiles the tests write,
//! with the built-in busybox as the base image.

use std::path::Path;

use crate::berth;
use crate::support::Berth;

/// A build context: files by relative path.
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("berth-e2e-ctx-")
        .tempdir()
        .unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

fn build(b: &Berth, dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["build", "--network", "none"];
    args.extend_from_slice(extra);
    let path = dir.display().to_string();
    args.push(&path);
    b.run(&args)
}

fn build_ok(b: &Berth, dir: &Path, extra: &[&str]) -> String {
    let (code, out, err) = build(b, dir, extra);
    assert_eq!(code, 0, "build failed: {out}\n{err}");
    out
}

/// Build output with ids replaced, for snapshots.
fn redact(out: &str) -> String {
    let ids = regex::Regex::new(r"\b[0-9a-f]{12}\b").unwrap();
    ids.replace_all(out, "[id]").to_string()
}

const APP: &str = r#"# syntax=docker/dockerfile:1
FROM busybox
ENV GREETING=hello \
    APP_DIR=/app
WORKDIR $APP_DIR
COPY config.txt ./
RUN echo "$GREETING from RUN" > run.txt
COPY src/ ./src/
CMD ["sh", "-c", "cat config.txt run.txt src/main.txt"]
"#;

#[test]
fn an_unchanged_build_uses_the_cache_and_an_edit_invalidates_what_follows() {
    let b = berth!();
    let ctx = context(&[
        ("Dockerfile", APP),
        ("config.txt", "config 1\n"),
        ("src/main.txt", "main 1\n"),
    ]);
    let first = build_ok(&b, ctx.path(), &["-t", "app:1", "-t", "app:latest"]);
    insta::assert_snapshot!("build_first", redact(&first));
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "app:1"]),
        "config 1\nhello from RUN\nmain 1\n"
    );
    // Nothing changed: every step but FROM comes from the cache.
    let again = build_ok(&b, ctx.path(), &["-t", "app:1"]);
    assert_eq!(again.matches("Using cache").count(), 6, "{again}");
    let id = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("Successfully built "))
            .unwrap()
            .to_string()
    };
    assert_eq!(id(&again), id(&first));
    // Touching a file without changing it keeps the cache.
    let t = std::fs::File::options()
        .append(true)
        .open(ctx.path().join("src/main.txt"))
        .unwrap();
    t.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let touched = build_ok(&b, ctx.path(), &[]);
    assert_eq!(touched.matches("Using cache").count(), 6, "{touched}");
    // The last COPY's file changed: only that step and the next run.
    std::fs::write(ctx.path().join("src/main.txt"), "main 2\n").unwrap();
    let late = build_ok(&b, ctx.path(), &["-t", "app:2"]);
    insta::assert_snapshot!("build_late_edit", redact(&late));
    assert_eq!(late.matches("Using cache").count(), 4, "{late}");
    // An early file changed: everything after it runs again, the RUN too.
    std::fs::write(ctx.path().join("config.txt"), "config 2\n").unwrap();
    let early = build_ok(&b, ctx.path(), &["-t", "app:3"]);
    assert_eq!(early.matches("Using cache").count(), 2, "{early}");
    assert!(
        early.contains("Step 5/7 : RUN echo \"$GREETING from RUN\" > run.txt\n ---> Running in "),
        "{early}"
    );
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "app:3"]),
        "config 2\nhello from RUN\nmain 2\n"
    );
    // --no-cache runs everything.
    let fresh = build_ok(&b, ctx.path(), &["--no-cache"]);
    assert_eq!(fresh.matches("Using cache").count(), 0, "{fresh}");
    // The intermediate images are hidden from `images`, shown with -a.
    let names = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!names.contains("<none>"), "{names}");
    assert!(b.ok(&["images", "-a"]).contains("<none>"));
}

#[test]
fn the_image_config_drives_run() {
    let b = berth!();
    let ctx = context(&[(
        "Dockerfile",
        r#"FROM busybox
RUN echo 'app:x:1234:1234::/data:/bin/sh' >> /etc/passwd && mkdir /data && chown app /data
USER app
WORKDIR /data
ENV MODE=production
VOLUME /data
EXPOSE 8080/tcp 9090/udp
LABEL org.opencontainers.image.title="demo"
STOPSIGNAL SIGINT
ENTRYPOINT ["sh", "-c", "echo $(id -u) $(pwd) $MODE \"$@\"", "entry"]
CMD ["default", "args"]
"#,
    )]);
    build_ok(&b, ctx.path(), &["-t", "cfg"]);
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "cfg"]),
        "1234 /data production default args\n"
    );
    // Arguments replace CMD; --entrypoint replaces ENTRYPOINT and drops CMD.
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "cfg", "mine"]),
        "1234 /data production mine\n"
    );
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "pwd",
            "cfg"
        ]),
        "/data\n"
    );
    let inspect = b.ok(&[
        "image", "inspect", "-f",
        "{{.Config.User}} {{.Config.WorkingDir}} {{.Config.Volumes}} {{.Config.ExposedPorts}} {{.Config.StopSignal}} {{.Config.Labels}}",
        "cfg",
    ]);
    assert_eq!(
        inspect,
        "app /data map[/data:map[]] map[8080/tcp:map[] 9090/udp:map[]] SIGINT map[org.opencontainers.image.title:demo]\n"
    );
    // The image's VOLUME becomes an anonymous volume; -P publishes EXPOSE.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "-P",
        "--entrypoint",
        "sleep",
        "cfg",
        "30",
    ]);
    assert_eq!(b.inspect("c", "{{len .Mounts}}"), "1");
    let ports = b.ok(&["port", "c"]);
    b.ok(&["rm", "-f", "-v", "c"]);
    assert!(
        ports.contains("8080/tcp -> 0.0.0.0:") && ports.contains("9090/udp -> 0.0.0.0:"),
        "{ports}"
    );
}

#[test]
fn healthcheck_is_kept_in_the_config_and_inherited() {
    let b = berth!();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nHEALTHCHECK --interval=5s --retries=2 CMD wget -q -O /dev/null localhost || exit 1\n",
        ),
        ("Child", "FROM checked\nRUN true\n"),
        ("Off", "FROM checked\nHEALTHCHECK NONE\n"),
    ]);
    build_ok(&b, ctx.path(), &["-t", "checked"]);
    let health = |image: &str| {
        b.ok(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Healthcheck}}",
            image,
        ])
        .trim()
        .to_string()
    };
    // Docker's field and units: the test, then nanoseconds and retries.
    let want = r#"{"Interval":5000000000,"Retries":2,"Test":["CMD-SHELL","wget -q -O /dev/null localhost || exit 1"]}"#;
    assert_eq!(health("checked"), want);
    // An image built on it keeps it, through a RUN step's layer too.
    build_ok(
        &b,
        ctx.path(),
        &[
            "-t",
            "child",
            "-f",
            &ctx.path().join("Child").display().to_string(),
        ],
    );
    assert_eq!(health("child"), want);
    build_ok(
        &b,
        ctx.path(),
        &[
            "-t",
            "off",
            "-f",
            &ctx.path().join("Off").display().to_string(),
        ],
    );
    assert_eq!(health("off"), r#"{"Test":["NONE"]}"#);
    // An image without one has no field, as in Docker.
    assert_eq!(health("busybox"), "null");
}

#[test]
fn health_checks_run_inside_the_running_container() {
    let b = berth!();
    // Flags on an image without a check: failing twice makes it unhealthy;
    // one pass makes it healthy again.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "h",
        "--network",
        "none",
        "--health-cmd",
        "test -f /tmp/ready",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "60",
    ]);
    b.wait_for("h", "{{.State.Health.Status}}", "unhealthy", 15);
    assert!(b.ok(&["ps"]).contains("(unhealthy)"));
    let log = b.inspect("h", "{{json .State.Health.Log}}");
    assert!(log.contains(r#""ExitCode":1"#), "{log}");
    b.ok(&["exec", "h", "touch", "/tmp/ready"]);
    b.wait_for("h", "{{.State.Health.Status}}", "healthy", 15);
    assert!(b.ok(&["ps"]).contains("(healthy)"));
    assert_eq!(b.inspect("h", "{{.State.Health.FailingStreak}}"), "0");
    let log = b.inspect("h", "{{json .State.Health.Log}}");
    assert!(log.contains(r#""ExitCode":0"#), "{log}");
    b.ok(&["rm", "-f", "h"]);

    // The image's HEALTHCHECK, with a test that outlives its timeout.
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nHEALTHCHECK --interval=200ms --timeout=300ms --retries=1 CMD sleep 5\n",
    )]);
    build_ok(&b, ctx.path(), &["-t", "slow"]);
    b.ok(&[
        "run",
        "-d",
        "--name",
        "s",
        "--network",
        "none",
        "slow",
        "sleep",
        "60",
    ]);
    b.wait_for("s", "{{.State.Health.Status}}", "unhealthy", 15);
    let log = b.inspect("s", "{{json .State.Health.Log}}");
    assert!(
        log.contains("Health check exceeded timeout (300ms)"),
        "{log}"
    );
    // --no-healthcheck switches it off.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "off",
        "--network",
        "none",
        "--no-healthcheck",
        "slow",
        "sleep",
        "60",
    ]);
    assert_eq!(b.inspect("off", "{{json .State.Health}}"), "null");
    let ps = b.ok(&["ps"]);
    let off = ps.lines().find(|l| l.ends_with(" off")).unwrap();
    assert!(!off.contains("health"), "{ps}");
    b.ok(&["rm", "-f", "s", "off"]);
    // A flag without a test, or a bad duration, is refused before anything is made.
    let (code, _, err) = b.run(&["create", "--health-retries", "3", "busybox"]);
    assert_eq!(code, 125);
    assert!(err.contains("give --health-cmd"), "{err}");
    let (code, _, err) = b.run(&[
        "create",
        "--health-cmd",
        "true",
        "--health-interval",
        "soon",
        "busybox",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid --health-interval \"soon\""), "{err}");
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

#[test]
fn multi_stage_copies_only_what_the_last_stage_takes() {
    let b = berth!();
    let ctx = context(&[
        (
            "Dockerfile",
            r#"ARG VERSION=1.0
FROM busybox AS build
ARG VERSION
RUN mkdir /out && echo "v$VERSION" > /out/version && echo junk > /out/junk
FROM busybox AS test
RUN false
FROM scratch
COPY --from=build /out/version /
COPY --from=0 /bin/busybox /bin/
"#,
        ),
        ("unused.txt", "x"),
    ]);
    let out = build_ok(
        &b,
        ctx.path(),
        &["-t", "multi", "--build-arg", "VERSION=2.5"],
    );
    // The `test` stage is not needed, so it does not run.
    assert!(!out.contains("RUN false"), "{out}");
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "multi",
            "/bin/busybox",
            "cat",
            "/version"
        ]),
        "v2.5\n"
    );
    let (code, _, err) = b.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "multi",
        "/bin/busybox",
        "cat",
        "/out/junk",
    ]);
    assert_ne!(code, 0, "{err}");
    // Two layers: the version file and busybox; no history of the stage.
    assert_eq!(
        b.ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", "multi"]),
        "2\n"
    );
    // --target builds a stage of its own, here the failing one.
    let (code, out, err) = build(&b, ctx.path(), &["--target", "test"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("The command '/bin/sh -c false' returned a non-zero code: 1"),
        "{err}"
    );
    let (code, _, err) = build(&b, ctx.path(), &["--target", "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("target stage \"nope\" not found") && err.contains("build, test, 2"),
        "{err}"
    );
}

#[test]
fn dockerignore_and_the_context_boundary() {
    let b = berth!();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY . /ctx/\nCMD [\"find\", \"/ctx\", \"-type\", \"f\"]\n",
        ),
        (
            ".dockerignore",
            "# build output\n*.log\nsecrets/\n!secrets/public.txt\n",
        ),
        ("app.txt", "app"),
        ("debug.log", "noise"),
        ("secrets/key.pem", "private"),
        ("secrets/public.txt", "public"),
    ]);
    build_ok(&b, ctx.path(), &["-t", "ctx"]);
    let mut files: Vec<String> = b
        .ok(&["run", "--rm", "--network", "none", "ctx"])
        .lines()
        .map(str::to_string)
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/app.txt",
            "/ctx/secrets/public.txt"
        ]
    );
    // An ignored file changing does not invalidate the cache.
    std::fs::write(ctx.path().join("debug.log"), "more noise").unwrap();
    let out = build_ok(&b, ctx.path(), &[]);
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    // Outside the context, or ignored: clear errors, at the line.
    let fails = |dockerfile: &str| {
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let (code, _, err) = build(&b, ctx.path(), &[]);
        assert_eq!(code, 1, "{err}");
        err
    };
    let err = fails("FROM busybox\nCOPY ../etc/passwd /x\n");
    assert!(
        err.contains("Dockerfile:2") && err.contains("outside the build context"),
        "{err}"
    );
    let err = fails("FROM busybox\nCOPY debug.log /x\n");
    assert!(
        err.contains("debug.log") && err.contains(".dockerignore"),
        "{err}"
    );
    let err = fails("FROM busybox\nADD http://example.com/x /x\n");
    assert!(err.contains("offline") || err.contains("network"), "{err}");
}

#[test]
fn mistakes_are_reported_at_their_line_and_column() {
    let b = berth!();
    for (dockerfile, want) in [
        (
            "FROM busybox\nRUUN echo hi\n",
            "Dockerfile:2:1: unknown instruction RUUN (did you mean RUN?)",
        ),
        ("FROM busybox\nCOPY --form=x a b\n", "Dockerfile:2:6"),
        ("FROM busybox\nENV X=${Y\n", "Dockerfile:2:7"),
        ("RUN echo hi\n", "Dockerfile:1:1"),
        ("FROM nosuchimage\n", "no such image \"nosuchimage\""),
    ] {
        let ctx = context(&[("Dockerfile", dockerfile)]);
        let (code, out, err) = build(&b, ctx.path(), &[]);
        assert_eq!(code, 1, "{dockerfile}: {out}");
        assert!(err.contains(want), "{dockerfile}: {err}");
    }
    // A failing RUN shows its command and code; the steps before it are
    // cached for the next try.
    let ctx = context(&[(
        "Dockerfile",
        "FROM busybox\nRUN echo one > /one\nRUN exit 3\n",
    )]);
    let (code, _, err) = build(&b, ctx.path(), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"),
        "{err}"
    );
    let (_, out, _) = build(&b, ctx.path(), &[]);
    assert!(
        out.contains("Step 2/3 : RUN echo one > /one\n ---> Using cache"),
        "{out}"
    );
    // No build container is left behind.
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

#[test]
fn the_same_input_gives_the_same_digests() {
    let b = berth!();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY a.txt /\nRUN echo run > /b.txt\nLABEL a=1 b=2 c=3\n",
        ),
        ("a.txt", "a"),
    ]);
    let digest = |tag: &str| {
        b.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{.Metadata.ManifestDigest}}",
            tag,
        ])
    };
    let mut seen = Vec::new();
    for tag in ["one", "two"] {
        let out = b
            .cmd()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--network", "none", "--no-cache", "-t", tag])
            .arg(ctx.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen.push(digest(tag));
    }
    assert_eq!(seen[0], seen[1]);
    // The config and the manifest, ids and digests aside (the base layer is
    // the host's busybox).
    let inspect = b.ok(&["image", "inspect", "one"]);
    let ids = regex::Regex::new(r"sha256:[0-9a-f]{64}").unwrap();
    let size = regex::Regex::new(r#""Size": \d+"#).unwrap();
    let inspect = ids.replace_all(&inspect, "sha256:[digest]");
    insta::assert_snapshot!(
        "deterministic_inspect",
        size.replace_all(&inspect, r#""Size": [bytes]"#)
    );
    assert_eq!(
        b.ok(&["image", "inspect", "-f", "{{.Created}}", "one"]),
        "2023-11-14T22:13:20Z\n"
    );
}

#[test]
fn copy_into_the_workdir_and_into_directories_the_image_has() {
    let b = berth!();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM busybox\nWORKDIR /src\nCOPY f .\nCOPY f /etc/\nCOPY f /etc\nCMD [\"sh\", \"-c\", \"cat /src/f /etc/f; test -d /etc && echo dir\"]\n",
        ),
        ("f", "copied\n"),
    ]);
    build_ok(&b, ctx.path(), &["-t", "dest"]);
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "dest"]),
        "copied\ncopied\ndir\n"
    );
}
