//! Device access rules: which device nodes a container may open or create.
//!
//! A process that is root in a container could `mknod` a node for the
//! host's disk (block 8:0) and read it, bypassing every mount. The devices
//! cgroup stops that: every open of a device node is checked against an
//! allow-list of (type, major, minor, access) rules. cgroup v1 keeps the
//! list in `devices.allow` / `devices.deny`; cgroup v2 has no such files,
//! and a small BPF program attached to the cgroup makes the same decision.

use std::fmt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Character device, block device, or both (`a`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceKind {
    #[serde(rename = "a")]
    All,
    #[serde(rename = "c")]
    Char,
    #[serde(rename = "b")]
    Block,
}

/// One rule: allow (or deny) `access` (some of `r`ead, `w`rite, `m`knod)
/// to devices of `kind` with these numbers; `None` is the wildcard `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// A subset of "rwm", in that order.
    pub access: String,
}

impl DeviceRule {
    /// An allow rule for a character device.
    pub fn allow_char(major: Option<u32>, minor: Option<u32>, access: &str) -> Self {
        DeviceRule {
            allow: true,
            kind: DeviceKind::Char,
            major,
            minor,
            access: access.into(),
        }
    }
}

/// The rule in cgroup v1's syntax, as written to `devices.allow`:
/// `c 1:3 rwm`, `b *:* m`, `a` (everything).
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let kind = match self.kind {
            DeviceKind::All => return f.write_str("a"),
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        write!(
            f,
            "{kind} {}:{} {}",
            number(self.major),
            number(self.minor),
            self.access
        )
    }
}

// ANCHOR: default_rules
/// The devices every container may use, as Docker and runc allow them:
/// creating any node (`mknod` alone grants nothing: opening it is checked
/// again), and reading and writing the harmless ones the engine creates.
pub fn default_rules() -> Vec<DeviceRule> {
    let c = |major, minor, access| DeviceRule::allow_char(Some(major), minor, access);
    vec![
        DeviceRule::allow_char(None, None, "m"),
        DeviceRule {
            kind: DeviceKind::Block,
            ..DeviceRule::allow_char(None, None, "m")
        },
        c(1, Some(3), "rwm"), // /dev/null
        c(1, Some(5), "rwm"), // /dev/zero
        c(1, Some(7), "rwm"), // /dev/full
        c(1, Some(8), "rwm"), // /dev/random
        c(1, Some(9), "rwm"), // /dev/urandom
        c(5, Some(0), "rwm"), // /dev/tty
        c(5, Some(1), "rwm"), // /dev/console
        c(5, Some(2), "rwm"), // /dev/ptmx (the container's own devpts)
        c(136, None, "rwm"),  // /dev/pts/N
    ]
}
// ANCHOR_END: default_rules

/// A device mapping from `--device HOST[:CONTAINER][:PERMISSIONS]`, as
/// Docker spells it: `--device /dev/fuse`, `--device /dev/sda:/dev/xvda:r`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub host: PathBuf,
    pub container: PathBuf,
    /// A subset of "rwm".
    pub access: String,
}

/// Parses a `--device` value; the host path is checked later, by
/// [`DeviceMapping::resolve`].
pub fn parse_device(text: &str) -> Result<DeviceMapping> {
    // BEGIN SOLUTION 02.5
    let bad = |why: &str| {
        Error::Invalid(format!(
            "invalid --device {text:?}: {why} (expected HOST[:CONTAINER][:PERMISSIONS], \
             for example /dev/fuse or /dev/sda:/dev/xvda:rw)"
        ))
    };
    let parts: Vec<&str> = text.split(':').collect();
    let is_access = |s: &str| !s.is_empty() && s.chars().all(|c| "rwm".contains(c));
    let (host, container, access) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, second] if is_access(second) => (*host, *host, *second),
        [_, second] if !second.starts_with('/') => {
            return Err(bad("permissions are a combination of r, w and m"));
        }
        [host, container] => (*host, *container, "rwm"),
        [host, container, access] => (*host, *container, *access),
        _ => return Err(bad("too many colons")),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(bad("device paths must be absolute"));
    }
    if !is_access(access) {
        return Err(bad("permissions are a combination of r, w and m"));
    }
    // Keep the letters in canonical order.
    let access: String = "rwm".chars().filter(|c| access.contains(*c)).collect();
    Ok(DeviceMapping {
        host: host.into(),
        container: container.into(),
        access,
    })
    // END SOLUTION
}

/// A device node to create in the container, with the rule that allows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedDevice {
    /// The node on the host.
    pub host: PathBuf,
    /// Where it appears in the container.
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl DeviceMapping {
    /// Looks at the host's node: its type and numbers become the rule.
    pub fn resolve(&self) -> Result<(ResolvedDevice, DeviceRule)> {
        let meta = std::fs::metadata(&self.host).map_err(|e| {
            Error::Invalid(format!(
                "--device {}: {e} (the device must exist on the host)",
                self.host.display()
            ))
        })?;
        resolve_node(&self.host, &meta, &self.container, &self.access)
    }
}

fn resolve_node(
    host: &Path,
    meta: &std::fs::Metadata,
    container: &Path,
    access: &str,
) -> Result<(ResolvedDevice, DeviceRule)> {
    use std::os::unix::fs::MetadataExt;
    let kind = if meta.file_type().is_char_device() {
        DeviceKind::Char
    } else if meta.file_type().is_block_device() {
        DeviceKind::Block
    } else {
        return Err(Error::Invalid(format!(
            "--device {}: not a device node (use -v to mount files and directories)",
            host.display()
        )));
    };
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let device = ResolvedDevice {
        host: host.to_path_buf(),
        path: container.to_path_buf(),
        kind,
        major,
        minor,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    };
    let rule = DeviceRule {
        allow: true,
        kind,
        major: Some(major),
        minor: Some(minor),
        access: access.into(),
    };
    Ok((device, rule))
}

/// Whether `rules`, read in order with the last match deciding (and "deny"
/// when nothing matches), let a process open or create this device: the
/// semantics the v2 BPF program implements, and the v1 controller's
/// outcome for the rule lists this lab writes.
pub fn allowed(
    rules: &[DeviceRule],
    kind: DeviceKind,
    major: u32,
    minor: u32,
    access: char,
) -> bool {
    // BEGIN SOLUTION 02.5
    let mut verdict = false;
    for r in rules {
        let kind_matches = r.kind == DeviceKind::All || r.kind == kind;
        let numbers_match =
            r.major.is_none_or(|m| m == major) && r.minor.is_none_or(|m| m == minor);
        let access_matches = r.kind == DeviceKind::All || r.access.contains(access);
        if kind_matches && numbers_match && access_matches {
            verdict = r.allow;
        }
    }
    verdict
    // END SOLUTION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_in_v1_syntax() {
        let lines: Vec<String> = default_rules().iter().map(|r| r.to_string()).collect();
        insta::assert_snapshot!(lines.join("\n"), @r"
        c *:* m
        b *:* m
        c 1:3 rwm
        c 1:5 rwm
        c 1:7 rwm
        c 1:8 rwm
        c 1:9 rwm
        c 5:0 rwm
        c 5:1 rwm
        c 5:2 rwm
        c 136:* rwm
        ");
    }

    #[test]
    fn device_flags() {
        let d = parse_device("/dev/fuse").unwrap();
        assert_eq!(
            (d.container.as_path(), d.access.as_str()),
            (Path::new("/dev/fuse"), "rwm")
        );
        let d = parse_device("/dev/sda:/dev/xvda:wr").unwrap();
        assert_eq!(
            (d.container.as_path(), d.access.as_str()),
            (Path::new("/dev/xvda"), "rw")
        );
        let d = parse_device("/dev/null:r").unwrap();
        assert_eq!(
            (d.container.as_path(), d.access.as_str()),
            (Path::new("/dev/null"), "r")
        );
        let err = parse_device("/dev/loop0:rwx").unwrap_err().to_string();
        assert!(err.contains("permissions are a combination"), "{err}");
        for bad in ["dev/fuse", "/dev/a:/dev/b:rwx", "/a:/b:r:x"] {
            let err = parse_device(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid --device"), "{err}");
        }
    }

    #[test]
    fn missing_device_is_named() {
        let err = parse_device("/dev/does-not-exist")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("/dev/does-not-exist"), "{err}");
    }

    #[test]
    fn resolves_a_real_node() {
        let (dev, rule) = parse_device("/dev/null:/dev/mynull:r")
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!((dev.kind, dev.major, dev.minor), (DeviceKind::Char, 1, 3));
        assert_eq!(dev.path, Path::new("/dev/mynull"));
        assert_eq!(rule.to_string(), "c 1:3 r");
    }

    #[test]
    fn last_matching_rule_decides() {
        let rules = default_rules();
        assert!(allowed(&rules, DeviceKind::Char, 1, 3, 'r'));
        assert!(allowed(&rules, DeviceKind::Char, 136, 7, 'w'));
        assert!(
            allowed(&rules, DeviceKind::Block, 8, 0, 'm'),
            "mknod is allowed"
        );
        assert!(
            !allowed(&rules, DeviceKind::Block, 8, 0, 'r'),
            "opening a disk is not"
        );
        assert!(
            !allowed(&rules, DeviceKind::Char, 1, 1, 'r'),
            "nor /dev/mem"
        );
    }
}
