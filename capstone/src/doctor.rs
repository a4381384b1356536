//! `berth doctor`: a preflight check of the machine, one line per check,
//! each `ok`, `warn` or `fail`, and for a problem the command that fixes it.
//!
//! What the checks look at is read first into [`Facts`] (from a `/proc` and
//! a cgroup root passed in, so tests can feed a fake machine); each check is
//! then a plain function from facts to a [`Check`]. Only [`Facts::gather`]
//! and the overlay probes touch the real machine.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use cgroups::{Controller, Hierarchy, Mode};
use serde::Serialize;

use crate::storage::{self, Driver};

/// The mdBook version the book is written for (`MDBOOK_VERSION` in
/// xtask/src/setup.rs, which `cargo xtask test` installs).
pub const MDBOOK_VERSION: &str = "0.5.4";

/// The oldest kernel berth supports (Debian 11's): pidfds, the new mount
/// API and cgroup BPF device filters are all there.
pub const MIN_KERNEL: (u32, u32) = (5, 10);
/// From this kernel the root of a user namespace may mount overlayfs.
pub const ROOTLESS_OVERLAY_KERNEL: (u32, u32) = (5, 11);
/// From this kernel overlayfs takes one `lowerdir+` per layer.
pub const LOWERDIR_PLUS_KERNEL: (u32, u32) = (6, 8);

/// The unprivileged user root drops to for the rootless overlay probe.
const NOBODY: u32 = 65534;

/// The controllers berth uses, in the order they are reported.
const CONTROLLERS: [Controller; 6] = [
    Controller::Memory,
    Controller::Cpu,
    Controller::Cpuset,
    Controller::Pids,
    Controller::Devices,
    Controller::Freezer,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    /// The command that fixes a warning or failure.
    pub fix: Option<String>,
    /// How the text report introduces the fix.
    #[serde(skip)]
    lead: &'static str,
}

impl Check {
    fn ok(check: &'static str, detail: impl Into<String>) -> Check {
        Check {
            check,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
            lead: "fix",
        }
    }

    fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            fix: Some(fix.into()),
            ..Check::ok(check, detail)
        }
    }

    fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            ..Check::warn(check, detail, fix)
        }
    }

    fn lead(self, lead: &'static str) -> Check {
        Check { lead, ..self }
    }
}

/// Where the kernel's views are: `/proc` and `/sys/fs/cgroup` on a real
/// machine, temporary directories in tests.
#[derive(Debug, Clone)]
pub struct Roots {
    pub proc: PathBuf,
    pub cgroup: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            proc: "/proc".into(),
            cgroup: "/sys/fs/cgroup".into(),
        }
    }
}

/// The sysctls the checks read, as found (`None`: the file is not there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sysctls {
    /// `kernel.unprivileged_userns_clone` (Debian's patch; gone upstream).
    pub userns_clone: Option<String>,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<String>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10+).
    pub apparmor_restrict: Option<String>,
    /// `net.ipv4.ip_forward`.
    pub ip_forward: Option<String>,
}

/// Reads the sysctls under `proc_root/sys`.
pub fn read_sysctls(proc_root: &Path) -> Sysctls {
    let read = |rel: &str| {
        std::fs::read_to_string(proc_root.join("sys").join(rel))
            .ok()
            .map(|s| s.trim().to_string())
    };
    Sysctls {
        userns_clone: read("kernel/unprivileged_userns_clone"),
        max_user_namespaces: read("user/max_user_namespaces"),
        apparmor_restrict: read("kernel/apparmor_restrict_unprivileged_userns"),
        ip_forward: read("net/ipv4/ip_forward"),
    }
}

/// What mounting a tiny overlay gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Works(String),
    Fails(String),
    NotTried(String),
}

/// Where a busybox was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busybox {
    /// Static, where berth looks for it.
    Static(PathBuf),
    /// Static, on PATH but not where berth looks.
    Elsewhere(PathBuf),
    /// Dynamically linked (or not a program): useless in an empty image.
    NotStatic(PathBuf),
    Missing,
}

/// Where mdBook was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mdbook {
    /// On PATH; what `mdbook --version` printed.
    OnPath(String),
    /// Not on PATH, but installed here (cargo's bin directory).
    OffPath(PathBuf),
    Missing,
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
    pub euid: u32,
    pub cgroup_root: PathBuf,
    pub cgroups: std::result::Result<Hierarchy, String>,
    /// The v2 root's `cgroup.subtree_control`, where there is a v2 tree.
    pub subtree_control: Option<String>,
    /// Whether `overlay` is listed in `proc/filesystems`.
    pub overlay_known: bool,
    pub overlay: Probe,
    pub overlay_userns: Probe,
    pub sysctls: Sysctls,
    pub nft: Option<PathBuf>,
    pub iptables: Option<PathBuf>,
    pub busybox: Busybox,
    pub mdbook: Mdbook,
}

// ANCHOR: doctor_checks
/// The report: one check per line, in the order the course meets them.
pub fn evaluate(f: &Facts) -> Vec<Check> {
    let version = f.kernel.as_deref().and_then(parse_release);
    let userns = userns(&f.sysctls);
    vec![
        kernel(f.kernel.as_deref()),
        root(f.euid),
        cgroups(
            f.cgroups.as_ref(),
            f.subtree_control.as_deref(),
            &f.cgroup_root,
            f.euid,
        ),
        overlay(&f.overlay, f.overlay_known),
        overlay_userns(&f.overlay_userns, version, &userns),
        userns,
        nft(f.nft.as_deref()),
        iptables(f.iptables.as_deref()),
        ip_forward(f.sysctls.ip_forward.as_deref()),
        busybox(&f.busybox),
        mdbook(&f.mdbook),
    ]
}
// ANCHOR_END: doctor_checks

/// 0 when nothing fails, 1 when a check fails.
pub fn exit_code(checks: &[Check]) -> u8 {
    u8::from(checks.iter().any(|c| c.status == Status::Fail))
}

/// A check that runs lab code the student has not written yet: a step's
/// `todo!()` panics with "not yet implemented: step 03.1: …". That is no
/// fault of the machine, so it is a warning naming the step.
fn unwritten(name: &'static str, why: &str) -> Option<Check> {
    let rest = why.split_once("not yet implemented")?.1;
    let step = rest
        .split_once("step ")
        .and_then(|(_, s)| s.split(|c: char| !(c.is_ascii_digit() || c == '.')).next())
        .map(|s| s.trim_end_matches('.'))
        .filter(|s| !s.is_empty());
    Some(match step {
        Some(id) => Check::warn(
            name,
            format!("not checked yet: the check runs your code of step {id}, still a todo!()"),
            format!("cargo xtask check {id}"),
        ),
        None => Check::warn(
            name,
            format!("not checked yet: the check runs lab code that is still a todo!() ({why})"),
            "cargo xtask check",
        ),
    })
}

/// Runs lab code that may be a student's `todo!()`; a panic becomes an
/// error carrying its message. The caller silences the panic hook.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let text = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".into());
        bail!("{text}")
    })
}

/// `major.minor.patch` from a release like `6.1.0-18-amd64` or `6.8`.
pub fn parse_release(release: &str) -> Option<(u32, u32, u32)> {
    let numeric: String = release
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').filter(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

fn at_least(v: (u32, u32, u32), min: (u32, u32)) -> bool {
    (v.0, v.1) >= min
}

const SUDO_DOCTOR: &str = "sudo -E env PATH=\"$PATH\" berth doctor";

pub fn kernel(release: Option<&str>) -> Check {
    let Some(v) = release.and_then(parse_release) else {
        return Check::warn(
            "kernel",
            format!(
                "cannot tell the kernel version from {:?} (/proc/sys/kernel/osrelease)",
                release.unwrap_or("")
            ),
            "mount -t proc proc /proc",
        );
    };
    let shown = format!("{}.{}.{}", v.0, v.1, v.2);
    if !at_least(v, MIN_KERNEL) {
        return Check::fail(
            "kernel",
            format!(
                "{shown} is older than 5.10: berth needs pidfds, the new mount API and cgroup BPF \
                 device filters as Linux 5.10 (Debian 11) has them"
            ),
            "install a kernel of 5.10 or newer and reboot (Debian: apt-get install linux-image-amd64)",
        );
    }
    if !at_least(v, ROOTLESS_OVERLAY_KERNEL) {
        return Check::warn(
            "kernel",
            format!(
                "{shown} (>= 5.10), but a user namespace may mount overlayfs only from 5.11: \
                 a rootless berth copies images instead; lowerdir+ needs 6.8"
            ),
            "for rootless overlays install a 5.11 or newer kernel and reboot \
             (Debian 11: apt-get install -t bullseye-backports linux-image-amd64)",
        );
    }
    if !at_least(v, LOWERDIR_PLUS_KERNEL) {
        return Check::ok(
            "kernel",
            format!(
                "{shown} (>= 5.10; no overlayfs lowerdir+ before 6.8: layers go in one lowerdir= option)"
            ),
        );
    }
    Check::ok(
        "kernel",
        format!("{shown} (>= 5.10; has overlayfs lowerdir+, new in 6.8)"),
    )
}

pub fn root(euid: u32) -> Check {
    if euid == 0 {
        Check::ok("root", "running as root: every lab and kernel test can run")
    } else {
        Check::warn(
            "root",
            format!(
                "running as uid {euid}: berth runs rootless, in a user namespace (no cgroup \
                 limits, no bridge networking); the labs' kernel tests need root"
            ),
            SUDO_DOCTOR,
        )
    }
}

/// What a controller missing from berth's reach breaks.
fn breaks(c: Controller) -> &'static str {
    match c {
        Controller::Memory => "--memory",
        Controller::Cpu | Controller::Cpuacct => "--cpus and --cpu-shares",
        Controller::Cpuset => "--cpuset-cpus",
        Controller::Pids => "--pids-limit",
        Controller::Devices => "every container as root",
        Controller::Freezer => "pause and unpause",
    }
}

pub fn cgroups(
    hierarchy: std::result::Result<&Hierarchy, &String>,
    subtree_control: Option<&str>,
    cgroup_root: &Path,
    euid: u32,
) -> Check {
    let h = match hierarchy {
        Ok(h) => h,
        Err(e) => {
            return unwritten("cgroups", e).unwrap_or_else(|| {
                Check::fail(
                    "cgroups",
                    format!("cannot find the cgroup hierarchies: {e}"),
                    format!("mount -t cgroup2 cgroup2 {}", cgroup_root.display()),
                )
            });
        }
    };
    let mut usable = Vec::new();
    // (controller, why it is missing, the command that brings it)
    let mut missing: Vec<(Controller, String, String)> = Vec::new();
    let mode = match h.mode {
        Mode::Unified => {
            let v2 = h.v2.clone().unwrap_or_else(|| cgroup_root.to_path_buf());
            let enabled: Vec<&str> = subtree_control.unwrap_or("").split_whitespace().collect();
            for c in CONTROLLERS {
                let name = c.name();
                if matches!(c, Controller::Devices | Controller::Freezer) {
                    usable.push(name); // built into every v2 cgroup
                } else if !h.v2_controllers.iter().any(|n| n == name) {
                    missing.push((
                        c,
                        format!("{name} is not in cgroup.controllers"),
                        format!(
                            "remove cgroup_disable={name} from the kernel command line and reboot"
                        ),
                    ));
                } else if !enabled.contains(&name) {
                    missing.push((
                        c,
                        format!("{name} is not in the root's cgroup.subtree_control"),
                        format!("echo +{name} > {}/cgroup.subtree_control", v2.display()),
                    ));
                } else {
                    usable.push(name);
                }
            }
            format!("v2 (unified, at {})", v2.display())
        }
        Mode::Legacy | Mode::Hybrid => {
            for c in CONTROLLERS {
                let name = c.name();
                if h.v1.contains_key(&c) {
                    usable.push(name);
                } else {
                    let dir = cgroup_root.join(name);
                    missing.push((
                        c,
                        format!("{name} is not mounted"),
                        format!(
                            "mkdir -p {d} && mount -t cgroup -o {name} cgroup {d}",
                            d = dir.display()
                        ),
                    ));
                }
            }
            match (&h.mode, &h.v2) {
                (Mode::Hybrid, Some(v2)) => format!(
                    "hybrid (v1 controllers, berth uses them; v2 tree at {})",
                    v2.display()
                ),
                _ => "v1 (legacy)".to_string(),
            }
        }
    };
    let mut detail = format!("{mode}: usable {}", usable.join(" "));
    if usable.is_empty() {
        detail = format!("{mode}: no controller berth uses is usable");
    }
    if euid != 0 {
        detail.push_str(" (a rootless berth makes no cgroups: limits need root)");
    }
    if missing.is_empty() {
        return Check::ok("cgroups", detail);
    }
    for (c, why, _) in &missing {
        detail.push_str(&format!("; {why} ({} will fail)", breaks(*c)));
    }
    // One command for all the subtree_control ones.
    let mut fixes: Vec<String> = Vec::new();
    let subtree: Vec<String> = missing
        .iter()
        .filter(|(_, why, _)| why.contains("subtree_control"))
        .map(|(c, _, _)| format!("+{}", c.name()))
        .collect();
    if !subtree.is_empty() {
        let v2 = h.v2.clone().unwrap_or_else(|| cgroup_root.to_path_buf());
        fixes.push(format!(
            "echo \"{}\" > {}/cgroup.subtree_control",
            subtree.join(" "),
            v2.display()
        ));
    }
    fixes.extend(
        missing
            .iter()
            .filter(|(_, why, _)| !why.contains("subtree_control"))
            .map(|(_, _, fix)| fix.clone()),
    );
    let fix = fixes.join("; ");
    // Without a devices hierarchy on v1 no container starts as root.
    if !h.uses_v2() && missing.iter().any(|(c, _, _)| *c == Controller::Devices) {
        Check::fail("cgroups", detail, fix)
    } else {
        Check::warn("cgroups", detail, fix)
    }
}

pub fn overlay(probe: &Probe, overlay_known: bool) -> Check {
    if let Probe::Fails(why) = probe
        && let Some(check) = unwritten("overlay", why)
    {
        return check;
    }
    match probe {
        Probe::Works(why) => Check::ok("overlay", why.clone()),
        Probe::NotTried(why) => Check::warn("overlay", format!("not tried: {why}"), SUDO_DOCTOR),
        Probe::Fails(why) if !overlay_known => Check::fail(
            "overlay",
            format!("{why}; overlay is not in /proc/filesystems: lab 03 needs it"),
            "modprobe overlay",
        ),
        Probe::Fails(why) => Check::fail(
            "overlay",
            format!("{why}; lab 03 needs overlayfs"),
            "keep the engine root on ext4 or xfs: berth --root DIR (or BERTH_ROOT=DIR)",
        ),
    }
}

pub fn overlay_userns(probe: &Probe, kernel: Option<(u32, u32, u32)>, userns: &Check) -> Check {
    const NAME: &str = "overlay-userns";
    if let Probe::Fails(why) = probe
        && let Some(check) = unwritten(NAME, why)
    {
        return check;
    }
    match probe {
        Probe::Works(why) => Check::ok(NAME, format!("{why}; a rootless berth gets overlays")),
        Probe::NotTried(why) => Check::warn(
            NAME,
            format!("not tried: {why}"),
            "berth --storage-driver vfs",
        ),
        Probe::Fails(why) => {
            let fix = if kernel.is_some_and(|v| !at_least(v, ROOTLESS_OVERLAY_KERNEL)) {
                "install Linux 5.11 or newer: before it only real root may mount overlayfs"
                    .to_string()
            } else if userns.status == Status::Fail {
                userns.fix.clone().unwrap_or_default()
            } else {
                "none needed: a rootless berth copies images instead (berth --storage-driver vfs)"
                    .to_string()
            };
            Check::warn(NAME, why.clone(), fix)
        }
    }
}

pub fn userns(s: &Sysctls) -> Check {
    const NAME: &str = "userns";
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    if s.userns_clone.as_deref() == Some("0") {
        problems.push("kernel.unprivileged_userns_clone is 0");
        fixes.push("sysctl -w kernel.unprivileged_userns_clone=1");
    }
    if s.max_user_namespaces.as_deref() == Some("0") {
        problems.push("user.max_user_namespaces is 0");
        fixes.push("sysctl -w user.max_user_namespaces=15000");
    }
    if s.apparmor_restrict.as_deref() == Some("1") {
        problems.push(
            "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 23.10+ lets AppArmor \
             refuse them)",
        );
        fixes.push("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0");
    }
    if problems.is_empty() {
        let max = s
            .max_user_namespaces
            .as_deref()
            .map(|m| format!(" (user.max_user_namespaces = {m})"))
            .unwrap_or_default();
        return Check::ok(
            NAME,
            format!("unprivileged user namespaces are allowed{max}"),
        );
    }
    Check::fail(
        NAME,
        format!(
            "{}: unprivileged users cannot make user namespaces, so rootless berth and the \
             rootless tests fail (keep the setting in /etc/sysctl.d/ after a reboot)",
            problems.join("; ")
        ),
        fixes.join(" && "),
    )
}

pub fn nft(path: Option<&Path>) -> Check {
    match path {
        Some(p) => Check::ok(
            "nft",
            format!("{} (lab 04 writes its rules with it)", p.display()),
        ),
        None => Check::fail(
            "nft",
            "nft not found: lab 04 writes its NAT and filter rules with it",
            "apt-get install nftables",
        ),
    }
}

pub fn iptables(path: Option<&Path>) -> Check {
    match path {
        Some(p) => Check::ok("iptables", format!("{}", p.display())),
        None => Check::warn(
            "iptables",
            "iptables not found: berth uses nft, but iptables shows rules that Docker and other \
             tools make",
            "apt-get install iptables",
        ),
    }
}

pub fn ip_forward(value: Option<&str>) -> Check {
    const FIX: &str = "sysctl -w net.ipv4.ip_forward=1";
    match value {
        Some("1") => Check::ok("ip-forward", "net.ipv4.ip_forward is 1"),
        Some(v) => Check::warn(
            "ip-forward",
            format!("net.ipv4.ip_forward is {v}: lab 04 turns it on"),
            FIX,
        )
        .lead("to do it now"),
        None => Check::warn(
            "ip-forward",
            "cannot read /proc/sys/net/ipv4/ip_forward: lab 04 turns it on",
            FIX,
        )
        .lead("to do it now"),
    }
}

pub fn busybox(b: &Busybox) -> Check {
    const FIX: &str = "apt-get install busybox-static";
    match b {
        Busybox::Static(p) => Check::ok(
            "busybox",
            format!("static busybox at {} (berth's base image)", p.display()),
        ),
        Busybox::Elsewhere(p) => Check::warn(
            "busybox",
            format!(
                "static busybox at {}, but berth looks in {}",
                p.display(),
                namespaces::host::BUSYBOX_PATHS.join(", ")
            ),
            format!("ln -s {} /usr/bin/busybox", p.display()),
        ),
        Busybox::NotStatic(p) => Check::fail(
            "busybox",
            format!(
                "{} is not statically linked: it cannot run in berth's base image",
                p.display()
            ),
            FIX,
        ),
        Busybox::Missing => Check::fail(
            "busybox",
            "no static busybox: berth's base image would hold a few host tools instead of the \
             applets the labs and tests use",
            FIX,
        ),
    }
}

pub fn mdbook(m: &Mdbook) -> Check {
    let install = format!("cargo install --locked mdbook@{MDBOOK_VERSION}");
    match m {
        Mdbook::OnPath(version) if version.contains(MDBOOK_VERSION) => {
            Check::ok("mdbook", version.trim().to_string())
        }
        Mdbook::OnPath(version) => Check::warn(
            "mdbook",
            format!(
                "{} on PATH, the book is written for {MDBOOK_VERSION}",
                version.trim()
            ),
            install,
        ),
        Mdbook::OffPath(p) => Check::warn(
            "mdbook",
            format!("{} is not on PATH", p.display()),
            format!(
                "export PATH=\"{}:$PATH\"",
                p.parent().unwrap_or(Path::new("/")).display()
            ),
        ),
        Mdbook::Missing => Check::warn(
            "mdbook",
            "mdbook not found: the book (`mdbook serve book`) needs it",
            install,
        ),
    }
}

/// The report as text: status, check, then the detail and the fix.
pub fn render_text(checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|c| c.check.len() + 2)
        .max()
        .unwrap_or(0)
        .max(14);
    let mut out = String::new();
    for c in checks {
        let mut line = format!("{:<6}{:<width$}{}", c.status.as_str(), c.check, c.detail);
        if let Some(fix) = &c.fix {
            line.push_str(&format!("; {}: {fix}", c.lead));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The first executable `name` on `path` (a PATH value), then in the sbin
/// directories an ordinary user's PATH often lacks.
pub fn find_program(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let dirs = path.map(std::env::split_paths).into_iter().flatten();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    dirs.chain(sbin)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds busybox where berth looks (`namespaces::host::BUSYBOX_PATHS`), then on PATH.
pub fn find_busybox(path: Option<&OsStr>) -> Busybox {
    use namespaces::host::{BUSYBOX_PATHS, is_static_elf};
    if let Some(p) = BUSYBOX_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| is_static_elf(p))
    {
        return Busybox::Static(p);
    }
    let found = BUSYBOX_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| find_program("busybox", path));
    match found {
        Some(p) if is_static_elf(&p) => Busybox::Elsewhere(p),
        Some(p) => Busybox::NotStatic(p),
        None => Busybox::Missing,
    }
}

/// Finds mdBook on PATH and asks its version, else looks in cargo's bin.
pub fn find_mdbook(path: Option<&OsStr>, home: Option<&Path>) -> Mdbook {
    if let Some(p) = find_program("mdbook", path) {
        let version = std::process::Command::new(&p)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        return Mdbook::OnPath(if version.is_empty() {
            format!("{} (no version)", p.display())
        } else {
            version
        });
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".cargo")))
        .map(|c| c.join("bin/mdbook"));
    match cargo_bin {
        Some(p) if is_executable(&p) => Mdbook::OffPath(p),
        _ => Mdbook::Missing,
    }
}

/// The machine's cgroup setup and the v2 root's `cgroup.subtree_control`.
pub fn read_cgroups(roots: &Roots) -> (std::result::Result<Hierarchy, String>, Option<String>) {
    match guarded(|| Ok(cgroups::detect(&roots.cgroup, &roots.proc)?)) {
        Ok(h) => {
            let subtree =
                h.v2.as_ref()
                    .and_then(|v2| std::fs::read_to_string(v2.join("cgroup.subtree_control")).ok());
            (Ok(h), subtree)
        }
        Err(e) => (Err(format!("{e:#}")), None),
    }
}

/// The engine root if it exists, else its nearest existing parent: where
/// the engine's overlays would live, without making anything lasting.
pub fn nearest_existing(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.is_dir())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// A probe's answer; `how` says where and as whom it mounted.
fn probe_result(r: Result<(Driver, String)>, how: &str) -> Probe {
    match r {
        Ok((Driver::Overlay, why)) => Probe::Works(format!("a tiny overlay mounts {how}: {why}")),
        Ok((_, why)) => Probe::Fails(format!("tried {how}: {why}")),
        Err(e) => Probe::Fails(format!("tried {how}: {e:#}")),
    }
}

impl Facts {
    /// Reads the machine. As root it mounts two tiny overlays: one as root
    /// in `engine_root` (or its nearest existing parent), and one as
    /// `nobody` in a user namespace in the temporary directory, the
    /// rootless case. Without root only the second can be tried, as
    /// oneself, in `engine_root`.
    pub fn gather(roots: &Roots, engine_root: &Path) -> Facts {
        // A student's unwritten step panics in the lab code the checks
        // call: the report says so, without a panic message on stderr.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let facts = Facts::gather_quietly(roots, engine_root);
        std::panic::set_hook(hook);
        facts
    }

    fn gather_quietly(roots: &Roots, engine_root: &Path) -> Facts {
        let euid = nix::unistd::geteuid();
        let path = std::env::var_os("PATH");
        let (cgroups, subtree_control) = read_cgroups(roots);
        let dir = nearest_existing(engine_root);
        let (overlay, overlay_userns) = if euid.is_root() {
            let tmp = std::env::temp_dir();
            let nobody = (
                nix::unistd::Uid::from_raw(NOBODY),
                nix::unistd::Gid::from_raw(NOBODY),
            );
            (
                probe_result(
                    guarded(|| storage::probe_as(&dir, None)),
                    &format!("in {}", dir.display()),
                ),
                probe_result(
                    guarded(|| storage::probe_as(&tmp, Some(nobody))),
                    &format!("in {} as uid {NOBODY} in a user namespace", tmp.display()),
                ),
            )
        } else {
            let me = (euid, nix::unistd::getegid());
            (
                Probe::NotTried(
                    "only root can mount overlayfs outside a user namespace (lab 03's kernel \
                     tests do)"
                        .into(),
                ),
                probe_result(
                    guarded(|| storage::probe_as(&dir, Some(me))),
                    &format!("in {} in a user namespace", dir.display()),
                ),
            )
        };
        let filesystems =
            std::fs::read_to_string(roots.proc.join("filesystems")).unwrap_or_default();
        Facts {
            kernel: std::fs::read_to_string(roots.proc.join("sys/kernel/osrelease"))
                .ok()
                .map(|s| s.trim().to_string()),
            euid: euid.as_raw(),
            cgroup_root: roots.cgroup.clone(),
            cgroups,
            subtree_control,
            overlay_known: filesystems
                .lines()
                .any(|l| l.split_whitespace().last() == Some("overlay")),
            overlay,
            overlay_userns,
            sysctls: read_sysctls(&roots.proc),
            nft: find_program("nft", path.as_deref()),
            iptables: find_program("iptables", path.as_deref()),
            busybox: find_busybox(path.as_deref()),
            mdbook: find_mdbook(
                path.as_deref(),
                std::env::var_os("HOME").map(PathBuf::from).as_deref(),
            ),
        }
    }
}

/// `berth doctor [--format json]`: prints the report, returns the exit code.
pub fn command(engine_root: &Path, format: Option<&str>) -> Result<u8> {
    if let Some(f) = format
        && f != "json"
        && f != "text"
    {
        bail!("unknown --format {f:?}: use json (or leave it out for text)");
    }
    let checks = evaluate(&Facts::gather(&Roots::default(), engine_root));
    if format == Some("json") {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", render_text(&checks));
    }
    Ok(exit_code(&checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid(controllers: &[&str]) -> Hierarchy {
        let mut text = String::from(
            "30 22 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n\
             31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        );
        for (i, c) in controllers.iter().enumerate() {
            text.push_str(&format!(
                "{} 30 0:{} / /sys/fs/cgroup/{c} rw - cgroup cgroup rw,{c}\n",
                40 + i,
                40 + i
            ));
        }
        cgroups::mode::parse_mountinfo(&text, Path::new("/sys/fs/cgroup"))
    }

    fn facts() -> Facts {
        Facts {
            kernel: Some("6.18.44-fc-v782".into()),
            euid: 0,
            cgroup_root: "/sys/fs/cgroup".into(),
            cgroups: Ok(hybrid(&[
                "cpu", "cpuset", "memory", "devices", "freezer", "pids",
            ])),
            subtree_control: Some(String::new()),
            overlay_known: true,
            overlay: Probe::Works("overlayfs works here".into()),
            overlay_userns: Probe::Works("overlayfs works here".into()),
            sysctls: Sysctls {
                max_user_namespaces: Some("1000".into()),
                ip_forward: Some("1".into()),
                ..Default::default()
            },
            nft: Some("/usr/sbin/nft".into()),
            iptables: Some("/usr/sbin/iptables".into()),
            busybox: Busybox::Static("/bin/busybox".into()),
            mdbook: Mdbook::OnPath(format!("mdbook v{MDBOOK_VERSION}")),
        }
    }

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.check == name).unwrap()
    }

    #[test]
    fn a_good_machine_passes_everything() {
        let checks = evaluate(&facts());
        let names: Vec<_> = checks.iter().map(|c| c.check).collect();
        assert_eq!(
            names,
            [
                "kernel",
                "root",
                "cgroups",
                "overlay",
                "overlay-userns",
                "userns",
                "nft",
                "iptables",
                "ip-forward",
                "busybox",
                "mdbook"
            ]
        );
        for c in &checks {
            assert_eq!(c.status, Status::Ok, "{c:?}");
            assert_eq!(c.fix, None);
        }
        assert_eq!(exit_code(&checks), 0);
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_release("6.18.44-fc-v782"), Some((6, 18, 44)));
        assert_eq!(parse_release("5.15.0-91-generic"), Some((5, 15, 0)));
        assert_eq!(parse_release("6.8"), Some((6, 8, 0)));
        assert_eq!(parse_release("4.19.0-25-amd64"), Some((4, 19, 0)));
        assert_eq!(parse_release("garbage"), None);

        let new = kernel(Some("6.18.44-fc-v782"));
        assert_eq!(new.status, Status::Ok);
        assert!(new.detail.starts_with("6.18.44 (>= 5.10"), "{}", new.detail);

        let old = kernel(Some("5.4.0-150-generic"));
        assert_eq!(old.status, Status::Fail);
        assert!(old.detail.contains("older than 5.10"), "{}", old.detail);
        assert!(old.fix.unwrap().contains("linux-image"));

        let bullseye = kernel(Some("5.10.0-28-amd64"));
        assert_eq!(bullseye.status, Status::Warn);
        assert!(bullseye.detail.contains("5.11"), "{}", bullseye.detail);
        assert!(bullseye.detail.contains("6.8"), "{}", bullseye.detail);

        let bookworm = kernel(Some("6.1.0-18-amd64"));
        assert_eq!(bookworm.status, Status::Ok);
        assert!(
            bookworm
                .detail
                .contains("no overlayfs lowerdir+ before 6.8")
        );

        assert_eq!(kernel(None).status, Status::Warn);
        assert_eq!(kernel(Some("x")).status, Status::Warn);
    }

    #[test]
    fn running_without_root_is_a_warning() {
        assert_eq!(root(0).status, Status::Ok);
        let c = root(1000);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("rootless"));
        assert!(c.fix.unwrap().starts_with("sudo"));
    }

    #[test]
    fn apparmor_restriction_fails_with_its_sysctl() {
        let c = userns(&Sysctls {
            apparmor_restrict: Some("1".into()),
            max_user_namespaces: Some("100".into()),
            ..Default::default()
        });
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail
                .contains("apparmor_restrict_unprivileged_userns is 1")
        );
        assert_eq!(
            c.fix.as_deref(),
            Some("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
        );
    }

    #[test]
    fn userns_clone_or_max_zero_fails() {
        let c = userns(&Sysctls {
            userns_clone: Some("0".into()),
            ..Default::default()
        });
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.fix.as_deref(),
            Some("sysctl -w kernel.unprivileged_userns_clone=1")
        );
        let c = userns(&Sysctls {
            userns_clone: Some("0".into()),
            max_user_namespaces: Some("0".into()),
            ..Default::default()
        });
        assert_eq!(c.status, Status::Fail);
        assert_eq!(
            c.fix.as_deref(),
            Some(
                "sysctl -w kernel.unprivileged_userns_clone=1 && sysctl -w user.max_user_namespaces=15000"
            )
        );
        // Files a kernel does not have are no problem.
        let c = userns(&Sysctls {
            userns_clone: Some("1".into()),
            apparmor_restrict: Some("0".into()),
            ..Default::default()
        });
        assert_eq!(c.status, Status::Ok);
    }

    #[test]
    fn sysctls_are_read_from_a_fake_proc() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path();
        for (rel, value) in [
            ("sys/kernel/unprivileged_userns_clone", "0\n"),
            ("sys/user/max_user_namespaces", "63000\n"),
            ("sys/kernel/apparmor_restrict_unprivileged_userns", "1\n"),
            ("sys/net/ipv4/ip_forward", "0\n"),
        ] {
            std::fs::create_dir_all(proc.join(rel).parent().unwrap()).unwrap();
            std::fs::write(proc.join(rel), value).unwrap();
        }
        let s = read_sysctls(proc);
        assert_eq!(s.userns_clone.as_deref(), Some("0"));
        assert_eq!(s.max_user_namespaces.as_deref(), Some("63000"));
        let f = Facts {
            sysctls: s,
            ..facts()
        };
        let checks = evaluate(&f);
        let u = find(&checks, "userns");
        assert_eq!(u.status, Status::Fail);
        assert!(
            u.fix
                .as_deref()
                .unwrap()
                .contains("unprivileged_userns_clone=1")
        );
        assert!(
            u.fix
                .as_deref()
                .unwrap()
                .contains("apparmor_restrict_unprivileged_userns=0")
        );
        assert_eq!(find(&checks, "ip-forward").status, Status::Warn);
        assert_eq!(exit_code(&checks), 1);
        assert_eq!(read_sysctls(&proc.join("missing")), Sysctls::default());
    }

    #[test]
    fn ip_forward_off_is_only_a_warning() {
        let c = ip_forward(Some("0"));
        assert_eq!(c.status, Status::Warn);
        assert_eq!(
            render_text(&[c]),
            "warn  ip-forward    net.ipv4.ip_forward is 0: lab 04 turns it on; to do it now: \
             sysctl -w net.ipv4.ip_forward=1\n"
        );
        assert_eq!(ip_forward(Some("1")).status, Status::Ok);
    }

    #[test]
    fn cgroup_v1_controllers_are_found_in_a_fake_proc() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let cg = dir.path().join("cgroup");
        std::fs::create_dir_all(proc.join("self")).unwrap();
        let mut mountinfo = format!("30 22 0:26 / {} ro - tmpfs tmpfs ro\n", cg.display());
        for (i, c) in ["cpu,cpuacct", "memory", "pids", "cpuset", "devices"]
            .iter()
            .enumerate()
        {
            mountinfo.push_str(&format!(
                "{} 30 0:{} / {}/{c} rw - cgroup cgroup rw,{c}\n",
                40 + i,
                40 + i,
                cg.display()
            ));
        }
        std::fs::write(proc.join("self/mountinfo"), mountinfo).unwrap();
        let roots = Roots {
            proc: proc.clone(),
            cgroup: cg.clone(),
        };
        let (h, subtree) = read_cgroups(&roots);
        assert_eq!(subtree, None);
        let c = cgroups(h.as_ref(), None, &cg, 0);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(
            c.detail
                .starts_with("v1 (legacy): usable memory cpu cpuset pids devices")
        );
        assert!(
            c.detail
                .contains("freezer is not mounted (pause and unpause will fail)")
        );
        let freezer = cg.join("freezer");
        assert_eq!(
            c.fix.unwrap(),
            format!(
                "mkdir -p {f} && mount -t cgroup -o freezer cgroup {f}",
                f = freezer.display()
            )
        );
        // No mount table at all: a failure.
        let none = read_cgroups(&Roots {
            proc: dir.path().join("nowhere"),
            cgroup: cg.clone(),
        });
        assert_eq!(cgroups(none.0.as_ref(), None, &cg, 0).status, Status::Fail);
    }

    #[test]
    fn no_devices_hierarchy_on_v1_fails() {
        let h = hybrid(&["cpu", "cpuset", "memory", "freezer", "pids"]);
        let c = cgroups(Ok(&h), None, Path::new("/sys/fs/cgroup"), 0);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.starts_with("hybrid"));
        assert!(c.detail.contains("every container as root will fail"));
    }

    #[test]
    fn cgroup_v2_needs_the_root_subtree_control() {
        let h = Hierarchy::unified("/sys/fs/cgroup", &["cpuset", "cpu", "io", "memory", "pids"]);
        let all = cgroups(
            Ok(&h),
            Some("cpuset cpu io memory pids\n"),
            Path::new("/sys/fs/cgroup"),
            0,
        );
        assert_eq!(all.status, Status::Ok, "{all:?}");
        assert_eq!(
            all.detail,
            "v2 (unified, at /sys/fs/cgroup): usable memory cpu cpuset pids devices freezer"
        );
        let some = cgroups(Ok(&h), Some("cpu memory"), Path::new("/sys/fs/cgroup"), 0);
        assert_eq!(some.status, Status::Warn);
        assert_eq!(
            some.fix.as_deref(),
            Some("echo \"+cpuset +pids\" > /sys/fs/cgroup/cgroup.subtree_control")
        );
        let no_pids = Hierarchy::unified("/sys/fs/cgroup", &["cpuset", "cpu", "memory"]);
        let c = cgroups(
            Ok(&no_pids),
            Some("cpuset cpu memory"),
            Path::new("/sys/fs/cgroup"),
            1000,
        );
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("pids is not in cgroup.controllers"));
        assert!(c.detail.contains("rootless berth makes no cgroups"));
    }

    #[test]
    fn overlay_probe_results() {
        let c = overlay(&Probe::Fails("EINVAL".into()), false);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.fix.as_deref(), Some("modprobe overlay"));
        let c = overlay(&Probe::Fails("EINVAL".into()), true);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.unwrap().contains("--root"));
        assert_eq!(
            overlay(&Probe::NotTried("no root".into()), true).status,
            Status::Warn
        );

        let ok_userns = userns(&Sysctls::default());
        let c = overlay_userns(&Probe::Fails("EPERM".into()), Some((5, 10, 0)), &ok_userns);
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.unwrap().contains("5.11"));
        let blocked = userns(&Sysctls {
            apparmor_restrict: Some("1".into()),
            ..Default::default()
        });
        let c = overlay_userns(&Probe::Fails("EPERM".into()), Some((6, 8, 0)), &blocked);
        assert_eq!(c.fix, blocked.fix);
    }

    #[test]
    fn an_unwritten_step_is_not_a_machine_fault() {
        let why = "overlayfs cannot be mounted here (not yet implemented: step 03.1: write this \
                   part (read the book's step 03.1; `cargo xtask hint 03.1` helps)); copying images \
                   instead, in /var/lib";
        let c = overlay(&Probe::Fails(why.into()), true);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("step 03.1"), "{}", c.detail);
        assert_eq!(c.fix.as_deref(), Some("cargo xtask check 03.1"));
        let c = overlay_userns(
            &Probe::Fails(why.into()),
            None,
            &userns(&Sysctls::default()),
        );
        assert_eq!(c.fix.as_deref(), Some("cargo xtask check 03.1"));
        let e = "not yet implemented: step 02.1: write this part".to_string();
        let c = cgroups(Err(&e), None, Path::new("/sys/fs/cgroup"), 0);
        assert_eq!(c.status, Status::Warn);
        assert_eq!(c.fix.as_deref(), Some("cargo xtask check 02.1"));
        // The guard turns the panic into that message.
        let err = guarded(|| -> Result<()> { todo!("step 02.1: write this part") }).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not yet implemented: step 02.1: write this part"
        );
    }

    #[test]
    fn missing_programs() {
        let c = nft(None);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.fix.as_deref(), Some("apt-get install nftables"));
        assert_eq!(iptables(None).status, Status::Warn);

        let c = busybox(&Busybox::Missing);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.fix.as_deref(), Some("apt-get install busybox-static"));
        assert_eq!(
            busybox(&Busybox::NotStatic("/usr/bin/busybox".into())).status,
            Status::Fail
        );
        assert_eq!(
            busybox(&Busybox::Elsewhere("/opt/bin/busybox".into())).status,
            Status::Warn
        );

        let c = mdbook(&Mdbook::OnPath("mdbook v0.4.40".into()));
        assert_eq!(c.status, Status::Warn);
        assert_eq!(
            c.fix.as_deref(),
            Some("cargo install --locked mdbook@0.5.4")
        );
        let c = mdbook(&Mdbook::OffPath("/home/a/.cargo/bin/mdbook".into()));
        assert_eq!(
            c.fix.as_deref(),
            Some("export PATH=\"/home/a/.cargo/bin:$PATH\"")
        );
        assert_eq!(mdbook(&Mdbook::Missing).status, Status::Warn);
    }

    #[test]
    fn programs_are_found_on_path() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("mytool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        assert_eq!(find_program("mytool", Some(&path)), None, "not executable");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_program("mytool", Some(&path)), Some(tool));
        assert_eq!(find_program("mytool", None), None);
    }

    #[test]
    fn one_failure_makes_the_exit_code_1() {
        let f = Facts {
            kernel: Some("5.4.0".into()),
            ..facts()
        };
        let checks = evaluate(&f);
        assert_eq!(exit_code(&checks), 1);
        let json = serde_json::to_value(&checks).unwrap();
        assert_eq!(json[0]["check"], "kernel");
        assert_eq!(json[0]["status"], "fail");
        assert!(json[0]["fix"].is_string());
        assert!(json[1]["fix"].is_null());
        assert_eq!(json[0].as_object().unwrap().len(), 4);
    }

    #[test]
    fn the_engine_root_or_its_nearest_parent_is_probed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(nearest_existing(&dir.path().join("a/b/c")), dir.path());
        assert_eq!(nearest_existing(dir.path()), dir.path());
    }
}
