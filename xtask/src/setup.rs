//! Installing what the course needs on a fresh Debian or Ubuntu machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Debian packages the labs and tests use, with the file that shows each is
/// installed. A marker ending in `*` matches any file that starts with the
/// rest (the kernel image's name holds its version). QEMU and a kernel are
/// for `cargo xtask vmtest`, which runs the kernel tests on cgroup v2.
pub const PACKAGES: [(&str, &str); 22] = [
    ("busybox-static", "/bin/busybox"),
    ("iproute2", "/usr/sbin/ip"),
    ("nftables", "/usr/sbin/nft"),
    ("util-linux", "/usr/bin/unshare"),
    ("procps", "/usr/bin/ps"),
    ("psmisc", "/usr/bin/killall"),
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("linux-image-amd64", "/boot/vmlinuz-*"),
    // The virtual machine's scratch filesystem is ext4 (tmpfs lacks
    // user.* attributes before Linux 6.6, which rootless overlays need).
    ("e2fsprogs", "/usr/sbin/mke2fs"),
    // objcopy strips debug info from the test programs in its initramfs.
    ("binutils", "/usr/bin/objcopy"),
    // The tools the book's checked transcripts run (see `transcripts`).
    ("jq", "/usr/bin/jq"),
    ("runc", "/usr/sbin/runc"),
    ("strace", "/usr/bin/strace"),
    ("attr", "/usr/bin/getfattr"),
    ("libcap2-bin", "/usr/sbin/capsh"),
    // Lab 4's chapter shows iptables beside nft (Debian's is nft-based).
    ("iptables", "/usr/sbin/iptables"),
    // Lab 5: a local registry (the CNCF distribution registry) with
    // htpasswd logins, curl to speak its protocol by hand, and skopeo and
    // umoci to check that berth's images and archives are what other
    // tools read and write.
    ("docker-registry", "/usr/bin/docker-registry"),
    ("apache2-utils", "/usr/bin/htpasswd"),
    ("curl", "/usr/bin/curl"),
    ("skopeo", "/usr/bin/skopeo"),
    ("umoci", "/usr/bin/umoci"),
    ("file", "/usr/bin/file"),
];

/// The mdBook version the book is written for.
pub const MDBOOK_VERSION: &str = "0.5.4";

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Runs a command, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// Installs missing Debian packages (`extra` adds more, with their marker
/// files) and mdBook. Without root, says what is missing instead.
pub fn install(extra: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .chain(extra)
        .filter(|(_, file)| !installed(file))
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "missing packages: {} (install them as root: apt-get install {})",
                missing.join(" "),
                missing.join(" ")
            );
        }
        eprintln!("==> installing {}", missing.join(" "));
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    install_mdbook()
}

/// Whether the marker file exists; `dir/prefix*` matches any file in `dir`
/// whose name starts with `prefix`.
fn installed(marker: &str) -> bool {
    let Some(prefix) = marker.strip_suffix('*') else {
        return Path::new(marker).exists();
    };
    let (dir, prefix) = prefix.rsplit_once('/').unwrap_or((".", prefix));
    std::fs::read_dir(if dir.is_empty() { "/" } else { dir })
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
}

/// Installs mdBook with cargo unless the pinned version is already there.
pub fn install_mdbook() -> Result<()> {
    let current = Command::new("mdbook")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string());
    if current
        .as_deref()
        .is_some_and(|v| v.contains(MDBOOK_VERSION))
    {
        return Ok(());
    }
    eprintln!("==> installing mdbook {MDBOOK_VERSION}");
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "install",
            "--locked",
            &format!("mdbook@{MDBOOK_VERSION}"),
        ]),
    )
}

/// True when this process can make what the kernel tests make: root, and
/// allowed to create namespaces and mount (a container without
/// `CAP_SYS_ADMIN`, or with a seccomp filter, is root but cannot).
pub fn can_make_containers() -> bool {
    is_root()
        && Command::new("unshare")
            .args([
                "--mount", "--net", "--pid", "--fork", "--", "mount", "-t", "tmpfs", "probe",
                "/mnt",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The path of a binary built in this workspace's target directory.
pub fn target_bin(profile: &str, name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join(profile).join(name)
}

/// `cargo` with the given arguments, in the workspace.
pub fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args).current_dir(workspace());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_with_a_star_match_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz-6.1.0-1-amd64"), "").unwrap();
        let marker = |m: &str| format!("{}/{m}", dir.path().display());
        assert!(installed(&marker("vmlinuz-*")));
        assert!(installed(&marker("vmlinuz-6.1.0-1-amd64")));
        assert!(!installed(&marker("initrd.img-*")));
        assert!(!installed(&marker("vmlinuz")));
    }
}
