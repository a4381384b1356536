//! Steps 03.2 and 03.3: how a layer writes down that something is gone.
//!
//! A layer adds or changes a file simply by holding it. A deletion leaves
//! nothing to hold, so it needs a marker, and there are two conventions:
//!
//! - **overlayfs**, in a container's writable upper directory. `rm NAME`
//!   leaves a *whiteout* at `NAME`: a character device with device number
//!   0/0, which no real device has. `rm -r DIR && mkdir DIR` leaves an
//!   *opaque* directory: the extended attribute `trusted.overlay.opaque`
//!   set to `y` tells overlayfs not to look in the layers below for anything
//!   inside it (`user.overlay.opaque` on an overlay mounted with
//!   `userxattr`, since only the host's root may write `trusted.*`).
//! - **OCI image layers**, tar files that travel between machines and
//!   filesystems, where a device node or an extended attribute might not
//!   survive. An empty file `.wh.NAME` says `NAME` was deleted; a file
//!   `.wh..wh..opq` inside a directory says the directory is opaque.
//!
//! This module recognises and makes both kinds of marker (step 03.2) and
//! converts a whole tree from one convention to the other (step 03.3).
//! At the end are small file helpers the other modules share.

use std::collections::BTreeSet;
use std::ffi::{CString, OsStr, OsString};
use std::fs::Metadata;
use std::io::ErrorKind;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::mount::Overlay;

/// The device number of a whiteout: major 0, minor 0.
pub const WHITEOUT_DEVICE: u64 = 0;
/// The value of the opaque attribute on an opaque directory.
pub const OPAQUE_VALUE: &[u8] = b"y";
/// The opaque attribute of an ordinary overlay.
pub const TRUSTED_OPAQUE: &str = "trusted.overlay.opaque";
/// The opaque attribute of an overlay mounted with `userxattr`.
pub const USER_OPAQUE: &str = "user.overlay.opaque";
/// OCI: an empty file `.wh.NAME` says `NAME` was deleted.
pub const OCI_WHITEOUT_PREFIX: &str = ".wh.";
/// OCI: this file inside a directory says the directory is opaque.
pub const OCI_OPAQUE: &str = ".wh..wh..opq";
/// The mode of an OCI whiteout file (what Docker writes).
pub const OCI_WHITEOUT_MODE: u32 = 0o600;

/// Where overlayfs keeps its own attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Xattr {
    /// `trusted.overlay.*`, which only root on the host can read or write.
    #[default]
    Trusted,
    /// `user.overlay.*`, for overlays mounted with `userxattr` (inside a
    /// user namespace).
    User,
}

impl Xattr {
    /// The attributes an overlay mounted as `overlay` uses.
    pub fn of(overlay: &Overlay) -> Xattr {
        if overlay.userxattr {
            Xattr::User
        } else {
            Xattr::Trusted
        }
    }

    /// The name of the attribute that marks a directory opaque.
    pub fn opaque(self) -> &'static str {
        match self {
            Xattr::Trusted => TRUSTED_OPAQUE,
            Xattr::User => USER_OPAQUE,
        }
    }
}

// --- 03.2: whiteouts and opaque directories ----------------------------------

// ANCHOR: is_whiteout
/// Whether `meta` (from `symlink_metadata`) is an overlay whiteout: a
/// character device with device number 0/0. overlayfs hides the path in
/// every lower layer when the upper layer has one.
pub fn is_whiteout(meta: &Metadata) -> bool {
    // BEGIN SOLUTION 03.2
    meta.file_type().is_char_device() && meta.rdev() == WHITEOUT_DEVICE
    // END SOLUTION
}
// ANCHOR_END: is_whiteout

// ANCHOR: make_whiteout
/// Makes a whiteout at `path` with `mknod(2)`: a character device 0/0, mode
/// 0, exactly what overlayfs leaves behind when a file is deleted. Making
/// device nodes needs CAP_MKNOD (root).
pub fn make_whiteout(path: &Path) -> Result<()> {
    // BEGIN SOLUTION 03.2
    use nix::sys::stat::{Mode, SFlag, mknod};
    mknod(path, SFlag::S_IFCHR, Mode::empty(), WHITEOUT_DEVICE)
        .map_err(|e| Error::io("make whiteout", path, e.into()))
    // END SOLUTION
}
// ANCHOR_END: make_whiteout

// ANCHOR: opaque
/// Whether the directory `dir` is opaque: its attribute
/// `trusted.overlay.opaque` (or `user.overlay.opaque`) is `y`, so overlayfs
/// shows nothing of the lower layers inside it. A filesystem without
/// extended attributes has no opaque directories.
pub fn is_opaque(dir: &Path, xattr: Xattr) -> Result<bool> {
    // BEGIN SOLUTION 03.2
    let value = get_xattr(dir, xattr.opaque())
        .map_err(|e| Error::io(format!("read {} of", xattr.opaque()), dir, e))?;
    Ok(value.as_deref() == Some(OPAQUE_VALUE))
    // END SOLUTION
}

/// Marks the directory `dir` opaque by setting its opaque attribute to `y`.
/// (Setting `trusted.*` needs CAP_SYS_ADMIN.)
pub fn set_opaque(dir: &Path, xattr: Xattr) -> Result<()> {
    // BEGIN SOLUTION 03.2
    set_xattr(dir, xattr.opaque(), OPAQUE_VALUE)
        .map_err(|e| Error::io(format!("set {} on", xattr.opaque()), dir, e))
    // END SOLUTION
}
// ANCHOR_END: opaque

/// Removes the opaque mark from `dir`, if it has one.
pub fn clear_opaque(dir: &Path, xattr: Xattr) -> Result<()> {
    remove_xattr(dir, xattr.opaque())
        .map_err(|e| Error::io(format!("remove {} from", xattr.opaque()), dir, e))
}

// --- 03.3: OCI names and whole trees -------------------------------------------

/// What a file name in an OCI layer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciEntry {
    /// `.wh.NAME`: `NAME` was deleted.
    Whiteout(OsString),
    /// `.wh..wh..opq`: the directory that holds it is opaque.
    Opaque,
    /// Any other name: a file of the layer.
    Plain(OsString),
}

/// The OCI name that marks `name` deleted: `passwd` becomes `.wh.passwd`.
pub fn oci_name_for_whiteout(name: impl AsRef<OsStr>) -> OsString {
    // BEGIN SOLUTION 03.3
    let mut marker = OsString::from(OCI_WHITEOUT_PREFIX);
    marker.push(name.as_ref());
    marker
    // END SOLUTION
}

/// Reads one file name of an OCI layer. A whiteout must name a file in the
/// same directory: `.wh.`, `.wh..` and `.wh...` are refused, since deleting
/// `.` or `..` would reach outside the directory.
pub fn parse_oci_name(name: impl AsRef<OsStr>) -> Result<OciEntry> {
    // BEGIN SOLUTION 03.3
    let name = name.as_ref();
    if name == OCI_OPAQUE {
        return Ok(OciEntry::Opaque);
    }
    match name.as_bytes().strip_prefix(OCI_WHITEOUT_PREFIX.as_bytes()) {
        None => Ok(OciEntry::Plain(name.to_os_string())),
        Some(b"" | b"." | b"..") => Err(Error::Invalid(format!(
            "the whiteout {name:?} does not name a file: a layer may only delete files in the same directory"
        ))),
        Some(hidden) => Ok(OciEntry::Whiteout(OsString::from_vec(hidden.to_vec()))),
    }
    // END SOLUTION
}

// ANCHOR: overlay_to_oci
/// Converts the tree at `dir` (an upper directory, not mounted) from
/// overlay's markers to OCI's, in place: each whiteout becomes an empty
/// file `.wh.NAME` with mode 0600 and the whiteout's owner, and each opaque
/// directory loses its attribute and gets a `.wh..wh..opq` file with the
/// directory's mode and owner. Directory times are kept.
pub fn overlay_to_oci(dir: &Path, xattr: Xattr) -> Result<()> {
    // BEGIN SOLUTION 03.3
    let meta = lstat(dir)?;
    if is_opaque(dir, xattr)? {
        let marker = dir.join(OCI_OPAQUE);
        create_marker(&marker, meta.mode() & 0o777, &meta)?;
        clear_opaque(dir, xattr)?;
    }
    for name in sorted_names(dir)? {
        let path = dir.join(&name);
        let child = lstat(&path)?;
        if is_whiteout(&child) {
            std::fs::remove_file(&path).map_err(|e| Error::io("remove whiteout", &path, e))?;
            let marker = dir.join(oci_name_for_whiteout(&name));
            create_marker(&marker, OCI_WHITEOUT_MODE, &child)?;
        } else if child.is_dir() {
            overlay_to_oci(&path, xattr)?;
        }
    }
    set_times_like(dir, &meta)
    // END SOLUTION
}
// ANCHOR_END: overlay_to_oci

// ANCHOR: oci_to_overlay
/// Converts the tree at `dir` (an unpacked OCI layer) to overlay's markers,
/// in place: each `.wh.NAME` file becomes a whiteout at `NAME` owned like
/// the file (unless the layer also holds `NAME` itself), and each
/// `.wh..wh..opq` file makes its directory opaque. Directory times are kept.
pub fn oci_to_overlay(dir: &Path, xattr: Xattr) -> Result<()> {
    // BEGIN SOLUTION 03.3
    let meta = lstat(dir)?;
    for name in sorted_names(dir)? {
        let path = dir.join(&name);
        match parse_oci_name(&name)? {
            OciEntry::Opaque => {
                std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                set_opaque(dir, xattr)?;
            }
            OciEntry::Whiteout(hidden) => {
                let marker = lstat(&path)?;
                std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                let target = dir.join(hidden);
                if lstat_optional(&target)?.is_none() {
                    make_whiteout(&target)?;
                    set_owner(&target, marker.uid(), marker.gid())?;
                    set_times_like(&target, &marker)?;
                }
            }
            OciEntry::Plain(_) => {
                if lstat(&path)?.is_dir() {
                    oci_to_overlay(&path, xattr)?;
                }
            }
        }
    }
    set_times_like(dir, &meta)
    // END SOLUTION
}
// ANCHOR_END: oci_to_overlay

/// Makes the empty file of an OCI marker at `path`, with `mode`, and the
/// owner and modification time of `like`.
fn create_marker(path: &Path, mode: u32, like: &Metadata) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io("create marker", path, e))?;
    set_owner(path, like.uid(), like.gid())?;
    set_mode(path, mode)?;
    set_times_like(path, like)
}

// --- a listing of a tree, for tests and for looking -----------------------------

/// Describes the tree under `dir`, one line per entry in walking order:
/// type and mode, owner, size, path, and what the type adds (a symbolic
/// link's target, a device's number, the start of a file's SHA-256, whether
/// a directory is opaque). Whiteouts show as `w`. Times are left out, so two
/// trees made at different moments compare equal.
pub fn listing(dir: &Path, xattr: Xattr) -> Result<String> {
    let mut out = String::new();
    list_into(dir, Path::new(""), xattr, &mut out)?;
    Ok(out)
}

fn list_into(root: &Path, rel: &Path, xattr: Xattr, out: &mut String) -> Result<()> {
    use sha2::Digest;
    for name in sorted_names(&root.join(rel))? {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = lstat(&path)?;
        let ft = meta.file_type();
        let (kind, detail) = if is_whiteout(&meta) {
            ('w', String::new())
        } else if ft.is_dir() {
            let opaque = is_opaque(&path, xattr)?;
            (
                'd',
                if opaque {
                    " (opaque)".into()
                } else {
                    String::new()
                },
            )
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| Error::io("read link", &path, e))?;
            ('l', format!(" -> {}", target.display()))
        } else if ft.is_file() {
            let data = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
            let sum = hex::encode(sha2::Sha256::digest(&data));
            ('-', format!(" sha256:{}", &sum[..12]))
        } else if ft.is_char_device() || ft.is_block_device() {
            let dev = meta.rdev();
            let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
            let k = if ft.is_char_device() { 'c' } else { 'b' };
            (k, format!(" ({major}:{minor})"))
        } else if ft.is_fifo() {
            ('p', String::new())
        } else {
            ('s', String::new())
        };
        let size = if ft.is_file() {
            meta.len().to_string()
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{kind}{:04o} {}:{} {size:>6} {}{detail}\n",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            rel.display()
        ));
        if ft.is_dir() {
            list_into(root, &rel, xattr, out)?;
        }
    }
    Ok(())
}

// --- small file helpers the other modules share --------------------------------

/// The names in `dir`, sorted byte by byte, so that every walk visits a
/// tree in the same order whatever order the filesystem keeps.
pub(crate) fn sorted_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = BTreeSet::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        names.insert(entry.file_name());
    }
    Ok(names.into_iter().collect())
}

/// `symlink_metadata`, with the path in the error.
pub(crate) fn lstat(path: &Path) -> Result<Metadata> {
    std::fs::symlink_metadata(path).map_err(|e| Error::io("stat", path, e))
}

/// `symlink_metadata`, or `None` when nothing is there.
pub(crate) fn lstat_optional(path: &Path) -> Result<Option<Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

/// Removes whatever is at `path` (a directory with its contents), without
/// following a symbolic link; nothing there is fine.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let result = match lstat_optional(path)? {
        None => return Ok(()),
        Some(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Some(_) => std::fs::remove_file(path),
    };
    result.map_err(|e| Error::io("remove", path, e))
}

/// Gives `path` (not following a symbolic link) the owner `uid:gid`,
/// skipping the call when it already has it, so that an unprivileged user
/// can still copy their own files.
pub(crate) fn set_owner(path: &Path, uid: u32, gid: u32) -> Result<()> {
    let now = lstat(path)?;
    if (now.uid(), now.gid()) == (uid, gid) {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io(format!("change owner to {uid}:{gid} of"), path, e))
}

/// Sets the permission bits of `path` (never a symbolic link: chmod
/// follows them). Call it after [`set_owner`], since a change of owner
/// clears the set-user-ID and set-group-ID bits.
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| Error::io(format!("change mode to {:04o} of", mode & 0o7777), path, e))
}

/// Sets the access and modification times of `path`, in seconds and
/// nanoseconds, without following a symbolic link (`utimensat(2)` with
/// `AT_SYMLINK_NOFOLLOW`).
pub(crate) fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> Result<()> {
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    let spec = |(s, ns): (i64, i64)| TimeSpec::new(s, ns);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &spec(atime),
        &spec(mtime),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io("set times of", path, e.into()))
}

/// Gives `path` the access and modification times of `like`.
pub(crate) fn set_times_like(path: &Path, like: &Metadata) -> Result<()> {
    set_times(
        path,
        (like.atime(), like.atime_nsec()),
        (like.mtime(), like.mtime_nsec()),
    )
}

fn c_string(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))
}

/// Reads the extended attribute `name` of `path` itself (`lgetxattr(2)`);
/// `None` when it is not set or the filesystem has none.
fn get_xattr(path: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    let (p, n) = (
        c_string(path.as_os_str().as_bytes())?,
        c_string(name.as_bytes())?,
    );
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated; buf is writable for its length.
        let len =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if len >= 0 {
            buf.truncate(len as usize);
            return Ok(Some(buf));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 16, 0),
            _ => return Err(err),
        }
    }
}

/// Sets the extended attribute `name` of `path` itself (`lsetxattr(2)`).
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let (p, n) = (
        c_string(path.as_os_str().as_bytes())?,
        c_string(name.as_bytes())?,
    );
    // SAFETY: both strings are NUL-terminated; value is readable for its length.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Removes the extended attribute `name` of `path` itself; not set is fine.
fn remove_xattr(path: &Path, name: &str) -> std::io::Result<()> {
    let (p, n) = (
        c_string(path.as_os_str().as_bytes())?,
        c_string(name.as_bytes())?,
    );
    // SAFETY: both strings are NUL-terminated.
    let rc = unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) };
    let err = std::io::Error::last_os_error();
    match (rc, err.raw_os_error()) {
        (0, _) | (_, Some(libc::ENODATA)) => Ok(()),
        _ => Err(err),
    }
}

/// Builders for the tests of this crate: small trees in temporary
/// directories, in overlay form.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::{Path, PathBuf};

    /// Writes `text` to `root/rel`, making the directories on the way.
    pub fn file(root: &Path, rel: &str, text: &str) -> PathBuf {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Makes the directory `root/rel` and those on the way.
    pub fn dir(root: &Path, rel: &str) -> PathBuf {
        let path = root.join(rel);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Makes a whiteout at `root/rel` (needs root).
    pub fn whiteout(root: &Path, rel: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        super::make_whiteout(&path).unwrap();
    }

    /// Makes `root/rel` an opaque directory (needs root).
    pub fn opaque(root: &Path, rel: &str) {
        super::set_opaque(&dir(root, rel), super::Xattr::Trusted).unwrap();
    }

    /// Sets the modification time of `root/rel` (seconds, nanoseconds).
    pub fn mtime(root: &Path, rel: &str, secs: i64, nanos: i64) {
        super::set_times(&root.join(rel), (secs, nanos), (secs, nanos)).unwrap();
    }

    /// `listing` with the caller's own uid:gid shown as root's, so that a
    /// snapshot made as root also holds for a test run without root.
    pub fn as_root(listing: String) -> String {
        let me = format!(" {}:{} ", nix::unistd::geteuid(), nix::unistd::getegid());
        listing.replace(&me, " 0:0 ")
    }

    /// A fresh temporary directory.
    pub fn tmp() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("lab03-").tempdir().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{dir, file, opaque, tmp, whiteout};
    use super::*;

    #[test]
    fn oci_names_map_both_ways() {
        assert_eq!(oci_name_for_whiteout("passwd"), ".wh.passwd");
        assert_eq!(
            parse_oci_name(".wh.passwd").unwrap(),
            OciEntry::Whiteout("passwd".into())
        );
        assert_eq!(parse_oci_name(".wh..wh..opq").unwrap(), OciEntry::Opaque);
        assert_eq!(
            parse_oci_name("passwd").unwrap(),
            OciEntry::Plain("passwd".into())
        );
        // A hidden file can be deleted too: `.wh..profile` hides `.profile`.
        assert_eq!(
            parse_oci_name(oci_name_for_whiteout(".profile")).unwrap(),
            OciEntry::Whiteout(".profile".into())
        );
    }

    #[test]
    fn whiteouts_of_nothing_or_dot_dot_are_refused() {
        for bad in [".wh.", ".wh..", ".wh..."] {
            let err = parse_oci_name(bad).unwrap_err().to_string();
            assert!(err.contains("does not name a file"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_whiteout_is_a_char_device_0_0() {
        if !testkit::require_root("whiteout::a_whiteout_is_a_char_device_0_0") {
            return;
        }
        let d = tmp();
        let path = d.path().join("gone");
        make_whiteout(&path).unwrap();
        assert!(is_whiteout(&lstat(&path).unwrap()));
        // A regular file is not one, nor is a real character device.
        let f = file(d.path(), "file", "x");
        assert!(!is_whiteout(&lstat(&f).unwrap()));
        assert!(!is_whiteout(&lstat(Path::new("/dev/null")).unwrap()));
        let err = make_whiteout(&path).unwrap_err().to_string();
        assert!(
            err.starts_with("make whiteout ") && err.contains("gone"),
            "{err}"
        );
    }

    #[test]
    fn opaque_is_an_attribute_of_the_directory() {
        let d = tmp();
        let plain = dir(d.path(), "plain");
        // user.* attributes need no privilege (on ext4, xfs, and tmpfs since 6.6).
        let user = dir(d.path(), "user");
        if set_opaque(&user, Xattr::User).is_ok() {
            assert!(is_opaque(&user, Xattr::User).unwrap());
            assert!(!is_opaque(&user, Xattr::Trusted).unwrap());
            clear_opaque(&user, Xattr::User).unwrap();
            assert!(!is_opaque(&user, Xattr::User).unwrap());
        }
        assert!(!is_opaque(&plain, Xattr::User).unwrap());
        if !testkit::require_root("whiteout::opaque_is_an_attribute_of_the_directory") {
            return;
        }
        opaque(d.path(), "trusted");
        assert!(is_opaque(&d.path().join("trusted"), Xattr::Trusted).unwrap());
        assert!(!is_opaque(&plain, Xattr::Trusted).unwrap());
    }

    /// An upper directory as a container leaves it: a changed file, a
    /// deleted one, and a directory deleted and made again.
    fn upper() -> tempfile::TempDir {
        let d = tmp();
        file(d.path(), "etc/hosts", "127.0.0.1 box\n");
        whiteout(d.path(), "etc/motd");
        opaque(d.path(), "var/cache");
        file(d.path(), "var/cache/new", "fresh\n");
        whiteout(d.path(), "var/.hidden");
        d
    }

    #[test]
    fn trees_convert_from_overlay_to_oci_and_back() {
        if !testkit::require_root("whiteout::trees_convert_from_overlay_to_oci_and_back") {
            return;
        }
        let d = upper();
        let before = listing(d.path(), Xattr::Trusted).unwrap();
        let cache_time = lstat(&d.path().join("var/cache")).unwrap().mtime_nsec();
        overlay_to_oci(d.path(), Xattr::Trusted).unwrap();
        insta::assert_snapshot!("as_oci", listing(d.path(), Xattr::Trusted).unwrap());
        let after = lstat(&d.path().join("var/cache")).unwrap().mtime_nsec();
        assert_eq!(cache_time, after, "directory times are kept");
        oci_to_overlay(d.path(), Xattr::Trusted).unwrap();
        assert_eq!(listing(d.path(), Xattr::Trusted).unwrap(), before);
        insta::assert_snapshot!("as_overlay", before);
    }
}
