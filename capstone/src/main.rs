//! `berth`: a small container engine with Docker's command names, composed
//! from the course's labs.

mod attach;
mod build;
mod cgroup;
mod commit;
mod container;
mod disk;
mod doctor;
mod health;
mod image;
mod image_cmd;
mod logs;
mod monitor;
mod network;
mod ops;
mod options;
mod registry_cmd;
mod state;
mod stats;
mod storage;
mod template;
mod tty;
mod views;
mod volumes;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Result, bail};
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::container::CreateRequest;
use crate::options::{IpcMode, RestartPolicy, RunOptions};
use crate::state::Store;

/// A small container engine built from Linux namespaces, one lab at a time.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about, disable_help_subcommand = true)]
struct Cli {
    /// Where images and containers are kept.
    #[arg(long, global = true, env = "BERTH_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    /// Where runtime files (locks) are kept.
    #[arg(long, global = true, env = "BERTH_RUNROOT", value_name = "DIR")]
    runroot: Option<PathBuf>,
    /// How container filesystems are made: overlay, or vfs (a full copy).
    /// Chosen by testing overlayfs when not given.
    #[arg(
        long,
        global = true,
        env = "BERTH_STORAGE_DRIVER",
        value_name = "DRIVER"
    )]
    storage_driver: Option<String>,
    /// Print debug logs on stderr.
    #[arg(short = 'D', long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create and start a container from an image.
    Run(RunArgs),
    /// Create a container without starting it.
    Create(RunArgs),
    /// Start one or more stopped containers.
    Start {
        /// Attach to the container's output and wait for it to end.
        #[arg(short, long)]
        attach: bool,
        /// Attach the container's stdin.
        #[arg(short, long)]
        interactive: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop running containers: the stop signal, then SIGKILL after a grace period.
    Stop {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", visible_alias = "timeout")]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop and start containers again.
    Restart {
        #[arg(short = 't', long = "time", visible_alias = "timeout")]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to running containers (SIGKILL by default).
    Kill {
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill and remove a running container.
        #[arg(short, long)]
        force: bool,
        /// Remove the container's anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps {
        /// Show all containers, not just running ones.
        #[arg(short, long)]
        all: bool,
        /// Only print ids.
        #[arg(short, long)]
        quiet: bool,
        /// Show the latest created container.
        #[arg(short = 'l', long)]
        latest: bool,
        /// Don't shorten ids and commands.
        #[arg(long)]
        no_trunc: bool,
        /// A Go-template-like format, `table …`, or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show a container's output.
    Logs {
        /// Keep printing new output until the container stops.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(short = 'n', long)]
        tail: Option<String>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        container: String,
    },
    /// Run a command in a running container.
    #[command(disable_help_flag = true)]
    Exec {
        #[arg(long, action = ArgAction::Help)]
        help: Option<bool>,
        /// Keep stdin open.
        #[arg(short, long)]
        interactive: bool,
        /// Give the process a pseudo-terminal.
        #[arg(short, long)]
        tty: bool,
        /// Run the process in the background.
        #[arg(short, long)]
        detach: bool,
        /// Set environment variables (added to the container's).
        #[arg(short, long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// The working directory inside the container.
        #[arg(short, long)]
        workdir: Option<String>,
        /// The user: name or uid, optionally :group or :gid.
        #[arg(short, long)]
        user: Option<String>,
        /// The running container to enter.
        container: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Freeze every process of running containers.
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Let paused containers run again.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show containers' CPU, memory and process counts, refreshed live.
    Stats {
        /// Include stopped containers.
        #[arg(short, long)]
        all: bool,
        /// Print one reading and exit.
        #[arg(long)]
        no_stream: bool,
        /// Don't shorten ids.
        #[arg(long)]
        no_trunc: bool,
        /// A Go-template-like format, `table …`, or `json`.
        #[arg(long)]
        format: Option<String>,
        containers: Vec<String>,
    },
    /// List the files a container added (A), changed (C) or deleted (D).
    Diff { container: String },
    /// Make a new image from a container's changes.
    Commit {
        /// Author (e.g. "Ada <ada@example.org>").
        #[arg(short, long)]
        author: Option<String>,
        /// Apply a Dockerfile instruction to the image config (CMD,
        /// ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR).
        #[arg(short, long, value_name = "INSTRUCTION")]
        change: Vec<String>,
        /// Commit message.
        #[arg(short, long)]
        message: Option<String>,
        /// Freeze the container while its layer is written.
        #[arg(short, long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
        pause: bool,
        container: String,
        /// The new image's name, REPOSITORY[:TAG].
        repository: Option<String>,
    },
    /// Show how this engine is set up: storage driver, cgroups, counts.
    Info,
    /// Check that this machine can run berth and the labs: one line per
    /// check, with the command that fixes each problem.
    Doctor {
        /// `json` for an array of {check, status, detail, fix}.
        #[arg(long)]
        format: Option<String>,
    },
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage networks (lab 04).
    #[command(subcommand)]
    Network(NetworkCommand),
    /// List a container's published ports, or the host address of one.
    Port {
        container: String,
        /// PORT[/PROTO]: only this container port.
        port: Option<String>,
    },
    /// Disk usage and clean-up.
    #[command(subcommand)]
    System(SystemCommand),
    /// Manage containers (`container prune`).
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Build an image from a Dockerfile.
    Build(build::BuildArgs),
    /// Download an image from a registry.
    Pull(registry_cmd::PullArgs),
    /// Upload an image to a registry.
    Push(registry_cmd::PushArgs),
    /// Log in to a registry (the credentials are kept for pull and push).
    Login(registry_cmd::LoginArgs),
    /// Forget the credentials of a registry.
    Logout { server: Option<String> },
    /// Write images to a tar archive (Docker's format and an OCI layout).
    Save(image_cmd::SaveArgs),
    /// Read images from a tar archive.
    Load(image_cmd::LoadArgs),
    /// Write a container's filesystem as a tar archive.
    Export(image_cmd::ExportArgs),
    /// Make an image from a tar archive of a filesystem.
    Import(image_cmd::ImportArgs),
    /// List images.
    Images(image_cmd::ImagesArgs),
    /// Give an image another name: TARGET refers to SOURCE.
    Tag { source: String, target: String },
    /// Remove images (or only names of them).
    Rmi(image_cmd::RmiArgs),
    /// Show how an image was made, layer by layer.
    History(image_cmd::HistoryArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage the build cache (`builder prune`).
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// Show details of containers or images as JSON.
    Inspect {
        /// A Go-template-like format, e.g. '{{.State.Status}}'.
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum BuilderCommand {
    /// Forget the build cache, and remove the images only it kept.
    Prune {
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Build an image from a Dockerfile.
    Build(build::BuildArgs),
    /// Download an image from a registry.
    Pull(registry_cmd::PullArgs),
    /// Upload an image to a registry.
    Push(registry_cmd::PushArgs),
    /// Write images to a tar archive.
    Save(image_cmd::SaveArgs),
    /// Read images from a tar archive.
    Load(image_cmd::LoadArgs),
    /// Make an image from a tar archive of a filesystem.
    Import(image_cmd::ImportArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(image_cmd::ImagesArgs),
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Remove images.
    #[command(alias = "remove")]
    Rm(image_cmd::RmiArgs),
    /// Show how an image was made.
    History(image_cmd::HistoryArgs),
    /// Show details of images as JSON.
    Inspect {
        /// A Go-template-like format, e.g. '{{.Config.Cmd}}'.
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove dangling images (with -a, every image no container uses).
    Prune {
        /// Every image no container uses, not only dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum NetworkCommand {
    /// Create a bridge network.
    Create {
        /// The subnet, e.g. 10.89.0.0/24 (a free one if not given).
        #[arg(long)]
        subnet: Option<String>,
        /// The bridge's address (the first in the subnet if not given).
        #[arg(long)]
        gateway: Option<String>,
        /// No way in or out: no NAT, no published ports.
        #[arg(long)]
        internal: bool,
        /// Only the bridge driver exists.
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Full ids.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Show details of networks as JSON.
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks (refused while a container is on one).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Put a container on a network: a running one gets a new interface.
    Connect {
        /// Another name it answers to on this network.
        #[arg(long)]
        alias: Vec<String>,
        /// Its address on this network.
        #[arg(long, value_name = "IPV4")]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Take a container off a network.
    Disconnect {
        /// Accepted for Docker's sake: disconnecting never waits.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove every user-defined network no container is on.
    Prune {
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum VolumeCommand {
    /// Create a volume (a random name if none is given).
    Create {
        /// Set metadata on the volume: KEY=VALUE.
        #[arg(long = "label")]
        labels: Vec<String>,
        name: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
        /// A Go-template-like format, e.g. '{{.Name}}', or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show details of volumes as JSON.
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one).
    #[command(alias = "remove")]
    Rm {
        /// Accepted for Docker compatibility; a volume in use is still kept.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused anonymous volumes (all unused ones with -a).
    Prune {
        #[arg(short, long)]
        all: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SystemCommand {
    /// Show how much disk images, containers and volumes use.
    Df,
    /// Remove stopped containers, dangling images and (with --volumes)
    /// unused anonymous volumes.
    Prune {
        /// Remove every image no container uses, not only dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Also remove unused anonymous volumes.
        #[arg(long)]
        volumes: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ContainerCommand {
    /// Remove all stopped containers.
    Prune {
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
struct RunArgs {
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// Run in the background and print the container id.
    #[arg(short, long)]
    detach: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Give the container a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    #[arg(long)]
    name: Option<String>,
    /// A command that tells whether the container works (exit 0: healthy),
    /// run inside it with `sh -c`; replaces the image's HEALTHCHECK.
    #[arg(long, value_name = "COMMAND")]
    health_cmd: Option<String>,
    /// Time between health checks (e.g. 30s, 500ms).
    #[arg(long, value_name = "DURATION")]
    health_interval: Option<String>,
    /// How long one health check may take.
    #[arg(long, value_name = "DURATION")]
    health_timeout: Option<String>,
    /// Time to start up, during which failed checks do not count.
    #[arg(long, value_name = "DURATION")]
    health_start_period: Option<String>,
    /// Failed checks in a row before the container is unhealthy.
    #[arg(long, value_name = "N")]
    health_retries: Option<u32>,
    /// Run no health check, whatever the image says.
    #[arg(long)]
    no_healthcheck: bool,
    /// Pull the image first: when it is missing, always, or never.
    #[arg(long, value_enum, default_value_t)]
    pull: registry_cmd::PullPolicy,
    /// Set environment variables.
    #[arg(short, long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// The working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// The user: name or uid, optionally :group or :gid.
    #[arg(short, long)]
    user: Option<String>,
    /// The container's hostname.
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Mount a volume: /HOST/PATH:/PATH[:ro], NAME:/PATH[:ro] or /PATH.
    #[arg(short = 'v', long = "volume", value_name = "SPEC")]
    volume: Vec<String>,
    /// Mount with key=value pairs: type=bind|volume|tmpfs,source=,target=,readonly.
    #[arg(long, value_name = "SPEC")]
    mount: Vec<String>,
    /// Mount a tmpfs: /PATH[:size=64m,mode=1777,...].
    #[arg(long, value_name = "SPEC")]
    tmpfs: Vec<String>,
    /// Mount the volumes of another container: NAME[:ro|rw].
    #[arg(long, value_name = "CONTAINER")]
    volumes_from: Vec<String>,
    /// none (own loopback only), host (the host's network), bridge (the
    /// default bridge network, berth0) or a network made with `network create`.
    /// Repeat it to put the container on several bridge networks (eth0,
    /// eth1, ...). Default: bridge (none when rootless).
    #[arg(long, visible_alias = "net", value_name = "NETWORK")]
    network: Vec<String>,
    /// Publish a port: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp].
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    publish: Vec<String>,
    /// Publish every exposed port on a free host port.
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Expose a port (PORT[/PROTO]) for -P, as the image's EXPOSE does.
    #[arg(long, value_name = "PORT")]
    expose: Vec<String>,
    /// Another name the container answers to on its network.
    #[arg(
        long = "network-alias",
        visible_alias = "net-alias",
        value_name = "NAME"
    )]
    network_alias: Vec<String>,
    /// The container's address on its network.
    #[arg(long, value_name = "IPV4")]
    ip: Option<String>,
    /// A nameserver for the container.
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// Add a line to /etc/hosts: NAME:IP.
    #[arg(long, value_name = "NAME:IP")]
    add_host: Vec<String>,
    /// IPC namespace: private, host, or container:NAME.
    #[arg(long, default_value = "private")]
    ipc: String,
    /// no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no")]
    restart: String,
    /// Run a tiny init as PID 1 that forwards signals and reaps zombies.
    #[arg(long)]
    init: bool,
    #[arg(long)]
    cap_add: Vec<String>,
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Give every capability (avoid: the container can then do what root can).
    #[arg(long)]
    privileged: bool,
    /// Security options; `no-new-privileges` is supported.
    #[arg(long)]
    security_opt: Vec<String>,
    /// Override the image's ENTRYPOINT.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Run in a user namespace with this uid map (INSIDE:OUTSIDE:COUNT).
    #[arg(long)]
    uidmap: Vec<String>,
    /// The matching gid map.
    #[arg(long)]
    gidmap: Vec<String>,
    /// The signal `stop` sends first.
    #[arg(long, default_value = "SIGTERM")]
    stop_signal: String,
    /// Seconds `stop` waits before SIGKILL.
    #[arg(long, default_value_t = 10)]
    stop_timeout: u64,
    /// Memory limit, e.g. 64m (the kernel kills the container beyond it).
    #[arg(short = 'm', long, value_name = "BYTES")]
    memory: Option<String>,
    /// Memory plus swap, e.g. 128m; -1 for unlimited swap.
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// How many CPUs the container may keep busy, e.g. 0.5.
    #[arg(long)]
    cpus: Option<String>,
    /// Relative CPU weight against other containers (default 1024).
    #[arg(short = 'c', long)]
    cpu_shares: Option<String>,
    /// CPUs the container may run on, e.g. 0-1 or 0,2.
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Maximum number of processes (-1: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<String>,
    /// Give the container a host device: HOST[:CONTAINER][:rwm].
    #[arg(long)]
    device: Vec<String>,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// An error with the exit code Docker would give.
#[derive(Debug)]
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn fail(code: u8) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { code, error }
}

fn rootless() -> bool {
    !nix::unistd::geteuid().is_root()
}

fn default_dirs() -> (PathBuf, PathBuf) {
    if !rootless() {
        return ("/var/lib/berth".into(), "/run/berth".into());
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into());
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".local/share"));
    let run = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/berth-run-{}", nix::unistd::geteuid())));
    (data.join("berth"), run.join("berth"))
}

/// Without root, berth needs unprivileged user namespaces.
fn check_privileges() -> Result<()> {
    if !rootless() {
        return Ok(());
    }
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0")
        || read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0")
    {
        bail!(
            "berth needs root, or unprivileged user namespaces for rootless mode: run it with sudo, or enable them with `sysctl kernel.unprivileged_userns_clone=1`"
        );
    }
    Ok(())
}

impl RunArgs {
    fn options(&self) -> Result<RunOptions> {
        if self.rm && self.restart != "no" {
            bail!(
                "conflicting options: --restart and --rm (a container that restarts cannot also be removed when it exits)"
            );
        }
        let mut no_new_privileges = false;
        for opt in &self.security_opt {
            match opt.as_str() {
                "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => {
                    no_new_privileges = true
                }
                other => bail!(
                    "unsupported --security-opt {other:?}: berth knows no-new-privileges (seccomp arrives later)"
                ),
            }
        }
        if let Some(u) = &self.user {
            namespaces::user::UserSpec::parse(u)?;
        }
        if let Some(h) = &self.hostname {
            namespaces::config::validate_hostname(h)?;
        }
        let (network_mode, also_networks) = options::parse_networks(&self.network, rootless())?;
        Ok(RunOptions {
            hostname: self.hostname.clone().unwrap_or_default(),
            env: options::parse_env(&self.env, |k| std::env::var(k).ok())?,
            workdir: self.workdir.clone().unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
            tty: self.tty,
            interactive: self.interactive,
            auto_remove: self.rm,
            init: self.init,
            read_only: self.read_only,
            mounts: self.mounts()?,
            volumes_from: self.volumes_from.clone(),
            network: network_mode,
            also_networks,
            publish: self
                .publish
                .iter()
                .map(|p| p.parse::<options::PortSpec>())
                .collect::<Result<_>>()?,
            publish_all: self.publish_all,
            expose: self
                .expose
                .iter()
                .map(|e| {
                    let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
                    format!("{port}/{proto}")
                        .parse::<options::PortSpec>()
                        .map(|_| format!("{port}/{proto}"))
                        .map_err(|_| anyhow::anyhow!("invalid --expose {e:?}: write it as PORT or PORT/PROTO, e.g. 80 or 53/udp"))
                })
                .collect::<Result<_>>()?,
            network_aliases: self.network_alias.clone(),
            ip: self
                .ip
                .as_deref()
                .map(|ip| {
                    ip.parse().map_err(|_| {
                        anyhow::anyhow!("invalid --ip {ip:?}: write an IPv4 address, e.g. 10.89.0.10")
                    })
                })
                .transpose()?,
            dns: self
                .dns
                .iter()
                .map(|d| {
                    d.parse()
                        .map_err(|_| anyhow::anyhow!("invalid --dns {d:?}: write an IP address"))
                })
                .collect::<Result<_>>()?,
            add_hosts: self
                .add_host
                .iter()
                .map(|h| options::parse_add_host(h))
                .collect::<Result<_>>()?,
            ipc: self.ipc.parse::<IpcMode>()?,
            restart: self.restart.parse::<RestartPolicy>()?,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            no_new_privileges,
            uid_maps: self.uidmap.clone(),
            gid_maps: self.gidmap.clone(),
            rootless: rootless(),
            entrypoint: self
                .entrypoint
                .clone()
                .map(|e| if e.is_empty() { vec![] } else { vec![e] }),
            stop_timeout: self.stop_timeout,
            // Filled in at creation, from the image and the --health-* flags.
            healthcheck: None,
            stop_signal: {
                options::parse_signal(&self.stop_signal)?;
                self.stop_signal.clone()
            },
            resources: cgroup::resources(
                &cgroup::LimitFlags {
                    memory: self.memory.clone(),
                    memory_swap: self.memory_swap.clone(),
                    cpus: self.cpus.clone(),
                    cpu_shares: self.cpu_shares.clone(),
                    cpuset_cpus: self.cpuset_cpus.clone(),
                    pids_limit: self.pids_limit.clone(),
                    devices: self.device.clone(),
                },
                rootless(),
            )
            .map(|mut r| {
                // --privileged lifts the device allow-list, as in Docker.
                if self.privileged && !rootless() {
                    r.devices.push(cgroups::devices::DeviceRule {
                        allow: true,
                        kind: cgroups::devices::DeviceKind::All,
                        major: None,
                        minor: None,
                        access: "rwm".into(),
                    });
                }
                r
            })?,
        })
    }

    /// `-v`, `--mount` and `--tmpfs`, parsed and checked (lab 03). A `-v`
    /// bind source that does not exist is created, as Docker does; one
    /// given with `--mount` must exist.
    fn mounts(&self) -> Result<Vec<overlay::volume::VolumeMount>> {
        use overlay::volume::{self, VolumeSource};
        let mut all = Vec::new();
        for (specs, parse, create_missing) in [
            (&self.volume, volume::parse_volume as fn(&str) -> _, true),
            (&self.mount, volume::parse_mount, false),
            (&self.tmpfs, volume::parse_tmpfs, false),
        ] {
            for spec in specs {
                let m = parse(spec)?;
                if let VolumeSource::Bind(path) = &m.source {
                    volume::check_bind_source(path, create_missing)?;
                }
                all.push(m);
            }
        }
        volume::check_targets(&all)?;
        Ok(all)
    }

    fn request(&self) -> Result<CreateRequest> {
        // Check capabilities now, so a typo fails before anything is made.
        namespaces::capabilities::resolve(&self.cap_add, &self.cap_drop, self.privileged)?;
        Ok(CreateRequest {
            image: self.image.clone(),
            name: self.name.clone(),
            command: self.command.clone(),
            options: self.options()?,
            health: health::HealthFlags {
                cmd: self.health_cmd.clone(),
                interval: self.health_interval.clone(),
                timeout: self.health_timeout.clone(),
                start_period: self.health_start_period.clone(),
                retries: self.health_retries,
                none: self.no_healthcheck,
            },
        })
    }
}

/// Runs an action for each named container, reporting each failure and
/// printing each success the way Docker does (the name as given).
/// `berth info`: the engine's situation, as `docker info` reports it.
fn info(store: &Store) -> Result<u8> {
    use crate::state::Status;
    let containers = store.list()?;
    let count = |s: Status| containers.iter().filter(|c| c.state.status == s).count();
    let images = image::ImageStore::open(&store.root)?.list()?.len();
    // What a new container without --uidmap would get.
    let (driver, why) = storage::choose(store, store.driver.as_deref(), false)?;
    let cgroup = match cgroup::hierarchy() {
        Ok(h) => format!("{} ({:?})", if h.uses_v2() { 2 } else { 1 }, h.mode),
        Err(e) => format!("unknown ({e})"),
    };
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().to_string())
        .unwrap_or_default();
    println!("Containers: {}", containers.len());
    println!(" Running: {}", count(Status::Running));
    println!(" Paused: {}", count(Status::Paused));
    println!(
        " Stopped: {}",
        containers.len() - count(Status::Running) - count(Status::Paused)
    );
    println!("Images: {images}");
    println!("Storage Driver: {}", driver.as_str());
    println!(" Why: {why}");
    println!("Cgroup Version: {cgroup}");
    println!("Kernel Version: {kernel}");
    println!("Rootless: {}", rootless());
    println!("Berth Root Dir: {}", store.root.display());
    Ok(0)
}

/// Docker's report after a prune.
fn print_pruned(what: &str, items: &[String], freed: u64) {
    if !items.is_empty() {
        println!("{what}:");
        for item in items {
            println!("{item}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", disk::human(freed));
}

/// A network as `docker network inspect` shows it.
fn network_json(store: &Store, r: &network::Record) -> Result<serde_json::Value> {
    let mut containers = serde_json::Map::new();
    for c in store.list()? {
        for e in c.endpoints.iter().filter(|e| e.network == r.name) {
            containers.insert(
                c.id.clone(),
                serde_json::json!({
                    "Name": c.name,
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix),
                }),
            );
        }
    }
    Ok(serde_json::json!({
        "Name": r.name,
        "Id": r.id,
        "Created": humantime::format_rfc3339_seconds(r.created).to_string(),
        "Driver": r.driver,
        "Internal": r.internal,
        "IPAM": { "Driver": "default", "Config": [{ "Subnet": r.subnet.to_string(), "Gateway": r.gateway.to_string() }] },
        "Options": { "com.docker.network.bridge.name": r.bridge },
        "Containers": containers,
    }))
}

fn network_command(store: &Store, cmd: NetworkCommand) -> Result<u8> {
    let nets = network::Networks::open(store)?;
    match cmd {
        NetworkCommand::Create {
            subnet,
            gateway,
            internal,
            driver,
            name,
        } => {
            if driver != "bridge" {
                bail!(
                    "network driver {driver:?} is not available: berth has bridge (overlay arrives with lab 07)"
                );
            }
            let subnet = subnet.as_deref().map(str::parse).transpose()?;
            let gateway = gateway
                .as_deref()
                .map(|g| {
                    g.parse().map_err(|_| {
                        anyhow::anyhow!("invalid --gateway {g:?}: write an IPv4 address")
                    })
                })
                .transpose()?;
            let r = nets.create(&name, subnet, gateway, internal)?;
            println!("{}", r.id);
        }
        NetworkCommand::Ls { quiet, no_trunc } => {
            nets.default_network()?;
            let list = nets.list()?;
            let id = |i: &str| {
                if no_trunc {
                    i.to_string()
                } else {
                    i[..12].to_string()
                }
            };
            if quiet {
                for r in &list {
                    println!("{}", id(&r.id));
                }
            } else {
                let mut rows = vec![vec![
                    "NETWORK ID".to_string(),
                    "NAME".into(),
                    "DRIVER".into(),
                    "SCOPE".into(),
                ]];
                for r in &list {
                    rows.push(vec![
                        id(&r.id),
                        r.name.clone(),
                        r.driver.clone(),
                        "local".into(),
                    ]);
                }
                rows.push(vec![
                    "-".into(),
                    "host".into(),
                    "host".into(),
                    "local".into(),
                ]);
                rows.push(vec![
                    "-".into(),
                    "none".into(),
                    "null".into(),
                    "local".into(),
                ]);
                print!("{}", views::columns(&rows));
            }
        }
        NetworkCommand::Inspect { format, networks } => {
            return print_inspected(&networks, format.as_deref(), |name| {
                network_json(store, &nets.get(name)?)
            });
        }
        NetworkCommand::Rm { networks } => {
            let mut failed = false;
            for n in &networks {
                match nets.remove(store, n) {
                    Ok(name) => println!("{name}"),
                    Err(e) => {
                        eprintln!("Error: {e:#}");
                        failed = true;
                    }
                }
            }
            return Ok(if failed { 1 } else { 0 });
        }
        NetworkCommand::Connect {
            alias,
            ip,
            network,
            container,
        } => {
            let c = store.find(&container)?;
            let ip = ip
                .as_deref()
                .map(|ip| {
                    ip.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "invalid --ip {ip:?}: write an IPv4 address, e.g. 10.89.0.10"
                        )
                    })
                })
                .transpose()?;
            network::connect(
                store,
                &c,
                options::Connection {
                    network,
                    aliases: alias,
                    ip,
                },
            )?;
        }
        NetworkCommand::Disconnect {
            force: _,
            network,
            container,
        } => {
            let c = store.find(&container)?;
            network::disconnect(store, &c, &network)?;
        }
        NetworkCommand::Prune { force } => {
            if !disk::confirm(
                "WARNING! This will remove all custom networks not used by at least one container.",
                force,
            ) {
                return Ok(0);
            }
            let removed = nets.prune(store)?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
        }
    }
    Ok(0)
}

/// Prints what `inspect` subcommands print: a JSON array of the objects
/// found, or each rendered through `--format`; each name not found is an
/// error on stderr, and the exit code is 1 if there was one.
fn print_inspected(
    names: &[String],
    format: Option<&str>,
    find: impl Fn(&str) -> Result<serde_json::Value>,
) -> Result<u8> {
    let mut out = Vec::new();
    let mut missing = false;
    for name in names {
        match find(name) {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("Error: {e}");
                missing = true;
            }
        }
    }
    match format {
        Some(f) => {
            let t = template::Template::parse(f)?;
            for v in &out {
                println!("{}", t.render(v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(if missing { 1 } else { 0 })
}

fn image_command(store: &Store, cmd: ImageCommand) -> Result<u8> {
    match cmd {
        ImageCommand::Build(args) => {
            build::build(store, &args)?;
        }
        ImageCommand::Pull(args) => {
            registry_cmd::pull(store, &args)?;
        }
        ImageCommand::Push(args) => registry_cmd::push(store, &args)?,
        ImageCommand::Save(args) => image_cmd::save(store, &args)?,
        ImageCommand::Load(args) => image_cmd::load(store, &args)?,
        ImageCommand::Import(args) => image_cmd::import(store, &args)?,
        ImageCommand::Ls(args) => image_cmd::images(store, &args)?,
        ImageCommand::Tag { source, target } => image_cmd::tag(store, &source, &target)?,
        ImageCommand::Rm(args) => return Ok(if image_cmd::rmi(store, &args)? { 0 } else { 1 }),
        ImageCommand::History(args) => image_cmd::history(store, &args)?,
        ImageCommand::Inspect { format, images } => {
            let store_images = image::ImageStore::open(&store.root)?;
            return print_inspected(&images, format.as_deref(), |name| {
                image_cmd::inspect_json(&store_images, &image_cmd::find(&store_images, name)?)
            });
        }
        ImageCommand::Prune { all, force } => {
            let warning = if all {
                "This will remove all images without at least one container associated to them."
            } else {
                "This will remove all dangling images."
            };
            if !disk::confirm(warning, force) {
                return Ok(0);
            }
            let (ids, freed) = disk::prune_images(store, all)?;
            if !ids.is_empty() {
                println!("Deleted Images:");
                for id in &ids {
                    println!("deleted: {id}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", disk::human(freed));
        }
    }
    Ok(0)
}

fn volume_command(store: &Store, cmd: VolumeCommand) -> Result<u8> {
    let volumes = volumes::open(store)?;
    match cmd {
        VolumeCommand::Create { labels, name } => {
            let mut map = std::collections::BTreeMap::new();
            for l in labels {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                if k.is_empty() {
                    bail!("invalid label {l:?}: expected KEY=VALUE");
                }
                map.insert(k.to_string(), v.to_string());
            }
            let v = volumes.create(name.as_deref(), map)?;
            println!("{}", v.name);
        }
        VolumeCommand::Ls { quiet, format } => {
            let list = volumes.list()?;
            if quiet {
                for v in &list {
                    println!("{}", v.name);
                }
            } else if let Some(f) = format.as_deref() {
                for v in &list {
                    let json = v.to_docker_json();
                    match f {
                        "json" => println!("{json}"),
                        _ => println!("{}", template::Template::parse(f)?.render(&json)?),
                    }
                }
            } else {
                let mut rows = vec![vec!["DRIVER".to_string(), "VOLUME NAME".to_string()]];
                rows.extend(list.iter().map(|v| vec![v.driver.clone(), v.name.clone()]));
                print!("{}", views::columns(&rows));
            }
        }
        VolumeCommand::Inspect {
            format,
            volumes: names,
        } => {
            return print_inspected(&names, format.as_deref(), |name| {
                Ok(volumes.get(name)?.to_docker_json())
            });
        }
        VolumeCommand::Rm {
            force: _,
            volumes: names,
        } => {
            let mut failed = false;
            for name in &names {
                match volumes::remove(store, name) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        eprintln!("Error: {e:#}");
                        failed = true;
                    }
                }
            }
            return Ok(if failed { 1 } else { 0 });
        }
        VolumeCommand::Prune { all, force } => {
            let warning = if all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !disk::confirm(warning, force) {
                return Ok(0);
            }
            let (names, freed) = volumes::prune(store, all)?;
            print_pruned("Deleted Volumes", &names, freed);
        }
    }
    Ok(0)
}

fn system_command(store: &Store, cmd: SystemCommand) -> Result<u8> {
    match cmd {
        SystemCommand::Df => print!("{}", disk::df_table(&disk::df(store)?)),
        SystemCommand::Prune {
            all,
            volumes: with_volumes,
            force,
        } => {
            let mut warning = String::from(
                "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
            );
            if with_volumes {
                warning.push_str("  - anonymous volumes not used by at least one container\n");
            }
            warning.push_str(if all {
                "  - all images without at least one container associated to them"
            } else {
                "  - all dangling images"
            });
            if !disk::confirm(&warning, force) {
                return Ok(0);
            }
            let (containers, c_freed) = disk::prune_containers(store)?;
            if !containers.is_empty() {
                println!("Deleted Containers:");
                for id in &containers {
                    println!("{id}");
                }
                println!();
            }
            let networks = network::Networks::open(store)?.prune(store)?;
            if !networks.is_empty() {
                println!("Deleted Networks:");
                for n in &networks {
                    println!("{n}");
                }
                println!();
            }
            let (vols, v_freed) = if with_volumes {
                volumes::prune(store, false)?
            } else {
                (Vec::new(), 0)
            };
            if !vols.is_empty() {
                println!("Deleted Volumes:");
                for v in &vols {
                    println!("{v}");
                }
                println!();
            }
            let (images, i_freed) = disk::prune_images(store, all)?;
            if !images.is_empty() {
                println!("Deleted Images:");
                for id in &images {
                    println!("deleted: {id}");
                }
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                disk::human(c_freed + v_freed + i_freed)
            );
        }
    }
    Ok(0)
}

fn each(containers: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<(), Failure> {
    let mut failed = None;
    for name in containers {
        match f(name) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed = Some(1);
            }
        }
    }
    match failed {
        Some(code) => Err(Failure {
            code,
            error: anyhow::anyhow!(""),
        }),
        None => Ok(()),
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let (default_root, default_runroot) = default_dirs();
    let root = cli.root.clone().unwrap_or(default_root);
    let runroot = cli.runroot.clone().unwrap_or(default_runroot);
    // The doctor diagnoses what the next two lines would refuse, and makes
    // no engine state.
    if let Command::Doctor { format } = &cli.command {
        return doctor::command(&root, format.as_deref()).map_err(fail(125));
    }
    check_privileges().map_err(fail(125))?;
    let mut store = Store::open(&root, &runroot).map_err(fail(125))?;
    store.driver = cli.storage_driver.clone();
    match cli.command {
        Command::Run(args) => {
            let req = args.request().map_err(fail(125))?;
            registry_cmd::pull_for_run(&store, &req.image, args.pull).map_err(fail(125))?;
            let c = container::create(&store, req).map_err(fail(125))?;
            if args.detach {
                start_or_code(monitor::start_detached(&store, &c.id))?;
                println!("{}", c.id);
                Ok(0)
            } else {
                let code = monitor::start_foreground(&store, &c.id, args.interactive)
                    .map_err(|e| code_of(e, 125))?;
                Ok(code as u8)
            }
        }
        Command::Create(args) => {
            let req = args.request().map_err(fail(125))?;
            registry_cmd::pull_for_run(&store, &req.image, args.pull).map_err(fail(125))?;
            let c = container::create(&store, req).map_err(fail(125))?;
            println!("{}", c.id);
            Ok(0)
        }
        Command::Start {
            attach,
            interactive,
            containers,
        } => {
            if attach || interactive {
                let [one] = containers.as_slice() else {
                    return Err(fail(1)(anyhow::anyhow!(
                        "you cannot attach to more than one container at a time"
                    )));
                };
                let c = store.find(one).map_err(fail(1))?;
                if c.state.status.is_active() {
                    return Err(fail(1)(anyhow::anyhow!(
                        "container {} is already running",
                        c.name
                    )));
                }
                reset_for_start(&store, &c.id).map_err(fail(1))?;
                let code = monitor::start_foreground(&store, &c.id, interactive)
                    .map_err(|e| code_of(e, 1))?;
                return Ok(code as u8);
            }
            each(&containers, |name| {
                let c = store.find(name)?;
                if c.state.status.is_active() {
                    return Ok(());
                }
                reset_for_start(&store, &c.id)?;
                monitor::start_detached(&store, &c.id)
            })?;
            Ok(0)
        }
        Command::Stop { time, containers } => {
            each(&containers, |name| ops::stop(&store, name, time))?;
            Ok(0)
        }
        Command::Restart { time, containers } => {
            each(&containers, |name| {
                ops::stop(&store, name, time)?;
                let c = store.find(name)?;
                reset_for_start(&store, &c.id)?;
                monitor::start_detached(&store, &c.id)
            })?;
            Ok(0)
        }
        Command::Kill { signal, containers } => {
            let sig = options::parse_signal(&signal).map_err(fail(1))?;
            each(&containers, |name| ops::kill(&store, name, sig))?;
            Ok(0)
        }
        Command::Rm {
            force,
            volumes,
            containers,
        } => {
            each(&containers, |name| {
                let mounts = store.find(name)?.options.mounts;
                ops::remove(&store, name, force)?;
                if volumes {
                    crate::volumes::remove_anonymous(&store, &mounts);
                }
                Ok(())
            })?;
            Ok(0)
        }
        Command::Ps {
            all,
            quiet,
            latest,
            no_trunc,
            format,
        } => {
            ps(&store, all, quiet, latest, no_trunc, format.as_deref()).map_err(fail(1))?;
            Ok(0)
        }
        Command::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => {
            let c = store.find(&container).map_err(fail(1))?;
            let tail = match tail.as_deref() {
                None | Some("all") => None,
                Some(n) => Some(n.parse().map_err(|_| {
                    fail(1)(anyhow::anyhow!("invalid --tail {n:?}: a number or \"all\""))
                })?),
            };
            let opts = logs::ReadOptions {
                follow,
                tail,
                timestamps,
            };
            let id = c.id.clone();
            let running = || {
                store
                    .load(&id)
                    .map(|c| c.state.status.is_active())
                    .unwrap_or(false)
            };
            logs::print(
                &store.container_dir(&c.id).join("container.log"),
                &opts,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
                &running,
            )
            .map_err(fail(1))?;
            Ok(0)
        }
        Command::Exec {
            interactive,
            tty,
            detach,
            env,
            workdir,
            user,
            container,
            command,
            ..
        } => {
            let req = ops::ExecRequest {
                command,
                env: options::parse_env(&env, |k| std::env::var(k).ok()).map_err(fail(125))?,
                workdir,
                user,
                interactive,
                tty,
                detach,
            };
            let code = ops::exec(&store, &container, req).map_err(|e| code_of(e, 1))?;
            Ok(code as u8)
        }
        Command::Diff { container } => {
            let c = store.find(&container).map_err(fail(1))?;
            for change in commit::changes(&store, &c).map_err(fail(1))? {
                println!("{change}");
            }
            Ok(0)
        }
        Command::Commit {
            author,
            change,
            message,
            pause,
            container,
            repository,
        } => {
            let req = commit::CommitRequest {
                reference: repository,
                author,
                message,
                changes: change,
                pause,
            };
            let id = commit::commit(&store, &container, &req).map_err(fail(1))?;
            println!("{id}");
            Ok(0)
        }
        Command::Info => info(&store).map_err(fail(1)),
        Command::Doctor { .. } => unreachable!("berth doctor runs before the engine state opens"),
        Command::Volume(cmd) => volume_command(&store, cmd).map_err(fail(1)),
        Command::Build(args) => build::build(&store, &args).map(|_| 0).map_err(fail(1)),
        Command::Pull(args) => registry_cmd::pull(&store, &args)
            .map(|_| 0)
            .map_err(fail(1)),
        Command::Push(args) => registry_cmd::push(&store, &args)
            .map(|()| 0)
            .map_err(fail(1)),
        Command::Login(args) => registry_cmd::login(&args).map(|()| 0).map_err(fail(1)),
        Command::Logout { server } => registry_cmd::logout(server.as_deref())
            .map(|()| 0)
            .map_err(fail(1)),
        Command::Save(args) => image_cmd::save(&store, &args).map(|()| 0).map_err(fail(1)),
        Command::Load(args) => image_cmd::load(&store, &args).map(|()| 0).map_err(fail(1)),
        Command::Export(args) => image_cmd::export(&store, &args)
            .map(|()| 0)
            .map_err(fail(1)),
        Command::Import(args) => image_cmd::import(&store, &args)
            .map(|()| 0)
            .map_err(fail(1)),
        Command::Images(args) => image_cmd::images(&store, &args)
            .map(|()| 0)
            .map_err(fail(1)),
        Command::Tag { source, target } => image_cmd::tag(&store, &source, &target)
            .map(|()| 0)
            .map_err(fail(1)),
        Command::Rmi(args) => image_cmd::rmi(&store, &args)
            .map(|ok| if ok { 0 } else { 1 })
            .map_err(fail(1)),
        Command::History(args) => image_cmd::history(&store, &args)
            .map(|()| 0)
            .map_err(fail(1)),
        Command::Image(cmd) => image_command(&store, cmd).map_err(fail(1)),
        Command::Builder(BuilderCommand::Prune { force }) => (|| -> Result<u8> {
            if !disk::confirm("This will remove all dangling build cache.", force) {
                return Ok(0);
            }
            image::ImageStore::open(&store.root)?
                .blobs()
                .cache_clear()?;
            let (ids, freed) = disk::prune_images(&store, false)?;
            if !ids.is_empty() {
                println!("Deleted build cache objects:");
                for id in &ids {
                    println!("{id}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", disk::human(freed));
            Ok(0)
        })()
        .map_err(fail(1)),
        Command::Network(cmd) => network_command(&store, cmd).map_err(fail(1)),
        Command::Port { container, port } => {
            let c = store.find(&container).map_err(fail(1))?;
            let wanted = port.map(|p| {
                if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                }
            });
            let mut found = false;
            for b in &c.ports {
                let key = format!("{}/{}", b.container_port, b.protocol);
                match &wanted {
                    Some(w) if *w != key => {}
                    Some(_) => {
                        found = true;
                        println!(
                            "{}:{}",
                            b.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                            b.host_port
                        );
                    }
                    None => {
                        found = true;
                        println!(
                            "{key} -> {}:{}",
                            b.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                            b.host_port
                        );
                    }
                }
            }
            match wanted {
                Some(w) if !found => Err(fail(1)(anyhow::anyhow!(
                    "no public port '{w}' published for {}",
                    c.name
                ))),
                _ => Ok(0),
            }
        }
        Command::System(cmd) => system_command(&store, cmd).map_err(fail(1)),
        Command::Container(ContainerCommand::Prune { force }) => {
            if !disk::confirm("WARNING! This will remove all stopped containers.", force) {
                return Ok(0);
            }
            let (ids, freed) = disk::prune_containers(&store).map_err(fail(1))?;
            print_pruned("Deleted Containers", &ids, freed);
            Ok(0)
        }
        Command::Pause { containers } => {
            each(&containers, |name| ops::pause(&store, name))?;
            Ok(0)
        }
        Command::Unpause { containers } => {
            each(&containers, |name| ops::unpause(&store, name))?;
            Ok(0)
        }
        Command::Stats {
            all,
            no_stream,
            no_trunc,
            format,
            containers,
        } => {
            let opts = stats::Options {
                all,
                stream: !no_stream,
                no_trunc,
                format,
                containers,
            };
            stats::run(&store, &opts).map_err(fail(1))?;
            Ok(0)
        }
        Command::Inspect { format, containers } => {
            let template = format
                .as_deref()
                .map(template::Template::parse)
                .transpose()
                .map_err(fail(1))?;
            let mut views = Vec::new();
            let mut failed = false;
            for name in &containers {
                // Containers first, then images, as Docker looks.
                match store.find(name) {
                    Ok(c) => views.push(views::inspect(&c, &store.container_dir(&c.id))),
                    Err(e) => match image::ImageStore::open(&store.root)
                        .and_then(|i| Ok(i.find(name)?.map(|img| (i, img))))
                    {
                        Ok(Some((i, img))) => {
                            views.push(image_cmd::inspect_json(&i, &img).map_err(fail(1))?)
                        }
                        _ => {
                            eprintln!("Error: {e:#}");
                            failed = true;
                        }
                    },
                }
            }
            let mut out = std::io::stdout().lock();
            match template {
                Some(t) => {
                    for v in &views {
                        writeln!(out, "{}", t.render(v).map_err(fail(1))?).ok();
                    }
                }
                None => {
                    writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&views).unwrap_or_default()
                    )
                    .ok();
                }
            }
            if failed {
                Err(Failure {
                    code: 1,
                    error: anyhow::anyhow!(""),
                })
            } else {
                Ok(0)
            }
        }
    }
}

/// Maps an error to its exit code: a start failure carries its own
/// (127 not found, 126 not executable).
fn code_of(e: anyhow::Error, default: u8) -> Failure {
    let code = e
        .downcast_ref::<monitor::StartFailed>()
        .map(|s| s.code as u8)
        .or_else(|| {
            e.downcast_ref::<namespaces::Error>()
                .map(|n| n.exit_code() as u8)
        })
        .unwrap_or(default);
    Failure { code, error: e }
}

fn start_or_code(r: Result<()>) -> Result<(), Failure> {
    r.map_err(|e| code_of(e, 125))
}

/// Clears what a previous run left in the record before a new start.
fn reset_for_start(store: &Store, id: &str) -> Result<()> {
    store.update(id, |c| {
        c.manually_stopped = false;
        Ok(())
    })
}

fn ps(
    store: &Store,
    all: bool,
    quiet: bool,
    latest: bool,
    no_trunc: bool,
    format: Option<&str>,
) -> Result<()> {
    let now = SystemTime::now();
    let mut list: Vec<_> = store
        .list()?
        .into_iter()
        .filter(|c| all || latest || c.state.status.is_active())
        .collect();
    list.reverse(); // newest first, as Docker lists
    if latest {
        list.truncate(1);
    }
    let mut out = std::io::stdout().lock();
    if quiet {
        for c in &list {
            writeln!(out, "{}", if no_trunc { &c.id } else { c.short_id() })?;
        }
        return Ok(());
    }
    let rows: Vec<_> = list
        .iter()
        .map(|c| views::ps_row(c, now, no_trunc))
        .collect();
    match format {
        Some("json") => {
            for r in &rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        Some(f) => {
            let t = template::Template::parse(f)?;
            if t.table {
                let mut table = vec![split_cells(&t.header(&views::ps_header))];
                for r in &rows {
                    table.push(split_cells(&t.render(r)?));
                }
                write!(out, "{}", views::columns(&table))?;
            } else {
                for r in &rows {
                    writeln!(out, "{}", t.render(r)?)?;
                }
            }
        }
        None => {
            let fields = [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ];
            let mut table = vec![
                fields
                    .iter()
                    .map(|f| views::ps_header(f))
                    .collect::<Vec<_>>(),
            ];
            for r in &rows {
                table.push(fields.iter().map(|f| template::go_string(&r[*f])).collect());
            }
            write!(out, "{}", views::columns(&table))?;
        }
    }
    Ok(())
}

fn split_cells(line: &str) -> Vec<String> {
    line.split('\t').map(str::to_string).collect()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let filter = if cli.debug { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, error }) => {
            let text = describe(&error);
            if !text.is_empty() {
                eprintln!("berth: {text}");
            }
            ExitCode::from(code)
        }
    }
}

/// The error and its causes, joined by ": ". The labs' errors already end
/// with their cause's text (they are also printed alone), so a cause the
/// message before it ends with is not repeated.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(2);
        let lab = cgroups::Error::Io {
            op: "create cgroup".into(),
            path: "/sys/fs/cgroup/pids/berth/x".into(),
            source: io,
        };
        let error = anyhow::Error::new(lab).context("cannot start x");
        assert_eq!(
            describe(&error),
            "cannot start x: create cgroup /sys/fs/cgroup/pids/berth/x: \
             No such file or directory (os error 2)"
        );
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))
    }

    #[test]
    fn run_flags_like_docker() {
        let cli = parse(&[
            "run",
            "-d",
            "--rm",
            "-e",
            "A=1",
            "-h",
            "box",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "echo -n hi",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!()
        };
        assert!(r.detach && r.rm);
        assert_eq!(r.hostname.as_deref(), Some("box"));
        assert_eq!(r.image, "busybox");
        // Flags after the image belong to the command.
        assert_eq!(r.command, vec!["sh", "-c", "echo -n hi"]);
        let cli = parse(&["run", "-it", "busybox"]).unwrap();
        let Command::Run(r) = cli.command else {
            panic!()
        };
        assert!(r.interactive && r.tty);
    }

    #[test]
    fn bad_options_are_refused() {
        let opts = |args: &[&str]| {
            let Command::Run(r) = parse(args).unwrap().command else {
                panic!()
            };
            r.options()
        };
        assert!(
            opts(&["run", "--rm", "--restart", "always", "busybox"])
                .unwrap_err()
                .to_string()
                .contains("conflicting")
        );
        assert!(opts(&["run", "-u", "a:b:c", "busybox"]).is_err());
        assert!(
            opts(&["run", "-h", &"x".repeat(65), "busybox"])
                .unwrap_err()
                .to_string()
                .contains("65 bytes")
        );
        assert!(
            opts(&["run", "-p", "80:80/sctp", "busybox"])
                .unwrap_err()
                .to_string()
                .contains("invalid port spec")
        );
        assert!(
            opts(&["run", "--ip", "10.0.0.300", "busybox"])
                .unwrap_err()
                .to_string()
                .contains("invalid --ip")
        );
        assert!(opts(&["run", "--restart", "sometimes", "busybox"]).is_err());
        assert!(parse(&["run", "--frobnicate", "busybox"]).is_err());
        assert!(parse(&["exec", "c"]).is_err());
    }
}
