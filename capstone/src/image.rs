//! Images (lab 05): the engine's image store is the lab's OCI image layout
//! under `ROOT/images`, plus the unpacked layers under `ROOT/layers`, one
//! directory per diff id, ready to be overlay's lower layers. The built-in
//! base image berth makes from the host's own busybox is an ordinary image
//! of this store.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use oci_spec::image::{
    ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder,
    MediaType, RootFsBuilder,
};

pub use images::reference::Reference;
pub use images::store::Image;

/// What the history of an image records about a layer added to it.
pub struct LayerInfo {
    pub created_by: String,
    pub author: Option<String>,
    pub comment: Option<String>,
    /// Where the unpacked layer keeps overlay's attributes.
    pub xattr: overlay::whiteout::Xattr,
    /// A new `Healthcheck` (Docker's field of the config, which the OCI
    /// config lacks), from HEALTHCHECK; `None` keeps the base image's.
    pub healthcheck: Option<serde_json::Value>,
}

/// The image store: blobs and names (the lab's [`images::store::Store`])
/// and the unpacked layers.
pub struct ImageStore {
    blobs: images::store::Store,
    layers: PathBuf,
}

impl ImageStore {
    /// Opens the store under the engine root, creating the layout if new.
    pub fn open(root: &Path) -> Result<ImageStore> {
        let blobs = images::store::Store::open(&root.join("images"))?;
        let layers = root.join("layers");
        std::fs::create_dir_all(&layers)?;
        Ok(ImageStore { blobs, layers })
    }

    /// The blob store and its index of names.
    pub fn blobs(&self) -> &images::store::Store {
        &self.blobs
    }

    /// Finds an image by name (`busybox`, `busybox:latest`), id or id prefix.
    pub fn find(&self, name: &str) -> Result<Option<Image>> {
        Ok(self.blobs.find(name)?)
    }

    /// Every image in the store, with its names.
    pub fn list(&self) -> Result<Vec<Image>> {
        Ok(self.blobs.list()?)
    }

    /// Points `reference` at `image`.
    pub fn tag(&self, reference: &Reference, image: &Image) -> Result<()> {
        Ok(self.blobs.tag(reference, &image.digest)?)
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
        let image = self.put_image(&config, vec![layer], Some(reference))?;
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
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let image = self.derive(base, Some((tar, info.xattr)), config, &created, &info)?;
        match reference {
            Some(r) => {
                self.blobs.tag(r, &image.digest)?;
                Ok(self.blobs.image(&image.digest)?)
            }
            None => Ok(image),
        }
    }
    // ANCHOR_END: add_layer

    /// One more image on `base`: `config` in place of the base's runtime
    /// configuration, one more history entry (created at `created`, an
    /// RFC 3339 time), and one more layer if `layer` is given. Without a
    /// layer the history entry is marked empty, as Docker marks ENV or CMD.
    /// The new image is unnamed.
    pub fn derive(
        &self,
        base: &Image,
        layer: Option<(&[u8], overlay::whiteout::Xattr)>,
        config: oci_spec::image::Config,
        created: &str,
        info: &LayerInfo,
    ) -> Result<Image> {
        let mut image_config = base.config.clone();
        image_config.set_config(Some(config));
        image_config.set_created(Some(created.to_string()));
        image_config.set_author(info.author.clone());
        let mut layers = base.manifest.layers().clone();
        if let Some((tar, xattr)) = layer {
            let (diff_id, desc) = self.put_layer(tar)?;
            if !self.layer_path(&diff_id)?.exists() {
                self.unpack(tar, &diff_id, xattr)?;
            }
            let mut diff_ids = image_config.rootfs().diff_ids().clone();
            diff_ids.push(diff_id);
            image_config.set_rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(diff_ids)
                    .build()?,
            );
            layers.push(desc);
        }
        let mut history = image_config.history().clone().unwrap_or_default();
        let mut entry = HistoryBuilder::default()
            .created(created.to_string())
            .created_by(info.created_by.clone())
            .build()?;
        entry.set_author(info.author.clone());
        entry.set_comment(info.comment.clone());
        if layer.is_none() {
            entry.set_empty_layer(Some(true));
        }
        history.push(entry);
        image_config.set_history(Some(history));
        let health = match &info.healthcheck {
            Some(h) => Some(h.clone()),
            None => self.healthcheck(base)?,
        };
        let Some(health) = health else {
            return self.put_image(&image_config, layers, None);
        };
        let mut value = serde_json::to_value(&image_config)?;
        if let Some(config) = value.get_mut("config").and_then(|c| c.as_object_mut()) {
            config.insert("Healthcheck".into(), health);
        }
        Ok(self.blobs.put_image_json(&value, layers)?)
    }

    /// The image's `Healthcheck`: Docker keeps it in the config blob beside
    /// the OCI fields, so it is read from the blob's JSON.
    pub fn healthcheck(&self, image: &Image) -> Result<Option<serde_json::Value>> {
        let bytes = self
            .blobs
            .get_blob(image.manifest.config().digest().as_ref())?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        Ok(value
            .get("config")
            .and_then(|c| c.get("Healthcheck"))
            .filter(|h| !h.is_null())
            .cloned())
    }

    /// Stores a layer tarball compressed (as registries want it); returns
    /// its diff id (the digest of the uncompressed tar) and its descriptor.
    fn put_layer(&self, tar: &[u8]) -> Result<(String, Descriptor)> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar)?;
        let compressed = gz.finish()?;
        let digest = self.blobs.put_blob(&compressed, None)?;
        let desc = Descriptor::new(
            MediaType::ImageLayerGzip,
            compressed.len() as u64,
            images::store::parse_digest(&digest)?,
        );
        Ok((images::digest::sha256(tar), desc))
    }

    /// Stores an image's config and manifest and lists it in the index,
    /// under `reference` or unnamed.
    fn put_image(
        &self,
        config: &ImageConfiguration,
        layers: Vec<Descriptor>,
        reference: Option<&Reference>,
    ) -> Result<Image> {
        let image = self.blobs.put_image(config, layers)?;
        match reference {
            Some(r) => {
                self.blobs.tag(r, &image.digest)?;
                Ok(self.blobs.image(&image.digest)?)
            }
            None => Ok(image),
        }
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

    // ANCHOR: remove_images
    /// Removes the images with these ids, then every blob and unpacked
    /// layer no remaining image refers to. Layers are shared, so a layer
    /// stays as long as one image still lists it. Returns the bytes freed.
    pub fn remove_images(&self, ids: &BTreeSet<String>) -> Result<u64> {
        let doomed: BTreeSet<String> = self
            .list()?
            .into_iter()
            .filter(|i| ids.contains(&i.id))
            .map(|i| i.digest)
            .collect();
        self.blobs.delete(&doomed)?;
        let mut freed = self.blobs.collect_garbage()?;
        let mut layers = BTreeSet::new();
        for image in self.list()? {
            for d in image.diff_ids() {
                layers.insert(d.trim_start_matches("sha256:").to_string());
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
        // Lab 05's extraction: decompressed, hashed and unpacked in one
        // pass, refusing hostile entries, into a staging directory that is
        // renamed into place only when the diff id and the blob's digest
        // both check out.
        let desc = &image.manifest.layers()[index];
        let digest = desc.digest().to_string();
        let path = self.blobs.blob_path(&digest)?;
        let file = std::fs::File::open(&path).with_context(|| format!("missing blob {digest}"))?;
        let rootless = !nix::unistd::geteuid().is_root();
        let xattr = crate::storage::storage_xattr(rootless);
        let mut options = images::extract::Options::new(overlay::layer::Target::Overlay(xattr));
        options.owners = !rootless;
        let staging = images::extract::Staging::new(&dir)?;
        let done = images::extract::extract(
            file,
            desc.media_type().as_ref(),
            diff_id,
            staging.path(),
            &options,
        )
        .with_context(|| format!("cannot unpack layer {diff_id}"))?;
        images::digest::verify(
            &format!("layer blob {}", path.display()),
            &digest,
            &done.digest,
        )?;
        if let Err(e) = staging.commit()
            && !dir.is_dir()
        {
            return Err(e.into());
        }
        Ok(dir)
    }
}
