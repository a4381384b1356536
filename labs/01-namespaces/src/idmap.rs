//! User and group id maps: how a user namespace translates ids.
//!
//! A map line `0 100000 65536` says "ids 0..65536 inside are ids
//! 100000..165536 outside". The kernel reads the map once, from
//! `/proc/PID/uid_map`, written by a process in the parent namespace. Root
//! inside (id 0) can therefore be an unprivileged user on the host.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One line of a uid or gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// The first id as seen inside the namespace.
    pub inside: u32,
    /// The id it stands for in the parent namespace.
    pub outside: u32,
    /// How many consecutive ids the line maps.
    pub count: u32,
}

impl IdMap {
    /// Maps `count` ids starting at `inside` to ids starting at `outside`.
    pub fn new(inside: u32, outside: u32, count: u32) -> Self {
        IdMap {
            inside,
            outside,
            count,
        }
    }

    /// Translates an id from inside to outside, if this line covers it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        (id >= self.inside && id - self.inside < self.count)
            .then(|| self.outside + (id - self.inside))
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.inside, self.outside, self.count)
    }
}

/// Parses `INSIDE:OUTSIDE:COUNT`, the syntax of `--uidmap` (podman) and of
/// `docker --userns-remap` ranges, e.g. `0:5000:1000`.
impl FromStr for IdMap {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || {
            Error::Invalid(format!(
                "invalid id map {s:?}: expected INSIDE:OUTSIDE:COUNT, for example 0:5000:1000"
            ))
        };
        let [inside, outside, count] = parts.as_slice() else {
            return Err(bad());
        };
        let map = IdMap::new(
            inside.parse().map_err(|_| bad())?,
            outside.parse().map_err(|_| bad())?,
            count.parse().map_err(|_| bad())?,
        );
        if map.count == 0 {
            return Err(bad());
        }
        Ok(map)
    }
}

// ANCHOR: format_map
/// Renders maps in the format of `/proc/PID/uid_map`, refusing what the
/// kernel would refuse: no lines, more than 340 lines, or ranges that overlap
/// inside or outside. (The kernel answers all of these with a bare EINVAL;
/// checking first gives the user a reason.)
pub fn format_map(maps: &[IdMap]) -> Result<String> {
    // BEGIN SOLUTION 01.6
    if maps.is_empty() || maps.len() > 340 {
        return Err(Error::Invalid(format!(
            "an id map needs 1 to 340 lines, not {}",
            maps.len()
        )));
    }
    let overlaps =
        |a: u32, b: u32, n: u32, m: u32| a < b.saturating_add(m) && b < a.saturating_add(n);
    for (i, a) in maps.iter().enumerate() {
        for b in &maps[i + 1..] {
            if overlaps(a.inside, b.inside, a.count, b.count)
                || overlaps(a.outside, b.outside, a.count, b.count)
            {
                return Err(Error::Invalid(format!("id map lines {a} and {b} overlap")));
            }
        }
    }
    Ok(maps.iter().map(|m| format!("{m}\n")).collect())
    // END SOLUTION
}
// ANCHOR_END: format_map

/// Parses the text of `/proc/PID/uid_map` back into lines.
pub fn parse_proc_map(text: &str) -> Result<Vec<IdMap>> {
    // BEGIN SOLUTION 01.6
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<u32> = line
                .split_whitespace()
                .map(str::parse)
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| Error::Invalid(format!("bad id map line {line:?}")))?;
            match f.as_slice() {
                [a, b, c] => Ok(IdMap::new(*a, *b, *c)),
                _ => Err(Error::Invalid(format!("bad id map line {line:?}"))),
            }
        })
        .collect()
    // END SOLUTION
}

// ANCHOR: write_maps
/// Writes the uid and gid maps of process `pid`, which must have just
/// entered a new user namespace. When `deny_setgroups` is set, `deny` is
/// written to `/proc/PID/setgroups` first: an unprivileged writer must do so
/// before it may write a gid map, so that nobody can use the new namespace to
/// drop supplementary groups that were protecting files.
pub fn write_maps(
    proc_root: &Path,
    pid: i32,
    uid_maps: &[IdMap],
    gid_maps: &[IdMap],
    deny_setgroups: bool,
) -> Result<()> {
    // BEGIN SOLUTION 01.6
    let dir = proc_root.join(pid.to_string());
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))
    };
    write("uid_map", &format_map(uid_maps)?)?;
    if deny_setgroups {
        write("setgroups", "deny")?;
    }
    write("gid_map", &format_map(gid_maps)?)
    // END SOLUTION
}
// ANCHOR_END: write_maps

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let m: IdMap = "0:5000:1000".parse().unwrap();
        assert_eq!(m, IdMap::new(0, 5000, 1000));
        assert_eq!(format_map(&[m]).unwrap(), "0 5000 1000\n");
        assert_eq!(m.to_host(0), Some(5000));
        assert_eq!(m.to_host(999), Some(5999));
        assert_eq!(m.to_host(1000), None);
    }

    #[test]
    fn rejects_bad_maps() {
        for bad in ["", "0:1", "a:b:c", "0:5000:0", "0:1:2:3"] {
            let err = bad.parse::<IdMap>().unwrap_err().to_string();
            assert!(err.contains("INSIDE:OUTSIDE:COUNT"), "{bad}: {err}");
        }
        assert!(format_map(&[]).is_err());
        let overlap = format_map(&[IdMap::new(0, 1000, 10), IdMap::new(5, 2000, 10)]);
        assert!(overlap.unwrap_err().to_string().contains("overlap"));
        let outside = format_map(&[IdMap::new(0, 1000, 10), IdMap::new(10, 1005, 10)]);
        assert!(outside.is_err());
        assert!(format_map(&[IdMap::new(0, 1000, 10), IdMap::new(10, 1010, 10)]).is_ok());
    }

    #[test]
    fn reads_the_proc_format() {
        let text = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(
            parse_proc_map(text).unwrap(),
            vec![IdMap::new(0, 1000, 1), IdMap::new(1, 100000, 65536)]
        );
    }
}
