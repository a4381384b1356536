//! Step 03.7: data that lives outside the container's writable layer.
//!
//! Whatever a container writes goes to its overlay's upper directory and
//! disappears with `berth rm`. Three kinds of mount put a directory of the
//! container somewhere else:
//!
//! - a **bind mount** (`-v /srv/site:/usr/share/nginx/html`) shows a host
//!   directory or file inside the container: the same inode, seen from two
//!   places, so edits on either side are visible on the other at once;
//! - a **named volume** (`-v pgdata:/var/lib/postgresql/data`) is a bind
//!   mount of a directory the engine owns, `<root>/volumes/NAME/_data`,
//!   which outlives containers and is managed with `berth volume`; the first
//!   time an empty volume is mounted, the image's files at the target are
//!   copied into it, so a database image's initial layout is not hidden;
//!   `-v /path` alone makes an *anonymous* volume with a random name;
//! - a **tmpfs mount** (`--tmpfs /run:size=64m`) is memory-backed scratch
//!   space that vanishes when the container stops.
//!
//! The flags are parsed into [`VolumeMount`] (plain data, no side effects);
//! [`to_mount_spec`] turns one into the [`MountSpec`] that lab 01's
//! `rootfs::setup` mounts; [`VolumeStore`] keeps the named volumes on disk.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use namespaces::MountSpec;
use nix::sys::stat::UtimensatFlags;
use nix::sys::time::TimeSpec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The label Docker (since 23.0) puts on anonymous volumes, so that
/// `volume prune` can tell them from volumes someone named on purpose.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The options every tmpfs mount gets unless the user asks otherwise (with
/// `exec`, `suid` or `dev`), as in Docker: no programs, setuid bits or
/// device nodes from scratch space.
pub const TMPFS_DEFAULTS: [&str; 3] = ["noexec", "nosuid", "nodev"];

/// The pattern a local volume name must match, as Docker writes it.
pub const VOLUME_NAME_PATTERN: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]+";

/// Where a mount's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// A host path, absolute and lexically cleaned.
    Bind(PathBuf),
    /// A volume in the [`VolumeStore`]. Anonymous volumes got a random
    /// 64-hex name when the flag was parsed.
    Named { name: String, anonymous: bool },
    /// A fresh tmpfs. `options` are the flags given besides size and mode
    /// (`exec`, `nosuid`, `uid=1000` …), in order; the defaults
    /// [`TMPFS_DEFAULTS`] are added by [`to_mount_spec`].
    Tmpfs {
        size: Option<u64>,
        mode: Option<u32>,
        options: Vec<String>,
    },
}

/// One `-v`, `--mount` or `--tmpfs` flag, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub source: VolumeSource,
    /// Where it appears in the container: absolute, cleaned, never `/`.
    pub target: PathBuf,
    pub readonly: bool,
    /// Do not copy the image's files into a new, empty named volume.
    pub nocopy: bool,
}

impl VolumeMount {
    /// The name of the named (or anonymous) volume this mounts, if any:
    /// what the engine must create before starting the container and count
    /// as "in use" while it exists.
    pub fn volume_name(&self) -> Option<&str> {
        match &self.source {
            VolumeSource::Named { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// True for a valid local volume name: two or more characters from
/// `[a-zA-Z0-9_.-]`, the first a letter or digit. That also keeps names
/// from climbing out of the volumes directory (`..`, `a/b`).
pub fn is_valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks a volume name, with an error that lists the allowed characters.
pub fn check_volume_name(name: &str) -> Result<()> {
    name_problem(name).map_or(Ok(()), |m| Err(Error::Invalid(m)))
}

fn name_problem(name: &str) -> Option<String> {
    (!is_valid_volume_name(name)).then(|| {
        format!(
            "{name:?} is not a valid volume name: a name has at least two characters from \
             {VOLUME_NAME_PATTERN:?} (letters, digits, '_', '.' and '-', starting with a letter \
             or digit); to mount a host directory instead, give its absolute path"
        )
    })
}

/// A random name for an anonymous volume: 32 bytes from the kernel's
/// random generator, as 64 hex digits (the form of Docker's IDs).
pub fn anonymous_name() -> String {
    let mut buf = [0u8; 32];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of buf.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert!(e.kind() == ErrorKind::Interrupted, "getrandom failed: {e}");
            continue;
        }
        filled += n as usize;
    }
    hex::encode(buf)
}

/// Cleans an absolute path lexically, as Docker's `filepath.Clean`: no
/// `.`, no `..`, no doubled or trailing `/`.
fn clean_absolute(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Checks and cleans a mount target.
fn check_target(target: &str) -> std::result::Result<PathBuf, String> {
    if target.is_empty() {
        return Err(
            "the target is empty: give the absolute path inside the container, as in /data".into(),
        );
    }
    if !target.starts_with('/') {
        return Err(format!(
            "the target {target:?} is not an absolute path: paths inside the container start \
             with '/', as in \"/{}\"",
            target.trim_start_matches("./")
        ));
    }
    let clean = clean_absolute(target);
    if clean == Path::new("/") {
        return Err(
            "the target cannot be \"/\": the image's root filesystem is mounted there; mount on \
             a directory such as /data"
                .into(),
        );
    }
    Ok(clean)
}

/// A source that is neither an absolute path nor a valid volume name but
/// looks like a path the shell did not expand.
fn looks_like_path(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('~') || source.contains('/')
}

fn relative_source(source: &str) -> String {
    let absolute = if source == "~" {
        "$HOME".to_string()
    } else if let Some(rest) = source.strip_prefix("~/") {
        format!("$HOME/{rest}")
    } else if source == "." {
        "$(pwd)".to_string()
    } else {
        format!("$(pwd)/{}", source.trim_start_matches("./"))
    };
    format!(
        "a bind mount's source must be an absolute path, and {source:?} is relative: write \
         \"{absolute}\" instead"
    )
}

fn propagation_refused(option: &str) -> String {
    format!(
        "mount propagation {option:?} is not supported: berth makes every mount in a container \
         private (rprivate), so events never cross between host and container; drop {option:?}"
    )
}

/// Bytes from a size such as `64m`, `512k`, `1g`, `1.5g`, `64MiB` or plain
/// `1048576` (units are powers of 1024, in any case).
fn size_bytes(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    if number.bytes().all(|b| b.is_ascii_digit()) {
        return number.parse::<u64>().ok()?.checked_mul(1 << shift);
    }
    let value: f64 = number.parse().ok()?;
    let bytes = value * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Permission bits from octal text such as `1777` or `755`.
fn octal_mode(text: &str) -> Option<u32> {
    let mode = u32::from_str_radix(text, 8).ok()?;
    (!text.starts_with('+') && mode <= 0o7777).then_some(mode)
}

fn bad_size(key: &str, value: &str) -> String {
    format!(
        "{key}={value:?} is not a size: give bytes or a number with k, m or g (powers of 1024), \
         as in {key}=64m"
    )
}

fn bad_mode(key: &str, value: &str) -> String {
    format!(
        "{key}={value:?} is not a mode: give octal permission bits, as in {key}=1777 (everyone \
         may create files, only owners delete them) or {key}=755"
    )
}

// ANCHOR: parse_volume
/// Parses `-v`/`--volume`: `/host/path:/target[:options]` bind-mounts a host
/// path, `name:/target[:options]` mounts a named volume, and `/target` alone
/// (or `/target:options`) an anonymous volume. Options, comma-separated:
/// `ro`/`rw`, `nocopy` (volumes only), `rprivate`/`private` (the default
/// and only propagation berth has), and `z`/`Z`, which ask Docker to relabel
/// the source for SELinux; berth has no SELinux support, and accepts and
/// ignores them as Docker does on hosts without SELinux.
pub fn parse_volume(spec: &str) -> Result<VolumeMount> {
    // BEGIN SOLUTION 03.7
    let fail = |msg: String| Error::Invalid(format!("invalid -v {spec:?}: {msg}"));
    let is_option = |o: &str| {
        o.split(',').all(|o| {
            matches!(
                o,
                "" | "ro"
                    | "rw"
                    | "nocopy"
                    | "z"
                    | "Z"
                    | "private"
                    | "rprivate"
                    | "shared"
                    | "rshared"
                    | "slave"
                    | "rslave"
                    | "consistent"
                    | "cached"
                    | "delegated"
            )
        })
    };
    let parts: Vec<&str> = spec.split(':').collect();
    // With two parts Docker reads `/data:ro` as an anonymous volume with
    // options, and anything else as SOURCE:TARGET.
    let (source, target, options) = match parts.as_slice() {
        [target] => (None, *target, ""),
        [target, options] if !options.is_empty() && is_option(options) => (None, *target, *options),
        [source, target] => (Some(*source), *target, ""),
        [source, target, options] => (Some(*source), *target, *options),
        _ => {
            return Err(fail(
                "too many ':': the form is SOURCE:TARGET[:OPTIONS]; for a path that contains ':' \
                 use --mount type=bind,source=...,target=..."
                    .into(),
            ));
        }
    };
    let target = check_target(target).map_err(fail)?;

    let mut readonly: Option<bool> = None;
    let mut nocopy = false;
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" | "rw" => {
                let ro = option == "ro";
                if readonly.is_some_and(|r| r != ro) {
                    return Err(fail(
                        "ro and rw contradict each other: give only one of them".into(),
                    ));
                }
                readonly = Some(ro);
            }
            "nocopy" => nocopy = true,
            // SELinux relabelling, and Docker Desktop's file-sharing hints:
            // nothing to do on a Linux host without SELinux.
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            "private" | "rprivate" => {}
            "shared" | "rshared" | "slave" | "rslave" => {
                return Err(fail(propagation_refused(option)));
            }
            other => {
                return Err(fail(format!(
                    "unknown option {other:?}: -v takes ro, rw, nocopy, z, Z and rprivate, \
                     separated by commas, as in /srv/data:/data:ro"
                )));
            }
        }
    }

    let source = match source {
        None => VolumeSource::Named {
            name: anonymous_name(),
            anonymous: true,
        },
        Some("") => {
            return Err(fail(
                "the source is empty: put a host path (/srv/data) or a volume name (data) \
                 before the ':'"
                    .into(),
            ));
        }
        Some(path) if path.starts_with('/') => VolumeSource::Bind(clean_absolute(path)),
        Some(name) if !is_valid_volume_name(name) && looks_like_path(name) => {
            return Err(fail(relative_source(name)));
        }
        Some(name) => {
            if let Some(problem) = name_problem(name) {
                return Err(fail(problem));
            }
            VolumeSource::Named {
                name: name.to_string(),
                anonymous: false,
            }
        }
    };
    if nocopy && matches!(source, VolumeSource::Bind(_)) {
        return Err(fail(
            "nocopy only applies to volumes: a bind mount shows the host path as it is, and \
             never copies anything; drop nocopy"
                .into(),
        ));
    }
    Ok(VolumeMount {
        source,
        target,
        readonly: readonly.unwrap_or(false),
        nocopy,
    })
    // END SOLUTION
}
// ANCHOR_END: parse_volume

/// Splits `--mount`'s value into fields the way Docker's CSV reader does:
/// on commas, except inside double quotes (`"source=/a,b"`).
fn csv_fields(spec: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in spec.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if quoted {
        return Err(
            "a double quote is not closed: quote whole fields, as in \"source=/a,b\"".into(),
        );
    }
    fields.push(field);
    Ok(fields.into_iter().filter(|f| !f.is_empty()).collect())
}

/// Go's `strconv.ParseBool`, which Docker uses for `readonly=…`.
fn parse_bool(key: &str, value: Option<&str>) -> std::result::Result<bool, String> {
    match value {
        None => Ok(true),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(format!(
            "{key}={v:?} is not a boolean: write {key}, {key}=true or {key}=false"
        )),
    }
}

// ANCHOR: parse_mount
/// Parses `--mount`, Docker's explicit form: comma-separated `key=value`
/// fields. `type` is `bind`, `volume` (the default) or `tmpfs`; `source`
/// (`src`) is a host path or a volume name (none for an anonymous volume or
/// a tmpfs); `target` (`destination`, `dst`) is required; `readonly` (`ro`)
/// and `volume-nocopy` are booleans that may stand alone; `tmpfs-size` and
/// `tmpfs-mode` set up a tmpfs; `bind-propagation` may only be `rprivate`.
/// Unlike `-v`, a bind's source must already exist: see [`check_bind_source`].
pub fn parse_mount(spec: &str) -> Result<VolumeMount> {
    let fail = |msg: String| Error::Invalid(format!("invalid --mount {spec:?}: {msg}"));
    let mut kind = "volume".to_string();
    let mut source: Option<String> = None;
    let mut target: Option<String> = None;
    let mut readonly = false;
    let mut nocopy: Option<bool> = None;
    let mut size: Option<u64> = None;
    let mut mode: Option<u32> = None;
    // The first key that belongs to one type only, to refuse it on another.
    let mut typed_key: Option<(&str, String)> = None;

    for field in csv_fields(spec).map_err(fail)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let needs_value = || {
            value.ok_or_else(|| {
                fail(format!(
                    "{key:?} needs a value: write it as a key=value pair, as in {key}=..."
                ))
            })
        };
        match key.as_str() {
            "type" => kind = needs_value()?.to_string(),
            "source" | "src" => source = Some(needs_value()?.to_string()),
            "target" | "destination" | "dst" => target = Some(needs_value()?.to_string()),
            "readonly" | "ro" => readonly = parse_bool(&key, value).map_err(fail)?,
            "volume-nocopy" => {
                nocopy = Some(parse_bool(&key, value).map_err(fail)?);
                typed_key.get_or_insert(("volume", key.clone()));
            }
            "tmpfs-size" => {
                let v = needs_value()?;
                size = Some(size_bytes(v).ok_or_else(|| fail(bad_size(&key, v)))?);
                typed_key.get_or_insert(("tmpfs", key.clone()));
            }
            "tmpfs-mode" => {
                let v = needs_value()?;
                mode = Some(octal_mode(v).ok_or_else(|| fail(bad_mode(&key, v)))?);
                typed_key.get_or_insert(("tmpfs", key.clone()));
            }
            "bind-propagation" => {
                match needs_value()? {
                    "private" | "rprivate" => {}
                    p @ ("shared" | "rshared" | "slave" | "rslave") => {
                        return Err(fail(propagation_refused(p)));
                    }
                    p => {
                        return Err(fail(format!(
                            "unknown bind-propagation {p:?}: berth has only rprivate"
                        )));
                    }
                }
                typed_key.get_or_insert(("bind", key.clone()));
            }
            // Docker Desktop's file-sharing hint: nothing to do on Linux.
            "consistency" => {}
            "volume-driver" => match needs_value()? {
                "local" => {}
                d => {
                    return Err(fail(format!(
                        "volume driver {d:?} is not available: berth has only the local driver; \
                         drop volume-driver"
                    )));
                }
            },
            "bind-recursive"
            | "bind-nonrecursive"
            | "bind-create-mountpoint"
            | "volume-label"
            | "volume-opt"
            | "volume-subpath"
            | "image-subpath"
            | "tmpfs-options" => {
                return Err(fail(format!(
                    "berth does not support Docker's --mount key {key:?}: drop it"
                )));
            }
            _ => {
                return Err(fail(format!(
                    "unknown key {key:?}: --mount takes type, source (src), target (destination, \
                     dst), readonly (ro), volume-nocopy, tmpfs-size, tmpfs-mode and \
                     bind-propagation"
                )));
            }
        }
    }

    if let Some((only, key)) = &typed_key
        && *only != kind
    {
        return Err(fail(format!(
            "{key} applies only to type={only}, and this mount is type={kind}: drop {key}"
        )));
    }
    let Some(target) = target else {
        return Err(fail(
            "no target: add target=/path/in/container (or dst=...)".into(),
        ));
    };
    let target = check_target(&target).map_err(fail)?;
    let source = match kind.as_str() {
        "bind" => match source.as_deref() {
            None | Some("") => {
                return Err(fail(
                    "a bind mount needs a source: add source=/absolute/host/path".into(),
                ));
            }
            Some(path) if path.starts_with('/') => VolumeSource::Bind(clean_absolute(path)),
            Some(path) => return Err(fail(relative_source(path))),
        },
        "volume" => match source.as_deref() {
            None | Some("") => VolumeSource::Named {
                name: anonymous_name(),
                anonymous: true,
            },
            Some(path) if path.starts_with('/') => {
                return Err(fail(format!(
                    "source={path} is a host path, but type=volume takes a volume name: use \
                     type=bind to mount a host directory"
                )));
            }
            Some(name) => {
                if let Some(problem) = name_problem(name) {
                    return Err(fail(problem));
                }
                VolumeSource::Named {
                    name: name.to_string(),
                    anonymous: false,
                }
            }
        },
        "tmpfs" => {
            if let Some(s) = &source {
                return Err(fail(format!(
                    "a tmpfs mount has no source (it starts empty, in memory): drop source={s}"
                )));
            }
            VolumeSource::Tmpfs {
                size,
                mode,
                options: Vec::new(),
            }
        }
        "image" | "npipe" | "cluster" => {
            return Err(fail(format!(
                "berth does not support type={kind}: use bind, volume or tmpfs"
            )));
        }
        other => {
            return Err(fail(format!(
                "unknown type {other:?}: use type=bind, type=volume or type=tmpfs"
            )));
        }
    };
    Ok(VolumeMount {
        source,
        target,
        readonly,
        nocopy: nocopy.unwrap_or(false),
    })
}
// ANCHOR_END: parse_mount

// ANCHOR: parse_tmpfs
/// Parses `--tmpfs /path[:options]`: a memory-backed filesystem at `/path`.
/// Options are tmpfs mount options: `size=64m` (bytes, or k, m, g), `mode=1777`
/// (octal), `uid=N`, `gid=N`, `ro`/`rw`, and `exec`, `suid`, `dev` or their
/// `no` forms, which override the defaults `noexec,nosuid,nodev`.
pub fn parse_tmpfs(spec: &str) -> Result<VolumeMount> {
    // BEGIN SOLUTION 03.7
    let fail = |msg: String| Error::Invalid(format!("invalid --tmpfs {spec:?}: {msg}"));
    let (target, list) = spec.split_once(':').unwrap_or((spec, ""));
    let target = check_target(target).map_err(fail)?;
    let mut size = None;
    let mut mode = None;
    let mut readonly = false;
    let mut options = Vec::new();
    for option in list.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("size", v)) => {
                size = Some(size_bytes(v).ok_or_else(|| fail(bad_size("size", v)))?)
            }
            Some(("mode", v)) => {
                mode = Some(octal_mode(v).ok_or_else(|| fail(bad_mode("mode", v)))?)
            }
            Some((key @ ("uid" | "gid"), v)) => {
                if v.parse::<u32>().is_err() {
                    return Err(fail(format!(
                        "{key}={v:?} is not a numeric id: give a number, as in {key}=1000"
                    )));
                }
                options.push(option.to_string());
            }
            None if option == "ro" || option == "rw" => readonly = option == "ro",
            None if matches!(
                option,
                "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev"
            ) =>
            {
                options.push(option.to_string());
            }
            _ => {
                return Err(fail(format!(
                    "unknown tmpfs option {option:?}: --tmpfs takes size=64m, mode=1777, uid=N, \
                     gid=N, ro, rw, exec, noexec, suid, nosuid, dev and nodev, separated by commas"
                )));
            }
        }
    }
    Ok(VolumeMount {
        source: VolumeSource::Tmpfs {
            size,
            mode,
            options,
        },
        target,
        readonly,
        nocopy: false,
    })
    // END SOLUTION
}
// ANCHOR_END: parse_tmpfs

/// Refuses two mounts on the same target: the second would hide the first,
/// which is never what was meant. Docker says "Duplicate mount point".
pub fn check_targets(mounts: &[VolumeMount]) -> Result<()> {
    let mut seen = HashSet::new();
    for m in mounts {
        if !seen.insert(&m.target) {
            return Err(Error::Invalid(format!(
                "duplicate mount point {}: two of the -v, --mount and --tmpfs flags mount on it, \
                 and the second would hide the first; keep one",
                m.target.display()
            )));
        }
    }
    Ok(())
}

/// Checks that a bind mount's host path exists. `-v` has always created a
/// missing host path, as a directory, so pass `create_missing = true` for
/// it (a mistyped path then silently mounts an empty directory); `--mount`
/// refuses, so pass `false`.
pub fn check_bind_source(path: &Path, create_missing: bool) -> Result<()> {
    match fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound && create_missing => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(|e| Error::io("create bind mount source", path, e)),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::Invalid(format!(
            "bind source path does not exist: {}: create it first (or use -v, which creates a \
             missing directory)",
            path.display()
        ))),
        Err(e) => Err(Error::io("bind mount source", path, e)),
    }
}

/// The content directory of volume `name` under `volumes_dir`.
fn data_dir(volumes_dir: &Path, name: &str) -> PathBuf {
    volumes_dir.join(name).join("_data")
}

// ANCHOR: to_mount_spec
/// What lab 01 mounts for `m`. Binds and named volumes are both recursive
/// bind mounts (`rbind`, so mounts below the source come along), private
/// (`rprivate`), and `ro` when read-only; a named volume's source is its
/// `_data` directory under `volumes_dir` (see [`VolumeStore::dir`]). A
/// tmpfs gets `noexec,nosuid,nodev` unless overridden, then `ro`, `size=`
/// in bytes, `mode=` in octal, and the rest of its options.
pub fn to_mount_spec(m: &VolumeMount, volumes_dir: &Path) -> MountSpec {
    // BEGIN SOLUTION 03.7
    let bind = |source: PathBuf| {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if m.readonly {
            options.push("ro".into());
        }
        MountSpec {
            destination: m.target.clone(),
            kind: "bind".into(),
            source,
            options,
        }
    };
    match &m.source {
        VolumeSource::Bind(path) => bind(path.clone()),
        VolumeSource::Named { name, .. } => bind(data_dir(volumes_dir, name)),
        VolumeSource::Tmpfs {
            size,
            mode,
            options,
        } => {
            // Each default is on until the user's options turn it off.
            let mut defaults = TMPFS_DEFAULTS.map(|d| (d, true));
            let mut rest = Vec::new();
            for o in options {
                let (flag, on) = match o.as_str() {
                    "noexec" | "nosuid" | "nodev" => (o.as_str(), true),
                    "exec" => ("noexec", false),
                    "suid" => ("nosuid", false),
                    "dev" => ("nodev", false),
                    _ => {
                        rest.push(o.clone());
                        continue;
                    }
                };
                for (default, state) in defaults.iter_mut() {
                    if *default == flag {
                        *state = on;
                    }
                }
            }
            let mut out: Vec<String> = defaults
                .iter()
                .filter(|(_, on)| *on)
                .map(|(d, _)| d.to_string())
                .collect();
            if m.readonly {
                out.push("ro".into());
            }
            if let Some(size) = size {
                out.push(format!("size={size}"));
            }
            if let Some(mode) = mode {
                out.push(format!("mode={mode:o}"));
            }
            out.extend(rest);
            MountSpec {
                destination: m.target.clone(),
                kind: "tmpfs".into(),
                source: "tmpfs".into(),
                options: out,
            }
        }
    }
    // END SOLUTION
}
// ANCHOR_END: to_mount_spec

/// A named volume, as `berth volume inspect` shows it: the field names are
/// Docker's (`Name`, `Mountpoint`, `CreatedAt` …), in Docker's order, and
/// the same JSON is kept in the volume's `volume.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    /// When it was created, RFC 3339 in UTC with seconds:
    /// `2026-11-23T13:00:00Z`.
    pub created_at: String,
    /// Always `local`: a directory on this machine.
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    /// The directory that is mounted: `<root>/volumes/NAME/_data`.
    pub mountpoint: PathBuf,
    pub name: String,
    /// Driver options; the local driver as berth has it takes none.
    pub options: BTreeMap<String, String>,
    /// Always `local`: visible on this machine only.
    pub scope: String,
    /// Made for a `-v /path` without a name. Not stored as a field but as
    /// the label [`ANONYMOUS_LABEL`], as Docker does.
    #[serde(skip)]
    pub anonymous: bool,
}

impl Volume {
    /// The JSON `berth volume inspect` prints for this volume (one element
    /// of its array).
    pub fn to_docker_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a volume is plain strings and maps")
    }
}

/// Formats seconds since the epoch as RFC 3339 in UTC, with Howard
/// Hinnant's `civil_from_days` to get the calendar date.
fn rfc3339_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn no_such_volume(op: &str, name: &str) -> Error {
    Error::Invalid(format!(
        "{op} {name}: no such volume: `berth volume ls` lists the volumes, and \
         `berth volume create {name}` makes this one"
    ))
}

/// The named volumes, one directory each under `<root>/volumes`:
/// `NAME/_data` holds the content, `NAME/volume.json` the metadata.
/// Directories whose name starts with `.` are work in progress (volume
/// names cannot start with a dot).
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
}

impl VolumeStore {
    /// Opens (creating if needed) the store under `root`. The volumes
    /// directory is mode 0701, as Docker's: containers' users may reach a
    /// `_data` directory they know the path of, but not list the volumes.
    pub fn open(root: &Path) -> Result<VolumeStore> {
        let dir = root.join("volumes");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o701)
            .create(&dir)
            .map_err(|e| Error::io("create volumes directory", &dir, e))?;
        Ok(VolumeStore { dir })
    }

    /// `<root>/volumes`, what [`to_mount_spec`] needs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory that is mounted for volume `name`.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        data_dir(&self.dir, name)
    }

    // ANCHOR: create
    /// Creates a volume, or returns the existing one of that name unchanged
    /// (as `docker volume create` does, so `-v data:/x` can always call it).
    /// Without a name it makes an anonymous volume with a random name.
    ///
    /// The volume is built in a `.creating-NAME-…` directory and renamed
    /// into place, so nobody ever sees half a volume; `rename(2)` refuses to
    /// replace a non-empty directory, so when two processes race for one
    /// name, one rename wins and the other finds the winner's volume.
    pub fn create(
        &self,
        name: Option<&str>,
        mut labels: BTreeMap<String, String>,
    ) -> Result<Volume> {
        let anonymous = name.is_none();
        let name = match name {
            Some(name) => {
                check_volume_name(name)?;
                name.to_string()
            }
            None => anonymous_name(),
        };
        let path = self.dir.join(&name);
        if path.exists() {
            return self.get(&name);
        }
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.into(), String::new());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let volume = Volume {
            created_at: rfc3339_utc(now),
            driver: "local".into(),
            labels,
            mountpoint: self.mountpoint(&name),
            name: name.clone(),
            options: BTreeMap::new(),
            scope: "local".into(),
            anonymous,
        };

        let tmp = self
            .dir
            .join(format!(".creating-{name}-{}", &anonymous_name()[..12]));
        let built = (|| {
            let mut builder = fs::DirBuilder::new();
            builder.mode(0o755);
            builder
                .create(&tmp)
                .map_err(|e| Error::io("create", &tmp, e))?;
            let data = tmp.join("_data");
            builder
                .create(&data)
                .map_err(|e| Error::io("create", &data, e))?;
            let json = serde_json::to_vec_pretty(&volume).expect("a volume serializes");
            let meta = tmp.join("volume.json");
            fs::write(&meta, json).map_err(|e| Error::io("write", &meta, e))
        })();
        let renamed = built.and_then(|()| match fs::rename(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => Ok(false),
            Err(e) => Err(Error::io("rename into place", &path, e)),
        });
        if !matches!(renamed, Ok(true)) {
            let _ = fs::remove_dir_all(&tmp);
        }
        if renamed? {
            Ok(volume)
        } else {
            // Another process created it between our check and our rename.
            self.get(&name)
        }
    }
    // ANCHOR_END: create

    /// Reads volume `name`'s metadata.
    pub fn get(&self, name: &str) -> Result<Volume> {
        check_volume_name(name)?;
        let path = self.dir.join(name).join("volume.json");
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(no_such_volume("get", name)),
            Err(e) => return Err(Error::io("read", &path, e)),
        };
        let mut volume: Volume = serde_json::from_slice(&text).map_err(|e| {
            Error::Invalid(format!(
                "{}: damaged volume metadata ({e}): remove the volume's directory {} to drop it",
                path.display(),
                self.dir.join(name).display()
            ))
        })?;
        // The store may have moved since; the layout says where it is now.
        volume.mountpoint = self.mountpoint(name);
        volume.anonymous = volume.labels.contains_key(ANONYMOUS_LABEL);
        Ok(volume)
    }

    /// All volumes, sorted by name. A directory with damaged metadata is
    /// skipped with a warning, so one bad volume does not hide the others.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io("read", &self.dir, e))?;
        let mut volumes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match self.get(&name) {
                Ok(v) => volumes.push(v),
                Err(e) => tracing::warn!("skipping volume {name}: {e}"),
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    // ANCHOR: remove
    /// Removes volume `name` and its content, unless a container uses it:
    /// `in_use_by` lists those containers' IDs, and then the error is
    /// Docker's `remove NAME: volume is in use - [ID, …]`. The directory is
    /// first renamed out of the way, so the name is free at once and a
    /// half-deleted volume is never visible.
    pub fn remove(&self, name: &str, in_use_by: &[String]) -> Result<()> {
        check_volume_name(name)?;
        if !self.dir.join(name).join("volume.json").exists() {
            return Err(no_such_volume("remove", name));
        }
        if !in_use_by.is_empty() {
            return Err(Error::Invalid(format!(
                "remove {name}: volume is in use - [{}]; remove those containers first \
                 (berth rm)",
                in_use_by.join(", ")
            )));
        }
        let path = self.dir.join(name);
        let doomed = self
            .dir
            .join(format!(".removing-{name}-{}", &anonymous_name()[..12]));
        match fs::rename(&path, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(no_such_volume("remove", name));
            }
            Err(e) => return Err(Error::io("rename for removal", &path, e)),
        }
        fs::remove_dir_all(&doomed).map_err(|e| Error::io("remove", &doomed, e))
    }
    // ANCHOR_END: remove

    /// Removes the volumes no container uses (`in_use` holds the names in
    /// use): only anonymous ones, as Docker does since 23.0, or all unused
    /// ones with `all`. Returns the removed names and the bytes freed.
    pub fn prune(&self, in_use: &BTreeSet<String>, all: bool) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut reclaimed = 0;
        for volume in self.list()? {
            if in_use.contains(&volume.name) || !(all || volume.anonymous) {
                continue;
            }
            let bytes = self.size(&volume.name)?;
            self.remove(&volume.name, &[])?;
            reclaimed += bytes;
            removed.push(volume.name);
        }
        Ok((removed, reclaimed))
    }

    /// The volume's size for `berth system df`, counted as Docker does:
    /// the apparent sizes of everything but directories, each hard-linked
    /// file once.
    pub fn size(&self, name: &str) -> Result<u64> {
        self.get(name)?;
        let mut seen = HashSet::new();
        tree_size(&self.mountpoint(name), &mut seen)
    }
}

/// Bytes a directory tree uses as `system df` counts them: apparent sizes
/// of everything but directories, each hard-linked file once.
pub fn disk_usage(dir: &Path) -> Result<u64> {
    tree_size(dir, &mut HashSet::new())
}

fn tree_size(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))? {
        let path = entry.map_err(|e| Error::io("read", dir, e))?.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        if meta.is_dir() {
            total += tree_size(&path, seen)?;
        } else if seen.insert((meta.dev(), meta.ino())) {
            total += meta.len();
        }
    }
    Ok(total)
}

// ANCHOR: fill_from_image
/// Copies what the image holds at a mount target into a new, empty named
/// volume, as Docker does the first time it mounts one, so that a volume
/// over an image's `/var/lib/mysql` starts with its initial files. The
/// image is its unpacked layers, top-most first: lab 03's `Stack` finds
/// the directories that show through at the target (whiteouts and opaque
/// directories applied) and the copying driver (`vfs::populate`) merges
/// them, keeping modes, owners, times, links and hard links. The volume's
/// root takes the owner, mode and times of the image's directory.
///
/// Nothing happens when the volume already has content, or the image has
/// no directory with content there. Returns whether anything was copied.
/// The caller skips this for `nocopy` mounts.
pub fn fill_from_image(
    volume_data: &Path,
    layers_top_first: &[PathBuf],
    target: &Path,
    xattr: crate::whiteout::Xattr,
) -> Result<bool> {
    let mut entries =
        fs::read_dir(volume_data).map_err(|e| Error::io("read volume", volume_data, e))?;
    if entries.next().is_some() {
        return Ok(false);
    }
    let rel = target.strip_prefix("/").unwrap_or(target);
    let dirs = crate::diff::Stack::new(layers_top_first, xattr).dirs_at(rel)?;
    let has_content = |d: &PathBuf| fs::read_dir(d).is_ok_and(|mut e| e.next().is_some());
    let Some(top) = dirs.first().filter(|_| dirs.iter().any(has_content)) else {
        return Ok(false);
    };
    crate::vfs::populate(&dirs, xattr, volume_data, &crate::vfs::same_ids)?;
    let meta = fs::symlink_metadata(top).map_err(|e| Error::io("stat", top, e))?;
    copy_attributes(&meta, volume_data)?;
    Ok(true)
}
// ANCHOR_END: fill_from_image

/// Gives `to` the owner, permission bits and times of `meta`, in that
/// order: changing the owner clears setuid and setgid bits, and both
/// changes would update the times.
fn copy_attributes(meta: &fs::Metadata, to: &Path) -> Result<()> {
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| Error::io("chown", to, e))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| Error::io("chmod", to, e))?;
    }
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &TimeSpec::new(meta.atime(), meta.atime_nsec()),
        &TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::sys(format!("set times of {}", to.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whiteout::Xattr;

    fn bind(source: &str, target: &str, readonly: bool) -> VolumeMount {
        VolumeMount {
            source: VolumeSource::Bind(source.into()),
            target: target.into(),
            readonly,
            nocopy: false,
        }
    }

    fn named(name: &str, target: &str, readonly: bool, nocopy: bool) -> VolumeMount {
        VolumeMount {
            source: VolumeSource::Named {
                name: name.into(),
                anonymous: false,
            },
            target: target.into(),
            readonly,
            nocopy,
        }
    }

    fn is_anonymous(m: &VolumeMount) -> bool {
        matches!(&m.source, VolumeSource::Named { name, anonymous: true }
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// "input\n  → error" for each input, for the snapshots.
    fn errors(parse: fn(&str) -> Result<VolumeMount>, inputs: &[&str]) -> String {
        inputs
            .iter()
            .map(|input| match parse(input) {
                Ok(m) => panic!("{input:?} should be refused, got {m:?}"),
                Err(e) => format!("{input}\n  → {e}\n"),
            })
            .collect()
    }

    #[test]
    fn volume_binds_and_named_volumes() {
        let cases = [
            (
                "/srv/site:/usr/share/nginx/html",
                bind("/srv/site", "/usr/share/nginx/html", false),
            ),
            ("/srv/site:/html:ro", bind("/srv/site", "/html", true)),
            ("/srv/site:/html:rw", bind("/srv/site", "/html", false)),
            ("/srv//site/:/html/:ro,z", bind("/srv/site", "/html", true)),
            (
                "/etc/hosts:/etc/hosts:Z,rprivate",
                bind("/etc/hosts", "/etc/hosts", false),
            ),
            ("/a/../b:/x/./y", bind("/b", "/x/y", false)),
            ("/:/host:ro", bind("/", "/host", true)),
            (
                "pgdata:/var/lib/postgresql/data",
                named("pgdata", "/var/lib/postgresql/data", false, false),
            ),
            (
                "my_vol-1.x:/data:ro,nocopy",
                named("my_vol-1.x", "/data", true, true),
            ),
            ("0a:/data:cached", named("0a", "/data", false, false)),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_volume(spec).unwrap(), want, "{spec}");
        }
    }

    #[test]
    fn volume_anonymous_forms() {
        let m = parse_volume("/data").unwrap();
        assert!(is_anonymous(&m), "{m:?}");
        assert_eq!(m.target, Path::new("/data"));
        assert!(!m.readonly);

        // Docker reads a second part made of options as options.
        let m = parse_volume("/data:ro,nocopy").unwrap();
        assert!(is_anonymous(&m), "{m:?}");
        assert!(m.readonly && m.nocopy);

        // Two anonymous volumes never share a name.
        assert_ne!(
            parse_volume("/a").unwrap().source,
            parse_volume("/a").unwrap().source
        );
    }

    #[test]
    fn volume_relative_sources_suggest_absolute_paths() {
        for (spec, suggestion) in [
            ("./data:/x", "\"$(pwd)/data\""),
            ("data/x:/y", "\"$(pwd)/data/x\""),
            ("../up:/y", "\"$(pwd)/../up\""),
            (".:/src", "\"$(pwd)\""),
            ("~/notes:/notes", "\"$HOME/notes\""),
        ] {
            let e = parse_volume(spec).unwrap_err().to_string();
            assert!(e.contains("must be an absolute path"), "{e}");
            assert!(e.contains(suggestion), "{spec}: {e}");
        }
    }

    #[test]
    fn volume_errors() {
        insta::assert_snapshot!(
            "volume_errors",
            errors(
                parse_volume,
                &[
                    "./data:/x",
                    "data/x:/y",
                    "~/notes:/notes",
                    "my vol:/data",
                    "a:/data",
                    "_hidden:/data",
                    "data",
                    "/srv:data",
                    "/srv:./data:ro",
                    "/srv:/",
                    "data:/..",
                    "/srv:",
                    ":/data",
                    "/srv:/data:ro,rw",
                    "/srv:/data:rshared",
                    "/srv:/data:slave",
                    "/srv:/data:exec",
                    "/srv:/data:nocopy",
                    "/a:/b:/c:ro",
                ],
            )
        );
    }

    #[test]
    fn mount_parses_docker_keys() {
        let cases = [
            (
                "type=bind,source=/srv/site,target=/html",
                bind("/srv/site", "/html", false),
            ),
            (
                "type=bind,src=/srv/site,dst=/html,readonly",
                bind("/srv/site", "/html", true),
            ),
            (
                "type=bind,src=/srv,destination=/html,ro=true",
                bind("/srv", "/html", true),
            ),
            (
                "type=bind,src=/srv,target=/html,readonly=false",
                bind("/srv", "/html", false),
            ),
            (
                "type=bind,src=/srv,target=/h,bind-propagation=rprivate,consistency=cached",
                bind("/srv", "/h", false),
            ),
            (
                "\"type=bind\",\"src=/a,b\",dst=/x",
                bind("/a,b", "/x", false),
            ),
            (
                "source=pgdata,target=/var/lib/pg",
                named("pgdata", "/var/lib/pg", false, false),
            ),
            (
                "type=volume,src=data,dst=/data,volume-nocopy,ro=1",
                named("data", "/data", true, true),
            ),
            (
                "Type=Volume,Source=data,Target=/data,volume-driver=local",
                named("data", "/data", false, false),
            ),
        ];
        for (spec, want) in &cases[..8] {
            assert_eq!(&parse_mount(spec).unwrap(), want, "{spec}");
        }
        // Keys are case-insensitive, values are not.
        assert!(parse_mount(cases[8].0).is_err());
        assert_eq!(
            parse_mount("type=volume,Source=data,TARGET=/data,volume-driver=local").unwrap(),
            cases[8].1
        );

        let anon = parse_mount("type=volume,target=/cache").unwrap();
        assert!(is_anonymous(&anon), "{anon:?}");

        let tmpfs =
            parse_mount("type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1770,readonly").unwrap();
        assert_eq!(
            tmpfs,
            VolumeMount {
                source: VolumeSource::Tmpfs {
                    size: Some(64 << 20),
                    mode: Some(0o1770),
                    options: vec![],
                },
                target: "/run".into(),
                readonly: true,
                nocopy: false,
            }
        );
    }

    #[test]
    fn mount_errors() {
        insta::assert_snapshot!(
            "mount_errors",
            errors(
                parse_mount,
                &[
                    "type=bind,source=/srv",
                    "type=bind,target=/x",
                    "type=bind,source=./data,target=/x",
                    "type=bind,source=/srv,target=data",
                    "type=bind,source=/srv,target=/",
                    "type=volume,source=/srv,target=/x",
                    "type=volume,source=my vol,target=/x",
                    "type=tmpfs,source=x,target=/run",
                    "type=nfs,target=/x",
                    "type=image,source=alpine,target=/x",
                    "type=bind,source=/srv,target=/x,volume-nocopy",
                    "type=volume,target=/x,tmpfs-size=1m",
                    "type=tmpfs,target=/x,bind-propagation=rprivate",
                    "type=tmpfs,target=/x,tmpfs-size=lots",
                    "type=tmpfs,target=/x,tmpfs-mode=rwx",
                    "type=bind,source=/srv,target=/x,bind-propagation=rshared",
                    "type=bind,source=/srv,target=/x,readonly=maybe",
                    "type=bind,source=/srv,target=/x,colour=blue",
                    "type=volume,target=/x,volume-opt=o=bind",
                    "type=volume,target=/x,volume-driver=nfs",
                    "type=bind,source,target=/x",
                    "type=bind,\"source=/srv,target=/x",
                ],
            )
        );
    }

    #[test]
    fn tmpfs_options() {
        let m = parse_tmpfs("/run").unwrap();
        assert_eq!(
            m,
            VolumeMount {
                source: VolumeSource::Tmpfs {
                    size: None,
                    mode: None,
                    options: vec![],
                },
                target: "/run".into(),
                readonly: false,
                nocopy: false,
            }
        );
        let m = parse_tmpfs("/tmp/:rw,size=64m,mode=1777,exec,uid=1000,ro").unwrap();
        assert_eq!(m.target, Path::new("/tmp"));
        assert!(m.readonly);
        assert_eq!(
            m.source,
            VolumeSource::Tmpfs {
                size: Some(64 << 20),
                mode: Some(0o1777),
                options: vec!["exec".into(), "uid=1000".into()],
            }
        );
    }

    #[test]
    fn tmpfs_sizes() {
        for (text, bytes) in [
            ("1048576", 1 << 20),
            ("512k", 512 << 10),
            ("64m", 64 << 20),
            ("64M", 64 << 20),
            ("64mb", 64 << 20),
            ("64MiB", 64 << 20),
            ("2g", 2 << 30),
            ("1.5g", 3 << 29),
            ("0", 0),
        ] {
            let m = parse_tmpfs(&format!("/t:size={text}")).unwrap();
            assert!(
                matches!(m.source, VolumeSource::Tmpfs { size: Some(s), .. } if s == bytes),
                "{text}: {m:?}"
            );
        }
        for bad in ["lots", "", "64q", "-1", "1.2.3m", "99999999999999999999"] {
            assert!(parse_tmpfs(&format!("/t:size={bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn tmpfs_errors() {
        insta::assert_snapshot!(
            "tmpfs_errors",
            errors(
                parse_tmpfs,
                &[
                    "run",
                    "/",
                    ":size=1m",
                    "/run:size=lots",
                    "/run:mode=999",
                    "/run:mode=17777",
                    "/run:uid=bob",
                    "/run:noatime",
                    "/run:rshared",
                ],
            )
        );
    }

    #[test]
    fn mount_specs_for_lab_01() {
        let volumes = Path::new("/var/lib/berth/volumes");
        let specs: Vec<MountSpec> = [
            parse_volume("/srv/site:/html:ro").unwrap(),
            parse_volume("/etc/hosts:/etc/hosts").unwrap(),
            parse_volume("pgdata:/var/lib/pg").unwrap(),
            parse_mount("type=volume,src=cache,dst=/cache,readonly").unwrap(),
            parse_tmpfs("/run").unwrap(),
            parse_tmpfs("/tmp:size=64m,mode=1777,exec,nosuid,uid=1000").unwrap(),
            parse_tmpfs("/scratch:ro,dev,suid,noexec").unwrap(),
            parse_mount("type=tmpfs,dst=/t,tmpfs-size=512k,tmpfs-mode=700").unwrap(),
        ]
        .iter()
        .map(|m| to_mount_spec(m, volumes))
        .collect();
        insta::assert_debug_snapshot!("mount_specs", specs);
    }

    #[test]
    fn anonymous_volume_mounts_its_data_dir() {
        let m = parse_volume("/data").unwrap();
        let name = m.volume_name().unwrap().to_string();
        let spec = to_mount_spec(&m, Path::new("/v"));
        assert_eq!(spec.source, Path::new("/v").join(&name).join("_data"));
        assert_eq!(spec.options, ["rbind", "rprivate"]);
        assert_eq!(parse_tmpfs("/t").unwrap().volume_name(), None);
    }

    #[test]
    fn duplicate_targets_are_refused() {
        let ok = [
            parse_volume("/a:/data").unwrap(),
            parse_tmpfs("/run").unwrap(),
        ];
        check_targets(&ok).unwrap();
        let dup = [
            parse_volume("/a:/data").unwrap(),
            parse_mount("type=volume,src=vv,dst=/data/").unwrap(),
        ];
        insta::assert_snapshot!(
            "duplicate_targets",
            check_targets(&dup).unwrap_err().to_string()
        );
    }

    #[test]
    fn bind_source_created_by_volume_flag_only() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b");
        let e = check_bind_source(&missing, false).unwrap_err().to_string();
        assert!(e.contains("bind source path does not exist"), "{e}");
        assert!(e.contains("create it first"), "{e}");
        assert!(!missing.exists());
        check_bind_source(&missing, true).unwrap();
        assert!(missing.is_dir());
        check_bind_source(&missing, false).unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        check_bind_source(&file, false).unwrap();
    }

    #[test]
    fn volume_names() {
        for good in ["ab", "a1", "0-x", "my_vol.v2-b", &anonymous_name()] {
            assert!(is_valid_volume_name(good), "{good}");
        }
        for bad in ["", "a", "-ab", ".ab", "_ab", "a/b", "..", "a b", "é1"] {
            assert!(!is_valid_volume_name(bad), "{bad}");
        }
        assert_eq!(anonymous_name().len(), 64);
    }

    #[test]
    fn created_at_is_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_438_800), "2026-11-23T13:00:00Z");
        assert_eq!(rfc3339_utc(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn inspect_json_uses_docker_names() {
        let volume = Volume {
            created_at: "2026-11-23T13:00:00Z".into(),
            driver: "local".into(),
            labels: BTreeMap::from([("app".to_string(), "db".to_string())]),
            mountpoint: "/var/lib/berth/volumes/pgdata/_data".into(),
            name: "pgdata".into(),
            options: BTreeMap::new(),
            scope: "local".into(),
            anonymous: false,
        };
        insta::assert_snapshot!(
            "inspect_json",
            serde_json::to_string_pretty(&volume.to_docker_json()).unwrap()
        );
    }

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn store_create_get_list() {
        let (dir, store) = store();
        assert_eq!(store.dir(), dir.path().join("volumes"));
        assert!(store.list().unwrap().is_empty());

        let labels = BTreeMap::from([("app".to_string(), "db".to_string())]);
        let v = store.create(Some("pgdata"), labels.clone()).unwrap();
        assert_eq!(v.name, "pgdata");
        assert_eq!(v.driver, "local");
        assert_eq!(v.scope, "local");
        assert_eq!(v.labels, labels);
        assert!(!v.anonymous);
        assert_eq!(v.mountpoint, dir.path().join("volumes/pgdata/_data"));
        assert!(v.mountpoint.is_dir());
        assert!(dir.path().join("volumes/pgdata/volume.json").is_file());
        assert_eq!(v.created_at.len(), "2026-11-23T13:00:00Z".len());
        assert!(v.created_at.ends_with('Z'), "{}", v.created_at);
        assert_eq!(store.get("pgdata").unwrap(), v);

        let anon = store.create(None, BTreeMap::new()).unwrap();
        assert!(anon.anonymous);
        assert_eq!(anon.name.len(), 64);
        assert_eq!(
            anon.labels.get(ANONYMOUS_LABEL).map(String::as_str),
            Some("")
        );
        assert_eq!(store.get(&anon.name).unwrap(), anon);

        let names: Vec<String> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        let mut want = vec![anon.name.clone(), "pgdata".to_string()];
        want.sort();
        assert_eq!(names, want);
        // No work directories left behind.
        let left: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn store_create_existing_returns_it_unchanged() {
        let (_dir, store) = store();
        let first = store.create(Some("data"), BTreeMap::new()).unwrap();
        fs::write(first.mountpoint.join("keep"), "x").unwrap();
        let labels = BTreeMap::from([("new".to_string(), "label".to_string())]);
        let again = store.create(Some("data"), labels).unwrap();
        assert_eq!(again, first);
        assert!(first.mountpoint.join("keep").exists());
    }

    #[test]
    fn store_concurrent_creates_make_one_volume() {
        let (_dir, store) = store();
        let results: Vec<Volume> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| store.create(Some("shared"), BTreeMap::new()).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            results
                .iter()
                .all(|v| v.created_at == results[0].created_at)
        );
        assert_eq!(store.list().unwrap().len(), 1);
        let entries = fs::read_dir(store.dir()).unwrap().count();
        assert_eq!(entries, 1, "work directories left behind");
    }

    #[test]
    fn store_errors() {
        let (_dir, store) = store();
        store.create(Some("data"), BTreeMap::new()).unwrap();
        let messages = [
            store
                .create(Some("../escape"), BTreeMap::new())
                .unwrap_err(),
            store.get("missing").unwrap_err(),
            store.remove("missing", &[]).unwrap_err(),
            store
                .remove("data", &["4f1c2a".to_string(), "9b0e7d".to_string()])
                .unwrap_err(),
        ]
        .map(|e| e.to_string())
        .join("\n");
        insta::assert_snapshot!("store_errors", messages);
    }

    #[test]
    fn store_remove_refused_while_in_use() {
        let (_dir, store) = store();
        let v = store.create(Some("data"), BTreeMap::new()).unwrap();
        fs::write(v.mountpoint.join("f"), "x").unwrap();
        let e = store.remove("data", &["c0ffee".to_string()]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("remove data: volume is in use - [c0ffee]"),
            "{e}"
        );
        assert!(v.mountpoint.join("f").exists());
        store.remove("data", &[]).unwrap();
        assert!(store.get("data").is_err());
        assert_eq!(fs::read_dir(store.dir()).unwrap().count(), 0);
        // The name is free again.
        store.create(Some("data"), BTreeMap::new()).unwrap();
    }

    #[test]
    fn store_prune() {
        let (_dir, store) = store();
        let named_unused = store.create(Some("unused"), BTreeMap::new()).unwrap();
        store.create(Some("used"), BTreeMap::new()).unwrap();
        let anon_unused = store.create(None, BTreeMap::new()).unwrap();
        let anon_used = store.create(None, BTreeMap::new()).unwrap();
        fs::write(anon_unused.mountpoint.join("f"), vec![0u8; 1000]).unwrap();
        fs::write(named_unused.mountpoint.join("g"), vec![0u8; 10]).unwrap();
        let in_use = BTreeSet::from(["used".to_string(), anon_used.name.clone()]);

        // By default only anonymous volumes go.
        let (removed, bytes) = store.prune(&in_use, false).unwrap();
        assert_eq!(removed, [anon_unused.name.as_str()]);
        assert_eq!(bytes, 1000);

        let (removed, bytes) = store.prune(&in_use, true).unwrap();
        assert_eq!(removed, ["unused"]);
        assert_eq!(bytes, 10);

        let mut left: Vec<String> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        left.sort();
        let mut want = vec![anon_used.name, "used".to_string()];
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn store_size_counts_hard_links_once() {
        let (_dir, store) = store();
        let v = store.create(Some("data"), BTreeMap::new()).unwrap();
        assert_eq!(store.size("data").unwrap(), 0);
        let d = &v.mountpoint;
        fs::create_dir_all(d.join("sub/deeper")).unwrap();
        fs::write(d.join("a"), vec![1u8; 100]).unwrap();
        fs::write(d.join("sub/deeper/b"), vec![1u8; 50]).unwrap();
        fs::hard_link(d.join("a"), d.join("sub/a-again")).unwrap();
        std::os::unix::fs::symlink("abc", d.join("link")).unwrap();
        assert_eq!(store.size("data").unwrap(), 100 + 50 + 3);
        assert!(store.size("missing").is_err());
    }

    #[test]
    fn fill_from_image_copies_once() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image/var/lib/db");
        fs::create_dir_all(image.join("conf.d")).unwrap();
        fs::write(image.join("conf.d/main.cnf"), "port=5432\n").unwrap();
        fs::set_permissions(
            image.join("conf.d/main.cnf"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        fs::set_permissions(image.join("conf.d"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(image.join("tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(image.join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(image.join("tool"), image.join("tool-alias")).unwrap();
        std::os::unix::fs::symlink("conf.d/main.cnf", image.join("my.cnf")).unwrap();
        fs::set_permissions(&image, fs::Permissions::from_mode(0o770)).unwrap();
        let old = TimeSpec::new(1_000_000_000, 0);
        for p in ["conf.d/main.cnf", "my.cnf", "conf.d", ""] {
            nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &image.join(p),
                &old,
                &old,
                UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }
        let root = testkit::is_root();
        if root {
            std::os::unix::fs::lchown(image.join("conf.d/main.cnf"), Some(999), Some(998)).unwrap();
            std::os::unix::fs::lchown(&image, Some(999), Some(998)).unwrap();
            // chown clears setuid; set it again.
            fs::set_permissions(image.join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        }

        // One layer, the directory `image`, holding /var/lib/db.
        let layers = vec![dir.path().join("image")];
        let target = Path::new("/var/lib/db");
        let volume = dir.path().join("volume");
        fs::create_dir(&volume).unwrap();
        assert!(fill_from_image(&volume, &layers, target, Xattr::Trusted).unwrap());

        let meta = |p: &str| fs::symlink_metadata(volume.join(p)).unwrap();
        assert_eq!(
            fs::read_to_string(volume.join("conf.d/main.cnf")).unwrap(),
            "port=5432\n"
        );
        assert_eq!(meta("conf.d/main.cnf").mode() & 0o7777, 0o640);
        assert_eq!(meta("conf.d").mode() & 0o7777, 0o750);
        assert_eq!(meta("tool").mode() & 0o7777, 0o4755);
        assert_eq!(meta("").mode() & 0o7777, 0o770);
        assert_eq!(meta("tool").ino(), meta("tool-alias").ino());
        assert!(meta("my.cnf").file_type().is_symlink());
        assert_eq!(
            fs::read_link(volume.join("my.cnf")).unwrap(),
            Path::new("conf.d/main.cnf")
        );
        for p in ["conf.d/main.cnf", "my.cnf", "conf.d", ""] {
            assert_eq!(meta(p).mtime(), 1_000_000_000, "{p}");
        }
        if root {
            assert_eq!(
                (meta("conf.d/main.cnf").uid(), meta("conf.d/main.cnf").gid()),
                (999, 998)
            );
            assert_eq!((meta("").uid(), meta("").gid()), (999, 998));
        }

        // The second time, the volume has content: nothing is copied, and
        // what the container wrote stays.
        fs::write(volume.join("conf.d/main.cnf"), "port=1\n").unwrap();
        fs::write(image.join("new-in-image"), "x").unwrap();
        assert!(!fill_from_image(&volume, &layers, target, Xattr::Trusted).unwrap());
        assert_eq!(
            fs::read_to_string(volume.join("conf.d/main.cnf")).unwrap(),
            "port=1\n"
        );
        assert!(!volume.join("new-in-image").exists());
    }

    #[test]
    fn fill_from_image_without_a_directory_copies_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("volume");
        fs::create_dir(&volume).unwrap();
        let layers = vec![dir.path().to_path_buf()];
        let fill = |volume: &Path, target: &str| {
            fill_from_image(volume, &layers, Path::new(target), Xattr::Trusted)
        };
        assert!(!fill(&volume, "/missing").unwrap());
        fs::write(dir.path().join("file"), "x").unwrap();
        assert!(!fill(&volume, "/file").unwrap());
        fs::create_dir(dir.path().join("empty")).unwrap();
        assert!(!fill(&volume, "/empty").unwrap());
        assert_eq!(fs::read_dir(&volume).unwrap().count(), 0);
        assert!(fill(&dir.path().join("no-volume"), "/empty").is_err());
    }
}
