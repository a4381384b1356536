//! The user's terminal in raw mode while a container owns it.
//!
//! Normally the terminal driver edits lines and turns Ctrl-C into SIGINT for
//! berth. With `-t` the container's own terminal must do that, so berth's
//! terminal passes every key through untouched ("raw") until the container
//! ends, and is then put back exactly as it was.

use std::os::fd::{BorrowedFd, RawFd};

use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};

/// Restores the terminal's settings when dropped.
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    /// Switches `fd` to raw mode; `None` if it is not a terminal.
    pub fn enable(fd: RawFd) -> Option<RawMode> {
        // SAFETY: fd 0 stays open for the life of the process.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let saved = tcgetattr(borrowed).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(borrowed, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: as above.
        let borrowed = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = tcsetattr(borrowed, SetArg::TCSANOW, &self.saved);
    }
}
