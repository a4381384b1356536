//! Which user the container's process runs as (`--user uid[:gid]`).
//!
//! Names are looked up in the container's own `/etc/passwd` and
//! `/etc/group`, never the host's: the same name can mean different ids in
//! different images. Numeric ids need no entry at all, as in Docker.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the user asked for: each half a name or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub user: String,
    pub group: Option<String>,
}

/// The ids the process will have, and the home directory for `$HOME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: every group that lists the user by name.
    pub additional_gids: Vec<u32>,
    pub home: String,
}

impl UserSpec {
    /// Parses `user`, `user:group`, `uid` or `uid:gid`.
    pub fn parse(s: &str) -> Result<Self> {
        let (user, group) = match s.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (s, None),
        };
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        if !valid(user) || group.is_some_and(|g| !valid(g)) {
            return Err(Error::Invalid(format!(
                "invalid --user {s:?}: expected NAME or UID, optionally followed by :GROUP or :GID"
            )));
        }
        Ok(UserSpec {
            user: user.to_string(),
            group: group.map(str::to_string),
        })
    }
}

/// One line of `/etc/passwd`: `name:x:uid:gid:gecos:home:shell`.
fn passwd_entries(passwd: &str) -> impl Iterator<Item = (&str, u32, u32, &str)> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some((f[0], f[2].parse().ok()?, f[3].parse().ok()?, f[5]))
    })
}

/// One line of `/etc/group`: `name:x:gid:member,member`.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

// ANCHOR: resolve_user
/// Turns a `--user` value into ids using the text of the container's
/// `/etc/passwd` and `/etc/group` (empty when the image has none). A number
/// is taken as it is; a name must exist. Without a group, the user's primary
/// group from passwd is used, or the same number as the uid if the user has no
/// entry.
pub fn resolve_user(spec: &UserSpec, passwd: &str, group: &str) -> Result<ResolvedUser> {
    // BEGIN SOLUTION 01.7
    let entry = passwd_entries(passwd).find(|(name, uid, _, _)| {
        *name == spec.user || spec.user.parse::<u32>().is_ok_and(|n| n == *uid)
    });
    let (uid, primary_gid, home, name) = match (spec.user.parse::<u32>(), entry) {
        (_, Some((name, uid, gid, home))) => (uid, Some(gid), home.to_string(), Some(name)),
        (Ok(uid), None) => (uid, None, "/".to_string(), None),
        (Err(_), None) => {
            return Err(Error::Invalid(format!(
                "unable to find user {}: no matching entries in passwd file",
                spec.user
            )));
        }
    };
    let gid = match &spec.group {
        Some(g) => match (
            g.parse::<u32>(),
            group_entries(group).find(|(n, _, _)| n == g),
        ) {
            (_, Some((_, gid, _))) => gid,
            (Ok(gid), None) => gid,
            (Err(_), None) => {
                return Err(Error::Invalid(format!(
                    "unable to find group {g}: no matching entries in group file"
                )));
            }
        },
        None => primary_gid.unwrap_or(uid),
    };
    let mut additional_gids: Vec<u32> = match name {
        Some(name) => group_entries(group)
            .filter(|(_, _, members)| members.contains(&name))
            .map(|(_, gid, _)| gid)
            .collect(),
        None => Vec::new(),
    };
    // The primary group is also a supplementary one, as `id` shows under
    // Docker: `uid=1000 gid=1000 groups=1000`.
    additional_gids.push(gid);
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
    // END SOLUTION
}
// ANCHOR_END: resolve_user

/// Reads the container's passwd and group files and resolves `spec`.
pub fn resolve_in_rootfs(spec: &UserSpec, rootfs: &Path) -> Result<ResolvedUser> {
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap_or_default();
    resolve_user(spec, &read("etc/passwd"), &read("etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:web:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:www,alice\naudio:x:29:www\n";

    fn resolve(s: &str) -> Result<ResolvedUser> {
        resolve_user(&UserSpec::parse(s)?, PASSWD, GROUP)
    }

    #[test]
    fn names_and_numbers() {
        let www = resolve("www").unwrap();
        assert_eq!((www.uid, www.gid, www.home.as_str()), (33, 33, "/var/www"));
        assert_eq!(www.additional_gids, vec![29, 33, 50]);
        assert_eq!(resolve("33").unwrap(), www);
        let odd = resolve("4242:4343").unwrap();
        assert_eq!((odd.uid, odd.gid, odd.home.as_str()), (4242, 4343, "/"));
        assert_eq!(resolve("4242").unwrap().gid, 4242);
        assert_eq!(resolve("www:staff").unwrap().gid, 50);
        assert_eq!(resolve("root:0").unwrap().gid, 0);
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = resolve("nobody2").unwrap_err().to_string();
        assert!(err.contains("unable to find user nobody2"), "{err}");
        let err = resolve("www:wheel").unwrap_err().to_string();
        assert!(err.contains("unable to find group wheel"), "{err}");
        for bad in ["", ":", "a:", "a b", "1:2:3"] {
            assert!(UserSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
