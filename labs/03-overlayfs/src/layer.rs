//! Step 03.5: the writable layer becomes an image layer (`docker commit`).
//!
//! An image layer is a tar file in OCI form: the files the layer adds or
//! changes, plus `.wh.` marker files for what it deletes. Packing a
//! container's upper directory means writing each entry with its owner and
//! mode, turning whiteouts and opaque directories into markers on the way
//! (the upper itself is not touched: the container may start again).
//!
//! A layer is named by the SHA-256 of its tar bytes, its *diff id*. The same
//! content must therefore give the same bytes: entries are sorted by path,
//! user and group names are left out, and with [`TarOptions::reproducible`]
//! every modification time is the same fixed value.
//!
//! Unpacking a layer ([`apply`]) is where a hostile image attacks: an entry
//! named `../../etc/cron.d/x`, or a symbolic link `a -> /` followed by an
//! entry `a/etc/shadow`, would write outside the layer's directory. Every
//! entry is checked before anything is written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::Digest;
use tar::{EntryType, Header};

use crate::diff::{Change, ChangeKind};
use crate::error::{Error, Result};
use crate::whiteout::{
    OCI_OPAQUE, OCI_WHITEOUT_MODE, OciEntry, Xattr, is_opaque, is_whiteout, lstat, lstat_optional,
    make_whiteout, oci_name_for_whiteout, parse_oci_name, remove_any, set_mode, set_opaque,
    set_owner, set_times, sorted_names,
};

/// How a layer is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TarOptions {
    /// `Some(t)`: every entry gets the modification time `t` (seconds since
    /// 1970, like `SOURCE_DATE_EPOCH`), so the same content packed at any
    /// time gives the same bytes and the same digest. `None`: each entry
    /// keeps its file's time (to the second).
    pub mtime: Option<u64>,
}

impl TarOptions {
    /// Every modification time 0 (1 January 1970): reproducible layers.
    pub fn reproducible() -> TarOptions {
        TarOptions { mtime: Some(0) }
    }
}

/// The diff id of a layer: `sha256:` and the hex SHA-256 of its
/// uncompressed tar bytes.
pub fn digest(layer: &[u8]) -> String {
    // BEGIN SOLUTION 03.5
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(layer)))
    // END SOLUTION
}

// ANCHOR: tar_upper
/// Packs the overlay upper directory `upper` into a layer tar in OCI form,
/// without changing it: whiteouts become empty `.wh.NAME` files, an opaque
/// directory is followed by a `.wh..wh..opq` entry, entries come sorted by
/// path (parents first), hard links within the layer are link entries, and
/// sockets are left out. The container must not be running.
pub fn tar_upper(upper: &Path, options: &TarOptions, xattr: Xattr) -> Result<Vec<u8>> {
    // BEGIN SOLUTION 03.5
    let mut tar = LayerWriter::new(*options);
    pack_upper_dir(&mut tar, upper, Path::new(""), xattr)?;
    tar.finish()
    // END SOLUTION
}
// ANCHOR_END: tar_upper

/// Packs the contents of the upper directory `rel`: its entries and
/// whiteout markers sorted by their names in the tar.
fn pack_upper_dir(tar: &mut LayerWriter, upper: &Path, rel: &Path, xattr: Xattr) -> Result<()> {
    // BEGIN SOLUTION 03.5
    let mut entries = BTreeMap::new();
    for name in sorted_names(&upper.join(rel))? {
        let meta = lstat(&upper.join(rel).join(&name))?;
        let in_tar = if is_whiteout(&meta) {
            oci_name_for_whiteout(&name)
        } else {
            name.clone()
        };
        entries.insert(in_tar, (name, meta));
    }
    for (in_tar, (name, meta)) in entries {
        let child = rel.join(&name);
        let path = upper.join(&child);
        if is_whiteout(&meta) {
            tar.marker(&rel.join(in_tar), OCI_WHITEOUT_MODE, &meta)?;
            continue;
        }
        tar.entry(&path, &child, &meta)?;
        if meta.is_dir() {
            if is_opaque(&path, xattr)? {
                tar.marker(&child.join(OCI_OPAQUE), meta.mode() & 0o777, &meta)?;
            }
            pack_upper_dir(tar, upper, &child, xattr)?;
        }
    }
    Ok(())
    // END SOLUTION
}

/// Packs the layer of a container made by copying (the `vfs` driver): the
/// added and changed paths of `changes` as entries read from `rootfs`
/// (a directory alone, its contents being changes of their own), and each
/// deleted path as a `.wh.` marker, all sorted by path.
pub fn tar_dir(rootfs: &Path, changes: &[Change], options: &TarOptions) -> Result<Vec<u8>> {
    let mut items: Vec<(PathBuf, &Change)> = changes
        .iter()
        .map(|c| match c.kind {
            ChangeKind::Deleted => {
                let rel = c.relative();
                let marker = oci_name_for_whiteout(rel.file_name().unwrap_or_default());
                (rel.with_file_name(marker), c)
            }
            _ => (c.relative().to_path_buf(), c),
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tar = LayerWriter::new(*options);
    for (in_tar, change) in items {
        let path = rootfs.join(change.relative());
        if change.kind == ChangeKind::Deleted {
            // The deletion changed the parent directory: its time is the
            // best guess at when it happened.
            let parent = lstat(path.parent().unwrap_or(rootfs))?;
            tar.marker(&in_tar, OCI_WHITEOUT_MODE, &parent)?;
        } else {
            tar.entry(&path, &in_tar, &lstat(&path)?)?;
        }
    }
    tar.finish()
}

/// Writes a layer tar, one entry at a time.
struct LayerWriter {
    tar: tar::Builder<Vec<u8>>,
    options: TarOptions,
    /// The first path written of each inode with more than one link.
    links: HashMap<(u64, u64), PathBuf>,
}

impl LayerWriter {
    fn new(options: TarOptions) -> LayerWriter {
        LayerWriter {
            tar: tar::Builder::new(Vec::new()),
            options,
            links: HashMap::new(),
        }
    }

    /// A header with the owner, mode and time of `meta`, and no size.
    fn header(&self, kind: EntryType, mode: u32, meta: &Metadata) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode & 0o7777);
        header.set_uid(meta.uid().into());
        header.set_gid(meta.gid().into());
        let own = u64::try_from(meta.mtime()).unwrap_or(0);
        header.set_mtime(self.options.mtime.unwrap_or(own));
        header.set_size(0);
        header
    }

    /// The empty regular file of an OCI marker, owned like `like`.
    fn marker(&mut self, rel: &Path, mode: u32, like: &Metadata) -> Result<()> {
        let mut header = self.header(EntryType::Regular, mode, like);
        self.tar
            .append_data(&mut header, rel, std::io::empty())
            .map_err(|e| Error::io("pack", rel, e))
    }

    /// The file `path` as the entry `rel`.
    fn entry(&mut self, path: &Path, rel: &Path, meta: &Metadata) -> Result<()> {
        let ft = meta.file_type();
        let mode = meta.mode();
        let err = |e| Error::io("pack", path, e);
        if ft.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let mut header = self.header(EntryType::Link, mode, meta);
                return self.tar.append_link(&mut header, rel, first).map_err(err);
            }
            self.links.insert(key, rel.to_path_buf());
        }
        if ft.is_file() {
            let mut header = self.header(EntryType::Regular, mode, meta);
            header.set_size(meta.len());
            let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
            self.tar
                .append_data(&mut header, rel, file.take(meta.len()))
                .map_err(err)
        } else if ft.is_dir() {
            let mut header = self.header(EntryType::Directory, mode, meta);
            self.tar
                .append_data(&mut header, rel, std::io::empty())
                .map_err(err)
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(|e| Error::io("read link", path, e))?;
            let mut header = self.header(EntryType::Symlink, mode, meta);
            self.tar.append_link(&mut header, rel, target).map_err(err)
        } else if ft.is_socket() {
            Ok(()) // a socket means nothing without its process
        } else {
            let kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            };
            let mut header = self.header(kind, mode, meta);
            let dev = meta.rdev();
            let number = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
            header
                .set_device_major(number(nix::sys::stat::major(dev)))
                .and_then(|()| header.set_device_minor(number(nix::sys::stat::minor(dev))))
                .map_err(err)?;
            self.tar
                .append_data(&mut header, rel, std::io::empty())
                .map_err(err)
        }
    }

    fn finish(self) -> Result<Vec<u8>> {
        self.tar
            .into_inner()
            .map_err(|e| Error::io("finish", "layer tar", e))
    }
}

/// What a layer is unpacked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An empty directory that becomes one lower layer of an overlay:
    /// `.wh.NAME` becomes a whiteout, `.wh..wh..opq` the opaque attribute.
    Overlay(Xattr),
    /// A directory holding the layers below already (the `vfs` driver's
    /// copy): `.wh.NAME` deletes `NAME`, `.wh..wh..opq` empties its
    /// directory of what the layers below put there.
    Plain,
}

// ANCHOR: apply
/// Unpacks the layer tar `layer` onto `dir`, keeping owners, modes and
/// modification times, and turning OCI markers into what `target` needs.
/// Nothing is ever written outside `dir`: an absolute path, a `..`, a
/// parent that is not a real directory (a symbolic link could point
/// anywhere), or a hard link to anything but an earlier entry of this
/// layer stops the unpacking with an error.
pub fn apply(layer: impl Read, dir: &Path, target: Target) -> Result<()> {
    // BEGIN SOLUTION 03.5
    let mut unpacker = Unpacker {
        dir: dir.to_path_buf(),
        target,
        written: HashSet::new(),
        dir_times: BTreeMap::new(),
        checked: None,
        buf: Vec::new(),
    };
    // Big reads: a layer is read once, front to back.
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, layer));
    let entries = archive
        .entries()
        .map_err(|e| Error::io("read layer for", dir, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("read layer entry for", dir, e))?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish()
    // END SOLUTION
}
// ANCHOR_END: apply

/// The path of a layer entry made safe to join to the layer's directory:
/// relative, without `..`, `.` left out. `None` for the directory itself.
pub fn safe_path(path: &Path) -> Result<Option<PathBuf>> {
    // BEGIN SOLUTION 03.5
    let mut safe = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => safe.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Error::Invalid(format!(
                    "refusing layer entry {}: a layer's paths must be relative and \
                     without `..`, or it could write outside its directory",
                    path.display()
                )));
            }
        }
    }
    Ok((!safe.as_os_str().is_empty()).then_some(safe))
    // END SOLUTION
}

/// The state of one [`apply`].
struct Unpacker {
    dir: PathBuf,
    target: Target,
    /// Every path this layer wrote, relative to `dir`.
    written: HashSet<PathBuf>,
    /// Directories' modification times, set last (their entries change them).
    dir_times: BTreeMap<PathBuf, i64>,
    /// The last parent directory found to be real directories all the way
    /// down, so that its siblings need no new check; forgotten whenever
    /// something is removed (a directory could then become a link).
    checked: Option<PathBuf>,
    /// Where file data is copied through, in pieces of up to 1 MiB.
    buf: Vec<u8>,
}

impl Unpacker {
    /// Unpacks one entry.
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        let raw = entry
            .path()
            .map_err(|e| Error::io("read entry name in layer for", &self.dir, e))?
            .into_owned();
        let Some(rel) = safe_path(&raw)? else {
            return Ok(()); // "./": the layer's directory, which is ours
        };
        let name = rel.file_name().unwrap_or_default().to_os_string();
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if self.checked.as_deref() != Some(parent.as_path()) {
            self.real_dir(&parent, true)?;
            self.checked = Some(parent.clone());
        }
        let header = entry.header();
        let (uid, gid, mtime) = owner_and_time(header, &rel)?;
        match parse_oci_name(&name)? {
            OciEntry::Opaque => self.opaque(&parent),
            OciEntry::Whiteout(hidden) => self.whiteout(&parent.join(hidden), uid, gid, mtime),
            OciEntry::Plain(_) => self.create(&rel, entry),
        }
    }

    /// Checks that every component of `rel` is a real directory inside the
    /// layer's directory, never a symbolic link, making missing ones (mode
    /// 0755) when `create` is set.
    fn real_dir(&mut self, rel: &Path, create: bool) -> Result<PathBuf> {
        let mut path = self.dir.clone();
        for part in rel.components() {
            path.push(part);
            match lstat_optional(&path)? {
                Some(meta) if meta.is_dir() => {}
                Some(_) => {
                    return Err(Error::Invalid(format!(
                        "refusing layer entry under {}: {} is not a directory \
                         (a symbolic link there could lead outside the layer)",
                        rel.display(),
                        path.display()
                    )));
                }
                None if create => {
                    std::fs::create_dir(&path).map_err(|e| Error::io("create", &path, e))?;
                    set_mode(&path, 0o755)?;
                }
                None => {
                    return Err(Error::io(
                        "find",
                        &path,
                        std::io::ErrorKind::NotFound.into(),
                    ));
                }
            }
        }
        Ok(path)
    }

    /// `.wh..wh..opq` in `parent`.
    fn opaque(&mut self, parent: &Path) -> Result<()> {
        match self.target {
            Target::Overlay(xattr) => set_opaque(&self.dir.join(parent), xattr),
            Target::Plain => {
                self.checked = None;
                self.empty(parent)
            }
        }
    }

    /// Removes what is in the directory `rel` except what this layer wrote.
    fn empty(&self, rel: &Path) -> Result<()> {
        for name in sorted_names(&self.dir.join(rel))? {
            let child = rel.join(name);
            let path = self.dir.join(&child);
            if !self.written.contains(&child) {
                remove_any(&path)?;
            } else if lstat(&path)?.is_dir() {
                self.empty(&child)?;
            }
        }
        Ok(())
    }

    /// `.wh.NAME`: `hidden` is deleted (unless this layer has it itself).
    fn whiteout(&mut self, hidden: &Path, uid: u32, gid: u32, mtime: i64) -> Result<()> {
        if self.written.contains(hidden) {
            return Ok(());
        }
        let path = self.dir.join(hidden);
        self.checked = None;
        remove_any(&path)?;
        if let Target::Overlay(_) = self.target {
            make_whiteout(&path)?;
            set_owner(&path, uid, gid)?;
            set_times(&path, (mtime, 0), (mtime, 0))?;
        }
        Ok(())
    }

    /// Creates the file, directory, link or device of a plain entry.
    fn create<R: Read>(&mut self, rel: &Path, entry: &mut tar::Entry<R>) -> Result<()> {
        let path = self.dir.join(rel);
        let header = entry.header();
        let kind = header.entry_type();
        let (uid, gid, mtime) = owner_and_time(header, rel)?;
        let mode = header
            .mode()
            .map_err(|e| Error::io("read mode of", rel, e))?;
        // Whatever is there goes, except a directory that stays one; what
        // it held is no longer this layer's.
        match lstat_optional(&path)? {
            Some(meta) if meta.is_dir() && kind.is_dir() => {}
            Some(meta) => {
                remove_any(&path)?;
                self.checked = None;
                if meta.is_dir() {
                    self.written.retain(|p| !p.starts_with(rel));
                } else {
                    self.written.remove(rel);
                }
            }
            None => {}
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| Error::io("create", &path, e))?;
                let want = usize::try_from(entry.size())
                    .unwrap_or(usize::MAX)
                    .min(1 << 20);
                if self.buf.len() < want {
                    self.buf.resize(want, 0);
                }
                copy_in_pieces(entry, &mut file, &mut self.buf[..want])
                    .map_err(|e| Error::io("write", &path, e))?;
            }
            EntryType::Directory => {
                if !path.is_dir() {
                    std::fs::create_dir(&path).map_err(|e| Error::io("create", &path, e))?;
                }
            }
            EntryType::Symlink => {
                let target = link_name(entry, rel)?;
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(|e| Error::io("create symbolic link", &path, e))?;
            }
            EntryType::Link => return self.hard_link(rel, entry),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                make_node(&path, kind, mode, entry.header())?;
            }
            other => {
                return Err(Error::Invalid(format!(
                    "layer entry {} has type {other:?}, which berth does not unpack",
                    rel.display()
                )));
            }
        }
        set_owner(&path, uid, gid)?;
        if kind != EntryType::Symlink {
            set_mode(&path, mode)?;
        }
        if kind.is_dir() {
            self.dir_times.insert(rel.to_path_buf(), mtime);
        } else {
            set_times(&path, (mtime, 0), (mtime, 0))?;
        }
        self.written.insert(rel.to_path_buf());
        Ok(())
    }

    /// A hard link entry: the target must be an earlier entry of this layer,
    /// reached through real directories only.
    fn hard_link<R: Read>(&mut self, rel: &Path, entry: &tar::Entry<R>) -> Result<()> {
        let raw = link_name(entry, rel)?;
        let target = safe_path(&raw)?.unwrap_or_default();
        if !self.written.contains(&target) {
            return Err(Error::Invalid(format!(
                "refusing hard link {} -> {}: the target must be an earlier entry of the same layer",
                rel.display(),
                raw.display()
            )));
        }
        self.real_dir(target.parent().unwrap_or(Path::new("")), false)?;
        let (from, to) = (self.dir.join(&target), self.dir.join(rel));
        std::fs::hard_link(&from, &to)
            .map_err(|e| Error::io(format!("link {} to", from.display()), &to, e))?;
        self.written.insert(rel.to_path_buf());
        Ok(())
    }

    /// Sets the directories' times, children before parents.
    fn finish(self) -> Result<()> {
        for (rel, mtime) in self.dir_times.iter().rev() {
            set_times(&self.dir.join(rel), (*mtime, 0), (*mtime, 0))?;
        }
        Ok(())
    }
}

/// Copies `from` to `to`, filling `buf` before each write: a file of up to
/// `buf.len()` bytes takes one `write`.
fn copy_in_pieces(
    from: &mut impl Read,
    to: &mut impl Write,
    buf: &mut [u8],
) -> std::io::Result<()> {
    loop {
        let mut n = 0;
        while n < buf.len() {
            match from.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        to.write_all(&buf[..n])?;
        if n < buf.len() || n == 0 {
            return Ok(());
        }
    }
}

/// The owner and modification time in `header`.
fn owner_and_time(header: &Header, rel: &Path) -> Result<(u32, u32, i64)> {
    let bad = |what: &str| Error::Invalid(format!("layer entry {}: bad {what}", rel.display()));
    let uid = header.uid().ok().and_then(|n| u32::try_from(n).ok());
    let gid = header.gid().ok().and_then(|n| u32::try_from(n).ok());
    let mtime = header.mtime().ok().and_then(|n| i64::try_from(n).ok());
    Ok((
        uid.ok_or_else(|| bad("owner"))?,
        gid.ok_or_else(|| bad("group"))?,
        mtime.ok_or_else(|| bad("modification time"))?,
    ))
}

/// The target of a link entry.
fn link_name<R: Read>(entry: &tar::Entry<R>, rel: &Path) -> Result<PathBuf> {
    match entry.link_name() {
        Ok(Some(target)) => Ok(target.into_owned()),
        Ok(None) => Err(Error::Invalid(format!(
            "layer entry {} is a link without a target",
            rel.display()
        ))),
        Err(e) => Err(Error::io("read link target of", rel, e)),
    }
}

/// Makes the device or FIFO of a header with `mknod(2)`.
fn make_node(path: &Path, kind: EntryType, mode: u32, header: &Header) -> Result<()> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let flag = match kind {
        EntryType::Char => SFlag::S_IFCHR,
        EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let number = |n: std::io::Result<Option<u32>>| n.ok().flatten().unwrap_or(0).into();
    let dev = makedev(number(header.device_major()), number(header.device_minor()));
    mknod(path, flag, Mode::from_bits_truncate(mode & 0o777), dev)
        .map_err(|e| Error::io("make device", path, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whiteout::fixture::{as_root, dir, file, mtime, opaque, tmp, whiteout};
    use crate::whiteout::listing;

    /// An upper directory with a bit of everything.
    fn upper(root: &Path) -> PathBuf {
        let upper = dir(root, "upper");
        file(&upper, "etc/hosts", "127.0.0.1 box\n");
        whiteout(&upper, "etc/motd");
        opaque(&upper, "var/cache");
        file(&upper, "var/cache/new", "fresh\n");
        file(&upper, "usr/bin/tool", "#!/bin/sh\necho tool\n");
        std::fs::hard_link(upper.join("usr/bin/tool"), upper.join("usr/bin/tool2")).unwrap();
        std::os::unix::fs::symlink("tool", upper.join("usr/bin/t")).unwrap();
        set_mode(&upper.join("usr/bin/tool"), 0o755).unwrap();
        set_owner(&upper.join("var/cache/new"), 1000, 100).unwrap();
        nix::unistd::mkfifo(
            &upper.join("var/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(upper.join("var/sock")).unwrap();
        upper
    }

    /// A layer tar as `tar tv` would show it, one entry a line.
    fn tar_listing(layer: &[u8]) -> String {
        let mut out = String::new();
        let mut archive = tar::Archive::new(layer);
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            let kind = match h.entry_type() {
                EntryType::Directory => 'd',
                EntryType::Symlink => 'l',
                EntryType::Link => 'h',
                EntryType::Fifo => 'p',
                EntryType::Char => 'c',
                _ => '-',
            };
            let link = entry
                .link_name()
                .unwrap()
                .map(|l| format!(" -> {}", l.display()))
                .unwrap_or_default();
            out.push_str(&format!(
                "{kind}{:04o} {}/{} {:>4} {}{link}\n",
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.size().unwrap(),
                entry.path().unwrap().display()
            ));
        }
        out
    }

    #[test]
    fn a_layer_lists_markers_in_place_of_whiteouts() {
        if !testkit::require_root("layer::a_layer_lists_markers_in_place_of_whiteouts") {
            return;
        }
        let d = tmp();
        let upper = upper(d.path());
        let before = listing(&upper, Xattr::Trusted).unwrap();
        let layer = tar_upper(&upper, &TarOptions::reproducible(), Xattr::Trusted).unwrap();
        insta::assert_snapshot!(tar_listing(&layer));
        assert_eq!(
            listing(&upper, Xattr::Trusted).unwrap(),
            before,
            "the upper is unchanged"
        );
    }

    #[test]
    fn upper_to_tar_to_overlay_layer_to_tar_gives_the_same_bytes() {
        if !testkit::require_root(
            "layer::upper_to_tar_to_overlay_layer_to_tar_gives_the_same_bytes",
        ) {
            return;
        }
        let d = tmp();
        let upper = upper(d.path());
        for options in [TarOptions::default(), TarOptions::reproducible()] {
            let first = tar_upper(&upper, &options, Xattr::Trusted).unwrap();
            let unpacked = tempfile::tempdir_in(d.path()).unwrap();
            apply(&first[..], unpacked.path(), Target::Overlay(Xattr::Trusted)).unwrap();
            let second = tar_upper(unpacked.path(), &options, Xattr::Trusted).unwrap();
            assert!(
                first == second,
                "{}\n{}",
                tar_listing(&first),
                tar_listing(&second)
            );
            assert_eq!(digest(&first), digest(&second));
        }
    }

    #[test]
    fn the_same_content_gives_the_same_digest() {
        let make = |when: i64| {
            let d = tmp();
            file(d.path(), "app/main.sh", "echo hello\n");
            std::os::unix::fs::symlink("main.sh", d.path().join("app/run")).unwrap();
            mtime(d.path(), "app/main.sh", when, 0);
            mtime(d.path(), "app", when, 0);
            d
        };
        let (a, b, c) = (make(1_000), make(1_000), make(2_000));
        let pack =
            |d: &tempfile::TempDir, o| digest(&tar_upper(d.path(), &o, Xattr::Trusted).unwrap());
        let keep = TarOptions::default();
        assert_eq!(pack(&a, keep), pack(&b, keep));
        assert_ne!(pack(&a, keep), pack(&c, keep), "times are part of a layer");
        let fixed = TarOptions::reproducible();
        assert_eq!(pack(&a, fixed), pack(&c, fixed), "unless they are fixed");
        assert!(pack(&a, fixed).starts_with("sha256:"));
        assert_eq!(pack(&a, fixed).len(), "sha256:".len() + 64);
    }

    /// Name, type and link target of an entry.
    type RawEntry<'a> = (&'a str, EntryType, &'a str);

    /// A tar of raw entries, names written as they are (the tar crate's
    /// own builder refuses the hostile ones).
    fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, kind, link) in entries {
            let mut h = Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_uid(nix::unistd::geteuid().as_raw().into());
            h.set_gid(nix::unistd::getegid().as_raw().into());
            h.set_size(0);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            tar.append(&h, std::io::empty()).unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn hostile_entries_are_refused() {
        let d = tmp();
        let outside = d.path().join("escaped");
        let absolute = outside.display().to_string();
        let up = d.path().display().to_string();
        let cases: Vec<(&str, Vec<RawEntry>)> = vec![
            ("../escaped", vec![("../escaped", EntryType::Regular, "")]),
            (
                "a/../../escaped",
                vec![("a/../../escaped", EntryType::Regular, "")],
            ),
            ("absolute", vec![(&absolute, EntryType::Regular, "")]),
            (
                "through a symlink",
                vec![
                    ("a", EntryType::Symlink, &up),
                    ("a/escaped", EntryType::Regular, ""),
                ],
            ),
            (
                "through a symlink to /",
                vec![
                    ("b", EntryType::Symlink, "/"),
                    ("b/tmp/escaped", EntryType::Regular, ""),
                ],
            ),
            ("hard link out", vec![("h", EntryType::Link, &absolute)]),
            ("hard link up", vec![("h", EntryType::Link, "../escaped")]),
            (
                "hard link below",
                vec![("h", EntryType::Link, "etc/passwd")],
            ),
            ("whiteout of ..", vec![("x/.wh...", EntryType::Regular, "")]),
        ];
        std::fs::write(&outside, "keep").unwrap();
        for (what, entries) in cases {
            let layer = raw_tar(&entries);
            for target in [Target::Plain, Target::Overlay(Xattr::User)] {
                let into = tempfile::tempdir_in(d.path()).unwrap();
                file(into.path(), "etc/passwd", "root\n");
                let err = apply(&layer[..], into.path(), target)
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.starts_with("refusing") || err.contains("does not name"),
                    "{what}: {err}"
                );
                assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep", "{what}");
                assert!(!d.path().join("tmp/escaped").exists(), "{what}");
                assert!(!Path::new("/tmp/escaped").exists(), "{what}");
                assert!(into.path().join("etc/passwd").exists(), "{what}");
            }
        }
    }

    #[test]
    fn a_symlink_replaced_by_a_directory_is_safe() {
        // A later entry may replace an earlier one; the link is removed,
        // never followed.
        let d = tmp();
        let up = d.path().display().to_string();
        let layer = raw_tar(&[
            ("a", EntryType::Symlink, &up),
            ("a", EntryType::Directory, ""),
            ("a/inside", EntryType::Regular, ""),
        ]);
        let into = dir(d.path(), "into");
        apply(&layer[..], &into, Target::Plain).unwrap();
        assert!(lstat(&into.join("a")).unwrap().is_dir());
        assert!(into.join("a/inside").exists());
        assert!(!d.path().join("inside").exists());
    }

    #[test]
    fn plain_targets_delete_and_empty() {
        let d = tmp();
        let root = dir(d.path(), "rootfs");
        file(&root, "etc/motd", "hello\n");
        file(&root, "etc/hosts", "127.0.0.1\n");
        file(&root, "var/cache/a", "a\n");
        file(&root, "var/cache/sub/b", "b\n");
        // The layer's own `-new` sorts before the marker: it stays.
        let layer = raw_tar(&[
            ("etc/.wh.motd", EntryType::Regular, ""),
            ("var/cache/", EntryType::Directory, ""),
            ("var/cache/-new", EntryType::Regular, ""),
            ("var/cache/.wh..wh..opq", EntryType::Regular, ""),
            ("var/cache/c", EntryType::Regular, ""),
        ]);
        apply(&layer[..], &root, Target::Plain).unwrap();
        insta::assert_snapshot!(as_root(listing(&root, Xattr::Trusted).unwrap()));
    }

    #[test]
    fn a_vfs_diff_packs_into_a_layer() {
        let d = tmp();
        let root = dir(d.path(), "rootfs");
        file(&root, "etc/hosts", "127.0.0.1 box\n");
        file(&root, "etc/new", "new\n");
        let changes = vec![
            Change::new(ChangeKind::Changed, Path::new("etc")),
            Change::new(ChangeKind::Changed, Path::new("etc/hosts")),
            Change::new(ChangeKind::Deleted, Path::new("etc/motd")),
            Change::new(ChangeKind::Added, Path::new("etc/new")),
        ];
        let layer = tar_dir(&root, &changes, &TarOptions::reproducible()).unwrap();
        let names: Vec<String> = tar_listing(&layer)
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(names, ["etc", "etc/.wh.motd", "etc/hosts", "etc/new"]);
        // Applied on a copy that still has motd, the layer gives the rootfs.
        let copy = dir(d.path(), "copy");
        file(&copy, "etc/hosts", "127.0.0.1 localhost\n");
        file(&copy, "etc/motd", "hello\n");
        apply(&layer[..], &copy, Target::Plain).unwrap();
        assert_eq!(
            listing(&copy, Xattr::Trusted).unwrap(),
            listing(&root, Xattr::Trusted).unwrap()
        );
    }

    #[test]
    fn safe_paths() {
        assert_eq!(
            safe_path(Path::new("./etc/./x")).unwrap(),
            Some("etc/x".into())
        );
        assert_eq!(safe_path(Path::new("./")).unwrap(), None);
        for bad in ["/etc/x", "../x", "a/../../x"] {
            assert!(safe_path(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
