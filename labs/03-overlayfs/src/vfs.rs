//! Step 03.6: the copying fallback, for where overlay cannot be mounted.
//!
//! Some machines cannot mount overlayfs: an old kernel in a user
//! namespace, a storage directory that is itself on overlayfs, a
//! filesystem without the extended attributes overlay needs. Docker's
//! answer there is the `vfs` driver: every container gets a full copy of
//! its image, made by laying each layer over the one below, bottom first.
//! It is slow and takes space, but needs nothing from the kernel, and a
//! copy can be given to other owners (user-namespace remapping), which a
//! shared read-only layer cannot.
//!
//! [`populate`] makes the copy; [`Driver::detect`] decides by trying a real
//! overlay mount and says why when it fails.

use std::collections::HashMap;
use std::fmt;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mount::{Api, Overlay, unmount};
use crate::whiteout::{
    Xattr, is_opaque, is_whiteout, lstat, lstat_optional, remove_any, set_mode, set_owner,
    set_times_like, sorted_names,
};

/// The owner mapping that changes nothing (no user namespace).
pub fn same_ids(uid: u32, gid: u32) -> (u32, u32) {
    (uid, gid)
}

// ANCHOR: populate
/// Builds in `dst` the tree an overlay of `lowers_top_first` would show
/// (the same list, in the same order, as [`Overlay::new`] takes), by
/// copying the unpacked layers onto each other from the bottom one up: a
/// whiteout deletes the path, an opaque directory is emptied before the
/// layer's own files land in it. Modes, times (to the nanosecond) and
/// symbolic links are kept, hard links within a layer stay hard links, and
/// each owner is passed through `shift` (host ids for a user namespace).
pub fn populate(
    lowers_top_first: &[PathBuf],
    xattr: Xattr,
    dst: &Path,
    shift: &dyn Fn(u32, u32) -> (u32, u32),
) -> Result<()> {
    // BEGIN SOLUTION 03.6
    std::fs::create_dir_all(dst).map_err(|e| Error::io("create", dst, e))?;
    for layer in lowers_top_first.iter().rev() {
        let mut copier = Copier {
            xattr,
            shift,
            copied: HashMap::new(),
        };
        copier.copy_dir(layer, dst)?;
    }
    Ok(())
    // END SOLUTION
}
// ANCHOR_END: populate

/// Copies one layer.
struct Copier<'a> {
    xattr: Xattr,
    shift: &'a dyn Fn(u32, u32) -> (u32, u32),
    /// Where the first path of each multiply linked inode was copied to.
    copied: HashMap<(u64, u64), PathBuf>,
}

impl Copier<'_> {
    /// Lays the layer's directory `src` over `dst`.
    fn copy_dir(&mut self, src: &Path, dst: &Path) -> Result<()> {
        // BEGIN SOLUTION 03.6
        for name in sorted_names(src)? {
            let (from, to) = (src.join(&name), dst.join(&name));
            let meta = lstat(&from)?;
            if is_whiteout(&meta) {
                remove_any(&to)?;
                continue;
            }
            let there = lstat_optional(&to)?;
            if meta.is_dir() {
                match there {
                    Some(t) if t.is_dir() && is_opaque(&from, self.xattr)? => empty(&to)?,
                    Some(t) if t.is_dir() => {}
                    Some(_) => remove_any(&to)?,
                    None => {}
                }
                if !to.is_dir() {
                    std::fs::create_dir(&to).map_err(|e| Error::io("create", &to, e))?;
                }
                self.copy_dir(&from, &to)?;
            } else {
                if there.is_some() {
                    remove_any(&to)?;
                }
                self.copy_entry(&from, &to, &meta)?;
            }
        }
        self.keep_metadata(dst, &lstat(src)?)
        // END SOLUTION
    }

    /// Copies a file, symbolic link, device or FIFO (sockets are left out).
    fn copy_entry(&mut self, from: &Path, to: &Path, meta: &Metadata) -> Result<()> {
        let ft = meta.file_type();
        if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.copied.get(&key) {
                return std::fs::hard_link(first, to)
                    .map_err(|e| Error::io(format!("link {} to", first.display()), to, e));
            }
            std::fs::copy(from, to)
                .map_err(|e| Error::io(format!("copy {} to", from.display()), to, e))?;
            if meta.nlink() > 1 {
                self.copied.insert(key, to.to_path_buf());
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(from).map_err(|e| Error::io("read link", from, e))?;
            std::os::unix::fs::symlink(&target, to)
                .map_err(|e| Error::io("create symbolic link", to, e))?;
        } else if ft.is_socket() {
            return Ok(());
        } else {
            use nix::sys::stat::{Mode, SFlag, mknod};
            let kind = SFlag::from_bits_truncate(meta.mode() & SFlag::S_IFMT.bits());
            mknod(
                to,
                kind,
                Mode::from_bits_truncate(meta.mode() & 0o777),
                meta.rdev(),
            )
            .map_err(|e| Error::io("make device", to, e.into()))?;
        }
        self.keep_metadata(to, meta)
    }

    /// Gives `to` the shifted owner, the mode and the times of `meta`.
    fn keep_metadata(&self, to: &Path, meta: &Metadata) -> Result<()> {
        let (uid, gid) = (self.shift)(meta.uid(), meta.gid());
        set_owner(to, uid, gid)?;
        if !meta.file_type().is_symlink() {
            set_mode(to, meta.mode())?;
        }
        set_times_like(to, meta)
    }
}

/// Removes everything inside the directory `dir`.
fn empty(dir: &Path) -> Result<()> {
    for name in sorted_names(dir)? {
        remove_any(&dir.join(name))?;
    }
    Ok(())
}

/// How containers get their root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Mount an overlay of the layers, handing them to the kernel with `Api`.
    Overlay(Api),
    /// Copy the layers ([`populate`]).
    Vfs,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::Overlay(_) => "overlay",
            Driver::Vfs => "vfs",
        })
    }
}

impl Driver {
    // ANCHOR: detect
    /// Picks the driver by trying: mounts a tiny overlay in a scratch
    /// directory under `scratch_dir` (where the layers will live, since the
    /// filesystem matters), reads a file through it, unmounts and cleans
    /// up. Falls back to `Vfs`, with the reason, when any of it fails. The
    /// mount happens in the caller's mount namespace, for a moment.
    pub fn detect(scratch_dir: &Path) -> (Driver, String) {
        // BEGIN SOLUTION 03.6
        match try_overlay(scratch_dir) {
            Ok(api) => {
                let how = match api {
                    Api::LowerdirPlus => "one lowerdir+ per layer",
                    Api::Legacy => "one lowerdir= option string",
                };
                (
                    Driver::Overlay(api),
                    format!("overlayfs works here ({how})"),
                )
            }
            Err(e) => (
                Driver::Vfs,
                format!("overlayfs cannot be mounted here ({e}); copying layers instead"),
            ),
        }
        // END SOLUTION
    }
    // ANCHOR_END: detect
}

/// Mounts, reads and unmounts an overlay of two tiny layers.
fn try_overlay(scratch_dir: &Path) -> Result<Api> {
    let scratch = tempfile::Builder::new()
        .prefix(".overlay-probe-")
        .tempdir_in(scratch_dir)
        .map_err(|e| Error::io("make a scratch directory in", scratch_dir, e))?;
    let d = scratch.path();
    for sub in ["lower1", "lower2", "upper", "work", "merged"] {
        let path = d.join(sub);
        std::fs::create_dir(&path).map_err(|e| Error::io("create", &path, e))?;
    }
    let probe = d.join("lower1/probe");
    std::fs::write(&probe, "ok").map_err(|e| Error::io("write", &probe, e))?;
    let overlay = Overlay::new(
        vec![d.join("lower1"), d.join("lower2")],
        d.join("upper"),
        d.join("work"),
    );
    let api = Api::detect();
    let merged = d.join("merged");
    overlay.mount(&merged, api)?;
    let seen = std::fs::read_to_string(merged.join("probe"));
    unmount(&merged)?;
    match seen {
        Ok(text) if text == "ok" => Ok(api),
        Ok(_) => Err(Error::Invalid(
            "the merged view does not show the lower layer".into(),
        )),
        Err(e) => Err(Error::io("read", merged.join("probe"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whiteout::fixture::{dir, file, mtime, opaque, tmp, whiteout};
    use crate::whiteout::listing;

    #[test]
    fn layers_are_copied_bottom_first() {
        if !testkit::require_root("vfs::layers_are_copied_bottom_first") {
            return;
        }
        let d = tmp();
        let base = dir(d.path(), "base");
        let mid = dir(d.path(), "mid");
        let top = dir(d.path(), "top");
        file(&base, "etc/motd", "hello\n");
        file(&base, "etc/hosts", "127.0.0.1 localhost\n");
        file(&base, "var/cache/a", "a\n");
        file(&base, "var/log", "a file, for now\n");
        file(&mid, "etc/hosts", "127.0.0.1 mid\n");
        whiteout(&mid, "etc/motd");
        file(&mid, "var/log/now", "a directory\n");
        opaque(&top, "var/cache");
        file(&top, "var/cache/b", "b\n");
        file(&top, "etc/motd", "back again\n");
        let root = d.path().join("rootfs");
        populate(&[top, mid, base], Xattr::Trusted, &root, &same_ids).unwrap();
        insta::assert_snapshot!(listing(&root, Xattr::Trusted).unwrap());
    }

    #[test]
    fn times_links_and_hard_links_are_kept() {
        let d = tmp();
        let layer = dir(d.path(), "layer");
        file(&layer, "bin/busybox", "#!/bin/sh\n");
        for name in ["sh", "ls"] {
            std::fs::hard_link(layer.join("bin/busybox"), layer.join("bin").join(name)).unwrap();
        }
        std::os::unix::fs::symlink("busybox", layer.join("bin/cat")).unwrap();
        mtime(&layer, "bin/busybox", 1_700_000_000, 123_456_789);
        mtime(&layer, "bin/cat", 1_600_000_000, 5);
        mtime(&layer, "bin", 1_500_000_000, 42);
        let root = d.path().join("rootfs");
        populate(
            std::slice::from_ref(&layer),
            Xattr::Trusted,
            &root,
            &same_ids,
        )
        .unwrap();
        assert_eq!(
            listing(&root, Xattr::Trusted).unwrap(),
            listing(&layer, Xattr::Trusted).unwrap()
        );
        let (a, b) = (
            lstat(&root.join("bin/sh")).unwrap(),
            lstat(&root.join("bin/ls")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "one copy of busybox");
        assert_eq!(a.nlink(), 3);
        for rel in ["bin/busybox", "bin/cat", "bin"] {
            let (s, c) = (
                lstat(&layer.join(rel)).unwrap(),
                lstat(&root.join(rel)).unwrap(),
            );
            assert_eq!(
                (s.mtime(), s.mtime_nsec()),
                (c.mtime(), c.mtime_nsec()),
                "{rel}"
            );
        }
    }

    #[test]
    fn owners_go_through_the_shift() {
        if !testkit::require_root("vfs::owners_go_through_the_shift") {
            return;
        }
        let d = tmp();
        let layer = dir(d.path(), "layer");
        file(&layer, "home/user/notes", "x\n");
        set_owner(&layer.join("home/user/notes"), 1000, 1000).unwrap();
        let root = d.path().join("rootfs");
        let shift = |uid: u32, gid: u32| (uid + 100_000, gid + 100_000);
        populate(&[layer], Xattr::Trusted, &root, &shift).unwrap();
        let owner = |rel: &str| {
            let m = lstat(&root.join(rel)).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner("home/user/notes"), (101_000, 101_000));
        assert_eq!(owner("home"), (100_000, 100_000));
        assert_eq!(owner(""), (100_000, 100_000), "the root too");
    }

    #[test]
    fn detection_gives_a_reason_and_leaves_nothing() {
        let d = tmp();
        let (driver, why) = Driver::detect(d.path());
        eprintln!("{driver}: {why}");
        assert!(!why.is_empty());
        match driver {
            Driver::Overlay(_) => assert!(why.starts_with("overlayfs works here")),
            Driver::Vfs => assert!(why.contains("cannot be mounted"), "{why}"),
        }
        assert!(testkit::leaks::mounts_under(d.path()).is_empty());
        assert_eq!(
            sorted_names(d.path()).unwrap().len(),
            0,
            "the scratch is gone"
        );
        // Without a usable scratch directory the answer is vfs, with why.
        let (driver, why) = Driver::detect(&d.path().join("missing"));
        assert_eq!(driver, Driver::Vfs);
        assert!(why.contains("missing"), "{why}");
    }
}
