//! Step 05.4: remembering who you are on each registry (`berth login`).
//!
//! A registry that wants to know who is pulling or pushing asks for a user
//! name and a password (or an access token used as a password). Typing them
//! for every pull would be tiresome, so `docker login HOST` checks them once
//! against the registry and writes them to a file; later commands read the
//! file and present them when the registry asks. `berth` keeps the same file
//! format as Docker, so the two can share it:
//!
//! ```json
//! {
//!   "auths": {
//!     "localhost:5000": { "auth": "dXNlcjpwYXNz" }
//!   }
//! }
//! ```
//!
//! The `auth` value is `user:password` in base64. Base64 is an encoding, not
//! encryption: anyone who can read the file can log in as you. That is why
//! the file is created readable by its owner only (mode 0600), and written
//! by creating a new file with that mode and renaming it over the old one,
//! so it is never world-readable, not even for a moment, and a crash while
//! saving leaves either the old file or the new one, never half of each.
//! (Docker can hand the secrets to a system keychain instead, a
//! "credential helper"; this lab does not.)
//!
//! Keys are registry hosts as the user writes them (`localhost:5000`,
//! `ghcr.io`), with one exception inherited from Docker: Docker Hub is
//! stored under `https://index.docker.io/v1/`, the address of its first
//! API, whichever of `docker.io`, `index.docker.io` or
//! `registry-1.docker.io` the user typed. [`config_key`] does that mapping.
//! Reading is forgiving the way Docker is: a key written as a URL
//! (`https://ghcr.io`, `http://localhost:5000/v1/`) still matches its host.
//!
//! Everything else in the file (other hosts, Docker's `credsStore`, fields
//! this lab does not know) is kept as it was: `login` and `logout` change
//! one entry and nothing else.

use std::fmt;
use std::fs::{self, DirBuilder};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The key Docker files Docker Hub's credentials under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The names Docker Hub goes by.
const DOCKER_HUB_NAMES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A user name and password (or access token) for one registry.
///
/// `Debug` shows the user name only, so credentials that end up in a log
/// line or a panic message do not give the password away.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// Credentials from a user name and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    // ANCHOR: basic
    /// The value of an HTTP `Authorization` header for Basic authentication:
    /// `Basic ` and base64 of `user:password`, the same text the config file
    /// stores under `auth`.
    pub fn basic_header(&self) -> String {
        // BEGIN SOLUTION 05.4
        format!("Basic {}", self.encode())
        // END SOLUTION
    }
    // ANCHOR_END: basic

    /// Base64 of `user:password`, as stored in the `auth` field.
    fn encode(&self) -> String {
        BASE64.encode(format!("{}:{}", self.username, self.password))
    }

    /// Reads an `auth` field back. The user name ends at the first colon;
    /// the password may itself contain colons.
    fn decode(auth: &str, key: &str, path: &Path) -> Result<Self> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "the saved credentials for {key} in {} are damaged ({why}); \
                 run `berth logout {key}` and log in again",
                path.display()
            ))
        };
        let bytes = BASE64
            .decode(auth.trim())
            .map_err(|_| bad("the auth field is not base64"))?;
        let text = String::from_utf8(bytes).map_err(|_| bad("the auth field is not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| bad("the auth field has no colon between user and password"))?;
        Ok(Credentials::new(user, pass))
    }
}

/// The key a registry's credentials are filed under: Docker Hub's historic
/// `https://index.docker.io/v1/` for any of its names, the host as given
/// for every other registry.
pub fn config_key(host: &str) -> String {
    // BEGIN SOLUTION 05.4
    if DOCKER_HUB_NAMES.contains(&host) || host == DOCKER_HUB_KEY {
        DOCKER_HUB_KEY.to_string()
    } else {
        host.to_string()
    }
    // END SOLUTION
}

/// The host a key names, for matching keys written as URLs: the scheme and
/// any path are dropped, so `https://ghcr.io/v1/` names `ghcr.io`.
fn key_host(key: &str) -> &str {
    // BEGIN SOLUTION 05.4
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
    // END SOLUTION
}

/// A credentials file in Docker's `config.json` format at a path the
/// caller chooses (berth's own, or `~/.docker/config.json` to share with
/// Docker).
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    /// A store kept in the file at `path`. Nothing is read or created until
    /// it is used; a missing file is an empty store.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CredentialStore { path: path.into() }
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved credentials for `host`, or `None` when there are none (no
    /// file, or no entry for that host). An entry is found under
    /// [`config_key`]`(host)` first, then under any key naming the same host.
    pub fn get(&self, host: &str) -> Result<Option<Credentials>> {
        let config = self.read()?;
        let Some(auths) = config.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let wanted = config_key(host);
        let entry = auths
            .get(&wanted)
            .map(|e| (wanted.as_str(), e))
            .or_else(|| {
                auths
                    .iter()
                    .find(|(key, _)| config_key(key_host(key)) == wanted)
                    .map(|(key, e)| (key.as_str(), e))
            });
        let Some((key, entry)) = entry else {
            return Ok(None);
        };
        match entry.get("auth").and_then(Value::as_str) {
            Some(auth) if !auth.is_empty() => Credentials::decode(auth, key, &self.path).map(Some),
            // An entry without `auth` (Docker writes `{}` when a credential
            // helper holds the secret): nothing this store can use.
            _ => Ok(None),
        }
    }

    /// Saves `credentials` for `host`, replacing any entry it had. The
    /// caller checks them against the registry first (see
    /// [`Client::check`](crate::registry::Client::check)): this only writes.
    pub fn login(&self, host: &str, credentials: &Credentials) -> Result<()> {
        let mut config = self.read()?;
        let auths = auths_mut(&mut config, &self.path)?;
        // Drop entries for the same host under other spellings, so that a
        // stale one cannot be found before the new one.
        let key = config_key(host);
        auths.retain(|k, _| k == &key || config_key(key_host(k)) != key);
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(credentials.encode()));
        auths.insert(key, Value::Object(entry));
        self.write(&config)
    }

    /// Removes the credentials saved for `host` (under any spelling of it)
    /// and leaves every other entry alone. Returns whether there were any.
    pub fn logout(&self, host: &str) -> Result<bool> {
        if !self.path.exists() {
            return Ok(false);
        }
        let mut config = self.read()?;
        let auths = auths_mut(&mut config, &self.path)?;
        let key = config_key(host);
        let before = auths.len();
        auths.retain(|k, _| config_key(key_host(k)) != key && k != &key);
        if auths.len() == before {
            return Ok(false);
        }
        self.write(&config)?;
        Ok(true)
    }

    /// The whole file as a JSON object; an empty one when there is no file.
    fn read(&self) -> Result<Map<String, Value>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Map::new()),
            Err(e) => return Err(Error::io("read credentials", &self.path, e)),
        };
        if text.trim().is_empty() {
            return Ok(Map::new());
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(Error::Invalid(format!(
                "{} is not a credentials file: it holds JSON, but not an object \
                 like {{\"auths\": {{...}}}}; move it away and log in again",
                self.path.display()
            ))),
            Err(e) => Err(Error::Invalid(format!(
                "{} is not valid JSON ({e}); fix it or move it away and log in again",
                self.path.display()
            ))),
        }
    }

    // ANCHOR: write
    /// Replaces the file with `config`, atomically and privately: the new
    /// content goes to a fresh file in the same directory, created with
    /// mode 0600, which is flushed to disk and then renamed over the old
    /// one. A missing directory is created with mode 0700.
    fn write(&self, config: &Map<String, Value>) -> Result<()> {
        // BEGIN SOLUTION 05.4
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
        let mut text = serde_json::to_vec_pretty(config)
            .map_err(|e| Error::Invalid(format!("cannot encode the credentials: {e}")))?;
        text.push(b'\n');
        // The permissions are given to open(2), so the file never exists
        // with looser ones.
        let mut file = tempfile::Builder::new()
            .prefix(".config.json.")
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(|e| Error::io("create a temporary file in", dir, e))?;
        file.write_all(&text)
            .and_then(|()| file.as_file().sync_all())
            .map_err(|e| Error::io("write", file.path().to_path_buf(), e))?;
        file.persist(&self.path)
            .map_err(|e| Error::io("replace", &self.path, e.error))?;
        Ok(())
        // END SOLUTION
    }
    // ANCHOR_END: write
}

/// The `auths` object of a config, made if missing.
fn auths_mut<'a>(
    config: &'a mut Map<String, Value>,
    path: &Path,
) -> Result<&'a mut Map<String, Value>> {
    config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{}: \"auths\" is not an object; fix the file or move it away",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_is_filed_under_its_v1_address() {
        assert_eq!(config_key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(config_key("registry-1.docker.io"), DOCKER_HUB_KEY);
        assert_eq!(config_key("localhost:5000"), "localhost:5000");
    }

    #[test]
    fn url_keys_name_their_host() {
        assert_eq!(key_host("https://ghcr.io/v1/"), "ghcr.io");
        assert_eq!(key_host("http://localhost:5000"), "localhost:5000");
        assert_eq!(key_host("quay.io"), "quay.io");
    }

    #[test]
    fn passwords_may_contain_colons_and_stay_out_of_debug() {
        let c = Credentials::new("me", "a:b:c");
        let back = Credentials::decode(&c.encode(), "h", Path::new("x")).unwrap();
        assert_eq!(back, c);
        assert!(!format!("{c:?}").contains("a:b:c"));
        assert_eq!(
            Credentials::new("user", "pass").basic_header(),
            "Basic dXNlcjpwYXNz"
        );
    }
}
