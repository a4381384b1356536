//! Connecting the user's terminal to a process's pseudo-terminal
//! (`berth exec -it`): keys go in, output comes out, size changes follow.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::Result;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Copies between the caller's terminal and `master` until the process ends;
/// returns its exit status.
pub fn copy_terminal(
    running: &namespaces::Running,
    master: &OwnedFd,
    interactive: bool,
) -> Result<i32> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGWINCH);
    mask.thread_block()?;
    let winch = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    if let Some(size) = namespaces::terminal::window_size(0) {
        let _ = namespaces::terminal::set_window_size(master.as_raw_fd(), size);
    }
    let _raw = crate::tty::RawMode::enable(0);
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = interactive;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut fds = vec![
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(winch.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (m, w, i) = (ready(0), ready(1), ready(2));
        if m {
            match nix::unistd::read(master.as_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    let _ = nix::unistd::write(stdout.as_fd(), &buf[..n]);
                }
                Err(nix::errno::Errno::EINTR) => {}
                _ => break, // EIO: the last process holding the terminal exited
            }
        }
        if w {
            while let Ok(Some(_)) = winch.read_signal() {}
            if let Some(size) = namespaces::terminal::window_size(0) {
                let _ = namespaces::terminal::set_window_size(master.as_raw_fd(), size);
            }
        }
        if i {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    let _ = nix::unistd::write(master.as_fd(), &buf[..n]);
                }
                Err(nix::errno::Errno::EINTR) => {}
                _ => stdin_open = false,
            }
        }
    }
    drop(_raw);
    mask.thread_unblock()?;
    Ok(running.wait()?.status())
}
