//! # Lab 02: control groups, or what a process can use
//!
//! Namespaces (lab 01) decide what a process can *see*. Control groups
//! decide what it can *use*: how much memory before the kernel kills it,
//! how much CPU time per tenth of a second, how many processes, which
//! devices, and whether it may run at all (the freezer). A cgroup is a
//! directory in a special filesystem; limits are numbers written into its
//! files, and a process joins it by writing its pid into `cgroup.procs`.
//!
//! | step | module | what it does |
//! |---|---|---|
//! | 02.1 | [`mode`] | tell cgroup v1, hybrid and v2 apart; find each controller |
//! | 02.2 | [`resources`], [`v1::memory`], [`v2::memory`] | memory limits, and the OOM killer |
//! | 02.3 | [`v1::cpu`], [`v2::cpu`] | CPU shares and weights, CFS quotas |
//! | 02.4 | [`v1::pids`] | the pids limit stops a fork bomb |
//! | 02.5 | [`devices`], [`v1::devices`], [`bpf`] | which device nodes a container may open |
//! | 02.6 | [`v1::freezer`], [`v2::freezer`] | pause and unpause |
//! | 02.7 | [`manager`], [`container`] | one interface over both versions; a container in its cgroup |
//!
//! Everything that only computes (parsing `64m`, converting shares to
//! weights, generating device rules and BPF code) is a plain function
//! tested without root; the files written are snapshot-tested against a
//! temporary directory; the rest is tested against the real kernel, on
//! this machine's version and on the other one in a virtual machine.

pub mod bpf;
pub mod container;
pub mod devices;
pub mod error;
pub mod fs;
pub mod manager;
pub mod mode;
pub mod oci;
pub mod resources;
pub mod stats;
pub mod v1;
pub mod v2;

pub use error::{Error, Result};
pub use manager::{CgroupManager, Manager};
pub use mode::{Controller, Hierarchy, Mode, detect};
pub use resources::Resources;
pub use stats::Stats;
