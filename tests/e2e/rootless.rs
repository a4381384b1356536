//! Rootless: an ordinary user runs containers in a user namespace that maps
//! their own uid to root inside.

use crate::support::Berth;

#[test]
fn an_unprivileged_user_runs_a_container() {
    let Some(b) = Berth::new(module_path!()) else {
        return;
    };
    // berth runs as nobody (uid 65534) with an engine root nobody owns.
    for d in [b.root(), b.runroot()] {
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(testkit::NOBODY), Some(testkit::NOBODY)).unwrap();
    }
    std::os::unix::fs::chown(b.dir.path(), Some(testkit::NOBODY), Some(testkit::NOBODY)).unwrap();
    let (_bin, mut nobody_cmd) =
        testkit::as_nobody(std::path::Path::new(env!("CARGO_BIN_EXE_berth")));
    let out = nobody_cmd
        .arg("--root")
        .arg(b.root())
        .arg("--runroot")
        .arg(b.runroot())
        .args([
            "run",
            "--rm",
            "--hostname",
            "rootless",
            "busybox",
            "sh",
            "-c",
            "id; hostname; cat /proc/self/uid_map; touch /owned && echo wrote",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    // No supplementary groups: an unprivileged user's namespace must deny
    // setgroups, so the list stays empty.
    assert_eq!(lines[0], "uid=0(root) gid=0(root)");
    assert_eq!(lines[1], "rootless");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        vec!["0", "65534", "1"]
    );
    assert_eq!(lines[3], "wrote");
}
