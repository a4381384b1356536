//! One error type for the lab. Each variant names what failed and on what,
//! so a message reads like "read blob sha256:1a2b…: No such file or directory".

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

    /// Content whose SHA-256 is not the digest it was given under.
    #[error("{what}: expected digest {expected}, but the content hashes to {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// A registry answered with an error or something unusable.
    #[error("{0}")]
    Registry(String),

    /// A layer archive that tries to write outside its directory, or is
    /// otherwise unsafe to unpack.
    #[error("refusing layer entry {entry:?}: {why}")]
    Hostile { entry: String, why: String },

    /// A file the user wrote (a Dockerfile) with a mistake at a place in it.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// Input that cannot be used, with what to do instead.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failed file operation on `path`.
    pub fn io(op: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op: op.into(),
            path: path.into(),
            source,
        }
    }
}
