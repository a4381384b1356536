//! # Lab 01: namespaces, or what a process can see
//!
//! A container is an ordinary Linux process that the kernel shows a
//! different world: its own hostname (UTS namespace), its own process
//! numbers starting at 1 (PID), its own mount table and root directory
//! (mount), its own IPC objects (IPC), its own network stack (network),
//! its own user ids (user) and its own cgroup root (cgroup).
//!
//! This crate builds that world step by step:
//!
//! | step | module | what it does |
//! |---|---|---|
//! | 01.1 | [`namespace`] | name the seven namespaces, read a process's namespace ids (like `lsns`) |
//! | 01.2 | [`process`] | fork, `unshare`, fork again: the process chain and its channel ([`channel`]) |
//! | 01.3 | [`rootfs`] | private mounts, `pivot_root`, `/proc`, `/dev`, `/sys`, read-only root |
//! | 01.4 | [`idmap`] | user namespaces: uid and gid maps, rootless containers |
//! | 01.5 | [`user`], [`capabilities`] | who the process runs as, and with which privileges |
//! | 01.6 | [`init`], [`terminal`] | a tiny init for PID 1, pseudo-terminals |
//! | 01.7 | [`process::enter`] | join a running container's namespaces (`docker exec`) |
//!
//! Everything that only computes (parsing, planning) is a plain function
//! tested without root. The few functions that call the kernel say so.

pub mod capabilities;
pub mod channel;
pub mod config;
pub mod error;
pub mod host;
pub mod idmap;
pub mod init;
pub mod namespace;
pub mod netns;
pub mod process;
pub mod rootfs;
pub mod syscall;
pub mod terminal;
pub mod user;

pub use config::{ContainerConfig, MountSpec, ProcessSpec};
pub use error::{Error, Result};
pub use idmap::IdMap;
pub use namespace::{Namespace, NsMode};
pub use process::{Exit, Running, Stdio, enter, spawn};
