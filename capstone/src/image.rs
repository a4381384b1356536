//! Images, for now: one store in the OCI image layout, and a base image that
//! berth makes from the host's own busybox. Lab 05 adds pulling, pushing,
//! building and the rest; it extends this store rather than replacing it.
//!
//! The layout (see the OCI image-layout specification):
//! `images/oci-layout`, `images/index.json` listing the manifests by name,
//! and `images/blobs/sha256/<digest>` holding manifests, configs and layers,
//! each named by the SHA-256 of its bytes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::{
    ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder,
    ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};

use crate::state::write_atomic;

/// The annotation that names a manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A parsed image reference: `[registry/][namespace/]repository[:tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

impl Reference {
    /// Parses a reference with Docker's defaults: no registry means
    /// `docker.io`, a single-part name there lives in `library/`, and no tag
    /// means `latest`. So `busybox` is `docker.io/library/busybox:latest`.
    pub fn parse(s: &str) -> Result<Reference> {
        let invalid = || {
            anyhow!("invalid reference format: {s:?} (expected [registry/]name[:tag], lower case)")
        };
        if s.is_empty()
            || s.contains('@')
            || s.chars()
                .any(|c| c.is_ascii_uppercase() || c.is_whitespace())
        {
            return Err(invalid());
        }
        let (name, tag) = match s.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t.to_string()),
            _ => (s, "latest".to_string()),
        };
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        let mut parts: Vec<&str> = name.split('/').collect();
        let registry = if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            parts.remove(0).to_string()
        } else {
            "docker.io".to_string()
        };
        if !tag_ok
            || parts.iter().any(|p| {
                p.is_empty()
                    || !p
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            })
        {
            return Err(invalid());
        }
        let mut repository = parts.join("/");
        if registry == "docker.io" && parts.len() == 1 {
            repository = format!("library/{repository}");
        }
        Ok(Reference {
            registry,
            repository,
            tag,
        })
    }

    /// The short form Docker shows: `busybox:latest`, `localhost:5000/app:1`.
    pub fn familiar(&self) -> String {
        let repo = if self.registry == "docker.io" {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        format!("{repo}:{}", self.tag)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

/// An image found in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config digest, `sha256:…`: the image id.
    pub id: String,
    pub config: ImageConfiguration,
    pub manifest: ImageManifest,
}

/// What the history of an image records about a layer added to it.
pub struct LayerInfo {
    pub created_by: String,
    pub author: Option<String>,
    pub comment: Option<String>,
    /// Where the unpacked layer keeps overlay's attributes.
    pub xattr: overlay::whiteout::Xattr,
}

/// The image store.
pub struct ImageStore {
    dir: PathBuf,
    layers: PathBuf,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl ImageStore {
    /// Opens the store under the engine root, creating the layout if new.
    pub fn open(root: &Path) -> Result<ImageStore> {
        let dir = root.join("images");
        std::fs::create_dir_all(dir.join("blobs/sha256"))?;
        let layers = root.join("layers");
        std::fs::create_dir_all(&layers)?;
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = dir.join("index.json");
        if !index.exists() {
            let empty = ImageIndexBuilder::default()
                .schema_version(2u32)
                .manifests(vec![])
                .build()?;
            write_atomic(&index, empty.to_string_pretty()?.as_bytes())?;
        }
        Ok(ImageStore { dir, layers })
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| anyhow!("unsupported digest {digest:?}"))?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    /// Stores a blob under its digest and returns the digest.
    pub fn put_blob(&self, data: &[u8]) -> Result<String> {
        let digest = sha256_digest(data);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            write_atomic(&path, data)?;
        }
        Ok(digest)
    }

    /// Reads a blob and checks that its content still matches its name.
    pub fn get_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let data = std::fs::read(&path).with_context(|| format!("missing blob {digest}"))?;
        let actual = sha256_digest(&data);
        if actual != digest {
            bail!("blob {digest} is corrupt: its content hashes to {actual}");
        }
        Ok(data)
    }

    fn index(&self) -> Result<ImageIndex> {
        Ok(ImageIndex::from_file(self.dir.join("index.json"))?)
    }

    /// Finds an image by name (`busybox`, `busybox:latest`) or id prefix.
    pub fn find(&self, name: &str) -> Result<Option<Image>> {
        let index = self.index()?;
        let by_name = Reference::parse(name).ok().map(|r| r.to_string());
        for desc in index.manifests() {
            let ref_name = desc.annotations().as_ref().and_then(|a| a.get(REF_NAME));
            let manifest = ImageManifest::from_reader(&self.get_blob(desc.digest().as_ref())?[..])?;
            let id = manifest.config().digest().to_string();
            let id_match = name.len() >= 4
                && (id == name
                    || id
                        .trim_start_matches("sha256:")
                        .starts_with(name.trim_start_matches("sha256:")));
            if ref_name.is_some() && ref_name == by_name.as_ref() || id_match {
                let config = ImageConfiguration::from_reader(&self.get_blob(&id)?[..])?;
                return Ok(Some(Image {
                    id,
                    config,
                    manifest,
                }));
            }
        }
        Ok(None)
    }

    /// Records `manifest_digest` under `reference` in the index, replacing
    /// whatever the name pointed to before.
    fn tag(&self, reference: &Reference, manifest: Descriptor) -> Result<()> {
        let mut index = self.index()?;
        let name = reference.to_string();
        let mut manifests: Vec<Descriptor> = Vec::new();
        for d in index.manifests() {
            if d.annotations().as_ref().and_then(|a| a.get(REF_NAME)) != Some(&name) {
                manifests.push(d.clone());
            } else if d.digest() != manifest.digest()
                && !index
                    .manifests()
                    .iter()
                    .any(|o| o.digest() == d.digest() && o != d)
            {
                // The image that had this name keeps existing, unnamed
                // (Docker's <none>): containers may still use it.
                let mut old = d.clone();
                old.set_annotations(None);
                manifests.push(old);
            }
        }
        manifests.retain(|d| {
            d.digest() != manifest.digest()
                || d.annotations()
                    .as_ref()
                    .is_some_and(|a| a.contains_key(REF_NAME))
        });
        let mut desc = manifest;
        desc.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), name)])));
        manifests.push(desc);
        index.set_manifests(manifests);
        write_atomic(
            &self.dir.join("index.json"),
            index.to_string_pretty()?.as_bytes(),
        )
    }

    // ANCHOR: base_image
    /// Makes an image from the host's programs (see `namespaces::host`) and
    /// stores it under `reference`: one gzip-compressed layer, a config with
    /// `PATH` and `sh` as the default command, a manifest, an index entry.
    pub fn create_from_host(&self, reference: &Reference) -> Result<Image> {
        let staging = tempfile::Builder::new()
            .prefix(".base-")
            .tempdir_in(&self.layers)?;
        let source = namespaces::host::populate_rootfs(staging.path())?;
        // The same packing as a container's layer (lab 03): sorted entries
        // and fixed times, so equal content gives an equal digest.
        let tar = overlay::layer::tar_upper(
            staging.path(),
            &overlay::layer::TarOptions::reproducible(),
            overlay::whiteout::Xattr::Trusted,
        )?;
        let (diff_id, layer) = self.put_layer(&tar)?;

        let made_from = match &source {
            namespaces::host::Source::Busybox(p, n) => {
                format!("busybox from the host ({}, {n} applets)", p.display())
            }
            namespaces::host::Source::HostTools(t) => {
                format!("{} host tools with their libraries", t.len())
            }
        };
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let config = ImageConfigurationBuilder::default()
            .architecture(oci_spec::image::Arch::Amd64)
            .os(oci_spec::image::Os::Linux)
            .created(created.clone())
            .config(
                ConfigBuilder::default()
                    .env(vec![format!("PATH={}", namespaces::config::DEFAULT_PATH)])
                    .cmd(vec!["sh".to_string()])
                    .build()?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id.clone()])
                    .build()?,
            )
            .history(vec![
                HistoryBuilder::default()
                    .created(created)
                    .created_by(format!("berth: {made_from}"))
                    .build()?,
            ])
            .build()?;
        let image = self.put_image(config, vec![layer], Some(reference))?;
        // The staging directory is exactly the unpacked layer: keep it.
        let unpacked = self.layer_path(&diff_id)?;
        if !unpacked.exists() {
            std::fs::rename(staging.keep(), &unpacked)?;
        }
        Ok(image)
    }
    // ANCHOR_END: base_image

    // ANCHOR: add_layer
    /// Stores a new image made of `base`'s layers plus `tar` on top, with
    /// `config` as its runtime configuration (`berth commit`). The layer is
    /// stored compressed, as registries want it, and unpacked at once in
    /// overlay's format, ready to be a lower layer.
    pub fn add_layer(
        &self,
        base: &Image,
        tar: &[u8],
        config: oci_spec::image::Config,
        info: LayerInfo,
        reference: Option<&Reference>,
    ) -> Result<Image> {
        let (diff_id, layer) = self.put_layer(tar)?;
        if !self.layer_path(&diff_id)?.exists() {
            self.unpack(tar, &diff_id, info.xattr)?;
        }

        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let mut image_config = base.config.clone();
        image_config.set_config(Some(config));
        image_config.set_created(Some(created.clone()));
        image_config.set_author(info.author.clone());
        let mut diff_ids = image_config.rootfs().diff_ids().clone();
        diff_ids.push(diff_id);
        image_config.set_rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()?,
        );
        let mut history = image_config.history().clone().unwrap_or_default();
        let mut entry = HistoryBuilder::default()
            .created(created)
            .created_by(info.created_by)
            .build()?;
        entry.set_author(info.author);
        entry.set_comment(info.comment);
        history.push(entry);
        image_config.set_history(Some(history));
        let mut layers = base.manifest.layers().clone();
        layers.push(layer);
        self.put_image(image_config, layers, reference)
    }
    // ANCHOR_END: add_layer

    /// Stores a layer tarball compressed (as registries want it); returns
    /// its diff id (the digest of the uncompressed tar) and its descriptor.
    fn put_layer(&self, tar: &[u8]) -> Result<(String, Descriptor)> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar)?;
        let compressed = gz.finish()?;
        let digest = self.put_blob(&compressed)?;
        let desc = Descriptor::new(
            MediaType::ImageLayerGzip,
            compressed.len() as u64,
            digest.parse::<oci_spec::image::Digest>()?,
        );
        Ok((sha256_digest(tar), desc))
    }

    /// Stores an image's config and manifest and lists it in the index,
    /// under `reference` or unnamed.
    fn put_image(
        &self,
        config: ImageConfiguration,
        layers: Vec<Descriptor>,
        reference: Option<&Reference>,
    ) -> Result<Image> {
        let config_bytes = config.to_string()?.into_bytes();
        let config_digest = self.put_blob(&config_bytes)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                config_digest.parse::<oci_spec::image::Digest>()?,
            ))
            .layers(layers)
            .build()?;
        let manifest_bytes = manifest.to_string()?.into_bytes();
        let manifest_digest = self.put_blob(&manifest_bytes)?;
        let desc = Descriptor::new(
            MediaType::ImageManifest,
            manifest_bytes.len() as u64,
            manifest_digest.parse::<oci_spec::image::Digest>()?,
        );
        match reference {
            Some(r) => self.tag(r, desc)?,
            None => self.add_untagged(desc)?,
        }
        Ok(Image {
            id: config_digest,
            config,
            manifest,
        })
    }

    /// Unpacks a layer in overlay's format (OCI `.wh.NAME` become 0/0
    /// devices) into its place under `layers/`. Another berth may have
    /// unpacked the same layer meanwhile: theirs is as good as ours.
    fn unpack(
        &self,
        layer: impl Read,
        diff_id: &str,
        xattr: overlay::whiteout::Xattr,
    ) -> Result<PathBuf> {
        let dir = self.layer_path(diff_id)?;
        let staging = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&self.layers)?;
        overlay::layer::apply(
            layer,
            staging.path(),
            overlay::layer::Target::Overlay(xattr),
        )
        .with_context(|| format!("cannot unpack layer {diff_id}"))?;
        if let Err(e) = std::fs::rename(staging.path(), &dir)
            && !dir.is_dir()
        {
            return Err(e).with_context(|| format!("cannot store layer {diff_id}"));
        }
        Ok(dir)
    }

    /// Lists a manifest in the index without a name (a "dangling" image,
    /// found by its id).
    fn add_untagged(&self, manifest: Descriptor) -> Result<()> {
        let mut index = self.index()?;
        let mut manifests = index.manifests().clone();
        if !manifests.iter().any(|d| d.digest() == manifest.digest()) {
            manifests.push(manifest);
        }
        index.set_manifests(manifests);
        write_atomic(
            &self.dir.join("index.json"),
            index.to_string_pretty()?.as_bytes(),
        )
    }

    /// Every image in the store with its name, if it has one.
    pub fn list(&self) -> Result<Vec<(Option<String>, Image)>> {
        let mut out = Vec::new();
        for desc in self.index()?.manifests() {
            let name = desc
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .cloned();
            let manifest = ImageManifest::from_reader(&self.get_blob(desc.digest().as_ref())?[..])?;
            let id = manifest.config().digest().to_string();
            let config = ImageConfiguration::from_reader(&self.get_blob(&id)?[..])?;
            out.push((
                name,
                Image {
                    id,
                    config,
                    manifest,
                },
            ));
        }
        Ok(out)
    }

    // ANCHOR: remove_images
    /// Removes the images with these ids from the index, then every blob
    /// and unpacked layer no remaining image refers to. Layers are shared,
    /// so a layer stays as long as one image still lists it. Returns the
    /// bytes freed.
    pub fn remove_images(&self, ids: &std::collections::BTreeSet<String>) -> Result<u64> {
        let mut index = self.index()?;
        let mut keep = Vec::new();
        for desc in index.manifests() {
            let manifest = ImageManifest::from_reader(&self.get_blob(desc.digest().as_ref())?[..])?;
            if !ids.contains(&manifest.config().digest().to_string()) {
                keep.push(desc.clone());
            }
        }
        index.set_manifests(keep);
        write_atomic(
            &self.dir.join("index.json"),
            index.to_string_pretty()?.as_bytes(),
        )?;
        // What the remaining images still reach.
        let mut blobs = std::collections::BTreeSet::new();
        let mut layers = std::collections::BTreeSet::new();
        for (_, image) in self.list()? {
            for desc in image.manifest.layers() {
                blobs.insert(desc.digest().to_string());
            }
            blobs.insert(image.id.clone());
            for d in image.config.rootfs().diff_ids() {
                layers.insert(d.trim_start_matches("sha256:").to_string());
            }
        }
        for desc in self.index()?.manifests() {
            blobs.insert(desc.digest().to_string());
        }
        let mut freed = 0;
        for entry in std::fs::read_dir(self.dir.join("blobs/sha256"))?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with('.') && !blobs.contains(&format!("sha256:{name}")) {
                freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(entry.path())?;
            }
        }
        for entry in std::fs::read_dir(&self.layers)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with('.') && !layers.contains(&name) {
                freed += crate::disk::usage(&entry.path());
                crate::ops::remove_tree(&entry.path());
            }
        }
        Ok(freed)
    }
    // ANCHOR_END: remove_images

    /// Where the layer with this diff id is (or will be) unpacked.
    pub fn layer_path(&self, diff_id: &str) -> Result<PathBuf> {
        let hex = diff_id
            .strip_prefix("sha256:")
            .ok_or_else(|| anyhow!("bad diff id {diff_id}"))?;
        Ok(self.layers.join(hex))
    }

    /// The unpacked content of layer `index` of `image`, unpacking it the
    /// first time it is needed.
    pub fn unpacked_layer(&self, image: &Image, index: usize) -> Result<PathBuf> {
        let diff_id = &image.config.rootfs().diff_ids()[index];
        let dir = self.layer_path(diff_id)?;
        if dir.exists() {
            return Ok(dir);
        }
        let desc = &image.manifest.layers()[index];
        let blob = self.get_blob(desc.digest().as_ref())?;
        let reader: Box<dyn Read> = if desc.media_type() == &MediaType::ImageLayerGzip {
            Box::new(flate2::read::GzDecoder::new(&blob[..]))
        } else {
            Box::new(&blob[..])
        };
        let xattr = crate::storage::storage_xattr(!nix::unistd::geteuid().is_root());
        self.unpack(reader, diff_id, xattr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_dockers_defaults() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse("localhost:5000/team/app:1.2").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("localhost:5000", "team/app", "1.2")
        );
        assert_eq!(r.familiar(), "localhost:5000/team/app:1.2");
        assert_eq!(
            Reference::parse("me/app").unwrap().to_string(),
            "docker.io/me/app:latest"
        );
        for bad in ["", "Busybox", "a b", "app:", "app:t@x", "/app", "app//x"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
