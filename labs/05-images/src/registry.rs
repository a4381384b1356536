//! Step 05.4: talking to a registry (`berth pull`, `berth push`, `berth login`).
//!
//! A registry is a web server that stores two kinds of things for each
//! repository (`library/alpine`, `myteam/app`):
//!
//! - **blobs**, opaque files named by their digest, the SHA-256 of their
//!   bytes: layer tarballs and image configurations;
//! - **manifests**, small JSON documents that list blobs by digest. A
//!   manifest can be reached by its own digest or by a *tag* (`latest`,
//!   `3.20`), a movable name that points at one manifest at a time.
//!
//! The protocol, the OCI distribution specification (born as Docker's
//! "registry API v2"), is plain HTTP under `/v2/`:
//!
//! | what | request | good answer |
//! |---|---|---|
//! | is this a registry, am I let in? | `GET /v2/` | 200 |
//! | a manifest | `GET /v2/NAME/manifests/TAG-OR-DIGEST` | 200 |
//! | a blob | `GET /v2/NAME/blobs/DIGEST` | 200, often after a redirect to storage |
//! | is a blob there? | `HEAD /v2/NAME/blobs/DIGEST` | 200 or 404 |
//! | start an upload | `POST /v2/NAME/blobs/uploads/` | 202 and a `Location` |
//! | send a piece | `PATCH LOCATION` with `Content-Range` | 202 and the next `Location` |
//! | finish an upload | `PUT LOCATION?digest=DIGEST` | 201 |
//! | borrow a blob from another repository | `POST /v2/NAME/blobs/uploads/?mount=DIGEST&from=OTHER` | 201 (or 202: upload it after all) |
//! | store a manifest | `PUT /v2/NAME/manifests/TAG` | 201 |
//!
//! Nothing the registry sends is trusted: because every blob and manifest
//! is named by its digest, the client hashes what it receives and refuses
//! anything whose hash is not the name it asked for. A tag is the one thing
//! the client must take the registry's word for, which is why `berth pull
//! app@sha256:…` is the way to get exactly the image you reviewed.
//!
//! **One name, many platforms.** `alpine:3.20` is usually not one image but
//! an *index* (Docker calls it a *manifest list*): a manifest of manifests,
//! one per platform (`linux/amd64`, `linux/arm64/v8`, …). [`Client::resolve`]
//! follows it to the image for one platform.
//!
//! **Logging in.** A registry that wants to know who you are answers
//! `401 Unauthorized` with a `WWW-Authenticate` header that says how:
//!
//! - `Basic realm="..."`: send the user name and password with every
//!   request (`Authorization: Basic base64(user:password)`);
//! - `Bearer realm="https://auth.example/token",service="...",scope="..."`
//!   (Docker's token protocol, used by Docker Hub and most public
//!   registries): ask the token server named by `realm` for a token that
//!   grants a *scope* such as `repository:library/alpine:pull`, sending
//!   the password there (or nothing, for anonymous pulls), and then send
//!   `Authorization: Bearer TOKEN` to the registry. Tokens are short-lived
//!   and limited to their scopes, so the password goes to one server only.
//!
//! [`Client`] does that dance itself, remembers which kind of registry it
//! talks to, and keeps tokens per scope, so a pull asks for a token once.
//!
//! This module only speaks HTTP: it never writes to the image store. What
//! to keep, where, and what to print is the caller's business; a download
//! goes to a [`BlobSink`] the caller provides and is only worth keeping when
//! [`Client::blob`] returns `Ok`.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use indicatif::ProgressBar;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use ureq::http::{Response, StatusCode};
use ureq::{Body, RequestBuilder, SendBody};

use crate::auth::Credentials;
use crate::digest;
use crate::error::{Error, Result};

/// Media type of an OCI image index: one manifest per platform.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image manifest: a config and layers.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker's name for an index.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image manifest ("schema 2"), the OCI one's twin.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's retired first manifest format, unsigned and signed.
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// What a manifest request says it accepts, in order of preference.
const MANIFEST_ACCEPT: [&str; 4] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// The largest manifest accepted. The distribution spec asks registries to
/// take manifests of at least 4 MiB; real ones are a few kilobytes.
const MAX_MANIFEST: u64 = 4 << 20;

/// Blobs larger than this are uploaded in chunks of this size, unless
/// [`Client::with_chunk_size`] says otherwise.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;

/// How many times a blob download is tried before giving up: the first
/// attempt and three retries, each starting over from the first byte.
const BLOB_ATTEMPTS: u32 = 4;

/// Largest error document read from a registry.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// What kind of document a manifest is, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An OCI index or Docker manifest list: one manifest per platform.
    Index,
    /// An OCI or Docker schema 2 image manifest: a config and layers.
    Image,
    /// Docker's schema 1, which berth refuses.
    Schema1,
    /// Anything else (artifacts, unknown types).
    Other,
}

/// The kind of manifest a media type names.
pub fn manifest_kind(media_type: &str) -> ManifestKind {
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => ManifestKind::Index,
        OCI_MANIFEST | DOCKER_MANIFEST => ManifestKind::Image,
        t if DOCKER_SCHEMA1.contains(&t) => ManifestKind::Schema1,
        _ => ManifestKind::Other,
    }
}

/// A manifest as the registry sent it. The bytes are kept exactly as
/// received: the digest is the hash of these bytes, and re-encoding the
/// JSON would change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `sha256:` and the hex SHA-256 of `bytes`.
    pub digest: String,
}

impl Manifest {
    /// What kind of manifest this is.
    pub fn kind(&self) -> ManifestKind {
        manifest_kind(&self.media_type)
    }
}

/// The result of [`Client::resolve`]: the image manifest for the platform,
/// and the index it was chosen from when the name pointed at one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub manifest: Manifest,
    pub index: Option<Manifest>,
}

impl Resolved {
    /// The digest the name pointed at: the index's when there is one, the
    /// manifest's otherwise. It is what `docker pull` prints as `Digest:`
    /// and what `NAME@DIGEST` gets again later.
    pub fn digest(&self) -> &str {
        self.index
            .as_ref()
            .unwrap_or(&self.manifest)
            .digest
            .as_str()
    }
}

/// A platform, as in `--platform linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, the platform this course runs on.
    pub fn linux_amd64() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// Parses `OS/ARCH` or `OS/ARCH/VARIANT`.
    fn from_str(s: &str) -> Result<Self> {
        // BEGIN SOLUTION 05.4
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(Error::Invalid(format!(
                "invalid platform {s:?}: write it as OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64"
            ))),
        }
        // END SOLUTION
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What [`Client::push_blob`] did, worded the way `docker push` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository had the blob already; nothing was sent.
    AlreadyExists,
    /// The registry linked the blob from another repository it holds,
    /// without any upload.
    Mounted { from: String },
    /// The blob was uploaded.
    Pushed,
}

impl fmt::Display for BlobPush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobPush::AlreadyExists => f.write_str("Layer already exists"),
            BlobPush::Mounted { from } => write!(f, "Mounted from {from}"),
            BlobPush::Pushed => f.write_str("Pushed"),
        }
    }
}

/// Where a download goes: something to write to that can also be emptied,
/// so that a download that broke off can start over from the first byte
/// (registries are not required to serve byte ranges, so resuming is not
/// something to count on).
pub trait BlobSink: Write {
    /// Throws away everything written so far.
    fn restart(&mut self) -> io::Result<()>;
}

impl BlobSink for File {
    fn restart(&mut self) -> io::Result<()> {
        self.set_len(0)?;
        self.seek(SeekFrom::Start(0)).map(drop)
    }
}

impl BlobSink for tempfile::NamedTempFile {
    fn restart(&mut self) -> io::Result<()> {
        self.as_file_mut().restart()
    }
}

impl BlobSink for Vec<u8> {
    fn restart(&mut self) -> io::Result<()> {
        self.clear();
        Ok(())
    }
}

/// Where an upload's bytes come from. The content may be read more than
/// once (when the registry asks to log in again halfway), so a source is
/// something that can be opened again from the start.
pub enum BlobSource<'a> {
    /// Bytes in memory: a config, or a small layer.
    Bytes(&'a [u8]),
    /// A file, opened again for every attempt.
    File(&'a Path),
    /// Anything else: a function that opens the content from its start.
    Open(&'a dyn Fn() -> io::Result<Box<dyn Read + 'a>>),
}

impl<'a> BlobSource<'a> {
    /// Opens the content from its first byte.
    fn open(&self) -> Result<Box<dyn Read + 'a>> {
        match self {
            BlobSource::Bytes(b) => Ok(Box::new(*b)),
            BlobSource::File(path) => File::open(path)
                .map(|f| Box::new(f) as Box<dyn Read>)
                .map_err(|e| Error::io("open blob", *path, e)),
            BlobSource::Open(open) => open().map_err(|e| Error::io("open blob", "<reader>", e)),
        }
    }
}

impl fmt::Display for BlobSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobSource::Bytes(_) => f.write_str("the bytes given"),
            BlobSource::File(path) => write!(f, "{}", path.display()),
            BlobSource::Open(_) => f.write_str("the reader given"),
        }
    }
}

/// One challenge of a `WWW-Authenticate` header: a scheme (`Basic`,
/// `Bearer`) and its parameters, names in lower case, values unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of the parameter `name` (case-insensitive), if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when the scheme is `scheme`, whatever its case.
    fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

// ANCHOR: challenge
/// Parses a `WWW-Authenticate` header into its challenges.
///
/// The header is a comma-separated list in which a bare word starts a new
/// challenge and `name=value` pairs are its parameters; a value is either
/// a plain word or a quoted string, which may hold commas and spaces
/// (`scope="repository:app:pull,push"`) and backslash escapes. Text that
/// fits neither is skipped rather than failing the whole header.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    // BEGIN SOLUTION 05.4
    let s = header.as_bytes();
    let mut i = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    let skip_spaces = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t') {
            *i += 1;
        }
    };
    while i < s.len() {
        // Separators between items.
        if s[i] == b',' || s[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && is_tchar(s[i]) {
            i += 1;
        }
        if i == start {
            // Not a word: skip the character and carry on.
            i += 1;
            continue;
        }
        let word = &header[start..i];
        let after_word = i;
        skip_spaces(&mut i);
        let is_param = i < s.len() && s[i] == b'=' && !out.is_empty();
        if !is_param {
            i = after_word;
            out.push(Challenge {
                scheme: word.to_string(),
                params: Vec::new(),
            });
            continue;
        }
        i += 1; // the '='
        skip_spaces(&mut i);
        let mut value = String::new();
        if i < s.len() && s[i] == b'"' {
            i += 1;
            let mut bytes = Vec::new();
            while i < s.len() && s[i] != b'"' {
                if s[i] == b'\\' && i + 1 < s.len() {
                    i += 1;
                }
                bytes.push(s[i]);
                i += 1;
            }
            i += 1; // the closing quote, if any
            value = String::from_utf8_lossy(&bytes).into_owned();
        } else {
            let v = i;
            while i < s.len() && s[i] != b',' && !s[i].is_ascii_whitespace() {
                i += 1;
            }
            value.push_str(&header[v..i]);
        }
        if let Some(last) = out.last_mut() {
            last.params.push((word.to_ascii_lowercase(), value));
        }
    }
    out
    // END SOLUTION
}
// ANCHOR_END: challenge

/// Which repositories a request touches and how: the scopes of Docker's
/// token protocol. The same text is the key under which tokens are cached.
#[derive(Debug, Clone)]
struct Access {
    scopes: Vec<String>,
}

impl Access {
    /// No repository: `GET /v2/`.
    fn none() -> Self {
        Access { scopes: Vec::new() }
    }

    /// Reading one repository.
    fn pull(repo: &str) -> Self {
        Access {
            scopes: vec![format!("repository:{repo}:pull")],
        }
    }

    /// Writing one repository (which needs reading too: an upload starts
    /// with asking whether the blob is there), and reading the repository
    /// a blob is mounted from.
    fn push(repo: &str, mount_from: Option<&str>) -> Self {
        let mut scopes = vec![format!("repository:{repo}:pull,push")];
        if let Some(from) = mount_from.filter(|f| *f != repo) {
            scopes.push(format!("repository:{from}:pull"));
        }
        Access { scopes }
    }

    fn key(&self) -> String {
        self.scopes.join(" ")
    }
}

/// How the registry wants clients to log in, once it has said so.
#[derive(Debug, Clone)]
enum Scheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// What the client has learnt about logging in: the scheme, and tokens by
/// scope.
#[derive(Debug, Default)]
struct AuthState {
    scheme: Option<Scheme>,
    tokens: HashMap<String, String>,
}

/// Why a request failed: the network (worth a retry for downloads), or
/// anything else.
enum Fail {
    Net(ureq::Error),
    Done(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Done(e)
    }
}

type Sent = std::result::Result<Response<Body>, Fail>;

/// A request's outcome, with transport errors kept apart.
fn net(r: std::result::Result<Response<Body>, ureq::Error>) -> Sent {
    r.map_err(Fail::Net)
}

/// Adds an `Authorization` header, if there is one to add.
fn with_auth<B>(req: RequestBuilder<B>, auth: Option<&str>) -> RequestBuilder<B> {
    match auth {
        Some(value) => req.header("Authorization", value),
        None => req,
    }
}

/// A response header as text, if present and printable.
fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// An error document as registries send them.
#[derive(Deserialize)]
struct ErrorDocument {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A token server's answer. Docker's protocol calls the field `token`;
/// OAuth2 calls it `access_token`; servers send either or both.
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

/// A client for one registry.
///
/// It is `Sync`: the engine may download several layers at once from one
/// client, and they share its tokens.
pub struct Client {
    /// The registry as the user names it (`localhost:5000`, `docker.io`).
    host: String,
    /// Scheme and address requests go to (`https://registry-1.docker.io`).
    base: String,
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    chunk_size: u64,
    auth: Mutex<AuthState>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

/// The host name of `HOST[:PORT]`, without the port (`[::1]` keeps its
/// brackets).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// True when `host` is spoken to over plain HTTP: the loopback names on
/// any port, and the hosts listed as insecure (by `HOST:PORT` or `HOST`).
pub fn is_plain_http(host: &str, insecure: &[&str]) -> bool {
    // BEGIN SOLUTION 05.4
    let name = host_name(host);
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
        || insecure.iter().any(|i| *i == host || *i == name)
    // END SOLUTION
}

/// Where requests for `host` go: Docker Hub's API is served from
/// `registry-1.docker.io`, whatever name the user gives it.
fn endpoint(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// Checks a repository name: lowercase letters, digits and the separators
/// `.`, `_`, `-` inside path components joined by `/`. The name goes into
/// URLs, so anything else is refused before it gets there.
fn check_repo(repo: &str) -> Result<()> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    };
    if repo.len() <= 255 && repo.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid repository name {repo:?}: use lowercase letters, digits and . _ - \
             between them, in parts separated by /"
        )))
    }
}

/// Checks a digest: `sha256:` and 64 lowercase hex digits, the only
/// algorithm berth verifies. It goes into URLs too.
fn check_digest(digest: &str) -> Result<()> {
    digest::hex_part(digest).map(drop)
}

/// Checks a tag or digest; returns the digest when it is one.
fn check_reference(reference: &str) -> Result<Option<&str>> {
    if reference.contains(':') {
        check_digest(reference)?;
        return Ok(Some(reference));
    }
    let b = reference.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c));
    if ok {
        Ok(None)
    } else {
        Err(Error::Invalid(format!(
            "invalid tag {reference:?}: up to 128 letters, digits, _ . and -, not starting with . or -"
        )))
    }
}

/// Whether a transport error is worth trying again: a connection that
/// broke, timed out or could not be made, as opposed to a name that does
/// not resolve or a TLS mismatch, which a retry will not fix.
fn transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed
    )
}

/// A reader that counts, hashes and reports progress on what passes
/// through it, and stops at the size the caller announced (failing if the
/// content ends before it).
struct Metered<'a, R> {
    inner: R,
    left: u64,
    count: u64,
    hasher: Sha256,
    progress: Option<&'a ProgressBar>,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if max == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            // Ending here would leave the HTTP body shorter than the
            // Content-Length already sent, and the request hanging.
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "the content ended before its announced size",
            ));
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        self.left -= n as u64;
        if let Some(p) = self.progress {
            p.inc(n as u64);
        }
        Ok(n)
    }
}

impl Client {
    /// A client for the registry `host` (`HOST` or `HOST:PORT`, as in an
    /// image name), anonymous until [`with_credentials`](Self::with_credentials).
    ///
    /// It speaks plain HTTP to `localhost`, `127.0.0.1` and `[::1]` on any
    /// port and to the hosts in `insecure` (given as `HOST:PORT` or
    /// `HOST`, like Docker's `insecure-registries`), and HTTPS to everyone
    /// else. `docker.io` is Docker Hub, whose API lives at
    /// `registry-1.docker.io`.
    pub fn new(host: &str, insecure: &[&str]) -> Result<Client> {
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            return Err(Error::Invalid(format!(
                "invalid registry {host:?}: write it as HOST or HOST:PORT, without http:// \
                 or a path (e.g. localhost:5000)"
            )));
        }
        let scheme = if is_plain_http(host, insecure) {
            "http"
        } else {
            "https"
        };
        let config = ureq::Agent::config_builder()
            // Error statuses are answers to read (a 401 says how to log
            // in, a 404 carries an error document), not failures.
            .http_status_as_error(false)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            // Blobs are already compressed; ask for them as they are, so
            // that Content-Length counts the bytes that get hashed.
            .accept_encoding("")
            // A registry that stops sending fails the request (and a
            // download is retried) instead of hanging forever. The limit
            // is generous: after a large upload, some registries copy the
            // blob into place before they answer.
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .build();
        Ok(Client {
            host: host.to_string(),
            base: format!("{scheme}://{}", endpoint(host)),
            agent: ureq::Agent::new_with_config(config),
            credentials: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            auth: Mutex::new(AuthState::default()),
        })
    }

    /// The same client, presenting `credentials` whenever the registry
    /// (or its token server) asks who is calling.
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    /// The same client, uploading blobs larger than `bytes` in pieces of
    /// `bytes` each (`PATCH` requests) instead of in one request. Tests set
    /// it small to exercise chunked uploads with small blobs.
    pub fn with_chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// The registry as it was named (`localhost:5000`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The scheme and address requests go to (`http://localhost:5000`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `HOST/REPO:TAG` or `HOST/REPO@DIGEST`, for messages.
    fn name_of(&self, repo: &str, reference: &str) -> String {
        let sep = if reference.contains(':') { '@' } else { ':' };
        format!("{}/{repo}{sep}{reference}", self.host)
    }

    /// An absolute URL for a `Location` header, which may be a full URL
    /// (`https://other/upload/1`), a path on this registry
    /// (`/v2/app/blobs/uploads/1?_state=...`), or even a network path
    /// (`//other/upload/1`).
    fn absolute(&self, location: &str) -> String {
        // BEGIN SOLUTION 05.4
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if let Some(rest) = location.strip_prefix("//") {
            let scheme = self.base.split("://").next().unwrap_or("https");
            format!("{scheme}://{rest}")
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        }
        // END SOLUTION
    }

    /// The `Location` of an upload session, as an absolute URL.
    fn upload_location(&self, resp: &Response<Body>, what: &str) -> Result<String> {
        header(resp, "location")
            .filter(|l| !l.is_empty())
            .map(|l| self.absolute(l))
            .ok_or_else(|| {
                Error::Registry(format!(
                    "{}: the registry accepted the upload of {what} but sent no Location \
                     header saying where to continue it",
                    self.host
                ))
            })
    }

    fn state(&self) -> MutexGuard<'_, AuthState> {
        // A panic elsewhere while holding the lock leaves a cache that is
        // still usable: at worst a token is fetched again.
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error for a failed request.
    fn fail(&self, f: Fail) -> Error {
        match f {
            Fail::Net(e) => self.unreachable(&e),
            Fail::Done(e) => e,
        }
    }

    /// "cannot reach registry", with what went wrong and what to check.
    fn unreachable(&self, e: &ureq::Error) -> Error {
        let host = &self.host;
        let (why, hint) = match e {
            ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => (
                "connection refused".to_string(),
                "is it running? is the port right?",
            ),
            ureq::Error::ConnectionFailed => (
                "the connection failed".to_string(),
                "is it running? is the port right?",
            ),
            ureq::Error::HostNotFound => (
                "the name does not resolve".to_string(),
                "check its spelling and your DNS",
            ),
            ureq::Error::Timeout(t) => (
                format!("timed out ({t})"),
                "the network or the registry is slow or down; try again",
            ),
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) => (
                format!("TLS failed: {e}"),
                "if it serves plain HTTP, list it as an insecure registry",
            ),
            ureq::Error::Protocol(_) => (
                format!("it does not speak HTTP as expected: {e}"),
                "is that the registry's port? does it want HTTPS?",
            ),
            other => (other.to_string(), "is it running? is the address right?"),
        };
        Error::Registry(format!("cannot reach registry {host}: {why} ({hint})"))
    }

    /// "unauthorized": the registry refused the user name and password.
    fn bad_credentials(&self) -> Error {
        let user = self
            .credentials
            .as_ref()
            .map_or("", |c| c.username.as_str());
        Error::Registry(format!(
            "unauthorized: {} refused the credentials of user {user:?}: check the user \
             name and password (berth login {})",
            self.host, self.host
        ))
    }

    /// "unauthorized": the registry wants a login and the client has none.
    fn login_required(&self, what: &str) -> Error {
        Error::Registry(format!(
            "unauthorized: {what} requires a login: run `berth login {}` first",
            self.host
        ))
    }

    /// Turns a registry's error answer into a message that says what was
    /// asked for and what the registry said about it.
    fn registry_error(&self, mut resp: Response<Body>, what: &str) -> Error {
        let status = resp.status();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BODY)
            .read_to_vec()
            .unwrap_or_default();
        let said: Vec<String> = serde_json::from_slice::<ErrorDocument>(&body)
            .map(|doc| {
                doc.errors
                    .into_iter()
                    .map(|e| match (e.message.is_empty(), e.code.is_empty()) {
                        (false, _) => e.message,
                        (true, false) => e.code.to_lowercase().replace('_', " "),
                        (true, true) => "no details".to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let said = if said.is_empty() {
            status.canonical_reason().unwrap_or("error").to_lowercase()
        } else {
            said.join("; ")
        };
        let code = status.as_u16();
        let message = match code {
            404 => format!("{said}: {what} not found"),
            401 => format!("unauthorized: {what}: {said}"),
            403 => format!("denied: {what}: {said} (the account may not access it)"),
            429 => format!("{what}: {said} (HTTP 429: too many requests; wait and try again)"),
            500..=599 => {
                format!("{what}: {said} (HTTP {code}: the registry failed; try again later)")
            }
            _ => format!("{what}: {said} (HTTP {code})"),
        };
        Error::Registry(message)
    }

    // ANCHOR: token
    /// Asks a token server for a token granting `scopes`, presenting the
    /// client's credentials if it has any (anonymous tokens are how public
    /// images are pulled from Docker Hub).
    fn fetch_token(&self, realm: &str, service: Option<&str>, scopes: &[String]) -> Result<String> {
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(Error::Registry(format!(
                "{}: the login challenge names a token server {realm:?}, which is not an \
                 http(s) address",
                self.host
            )));
        }
        let mut req = self.agent.get(realm);
        if let Some(service) = service {
            req = req.query("service", service);
        }
        for scope in scopes {
            req = req.query("scope", scope);
        }
        if let Some(c) = &self.credentials {
            req = req.header("Authorization", c.basic_header());
        }
        tracing::debug!(realm, ?scopes, "fetching a token");
        let mut resp = req.call().map_err(|e| {
            Error::Registry(format!(
                "cannot reach the token server {realm} of {}: {e}",
                self.host
            ))
        })?;
        match resp.status().as_u16() {
            200 => {}
            401 | 403 if self.credentials.is_some() => return Err(self.bad_credentials()),
            401 | 403 => return Err(self.login_required(&self.host)),
            code => {
                return Err(Error::Registry(format!(
                    "the token server {realm} of {} answered HTTP {code}",
                    self.host
                )));
            }
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BODY)
            .read_to_vec()
            .map_err(|e| Error::Registry(format!("reading the token from {realm} failed: {e}")))?;
        let answer: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            Error::Registry(format!(
                "the token server {realm} sent a malformed token response (not the JSON \
                 {{\"token\": ...}} expected): {e}"
            ))
        })?;
        let token = if answer.token.is_empty() {
            answer.access_token
        } else {
            answer.token
        };
        if token.is_empty() {
            return Err(Error::Registry(format!(
                "the token server {realm} answered without a token"
            )));
        }
        Ok(token)
    }
    // ANCHOR_END: token

    /// The `Authorization` header to send before the registry asks, from
    /// what earlier requests taught: Basic credentials, or a token for
    /// these scopes (fetched now if the cache has none).
    fn auth_for(&self, access: &Access) -> Result<Option<String>> {
        let (realm, service) = {
            let state = self.state();
            match &state.scheme {
                None => return Ok(None),
                Some(Scheme::Basic) => {
                    return Ok(self.credentials.as_ref().map(Credentials::basic_header));
                }
                Some(Scheme::Bearer { realm, service }) => {
                    if let Some(token) = state.tokens.get(&access.key()) {
                        return Ok(Some(format!("Bearer {token}")));
                    }
                    (realm.clone(), service.clone())
                }
            }
        };
        // Not under the lock: this is a network round trip.
        let token = self.fetch_token(&realm, service.as_deref(), &access.scopes)?;
        self.state().tokens.insert(access.key(), token.clone());
        Ok(Some(format!("Bearer {token}")))
    }

    // ANCHOR: execute
    /// Sends a request through the login dance. `send` makes the request
    /// with the `Authorization` value it is given (or none); when the
    /// registry answers 401, its challenge says how to log in, and the
    /// request is sent once more with Basic credentials or a fresh token.
    /// A second 401 is final. Any other answer is returned for the caller
    /// to read.
    fn execute(
        &self,
        access: &Access,
        what: &str,
        send: &mut dyn FnMut(Option<&str>) -> Sent,
    ) -> Sent {
        // BEGIN SOLUTION 05.4
        let mut auth = self.auth_for(access)?;
        let mut challenged = false;
        loop {
            let resp = send(auth.as_deref())?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all("www-authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_challenges)
                .collect();
            let sent_basic = auth.as_deref().is_some_and(|a| a.starts_with("Basic "));
            if challenged {
                // Logged in as asked, and still refused.
                return Err(Fail::Done(match &self.credentials {
                    _ if sent_basic => self.bad_credentials(),
                    Some(c) => {
                        let said = self.registry_error(resp, what);
                        Error::Registry(format!(
                            "{said}; the token {} issued for user {:?} does not grant it (does the repository exist? may that user {}?)",
                            self.host,
                            c.username,
                            if access.scopes.iter().any(|s| s.ends_with("push")) {
                                "push to it"
                            } else {
                                "pull it"
                            }
                        ))
                    }
                    None => self.login_required(what),
                }));
            }
            challenged = true;
            let bearer = challenges
                .iter()
                .find(|c| c.is("bearer") && c.param("realm").is_some_and(|r| !r.is_empty()));
            if let Some(bearer) = bearer {
                let realm = bearer.param("realm").unwrap_or_default().to_string();
                let service = bearer.param("service").map(str::to_string);
                // Ask for what this request needs, plus whatever the
                // registry's challenge names.
                let mut scopes = access.scopes.clone();
                for scope in bearer.param("scope").unwrap_or_default().split_whitespace() {
                    if !scopes.iter().any(|s| s == scope) {
                        scopes.push(scope.to_string());
                    }
                }
                let token = self.fetch_token(&realm, service.as_deref(), &scopes)?;
                let mut state = self.state();
                state.scheme = Some(Scheme::Bearer { realm, service });
                state.tokens.insert(access.key(), token.clone());
                auth = Some(format!("Bearer {token}"));
            } else if challenges.iter().any(|c| c.is("basic")) {
                let Some(credentials) = &self.credentials else {
                    return Err(Fail::Done(self.login_required(what)));
                };
                if sent_basic {
                    return Err(Fail::Done(self.bad_credentials()));
                }
                self.state().scheme = Some(Scheme::Basic);
                auth = Some(credentials.basic_header());
            } else {
                let shown = header(&resp, "www-authenticate").unwrap_or("");
                return Err(Fail::Done(Error::Registry(format!(
                    "{}: the registry answered 401 Unauthorized for {what} without a usable \
                     WWW-Authenticate challenge ({}), so there is no way to log in; is \
                     {} really a container registry?",
                    self.host,
                    if shown.is_empty() {
                        "the header is missing".to_string()
                    } else {
                        format!("it says {shown:?}")
                    },
                    self.host
                ))));
            }
        }
        // END SOLUTION
    }
    // ANCHOR_END: execute

    /// Checks that the registry answers and lets this client in: `GET /v2/`
    /// with the client's credentials, through the whole login dance. This
    /// is what `berth login` runs before saving the credentials.
    pub fn check(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let resp = self
            .execute(&Access::none(), &self.host, &mut |auth| {
                net(with_auth(self.agent.get(&url), auth).call())
            })
            .map_err(|f| self.fail(f))?;
        match resp.status().as_u16() {
            200 => Ok(()),
            404 => Err(Error::Registry(format!(
                "{} answered 404 for /v2/: it does not serve the registry API (is the \
                 address right?)",
                self.host
            ))),
            _ => Err(self.registry_error(resp, &self.host)),
        }
    }

    // ANCHOR: manifest
    /// Fetches the manifest `reference` (a tag or a digest) of `repo`,
    /// accepting OCI and Docker schema 2 indexes and manifests. Its digest
    /// is computed from the bytes received and checked against the digest
    /// asked for (if `reference` is one) and against the registry's
    /// `Docker-Content-Digest` header (if it sent one).
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        check_repo(repo)?;
        let by_digest = check_reference(reference)?;
        let what = self.name_of(repo, reference);
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let accept = MANIFEST_ACCEPT.join(", ");
        let mut resp = self
            .execute(&Access::pull(repo), &what, &mut |auth| {
                net(with_auth(self.agent.get(&url), auth)
                    .header("Accept", &accept)
                    .call())
            })
            .map_err(|f| self.fail(f))?;
        if resp.status() != StatusCode::OK {
            return Err(self.registry_error(resp, &what));
        }
        let claimed = header(&resp, "docker-content-digest").map(str::to_string);
        let content_type = header(&resp, "content-type")
            .map(|t| t.split(';').next().unwrap_or("").trim().to_string());
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Error::Registry(format!(
                    "the manifest {what} is larger than {} MiB; refusing it",
                    MAX_MANIFEST >> 20
                )),
                e => Error::Registry(format!("reading the manifest {what} failed: {e}")),
            })?;
        // BEGIN SOLUTION 05.4
        let digest = digest::sha256(&bytes);
        if let Some(expected) = by_digest
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest {what}"),
                expected: expected.to_string(),
                actual: digest,
            });
        }
        if let Some(claimed) = claimed.filter(|c| c.starts_with("sha256:"))
            && claimed != digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest {what} (per the registry's Docker-Content-Digest header)"),
                expected: claimed,
                actual: digest,
            });
        }
        let media_type = media_type_of(&bytes, content_type.as_deref(), &what)?;
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
        // END SOLUTION
    }
    // ANCHOR_END: manifest

    // ANCHOR: resolve
    /// Fetches the image manifest that `repo:reference` means on
    /// `platform`: the manifest itself if the name points at one, or the
    /// platform's entry if it points at an index (a manifest list). Docker
    /// schema 1 manifests are refused.
    pub fn resolve(&self, repo: &str, reference: &str, platform: &Platform) -> Result<Resolved> {
        let what = self.name_of(repo, reference);
        let top = self.manifest(repo, reference)?;
        match top.kind() {
            ManifestKind::Image => {
                check_image_manifest(&top, &what)?;
                Ok(Resolved {
                    manifest: top,
                    index: None,
                })
            }
            ManifestKind::Index => {
                // BEGIN SOLUTION 05.4
                let index: ImageIndex = serde_json::from_slice(&top.bytes).map_err(|e| {
                    Error::Registry(format!("the image index {what} is malformed: {e}"))
                })?;
                let chosen = pick_platform(&index, platform).ok_or_else(|| {
                    let offered: Vec<String> = index
                        .manifests()
                        .iter()
                        .filter_map(|d| d.platform().as_ref())
                        .map(|p| {
                            let mut s = format!("{}/{}", p.os(), p.architecture());
                            if let Some(v) = p.variant() {
                                s = format!("{s}/{v}");
                            }
                            s
                        })
                        .collect();
                    Error::Invalid(format!(
                        "{what} has no image for {platform}; it has: {}",
                        if offered.is_empty() {
                            "no platforms at all".to_string()
                        } else {
                            offered.join(", ")
                        }
                    ))
                })?;
                let digest = chosen.digest().to_string();
                let child = self.manifest(repo, &digest)?;
                if child.bytes.len() as u64 != chosen.size() {
                    return Err(Error::Registry(format!(
                        "the index {what} says {digest} is {} bytes, but it is {}",
                        chosen.size(),
                        child.bytes.len()
                    )));
                }
                let child_what = self.name_of(repo, &digest);
                match child.kind() {
                    ManifestKind::Image => check_image_manifest(&child, &child_what)?,
                    ManifestKind::Schema1 => return Err(schema1(&child_what)),
                    _ => {
                        return Err(Error::Invalid(format!(
                            "{what} for {platform} is a {}, not an image manifest",
                            child.media_type
                        )));
                    }
                }
                Ok(Resolved {
                    manifest: child,
                    index: Some(top),
                })
                // END SOLUTION
            }
            ManifestKind::Schema1 => Err(schema1(&what)),
            ManifestKind::Other => Err(Error::Invalid(format!(
                "{what} is a {}, not an image: berth can pull images only",
                top.media_type
            ))),
        }
    }
    // ANCHOR_END: resolve

    /// Whether `repo` holds the blob `digest` (`HEAD`, no download).
    pub fn has_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        check_repo(repo)?;
        check_digest(digest)?;
        self.head_blob(&Access::pull(repo), repo, digest)
    }

    /// `HEAD` on a blob, with the given access (a push asks with its push
    /// scope, so that one token serves the whole upload).
    fn head_blob(&self, access: &Access, repo: &str, digest: &str) -> Result<bool> {
        let what = self.name_of(repo, digest);
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = self
            .execute(access, &what, &mut |auth| {
                net(with_auth(self.agent.head(&url), auth).call())
            })
            .map_err(|f| self.fail(f))?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.registry_error(resp, &what)),
        }
    }

    // ANCHOR: blob
    /// Downloads the blob `digest` of `repo` into `out`, hashing it on the
    /// way, and fails if the bytes do not hash to `digest` or stop short of
    /// the announced length. A connection that breaks is retried from the
    /// start (`out` is emptied first), three times at most; redirects to
    /// storage are followed. On failure `out` is emptied, and the caller
    /// keeps nothing. Returns the number of bytes.
    pub fn blob(
        &self,
        repo: &str,
        digest: &str,
        out: &mut dyn BlobSink,
        progress: Option<&ProgressBar>,
    ) -> Result<u64> {
        check_repo(repo)?;
        check_digest(digest)?;
        let what = self.name_of(repo, digest);
        let mut last = String::new();
        for attempt in 0..BLOB_ATTEMPTS {
            if attempt > 0 {
                tracing::warn!(%what, attempt, reason = %last, "retrying the download");
                std::thread::sleep(Duration::from_millis(100 << (attempt - 1)));
                out.restart()
                    .map_err(|e| Error::io("empty the download of", digest, e))?;
            }
            if let Some(p) = progress {
                p.set_position(0);
            }
            match self.blob_once(repo, digest, &what, out, progress) {
                Ok(n) => return Ok(n),
                Err(Attempt::Again(why)) => last = why,
                Err(Attempt::Fatal(e)) => {
                    let _ = out.restart();
                    return Err(e);
                }
            }
        }
        let _ = out.restart();
        Err(Error::Registry(format!(
            "downloading {what} failed {BLOB_ATTEMPTS} times; the last time: {last}"
        )))
    }

    /// One download attempt.
    fn blob_once(
        &self,
        repo: &str,
        digest: &str,
        what: &str,
        out: &mut dyn BlobSink,
        progress: Option<&ProgressBar>,
    ) -> std::result::Result<u64, Attempt> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let resp = match self.execute(&Access::pull(repo), what, &mut |auth| {
            net(with_auth(self.agent.get(&url), auth).call())
        }) {
            Ok(resp) => resp,
            Err(Fail::Net(e)) if transient(&e) => {
                return Err(Attempt::Again(self.unreachable(&e).to_string()));
            }
            Err(f) => return Err(Attempt::Fatal(self.fail(f))),
        };
        if resp.status().is_server_error() {
            return Err(Attempt::Again(self.registry_error(resp, what).to_string()));
        }
        if resp.status() != StatusCode::OK {
            return Err(Attempt::Fatal(self.registry_error(resp, what)));
        }
        let length = header(&resp, "content-length").and_then(|l| l.parse::<u64>().ok());
        if let (Some(p), Some(len)) = (progress, length)
            && p.length().is_none()
        {
            p.set_length(len);
        }
        // BEGIN SOLUTION 05.4
        let mut body = resp.into_body().into_reader();
        let mut hasher = Sha256::new();
        let mut count = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    let of = length.map(|l| format!(" of {l}")).unwrap_or_default();
                    return Err(Attempt::Again(format!(
                        "the connection broke after {count}{of} bytes: {e}"
                    )));
                }
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Attempt::Fatal(Error::io("write blob", digest, e)))?;
            count += n as u64;
            if let Some(p) = progress {
                p.inc(n as u64);
            }
        }
        if let Some(len) = length
            && count != len
        {
            return Err(Attempt::Again(format!(
                "the body was cut short: {count} of {len} bytes arrived"
            )));
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(Attempt::Fatal(Error::DigestMismatch {
                what: format!("blob {what}"),
                expected: digest.to_string(),
                actual,
            }));
        }
        out.flush()
            .map_err(|e| Attempt::Fatal(Error::io("write blob", digest, e)))?;
        Ok(count)
        // END SOLUTION
    }
    // ANCHOR_END: blob

    // ANCHOR: push_blob
    /// Uploads the blob `digest` (`size` bytes, read from `source`) to
    /// `repo`, unless the repository has it already. With `mount_from`, it
    /// first asks the registry to link the blob from that repository on the
    /// same registry, which costs no upload at all. Blobs up to the chunk
    /// size go in one `PUT`; larger ones in `PATCH` pieces. The content is
    /// hashed as it is read, and a blob that does not hash to `digest` is
    /// refused.
    pub fn push_blob(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        source: &BlobSource<'_>,
        mount_from: Option<&str>,
        progress: Option<&ProgressBar>,
    ) -> Result<BlobPush> {
        check_repo(repo)?;
        check_digest(digest)?;
        if let Some(from) = mount_from {
            check_repo(from)?;
        }
        let what = self.name_of(repo, digest);
        let access = Access::push(repo, mount_from);
        if let Some(p) = progress {
            p.set_length(size);
        }
        let done = |result: BlobPush| {
            if let Some(p) = progress {
                p.set_position(size);
                p.finish();
            }
            Ok(result)
        };

        if self.head_blob(&access, repo, digest)? {
            return done(BlobPush::AlreadyExists);
        }

        // BEGIN SOLUTION 05.4
        let uploads = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let resp = self
            .execute(&access, &what, &mut |auth| {
                let mut req = with_auth(self.agent.post(&uploads), auth);
                if let Some(from) = mount_from {
                    req = req.query("mount", digest).query("from", from);
                }
                net(req.send_empty())
            })
            .map_err(|f| self.fail(f))?;
        match (resp.status().as_u16(), mount_from) {
            (201, Some(from)) => {
                return done(BlobPush::Mounted {
                    from: from.to_string(),
                });
            }
            (202, _) => {}
            _ => return Err(self.registry_error(resp, &what)),
        }
        let location = self.upload_location(&resp, &what)?;
        if size <= self.chunk_size {
            self.upload_whole(&access, &what, digest, size, source, location, progress)?;
        } else {
            self.upload_chunks(&access, &what, digest, size, source, location, progress)?;
        }
        done(BlobPush::Pushed)
        // END SOLUTION
    }
    // ANCHOR_END: push_blob

    /// A monolithic upload: the whole blob in the body of the `PUT` that
    /// closes the upload session.
    #[allow(clippy::too_many_arguments)]
    fn upload_whole(
        &self,
        access: &Access,
        what: &str,
        digest: &str,
        size: u64,
        source: &BlobSource<'_>,
        location: String,
        progress: Option<&ProgressBar>,
    ) -> Result<()> {
        // What was read: byte count and digest, from the last attempt.
        let mut read: Option<(u64, String)> = None;
        let resp = self
            .execute(access, what, &mut |auth| {
                let reader = source.open()?;
                if let Some(p) = progress {
                    p.set_position(0);
                }
                let mut body = Metered {
                    inner: reader,
                    left: size,
                    count: 0,
                    hasher: Sha256::new(),
                    progress,
                };
                let sent = with_auth(self.agent.put(&location), auth)
                    .query("digest", digest)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", size.to_string())
                    .send(SendBody::from_reader(&mut body));
                let actual = format!("sha256:{}", hex::encode(body.hasher.finalize_reset()));
                read = Some((body.count, actual));
                if body.count < size {
                    return Err(Fail::Done(Error::Invalid(format!(
                        "{source} holds {} bytes, but the blob {digest} is {size} bytes",
                        body.count
                    ))));
                }
                net(sent)
            })
            .map_err(|f| self.fail(f))?;
        let actual = read.map(|(_, d)| d).unwrap_or_default();
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob to push as {what} (read from {source})"),
                expected: digest.to_string(),
                actual,
            });
        }
        if resp.status() != StatusCode::CREATED {
            return Err(self.registry_error(resp, what));
        }
        Ok(())
    }

    /// A chunked upload: `PATCH` requests of up to the chunk size, each
    /// saying which bytes it carries (`Content-Range: FIRST-LAST`) and each
    /// answered with the `Location` to send the next one to; then an empty
    /// `PUT` with the digest to close the session.
    #[allow(clippy::too_many_arguments)]
    fn upload_chunks(
        &self,
        access: &Access,
        what: &str,
        digest: &str,
        size: u64,
        source: &BlobSource<'_>,
        mut location: String,
        progress: Option<&ProgressBar>,
    ) -> Result<()> {
        let mut reader = source.open()?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let mut chunk = Vec::new();
        while offset < size {
            chunk.clear();
            let want = self.chunk_size.min(size - offset);
            (&mut reader)
                .take(want)
                .read_to_end(&mut chunk)
                .map_err(|e| Error::Registry(format!("reading {source} failed: {e}")))?;
            if chunk.is_empty() {
                return Err(Error::Invalid(format!(
                    "{source} holds {offset} bytes, but the blob {digest} is {size} bytes"
                )));
            }
            hasher.update(&chunk);
            let last = offset + chunk.len() as u64 - 1;
            let resp = self
                .execute(access, what, &mut |auth| {
                    net(with_auth(self.agent.patch(&location), auth)
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Range", format!("{offset}-{last}"))
                        .send(&chunk[..]))
                })
                .map_err(|f| self.fail(f))?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self.registry_error(resp, what));
            }
            location = self.upload_location(&resp, what)?;
            offset = last + 1;
            if let Some(p) = progress {
                p.set_position(offset);
            }
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            // Abandon the session rather than leave it to expire.
            let _ = self.execute(access, what, &mut |auth| {
                net(with_auth(self.agent.delete(&location), auth).call())
            });
            return Err(Error::DigestMismatch {
                what: format!("blob to push as {what} (read from {source})"),
                expected: digest.to_string(),
                actual,
            });
        }
        let resp = self
            .execute(access, what, &mut |auth| {
                net(with_auth(self.agent.put(&location), auth)
                    .query("digest", digest)
                    .header("Content-Type", "application/octet-stream")
                    .send(&[][..]))
            })
            .map_err(|f| self.fail(f))?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.registry_error(resp, what));
        }
        Ok(())
    }

    /// Stores `bytes` as the manifest `reference` (a tag, or the digest of
    /// the bytes) of `repo`, with the given media type; the blobs it names
    /// must be pushed first. Returns the manifest's digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        check_repo(repo)?;
        let by_digest = check_reference(reference)?;
        let what = self.name_of(repo, reference);
        let digest = digest::sha256(bytes);
        if let Some(expected) = by_digest
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest to push as {what}"),
                expected: expected.to_string(),
                actual: digest,
            });
        }
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self
            .execute(&Access::push(repo, None), &what, &mut |auth| {
                net(with_auth(self.agent.put(&url), auth)
                    .header("Content-Type", media_type)
                    .send(bytes))
            })
            .map_err(|f| self.fail(f))?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.registry_error(resp, &what));
        }
        if let Some(stored) = header(&resp, "docker-content-digest")
            && stored.starts_with("sha256:")
            && stored != digest
        {
            return Err(Error::Registry(format!(
                "{what}: the registry filed the manifest under {stored}, but it hashes to {digest}"
            )));
        }
        Ok(digest)
    }
}

/// How a download attempt failed: worth another try, or not.
enum Attempt {
    Again(String),
    Fatal(Error),
}

/// The error for a Docker schema 1 manifest.
fn schema1(what: &str) -> Error {
    Error::Invalid(format!(
        "{what} is a Docker schema 1 manifest, a format retired years ago that berth does not \
         support; push the image again with a current tool (docker, skopeo) to convert it"
    ))
}

/// Checks that an image manifest parses, so that a malformed one is
/// reported here, naming it, rather than later in the store.
fn check_image_manifest(manifest: &Manifest, what: &str) -> Result<()> {
    serde_json::from_slice::<ImageManifest>(&manifest.bytes)
        .map(drop)
        .map_err(|e| Error::Registry(format!("the image manifest {what} is malformed: {e}")))
}

/// The media type of a manifest: the `Content-Type` the registry sent, if
/// it names a manifest type; else the `mediaType` in the JSON; else a
/// guess from the JSON's shape (OCI makes `mediaType` optional). Fails if
/// the bytes are not a JSON object.
fn media_type_of(bytes: &[u8], content_type: Option<&str>, what: &str) -> Result<String> {
    // BEGIN SOLUTION 05.4
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Registry(format!("the manifest {what} is not valid JSON ({e})")))?;
    let Some(object) = json.as_object() else {
        return Err(Error::Registry(format!(
            "the manifest {what} is JSON but not an object, so it is not a manifest"
        )));
    };
    if let Some(t) = content_type.filter(|t| t.starts_with("application/vnd.")) {
        return Ok(t.to_string());
    }
    if let Some(t) = object.get("mediaType").and_then(|t| t.as_str()) {
        return Ok(t.to_string());
    }
    if object.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Ok(DOCKER_SCHEMA1[0].to_string());
    }
    if object.contains_key("manifests") {
        return Ok(OCI_INDEX.to_string());
    }
    if object.contains_key("config") && object.contains_key("layers") {
        return Ok(OCI_MANIFEST.to_string());
    }
    Err(Error::Registry(format!(
        "the manifest {what} has no media type (neither in Content-Type nor in the JSON) and \
         does not look like an index or an image manifest"
    )))
    // END SOLUTION
}

// ANCHOR: pick_platform
/// The entry of `index` for `platform`: same OS and architecture, and the
/// same variant if one was asked for. An entry whose variant matches
/// exactly wins over one that merely does not contradict.
fn pick_platform<'a>(index: &'a ImageIndex, platform: &Platform) -> Option<&'a Descriptor> {
    // BEGIN SOLUTION 05.4
    let mut fallback = None;
    for d in index.manifests() {
        let Some(p) = d.platform() else { continue };
        if p.os().to_string() != platform.os
            || p.architecture().to_string() != platform.architecture
        {
            continue;
        }
        match (&platform.variant, p.variant()) {
            (Some(want), Some(have)) if want == have => return Some(d),
            (Some(_), Some(_)) => {}
            (None, None) => return Some(d),
            _ => {
                fallback.get_or_insert(d);
            }
        }
    }
    fallback
    // END SOLUTION
}
// ANCHOR_END: pick_platform

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_with_commas_inside_quotes() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert!(c[0].is("bearer"));
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("service"), Some("registry.example"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn several_challenges_escapes_and_bare_values() {
        let c = parse_challenges(
            r#"Basic realm="say \"hi\"", Bearer realm=https://t/x , error=insufficient_scope"#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "Basic");
        assert_eq!(c[0].param("realm"), Some(r#"say "hi""#));
        assert_eq!(c[1].param("realm"), Some("https://t/x"));
        assert_eq!(c[1].param("ERROR"), Some("insufficient_scope"));
        assert!(parse_challenges("").is_empty());
        assert_eq!(parse_challenges("Basic")[0].params, vec![]);
    }

    #[test]
    fn loopback_and_listed_hosts_use_plain_http() {
        assert!(is_plain_http("localhost:5000", &[]));
        assert!(is_plain_http("127.0.0.1:41234", &[]));
        assert!(is_plain_http("[::1]:5000", &[]));
        assert!(is_plain_http("localhost", &[]));
        assert!(!is_plain_http("registry.example:5000", &[]));
        assert!(is_plain_http(
            "registry.example:5000",
            &["registry.example:5000"]
        ));
        assert!(is_plain_http(
            "registry.example:5000",
            &["registry.example"]
        ));
        assert!(!is_plain_http("localhost.example.com", &[]));
        let hub = Client::new("docker.io", &[]).unwrap();
        assert_eq!(hub.base_url(), "https://registry-1.docker.io");
        assert!(Client::new("http://localhost:5000", &[]).is_err());
    }

    #[test]
    fn locations_relative_and_absolute() {
        let c = Client::new("localhost:5000", &[]).unwrap();
        assert_eq!(
            c.absolute("/v2/a/blobs/uploads/1?_state=x"),
            "http://localhost:5000/v2/a/blobs/uploads/1?_state=x"
        );
        assert_eq!(
            c.absolute("https://s3.example/u/1"),
            "https://s3.example/u/1"
        );
        assert_eq!(c.absolute("//other:1/u"), "http://other:1/u");
    }

    #[test]
    fn names_tags_and_digests_are_checked() {
        assert!(check_repo("library/alpine").is_ok());
        assert!(check_repo("a.b_c-d/e").is_ok());
        assert!(check_repo("Upper").is_err());
        assert!(check_repo("a//b").is_err());
        assert!(check_repo("../etc").is_err());
        assert_eq!(check_reference("latest").unwrap(), None);
        assert!(check_reference("-x").is_err());
        assert!(check_reference("sha256:abc").is_err());
        let d = digest::sha256(b"");
        assert_eq!(check_reference(&d).unwrap(), Some(d.as_str()));
    }

    #[test]
    fn a_client_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Client>();
        // One client used by several threads at once (a pull fetches its
        // layers in parallel): each request goes through the login state
        // behind its lock. Nothing listens on the port, so each request
        // fails, each with its own error.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let client = Client::new(&format!("127.0.0.1:{port}"), &[]).unwrap();
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..4).map(|_| s.spawn(|| client.check())).collect();
            for t in threads {
                let e = t.join().unwrap().unwrap_err().to_string();
                assert!(e.contains("connection refused"), "{e}");
            }
        });
    }

    #[test]
    fn platforms_parse_and_print() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            "linux/amd64".parse::<Platform>().unwrap(),
            Platform::linux_amd64()
        );
        assert!("linux".parse::<Platform>().is_err());
    }

    #[test]
    fn media_type_falls_back_to_the_json() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        assert_eq!(
            media_type_of(m, Some("application/json"), "x").unwrap(),
            DOCKER_MANIFEST
        );
        assert_eq!(
            media_type_of(m, Some(OCI_MANIFEST), "x").unwrap(),
            OCI_MANIFEST
        );
        let bare = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(media_type_of(bare, None, "x").unwrap(), OCI_INDEX);
        let err = media_type_of(b"{nope", None, "h/app:1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the manifest h/app:1 is not valid JSON"),
            "{err}"
        );
    }
}
