//! Mounting an overlay: read-only *lower* layers, one writable *upper*
//! directory, and a *work* directory on the same filesystem as the upper,
//! which overlayfs needs to prepare copy-ups and whiteouts atomically. The
//! merged view appears at the mount point.
//!
//! There are two ways to pass the layers. `mount(2)` takes one option
//! string, `lowerdir=TOP:…:BOTTOM,upperdir=…,workdir=…`, and the kernel
//! refuses strings longer than a page (4096 bytes): about 45 layers with
//! absolute paths under `/var/lib/berth`. The newer mount API (`fsopen`,
//! `fsconfig`) takes one `lowerdir+` parameter per layer (Linux 6.8), with
//! no such limit. Without it, shorter paths help: mounting from the layers'
//! directory lets each entry be just the layer's name.

use std::path::{Path, PathBuf};

use namespaces::fsmount::{FsMount, RootfsMount};

use crate::error::{Error, Result};

/// The longest option string `mount(2)` accepts: one page, with its NUL.
pub const PAGE_LIMIT: usize = 4095;

/// An overlay to mount, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The read-only layers, **top-most first** (the order overlayfs
    /// searches them in: the first layer that has a path wins).
    pub lower: Vec<PathBuf>,
    /// Where writes go. `None` gives a read-only overlay.
    pub upper: Option<PathBuf>,
    /// Scratch space for the upper layer, on the same filesystem.
    pub work: Option<PathBuf>,
    /// Store overlay's own attributes as `user.overlay.*` instead of
    /// `trusted.overlay.*`: needed when mounting inside a user namespace,
    /// where `trusted.*` cannot be written.
    pub userxattr: bool,
}

/// How the layers are handed to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `fsconfig(lowerdir+)` once per layer (Linux 6.8 and later).
    LowerdirPlus,
    /// `mount(2)` with one option string, limited to a page.
    Legacy,
}

impl Api {
    /// The best the running kernel offers: asks overlayfs whether it knows
    /// `lowerdir+` by setting it on a throw-away filesystem context.
    pub fn detect() -> Api {
        // BEGIN SOLUTION 03.1
        if namespaces::fsmount::accepts("overlay", "lowerdir+", "/") {
            Api::LowerdirPlus
        } else {
            Api::Legacy
        }
        // END SOLUTION
    }
}

/// overlayfs splits `lowerdir` on `:` and options on `,`; a path that
/// contains either (or a backslash) needs a backslash before it.
pub fn escape(path: &Path) -> String {
    // BEGIN SOLUTION 03.1
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
    // END SOLUTION
}

impl Overlay {
    /// A writable overlay of `lower` (top-most first).
    pub fn new(lower: Vec<PathBuf>, upper: PathBuf, work: PathBuf) -> Overlay {
        Overlay {
            lower,
            upper: Some(upper),
            work: Some(work),
            userxattr: false,
        }
    }

    fn check(&self) -> Result<()> {
        if self.lower.is_empty() {
            return Err(Error::Invalid(
                "an overlay needs at least one lower layer".into(),
            ));
        }
        if self.upper.is_some() != self.work.is_some() {
            return Err(Error::Invalid(
                "an overlay's upper and work directories go together: give both or neither".into(),
            ));
        }
        if self.upper.is_none() && self.lower.len() < 2 {
            return Err(Error::Invalid(
                "a read-only overlay needs at least two lower layers".into(),
            ));
        }
        Ok(())
    }

    // ANCHOR: options
    /// The option string for `mount(2)`. Lower layers are written relative
    /// to `base` when they lie inside it (the mount must then run with `base`
    /// as its working directory); the result must fit in a page.
    pub fn legacy_options(&self, base: Option<&Path>) -> Result<String> {
        // BEGIN SOLUTION 03.1
        self.check()?;
        let short = |p: &Path| match base.and_then(|b| p.strip_prefix(b).ok()) {
            Some(rel) if !rel.as_os_str().is_empty() => escape(rel),
            _ => escape(p),
        };
        let lower: Vec<String> = self.lower.iter().map(|p| short(p)).collect();
        let mut options = format!("lowerdir={}", lower.join(":"));
        if let (Some(upper), Some(work)) = (&self.upper, &self.work) {
            options.push_str(&format!(
                ",upperdir={},workdir={}",
                escape(upper),
                escape(work)
            ));
        }
        if self.userxattr {
            options.push_str(",userxattr");
        }
        if options.len() > PAGE_LIMIT {
            return Err(Error::Invalid(format!(
                "the overlay options for {} layers take {} bytes, more than the \
                 {PAGE_LIMIT} mount(2) accepts: use a kernel with lowerdir+ \
                 (Linux 6.8) or shorter layer paths",
                self.lower.len(),
                options.len()
            )));
        }
        Ok(options)
        // END SOLUTION
    }
    // ANCHOR_END: options

    // ANCHOR: params
    /// The parameters for the new mount API, one `lowerdir+` per layer.
    pub fn params(&self) -> Result<Vec<(String, Option<String>)>> {
        // BEGIN SOLUTION 03.1
        self.check()?;
        let mut params: Vec<(String, Option<String>)> = self
            .lower
            .iter()
            .map(|p| ("lowerdir+".to_string(), Some(p.display().to_string())))
            .collect();
        if let (Some(upper), Some(work)) = (&self.upper, &self.work) {
            params.push(("upperdir".into(), Some(upper.display().to_string())));
            params.push(("workdir".into(), Some(work.display().to_string())));
        }
        if self.userxattr {
            params.push(("userxattr".into(), None));
        }
        Ok(params)
        // END SOLUTION
    }
    // ANCHOR_END: params

    /// The overlay as a mount the container's first process makes for
    /// itself (see `namespaces::fsmount`), in the form `api` calls for.
    pub fn rootfs_mount(&self, api: Api) -> Result<RootfsMount> {
        match api {
            Api::LowerdirPlus => Ok(RootfsMount {
                fs: FsMount {
                    fstype: "overlay".into(),
                    source: "overlay".into(),
                    params: self.params()?,
                },
                cwd: None,
                legacy: false,
            }),
            Api::Legacy => {
                // Layers usually share one parent directory: mount from
                // there and name each layer by its directory alone.
                let base = common_parent(&self.lower);
                let options = self.legacy_options(base.as_deref())?;
                Ok(RootfsMount {
                    fs: FsMount {
                        fstype: "overlay".into(),
                        source: "overlay".into(),
                        params: vec![(options, None)],
                    },
                    cwd: base,
                    legacy: true,
                })
            }
        }
    }

    // ANCHOR: mount
    /// Mounts the overlay on `target` in the caller's mount namespace.
    pub fn mount(&self, target: &Path, api: Api) -> Result<()> {
        self.rootfs_mount(api)?
            .mount_on(target)
            .map_err(|e| Error::Invalid(format!("mount overlay on {}: {e}", target.display())))
    }
    // ANCHOR_END: mount
}

/// The directory that holds the most layers (an engine keeps its image
/// layers side by side; a container's own layers may live elsewhere and
/// keep their absolute paths). `None` when no two layers share a parent.
fn common_parent(paths: &[PathBuf]) -> Option<PathBuf> {
    let mut counts: Vec<(&Path, usize)> = Vec::new();
    for parent in paths.iter().filter_map(|p| p.parent()) {
        match counts.iter_mut().find(|(p, _)| *p == parent) {
            Some((_, n)) => *n += 1,
            None => counts.push((parent, 1)),
        }
    }
    counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| p.to_path_buf())
}

/// Unmounts `target` (lazily when it is busy, as an engine must not leave a
/// container's root behind because some shell still sits in it).
pub fn unmount(target: &Path) -> Result<()> {
    use nix::mount::{MntFlags, umount2};
    match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH)
            .map_err(|e| Error::sys(format!("unmount {}", target.display()), e)),
        Err(e) => Err(Error::sys(format!("unmount {}", target.display()), e)),
    }
}

/// Whether `path` is a mount point right now (it appears in
/// `/proc/self/mountinfo`).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m.replace("\\040", " ") == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(n: usize, base: &str) -> Vec<PathBuf> {
        (0..n)
            .map(|i| PathBuf::from(format!("{base}/{:064x}", i)))
            .collect()
    }

    #[test]
    fn legacy_options_name_the_layers_top_first() {
        let o = Overlay::new(
            vec!["/l/top".into(), "/l/base".into()],
            "/c/upper".into(),
            "/c/work".into(),
        );
        assert_eq!(
            o.legacy_options(None).unwrap(),
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
        assert_eq!(
            o.legacy_options(Some(Path::new("/l"))).unwrap(),
            "lowerdir=top:base,upperdir=/c/upper,workdir=/c/work"
        );
    }

    #[test]
    fn colons_and_commas_are_escaped() {
        assert_eq!(escape(Path::new("/a:b,c\\d")), "/a\\:b\\,c\\\\d");
    }

    #[test]
    fn the_page_limit_is_enforced_and_short_paths_avoid_it() {
        let base = "/var/lib/berth/layers";
        let o = Overlay::new(layers(60, base), "/u".into(), "/w".into());
        let err = o.legacy_options(None).unwrap_err().to_string();
        assert!(err.contains("more than the 4095"), "{err}");
        // Relative to the layers' directory, 60 layers fit.
        let short = o.legacy_options(Some(Path::new(base))).unwrap();
        assert!(short.len() < PAGE_LIMIT, "{}", short.len());
        // lowerdir+ has no limit at all: one parameter per layer.
        let params = o.params().unwrap();
        assert_eq!(params.iter().filter(|(k, _)| k == "lowerdir+").count(), 60);
        assert_eq!(params[0].1.as_deref(), Some(&*o.lower[0].to_string_lossy()));
    }

    #[test]
    fn bad_overlays_are_refused() {
        let none = Overlay::new(vec![], "/u".into(), "/w".into());
        assert!(none.params().is_err());
        let half = Overlay {
            lower: vec!["/a".into()],
            upper: Some("/u".into()),
            work: None,
            userxattr: false,
        };
        assert!(half.legacy_options(None).is_err());
    }

    #[test]
    fn legacy_mounts_run_from_the_common_parent() {
        let o = Overlay::new(layers(3, "/layers"), "/u".into(), "/w".into());
        let m = o.rootfs_mount(Api::Legacy).unwrap();
        assert_eq!(m.cwd.as_deref(), Some(Path::new("/layers")));
        assert!(m.legacy);
        // A container's own init layer elsewhere keeps its absolute path.
        let mut lower = vec![PathBuf::from("/c/id/init")];
        lower.extend(layers(2, "/layers"));
        let o = Overlay::new(lower, "/u".into(), "/w".into());
        let m = o.rootfs_mount(Api::Legacy).unwrap();
        assert_eq!(m.cwd.as_deref(), Some(Path::new("/layers")));
        assert!(
            m.fs.params[0].0.starts_with("lowerdir=/c/id/init:0000"),
            "{:?}",
            m.fs.params
        );
        let m = o.rootfs_mount(Api::LowerdirPlus).unwrap();
        assert!(!m.legacy && m.cwd.is_none());
    }
}
