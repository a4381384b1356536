//! Sections read from /proc: the id maps, mounts, namespaces, System V IPC
//! objects and the visible processes, with their parsers.

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;

use crate::util::read_text;

/// The value of `key` in a `Key:\tvalue` file such as /proc/self/status.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == key).then(|| value.trim())
    })
}

/// One line of /proc/self/uid_map or gid_map: ids `inside..inside+count` in
/// this user namespace are ids `outside..outside+count` in the parent's.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct IdMapEntry {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// Reads an id map file (`/proc/self/uid_map` or `/proc/self/gid_map`).
pub fn id_map(path: &str) -> Option<Vec<IdMapEntry>> {
    read_text(path).map(|text| parse_id_map(&text))
}

/// Parses an id map: one `inside outside count` triple per line. Lines that
/// are not three numbers are skipped.
pub fn parse_id_map(text: &str) -> Vec<IdMapEntry> {
    text.lines()
        .filter_map(|line| {
            let mut numbers = line.split_whitespace().map(str::parse::<u32>);
            let entry = IdMapEntry {
                inside: numbers.next()?.ok()?,
                outside: numbers.next()?.ok()?,
                count: numbers.next()?.ok()?,
            };
            numbers.next().is_none().then_some(entry)
        })
        .collect()
}

/// One mount, from a line of /proc/self/mountinfo.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Where it is mounted, relative to this process's root.
    pub mount_point: String,
    /// The directory of the source filesystem mounted there (not `/` for a
    /// bind mount of a subdirectory).
    pub root: String,
    pub fs_type: String,
    /// The device or the name given to mount(2) (`proc`, `tmpfs`, `overlay`).
    pub source: String,
    /// The per-mount options (`rw`, `nosuid`, `relatime`, ...), not the
    /// filesystem's super-block options.
    pub options: Vec<String>,
    /// The optional fields joined by spaces (`shared:1`, `master:2`,
    /// `shared:3 master:1`, `unbindable`), or `private` when there are none.
    pub propagation: String,
}

/// Reads the mount table of this process's mount namespace.
pub fn mounts() -> Option<Vec<Mount>> {
    read_text("/proc/self/mountinfo")
        .map(|text| text.lines().filter_map(parse_mountinfo_line).collect())
}

/// Parses one line of mountinfo (see proc_pid_mountinfo(5)):
///
/// ```text
/// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
/// id parent dev root point options [optional...] - type source super-options
/// ```
pub fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // The optional fields end at the first "-" after the six fixed fields.
    let separator = 6 + fields.get(6..)?.iter().position(|&field| field == "-")?;
    let optional = &fields[6..separator];
    Some(Mount {
        mount_point: unescape(fields[4]),
        root: unescape(fields[3]),
        fs_type: unescape(fields.get(separator + 1)?),
        source: unescape(fields.get(separator + 2)?),
        options: fields[5].split(',').map(str::to_owned).collect(),
        propagation: if optional.is_empty() {
            "private".to_owned()
        } else {
            optional.join(" ")
        },
    })
}

/// Undoes the kernel's octal escapes in mountinfo paths (`\040` is a space,
/// `\011` a tab, `\012` a newline, `\134` a backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match octal_escape(&bytes[i..]) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte written as a `\ooo` escape at the start of `bytes`, if there is
/// one there.
fn octal_escape(bytes: &[u8]) -> Option<u8> {
    let [b'\\', digits @ ..] = bytes.get(..4)? else {
        return None;
    };
    digits.iter().try_fold(0u8, |value, &digit| {
        if !(b'0'..=b'7').contains(&digit) {
            return None;
        }
        value.checked_mul(8)?.checked_add(digit - b'0')
    })
}

/// The namespaces listed in the `namespaces` section, by their name in
/// /proc/self/ns.
const NAMESPACES: [&str; 9] = [
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "user",
    "uts",
];

/// Maps each namespace to its inode number, `None` (null) when the link in
/// /proc/self/ns cannot be read (no /proc, or a kernel without that type).
pub fn namespaces() -> BTreeMap<&'static str, Option<u64>> {
    NAMESPACES
        .iter()
        .map(|&name| {
            let inode = fs::read_link(format!("/proc/self/ns/{name}"))
                .ok()
                .and_then(|target| parse_ns_link(&target.to_string_lossy()));
            (name, inode)
        })
        .collect()
}

/// Extracts the inode from a namespace link's text, `uts:[4026531838]`.
pub fn parse_ns_link(target: &str) -> Option<u64> {
    let (_, inode) = target.split_once(":[")?;
    inode.strip_suffix(']')?.parse().ok()
}

/// The `ipc` section: the ids of the System V IPC objects this process can
/// see, which are per IPC namespace.
#[derive(Debug, Serialize)]
pub struct Ipc {
    pub sysv_shm_ids: Option<Vec<u32>>,
    pub sysv_msg_ids: Option<Vec<u32>>,
    pub sysv_sem_ids: Option<Vec<u32>>,
}

/// Reads the System V IPC objects visible in this IPC namespace.
pub fn ipc() -> Ipc {
    let ids =
        |kind: &str| read_text(format!("/proc/sysvipc/{kind}")).map(|t| parse_sysvipc_ids(&t));
    Ipc {
        sysv_shm_ids: ids("shm"),
        sysv_msg_ids: ids("msg"),
        sysv_sem_ids: ids("sem"),
    }
}

/// Parses a /proc/sysvipc table: a header line, then one object per line
/// with its key in the first column and its id in the second. Returns the
/// ids, sorted.
pub fn parse_sysvipc_ids(text: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// The `pid_namespace_view` section.
#[derive(Debug, Serialize)]
pub struct PidNamespaceView {
    /// The numeric directories of /proc, sorted: the processes of the PID
    /// namespace that mounted it.
    pub visible_pids: Option<Vec<u32>>,
}

/// Lists the processes visible in /proc.
pub fn pid_namespace_view() -> PidNamespaceView {
    let visible_pids = fs::read_dir("/proc").ok().map(|entries| {
        let mut pids: Vec<u32> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        pids
    });
    PidNamespaceView { visible_pids }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_status_fields() {
        let status = "Name:\tprobe\nNoNewPrivs:\t1\nSeccomp:\t2\nCapEff:\t0000000000000000\n";
        assert_eq!(status_field(status, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(status, "CapEff"), Some("0000000000000000"));
        assert_eq!(status_field(status, "Cap"), None);
    }

    #[test]
    fn parses_id_maps() {
        let text = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(
            parse_id_map(text),
            [
                IdMapEntry {
                    inside: 0,
                    outside: 1000,
                    count: 1
                },
                IdMapEntry {
                    inside: 1,
                    outside: 100_000,
                    count: 65536
                },
            ]
        );
        // The initial namespace maps everything.
        assert_eq!(
            parse_id_map("0 0 4294967295\n"),
            [IdMapEntry {
                inside: 0,
                outside: 0,
                count: u32::MAX
            }]
        );
        assert!(parse_id_map("").is_empty());
        assert!(parse_id_map("0 0\nx y z\n0 0 1 2\n").is_empty());
    }

    #[test]
    fn parses_mountinfo_with_optional_fields() {
        let line = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        assert_eq!(
            parse_mountinfo_line(line),
            Some(Mount {
                mount_point: "/mnt2".into(),
                root: "/mnt1".into(),
                fs_type: "ext3".into(),
                source: "/dev/root".into(),
                options: vec!["rw".into(), "noatime".into()],
                propagation: "master:1".into(),
            })
        );
        let two = "1 0 0:1 / / rw shared:1 master:2 - tmpfs tmpfs rw";
        assert_eq!(
            parse_mountinfo_line(two).unwrap().propagation,
            "shared:1 master:2"
        );
    }

    #[test]
    fn parses_private_mount_and_escapes() {
        let line = "50 40 0:45 / /my\\040dir rw,nosuid,nodev - tmpfs my\\134src rw,size=64k";
        let mount = parse_mountinfo_line(line).unwrap();
        assert_eq!(mount.mount_point, "/my dir");
        assert_eq!(mount.source, "my\\src");
        assert_eq!(mount.options, ["rw", "nosuid", "nodev"]);
        assert_eq!(mount.propagation, "private");
    }

    #[test]
    fn rejects_truncated_mountinfo() {
        assert_eq!(parse_mountinfo_line(""), None);
        assert_eq!(parse_mountinfo_line("36 35 98:0 / / rw shared:1"), None);
        assert_eq!(parse_mountinfo_line("36 35 98:0 / / rw - ext3"), None);
    }

    #[test]
    fn unescape_leaves_lone_backslashes() {
        assert_eq!(unescape("a\\b"), "a\\b");
        assert_eq!(unescape("end\\04"), "end\\04");
        assert_eq!(unescape("\\011x"), "\tx");
        assert_eq!(unescape("\\377"), "\u{fffd}");
        assert_eq!(unescape("\\777"), "\\777");
    }

    #[test]
    fn parses_namespace_links() {
        assert_eq!(parse_ns_link("uts:[4026531838]"), Some(4_026_531_838));
        assert_eq!(
            parse_ns_link("pid_for_children:[4026531836]"),
            Some(4_026_531_836)
        );
        assert_eq!(parse_ns_link("uts:4026531838"), None);
    }

    #[test]
    fn parses_sysvipc_tables() {
        let shm = "       key      shmid perms                  size  cpid  lpid nattch\n\
                   1234     32769   600                  1024  10    10   0\n\
                   0        5       600                  4096  11    11   1\n";
        assert_eq!(parse_sysvipc_ids(shm), [5, 32769]);
        assert!(parse_sysvipc_ids("       key      msqid perms\n").is_empty());
    }
}
