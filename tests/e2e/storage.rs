//! Lab 03 through berth: containers on overlays of their image, `diff`,
//! `commit`, and the copying driver.

use crate::berth;
use crate::support::Berth;

/// Both drivers: every storage test runs with each.
const DRIVERS: [&str; 2] = ["overlay", "vfs"];

fn with_driver(b: &Berth, driver: &str, args: &[&str]) -> String {
    let mut full = vec!["--storage-driver", driver];
    full.extend_from_slice(args);
    b.ok(&full)
}

#[test]
fn changes_stay_in_their_container() {
    for driver in DRIVERS {
        let b = berth!();
        with_driver(
            &b,
            driver,
            &[
                "run",
                "--name",
                "writer",
                "busybox",
                "sh",
                "-c",
                "echo mine > /etc/note; rm -f /bin/vi",
            ],
        );
        assert_eq!(b.inspect("writer", "{{.GraphDriver.Name}}"), driver);
        // A second container of the same image sees the image, not the
        // first container's changes.
        let out = with_driver(
            &b,
            driver,
            &[
                "run",
                "--rm",
                "busybox",
                "sh",
                "-c",
                "cat /etc/note 2>&1; ls /bin/vi",
            ],
        );
        assert_eq!(
            out, "cat: can't open '/etc/note': No such file or directory\n/bin/vi\n",
            "{driver}"
        );
        // The first container, started again, still has them.
        let out = b.ok(&["start", "-a", "writer"]);
        assert_eq!(out, "", "{driver}");
        let out = with_driver(&b, driver, &["diff", "writer"]);
        insta::assert_snapshot!(format!("diff_{driver}"), out);
    }
}

#[test]
fn an_overlay_start_copies_nothing() {
    let b = berth!();
    b.ok(&["create", "--name", "idle", "busybox", "true"]);
    // The container's own directory holds only its (empty) writable layer:
    // some kilobytes of state and empty directories, while the image's
    // busybox alone is about a megabyte.
    let dir = b
        .root()
        .join("containers")
        .join(b.inspect("idle", "{{.Id}}"));
    let size = dir_size(&dir);
    let image = dir_size(&b.root().join("layers"));
    assert!(size < 256 * 1024, "container dir is {size} bytes");
    assert!(image > 512 * 1024, "layers are {image} bytes");
    b.ok(&["start", "-a", "idle"]);
    assert!(dir_size(&dir) < 256 * 1024);
    assert_eq!(b.inspect("idle", "{{.Driver}}"), "overlay");
    // The choice is reported, with its reason.
    let info = b.ok(&["info"]);
    assert!(
        info.contains("Storage Driver: overlay\n Why: overlayfs works here"),
        "{info}"
    );
    let info = b.ok(&["--storage-driver", "vfs", "info"]);
    assert!(
        info.contains("Storage Driver: vfs\n Why: vfs was asked for"),
        "{info}"
    );
}

fn dir_size(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += dir_size(&entry.path());
        }
    }
    total
}

#[test]
fn commit_makes_an_image_with_the_changes() {
    for driver in DRIVERS {
        let b = berth!();
        with_driver(
            &b,
            driver,
            &[
                "run",
                "--name",
                "base",
                "-e",
                "GREETING=hello",
                "-w",
                "/srv",
                "busybox",
                "sh",
                "-c",
                "mkdir -p /srv && echo committed > /srv/file && rm /bin/vi",
            ],
        );
        let id = with_driver(
            &b,
            driver,
            &[
                "commit",
                "-a",
                "Ada <ada@example.org>",
                "-m",
                "add a file",
                "--change",
                "CMD [\"cat\", \"file\"]",
                "--change",
                "EXPOSE 8080",
                "base",
                "app:v1",
            ],
        );
        assert!(id.trim().starts_with("sha256:"), "{id}");
        // The new image runs with the file, without vi, in /srv, with the
        // environment carried forward and the new command.
        let out = with_driver(&b, driver, &["run", "--rm", "app:v1"]);
        assert_eq!(out, "committed\n", "{driver}");
        let out = with_driver(
            &b,
            driver,
            &[
                "run",
                "--rm",
                "app:v1",
                "sh",
                "-c",
                "echo $GREETING; pwd; ls /bin/vi 2>&1; true",
            ],
        );
        assert_eq!(
            out, "hello\n/srv\nls: /bin/vi: No such file or directory\n",
            "{driver}"
        );
    }
}

#[test]
fn commit_refuses_bad_input_and_keeps_nothing() {
    let b = berth!();
    b.ok(&["create", "--name", "c", "busybox", "true"]);
    let (code, _, err) = b.run(&["commit", "--change", "RUN make", "c", "x:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("not an instruction commit can apply"), "{err}");
    let (code, _, err) = b.run(&["commit", "c", "Bad:Name"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid reference format"), "{err}");
    let (code, _, err) = b.run(&["commit", "nosuch", "x:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such container"), "{err}");
    let (code, _, _) = b.run(&["run", "--rm", "x:1", "true"]);
    assert_ne!(code, 0, "no image was made");
}

#[test]
fn commit_pauses_a_running_container() {
    let b = berth!();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /count; done",
    ]);
    b.wait_for("busy", "{{.State.Status}}", "running", 10);
    let id = b.ok(&["commit", "busy", "snap:1"]);
    assert!(id.starts_with("sha256:"));
    // It runs again after the commit.
    assert_eq!(b.inspect("busy", "{{.State.Status}}"), "running");
    let out = b.ok(&[
        "run",
        "--rm",
        "snap:1",
        "sh",
        "-c",
        "test -f /count && echo has-count",
    ]);
    assert_eq!(out, "has-count\n");
    b.ok(&["rm", "-f", "busy"]);
}

#[test]
fn the_classic_option_string_mounts_the_same_root() {
    let b = berth!();
    // mount(2) with `lowerdir=`, as kernels before 6.8 need; the image's
    // layers are named relative to their directory.
    let out = b
        .cmd()
        .env("BERTH_OVERLAY_API", "legacy")
        .args([
            "run",
            "--name",
            "old",
            "busybox",
            "sh",
            "-c",
            "grep ' / ' /proc/mounts; echo x > /new",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("overlay / overlay") && text.contains("lowerdir="),
        "{text}"
    );
    assert!(!text.contains("lowerdir+"), "{text}");
    assert_eq!(b.ok(&["diff", "old"]), "A /new\n");
}
