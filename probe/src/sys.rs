//! Sections answered by system calls rather than files: identity, host
//! name, terminal, resource limits, environment.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::{env, mem, ptr};

use serde::{Serialize, Serializer};

/// The real user id.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The real group id.
pub fn gid() -> u32 {
    // SAFETY: as for getuid.
    unsafe { libc::getgid() }
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: as for getuid.
    unsafe { libc::geteuid() }
}

/// The effective group id.
pub fn egid() -> u32 {
    // SAFETY: as for getuid.
    unsafe { libc::getegid() }
}

/// The supplementary groups, as getgroups(2) returns them.
pub fn groups() -> Option<Vec<u32>> {
    // SAFETY: with a size of 0 getgroups only counts, writing nothing.
    let count = unsafe { libc::getgroups(0, ptr::null_mut()) };
    let mut groups = vec![0; usize::try_from(count).ok()?];
    // SAFETY: `groups` has room for `count` gid_t.
    let written = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(written).ok()?);
    Some(groups)
}

/// The UTS namespace's names, from uname(2).
pub struct Uname {
    pub nodename: String,
    pub domainname: String,
}

/// Calls uname(2).
pub fn uname() -> Option<Uname> {
    // SAFETY: utsname is arrays of C chars; all zeroes is valid.
    let mut uts: libc::utsname = unsafe { mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    Some(Uname {
        nodename: c_chars_to_string(&uts.nodename),
        domainname: c_chars_to_string(&uts.domainname),
    })
}

/// Converts a NUL-terminated C char array to a string (lossily).
fn c_chars_to_string(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The `tty` section.
#[derive(Debug, Serialize)]
pub struct Tty {
    /// Whether each standard stream is a terminal.
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The terminal on stdin (`/dev/pts/0`), when there is one and its name
    /// can be found.
    pub name: Option<String>,
    /// The size of that terminal.
    pub window: Option<Window>,
}

/// A terminal's size in characters.
#[derive(Debug, Serialize)]
pub struct Window {
    pub rows: u16,
    pub cols: u16,
}

/// Describes the terminal, if any, on the standard streams.
pub fn tty() -> Tty {
    // SAFETY: isatty accepts any integer and only queries the descriptor.
    let isatty = |fd| unsafe { libc::isatty(fd) } == 1;
    Tty {
        stdin: isatty(libc::STDIN_FILENO),
        stdout: isatty(libc::STDOUT_FILENO),
        stderr: isatty(libc::STDERR_FILENO),
        name: ttyname(libc::STDIN_FILENO),
        window: window(libc::STDIN_FILENO),
    }
}

/// The name of the terminal open on `fd`.
fn ttyname(fd: libc::c_int) -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which is passed along;
    // on success ttyname_r stores a NUL-terminated name in it.
    let rc = unsafe { libc::ttyname_r(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let name = CStr::from_bytes_until_nul(&buf).ok()?;
    Some(name.to_string_lossy().into_owned())
}

/// The window size of the terminal open on `fd`.
fn window(fd: libc::c_int) -> Option<Window> {
    // SAFETY: winsize is four integers; all zeroes is valid.
    let mut size: libc::winsize = unsafe { mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into `size`, which outlives it.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } != 0 {
        return None;
    }
    Some(Window {
        rows: size.ws_row,
        cols: size.ws_col,
    })
}

/// The `rlimits` section.
#[derive(Debug, Serialize)]
pub struct Rlimits {
    /// RLIMIT_NOFILE: open file descriptors.
    pub nofile: Option<Rlimit>,
    /// RLIMIT_NPROC: processes of this real user.
    pub nproc: Option<Rlimit>,
}

/// A resource limit's two values.
#[derive(Debug, Serialize)]
pub struct Rlimit {
    pub soft: Limit,
    pub hard: Limit,
}

/// One limit: a number, or the string `"unlimited"` for RLIM_INFINITY.
#[derive(Debug, PartialEq, Eq)]
pub enum Limit {
    Finite(u64),
    Unlimited,
}

impl From<libc::rlim_t> for Limit {
    fn from(value: libc::rlim_t) -> Self {
        if value == libc::RLIM_INFINITY {
            Self::Unlimited
        } else {
            Self::Finite(value)
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Finite(value) => serializer.serialize_u64(*value),
            Self::Unlimited => serializer.serialize_str("unlimited"),
        }
    }
}

/// Reads the limits the section reports.
pub fn rlimits() -> Rlimits {
    Rlimits {
        nofile: rlimit(libc::RLIMIT_NOFILE),
        nproc: rlimit(libc::RLIMIT_NPROC),
    }
}

/// Calls getrlimit(2) for `resource`.
fn rlimit(resource: libc::__rlimit_resource_t) -> Option<Rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return None;
    }
    Some(Rlimit {
        soft: limit.rlim_cur.into(),
        hard: limit.rlim_max.into(),
    })
}

/// The environment, sorted by name (non-UTF-8 bytes replaced).
pub fn env() -> BTreeMap<String, String> {
    env::vars_os()
        .map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// The command line, program name first.
pub fn argv() -> Vec<String> {
    env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_c_chars() {
        let chars = [
            b'b' as libc::c_char,
            b'x' as libc::c_char,
            0,
            b'z' as libc::c_char,
        ];
        assert_eq!(c_chars_to_string(&chars), "bx");
        assert_eq!(c_chars_to_string(&[]), "");
    }

    #[test]
    fn limits_serialize_as_number_or_unlimited() {
        let json = |limit: Limit| serde_json::to_string(&limit).unwrap();
        assert_eq!(json(Limit::from(1024)), "1024");
        assert_eq!(json(Limit::from(libc::RLIM_INFINITY)), "\"unlimited\"");
    }
}
