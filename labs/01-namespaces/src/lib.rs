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
//! | 01.2 | [`process`], [`channel`] | fork, `unshare`, fork again: the process chain; the hostname; PID 1 |
//! | 01.3 | [`rootfs`], [`syscall`] | private mounts, `pivot_root`, `/proc`, `/dev`, `/sys`, read-only root |
//! | 01.4 | [`namespace::NsMode`] | the IPC namespace: private, shared with the host, or joined |
//! | 01.5 | [`netns`] | the network namespace: only a loopback, brought up |
//! | 01.6 | [`idmap`] | user namespaces: uid and gid maps, rootless containers |
//! | 01.7 | [`user`], [`capabilities`] | who the process runs as, and with which privileges |
//! | 01.8 | [`init`] | PID 1: signals, zombies and a tiny init |
//! | 01.9 | [`process::enter`] | join a running container's namespaces (`docker exec`) |
//! | 01.10 | [`terminal`] | pseudo-terminals for `-t` |
//!
//! Everything that only computes (parsing, planning) is a plain function
//! tested without root. The few functions that call the kernel say so.

pub mod capabilities;
pub mod channel;
pub mod config;
pub mod error;
pub mod fsmount;
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
