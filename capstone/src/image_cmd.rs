//! The image commands (lab 05): `images`, `tag`, `rmi`, `history`,
//! `image inspect` and `image prune`, with Docker's output. The store
//! itself is the lab's; this module decides what a user sees.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::SystemTime;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::disk;
use crate::image::{Image, ImageStore, Reference};
use crate::state::Store;
use crate::template::Template;
use crate::views;

/// `berth images`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images, the intermediate ones of builds too.
    #[arg(short, long)]
    pub all: bool,
    /// Only image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show the manifest digests.
    #[arg(long)]
    pub digests: bool,
    /// Full ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// dangling=true|false, or reference=PATTERN (`*` matches any run of
    /// characters).
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// A Go-template-like format, e.g. '{{.Repository}}:{{.Tag}}', or
    /// `json`; `table ...` keeps the header.
    #[arg(long)]
    pub format: Option<String>,
    /// Only images of this repository (and tag).
    pub repository: Option<String>,
}

/// `berth rmi`.
#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Remove even when containers use the image, or when an id names an
    /// image with several names.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `berth history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Do not shorten ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show sizes in bytes and times as timestamps.
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// A Go-template-like format or `json`.
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

fn created(image: &Image) -> Option<SystemTime> {
    image.config.created().as_deref().and_then(|c| {
        humantime::parse_rfc3339_weak(c.trim_end_matches('Z').split('.').next()?).ok()
    })
}

fn ago(t: Option<SystemTime>, now: SystemTime) -> String {
    match t.and_then(|t| now.duration_since(t).ok()) {
        Some(d) => format!("{} ago", views::human_duration(d)),
        None => "N/A".into(),
    }
}

/// The unpacked size of one layer: its directory under `layers/` when it
/// has been unpacked, else the stored (compressed) blob.
fn layer_size(images: &ImageStore, image: &Image, i: usize) -> u64 {
    let unpacked = images
        .layer_path(&image.diff_ids()[i])
        .ok()
        .filter(|p| p.exists());
    match unpacked {
        Some(p) => disk::usage(&p),
        None => image.manifest.layers().get(i).map_or(0, |l| l.size()),
    }
}

/// An image's size as `docker images` shows it: all its layers unpacked.
pub fn image_size(images: &ImageStore, image: &Image) -> u64 {
    (0..image.diff_ids().len())
        .map(|i| layer_size(images, image, i))
        .sum()
}

fn short(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

/// One row of `images`: an image under one of its names, or `<none>`.
fn image_rows(image: &Image) -> Vec<(String, String)> {
    if image.names.is_empty() {
        return vec![("<none>".into(), "<none>".into())];
    }
    image
        .names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .map(|r| (r.familiar_name(), r.tag().unwrap_or("<none>").to_string()))
        .collect()
}

/// A glob with `*` only, as Docker's reference filter uses.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

// ANCHOR: images
/// `berth images`: one row per name of each image, newest first; images
/// without a name show as `<none>`.
pub fn images(store: &Store, args: &ImagesArgs) -> Result<()> {
    let images = ImageStore::open(&store.root)?;
    let now = SystemTime::now();
    let mut list = images.list()?;
    list.sort_by_key(|i| std::cmp::Reverse(created(i)));
    let mut dangling = None;
    let mut patterns = Vec::new();
    for f in &args.filter {
        match f.split_once('=') {
            Some(("dangling", v)) if v == "true" || v == "false" => dangling = Some(v == "true"),
            Some(("reference", p)) => patterns.push(p.to_string()),
            _ => bail!(
                "invalid filter {f:?}: berth supports dangling=true|false and reference=PATTERN"
            ),
        }
    }
    if let Some(repo) = &args.repository {
        patterns.push(repo.clone());
    }
    let mut rows = Vec::new();
    for image in &list {
        // Images kept only as the build cache are intermediate steps:
        // shown with -a, as Docker shows them.
        if image.names.is_empty() && image.cached && !args.all {
            continue;
        }
        if dangling.is_some_and(|d| d != image.names.is_empty()) {
            continue;
        }
        let size = disk::human(image_size(&images, image));
        for (repository, tag) in image_rows(image) {
            if !patterns.is_empty() {
                let with_tag = format!("{repository}:{tag}");
                let hit = patterns.iter().any(|p| {
                    if p.contains(':') {
                        glob(p, &with_tag)
                    } else {
                        glob(p, &repository)
                    }
                });
                if !hit || image.names.is_empty() {
                    continue;
                }
            }
            rows.push(json!({
                "Repository": repository,
                "Tag": tag,
                "ID": short(&image.id, args.no_trunc),
                "Digest": if image.names.is_empty() { "<none>".to_string() } else { image.digest.clone() },
                "CreatedSince": ago(created(image), now),
                "CreatedAt": image.config.created().clone().unwrap_or_default(),
                "Size": size,
            }));
        }
    }
    if args.quiet {
        let mut seen = BTreeSet::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or_default().to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(());
    }
    match args.format.as_deref() {
        Some("json") => {
            for r in &rows {
                println!("{r}");
            }
        }
        Some(f) => {
            let (table, f) = match f.strip_prefix("table") {
                Some(rest) => (true, rest.trim_start()),
                None => (false, f),
            };
            let t = Template::parse(f)?;
            let mut lines = Vec::new();
            if table {
                lines.push(t.header(&|field| views::ps_header(field)));
            }
            for r in &rows {
                lines.push(t.render(r)?);
            }
            for l in lines {
                println!("{l}");
            }
        }
        None => {
            let mut head = vec!["REPOSITORY", "TAG"];
            if args.digests {
                head.push("DIGEST");
            }
            head.extend(["IMAGE ID", "CREATED", "SIZE"]);
            let mut table = vec![head.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
            for r in &rows {
                let mut line = vec![r["Repository"].clone(), r["Tag"].clone()];
                if args.digests {
                    line.push(r["Digest"].clone());
                }
                line.extend([
                    r["ID"].clone(),
                    r["CreatedSince"].clone(),
                    r["Size"].clone(),
                ]);
                table.push(
                    line.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect(),
                );
            }
            print!("{}", views::columns(&table));
        }
    }
    Ok(())
}
// ANCHOR_END: images

/// Finds an image or says how to get it.
pub fn find(images: &ImageStore, name: &str) -> Result<Image> {
    match images.find(name)? {
        Some(i) => Ok(i),
        None => bail!("No such image: {name} (see `berth images`, or `berth pull {name}`)"),
    }
}

/// `berth tag SOURCE TARGET`: another name for the same image.
pub fn tag(store: &Store, source: &str, target: &str) -> Result<()> {
    let images = ImageStore::open(&store.root)?;
    let image = find(&images, source)?;
    let target = Reference::parse(target)?;
    images.tag(&target, &image)
}

// ANCHOR: rmi
/// `berth rmi`: a name removes that name ("Untagged"); the image itself
/// goes ("Deleted") when its last name does, or when it is named by id.
/// An image a container uses stays unless `-f`; then only names go and
/// the image stays, unnamed, for the container.
pub fn rmi(store: &Store, args: &RmiArgs) -> Result<bool> {
    let images = ImageStore::open(&store.root)?;
    let containers = store.list()?;
    let mut failed = false;
    for wanted in &args.images {
        if let Err(e) = rmi_one(&images, &containers, wanted, args.force) {
            eprintln!("Error: {e:#}");
            failed = true;
        }
    }
    Ok(!failed)
}

fn rmi_one(
    images: &ImageStore,
    containers: &[crate::state::Container],
    wanted: &str,
    force: bool,
) -> Result<()> {
    let image = find(images, wanted)?;
    let by_name = Reference::parse(wanted)
        .ok()
        .filter(|r| image.names.contains(&r.to_string()));
    let user = containers.iter().find(|c| c.image_id == image.id);
    // Removing one of several names only unties that name.
    if let Some(r) = &by_name
        && image.names.len() > 1
    {
        images.blobs().untag(r)?;
        println!("Untagged: {}", r.familiar());
        return Ok(());
    }
    if by_name.is_none() && image.names.len() > 1 && !force {
        bail!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            image.short_id()
        );
    }
    if let Some(c) = user {
        if !force {
            bail!(
                "conflict: unable to remove repository reference {wanted:?} (must force) - container {} is using its referenced image {}",
                c.short_id(),
                image.short_id()
            );
        }
        // Forced: the names go, the image stays for its container.
        for n in &image.names {
            let r = Reference::parse(n)?;
            images.blobs().untag(&r)?;
            println!("Untagged: {}", r.familiar());
        }
        return Ok(());
    }
    for n in &image.names {
        println!("Untagged: {}", Reference::parse(n)?.familiar());
    }
    images.remove_images(&BTreeSet::from([image.id.clone()]))?;
    println!("Deleted: {}", image.id);
    Ok(())
}
// ANCHOR_END: rmi

// ANCHOR: history
/// `berth history`: the image's history entries, newest first, each with
/// the size of the layer it made (0B for instructions that changed only
/// the config). Only the newest row carries the image id, as in Docker.
pub fn history(store: &Store, args: &HistoryArgs) -> Result<()> {
    let images = ImageStore::open(&store.root)?;
    let image = find(&images, &args.image)?;
    let now = SystemTime::now();
    let entries = image.config.history().clone().unwrap_or_default();
    let mut layer = 0;
    let mut rows = Vec::new();
    for entry in &entries {
        let size = if entry.empty_layer().unwrap_or(false) {
            0
        } else {
            layer += 1;
            if layer <= image.diff_ids().len() {
                layer_size(&images, &image, layer - 1)
            } else {
                0
            }
        };
        let when = entry.created().as_deref().and_then(|c| {
            humantime::parse_rfc3339_weak(c.trim_end_matches('Z').split('.').next()?).ok()
        });
        let by = entry.created_by().clone().unwrap_or_default();
        let by = if args.no_trunc || by.chars().count() <= 45 {
            by
        } else {
            format!("{}…", by.chars().take(44).collect::<String>())
        };
        rows.push(json!({
            "ID": "<missing>",
            "CreatedSince": if args.human { ago(when, now) } else { entry.created().clone().unwrap_or_default() },
            "CreatedAt": entry.created().clone().unwrap_or_default(),
            "CreatedBy": by,
            "Size": if args.human { disk::human(size) } else { size.to_string() },
            "Comment": entry.comment().clone().unwrap_or_default(),
        }));
    }
    rows.reverse();
    if let Some(first) = rows.first_mut() {
        first["ID"] = json!(short(&image.id, args.no_trunc));
    }
    if args.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(());
    }
    match args.format.as_deref() {
        Some("json") => rows.iter().for_each(|r| println!("{r}")),
        Some(f) => {
            let t = Template::parse(f)?;
            for r in &rows {
                println!("{}", t.render(r)?);
            }
        }
        None => {
            let mut table = vec![
                ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            ];
            for r in &rows {
                table.push(
                    ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"]
                        .iter()
                        .map(|k| r[*k].as_str().unwrap_or_default().to_string())
                        .collect(),
                );
            }
            print!("{}", views::columns(&table));
        }
    }
    Ok(())
}
// ANCHOR_END: history

/// The `docker image inspect` view: the config under Docker's field names.
pub fn inspect_json(images: &ImageStore, image: &Image) -> Result<Value> {
    let config = image.config.config().clone().unwrap_or_default();
    let repo_tags: Vec<String> = image
        .names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .map(|r| r.familiar())
        .collect();
    let exposed: serde_json::Map<String, Value> = config
        .exposed_ports()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p, json!({})))
        .collect();
    let volumes: serde_json::Map<String, Value> = config
        .volumes()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p, json!({})))
        .collect();
    let mut view = json!({
        "Id": image.id,
        "RepoTags": repo_tags,
        "Created": image.config.created().clone().unwrap_or_default(),
        "Author": image.config.author().clone().unwrap_or_default(),
        "Config": {
            "User": config.user().clone().unwrap_or_default(),
            "ExposedPorts": if exposed.is_empty() { Value::Null } else { Value::Object(exposed) },
            "Env": config.env().clone().unwrap_or_default(),
            "Cmd": config.cmd().clone(),
            "Entrypoint": config.entrypoint().clone(),
            "Volumes": if volumes.is_empty() { Value::Null } else { Value::Object(volumes) },
            "WorkingDir": config.working_dir().clone().unwrap_or_default(),
            "Labels": config.labels().clone(),
            "StopSignal": config.stop_signal().clone(),
        },
        "Architecture": image.config.architecture().to_string(),
        "Os": image.config.os().to_string(),
        "Size": image_size(images, image),
        "RootFS": {
            "Type": image.config.rootfs().typ(),
            "Layers": image.diff_ids(),
        },
        "Metadata": { "ManifestDigest": image.digest },
    });
    // Docker's own field, outside the OCI config (null when there is none,
    // so that a template can ask for it either way).
    view["Config"]["Healthcheck"] = images.healthcheck(image)?.unwrap_or(Value::Null);
    Ok(view)
}

/// `berth save`.
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `berth load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from this file instead of standard input.
    #[arg(short, long)]
    pub input: Option<std::path::PathBuf>,
    /// Print nothing.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `berth export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    pub container: String,
}

/// `berth import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image's config (CMD, ENV, ...).
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// The history comment.
    #[arg(short, long)]
    pub message: Option<String>,
    /// A tar file of a root filesystem (plain or gzipped), or - for
    /// standard input.
    pub file: String,
    /// REPOSITORY[:TAG] for the new image.
    pub reference: Option<String>,
}

fn output(path: Option<&std::path::Path>) -> Result<Box<dyn std::io::Write>> {
    use std::io::IsTerminal;
    Ok(match path {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?,
        )),
        None if std::io::stdout().is_terminal() => bail!(
            "cowardly refusing to write an archive to a terminal: use -o FILE or redirect the output"
        ),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

// ANCHOR: save
/// `berth save`: images (with the names given) into one archive that is
/// both a Docker image archive and an OCI layout.
pub fn save(store: &Store, args: &SaveArgs) -> Result<()> {
    let images = ImageStore::open(&store.root)?;
    let mut chosen: Vec<(Image, Vec<Reference>)> = Vec::new();
    for wanted in &args.images {
        let image = find(&images, wanted)?;
        let name = Reference::parse(wanted)
            .ok()
            .filter(|r| image.names.contains(&r.to_string()));
        match chosen.iter_mut().find(|(i, _)| i.digest == image.digest) {
            Some((_, names)) => names.extend(name),
            None => chosen.push((image, name.into_iter().collect())),
        }
    }
    let mut out = output(args.output.as_deref())?;
    images::archive::save(images.blobs(), &chosen, &mut out)?;
    out.flush()?;
    Ok(())
}
// ANCHOR_END: save

/// `berth load`: the images of an archive into the store. Their layers
/// are unpacked at once, so an archive with a hostile layer is refused
/// now, not when a container is made.
pub fn load(store: &Store, args: &LoadArgs) -> Result<()> {
    let images = ImageStore::open(&store.root)?;
    let input: Box<dyn std::io::Read> = match &args.input {
        Some(p) => Box::new(
            std::fs::File::open(p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?,
        ),
        None => Box::new(std::io::stdin().lock()),
    };
    let loaded = images::archive::load(images.blobs(), std::io::BufReader::new(input), None)?;
    for l in &loaded {
        let image = images.blobs().image(&l.digest)?;
        for i in 0..image.diff_ids().len() {
            if let Err(e) = images.unpacked_layer(&image, i) {
                images.remove_images(&BTreeSet::from([image.id.clone()]))?;
                return Err(
                    e.context("the archive's image cannot be used; nothing was loaded from it")
                );
            }
        }
        if !args.quiet {
            for m in l.messages() {
                println!("{m}");
            }
        }
    }
    Ok(())
}

// ANCHOR: export
/// `berth export`: a container's whole filesystem, its image's layers with
/// its own changes on top, as one tar.
pub fn export(store: &Store, args: &ExportArgs) -> Result<()> {
    let c = store.find(&args.container)?;
    let images = ImageStore::open(&store.root)?;
    let dir = store.container_dir(&c.id);
    let merged = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(&store.root)?;
    let paths = crate::storage::paths(&dir);
    match c.storage.driver {
        crate::storage::Driver::Overlay => {
            let mut layers = vec![paths.upper.clone()];
            layers.extend(crate::storage::lowers(&images, &c.storage, &dir)?);
            overlay::vfs::populate(
                &layers,
                c.storage.xattr(),
                merged.path(),
                &overlay::vfs::same_ids,
            )?;
        }
        crate::storage::Driver::Vfs => {
            overlay::vfs::populate(
                std::slice::from_ref(&paths.rootfs),
                c.storage.xattr(),
                merged.path(),
                &overlay::vfs::same_ids,
            )?;
        }
    }
    let mut out = output(args.output.as_deref())?;
    let mut tar = tar::Builder::new(&mut out);
    tar_tree(
        &mut tar,
        merged.path(),
        std::path::Path::new(""),
        &mut Default::default(),
    )?;
    tar.into_inner()?.flush()?;
    Ok(())
}
// ANCHOR_END: export

/// Appends everything under `dir` to `tar`, sorted by name, owners, modes
/// and times kept, symbolic links as links, and a file with several names
/// once, the later names as hard links to the first (BusyBox's applets are
/// one file with hundreds of names).
fn tar_tree<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    dir: &std::path::Path,
    rel: &std::path::Path,
    seen: &mut std::collections::HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut names: Vec<_> = std::fs::read_dir(dir.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let full = dir.join(&path);
        let meta = std::fs::symlink_metadata(&full)?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        let kind = meta.file_type();
        if kind.is_file() && meta.nlink() > 1 {
            if let Some(first) = seen.get(&(meta.dev(), meta.ino())) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                tar.append_link(&mut header, &path, first)?;
                continue;
            }
            seen.insert((meta.dev(), meta.ino()), path.clone());
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(&full)?;
            tar.append_link(&mut header, &path, &target)?;
        } else if kind.is_dir() {
            tar.append_data(&mut header, &path, std::io::empty())?;
            tar_tree(tar, dir, &path, seen)?;
        } else if kind.is_file() {
            tar.append_data(&mut header, &path, std::fs::File::open(&full)?)?;
        } else {
            // Devices and fifos: the header says it all.
            tar.append_data(&mut header, &path, std::io::empty())?;
        }
    }
    Ok(())
}

/// `berth import`: a tar of a root filesystem becomes a one-layer image.
pub fn import(store: &Store, args: &ImportArgs) -> Result<()> {
    let images = ImageStore::open(&store.root)?;
    let mut config = oci_spec::image::Config::default();
    for change in &args.changes {
        crate::commit::apply_change(&mut config, change)?;
    }
    let reference = args
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let input: Box<dyn std::io::Read> = if args.file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&args.file).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {}: {e} (give a tar file, or - for standard input)",
                args.file
            )
        })?)
    };
    let options = images::archive::ImportOptions {
        config: Some(config),
        message: args.message.clone(),
        created: None,
    };
    let image = images::archive::import(
        images.blobs(),
        std::io::BufReader::new(input),
        &options,
        reference.as_ref(),
    )?;
    for i in 0..image.diff_ids().len() {
        if let Err(e) = images.unpacked_layer(&image, i) {
            images.remove_images(&BTreeSet::from([image.id.clone()]))?;
            return Err(e.context("the tar cannot be unpacked; nothing was imported"));
        }
    }
    println!("{}", image.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_patterns_glob_with_stars() {
        assert!(glob("busybox", "busybox"));
        assert!(!glob("busybox", "busybox2"));
        assert!(glob("busy*", "busybox"));
        assert!(glob("*box", "busybox"));
        assert!(glob("localhost:5000/*", "localhost:5000/app"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcd"));
    }
}
