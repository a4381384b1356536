//! Step 05.4's client against real and fake registries, on the loopback
//! device; no root needed.
//!
//! - A real registry: each test that needs one starts its own
//!   `docker-registry serve` (CNCF distribution) on a free port of
//!   127.0.0.1, storing into a temporary directory, with or without
//!   htpasswd (Basic) authentication. A [`Registry`] guard kills it when the
//!   test ends, passing or failing.
//! - A token-protected front ([`TokenFront`]): a small HTTP server written
//!   here that plays Docker's token protocol (401 with a Bearer challenge,
//!   a token endpoint that checks the password and the scopes) and passes
//!   authorized requests on to a real registry, so that the Bearer flow is
//!   exercised end to end.
//! - Misbehaving servers ([`HttpServer`] with a hand-written answer): wrong
//!   content, a body cut short, JSON that is not JSON, a 401 that says
//!   nothing about logging in, a port nobody listens on.
//!
//! Without `docker-registry` (or `htpasswd`), the tests that need it say so
//! and pass, except under `CI=true`, where they fail.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use images::Error;
use images::auth::{CredentialStore, Credentials, DOCKER_HUB_KEY};
use images::registry::{
    BlobPush, BlobSource, Client, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, ManifestKind, OCI_INDEX,
    OCI_MANIFEST, Platform,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------------------
// Skipping when the registry is not installed

/// The tools the real-registry tests run.
const TOOLS: [(&str, &str); 2] = [
    ("docker-registry", "docker-registry"),
    ("htpasswd", "apache2-utils"),
];

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// True when the tools are there. Otherwise says why the test does not
/// run (on the real stderr, which the harness does not capture) and
/// returns false, or panics under CI, where a skipped test is a failure.
fn registry_installed() -> bool {
    let missing: Vec<(&str, &str)> = TOOLS.into_iter().filter(|(p, _)| !on_path(p)).collect();
    if missing.is_empty() {
        return true;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("registry test")
        .to_string();
    let programs: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    let packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    let why = format!(
        "{test}: not run: {} not installed; run `cargo xtask setup`, or as root \
         `apt-get install {}`",
        programs.join(" and "),
        packages.join(" ")
    );
    if testkit::in_ci() {
        panic!("{why} — and CI=true, where a test that cannot run is a failure");
    }
    let _ = writeln!(std::io::stderr().lock(), "{why}");
    false
}

/// Starts a test that needs a real registry: returns early (after saying
/// why) when it is not installed.
macro_rules! needs_registry {
    () => {
        if !registry_installed() {
            return;
        }
    };
}

// ---------------------------------------------------------------------------
// A real registry

const USER: &str = "lab05";
const PASSWORD: &str = "s3cret:with:colons";

#[derive(Default, Clone, Copy)]
struct Options {
    /// Protect it with htpasswd (Basic authentication) for USER/PASSWORD.
    basic_auth: bool,
    /// Send `Location` headers as paths rather than full URLs.
    relative_urls: bool,
}

/// A running `docker-registry`, killed (and its directory removed) when
/// dropped.
struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`: how the client names it.
    host: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether an HTTP server at `addr` answers `GET /v2/` as a registry does
/// (200, or 401 when it wants a login).
fn answers_v2(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: test\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && (answer.contains(" 200 ") || answer.contains(" 401 "))
}

impl Registry {
    fn start(options: Options) -> Registry {
        // The port is free when picked, but another process may take it
        // before the registry binds it: then try another.
        for _ in 0..5 {
            if let Some(registry) = Registry::try_start(options) {
                return registry;
            }
        }
        panic!("docker-registry did not start on any of 5 ports");
    }

    fn try_start(options: Options) -> Option<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("lab05-reg-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let data = dir.path().join("data");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {host}\n  secret: lab05-test-secret\n  relativeurls: {}\n",
            data.display(),
            options.relative_urls
        );
        if options.basic_auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("run htpasswd");
            assert!(out.status.success(), "htpasswd failed: {out:?}");
            let file = dir.path().join("htpasswd");
            fs::write(&file, &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: lab05-registry\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = dir.path().join("registry.log");
        let log_file = fs::File::create(&log).unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        // Should this test process die without running destructors, the
        // kernel kills the registry with it.
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start docker-registry");
        // From here on the guard owns the process: any panic kills it.
        let mut registry = Registry {
            child,
            host,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = registry.child.try_wait().unwrap() {
                let log = fs::read_to_string(&registry.log).unwrap_or_default();
                if log.contains("address already in use") {
                    return None;
                }
                panic!("docker-registry exited ({status}) before answering:\n{log}");
            }
            if answers_v2(&registry.host) {
                return Some(registry);
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {} within 15 s:\n{}",
                registry.host,
                fs::read_to_string(&registry.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.host, &[]).unwrap()
    }
}

// ---------------------------------------------------------------------------
// Test images

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A blob and its digest.
#[derive(Clone)]
struct Blob {
    bytes: Vec<u8>,
    digest: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        Blob {
            digest: sha256(&bytes),
            bytes,
        }
    }

    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A gzipped tar holding the given files, and the digest of the tar
/// before compression (the layer's diff id).
fn layer(files: &[(&str, &[u8])]) -> (Blob, String) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, *data).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (Blob::new(gz.finish().unwrap()), sha256(&tar))
}

/// Bytes that do not compress: a layer of them stays large enough to
/// need several chunks.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Media types for an image in one of the two formats.
#[derive(Clone, Copy)]
enum Format {
    Oci,
    Docker,
}

/// A one-layer image: the layer, the config and the manifest.
struct Image {
    layer: Blob,
    config: Blob,
    manifest: Blob,
    media_type: &'static str,
}

fn image(format: Format, arch: &str, content: &[u8]) -> Image {
    let (layer, diff_id) = layer(&[("hello", content)]);
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": { "Cmd": ["/hello"] },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        }))
        .unwrap(),
    );
    let (media_type, config_type, layer_type) = match format {
        Format::Oci => (
            OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        Format::Docker => (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
    };
    let manifest = Blob::new(
        serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": { "mediaType": config_type, "digest": config.digest, "size": config.size() },
            "layers": [{ "mediaType": layer_type, "digest": layer.digest, "size": layer.size() }],
        }))
        .unwrap(),
    );
    Image {
        layer,
        config,
        manifest,
        media_type,
    }
}

/// Pushes an image's blobs and its manifest under `reference`.
fn push_image(client: &Client, repo: &str, reference: &str, image: &Image) -> Vec<BlobPush> {
    let mut results = Vec::new();
    for blob in [&image.layer, &image.config] {
        results.push(
            client
                .push_blob(
                    repo,
                    &blob.digest,
                    blob.size(),
                    &BlobSource::Bytes(&blob.bytes),
                    None,
                    None,
                )
                .unwrap(),
        );
    }
    let digest = client
        .put_manifest(repo, reference, &image.manifest.bytes, image.media_type)
        .unwrap();
    assert_eq!(digest, image.manifest.digest);
    results
}

/// Downloads a blob into memory.
fn fetch(client: &Client, repo: &str, digest: &str) -> Vec<u8> {
    let mut out = Vec::new();
    client.blob(repo, digest, &mut out, None).unwrap();
    out
}

/// The message of an error that must happen.
#[track_caller]
fn message<T: std::fmt::Debug>(r: images::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

// ---------------------------------------------------------------------------
// Pushing and pulling

#[test]
fn an_oci_image_pushed_by_tag_comes_back_by_tag_and_by_digest() {
    needs_registry!();
    let registry = Registry::start(Options::default());
    let client = registry.client();
    let img = image(Format::Oci, "amd64", b"#!/bin/sh\necho hello\n");

    assert!(!client.has_blob("app", &img.layer.digest).unwrap());
    let pushed = push_image(&client, "app", "v1", &img);
    assert_eq!(pushed, [BlobPush::Pushed, BlobPush::Pushed]);
    assert!(client.has_blob("app", &img.layer.digest).unwrap());

    let by_tag = client.manifest("app", "v1").unwrap();
    assert_eq!(by_tag.bytes, img.manifest.bytes);
    assert_eq!(by_tag.digest, img.manifest.digest);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    assert_eq!(by_tag.kind(), ManifestKind::Image);
    let by_digest = client.manifest("app", &img.manifest.digest).unwrap();
    assert_eq!(by_digest, by_tag);

    let resolved = client
        .resolve("app", "v1", &Platform::linux_amd64())
        .unwrap();
    assert_eq!(resolved.manifest, by_tag);
    assert!(resolved.index.is_none());
    assert_eq!(resolved.digest(), img.manifest.digest);

    assert_eq!(fetch(&client, "app", &img.layer.digest), img.layer.bytes);
    assert_eq!(fetch(&client, "app", &img.config.digest), img.config.bytes);

    // A second push finds everything there.
    let again = push_image(&client, "app", "v1", &img);
    assert_eq!(again, [BlobPush::AlreadyExists, BlobPush::AlreadyExists]);
    assert_eq!(BlobPush::AlreadyExists.to_string(), "Layer already exists");

    // Another client agrees on what was stored.
    if on_path("skopeo") {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/app:v1", registry.host))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {out:?}");
        assert_eq!(out.stdout, img.manifest.bytes);
    }
}

#[test]
fn a_docker_schema2_image_keeps_its_media_types() {
    needs_registry!();
    let registry = Registry::start(Options::default());
    let client = registry.client();
    let img = image(Format::Docker, "amd64", b"docker format");
    push_image(&client, "library/old-school", "latest", &img);

    let m = client.manifest("library/old-school", "latest").unwrap();
    assert_eq!(m.media_type, DOCKER_MANIFEST);
    assert_eq!(m.bytes, img.manifest.bytes);
    assert_eq!(m.digest, img.manifest.digest);
    let resolved = client
        .resolve("library/old-school", "latest", &Platform::linux_amd64())
        .unwrap();
    assert_eq!(resolved.manifest.digest, img.manifest.digest);
}

#[test]
fn a_large_blob_goes_up_in_chunks_and_comes_back_whole() {
    needs_registry!();
    // Paths in Location headers, to follow relative ones too.
    let registry = Registry::start(Options {
        relative_urls: true,
        ..Options::default()
    });
    let client = registry.client().with_chunk_size(1000);
    let content = noise(20_000, 7);
    let img = image(Format::Oci, "amd64", &content);
    assert!(
        img.layer.size() > 10 * 1000,
        "the layer should need many chunks"
    );

    let progress = indicatif::ProgressBar::hidden();
    let result = client
        .push_blob(
            "chunky",
            &img.layer.digest,
            img.layer.size(),
            &BlobSource::Bytes(&img.layer.bytes),
            None,
            Some(&progress),
        )
        .unwrap();
    assert_eq!(result, BlobPush::Pushed);
    assert_eq!(progress.position(), img.layer.size());
    push_image(&client, "chunky", "big", &img);

    // From a file too, through the same chunked path.
    let dir = tempfile::Builder::new()
        .prefix("lab05-reg-")
        .tempdir()
        .unwrap();
    let file = dir.path().join("blob");
    let other = Blob::new(noise(3_500, 99));
    fs::write(&file, &other.bytes).unwrap();
    let result = client
        .push_blob(
            "chunky",
            &other.digest,
            other.size(),
            &BlobSource::File(&file),
            None,
            None,
        )
        .unwrap();
    assert_eq!(result, BlobPush::Pushed);

    let progress = indicatif::ProgressBar::hidden();
    let mut out = Vec::new();
    let n = client
        .blob("chunky", &img.layer.digest, &mut out, Some(&progress))
        .unwrap();
    assert_eq!(n, img.layer.size());
    assert_eq!(out, img.layer.bytes);
    assert_eq!(progress.position(), img.layer.size());
    assert_eq!(fetch(&client, "chunky", &other.digest), other.bytes);
}

#[test]
fn content_that_does_not_match_the_digest_is_not_pushed() {
    needs_registry!();
    let registry = Registry::start(Options::default());
    let client = registry.client();
    let wrong = sha256(b"something else");
    for chunk_size in [1 << 20, 10] {
        let client = registry.client().with_chunk_size(chunk_size);
        let err = client
            .push_blob("app", &wrong, 40, &BlobSource::Bytes(&[7; 40]), None, None)
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    }
    let short = message(client.push_blob(
        "app",
        &sha256(&[1; 40]),
        40,
        &BlobSource::Bytes(&[1; 30]),
        None,
        None,
    ));
    assert!(short.contains("holds 30 bytes"), "{short}");
    assert!(!client.has_blob("app", &wrong).unwrap());
}

#[test]
fn a_blob_in_another_repository_is_mounted_not_uploaded() {
    needs_registry!();
    let registry = Registry::start(Options::default());
    let client = registry.client();
    let img = image(Format::Oci, "amd64", b"shared base layer");
    push_image(&client, "base", "1", &img);

    let blob = &img.layer;
    let result = client
        .push_blob(
            "derived",
            &blob.digest,
            blob.size(),
            &BlobSource::Bytes(&blob.bytes),
            Some("base"),
            None,
        )
        .unwrap();
    assert_eq!(
        result,
        BlobPush::Mounted {
            from: "base".into()
        }
    );
    assert_eq!(result.to_string(), "Mounted from base");
    assert!(client.has_blob("derived", &blob.digest).unwrap());

    // A source that does not have it: the registry says 202, and the
    // blob is uploaded in the session it opened.
    let fresh = Blob::new(b"not anywhere yet".to_vec());
    let result = client
        .push_blob(
            "derived",
            &fresh.digest,
            fresh.size(),
            &BlobSource::Bytes(&fresh.bytes),
            Some("nowhere"),
            None,
        )
        .unwrap();
    assert_eq!(result, BlobPush::Pushed);
    assert_eq!(fetch(&client, "derived", &fresh.digest), fresh.bytes);
}

/// Pushes an amd64 and an arm64/v8 image and an index of both; returns
/// the images and the index.
fn push_two_platforms(client: &Client, repo: &str, list_type: &str) -> (Image, Image, Blob) {
    let format = if list_type == OCI_INDEX {
        Format::Oci
    } else {
        Format::Docker
    };
    let amd = image(format, "amd64", b"x86-64 code");
    let arm = image(format, "arm64", b"aarch64 code");
    // Children are stored by digest, then the index under the tag.
    push_image(client, repo, &amd.manifest.digest.clone(), &amd);
    push_image(client, repo, &arm.manifest.digest.clone(), &arm);
    let index = Blob::new(
        serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": list_type,
            "manifests": [
                {
                    "mediaType": arm.media_type,
                    "digest": arm.manifest.digest,
                    "size": arm.manifest.size(),
                    "platform": { "architecture": "arm64", "os": "linux", "variant": "v8" },
                },
                {
                    "mediaType": amd.media_type,
                    "digest": amd.manifest.digest,
                    "size": amd.manifest.size(),
                    "platform": { "architecture": "amd64", "os": "linux" },
                },
            ],
        }))
        .unwrap(),
    );
    let digest = client
        .put_manifest(repo, "multi", &index.bytes, list_type)
        .unwrap();
    assert_eq!(digest, index.digest);
    (amd, arm, index)
}

#[test]
fn an_index_resolves_to_the_image_for_the_platform() {
    needs_registry!();
    let registry = Registry::start(Options::default());
    let client = registry.client();
    for (repo, list_type) in [
        ("oci-multi", OCI_INDEX),
        ("docker-multi", DOCKER_MANIFEST_LIST),
    ] {
        let (amd, arm, index) = push_two_platforms(&client, repo, list_type);

        let top = client.manifest(repo, "multi").unwrap();
        assert_eq!(top.media_type, list_type);
        assert_eq!(top.kind(), ManifestKind::Index);

        let resolved = client
            .resolve(repo, "multi", &Platform::linux_amd64())
            .unwrap();
        assert_eq!(resolved.manifest.digest, amd.manifest.digest);
        assert_eq!(resolved.manifest.bytes, amd.manifest.bytes);
        assert_eq!(resolved.index.as_ref().unwrap().digest, index.digest);
        assert_eq!(resolved.digest(), index.digest);

        for wanted in ["linux/arm64/v8", "linux/arm64"] {
            let resolved = client
                .resolve(repo, "multi", &wanted.parse().unwrap())
                .unwrap();
            assert_eq!(resolved.manifest.digest, arm.manifest.digest, "{wanted}");
        }
        // By the index's digest, the same choice.
        let resolved = client
            .resolve(repo, &index.digest, &Platform::linux_amd64())
            .unwrap();
        assert_eq!(resolved.manifest.digest, amd.manifest.digest);

        let none = message(client.resolve(repo, "multi", &"windows/amd64".parse().unwrap()));
        assert!(
            none.contains("has no image for windows/amd64; it has: linux/arm64/v8, linux/amd64"),
            "{none}"
        );
    }
}

#[test]
fn unknown_names_get_the_registrys_reason() {
    needs_registry!();
    let registry = Registry::start(Options::default());
    let client = registry.client();
    let img = image(Format::Oci, "amd64", b"x");
    push_image(&client, "app", "v1", &img);

    let host = &registry.host;
    let err = message(client.manifest("app", "nope"));
    assert_eq!(err, format!("manifest unknown: {host}/app:nope not found"));
    let err = message(client.resolve("app", "nope", &Platform::linux_amd64()));
    assert_eq!(err, format!("manifest unknown: {host}/app:nope not found"));
    let missing = sha256(b"missing");
    let err = message(client.blob("app", &missing, &mut Vec::new(), None));
    assert!(
        err.ends_with(&format!("{host}/app@{missing} not found")),
        "{err}"
    );
    let err = message(
        client.put_manifest(
            "app",
            "broken",
            &image(Format::Oci, "amd64", b"blobs never pushed")
                .manifest
                .bytes,
            OCI_MANIFEST,
        ),
    );
    assert!(err.contains(&format!("{host}/app:broken")), "{err}");
    assert!(err.contains("blob unknown"), "{err}");
    let err = message(client.manifest("App", "v1"));
    assert!(err.contains("invalid repository name \"App\""), "{err}");
}

// ---------------------------------------------------------------------------
// Logging in: Basic

#[test]
fn basic_auth_needs_the_right_password() {
    needs_registry!();
    let registry = Registry::start(Options {
        basic_auth: true,
        ..Options::default()
    });
    let host = &registry.host;

    let anonymous = registry.client();
    let err = message(anonymous.check());
    assert!(err.starts_with("unauthorized:"), "{err}");
    assert!(err.contains(&format!("berth login {host}")), "{err}");
    let err = message(anonymous.manifest("app", "v1"));
    assert!(err.contains("requires a login"), "{err}");

    let wrong = registry
        .client()
        .with_credentials(Some(Credentials::new(USER, "wrong")));
    let err = message(wrong.check());
    assert_eq!(
        err,
        format!(
            "unauthorized: {host} refused the credentials of user \"{USER}\": check the user \
             name and password (berth login {host})"
        )
    );

    let right = registry
        .client()
        .with_credentials(Some(Credentials::new(USER, PASSWORD)));
    right.check().unwrap();
    let img = image(Format::Oci, "amd64", b"private");
    push_image(&right, "private/app", "v1", &img);
    let m = right.manifest("private/app", "v1").unwrap();
    assert_eq!(m.bytes, img.manifest.bytes);
    assert_eq!(
        fetch(&right, "private/app", &img.layer.digest),
        img.layer.bytes
    );
}

// ---------------------------------------------------------------------------
// Logging in: Bearer tokens, through a front that plays the token server

/// One HTTP request as the test servers see it.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }

    /// The query parameters, decoded, in order.
    fn query(&self) -> Vec<(String, String)> {
        let Some((_, q)) = self.target.split_once('?') else {
            return Vec::new();
        };
        q.split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).expect("a %XX escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// Reads one request; `None` when the client closed the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut request = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            request.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = request.header("content-length") {
        let mut body = vec![0; len.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        request.body = body;
    }
    Some(request)
}

/// Writes a whole response and asks the client to close.
fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

type Handler = Arc<dyn Fn(&Request, &mut TcpStream) + Send + Sync>;

/// A hand-written HTTP/1.1 server on 127.0.0.1: one request per
/// connection, answered by a handler that writes raw bytes (so it can
/// misbehave in any way). Stopped when dropped.
struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    fn start(handler: impl Fn(&Request, &mut TcpStream) + Send + Sync + 'static) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handler: Handler = Arc::new(handler);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let handler = Arc::clone(&handler);
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    if let Some(request) = read_request(&mut reader) {
                        handler(&request, &mut stream);
                    }
                    let _ = stream.shutdown(Shutdown::Both);
                });
            }
        });
        HttpServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, the name a client uses.
    fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A scope of Docker's token protocol, `repository:NAME:ACTIONS`.
fn scope_parts(scope: &str) -> Option<(&str, Vec<&str>)> {
    let rest = scope.strip_prefix("repository:")?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((name, actions.split(',').collect()))
}

/// Whether the scopes granted cover the one needed.
fn covers(granted: &[String], needed: &str) -> bool {
    let Some((name, actions)) = scope_parts(needed) else {
        return false;
    };
    actions.iter().all(|action| {
        granted
            .iter()
            .any(|g| scope_parts(g).is_some_and(|(n, acts)| n == name && acts.contains(action)))
    })
}

/// What the token front has seen.
#[derive(Default)]
struct FrontLog {
    /// Token number to the scopes it grants.
    tokens: HashMap<String, Vec<String>>,
    /// The scopes of each token request, in order.
    token_requests: Vec<Vec<String>>,
    /// Registry requests refused with a challenge.
    challenged: usize,
    /// Registry requests passed on, as `METHOD PATH`.
    forwarded: Vec<String>,
}

/// A registry front that wants Bearer tokens, with its own token server
/// at `/token`, passing authorized requests on to a real registry.
struct TokenFront {
    server: HttpServer,
    log: Arc<Mutex<FrontLog>>,
}

const SERVICE: &str = "lab05-front";

impl TokenFront {
    fn start(backend: String) -> TokenFront {
        let log = Arc::new(Mutex::new(FrontLog::default()));
        let shared = Arc::clone(&log);
        // The handler needs the server's own address for the realm; it
        // learns it from the Host header each client sends.
        let server = HttpServer::start(move |req, stream| {
            let me = req.header("host").unwrap_or("127.0.0.1").to_string();
            if req.path() == "/token" {
                return TokenFront::token(&shared, req, stream);
            }
            TokenFront::guard(&shared, &me, &backend, req, stream);
        });
        TokenFront { server, log }
    }

    /// The token endpoint: checks the password and the service, and
    /// grants the scopes asked for.
    fn token(log: &Mutex<FrontLog>, req: &Request, stream: &mut TcpStream) {
        let expected = format!("Basic {}", BASE64.encode(format!("{USER}:{PASSWORD}")));
        if req.header("authorization") != Some(expected.as_str()) {
            let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
            return respond(
                stream,
                "401 Unauthorized",
                &[("Content-Type", "application/json")],
                body,
            );
        }
        let query = req.query();
        if !query.iter().any(|(k, v)| k == "service" && v == SERVICE) {
            return respond(stream, "400 Bad Request", &[], b"wrong service");
        }
        let scopes: Vec<String> = query
            .into_iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v)
            .collect();
        let mut log = log.lock().unwrap();
        let token = format!("token-{}", log.token_requests.len() + 1);
        log.token_requests.push(scopes.clone());
        log.tokens.insert(token.clone(), scopes);
        // OAuth2 servers call it access_token; either must do.
        let body = json!({ "access_token": token, "expires_in": 300 }).to_string();
        respond(
            stream,
            "200 OK",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
    }

    /// A registry request: passed on if its token grants what it needs,
    /// refused with a challenge otherwise.
    fn guard(
        log: &Mutex<FrontLog>,
        me: &str,
        backend: &str,
        req: &Request,
        stream: &mut TcpStream,
    ) {
        let mut needed = Vec::new();
        let path = req.path();
        if let Some(rest) = path.strip_prefix("/v2/").filter(|r| !r.is_empty()) {
            let name = ["/manifests/", "/blobs/", "/tags/"]
                .iter()
                .filter_map(|sep| rest.rfind(sep).map(|i| &rest[..i]))
                .next()
                .unwrap_or(rest);
            let action = if matches!(req.method.as_str(), "GET" | "HEAD") {
                "pull"
            } else {
                "pull,push"
            };
            needed.push(format!("repository:{name}:{action}"));
            if let Some((_, from)) = req.query().into_iter().find(|(k, _)| k == "from") {
                needed.push(format!("repository:{from}:pull"));
            }
        }
        let granted = req
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .and_then(|t| log.lock().unwrap().tokens.get(t).cloned());
        let allowed = granted
            .as_ref()
            .is_some_and(|g| needed.iter().all(|n| covers(g, n)));
        if !allowed {
            log.lock().unwrap().challenged += 1;
            let mut challenge = format!("Bearer realm=\"http://{me}/token\",service=\"{SERVICE}\"");
            if let Some(first) = needed.first() {
                challenge.push_str(&format!(",scope=\"{first}\""));
            }
            let body =
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            return respond(
                stream,
                "401 Unauthorized",
                &[
                    ("WWW-Authenticate", &challenge),
                    ("Content-Type", "application/json"),
                ],
                body,
            );
        }
        log.lock()
            .unwrap()
            .forwarded
            .push(format!("{} {}", req.method, req.path()));
        forward(backend, req, stream);
    }
}

/// Passes a request on to `backend` and its answer back, byte for byte.
/// The Host header stays the front's, so that the registry's Location
/// headers point at the front.
fn forward(backend: &str, req: &Request, stream: &mut TcpStream) {
    let mut up = TcpStream::connect(backend).unwrap();
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for (name, value) in &req.headers {
        if !matches!(
            name.as_str(),
            "authorization" | "connection" | "content-length" | "transfer-encoding"
        ) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if !req.body.is_empty() || matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes()).unwrap();
    up.write_all(&req.body).unwrap();
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    let _ = stream.write_all(&answer);
}

#[test]
fn bearer_tokens_are_fetched_per_scope_and_reused() {
    needs_registry!();
    let registry = Registry::start(Options::default());
    let front = TokenFront::start(registry.host.clone());
    let host = front.server.host();
    let client = Client::new(&host, &[])
        .unwrap()
        .with_credentials(Some(Credentials::new(USER, PASSWORD)))
        .with_chunk_size(500);

    client.check().unwrap();

    let img = image(Format::Oci, "amd64", &noise(3000, 3));
    assert!(img.layer.size() > 500, "the layer should go in chunks");
    push_image(&client, "team/app", "v1", &img);
    let mounted = client
        .push_blob(
            "team/copy",
            &img.layer.digest,
            img.layer.size(),
            &BlobSource::Bytes(&img.layer.bytes),
            Some("team/app"),
            None,
        )
        .unwrap();
    assert_eq!(
        mounted,
        BlobPush::Mounted {
            from: "team/app".into()
        }
    );

    let m = client.manifest("team/app", "v1").unwrap();
    assert_eq!(m.bytes, img.manifest.bytes);
    let resolved = client
        .resolve("team/app", "v1", &Platform::linux_amd64())
        .unwrap();
    assert_eq!(resolved.manifest.digest, img.manifest.digest);
    assert_eq!(
        fetch(&client, "team/app", &img.layer.digest),
        img.layer.bytes
    );

    {
        let log = front.log.lock().unwrap();
        let requests = &log.token_requests;
        // One token per set of scopes: login, push, the mount (which
        // needs pull on its source too), pull.
        assert_eq!(
            requests,
            &[
                vec![],
                vec!["repository:team/app:pull,push".to_string()],
                vec![
                    "repository:team/copy:pull,push".to_string(),
                    "repository:team/app:pull".to_string()
                ],
                vec!["repository:team/app:pull".to_string()],
            ],
            "token requests"
        );
        // After the first challenge, the client knows to fetch tokens
        // before it asks.
        assert_eq!(log.challenged, 1, "challenges");
        // The layer went up in pieces, each to the Location the registry
        // gave (absolute URLs through the front).
        let patches = log
            .forwarded
            .iter()
            .filter(|r| r.starts_with("PATCH "))
            .count();
        assert_eq!(
            patches as u64,
            img.layer.size().div_ceil(500),
            "{:?}",
            log.forwarded
        );
    }

    let wrong = Client::new(&host, &[])
        .unwrap()
        .with_credentials(Some(Credentials::new(USER, "wrong")));
    let err = message(wrong.manifest("team/app", "v1"));
    assert!(
        err.starts_with(&format!(
            "unauthorized: {host} refused the credentials of user"
        )),
        "{err}"
    );
    assert!(err.contains("check the user name and password"), "{err}");

    let anonymous = Client::new(&host, &[]).unwrap();
    let err = message(anonymous.manifest("team/app", "v1"));
    assert!(err.contains("requires a login"), "{err}");
    assert!(err.contains(&format!("berth login {host}")), "{err}");
}

// ---------------------------------------------------------------------------
// Misbehaving registries

#[test]
fn a_blob_that_is_not_what_its_digest_says_is_refused_and_not_kept() {
    let server = HttpServer::start(|_, stream| {
        respond(
            stream,
            "200 OK",
            &[("Content-Type", "application/octet-stream")],
            b"evil bytes",
        )
    });
    let client = Client::new(&server.host(), &[]).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("lab05-reg-")
        .tempdir()
        .unwrap();
    let wanted = sha256(b"good bytes");

    // What a caller does: download into a temporary file, and keep it
    // under its final name only when the download succeeded.
    let mut temp = tempfile::NamedTempFile::new_in(dir.path()).unwrap();
    let result = client.blob("app", &wanted, &mut temp, None);
    let Err(Error::DigestMismatch {
        expected, actual, ..
    }) = &result
    else {
        panic!("expected a digest mismatch, got {result:?}");
    };
    assert_eq!(expected, &wanted);
    assert_eq!(actual, &sha256(b"evil bytes"));
    assert_eq!(
        temp.as_file().metadata().unwrap().len(),
        0,
        "the sink is emptied"
    );
    let kept = dir.path().join("blob");
    if result.is_ok() {
        temp.persist(&kept).unwrap();
    } else {
        drop(temp);
    }
    assert!(!kept.exists());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn a_body_cut_short_is_retried_then_reported() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let server = HttpServer::start(move |_, stream| {
        counter.fetch_add(1, Ordering::SeqCst);
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(&[0; 10]);
    });
    let client = Client::new(&server.host(), &[]).unwrap();
    let mut out = Vec::new();
    let err = message(client.blob("app", &sha256(&[0; 1000]), &mut out, None));
    assert!(err.contains("failed 4 times"), "{err}");
    assert!(err.contains("10 of 1000 bytes"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 4, "one try and three retries");
    assert!(out.is_empty());
}

#[test]
fn a_download_that_breaks_once_starts_over_and_succeeds() {
    let content = noise(5000, 5);
    let digest = sha256(&content);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let served = content.clone();
    let server = HttpServer::start(move |_, stream| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            served.len()
        );
        let _ = stream.write_all(head.as_bytes());
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = stream.write_all(&served[..1234]);
        } else {
            let _ = stream.write_all(&served);
        }
    });
    let client = Client::new(&server.host(), &[]).unwrap();
    let mut out = Vec::new();
    assert_eq!(client.blob("app", &digest, &mut out, None).unwrap(), 5000);
    assert_eq!(
        out, content,
        "the partial first attempt is not in the output"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[test]
fn blobs_redirected_to_storage_are_followed() {
    let content = b"stored elsewhere".to_vec();
    let digest = sha256(&content);
    let served = content.clone();
    let storage = HttpServer::start(move |req, stream| {
        // Credentials for the registry must not travel to the storage.
        assert!(req.header("authorization").is_none());
        respond(stream, "200 OK", &[], &served);
    });
    let target = format!("http://{}/bucket/object?signature=abc", storage.host());
    // The registry wants a login, then sends the client to storage.
    let registry = HttpServer::start(move |req, stream| match req.header("authorization") {
        None => respond(
            stream,
            "401 Unauthorized",
            &[("WWW-Authenticate", "Basic realm=\"test\"")],
            b"",
        ),
        Some(_) => respond(
            stream,
            "307 Temporary Redirect",
            &[("Location", &target)],
            b"",
        ),
    });
    let client = Client::new(&registry.host(), &[])
        .unwrap()
        .with_credentials(Some(Credentials::new("u", "p")));
    assert_eq!(fetch(&client, "app", &digest), content);
}

#[test]
fn a_manifest_that_is_not_json_is_named_in_the_error() {
    let server = HttpServer::start(|_, stream| {
        respond(
            stream,
            "200 OK",
            &[("Content-Type", OCI_MANIFEST)],
            b"{\"schemaVersion\": 2, oops",
        )
    });
    let host = server.host();
    let client = Client::new(&host, &[]).unwrap();
    let err = message(client.manifest("app", "v1"));
    assert!(
        err.starts_with(&format!("the manifest {host}/app:v1 is not valid JSON")),
        "{err}"
    );
}

#[test]
fn a_manifest_whose_digest_header_disagrees_is_refused() {
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
    let claimed = sha256(b"another manifest");
    let header = claimed.clone();
    let server = HttpServer::start(move |_, stream| {
        respond(
            stream,
            "200 OK",
            &[
                ("Content-Type", OCI_MANIFEST),
                ("Docker-Content-Digest", &header),
            ],
            body,
        )
    });
    let client = Client::new(&server.host(), &[]).unwrap();
    let err = client.manifest("app", "v1").unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, .. } if *expected == claimed),
        "{err}"
    );
    // Asked for by digest, the bytes must hash to that digest.
    let err = client.manifest("app", &claimed).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
}

#[test]
fn schema1_manifests_are_refused() {
    let server = HttpServer::start(|_, stream| {
        respond(
            stream,
            "200 OK",
            &[(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )],
            br#"{"schemaVersion":1,"name":"app","tag":"old","fsLayers":[]}"#,
        )
    });
    let client = Client::new(&server.host(), &[]).unwrap();
    let m = client.manifest("app", "old").unwrap();
    assert_eq!(m.kind(), ManifestKind::Schema1);
    let err = message(client.resolve("app", "old", &Platform::linux_amd64()));
    assert!(err.contains("is a Docker schema 1 manifest"), "{err}");
}

#[test]
fn a_401_without_a_challenge_is_explained() {
    let server =
        HttpServer::start(|_, stream| respond(stream, "401 Unauthorized", &[], b"go away"));
    let host = server.host();
    let client = Client::new(&host, &[]).unwrap();
    let err = message(client.manifest("app", "v1"));
    assert!(
        err.contains("answered 401 Unauthorized for")
            && err.contains("without a usable WWW-Authenticate"),
        "{err}"
    );
    assert!(err.contains("the header is missing"), "{err}");
}

#[test]
fn a_registry_that_is_not_running_is_named() {
    // A port that was free, and that nothing listens on any more.
    let host = format!("127.0.0.1:{}", free_port());
    let client = Client::new(&host, &[]).unwrap();
    let expected = format!(
        "cannot reach registry {host}: connection refused (is it running? is the port right?)"
    );
    assert_eq!(message(client.check()), expected);
    assert_eq!(message(client.manifest("app", "v1")), expected);
    let err = message(client.blob("app", &sha256(b""), &mut Vec::new(), None));
    assert!(err.ends_with(&expected), "{err}");
}

// ---------------------------------------------------------------------------
// The credentials file

#[test]
fn credentials_are_saved_privately_and_removed_per_host() {
    let dir = tempfile::Builder::new()
        .prefix("lab05-reg-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("berth").join("config.json");
    let store = CredentialStore::new(&path);
    assert_eq!(
        store.get("localhost:5000").unwrap(),
        None,
        "no file, no entry"
    );
    assert!(!store.logout("localhost:5000").unwrap());

    let local = Credentials::new("me", "pa:ss");
    let hub = Credentials::new("hubber", "token");
    store.login("localhost:5000", &local).unwrap();
    store.login("docker.io", &hub).unwrap();

    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);

    // Docker's shape: base64 of user:password, Docker Hub under its v1 URL.
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        json["auths"]["localhost:5000"]["auth"],
        BASE64.encode("me:pa:ss")
    );
    assert_eq!(
        json["auths"][DOCKER_HUB_KEY]["auth"],
        BASE64.encode("hubber:token")
    );

    assert_eq!(store.get("localhost:5000").unwrap(), Some(local.clone()));
    assert_eq!(store.get("docker.io").unwrap(), Some(hub.clone()));
    assert_eq!(store.get("index.docker.io").unwrap(), Some(hub));
    assert_eq!(store.get("ghcr.io").unwrap(), None);

    // Entries and fields the store does not manage survive.
    let mut edited = json.clone();
    edited["auths"]["https://ghcr.io"] = json!({ "auth": BASE64.encode("gh:pat") });
    edited["HttpHeaders"] = json!({ "X-Meta": "kept" });
    fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
    assert_eq!(
        store.get("ghcr.io").unwrap(),
        Some(Credentials::new("gh", "pat"))
    );

    assert!(store.logout("docker.io").unwrap());
    assert!(!store.logout("docker.io").unwrap());
    assert_eq!(store.get("docker.io").unwrap(), None);
    assert_eq!(store.get("localhost:5000").unwrap(), Some(local));
    assert_eq!(
        store.get("ghcr.io").unwrap(),
        Some(Credentials::new("gh", "pat"))
    );
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["HttpHeaders"]["X-Meta"], "kept");
    assert_eq!(mode(&path), 0o600);

    // Only the file itself is left: no temporary files from the saves.
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["config.json"]);

    fs::write(&path, "{ not json").unwrap();
    let err = message(store.get("localhost:5000"));
    assert!(err.contains("is not valid JSON"), "{err}");
}

#[test]
fn a_login_is_checked_before_it_is_saved() {
    needs_registry!();
    let registry = Registry::start(Options {
        basic_auth: true,
        ..Options::default()
    });
    let dir = tempfile::Builder::new()
        .prefix("lab05-reg-")
        .tempdir()
        .unwrap();
    let store = CredentialStore::new(dir.path().join("config.json"));

    // What `berth login` does: check, then save.
    let login = |credentials: Credentials| -> images::Result<()> {
        registry
            .client()
            .with_credentials(Some(credentials.clone()))
            .check()?;
        store.login(&registry.host, &credentials)
    };
    assert!(login(Credentials::new(USER, "nope")).is_err());
    assert_eq!(
        store.get(&registry.host).unwrap(),
        None,
        "a refused login is not saved"
    );
    login(Credentials::new(USER, PASSWORD)).unwrap();

    // Later commands read it back.
    let saved = store.get(&registry.host).unwrap();
    let client = registry.client().with_credentials(saved);
    let img = image(Format::Oci, "amd64", b"after login");
    push_image(&client, "app", "v1", &img);
}
