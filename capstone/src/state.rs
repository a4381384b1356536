//! The engine's state on disk, and how it stays consistent.
//!
//! ```text
//! ROOT/                       (--root, default /var/lib/berth)
//!   images/                   an OCI image layout: oci-layout, index.json, blobs/sha256/…
//!   layers/<diff id>/         each image layer unpacked once
//!   containers/<id>/
//!     config.json             the OCI runtime config
//!     state.json              berth's record: name, status, pid, exit code …
//!     container.log           stdout and stderr, one JSON object per line
//!     rootfs/                 the container's private root filesystem
//! RUNROOT/                    (--runroot, default /run/berth)
//!   locks/                    one lock file per container, and one for names
//! ```
//!
//! Every write goes to a temporary file that is renamed over the old one, so
//! a `berth` killed at any moment leaves either the old or the new state, never
//! half of one. Changes to one container happen under its lock file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::options::RunOptions;

/// A container's life cycle, with Docker's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made but never started, or failed to start.
    Created,
    Running,
    Paused,
    /// Exited and waiting out the restart policy's delay.
    Restarting,
    Exited,
    /// Being removed.
    Removing,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Removing => "removing",
            Status::Dead => "dead",
        }
    }

    /// True while a process of the container exists.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

/// The part of the record that changes as the container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub status: Status,
    /// Host pid of the container's first process (0 when none).
    pub pid: i32,
    /// Its start time in clock ticks since boot, to tell it apart from a
    /// later process that reuses the pid number.
    pub pid_start: u64,
    /// The pid of the monitor process watching the container.
    pub monitor_pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub oom_killed: bool,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// What the health checks found, for a container that has them.
    #[serde(default)]
    pub health: Option<crate::health::Health>,
}

impl Default for RunState {
    fn default() -> Self {
        RunState {
            status: Status::Created,
            pid: 0,
            pid_start: 0,
            monitor_pid: 0,
            exit_code: 0,
            error: String::new(),
            oom_killed: false,
            started_at: None,
            finished_at: None,
            health: None,
        }
    }
}

/// Everything berth remembers about one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub created: SystemTime,
    /// The image as the user named it, and its id (the config digest).
    pub image: String,
    pub image_id: String,
    /// The command as it will run: entrypoint and arguments resolved.
    pub path: String,
    pub args: Vec<String>,
    pub options: RunOptions,
    /// The environment the process gets: image, engine and `-e` merged.
    #[serde(default)]
    pub env: Vec<String>,
    pub state: RunState,
    pub restart_count: u32,
    /// Set by `stop` and `kill`: the restart policy must not bring it back.
    pub manually_stopped: bool,
    /// How its root filesystem is made (lab 03). Containers from before
    /// lab 03 have none recorded: theirs is a copy.
    #[serde(default)]
    pub storage: crate::storage::Storage,
    /// Its place on a bridge network while it runs (lab 04).
    #[serde(default)]
    pub endpoints: Vec<crate::network::Endpoint>,
    /// Its published ports while it runs, with the host ports chosen.
    #[serde(default)]
    pub ports: Vec<crate::network::Binding>,
}

impl Container {
    /// The first 12 hex digits, as `docker ps` shows.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// Where everything lives.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
    pub runroot: PathBuf,
    /// The storage driver asked for (`--storage-driver`); chosen if `None`.
    pub driver: Option<String>,
}

/// A held lock file; the lock is released when this is dropped.
pub struct Lock {
    _file: File,
}

impl Store {
    /// Opens (and creates) the store's directories.
    pub fn open(root: &Path, runroot: &Path) -> Result<Store> {
        for dir in [root.join("containers"), runroot.join("locks")] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            runroot: runroot.to_path_buf(),
            driver: None,
        })
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// Takes an exclusive lock named `name` (blocking until it is free).
    pub fn lock(&self, name: &str) -> Result<Lock> {
        let path = self.runroot.join("locks").join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        // SAFETY: flock on a descriptor we own; the lock goes with the file.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot lock {}", path.display()));
        }
        Ok(Lock { _file: file })
    }

    /// Removes a container's lock file (after the container is gone).
    pub fn remove_lock(&self, name: &str) {
        let _ = std::fs::remove_file(self.runroot.join("locks").join(format!("{name}.lock")));
    }

    /// Removes what interrupted creations and removals left: hidden
    /// `.creating-*` and `.removing-*` directories. Call it only while
    /// holding the `names` lock, under which every creation runs.
    pub fn clear_abandoned(&self) {
        for entry in std::fs::read_dir(self.containers_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(".creating-") || name.starts_with(".removing-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Reads one container's record.
    pub fn load(&self, id: &str) -> Result<Container> {
        let path = self.container_dir(id).join("state.json");
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    /// Writes one container's record atomically.
    pub fn save(&self, c: &Container) -> Result<()> {
        write_atomic(
            &self.container_dir(&c.id).join("state.json"),
            &serde_json::to_vec_pretty(c)?,
        )
    }

    /// Loads, changes and saves a record under the container's lock.
    pub fn update<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut Container) -> Result<T>,
    ) -> Result<T> {
        let _lock = self.lock(id)?;
        let mut c = self.load(id)?;
        let out = change(&mut c)?;
        self.save(&c)?;
        Ok(out)
    }

    /// Every container, oldest first. Directories that are not (yet)
    /// containers, like a creation in progress, are skipped.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.containers_dir())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(c) = self.load(&name) {
                all.push(c);
            }
        }
        all.sort_by_key(|c| c.created);
        Ok(all)
    }

    /// Finds a container by full id, name, or unique id prefix, as Docker does.
    pub fn find(&self, key: &str) -> Result<Container> {
        let key = key.strip_prefix('/').unwrap_or(key);
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.id == key || c.name == key) {
            return Ok(c.clone());
        }
        let matches: Vec<&Container> = all
            .iter()
            .filter(|c| !key.is_empty() && c.id.starts_with(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(anyhow!(NoSuchContainer(key.to_string()))),
            _ => bail!("multiple containers match the id prefix {key}; give more of the id"),
        }
    }
}

/// The error for an unknown container, so callers can pick an exit code.
#[derive(Debug, thiserror::Error)]
#[error("No such container: {0}")]
pub struct NoSuchContainer(pub String);

/// Writes `data` to `path` so that readers see the old or the new content,
/// never a mixture: write a temporary file, flush it to disk, rename it.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// A fresh random 64-hex-digit id.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(hex::encode(bytes))
}

/// A container name is what Docker accepts: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!("invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    Ok(())
}

/// A readable random name (adjective_noun), as Docker gives unnamed containers.
pub fn random_name(id: &str) -> String {
    const ADJ: [&str; 16] = [
        "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "nimble",
        "proud", "quiet", "sharp", "steady", "swift", "witty",
    ];
    const NOUN: [&str; 16] = [
        "anchor", "barge", "buoy", "cutter", "dinghy", "ferry", "harbor", "jetty", "keel",
        "lagoon", "mooring", "pier", "quay", "skiff", "tender", "wharf",
    ];
    let b = hex::decode(&id[..4]).unwrap_or_else(|_| vec![0, 0]);
    format!(
        "{}_{}",
        ADJ[(b[0] % 16) as usize],
        NOUN[(b[1] % 16) as usize]
    )
}

/// The start time of process `pid` in clock ticks after boot (field 22 of
/// `/proc/PID/stat`), or `None` if there is no such process.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; the
    // fields after the last ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True when `pid` still names the process that started at `start`.
pub fn process_alive(pid: i32, start: u64) -> bool {
    pid > 0 && process_start_time(pid) == Some(start) && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["web", "web-1", "a.b_c", "9lives"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "-web", "we b", "a/b", "_x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let id = new_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(random_name(&id).contains('_'));
    }

    #[test]
    fn own_start_time() {
        let me = std::process::id() as i32;
        let start = process_start_time(me).unwrap();
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start + 1));
    }
}
