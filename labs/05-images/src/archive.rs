//! Step 05.5: images as files (`berth save`, `berth load`, `berth import`).
//!
//! A registry is not the only way to move an image: `docker save` writes
//! one or more images into a single tar file, `docker load` reads one back,
//! and `docker import` turns a tar of a root filesystem into a new image.
//! Two archive layouts are in use, and since Docker 25 one file is both:
//!
//! ```text
//! blobs/sha256/<hex>   every manifest, config and layer, named by digest
//! oci-layout           {"imageLayoutVersion":"1.0.0"}      ┐ the OCI image
//! index.json           manifests, named by annotations     ┘ layout
//! manifest.json        [{"Config": "blobs/sha256/…",       ┐ Docker's own
//!                        "RepoTags": ["busybox:latest"],   │ format, which
//!                        "Layers": ["blobs/sha256/…"]}]    │ `docker load`
//! repositories         {"busybox": {"latest": "<hex>"}}    ┘ reads
//! ```
//!
//! Docker's part names files by *path*: older archives use
//! `<id>/layer.tar` and `<id>.json`, and the layer files carry no digest.
//! The OCI part names every file by its digest. [`save`] writes both parts
//! over one set of blobs, so `docker load`, `skopeo copy docker-archive:`
//! and `skopeo copy oci-archive:` all read the same file. Layers are
//! written as the store keeps them (usually gzip-compressed): the readers
//! of Docker's part decompress what they find, and check the result
//! against the config's diff ids. The output is reproducible: sorted
//! entries, fixed times and owners, so saving the same images twice gives
//! the same bytes.
//!
//! An archive comes from anywhere, so [`load`] trusts none of it:
//!
//! - names with `..`, absolute names, links that leave the archive, and
//!   devices are refused (they are how a tar attacks the program that
//!   unpacks it);
//! - every blob is hashed while it is read; a file under `blobs/sha256/`
//!   must hash to its name, and a layer Docker's part names by path must
//!   decompress to the diff id its config lists;
//! - nothing enters the store until the whole archive has been read and
//!   checked. Large files go to temporary files in the store (a 1 GB layer
//!   is never held in memory) and are moved into place only at the end; a
//!   refused archive leaves the store exactly as it was.
//!
//! [`import`] is `docker import`: a (possibly gzipped) tar of a root
//! filesystem becomes a one-layer image. Its counterpart `docker export`
//! needs no code here: the engine writes a container's merged filesystem
//! as a tar with lab 03's `overlay::layer::tar_dir`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read, Write};

use flate2::read::MultiGzDecoder;
use oci_spec::image::{
    Config, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, ImageIndex,
    ImageManifest, ImageManifestBuilder, MediaType, RootFsBuilder,
};
use serde::{Deserialize, Serialize};

use crate::digest::{self, HashingWriter};
use crate::reference::Reference;
use crate::store::{BlobWriter, Image, REF_NAME, Store, parse_digest, ref_name};
use crate::{Error, Result};

/// Docker's list of images in an archive.
pub const DOCKER_MANIFEST: &str = "manifest.json";
/// The OCI layout's list of images.
pub const OCI_INDEX: &str = "index.json";
/// The annotation containerd and Docker 25+ use for an image's full name
/// (their `org.opencontainers.image.ref.name` holds only the tag).
pub const IMAGE_NAME: &str = "io.containerd.image.name";

const OCI_LAYOUT: &str = "oci-layout";
const REPOSITORIES: &str = "repositories";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The largest JSON document (manifest, config, index) read from an archive.
const MAX_JSON: u64 = 4 << 20;
/// The most JSON kept in memory for one archive; layers never count.
const MAX_METADATA: u64 = 64 << 20;
/// How much is copied at a time.
const CHUNK: usize = 1 << 20;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

// ---------------------------------------------------------------- save

/// One entry of Docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// An image on its way into an archive.
struct Saving {
    digest: String,
    media_type: String,
    size: u64,
    id: String,
    layers: Vec<String>,
    platform: serde_json::Value,
    /// By full name, so the order is the same every time.
    names: BTreeMap<String, Reference>,
}

fn blob_path(digest: &str) -> Result<String> {
    Ok(format!("blobs/sha256/{}", digest::hex_part(digest)?))
}

// ANCHOR: save
/// Writes `images` into one tar archive that is both a Docker image
/// archive and an OCI image layout, each image under the names given with
/// it (none: saved by id only). Every blob is checked against its digest
/// as it is copied; on an error the output is incomplete and should be
/// thrown away.
pub fn save(store: &Store, images: &[(Image, Vec<Reference>)], out: impl Write) -> Result<()> {
    // One entry per manifest, whatever the caller repeated.
    let mut saving: Vec<Saving> = Vec::new();
    for (image, names) in images {
        if let Some(r) = names.iter().find(|r| r.digest().is_some()) {
            return Err(Error::Invalid(format!(
                "cannot save {image} as {r}: an archive names images by tag; give a tag instead of a digest",
                image = image.short_id()
            )));
        }
        if let Some(s) = saving.iter_mut().find(|s| s.digest == image.digest) {
            s.names
                .extend(names.iter().map(|r| (r.to_string(), r.clone())));
            continue;
        }
        // The stored manifest, not the caller's copy: it is what the
        // archive will hold.
        let bytes = store.get_blob(&image.digest)?;
        let manifest = ImageManifest::from_reader(&bytes[..])
            .map_err(|e| Error::Invalid(format!("stored manifest {}: {e}", image.digest)))?;
        let mut platform = serde_json::json!({
            "architecture": image.config.architecture().to_string(),
            "os": image.config.os().to_string(),
        });
        if let Some(v) = image.config.variant() {
            platform["variant"] = v.clone().into();
        }
        saving.push(Saving {
            digest: image.digest.clone(),
            media_type: manifest
                .media_type()
                .clone()
                .unwrap_or(MediaType::ImageManifest)
                .to_string(),
            size: bytes.len() as u64,
            id: manifest.config().digest().to_string(),
            layers: manifest
                .layers()
                .iter()
                .map(|l| l.digest().to_string())
                .collect(),
            platform,
            names: names.iter().map(|r| (r.to_string(), r.clone())).collect(),
        });
    }

    // The blobs, each once, in the order of their names.
    let mut blobs = BTreeMap::new();
    for s in &saving {
        for d in std::iter::once(&s.digest).chain([&s.id]).chain(&s.layers) {
            blobs.insert(blob_path(d)?, d.clone());
        }
    }

    // BEGIN SOLUTION 05.5
    let mut docker = Vec::new();
    let mut index = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in &saving {
        let descriptor = |annotations: Option<serde_json::Value>| {
            let mut d = serde_json::json!({
                "mediaType": s.media_type,
                "digest": s.digest,
                "size": s.size,
                "platform": s.platform,
            });
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        if s.names.is_empty() {
            index.push(descriptor(None));
        }
        for name in s.names.values() {
            // Docker writes only the tag in ref.name; the full name is
            // unambiguous when one archive holds busybox:latest and
            // alpine:latest, and skopeo can pick an image by it.
            let full = name.to_string();
            index.push(descriptor(Some(serde_json::json!({
                REF_NAME: full,
                IMAGE_NAME: full,
            }))));
            if let (Some(tag), Some(top)) = (name.tag(), s.layers.last()) {
                repositories
                    .entry(name.familiar_name())
                    .or_default()
                    .insert(tag.to_string(), digest::hex_part(top)?.to_string());
            }
        }
        let tags: Vec<String> = s.names.values().map(Reference::familiar).collect();
        docker.push(DockerEntry {
            config: blob_path(&s.id)?,
            repo_tags: (!tags.is_empty()).then_some(tags),
            layers: s
                .layers
                .iter()
                .map(|l| blob_path(l))
                .collect::<Result<_>>()?,
        });
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageIndex.to_string(),
        "manifests": index,
    });

    let mut tar = TarWriter {
        tar: tar::Builder::new(out),
    };
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    for (path, digest) in &blobs {
        let size = store.blob_size(digest)?;
        let reader = store.open_blob(digest)?;
        tar.file(path, size, reader)
            .map_err(|e| Error::Invalid(format!("cannot save blob {digest}: {e}")))?;
    }
    tar.json(OCI_INDEX, &index)?;
    tar.json(DOCKER_MANIFEST, &docker)?;
    tar.file(OCI_LAYOUT, LAYOUT_CONTENT.len() as u64, LAYOUT_CONTENT)
        .map_err(|e| Error::io("write", OCI_LAYOUT, e))?;
    if !repositories.is_empty() {
        tar.json(REPOSITORIES, &repositories)?;
    }
    tar.tar
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|e| Error::io("finish", "the archive", e))
    // END SOLUTION
}
// ANCHOR_END: save

/// Writes tar entries that depend on nothing but their content: owned by
/// root, dated 1970, mode 644 or 755.
struct TarWriter<W: Write> {
    tar: tar::Builder<W>,
}

impl<W: Write> TarWriter<W> {
    fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> io::Result<tar::Header> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        Ok(h)
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        let h = Self::header(path, tar::EntryType::Directory, 0, 0o755)
            .map_err(|e| Error::io("write", path, e))?;
        self.tar
            .append(&h, io::empty())
            .map_err(|e| Error::io("write", path, e))
    }

    /// Appends a file; `data` must yield exactly `size` bytes.
    fn file(&mut self, path: &str, size: u64, data: impl Read) -> io::Result<()> {
        let h = Self::header(path, tar::EntryType::Regular, size, 0o644)?;
        let mut counted = Counted { inner: data, n: 0 };
        self.tar.append(&h, &mut counted)?;
        if counted.n != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{path} changed size while it was copied ({size} bytes, then {})",
                    counted.n
                ),
            ));
        }
        Ok(())
    }

    fn json(&mut self, path: &str, value: &impl Serialize) -> Result<()> {
        let mut bytes = serde_json::to_vec(value).map_err(|e| Error::Invalid(e.to_string()))?;
        bytes.push(b'\n');
        self.file(path, bytes.len() as u64, &bytes[..])
            .map_err(|e| Error::io("write", path, e))
    }
}

/// A reader that counts what it gives.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------- load

/// What [`load`] added to the store, per image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The image id (the config's digest).
    pub id: String,
    /// The manifest's digest.
    pub digest: String,
    /// The names it now has from the archive, full form, sorted.
    pub names: Vec<String>,
    /// Tags the archive gave without a repository (an OCI `ref.name` such
    /// as `latest`) and that no name was given to complete: the image was
    /// left without them.
    pub unnamed_tags: Vec<String>,
    /// Names that pointed at another image before, with that image's id.
    pub replaced: Vec<(String, String)>,
}

impl Loaded {
    /// What `docker load` prints for this image: one `Loaded image: NAME`
    /// line per name, or `Loaded image ID: sha256:…` when it has none.
    pub fn messages(&self) -> Vec<String> {
        if self.names.is_empty() {
            return vec![format!("Loaded image ID: {}", self.id)];
        }
        self.names
            .iter()
            .map(|n| {
                let short = Reference::parse(n).map_or(n.clone(), |r| r.familiar());
                format!("Loaded image: {short}")
            })
            .collect()
    }
}

/// Where the content of one archive file is until the load is committed.
enum Body {
    /// Small JSON documents (manifests, configs, indexes) stay in memory.
    Memory(Vec<u8>),
    /// Anything else waits in a temporary file of the store.
    Pending(Box<BlobWriter>),
    /// The store already holds a blob with this content.
    InStore,
    /// Moved into the store already (by an earlier image of the archive).
    Committed,
}

/// A regular file of the archive, hashed.
struct ArchiveFile {
    digest: String,
    size: u64,
    /// For gzip-compressed content, the digest of the decompressed bytes
    /// (or why decompressing failed); `None` for anything else.
    gunzipped: Option<std::result::Result<String, String>>,
    body: Body,
}

/// A whole archive, read and hashed, nothing stored yet.
#[derive(Default)]
struct Archive {
    files: BTreeMap<String, ArchiveFile>,
    /// Links inside the archive: name → the name it points at.
    links: BTreeMap<String, String>,
    memory: u64,
}

/// An image found in the archive, checked, waiting to be stored.
struct Candidate {
    digest: String,
    media_type: MediaType,
    manifest: Vec<u8>,
    id: String,
    /// Archive files to move into the store: the config and the layers.
    files: Vec<String>,
    names: BTreeSet<String>,
    bare_tags: BTreeSet<String>,
}

fn refuse(entry: &str, why: &str) -> Error {
    Error::Invalid(format!(
        "refusing archive entry {entry:?}: {why}; the archive is damaged or was made to attack its reader"
    ))
}

fn damaged(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!(
        "cannot read the archive ({what}): {e}; it is truncated or is not a tar archive"
    ))
}

/// The name of an entry, made relative and checked: `./a/b` is `a/b`;
/// `..`, absolute names and names that are not UTF-8 are refused. `None`
/// for the archive's root directory itself.
fn entry_name(raw: &[u8]) -> Result<Option<String>> {
    // BEGIN SOLUTION 05.5
    let text = std::str::from_utf8(raw)
        .map_err(|_| refuse(&String::from_utf8_lossy(raw), "the name is not UTF-8"))?;
    if text.starts_with('/') {
        return Err(refuse(text, "an absolute name"));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refuse(text, "the name climbs out of the archive with `..`")),
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
    // END SOLUTION
}

/// Where a link points, as an archive name: a symbolic link's target is
/// relative to the link's directory, a hard link's to the archive's root.
/// A target outside the archive is refused.
fn link_target(name: &str, target: &[u8], symbolic: bool) -> Result<String> {
    // BEGIN SOLUTION 05.5
    let target =
        std::str::from_utf8(target).map_err(|_| refuse(name, "its link target is not UTF-8"))?;
    let escape = || refuse(name, &format!("a link to {target:?}, outside the archive"));
    if target.starts_with('/') {
        return Err(escape());
    }
    let mut parts: Vec<&str> = if symbolic {
        name.split('/').collect()
    } else {
        Vec::new()
    };
    if symbolic {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(escape)?;
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(escape());
    }
    Ok(parts.join("/"))
    // END SOLUTION
}

/// `sha256:<hex>` for a name of the form `blobs/sha256/<hex>`.
fn named_digest(name: &str) -> Option<String> {
    let hex = name.strip_prefix("blobs/sha256/")?;
    let d = format!("sha256:{hex}");
    digest::hex_part(&d).is_ok().then_some(d)
}

/// Whether a file is read into memory: the metadata files by their names,
/// and anything small that starts like a JSON document.
fn keep_in_memory(name: &str, size: u64, start: &[u8]) -> bool {
    let metadata = [DOCKER_MANIFEST, OCI_INDEX, OCI_LAYOUT, REPOSITORIES].contains(&name)
        || name.ends_with(".json")
        || name.ends_with("/json");
    let json = start
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    size <= MAX_JSON && (metadata || json)
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Hashes the decompressed form of gzip data fed to it in pieces.
struct Gunzip {
    decoder: flate2::write::MultiGzDecoder<HashingWriter<io::Sink>>,
    failed: Option<String>,
}

impl Gunzip {
    fn feed(&mut self, data: &[u8]) {
        if self.failed.is_none()
            && let Err(e) = self.decoder.write_all(data)
        {
            self.failed = Some(e.to_string());
        }
    }

    fn finish(mut self) -> std::result::Result<String, String> {
        if let Some(why) = self.failed {
            return Err(why);
        }
        self.decoder.try_finish().map_err(|e| e.to_string())?;
        let hasher = self.decoder.finish().map_err(|e| e.to_string())?;
        Ok(hasher.finish().0)
    }
}

impl Archive {
    /// Reads the whole archive (plain or gzipped tar), hashing every file.
    fn read(store: &Store, input: impl Read) -> Result<Archive> {
        let mut input = BufReader::with_capacity(CHUNK, input);
        let start = input.fill_buf().map_err(|e| damaged("start", e))?;
        if start.is_empty() {
            return Err(Error::Invalid(
                "the archive is empty: expected a tar file written by `docker save` or `berth save`"
                    .into(),
            ));
        }
        let reader: Box<dyn Read> = if start.starts_with(&GZIP_MAGIC) {
            Box::new(MultiGzDecoder::new(input))
        } else {
            Box::new(input)
        };
        let mut tar = tar::Archive::new(reader);
        let mut archive = Archive::default();
        let mut last = String::from("its start");
        for entry in tar.entries().map_err(|e| damaged("its start", e))? {
            let mut entry = entry.map_err(|e| damaged(&format!("after {last}"), e))?;
            let Some(name) = entry_name(&entry.path_bytes())? else {
                continue;
            };
            last.clone_from(&name);
            if archive.files.contains_key(&name) || archive.links.contains_key(&name) {
                return Err(refuse(&name, "it appears twice"));
            }
            use tar::EntryType as T;
            match entry.header().entry_type() {
                T::Regular | T::Continuous => {
                    let size = entry.size();
                    let file = archive.read_file(store, &name, size, &mut entry)?;
                    archive.files.insert(name, file);
                }
                T::Directory | T::XGlobalHeader => {}
                kind @ (T::Symlink | T::Link) => {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| refuse(&name, "a link without a target"))?;
                    let target = link_target(&name, &target, kind == T::Symlink)?;
                    archive.links.insert(name, target);
                }
                other => {
                    return Err(refuse(
                        &name,
                        &format!("an entry of type {other:?} has no place in an image archive"),
                    ));
                }
            }
        }
        Ok(archive)
    }

    /// Reads one file: into memory if it is a small JSON document, into a
    /// temporary file of the store otherwise; hashes it on the way, and
    /// checks a `blobs/sha256/<hex>` file against its name.
    fn read_file(
        &mut self,
        store: &Store,
        name: &str,
        size: u64,
        data: &mut impl Read,
    ) -> Result<ArchiveFile> {
        let read_err = |e: io::Error| damaged(&format!("entry {name}"), e);
        let expected = named_digest(name);
        let mut buf = vec![0; CHUNK.min(size as usize)];
        let mut n = read_full(data, &mut buf).map_err(read_err)?;

        enum Sink {
            Memory(Vec<u8>),
            Store(Box<HashingWriter<BlobWriter>>),
            Check(HashingWriter<io::Sink>),
        }
        let mut sink = if keep_in_memory(name, size, &buf[..n]) {
            self.memory += size;
            if self.memory > MAX_METADATA {
                return Err(Error::Invalid(format!(
                    "the archive holds more than {} MiB of JSON documents (at {name}); it is not an image archive",
                    MAX_METADATA >> 20
                )));
            }
            Sink::Memory(Vec::with_capacity(size as usize))
        } else if expected.as_deref().is_some_and(|d| store.has_blob(d)) {
            Sink::Check(HashingWriter::new(io::sink()))
        } else {
            Sink::Store(Box::new(HashingWriter::new(store.blob_writer()?)))
        };
        let mut gunzip = buf[..n].starts_with(&GZIP_MAGIC).then(|| Gunzip {
            decoder: flate2::write::MultiGzDecoder::new(HashingWriter::new(io::sink())),
            failed: None,
        });

        let mut total = 0u64;
        while n > 0 {
            let piece = &buf[..n];
            match &mut sink {
                Sink::Memory(v) => v.extend_from_slice(piece),
                Sink::Store(w) => w
                    .write_all(piece)
                    .map_err(|e| Error::io("write a temporary blob in", store.dir(), e))?,
                Sink::Check(w) => w.write_all(piece).expect("a sink takes anything"),
            }
            if let Some(g) = &mut gunzip {
                g.feed(piece);
            }
            total += n as u64;
            n = read_full(data, &mut buf).map_err(read_err)?;
        }
        if total != size {
            return Err(damaged(
                &format!("entry {name}"),
                format!("it should have {size} bytes but has only {total}"),
            ));
        }

        let (actual, body) = match sink {
            Sink::Memory(v) => (digest::sha256(&v), Body::Memory(v)),
            Sink::Store(w) => {
                let (d, _, writer) = (*w).finish();
                (d, Body::Pending(Box::new(writer)))
            }
            Sink::Check(w) => (w.finish().0, Body::InStore),
        };
        if let Some(expected) = expected {
            digest::verify(&format!("archive entry {name}"), &expected, &actual)?;
        }
        Ok(ArchiveFile {
            digest: actual,
            size,
            gunzipped: gunzip.map(Gunzip::finish),
            body,
        })
    }

    /// The archive file a name stands for, following links inside the
    /// archive.
    fn resolve(&self, name: &str, wanted_by: &str) -> Result<&str> {
        let mut name = entry_name(name.as_bytes())?.unwrap_or_default();
        for _ in 0..16 {
            if let Some(target) = self.links.get(&name) {
                name.clone_from(target);
                continue;
            }
            return match self.files.get_key_value(&name) {
                Some((k, _)) => Ok(k.as_str()),
                None => Err(Error::Invalid(format!(
                    "{wanted_by} lists {name:?}, which is not in the archive; the archive is incomplete"
                ))),
            };
        }
        Err(refuse(&name, "a loop of links"))
    }

    /// The archive file holding the blob `digest`, checked against the
    /// size its descriptor gives.
    fn blob(&self, d: &Descriptor, wanted_by: &str) -> Result<&str> {
        let name = self.resolve(&blob_path(d.digest().as_ref())?, wanted_by)?;
        let file = &self.files[name];
        if file.size != d.size() {
            return Err(Error::Invalid(format!(
                "{wanted_by} gives blob {} a size of {} bytes, but the archive's has {}",
                d.digest(),
                d.size(),
                file.size
            )));
        }
        Ok(name)
    }

    /// The content of a JSON document of the archive.
    fn json_bytes(&self, name: &str) -> Result<&[u8]> {
        match &self.files[name].body {
            Body::Memory(v) => Ok(v),
            _ => Err(Error::Invalid(format!(
                "{name} is not a JSON document (or is larger than {} MiB)",
                MAX_JSON >> 20
            ))),
        }
    }

    /// Parses a JSON document of the archive, naming it on failure.
    fn json<T: serde::de::DeserializeOwned>(&self, name: &str, what: &str) -> Result<T> {
        serde_json::from_slice(self.json_bytes(name)?)
            .map_err(|e| Error::Invalid(format!("{name}: not a valid {what}: {e}")))
    }

    /// The diff id of a layer file: the digest of its uncompressed tar.
    fn diff_id(&self, name: &str, media_type: &str) -> Result<Option<String>> {
        let file = &self.files[name];
        let gzip = media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip");
        let plain = media_type.ends_with(".tar") || media_type.ends_with(".tar+json");
        match (&file.gunzipped, gzip, plain) {
            (Some(Ok(d)), true, _) => Ok(Some(d.clone())),
            (Some(Err(why)), true, _) => Err(Error::Invalid(format!(
                "layer {name} does not decompress: {why}"
            ))),
            (None, true, _) => Err(Error::Invalid(format!(
                "layer {name} is listed as {media_type} but is not gzip-compressed"
            ))),
            (_, false, true) => Ok(Some(file.digest.clone())),
            // zstd and other compressions: nothing here can check them.
            _ => Ok(None),
        }
    }
}

/// Checks that the layers are the ones the config lists, in order.
fn check_diff_ids(
    config: &ImageConfiguration,
    actual: &[Option<String>],
    what: &str,
) -> Result<()> {
    let listed = config.rootfs().diff_ids();
    if listed.len() != actual.len() {
        return Err(Error::Invalid(format!(
            "{what}: the config lists {} layers but the manifest has {}",
            listed.len(),
            actual.len()
        )));
    }
    for (i, (want, got)) in listed.iter().zip(actual).enumerate() {
        if let Some(got) = got
            && got != want
        {
            return Err(Error::Invalid(format!(
                "{what}: layer {} uncompresses to {got}, but the config expects {want}; the layer is not the one the image was built with",
                i + 1
            )));
        }
    }
    Ok(())
}

fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfiguration> {
    ImageConfiguration::from_reader(bytes)
        .map_err(|e| Error::Invalid(format!("{what}: not a valid image config: {e}")))
}

/// Chooses the linux/amd64 image of an index (or a one-image index).
fn pick_platform<'a>(index: &'a ImageIndex, what: &str) -> Result<&'a Descriptor> {
    let manifests = index.manifests();
    let matching = manifests.iter().find(|d| {
        d.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
        })
    });
    match (matching, manifests.as_slice()) {
        (Some(d), _) => Ok(d),
        (None, [only]) if only.platform().is_none() => Ok(only),
        _ => {
            let platforms: Vec<String> = manifests
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect();
            Err(Error::Invalid(format!(
                "{what} has no linux/amd64 image (it has: {}); save the image for linux/amd64",
                platforms.join(", ")
            )))
        }
    }
}

/// The media type of an image manifest or index, from its descriptor.
fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn is_manifest(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.manifest.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.v2+json"
}

impl Archive {
    /// The image of an archive manifest (stored blob named by digest),
    /// with its config and layers checked.
    fn oci_image(&self, d: &Descriptor, what: &str) -> Result<Candidate> {
        let name = self.blob(d, what)?;
        let bytes = self.json_bytes(name)?;
        let manifest = ImageManifest::from_reader(bytes)
            .map_err(|e| Error::Invalid(format!("{name}: not a valid image manifest: {e}")))?;
        let what = format!("manifest {}", d.digest());
        let config_name = self.blob(manifest.config(), &what)?;
        let config = parse_config(self.json_bytes(config_name)?, config_name)?;
        let mut files = vec![config_name.to_string()];
        let mut diff_ids = Vec::new();
        for layer in manifest.layers() {
            let layer_name = self.blob(layer, &what)?;
            diff_ids.push(self.diff_id(layer_name, layer.media_type().as_ref())?);
            files.push(layer_name.to_string());
        }
        check_diff_ids(&config, &diff_ids, &what)?;
        Ok(Candidate {
            digest: d.digest().to_string(),
            media_type: d.media_type().clone(),
            manifest: bytes.to_vec(),
            id: manifest.config().digest().to_string(),
            files,
            names: BTreeSet::new(),
            bare_tags: BTreeSet::new(),
        })
    }

    /// The images `index.json` lists, an index inside it resolved to its
    /// linux/amd64 image, with the names its annotations give.
    fn oci_images(&self, index_name: &str) -> Result<Vec<Candidate>> {
        let index: ImageIndex = self.json(index_name, "OCI image index")?;
        let mut found: Vec<Candidate> = Vec::new();
        for top in index.manifests() {
            let mut d = top.clone();
            for _ in 0..4 {
                if !is_index(d.media_type().as_ref()) {
                    break;
                }
                let what = format!("index {}", d.digest());
                let nested: ImageIndex = self.json(self.blob(&d, &what)?, "OCI image index")?;
                d = pick_platform(&nested, &what)?.clone();
            }
            if !is_manifest(d.media_type().as_ref()) {
                // Signatures, attestations and other artifacts.
                continue;
            }
            let mut image = self.oci_image(&d, index_name)?;
            let annotations = top.annotations().clone().unwrap_or_default();
            if let Some(full) = annotations.get(IMAGE_NAME) {
                image.names.insert(parse_name(full, index_name)?);
            }
            match annotations.get(REF_NAME) {
                Some(r) if r.contains(['/', ':']) => {
                    image.names.insert(parse_name(r, index_name)?);
                }
                Some(tag) => {
                    image.bare_tags.insert(tag.clone());
                }
                None => {}
            }
            match found.iter_mut().find(|c| c.digest == image.digest) {
                Some(c) => {
                    c.names.append(&mut image.names);
                    c.bare_tags.append(&mut image.bare_tags);
                }
                None => found.push(image),
            }
        }
        Ok(found)
    }

    /// An image `manifest.json` describes by paths, checked against its
    /// config's diff ids, with a manifest made for it.
    fn docker_image(&self, entry: &DockerEntry) -> Result<Candidate> {
        let config_name = self.resolve(&entry.config, DOCKER_MANIFEST)?;
        let config_bytes = self.json_bytes(config_name)?;
        let config = parse_config(config_bytes, config_name)?;
        let mut files = vec![config_name.to_string()];
        let mut diff_ids = Vec::new();
        let mut layers = Vec::new();
        for path in &entry.layers {
            let name = self.resolve(path, DOCKER_MANIFEST)?;
            let file = &self.files[name];
            let media_type = match &file.gunzipped {
                Some(Ok(d)) => {
                    diff_ids.push(Some(d.clone()));
                    MediaType::ImageLayerGzip
                }
                Some(Err(why)) => {
                    return Err(Error::Invalid(format!(
                        "layer {name} looks gzip-compressed but does not decompress: {why}"
                    )));
                }
                None => {
                    diff_ids.push(Some(file.digest.clone()));
                    MediaType::ImageLayer
                }
            };
            layers.push(Descriptor::new(
                media_type,
                file.size,
                parse_digest(&file.digest)?,
            ));
            files.push(name.to_string());
        }
        check_diff_ids(
            &config,
            &diff_ids,
            &format!("{DOCKER_MANIFEST} image {}", entry.config),
        )?;
        let id = self.files[config_name].digest.clone();
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                parse_digest(&id)?,
            ))
            .layers(layers)
            .build()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut names = BTreeSet::new();
        for tag in entry.repo_tags.iter().flatten() {
            names.insert(parse_name(tag, DOCKER_MANIFEST)?);
        }
        Ok(Candidate {
            digest: digest::sha256(&manifest),
            media_type: MediaType::ImageManifest,
            manifest,
            id,
            files,
            names,
            bare_tags: BTreeSet::new(),
        })
    }

    /// Moves an archive file into the store (once).
    fn commit(&mut self, store: &Store, name: &str) -> Result<()> {
        let file = self.files.get_mut(name).expect("checked before");
        match std::mem::replace(&mut file.body, Body::Committed) {
            Body::Memory(v) => {
                store.put_blob(&v, Some(&file.digest))?;
            }
            Body::Pending(w) => {
                w.commit(Some(&file.digest))?;
            }
            Body::InStore | Body::Committed => {}
        }
        Ok(())
    }
}

/// A name from the archive, in full form; a name with a digest is refused.
fn parse_name(name: &str, file: &str) -> Result<String> {
    let r = Reference::parse(name).map_err(|e| Error::Invalid(format!("{file}: {e}")))?;
    if r.digest().is_some() {
        return Err(Error::Invalid(format!(
            "{file}: image name {name:?} has a digest; an archive can only give tags"
        )));
    }
    Ok(r.to_string())
}

// ANCHOR: load
/// Reads an archive written by `docker save`, `berth save`, `skopeo copy
/// … docker-archive:` or `oci-archive:` (plain or gzipped) and adds its
/// images to the store, with the names the archive gives them.
///
/// `name` completes what the archive leaves open: a bare tag (`latest` in
/// an OCI `ref.name`) becomes that repository with the tag, and an image
/// with no name at all gets `name` itself. Without it such images are
/// loaded without a name, and [`Loaded::unnamed_tags`] says what was left
/// out. Everything is checked before anything is stored: a refused archive
/// leaves the store as it was.
pub fn load(store: &Store, input: impl Read, name: Option<&Reference>) -> Result<Vec<Loaded>> {
    let mut archive = Archive::read(store, input)?;

    let mut images = Vec::new();
    let index = archive.files.contains_key(OCI_INDEX);
    if index {
        images = archive.oci_images(OCI_INDEX)?;
    }
    if archive.files.contains_key(DOCKER_MANIFEST) {
        let entries: Vec<DockerEntry> = archive.json(DOCKER_MANIFEST, "Docker image list")?;
        for entry in &entries {
            let config = archive.resolve(&entry.config, DOCKER_MANIFEST)?;
            let id = &archive.files[config].digest;
            // Docker 25+ lists an image in both parts; the OCI manifest,
            // kept byte for byte, wins, and gets the Docker part's names.
            if let Some(c) = images.iter_mut().find(|c| &c.id == id) {
                for tag in entry.repo_tags.iter().flatten() {
                    c.names.insert(parse_name(tag, DOCKER_MANIFEST)?);
                }
                continue;
            }
            let image = archive.docker_image(entry)?;
            match images.iter_mut().find(|c| c.digest == image.digest) {
                Some(c) => c.names.extend(image.names),
                None => images.push(image),
            }
        }
    } else if !index {
        return Err(Error::Invalid(format!(
            "neither {DOCKER_MANIFEST} nor {OCI_INDEX} is in the archive: it is not an image archive \
             (a tar of a root filesystem is imported with `berth import`)"
        )));
    }
    if images.is_empty() {
        return Err(Error::Invalid("the archive holds no image".into()));
    }

    // BEGIN SOLUTION 05.5
    // Complete the names, and refuse one name for two images.
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for image in &mut images {
        if image.names.is_empty()
            && let Some(name) = name
        {
            if image.bare_tags.is_empty() {
                image
                    .names
                    .insert(parse_name(&name.to_string(), "the name given")?);
            }
            for tag in std::mem::take(&mut image.bare_tags) {
                let r = Reference::parse(&name.with_tag(&tag).to_string())?;
                image.names.insert(r.to_string());
            }
        }
        if !image.names.is_empty() {
            image.bare_tags.clear();
        }
        for n in &image.names {
            if let Some(other) = owner.insert(n.clone(), image.digest.clone())
                && other != image.digest
            {
                return Err(Error::Invalid(format!(
                    "two images of the archive would both be named {n} ({other} and {}); \
                     load them without a name and tag them afterwards",
                    image.digest
                )));
            }
        }
    }

    // Everything checked: store.
    let mut loaded = Vec::new();
    for image in images {
        for file in &image.files {
            archive.commit(store, file)?;
        }
        let added = store.add_manifest(&image.manifest, image.media_type.clone())?;
        let mut replaced = Vec::new();
        for n in &image.names {
            let r = Reference::parse(n)?;
            let before = store
                .descriptors()?
                .into_iter()
                .find(|d| ref_name(d).as_deref() == Some(n.as_str()));
            if let Some(before) = before
                && before.digest().as_ref() != added.digest
            {
                replaced.push((n.clone(), store.image(before.digest().as_ref())?.id));
            }
            store.tag(&r, &added.digest)?;
        }
        loaded.push(Loaded {
            id: added.id,
            digest: added.digest,
            names: image.names.into_iter().collect(),
            unnamed_tags: image.bare_tags.into_iter().collect(),
            replaced,
        });
    }
    Ok(loaded)
    // END SOLUTION
}
// ANCHOR_END: load

// ---------------------------------------------------------------- import

/// What `docker import` takes besides the tar.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Runtime settings (`--change 'CMD ["sh"]'`, already parsed).
    pub config: Option<Config>,
    /// The history comment (`--message`); Docker's default is
    /// `Imported from -`.
    pub message: Option<String>,
    /// The creation time, RFC 3339; the current time when not given.
    pub created: Option<String>,
}

/// A reader that copies what it reads into a writer.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// What a compressed input is, from its first bytes, when it is not gzip.
fn other_compression(start: &[u8]) -> Option<(&'static str, &'static str)> {
    if start.starts_with(b"BZh") {
        Some(("bzip2", "bunzip2"))
    } else if start.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(("xz", "xz -d"))
    } else if start.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(("zstd", "zstd -d"))
    } else {
        None
    }
}

/// The time now, as RFC 3339 in UTC to the second.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since 1970 as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    // BEGIN SOLUTION 05.5
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Count from 1 March 0000, so that the leap day ends a year: a
    // 400-year era has 146 097 days, and each year in it starts on a day
    // a formula can find.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let m = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * m + 2) / 5 + 1;
    let month = if m < 10 { m + 3 } else { m - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
    // END SOLUTION
}

/// Stores a config, byte for byte, and a manifest for it and `layers`,
/// and lists the manifest in the index without a name.
fn add_image(store: &Store, config: &[u8], layers: Vec<Descriptor>) -> Result<Image> {
    let id = store.put_blob(config, None)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config.len() as u64,
            parse_digest(&id)?,
        ))
        .layers(layers)
        .build()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Invalid(e.to_string()))?;
    store.add_manifest(&bytes, MediaType::ImageManifest)
}

/// The config `docker import` writes for a one-layer image whose layer has
/// this diff id: linux/amd64, the creation time, one history entry, and
/// the runtime settings given. Its bytes come from a JSON value, whose
/// keys are sorted, so the same settings give the same id.
fn import_config(diff_id: String, options: &ImportOptions) -> Result<Vec<u8>> {
    let created = options.created.clone().unwrap_or_else(now_rfc3339);
    let comment = options
        .message
        .clone()
        .unwrap_or_else(|| "Imported from -".to_string());
    let mut config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(oci_spec::image::Arch::Amd64)
        .os(oci_spec::image::Os::Linux)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id])
                .build()
                .map_err(|e| Error::Invalid(e.to_string()))?,
        )
        .history(vec![
            HistoryBuilder::default()
                .created(created)
                .comment(comment)
                .build()
                .map_err(|e| Error::Invalid(e.to_string()))?,
        ])
        .build()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    config.set_config(options.config.clone());
    // Through a JSON value, whose keys are sorted (labels are a hash map
    // otherwise).
    let value = serde_json::to_value(&config).map_err(|e| Error::Invalid(e.to_string()))?;
    serde_json::to_vec(&value).map_err(|e| Error::Invalid(e.to_string()))
}

// ANCHOR: import
/// Makes a one-layer image from a tar of a root filesystem, plain or
/// gzipped (`docker import`). The layer is stored gzipped; the config is
/// Docker's: linux/amd64, the creation time, one history entry. The image
/// is named `reference` if given, else left unnamed. The entries are not
/// judged here: like any layer's, they are checked when it is unpacked.
pub fn import(
    store: &Store,
    input: impl Read,
    options: &ImportOptions,
    reference: Option<&Reference>,
) -> Result<Image> {
    if let Some(r) = reference.filter(|r| r.digest().is_some()) {
        return Err(Error::Invalid(format!(
            "cannot import as {r}: give a tag, not a digest"
        )));
    }
    let mut input = BufReader::with_capacity(CHUNK, input);
    let start = input
        .fill_buf()
        .map_err(|e| Error::io("read", "the input", e))?;
    if start.is_empty() {
        return Err(Error::Invalid(
            "the input is empty: expected a tar archive of a root filesystem".into(),
        ));
    }
    if let Some((kind, tool)) = other_compression(start) {
        return Err(Error::Invalid(format!(
            "the input is {kind}-compressed; only plain and gzip-compressed tars can be imported: decompress it first ({tool})"
        )));
    }
    let tar_bytes: Box<dyn Read> = if start.starts_with(&GZIP_MAGIC) {
        Box::new(MultiGzDecoder::new(input))
    } else {
        Box::new(input)
    };

    // BEGIN SOLUTION 05.5
    // One pass: the uncompressed tar is read as a tar (to refuse what is
    // not one), hashed for the diff id, and compressed into the store.
    let compressed =
        flate2::write::GzEncoder::new(store.blob_writer()?, flate2::Compression::fast());
    let mut tee = Tee {
        inner: tar_bytes,
        copy: HashingWriter::new(compressed),
    };
    let not_tar = |e: io::Error| {
        Error::Invalid(format!(
            "the input is not a tar archive (or is damaged): {e}; `berth import` takes a tar of a root filesystem"
        ))
    };
    {
        let mut tar = tar::Archive::new(&mut tee);
        for entry in tar.entries().map_err(not_tar)? {
            let mut entry = entry.map_err(not_tar)?;
            io::copy(&mut entry, &mut io::sink()).map_err(not_tar)?;
        }
    }
    // The end-of-archive blocks and anything after them belong to the
    // layer too.
    io::copy(&mut tee, &mut io::sink()).map_err(not_tar)?;
    let (diff_id, _, compressed) = tee.copy.finish();
    let writer = compressed
        .finish()
        .map_err(|e| Error::io("compress the layer into", store.dir(), e))?;
    let (layer, size) = writer.commit(None)?;

    let bytes = import_config(diff_id, options)?;
    let image = add_image(
        store,
        &bytes,
        vec![Descriptor::new(
            MediaType::ImageLayerGzip,
            size,
            parse_digest(&layer)?,
        )],
    )?;
    match reference {
        Some(r) => {
            store.tag(r, &image.digest)?;
            store.image(&image.digest)
        }
        None => Ok(image),
    }
    // END SOLUTION
}
// ANCHOR_END: import

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_made_relative_or_refused() {
        assert_eq!(
            entry_name(b"./blobs/./sha256/x").unwrap().as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(entry_name(b"./").unwrap(), None);
        for bad in [&b"../x"[..], b"a/../../x", b"/etc/passwd", b"a/\xff"] {
            let e = entry_name(bad).unwrap_err().to_string();
            assert!(e.contains("refusing archive entry"), "{e}");
        }
    }

    #[test]
    fn links_stay_inside_the_archive() {
        assert_eq!(
            link_target("id/layer.tar", b"../abc.tar", true).unwrap(),
            "abc.tar"
        );
        assert_eq!(
            link_target("id/layer.tar", b"other/layer.tar", false).unwrap(),
            "other/layer.tar"
        );
        for bad in [&b"/etc/passwd"[..], b"../../x", b".."] {
            assert!(link_target("id/layer.tar", bad, true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_are_written_in_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
