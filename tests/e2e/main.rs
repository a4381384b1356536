//! End-to-end tests: `berth` driven as a user types it, through assert_cmd.
//!
//! Each test gets its own engine root in a temporary directory; when the
//! test ends, every container is force-removed and the test fails if any
//! mount or process mentioning that directory is left.

mod support;

mod build;
mod doctor;
mod errors;
mod images;
mod lifecycle;
mod limits;
mod network;
mod pty;
mod registry;
mod rootless;
mod run;
mod storage;
mod volumes;
