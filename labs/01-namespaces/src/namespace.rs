//! The seven kinds of namespace a container uses, and how to look at them.
//!
//! A namespace wraps one kind of global resource (the hostname, the process
//! ids, the mount table …) so that the processes inside get their own copy.
//! Every process has a link per kind under `/proc/PID/ns/`; two processes are
//! in the same namespace exactly when their links name the same inode.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A kind of namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    /// The user namespace maps user and group ids; root inside can be nobody outside.
    User,
    /// The PID namespace numbers processes afresh, starting at 1.
    Pid,
    /// The mount namespace gives a private mount table.
    Mount,
    /// The UTS namespace holds the hostname and NIS domain name.
    Uts,
    /// The IPC namespace isolates System V IPC objects and POSIX message queues.
    Ipc,
    /// The network namespace has its own interfaces, routes and firewall.
    Network,
    /// The cgroup namespace makes the process's cgroup look like the root.
    Cgroup,
}

impl Namespace {
    /// Every kind, in the order a process should join them: the user
    /// namespace first, because joining it grants the capabilities needed to
    /// join the others; the mount namespace last but one, because after it
    /// the host's `/proc` may be out of reach.
    pub const ALL: [Namespace; 7] = [
        Namespace::User,
        Namespace::Ipc,
        Namespace::Uts,
        Namespace::Network,
        Namespace::Pid,
        Namespace::Cgroup,
        Namespace::Mount,
    ];

    /// The flag that `clone(2)`, `unshare(2)` and `setns(2)` use for this kind.
    pub fn clone_flag(self) -> CloneFlags {
        match self {
            Namespace::User => CloneFlags::CLONE_NEWUSER,
            Namespace::Pid => CloneFlags::CLONE_NEWPID,
            Namespace::Mount => CloneFlags::CLONE_NEWNS,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Network => CloneFlags::CLONE_NEWNET,
            Namespace::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        }
    }

    /// The file name under `/proc/PID/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            Namespace::User => "user",
            Namespace::Pid => "pid",
            Namespace::Mount => "mnt",
            Namespace::Uts => "uts",
            Namespace::Ipc => "ipc",
            Namespace::Network => "net",
            Namespace::Cgroup => "cgroup",
        }
    }

    /// The name the OCI runtime specification uses in `linux.namespaces`.
    pub fn oci_name(self) -> &'static str {
        match self {
            Namespace::Network => "network",
            Namespace::Mount => "mount",
            other => other.proc_name(),
        }
    }

    /// The path of this namespace for process `pid` under a proc mount.
    pub fn path_for(self, proc_root: &Path, pid: i32) -> PathBuf {
        proc_root
            .join(pid.to_string())
            .join("ns")
            .join(self.proc_name())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.proc_name())
    }
}

impl FromStr for Namespace {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "user" => Namespace::User,
            "pid" => Namespace::Pid,
            "mnt" | "mount" => Namespace::Mount,
            "uts" => Namespace::Uts,
            "ipc" => Namespace::Ipc,
            "net" | "network" => Namespace::Network,
            "cgroup" => Namespace::Cgroup,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown namespace {other:?} (expected one of user, pid, mnt, uts, ipc, net, cgroup)"
                )));
            }
        })
    }
}

// ANCHOR: ns_mode
/// How a container gets a namespace of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsMode {
    /// Share the namespace of the process that starts the container
    /// (`--network host`, `--ipc host`).
    Host,
    /// Make a new, empty one.
    New,
    /// Join an existing one, named by a path such as `/proc/1234/ns/ipc`
    /// (`--ipc container:NAME`).
    Join(PathBuf),
}
// ANCHOR_END: ns_mode

/// Parses the target of a `/proc/PID/ns/KIND` link, such as `uts:[4026531838]`,
/// into the kind and the inode that identifies the namespace.
pub fn parse_ns_link(link: &str) -> Option<(&str, u64)> {
    // BEGIN SOLUTION 01.1
    let (kind, rest) = link.split_once(':')?;
    let inode = rest.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
    Some((kind, inode))
    // END SOLUTION
}

// ANCHOR: namespace_ids
/// Reads the namespace identity of process `pid`: for each kind, the inode
/// number of the namespace the process is in. Comparing two processes'
/// maps shows which namespaces they share.
pub fn namespace_ids(proc_root: &Path, pid: i32) -> Result<BTreeMap<Namespace, u64>> {
    // BEGIN SOLUTION 01.1
    let mut ids = BTreeMap::new();
    for ns in Namespace::ALL {
        let path = ns.path_for(proc_root, pid);
        let link = std::fs::read_link(&path).map_err(|e| Error::io("readlink", &path, e))?;
        let text = link.to_string_lossy();
        let (_, inode) = parse_ns_link(&text).ok_or_else(|| {
            Error::Invalid(format!("unexpected link {text:?} at {}", path.display()))
        })?;
        ids.insert(ns, inode);
    }
    Ok(ids)
    // END SOLUTION
}
// ANCHOR_END: namespace_ids

/// One line of the `lsns`-style listing: a namespace and who is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceUse {
    pub kind: Namespace,
    pub inode: u64,
    /// How many processes are in it.
    pub nprocs: usize,
    /// The lowest pid in it, as `lsns` shows.
    pub pid: i32,
    /// That process's command name.
    pub command: String,
}

/// Groups processes by the namespaces they are in, as `lsns` does: given
/// `(pid, command, namespace ids)` for every process, returns one entry per
/// namespace sorted by kind and inode.
pub fn group_namespaces(
    processes: &[(i32, String, BTreeMap<Namespace, u64>)],
) -> Vec<NamespaceUse> {
    // BEGIN SOLUTION 01.1
    let mut by_ns: BTreeMap<(Namespace, u64), NamespaceUse> = BTreeMap::new();
    for (pid, command, ids) in processes {
        for (&kind, &inode) in ids {
            let entry = by_ns.entry((kind, inode)).or_insert_with(|| NamespaceUse {
                kind,
                inode,
                nprocs: 0,
                pid: *pid,
                command: command.clone(),
            });
            entry.nprocs += 1;
            if *pid < entry.pid {
                entry.pid = *pid;
                entry.command = command.clone();
            }
        }
    }
    by_ns.into_values().collect()
    // END SOLUTION
}

/// Lists every namespace on the machine with its processes, like `lsns`.
/// Processes that vanish while we read them, or whose links we may not read,
/// are skipped.
pub fn list_namespaces(proc_root: &Path) -> Result<Vec<NamespaceUse>> {
    let entries = std::fs::read_dir(proc_root).map_err(|e| Error::io("read", proc_root, e))?;
    let mut processes = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(ids) = namespace_ids(proc_root, pid) else {
            continue;
        };
        let command = std::fs::read_to_string(entry.path().join("comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        processes.push((pid, command, ids));
    }
    Ok(group_namespaces(&processes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_links() {
        assert_eq!(parse_ns_link("uts:[4026531838]"), Some(("uts", 4026531838)));
        assert_eq!(
            parse_ns_link("pid_for_children:[1]"),
            Some(("pid_for_children", 1))
        );
        assert_eq!(parse_ns_link("uts:4026531838"), None);
        assert_eq!(parse_ns_link("garbage"), None);
    }

    #[test]
    fn names_round_trip() {
        for ns in Namespace::ALL {
            assert_eq!(ns.proc_name().parse::<Namespace>().unwrap(), ns);
            assert_eq!(ns.oci_name().parse::<Namespace>().unwrap(), ns);
        }
        assert!("time".parse::<Namespace>().is_err());
    }

    #[test]
    fn groups_like_lsns() {
        let host: BTreeMap<_, _> = [(Namespace::Uts, 1), (Namespace::Pid, 10)].into();
        let container: BTreeMap<_, _> = [(Namespace::Uts, 2), (Namespace::Pid, 10)].into();
        let rows = group_namespaces(&[
            (7, "bash".into(), host.clone()),
            (1, "systemd".into(), host),
            (42, "sh".into(), container),
        ]);
        let summary: Vec<_> = rows
            .iter()
            .map(|r| (r.kind, r.inode, r.nprocs, r.pid, r.command.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Namespace::Pid, 10, 3, 1, "systemd"),
                (Namespace::Uts, 1, 2, 1, "systemd"),
                (Namespace::Uts, 2, 1, 42, "sh"),
            ]
        );
    }
}
