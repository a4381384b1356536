//! Network sections: the interfaces of this network namespace, from
//! getifaddrs(3), /proc/net/dev and a few SIOCGIF* ioctls, and its routes,
//! from /proc/net/route and /proc/net/ipv6_route.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use serde::Serialize;

use crate::util::{flag_names, read_text};

/// Interface flags (IFF_* in linux/if.h). The low 16 bits come from
/// SIOCGIFFLAGS; the rest only from getifaddrs.
const INTERFACE_FLAGS: &[(u32, &str)] = &[
    (0x1, "UP"),
    (0x2, "BROADCAST"),
    (0x4, "DEBUG"),
    (0x8, "LOOPBACK"),
    (0x10, "POINTOPOINT"),
    (0x20, "NOTRAILERS"),
    (0x40, "RUNNING"),
    (0x80, "NOARP"),
    (0x100, "PROMISC"),
    (0x200, "ALLMULTI"),
    (0x400, "MASTER"),
    (0x800, "SLAVE"),
    (0x1000, "MULTICAST"),
    (0x2000, "PORTSEL"),
    (0x4000, "AUTOMEDIA"),
    (0x8000, "DYNAMIC"),
    (0x1_0000, "LOWER_UP"),
    (0x2_0000, "DORMANT"),
    (0x4_0000, "ECHO"),
];

/// Route flags (RTF_* in linux/route.h and linux/ipv6_route.h).
const ROUTE_FLAGS: &[(u32, &str)] = &[
    (0x1, "UP"),
    (0x2, "GATEWAY"),
    (0x4, "HOST"),
    (0x8, "REINSTATE"),
    (0x10, "DYNAMIC"),
    (0x20, "MODIFIED"),
    (0x40, "MTU"),
    (0x80, "WINDOW"),
    (0x100, "IRTT"),
    (0x200, "REJECT"),
    (0x1_0000, "DEFAULT"),
    (0x2_0000, "ALLONLINK"),
    (0x4_0000, "ADDRCONF"),
    (0x8_0000, "PREFIX_RT"),
    (0x10_0000, "ANYCAST"),
    (0x20_0000, "NONEXTHOP"),
    (0x40_0000, "EXPIRES"),
    (0x80_0000, "ROUTEINFO"),
    (0x100_0000, "CACHE"),
    (0x200_0000, "FLOW"),
    (0x400_0000, "POLICY"),
    (0x4000_0000, "PCPU"),
    (0x8000_0000, "LOCAL"),
];

/// One network interface.
#[derive(Debug, Serialize)]
pub struct Interface {
    pub name: String,
    pub index: Option<u32>,
    /// Flag names (`UP`, `LOOPBACK`, `RUNNING`, ...), lowest bit first.
    pub flags: Option<Vec<String>>,
    pub mtu: Option<u32>,
    /// The hardware address, for Ethernet-like and loopback devices.
    pub mac: Option<String>,
    /// IPv4 then IPv6 addresses with prefix length (`127.0.0.1/8`, `::1/128`).
    pub addresses: Vec<String>,
}

/// Lists the interfaces of this network namespace, ordered by index. An
/// interface without addresses (a down loopback) is listed too. `None`
/// (null) when neither getifaddrs nor /proc/net/dev works.
pub fn interfaces() -> Option<Vec<Interface>> {
    let entries = getifaddrs();
    let proc_names = read_text("/proc/net/dev").map(|text| parse_net_dev(&text));
    if entries.is_none() && proc_names.is_none() {
        return None;
    }

    // What getifaddrs says about each interface, keyed by name.
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for name in proc_names.into_iter().flatten() {
        seen.entry(name).or_default();
    }
    for entry in entries.into_iter().flatten() {
        let interface = seen.entry(entry.name).or_default();
        interface.flags = Some(interface.flags.unwrap_or(0) | entry.flags);
        interface.addresses.extend(entry.address);
    }

    let socket = IfSocket::open();
    let socket = socket.as_ref();
    let mut list: Vec<Interface> = seen
        .into_iter()
        .map(|(name, seen)| {
            let ioctl_flags = socket.and_then(|s| s.flags(&name));
            let flags = match (ioctl_flags, seen.flags) {
                (None, None) => None,
                (a, b) => Some(flag_names(a.unwrap_or(0) | b.unwrap_or(0), INTERFACE_FLAGS)),
            };
            Interface {
                index: socket.and_then(|s| s.index(&name)),
                flags,
                mtu: socket.and_then(|s| s.mtu(&name)),
                mac: socket.and_then(|s| s.mac(&name)),
                addresses: seen.addresses,
                name,
            }
        })
        .collect();
    // Interfaces whose index is unknown go last.
    list.sort_by(|a, b| {
        (a.index.is_none(), a.index, &a.name).cmp(&(b.index.is_none(), b.index, &b.name))
    });
    Some(list)
}

/// What getifaddrs reported about one interface.
#[derive(Default)]
struct Seen {
    /// Its flags, including those SIOCGIFFLAGS cannot report (LOWER_UP).
    flags: Option<u32>,
    addresses: Vec<String>,
}

/// Parses the interface names out of /proc/net/dev: two header lines, then
/// `  name: counters...` per interface.
pub fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|line| Some(line.split_once(':')?.0.trim().to_owned()))
        .filter(|name| !name.is_empty())
        .collect()
}

/// One entry of the getifaddrs list: an interface name with its flags and at
/// most one address (glibc lists each interface once with an AF_PACKET
/// address, then once per IP address).
struct IfaddrsEntry {
    name: String,
    flags: u32,
    address: Option<String>,
}

/// Copies the getifaddrs list; `None` if the call fails.
fn getifaddrs() -> Option<Vec<IfaddrsEntry>> {
    let mut head: *mut libc::ifaddrs = ptr::null_mut();
    // SAFETY: on success getifaddrs stores the head of a list we must free.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut entries = Vec::new();
    let mut node = head;
    while !node.is_null() {
        // SAFETY: `node` is a non-null element of the list, which stays
        // valid until freeifaddrs below.
        let ifa = unsafe { &*node };
        // SAFETY: getifaddrs gives every element a NUL-terminated name.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: the address and netmask of an element are null or socket
        // addresses of the family the address names.
        let address = unsafe { format_address(ifa.ifa_addr, ifa.ifa_netmask) };
        entries.push(IfaddrsEntry {
            name: name.to_string_lossy().into_owned(),
            flags: ifa.ifa_flags,
            address,
        });
        node = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once; nothing
    // borrowed from the list outlives this point.
    unsafe { libc::freeifaddrs(head) };
    Some(entries)
}

/// Formats an IPv4 or IPv6 address with its prefix length (`10.0.0.2/24`);
/// `None` for a null address or another family (AF_PACKET).
///
/// # Safety
///
/// `addr` and `netmask` must each be null or point to a socket address of
/// the family stored in `addr`.
unsafe fn format_address(
    addr: *const libc::sockaddr,
    netmask: *const libc::sockaddr,
) -> Option<String> {
    if addr.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a non-null `addr` is a socket address,
    // and all of them start with the family.
    let family = unsafe { (*addr).sa_family };
    match libc::c_int::from(family) {
        libc::AF_INET => {
            // SAFETY: the caller guarantees that for AF_INET both pointers
            // are null or point to a sockaddr_in.
            let (ip, mask) = unsafe {
                (
                    read_sockaddr::<libc::sockaddr_in>(addr)?,
                    read_sockaddr::<libc::sockaddr_in>(netmask),
                )
            };
            let prefix = mask.map_or(32, |mask| mask.sin_addr.s_addr.count_ones());
            let ip = Ipv4Addr::from(ip.sin_addr.s_addr.to_ne_bytes());
            Some(format!("{ip}/{prefix}"))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, with sockaddr_in6 for AF_INET6.
            let (ip, mask) = unsafe {
                (
                    read_sockaddr::<libc::sockaddr_in6>(addr)?,
                    read_sockaddr::<libc::sockaddr_in6>(netmask),
                )
            };
            let prefix = mask.map_or(128, |mask| {
                mask.sin6_addr
                    .s6_addr
                    .iter()
                    .map(|byte| byte.count_ones())
                    .sum()
            });
            let ip = Ipv6Addr::from(ip.sin6_addr.s6_addr);
            Some(format!("{ip}/{prefix}"))
        }
        _ => None,
    }
}

/// Copies the socket address of type `T` that `ptr` points to; `None` for a
/// null pointer.
///
/// # Safety
///
/// `ptr` must be null or point to a readable `T` (alignment not required).
unsafe fn read_sockaddr<T>(ptr: *const libc::sockaddr) -> Option<T> {
    // SAFETY: per the contract; read_unaligned tolerates any alignment.
    (!ptr.is_null()).then(|| unsafe { ptr.cast::<T>().read_unaligned() })
}

/// A datagram socket used only as a handle for the SIOCGIF* ioctls, which
/// query interfaces of the socket's network namespace by name.
struct IfSocket(OwnedFd);

impl IfSocket {
    fn open() -> Option<Self> {
        // SAFETY: plain system call with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        // SAFETY: a non-negative result is a new descriptor that only we own.
        (fd >= 0).then(|| Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Issues `request` for interface `name`, returning the filled request.
    fn query(&self, name: &str, request: libc::Ioctl) -> Option<libc::ifreq> {
        let name = name.as_bytes();
        // The name must fit with its terminating NUL.
        if name.len() >= libc::IFNAMSIZ || name.contains(&0) {
            return None;
        }
        // SAFETY: ifreq is plain data (arrays, integers, a union of those and
        // a pointer) for which all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { mem::zeroed() };
        for (dst, &src) in req.ifr_name.iter_mut().zip(name) {
            *dst = src as libc::c_char;
        }
        // SAFETY: the SIOCGIF* requests read the NUL-terminated name and write
        // one member of the union, all within `req`, which outlives the call.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), request, &mut req) };
        (rc == 0).then_some(req)
    }

    /// The interface flags (16 bits: the ioctl has no room for LOWER_UP).
    fn flags(&self, name: &str) -> Option<u32> {
        let req = self.query(name, libc::SIOCGIFFLAGS)?;
        // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        // Reinterpret the C short as the unsigned bit set it is.
        Some(u32::from(flags as u16))
    }

    fn index(&self, name: &str) -> Option<u32> {
        let req = self.query(name, libc::SIOCGIFINDEX)?;
        // SAFETY: SIOCGIFINDEX filled the `ifru_ifindex` member.
        u32::try_from(unsafe { req.ifr_ifru.ifru_ifindex }).ok()
    }

    fn mtu(&self, name: &str) -> Option<u32> {
        let req = self.query(name, libc::SIOCGIFMTU)?;
        // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member.
        u32::try_from(unsafe { req.ifr_ifru.ifru_mtu }).ok()
    }

    /// The hardware address as `aa:bb:cc:dd:ee:ff`, for Ethernet-like and
    /// loopback devices (others, like tun or wireguard, have none).
    fn mac(&self, name: &str) -> Option<String> {
        let req = self.query(name, libc::SIOCGIFHWADDR)?;
        // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member.
        let hwaddr = unsafe { req.ifr_ifru.ifru_hwaddr };
        if ![libc::ARPHRD_ETHER, libc::ARPHRD_LOOPBACK].contains(&hwaddr.sa_family) {
            return None;
        }
        let octets: Vec<String> = hwaddr.sa_data[..6]
            .iter()
            .map(|&byte| format!("{:02x}", byte as u8))
            .collect();
        Some(octets.join(":"))
    }
}

/// One route.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    pub interface: String,
    /// The destination network with prefix length (`0.0.0.0/0` is default).
    pub destination: String,
    /// The next hop, `None` (null) for a directly connected network.
    pub gateway: Option<String>,
    /// Flag names (`UP`, `GATEWAY`, `HOST`, ...), lowest bit first.
    pub flags: Vec<String>,
    pub metric: u32,
}

/// Reads the IPv4 routes of the main table, in file order.
pub fn ipv4_routes() -> Option<Vec<Route>> {
    read_text("/proc/net/route").map(|text| parse_ipv4_routes(&text))
}

/// Reads the IPv6 routes of all tables, in file order.
pub fn ipv6_routes() -> Option<Vec<Route>> {
    read_text("/proc/net/ipv6_route").map(|text| parse_ipv6_routes(&text))
}

/// Parses /proc/net/route: a header line, then per route
/// `Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT`,
/// addresses and flags in hex.
pub fn parse_ipv4_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let destination = hex_ipv4(fields[1])?;
            let gateway = hex_ipv4(fields[2])?;
            let mask = hex_ipv4(fields[7])?;
            Some(Route {
                interface: fields[0].to_owned(),
                destination: format!("{destination}/{}", u32::from(mask).count_ones()),
                gateway: (!gateway.is_unspecified()).then(|| gateway.to_string()),
                flags: flag_names(u32::from_str_radix(fields[3], 16).ok()?, ROUTE_FLAGS),
                metric: fields[6].parse().ok()?,
            })
        })
        .collect()
}

/// Decodes an address of /proc/net/route. The kernel prints the address's
/// network-order bytes as one native-endian integer (`%08X`), so 127.0.0.1
/// reads `0100007F` on a little-endian machine.
pub fn hex_ipv4(hex: &str) -> Option<Ipv4Addr> {
    let value = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(value.to_ne_bytes()))
}

/// Parses /proc/net/ipv6_route: no header; per route `destination
/// prefix-length source prefix-length next-hop metric refcount use flags
/// device`, addresses as 32 hex digits in network order, numbers in hex.
pub fn parse_ipv6_routes(text: &str) -> Vec<Route> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                return None;
            }
            let destination = hex_ipv6(fields[0])?;
            let prefix = u8::from_str_radix(fields[1], 16).ok()?;
            let next_hop = hex_ipv6(fields[4])?;
            Some(Route {
                interface: fields[9].to_owned(),
                destination: format!("{destination}/{prefix}"),
                gateway: (!next_hop.is_unspecified()).then(|| next_hop.to_string()),
                flags: flag_names(u32::from_str_radix(fields[8], 16).ok()?, ROUTE_FLAGS),
                metric: u32::from_str_radix(fields[5], 16).ok()?,
            })
        })
        .collect()
}

/// Decodes an address of /proc/net/ipv6_route (32 hex digits).
pub fn hex_ipv6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn decodes_proc_net_route_hex() {
        assert_eq!(hex_ipv4("0100007F"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(hex_ipv4("0101A8C0"), Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(hex_ipv4("00FFFFFF"), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(hex_ipv4("00000000"), Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(hex_ipv4("xyz"), None);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_proc_net_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                    eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    truncated\t00000000\n";
        assert_eq!(
            parse_ipv4_routes(text),
            [
                Route {
                    interface: "eth0".into(),
                    destination: "0.0.0.0/0".into(),
                    gateway: Some("192.168.1.1".into()),
                    flags: vec!["UP".into(), "GATEWAY".into()],
                    metric: 100,
                },
                Route {
                    interface: "eth0".into(),
                    destination: "192.168.1.0/24".into(),
                    gateway: None,
                    flags: vec!["UP".into()],
                    metric: 0,
                },
            ]
        );
        // Only the header: a fresh network namespace.
        assert!(parse_ipv4_routes("Iface\tDestination\n").is_empty());
    }

    #[test]
    fn parses_proc_net_ipv6_route() {
        let text = "00000000000000000000000000000001 80 00000000000000000000000000000000 00 \
                    00000000000000000000000000000000 00000100 00000001 00000000 00000001       lo\n\
                    fe800000000000000000000000000000 40 00000000000000000000000000000000 00 \
                    00000000000000000000000000000000 00000100 00000001 00000000 80200001     eth0\n";
        let routes = parse_ipv6_routes(text);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].destination, "::1/128");
        assert_eq!(routes[0].interface, "lo");
        assert_eq!(routes[0].metric, 256);
        assert_eq!(routes[0].gateway, None);
        assert_eq!(routes[1].destination, "fe80::/64");
        assert_eq!(routes[1].flags, ["UP", "NONEXTHOP", "LOCAL"]);
    }

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive                            |  Transmit\n \
                    face |bytes    packets errs drop fifo frame compressed multicast|bytes\n    \
                    lo:       0       0    0    0    0     0          0         0        0\n  \
                    eth0: 1234      10    0    0    0     0          0         0     5678\n";
        assert_eq!(parse_net_dev(text), ["lo", "eth0"]);
    }
}
