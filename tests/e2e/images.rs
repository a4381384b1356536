//! Lab 05 through berth: the image commands on images the engine makes
//! itself (the host's busybox and `commit`).

use crate::berth;

/// Replaces ids, digests and relative times so a snapshot shows the shape.
fn redact(text: &str) -> String {
    let ids = regex::Regex::new(r"(sha256:)?[0-9a-f]{64}|\b[0-9a-f]{12}\b").unwrap();
    let ago = regex::Regex::new(
        r"(Less than a second|About a minute|About an hour|\d+ (seconds?|minutes|hours|days)) ago",
    )
    .unwrap();
    let size = regex::Regex::new(r"\b\d+(\.\d+)?(B|kB|MB)\b").unwrap();
    // The host's busybox is wherever the host keeps it.
    let host = regex::Regex::new(r"from the host \(/[^ ,]*").unwrap();
    let text = host.replace_all(text, "from the host (…");
    let text = ids.replace_all(&text, "[id]");
    let text = ago.replace_all(&text, "[time] ago");
    let text = size.replace_all(&text, "[size]");
    // Column widths follow the values redacted above.
    let gaps = regex::Regex::new(r" {2,}").unwrap();
    gaps.replace_all(&text, "   ").to_string()
}

/// `app:1`: busybox plus a file, with a command, a port and a message.
const APP: &[&str] = &["-c", "EXPOSE 8080", "-m", "add a file"];

#[test]
fn images_lists_every_name_and_formats_like_docker() {
    let b = berth!();
    b.make_image("app:1", APP);
    b.ok(&["tag", "app:1", "localhost:5000/team/app:v1"]);
    let out = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    insta::assert_snapshot!("images_format", redact(&lines.join("\n")));
    // One image, two names, one id.
    let app_id = b.ok(&["images", "-q", "app"]);
    assert_eq!(app_id.lines().count(), 1, "{app_id}");
    assert_eq!(b.ok(&["images", "-q", "localhost:5000/*"]), app_id);
    assert_eq!(
        b.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Config.Cmd}} {{.Config.ExposedPorts}}",
            "app:1"
        ]),
        "[cat /made] map[8080/tcp:map[]]\n"
    );
    // `inspect` finds images as well as containers.
    let id = b.ok(&["inspect", "-f", "{{.Id}}", "app:1"]);
    assert!(
        id.starts_with("sha256:") && id.contains(app_id.trim()),
        "{id}"
    );
    let table = b.ok(&["images"]);
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    );
    // A bad filter names the ones that work.
    let (code, _, err) = b.run(&["images", "--filter", "label=x"]);
    assert_eq!(code, 1);
    assert!(err.contains("dangling=true|false"), "{err}");
}

#[test]
fn history_shows_each_layer_and_what_made_it() {
    let b = berth!();
    b.make_image("app:1", APP);
    let out = b.ok(&["history", "app:1"]);
    insta::assert_snapshot!("history", redact(&out));
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].contains("add a file"), "{out}");
    assert!(rows[0].contains("sh -c echo made > /made"), "{out}");
    assert!(rows[1].contains("<missing>"), "{out}");
    let quiet = b.ok(&["history", "-q", "app:1"]);
    assert_eq!(quiet.lines().nth(1), Some("<missing>"));
}

#[test]
fn rmi_untags_then_deletes_and_keeps_images_in_use() {
    let b = berth!();
    b.make_image("app:1", APP);
    b.ok(&["tag", "app:1", "app:2"]);
    // One of two names: only the name goes.
    assert_eq!(b.ok(&["rmi", "app:2"]), "Untagged: app:2\n");
    assert!(b.ok(&["images", "-q", "app:1"]).len() > 1);
    // In use by a container: refused, then forced names go and the image
    // stays, unnamed, for the container.
    b.ok(&["create", "--network", "none", "--name", "user", "app:1"]);
    let (code, _, err) = b.run(&["rmi", "app:1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("container") && err.contains("must force"),
        "{err}"
    );
    assert_eq!(b.ok(&["rmi", "-f", "app:1"]), "Untagged: app:1\n");
    assert_eq!(
        b.ok(&["images", "--filter", "dangling=true", "-q"])
            .lines()
            .count(),
        1
    );
    assert_eq!(b.ok(&["start", "-a", "user"]), "made\n");
    // Once the container is gone, prune deletes the dangling image and its
    // layer, but not busybox's layer, which busybox still has.
    b.ok(&["rm", "user"]);
    let layers_before = std::fs::read_dir(b.root().join("layers")).unwrap().count();
    let out = b.ok(&["image", "prune", "-f"]);
    assert!(
        out.starts_with("Deleted Images:\ndeleted: sha256:"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(b.root().join("layers")).unwrap().count(),
        layers_before - 1
    );
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "busybox", "echo", "ok"]),
        "ok\n"
    );
    // By name, the last name: untagged and deleted.
    let out = b.ok(&["rmi", "busybox"]);
    assert!(
        out.starts_with("Untagged: busybox:latest\nDeleted: sha256:"),
        "{out}"
    );
    assert_eq!(b.ok(&["images", "-q"]), "");
    let (code, _, err) = b.run(&["rmi", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such image: nosuch"), "{err}");
}

#[test]
fn save_load_export_and_import_move_images_as_files() {
    let b = berth!();
    b.make_image("app:1", APP);
    let dir = tempfile::Builder::new()
        .prefix("berth-e2e-files-")
        .tempdir()
        .unwrap();
    let archive = dir.path().join("app.tar");
    let id = b.ok(&["images", "-q", "--no-trunc", "app:1"]);
    b.ok(&["save", "-o", archive.to_str().unwrap(), "app:1"]);
    // Gone, then back from the file: the same id, name and content.
    b.ok(&["rmi", "app:1"]);
    assert_eq!(
        b.ok(&["load", "-i", archive.to_str().unwrap()]),
        "Loaded image: app:1\n"
    );
    assert_eq!(b.ok(&["images", "-q", "--no-trunc", "app:1"]), id);
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "app:1"]),
        "made\n"
    );
    // The same images give the same archive.
    let again = dir.path().join("again.tar");
    b.ok(&["save", "-o", again.to_str().unwrap(), "app:1"]);
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        std::fs::read(&again).unwrap()
    );
    // A damaged archive is refused and changes nothing.
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let before = b.ok(&["images", "-a", "-q"]);
    let (code, _, err) = b.run(&["load", "-i", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(b.ok(&["images", "-a", "-q"]), before);

    // export: the container's filesystem, its changes included, with
    // BusyBox's hard links kept as links; import makes it an image.
    b.ok(&[
        "run",
        "--network",
        "none",
        "--name",
        "ex",
        "app:1",
        "sh",
        "-c",
        "echo changed > /made; rm /bin/vi",
    ]);
    let fs = dir.path().join("fs.tar");
    b.ok(&["export", "-o", fs.to_str().unwrap(), "ex"]);
    let list = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&fs)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        list.contains(" made\n") && !list.contains("bin/vi\n"),
        "{list}"
    );
    assert!(
        list.lines().filter(|l| l.starts_with('h')).count() > 10,
        "{list}"
    );
    assert!(std::fs::metadata(&fs).unwrap().len() < 8 << 20);
    let out = b.ok(&[
        "import",
        "-c",
        r#"CMD ["cat", "/made"]"#,
        "-m",
        "from ex",
        fs.to_str().unwrap(),
        "flat:1",
    ]);
    assert!(out.starts_with("sha256:"), "{out}");
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "flat:1"]),
        "changed\n"
    );
    assert_eq!(
        b.ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", "flat:1"]),
        "1\n"
    );
    let (code, _, err) = b.run(&["import", dir.path().join("nope.tar").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("nope.tar"), "{err}");
}

/// Runs a host tool, insisting on success.
fn tool(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (cargo xtask setup installs it)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_image_made_by_umoci_and_skopeo_loads_and_runs() {
    let b = berth!();
    let dir = tempfile::Builder::new()
        .prefix("berth-e2e-umoci-")
        .tempdir()
        .unwrap();
    let layout = dir.path().join("layout");
    let bundle = dir.path().join("bundle");
    let (l, bd) = (layout.to_str().unwrap(), bundle.to_str().unwrap());
    tool("umoci", &["init", "--layout", l]);
    tool("umoci", &["new", "--image", &format!("{l}:t")]);
    tool("umoci", &["unpack", "--image", &format!("{l}:t"), bd]);
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    std::fs::write(rootfs.join("hello.txt"), "made by umoci\n").unwrap();
    tool("umoci", &["repack", "--image", &format!("{l}:t"), bd]);
    tool(
        "umoci",
        &[
            "config",
            "--image",
            &format!("{l}:t"),
            "--config.cmd",
            "/bin/busybox",
            "--config.cmd",
            "cat",
            "--config.cmd",
            "/hello.txt",
            "--config.env",
            "FROM=umoci",
        ],
    );
    let archive = dir.path().join("app.tar");
    tool(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("oci:{l}:t"),
            &format!("docker-archive:{}:umoci/app:1", archive.display()),
        ],
    );
    assert_eq!(
        b.ok(&["load", "-i", archive.to_str().unwrap()]),
        "Loaded image: umoci/app:1\n"
    );
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "umoci/app:1"]),
        "made by umoci\n"
    );
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "umoci/app:1",
            "/bin/busybox",
            "sh",
            "-c",
            "echo $FROM"
        ]),
        "umoci\n"
    );
    // And what berth saves, skopeo reads: the same config, byte for byte.
    let saved = dir.path().join("saved.tar");
    b.ok(&["save", "-o", saved.to_str().unwrap(), "umoci/app:1"]);
    let config = tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--raw",
            &format!("docker-archive:{}", saved.display()),
        ],
    );
    let id = b.ok(&["image", "inspect", "-f", "{{.Id}}", "umoci/app:1"]);
    let digest = format!(
        "sha256:{}",
        tool(
            "sh",
            &[
                "-c",
                &format!(
                    "printf %s '{}' | sha256sum | cut -d' ' -f1",
                    config.replace('\'', "'\\''")
                )
            ]
        )
        .trim()
    );
    assert_eq!(id.trim(), digest);
}
