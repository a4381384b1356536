//! Lab 05's instructor tests: edge cases of the students' code that the
//! tests they have do not reach. This file is not in the starter
//! repository; the grader copies it in and scores it (see the
//! `instructor_tests` of steps.toml).
//!
//! Each test uses only its own step's code and the steps before it. None
//! needs root, and none needs `docker-registry`: step 05.4's client talks
//! to a fake registry written here, which serves fixed documents.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use images::Error;
use images::archive::{self, ImportOptions};
use images::auth::{CredentialStore, Credentials, DOCKER_HUB_KEY};
use images::context::{Context, CopyOptions, Ignore, copy};
use images::digest::{chain_id, hex_part, sha256};
use images::dockerfile::{Dockerfile, Form, Health, Kind, expand, exposed_ports};
use images::entrypoint::{self, ImageCommand};
use images::reference::Reference;
use images::registry::{Client, Platform, parse_challenges};
use images::store::{Image, Store, parse_digest};
use oci_spec::image::{
    ConfigBuilder, Descriptor, ImageConfigurationBuilder, MediaType, RootFsBuilder,
};

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lab05-instructor-")
        .tempdir()
        .unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A tar of regular files, each with mode 0644 and a fixed time.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, name, *data).unwrap();
    }
    tar.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Stores an image whose layers are the given (uncompressed) blobs and
/// whose config says `cmd`.
fn image(store: &Store, layers: &[&[u8]], cmd: &str) -> Image {
    let descriptors = layers
        .iter()
        .map(|l| {
            let d = store.put_blob(l, None).unwrap();
            Descriptor::new(
                MediaType::ImageLayer,
                l.len() as u64,
                parse_digest(&d).unwrap(),
            )
        })
        .collect();
    let config = ImageConfigurationBuilder::default()
        .architecture(oci_spec::image::Arch::Amd64)
        .os(oci_spec::image::Os::Linux)
        .config(
            ConfigBuilder::default()
                .cmd(strings(&[cmd]))
                .build()
                .unwrap(),
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(layers.iter().map(|l| sha256(l)).collect::<Vec<_>>())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    store.put_image(&config, descriptors).unwrap()
}

/// The names of the files in a store's blob directory.
fn blob_files(store: &Store) -> BTreeSet<String> {
    fs::read_dir(store.dir().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect()
}

fn hex(digest: &str) -> String {
    digest.trim_start_matches("sha256:").to_string()
}

// --- 05.1 content addresses and image names ---------------------------------------

#[test]
fn digests_chain_ids_and_names_beyond_the_examples() {
    // FIPS 180-2's example.
    assert_eq!(
        sha256(b"abc"),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let good = sha256(b"x");
    assert_eq!(hex_part(&good).unwrap(), &good["sha256:".len()..]);
    for bad in [
        format!("{good}0"),
        good[..good.len() - 1].to_string(),
        good.replace("sha256:", "SHA256:"),
        good.replace("sha256:", "sha512:"),
        good.replace("sha256:", ""),
        format!("sha256:{}", "g".repeat(64)),
        format!("sha256:{}", "A".repeat(64)),
        "sha256:".to_string(),
        String::new(),
    ] {
        assert!(hex_part(&bad).is_err(), "{bad:?} was accepted");
    }

    // Three layers, by hand: each step hashes the text "CHAIN DIFFID".
    let (a, b, c) = (sha256(b"a"), sha256(b"b"), sha256(b"c"));
    let ab = sha256(format!("{a} {b}").as_bytes());
    let abc = sha256(format!("{ab} {c}").as_bytes());
    assert_eq!(
        chain_id(&[a.clone(), b.clone(), c.clone()]),
        Some(abc.clone())
    );
    assert_ne!(chain_id(&[a.clone(), c.clone(), b.clone()]), Some(abc));

    let d = sha256(b"manifest");
    for (input, full, short) in [
        (
            "docker.io/busybox".to_string(),
            "docker.io/library/busybox:latest".to_string(),
            "busybox:latest".to_string(),
        ),
        (
            "library/busybox:1".into(),
            "docker.io/library/busybox:1".into(),
            "busybox:1".into(),
        ),
        (
            "localhost:5000/a/b/c:v1.2-rc_3".into(),
            "localhost:5000/a/b/c:v1.2-rc_3".into(),
            "localhost:5000/a/b/c:v1.2-rc_3".into(),
        ),
        (
            "127.0.0.1:5000/app".into(),
            "127.0.0.1:5000/app:latest".into(),
            "127.0.0.1:5000/app:latest".into(),
        ),
        // A tag may have capitals; the repository may not.
        (
            "busybox:Latest".into(),
            "docker.io/library/busybox:Latest".into(),
            "busybox:Latest".into(),
        ),
        (
            format!("ghcr.io/me/app@{d}"),
            format!("ghcr.io/me/app@{d}"),
            format!("ghcr.io/me/app@{d}"),
        ),
        (
            format!("me/app:1@{d}"),
            format!("docker.io/me/app:1@{d}"),
            format!("me/app:1@{d}"),
        ),
    ] {
        let parsed = r(&input);
        assert_eq!(
            (parsed.to_string(), parsed.familiar()),
            (full, short),
            "{input}"
        );
    }
    for (bad, why) in [
        ("App:1", "lower case"),
        ("localhost:5000/App", "lower case"),
        ("me/App@sha256:0", "lower case"),
        ("app\t1", "white space"),
        ("app:1:2", "invalid reference format"),
    ] {
        let e = Reference::parse(bad).unwrap_err().to_string();
        assert!(e.contains(why) && e.contains("[registry/]"), "{bad}: {e}");
    }
}

// --- 05.2 the image store ---------------------------------------------------------

#[test]
fn blobs_stay_honest_whatever_the_reads_and_writes() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    // Opening again keeps what is there.
    let kept = store.put_blob(b"kept", None).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get_blob(&kept).unwrap(), b"kept");
    // Storing the same bytes again is fine, and the same digest.
    assert_eq!(store.put_blob(b"kept", Some(&kept)).unwrap(), kept);
    // An empty blob is a blob too.
    let empty = store.put_blob(b"", None).unwrap();
    assert_eq!(empty, sha256(b""));
    assert_eq!(store.get_blob(&empty).unwrap(), b"");
    // A digest that is not one is refused before the disk is touched.
    assert!(store.get_blob("sha256:../../etc/passwd").is_err());
    assert!(store.put_blob(b"x", Some("md5:abc")).is_err());

    // Streamed in: a mismatch leaves no file behind, temporary or not.
    let before = blob_files(&store);
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"half a layer").unwrap();
    let e = w.commit(Some(&sha256(b"a whole layer"))).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert_eq!(blob_files(&store), before);
    // Without an expected digest, whatever was written is stored.
    let mut w = store.blob_writer().unwrap();
    for _ in 0..1000 {
        w.write_all(b"0123456789").unwrap();
    }
    let (d, n) = w.commit(None).unwrap();
    assert_eq!(
        (d.as_str(), n),
        (sha256(&b"0123456789".repeat(1000)).as_str(), 10_000)
    );

    // Streamed out, a byte at a time: good content reads to the end.
    let mut reader = store.open_blob(&d).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while reader.read(&mut byte).unwrap() == 1 {
        got.push(byte[0]);
    }
    assert_eq!(got.len(), 10_000);
    // Damage of every kind is found at the end of the stream: shorter,
    // longer, one byte changed.
    let path = store.blob_path(&d).unwrap();
    let good = fs::read(&path).unwrap();
    let mut changed = good.clone();
    changed[5000] ^= 1;
    let mut longer = good.clone();
    longer.push(b'!');
    for damaged in [&good[..9999], &longer[..], &changed[..]] {
        fs::write(&path, damaged).unwrap();
        let mut out = Vec::new();
        let e = store
            .open_blob(&d)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains(&d), "{e}");
        assert!(store.get_blob(&d).is_err());
    }
}

#[test]
fn names_finds_and_garbage_collection() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let shared: &[u8] = b"a layer both images have";
    let a = image(&store, &[shared, b"a's own layer"], "a");
    let b = image(&store, &[shared, b"b's own layer"], "b");
    store
        .tag(&r("localhost:5000/team/app:1.0"), &a.digest)
        .unwrap();
    store.tag(&r("app:v1"), &a.digest).unwrap();
    // Tagging twice changes nothing.
    store.tag(&r("app:v1"), &a.digest).unwrap();
    store.tag(&r("b"), &b.digest).unwrap();
    assert_eq!(
        store.image(&a.digest).unwrap().names,
        ["docker.io/library/app:v1", "localhost:5000/team/app:1.0"]
    );

    // Every way of naming `a` finds it.
    for wanted in [
        "localhost:5000/team/app:1.0".to_string(),
        "app:v1".into(),
        "docker.io/library/app:v1".into(),
        a.id.clone(),
        hex(&a.id),
        hex(&a.id)[..4].to_string(),
        format!("sha256:{}", &hex(&a.id)[..12]),
        a.digest.clone(),
        format!("app@{}", a.digest),
        format!("whatever/name@{}", a.digest),
    ] {
        let found = store.find(&wanted).unwrap();
        assert_eq!(
            found.map(|i| i.digest),
            Some(a.digest.clone()),
            "find({wanted:?})"
        );
    }
    for wanted in [
        hex(&a.id)[..3].to_string(),
        "app:v2".into(),
        "team/app:1.0".into(),
        format!("app@{}", sha256(b"nothing")),
    ] {
        assert!(
            store.find(&wanted).unwrap().is_none(),
            "find({wanted:?}) found something"
        );
    }

    // Names that cannot be given, and images that do not exist, change nothing.
    let index = fs::read(dir.path().join("index.json")).unwrap();
    assert!(
        store
            .tag(&r(&format!("app@{}", a.digest)), &a.digest)
            .is_err()
    );
    assert!(
        store
            .tag(&r("app:v9"), &sha256(b"no such manifest"))
            .is_err()
    );
    assert_eq!(fs::read(dir.path().join("index.json")).unwrap(), index);

    // A cache entry keeps an image without a name.
    let c = image(&store, &[b"c's layer"], "c");
    store.cache_put("key", &c.digest).unwrap();
    // An orphan blob, a fresh temporary file (a write in progress) and one
    // two days old (a write that never finished).
    let orphan = store.put_blob(b"nobody's", None).unwrap();
    let blobs = dir.path().join("blobs/sha256");
    fs::write(blobs.join(".incoming-fresh"), b"in progress").unwrap();
    fs::write(blobs.join(".incoming-stale"), b"abandoned!").unwrap();
    fs::File::options()
        .write(true)
        .open(blobs.join(".incoming-stale"))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 24 * 3600))
        .unwrap();
    assert_eq!(store.collect_garbage().unwrap(), 8 + 10);
    assert!(!store.has_blob(&orphan));
    assert!(blobs.join(".incoming-fresh").exists());
    assert!(!blobs.join(".incoming-stale").exists());
    for i in [&a, &b, &c] {
        assert!(store.has_blob(&i.digest) && store.has_blob(&i.id));
        for d in i.diff_ids() {
            assert!(store.has_blob(d));
        }
    }

    // Untagging: the other name stays; without names the image stays too.
    assert_eq!(
        store.untag(&r("app:v1")).unwrap(),
        Some((a.digest.clone(), true))
    );
    assert_eq!(
        store.untag(&r("localhost:5000/team/app:1.0")).unwrap(),
        Some((a.digest.clone(), false))
    );
    assert_eq!(store.untag(&r("app:v1")).unwrap(), None);
    assert_eq!(store.collect_garbage().unwrap(), 0);
    assert!(store.image(&a.digest).unwrap().names.is_empty());

    // Deleted: a's own blobs go, the shared layer stays for b.
    let sizes: u64 = [&a.digest, &a.id, &sha256(b"a's own layer")]
        .iter()
        .map(|d| store.blob_size(d).unwrap())
        .sum();
    store.delete(&BTreeSet::from([a.digest.clone()])).unwrap();
    assert_eq!(store.collect_garbage().unwrap(), sizes);
    assert!(store.has_blob(&sha256(shared)));
    assert_eq!(store.find("b").unwrap().unwrap().id, b.id);
    assert_eq!(store.cache_get("key").unwrap().unwrap().id, c.id);
}

// --- 05.3 unpacking a layer without trusting it ------------------------------------

/// A tar written one raw header at a time, so that it can say anything.
#[derive(Default)]
struct RawTar(Vec<u8>);

impl RawTar {
    fn header(&mut self, name: &[u8], kind: u8, link: &[u8], size: u64, mode: u32) -> &mut Self {
        let octal = |field: &mut [u8], n: u64| {
            let text = format!("{n:0width$o}", width = field.len() - 1);
            field[..text.len()].copy_from_slice(text.as_bytes());
        };
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], mode.into());
        octal(&mut h[108..116], uid.into());
        octal(&mut h[116..124], gid.into());
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 1_700_000_000);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if kind == b'4' {
            octal(&mut h[329..337], 8);
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        self.0.extend_from_slice(&h);
        self
    }

    fn data(&mut self, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }

    fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.header(name.as_bytes(), b'0', b"", data.len() as u64, mode)
            .data(data)
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.header(name.as_bytes(), b'5', b"", 0, mode)
    }

    fn link(&mut self, name: &str, kind: u8, target: &str) -> &mut Self {
        self.header(name.as_bytes(), kind, target.as_bytes(), 0, 0o777)
    }

    fn pax(&mut self, key: &str, value: &[u8]) -> &mut Self {
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        let mut record = format!("{len} {key}=").into_bytes();
        record.extend_from_slice(value);
        record.push(b'\n');
        self.header(b"././@PaxHeader", b'x', b"", record.len() as u64, 0o644)
            .data(&record)
    }

    fn long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.header(b"././@LongLink", b'L', b"", data.len() as u64, 0o644)
            .data(&data)
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend_from_slice(&[0; 1024]);
        out
    }
}

/// Every path under `dir`, sorted, with what it is: `path/`, `path ->
/// target`, `path (fifo)`, or `path mode=MODE content`.
fn listing(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(here) = todo.pop() {
        for entry in fs::read_dir(&here).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            out.push(if ft.is_symlink() {
                format!("{rel} -> {}", fs::read_link(&path).unwrap().display())
            } else if ft.is_dir() {
                todo.push(path.clone());
                format!("{rel}/ mode={:o}", meta.mode() & 0o7777)
            } else if ft.is_fifo() {
                format!("{rel} (fifo)")
            } else {
                let content = fs::read(&path).unwrap();
                format!(
                    "{rel} mode={:o} {}",
                    meta.mode() & 0o7777,
                    String::from_utf8_lossy(&content[..content.len().min(20)])
                )
            });
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_entries_in_combinations() {
    use images::extract::{self, Options, Target, Xattr};
    let long = "n".repeat(256);
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "a chain of links back up",
            RawTar::default()
                .link("a", b'2', "b")
                .link("b", b'2', "..")
                .file("a/x", b"x", 0o644)
                .finish(),
            "a/x".into(),
        ),
        (
            "a link where a directory was",
            RawTar::default()
                .dir("d", 0o755)
                .file("d/f", b"f", 0o644)
                .link("d", b'2', "/")
                .file("d/passwd", b"pwned", 0o644)
                .finish(),
            "d/passwd".into(),
        ),
        (
            "a hard link with .. in its target",
            RawTar::default()
                .file("x", b"x", 0o644)
                .link("h", b'1', "d/../x")
                .finish(),
            "h".into(),
        ),
        (
            "a hard link through a link",
            RawTar::default()
                .file("file", b"x", 0o644)
                .link("top", b'2', ".")
                .link("h", b'1', "top/file")
                .finish(),
            "h".into(),
        ),
        (
            "a hard link to a directory",
            RawTar::default()
                .dir("sub", 0o755)
                .link("h", b'1', "sub")
                .finish(),
            "h".into(),
        ),
        (
            "a hard link to nothing",
            RawTar::default().link("h", b'1', "missing").finish(),
            "h".into(),
        ),
        (
            "a PAX path that climbs out",
            RawTar::default()
                .pax("path", b"../p")
                .file("innocent", b"x", 0o644)
                .finish(),
            "../p".into(),
        ),
        (
            "a PAX link path to the host",
            RawTar::default()
                .file("x", b"x", 0o644)
                .pax("linkpath", b"/etc/passwd")
                .link("h", b'1', "x")
                .finish(),
            "h".into(),
        ),
        (
            "a GNU long name that climbs out",
            RawTar::default()
                .long_name(format!("{long}/../../q").as_bytes())
                .file("short", b"x", 0o644)
                .finish(),
            format!("{long}/../../q"),
        ),
        (
            "a name too long for Linux",
            RawTar::default()
                .pax("path", long.as_bytes())
                .file("short", b"x", 0o644)
                .finish(),
            long.clone(),
        ),
        (
            "a whiteout marker holding entries",
            RawTar::default().file(".wh.d/x", b"", 0o644).finish(),
            ".wh.d/x".into(),
        ),
        (
            "a directory with data",
            RawTar::default()
                .header(b"dir/", b'5', b"", 10, 0o755)
                .data(b"0123456789")
                .finish(),
            "dir/".into(),
        ),
        (
            "an opaque marker at the top",
            RawTar::default().file(".wh..wh..opq", b"", 0o644).finish(),
            ".wh..wh..opq".into(),
        ),
        (
            "a block device",
            RawTar::default()
                .header(b"disk", b'4', b"", 0, 0o660)
                .finish(),
            "disk".into(),
        ),
        (
            "an absolute path",
            RawTar::default().file("/abs", b"x", 0o644).finish(),
            "/abs".into(),
        ),
    ];
    for (what, layer, entry) in cases {
        for target in [Target::Plain, Target::Overlay(Xattr::User)] {
            let dir = tmp();
            let top = dir.path().join("layer");
            fs::create_dir(&top).unwrap();
            write(
                &dir.path().join("outside/passwd"),
                "root:x:0:0::/:/bin/sh\n",
            );
            let before = listing(dir.path());
            let options = Options {
                owners: false,
                ..Options::new(target)
            };
            let err = extract::extract(&layer[..], extract::TAR, &sha256(&layer), &top, &options)
                .err()
                .unwrap_or_else(|| panic!("{what} ({target:?}): accepted"));
            match &err {
                Error::Hostile { entry: e, .. } => {
                    assert_eq!(e, &entry, "{what} ({target:?}): {err}")
                }
                other => panic!("{what} ({target:?}): not refused as hostile: {other}"),
            }
            let after: Vec<String> = listing(dir.path())
                .into_iter()
                .filter(|l| !l.starts_with("layer"))
                .collect();
            let before: Vec<String> = before
                .into_iter()
                .filter(|l| !l.starts_with("layer"))
                .collect();
            assert_eq!(after, before, "{what} ({target:?}): written outside");
        }
    }
}

#[test]
fn an_honest_layer_of_every_kind_over_the_layers_below() {
    use images::extract::{self, Options, Target};
    use std::os::unix::fs::MetadataExt;
    let dir = tmp();
    let top = dir.path().join("layer");
    // The layers below, already in the directory (a plain target).
    for (path, content) in [
        ("keep/old", "old"),
        ("gone/stuff/file", "gone"),
        ("opaque/old", "hidden"),
        ("replace", "a file"),
        ("dir-to-file/inside", "inside"),
    ] {
        write(&top.join(path), content);
    }
    let long = format!("{}/{}", "l".repeat(150), "m".repeat(150));
    let tar = RawTar::default()
        .file("keep/new", b"new", 0o644)
        .file("keep/.wh.new", b"", 0o644)
        .file(".wh.gone", b"", 0o644)
        .dir("opaque", 0o750)
        .file("opaque/mine", b"mine", 0o600)
        .file("opaque/.wh..wh..opq", b"", 0o644)
        .file("opaque/later", b"later", 0o644)
        .link("replace", b'2', "keep/new")
        .file("dir-to-file", b"now a file", 0o644)
        .file("bin/su", b"setuid", 0o4755)
        .link("hard", b'1', "keep/new")
        .header(b"fifo", b'6', b"", 0, 0o600)
        .dir("ro", 0o555)
        .file("ro/inside", b"in a read-only directory", 0o444)
        .link("up", b'2', "../../etc/passwd")
        .pax("mtime", b"1700000000.5")
        .file("t", b"time", 0o644)
        .long_name(long.as_bytes())
        .file("short", b"long", 0o644)
        .finish();
    let blob = gzip(&tar);
    let options = Options {
        owners: false,
        ..Options::new(Target::Plain)
    };
    // A wrong diff id is found at the end, whatever was unpacked.
    let other = dir.path().join("other");
    fs::create_dir(&other).unwrap();
    let e = extract::extract(
        &blob[..],
        extract::TAR_GZIP,
        &sha256(b"something else"),
        &other,
        &options,
    )
    .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");

    let done = extract::extract(&blob[..], extract::TAR_GZIP, &sha256(&tar), &top, &options)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.diff_id, sha256(&tar));
    assert_eq!(done.digest, sha256(&blob));
    assert_eq!(
        (done.blob_bytes, done.tar_bytes),
        (blob.len() as u64, tar.len() as u64)
    );
    assert_eq!(done.files, 8);
    let mut want = vec![
        "bin/ mode=755".to_string(),
        "bin/su mode=4755 setuid".into(),
        "dir-to-file mode=644 now a file".into(),
        "fifo (fifo)".into(),
        "hard mode=644 new".into(),
        "keep/ mode=755".into(),
        "keep/new mode=644 new".into(),
        "keep/old mode=644 old".into(),
        "opaque/ mode=750".into(),
        "opaque/later mode=644 later".into(),
        "opaque/mine mode=600 mine".into(),
        "replace -> keep/new".into(),
        "ro/ mode=555".into(),
        "ro/inside mode=444 in a read-only direc".into(),
        "t mode=644 time".into(),
        "up -> ../../etc/passwd".into(),
        format!("{}/ mode=755", "l".repeat(150)),
        format!("{long} mode=644 long"),
    ];
    want.sort();
    // The umask may take bits from directories made on the way.
    let got: Vec<String> = listing(&top)
        .into_iter()
        .map(|l| l.replace("/ mode=700", "/ mode=755"))
        .collect();
    assert_eq!(got, want);
    let new = fs::metadata(top.join("keep/new")).unwrap();
    assert_eq!(fs::metadata(top.join("hard")).unwrap().ino(), new.ino());
    let t = fs::metadata(top.join("t")).unwrap();
    assert_eq!((t.mtime(), t.mtime_nsec()), (1_700_000_000, 500_000_000));
    assert_eq!(new.mtime(), 1_700_000_000);
    fs::set_permissions(top.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

// --- 05.4 pulling, pushing and logging in ----------------------------------------

#[test]
fn credentials_under_every_spelling_of_a_host() {
    let dir = tmp();
    let path = dir.path().join("new/dir/config.json");
    let creds = CredentialStore::new(&path);
    assert_eq!(creds.get("docker.io").unwrap(), None);
    assert!(!creds.logout("docker.io").unwrap());

    let me = Credentials::new("me", "p:a:s:s");
    creds.login("docker.io", &me).unwrap();
    // Private from the start: the file and the directory made for it.
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let file: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(file["auths"].as_object().unwrap().len(), 1);
    assert!(file["auths"][DOCKER_HUB_KEY]["auth"].is_string());
    for alias in [
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        DOCKER_HUB_KEY,
    ] {
        assert_eq!(creds.get(alias).unwrap().as_ref(), Some(&me), "{alias}");
    }

    // A file Docker wrote: URL keys, a helper's empty entry, other fields.
    let ghcr = Credentials::new("octo", "ghp_secret");
    fs::write(
        &path,
        serde_json::json!({
            "credsStore": "desktop",
            "auths": {
                "https://ghcr.io/v1/": { "auth": "b2N0bzpnaHBfc2VjcmV0" },
                "quay.io": {},
                "localhost:5000": { "auth": "dTpw", "email": "kept@example.com" },
            },
            "proxies": { "default": { "httpProxy": "http://proxy:3128" } },
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(creds.get("ghcr.io").unwrap(), Some(ghcr));
    assert_eq!(creds.get("quay.io").unwrap(), None);
    assert_eq!(
        creds.get("localhost:5000").unwrap(),
        Some(Credentials::new("u", "p"))
    );
    assert_eq!(creds.get("localhost:5001").unwrap(), None);

    // Logging in again under another spelling replaces the entry.
    let new = Credentials::new("octo", "rotated");
    creds.login("ghcr.io", &new).unwrap();
    let file: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let keys: Vec<&String> = file["auths"].as_object().unwrap().keys().collect();
    assert!(
        keys.contains(&&"ghcr.io".to_string())
            && !keys.contains(&&"https://ghcr.io/v1/".to_string()),
        "{keys:?}"
    );
    assert_eq!(creds.get("ghcr.io").unwrap(), Some(new));
    assert_eq!(file["credsStore"], "desktop");
    assert_eq!(file["proxies"]["default"]["httpProxy"], "http://proxy:3128");
    assert_eq!(file["auths"]["localhost:5000"]["email"], "kept@example.com");
    assert!(creds.logout("ghcr.io").unwrap());
    assert!(!creds.logout("ghcr.io").unwrap());
    assert_eq!(creds.get("ghcr.io").unwrap(), None);
    assert!(creds.get("localhost:5000").unwrap().is_some());

    // A damaged entry says so, and names the way out.
    fs::write(&path, r#"{"auths":{"h":{"auth":"bm9jb2xvbg=="}}}"#).unwrap();
    let e = creds.get("h").unwrap_err().to_string();
    assert!(e.contains("berth logout h"), "{e}");

    assert_eq!(
        Credentials::new("a", "").basic_header(),
        format!("Basic {}", "YTo=")
    );

    // Challenges as registries really write them.
    let c = parse_challenges(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull",error="insufficient_scope""#,
    );
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].param("service"), Some("registry.docker.io"));
    assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
    assert_eq!(c[0].param("error"), Some("insufficient_scope"));
    let c = parse_challenges(r#"Basic realm="Registry Realm", charset="UTF-8""#);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].scheme, "Basic");
    assert_eq!(c[0].param("realm"), Some("Registry Realm"));
    assert_eq!(c[0].param("CHARSET"), Some("UTF-8"));
    let c = parse_challenges(r#"Negotiate, Bearer realm=https://t/x,scope="a b""#);
    assert_eq!(
        c.iter().map(|c| c.scheme.as_str()).collect::<Vec<_>>(),
        ["Negotiate", "Bearer"]
    );
    assert!(c[0].params.is_empty());
    assert_eq!(c[1].param("realm"), Some("https://t/x"));
    assert_eq!(c[1].param("scope"), Some("a b"));
}

/// A registry that serves fixed manifests, one request per connection, on
/// a port of 127.0.0.1; it stops when the test's process ends.
fn fake_registry(manifests: HashMap<String, (String, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split(' ').nth(1).unwrap_or("").to_string();
            let answer = match manifests.get(&path) {
                Some((media_type, body)) => {
                    let mut head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\nDocker-Content-Digest: {}\r\nConnection: close\r\n\r\n",
                        body.len(),
                        sha256(body)
                    )
                    .into_bytes();
                    head.extend_from_slice(body);
                    head
                }
                None => {
                    let body =
                        r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
                    format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .into_bytes()
                }
            };
            let _ = stream.write_all(&answer);
        }
    });
    host
}

#[test]
fn an_index_resolves_to_the_best_platform() {
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    let manifest = |n: u8| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(&[n]),
                "size": 1,
            },
            "layers": [],
        }))
        .unwrap()
    };
    // Listed in an order that makes the first match the wrong one.
    let platforms: [(u8, &str, Option<&str>); 5] = [
        (1, "arm64", None),
        (2, "arm64", Some("v8")),
        (3, "arm", Some("v7")),
        (4, "amd64", None),
        (5, "ppc64le", None),
    ];
    let mut served = HashMap::new();
    let mut entries = Vec::new();
    for (n, arch, variant) in platforms {
        let bytes = manifest(n);
        let mut platform = serde_json::json!({ "os": "linux", "architecture": arch });
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        entries.push(serde_json::json!({
            "mediaType": MANIFEST,
            "digest": sha256(&bytes),
            "size": bytes.len(),
            "platform": platform,
        }));
        served.insert(
            format!("/v2/app/manifests/{}", sha256(&bytes)),
            (MANIFEST.to_string(), bytes),
        );
    }
    // An index that lies about the size of its one entry.
    let liar = manifest(9);
    let lying = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": sha256(&liar),
            "size": liar.len() + 1,
            "platform": { "os": "linux", "architecture": "amd64" },
        }],
    }))
    .unwrap();
    served.insert(
        format!("/v2/app/manifests/{}", sha256(&liar)),
        (MANIFEST.to_string(), liar),
    );
    served.insert("/v2/app/manifests/lying".into(), (INDEX.into(), lying));
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": entries,
    }))
    .unwrap();
    let index_digest = sha256(&index);
    served.insert("/v2/app/manifests/1".into(), (INDEX.into(), index));
    let host = fake_registry(served);
    let client = Client::new(&host, &[]).unwrap();

    for (asked, want) in [
        ("linux/arm64/v8", 2),
        ("linux/arm64", 1),
        ("linux/arm/v7", 3),
        ("linux/arm", 3),
        ("linux/amd64", 4),
    ] {
        let platform: Platform = asked.parse().unwrap();
        let resolved = client
            .resolve("app", "1", &platform)
            .unwrap_or_else(|e| panic!("{asked}: {e}"));
        assert_eq!(resolved.manifest.bytes, manifest(want), "{asked}");
        assert_eq!(resolved.manifest.digest, sha256(&manifest(want)));
        assert_eq!(resolved.manifest.media_type, MANIFEST);
        assert_eq!(resolved.digest(), index_digest, "{asked}");
    }
    for asked in ["linux/arm/v6", "linux/riscv64", "windows/amd64"] {
        let e = client
            .resolve("app", "1", &asked.parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("has no image for {asked}"))
                && e.contains("linux/arm64/v8, linux/arm/v7, linux/amd64"),
            "{asked}: {e}"
        );
    }
    // Asked for by digest, an image manifest is itself, without an index.
    let by_digest = client
        .resolve("app", &sha256(&manifest(5)), &Platform::linux_amd64())
        .unwrap();
    assert_eq!(by_digest.index, None);
    assert_eq!(by_digest.digest(), sha256(&manifest(5)));
    let e = client
        .resolve("app", "lying", &Platform::linux_amd64())
        .unwrap_err()
        .to_string();
    assert!(e.contains("bytes"), "{e}");
    assert!(
        client
            .resolve("app", "missing", &Platform::linux_amd64())
            .is_err()
    );
}

// --- 05.5 images as files -----------------------------------------------------------

#[test]
fn archives_are_reproducible_and_load_back_exactly() {
    let dir = tmp();
    let store = Store::open(&dir.path().join("a")).unwrap();
    let base = tar_of(&[("etc/base", b"base\n")]);
    let top = tar_of(&[("etc/top", b"top\n")]);
    let one = image(&store, &[&base[..], &top[..]], "one");
    let two = image(&store, &[&base[..]], "two");
    store
        .tag(&r("example.com/team/one:1"), &one.digest)
        .unwrap();
    store.tag(&r("one:latest"), &one.digest).unwrap();
    let one = store.image(&one.digest).unwrap();
    let images = vec![
        (one.clone(), one.names.iter().map(|n| r(n)).collect()),
        (two.clone(), vec![]),
        // The same image twice: one entry, the names together.
        (one.clone(), vec![r("one:again")]),
    ];
    let save = || {
        let mut out = Vec::new();
        archive::save(&store, &images, &mut out).unwrap();
        out
    };
    let saved = save();
    assert_eq!(save(), saved, "saving twice gave different bytes");

    // Each blob once, under its digest.
    let mut names = Vec::new();
    let mut tar = tar::Archive::new(&saved[..]);
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        names.push(entry.path().unwrap().to_string_lossy().to_string());
    }
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    let blobs: BTreeSet<String> = names
        .iter()
        .filter_map(|n| n.strip_prefix("blobs/sha256/"))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    let mut want = BTreeSet::new();
    for i in [&one, &two] {
        want.insert(hex(&i.digest));
        want.insert(hex(&i.id));
        for d in i.diff_ids() {
            want.insert(hex(d));
        }
    }
    assert_eq!(blobs, want);

    // Loaded into an empty store: the same images, the same names, and
    // the unnamed one named by the caller.
    let other = Store::open(&dir.path().join("b")).unwrap();
    let loaded = archive::load(&other, &saved[..], Some(&r("restored:2"))).unwrap();
    let by_digest: HashMap<String, Vec<String>> = loaded
        .iter()
        .map(|l| (l.digest.clone(), l.names.clone()))
        .collect();
    assert_eq!(by_digest.len(), 2);
    assert_eq!(
        by_digest[&one.digest],
        [
            "docker.io/library/one:again",
            "docker.io/library/one:latest",
            "example.com/team/one:1",
        ]
    );
    assert_eq!(by_digest[&two.digest], ["docker.io/library/restored:2"]);
    assert_eq!(other.find("one:again").unwrap().unwrap().id, one.id);
    assert_eq!(other.find("restored:2").unwrap().unwrap().id, two.id);
    assert_eq!(blob_files(&other), want.iter().cloned().collect());
    // Loading again changes nothing and replaces nothing.
    let again = archive::load(&other, &saved[..], Some(&r("restored:2"))).unwrap();
    assert!(again.iter().all(|l| l.replaced.is_empty()), "{again:?}");
    assert_eq!(blob_files(&other), want.iter().cloned().collect());

    // import: plain or gzipped, the same layer and, with the same time,
    // the same image.
    let rootfs = tar_of(&[("bin/sh", b"#!"), ("etc/os-release", b"ID=test\n")]);
    let options = ImportOptions {
        config: Some(
            ConfigBuilder::default()
                .cmd(strings(&["/bin/sh"]))
                .build()
                .unwrap(),
        ),
        message: Some("from the test".into()),
        created: Some("2024-05-06T07:08:09Z".into()),
    };
    let plain = archive::import(&other, &rootfs[..], &options, None).unwrap();
    let zipped =
        archive::import(&other, &gzip(&rootfs)[..], &options, Some(&r("imported:1"))).unwrap();
    assert_eq!(plain.id, zipped.id);
    assert_eq!(zipped.names, ["docker.io/library/imported:1"]);
    assert_eq!(plain.diff_ids(), [sha256(&rootfs)]);
    let layer = other
        .get_blob(plain.manifest.layers()[0].digest().as_ref())
        .unwrap();
    let mut unzipped = Vec::new();
    flate2::read::MultiGzDecoder::new(&layer[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, rootfs);
    let history = plain.config.history().clone().unwrap();
    assert_eq!(history[0].comment().as_deref(), Some("from the test"));
    assert_eq!(
        plain.config.config().as_ref().unwrap().cmd().clone(),
        Some(strings(&["/bin/sh"]))
    );
    // Without a time, now, in RFC 3339 to the second.
    let now = archive::import(&other, &rootfs[..], &ImportOptions::default(), None).unwrap();
    let created = now.config.created().clone().unwrap();
    assert_eq!(created.len(), "2024-05-06T07:08:09Z".len(), "{created}");
    assert!(
        created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    assert!(created.as_str() > "2025", "{created}");
    for bad in [&b"not a tar at all, just text"[..], &gzip(b"nor this")[..]] {
        assert!(archive::import(&other, bad, &options, None).is_err());
    }
}

// --- 05.6 reading a Dockerfile ----------------------------------------------------

#[test]
fn expansion_continuations_forms_and_flags_in_corners() {
    let vars: HashMap<&str, &str> = [("A", "alpha"), ("E", ""), ("S", "a b")].into();
    let lookup = |name: &str| vars.get(name).map(|v| v.to_string());
    for (word, want) in [
        ("${E:+set}", ""),
        ("${E+set}", "set"),
        ("${U+set}", ""),
        ("${U-x}", "x"),
        ("${E-x}", ""),
        ("${E:-x}", "x"),
        ("${U:-${V:-deep}}", "deep"),
        ("${A:+<$A>}", "<alpha>"),
        ("'$A'", "$A"),
        ("\"$A\"", "alpha"),
        ("\"'$A'\"", "'alpha'"),
        ("'\"$A\"'", "\"$A\""),
        ("\"\\$A\"", "$A"),
        ("\"\\a\"", "\\a"),
        ("\\$A", "$A"),
        ("a\\ b", "a b"),
        ("$S-$S", "a b-a b"),
        ("cost: 5$", "cost: 5$"),
        ("$1$A", "alpha"),
        ("${A}${A}", "alphaalpha"),
        ("x${E}y", "xy"),
    ] {
        assert_eq!(expand(word, lookup, '\\').as_deref(), Ok(want), "{word}");
    }
    assert_eq!(expand("`$A", lookup, '`').as_deref(), Ok("$A"));
    assert_eq!(expand("\\$A", lookup, '`').as_deref(), Ok("\\alpha"));
    let e = expand("ab${U:?must be set}", lookup, '\\').unwrap_err();
    assert_eq!((e.offset, e.message.as_str()), (2, "U: must be set"));
    let e = expand("${E?}", lookup, '\\');
    assert_eq!(e.as_deref(), Ok(""));
    let e = expand("${E:?}", lookup, '\\').unwrap_err();
    assert_eq!(e.message, "E: is empty");

    // Backtick escapes, CRLF, comments and continuations.
    let text = "# escape=`\r\nFROM a\r\nRUN echo one `\r\n  # a comment `\r\n  two `\r\n\r\n three\r\nCOPY --chown=1:2 --link=false -- --odd `\r\n  C:\\dir\\ /dst/\r\nCMD ['single', 'quotes']\r\nENTRYPOINT []\r\nHEALTHCHECK --interval=1m30s --timeout=2.5s --retries=2 CMD [\"probe\"]\r\nEXPOSE 7000-7002/udp\r\n";
    let df = Dockerfile::parse("Dockerfile", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(df.escape, '`');
    let body: Vec<&Kind> = df.stages[0].instructions.iter().map(|i| &i.kind).collect();
    match body[0] {
        Kind::Run(run) => assert_eq!(run.command, Form::Shell("echo one   two  three".into())),
        other => panic!("{other:?}"),
    }
    assert_eq!(df.stages[0].instructions[0].end_line, 7);
    assert_eq!(df.warnings.len(), 1, "{:?}", df.warnings);
    assert_eq!(df.warnings[0].pos.line, 6);
    match body[1] {
        Kind::Copy(t) => {
            let words: Vec<&str> = t.sources.iter().map(|w| w.text.as_str()).collect();
            assert_eq!(words, ["--odd", "C:\\dir\\"]);
            assert_eq!(t.dest.text, "/dst/");
            assert_eq!(t.chown.as_ref().map(|w| w.text.as_str()), Some("1:2"));
            assert!(!t.link);
            // The second source is on the next line.
            assert_eq!((t.sources[1].pos.line, t.sources[1].pos.column), (9, 3));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        body[2],
        &Kind::Cmd(Form::Shell("['single', 'quotes']".into()))
    );
    assert_eq!(body[3], &Kind::Entrypoint(Form::Exec(vec![])));
    match body[4] {
        Kind::Healthcheck(Health::Check(h)) => {
            assert_eq!(h.command, Form::Exec(strings(&["probe"])));
            assert_eq!(h.interval, Some(Duration::from_secs(90)));
            assert_eq!(h.timeout, Some(Duration::from_millis(2500)));
            assert_eq!(h.retries, Some(2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        exposed_ports("7000-7002/udp").unwrap(),
        ["7000/udp", "7001/udp", "7002/udp"]
    );

    // Errors at their place.
    for (text, place, says) in [
        ("FROM a\nRUN [\"ok\", 1]\n", "2:12", "a number"),
        ("FROM a\nRUN []\n", "2:5", "no command"),
        ("FROM a\nCOPY --chmod a b\n", "2:6", "needs a value"),
        ("FROM a\nCOPY --link=maybe a b\n", "2:13", "true or false"),
        ("FROM a\nENTRYPIONT x\n", "2:1", "did you mean ENTRYPOINT?"),
        (
            "FROM a\nHEALTHCHECK --interval=1y CMD x\n",
            "2:24",
            "invalid --interval",
        ),
        ("FROM a\nENV A=${B\n", "2:7", "unterminated ${"),
        ("FROM a\nCOPY --form=x a b\n", "2:6", "did you mean --from?"),
    ] {
        let e = Dockerfile::parse("Dockerfile", text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("Dockerfile:{place}: ")) && e.contains(says),
            "{text:?}: {e}"
        );
    }
}

// --- 05.7 ENTRYPOINT and CMD ---------------------------------------------------

#[test]
fn what_runs_for_every_combination() {
    let v = strings;
    // A base image with a shell of its own, an entrypoint and a command.
    let base = || ImageCommand::inherit(v(&["/init"]), v(&["serve"]), v(&["/bin/ash", "-c"]));
    let mut image = base();
    image.set_entrypoint(&Form::Shell("exec app".into()));
    assert_eq!(image.entrypoint, v(&["/bin/ash", "-c", "exec app"]));
    assert!(image.cmd.is_empty());
    // CMD then ENTRYPOINT [] in one stage: the stage's CMD stays alone.
    let mut image = base();
    image.set_cmd(&Form::Exec(v(&["ls", "-l"])));
    image.set_entrypoint(&Form::Exec(vec![]));
    assert_eq!(
        (image.entrypoint.clone(), image.cmd.clone()),
        (vec![], v(&["ls", "-l"]))
    );
    assert_eq!(
        entrypoint::command(&image.entrypoint, &image.cmd, &[], None).unwrap(),
        v(&["ls", "-l"])
    );
    // SHELL changes later shell forms only, and an empty one is the default.
    let mut image = ImageCommand::default();
    image.set_cmd(&Form::Shell("a".into()));
    image.set_shell(&v(&["/bin/bash", "-c"]));
    image.set_entrypoint(&Form::Shell("b".into()));
    assert_eq!(image.cmd, v(&["/bin/sh", "-c", "a"]));
    assert_eq!(image.entrypoint, v(&["/bin/bash", "-c", "b"]));
    assert_eq!(
        entrypoint::config_command(&Form::Shell(String::new()), &[]),
        v(&["/bin/sh", "-c", ""])
    );

    let cmd = |e: &[&str], c: &[&str], args: &[&str], flag: Option<&[&str]>| {
        let flag = flag.map(v);
        entrypoint::command(&v(e), &v(c), &v(args), flag.as_deref())
    };
    // --entrypoint with several words keeps them all, then the arguments.
    assert_eq!(
        cmd(&["/app"], &["x"], &["-v"], Some(&["/bin/sh", "-c"])).unwrap(),
        v(&["/bin/sh", "-c", "-v"])
    );
    // An argument that is an empty string is still an argument.
    assert_eq!(
        cmd(&["/app"], &["x"], &[""], None).unwrap(),
        v(&["/app", ""])
    );
    // An --entrypoint and nothing else: it runs alone, without the CMD.
    assert_eq!(
        cmd(&[], &["x"], &[], Some(&["/bin/true"])).unwrap(),
        v(&["/bin/true"])
    );
    for (e, c, args, flag) in [
        (&[][..], &[][..], &[][..], Some(&[""][..])),
        (&[], &["only", "cmd"][..], &[], Some(&[][..])),
        (&["/app"][..], &[], &[], Some(&[][..])),
    ] {
        let err = cmd(e, c, args, flag).unwrap_err().to_string();
        assert!(
            err.starts_with("no command specified: --entrypoint \"\""),
            "{e:?} {c:?} {args:?} {flag:?}: {err}"
        );
    }
}

// --- 05.8 the build context, COPY and ADD ------------------------------------------

/// The test's own user and group: COPY gives them to what it writes, which
/// needs no root.
fn mine() -> CopyOptions {
    CopyOptions {
        chown: Some((
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )),
        chmod: None,
    }
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

#[test]
fn ignore_rules_checksums_and_destinations() {
    let dir = tmp();
    let ctx = dir.path().join("ctx");
    let root = dir.path().join("root");
    fs::create_dir_all(&root).unwrap();
    for file in [
        "app/main.rs",
        "app/debug.log",
        "app/deep/er/trace.log",
        "keep/x/important.log",
        "keep/x/other.log",
        "build/out.bin",
        "builder/ok.txt",
        "a.tmp",
        "x.tmp",
        "docs/[1].md",
    ] {
        write(&ctx.join(file), file);
    }
    write(
        &ctx.join(".dockerignore"),
        "**/*.log\n!keep/**/important.log\nbuild\n*.tmp\n!/x.tmp\ndocs/\\[1\\].md\n",
    );
    let open = || Context::open(&ctx, Ignore::load(&ctx).unwrap()).unwrap();
    let context = open();
    let files: Vec<String> = context.files().map(|p| p.display().to_string()).collect();
    assert_eq!(
        files,
        [
            ".dockerignore",
            "app",
            "app/deep",
            "app/deep/er",
            "app/main.rs",
            "builder",
            "builder/ok.txt",
            "docs",
            "keep",
            "keep/x",
            "keep/x/important.log",
            "x.tmp",
        ]
    );
    // Sources: outside the context, or ignored, they are not there.
    for bad in ["../ctx/app", "app/../../x", "build/out.bin", "a.tmp"] {
        assert!(context.resolve(bad).is_err(), "{bad}");
    }
    assert_eq!(
        context.resolve("/app/../app/main.rs").unwrap(),
        [PathBuf::from("app/main.rs")]
    );

    // The cache key: time and ignored files do not count; content, mode,
    // names and link targets do.
    let key = |sources: &[&str]| open().checksum(sources).unwrap();
    let first = key(&["app", "keep"]);
    assert_eq!(key(&["app", "keep"]), first);
    fs::File::options()
        .write(true)
        .open(ctx.join("app/main.rs"))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    write(&ctx.join("app/debug.log"), "changed, but ignored");
    write(&ctx.join("build/new"), "ignored too");
    assert_eq!(key(&["app", "keep"]), first);
    assert_ne!(key(&["keep", "app"]), first, "the order of sources counts");
    write(&ctx.join("app/main.rs"), "app/main.rS");
    let changed = key(&["app", "keep"]);
    assert_ne!(changed, first);
    fs::set_permissions(ctx.join("app/main.rs"), fs::Permissions::from_mode(0o755)).unwrap();
    let chmodded = key(&["app", "keep"]);
    assert_ne!(chmodded, changed);
    fs::rename(ctx.join("app/deep/er"), ctx.join("app/deep/ER")).unwrap();
    let renamed = key(&["app", "keep"]);
    assert_ne!(renamed, chmodded);
    std::os::unix::fs::symlink("main.rs", ctx.join("app/link")).unwrap();
    let linked = key(&["app", "keep"]);
    fs::remove_file(ctx.join("app/link")).unwrap();
    std::os::unix::fs::symlink("other.rs", ctx.join("app/link")).unwrap();
    assert_ne!(key(&["app", "keep"]), linked);
    assert_ne!(linked, renamed);

    // Destinations: a file goes into an existing directory, or becomes the
    // destination; a relative one starts at WORKDIR, and `..` stops at `/`.
    fs::create_dir_all(root.join("srv")).unwrap();
    let context = open();
    let run = |sources: &[&str], dest: &str, workdir: &str| {
        copy(&context, sources, dest, workdir, &root, &mine())
            .unwrap_or_else(|e| panic!("COPY {sources:?} {dest} in {workdir}: {e}"))
    };
    run(&["x.tmp"], "/srv", "/");
    assert!(root.join("srv/x.tmp").is_file());
    run(&["x.tmp"], "renamed", "/srv");
    assert!(root.join("srv/renamed").is_file());
    run(&["x.tmp"], "../../../../top", "/a/b");
    assert!(root.join("top").is_file());
    run(&["builder/ok.txt"], "new/", "/");
    assert!(root.join("new/ok.txt").is_file());
    run(&["keep"], "/kept", "/");
    assert!(root.join("kept/x/important.log").is_file());
    assert!(!root.join("kept/x/other.log").exists());
    assert!(!dir.path().join("top").exists());
    let e = copy(
        &context,
        &["x.tmp", "builder/ok.txt"],
        "/two",
        "/",
        &root,
        &mine(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("trailing slash"), "{e}");
}
