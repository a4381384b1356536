//! `-t`: a real pseudo-terminal, with the window size passed on at start and
//! on every resize.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::berth;

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the struct we pass.
    assert_eq!(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
        0
    );
}

/// Runs berth with a terminal of its own (as a user's shell would give it)
/// and returns the master side and the child.
fn spawn_in_pty(b: &crate::support::Berth, args: &[&str]) -> (std::fs::File, std::process::Child) {
    let pty = nix::pty::openpty(None, None).unwrap();
    set_size(&pty.master, 24, 80);
    let slave = pty.slave;
    // On the engine's own "host" (its network namespace), like every other
    // command of the test engine.
    let mut command = b.on_host(env!("CARGO_BIN_EXE_berth"));
    command
        .arg("--root")
        .arg(b.root())
        .arg("--runroot")
        .arg(b.runroot())
        .args(args);
    command
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop(slave);
    (std::fs::File::from(pty.master), child)
}

fn read_until(master: &mut std::fs::File, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains(want) {
        assert!(
            Instant::now() < deadline,
            "waited for {want:?}, got {text:?}"
        );
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&*master),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) == 0 {
            continue;
        }
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(text.contains(want), "waited for {want:?}, got {text:?}");
    text
}

#[test]
fn a_terminal_follows_the_users_window() {
    let b = berth!();
    let (mut master, mut child) = spawn_in_pty(
        &b,
        &[
            "run",
            "-it",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "tty; stty size; read line; stty size; echo got:$line",
        ],
    );
    let first = read_until(&mut master, "24 80", 10);
    assert!(first.contains("/dev/pts/0"), "{first}");
    // Resize the user's terminal: berth gets SIGWINCH and passes it on.
    let master_fd: OwnedFd = master.try_clone().unwrap().into();
    set_size(&master_fd, 40, 100);
    std::thread::sleep(Duration::from_millis(300));
    std::io::Write::write_all(&mut master, b"hello\r").unwrap();
    let rest = read_until(&mut master, "got:hello", 10);
    assert!(rest.contains("40 100"), "{rest}");
    assert!(child.wait().unwrap().success());
}

#[test]
fn exec_with_a_terminal() {
    let b = berth!();
    b.ok(&[
        "run", "-d", "--init", "--name", "term", "busybox", "sleep", "60",
    ]);
    b.wait_for("term", "{{.State.Status}}", "running", 5);
    let (mut master, mut child) = spawn_in_pty(
        &b,
        &["exec", "-it", "term", "sh", "-c", "tty; echo TERM=$TERM"],
    );
    let text = read_until(&mut master, "TERM=", 10);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(child.wait().unwrap().success());
}
