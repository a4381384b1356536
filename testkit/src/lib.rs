//! Helpers shared by the course's tests.
//!
//! - [`require_root`]: kernel tests need root. Without it they print why they
//!   did not run and pass, except under `CI=true`, where a test that could not
//!   run is a failure: CI must never report green for something it skipped.
//! - [`probe`]: the program the tests run inside containers.
//! - [`leaks`]: checks that a test left no mounts or processes behind.

pub mod leaks;
pub mod probe;

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True under CI (`CI=true`), where skipping is failing.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns true when the test may go on. Without root it says so on stderr
/// and returns false (the test then returns early), or panics under CI.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    let why = format!(
        "{test}: not run: this test needs root (CAP_SYS_ADMIN for namespaces and mounts); run it with sudo"
    );
    if in_ci() {
        panic!("{why} — and CI=true, where a test that cannot run is a failure");
    }
    // Write to the real stderr, not through `eprintln!`, which the test
    // harness captures and hides for passing tests: a test that did not
    // run must say so where the person running the tests can see it.
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{why}");
    false
}

/// Starts a kernel test: `root_test!()` returns from the test early (after
/// saying why) when not root.
#[macro_export]
macro_rules! root_test {
    () => {
        if !$crate::require_root(module_path!()) {
            return;
        }
    };
}

/// The workspace root (where Cargo.toml with `[workspace]` is).
///
/// Found from the package directory cargo names when it runs the test, not
/// only from the one this crate was compiled in: cargo reuses a compiled
/// test when the same workspace is copied to another place (the grader
/// grades each submission in a new directory), and the old place may be
/// gone.
pub fn workspace() -> std::path::PathBuf {
    let is_root = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
    };
    if let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR")
        && let Some(root) = std::path::Path::new(&dir).ancestors().find(|d| is_root(d))
    {
        return root.to_path_buf();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The uid and gid of `nobody`, which the rootless tests run as.
pub const NOBODY: u32 = 65534;

/// A command that runs `program` as `nobody` (through `setpriv`, with a
/// clean environment). The program is first copied into a fresh directory
/// any user may enter, since the workspace may live somewhere private (such
/// as under /root). Keep the returned directory alive while it runs.
pub fn as_nobody(program: &std::path::Path) -> (tempfile::TempDir, std::process::Command) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("testkit-bin-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join(program.file_name().unwrap());
    std::fs::copy(program, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args(["--clear-groups", "--reset-env"])
        .arg(copy);
    (dir, cmd)
}
