//! Mounting a filesystem with the kernel's newer mount API (Linux 5.2):
//! `fsopen` creates a filesystem context, `fsconfig` sets one parameter at a
//! time, `fsmount` turns the context into a detached mount, and
//! `move_mount` attaches it to a directory.
//!
//! The old `mount(2)` takes every option in one string that may not exceed
//! a page (4096 bytes); the new API takes them one by one, and some
//! filesystems accept repeated keys (overlayfs's `lowerdir+`, Linux 6.8),
//! so there is no such limit. Lab 03 uses this for a container's root.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A filesystem to mount, as data: its type, a source label and its
/// parameters in order. A parameter without a value is a flag (`ro`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsMount {
    pub fstype: String,
    pub source: String,
    pub params: Vec<(String, Option<String>)>,
}

// From <linux/mount.h>; the libc crate has the system call numbers only.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Invalid(format!("{s:?} contains a NUL byte")))
}

/// Checks a raw system call's return value: a new descriptor, or errno.
fn check(what: impl Fn() -> String, ret: libc::c_long) -> Result<libc::c_long> {
    if ret < 0 {
        Err(Error::sys(what(), nix::errno::Errno::last()))
    } else {
        Ok(ret)
    }
}

/// Whether `fstype` accepts the parameter `key` on this kernel: tries to set
/// it on a fresh context and reads the kernel's answer (EINVAL means no).
/// This is how an engine learns if overlayfs takes `lowerdir+`.
///
/// A filesystem not yet converted to the new API (overlayfs before Linux
/// 6.5) gets a generic "legacy" context that takes any key and only parses
/// them at `FSCONFIG_CMD_CREATE`; so a "yes" counts only if a key that
/// cannot exist is refused.
pub fn accepts(fstype: &str, key: &str, value: &str) -> bool {
    let attempt = |key: &str| -> Result<()> {
        let ctx = open_context(fstype)?;
        set(&ctx, fstype, key, Some(value))
    };
    attempt(key).is_ok() && attempt("berth-no-such-parameter").is_err()
}

fn open_context(fstype: &str) -> Result<OwnedFd> {
    let name = cstring(fstype)?;
    // SAFETY: fsopen reads a NUL-terminated string and returns a new fd.
    let fd = check(|| format!("fsopen {fstype}"), unsafe {
        libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC)
    })?;
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn set(ctx: &OwnedFd, fstype: &str, key: &str, value: Option<&str>) -> Result<()> {
    let k = cstring(key)?;
    let v = value.map(cstring).transpose()?;
    let (cmd, vptr) = match &v {
        Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
        None => (FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: both strings outlive the call; aux is unused for these commands.
    check(
        || format!("fsconfig {fstype} {key}={}", value.unwrap_or("")),
        unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                ctx.as_raw_fd(),
                cmd,
                k.as_ptr(),
                vptr,
                0 as libc::c_int,
            )
        },
    )?;
    Ok(())
}

/// Mounts `fs` on `target` with fsopen, fsconfig, fsmount and move_mount.
/// The kernel checks the whole configuration at `FSCONFIG_CMD_CREATE`; its
/// complaint, if any, names the parameter it did not like.
pub fn mount(fs: &FsMount, target: &Path) -> Result<()> {
    let ctx = open_context(&fs.fstype)?;
    set(&ctx, &fs.fstype, "source", Some(&fs.source))?;
    for (key, value) in &fs.params {
        set(&ctx, &fs.fstype, key, value.as_deref())?;
    }
    // SAFETY: no strings are passed for the create command.
    check(|| format!("create the {} filesystem", fs.fstype), unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0 as libc::c_int,
        )
    })?;
    // SAFETY: fsmount returns a new descriptor for a detached mount.
    let mnt = check(|| format!("fsmount {}", fs.fstype), unsafe {
        libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, 0u32)
    })?;
    // SAFETY: as above, the descriptor is ours alone.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as i32) };
    let empty = cstring("")?;
    let to = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Invalid(format!("{} contains a NUL byte", target.display())))?;
    // SAFETY: both paths are NUL-terminated and outlive the call.
    check(
        || format!("move_mount {} to {}", fs.fstype, target.display()),
        unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mnt.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        },
    )?;
    Ok(())
}

/// Makes every mount of this mount namespace private, so that what is
/// mounted from now on stays here. A new mount namespace starts as a copy
/// of its parent's, and on a shared mount a new mount would show up in the
/// parent too.
pub fn make_mounts_private() -> Result<()> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::sys("make every mount private", e))
}

/// Where a container's root comes from when it is not a plain directory:
/// a filesystem mounted at [`crate::ContainerConfig::rootfs`] inside the
/// container's own mount namespace, so it vanishes with the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsMount {
    pub fs: FsMount,
    /// Run the mount from this directory, so that relative paths in the
    /// parameters resolve against it (the short-path trick for `mount(2)`).
    pub cwd: Option<PathBuf>,
    /// Use `mount(2)` with the parameters joined into one option string,
    /// for kernels or filesystems without the new API.
    pub legacy: bool,
}

impl RootfsMount {
    /// Mounts the filesystem on `target`.
    pub fn mount_on(&self, target: &Path) -> Result<()> {
        let back = match &self.cwd {
            Some(dir) => {
                let here = std::env::current_dir().map_err(|e| Error::io("getcwd", ".", e))?;
                std::env::set_current_dir(dir).map_err(|e| Error::io("chdir", dir, e))?;
                Some(here)
            }
            None => None,
        };
        let result = if self.legacy {
            legacy_mount(&self.fs, target)
        } else {
            mount(&self.fs, target)
        };
        if let Some(here) = back {
            let _ = std::env::set_current_dir(here);
        }
        result
    }
}

/// The same mount with `mount(2)`: every parameter in one comma-separated
/// string, which the kernel limits to one page.
pub fn legacy_mount(fs: &FsMount, target: &Path) -> Result<()> {
    let data = fs
        .params
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect::<Vec<_>>()
        .join(",");
    nix::mount::mount(
        Some(fs.source.as_str()),
        target,
        Some(fs.fstype.as_str()),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| Error::sys(format!("mount {} on {}", fs.fstype, target.display()), e))
}
