//! What a container is made of, as plain data, and its translation to and
//! from the OCI runtime specification's `config.json`.
//!
//! The lab works with [`ContainerConfig`], a small struct you can read at a
//! glance. Engines store the same information as an OCI `config.json` so that
//! other tools (runc, crun, youki) could run the very same container;
//! [`ContainerConfig::to_oci`] and [`ContainerConfig::from_oci`] convert.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime as oci;
use serde::{Deserialize, Serialize};

use crate::capabilities;
use crate::error::{Error, Result};
use crate::idmap::IdMap;
use crate::namespace::{Namespace, NsMode};

/// The longest hostname the kernel accepts (`HOST_NAME_MAX`).
pub const HOST_NAME_MAX: usize = 64;

/// The `PATH` a container gets when its image does not set one (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One filesystem to mount inside the container, in the OCI format's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Where it appears inside the container (absolute).
    pub destination: PathBuf,
    /// The filesystem type: `proc`, `tmpfs`, `sysfs`, `devpts`, `mqueue`, `bind` …
    pub kind: String,
    /// What to mount: a host path for binds, a label for virtual filesystems.
    pub source: PathBuf,
    /// fstab-style options: `nosuid`, `ro`, `rbind`, `mode=755` …
    pub options: Vec<String>,
}

impl MountSpec {
    /// A mount of a virtual filesystem (no host path involved).
    pub fn new(destination: &str, kind: &str, options: &[&str]) -> Self {
        MountSpec {
            destination: destination.into(),
            kind: kind.into(),
            source: kind.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A bind mount of a host path.
    pub fn bind(source: impl Into<PathBuf>, destination: &str, read_only: bool) -> Self {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if read_only {
            options.push("ro".into());
        }
        MountSpec {
            destination: destination.into(),
            kind: "bind".into(),
            source: source.into(),
            options,
        }
    }
}

/// The process that runs inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// The command and its arguments; the first is looked up in `$PATH`.
    pub args: Vec<String>,
    /// `NAME=VALUE` pairs.
    pub env: Vec<String>,
    /// The working directory, created if missing (as Docker does).
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Give the process a pseudo-terminal as its stdin, stdout and stderr.
    pub terminal: bool,
    /// The terminal's size (rows, columns) from the start, so the very first
    /// command already sees the user's window size.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// The capabilities the process may have, as names like `CAP_CHOWN`.
    pub capabilities: Vec<String>,
    /// Forbid gaining privileges through setuid binaries or file capabilities.
    pub no_new_privileges: bool,
}

/// Everything needed to start one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The directory that becomes `/` (absolute).
    pub rootfs: PathBuf,
    /// Remount `/` read-only after everything is mounted (`--read-only`).
    pub readonly_rootfs: bool,
    /// The container's hostname (needs a UTS namespace).
    pub hostname: Option<String>,
    pub process: ProcessSpec,
    /// For each kind: new, joined, or (when absent) shared with the host.
    pub namespaces: BTreeMap<Namespace, NsMode>,
    /// Used only with a new user namespace.
    pub uid_mappings: Vec<IdMap>,
    pub gid_mappings: Vec<IdMap>,
    /// Mounted in order, after the root filesystem is in place.
    pub mounts: Vec<MountSpec>,
    /// Run a tiny init as PID 1 that forwards signals and reaps zombies (`--init`).
    pub init: bool,
    /// `cgroup.procs` files the container joins before it creates its
    /// namespaces, so that every process in it is limited from the first
    /// instruction and its cgroup namespace is rooted there (lab 02). Not
    /// part of `config.json`: the engine derives them from
    /// `linux.cgroupsPath` each time it starts the container.
    pub cgroup_procs: Vec<PathBuf>,
    /// A filesystem to mount on `rootfs` first, inside the container's own
    /// mount namespace: the overlay of an image's layers (lab 03). `None`
    /// when `rootfs` is a plain directory. Not part of `config.json`
    /// either: the engine knows the container's layers.
    pub rootfs_mount: Option<crate::fsmount::RootfsMount>,
}

// ANCHOR: default_mounts
/// The filesystems every container gets, as Docker and runc set them up:
/// a fresh `/proc` (it shows the processes of the PID namespace that mounts
/// it), a tmpfs `/dev` to hold a handful of device nodes, a private
/// `/dev/pts` for terminals, `/dev/shm` for POSIX shared memory, `/dev/mqueue`
/// for POSIX message queues and a read-only `/sys`.
pub fn default_mounts() -> Vec<MountSpec> {
    vec![
        MountSpec::new("/proc", "proc", &["nosuid", "noexec", "nodev"]),
        MountSpec::new(
            "/dev",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        MountSpec::new(
            "/dev/pts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        MountSpec::new(
            "/dev/shm",
            "tmpfs",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        MountSpec::new("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        MountSpec::new("/sys", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
    ]
}
// ANCHOR_END: default_mounts

impl ContainerConfig {
    /// A container with every namespace new, the default mounts and
    /// capabilities, running `args` as root in `/`.
    pub fn new(rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        let namespaces = [
            Namespace::Pid,
            Namespace::Mount,
            Namespace::Uts,
            Namespace::Ipc,
            Namespace::Network,
            Namespace::Cgroup,
        ]
        .into_iter()
        .map(|ns| (ns, NsMode::New))
        .collect();
        ContainerConfig {
            rootfs: rootfs.into(),
            readonly_rootfs: false,
            hostname: None,
            process: ProcessSpec {
                args,
                env: vec![format!("PATH={DEFAULT_PATH}")],
                cwd: "/".into(),
                uid: 0,
                gid: 0,
                additional_gids: Vec::new(),
                terminal: false,
                console_size: None,
                capabilities: capabilities::DEFAULT
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                no_new_privileges: false,
            },
            namespaces,
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
            mounts: default_mounts(),
            init: false,
            cgroup_procs: Vec::new(),
            rootfs_mount: None,
        }
    }

    /// True when the container gets a new namespace of this kind.
    pub fn new_namespace(&self, ns: Namespace) -> bool {
        self.namespaces.get(&ns) == Some(&NsMode::New)
    }

    /// Checks what can be checked before any process is created, so that a
    /// mistake is reported with its cause rather than as an errno from deep
    /// inside the child.
    pub fn validate(&self) -> Result<()> {
        if !self.rootfs.is_absolute() {
            return Err(Error::Invalid(format!(
                "the root filesystem path {} must be absolute",
                self.rootfs.display()
            )));
        }
        if self.process.args.is_empty() {
            return Err(Error::Invalid("no command given".into()));
        }
        if let Some(h) = &self.hostname {
            validate_hostname(h)?;
            if !self.new_namespace(Namespace::Uts) {
                return Err(Error::Invalid(
                    "setting a hostname needs a new UTS namespace".into(),
                ));
            }
        }
        if !self.new_namespace(Namespace::Mount) {
            return Err(Error::Invalid(
                "a container needs a new mount namespace for its root filesystem".into(),
            ));
        }
        if self.new_namespace(Namespace::User) && self.uid_mappings.is_empty() {
            return Err(Error::Invalid(
                "a new user namespace needs at least one uid and gid mapping".into(),
            ));
        }
        if !self.process.cwd.is_absolute() {
            return Err(Error::Invalid(format!(
                "the working directory {} must be absolute",
                self.process.cwd.display()
            )));
        }
        for m in &self.mounts {
            if !m.destination.is_absolute() {
                return Err(Error::Invalid(format!(
                    "mount destination {} must be absolute",
                    m.destination.display()
                )));
            }
        }
        for cap in &self.process.capabilities {
            capabilities::parse(cap)?;
        }
        Ok(())
    }
}

/// A hostname is 1 to 64 bytes of letters, digits, `-` and `.`, as the kernel
/// and RFC 1123 allow.
pub fn validate_hostname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > HOST_NAME_MAX {
        return Err(Error::Invalid(format!(
            "hostname {name:?} is {} bytes long; a hostname has 1 to {HOST_NAME_MAX} bytes",
            name.len()
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        || name.starts_with(['-', '.'])
    {
        return Err(Error::Invalid(format!(
            "hostname {name:?} may hold only letters, digits, '-' and '.', and must start with a letter or digit"
        )));
    }
    Ok(())
}

/// The annotation that carries the `--init` choice, which the OCI format has
/// no field for.
pub const INIT_ANNOTATION: &str = "org.berth.init";

fn oci_err(e: oci_spec::OciSpecError) -> Error {
    Error::Invalid(format!("OCI runtime config: {e}"))
}

fn to_oci_maps(maps: &[IdMap]) -> Result<Vec<oci::LinuxIdMapping>> {
    maps.iter()
        .map(|m| {
            oci::LinuxIdMappingBuilder::default()
                .container_id(m.inside)
                .host_id(m.outside)
                .size(m.count)
                .build()
                .map_err(oci_err)
        })
        .collect()
}

fn from_oci_maps(maps: Option<&Vec<oci::LinuxIdMapping>>) -> Vec<IdMap> {
    maps.map(|v| {
        v.iter()
            .map(|m| IdMap::new(m.container_id(), m.host_id(), m.size()))
            .collect()
    })
    .unwrap_or_default()
}

fn oci_namespace_type(ns: Namespace) -> oci::LinuxNamespaceType {
    match ns {
        Namespace::User => oci::LinuxNamespaceType::User,
        Namespace::Pid => oci::LinuxNamespaceType::Pid,
        Namespace::Mount => oci::LinuxNamespaceType::Mount,
        Namespace::Uts => oci::LinuxNamespaceType::Uts,
        Namespace::Ipc => oci::LinuxNamespaceType::Ipc,
        Namespace::Network => oci::LinuxNamespaceType::Network,
        Namespace::Cgroup => oci::LinuxNamespaceType::Cgroup,
    }
}

impl ContainerConfig {
    // ANCHOR: to_oci
    /// Writes this configuration as an OCI runtime spec. The root path is made
    /// relative to `bundle` when it lies inside it, as OCI bundles do.
    pub fn to_oci(&self, bundle: &Path) -> Result<oci::Spec> {
        let caps: oci::Capabilities = self
            .process
            .capabilities
            .iter()
            .map(|c| serde_json::from_value(serde_json::Value::String(c.clone())))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Invalid(format!("capability: {e}")))?;
        // A non-root process keeps no effective capabilities across exec,
        // whatever we ask for; saying so in the spec keeps it honest.
        let effective = if self.process.uid == 0 {
            caps.clone()
        } else {
            Default::default()
        };
        let capabilities = oci::LinuxCapabilitiesBuilder::default()
            .bounding(caps.clone())
            .permitted(effective.clone())
            .effective(effective)
            .inheritable(oci::Capabilities::default())
            .ambient(oci::Capabilities::default())
            .build()
            .map_err(oci_err)?;
        let user = oci::UserBuilder::default()
            .uid(self.process.uid)
            .gid(self.process.gid)
            .additional_gids(self.process.additional_gids.clone())
            .build()
            .map_err(oci_err)?;
        let mut process = oci::ProcessBuilder::default()
            .terminal(self.process.terminal)
            .user(user)
            .args(self.process.args.clone())
            .env(self.process.env.clone())
            .cwd(self.process.cwd.clone())
            .capabilities(capabilities)
            .no_new_privileges(self.process.no_new_privileges)
            .build()
            .map_err(oci_err)?;
        if let Some((rows, cols)) = self.process.console_size {
            let size = oci::BoxBuilder::default()
                .height(rows as u64)
                .width(cols as u64)
                .build()
                .map_err(oci_err)?;
            process.set_console_size(Some(size));
        }
        let root_path = self
            .rootfs
            .strip_prefix(bundle)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| self.rootfs.clone());
        let root = oci::RootBuilder::default()
            .path(root_path)
            .readonly(self.readonly_rootfs)
            .build()
            .map_err(oci_err)?;
        let mounts = self
            .mounts
            .iter()
            .map(|m| {
                oci::MountBuilder::default()
                    .destination(m.destination.clone())
                    .typ(m.kind.clone())
                    .source(m.source.clone())
                    .options(m.options.clone())
                    .build()
                    .map_err(oci_err)
            })
            .collect::<Result<Vec<_>>>()?;
        let namespaces = self
            .namespaces
            .iter()
            .filter(|(_, mode)| **mode != NsMode::Host)
            .map(|(ns, mode)| {
                let b = oci::LinuxNamespaceBuilder::default().typ(oci_namespace_type(*ns));
                let b = match mode {
                    NsMode::Join(path) => b.path(path.clone()),
                    _ => b,
                };
                b.build().map_err(oci_err)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut linux = oci::LinuxBuilder::default().namespaces(namespaces);
        if self.new_namespace(Namespace::User) {
            linux = linux
                .uid_mappings(to_oci_maps(&self.uid_mappings)?)
                .gid_mappings(to_oci_maps(&self.gid_mappings)?);
        }
        let mut annotations = std::collections::HashMap::new();
        if self.init {
            annotations.insert(INIT_ANNOTATION.to_string(), "true".to_string());
        }
        let mut spec = oci::SpecBuilder::default()
            .version("1.2.0")
            .root(root)
            .process(process)
            .mounts(mounts)
            .linux(linux.build().map_err(oci_err)?)
            .annotations(annotations)
            .build()
            .map_err(oci_err)?;
        // Set it even when None: the builder's default is not empty.
        spec.set_hostname(self.hostname.clone());
        Ok(spec)
    }
    // ANCHOR_END: to_oci

    /// Reads an OCI runtime spec back. Fields the lab does not support are
    /// ignored; the ones it needs must be present.
    pub fn from_oci(spec: &oci::Spec, bundle: &Path) -> Result<Self> {
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::Invalid("config.json has no root".into()))?;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::Invalid("config.json has no process".into()))?;
        let linux = spec.linux().clone().unwrap_or_default();
        let mut namespaces = BTreeMap::new();
        for ns in linux.namespaces().iter().flatten() {
            let kind: Namespace = ns.typ().to_string().parse()?;
            let mode = match ns.path() {
                Some(p) => NsMode::Join(p.clone()),
                None => NsMode::New,
            };
            namespaces.insert(kind, mode);
        }
        let caps = process
            .capabilities()
            .as_ref()
            .and_then(|c| c.bounding().clone())
            .unwrap_or_default();
        let mut capabilities: Vec<String> = caps
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(str::to_string))
            .collect();
        capabilities.sort();
        let user = process.user();
        Ok(ContainerConfig {
            rootfs: bundle.join(root.path()),
            readonly_rootfs: root.readonly().unwrap_or(false),
            hostname: spec.hostname().clone(),
            process: ProcessSpec {
                args: process.args().clone().unwrap_or_default(),
                env: process.env().clone().unwrap_or_default(),
                cwd: process.cwd().clone(),
                uid: user.uid(),
                gid: user.gid(),
                additional_gids: user.additional_gids().clone().unwrap_or_default(),
                terminal: process.terminal().unwrap_or(false),
                console_size: process
                    .console_size()
                    .map(|b| (b.height() as u16, b.width() as u16)),
                capabilities,
                no_new_privileges: process.no_new_privileges().unwrap_or(false),
            },
            namespaces,
            uid_mappings: from_oci_maps(linux.uid_mappings().as_ref()),
            gid_mappings: from_oci_maps(linux.gid_mappings().as_ref()),
            mounts: spec
                .mounts()
                .iter()
                .flatten()
                .map(|m| MountSpec {
                    destination: m.destination().clone(),
                    kind: m.typ().clone().unwrap_or_else(|| "bind".into()),
                    source: m.source().clone().unwrap_or_default(),
                    options: m.options().clone().unwrap_or_default(),
                })
                .collect(),
            init: spec
                .annotations()
                .as_ref()
                .and_then(|a| a.get(INIT_ANNOTATION))
                .is_some_and(|v| v == "true"),
            cgroup_procs: Vec::new(),
            rootfs_mount: None,
        })
    }

    /// Saves the configuration as `config.json` in `bundle`.
    pub fn save(&self, bundle: &Path) -> Result<()> {
        let spec = self.to_oci(bundle)?;
        let text = serde_json::to_vec_pretty(&spec)
            .map_err(|e| Error::Invalid(format!("cannot serialise config.json: {e}")))?;
        let path = bundle.join("config.json");
        let tmp = bundle.join(".config.json.tmp");
        std::fs::write(&tmp, text).map_err(|e| Error::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))
    }

    /// Loads `config.json` from `bundle`.
    pub fn load(bundle: &Path) -> Result<Self> {
        let path = bundle.join("config.json");
        let text = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let spec: oci::Spec = serde_json::from_slice(&text)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        Self::from_oci(&spec, bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContainerConfig {
        let mut c = ContainerConfig::new(
            "/b/rootfs",
            vec!["sh".into(), "-c".into(), "echo hi".into()],
        );
        c.hostname = Some("web".into());
        c.readonly_rootfs = true;
        c.process.uid = 1000;
        c.process.gid = 1000;
        c.process.additional_gids = vec![27];
        c.namespaces.insert(Namespace::User, NsMode::New);
        c.namespaces
            .insert(Namespace::Ipc, NsMode::Join("/proc/42/ns/ipc".into()));
        c.namespaces.remove(&Namespace::Network);
        c.uid_mappings = vec![IdMap::new(0, 5000, 1000)];
        c.gid_mappings = vec![IdMap::new(0, 5000, 1000)];
        c.init = true;
        c.process.capabilities.sort();
        c
    }

    #[test]
    fn oci_round_trip() {
        let c = sample();
        let spec = c.to_oci(Path::new("/b")).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("rootfs"));
        let back = ContainerConfig::from_oci(&spec, Path::new("/b")).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn oci_json_shape() {
        let spec = sample().to_oci(Path::new("/b")).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["hostname"], "web");
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["user"]["uid"], 1000);
        // A non-root user keeps a bounding set but no effective capabilities.
        assert!(
            json["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(json["linux"]["uidMappings"][0]["hostID"], 5000);
        let kinds: Vec<_> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["type"].as_str().unwrap(),
                    n.get("path").and_then(|p| p.as_str()),
                )
            })
            .collect();
        assert!(kinds.contains(&("ipc", Some("/proc/42/ns/ipc"))));
        assert!(kinds.contains(&("user", None)));
        assert!(!kinds.iter().any(|(k, _)| *k == "network"));
        assert_eq!(json["annotations"][INIT_ANNOTATION], "true");
    }

    #[test]
    fn hostnames() {
        assert!(validate_hostname("web-1.example").is_ok());
        assert!(validate_hostname(&"a".repeat(64)).is_ok());
        let long = validate_hostname(&"a".repeat(65)).unwrap_err().to_string();
        assert!(
            long.contains("65 bytes") && long.contains("1 to 64"),
            "{long}"
        );
        assert!(validate_hostname("").is_err());
        assert!(validate_hostname("under_score").is_err());
        assert!(validate_hostname("-x").is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = ContainerConfig::new("rootfs", vec!["sh".into()]);
        assert!(c.validate().unwrap_err().to_string().contains("absolute"));
        c.rootfs = "/r".into();
        c.namespaces.remove(&Namespace::Uts);
        c.hostname = Some("x".into());
        assert!(c.validate().unwrap_err().to_string().contains("UTS"));
        c.hostname = None;
        c.namespaces.insert(Namespace::User, NsMode::New);
        assert!(c.validate().unwrap_err().to_string().contains("mapping"));
    }
}
