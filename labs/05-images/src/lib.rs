//! # Lab 05: images
//!
//! An image is a configuration (environment, command, working directory,
//! user, ports, volumes) plus an ordered list of layers, each a tar file of
//! changes. Everything is named by the SHA-256 of its bytes, so two images
//! that share a layer store it once, and a registry, an archive and the
//! local store can all check what they were given.
//!
//! | step | module | what it does |
//! |---|---|---|
//! | 05.1 | [`digest`], [`reference`] | content addresses and image names |
//! | 05.2 | [`store`] | the OCI image layout: blobs, manifests, an index of names |
//! | 05.3 | [`extract`] | unpacking a layer without trusting it |
//! | 05.4 | [`registry`] | the distribution protocol: pull, push, auth |
//! | 05.5 | [`archive`] | `save`/`load` and `export`/`import` |
//! | 05.6 | [`dockerfile`] | parsing a Dockerfile, with line and column errors |
//! | 05.7 | [`entrypoint`] | how ENTRYPOINT and CMD combine |
//! | 05.8 | [`context`] | the build context, `.dockerignore`, COPY and ADD |

pub mod archive;
pub mod auth;
pub mod context;
pub mod digest;
pub mod dockerfile;
pub mod entrypoint;
pub mod error;
pub mod extract;
pub mod reference;
pub mod registry;
pub mod store;

pub use error::{Error, Result};
