//! Lab 05 through berth: `push`, `pull`, `login` and `logout` against a real
//! registry (Debian's `docker-registry`, the CNCF distribution registry),
//! started on port 5000 of the test engine's own network namespace.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::berth;
use crate::support::Berth;

/// A registry process, killed when dropped.
struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry in `b`'s network namespace; with `users`, it asks
    /// for HTTP basic auth against an htpasswd file of them.
    fn start(b: &Berth, users: &[(&str, &str)]) -> Registry {
        let which = std::process::Command::new("sh")
            .args([
                "-c",
                "command -v docker-registry && command -v htpasswd && command -v curl",
            ])
            .output()
            .unwrap();
        assert!(
            which.status.success(),
            "these tests need docker-registry, htpasswd and curl: run `cargo xtask setup` (or apt-get install docker-registry apache2-utils curl)"
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-registry-")
            .tempdir()
            .unwrap();
        let mut auth = String::new();
        if !users.is_empty() {
            let mut lines = String::new();
            for (user, password) in users {
                let out = std::process::Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .unwrap();
                lines.push_str(String::from_utf8_lossy(&out.stdout).trim());
                lines.push('\n');
            }
            std::fs::write(dir.path().join("htpasswd"), lines).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = b
            .on_host("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = b
                .on_host("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "http://127.0.0.1:5000/v2/",
                ])
                .output()
                .unwrap();
            let code = String::from_utf8_lossy(&up.stdout).to_string();
            if code == "200" || code == "401" {
                return registry;
            }
            assert!(
                Instant::now() < deadline,
                "the registry did not start (last answer {code:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pushed_digest(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("1: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in {out}"))
        .to_string()
}

#[test]
fn push_remove_pull_and_run() {
    let b = berth!();
    let _registry = Registry::start(&b, &[]);
    let id = b.make_image("localhost:5000/app:1", &[]);
    let out = b.ok(&["push", "localhost:5000/app:1"]);
    assert!(
        out.starts_with("The push refers to repository [localhost:5000/app]\n"),
        "{out}"
    );
    assert_eq!(out.matches(": Pushed").count(), 2, "{out}");
    let digest = pushed_digest(&out);
    // Everything is there already the second time.
    let again = b.ok(&["push", "localhost:5000/app:1"]);
    assert_eq!(
        again.matches(": Layer already exists").count(),
        2,
        "{again}"
    );
    assert_eq!(pushed_digest(&again), digest);
    // Another repository of the same registry mounts the layers.
    b.ok(&["tag", "localhost:5000/app:1", "localhost:5000/other:1"]);
    let other = b.ok(&["push", "localhost:5000/other:1"]);
    assert_eq!(other.matches(": Mounted from app").count(), 2, "{other}");

    // Gone locally, back from the registry: the same image.
    b.ok(&["rmi", "localhost:5000/other:1"]);
    b.ok(&["rmi", "localhost:5000/app:1"]);
    b.ok(&["rmi", "busybox"]);
    assert_eq!(b.ok(&["images", "-q"]), "");
    let out = b.ok(&["pull", "localhost:5000/app:1"]);
    assert!(out.starts_with("1: Pulling from app\n"), "{out}");
    assert_eq!(out.matches(": Pull complete").count(), 2, "{out}");
    assert!(out.contains(&format!("Digest: {digest}\n")), "{out}");
    assert!(out.ends_with("localhost:5000/app:1\n"), "{out}");
    assert_eq!(
        b.ok(&["images", "-q", "--no-trunc", "localhost:5000/app:1"])
            .trim(),
        id
    );
    assert_eq!(
        b.ok(&[
            "image",
            "inspect",
            "-f",
            "{{.Metadata.ManifestDigest}}",
            "localhost:5000/app:1"
        ])
        .trim(),
        digest
    );
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "localhost:5000/app:1"]),
        "made\n"
    );
    // By digest, and again: nothing to download.
    let out = b.ok(&["pull", &format!("localhost:5000/app@{digest}")]);
    assert!(out.contains("Image is up to date"), "{out}");
    // `run` pulls an image it does not have, and says so on standard
    // error: standard output stays the container's.
    b.ok(&["rmi", "localhost:5000/app:1"]);
    let app = ["run", "--rm", "--network", "none", "localhost:5000/app:1"];
    let (code, out, err) = b.run(&app);
    assert_eq!((code, out.as_str()), (0, "made\n"), "{err}");
    assert!(
        err.starts_with(
            "Unable to find image 'localhost:5000/app:1' locally\n1: Pulling from app\n"
        ),
        "{err}"
    );
    assert!(err.contains(&format!("Digest: {digest}\n")), "{err}");
    // Now it has it: nothing more is said.
    assert_eq!(b.run(&app).2, "");
    // --pull always asks the registry every time.
    let (code, _, err) = b.run(&["create", "--pull", "always", "localhost:5000/app:1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("Status: Image is up to date for localhost:5000/app:1"),
        "{err}"
    );

    // A tag the registry does not have.
    let (code, _, err) = b.run(&["pull", "localhost:5000/app:nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("manifest unknown") && err.contains("app:nope"),
        "{err}"
    );
    // A registry that is not there.
    let (code, _, err) = b.run(&["pull", "localhost:5999/app:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("localhost:5999"), "{err}");
}

#[test]
fn login_keeps_credentials_for_push_and_pull() {
    let b = berth!();
    let _registry = Registry::start(&b, &[("student", "secret")]);
    b.make_image("localhost:5000/app:1", &[]);
    let (code, _, err) = b.run(&["push", "localhost:5000/app:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("berth login localhost:5000"), "{err}");
    // A wrong password is refused and not kept.
    let (code, _, err) = b.run(&["login", "-u", "student", "-p", "wrong", "localhost:5000"]);
    assert_eq!(code, 1, "{err}");
    let config = b.dir.path().join("config/config.json");
    assert!(
        !config.exists()
            || !std::fs::read_to_string(&config)
                .unwrap()
                .contains("localhost:5000")
    );
    let out = b
        .cmd()
        .args([
            "login",
            "-u",
            "student",
            "--password-stdin",
            "localhost:5000",
        ])
        .write_stdin("secret\n")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = b.ok(&["push", "localhost:5000/app:1"]);
    let digest = pushed_digest(&out);
    b.ok(&["rmi", "localhost:5000/app:1"]);
    let out = b.ok(&["pull", "localhost:5000/app:1"]);
    assert!(out.contains(&digest), "{out}");
    assert_eq!(
        b.ok(&["logout", "localhost:5000"]),
        "Removing login credentials for localhost:5000\n"
    );
    let (code, _, err) = b.run(&["pull", "localhost:5000/app:1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unauthorized") || err.contains("login"),
        "{err}"
    );
}
