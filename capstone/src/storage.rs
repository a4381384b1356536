//! A container's root filesystem (lab 03). With the overlay driver it is
//! the image's unpacked layers, shared read-only by every container of the
//! image, under a writable `upper` directory of its own; the container's
//! first process mounts the overlay in its own mount namespace, so creating
//! and starting a container copies nothing. The `vfs` driver, for machines
//! where overlay cannot be mounted, copies the layers into `rootfs` once.
//!
//! A container's directory holds `upper/` and `work/` (overlay) and
//! `rootfs/`, the mount point, or with `vfs` the copy itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::image::{Image, ImageStore};
use crate::state::{Container, Store};

/// How a container's root filesystem is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// An overlay of the image's layers with a writable layer on top.
    Overlay,
    /// A full copy of the image (what berth did before lab 03).
    #[default]
    Vfs,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::Vfs => "vfs",
        }
    }

    fn parse(s: &str) -> Result<Driver> {
        match s {
            "overlay" | "overlay2" | "overlayfs" => Ok(Driver::Overlay),
            "vfs" | "copy" => Ok(Driver::Vfs),
            _ => bail!("unknown storage driver {s:?}: use overlay or vfs"),
        }
    }
}

/// What berth records about a container's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Storage {
    pub driver: Driver,
    /// The image's layers by diff id, bottom first as in the image config.
    #[serde(default)]
    pub layers: Vec<String>,
    /// Overlay attributes live in `user.overlay.*` (a rootless overlay,
    /// mounted inside a user namespace).
    #[serde(default)]
    pub userxattr: bool,
    /// The container has an `init` layer (see [`INIT_DIRS`]).
    #[serde(default)]
    pub init: bool,
}

/// Docker's "init layer": a thin read-only layer between the image and the
/// container's writable layer holding the empty mount points the engine
/// mounts over (`/proc`, `/dev`, `/etc/hosts` …). Made once per container,
/// it keeps those mount points out of `diff` and out of committed images.
pub const INIT_DIRS: [&str; 7] = [
    "proc",
    "sys",
    "dev",
    "dev/pts",
    "dev/shm",
    "dev/mqueue",
    "etc",
];
pub const INIT_FILES: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

impl Storage {
    /// Where overlay's own attributes (opaque directories) are kept.
    pub fn xattr(&self) -> overlay::whiteout::Xattr {
        if self.userxattr {
            overlay::whiteout::Xattr::User
        } else {
            overlay::whiteout::Xattr::Trusted
        }
    }
}

/// The directories of a container's filesystem.
pub struct Paths {
    pub init: PathBuf,
    pub rootfs: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

pub fn paths(dir: &Path) -> Paths {
    Paths {
        init: dir.join("init"),
        rootfs: dir.join("rootfs"),
        upper: dir.join("upper"),
        work: dir.join("work"),
    }
}

// ANCHOR: choose
/// Picks the driver for a new container: the one asked for
/// (`--storage-driver` or `BERTH_STORAGE_DRIVER`), else overlay where this
/// machine can mount one in the container's situation, else vfs, saying why.
/// A user namespace that remaps ids needs vfs: the shared layers belong to
/// host root, and only a copy can be given to the container's root.
pub fn choose(store: &Store, asked: Option<&str>, remapped: bool) -> Result<(Driver, String)> {
    if let Some(name) = asked {
        let driver = Driver::parse(name)?;
        if driver == Driver::Overlay && remapped {
            bail!(
                "the overlay driver cannot shift the image's file owners for --uidmap/--gidmap: use --storage-driver vfs"
            );
        }
        return Ok((driver, format!("{} was asked for", driver.as_str())));
    }
    if remapped {
        return Ok((
            Driver::Vfs,
            "a user namespace that remaps ids needs its own copy of the image".into(),
        ));
    }
    // Whether overlay works does not change while the machine runs: ask
    // once per boot (the run root is a tmpfs) and remember the answer.
    let cache = store.runroot.join("storage-driver");
    if let Ok(text) = std::fs::read_to_string(&cache)
        && let Some((name, why)) = text.split_once('\n')
    {
        return Ok((Driver::parse(name)?, why.trim().to_string()));
    }
    let (driver, why) = probe(&store.root)?;
    let _ = crate::state::write_atomic(&cache, format!("{}\n{why}\n", driver.as_str()).as_bytes());
    Ok((driver, why))
}
// ANCHOR_END: choose

/// Mounts a tiny overlay where a container would: in a new mount namespace,
/// and for a rootless engine in a new user namespace too (Linux 5.11 lets
/// a user namespace's root mount overlayfs). A child process does it, so
/// the engine's own namespaces stay as they are.
fn probe(root: &Path) -> Result<(Driver, String)> {
    let rootless = !nix::unistd::geteuid().is_root();
    probe_as(
        root,
        rootless.then(|| (nix::unistd::geteuid(), nix::unistd::getegid())),
    )
}

/// [`probe`] in a scratch directory under `dir`, mounted by root (`None`)
/// or by the unprivileged user `Some((uid, gid))` in a user namespace of
/// its own. Root can try the rootless case too (`berth doctor` does): the
/// child drops to that user first, and the scratch directory is given to it.
pub fn probe_as(
    dir: &Path,
    user: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
) -> Result<(Driver, String)> {
    let scratch = tempfile::Builder::new()
        .prefix(".probe-")
        .tempdir_in(dir)
        .context("cannot make a scratch directory to test overlayfs")?;
    let d = scratch.path();
    for sub in ["lower1", "lower2", "upper", "work", "merged"] {
        std::fs::create_dir(d.join(sub))?;
    }
    std::fs::write(d.join("lower1/probe"), "ok")?;
    let mut overlay = overlay::mount::Overlay::new(
        vec![d.join("lower1"), d.join("lower2")],
        d.join("upper"),
        d.join("work"),
    );
    let rootless = user.is_some();
    overlay.userxattr = rootless;
    let (uid, gid) = user.unwrap_or((nix::unistd::geteuid(), nix::unistd::getegid()));
    let drop_to_user = rootless && uid != nix::unistd::geteuid();
    if drop_to_user {
        for sub in [
            "",
            "lower1",
            "lower1/probe",
            "lower2",
            "upper",
            "work",
            "merged",
        ] {
            nix::unistd::chown(&d.join(sub), Some(uid), Some(gid))?;
        }
    }
    // SAFETY: the child only makes system calls and file writes, then exits.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            // A panic (a step's `todo!()` in the student's labs) must not
            // unwind into the parent's code: it becomes the reason too.
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<()> {
                use nix::sched::CloneFlags;
                if drop_to_user {
                    nix::unistd::setgroups(&[])?;
                    nix::unistd::setresgid(gid, gid, gid)?;
                    nix::unistd::setresuid(uid, uid, uid)?;
                    // Changing ids makes the process undumpable, which
                    // gives its /proc files (uid_map …) to root.
                    nix::sys::prctl::set_dumpable(true)?;
                }
                if rootless {
                    nix::sched::unshare(CloneFlags::CLONE_NEWUSER)?;
                    std::fs::write("/proc/self/setgroups", "deny")?;
                    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
                    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))?;
                }
                nix::sched::unshare(CloneFlags::CLONE_NEWNS)?;
                namespaces::fsmount::make_mounts_private()?;
                let merged = d.join("merged");
                overlay.mount(&merged, overlay::mount::Api::detect())?;
                if std::fs::read_to_string(merged.join("probe"))? != "ok" {
                    bail!("the merged view does not show the lower layer");
                }
                Ok(())
            }))
            .unwrap_or_else(|p| {
                let text = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the probe panicked".into());
                Err(anyhow::anyhow!(text))
            });
            let status = match code {
                Ok(()) => 0,
                Err(e) => {
                    let _ = std::fs::write(d.join("why"), format!("{e:#}"));
                    1
                }
            };
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(status) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let ok = matches!(
                nix::sys::wait::waitpid(child, None)?,
                nix::sys::wait::WaitStatus::Exited(_, 0)
            );
            // overlayfs leaves `work/work` with mode 000: without root the
            // scratch directory could not be removed.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(
                d.join("work/work"),
                std::fs::Permissions::from_mode(0o700),
            );
            if ok {
                let api = match overlay::mount::Api::detect() {
                    overlay::mount::Api::LowerdirPlus => "one lowerdir+ per layer",
                    overlay::mount::Api::Legacy => "one lowerdir= option string",
                };
                Ok((Driver::Overlay, format!("overlayfs works here ({api})")))
            } else {
                let why = std::fs::read_to_string(d.join("why")).unwrap_or_default();
                Ok((
                    Driver::Vfs,
                    format!("overlayfs cannot be mounted here ({why}); copying images instead"),
                ))
            }
        }
    }
}

/// Makes the filesystem of a new container in `dir`: the directories of an
/// overlay (nothing is copied), or with vfs the copy of every layer. Each
/// layer is unpacked once per engine, the first time an image is used.
pub fn prepare(
    images: &ImageStore,
    image: &Image,
    dir: &Path,
    driver: Driver,
    rootless: bool,
    shift: &dyn Fn(u32, u32) -> (u32, u32),
) -> Result<Storage> {
    let p = paths(dir);
    let mut lowers = Vec::new();
    for i in 0..image.manifest.layers().len() {
        lowers.push(images.unpacked_layer(image, i)?);
    }
    std::fs::create_dir_all(&p.rootfs)?;
    make_init_layer(&p.init, shift)?;
    lowers.push(p.init.clone());
    match driver {
        Driver::Overlay => {
            std::fs::create_dir_all(&p.upper)?;
            std::fs::create_dir_all(&p.work)?;
            // The top of the merged tree is the upper directory: give it
            // the owner and mode of the image's root.
            if let Some(top) = lowers.last() {
                let meta = std::fs::metadata(top)?;
                std::fs::set_permissions(&p.upper, meta.permissions())?;
            }
        }
        Driver::Vfs => {
            lowers.reverse(); // top-most first, as overlay lists them
            overlay::vfs::populate(&lowers, storage_xattr(rootless), &p.rootfs, shift)
                .with_context(|| format!("cannot copy the image into {}", p.rootfs.display()))?;
        }
    }
    Ok(Storage {
        driver,
        layers: image.config.rootfs().diff_ids().clone(),
        userxattr: rootless,
        init: true,
    })
}

/// Makes the init layer: the engine's mount points, owned by the
/// container's root.
fn make_init_layer(init: &Path, shift: &dyn Fn(u32, u32) -> (u32, u32)) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = shift(0, 0);
    let own = |path: &Path| std::os::unix::fs::lchown(path, Some(uid), Some(gid));
    std::fs::create_dir_all(init)?;
    std::fs::set_permissions(init, std::fs::Permissions::from_mode(0o755))?;
    own(init)?;
    for d in INIT_DIRS {
        let path = init.join(d);
        std::fs::create_dir_all(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        own(&path)?;
    }
    for f in INIT_FILES {
        let path = init.join(f);
        std::fs::write(&path, "")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        own(&path)?;
    }
    Ok(())
}

/// Unpacked layers keep overlay's attributes where the engine's overlays
/// look for them: `user.*` for a rootless engine, else `trusted.*`.
pub fn storage_xattr(rootless: bool) -> overlay::whiteout::Xattr {
    Storage {
        userxattr: rootless,
        ..Default::default()
    }
    .xattr()
}

/// The read-only layers of the container in `dir`, top-most first
/// (overlay's order): its init layer, then its image's layers.
pub fn lowers(images: &ImageStore, storage: &Storage, dir: &Path) -> Result<Vec<PathBuf>> {
    let init = storage.init.then(|| paths(dir).init);
    let image = storage
        .layers
        .iter()
        .rev()
        .map(|d| {
            let dir = images.layer_path(d)?;
            if !dir.is_dir() {
                bail!(
                    "layer {d} of this container's image is missing from {}",
                    dir.display()
                );
            }
            Ok(dir)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(init.into_iter().chain(without_repeats(image)).collect())
}

/// The layers, top-most first, each once: an image may list one layer
/// twice (two COPY steps that add the same bytes), and overlayfs refuses a
/// directory that appears twice among its lowers (ELOOP). The top-most
/// copy alone gives the same tree: every path of the lower copy is in it.
fn without_repeats(layers_top_first: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    layers_top_first
        .into_iter()
        .filter(|l| seen.insert(l.clone()))
        .collect()
}

// ANCHOR: rootfs_mount
/// The overlay the container's first process mounts on its `rootfs`
/// (`None` for vfs, whose `rootfs` is already complete).
pub fn rootfs_mount(
    store: &Store,
    c: &Container,
) -> Result<Option<namespaces::fsmount::RootfsMount>> {
    if c.storage.driver != Driver::Overlay {
        return Ok(None);
    }
    let images = ImageStore::open(&store.root)?;
    let p = paths(&store.container_dir(&c.id));
    let mut o = overlay::mount::Overlay::new(
        lowers(&images, &c.storage, &store.container_dir(&c.id))?,
        p.upper,
        p.work,
    );
    o.userxattr = c.storage.userxattr;
    // BERTH_OVERLAY_API=legacy forces mount(2)'s option string, the only
    // way before Linux 6.8, so that path can be tried on a newer kernel.
    let api = match std::env::var("BERTH_OVERLAY_API").as_deref() {
        Ok("legacy") => overlay::mount::Api::Legacy,
        _ => overlay::mount::Api::detect(),
    };
    Ok(Some(o.rootfs_mount(api)?))
}
// ANCHOR_END: rootfs_mount

/// Reads a file of the image as a new container sees it, without mounting
/// anything: lab 03's `Stack` finds the top-most layer that has it, and
/// a whiteout or an opaque directory on the way hides what is below.
pub fn read_file(storage: &Storage, lowers_top_first: &[PathBuf], rel: &str) -> Option<String> {
    let stack = overlay::diff::Stack::new(lowers_top_first, storage.xattr());
    let found = stack
        .lookup(Path::new(rel.trim_start_matches('/')))
        .ok()??;
    std::fs::read_to_string(found.path).ok()
}
