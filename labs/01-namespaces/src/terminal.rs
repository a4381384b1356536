//! Pseudo-terminals for `-t`.
//!
//! A pseudo-terminal is a pair: programs in the container use the *slave*
//! side as their terminal (`/dev/pts/0`), the engine holds the *master* side
//! and copies keystrokes in and output out. We open it inside the container,
//! on the container's own devpts instance, so the container sees its own
//! `/dev/pts/0`; the master descriptor travels to the engine over the channel.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};

use crate::error::{Error, Result, SysContext};

// ANCHOR: open_terminal
/// Opens a new terminal pair from `/dev/ptmx`, makes the slave side this
/// process's controlling terminal and its stdin, stdout and stderr, and
/// returns the master side. The process must have just called `setsid`.
pub fn open_in_container() -> Result<OwnedFd> {
    // BEGIN SOLUTION 01.10
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "open /dev/ptmx".into())?;
    grantpt(&master).ctx(|| "grantpt".into())?;
    unlockpt(&master).ctx(|| "unlockpt".into())?;
    let name = ptsname_r(&master).ctx(|| "ptsname".into())?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&name)
        .map_err(|e| Error::io("open terminal", &name, e))?;
    let fd = slave.as_raw_fd();
    // SAFETY: TIOCSCTTY takes an int argument; fd is a terminal we own.
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::sys(
            "make the terminal controlling",
            nix::errno::Errno::last(),
        ));
    }
    for target in 0..=2 {
        // SAFETY: dup2 between descriptors we own.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(Error::sys("dup2 terminal", nix::errno::Errno::last()));
        }
    }
    // SAFETY: posix_openpt returned a descriptor we own; move it out.
    Ok(unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) })
    // END SOLUTION
}
// ANCHOR_END: open_terminal

/// Terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// Reads the window size of the terminal on `fd`.
pub fn window_size(fd: RawFd) -> Option<WindowSize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the struct we pass.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Sets the window size of the terminal on `fd`; the kernel sends SIGWINCH to
/// its foreground process group, so a shell inside redraws for the new size.
pub fn set_window_size(fd: RawFd, size: WindowSize) -> Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the struct we pass.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(Error::sys("set the window size", nix::errno::Errno::last()));
    }
    Ok(())
}
