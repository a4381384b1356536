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
//! opened it. The kernel records that namespace in the socket when it makes
//! it (`socket(2)` looks at the calling thread), and every request on the
//! socket acts on it for the socket's whole life, whichever thread sends
//! the request later. So there is one [`Netlink`] per namespace: open the
//! host's on any host thread, and a container's on a thread that is in the
//! container's namespace at that moment: inside
//! [`crate::netns::NetNs::run`], or with [`crate::netns::NetNs::netlink`]
//! or [`crate::netns::NetNs::create_with_netlink`], which step the calling
//! thread into the namespace for the one call and back. Either way the
//! socket can then be used from the caller's own thread.
//!
//! Every request is a round trip to the kernel, and setting up a
//! container's network takes several. A few habits keep their number and
//! their cost down, and [`Netlink::veth_on_bridge`] and
//! [`Netlink::configure`] use them all: the veth is made with its host end
//! already on the bridge and up, in one request; a name is turned into an
//! index with one `ioctl` rather than a request whose answer describes the
//! whole link, and only once; the container's side is sent as one batch of
//! requests whose answers are read afterwards; and no thread is started
//! for any of it.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::{Error, Result};

/// The loopback device's index. The kernel registers `lo` first in every
/// new namespace and always gives it index 1, so it needs no look-up.
pub const LOOPBACK: u32 = 1;

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
    /// A second descriptor of the same socket, for [`Netlink::index`].
    socket: OwnedFd,
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
    /// The socket stays in that namespace: the [`Netlink`] may be moved to
    /// and used from any thread.
    pub fn open() -> Result<Netlink> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::netlink("start the netlink runtime", e))?;
        // The socket is made here, on this thread, so in its namespace.
        let (mut connection, handle, _) = {
            let _inside = runtime.enter();
            rtnetlink::new_connection().map_err(|e| Error::netlink("open a netlink socket", e))?
        };
        // SAFETY: the descriptor is the connection's socket, open until
        // the connection is dropped, which is after this line.
        let socket = unsafe { BorrowedFd::borrow_raw(connection.socket_mut().as_raw_fd()) }
            .try_clone_to_owned()
            .map_err(|e| Error::netlink("duplicate the netlink socket", e))?;
        runtime.spawn(connection);
        Ok(Netlink {
            runtime,
            handle,
            socket,
        })
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
        Ok(self.link_message(name)?.as_ref().map(to_link))
    }

    /// The kernel's whole description of link `name` (`RTM_GETLINK` with
    /// its name), if there is such a link.
    fn link_message(&self, name: &str) -> Result<Option<LinkMessage>> {
        self.block(async {
            let mut found = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            match found.try_next().await {
                Ok(found) => Ok(found),
                Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
                Err(e) => Err(failed(format!("find link {name}"), e)),
            }
        })
    }

    /// The index of link `name`. Every request below that names a link by
    /// name starts with this look-up, so keep an index rather than asking
    /// again. It is not a netlink request: an `RTM_GETLINK` would bring
    /// back the link's whole description (well over a kilobyte, statistics
    /// included) to be parsed for one number. The `SIOCGIFINDEX` ioctl
    /// returns just the number, and the kernel answers it on any socket,
    /// for the socket's namespace, so on this one for this namespace
    /// (`if_nametoindex(3)` asks it the same way on a socket of the
    /// calling thread's namespace).
    pub fn index(&self, name: &str) -> Result<u32> {
        let not_found = |message: String| Error::netlink(format!("find link {name}"), message);
        // SAFETY: an all-zero `ifreq` is valid (an empty name, a zero union).
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        // The name must fit with its terminating zero, and hold no zero.
        if name.len() >= request.ifr_name.len() || name.contains('\0') {
            return Err(not_found("no such device".into()));
        }
        for (to, from) in request.ifr_name.iter_mut().zip(name.bytes()) {
            *to = from as libc::c_char;
        }
        // SAFETY: SIOCGIFINDEX reads the name from and writes the index
        // into the `ifreq` it is given, which lives across the call.
        let done =
            unsafe { libc::ioctl(self.socket.as_raw_fd(), libc::SIOCGIFINDEX, &mut request) };
        if done < 0 {
            return Err(match std::io::Error::last_os_error() {
                e if e.raw_os_error() == Some(libc::ENODEV) => not_found("no such device".into()),
                e => not_found(e.to_string()),
            });
        }
        // SAFETY: on success the kernel has set the union's index member.
        Ok(unsafe { request.ifr_ifru.ifru_ifindex } as u32)
    }

    // ANCHOR: bridge
    /// Makes a bridge called `name` and sets it up; an existing bridge of
    /// that name is kept. Returns its index.
    pub fn bridge(&self, name: &str) -> Result<u32> {
        if let Ok(index) = self.index(name) {
            return Ok(index);
        }
        let made: Result<()> = self.block(async {
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
        });
        made?;
        self.index(name)
    }
    // ANCHOR_END: bridge

    // ANCHOR: veth
    /// The request for a veth pair: `host` in the namespace of the socket it is
    /// sent on, and its peer `peer` created directly in the namespace `peer_ns`
    /// (a descriptor), with MAC address `peer_mac` when one is given.
    fn veth_message(
        host: &str,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
        peer_mac: Option<[u8; 6]>,
    ) -> LinkMessageBuilder<LinkVeth> {
        // BEGIN SOLUTION 04.1
        let mut end = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .setns_by_fd(peer_ns.as_raw_fd());
        if let Some(mac) = peer_mac {
            end = end.address(mac.to_vec());
        }
        LinkVeth::new(host, peer).set_info_data(InfoData::Veth(InfoVeth::Peer(end.build())))
        // END SOLUTION
    }

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
        let pair = Self::veth_message(host, peer, peer_ns, peer_mac).build();
        self.create_veth(host, peer, pair)
    }

    /// Like [`Netlink::veth`], but the host end is made already plugged
    /// into the bridge with index `bridge` and up (`ip link add HOST master
    /// BRIDGE up type veth peer ...`): the kernel does in one request what
    /// [`Netlink::set_master`] and [`Netlink::set_up`] do in two more, and
    /// the look-ups by name they start with are not needed either. Returns
    /// the index of the host end.
    pub fn veth_on_bridge(
        &self,
        host: &str,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
        peer_mac: Option<[u8; 6]>,
        bridge: u32,
    ) -> Result<u32> {
        let pair = Self::veth_message(host, peer, peer_ns, peer_mac)
            .controller(bridge)
            .up()
            .build();
        self.create_veth(host, peer, pair)
    }
    // ANCHOR_END: veth

    /// Sends the request `pair` for a new veth pair, with one queue each way
    /// on both ends (see [`one_queue_each`]), and returns the index of the
    /// host end.
    fn create_veth(&self, host: &str, peer: &str, pair: LinkMessage) -> Result<u32> {
        let pair = one_queue_each(pair);
        self.block(async { self.handle.link().add(pair).execute().await })
            .map_err(|e| failed(format!("create veth {host} with peer {peer}"), e))?;
        self.index(host)
    }

    /// Puts the bridge port `name` in hairpin mode (`ip link set NAME type
    /// bridge_slave hairpin on`): the bridge may then send a frame back out
    /// of the port it came in through. A container that connects to its own
    /// published port on the host's address needs it where `br_netfilter`
    /// is active: the destination NAT then happens on the bridge, and the
    /// rewritten frame is addressed to the port it came from.
    pub fn set_hairpin(&self, name: &str, on: bool) -> Result<()> {
        let index = self.index(name)?;
        let message = rtnetlink::LinkBridgePort::new(index).hairpin(on).build();
        self.block(async { self.handle.link().set_port(message).execute().await })
            .map_err(|e| failed(format!("set hairpin mode on {name}"), e))
    }

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
        self.block(self.set_up_by_index(index, name, up))
    }

    /// Sets the link with index `index` (called `name` in errors) up or
    /// down: an `RTM_SETLINK` that changes only the `IFF_UP` flag.
    async fn set_up_by_index(&self, index: u32, name: &str, up: bool) -> Result<()> {
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
    }

    /// Gives link `name` the address `ip/prefix` (`ip addr add`). Adding an
    /// address it already has is not an error.
    pub fn add_address(&self, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let index = self.index(name)?;
        self.block(self.add_address_by_index(index, name, ip, prefix))
    }

    /// Gives the link with index `index` (called `name` in errors) the
    /// address `ip/prefix`: an `RTM_NEWADDR`, which names its link only by
    /// index.
    async fn add_address_by_index(
        &self,
        index: u32,
        name: &str,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<()> {
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
    }

    /// Sends everything without a more specific route to `gateway` (`ip route
    /// add default via GATEWAY`).
    pub fn add_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        self.block(self.default_route(gateway))
    }

    /// The request behind [`Netlink::add_default_route`]: an `RTM_NEWROUTE`
    /// with a gateway and no destination, which is the default route.
    async fn default_route(&self, gateway: Ipv4Addr) -> Result<()> {
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
    }
    // ANCHOR_END: configure

    /// A container's side of its network, on a [`Netlink`] in the
    /// container's namespace: loopback up, the address `ip/prefix` on link
    /// `name` (the veth's peer), that link up, and with a gateway the
    /// default route through it. That is four requests, but they are all
    /// sent before any answer is read: the kernel handles each one in
    /// order as it arrives, so the address is there and the link up before
    /// the route, whose gateway must be reachable, is added. The first
    /// error is returned.
    pub fn configure(
        &self,
        name: &str,
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    ) -> Result<()> {
        let index = self.index(name)?;
        self.block(async {
            // `try_join!` starts the requests in this order, and each one's
            // message is queued for the socket when it starts.
            let route = async {
                match gateway {
                    Some(gateway) => self.default_route(gateway).await,
                    None => Ok(()),
                }
            };
            futures::try_join!(
                self.set_up_by_index(LOOPBACK, "lo", true),
                self.add_address_by_index(index, name, ip, prefix),
                self.set_up_by_index(index, name, true),
                route,
            )
            .map(|_| ())
        })
    }

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

/// The veth request `pair`, asking for one transmit and one receive queue
/// on each end. Unless told, the kernel gives each end of a veth as many
/// queues of each kind as the machine may have CPUs, and every queue is a
/// directory of files in sysfs, made with the link and removed with it.
/// Several queues let XDP programs (and GRO, when it is turned on) spread
/// a veth's receiving over CPUs; a container's veth uses neither, and one
/// queue each makes it noticeably faster to create.
fn one_queue_each(mut pair: LinkMessage) -> LinkMessage {
    let one = [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)];
    for attribute in &mut pair.attributes {
        if let LinkAttribute::LinkInfo(infos) = attribute {
            for info in infos {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = info {
                    peer.attributes.extend(one.clone());
                }
            }
        }
    }
    pair.attributes.extend(one);
    pair
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
    use std::os::fd::AsFd;

    #[test]
    fn macs_come_from_addresses() {
        let mac = mac_for(Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(format_mac(&mac), "02:42:0a:58:00:02");
        // Locally administered, unicast.
        assert_eq!(mac[0] & 0b11, 0b10);
    }

    /// The names of the links `nl` sees, in index order.
    fn names(nl: &Netlink) -> Vec<String> {
        nl.links().unwrap().into_iter().map(|l| l.name).collect()
    }

    #[test]
    fn indices_come_from_the_sockets_namespace() {
        testkit::root_test!();
        let dir = tempfile::tempdir().unwrap();
        crate::netns::on_a_new_host(|| {
            let host = Netlink::open().unwrap();
            assert_eq!(host.index("lo").unwrap(), LOOPBACK);
            let bridge = host.bridge("br-idx").unwrap();
            assert_eq!(host.index("br-idx").unwrap(), bridge);
            for missing in ["nothing0", "", "a-name-too-long-for-a-link", "a\0b"] {
                let e = host.index(missing).unwrap_err().to_string();
                assert!(e.contains("no such device"), "{missing:?}: {e}");
            }

            // Sockets made inside a namespace answer for it, on this thread,
            // which went in to make them and came back.
            let thread = std::path::Path::new("/proc/thread-self/ns/net");
            let home = crate::netns::inode(thread).unwrap();
            let (ns, inside) =
                crate::netns::NetNs::create_with_netlink(dir.path().join("c")).unwrap();
            assert_eq!(crate::netns::inode(thread).unwrap(), home);
            assert_ne!(crate::netns::inode(ns.path()).unwrap(), home);
            let again = ns.netlink().unwrap();
            assert_eq!(crate::netns::inode(thread).unwrap(), home);
            for nl in [&inside, &again] {
                assert_eq!(names(nl), ["lo"]);
                assert_eq!(nl.index("lo").unwrap(), LOOPBACK);
                assert!(nl.index("br-idx").is_err());
            }
            drop((inside, again));
            ns.remove().unwrap();
        })
        .unwrap();
    }

    #[test]
    fn a_container_is_wired_with_one_veth_request_and_one_batch() {
        testkit::root_test!();
        let dir = tempfile::tempdir().unwrap();
        crate::netns::on_a_new_host(|| {
            let host = Netlink::open().unwrap();
            let gateway = Ipv4Addr::new(10, 77, 0, 1);
            let bridge = host.bridge("br-t").unwrap();
            host.add_address("br-t", gateway, 24).unwrap();
            let (ns, inside) =
                crate::netns::NetNs::create_with_netlink(dir.path().join("c")).unwrap();

            // The host end is made on the bridge and up.
            let ip = Ipv4Addr::new(10, 77, 0, 2);
            let fd = ns.fd().unwrap();
            let index = host
                .veth_on_bridge("vh-c", "eth0", fd.as_fd(), Some(mac_for(ip)), bridge)
                .unwrap();
            let end = host.link("vh-c").unwrap().unwrap();
            assert_eq!((end.index, end.master, end.up), (index, Some(bridge), true));
            // One queue of each kind, on both ends.
            for (nl, end) in [(&host, "vh-c"), (&inside, "eth0")] {
                let described = nl.link_message(end).unwrap().unwrap().attributes;
                assert!(described.contains(&LinkAttribute::NumTxQueues(1)), "{end}");
                assert!(described.contains(&LinkAttribute::NumRxQueues(1)), "{end}");
            }
            let eth0 = inside.link("eth0").unwrap().unwrap();
            assert_eq!((eth0.mac, eth0.up), (Some(mac_for(ip)), false));
            // As `veth` returns the host end's index.
            let other = host.veth("vh-o", "eth1", fd.as_fd(), None).unwrap();
            assert_eq!(host.index("vh-o").unwrap(), other);

            inside.configure("eth0", ip, 24, Some(gateway)).unwrap();
            assert!(inside.link("lo").unwrap().unwrap().up);
            assert!(inside.link("eth0").unwrap().unwrap().up);
            assert_eq!(inside.addresses("eth0").unwrap(), [(ip, 24)]);
            // The default route is there: a second one is refused.
            let e = inside.add_default_route(gateway).unwrap_err().to_string();
            assert!(e.contains("exists"), "{e}");
            let ping = std::process::Command::new("busybox")
                .args(["ping", "-c1", "-W2", "10.77.0.2"])
                .output()
                .unwrap();
            assert!(ping.status.success(), "{ping:?}");
            // Without a gateway, the rest is done (a second default
            // route would have been refused).
            let ip1 = Ipv4Addr::new(10, 78, 0, 2);
            inside.configure("eth1", ip1, 24, None).unwrap();
            assert_eq!(inside.addresses("eth1").unwrap(), [(ip1, 24)]);

            // A bridge that does not exist: the request fails whole, and
            // neither end is left behind.
            assert!(
                host.veth_on_bridge("vh-d", "eth2", fd.as_fd(), None, 999_999)
                    .is_err()
            );
            assert!(host.link("vh-d").unwrap().is_none());
            assert_eq!(names(&inside), ["lo", "eth0", "eth1"]);

            host.delete("vh-c").unwrap();
            host.delete("vh-o").unwrap();
            assert_eq!(names(&inside), ["lo"]);
            drop(inside);
            ns.remove().unwrap();
        })
        .unwrap();
    }
}
