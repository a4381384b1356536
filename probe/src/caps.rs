//! Capabilities: the five sets of /proc/self/status decoded into names, plus
//! the other privilege-related fields of that file.

use serde::Serialize;

use crate::procfs;
use crate::util::read_text;

/// The names of capability bits 0..=40, indexed by bit number (see
/// capabilities(7) and linux/capability.h).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",              // 0
    "CAP_DAC_OVERRIDE",       // 1
    "CAP_DAC_READ_SEARCH",    // 2
    "CAP_FOWNER",             // 3
    "CAP_FSETID",             // 4
    "CAP_KILL",               // 5
    "CAP_SETGID",             // 6
    "CAP_SETUID",             // 7
    "CAP_SETPCAP",            // 8
    "CAP_LINUX_IMMUTABLE",    // 9
    "CAP_NET_BIND_SERVICE",   // 10
    "CAP_NET_BROADCAST",      // 11
    "CAP_NET_ADMIN",          // 12
    "CAP_NET_RAW",            // 13
    "CAP_IPC_LOCK",           // 14
    "CAP_IPC_OWNER",          // 15
    "CAP_SYS_MODULE",         // 16
    "CAP_SYS_RAWIO",          // 17
    "CAP_SYS_CHROOT",         // 18
    "CAP_SYS_PTRACE",         // 19
    "CAP_SYS_PACCT",          // 20
    "CAP_SYS_ADMIN",          // 21
    "CAP_SYS_BOOT",           // 22
    "CAP_SYS_NICE",           // 23
    "CAP_SYS_RESOURCE",       // 24
    "CAP_SYS_TIME",           // 25
    "CAP_SYS_TTY_CONFIG",     // 26
    "CAP_MKNOD",              // 27
    "CAP_LEASE",              // 28
    "CAP_AUDIT_WRITE",        // 29
    "CAP_AUDIT_CONTROL",      // 30
    "CAP_SETFCAP",            // 31
    "CAP_MAC_OVERRIDE",       // 32
    "CAP_MAC_ADMIN",          // 33
    "CAP_SYSLOG",             // 34
    "CAP_WAKE_ALARM",         // 35
    "CAP_BLOCK_SUSPEND",      // 36
    "CAP_AUDIT_READ",         // 37
    "CAP_PERFMON",            // 38
    "CAP_BPF",                // 39
    "CAP_CHECKPOINT_RESTORE", // 40
];

/// The `capabilities` section. Each set is `None` (null) when
/// /proc/self/status cannot be read or lacks the field (old kernels have no
/// `CapAmb`).
#[derive(Debug, Serialize)]
pub struct Capabilities {
    pub effective: Option<Vec<String>>,
    pub permitted: Option<Vec<String>>,
    pub bounding: Option<Vec<String>>,
    pub inheritable: Option<Vec<String>>,
    pub ambient: Option<Vec<String>>,
    /// The no_new_privs bit (prctl PR_SET_NO_NEW_PRIVS).
    pub no_new_privs: Option<bool>,
    /// The seccomp mode: 0 disabled, 1 strict, 2 filter.
    pub seccomp: Option<u32>,
}

/// Reads the capability sets of this process.
pub fn read() -> Capabilities {
    let status = read_text("/proc/self/status");
    let field = |key: &str| {
        status
            .as_deref()
            .and_then(|text| procfs::status_field(text, key))
            .map(str::to_owned)
    };
    let set = |key: &str| field(key).as_deref().and_then(decode_mask);
    Capabilities {
        effective: set("CapEff"),
        permitted: set("CapPrm"),
        bounding: set("CapBnd"),
        inheritable: set("CapInh"),
        ambient: set("CapAmb"),
        no_new_privs: field("NoNewPrivs").and_then(|value| match value.as_str() {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        }),
        seccomp: field("Seccomp").and_then(|value| value.parse().ok()),
    }
}

/// The name of capability `bit`, `CAP_<bit>` for bits newer than the table.
pub fn name(bit: u32) -> String {
    usize::try_from(bit)
        .ok()
        .and_then(|index| NAMES.get(index))
        .map_or_else(|| format!("CAP_{bit}"), |name| (*name).to_owned())
}

/// Decodes a capability mask as printed in /proc/self/status (16 hex digits,
/// e.g. `000001ffffffffff`) into the alphabetically sorted names of its set
/// bits. `None` when the text is not hex.
pub fn decode_mask(hex: &str) -> Option<Vec<String>> {
    let mask = u64::from_str_radix(hex.trim(), 16).ok()?;
    let mut names: Vec<String> = (0..u64::BITS)
        .filter(|bit| mask & (1 << bit) != 0)
        .map(name)
        .collect();
    names.sort();
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_ends_at_checkpoint_restore() {
        assert_eq!(name(0), "CAP_CHOWN");
        assert_eq!(name(21), "CAP_SYS_ADMIN");
        assert_eq!(name(40), "CAP_CHECKPOINT_RESTORE");
        assert_eq!(name(41), "CAP_41");
    }

    #[test]
    fn decodes_empty_and_small_masks() {
        assert_eq!(decode_mask("0000000000000000"), Some(vec![]));
        // Bits 0 (CHOWN), 5 (KILL) and 10 (NET_BIND_SERVICE), sorted by name.
        assert_eq!(
            decode_mask("0000000000000421").unwrap(),
            ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        );
    }

    #[test]
    fn decodes_full_mask_with_unknown_bits() {
        let all = decode_mask("000001ffffffffff").unwrap();
        assert_eq!(all.len(), 41);
        assert!(all.windows(2).all(|pair| pair[0] < pair[1]));
        let with_unknown = decode_mask("0000060000000000").unwrap();
        assert_eq!(with_unknown, ["CAP_41", "CAP_42"]);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode_mask("not hex"), None);
        assert_eq!(decode_mask(""), None);
    }
}
