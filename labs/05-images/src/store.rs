//! Step 05.2: the image store, in the OCI image layout.
//!
//! The layout is a directory any OCI tool can read (`skopeo`, `umoci`):
//!
//! ```text
//! oci-layout             {"imageLayoutVersion": "1.0.0"}
//! index.json             the images: one manifest descriptor per name
//! blobs/sha256/<hex>     every manifest, config and layer, named by digest
//! ```
//!
//! A *manifest* lists an image's config and layers by digest; the *config*
//! holds the runtime settings and the diff ids of the layers; the index
//! gives manifests names through the `org.opencontainers.image.ref.name`
//! annotation. An image with two tags is two descriptors of one manifest;
//! an image without a name (Docker's `<none>`, *dangling*) is a descriptor
//! without the annotation. Layers shared between images are one blob.
//!
//! Two rules keep the store honest. A blob is written to a temporary file,
//! hashed on the way, and renamed to its digest only when the hash matches,
//! so the store never holds a blob whose content does not match its name;
//! and every read checks the hash again, so damage on disk is found rather
//! than run. The index changes under a lock (`index.lock`), because several
//! `berth` processes may pull or tag at once, and is replaced atomically,
//! so a reader sees the old index or the new, never half of one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use crate::digest::{self, HashingReader, HashingWriter};
use crate::reference::Reference;
use crate::{Error, Result};

/// The annotation that names a manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The annotation that marks a manifest as the result of one build step,
/// under that step's cache key (see `berth build`). Such images are kept
/// for the build cache and hidden from `images` unless they have a name.
pub const CACHE_KEY: &str = "io.berth.build.cache-key";

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config's digest: the image id Docker shows.
    pub id: String,
    /// The manifest's digest: what a registry calls the image.
    pub digest: String,
    /// The manifest: config and layers by digest.
    pub manifest: ImageManifest,
    /// The config: runtime settings, diff ids, history.
    pub config: ImageConfiguration,
    /// The names (full references) that point at this manifest, sorted.
    pub names: Vec<String>,
    /// Whether a build step's cache entry points at it.
    pub cached: bool,
}

impl Image {
    /// The short id Docker prints: the first 12 hex digits of the id.
    pub fn short_id(&self) -> &str {
        let hex = self.id.trim_start_matches("sha256:");
        &hex[..hex.len().min(12)]
    }

    /// The diff ids of the layers, bottom first.
    pub fn diff_ids(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }

    /// The size of the image's blobs as stored (compressed layers plus
    /// config).
    pub fn stored_size(&self) -> u64 {
        self.manifest.layers().iter().map(|l| l.size()).sum::<u64>() + self.manifest.config().size()
    }
}

/// The store: a directory in the OCI image layout.
pub struct Store {
    dir: PathBuf,
}

fn io_err(op: &str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let (op, path) = (op.to_string(), path.to_path_buf());
    move |e| Error::io(op, path, e)
}

/// Writes `data` to `path` through a temporary file and a rename, so the
/// file is either old or new, never half written.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file in", dir))?;
    tmp.write_all(data).map_err(io_err("write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| Error::io("replace", path, e.error))?;
    Ok(())
}

/// A blob on its way into the store: bytes go to a temporary file and are
/// hashed as they are written; [`BlobWriter::commit`] names the file by
/// its digest, or throws it away if it is not the digest expected.
pub struct BlobWriter {
    file: HashingWriter<io::BufWriter<tempfile::NamedTempFile>>,
    blobs: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl crate::registry::BlobSink for BlobWriter {
    /// Empties the temporary file, for a download that starts over.
    fn restart(&mut self) -> io::Result<()> {
        use std::io::Seek;
        self.file.get_mut().flush()?;
        let file = self.file.get_mut().get_mut().as_file_mut();
        file.set_len(0)?;
        file.seek(io::SeekFrom::Start(0))?;
        self.file.reset();
        Ok(())
    }
}

impl BlobWriter {
    /// Checks the digest (when one is expected) and moves the blob into
    /// place; returns its digest and size. On a mismatch the temporary
    /// file is deleted and nothing enters the store.
    pub fn commit(self, expected: Option<&str>) -> Result<(String, u64)> {
        // BEGIN SOLUTION 05.2
        let (actual, size, buffered) = self.file.finish();
        if let Some(expected) = expected {
            digest::verify("blob", expected, &actual)?;
        }
        let tmp = buffered
            .into_inner()
            .map_err(|e| Error::io("write", &self.blobs, e.into_error()))?;
        let path = self.blobs.join(digest::hex_part(&actual)?);
        // Another process may have stored the same blob meanwhile; the
        // content is the same, so either file will do.
        tmp.persist(&path)
            .map_err(|e| Error::io("store blob", &path, e.error))?;
        Ok((actual, size))
        // END SOLUTION
    }
}

/// A reader of a stored blob that checks its digest when it reaches the
/// end: the last read fails with `InvalidData` if the content is damaged.
pub struct BlobReader {
    inner: Option<HashingReader<io::BufReader<File>>>,
    expected: String,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(0);
        };
        let n = inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // BEGIN SOLUTION 05.2
            let (actual, _) = self.inner.take().expect("checked above").finish();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is damaged: its content hashes to {actual}",
                        self.expected
                    ),
                ));
            }
            // END SOLUTION
        }
        Ok(n)
    }
}

/// How a name given on the command line matched an image.
fn id_matches(id: &str, wanted: &str) -> bool {
    let wanted = wanted.strip_prefix("sha256:").unwrap_or(wanted);
    wanted.len() >= 4
        && wanted.bytes().all(|b| b.is_ascii_hexdigit())
        && id.trim_start_matches("sha256:").starts_with(wanted)
}

impl Store {
    /// Opens the store in `dir`, making an empty layout if there is none.
    pub fn open(dir: &Path) -> Result<Store> {
        // BEGIN SOLUTION 05.2
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let store = Store {
            dir: dir.to_path_buf(),
        };
        if !dir.join("index.json").exists() {
            store.write_index(&[])?;
        }
        Ok(store)
        // END SOLUTION
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with this digest lives (whether or not it is there).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self
            .dir
            .join("blobs/sha256")
            .join(digest::hex_part(digest)?))
    }

    /// Whether the store holds the blob.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Starts writing a blob whose digest is known only at the end.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let blobs = self.dir.join("blobs/sha256");
        let tmp = tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&blobs)
            .map_err(io_err("create a temporary file in", &blobs))?;
        Ok(BlobWriter {
            file: HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp)),
            blobs,
        })
    }

    // ANCHOR: put_blob
    /// Stores bytes as a blob and returns their digest. When `expected`
    /// is given and the bytes do not hash to it, nothing is stored.
    pub fn put_blob(&self, data: &[u8], expected: Option<&str>) -> Result<String> {
        // BEGIN SOLUTION 05.2
        let actual = digest::sha256(data);
        if let Some(expected) = expected {
            digest::verify("blob", expected, &actual)?;
        }
        if !self.has_blob(&actual) {
            write_atomic(&self.blob_path(&actual)?, data)?;
        }
        Ok(actual)
        // END SOLUTION
    }

    /// Reads a whole blob, checking that it still hashes to its name.
    pub fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        // BEGIN SOLUTION 05.2
        let path = self.blob_path(digest)?;
        let data = std::fs::read(&path)
            .map_err(|e| Error::io(format!("read blob {digest} at"), &path, e))?;
        digest::verify(
            &format!("stored blob {}", path.display()),
            digest,
            &digest::sha256(&data),
        )?;
        Ok(data)
        // END SOLUTION
    }
    // ANCHOR_END: put_blob

    /// Opens a blob for streaming; the digest is checked at the end.
    pub fn open_blob(&self, digest: &str) -> Result<BlobReader> {
        let path = self.blob_path(digest)?;
        let file =
            File::open(&path).map_err(|e| Error::io(format!("open blob {digest} at"), &path, e))?;
        Ok(BlobReader {
            inner: Some(HashingReader::new(io::BufReader::with_capacity(
                1 << 20,
                file,
            ))),
            expected: digest.to_string(),
        })
    }

    /// The size of a stored blob.
    pub fn blob_size(&self, digest: &str) -> Result<u64> {
        let path = self.blob_path(digest)?;
        Ok(std::fs::metadata(&path)
            .map_err(io_err("stat", &path))?
            .len())
    }

    /// The index's manifest descriptors.
    pub fn descriptors(&self) -> Result<Vec<Descriptor>> {
        let path = self.dir.join("index.json");
        let index = ImageIndex::from_file(&path).map_err(|e| {
            Error::Invalid(format!(
                "{}: {e} (the image index is damaged)",
                path.display()
            ))
        })?;
        Ok(index.manifests().clone())
    }

    fn write_index(&self, manifests: &[Descriptor]) -> Result<()> {
        let mut index = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests.to_vec())
            .build()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        index.set_manifests(manifests.to_vec());
        let text = index
            .to_string_pretty()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(&self.dir.join("index.json"), text.as_bytes())
    }

    /// Runs `change` on the index's descriptors under the store's lock and
    /// writes the result back: one read-modify-write at a time, across
    /// processes.
    pub fn update_index<T>(
        &self,
        change: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>,
    ) -> Result<T> {
        let lock_path = self.dir.join("index.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        // SAFETY: flock on a file we hold open; the lock goes with the fd.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
            return Err(Error::io("lock", &lock_path, io::Error::last_os_error()));
        }
        let mut manifests = self.descriptors()?;
        let out = change(&mut manifests)?;
        self.write_index(&manifests)?;
        Ok(out)
    }

    /// Stores `config` and a manifest listing it and `layers` (already
    /// stored), and lists the manifest in the index without a name.
    /// Returns the image; name it with [`Store::tag`].
    pub fn put_image(&self, config: &ImageConfiguration, layers: Vec<Descriptor>) -> Result<Image> {
        // Through a JSON value, whose maps keep their keys sorted: the
        // config's labels are a hash map, and the same config must give the
        // same bytes (and so the same id) every time.
        let value = serde_json::to_value(config).map_err(|e| Error::Invalid(e.to_string()))?;
        self.put_image_json(&value, layers)
    }

    /// [`Store::put_image`] for a config given as JSON: the way to keep
    /// fields the OCI config does not define, such as Docker's
    /// `Healthcheck`. It must still read as an OCI image config.
    pub fn put_image_json(
        &self,
        config: &serde_json::Value,
        layers: Vec<Descriptor>,
    ) -> Result<Image> {
        serde_json::from_value::<ImageConfiguration>(config.clone())
            .map_err(|e| Error::Invalid(format!("not an image config: {e}")))?;
        let config_bytes =
            serde_json::to_string(config).map_err(|e| Error::Invalid(e.to_string()))?;
        let config_digest = self.put_blob(config_bytes.as_bytes(), None)?;
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                parse_digest(&config_digest)?,
            ))
            .layers(layers)
            .build()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let bytes = manifest
            .to_string()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.add_manifest(bytes.as_bytes(), MediaType::ImageManifest)
    }

    /// Stores a manifest whose config and layers are already in the store
    /// (a pull, a load) and lists it in the index without a name. The bytes
    /// are kept as they are, so the digest stays the one the registry
    /// gave. Refuses a manifest whose blobs are missing.
    pub fn add_manifest(&self, bytes: &[u8], media_type: MediaType) -> Result<Image> {
        let manifest = ImageManifest::from_reader(bytes)
            .map_err(|e| Error::Invalid(format!("malformed image manifest: {e}")))?;
        for desc in std::iter::once(manifest.config()).chain(manifest.layers()) {
            if !self.has_blob(desc.digest().as_ref()) {
                return Err(Error::Invalid(format!(
                    "the manifest lists blob {} that is not in the store",
                    desc.digest()
                )));
            }
        }
        let digest = self.put_blob(bytes, None)?;
        self.update_index(|manifests| {
            if !manifests.iter().any(|d| d.digest().as_ref() == digest) {
                manifests.push(Descriptor::new(
                    media_type,
                    bytes.len() as u64,
                    parse_digest(&digest)?,
                ));
            }
            Ok(())
        })?;
        self.image(&digest)
    }

    /// Loads the image whose manifest has this digest.
    pub fn image(&self, manifest_digest: &str) -> Result<Image> {
        let names = self
            .descriptors()?
            .iter()
            .filter(|d| d.digest().as_ref() == manifest_digest)
            .filter_map(ref_name)
            .collect();
        let cached = self
            .descriptors()?
            .iter()
            .any(|d| d.digest().as_ref() == manifest_digest && cache_key(d).is_some());
        let mut image = self.load(manifest_digest, names)?;
        image.cached = cached;
        Ok(image)
    }

    fn load(&self, manifest_digest: &str, mut names: Vec<String>) -> Result<Image> {
        let manifest = ImageManifest::from_reader(&self.get_blob(manifest_digest)?[..])
            .map_err(|e| Error::Invalid(format!("manifest {manifest_digest}: {e}")))?;
        let id = manifest.config().digest().to_string();
        let config = ImageConfiguration::from_reader(&self.get_blob(&id)?[..])
            .map_err(|e| Error::Invalid(format!("config {id}: {e}")))?;
        names.sort();
        names.dedup();
        Ok(Image {
            id,
            digest: manifest_digest.to_string(),
            manifest,
            config,
            names,
            cached: false,
        })
    }

    // ANCHOR: list
    /// Every image in the store, one entry per manifest, with all its names.
    pub fn list(&self) -> Result<Vec<Image>> {
        let mut by_manifest: BTreeMap<String, (Vec<String>, bool)> = BTreeMap::new();
        for d in self.descriptors()? {
            let (names, cached) = by_manifest.entry(d.digest().to_string()).or_default();
            names.extend(ref_name(&d));
            *cached |= cache_key(&d).is_some();
        }
        by_manifest
            .into_iter()
            .map(|(digest, (names, cached))| {
                let mut image = self.load(&digest, names)?;
                image.cached = cached;
                Ok(image)
            })
            .collect()
    }

    /// Finds an image by name (`busybox`, `busybox:1`, `app@sha256:…`), by
    /// id or a prefix of it of four or more digits, or by manifest digest.
    pub fn find(&self, wanted: &str) -> Result<Option<Image>> {
        // BEGIN SOLUTION 05.2
        let images = self.list()?;
        if let Ok(r) = Reference::parse(wanted) {
            if let Some(d) = r.digest() {
                let found = images.iter().find(|i| i.digest == d || i.id == d);
                return Ok(found.cloned());
            }
            let full = r.to_string();
            if let Some(i) = images.iter().find(|i| i.names.contains(&full)) {
                return Ok(Some(i.clone()));
            }
        }
        let matching: Vec<&Image> = images
            .iter()
            .filter(|i| id_matches(&i.id, wanted) || wanted == i.digest)
            .collect();
        match matching[..] {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            _ if matching.iter().all(|i| i.id == matching[0].id) => Ok(Some(matching[0].clone())),
            _ => Err(Error::Invalid(format!(
                "{wanted:?} matches {} images: give more digits of the id",
                matching.len()
            ))),
        }
        // END SOLUTION
    }
    // ANCHOR_END: list

    // ANCHOR: tag
    /// Points `name` at the manifest `manifest_digest`. The image that had
    /// the name before keeps existing: without other names it becomes
    /// dangling (`<none>`), since containers may still use it.
    pub fn tag(&self, name: &Reference, manifest_digest: &str) -> Result<()> {
        // BEGIN SOLUTION 05.2
        if name.digest().is_some() {
            return Err(Error::Invalid(format!(
                "cannot tag {name}: a name with a digest is fixed; give a tag instead"
            )));
        }
        let full = name.to_string();
        self.update_index(|manifests| {
            let Some(template) = manifests
                .iter()
                .find(|d| d.digest().as_ref() == manifest_digest)
                .cloned()
            else {
                return Err(Error::Invalid(format!(
                    "no image with manifest {manifest_digest}"
                )));
            };
            let before = manifests.clone();
            manifests.retain(|d| ref_name(d).as_deref() != Some(full.as_str()));
            // An image that just lost its last name stays, unnamed.
            for old in before
                .iter()
                .filter(|d| ref_name(d).as_deref() == Some(full.as_str()))
            {
                if !manifests.iter().any(|d| d.digest() == old.digest()) {
                    let mut unnamed = old.clone();
                    unnamed.set_annotations(None);
                    manifests.push(unnamed);
                }
            }
            // The manifest itself is now named: drop its unnamed entry (but
            // not a build cache entry).
            manifests.retain(|d| {
                d.digest().as_ref() != manifest_digest
                    || ref_name(d).is_some()
                    || cache_key(d).is_some()
            });
            let mut named = template;
            named.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), full.clone())])));
            manifests.push(named);
            Ok(())
        })
        // END SOLUTION
    }

    /// Removes one name. Returns the manifest it pointed at and whether the
    /// image has other names left; an image without names is not deleted
    /// here (see [`Store::delete`]), it stays as a dangling entry.
    pub fn untag(&self, name: &Reference) -> Result<Option<(String, bool)>> {
        // BEGIN SOLUTION 05.2
        let full = name.to_string();
        self.update_index(|manifests| {
            let Some(pos) = manifests
                .iter()
                .position(|d| ref_name(d).as_deref() == Some(full.as_str()))
            else {
                return Ok(None);
            };
            let removed = manifests.remove(pos);
            let others = manifests
                .iter()
                .any(|d| d.digest() == removed.digest() && ref_name(d).is_some());
            let listed = manifests.iter().any(|d| d.digest() == removed.digest());
            if !listed {
                let mut unnamed = removed.clone();
                unnamed.set_annotations(None);
                manifests.push(unnamed);
            }
            Ok(Some((removed.digest().to_string(), others)))
        })
        // END SOLUTION
    }
    // ANCHOR_END: tag

    /// Removes images (by manifest digest) from the index, names and all.
    /// Their blobs stay until [`Store::collect_garbage`].
    pub fn delete(&self, manifest_digests: &BTreeSet<String>) -> Result<()> {
        self.update_index(|manifests| {
            manifests.retain(|d| !manifest_digests.contains(d.digest().as_ref()));
            Ok(())
        })
    }

    /// The image a build step with this cache key made before, if the
    /// store still has it.
    pub fn cache_get(&self, key: &str) -> Result<Option<Image>> {
        let found = self
            .descriptors()?
            .into_iter()
            .find(|d| cache_key(d).as_deref() == Some(key));
        found.map(|d| self.image(d.digest().as_ref())).transpose()
    }

    /// Records that the build step with this cache key made the image with
    /// this manifest.
    pub fn cache_put(&self, key: &str, manifest_digest: &str) -> Result<()> {
        self.update_index(|manifests| {
            let Some(template) = manifests
                .iter()
                .find(|d| d.digest().as_ref() == manifest_digest)
                .cloned()
            else {
                return Err(Error::Invalid(format!(
                    "no image with manifest {manifest_digest}"
                )));
            };
            manifests.retain(|d| cache_key(d).as_deref() != Some(key));
            // The unnamed entry of the manifest becomes the cache entry.
            manifests.retain(|d| {
                d.digest().as_ref() != manifest_digest
                    || ref_name(d).is_some()
                    || cache_key(d).is_some()
            });
            let mut entry = template;
            entry.set_annotations(Some(HashMap::from([(
                CACHE_KEY.to_string(),
                key.to_string(),
            )])));
            manifests.push(entry);
            Ok(())
        })
    }

    /// Forgets every build cache entry (`berth builder prune`). An image
    /// that was only in the cache stays, unnamed (dangling), for the
    /// caller to prune. Returns how many entries there were.
    pub fn cache_clear(&self) -> Result<usize> {
        self.update_index(|manifests| {
            let cached: Vec<Descriptor> = manifests
                .iter()
                .filter(|d| cache_key(d).is_some())
                .cloned()
                .collect();
            manifests.retain(|d| cache_key(d).is_none());
            for d in &cached {
                if !manifests.iter().any(|m| m.digest() == d.digest()) {
                    let mut unnamed = d.clone();
                    unnamed.set_annotations(None);
                    manifests.push(unnamed);
                }
            }
            Ok(cached.len())
        })
    }

    // ANCHOR: gc
    /// Deletes every blob no image in the index reaches, and temporary
    /// files of writes that never finished; returns the bytes freed. A
    /// layer shared by two images stays while either remains.
    pub fn collect_garbage(&self) -> Result<u64> {
        // BEGIN SOLUTION 05.2
        let mut reachable = BTreeSet::new();
        for image in self.list()? {
            reachable.insert(image.digest.clone());
            reachable.insert(image.id.clone());
            for layer in image.manifest.layers() {
                reachable.insert(layer.digest().to_string());
            }
        }
        let blobs = self.dir.join("blobs/sha256");
        let mut freed = 0;
        for entry in std::fs::read_dir(&blobs)
            .map_err(io_err("read", &blobs))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            let stale_tmp = name.starts_with('.')
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 24 * 3600));
            if stale_tmp
                || (!name.starts_with('.') && !reachable.contains(&format!("sha256:{name}")))
            {
                freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(entry.path()).map_err(io_err("remove", &entry.path()))?;
            }
        }
        Ok(freed)
        // END SOLUTION
    }
    // ANCHOR_END: gc
}

/// The build cache key a descriptor records, if any.
pub fn cache_key(d: &Descriptor) -> Option<String> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(CACHE_KEY))
        .cloned()
}

/// The name a descriptor gives its manifest, if any.
pub fn ref_name(d: &Descriptor) -> Option<String> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .cloned()
}

/// A digest string as oci-spec's type.
pub fn parse_digest(digest: &str) -> Result<oci_spec::image::Digest> {
    digest::hex_part(digest)?;
    digest
        .parse()
        .map_err(|e| Error::Invalid(format!("digest {digest}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder, RootFsBuilder};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    /// An image of one (fake) layer whose bytes are `content`.
    fn image(store: &Store, content: &[u8], cmd: &str) -> Image {
        let layer = store.put_blob(content, None).unwrap();
        let config = ImageConfigurationBuilder::default()
            .architecture(oci_spec::image::Arch::Amd64)
            .os(oci_spec::image::Os::Linux)
            .config(
                ConfigBuilder::default()
                    .cmd(vec![cmd.to_string()])
                    .build()
                    .unwrap(),
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![layer.clone()])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let desc = Descriptor::new(
            MediaType::ImageLayer,
            content.len() as u64,
            parse_digest(&layer).unwrap(),
        );
        store.put_image(&config, vec![desc]).unwrap()
    }

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn the_layout_is_what_oci_tools_expect() {
        let (dir, _store) = store();
        let layout: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("oci-layout")).unwrap()).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(
            (
                index["schemaVersion"].as_u64(),
                index["manifests"].as_array().map(Vec::len)
            ),
            (Some(2), Some(0))
        );
        assert!(dir.path().join("blobs/sha256").is_dir());
    }

    #[test]
    fn blobs_are_named_by_their_digest_and_checked_both_ways() {
        let (_dir, store) = store();
        let d = store.put_blob(b"hello", None).unwrap();
        assert_eq!(d, digest::sha256(b"hello"));
        assert_eq!(store.get_blob(&d).unwrap(), b"hello");
        // Wrong content for a digest: refused, nothing stored.
        let other = digest::sha256(b"other");
        let e = store.put_blob(b"hello!", Some(&other)).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert!(!store.has_blob(&other));
        // Damage on disk is found on read, whole or streamed.
        std::fs::write(store.blob_path(&d).unwrap(), b"jello").unwrap();
        let e = store.get_blob(&d).unwrap_err().to_string();
        assert!(e.contains("hashes to"), "{e}");
        let mut out = Vec::new();
        let e = store
            .open_blob(&d)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_streamed_blob_enters_the_store_only_when_it_matches() {
        let (dir, store) = store();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"layer bytes").unwrap();
        let expected = digest::sha256(b"layer bytes");
        assert_eq!(w.commit(Some(&expected)).unwrap(), (expected.clone(), 11));
        assert!(store.has_blob(&expected));
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"truncated").unwrap();
        let wanted = digest::sha256(b"truncated but longer");
        assert!(w.commit(Some(&wanted)).is_err());
        assert!(!store.has_blob(&wanted));
        let left: Vec<_> = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            left,
            vec![expected.trim_start_matches("sha256:").to_string()]
        );
    }

    #[test]
    fn tags_name_images_and_a_moved_tag_leaves_a_dangling_image() {
        let (_dir, store) = store();
        let one = image(&store, b"one", "one");
        store.tag(&r("app:1"), &one.digest).unwrap();
        store.tag(&r("app"), &one.digest).unwrap();
        let found = store.find("app:1").unwrap().unwrap();
        assert_eq!(
            found.names,
            ["docker.io/library/app:1", "docker.io/library/app:latest"]
        );
        assert_eq!(
            store.find(one.short_id()).unwrap().unwrap().digest,
            one.digest
        );
        assert_eq!(
            store
                .find(&format!("app@{}", one.digest))
                .unwrap()
                .unwrap()
                .id,
            one.id
        );

        // `latest` moves to a new image: the old one keeps `1`.
        let two = image(&store, b"two", "two");
        store.tag(&r("app"), &two.digest).unwrap();
        assert_eq!(store.find("app").unwrap().unwrap().id, two.id);
        assert_eq!(
            store.image(&one.digest).unwrap().names,
            ["docker.io/library/app:1"]
        );
        // `1` moves too: the first image has no name left, but stays.
        store.tag(&r("app:1"), &two.digest).unwrap();
        let all = store.list().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            store.image(&one.digest).unwrap().names,
            Vec::<String>::new()
        );
        assert!(store.find("nope").unwrap().is_none());
    }

    #[test]
    fn untag_then_delete_then_collect_keeps_shared_blobs() {
        let (_dir, store) = store();
        let one = image(&store, b"shared layer", "one");
        let two = image(&store, b"shared layer", "two");
        assert_ne!(one.id, two.id);
        store.tag(&r("one"), &one.digest).unwrap();
        store.tag(&r("two"), &two.digest).unwrap();
        assert_eq!(
            store.untag(&r("one")).unwrap(),
            Some((one.digest.clone(), false))
        );
        assert_eq!(store.untag(&r("one")).unwrap(), None);
        store.delete(&BTreeSet::from([one.digest.clone()])).unwrap();
        let freed = store.collect_garbage().unwrap();
        assert!(freed > 0);
        assert!(!store.has_blob(&one.digest) && !store.has_blob(&one.id));
        // The layer both images had stays for the second.
        assert!(store.has_blob(&two.diff_ids()[0]));
        assert_eq!(store.find("two").unwrap().unwrap().id, two.id);
    }

    #[test]
    fn concurrent_tagging_loses_no_name() {
        let (_dir, store) = store();
        let img = image(&store, b"x", "x");
        let dir = store.dir().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (dir, digest) = (dir.clone(), img.digest.clone());
                std::thread::spawn(move || {
                    let store = Store::open(&dir).unwrap();
                    store.tag(&r(&format!("app:{i}")), &digest).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.image(&img.digest).unwrap().names.len(), 8);
    }

    #[test]
    fn a_manifest_with_missing_blobs_is_refused() {
        let (_dir, store) = store();
        let img = image(&store, b"x", "x");
        let bytes = store.get_blob(&img.digest).unwrap();
        std::fs::remove_file(store.blob_path(&img.diff_ids()[0]).unwrap()).unwrap();
        let e = store
            .add_manifest(&bytes, MediaType::ImageManifest)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in the store"), "{e}");
    }
}
