//! `pull`, `push`, `login` and `logout` (lab 05): the engine's store on
//! one side, the lab's registry client on the other. A pull asks for the
//! manifest (through an index to this machine's platform), then for the
//! config and each layer the store does not have, each checked against its
//! digest on the way in; only when every blob is in does the manifest enter
//! the index and get its name. A push goes the other way: blobs first
//! (skipping those the registry has, mounting those another repository of
//! it has), the manifest last, so a registry never names an image it does
//! not hold whole.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use images::auth::{CredentialStore, Credentials};
use images::registry::{BlobSource, Client, Platform};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_spec::image::{ImageManifest, MediaType};

use crate::image::{Image, ImageStore, Reference};
use crate::state::Store;

/// `berth pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Only errors, and the image's name at the end.
    #[arg(short, long)]
    pub quiet: bool,
    /// The platform to pull from an image index.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// NAME[:TAG|@DIGEST]
    pub image: String,
    /// Report on standard error and leave out the last line (the name):
    /// how `run` and `create` pull an image they do not have, so that
    /// standard output stays the container's.
    #[arg(skip)]
    pub implicit: bool,
}

/// `berth push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG]
    pub image: String,
}

/// `berth login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The user name (required).
    #[arg(short, long)]
    pub username: Option<String>,
    /// The password: visible to other users in `ps`, so prefer
    /// --password-stdin.
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// The registry (`localhost:5000`); Docker Hub if left out.
    pub server: Option<String>,
}

/// Where credentials are kept: `$BERTH_CONFIG/config.json`, else
/// `~/.berth/config.json`, in Docker's format.
pub fn credentials_path() -> PathBuf {
    match std::env::var_os("BERTH_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".berth/config.json")
        }
    }
}

/// Registries spoken to over plain HTTP besides localhost:
/// `BERTH_INSECURE_REGISTRIES`, comma separated, like Docker's
/// `insecure-registries`.
fn insecure() -> Vec<String> {
    std::env::var("BERTH_INSECURE_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn client(registry: &str) -> Result<Client> {
    let insecure = insecure();
    let list: Vec<&str> = insecure.iter().map(String::as_str).collect();
    let credentials = CredentialStore::new(credentials_path()).get(registry)?;
    Ok(Client::new(registry, &list)?.with_credentials(credentials))
}

/// A progress bar per blob when the output is a terminal; nothing drawn
/// otherwise (logs and tests get the plain lines).
fn bars(quiet: bool) -> MultiProgress {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    } else {
        MultiProgress::new()
    }
}

fn bar(bars: &MultiProgress, digest: &str, size: u64, verb: &str) -> ProgressBar {
    let bar = bars.add(ProgressBar::new(size));
    bar.set_style(
        ProgressStyle::with_template("{prefix}: {msg} [{bar:30}] {bytes}/{total_bytes}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(short(digest));
    bar.set_message(verb.to_string());
    bar
}

fn short(digest: &str) -> String {
    digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
}

// ANCHOR: pull
/// `berth pull NAME`: the image's blobs into the store, then its name.
/// Returns the image.
pub fn pull(store: &Store, args: &PullArgs) -> Result<Image> {
    let reference = Reference::parse(&args.image)?;
    let platform: Platform = args.platform.parse()?;
    let images = ImageStore::open(&store.root)?;
    let client = client(reference.registry())?;
    let repo = reference.repository();
    let say = |s: String| {
        if args.implicit {
            eprintln!("{s}");
        } else if !args.quiet {
            println!("{s}");
        }
    };
    let resolved = client.resolve(repo, reference.tag_or_digest(), &platform)?;
    say(format!(
        "{}: Pulling from {repo}",
        reference.tag().or(reference.digest()).unwrap_or("latest")
    ));
    let manifest = ImageManifest::from_reader(&resolved.manifest.bytes[..])
        .context("the registry sent an image manifest that is not valid JSON of the right shape")?;
    let blobs = images.blobs();
    let progress = bars(args.quiet);
    let mut fetched = 0;
    for (i, desc) in std::iter::once(manifest.config())
        .chain(manifest.layers())
        .enumerate()
    {
        let digest = desc.digest().to_string();
        let is_layer = i > 0;
        if blobs.has_blob(&digest) {
            if is_layer {
                say(format!("{}: Already exists", short(&digest)));
            }
            continue;
        }
        let bar = bar(&progress, &digest, desc.size(), "Downloading");
        let mut writer = blobs.blob_writer()?;
        client.blob(repo, &digest, &mut writer, Some(&bar))?;
        writer.commit(Some(&digest))?;
        bar.finish_and_clear();
        fetched += 1;
        if is_layer {
            say(format!("{}: Pull complete", short(&digest)));
        }
    }
    let media_type = MediaType::from(resolved.manifest.media_type.as_str());
    let image = blobs.add_manifest(&resolved.manifest.bytes, media_type)?;
    // Unpack now, so a layer that cannot be unpacked (a hostile one) is
    // found at pull time, not when a container first needs it.
    for i in 0..image.diff_ids().len() {
        if let Err(e) = images.unpacked_layer(&image, i) {
            let _ = blobs.delete(&std::collections::BTreeSet::from([image.digest.clone()]));
            let _ = blobs.collect_garbage();
            return Err(e.context(format!("cannot use {}", reference.familiar())));
        }
    }
    // New to the store, or the name moved: Docker says "Downloaded newer
    // image" for both, even when every blob was here already.
    let before = images.find(&reference.to_string())?;
    let newer = fetched > 0 || before.is_none_or(|b| b.digest != image.digest);
    if reference.tag().is_some() {
        images.tag(
            &reference.with_tag(reference.tag().unwrap_or("latest")),
            &image,
        )?;
    }
    say(format!("Digest: {}", resolved.digest()));
    say(format!(
        "Status: {} for {}",
        if newer {
            "Downloaded newer image"
        } else {
            "Image is up to date"
        },
        reference.familiar()
    ));
    if !args.implicit {
        println!("{reference}");
    }
    images.blobs().image(&image.digest).map_err(Into::into)
}
// ANCHOR_END: pull

/// When `run` and `create` pull their image: Docker's `--pull` values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Only when the store does not have the image.
    #[default]
    Missing,
    /// Every time, so a moved tag is followed.
    Always,
    /// Never: a missing image is an error.
    Never,
}

/// Pulls the image `run` or `create` is about to use, when `policy` asks
/// for it: always, or when the store does not have it. A missing
/// `busybox:latest` is left to the built-in image, made from the host.
pub fn pull_for_run(store: &Store, name: &str, policy: PullPolicy) -> Result<()> {
    let images = ImageStore::open(&store.root)?;
    let missing = images.find(name)?.is_none();
    let reference = match Reference::parse(name) {
        Ok(r) => r,
        // An id found in the store needs no name; a malformed name does.
        Err(_) if !missing => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let builtin = crate::container::is_builtin(&reference);
    match policy {
        PullPolicy::Never => return Ok(()),
        PullPolicy::Missing if !missing || builtin => return Ok(()),
        _ => {}
    }
    if missing {
        eprintln!("Unable to find image '{}' locally", reference.familiar());
    }
    let args = PullArgs {
        quiet: false,
        platform: "linux/amd64".into(),
        image: name.to_string(),
        implicit: true,
    };
    pull(store, &args).map(drop).map_err(|e| {
        let fix = if builtin {
            "use --pull missing for the built-in busybox"
        } else {
            "build it (berth build -t NAME .), load it (berth load -i FILE), or pull it from a registry this machine reaches"
        };
        e.context(format!("cannot pull {}: {fix}", reference.familiar()))
    })
}

// ANCHOR: push
/// `berth push NAME`: the image's blobs, then its manifest under the tag.
pub fn push(store: &Store, args: &PushArgs) -> Result<()> {
    let reference = Reference::parse(&args.image)?;
    if reference.digest().is_some() {
        bail!("cannot push {}: push a tag, not a digest", args.image);
    }
    let images = ImageStore::open(&store.root)?;
    let Some(image) = images.find(&reference.to_string())? else {
        bail!(
            "An image does not exist locally with the tag: {} (name it first: berth tag IMAGE {})",
            reference.familiar_name(),
            reference.familiar()
        );
    };
    let client = client(reference.registry())?;
    let repo = reference.repository();
    let say = |s: String| {
        if !args.quiet {
            println!("{s}");
        }
    };
    say(format!(
        "The push refers to repository [{}]",
        reference.familiar_name()
    ));
    // A layer this image shares with another image of the same registry
    // can be mounted from that image's repository instead of uploaded.
    let mount_from = |digest: &str| -> Option<String> {
        images.list().ok()?.into_iter().find_map(|other| {
            other
                .manifest
                .layers()
                .iter()
                .any(|l| l.digest().as_ref() == digest)
                .then_some(())?;
            other.names.iter().find_map(|n| {
                let r = Reference::parse(n).ok()?;
                (r.registry() == reference.registry() && r.repository() != repo)
                    .then(|| r.repository().to_string())
            })
        })
    };
    let blobs = images.blobs();
    let progress = bars(args.quiet);
    let layers = image.manifest.layers().clone();
    for desc in layers.iter().rev().chain([image.manifest.config()]) {
        let digest = desc.digest().to_string();
        let path = blobs.blob_path(&digest)?;
        let bar = bar(&progress, &digest, desc.size(), "Pushing");
        let from = mount_from(&digest);
        let how = client.push_blob(
            repo,
            &digest,
            desc.size(),
            &BlobSource::File(&path),
            from.as_deref(),
            Some(&bar),
        )?;
        bar.finish_and_clear();
        if desc.digest() != image.manifest.config().digest() {
            say(format!("{}: {how}", short(&digest)));
        }
    }
    let bytes = blobs.get_blob(&image.digest)?;
    let media_type = image
        .manifest
        .media_type()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_else(|| MediaType::ImageManifest.to_string());
    let tag = reference.tag().unwrap_or("latest");
    let digest = client.put_manifest(repo, tag, &bytes, &media_type)?;
    say(format!("{tag}: digest: {digest} size: {}", bytes.len()));
    Ok(())
}
// ANCHOR_END: push

/// `berth login`: checks the credentials against the registry, then keeps
/// them (owner-only file).
pub fn login(args: &LoginArgs) -> Result<()> {
    let server = args.server.clone().unwrap_or_else(|| "docker.io".into());
    let Some(username) = args.username.clone() else {
        bail!("berth login needs -u USER (and -p PASSWORD or --password-stdin)");
    };
    let password = match (&args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p.clone()
        }
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("give the password with --password-stdin (or -p)"),
    };
    let credentials = Credentials::new(username, password);
    let insecure = insecure();
    let list: Vec<&str> = insecure.iter().map(String::as_str).collect();
    Client::new(&server, &list)?
        .with_credentials(Some(credentials.clone()))
        .check()?;
    let path = credentials_path();
    CredentialStore::new(&path).login(&server, &credentials)?;
    println!("Login Succeeded");
    Ok(())
}

/// `berth logout`: forgets the credentials of one registry.
pub fn logout(server: Option<&str>) -> Result<()> {
    let server = server.unwrap_or("docker.io");
    if CredentialStore::new(credentials_path()).logout(server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(())
}
