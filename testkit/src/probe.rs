//! The probe: a statically linked program (the `berth-probe` crate) that the
//! tests copy into a container's root filesystem and run there. It prints, as
//! one JSON object, what the process sees: pid, hostname, id maps, mounts,
//! namespaces, cgroup limits, interfaces, routes, resolver, capabilities...
//!
//! [`probe_path`] finds or builds the binary; [`parse`] reads its output.
//!
//! ```no_run
//! let probe = testkit::probe::probe_path();
//! let output = std::process::Command::new(&probe).arg("pid").output().unwrap();
//! let report = testkit::probe::parse(&output.stdout);
//! assert!(report["pid"].is_u64());
//! ```

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Names a prebuilt probe to use instead of building one.
pub const PROBE_ENV: &str = "BERTH_PROBE";

/// The target the probe is built for. Naming it explicitly keeps
/// `RUSTFLAGS` (and so `crt-static`) away from build scripts and proc
/// macros, which must stay dynamically linked host programs.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Returns the path of a statically linked probe, which runs in any root
/// filesystem (a busybox image has no glibc to load).
///
/// If `BERTH_PROBE` names an existing file, that file is used. Otherwise the
/// probe is built, once per test process, with `cargo build --release
/// --target x86_64-unknown-linux-gnu` and `-C target-feature=+crt-static`,
/// into `<workspace>/target/probe` so that the build does not contend for the
/// workspace's own target directory, which the running `cargo test` holds.
/// An exclusive lock on a file there serializes test binaries that build
/// it at the same time.
///
/// # Panics
///
/// If the build fails, with cargo's output in the message.
pub fn probe_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| match std::env::var_os(PROBE_ENV).map(PathBuf::from) {
        Some(path) if path.is_file() => path,
        _ => build(),
    })
    .clone()
}

/// Parses the probe's standard output into JSON.
///
/// # Panics
///
/// If the output is not one JSON value, with the raw output in the message.
#[track_caller]
pub fn parse(stdout: &[u8]) -> serde_json::Value {
    serde_json::from_slice(stdout).unwrap_or_else(|err| {
        panic!(
            "probe output is not JSON ({err}); it was:\n{}",
            String::from_utf8_lossy(stdout)
        )
    })
}

/// The workspace root (see [`crate::workspace`]).
fn workspace_root() -> PathBuf {
    crate::workspace()
}

/// Builds the static probe and returns its path.
fn build() -> PathBuf {
    let root = &workspace_root();
    let target_dir = root.join("target").join("probe");
    fs::create_dir_all(&target_dir)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", target_dir.display()));

    // Held until the end of this function; closing the file releases it.
    let lock_path = target_dir.join("build.lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", lock_path.display()));
    lock_exclusive(&lock)
        .unwrap_or_else(|err| panic!("cannot lock {}: {err}", lock_path.display()));

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let output = Command::new(&cargo)
        .args(["build", "--quiet", "-p", "berth-probe", "--release"])
        .args(["--target", TARGET])
        .current_dir(root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // This one would take precedence over RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", cargo.to_string_lossy()));
    assert!(
        output.status.success(),
        "building the static probe failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );

    let probe = target_dir.join(TARGET).join("release").join("probe");
    assert!(
        probe.is_file(),
        "cargo built the probe but {} does not exist",
        probe.display()
    );
    probe
}

/// Takes an exclusive flock(2) on `file`, waiting for other holders.
fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock only operates on the descriptor, which `file` keeps
        // open for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    /// ELF program header type of the entry naming the dynamic loader.
    const PT_INTERP: u32 = 3;

    /// Whether a 64-bit little-endian ELF file has a PT_INTERP program
    /// header, i.e. needs a dynamic loader to run.
    fn has_interpreter(elf: &[u8]) -> bool {
        assert!(elf.starts_with(b"\x7fELF"), "not an ELF file");
        assert_eq!(elf[4], 2, "not a 64-bit ELF file");
        assert_eq!(elf[5], 1, "not a little-endian ELF file");
        let bytes = |offset: usize, len: usize| &elf[offset..offset + len];
        let u16_at = |offset| usize::from(u16::from_le_bytes(bytes(offset, 2).try_into().unwrap()));
        let phoff = u64::from_le_bytes(bytes(0x20, 8).try_into().unwrap());
        let phoff = usize::try_from(phoff).unwrap();
        let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
        (0..phnum).any(|i| {
            let header = phoff + i * phentsize;
            u32::from_le_bytes(bytes(header, 4).try_into().unwrap()) == PT_INTERP
        })
    }

    #[test]
    fn probe_is_a_static_executable() {
        let path = probe_path();
        assert!(path.is_file(), "{} is missing", path.display());
        let elf = fs::read(&path).unwrap();
        assert!(
            !has_interpreter(&elf),
            "{} is dynamically linked",
            path.display()
        );
        assert!(!elf.windows(15).any(|w| w == b"/lib64/ld-linux"));
    }

    #[test]
    fn probe_output_parses() {
        let child = Command::new(probe_path())
            .args(["pid", "argv"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let report = parse(&output.stdout);
        assert_eq!(report["pid"], pid);
        assert_eq!(report["argv"][1], "pid");
        assert_eq!(report.as_object().unwrap().len(), 2);
    }

    #[test]
    fn parse_reads_json() {
        assert_eq!(parse(b"{\"pid\": 1}\n")["pid"], 1);
    }

    #[test]
    #[should_panic(expected = "not json at all")]
    fn parse_shows_bad_output() {
        parse(b"not json at all");
    }
}
