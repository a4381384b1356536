//! The network namespace, before lab 04 gives it any cables: a new network
//! namespace holds one device, the loopback `lo`, and it starts *down*.

use crate::error::{Error, Result};

// ANCHOR: loopback_up
/// Brings up the loopback interface of the current network namespace with
/// the old `SIOCSIFFLAGS` ioctl (what `ip link set lo up` does over netlink).
/// The kernel adds 127.0.0.1/8 and ::1 to it by itself once it is up.
pub fn loopback_up() -> Result<()> {
    // BEGIN SOLUTION 01.5
    // STARTER: // Until step 01.5, the loopback device stays down.
    // STARTER: Ok(())
    // SAFETY: a datagram socket only serves as a handle for the ioctls.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Error::sys("socket for ioctl", nix::errno::Errno::last()));
    }
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS read and write the ifreq we own.
    let result = unsafe {
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(nix::errno::Errno::last())
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(nix::errno::Errno::last())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: we opened it above.
    unsafe { libc::close(sock) };
    result.map_err(|e| Error::sys("bring up lo", e))
    // END SOLUTION
}
// ANCHOR_END: loopback_up
