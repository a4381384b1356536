//! Helpers for lab 03's kernel tests: layers in a temporary directory,
//! overlays mounted through a guard that unmounts them even when the test
//! fails, and a check that nothing stays mounted.

#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use overlay::mount::{Api, Overlay, is_mounted, unmount};

/// Mounts happen one at a time: a `mount(2)` with short layer paths
/// changes the working directory of the whole test process for a moment.
static MOUNTING: Mutex<()> = Mutex::new(());

/// A test's directory and what it mounted there.
pub struct Lab {
    pub dir: tempfile::TempDir,
    mounted: Vec<PathBuf>,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::Builder::new().prefix("lab03-").tempdir().unwrap();
        Lab {
            dir,
            mounted: Vec::new(),
        }
    }

    /// `dir/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A new empty directory `dir/rel`.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Mounts `overlay` on `target` (made if missing); the guard unmounts it.
    pub fn mount(&mut self, overlay: &Overlay, target: &Path, api: Api) {
        std::fs::create_dir_all(target).unwrap();
        let _one_at_a_time = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
        overlay
            .mount(target, api)
            .unwrap_or_else(|e| panic!("{api:?}: {e}"));
        self.mounted.push(target.to_path_buf());
    }

    /// Unmounts `target` now.
    pub fn unmount(&mut self, target: &Path) {
        unmount(target).unwrap();
        self.mounted.retain(|m| m != target);
        assert!(!is_mounted(target));
    }

    /// A writable overlay of `lowers` (top first) with `upper` and `work`
    /// made under `name/`, mounted on `name/merged`; returns the merged
    /// directory and the upper.
    pub fn container(&mut self, name: &str, lowers: &[PathBuf], api: Api) -> (PathBuf, PathBuf) {
        let upper = self.mkdir(&format!("{name}/upper"));
        let work = self.mkdir(&format!("{name}/work"));
        let merged = self.mkdir(&format!("{name}/merged"));
        let overlay = Overlay::new(lowers.to_vec(), upper.clone(), work);
        self.mount(&overlay, &merged, api);
        (merged, upper)
    }
}

impl Drop for Lab {
    /// Unmounts everything the test mounted, then fails the test if any
    /// mount is still there (unless it is failing already).
    fn drop(&mut self) {
        for target in self.mounted.drain(..).rev() {
            let _ = unmount(&target);
        }
        let left = testkit::leaks::mounts_under(self.dir.path());
        if !left.is_empty() && !std::thread::panicking() {
            panic!("mounts left behind: {left:?}");
        }
    }
}

/// Writes `text` to `root/rel`, making the directories on the way.
pub fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Reads `root/rel`.
pub fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap()
}

/// A two-layer image: a base and a layer that changes a file and adds
/// some. Returns the layers top first, as overlayfs wants them.
pub fn image(lab: &Lab) -> Vec<PathBuf> {
    let bottom = lab.mkdir("layers/bottom");
    let top = lab.mkdir("layers/top");
    write(&bottom, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    write(&bottom, "etc/hosts", "127.0.0.1 localhost\n");
    write(&bottom, "etc/motd", "Welcome to the base layer\n");
    write(&bottom, "bin/sh", &"#!busybox\n".repeat(10_000));
    write(&bottom, "usr/share/doc/a/README", "a\n");
    write(&bottom, "usr/share/doc/b/README", "b\n");
    write(&top, "etc/hosts", "127.0.0.1 localhost box\n");
    write(&top, "usr/share/doc/c/README", "c\n");
    std::fs::create_dir_all(top.join("bin")).unwrap();
    std::os::unix::fs::symlink("sh", top.join("bin/ls")).unwrap();
    vec![top, bottom]
}

/// What a container does to its root: change a file, add some, delete
/// one, and replace a directory with a new one of the same name.
pub fn work_in(merged: &Path) {
    let mut passwd = read(merged, "etc/passwd");
    passwd.push_str("app:x:1000:1000::/home/app:/bin/sh\n");
    std::fs::write(merged.join("etc/passwd"), passwd).unwrap();
    write(merged, "root/.profile", "PS1='# '\n");
    std::fs::remove_file(merged.join("etc/motd")).unwrap();
    std::fs::remove_dir_all(merged.join("usr/share/doc")).unwrap();
    std::fs::create_dir(merged.join("usr/share/doc")).unwrap();
    write(merged, "usr/share/doc/new", "docs, again\n");
    write(merged, "srv/www/index.html", "<h1>hi</h1>\n");
}

/// A listing of the tree under `root` with contents and modification
/// times, for comparing two views of the same files.
pub fn view(root: &Path) -> String {
    let mut out = overlay::whiteout::listing(root, overlay::whiteout::Xattr::Trusted).unwrap();
    out.push_str("-- times\n");
    times(root, Path::new(""), &mut out);
    out
}

fn times(root: &Path, rel: &Path, out: &mut String) {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let rel = rel.join(name);
        let meta = std::fs::symlink_metadata(root.join(&rel)).unwrap();
        out.push_str(&format!(
            "{}.{:09} {}\n",
            meta.mtime(),
            meta.mtime_nsec(),
            rel.display()
        ));
        if meta.is_dir() {
            times(root, &rel, out);
        }
    }
}
