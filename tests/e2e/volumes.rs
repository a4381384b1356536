//! Lab 03 through berth: bind mounts, named and anonymous volumes, tmpfs,
//! `--mount`, `--volumes-from`, `--read-only`, and the clean-up commands.

use std::os::unix::fs::MetadataExt;

use crate::berth;

#[test]
fn a_bind_mount_shows_host_files_and_keeps_owners() {
    let b = berth!();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("from-host"), "hello\n").unwrap();
    let spec = format!("{}:/mnt", host.path().display());
    let out = b.ok(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cat /mnt/from-host; echo made > /mnt/by-container",
    ]);
    assert_eq!(out, "hello\n");
    // Written by root in the container, owned by root on the host.
    let meta = std::fs::metadata(host.path().join("by-container")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    // Read-only: the write fails with EROFS.
    let spec = format!("{}:/mnt:ro", host.path().display());
    let (code, out, _) = b.run(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "touch /mnt/x 2>&1",
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(!host.path().join("x").exists());
}

#[test]
fn ten_containers_write_into_one_bind_mount() {
    let b = berth!();
    let host = tempfile::tempdir().unwrap();
    let spec = format!("{}:/shared", host.path().display());
    std::thread::scope(|s| {
        for i in 0..10 {
            let (b, spec) = (&b, &spec);
            s.spawn(move || {
                let line = format!("echo container-{i} >> /shared/log");
                b.ok(&["run", "--rm", "-v", spec, "busybox", "sh", "-c", &line]);
            });
        }
    });
    let log = std::fs::read_to_string(host.path().join("log")).unwrap();
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort();
    let want: Vec<String> = (0..10).map(|i| format!("container-{i}")).collect();
    let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(lines, want);
}

#[test]
fn a_named_volume_outlives_its_container_and_is_shared() {
    let b = berth!();
    b.ok(&[
        "run",
        "--rm",
        "-v",
        "shared:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    // The container is gone; the volume and its content are not.
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "shared\n");
    // Two containers at once see each other's writes.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "writer",
        "-v",
        "shared:/data",
        "busybox",
        "sh",
        "-c",
        "echo live > /data/live; sleep 30",
    ]);
    let mut seen = String::new();
    for _ in 0..100 {
        seen = b.ok(&[
            "run",
            "--rm",
            "-v",
            "shared:/data",
            "busybox",
            "sh",
            "-c",
            "cat /data/f /data/live 2>/dev/null; true",
        ]);
        if seen == "kept\nlive\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(seen, "kept\nlive\n");
    // In use (even once stopped): refused, and the volume stays.
    let (code, _, err) = b.run(&["volume", "rm", "shared"]);
    assert_eq!(code, 1);
    assert!(err.contains("volume is in use"), "{err}");
    b.ok(&["rm", "-f", "writer"]);
    assert_eq!(b.ok(&["volume", "rm", "shared"]), "shared\n");
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn a_new_volume_is_filled_from_the_image() {
    let b = berth!();
    // /etc of the image appears in an empty new volume mounted there...
    let out = b.ok(&[
        "run",
        "--rm",
        "-v",
        "etc:/etc",
        "busybox",
        "sh",
        "-c",
        "grep -c root /etc/passwd",
    ]);
    assert_eq!(out, "1\n");
    let mountpoint = b.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", "etc"]);
    assert!(
        std::path::Path::new(mountpoint.trim())
            .join("passwd")
            .is_file()
    );
    // ...but a volume with content keeps its own.
    b.ok(&["volume", "create", "own"]);
    let out = b.ok(&[
        "run",
        "--rm",
        "-v",
        "own:/etc",
        "busybox",
        "sh",
        "-c",
        "ls /etc | wc -l",
    ]);
    assert_eq!(
        out.trim(),
        "3",
        "only the engine's hosts, hostname and resolv.conf"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&b.ok(&["volume", "inspect", "own"])).unwrap();
    for key in ["Name", "Driver", "Mountpoint", "CreatedAt", "Labels"] {
        assert!(inspect[0].get(key).is_some(), "{key} in {inspect}");
    }
}

#[test]
fn tmpfs_content_goes_with_the_container() {
    let b = berth!();
    b.ok(&[
        "run",
        "--name",
        "t",
        "--tmpfs",
        "/scratch:size=1m",
        "busybox",
        "sh",
        "-c",
        "ls /scratch; echo x > /scratch/f; grep /scratch /proc/mounts",
    ]);
    let first = b.ok(&["logs", "t"]);
    assert!(
        first.contains("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec"),
        "{first}"
    );
    assert!(first.contains("size=1024k"), "{first}");
    // Started again, the tmpfs is new and empty: `ls` prints nothing.
    b.ok(&["start", "-a", "t"]);
    let lines = b.ok(&["logs", "t"]);
    assert_eq!(lines.matches("tmpfs /scratch").count(), 2, "{lines}");
    assert!(
        !lines.contains("\nf\n") && !lines.starts_with("f\n"),
        "{lines}"
    );
}

#[test]
fn read_only_root_with_writable_tmpfs_and_volume() {
    let b = berth!();
    let out = b.ok(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--mount",
        "type=volume,source=rw,target=/data",
        "busybox",
        "sh",
        "-c",
        "touch /x 2>&1; touch /tmp/ok && echo tmp-ok; touch /data/ok && echo vol-ok",
    ]);
    assert_eq!(out, "touch: /x: Read-only file system\ntmp-ok\nvol-ok\n");
    // inspect lists the mounts as Docker does.
    b.ok(&[
        "create",
        "--name",
        "m",
        "--tmpfs",
        "/tmp",
        "-v",
        "rw:/data:ro",
        "busybox",
        "true",
    ]);
    let mounts = b.inspect("m", "{{json .Mounts}}");
    let mounts: serde_json::Value = serde_json::from_str(&mounts).unwrap();
    assert_eq!(mounts[1]["Type"], "tmpfs", "{mounts}");
    assert_eq!(mounts[0]["Type"], "volume", "{mounts}");
    assert_eq!(mounts[0]["Name"], "rw", "{mounts}");
    assert_eq!(mounts[0]["RW"], false, "{mounts}");
    assert!(
        mounts[0]["Source"]
            .as_str()
            .unwrap()
            .ends_with("/volumes/rw/_data")
    );
}

#[test]
fn volumes_from_and_a_backup_to_tar() {
    let b = berth!();
    b.ok(&[
        "run",
        "--name",
        "db",
        "-v",
        "/data",
        "busybox",
        "sh",
        "-c",
        "echo row1 > /data/table",
    ]);
    let backup = tempfile::tempdir().unwrap();
    let spec = format!("{}:/backup", backup.path().display());
    b.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "db",
        "-v",
        &spec,
        "busybox",
        "tar",
        "cf",
        "/backup/db.tar",
        "/data",
    ]);
    assert!(backup.path().join("db.tar").metadata().unwrap().len() > 0);
    // Restore into a fresh container's volume.
    b.ok(&["run", "--name", "db2", "-v", "/data", "busybox", "true"]);
    let out = b.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "db2",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cd / && tar xf /backup/db.tar && cat /data/table",
    ]);
    assert_eq!(out, "row1\n");
    // :ro makes the borrowed volumes read-only.
    let (code, out, _) = b.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "db:ro",
        "busybox",
        "sh",
        "-c",
        "touch /data/x 2>&1",
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("Read-only"), "{out}");
    // rm -v takes the anonymous volume with it.
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    b.ok(&["rm", "-v", "db", "db2"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn bad_volume_flags_say_what_to_do_and_make_nothing() {
    let b = berth!();
    b.ok(&["run", "--rm", "busybox", "true"]); // the image exists already
    let cases = [
        vec!["-v", "./data:/x"],
        vec!["-v", "data/x:/y"],
        vec!["-v", "bad name:/x"],
        vec!["-v", "vol:relative"],
        vec!["--tmpfs", "/t:size=lots"],
        vec!["--mount", "type=bind,source=/does/not/exist,target=/x"],
        vec!["--mount", "type=volume,target=/x,colour=red"],
        vec!["-v", "one:/x", "-v", "two:/x"],
        vec!["--volumes-from", "nosuch"],
    ];
    let mut report = String::new();
    for args in cases {
        let mut full = vec!["run", "--rm"];
        full.extend(args.iter().copied());
        full.extend(["busybox", "true"]);
        let (code, _, err) = b.run(&full);
        assert_ne!(code, 0, "{args:?}");
        report.push_str(&format!("{}\n  {}\n", args.join(" "), err.trim()));
    }
    insta::assert_snapshot!("bad_volume_flags", report);
    // A failure after the volume was made takes the volume back.
    let (code, _, _) = b.run(&[
        "run",
        "--rm",
        "-v",
        "fresh:/data",
        "--ipc",
        "container:nosuch",
        "busybox",
        "true",
    ]);
    assert_ne!(code, 0);
    assert_eq!(
        b.ok(&["volume", "ls", "-q"]),
        "",
        "no volume is left half-made"
    );
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

#[test]
fn system_df_and_prunes_account_for_everything() {
    let b = berth!();
    b.ok(&[
        "run",
        "--name",
        "stopped",
        "-v",
        "/anon",
        "busybox",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /big",
    ]);
    b.ok(&["volume", "create", "named"]);
    let df = b.ok(&["system", "df"]);
    let row = |kind: &str| -> Vec<String> {
        df.lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("{kind} in {df}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(&row("Images")[1..3], ["1", "1"], "{df}");
    assert_eq!(&row("Containers")[1..3], ["1", "0"], "{df}");
    assert_eq!(row("Containers")[3], "300kB", "{df}");
    assert_eq!(&row("Local")[2..4], ["2", "1"], "{df}");
    // container prune removes the stopped container; volume prune then
    // takes its anonymous volume but keeps the named one.
    let out = b.ok(&["container", "prune", "-f"]);
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert!(out.contains("Total reclaimed space: 300kB"), "{out}");
    let out = b.ok(&["volume", "prune", "-f"]);
    assert!(out.contains("Deleted Volumes:"), "{out}");
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "named\n");
    // system prune -a --volumes -f: the unused image goes too.
    b.ok(&["system", "prune", "-a", "--volumes", "-f"]);
    let df = b.ok(&["system", "df"]);
    assert!(df.contains("Images          0"), "{df}");
    // Without -f, a prune asks and a "no" keeps everything.
    b.ok(&["create", "--name", "kept", "busybox", "true"]);
    let out = b
        .cmd()
        .args(["container", "prune"])
        .write_stdin("n\n")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("Are you sure"));
    assert_eq!(b.ok(&["ps", "-aq"]).lines().count(), 1);
}
