//! The parent and the container's processes talk over a socketpair.
//!
//! The child cannot simply print an error and die: its stderr may belong to
//! the user, and an exit code says too little. Instead every step reports
//! over this channel, and a file descriptor (the terminal's master side)
//! can travel along with a message. The child's end is close-on-exec, so when
//! the container's command starts, the parent reads end-of-file: that is how
//! it learns that `execve` succeeded.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Why the container's command could not be started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// No such command (exit 127).
    NotFound(String),
    /// Found but not executable (exit 126).
    NotExecutable(String),
    /// Any other step failed.
    Other(String),
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        match f {
            Failure::NotFound(cmd) => Error::NotFound(cmd),
            Failure::NotExecutable(cmd) => Error::NotExecutable(cmd),
            Failure::Other(msg) => Error::Child(msg),
        }
    }
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Self {
        match e {
            Error::NotFound(cmd) => Failure::NotFound(cmd.clone()),
            Error::NotExecutable(cmd) => Failure::NotExecutable(cmd.clone()),
            Error::Child(msg) => Failure::Other(msg.clone()),
            other => Failure::Other(other.to_string()),
        }
    }
}

/// The messages of the start-up protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Child → parent: I am in a new user namespace; please write my maps.
    UserNamespaceReady,
    /// Parent → child: the maps are written, carry on.
    MapsWritten,
    /// Child → parent: the container's first process has this pid (as the
    /// parent sees it).
    Pid(i32),
    /// Child → parent: here is the master side of the container's terminal
    /// (the descriptor travels with the message).
    Terminal,
    /// Child → parent: a step failed; nothing will be executed.
    Failed(Failure),
}

/// One end of a `SOCK_SEQPACKET` socketpair: each send is one whole message.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// Makes a connected pair. Both ends are close-on-exec.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::sys("socketpair", e))?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Sends a message, with an optional file descriptor attached.
    pub fn send_with_fd(&self, msg: &Message, fd: Option<RawFd>) -> Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(|e| Error::Channel(e.to_string()))?;
        let iov = [IoSlice::new(&bytes)];
        let fds;
        let cmsgs: Vec<ControlMessage> = match fd {
            Some(fd) => {
                fds = [fd];
                vec![ControlMessage::ScmRights(&fds)]
            }
            None => Vec::new(),
        };
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)
            .map_err(|e| Error::Channel(format!("send {msg:?}: {e}")))?;
        Ok(())
    }

    /// Sends a message.
    pub fn send(&self, msg: &Message) -> Result<()> {
        self.send_with_fd(msg, None)
    }

    /// Receives the next message and any descriptor that came with it.
    /// `None` means the other side closed every copy of its end.
    pub fn recv(&self) -> Result<Option<(Message, Option<OwnedFd>)>> {
        // BEGIN SOLUTION 01.2
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg_space = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fd = None;
                    for c in msg.cmsgs().map_err(|e| Error::Channel(e.to_string()))? {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            // SAFETY: the kernel just gave us these descriptors; we own them now.
                            fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
                        }
                    }
                    break (msg.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::Channel(format!("receive: {e}"))),
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..len])
            .map_err(|e| Error::Channel(format!("bad message: {e}")))?;
        Ok(Some((msg, fd)))
        // END SOLUTION
    }

    /// Waits for one particular message; anything else is an error.
    pub fn expect(&self, want: &Message) -> Result<()> {
        match self.recv()? {
            Some((m, _)) if &m == want => Ok(()),
            Some((Message::Failed(f), _)) => Err(f.into()),
            other => Err(Error::Channel(format!("expected {want:?}, got {other:?}"))),
        }
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_descriptors_cross() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&Message::Pid(42)).unwrap();
        assert_eq!(b.recv().unwrap().unwrap().0, Message::Pid(42));
        let file = tempfile::tempfile().unwrap();
        a.send_with_fd(&Message::Terminal, Some(file.as_raw_fd()))
            .unwrap();
        let (m, fd) = b.recv().unwrap().unwrap();
        assert_eq!(m, Message::Terminal);
        assert!(fd.is_some());
        a.send(&Message::Failed(Failure::NotFound("x".into())))
            .unwrap();
        assert!(matches!(
            b.expect(&Message::MapsWritten),
            Err(Error::NotFound(_))
        ));
        drop(a);
        assert!(b.recv().unwrap().is_none());
    }
}
