//! A container's volumes (lab 03): named volumes made on first use and
//! filled from the image, `--volumes-from`, the image's own `VOLUME`s, and
//! the commands `berth volume create/ls/inspect/rm/prune`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use overlay::volume::{VolumeMount, VolumeSource, VolumeStore};

use crate::options::RunOptions;
use crate::state::Store;

pub fn open(store: &Store) -> Result<VolumeStore> {
    Ok(VolumeStore::open(&store.root)?)
}

/// Which containers use each named volume (stopped ones count, as in
/// Docker: their volume must still be there when they start again).
pub fn users(store: &Store) -> Result<BTreeMap<String, Vec<String>>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in store.list()? {
        for m in &c.options.mounts {
            if let Some(name) = m.volume_name() {
                users
                    .entry(name.to_string())
                    .or_default()
                    .push(c.id.clone());
            }
        }
    }
    Ok(users)
}

// ANCHOR: prepare
/// Completes a new container's mounts and makes its named volumes:
/// `--volumes-from` copies another container's volumes and binds (with
/// `:ro` or `:rw` if given), each `VOLUME` of the image without a mount of
/// its own gets an anonymous volume, and a volume made now and still empty
/// is filled with what the image has at its target, as Docker does.
/// Returns the volumes it created, for the caller to undo on failure.
pub fn prepare(
    store: &Store,
    options: &mut RunOptions,
    image_volumes: &[String],
    lowers_top_first: &[PathBuf],
    xattr: overlay::whiteout::Xattr,
) -> Result<Vec<String>> {
    let mut mounts = options.mounts.clone();
    for spec in &options.volumes_from {
        let (name, mode) = match spec.rsplit_once(':') {
            Some((n, m @ ("ro" | "rw"))) => (n, Some(m == "ro")),
            Some((_, m)) => bail!("invalid --volumes-from mode {m:?} in {spec:?}: use ro or rw"),
            None => (spec.as_str(), None),
        };
        let other = store.find(name)?;
        for m in &other.options.mounts {
            if matches!(m.source, VolumeSource::Tmpfs { .. })
                || mounts.iter().any(|own| own.target == m.target)
            {
                continue;
            }
            let mut m = m.clone();
            if let Some(ro) = mode {
                m.readonly = ro;
            }
            mounts.push(m);
        }
    }
    for target in image_volumes {
        if !mounts.iter().any(|m| Path::new(target) == m.target) {
            mounts.push(overlay::volume::parse_volume(target)?);
        }
    }
    let volumes = open(store)?;
    let mut made = Vec::new();
    let result = (|| -> Result<()> {
        for m in &mounts {
            let VolumeSource::Named { name, anonymous } = &m.source else {
                continue;
            };
            let existed = volumes.get(name).is_ok();
            let mut labels = BTreeMap::new();
            if *anonymous {
                labels.insert(overlay::volume::ANONYMOUS_LABEL.to_string(), String::new());
            }
            let v = volumes.create(Some(name), labels)?;
            if existed {
                continue;
            }
            made.push(name.clone());
            if !m.nocopy {
                overlay::volume::fill_from_image(&v.mountpoint, lowers_top_first, &m.target, xattr)
                    .with_context(|| {
                        format!(
                            "cannot copy the image's {} into volume {name}",
                            m.target.display()
                        )
                    })?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for name in &made {
            let _ = volumes.remove(name, &[]);
        }
        return Err(e);
    }
    options.mounts = mounts;
    Ok(made)
}
// ANCHOR_END: prepare

/// The mounts lab 01 makes for these volumes, binds and tmpfs mounts.
pub fn mount_specs(store: &Store, options: &RunOptions) -> Vec<namespaces::MountSpec> {
    let dir = store.root.join("volumes");
    options
        .mounts
        .iter()
        .map(|m| overlay::volume::to_mount_spec(m, &dir))
        .collect()
}

/// Removes a removed container's anonymous volumes (`rm -v`, `run --rm`),
/// unless another container uses one too.
pub fn remove_anonymous(store: &Store, mounts: &[VolumeMount]) {
    let Ok(volumes) = open(store) else { return };
    let users = users(store).unwrap_or_default();
    for m in mounts {
        if let VolumeSource::Named {
            name,
            anonymous: true,
        } = &m.source
        {
            let using = users.get(name).cloned().unwrap_or_default();
            if let Err(e) = volumes.remove(name, &using) {
                tracing::debug!("keeping volume {name}: {e}");
            }
        }
    }
}

/// `berth volume rm`: refused while a container uses the volume, even a
/// stopped one (Docker's rule); `-f` does not override that either.
pub fn remove(store: &Store, name: &str) -> Result<()> {
    let users = users(store)?;
    let using = users.get(name).cloned().unwrap_or_default();
    let short: Vec<String> = using.iter().map(|id| id[..12].to_string()).collect();
    open(store)?.remove(name, &short)?;
    Ok(())
}

/// `berth volume prune`: anonymous unused volumes, or with `all` every
/// unused one. Returns the names and the bytes freed.
pub fn prune(store: &Store, all: bool) -> Result<(Vec<String>, u64)> {
    let in_use: BTreeSet<String> = users(store)?.into_keys().collect();
    Ok(open(store)?.prune(&in_use, all)?)
}
