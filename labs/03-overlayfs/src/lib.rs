//! # Lab 03: union filesystems, layers and volumes
//!
//! An image is a stack of read-only layers; a container adds one writable
//! layer on top. The kernel's overlay filesystem shows the stack as one
//! directory tree: a read falls through to the top-most layer that has the
//! file, the first write copies the file up into the writable layer, and a
//! deletion leaves a *whiteout* there that hides the file below. Starting a
//! container then costs one mount, whatever the size of its image.
//!
//! | step | module | what it does |
//! |---|---|---|
//! | 03.1 | [`mount`] | mount and unmount an overlay of layers |
//! | 03.2 | [`whiteout`] | recognise copy-ups, whiteouts and opaque directories |
//! | 03.3 | [`whiteout`] | convert overlay whiteouts to OCI's `.wh.` files and back |
//! | 03.4 | [`diff`] | what a container added, changed and deleted |
//! | 03.5 | [`layer`] | pack a writable layer into a reproducible layer tarball |
//! | 03.6 | [`vfs`] | the copying fallback where overlay cannot be mounted |
//! | 03.7 | [`volume`] | bind mounts, named volumes and tmpfs mounts |
//!
//! Parsing, diffing and packing are plain functions tested without root;
//! mounting is tested against the real kernel.

pub mod diff;
pub mod error;
pub mod layer;
pub mod mount;
pub mod vfs;
pub mod volume;
pub mod whiteout;

pub use error::{Error, Result};
