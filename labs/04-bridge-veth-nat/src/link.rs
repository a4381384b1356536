//! Links, addresses and routes over netlink.
//!
//! `ip link`, `ip addr` and `ip route` are thin front ends to *rtnetlink*: a
//! socket family (`AF_NETLINK`, `NETLINK_ROUTE`) over which a program sends
//! the kernel requests such as "create a link of kind veth named X whose peer
//! is Y" and reads the answers. This module speaks it through the `rtnetlink`
//! crate. That crate is asynchronous; [`Netlink`] hides it behind plain
//! blocking calls, with a small single-threaded runtime of its own.
//!
//! A netlink socket belongs to the network namespace of the thread that
//! opened it, and every request on it acts on that namespace. So there is
//! one [`Netlink`] per namespace: open the host's on any host thread, and a
//! container's inside [`crate::netns::NetNs::run`], whose thread has joined
//! the container's namespace.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::{Error, Result};

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Administratively up (`ip link set NAME up`).
    pub up: bool,
    /// The bridge it is plugged into, by index.
    pub master: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

/// An rtnetlink connection in the network namespace of the thread that
/// opened it.
pub struct Netlink {
    runtime: tokio::runtime::Runtime,
    handle: Handle,
}

/// The errno of a failed netlink request, if it carries one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// A readable error for request `op`: the errno's text when there is one.
fn failed(op: impl Into<String>, e: rtnetlink::Error) -> Error {
    let message = match errno(&e) {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    };
    Error::netlink(op, message)
}

/// The MAC address Docker derives from an IPv4 address: `02:42` and the
/// four bytes of the address. The `02` bit marks it as locally assigned;
/// deriving it from the address keeps neighbours' ARP caches valid when an
/// address is reused.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `02:42:0a:58:00:02`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Netlink {
    /// Opens a netlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::netlink("start the netlink runtime", e))?;
        // The socket is made here, on this thread, so in its namespace.
        let (connection, handle, _) = {
            let _inside = runtime.enter();
            rtnetlink::new_connection().map_err(|e| Error::netlink("open a netlink socket", e))?
        };
        runtime.spawn(connection);
        Ok(Netlink { runtime, handle })
    }

    fn block<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    /// Every link in the namespace.
    pub fn links(&self) -> Result<Vec<Link>> {
        self.block(async {
            let messages: Vec<LinkMessage> = self
                .handle
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| failed("list links", e))?;
            Ok(messages.iter().map(to_link).collect())
        })
    }

    /// The link called `name`, if there is one.
    pub fn link(&self, name: &str) -> Result<Option<Link>> {
        self.block(async {
            let mut found = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            match found.try_next().await {
                Ok(Some(m)) => Ok(Some(to_link(&m))),
                Ok(None) => Ok(None),
                Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
                Err(e) => Err(failed(format!("find link {name}"), e)),
            }
        })
    }

    fn index(&self, name: &str) -> Result<u32> {
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| Error::netlink(format!("find link {name}"), "no such device"))
    }

    // ANCHOR: bridge
    /// Makes a bridge called `name` and sets it up; an existing bridge of
    /// that name is kept. Returns its index.
    pub fn bridge(&self, name: &str) -> Result<u32> {
        if let Some(link) = self.link(name)? {
            return Ok(link.index);
        }
        self.block(async {
            // BEGIN SOLUTION 04.2
            match self
                .handle
                .link()
                .add(LinkBridge::new(name).up().build())
                .execute()
                .await
            {
                Ok(()) => Ok(()),
                // Made by a concurrent engine between our look and now.
                Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
                Err(e) => Err(failed(format!("create bridge {name}"), e)),
            }
            // END SOLUTION
        })?;
        self.index(name)
    }
    // ANCHOR_END: bridge

    // ANCHOR: veth
    /// Makes a veth pair: `host` in this namespace, and its peer `peer`
    /// created directly in the namespace `peer_ns` (a descriptor), with
    /// MAC address `peer_mac`. Creating the peer where it belongs costs one
    /// request, where making it here and moving it costs a second one and a
    /// rename. Returns the index of the host end.
    pub fn veth(
        &self,
        host: &str,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<u32> {
        self.block(async {
            // BEGIN SOLUTION 04.1
            let mut end = LinkMessageBuilder::<LinkUnspec>::new()
                .name(peer.to_string())
                .setns_by_fd(peer_ns.as_raw_fd());
            if let Some(mac) = peer_mac {
                end = end.address(mac.to_vec());
            }
            let pair = LinkVeth::new(host, peer)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(end.build())))
                .build();
            self.handle
                .link()
                .add(pair)
                .execute()
                .await
                .map_err(|e| failed(format!("create veth {host} with peer {peer}"), e))
            // END SOLUTION
        })?;
        self.index(host)
    }
    // ANCHOR_END: veth

    // ANCHOR: configure
    /// Plugs link `name` into the bridge `bridge` (`ip link set NAME master
    /// BRIDGE`).
    pub fn set_master(&self, name: &str, bridge: &str) -> Result<()> {
        let (index, master) = (self.index(name)?, self.index(bridge)?);
        self.block(async {
            // BEGIN SOLUTION 04.2
            let message = LinkUnspec::new_with_index(index).controller(master).build();
            self.handle
                .link()
                .set(message)
                .execute()
                .await
                .map_err(|e| failed(format!("plug {name} into {bridge}"), e))
            // END SOLUTION
        })
    }

    /// Sets link `name` up (`ip link set NAME up`), or down.
    pub fn set_up(&self, name: &str, up: bool) -> Result<()> {
        let index = self.index(name)?;
        self.block(async {
            // BEGIN SOLUTION 04.2
            let link = LinkUnspec::new_with_index(index);
            let message = if up { link.up() } else { link.down() }.build();
            self.handle
                .link()
                .set(message)
                .execute()
                .await
                .map_err(|e| failed(format!("set {name} {}", if up { "up" } else { "down" }), e))
            // END SOLUTION
        })
    }

    /// Gives link `name` the address `ip/prefix` (`ip addr add`). Adding an
    /// address it already has is not an error.
    pub fn add_address(&self, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let index = self.index(name)?;
        self.block(async {
            // BEGIN SOLUTION 04.2
            match self
                .handle
                .address()
                .add(index, ip.into(), prefix)
                .execute()
                .await
            {
                Ok(()) => Ok(()),
                Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
                Err(e) => Err(failed(format!("add {ip}/{prefix} to {name}"), e)),
            }
            // END SOLUTION
        })
    }

    /// Sends everything without a more specific route to `gateway` (`ip route
    /// add default via GATEWAY`).
    pub fn add_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        self.block(async {
            // BEGIN SOLUTION 04.2
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .build();
            self.handle
                .route()
                .add(route)
                .execute()
                .await
                .map_err(|e| failed(format!("add default route via {gateway}"), e))
            // END SOLUTION
        })
    }
    // ANCHOR_END: configure

    /// The IPv4 addresses of link `name`, with their prefix lengths.
    pub fn addresses(&self, name: &str) -> Result<Vec<(Ipv4Addr, u8)>> {
        use rtnetlink::packet_route::address::AddressAttribute;
        let index = self.index(name)?;
        self.block(async {
            let messages: Vec<_> = self
                .handle
                .address()
                .get()
                .set_link_index_filter(index)
                .execute()
                .try_collect()
                .await
                .map_err(|e| failed(format!("list addresses of {name}"), e))?;
            Ok(messages
                .iter()
                .flat_map(|m| {
                    let prefix = m.header.prefix_len;
                    m.attributes.iter().filter_map(move |a| match a {
                        AddressAttribute::Address(std::net::IpAddr::V4(ip)) => Some((*ip, prefix)),
                        _ => None,
                    })
                })
                .collect())
        })
    }

    /// Deletes link `name`; a veth takes its peer with it. A link that does
    /// not exist is not an error (teardown goes on after a crash).
    pub fn delete(&self, name: &str) -> Result<()> {
        let Some(link) = self.link(name)? else {
            return Ok(());
        };
        self.block(async {
            match self.handle.link().del(link.index).execute().await {
                Ok(()) => Ok(()),
                Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
                Err(e) => Err(failed(format!("delete link {name}"), e)),
            }
        })
    }
}

fn to_link(m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        up: m.header.flags.contains(LinkFlags::Up),
        master: None,
        mac: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Controller(i) => link.master = Some(*i),
            LinkAttribute::Address(a) if a.len() == 6 => {
                link.mac = Some([a[0], a[1], a[2], a[3], a[4], a[5]]);
            }
            _ => {}
        }
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_come_from_addresses() {
        let mac = mac_for(Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(format_mac(&mac), "02:42:0a:58:00:02");
        // Locally administered, unicast.
        assert_eq!(mac[0] & 0b11, 0b10);
    }
}
