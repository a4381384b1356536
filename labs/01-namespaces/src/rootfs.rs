//! Building the container's view of the filesystem: a private mount table,
//! the image's files as `/`, fresh `/proc`, `/dev` and `/sys`, and no way back
//! to the host's root.
//!
//! Everything here runs inside the new mount namespace, in the container's
//! first process, before it executes the user's command. All kernel calls go
//! through [`Syscall`] so that the sequence can be tested without root.

use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::config::{ContainerConfig, MountSpec};
use crate::error::{Error, Result};
use crate::syscall::Syscall;

/// Facts about the surroundings that change how a mount must be made.
#[derive(Debug, Clone, Copy, Default)]
pub struct RootfsOptions {
    /// We are in a new user namespace, so some things the kernel allows
    /// only to the host's root (mknod, a fresh sysfs without our own network
    /// namespace) must be done another way.
    pub in_user_ns: bool,
    /// The container has its own network namespace (sysfs can be mounted).
    pub new_net_ns: bool,
    /// The container has its own IPC namespace (mqueue can be mounted).
    pub new_ipc_ns: bool,
    /// Group 5 (tty) exists inside the user namespace, so devpts may use it.
    pub tty_gid_mapped: bool,
}

/// What a list of fstab-style options means to `mount(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount itself.
    pub flags: MsFlags,
    /// Propagation to set afterwards (private, slave, shared …), which the
    /// kernel wants in a separate call.
    pub propagation: MsFlags,
    /// Everything the filesystem itself interprets (`mode=755,size=64k`).
    pub data: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: MsFlags::empty(),
            data: String::new(),
        }
    }
}

impl MountOptions {
    /// True for bind mounts (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

// ANCHOR: parse_options
/// Splits mount options into flags for `mount(2)`, propagation flags, and
/// the data string that the filesystem itself reads.
pub fn parse_options(options: &[String]) -> MountOptions {
    // BEGIN SOLUTION 01.3
    let mut out = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear, propagation) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
            "rbind" => (
                MsFlags::MS_BIND | MsFlags::MS_REC,
                MsFlags::empty(),
                MsFlags::empty(),
            ),
            "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
            "rprivate" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            ),
            "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
            "rslave" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
            ),
            "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
            "rshared" => (
                MsFlags::empty(),
                MsFlags::empty(),
                MsFlags::MS_SHARED | MsFlags::MS_REC,
            ),
            "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        out.flags = (out.flags | set) - clear;
        out.propagation |= propagation;
    }
    out.data = data.join(",");
    out
    // END SOLUTION
}
// ANCHOR_END: parse_options

// ANCHOR: secure_join
/// Joins `path` (as seen inside the container) onto `rootfs`, following
/// symbolic links the way they would be followed *inside* the container.
///
/// A naive `rootfs.join(path)` is dangerous before `pivot_root`: if an image
/// ships `/proc` as a symlink to `/etc`, the kernel would follow it on the
/// host and mount over the host's `/etc`. Here an absolute link restarts at
/// `rootfs`, and `..` never climbs above it.
pub fn secure_join(rootfs: &Path, path: &Path) -> Result<PathBuf> {
    // BEGIN SOLUTION 01.3
    let mut resolved = PathBuf::new(); // relative to rootfs
    let mut pending: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut links_followed = 0;
    while let Some(next) = pending.pop() {
        let mut components: Vec<Component> = next.components().collect();
        components.reverse();
        while let Some(c) = components.pop() {
            match c {
                Component::RootDir => resolved.clear(),
                Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => {
                    let candidate = resolved.join(name);
                    let full = rootfs.join(&candidate);
                    match std::fs::symlink_metadata(&full) {
                        Ok(meta) if meta.file_type().is_symlink() => {
                            links_followed += 1;
                            if links_followed > 40 {
                                return Err(Error::Invalid(format!(
                                    "too many symbolic links resolving {} in the container",
                                    path.display()
                                )));
                            }
                            let target = std::fs::read_link(&full)
                                .map_err(|e| Error::io("readlink", &full, e))?;
                            // The rest of this path comes after the link's target.
                            let rest: PathBuf = components.iter().rev().collect();
                            components.clear();
                            pending.push(rest);
                            pending.push(target);
                        }
                        _ => resolved = candidate,
                    }
                }
            }
        }
    }
    Ok(rootfs.join(resolved))
    // END SOLUTION
}
// ANCHOR_END: secure_join

/// A device node every container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub name: &'static str,
    pub major: u64,
    pub minor: u64,
}

/// The minimal set of character devices: the bit bucket, sources of zeros
/// and randomness, a "disk full" device, and the controlling terminal.
pub const DEFAULT_DEVICES: [Device; 6] = [
    Device {
        name: "null",
        major: 1,
        minor: 3,
    },
    Device {
        name: "zero",
        major: 1,
        minor: 5,
    },
    Device {
        name: "full",
        major: 1,
        minor: 7,
    },
    Device {
        name: "random",
        major: 1,
        minor: 8,
    },
    Device {
        name: "urandom",
        major: 1,
        minor: 9,
    },
    Device {
        name: "tty",
        major: 5,
        minor: 0,
    },
];

/// Symbolic links that programs expect in `/dev`.
pub const DEV_SYMLINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
];

// ANCHOR: create_devices
/// Fills the container's fresh `/dev` tmpfs. As the host's root we create the
/// nodes with `mknod`; inside a user namespace the kernel forbids that (a
/// fake root could otherwise make a node for the host's disk), so we
/// bind-mount the host's node onto an empty file instead.
pub fn create_devices(sys: &dyn Syscall, dev: &Path, in_user_ns: bool) -> Result<()> {
    // BEGIN SOLUTION 01.3
    for d in DEFAULT_DEVICES {
        let path = dev.join(d.name);
        if in_user_ns {
            sys.touch(&path)?;
            let host = Path::new("/dev").join(d.name);
            sys.mount(Some(&host), &path, None, MsFlags::MS_BIND, None)?;
        } else {
            sys.mknod(
                &path,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                d.major,
                d.minor,
            )?;
        }
    }
    for (target, name) in DEV_SYMLINKS {
        sys.symlink(Path::new(target), &dev.join(name))?;
    }
    Ok(())
    // END SOLUTION
}
// ANCHOR_END: create_devices

/// Mounts one entry of the configuration under `rootfs`.
fn mount_one(sys: &dyn Syscall, rootfs: &Path, m: &MountSpec, opts: &RootfsOptions) -> Result<()> {
    let target = secure_join(rootfs, &m.destination)?;
    let mut parsed = parse_options(&m.options);
    let mut kind = m.kind.as_str();
    let mut source = m.source.clone();

    // Two filesystems belong to a namespace we may not own: sysfs shows the
    // network namespace's devices, mqueue the IPC namespace's queues.
    // Inside a user namespace without our own copy, borrow the host's view.
    if opts.in_user_ns && kind == "sysfs" && !opts.new_net_ns {
        kind = "bind";
        source = "/sys".into();
        parsed.flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
    }
    if opts.in_user_ns && kind == "mqueue" && !opts.new_ipc_ns {
        return Ok(());
    }
    if kind == "devpts" && opts.in_user_ns && !opts.tty_gid_mapped {
        parsed.data = parsed
            .data
            .split(',')
            .filter(|o| !o.starts_with("gid="))
            .collect::<Vec<_>>()
            .join(",");
    }

    if kind == "bind" || parsed.is_bind() {
        let meta =
            std::fs::metadata(&source).map_err(|e| Error::io("bind mount source", &source, e))?;
        if meta.is_dir() {
            sys.mkdir_all(&target)?;
        } else {
            sys.touch(&target)?;
        }
        let bind = MsFlags::MS_BIND | (parsed.flags & MsFlags::MS_REC);
        sys.mount(Some(&source), &target, None, bind, None)?;
        // A bind mount ignores every other flag on the first call; read-only
        // and friends take a second, remounting call.
        let rest = parsed.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
        if !rest.is_empty() {
            let keep = sys.mount_flags(&target)?;
            sys.mount(
                None,
                &target,
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | keep | rest,
                None,
            )?;
        }
    } else {
        sys.mkdir_all(&target)?;
        let data = (!parsed.data.is_empty()).then_some(parsed.data.as_str());
        sys.mount(Some(&source), &target, Some(kind), parsed.flags, data)?;
    }
    if !parsed.propagation.is_empty() {
        sys.mount(None, &target, None, parsed.propagation, None)?;
    }
    Ok(())
}

// ANCHOR: pivot
/// Makes `rootfs` the root of the mount namespace and detaches the old root.
///
/// `pivot_root(".", ".")` stacks the old root on top of the new one at the
/// same place; unmounting "." then removes the old root, and with it every
/// path back to the host's files. (`chroot` only changes where path lookup
/// starts: the host's root stays mounted, and a root process can walk back
/// out of it.)
pub fn pivot_to(sys: &dyn Syscall, rootfs: &Path) -> Result<()> {
    // BEGIN SOLUTION 01.3
    sys.chdir(rootfs)?;
    sys.pivot_root(Path::new("."), Path::new("."))?;
    sys.umount(Path::new("."), MntFlags::MNT_DETACH)?;
    sys.chdir(Path::new("/"))
    // END SOLUTION
}
// ANCHOR_END: pivot

// ANCHOR: setup
/// Builds the container's filesystem view from `config`, in the order that
/// works: first cut propagation to the host, then turn the root directory
/// into a mount point (pivot_root wants one), mount everything inside it,
/// create the device nodes, switch roots, and only then make `/` read-only.
pub fn setup(sys: &dyn Syscall, config: &ContainerConfig, opts: &RootfsOptions) -> Result<()> {
    // BEGIN SOLUTION 01.3
    // STARTER: // Until step 01.3, a chroot stands in for a mount table of the
    // STARTER: // container's own (see chroot_only). A read-only root and a
    // STARTER: // user namespace's devices need the real thing.
    // STARTER: if config.readonly_rootfs || opts.in_user_ns {
    // STARTER:     todo!()
    // STARTER: }
    // STARTER: chroot_only(sys, config)
    let rootfs = &config.rootfs;
    // Nothing we mount from here on may appear in the host's mount table.
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    sys.mount(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    for m in &config.mounts {
        mount_one(sys, rootfs, m, opts)?;
        if m.destination == Path::new("/dev") && m.kind == "tmpfs" {
            create_devices(
                sys,
                &secure_join(rootfs, Path::new("/dev"))?,
                opts.in_user_ns,
            )?;
        }
    }
    sys.mkdir_all(&secure_join(rootfs, &config.process.cwd)?)?;
    pivot_to(sys, rootfs)?;
    if config.readonly_rootfs {
        let keep = sys.mount_flags(Path::new("/"))?;
        sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | keep,
            None,
        )?;
    }
    if let Some(h) = &config.hostname {
        sys.sethostname(h)?;
    }
    Ok(())
    // END SOLUTION
}
// ANCHOR_END: setup

/// The first thing everyone tries for a container's files, and what the
/// starter repository does in place of [`setup`] until step 01.3: a fresh
/// `/proc` for the new PID namespace, the hostname, and `chroot(2)` into
/// the root filesystem. It is not enough. The host's mounts all stay in the
/// container's mount table, a root process can climb out of a chroot (one
/// of step 01.3's tests does), none of the configured mounts is made, and
/// `/proc` is mounted wherever the image's `proc` leads, symbolic link or
/// not ([`secure_join`] exists for that). Propagation is cut first all the
/// same: without it the new `/proc` would appear in the host's mount table.
pub fn chroot_only(sys: &dyn Syscall, config: &ContainerConfig) -> Result<()> {
    let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    sys.mount(None, Path::new("/"), None, private, None)?;
    let proc = config.rootfs.join("proc");
    sys.mkdir_all(&proc)?;
    let proc_fs = Some(Path::new("proc"));
    sys.mount(proc_fs, &proc, Some("proc"), MsFlags::empty(), None)?;
    sys.chroot(&config.rootfs)?;
    sys.chdir(Path::new("/"))?;
    if let Some(h) = &config.hostname {
        sys.sethostname(h)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::Recorder;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let o = parse_options(&s(&[
            "nosuid",
            "noexec",
            "mode=755",
            "size=65536k",
            "rprivate",
        ]));
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = parse_options(&s(&["rbind", "ro", "rw"]));
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(o.is_bind());
    }

    #[test]
    fn secure_join_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("proc")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/proc")).unwrap(),
            root.join("etc")
        );
        assert_eq!(
            secure_join(root, Path::new("/proc/x")).unwrap(),
            root.join("etc/x")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../etc")).unwrap(),
            root.join("etc")
        );
        assert_eq!(
            secure_join(root, Path::new("/up/tmp")).unwrap(),
            root.join("tmp")
        );
        assert!(secure_join(root, Path::new("/loop")).is_err());
    }

    #[test]
    fn setup_sequence() {
        let mut config = ContainerConfig::new("/r", vec!["sh".into()]);
        config.hostname = Some("box".into());
        config.readonly_rootfs = true;
        config.process.cwd = "/work".into();
        let sys = Recorder::with_flags(MsFlags::MS_NOSUID);
        let opts = RootfsOptions {
            new_net_ns: true,
            new_ipc_ns: true,
            ..Default::default()
        };
        setup(&sys, &config, &opts).unwrap();
        insta::assert_snapshot!("setup_as_root", sys.transcript());
    }

    #[test]
    fn setup_in_a_user_namespace_borrows_devices_and_sys() {
        let mut config = ContainerConfig::new("/r", vec!["sh".into()]);
        config.namespaces.remove(&crate::Namespace::Network);
        let sys = Recorder::default();
        let opts = RootfsOptions {
            in_user_ns: true,
            new_ipc_ns: true,
            ..Default::default()
        };
        setup(&sys, &config, &opts).unwrap();
        let t = sys.transcript();
        assert!(
            t.contains("mount /dev/null -> /r/dev/null flags=MS_BIND\n"),
            "{t}"
        );
        assert!(!t.contains("mknod"), "{t}");
        assert!(
            t.contains("mount /sys -> /r/sys flags=MS_BIND|MS_REC"),
            "{t}"
        );
        assert!(!t.contains("gid=5"), "{t}");
    }
}
