//! One error type for the lab. A message names the operation, the file and
//! the value, and where it can, what to do about it: "write 100 to
//! /sys/fs/cgroup/pids/berth/abc/pids.max: Permission denied".

use std::path::PathBuf;

/// Everything that can go wrong while making, limiting or reading a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation on the cgroup filesystem failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A system call other than plain file access failed (bpf, statfs).
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: nix::Error,
    },

    /// A limit as the user wrote it cannot be understood or is out of range.
    #[error("{0}")]
    Invalid(String),

    /// The limit is fine, but this machine's cgroup setup cannot enforce it.
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    pub(crate) fn io(
        op: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            op: op.into(),
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            op: op.into(),
            source,
        }
    }
}

/// The lab's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
