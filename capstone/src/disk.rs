//! Disk accounting and clean-up (lab 03): `system df`, `container prune`,
//! `volume prune` and `system prune`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Result;

use crate::image::ImageStore;
use crate::state::{Container, Store};
use crate::storage::{self, Driver};

/// Bytes used by a tree (lab 03's count; 0 for a tree that is gone).
pub fn usage(path: &Path) -> u64 {
    overlay::volume::disk_usage(path).unwrap_or(0)
}

/// Sizes as Docker's `system df` prints them: decimal units and three
/// significant digits (Go's `%.3g`): `0B`, `12.3kB`, `1.05MB`, `210MB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[unit])
}

/// The size of a container's own data: its writable layer (overlay), or
/// its whole copy (vfs).
pub fn container_size(store: &Store, c: &Container) -> u64 {
    let p = storage::paths(&store.container_dir(&c.id));
    match c.storage.driver {
        Driver::Overlay => usage(&p.upper),
        Driver::Vfs => usage(&p.rootfs),
    }
}

/// One line of `system df`.
pub struct Usage {
    pub kind: &'static str,
    pub total: usize,
    pub active: usize,
    pub size: u64,
    pub reclaimable: u64,
}

// ANCHOR: df
/// What `berth system df` shows: for images, containers and volumes, how
/// many there are, how many are in use, their size and how much a prune
/// would give back. Layers shared by several images count once.
pub fn df(store: &Store) -> Result<Vec<Usage>> {
    let containers = store.list()?;
    let images = ImageStore::open(&store.root)?.list()?;
    let used_images: BTreeSet<&str> = containers.iter().map(|c| c.image_id.as_str()).collect();
    let layer_size = |d: &str| {
        ImageStore::open(&store.root)
            .and_then(|s| s.layer_path(d))
            .map(|p| usage(&p))
            .unwrap_or(0)
    };
    let mut all_layers = BTreeMap::new();
    let mut used_layers = BTreeSet::new();
    let mut image_ids = BTreeSet::new();
    for image in &images {
        image_ids.insert(image.id.clone());
        for d in image.config.rootfs().diff_ids() {
            all_layers.entry(d.clone()).or_insert_with(|| layer_size(d));
            if used_images.contains(image.id.as_str()) {
                used_layers.insert(d.clone());
            }
        }
    }
    let image_size: u64 = all_layers.values().sum();
    let image_free: u64 = all_layers
        .iter()
        .filter(|(d, _)| !used_layers.contains(*d))
        .map(|(_, s)| s)
        .sum();
    let sizes: Vec<(bool, u64)> = containers
        .iter()
        .map(|c| (c.state.status.is_active(), container_size(store, c)))
        .collect();
    let volumes = crate::volumes::open(store)?;
    let users = crate::volumes::users(store)?;
    let mut vol = Usage {
        kind: "Local Volumes",
        total: 0,
        active: 0,
        size: 0,
        reclaimable: 0,
    };
    for v in volumes.list()? {
        let size = volumes.size(&v.name).unwrap_or(0);
        vol.total += 1;
        vol.size += size;
        if users.contains_key(&v.name) {
            vol.active += 1;
        } else {
            vol.reclaimable += size;
        }
    }
    Ok(vec![
        Usage {
            kind: "Images",
            total: image_ids.len(),
            active: image_ids
                .iter()
                .filter(|id| used_images.contains(id.as_str()))
                .count(),
            size: image_size,
            reclaimable: image_free,
        },
        Usage {
            kind: "Containers",
            total: containers.len(),
            active: sizes.iter().filter(|(a, _)| *a).count(),
            size: sizes.iter().map(|(_, s)| s).sum(),
            reclaimable: sizes.iter().filter(|(a, _)| !*a).map(|(_, s)| s).sum(),
        },
        vol,
    ])
}
// ANCHOR_END: df

/// The `system df` table.
pub fn df_table(rows: &[Usage]) -> String {
    let mut table = vec![vec![
        "TYPE".to_string(),
        "TOTAL".into(),
        "ACTIVE".into(),
        "SIZE".into(),
        "RECLAIMABLE".into(),
    ]];
    for u in rows {
        let pct = (u.reclaimable * 100)
            .checked_div(u.size)
            .map(|p| format!(" ({p}%)"))
            .unwrap_or_default();
        table.push(vec![
            u.kind.to_string(),
            u.total.to_string(),
            u.active.to_string(),
            human(u.size),
            format!("{}{pct}", human(u.reclaimable)),
        ]);
    }
    crate::views::columns(&table)
}

/// Asks before a prune, as Docker does, unless `force`. Returns whether
/// to go on.
pub fn confirm(warning: &str, force: bool) -> bool {
    if force {
        return true;
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

/// Removes every container that is not running; returns their ids and
/// the bytes freed.
pub fn prune_containers(store: &Store) -> Result<(Vec<String>, u64)> {
    let mut removed = Vec::new();
    let mut freed = 0;
    for c in store.list()? {
        if c.state.status.is_active() {
            continue;
        }
        let size = container_size(store, &c);
        if crate::ops::remove(store, &c.id, false).is_ok() {
            freed += size;
            removed.push(c.id);
        }
    }
    Ok((removed, freed))
}

/// Removes dangling images (no name), or with `all` every image no
/// container uses; returns their ids and the bytes freed.
pub fn prune_images(store: &Store, all: bool) -> Result<(Vec<String>, u64)> {
    let images = ImageStore::open(&store.root)?;
    let used: BTreeSet<String> = store.list()?.into_iter().map(|c| c.image_id).collect();
    let listed = images.list()?;
    // Without -a, named images and the build cache stay.
    let named: BTreeSet<String> = listed
        .iter()
        .filter(|i| !i.names.is_empty() || i.cached)
        .map(|i| i.id.clone())
        .collect();
    let doomed: BTreeSet<String> = listed
        .into_iter()
        .map(|i| i.id)
        .filter(|id| !used.contains(id) && (all || !named.contains(id)))
        .collect();
    if doomed.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let freed = images.remove_images(&doomed)?;
    Ok((doomed.into_iter().collect(), freed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        let cases = [
            (0, "0B"),
            (999, "999B"),
            (12_345, "12.3kB"),
            (1_050_000, "1.05MB"),
            (210_000_000, "210MB"),
            (2_000_000_000, "2GB"),
        ];
        for (n, want) in cases {
            assert_eq!(human(n), want, "{n}");
        }
    }
}
