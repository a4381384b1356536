//! `berth build` (lab 05): a Dockerfile, step by step, into an image.
//!
//! Each instruction makes a new image from the one before: ENV, CMD, LABEL
//! and the like change only the config; RUN runs its command in a
//! temporary container of the image so far, and that container's writable
//! layer becomes the next layer; COPY and ADD pack the files they copy into
//! a layer directly, without a container. Every step's image is stored, and
//! the build cache maps a step's *cache key* to it: the image it started
//! from, the instruction with its variables expanded, the build arguments a
//! RUN can see, and for COPY/ADD a checksum of the files copied. A step
//! whose key is known is not run again ("Using cache"), and since every key
//! includes the image before it, the first changed step misses and every
//! step after it misses too. That is why a Dockerfile copies the files that
//! change most as late as it can.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use images::dockerfile::{Dockerfile, Instruction, Kind, Stage};
use oci_spec::image::{Config, ImageConfigurationBuilder, RootFsBuilder};

use crate::container::CreateRequest;
use crate::image::{Image, ImageStore, LayerInfo, Reference};
use crate::options::{NetworkMode, RunOptions};
use crate::state::Store;

/// `berth build`.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name the image: NAME[:TAG]. May be given several times.
    #[arg(short, long = "tag")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Set a build argument: NAME=VALUE, or NAME to take it from the
    /// environment.
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build this stage of a multi-stage Dockerfile (by name or number).
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, using no cached result.
    #[arg(long)]
    pub no_cache: bool,
    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// The network of RUN steps: bridge (default for root), none or host.
    #[arg(long)]
    pub network: Option<String>,
    /// Set metadata on the image: KEY=VALUE.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// The build context: a directory whose files COPY and ADD may use.
    pub context: PathBuf,
}

/// What a build step prints, unless `-q`.
struct Out {
    quiet: bool,
}

impl Out {
    fn line(&self, text: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", text.as_ref());
        }
    }
}

/// The variables of a stage: ARGs declared in it and the image's ENV.
#[derive(Clone, Default)]
struct Vars {
    /// ARG values in scope (declared in this stage, or global for FROM).
    args: BTreeMap<String, String>,
}

/// One stage being built.
struct StageState {
    image: Image,
    vars: Vars,
    /// ENTRYPOINT, CMD and SHELL so far (lab 05's rules for combining them).
    command: images::entrypoint::ImageCommand,
}

impl StageState {
    fn config(&self) -> Config {
        self.image.config.config().clone().unwrap_or_default()
    }

    /// The value of a variable: ENV wins over ARG, as in Docker.
    fn lookup(&self, name: &str) -> Option<String> {
        let env = self.config().env().clone().unwrap_or_default();
        env.iter()
            .rev()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
            .or_else(|| self.vars.args.get(name).cloned())
    }
}

/// The time every record of this build gets: `SOURCE_DATE_EPOCH` if set
/// (reproducible builds: the same input gives the same digests), else now.
fn build_time() -> Result<(String, Option<u64>)> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            let secs: u64 = s.trim().parse().map_err(|_| {
                anyhow!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds since 1970")
            })?;
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            Ok((humantime::format_rfc3339_seconds(t).to_string(), Some(secs)))
        }
        Err(_) => Ok((
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            None,
        )),
    }
}

/// `NAME=VALUE` flags (or `NAME`, taken from the environment) as a map.
fn parse_build_args(flags: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for f in flags {
        match f.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            None if !f.is_empty() => {
                if let Ok(v) = std::env::var(f) {
                    out.insert(f.clone(), v);
                }
            }
            _ => bail!("invalid --build-arg {f:?}: write NAME=VALUE"),
        }
    }
    Ok(out)
}

/// The empty image `FROM scratch` starts from.
fn scratch(images: &ImageStore) -> Result<Image> {
    let config = ImageConfigurationBuilder::default()
        .architecture(oci_spec::image::Arch::Amd64)
        .os(oci_spec::image::Os::Linux)
        .config(Config::default())
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(Vec::<String>::new())
                .build()?,
        )
        .build()?;
    Ok(images.blobs().put_image(&config, Vec::new())?)
}

/// The stages the target needs: itself and, through `FROM stage` and
/// `COPY --from=stage`, the stages it copies from, in file order.
fn needed_stages<'a>(file: &'a Dockerfile, target: &'a Stage) -> BTreeSet<usize> {
    let mut needed = BTreeSet::new();
    let mut todo = vec![target.index];
    while let Some(i) = todo.pop() {
        if !needed.insert(i) {
            continue;
        }
        let stage = &file.stages[i];
        let mut refs: Vec<String> = vec![stage.base().image.text.clone()];
        for ins in &stage.instructions {
            if let Kind::Copy(t) = &ins.kind
                && let Some(from) = &t.from
            {
                refs.push(from.text.clone());
            }
        }
        for r in refs {
            if let Some(s) = file.stage(&r)
                && s.index < i
            {
                todo.push(s.index);
            }
        }
    }
    needed
}

// ANCHOR: build
/// Builds the image a Dockerfile describes and names it with every `-t`.
/// Returns the image id.
pub fn build(store: &Store, args: &BuildArgs) -> Result<String> {
    let out = Out { quiet: args.quiet };
    let context_dir = args.context.canonicalize().with_context(|| {
        format!(
            "unable to prepare context: path {:?} not found",
            args.context.display()
        )
    })?;
    if !context_dir.is_dir() {
        bail!(
            "unable to prepare context: {} is not a directory (give the directory whose files the Dockerfile copies)",
            args.context.display()
        );
    }
    let dockerfile_path = match &args.file {
        Some(f) if f.is_absolute() => f.clone(),
        Some(f) => std::env::current_dir()?.join(f),
        None => context_dir.join("Dockerfile"),
    };
    let text = std::fs::read_to_string(&dockerfile_path).with_context(|| {
        format!(
            "cannot read the Dockerfile {} (name another with -f)",
            dockerfile_path.display()
        )
    })?;
    let shown = args
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "Dockerfile".into());
    let file = Dockerfile::parse(&shown, &text)?;
    for w in &file.warnings {
        eprintln!("[Warning] {shown}:{}: {}", w.pos, w.message);
    }
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let build_args = parse_build_args(&args.build_args)?;
    let network = match args.network.as_deref() {
        None | Some("default") => None,
        Some(n) => Some(n.parse::<NetworkMode>()?),
    };
    let ignore = match std::fs::read_to_string(context_dir.join(".dockerignore")) {
        Ok(t) => images::context::Ignore::parse(&t)
            .map_err(|e| anyhow!("{}: {e}", context_dir.join(".dockerignore").display()))?,
        Err(_) => images::context::Ignore::none(),
    };
    let context = images::context::Context::open(&context_dir, ignore)?;

    let images = ImageStore::open(&store.root)?;
    let target = file.target(args.target.as_deref())?;
    let needed = needed_stages(&file, target);
    let (created, epoch) = build_time()?;
    let mut builder = Builder {
        store,
        images: &images,
        file: &file,
        context: &context,
        out: &out,
        build_args: &build_args,
        used_args: BTreeSet::new(),
        no_cache: args.no_cache,
        network,
        created,
        epoch,
        built: BTreeMap::new(),
        step: 0,
        steps: file
            .stages
            .iter()
            .filter(|s| needed.contains(&s.index))
            .map(|s| 1 + s.instructions.len())
            .sum(),
    };
    // Global ARGs: usable in FROM lines.
    let mut global = Vars::default();
    for ins in &file.global_args {
        if let Kind::Arg(defs) = &ins.kind {
            for d in defs {
                let lookup = |n: &str| global.args.get(n).cloned();
                let value = match build_args.get(&d.name.text) {
                    Some(v) => Some(v.clone()),
                    None => d
                        .default
                        .as_ref()
                        .map(|w| w.expand(&file.file, lookup, file.escape))
                        .transpose()?,
                };
                builder.used_args.insert(d.name.text.clone());
                if let Some(v) = value {
                    global.args.insert(d.name.text.clone(), v);
                }
            }
        }
    }
    let mut last = None;
    for stage in file.stages.iter().filter(|s| needed.contains(&s.index)) {
        let image = builder.stage(stage, &global)?;
        builder.built.insert(stage.index, image.clone());
        last = Some(image);
    }
    let mut image = last.expect("a Dockerfile has at least one stage");
    if !args.labels.is_empty() {
        let mut config = image.config.config().clone().unwrap_or_default();
        let mut labels = config.labels().clone().unwrap_or_default();
        for l in &args.labels {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            labels.insert(k.to_string(), v.to_string());
        }
        config.set_labels(Some(labels));
        let info = LayerInfo {
            created_by: format!("LABEL {}", args.labels.join(" ")),
            author: None,
            comment: None,
            xattr: crate::storage::storage_xattr(false),
            healthcheck: None,
        };
        image = images.derive(&image, None, config, &builder.created, &info)?;
    }
    let unused: Vec<&String> = build_args
        .keys()
        .filter(|k| !builder.used_args.contains(*k))
        .collect();
    if !unused.is_empty() {
        eprintln!(
            "[Warning] One or more build-args {unused:?} were not consumed: no ARG of the Dockerfile declares them"
        );
    }
    out.line(format!("Successfully built {}", image.short_id()));
    for t in &tags {
        images.tag(t, &image)?;
        out.line(format!("Successfully tagged {}", t.familiar()));
    }
    if args.quiet {
        println!("{}", image.id);
    }
    Ok(image.id)
}
// ANCHOR_END: build

/// The state of one build.
struct Builder<'a> {
    store: &'a Store,
    images: &'a ImageStore,
    file: &'a Dockerfile,
    context: &'a images::context::Context,
    out: &'a Out,
    build_args: &'a BTreeMap<String, String>,
    used_args: BTreeSet<String>,
    no_cache: bool,
    network: Option<NetworkMode>,
    created: String,
    epoch: Option<u64>,
    /// The image each finished stage made, by stage index.
    built: BTreeMap<usize, Image>,
    step: usize,
    steps: usize,
}

/// What a step does once its cache key missed.
enum Action {
    /// A new config only.
    Config(Box<Config>),
    /// A command in a temporary container; its changes are the layer.
    Run(Vec<String>),
    /// Files copied into a staging directory that becomes the layer.
    Files(Box<Transfer>),
}

/// What a COPY or ADD does, its variables expanded.
struct Transfer {
    add: bool,
    sources: Vec<String>,
    dest: String,
    workdir: String,
    chown: Option<String>,
    chmod: Option<String>,
    /// With `--from`: a copy of that stage's or image's filesystem.
    from: Option<(tempfile::TempDir, images::context::Context)>,
}

impl Builder<'_> {
    fn say_step(&mut self, ins: &Instruction) {
        self.step += 1;
        self.out.line(format!(
            "Step {}/{} : {}",
            self.step, self.steps, ins.original
        ));
    }

    fn expand(&self, state: &StageState, word: &images::dockerfile::Word) -> Result<String> {
        Ok(word.expand(&self.file.file, |n| state.lookup(n), self.file.escape)?)
    }

    /// The image a FROM names: an earlier stage, `scratch`, or an image in
    /// the store (the built-in busybox is made on first use).
    fn base(&mut self, stage: &Stage, global: &Vars) -> Result<Image> {
        let base = stage.base();
        let name = base.image.expand(
            &self.file.file,
            |n| global.args.get(n).cloned(),
            self.file.escape,
        )?;
        if let Some(s) = self.file.stage(&name)
            && s.index < stage.index
        {
            return self
                .built
                .get(&s.index)
                .cloned()
                .ok_or_else(|| anyhow!("stage {name} was not built"));
        }
        if name == "scratch" {
            return scratch(self.images);
        }
        match crate::container::ensure_image(self.images, &name) {
            Ok(i) => Ok(i),
            Err(_) => Err(anyhow!(
                "{}",
                base.image.error(
                    &self.file.file,
                    format!(
                        "no such image {name:?} here: berth builds use local images; pull it first (berth pull {name}) or build it"
                    )
                )
            )),
        }
    }

    fn stage(&mut self, stage: &Stage, global: &Vars) -> Result<Image> {
        self.say_step(&stage.from);
        let image = self.base(stage, global)?;
        self.out.line(format!(" ---> {}", image.short_id()));
        let config = image.config.config().clone().unwrap_or_default();
        let command = images::entrypoint::ImageCommand::inherit(
            config.entrypoint().clone().unwrap_or_default(),
            config.cmd().clone().unwrap_or_default(),
            images::entrypoint::DEFAULT_SHELL
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        let mut state = StageState {
            image,
            vars: Vars::default(),
            command,
        };
        for ins in &stage.instructions {
            self.say_step(ins);
            self.instruction(&mut state, ins, global).map_err(|e| {
                e.context(format!("{}:{}: {}", self.file.file, ins.pos, ins.original))
            })?;
            self.out.line(format!(" ---> {}", state.image.short_id()));
        }
        Ok(state.image)
    }

    fn instruction(
        &mut self,
        state: &mut StageState,
        ins: &Instruction,
        global: &Vars,
    ) -> Result<()> {
        let mut config = state.config();
        let file = self.file;
        // What the cache key adds to the parent image and the instruction.
        let mut extra = String::new();
        let mut text = ins.original.clone();
        let mut healthcheck = None;
        let action = match &ins.kind {
            Kind::From(_) => unreachable!("FROM starts a stage"),
            Kind::Arg(defs) => {
                for d in defs {
                    self.used_args.insert(d.name.text.clone());
                    let value = match self.build_args.get(&d.name.text) {
                        Some(v) => Some(v.clone()),
                        None => match &d.default {
                            Some(w) => Some(self.expand(state, w)?),
                            // `ARG NAME` in a stage takes the global value.
                            None => global.args.get(&d.name.text).cloned(),
                        },
                    };
                    match value {
                        Some(v) => state.vars.args.insert(d.name.text.clone(), v),
                        None => state.vars.args.remove(&d.name.text),
                    };
                }
                // An ARG changes no image; it changes what later steps see.
                return Ok(());
            }
            Kind::Env(pairs) => {
                let mut env = config.env().clone().unwrap_or_default();
                let mut expanded = Vec::new();
                for p in pairs {
                    let k = self.expand(state, &p.key)?;
                    let v = self.expand(state, &p.value)?;
                    expanded.push(format!("{k}={v}"));
                }
                for kv in &expanded {
                    let k = kv.split('=').next().unwrap_or_default();
                    env.retain(|e| e.split('=').next() != Some(k));
                    env.push(kv.clone());
                }
                text = format!("ENV {}", expanded.join(" "));
                config.set_env(Some(env));
                Action::Config(Box::new(config))
            }
            Kind::Label(pairs) => {
                let mut labels = config.labels().clone().unwrap_or_default();
                for p in pairs {
                    labels.insert(self.expand(state, &p.key)?, self.expand(state, &p.value)?);
                }
                config.set_labels(Some(labels));
                Action::Config(Box::new(config))
            }
            Kind::Expose(words) => {
                let mut ports = config.exposed_ports().clone().unwrap_or_default();
                for w in words {
                    for p in images::dockerfile::exposed_ports(&self.expand(state, w)?)
                        .map_err(|e| anyhow!("{}", w.error(&file.file, e.to_string())))?
                    {
                        if !ports.contains(&p) {
                            ports.push(p);
                        }
                    }
                }
                config.set_exposed_ports(Some(ports));
                Action::Config(Box::new(config))
            }
            Kind::Cmd(_) | Kind::Entrypoint(_) | Kind::Shell(_) => {
                // A new ENTRYPOINT drops a CMD the base image had (it was
                // written for another program); a CMD of this stage stays.
                state.command.apply(&ins.kind);
                let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
                config.set_entrypoint(some(&state.command.entrypoint));
                config.set_cmd(some(&state.command.cmd));
                Action::Config(Box::new(config))
            }
            Kind::User(w) => {
                config.set_user(Some(self.expand(state, w)?));
                Action::Config(Box::new(config))
            }
            Kind::Workdir(w) => {
                let dir = self.expand(state, w)?;
                let dir = if dir.starts_with('/') {
                    dir
                } else {
                    let base = config.working_dir().clone().unwrap_or_else(|| "/".into());
                    format!("{}/{dir}", base.trim_end_matches('/'))
                };
                config.set_working_dir(Some(dir));
                Action::Config(Box::new(config))
            }
            Kind::Volume(words) => {
                let mut volumes = config.volumes().clone().unwrap_or_default();
                for w in words {
                    let v = self.expand(state, w)?;
                    if !volumes.contains(&v) {
                        volumes.push(v);
                    }
                }
                config.set_volumes(Some(volumes));
                Action::Config(Box::new(config))
            }
            Kind::StopSignal(w) => {
                config.set_stop_signal(Some(self.expand(state, w)?));
                Action::Config(Box::new(config))
            }
            Kind::Healthcheck(h) => {
                // Docker's `Healthcheck` field, which the OCI config lacks:
                // kept beside the OCI fields, and by every image built on
                // this one.
                healthcheck = Some(healthcheck_json(h));
                Action::Config(Box::new(config))
            }
            Kind::Maintainer(_) | Kind::Onbuild(_) => {
                // Recorded in the history only: ONBUILD has no field in
                // the OCI config, and MAINTAINER is deprecated for a label.
                Action::Config(Box::new(config))
            }
            Kind::Run(run) => {
                let command =
                    images::entrypoint::config_command(&run.command, &state.command.shell);
                // Build arguments are in a RUN's environment, and so in its
                // cache key, without being kept in the image.
                let args: Vec<String> = state
                    .vars
                    .args
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                extra = args.join("\n");
                text = format!("RUN {}", command.join(" "));
                Action::Run(command)
            }
            Kind::Copy(t) | Kind::Add(t) => {
                let add = matches!(ins.kind, Kind::Add(_));
                let sources = t
                    .sources
                    .iter()
                    .map(|w| self.expand(state, w))
                    .collect::<Result<Vec<_>>>()?;
                let dest = self.expand(state, &t.dest)?;
                let chown = t
                    .chown
                    .as_ref()
                    .map(|w| self.expand(state, w))
                    .transpose()?;
                let chmod = t
                    .chmod
                    .as_ref()
                    .map(|w| self.expand(state, w))
                    .transpose()?;
                let workdir = config.working_dir().clone().unwrap_or_else(|| "/".into());
                let (context, from_id) = match &t.from {
                    Some(from) => {
                        let name = self.expand(state, from)?;
                        let image = match file.stage(&name) {
                            Some(s) => self.built.get(&s.index).cloned().ok_or_else(|| {
                                anyhow!("stage {name:?} is not built before this one")
                            })?,
                            None => crate::container::ensure_image(self.images, &name).map_err(
                                |_| {
                                    anyhow!(
                                        "{}",
                                        from.error(
                                            &file.file,
                                            format!("no stage or image called {name:?}")
                                        )
                                    )
                                },
                            )?,
                        };
                        (Some(self.rootfs_of(&image)?), Some(image.id))
                    }
                    None => (None, None),
                };
                let ctx: &images::context::Context = match &context {
                    Some((_, c)) => c,
                    None => self.context,
                };
                let checksum = ctx.checksum(&sources)?;
                extra = format!("{}\n{checksum}", from_id.unwrap_or_default());
                text = format!(
                    "{} {}{}{} {}",
                    if add { "ADD" } else { "COPY" },
                    chown
                        .as_deref()
                        .map(|c| format!("--chown={c} "))
                        .unwrap_or_default(),
                    chmod
                        .as_deref()
                        .map(|c| format!("--chmod={c} "))
                        .unwrap_or_default(),
                    sources.join(" "),
                    dest
                );
                Action::Files(Box::new(Transfer {
                    add,
                    sources,
                    dest,
                    workdir,
                    chown,
                    chmod,
                    from: context,
                }))
            }
        };
        let key = images::digest::sha256(
            format!(
                "{}\n{}\n{}\n{}",
                state.image.id,
                text,
                state.command.shell.join(" "),
                extra
            )
            .as_bytes(),
        );
        if !self.no_cache
            && let Some(hit) = self.images.blobs().cache_get(&key)?
        {
            self.out.line(" ---> Using cache");
            state.image = hit;
            return Ok(());
        }
        let info = LayerInfo {
            created_by: text,
            author: None,
            comment: None,
            xattr: crate::storage::storage_xattr(!nix::unistd::geteuid().is_root()),
            healthcheck,
        };
        let image = match action {
            Action::Config(config) => {
                self.images
                    .derive(&state.image, None, *config, &self.created, &info)?
            }
            Action::Run(command) => self.run(state, command, info)?,
            Action::Files(t) => {
                let staging = tempfile::Builder::new()
                    .prefix(".build-")
                    .tempdir_in(&self.store.root)?;
                self.transfer(&state.image, &t, staging.path())?;
                let tar = overlay::layer::tar_upper(
                    staging.path(),
                    &overlay::layer::TarOptions { mtime: self.epoch },
                    overlay::whiteout::Xattr::Trusted,
                )?;
                self.images.derive(
                    &state.image,
                    Some((&tar, info.xattr)),
                    state.config(),
                    &self.created,
                    &info,
                )?
            }
        };
        self.images.blobs().cache_put(&key, &image.digest)?;
        state.image = image;
        Ok(())
    }

    // ANCHOR: copy_step
    /// A COPY or ADD step: the files go into an empty staging directory,
    /// which then is the layer. Names in `--chown` are looked up in the
    /// image's own `/etc/passwd` and `/etc/group`.
    fn transfer(&self, image: &Image, t: &Transfer, staging: &Path) -> Result<()> {
        let lowers = self.lowers(image)?;
        let users = lowers
            .iter()
            .find(|l| l.join("etc/passwd").is_file())
            .cloned()
            .unwrap_or_else(|| staging.to_path_buf());
        let options = images::context::CopyOptions {
            chown: t
                .chown
                .as_deref()
                .map(|c| images::context::parse_chown(c, &users))
                .transpose()?,
            chmod: t
                .chmod
                .as_deref()
                .map(images::context::parse_chmod)
                .transpose()?,
        };
        let context = match &t.from {
            Some((_, c)) => c,
            None => self.context,
        };
        // `.` (and `dir/.`) name a directory, as BuildKit reads them.
        let dest = if t.dest == "." || t.dest == ".." || t.dest.ends_with("/.") {
            format!("{}/", t.dest)
        } else {
            t.dest.clone()
        };
        // The staging directory starts empty, so the directories the image
        // already has on the way to the destination are made there first:
        // COPY then sees `/app` as the directory it is in the image, and
        // puts a file into it (keep_parents gives them their owner and mode).
        existing_parents(staging, &lowers, &dest, &t.workdir)?;
        if t.add {
            images::context::add(context, &t.sources, &dest, &t.workdir, staging, &options)?;
        } else {
            images::context::copy(context, &t.sources, &dest, &t.workdir, staging, &options)?;
        }
        keep_parents(staging, &lowers, &dest, &t.workdir)
    }
    // ANCHOR_END: copy_step

    /// The unpacked layers of an image, top first.
    fn lowers(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let mut dirs = Vec::new();
        for i in (0..image.diff_ids().len()).rev() {
            dirs.push(self.images.unpacked_layer(image, i)?);
        }
        Ok(dirs)
    }

    /// An image's whole filesystem as a directory (a copy, with lab 03's
    /// vfs driver), for `COPY --from`.
    fn rootfs_of(&self, image: &Image) -> Result<(tempfile::TempDir, images::context::Context)> {
        let dir = tempfile::Builder::new()
            .prefix(".from-")
            .tempdir_in(&self.store.root)?;
        let lowers = self.lowers(image)?;
        let xattr = crate::storage::storage_xattr(!nix::unistd::geteuid().is_root());
        overlay::vfs::populate(&lowers, xattr, dir.path(), &overlay::vfs::same_ids)?;
        let ctx = images::context::Context::open(dir.path(), images::context::Ignore::none())?;
        Ok((dir, ctx))
    }

    // ANCHOR: run_step
    /// A RUN step: a temporary container of the image so far runs the
    /// command with the stage's environment, user and working directory;
    /// if it succeeds, its writable layer is the step's layer.
    fn run(&self, state: &StageState, command: Vec<String>, info: LayerInfo) -> Result<Image> {
        let config = state.config();
        let rootless = !nix::unistd::geteuid().is_root();
        let mut env = config.env().clone().unwrap_or_default();
        for (k, v) in &state.vars.args {
            if !env.iter().any(|e| e.split('=').next() == Some(k)) {
                env.push(format!("{k}={v}"));
            }
        }
        let options = RunOptions {
            env,
            workdir: config.working_dir().clone().unwrap_or_default(),
            user: config.user().clone().unwrap_or_default(),
            // The image's ENTRYPOINT does not wrap a RUN.
            entrypoint: Some(Vec::new()),
            network: match &self.network {
                Some(n) => n.clone(),
                None => crate::options::parse_networks(&[], rootless)?.0,
            },
            rootless,
            stop_signal: "SIGTERM".into(),
            stop_timeout: 10,
            ..RunOptions::default()
        };
        let c = crate::container::create(
            self.store,
            CreateRequest {
                image: state.image.id.clone(),
                name: None,
                command: command.clone(),
                options,
                // A RUN step is not checked, whatever the image says.
                health: crate::health::HealthFlags {
                    none: true,
                    ..Default::default()
                },
            },
        )?;
        self.out.line(format!(" ---> Running in {}", c.short_id()));
        let result = (|| -> Result<Image> {
            let code = crate::monitor::start_foreground(self.store, &c.id, false)?;
            if code != 0 {
                bail!(
                    "The command '{}' returned a non-zero code: {code}",
                    command.join(" ")
                );
            }
            let c = self.store.load(&c.id)?;
            let tar = crate::commit::layer_with(self.store, &c, self.epoch)?;
            let info = LayerInfo {
                xattr: c.storage.xattr(),
                ..info
            };
            self.images.derive(
                &state.image,
                Some((&tar, info.xattr)),
                config.clone(),
                &self.created,
                &info,
            )
        })();
        let mounts = self
            .store
            .load(&c.id)
            .map(|c| c.options.mounts)
            .unwrap_or_default();
        crate::ops::remove(self.store, &c.id, true)?;
        crate::volumes::remove_anonymous(self.store, &mounts);
        result
    }
    // ANCHOR_END: run_step
}

/// A HEALTHCHECK as Docker writes it into an image config: `Test`, and the
/// times in nanoseconds and `Retries` only when the Dockerfile gave them.
fn healthcheck_json(h: &images::dockerfile::Health) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("Test".into(), serde_json::json!(h.test()));
    if let images::dockerfile::Health::Check(c) = h {
        let times = [
            ("Interval", c.interval),
            ("Timeout", c.timeout),
            ("StartPeriod", c.start_period),
            ("StartInterval", c.start_interval),
        ];
        for (name, time) in times {
            if let Some(t) = time {
                out.insert(name.into(), serde_json::json!(t.as_nanos() as u64));
            }
        }
        if let Some(r) = c.retries {
            out.insert("Retries".into(), serde_json::json!(r));
        }
    }
    serde_json::Value::Object(out)
}

/// The directories on the way to a COPY destination in the image, from the
/// top (`usr`, `usr/local`, ...); a relative destination starts at the
/// WORKDIR.
fn destination(dest: &str, workdir: &str) -> Vec<PathBuf> {
    let full = if dest.starts_with('/') {
        PathBuf::from(dest)
    } else {
        Path::new(workdir).join(dest)
    };
    let mut path = PathBuf::new();
    full.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .map(|c| {
            path.push(c);
            path.clone()
        })
        .collect()
}

/// What the image's layers have at `rel`: the topmost layer that has it
/// decides.
fn in_layers(lowers_top_first: &[PathBuf], rel: &Path) -> Option<std::fs::Metadata> {
    lowers_top_first
        .iter()
        .find_map(|l| std::fs::symlink_metadata(l.join(rel)).ok())
}

/// Makes in `root` each directory on the way to `dest` (and `dest` itself)
/// that the image's layers have as a directory.
fn existing_parents(
    root: &Path,
    lowers_top_first: &[PathBuf],
    dest: &str,
    workdir: &str,
) -> Result<()> {
    for path in destination(dest, workdir) {
        match in_layers(lowers_top_first, &path) {
            Some(m) if m.is_dir() => std::fs::create_dir_all(root.join(&path))?,
            _ => break,
        }
    }
    Ok(())
}

/// Directories COPY made on the way to its destination take the owner and
/// mode the image already has for them, so copying into `/usr/local/bin`
/// does not change `/usr`.
pub fn keep_parents(
    root: &Path,
    lowers_top_first: &[PathBuf],
    dest: &str,
    workdir: &str,
) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for path in destination(dest, workdir) {
        let here = root.join(&path);
        match std::fs::symlink_metadata(&here) {
            Ok(meta) if meta.is_dir() => {}
            _ => break,
        }
        if let Some(old) = in_layers(lowers_top_first, &path).filter(|m| m.is_dir()) {
            std::fs::set_permissions(&here, std::fs::Permissions::from_mode(old.mode() & 0o7777))?;
            std::os::unix::fs::lchown(&here, Some(old.uid()), Some(old.gid()))?;
        }
    }
    Ok(())
}
