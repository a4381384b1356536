//! One error type for the lab. Each variant names what failed and on what,
//! so a message reads like "mount overlay on /var/lib/berth/…/rootfs: …".

use std::path::PathBuf;

/// Everything that can go wrong in this lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: String,
        path: PathBuf,
        source: std::io::Error,
    },

    /// A system call other than plain file access failed (mount, fsopen).
    #[error("{op}: {source}")]
    Sys { op: String, source: nix::Error },

    /// Input that cannot be used, with what to do instead.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(op: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op: op.into(),
            path: path.into(),
            source,
        }
    }

    pub fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            op: op.into(),
            source,
        }
    }
}
