//! # Lab 04: bridge, veth and NAT
//!
//! A container with a network namespace of its own has a loopback device and
//! nothing else. To reach it, an engine builds a small network around it: a
//! *veth pair*, a virtual cable whose one end is the container's `eth0` and
//! whose other end is plugged into a *bridge*, a virtual switch on the host;
//! an address for each container from the bridge's subnet; a default route
//! through the bridge's own address; and firewall rules that rewrite
//! addresses on the way out (masquerade) and in (published ports).
//!
//! | step | module | what it does |
//! |---|---|---|
//! | 04.1 | [`netns`], [`link`] | a named network namespace and a veth pair into it |
//! | 04.2 | [`link`] | a bridge, addresses, routes, links up and down |
//! | 04.3 | [`ipam`] | subnets and addresses, handed out once |
//! | 04.4 | [`firewall`], [`sysctl`] | forwarding and masquerade: containers reach out |
//! | 04.5 | [`firewall`] | published ports: destination NAT in |
//! | 04.6 | [`firewall`] | networks isolated from each other |
//! | 04.7 | [`dns`] | names and aliases answered per network |
//!
//! Address allocation, rule generation and DNS answers are plain functions
//! tested without root; netlink, nftables and namespaces are tested against
//! the real kernel, inside throwaway namespaces.

pub mod dns;
pub mod error;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod sysctl;

pub use error::{Error, Result};
