//! One error type for the lab. Every variant names the operation and the
//! object it failed on, so a message reads like "mount proc on
//! /var/lib/berth/.../rootfs/proc: Operation not permitted".

use std::path::PathBuf;

/// Everything that can go wrong while creating or entering a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed; `op` says which and on what.
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: nix::Error,
    },

    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The command to run does not exist in the container (Docker exits 127).
    #[error("exec: \"{0}\": executable file not found in $PATH")]
    NotFound(String),

    /// The command exists but cannot be executed (Docker exits 126).
    #[error("exec: \"{0}\": permission denied")]
    NotExecutable(String),

    /// A step inside the container process failed; the child sent this back.
    #[error("container process: {0}")]
    Child(String),

    /// The parent and the child stopped understanding each other.
    #[error("parent/child channel: {0}")]
    Channel(String),

    /// The configuration cannot be carried out as written.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Error {
    /// Wraps a failed system call with a description of what was attempted.
    pub fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            op: op.into(),
            source,
        }
    }

    /// Wraps a failed file operation.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The exit status Docker uses when a container cannot be started for this
    /// reason: 127 for a missing command, 126 for one that cannot run, 125 for
    /// everything the engine itself got wrong.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotFound(_) => 127,
            Error::NotExecutable(_) => 126,
            _ => 125,
        }
    }
}

/// The lab's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds context to `nix` results in one call: `mkdir(..).ctx(|| format!(..))`.
pub(crate) trait SysContext<T> {
    fn ctx<F: FnOnce() -> String>(self, op: F) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, op: F) -> Result<T> {
        self.map_err(|e| Error::sys(op(), e))
    }
}
