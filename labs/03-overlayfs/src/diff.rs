//! Step 03.4: what a container added, changed and deleted (`docker diff`).
//!
//! With overlayfs the answer is almost free: everything the container
//! wrote is in its upper directory. A path there that some lower layer also
//! has was changed (`C`), one no layer has was added (`A`), and a whiteout
//! is a deletion (`D`). An opaque directory replaced what the layers had
//! in it: whatever they had there and the upper does not is deleted.
//! Directories that only hold changes count as changed, as `docker diff`
//! shows `C /etc` for a changed `/etc/hosts`.
//!
//! The copying (`vfs`) driver has no upper directory. There the container's
//! root is compared with the stack of layers, file by file, by metadata
//! (type, mode, owner, size, modification time to the nanosecond, symbolic
//! link target), as Docker's "naive" diff does.
//!
//! Paths are absolute inside the container (`/etc/hosts`) and sorted, so
//! a parent comes before its children.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::ffi::OsString;
use std::fmt;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::whiteout::{Xattr, is_opaque, is_whiteout, lstat, lstat_optional, sorted_names};

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl fmt::Display for ChangeKind {
    /// One letter, as `docker diff` prints it: `A`, `C` or `D`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Added => "A",
            ChangeKind::Changed => "C",
            ChangeKind::Deleted => "D",
        })
    }
}

/// One line of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    pub kind: ChangeKind,
    /// Absolute inside the container, such as `/etc/passwd`.
    pub path: PathBuf,
}

impl Change {
    /// The change `kind` at `rel`, a path relative to the root.
    pub fn new(kind: ChangeKind, rel: &Path) -> Change {
        Change {
            kind,
            path: Path::new("/").join(rel),
        }
    }

    /// The path relative to the root (`etc/passwd`), as in a layer.
    pub fn relative(&self) -> &Path {
        self.path.strip_prefix("/").unwrap_or(&self.path)
    }
}

impl fmt::Display for Change {
    /// `C /etc`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.path.display())
    }
}

/// The changes as `docker diff` prints them, one per line.
pub fn render(changes: &[Change]) -> String {
    // BEGIN SOLUTION 03.4
    changes.iter().map(|c| format!("{c}\n")).collect()
    // END SOLUTION
}

/// What the stack of layers shows at one path.
#[derive(Debug, Clone)]
pub struct Found {
    /// The file in the top-most layer that has it.
    pub path: PathBuf,
    pub meta: Metadata,
}

/// Read-only layers seen as one tree, the way overlayfs merges them: the
/// top-most layer that has a path wins, a whiteout hides the path in the
/// layers below it, and an opaque directory hides what they have inside.
#[derive(Debug, Clone, Copy)]
pub struct Stack<'a> {
    layers: &'a [PathBuf],
    xattr: Xattr,
}

impl<'a> Stack<'a> {
    /// The stack of `layers_top_first` (unpacked in overlay form).
    pub fn new(layers_top_first: &'a [PathBuf], xattr: Xattr) -> Stack<'a> {
        Stack {
            layers: layers_top_first,
            xattr,
        }
    }

    /// The layers' directories that show through at `rel`, top-most first;
    /// none when the merged tree has no directory there.
    pub fn dirs_at(&self, rel: &Path) -> Result<Vec<PathBuf>> {
        let mut dirs = self.layers.to_vec();
        for part in rel.components() {
            let mut next = Vec::new();
            for dir in &dirs {
                let path = dir.join(part);
                let Some(meta) = lstat_optional(&path)? else {
                    continue;
                };
                if !meta.is_dir() {
                    break; // a file or a whiteout hides the layers below
                }
                let opaque = is_opaque(&path, self.xattr)?;
                next.push(path);
                if opaque {
                    break;
                }
            }
            dirs = next;
        }
        Ok(dirs)
    }

    /// The entries of the merged directory `rel`, by name.
    pub fn list(&self, rel: &Path) -> Result<BTreeMap<OsString, Found>> {
        let mut seen = BTreeMap::new();
        for dir in self.dirs_at(rel)? {
            for name in sorted_names(&dir)? {
                if let Entry::Vacant(slot) = seen.entry(name) {
                    let path = dir.join(slot.key());
                    let meta = lstat(&path)?;
                    slot.insert(Found { path, meta });
                }
            }
        }
        // A whiteout decided its name (nothing below shows), then goes.
        seen.retain(|_, found| !is_whiteout(&found.meta));
        Ok(seen)
    }

    /// What the merged tree has at `rel`, if anything.
    pub fn lookup(&self, rel: &Path) -> Result<Option<Found>> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(None);
        };
        Ok(self.list(parent)?.remove(name))
    }
}

// ANCHOR: changes
/// The changes a container made, read from its overlay `upper` directory
/// over `lowers_top_first`: a whiteout is `D`, a path the layers have is
/// `C`, any other `A`; inside an opaque directory, what the layers had and
/// the upper does not is `D`. Sorted by path.
pub fn changes(upper: &Path, lowers_top_first: &[PathBuf], xattr: Xattr) -> Result<Vec<Change>> {
    // BEGIN SOLUTION 03.4
    let below = Stack::new(lowers_top_first, xattr);
    let mut out = Vec::new();
    upper_dir(upper, Path::new(""), &below, false, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
    // END SOLUTION
}
// ANCHOR_END: changes

/// The changes in the upper directory `rel`. `hidden` says the layers'
/// content of `rel` no longer shows (it or a parent is opaque).
fn upper_dir(
    upper: &Path,
    rel: &Path,
    below: &Stack,
    hidden: bool,
    out: &mut Vec<Change>,
) -> Result<()> {
    // BEGIN SOLUTION 03.4
    let mut was = below.list(rel)?;
    for name in sorted_names(&upper.join(rel))? {
        let child = rel.join(&name);
        let path = upper.join(&child);
        let meta = lstat(&path)?;
        let existed = was.remove(&name).is_some();
        if is_whiteout(&meta) {
            out.push(Change::new(ChangeKind::Deleted, &child));
            continue;
        }
        let kind = if existed {
            ChangeKind::Changed
        } else {
            ChangeKind::Added
        };
        out.push(Change::new(kind, &child));
        if meta.is_dir() {
            let opaque = hidden || is_opaque(&path, below.xattr)?;
            upper_dir(upper, &child, below, opaque, out)?;
        }
    }
    if hidden {
        for name in was.keys() {
            out.push(Change::new(ChangeKind::Deleted, &rel.join(name)));
        }
    }
    Ok(())
    // END SOLUTION
}

/// The changes in a container's root `rootfs` made by copying
/// `lowers_top_first` (the `vfs` driver), found by comparing the two trees.
/// `shift` is the owner mapping the copy was made with (see
/// [`crate::vfs::populate`]). Sorted by path.
pub fn changes_between(
    lowers_top_first: &[PathBuf],
    xattr: Xattr,
    rootfs: &Path,
    shift: &dyn Fn(u32, u32) -> (u32, u32),
) -> Result<Vec<Change>> {
    // BEGIN SOLUTION 03.4
    let below = Stack::new(lowers_top_first, xattr);
    let mut out = Vec::new();
    compare_dir(rootfs, Path::new(""), &below, shift, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
    // END SOLUTION
}

/// Compares the directory `rel` of `rootfs` with the stack; true when
/// anything in it changed.
fn compare_dir(
    rootfs: &Path,
    rel: &Path,
    below: &Stack,
    shift: &dyn Fn(u32, u32) -> (u32, u32),
    out: &mut Vec<Change>,
) -> Result<bool> {
    // BEGIN SOLUTION 03.4
    let mut was = below.list(rel)?;
    let mut changed = false;
    for name in sorted_names(&rootfs.join(rel))? {
        let child = rel.join(&name);
        let path = rootfs.join(&child);
        let meta = lstat(&path)?;
        let Some(old) = was.remove(&name) else {
            changed = true;
            added_tree(rootfs, &child, &meta, out)?;
            continue;
        };
        let differs = !same_file(&old, &path, &meta, shift)?;
        let inside = meta.is_dir() && compare_dir(rootfs, &child, below, shift, out)?;
        if differs || inside {
            changed = true;
            out.push(Change::new(ChangeKind::Changed, &child));
        }
    }
    for name in was.keys() {
        changed = true;
        out.push(Change::new(ChangeKind::Deleted, &rel.join(name)));
    }
    Ok(changed)
    // END SOLUTION
}

/// `A` for `rel` and, for a directory, everything in it.
fn added_tree(rootfs: &Path, rel: &Path, meta: &Metadata, out: &mut Vec<Change>) -> Result<()> {
    out.push(Change::new(ChangeKind::Added, rel));
    if meta.is_dir() {
        for name in sorted_names(&rootfs.join(rel))? {
            let child = rel.join(name);
            let meta = lstat(&rootfs.join(&child))?;
            added_tree(rootfs, &child, &meta, out)?;
        }
    }
    Ok(())
}

/// Whether `path` (with `meta`) still looks like `old` from the layers:
/// same type and mode, the owner `shift` gave it, the same device number,
/// and for all but directories the same size and modification time (a
/// directory's size and time change with its entries, which are compared
/// on their own), and the same symbolic link target.
fn same_file(
    old: &Found,
    path: &Path,
    meta: &Metadata,
    shift: &dyn Fn(u32, u32) -> (u32, u32),
) -> Result<bool> {
    let o = &old.meta;
    let same = o.mode() == meta.mode()
        && shift(o.uid(), o.gid()) == (meta.uid(), meta.gid())
        && o.rdev() == meta.rdev()
        && (meta.is_dir()
            || (o.len() == meta.len()
                && o.mtime() == meta.mtime()
                && o.mtime_nsec() == meta.mtime_nsec()));
    if !same || !meta.file_type().is_symlink() {
        return Ok(same);
    }
    let link = |p: &Path| std::fs::read_link(p).map_err(|e| Error::io("read link", p, e));
    Ok(link(&old.path)? == link(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whiteout::fixture::{dir, file, mtime, opaque, tmp, whiteout};

    fn same(uid: u32, gid: u32) -> (u32, u32) {
        (uid, gid)
    }

    #[test]
    fn changes_print_as_docker_diff_does() {
        let c = Change::new(ChangeKind::Changed, Path::new("etc"));
        assert_eq!(c.to_string(), "C /etc");
        assert_eq!(c.relative(), Path::new("etc"));
        let list = vec![
            c,
            Change::new(ChangeKind::Added, Path::new("etc/new")),
            Change::new(ChangeKind::Deleted, Path::new("etc/motd")),
        ];
        assert_eq!(render(&list), "C /etc\nA /etc/new\nD /etc/motd\n");
    }

    /// Two layers: a base, and one that changes and deletes some of it.
    fn layers() -> (tempfile::TempDir, Vec<PathBuf>) {
        let d = tmp();
        let base = dir(d.path(), "base");
        let top = dir(d.path(), "top");
        file(&base, "etc/hosts", "127.0.0.1 localhost\n");
        file(&base, "etc/motd", "hello\n");
        file(&base, "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
        file(&base, "var/cache/a", "a\n");
        file(&base, "var/cache/sub/b", "b\n");
        file(&base, "var/log/old", "old\n");
        file(&top, "etc/motd", "welcome\n");
        file(&top, "var/cache/c", "c\n");
        (d, vec![top, base])
    }

    #[test]
    fn the_stack_reads_like_overlayfs() {
        if !testkit::require_root("diff::the_stack_reads_like_overlayfs") {
            return;
        }
        let (_d, lowers) = layers();
        whiteout(&lowers[0], "var/log");
        let stack = Stack::new(&lowers, Xattr::Trusted);
        let motd = stack.lookup(Path::new("etc/motd")).unwrap().unwrap();
        assert_eq!(motd.path, lowers[0].join("etc/motd"), "the top layer wins");
        assert!(stack.lookup(Path::new("var/log")).unwrap().is_none());
        assert!(stack.lookup(Path::new("var/log/old")).unwrap().is_none());
        let cache: Vec<_> = stack
            .list(Path::new("var/cache"))
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(cache, ["a", "c", "sub"]);
        // An opaque directory hides what the layers below hold in it.
        opaque(&lowers[0], "var/cache");
        let cache: Vec<_> = stack
            .list(Path::new("var/cache"))
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(cache, ["c"]);
        assert!(
            stack
                .lookup(Path::new("var/cache/sub/b"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn changes_from_an_upper_directory() {
        if !testkit::require_root("diff::changes_from_an_upper_directory") {
            return;
        }
        let (d, lowers) = layers();
        let upper = dir(d.path(), "upper");
        file(&upper, "etc/hosts", "127.0.0.1 box\n"); // copied up
        whiteout(&upper, "etc/motd"); // rm
        file(&upper, "root/.profile", "PS1='# '\n"); // new
        opaque(&upper, "var/cache"); // rm -r && mkdir
        file(&upper, "var/cache/c", "again\n");
        let changes = changes(&upper, &lowers, Xattr::Trusted).unwrap();
        insta::assert_snapshot!(render(&changes));
    }

    #[test]
    fn an_empty_upper_has_no_changes() {
        let (d, lowers) = layers();
        let upper = dir(d.path(), "upper");
        assert!(changes(&upper, &lowers, Xattr::Trusted).unwrap().is_empty());
    }

    /// A copy of the stack, as the vfs driver makes it (by hand here).
    fn copy_of(lowers: &[PathBuf], root: &Path) {
        for layer in lowers.iter().rev() {
            let status = std::process::Command::new("cp")
                .args(["-a", "--no-preserve=links", "-T"])
                .arg(layer)
                .arg(root)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    #[test]
    fn changes_between_a_copy_and_its_layers() {
        let (d, lowers) = layers();
        let root = d.path().join("rootfs");
        copy_of(&lowers, &root);
        assert_eq!(
            changes_between(&lowers, Xattr::Trusted, &root, &same).unwrap(),
            []
        );
        file(&root, "etc/hosts", "127.0.0.1 box\n"); // content and time
        mtime(&root, "etc/passwd", 0, 1); // one nanosecond is a change
        std::fs::remove_file(root.join("etc/motd")).unwrap();
        std::fs::remove_dir_all(root.join("var/cache")).unwrap();
        file(&root, "var/cache/c", "again\n");
        file(&root, "root/.profile", "PS1='# '\n");
        let changes = changes_between(&lowers, Xattr::Trusted, &root, &same).unwrap();
        insta::assert_snapshot!(render(&changes));
    }

    #[test]
    fn a_symlink_with_a_new_target_is_changed() {
        let (d, lowers) = layers();
        std::os::unix::fs::symlink("hosts", lowers[1].join("etc/link")).unwrap();
        let root = d.path().join("rootfs");
        copy_of(&lowers, &root);
        let link = root.join("etc/link");
        let time = lstat(&link).unwrap();
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("passwd", &link).unwrap(); // same length
        crate::whiteout::set_times_like(&link, &time).unwrap();
        let changes = changes_between(&lowers, Xattr::Trusted, &root, &same).unwrap();
        assert_eq!(render(&changes), "C /etc\nC /etc/link\n");
    }
}
