//! One error type for the lab. Each variant names what failed and on what,
//! so a message reads like "create veth bh-1a2b3c4d: File exists".

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

    /// A system call failed (setns, unshare, mount).
    #[error("{op}: {source}")]
    Sys { op: String, source: nix::Error },

    /// A netlink request failed; `op` says which.
    #[error("{op}: {message}")]
    Netlink { op: String, message: String },

    /// A command (nft) failed, with its error output.
    #[error("{command}: {stderr}")]
    Command { command: String, stderr: String },

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

    pub fn netlink(op: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Netlink {
            op: op.into(),
            message: message.to_string(),
        }
    }
}
