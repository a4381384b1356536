//! Linux capabilities: root's power cut into about forty pieces.
//!
//! A container's root keeps only the pieces an ordinary service needs.
//! Dangerous ones such as `CAP_SYS_ADMIN` (mount, and much else),
//! `CAP_SYS_MODULE` (load kernel code) and `CAP_NET_ADMIN` (reconfigure the
//! network) are removed from the *bounding set*, so no process in the
//! container can ever regain them, not even through a setuid binary.

use std::collections::BTreeSet;

use caps::{CapSet, Capability};

use crate::error::{Error, Result};

// ANCHOR: default_caps
/// The capabilities Docker leaves a container by default: enough to change
/// file ownership, bind ports below 1024, switch users and send signals,
/// and nothing that reaches beyond the container.
pub const DEFAULT: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];
// ANCHOR_END: default_caps

/// Parses a capability name, with or without the `CAP_` prefix and in any case
/// (`net_admin`, `CAP_NET_ADMIN`), as Docker's `--cap-add` accepts.
pub fn parse(name: &str) -> Result<Capability> {
    // BEGIN SOLUTION 01.7
    // STARTER: // Until step 01.7, only names spelled as in DEFAULT are known.
    // STARTER: Ok(name.parse::<Capability>().unwrap_or_else(|_| todo!()))
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<Capability>().map_err(|_| {
        Error::Invalid(format!(
            "unknown capability {name:?}; names look like NET_ADMIN or CAP_NET_ADMIN (see capabilities(7))"
        ))
    })
    // END SOLUTION
}

/// Every capability this kernel knows.
pub fn all_known() -> BTreeSet<String> {
    caps::runtime::thread_all_supported()
        .into_iter()
        .map(|c| c.to_string())
        .collect()
}

// ANCHOR: resolve_caps
/// Applies `--cap-add` and `--cap-drop` to the default set, Docker's way:
/// drops first, then adds, and `ALL` stands for every capability. The result
/// is sorted so that the same flags always give the same configuration.
pub fn resolve(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>> {
    // BEGIN SOLUTION 01.7
    let everything =
        || -> BTreeSet<String> { caps::all().into_iter().map(|c| c.to_string()).collect() };
    if privileged {
        return Ok(everything().into_iter().collect());
    }
    let mut set: BTreeSet<String> = DEFAULT.iter().map(|s| s.to_string()).collect();
    for name in drop {
        if name.eq_ignore_ascii_case("ALL") {
            set.clear();
        } else {
            set.remove(&parse(name)?.to_string());
        }
    }
    for name in add {
        if name.eq_ignore_ascii_case("ALL") {
            set.extend(everything());
        } else {
            set.insert(parse(name)?.to_string());
        }
    }
    Ok(set.into_iter().collect())
    // END SOLUTION
}
// ANCHOR_END: resolve_caps

fn op(what: &str, e: caps::errors::CapsError) -> Error {
    Error::Child(format!("{what}: {e}"))
}

// ANCHOR: apply_caps
/// Removes every capability not in `keep` from the bounding set, so that no
/// process in the container can ever gain it again, not even by executing a
/// setuid-root file. Needs CAP_SETPCAP, so call it before leaving root.
pub fn limit_bounding(keep: &[String]) -> Result<()> {
    // BEGIN SOLUTION 01.7
    // STARTER: // Until step 01.7, the bounding set keeps every capability.
    // STARTER: Ok(())
    let keep: caps::CapsHashSet = keep.iter().map(|c| parse(c)).collect::<Result<_>>()?;
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| op(&format!("drop {cap} from the bounding set"), e))?;
        }
    }
    Ok(())
    // END SOLUTION
}

/// Trims the effective, permitted and inheritable sets to `keep`. Call it
/// after switching to the container's user: a non-root user has already lost
/// them all at `setuid`, as the kernel's rules for non-root processes say.
pub fn apply(keep: &[String]) -> Result<()> {
    let keep: caps::CapsHashSet = keep.iter().map(|c| parse(c)).collect::<Result<_>>()?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| op("read capabilities", e))?;
    let set: caps::CapsHashSet = keep.intersection(&permitted).copied().collect();
    caps::set(None, CapSet::Inheritable, &caps::CapsHashSet::new())
        .map_err(|e| op("clear inheritable capabilities", e))?;
    caps::set(None, CapSet::Effective, &set).map_err(|e| op("set effective capabilities", e))?;
    caps::set(None, CapSet::Permitted, &set).map_err(|e| op("set permitted capabilities", e))?;
    Ok(())
}
// ANCHOR_END: apply_caps

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_names_like_docker() {
        assert_eq!(parse("net_admin").unwrap(), Capability::CAP_NET_ADMIN);
        assert_eq!(parse("CAP_SYS_ADMIN").unwrap(), Capability::CAP_SYS_ADMIN);
        assert!(
            parse("FLY")
                .unwrap_err()
                .to_string()
                .contains("unknown capability")
        );
    }

    #[test]
    fn default_set_leaves_out_the_dangerous_ones() {
        let set = resolve(&[], &[], false).unwrap();
        assert_eq!(set.len(), DEFAULT.len());
        for dangerous in [
            "CAP_SYS_ADMIN",
            "CAP_SYS_MODULE",
            "CAP_NET_ADMIN",
            "CAP_SYS_PTRACE",
        ] {
            assert!(!set.contains(&dangerous.to_string()), "{dangerous}");
        }
    }

    #[test]
    fn add_and_drop() {
        let set = resolve(&s(&["net_admin"]), &s(&["CHOWN", "kill"]), false).unwrap();
        assert!(set.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!set.contains(&"CAP_CHOWN".to_string()));
        assert!(!set.contains(&"CAP_KILL".to_string()));
        assert_eq!(
            resolve(&s(&["NET_BIND_SERVICE"]), &s(&["ALL"]), false).unwrap(),
            s(&["CAP_NET_BIND_SERVICE"])
        );
        let all = resolve(&[], &[], true).unwrap();
        assert!(all.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(resolve(&s(&["bogus"]), &[], false).is_err());
    }
}
