//! A tiny init for PID 1 (`berth run --init`, like Docker's `--init`/tini).
//!
//! PID 1 is special. The kernel delivers a signal to it only if it has
//! installed a handler, so a shell running as PID 1 never sees the SIGTERM of
//! `docker stop` and is SIGKILLed ten seconds later. And every orphaned
//! process in the namespace is re-parented to PID 1, which must reap it or
//! it stays a zombie forever. This init does both jobs: it forwards signals
//! to the command and reaps every child.

use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

// ANCHOR: init_loop
/// Runs as PID 1 until `command` exits, then exits with its status. All
/// signals must already be blocked, so that they queue up for `sigwait`
/// instead of being lost or acted on.
pub fn run(command: Pid) -> ! {
    // BEGIN SOLUTION 01.8
    let all = SigSet::all();
    loop {
        let Ok(sig) = all.wait() else { continue };
        match sig {
            Signal::SIGCHLD => {
                // Reap everything that has exited: our command, and any
                // orphan that was handed to us.
                loop {
                    match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(pid, code)) if pid == command => exit(code),
                        Ok(WaitStatus::Signaled(pid, s, _)) if pid == command => {
                            exit(128 + s as i32)
                        }
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(_) => continue,
                    }
                }
            }
            // Job-control signals for a process without a terminal: ignore.
            Signal::SIGTTIN | Signal::SIGTTOU => {}
            other => {
                let _ = kill(command, other);
            }
        }
    }
    // END SOLUTION
}
// ANCHOR_END: init_loop

fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; as PID 1, the kernel then
    // kills whatever else is left in the namespace.
    unsafe { libc::_exit(code) }
}
