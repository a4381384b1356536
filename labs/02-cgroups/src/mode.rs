//! Which cgroup setup this machine has, and where each controller lives.
//!
//! cgroup v1 mounts one hierarchy per controller (`/sys/fs/cgroup/memory`,
//! `/sys/fs/cgroup/pids`, ...), each a separate tree a process is placed in
//! separately. cgroup v2 mounts one unified tree at `/sys/fs/cgroup` in
//! which every controller is enabled per subtree. "Hybrid" machines have
//! the v1 controllers plus an (often empty) v2 tree at
//! `/sys/fs/cgroup/unified`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// `statfs(2)` magic number of a cgroup v2 filesystem.
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `statfs(2)` magic number of a cgroup v1 hierarchy.
pub const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
/// `statfs(2)` magic number of tmpfs (what holds the v1 mount points).
pub const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The three setups a Linux machine can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only v1 hierarchies.
    Legacy,
    /// v1 controllers, plus a v2 tree that usually holds none of them.
    Hybrid,
    /// One v2 tree and nothing else.
    Unified,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Legacy => "cgroup v1 (legacy)",
            Mode::Hybrid => "hybrid (cgroup v1 controllers, cgroup v2 tree without them)",
            Mode::Unified => "cgroup v2 (unified)",
        })
    }
}

/// The controllers the labs use, by their kernel names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    Cpu,
    /// v1 only: CPU time accounting. v2 reports it in `cpu.stat`.
    Cpuacct,
    Cpuset,
    Memory,
    Pids,
    /// v1 only. On v2 a BPF program attached to the cgroup filters devices.
    Devices,
    /// v1 only. On v2 every cgroup has `cgroup.freeze`.
    Freezer,
}

impl Controller {
    pub const ALL: [Controller; 7] = [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Memory,
        Controller::Pids,
        Controller::Devices,
        Controller::Freezer,
    ];

    /// The name the kernel uses in mount options and `cgroup.controllers`.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Devices => "devices",
            Controller::Freezer => "freezer",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Controller::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ANCHOR: hierarchy
/// What [`detect`] found: the mode, the v1 mount point of each v1
/// controller, and the v2 mount point with the controllers it offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hierarchy {
    pub mode: Mode,
    /// Where each v1 controller's hierarchy is mounted.
    pub v1: BTreeMap<Controller, PathBuf>,
    /// Where the v2 tree is mounted, if anywhere.
    pub v2: Option<PathBuf>,
    /// The controllers listed in the v2 root's `cgroup.controllers`.
    pub v2_controllers: Vec<String>,
}
// ANCHOR_END: hierarchy

impl Hierarchy {
    /// A pure cgroup v2 machine with its tree at `root`: what tests use to
    /// point the v2 code at a temporary directory.
    pub fn unified(root: impl Into<PathBuf>, controllers: &[&str]) -> Self {
        Hierarchy {
            mode: Mode::Unified,
            v1: BTreeMap::new(),
            v2: Some(root.into()),
            v2_controllers: controllers.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// A cgroup v1 machine with each controller at `root/NAME`.
    pub fn legacy(root: &Path) -> Self {
        Hierarchy {
            mode: Mode::Legacy,
            v1: Controller::ALL
                .into_iter()
                .map(|c| (c, root.join(c.name())))
                .collect(),
            v2: None,
            v2_controllers: Vec::new(),
        }
    }

    /// Where limits are written: v2 when the machine is unified, else v1.
    pub fn uses_v2(&self) -> bool {
        self.mode == Mode::Unified
    }

    /// Whether `controller` can be used, and if not, why not.
    pub fn check(&self, controller: Controller) -> Result<()> {
        if self.uses_v2() {
            match controller {
                // Built into every v2 cgroup.
                Controller::Devices | Controller::Freezer | Controller::Cpuacct => Ok(()),
                c if self.v2_controllers.iter().any(|n| n == c.name()) => Ok(()),
                c => Err(Error::Unsupported(format!(
                    "the {c} controller is not available in the cgroup v2 tree at {} \
                     (it is missing from cgroup.controllers; on a v1 or hybrid machine it \
                     would be a v1 hierarchy of its own)",
                    self.v2.as_deref().unwrap_or(Path::new("?")).display()
                ))),
            }
        } else if self.v1.contains_key(&controller) {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "the {controller} controller is not mounted on this {} machine \
                 (mount it with: mkdir /sys/fs/cgroup/{controller} && mount -t cgroup -o \
                 {controller} cgroup /sys/fs/cgroup/{controller})",
                match self.mode {
                    Mode::Legacy => "cgroup v1",
                    _ => "hybrid",
                }
            )))
        }
    }
}

// ANCHOR: detect
/// Finds the machine's cgroup mode and mount points from the mount table
/// (`proc/self/mountinfo`): v1 hierarchies are mounts of type `cgroup`
/// whose options name their controllers, the v2 tree is the mount of type
/// `cgroup2`. The v2 tree is "unified" when it is mounted at `cgroup_root`
/// itself (normally `/sys/fs/cgroup`), as its filesystem magic confirms.
pub fn detect(cgroup_root: &Path, proc_root: &Path) -> Result<Hierarchy> {
    let path = proc_root.join("self/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    let mut hierarchy = parse_mountinfo(&text, cgroup_root);
    if let Some(v2) = &hierarchy.v2 {
        let controllers = crate::fs::read_optional(v2, "cgroup.controllers")?.unwrap_or_default();
        hierarchy.v2_controllers = controllers.split_whitespace().map(str::to_string).collect();
    }
    if hierarchy.mode == Mode::Unified && fs_magic(cgroup_root)? != CGROUP2_SUPER_MAGIC {
        return Err(Error::Unsupported(format!(
            "{} is listed as cgroup2 in the mount table but is not a cgroup2 filesystem",
            cgroup_root.display()
        )));
    }
    Ok(hierarchy)
}
// ANCHOR_END: detect

/// The `statfs(2)` magic number of the filesystem holding `path`: how
/// runc and systemd tell a v2 machine (`cgroup2` at `/sys/fs/cgroup`) from
/// a v1 one (a tmpfs of mount points there).
pub fn fs_magic(path: &Path) -> Result<i64> {
    let st = nix::sys::statfs::statfs(path)
        .map_err(|e| Error::sys(format!("statfs {}", path.display()), e))?;
    Ok(st.filesystem_type().0 as i64)
}

/// Parses the mount table. Each line reads
/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS] - FSTYPE SOURCE SUPEROPTIONS`;
/// for a v1 hierarchy the super options list its controllers.
pub fn parse_mountinfo(text: &str, cgroup_root: &Path) -> Hierarchy {
    // BEGIN SOLUTION 02.1
    let mut v1 = BTreeMap::new();
    let mut v2 = None;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let (fstype, _source, options) = (right.next(), right.next(), right.next());
        match fstype {
            Some("cgroup2") => v2 = Some(PathBuf::from(unescape(mount_point))),
            Some("cgroup") => {
                for option in options.unwrap_or("").split(',') {
                    if let Some(c) = Controller::from_name(option) {
                        v1.entry(c)
                            .or_insert_with(|| PathBuf::from(unescape(mount_point)));
                    }
                }
            }
            _ => {}
        }
    }
    let mode = match (&v2, v1.is_empty()) {
        (Some(root), true) if root == cgroup_root => Mode::Unified,
        (Some(_), false) => Mode::Hybrid,
        // A v2 tree somewhere else and no v1: still usable as unified.
        (Some(_), true) => Mode::Unified,
        (None, _) => Mode::Legacy,
    };
    Hierarchy {
        mode,
        v1,
        v2,
        v2_controllers: Vec::new(),
    }
    // END SOLUTION
}

/// Mount points escape spaces and a few other bytes as `\040`-style octal.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            if let Ok(n) = u8::from_str_radix(&code, 8) {
                out.push(n as char);
                continue;
            }
            out.push('\\');
            out.push_str(&code);
        } else {
            out.push(c);
        }
    }
    out
}

/// This process's cgroup in each hierarchy, from `proc/PID/cgroup`
/// (`ID:CONTROLLERS:PATH`; v2 is the line `0::PATH`).
pub fn membership(proc_root: &Path, pid: &str) -> Result<Vec<(String, String)>> {
    let path = proc_root.join(pid).join("cgroup");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some((controllers.to_string(), path.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid shared:16 - cgroup cgroup rw,pids
37 30 0:33 / /sys/fs/cgroup/systemd rw,nosuid shared:17 - cgroup cgroup rw,xattr,name=systemd
";

    const UNIFIED: &str = "\
25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn reads_a_hybrid_machine() {
        let h = parse_mountinfo(HYBRID, Path::new("/sys/fs/cgroup"));
        assert_eq!(h.mode, Mode::Hybrid);
        assert_eq!(
            h.v1[&Controller::Cpu],
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            h.v1[&Controller::Cpuacct],
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            h.v1[&Controller::Memory],
            Path::new("/sys/fs/cgroup/memory")
        );
        assert!(!h.v1.contains_key(&Controller::Freezer));
        assert_eq!(h.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert!(h.check(Controller::Pids).is_ok());
        let err = h.check(Controller::Freezer).unwrap_err().to_string();
        assert!(err.contains("freezer controller is not mounted"), "{err}");
    }

    #[test]
    fn reads_a_unified_machine() {
        let mut h = parse_mountinfo(UNIFIED, Path::new("/sys/fs/cgroup"));
        assert_eq!(h.mode, Mode::Unified);
        assert!(h.v1.is_empty());
        h.v2_controllers = vec!["cpu".into(), "memory".into()];
        assert!(h.check(Controller::Memory).is_ok());
        assert!(
            h.check(Controller::Freezer).is_ok(),
            "freezing is built into v2"
        );
        let err = h.check(Controller::Pids).unwrap_err().to_string();
        assert!(err.contains("pids controller is not available"), "{err}");
    }

    #[test]
    fn reads_a_legacy_machine() {
        let legacy: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            parse_mountinfo(&legacy, Path::new("/sys/fs/cgroup")).mode,
            Mode::Legacy
        );
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape(r"/mnt/with\040space"), "/mnt/with space");
    }
}
