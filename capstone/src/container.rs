//! Creating a container: from an image and the user's options to a
//! directory holding a private root filesystem, an OCI `config.json` and
//! berth's `state.json`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Result, bail};
use namespaces::{ContainerConfig, IdMap, Namespace, NsMode};

use crate::image::{Image, ImageStore, Reference};
use crate::options::{IpcMode, NetworkMode, RunOptions, merge_env};
use crate::state::{Container, RunState, Store, new_id, random_name, validate_name};

/// Error for an image that is not in the store.
#[derive(Debug, thiserror::Error)]
#[error(
    "Unable to find image '{0}' locally: pull it first (berth pull {0}), build it, or use the built-in image 'busybox'"
)]
pub struct NoSuchImage(pub String);

/// Error for a name that is taken.
#[derive(Debug, thiserror::Error)]
#[error(
    "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
)]
pub struct NameInUse {
    pub name: String,
    pub id: String,
}

// ANCHOR: resolve_command
/// Decides what a container runs, from the image's ENTRYPOINT and CMD and
/// what was given on the command line: lab 05's
/// [`images::entrypoint::command`] (arguments after the image name replace
/// CMD; `--entrypoint` replaces ENTRYPOINT and drops the image's CMD).
/// Empty when there is nothing to run.
pub fn resolve_command(
    image_entrypoint: &[String],
    image_cmd: &[String],
    entrypoint_flag: Option<&[String]>,
    args: &[String],
) -> Vec<String> {
    images::entrypoint::command(image_entrypoint, image_cmd, args, entrypoint_flag)
        .unwrap_or_default()
}
// ANCHOR_END: resolve_command

/// Whether `reference` names the built-in image, which berth makes from the
/// host's busybox instead of pulling it.
pub fn is_builtin(reference: &Reference) -> bool {
    reference.familiar() == "busybox:latest"
}

/// Finds an image, making the built-in `busybox` from the host on first use.
pub fn ensure_image(images: &ImageStore, name: &str) -> Result<Image> {
    if let Some(image) = images.find(name)? {
        return Ok(image);
    }
    let reference = Reference::parse(name)?;
    if is_builtin(&reference) {
        eprintln!(
            "Unable to find image 'busybox:latest' locally; making it from the host's busybox"
        );
        return images.create_from_host(&reference);
    }
    Err(NoSuchImage(reference.familiar()).into())
}

/// The user namespace maps for a container: the ones asked for, or for a
/// rootless engine the caller's own ids as root.
pub fn id_maps(opts: &RunOptions) -> Result<(Vec<IdMap>, Vec<IdMap>)> {
    let parse = |v: &[String]| {
        v.iter()
            .map(|s| s.parse::<IdMap>().map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()
    };
    let (mut uids, mut gids) = (parse(&opts.uid_maps)?, parse(&opts.gid_maps)?);
    if uids.is_empty() != gids.is_empty() {
        bail!("--uidmap and --gidmap must be given together");
    }
    if opts.rootless && uids.is_empty() {
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        uids = vec![IdMap::new(0, uid, 1)];
        gids = vec![IdMap::new(0, gid, 1)];
    }
    Ok((uids, gids))
}

/// Translates an id through maps (identity without a user namespace).
pub fn to_host(maps: &[IdMap], id: u32) -> u32 {
    if maps.is_empty() {
        return id;
    }
    maps.iter().find_map(|m| m.to_host(id)).unwrap_or(65534)
}

// ANCHOR: build_config
/// Builds the OCI configuration of a container, as plain data: namespaces
/// from the network and IPC modes, the environment from image and flags,
/// and the hostname files berth bind-mounts into `/etc`.
pub fn build_config(
    c: &Container,
    image: &Image,
    dir: &Path,
    user: &namespaces::user::ResolvedUser,
    ipc_target: Option<i32>,
) -> Result<ContainerConfig> {
    let o = &c.options;
    let mut config = ContainerConfig::new(dir.join("rootfs"), {
        let mut v = vec![c.path.clone()];
        v.extend(c.args.iter().cloned());
        v
    });
    let image_env = image
        .config
        .config()
        .as_ref()
        .and_then(|cfg| cfg.env().clone())
        .unwrap_or_default();
    let mut env = merge_env(
        &[format!("PATH={}", namespaces::config::DEFAULT_PATH)],
        &image_env,
    );
    env = merge_env(&env, &[format!("HOSTNAME={}", o.hostname)]);
    if o.tty {
        env = merge_env(&env, &["TERM=xterm".to_string()]);
    }
    env = merge_env(&env, &o.env);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    config.process.env = env;
    config.process.cwd = PathBuf::from(if o.workdir.is_empty() {
        "/"
    } else {
        &o.workdir
    });
    config.process.uid = user.uid;
    config.process.gid = user.gid;
    config.process.additional_gids = user.additional_gids.clone();
    config.process.terminal = o.tty;
    config.process.capabilities =
        namespaces::capabilities::resolve(&o.cap_add, &o.cap_drop, o.privileged)?;
    config.process.no_new_privileges = o.no_new_privileges;
    config.readonly_rootfs = o.read_only;
    config.init = o.init;

    match o.network {
        // A bridge network's namespace is made by the monitor at each
        // start, and the container joins it (lab 04).
        NetworkMode::None | NetworkMode::Bridge(_) => {}
        NetworkMode::Host => {
            config.namespaces.remove(&Namespace::Network);
        }
    }
    // Sharing the host's network means sharing its name too, unless one is given.
    if o.network == NetworkMode::Host && o.hostname.is_empty() {
        config.namespaces.remove(&Namespace::Uts);
    } else {
        config.hostname = Some(o.hostname.clone());
    }
    match (&o.ipc, ipc_target) {
        (IpcMode::Private, _) => {}
        (IpcMode::Host, _) => {
            config.namespaces.remove(&Namespace::Ipc);
        }
        (IpcMode::Container(_), Some(pid)) => {
            config.namespaces.insert(
                Namespace::Ipc,
                NsMode::Join(Namespace::Ipc.path_for(Path::new("/proc"), pid)),
            );
        }
        (IpcMode::Container(name), None) => {
            bail!("cannot join the IPC namespace of container {name}: it is not running")
        }
    }
    let (uids, gids) = id_maps(o)?;
    if !uids.is_empty() {
        config.namespaces.insert(Namespace::User, NsMode::New);
        config.uid_mappings = uids;
        config.gid_mappings = gids;
    }
    // The container's own cgroup at /sys/fs/cgroup (read-only), and the
    // device nodes `--device` asked for, bound from the host.
    let hierarchy = crate::cgroup::hierarchy()?;
    let in_user_ns = config.new_namespace(Namespace::User);
    config
        .mounts
        .extend(cgroups::container::cgroup_mounts(&hierarchy, in_user_ns));
    for node in &o.resources.device_nodes {
        let target = node.path.to_string_lossy();
        config
            .mounts
            .push(namespaces::MountSpec::bind(&node.host, &target, false));
    }
    for (file, target) in [
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        config
            .mounts
            .push(namespaces::MountSpec::bind(dir.join(file), target, false));
    }
    Ok(config)
}
// ANCHOR_END: build_config

/// The content of the files berth mounts over `/etc/hostname`,
/// `/etc/hosts` and `/etc/resolv.conf`.
pub fn etc_files(o: &RunOptions) -> Vec<(&'static str, String)> {
    let host_file = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let hostname = if o.hostname.is_empty() {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        o.hostname.clone()
    };
    let hosts = match o.network {
        NetworkMode::Host => host_file("/etc/hosts"),
        // A bridge container's own address is added when it starts.
        NetworkMode::None | NetworkMode::Bridge(_) => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        ),
    };
    let host_resolv = host_file("/etc/resolv.conf");
    let resolv = match &o.network {
        NetworkMode::Bridge(_) => crate::network::resolv_conf(o),
        _ if !o.dns.is_empty() => network::dns::container_resolv_conf(&host_resolv, false, &o.dns),
        _ => host_resolv,
    };
    vec![
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv),
    ]
}

/// What `berth create` (and the first half of `berth run`) is asked to do.
pub struct CreateRequest {
    pub image: String,
    pub name: Option<String>,
    pub command: Vec<String>,
    pub options: RunOptions,
    /// `--health-*`: how to change the image's health check.
    pub health: crate::health::HealthFlags,
}

// ANCHOR: create
/// Creates a container and returns its record. The container is assembled
/// in a hidden directory and renamed into place as the last step, so a
/// failure (or a kill) part-way leaves nothing that looks like a container.
pub fn create(store: &Store, req: CreateRequest) -> Result<Container> {
    let images = ImageStore::open(&store.root)?;
    let image = ensure_image(&images, &req.image)?;
    let id = new_id()?;
    if let Some(n) = &req.name {
        validate_name(n)?;
    }
    let mut options = req.options;
    options.healthcheck =
        crate::health::resolve(images.healthcheck(&image)?.as_ref(), &req.health)?;
    if options.hostname.is_empty() && options.network != NetworkMode::Host {
        options.hostname = id[..12].to_string();
    }
    if let Some(h) = Some(&options.hostname).filter(|h| !h.is_empty()) {
        namespaces::config::validate_hostname(h)?;
    }
    let img_cfg = image.config.config().clone().unwrap_or_default();
    let command = resolve_command(
        &img_cfg.entrypoint().clone().unwrap_or_default(),
        &img_cfg.cmd().clone().unwrap_or_default(),
        options.entrypoint.as_deref(),
        &req.command,
    );
    let Some((path, args)) = command.split_first() else {
        bail!(
            "no command specified: the image has no CMD or ENTRYPOINT; give one after the image name"
        );
    };
    if options.workdir.is_empty() {
        options.workdir = img_cfg.working_dir().clone().unwrap_or_default();
    }
    if options.user.is_empty() {
        options.user = img_cfg.user().clone().unwrap_or_default();
    }
    for port in img_cfg.exposed_ports().clone().unwrap_or_default() {
        if !options.expose.contains(&port) {
            options.expose.push(port);
        }
    }
    // The networks must exist, each --ip must be in its network, and the
    // host ports must be free: checked before anything is made. Networks
    // given by id are recorded by name.
    if let NetworkMode::Bridge(_) = &options.network {
        let nets = crate::network::Networks::open(store)?;
        let mut named = Vec::new();
        for conn in options.connections() {
            let record = nets.get(&conn.network)?;
            record.check_ip(conn.ip)?;
            named.push(record.name);
        }
        options.network = NetworkMode::Bridge(named.remove(0));
        for (conn, name) in options.also_networks.iter_mut().zip(named) {
            conn.network = name;
        }
        crate::network::check_ports(&options.publish)?;
    } else if !options.publish.is_empty() || options.publish_all {
        bail!(
            "published ports need a bridge network: drop -p/-P, or use --network bridge (or a network of yours)"
        );
    }

    // The name check and the rename into place happen under one lock, so two
    // `berth run --name x` at once cannot both succeed.
    let _names = store.lock("names")?;
    // Every creation runs under this lock, so a hidden directory left from
    // an earlier one means that `berth` was killed part-way: clear it.
    store.clear_abandoned();
    let existing = store.list()?;
    let taken = |n: &str| existing.iter().find(|c| c.name == n);
    let name = match &req.name {
        Some(n) => match taken(n) {
            Some(other) => {
                return Err(NameInUse {
                    name: n.clone(),
                    id: other.id.clone(),
                }
                .into());
            }
            None => n.clone(),
        },
        // A generated name that is taken gets a number, as Docker's does.
        None => {
            let base = random_name(&id);
            std::iter::once(base.clone())
                .chain((2..).map(|n| format!("{base}{n}")))
                .find(|n| taken(n).is_none())
                .expect("an unbounded list of names has a free one")
        }
    };
    let staging = store.containers_dir().join(format!(".creating-{id}"));
    let mut made_volumes = Vec::new();
    let result = (|| -> Result<Container> {
        std::fs::create_dir_all(&staging)?;
        let (uids, gids) = id_maps(&options)?;
        let shift = |uid: u32, gid: u32| (to_host(&uids, uid), to_host(&gids, gid));
        // A rootless engine's own ids map to root: only explicit maps remap.
        let remapped = !options.uid_maps.is_empty();
        let (driver, why) = crate::storage::choose(store, store.driver.as_deref(), remapped)?;
        tracing::debug!(driver = driver.as_str(), why, "storage driver");
        let storage =
            crate::storage::prepare(&images, &image, &staging, driver, options.rootless, &shift)?;
        // The user's name resolves in the image's /etc/passwd and /etc/group.
        let lowers = crate::storage::lowers(&images, &storage, &staging)?;
        let read =
            |file: &str| crate::storage::read_file(&storage, &lowers, file).unwrap_or_default();
        let spec = if options.user.is_empty() {
            "0"
        } else {
            &options.user
        };
        let user = namespaces::user::resolve_user(
            &namespaces::user::UserSpec::parse(spec)?,
            &read("etc/passwd"),
            &read("etc/group"),
        )?;
        for (file, text) in etc_files(&options) {
            std::fs::write(staging.join(file), text)?;
        }
        // Volumes: named ones are made (and filled from the image) now.
        let mut options = options.clone();
        let image_volumes = image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.volumes().clone())
            .unwrap_or_default();
        made_volumes = crate::volumes::prepare(
            store,
            &mut options,
            &image_volumes,
            &lowers,
            storage.xattr(),
        )?;
        let mut container = Container {
            id: id.clone(),
            name: name.clone(),
            created: SystemTime::now(),
            image: req.image.clone(),
            image_id: image.id.clone(),
            path: path.clone(),
            args: args.to_vec(),
            options: options.clone(),
            env: Vec::new(),
            state: RunState::default(),
            restart_count: 0,
            manually_stopped: false,
            storage,
            endpoints: Vec::new(),
            ports: Vec::new(),
        };
        let ipc_target = match &options.ipc {
            IpcMode::Container(other) => {
                let o = store.find(other)?;
                (o.state.status.is_active()).then_some(o.state.pid)
            }
            _ => None,
        };
        let mut config = build_config(
            &container,
            &image,
            &store.container_dir(&id),
            &user,
            ipc_target,
        )?;
        // Volumes go before the engine's /etc files, so that a volume on
        // /etc still shows the container's own hostname and resolver.
        let at = config
            .mounts
            .iter()
            .position(|m| m.destination == Path::new("/etc/hostname"))
            .unwrap_or(config.mounts.len());
        config
            .mounts
            .splice(at..at, crate::volumes::mount_specs(store, &options));
        config.validate()?;
        container.env = config.process.env.clone();
        let mut spec = config.to_oci(&store.container_dir(&id))?;
        if !options.rootless {
            // The limits, where runc and crun would read them.
            let mut linux = spec.linux().clone().unwrap_or_default();
            linux.set_resources(Some(cgroups::oci::to_oci(&options.resources)?));
            linux.set_cgroups_path(Some(Path::new(crate::cgroup::PARENT).join(&id)));
            spec.set_linux(Some(linux));
        }
        crate::state::write_atomic(
            &staging.join("config.json"),
            &serde_json::to_vec_pretty(&spec)?,
        )?;
        crate::state::write_atomic(
            &staging.join("state.json"),
            &serde_json::to_vec_pretty(&container)?,
        )?;
        Ok(container)
    })();
    match result {
        Ok(c) => {
            std::fs::rename(&staging, store.container_dir(&id))?;
            Ok(c)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            if let Ok(volumes) = crate::volumes::open(store) {
                for name in &made_volumes {
                    let _ = volumes.remove(name, &[]);
                }
            }
            Err(e)
        }
    }
}
// ANCHOR_END: create

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// (image ENTRYPOINT, image CMD, --entrypoint, args, expected command)
    type Case<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        Option<&'a [&'a str]>,
        &'a [&'a str],
        &'a [&'a str],
    );

    #[test]
    fn entrypoint_and_cmd() {
        // (image ENTRYPOINT, image CMD, --entrypoint, args) -> command
        let cases: [Case; 6] = [
            (&[], &["sh"], None, &[], &["sh"]),
            (&[], &["sh"], None, &["echo", "hi"], &["echo", "hi"]),
            (&["/app"], &["--help"], None, &[], &["/app", "--help"]),
            (&["/app"], &["--help"], None, &["-v"], &["/app", "-v"]),
            (&["/app"], &["--help"], Some(&["/other"]), &[], &["/other"]),
            (
                &["/app"],
                &["--help"],
                Some(&["/other"]),
                &["x"],
                &["/other", "x"],
            ),
        ];
        for (ep, cmd, flag, args, want) in cases {
            let flag = flag.map(v);
            assert_eq!(
                resolve_command(&v(ep), &v(cmd), flag.as_deref(), &v(args)),
                v(want)
            );
        }
    }
}
