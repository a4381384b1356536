//! The few system calls that build a container's filesystem view, behind one
//! trait.
//!
//! [`Linux`] makes the real calls. [`Recorder`] only writes down what it was
//! asked to do, so a unit test can check the exact sequence of mounts without
//! root and without touching the machine.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::error::{Error, Result, SysContext};

/// The calls that [`crate::rootfs::setup`] needs.
pub trait Syscall {
    /// `mount(2)`.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()>;
    /// `umount2(2)`.
    fn umount(&self, target: &Path, flags: MntFlags) -> Result<()>;
    /// `pivot_root(2)`.
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()>;
    /// `chdir(2)`.
    fn chdir(&self, path: &Path) -> Result<()>;
    /// `chroot(2)`: changes where path lookups start, and nothing else.
    /// Only [`crate::rootfs::chroot_only`] uses it.
    fn chroot(&self, path: &Path) -> Result<()>;
    /// `mkdir -p`.
    fn mkdir_all(&self, path: &Path) -> Result<()>;
    /// Creates an empty file if nothing exists there (a bind mount target).
    fn touch(&self, path: &Path) -> Result<()>;
    /// `mknod(2)`.
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, major: u64, minor: u64) -> Result<()>;
    /// `symlink(2)`.
    fn symlink(&self, target: &Path, link: &Path) -> Result<()>;
    /// `sethostname(2)`.
    fn sethostname(&self, name: &str) -> Result<()>;
    /// The flags a mount already has (`statvfs(3)`), which a read-only remount
    /// must keep.
    fn mount_flags(&self, path: &Path) -> Result<MsFlags>;
}

/// The real thing.
pub struct Linux;

impl Syscall for Linux {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        nix::mount::mount(source, target, fstype, flags, data).ctx(|| {
            format!(
                "mount {} on {} (type {}, flags {flags:?}, data {:?})",
                source
                    .map(|s| s.display().to_string())
                    .unwrap_or_else(|| "none".into()),
                target.display(),
                fstype.unwrap_or("none"),
                data.unwrap_or("")
            )
        })
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> Result<()> {
        nix::mount::umount2(target, flags).ctx(|| format!("umount {}", target.display()))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
            .ctx(|| format!("pivot_root {} {}", new_root.display(), put_old.display()))
    }

    fn chdir(&self, path: &Path) -> Result<()> {
        nix::unistd::chdir(path).ctx(|| format!("chdir {}", path.display()))
    }

    fn chroot(&self, path: &Path) -> Result<()> {
        nix::unistd::chroot(path).ctx(|| format!("chroot {}", path.display()))
    }

    fn mkdir_all(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path).map_err(|e| Error::io("mkdir", path, e))
    }

    fn touch(&self, path: &Path) -> Result<()> {
        if path.symlink_metadata().is_ok() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.mkdir_all(parent)?;
        }
        std::fs::File::create(path)
            .map(drop)
            .map_err(|e| Error::io("create", path, e))
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, major: u64, minor: u64) -> Result<()> {
        let dev = nix::sys::stat::makedev(major, minor);
        nix::sys::stat::mknod(path, kind, perm, dev).ctx(|| format!("mknod {}", path.display()))
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<()> {
        std::os::unix::fs::symlink(target, link).map_err(|e| Error::io("symlink", link, e))
    }

    fn sethostname(&self, name: &str) -> Result<()> {
        nix::unistd::sethostname(name).ctx(|| format!("sethostname {name}"))
    }

    fn mount_flags(&self, path: &Path) -> Result<MsFlags> {
        use nix::sys::statvfs::FsFlags;
        let st = nix::sys::statvfs::statvfs(path).ctx(|| format!("statvfs {}", path.display()))?;
        let f = st.flags();
        let mut flags = MsFlags::empty();
        for (fs, ms) in [
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(fs) {
                flags |= ms;
            }
        }
        Ok(flags)
    }
}

/// One recorded call, in a form that reads well in a test failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount(PathBuf, MntFlags),
    PivotRoot(PathBuf, PathBuf),
    Chdir(PathBuf),
    Chroot(PathBuf),
    MkdirAll(PathBuf),
    Touch(PathBuf),
    Mknod(PathBuf, u64, u64),
    Symlink(PathBuf, PathBuf),
    Sethostname(String),
}

/// Flags as `mount(8)` people write them: `MS_BIND|MS_REC`.
fn names<B: bitflags::Flags>(flags: &B) -> String {
    let v: Vec<&str> = flags.iter_names().map(|(n, _)| n).collect();
    if v.is_empty() {
        "0".into()
    } else {
        v.join("|")
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                write!(
                    f,
                    "mount {} -> {}",
                    source
                        .as_deref()
                        .map(|s| s.display().to_string())
                        .unwrap_or_else(|| "none".into()),
                    target.display()
                )?;
                if let Some(t) = fstype {
                    write!(f, " type={t}")?;
                }
                write!(f, " flags={}", names(flags))?;
                if let Some(d) = data.as_deref().filter(|d| !d.is_empty()) {
                    write!(f, " data={d}")?;
                }
                Ok(())
            }
            Call::Umount(p, flags) => write!(f, "umount {} flags={}", p.display(), names(flags)),
            Call::PivotRoot(a, b) => write!(f, "pivot_root {} {}", a.display(), b.display()),
            Call::Chdir(p) => write!(f, "chdir {}", p.display()),
            Call::Chroot(p) => write!(f, "chroot {}", p.display()),
            Call::MkdirAll(p) => write!(f, "mkdir -p {}", p.display()),
            Call::Touch(p) => write!(f, "touch {}", p.display()),
            Call::Mknod(p, maj, min) => write!(f, "mknod {} c {maj} {min}", p.display()),
            Call::Symlink(t, l) => write!(f, "ln -s {} {}", t.display(), l.display()),
            Call::Sethostname(h) => write!(f, "sethostname {h}"),
        }
    }
}

/// Records calls instead of making them.
pub struct Recorder {
    calls: RefCell<Vec<Call>>,
    /// The flags `mount_flags` reports, to test that a remount keeps them.
    pub existing_flags: MsFlags,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            calls: RefCell::default(),
            existing_flags: MsFlags::empty(),
        }
    }
}

impl Recorder {
    /// A recorder whose `mount_flags` answers `flags`.
    pub fn with_flags(flags: MsFlags) -> Self {
        Recorder {
            existing_flags: flags,
            ..Default::default()
        }
    }

    /// The calls so far, one per line, for snapshots.
    pub fn transcript(&self) -> String {
        self.calls
            .borrow()
            .iter()
            .map(|c| format!("{c}\n"))
            .collect()
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn push(&self, call: Call) -> Result<()> {
        self.calls.borrow_mut().push(call);
        Ok(())
    }
}

impl Syscall for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        self.push(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }
    fn umount(&self, target: &Path, flags: MntFlags) -> Result<()> {
        self.push(Call::Umount(target.to_path_buf(), flags))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()> {
        self.push(Call::PivotRoot(
            new_root.to_path_buf(),
            put_old.to_path_buf(),
        ))
    }
    fn chdir(&self, path: &Path) -> Result<()> {
        self.push(Call::Chdir(path.to_path_buf()))
    }
    fn chroot(&self, path: &Path) -> Result<()> {
        self.push(Call::Chroot(path.to_path_buf()))
    }
    fn mkdir_all(&self, path: &Path) -> Result<()> {
        self.push(Call::MkdirAll(path.to_path_buf()))
    }
    fn touch(&self, path: &Path) -> Result<()> {
        self.push(Call::Touch(path.to_path_buf()))
    }
    fn mknod(&self, path: &Path, _kind: SFlag, _perm: Mode, major: u64, minor: u64) -> Result<()> {
        self.push(Call::Mknod(path.to_path_buf(), major, minor))
    }
    fn symlink(&self, target: &Path, link: &Path) -> Result<()> {
        self.push(Call::Symlink(target.to_path_buf(), link.to_path_buf()))
    }
    fn sethostname(&self, name: &str) -> Result<()> {
        self.push(Call::Sethostname(name.to_string()))
    }
    fn mount_flags(&self, _path: &Path) -> Result<MsFlags> {
        Ok(self.existing_flags)
    }
}
