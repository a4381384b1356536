//! Step 05.5: `save`, `load` and `import`, checked against each other, against
//! `skopeo` and `umoci`, and against archives made to hurt.
//!
//! The interop tests run the real tools. Without them they say why they did
//! not run and pass, except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use images::archive::{self, ImportOptions, Loaded};
use images::digest;
use images::reference::Reference;
use images::store::{Image, Store, parse_digest};
use oci_spec::image::{
    ConfigBuilder, Descriptor, ImageConfiguration, ImageConfigurationBuilder, ImageIndex,
    ImageManifest, MediaType, RootFsBuilder,
};

// ------------------------------------------------------------ helpers

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lab05-arc-")
        .tempdir()
        .unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// A tar of regular files, written the same way every time.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        tar.append_data(&mut h, name, *data).unwrap();
    }
    tar.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The regular files of a tar: name and content.
fn files_of(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .filter(|(n, _)| !n.ends_with('/'))
        .collect()
}

/// One entry of an archive to build by hand.
enum E<'a> {
    File(&'a str, Vec<u8>),
    Symlink(&'a str, &'a str),
    /// A name written into the header as is, `..` and all.
    Raw(&'a str, Vec<u8>),
}

fn build(entries: &[E]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match e {
            E::File(name, data) => {
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, name, &data[..]).unwrap();
            }
            E::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                tar.append_link(&mut h, name, target).unwrap();
            }
            E::Raw(name, data) => {
                // `set_path` refuses `..`; a hostile archive does not ask.
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_size(data.len() as u64);
                h.set_cksum();
                tar.append(&h, &data[..]).unwrap();
            }
        }
    }
    tar.into_inner().unwrap()
}

/// A small image: one gzipped layer with two files, and a config.
fn example_image(store: &Store, text: &str) -> Image {
    let layer_tar = tar_of(&[
        ("etc/hello", text.as_bytes()),
        ("bin/app", b"#!/bin/sh\necho app\n"),
    ]);
    let layer = gzip(&layer_tar);
    let layer_digest = store.put_blob(&layer, None).unwrap();
    let config = ImageConfigurationBuilder::default()
        .architecture(oci_spec::image::Arch::Amd64)
        .os(oci_spec::image::Os::Linux)
        .created("2024-01-02T03:04:05Z".to_string())
        .config(
            ConfigBuilder::default()
                .cmd(vec!["/bin/app".to_string()])
                .env(vec!["PATH=/bin".to_string()])
                .build()
                .unwrap(),
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![digest::sha256(&layer_tar)])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let desc = Descriptor::new(
        MediaType::ImageLayerGzip,
        layer.len() as u64,
        parse_digest(&layer_digest).unwrap(),
    );
    store.put_image(&config, vec![desc]).unwrap()
}

/// A store with the example image named `example.com/app:1` and
/// `app:latest`.
fn store_with_example(dir: &Path) -> (Store, Image) {
    let store = Store::open(dir).unwrap();
    let image = example_image(&store, "hello\n");
    store.tag(&r("example.com/app:1"), &image.digest).unwrap();
    store.tag(&r("app:latest"), &image.digest).unwrap();
    let image = store.image(&image.digest).unwrap();
    (store, image)
}

fn save_one(store: &Store, image: &Image) -> Vec<u8> {
    let names = image.names.iter().map(|n| r(n)).collect();
    let mut out = Vec::new();
    archive::save(store, &[(image.clone(), names)], &mut out).unwrap();
    out
}

/// The names of the blobs in a store.
fn blob_names(store: &Store) -> BTreeSet<String> {
    std::fs::read_dir(store.dir().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect()
}

/// Every file in the store's blob directory is a finished blob that
/// hashes to its name: no temporary files, nothing misnamed.
fn assert_blobs_honest(store: &Store) {
    for name in blob_names(store) {
        assert!(!name.starts_with('.'), "temporary file left behind: {name}");
        let data = std::fs::read(store.dir().join("blobs/sha256").join(&name)).unwrap();
        assert_eq!(digest::sha256(&data), format!("sha256:{name}"));
    }
}

/// The files of the layers of an image, read from the store.
fn layer_files(store: &Store, image: &Image) -> Vec<(String, Vec<u8>)> {
    image
        .manifest
        .layers()
        .iter()
        .flat_map(|l| {
            let blob = store.get_blob(l.digest().as_ref()).unwrap();
            let tar = if blob.starts_with(&[0x1f, 0x8b]) {
                gunzip(&blob)
            } else {
                blob
            };
            files_of(&tar)
        })
        .collect()
}

/// Whether the external tools are here. Without them the test says why
/// it does not run, or fails under CI=true.
fn have_tools(test: &str) -> bool {
    for tool in ["skopeo", "umoci"] {
        if Command::new(tool).arg("--version").output().is_err() {
            let why = format!(
                "{test}: not run: `{tool}` is not installed (apt-get install skopeo umoci)"
            );
            if testkit::in_ci() {
                panic!("{why} — and CI=true, where a test that cannot run is a failure");
            }
            let _ = writeln!(std::io::stderr().lock(), "{why}");
            return false;
        }
    }
    true
}

/// Runs a command that must succeed; returns its standard output.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The image a one-image OCI layout directory holds: manifest and config.
fn oci_dir_image(dir: &Path) -> (String, ImageManifest, ImageConfiguration) {
    let index = ImageIndex::from_file(dir.join("index.json")).unwrap();
    let digest = index.manifests()[0].digest().to_string();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest = ImageManifest::from_file(blob(&digest)).unwrap();
    let config = ImageConfiguration::from_file(blob(manifest.config().digest().as_ref())).unwrap();
    (digest, manifest, config)
}

// ------------------------------------------------------------ save and load

#[test]
fn save_then_load_gives_the_same_image() {
    let (a, b) = (tmp(), tmp());
    let (store, image) = store_with_example(a.path());
    let saved = save_one(&store, &image);
    assert_eq!(saved, save_one(&store, &image), "saving twice differs");

    let other = Store::open(b.path()).unwrap();
    let loaded = archive::load(&other, &saved[..], None).unwrap();
    assert_eq!(
        loaded,
        [Loaded {
            id: image.id.clone(),
            digest: image.digest.clone(),
            names: vec![
                "docker.io/library/app:latest".into(),
                "example.com/app:1".into()
            ],
            unnamed_tags: vec![],
            replaced: vec![],
        }]
    );
    assert_eq!(
        loaded[0].messages(),
        [
            "Loaded image: app:latest",
            "Loaded image: example.com/app:1"
        ]
    );
    // The same blobs, nothing else; and the same archive out again.
    let copy = other.image(&image.digest).unwrap();
    assert_eq!(copy.names, image.names);
    assert_eq!(blob_names(&other), blob_names(&store));
    assert_blobs_honest(&other);
    assert_eq!(save_one(&other, &copy), saved);

    // Loading again changes nothing.
    let index = std::fs::read(b.path().join("index.json")).unwrap();
    archive::load(&other, &saved[..], None).unwrap();
    assert_eq!(std::fs::read(b.path().join("index.json")).unwrap(), index);
}

#[test]
fn the_archive_is_a_docker_archive_and_an_oci_layout() {
    let a = tmp();
    let (store, image) = store_with_example(a.path());
    let saved = save_one(&store, &image);

    let mut names = Vec::new();
    for e in tar::Archive::new(&saved[..]).entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(
            (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
            (0, 0, 0)
        );
        names.push(e.path().unwrap().to_string_lossy().to_string());
    }
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let layer = image.manifest.layers()[0].digest().to_string();
    let mut blobs: Vec<String> = [&image.digest, &image.id, &layer]
        .iter()
        .map(|d| format!("blobs/sha256/{}", hex(d)))
        .collect();
    blobs.sort();
    let mut expected = vec!["blobs/".to_string(), "blobs/sha256/".to_string()];
    expected.extend(blobs);
    expected
        .extend(["index.json", "manifest.json", "oci-layout", "repositories"].map(String::from));
    assert_eq!(names, expected);

    let files: std::collections::BTreeMap<String, Vec<u8>> = files_of(&saved).into_iter().collect();
    let json = |n: &str| serde_json::from_slice::<serde_json::Value>(&files[n]).unwrap();
    assert_eq!(
        json("manifest.json"),
        serde_json::json!([{
            "Config": format!("blobs/sha256/{}", hex(&image.id)),
            "RepoTags": ["app:latest", "example.com/app:1"],
            "Layers": [format!("blobs/sha256/{}", hex(&layer))],
        }])
    );
    assert_eq!(
        json("repositories"),
        serde_json::json!({"app": {"latest": hex(&layer)}, "example.com/app": {"1": hex(&layer)}})
    );
    let index = json("index.json");
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["digest"], image.digest.as_str());
            assert_eq!(
                d["platform"],
                serde_json::json!({"architecture": "amd64", "os": "linux"})
            );
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(refs, ["docker.io/library/app:latest", "example.com/app:1"]);
    assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
}

#[test]
fn an_image_saved_by_id_loads_without_a_name() {
    let (a, b) = (tmp(), tmp());
    let store = Store::open(a.path()).unwrap();
    let image = example_image(&store, "nameless\n");
    let mut saved = Vec::new();
    archive::save(&store, &[(image.clone(), vec![])], &mut saved).unwrap();
    let other = Store::open(b.path()).unwrap();
    let loaded = archive::load(&other, &saved[..], None).unwrap();
    assert_eq!(
        (loaded[0].id.as_str(), loaded[0].names.len()),
        (image.id.as_str(), 0)
    );
    assert_eq!(
        loaded[0].messages(),
        [format!("Loaded image ID: {}", image.id)]
    );
    // With a name from the caller, it gets that name.
    let c = tmp();
    let third = Store::open(c.path()).unwrap();
    let loaded = archive::load(&third, &saved[..], Some(&r("mine:v1"))).unwrap();
    assert_eq!(loaded[0].names, ["docker.io/library/mine:v1"]);
}

#[test]
fn docker_part_alone_loads_to_the_same_image() {
    // What a Docker before 25 reads and writes: manifest.json only. The
    // manifest is made anew; it comes out byte for byte as the store made
    // it, so even the manifest digest is the same.
    let (a, b) = (tmp(), tmp());
    let (store, image) = store_with_example(a.path());
    let saved = save_one(&store, &image);
    let entries: Vec<E> = files_of(&saved)
        .into_iter()
        .filter(|(n, _)| n != "index.json" && n != "oci-layout")
        .map(|(n, d)| E::File(Box::leak(n.into_boxed_str()), d))
        .collect();
    let other = Store::open(b.path()).unwrap();
    let loaded = archive::load(&other, &build(&entries)[..], None).unwrap();
    assert_eq!(loaded[0].id, image.id);
    assert_eq!(loaded[0].digest, image.digest);
    assert_eq!(loaded[0].names, image.names);
}

#[test]
fn older_docker_archives_with_layer_paths_and_links_load() {
    // Docker before 25 (and skopeo's docker-archive) names layers by
    // path, uncompressed, and links a layer two images share.
    let d = tmp();
    let store = Store::open(d.path()).unwrap();
    let base = tar_of(&[("etc/os-release", b"ID=test\n")]);
    let top = tar_of(&[("etc/motd", b"welcome\n")]);
    let config = |diff_ids: Vec<String>, cmd: &str| {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": [cmd]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "container_config": {"Cmd": ["ignored"]}, "docker_version": "20.10",
        }))
        .unwrap()
    };
    let one = config(vec![digest::sha256(&base)], "one");
    let two = config(vec![digest::sha256(&base), digest::sha256(&top)], "two");
    let (one_id, two_id) = (digest::sha256(&one), digest::sha256(&two));
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": format!("{}.json", hex(&one_id)), "RepoTags": ["one:1"], "Layers": ["aaa/layer.tar"]},
        {"Config": format!("{}.json", hex(&two_id)), "RepoTags": ["two:2", "localhost:5000/two:2"],
         "Layers": ["bbb/layer.tar", "ccc/layer.tar"]},
    ]))
    .unwrap();
    let archive = build(&[
        E::File("aaa/VERSION", b"1.0".to_vec()),
        E::File("aaa/json", b"{\"id\":\"aaa\"}".to_vec()),
        E::File("aaa/layer.tar", base.clone()),
        E::Symlink("bbb/layer.tar", "../aaa/layer.tar"),
        E::File("ccc/layer.tar", top.clone()),
        E::File(
            Box::leak(format!("{}.json", hex(&one_id)).into_boxed_str()),
            one,
        ),
        E::File(
            Box::leak(format!("{}.json", hex(&two_id)).into_boxed_str()),
            two,
        ),
        E::File("manifest.json", manifest),
        E::File("repositories", b"{}".to_vec()),
    ]);
    let loaded = archive::load(&store, &archive[..], None).unwrap();
    assert_eq!(
        loaded.iter().map(|l| (&l.id, &l.names)).collect::<Vec<_>>(),
        [
            (&one_id, &vec!["docker.io/library/one:1".to_string()]),
            (
                &two_id,
                &vec![
                    "docker.io/library/two:2".to_string(),
                    "localhost:5000/two:2".to_string()
                ]
            ),
        ]
    );
    let two = store.find("two:2").unwrap().unwrap();
    let layers: Vec<String> = two
        .manifest
        .layers()
        .iter()
        .map(|l| l.media_type().to_string())
        .collect();
    assert_eq!(layers, ["application/vnd.oci.image.layer.v1.tar"; 2]);
    assert_eq!(
        layer_files(&store, &two),
        [
            ("etc/os-release".to_string(), b"ID=test\n".to_vec()),
            ("etc/motd".to_string(), b"welcome\n".to_vec())
        ]
    );
    // The shared layer is one blob; the legacy files are not kept.
    assert_eq!(blob_names(&store).len(), 2 + 2 + 2);
    assert_blobs_honest(&store);
}

#[test]
fn a_gzipped_archive_loads() {
    let (a, b) = (tmp(), tmp());
    let (store, image) = store_with_example(a.path());
    let saved = gzip(&save_one(&store, &image));
    let other = Store::open(b.path()).unwrap();
    let loaded = archive::load(&other, &saved[..], None).unwrap();
    assert_eq!(loaded[0].digest, image.digest);
}

#[test]
fn a_loaded_name_moves_from_the_image_that_had_it() {
    let (a, b) = (tmp(), tmp());
    let (store, image) = store_with_example(a.path());
    let saved = save_one(&store, &image);
    let other = Store::open(b.path()).unwrap();
    let old = example_image(&other, "older\n");
    other.tag(&r("app:latest"), &old.digest).unwrap();
    let loaded = archive::load(&other, &saved[..], None).unwrap();
    assert_eq!(
        loaded[0].replaced,
        [("docker.io/library/app:latest".to_string(), old.id.clone())]
    );
    assert!(other.image(&old.digest).unwrap().names.is_empty());
}

// ------------------------------------------------------------ hostile archives

/// Loads `archive` into a store that already holds an image, expects a
/// refusal whose message contains every one of `words`, and checks that
/// the store did not change.
fn refused(archive: &[u8], words: &[&str]) {
    let d = tmp();
    let (store, _) = store_with_example(d.path());
    let index = std::fs::read(d.path().join("index.json")).unwrap();
    let blobs = blob_names(&store);
    let e = archive::load(&store, archive, None)
        .unwrap_err()
        .to_string();
    // Shown with `cargo test -- --nocapture`: what a user would read.
    eprintln!("refused: {e}");
    for w in words {
        assert!(e.contains(w), "{w:?} not in: {e}");
    }
    assert_eq!(std::fs::read(d.path().join("index.json")).unwrap(), index);
    assert_eq!(blob_names(&store), blobs, "a refused load left blobs");
    assert_blobs_honest(&store);
}

/// The files of a saved archive of a fresh image (not the one the
/// receiving store holds, so its blobs would be new there).
fn saved_files() -> Vec<(String, Vec<u8>)> {
    let d = tmp();
    let store = Store::open(d.path()).unwrap();
    let image = example_image(&store, "fresh\n");
    store.tag(&r("fresh:1"), &image.digest).unwrap();
    let image = store.image(&image.digest).unwrap();
    files_of(&save_one(&store, &image))
}

fn rebuild(files: Vec<(String, Vec<u8>)>, extra: Vec<E>) -> Vec<u8> {
    let mut entries: Vec<E> = extra;
    entries.extend(
        files
            .into_iter()
            .map(|(n, d)| E::File(Box::leak(n.into_boxed_str()), d)),
    );
    build(&entries)
}

#[test]
fn names_that_leave_the_archive_are_refused() {
    refused(
        &rebuild(saved_files(), vec![E::Raw("../x", b"x".to_vec())]),
        &["refusing archive entry \"../x\"", ".."],
    );
    refused(
        &rebuild(saved_files(), vec![E::Raw("/etc/x", b"x".to_vec())]),
        &["refusing archive entry \"/etc/x\"", "absolute"],
    );
    refused(
        &rebuild(saved_files(), vec![E::Symlink("evil", "/etc/passwd")]),
        &["refusing archive entry \"evil\"", "outside the archive"],
    );
    refused(
        &rebuild(saved_files(), vec![E::Symlink("blobs/evil", "../../x")]),
        &["outside the archive"],
    );
}

#[test]
fn a_blob_that_does_not_match_its_name_is_refused() {
    // The layer blob, same size, one byte changed.
    let mut files = saved_files();
    let manifest: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "manifest.json").unwrap().1)
            .unwrap();
    let layer = manifest[0]["Layers"][0].as_str().unwrap().to_string();
    let entry = files.iter_mut().find(|(n, _)| *n == layer).unwrap();
    let last = entry.1.len() - 1;
    entry.1[last] ^= 1;
    refused(
        &rebuild(files, vec![]),
        &[
            &format!("archive entry {layer}"),
            "expected digest",
            "hashes to",
        ],
    );
}

#[test]
fn a_manifest_that_lists_a_missing_layer_is_refused() {
    let mut files = saved_files();
    files.retain(|(n, _)| n != "index.json" && n != "oci-layout");
    let m = files
        .iter_mut()
        .find(|(n, _)| n == "manifest.json")
        .unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&m.1).unwrap();
    manifest[0]["Layers"][0] = "missing/layer.tar".into();
    m.1 = serde_json::to_vec(&manifest).unwrap();
    refused(
        &rebuild(files, vec![]),
        &[
            "manifest.json lists \"missing/layer.tar\"",
            "not in the archive",
        ],
    );
}

#[test]
fn a_layer_that_is_not_the_one_the_config_lists_is_refused() {
    // Docker part only, the layer swapped for another (correctly named).
    let mut files = saved_files();
    files.retain(|(n, _)| n != "index.json" && n != "oci-layout");
    files.push(("other.tar".into(), tar_of(&[("x", b"x")])));
    let m = files
        .iter_mut()
        .find(|(n, _)| n == "manifest.json")
        .unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&m.1).unwrap();
    manifest[0]["Layers"][0] = "other.tar".into();
    m.1 = serde_json::to_vec(&manifest).unwrap();
    refused(
        &rebuild(files, vec![]),
        &["layer 1 uncompresses to", "config expects"],
    );
}

#[test]
fn bad_json_is_refused_with_the_file_named() {
    for file in ["manifest.json", "index.json"] {
        let mut files = saved_files();
        files.iter_mut().find(|(n, _)| n == file).unwrap().1 = b"{\"oops\": ".to_vec();
        refused(&rebuild(files, vec![]), &[&format!("{file}: not a valid")]);
    }
    let files = saved_files()
        .into_iter()
        .filter(|(n, _)| n == "oci-layout")
        .collect();
    refused(
        &rebuild(files, vec![]),
        &["neither manifest.json nor index.json"],
    );
}

#[test]
fn a_truncated_archive_is_refused() {
    let d = tmp();
    let store = Store::open(d.path()).unwrap();
    // A layer big enough that the cut falls inside it, after other blobs.
    let noise: Vec<u8> = (0..200_000u32)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    let layer_tar = tar_of(&[("noise", &noise)]);
    let layer = store.put_blob(&layer_tar, None).unwrap();
    let config = ImageConfigurationBuilder::default()
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
        layer_tar.len() as u64,
        parse_digest(&layer).unwrap(),
    );
    let image = store.put_image(&config, vec![desc]).unwrap();
    let saved = save_one(&store, &image);
    // (Cutting off only the two zero blocks that end a tar leaves a
    // complete archive, which tar readers accept.)
    for cut in [saved.len() / 2, saved.len() - 1500, 700] {
        refused(&saved[..cut], &["truncated"]);
    }
    refused(&gzip(&saved)[..saved.len() / 3], &["truncated"]);
    refused(b"", &["empty"]);
    refused(&[7u8; 2048], &["not a tar archive"]);
}

/// Replaces `index.json` in a saved archive (and drops Docker's part, so
/// only the OCI layout speaks).
fn with_index(
    mut files: Vec<(String, Vec<u8>)>,
    index: serde_json::Value,
) -> Vec<(String, Vec<u8>)> {
    files.retain(|(n, _)| n != "manifest.json" && n != "repositories");
    files.iter_mut().find(|(n, _)| n == "index.json").unwrap().1 =
        serde_json::to_vec(&index).unwrap();
    files
}

fn saved_index(files: &[(String, Vec<u8>)]) -> serde_json::Value {
    serde_json::from_slice(&files.iter().find(|(n, _)| n == "index.json").unwrap().1).unwrap()
}

#[test]
fn docker_25_names_load_from_the_containerd_annotation() {
    // Docker 25+ writes only the tag in ref.name and the full name in
    // io.containerd.image.name.
    let files = saved_files();
    let mut index = saved_index(&files);
    index["manifests"][0]["annotations"] = serde_json::json!({
        "io.containerd.image.name": "docker.io/library/fresh:1",
        "org.opencontainers.image.ref.name": "1",
    });
    let d = tmp();
    let store = Store::open(d.path()).unwrap();
    let loaded =
        archive::load(&store, &rebuild(with_index(files, index), vec![])[..], None).unwrap();
    assert_eq!(loaded[0].names, ["docker.io/library/fresh:1"]);
    assert!(loaded[0].unnamed_tags.is_empty());
}

#[test]
fn an_index_inside_the_index_gives_the_linux_amd64_image() {
    let mut files = saved_files();
    let top = saved_index(&files);
    let image = top["manifests"][0].clone();
    let mut amd64 = image.clone();
    amd64.as_object_mut().unwrap().remove("annotations");
    let arm64 = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest::sha256(b"not in this archive"),
        "size": 19,
        "platform": {"architecture": "arm64", "os": "linux"},
    });
    let nested = |manifests: Vec<serde_json::Value>| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap()
    };
    let outer = |bytes: &[u8]| {
        serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest::sha256(bytes),
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "fresh:multi"},
        }]})
    };
    let both = nested(vec![arm64.clone(), amd64]);
    files.push((
        format!("blobs/sha256/{}", &digest::sha256(&both)[7..]),
        both.clone(),
    ));
    let d = tmp();
    let store = Store::open(d.path()).unwrap();
    let archive = rebuild(with_index(files.clone(), outer(&both)), vec![]);
    let loaded = archive::load(&store, &archive[..], None).unwrap();
    assert_eq!(
        (loaded[0].digest.as_str(), &loaded[0].names[..]),
        (
            image["digest"].as_str().unwrap(),
            &["docker.io/library/fresh:multi".to_string()][..]
        )
    );

    // An index with no image for this machine is refused, saying so.
    let arm_only = nested(vec![arm64]);
    files.push((
        format!("blobs/sha256/{}", &digest::sha256(&arm_only)[7..]),
        arm_only.clone(),
    ));
    refused(
        &rebuild(with_index(files, outer(&arm_only)), vec![]),
        &["no linux/amd64 image", "linux/arm64"],
    );
}

// ------------------------------------------------------------ with skopeo and umoci

#[test]
fn skopeo_reads_what_save_writes() {
    if !have_tools("skopeo_reads_what_save_writes") {
        return;
    }
    let d = tmp();
    let (store, image) = store_with_example(&d.path().join("store"));
    let file = d.path().join("app.tar");
    std::fs::write(&file, save_one(&store, &image)).unwrap();
    let file = file.to_str().unwrap();

    // The Docker part: skopeo finds the image by either name, reads the
    // config byte for byte, and reports the layers by diff id, having
    // decompressed them to check them.
    let docker = |name: &str| format!("docker-archive:{file}:{name}");
    let config = run(&[
        "skopeo",
        "inspect",
        "--config",
        "--raw",
        &docker("app:latest"),
    ]);
    assert_eq!(digest::sha256(config.as_bytes()), image.id);
    let inspect: serde_json::Value =
        serde_json::from_str(&run(&["skopeo", "inspect", &docker("example.com/app:1")])).unwrap();
    assert_eq!(inspect["Layers"], serde_json::json!(image.diff_ids()));
    assert_eq!(inspect["Architecture"], "amd64");

    let docker_dir = d.path().join("from-docker");
    run(&[
        "skopeo",
        "copy",
        "--insecure-policy",
        "--quiet",
        &docker("app:latest"),
        &format!("oci:{}:t", docker_dir.display()),
    ]);
    // Turning a Docker image into an OCI one, skopeo rewrites the config
    // (a new id) and compresses the layers itself: the contents stay.
    let (_, _, copied) = oci_dir_image(&docker_dir);
    assert_eq!(copied.rootfs().diff_ids(), image.diff_ids());
    assert_eq!(copied.config(), image.config.config());

    // The OCI part: blobs copied as they are, so every digest is ours.
    let oci_dir = d.path().join("from-oci");
    run(&[
        "skopeo",
        "copy",
        "--insecure-policy",
        "--quiet",
        &format!("oci-archive:{file}:example.com/app:1"),
        &format!("oci:{}:t", oci_dir.display()),
    ]);
    let (digest, manifest, config) = oci_dir_image(&oci_dir);
    assert_eq!(digest, image.digest);
    assert_eq!(manifest.config().digest().to_string(), image.id);
    assert_eq!(manifest.layers(), image.manifest.layers());
    assert_eq!(config.rootfs().diff_ids(), image.diff_ids());
}

#[test]
fn load_reads_what_umoci_and_skopeo_write() {
    if !have_tools("load_reads_what_umoci_and_skopeo_write") {
        return;
    }
    let d = tmp();
    let layout = d.path().join("layout");
    let l = layout.to_str().unwrap();
    let image = format!("{l}:t");
    // `umoci insert` (0.4.7) writes a layer tar that stops short of its
    // end; unpack, change, repack writes a complete one.
    let bundle = d.path().join("bundle");
    let b = bundle.to_str().unwrap();
    run(&["umoci", "init", "--layout", l]);
    run(&["umoci", "new", "--image", &image]);
    run(&[
        "umoci",
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/greet",
        "--config.env",
        "GREETING=hi",
    ]);
    run(&["umoci", "unpack", "--rootless", "--image", &image, b]);
    std::fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/greeting"), "made by umoci\n").unwrap();
    run(&["umoci", "repack", "--image", &image, b]);
    let (_, umoci_manifest, umoci_config) = oci_dir_image(&layout);

    let docker_file = d.path().join("d.tar");
    let oci_file = d.path().join("o.tar");
    run(&[
        "skopeo",
        "copy",
        "--insecure-policy",
        "--quiet",
        &format!("oci:{image}"),
        &format!("docker-archive:{}:app:t", docker_file.display()),
    ]);
    run(&[
        "skopeo",
        "copy",
        "--insecure-policy",
        "--quiet",
        &format!("oci:{image}"),
        &format!("oci-archive:{}:t", oci_file.display()),
    ]);

    let check = |store: &Store, loaded: &Loaded| {
        let image = store.image(&loaded.digest).unwrap();
        assert_eq!(image.id, umoci_manifest.config().digest().to_string());
        assert_eq!(image.diff_ids(), umoci_config.rootfs().diff_ids());
        let cfg = image.config.config().clone().unwrap();
        assert_eq!(cfg.cmd().as_deref(), Some(&["/bin/greet".to_string()][..]));
        assert!(
            cfg.env()
                .as_ref()
                .unwrap()
                .contains(&"GREETING=hi".to_string())
        );
        let files = layer_files(store, &image);
        assert!(
            files.contains(&("etc/greeting".to_string(), b"made by umoci\n".to_vec())),
            "{:?}",
            files.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        assert_blobs_honest(store);
    };

    // skopeo's docker-archive: legacy paths, a symlink, uncompressed layers.
    let s1 = tmp();
    let store = Store::open(s1.path()).unwrap();
    let loaded = archive::load(&store, std::fs::File::open(&docker_file).unwrap(), None).unwrap();
    assert_eq!(loaded[0].names, ["docker.io/library/app:t"]);
    check(&store, &loaded[0]);

    // skopeo's oci-archive: the manifest as umoci made it; the name is a
    // bare tag, so it needs a repository from the caller.
    let s2 = tmp();
    let store = Store::open(s2.path()).unwrap();
    let loaded = archive::load(&store, std::fs::File::open(&oci_file).unwrap(), None).unwrap();
    assert_eq!(
        (loaded[0].names.len(), &loaded[0].unnamed_tags[..]),
        (0, &["t".to_string()][..])
    );
    assert_eq!(
        store.image(&loaded[0].digest).unwrap().manifest.layers(),
        umoci_manifest.layers()
    );
    check(&store, &loaded[0]);
    let loaded = archive::load(
        &store,
        std::fs::File::open(&oci_file).unwrap(),
        Some(&r("greeter")),
    )
    .unwrap();
    assert_eq!(loaded[0].names, ["docker.io/library/greeter:t"]);
    assert!(loaded[0].unnamed_tags.is_empty());
}

// ------------------------------------------------------------ import

#[test]
fn import_makes_the_image_docker_would() {
    let d = tmp();
    let store = Store::open(d.path()).unwrap();
    let rootfs = tar_of(&[
        ("bin/sh", b"#!fake shell\n"),
        ("etc/hostname", b"imported\n"),
    ]);
    let options = ImportOptions {
        config: Some(
            ConfigBuilder::default()
                .cmd(vec!["/bin/sh".to_string()])
                .build()
                .unwrap(),
        ),
        created: Some("2024-05-06T07:08:09Z".into()),
        ..Default::default()
    };
    let plain = archive::import(&store, &rootfs[..], &options, Some(&r("imported:1"))).unwrap();
    let zipped = archive::import(&store, &gzip(&rootfs)[..], &options, None).unwrap();

    // Same tree, same diff id, same config, same image.
    assert_eq!(plain.diff_ids(), [digest::sha256(&rootfs)]);
    assert_eq!(zipped.diff_ids(), plain.diff_ids());
    assert_eq!(zipped.id, plain.id);
    assert_eq!(plain.names, ["docker.io/library/imported:1"]);

    let config: serde_json::Value =
        serde_json::from_slice(&store.get_blob(&plain.id).unwrap()).unwrap();
    assert_eq!(
        config,
        serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-05-06T07:08:09Z",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest::sha256(&rootfs)]},
            "history": [{"created": "2024-05-06T07:08:09Z", "comment": "Imported from -"}],
        })
    );
    // The layer is stored gzipped, and is the tar that came in.
    let layer = &plain.manifest.layers()[0];
    assert_eq!(layer.media_type(), &MediaType::ImageLayerGzip);
    assert_eq!(
        gunzip(&store.get_blob(layer.digest().as_ref()).unwrap()),
        rootfs
    );
    assert_blobs_honest(&store);

    // Without a time, now.
    let now = archive::import(&store, &rootfs[..], &ImportOptions::default(), None).unwrap();
    let created = now.config.created().clone().unwrap();
    assert!(
        created.starts_with("20") && created.ends_with('Z'),
        "{created}"
    );
    assert_ne!(now.id, plain.id);
}

#[test]
fn import_refuses_what_is_not_a_tar() {
    let d = tmp();
    let store = Store::open(d.path()).unwrap();
    let index = std::fs::read(d.path().join("index.json")).unwrap();
    for (input, words) in [
        (
            b"hello, not a tar, but long enough to fill a header block?".repeat(20),
            "not a tar archive",
        ),
        (vec![], "empty"),
        (
            [&[0xfd, b'7', b'z', b'X', b'Z', 0][..], &[0; 100]].concat(),
            "xz -d",
        ),
        (gzip(b"still not a tar").repeat(1), "not a tar archive"),
    ] {
        let e = archive::import(&store, &input[..], &ImportOptions::default(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(words), "{words:?} not in {e}");
    }
    assert_eq!(std::fs::read(d.path().join("index.json")).unwrap(), index);
    assert_blobs_honest(&store);
}
