//! Lab 05's engine benchmarks: a rebuild where every step hits the cache
//! (against the same build with `--no-cache`), and pushing and pulling a
//! multi-layer image to and from a local registry (against `skopeo copy`
//! of the same image, in the same run).
//!
//! Everything runs in a network namespace of its own (a private loopback
//! for the registry and no bridge for berth's RUN steps), under one
//! temporary directory removed at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The build the cache benchmark repeats: eight steps, three of them
/// layers.
const DOCKERFILE: &str = r#"FROM busybox
ENV APP=/app MODE=bench
WORKDIR /app
COPY data/ ./data/
RUN echo built > built.txt && mkdir -p /var/cache/app
COPY config.txt ./
EXPOSE 8080
CMD ["cat", "/app/built.txt"]
"#;

/// The image pushed and pulled: this many layers of this many bytes of
/// random data each, on busybox.
const LAYERS: usize = 4;
const LAYER_BYTES: usize = 8 << 20;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A command in the benchmark's network namespace (`nsenter`), so that
/// the registry's port and berth's networks stay in it.
fn in_ns(ns: &Path, program: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", ns.display()))
        .arg("--")
        .arg(program);
    c
}

struct Bench {
    dir: tempfile::TempDir,
    berth: PathBuf,
}

impl Bench {
    fn ns(&self) -> PathBuf {
        self.dir.path().join("netns")
    }

    fn berth(&self, args: &[&str]) -> Command {
        let mut c = in_ns(&self.ns(), self.berth.to_str().unwrap());
        c.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .env("BERTH_CONFIG", self.dir.path().join("config"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Result<()> {
        let out = self.berth(args).output()?;
        if !out.status.success() {
            bail!(
                "berth {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn timed(&self, cmd: &mut Command) -> Result<f64> {
        let started = Instant::now();
        let out = cmd.output()?;
        let secs = started.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(secs * 1000.0)
    }
}

/// A registry with its data in a new directory, on port 5000 of the
/// benchmark's namespace; killed when dropped.
struct Registry {
    child: Child,
    _data: tempfile::TempDir,
}

impl Registry {
    fn start(b: &Bench) -> Result<Registry> {
        let data = tempfile::Builder::new()
            .prefix("registry-")
            .tempdir_in(b.dir.path())?;
        let config = data.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
                data.path().join("data").display()
            ),
        )?;
        let child = in_ns(&b.ns(), "docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start docker-registry (cargo xtask setup installs it)")?;
        let registry = Registry { child, _data: data };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = in_ns(&b.ns(), "curl")
                .args(["-sf", "-o", "/dev/null", "http://127.0.0.1:5000/v2/"])
                .status()?
                .success();
            if ok {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the registry did not start")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs both benchmarks; returns a markdown table and the samples.
pub fn measure(runs: usize, berth: &Path) -> Result<(String, Value)> {
    let dir = tempfile::Builder::new()
        .prefix("berth-bench-images-")
        .tempdir()?;
    let b = Bench {
        dir,
        berth: berth.to_path_buf(),
    };
    std::fs::File::create(b.ns())?;
    let made = Command::new("unshare")
        .arg(format!("--net={}", b.ns().display()))
        .args(["ip", "link", "set", "lo", "up"])
        .status()?;
    if !made.success() {
        bail!("cannot make the benchmark's network namespace");
    }
    let result = measure_in(&b, runs);
    // The namespace's bind mount (the builds leave no container).
    let _ = Command::new("umount").arg(b.ns()).status();
    result
}

fn measure_in(b: &Bench, runs: usize) -> Result<(String, Value)> {
    // The build context.
    let ctx = b.dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("data"))?;
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE)?;
    std::fs::write(ctx.join("config.txt"), "mode = bench\n")?;
    for i in 0..200 {
        std::fs::write(
            ctx.join("data").join(format!("file-{i:03}.txt")),
            format!("{i}\n").repeat(500),
        )?;
    }
    let ctx_s = ctx.to_str().unwrap().to_string();
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--network", "none", "-t", "bench:build"];
        args.extend_from_slice(extra);
        args.push(&ctx_s);
        b.berth(&args)
    };
    b.timed(&mut build(&[]))?; // fills the cache
    let mut cached = Vec::new();
    let mut fresh = Vec::new();
    for _ in 0..runs {
        cached.push(b.timed(&mut build(&[]))?);
    }
    for _ in 0..runs.div_ceil(4) {
        fresh.push(b.timed(&mut build(&["--no-cache"]))?);
    }

    // The multi-layer image: busybox plus LAYERS layers of random data.
    let mut dockerfile = String::from("FROM busybox\n");
    let big = b.dir.path().join("big");
    std::fs::create_dir_all(&big)?;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..LAYERS {
        let mut data = vec![0u8; LAYER_BYTES];
        for chunk in data.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(big.join(format!("layer{i}.bin")), data)?;
        dockerfile.push_str(&format!("COPY layer{i}.bin /data/\n"));
    }
    std::fs::write(big.join("Dockerfile"), dockerfile)?;
    let image = "localhost:5000/bench/big:1";
    b.run(&[
        "build",
        "--network",
        "none",
        "-t",
        image,
        big.to_str().unwrap(),
    ])?;
    let oci = b.dir.path().join("oci");
    let saved = b.dir.path().join("big.tar");
    b.run(&["save", "-o", saved.to_str().unwrap(), image])?;
    let copy = |from: &str, to: &str| {
        let mut c = in_ns(&b.ns(), "skopeo");
        c.args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            to,
        ]);
        c
    };
    b.timed(&mut copy(
        &format!("oci-archive:{}:{image}", saved.display()),
        &format!("oci:{}:big", oci.display()),
    ))?;

    let (mut push, mut skopeo_push, mut pull, mut skopeo_pull) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let rounds = runs.div_ceil(4).max(3);
    for _ in 0..rounds {
        // Each round pushes into an empty registry, then pulls into a store
        // without the image's blobs.
        {
            let _registry = Registry::start(b)?;
            push.push(b.timed(&mut b.berth(&["push", image]))?);
            b.run(&["rmi", image])?;
            b.run(&["image", "prune", "-a", "-f"])?;
            pull.push(b.timed(&mut b.berth(&["pull", image]))?);
        }
        {
            let _registry = Registry::start(b)?;
            skopeo_push.push(b.timed(&mut copy(
                &format!("oci:{}:big", oci.display()),
                "docker://localhost:5000/bench/big:1",
            ))?);
            let dest = b.dir.path().join("pulled");
            let _ = std::fs::remove_dir_all(&dest);
            skopeo_pull.push(b.timed(&mut copy(
                "docker://localhost:5000/bench/big:1",
                &format!("oci:{}:big", dest.display()),
            ))?);
        }
    }
    let mb = (LAYERS * LAYER_BYTES) as f64 / 1e6;
    let rows = [
        (
            "rebuild, every step cached (8 steps)",
            median(cached.clone()),
            None,
        ),
        (
            "the same build with --no-cache",
            median(fresh.clone()),
            None,
        ),
        (
            "berth push (4 layers, 33.6 MB)",
            median(push.clone()),
            Some(median(skopeo_push.clone())),
        ),
        (
            "skopeo copy oci: → docker://",
            median(skopeo_push.clone()),
            None,
        ),
        (
            "berth pull (download, verify, unpack)",
            median(pull.clone()),
            Some(median(skopeo_pull.clone())),
        ),
        (
            "skopeo copy docker:// → oci: (no unpacking)",
            median(skopeo_pull.clone()),
            None,
        ),
    ];
    let mut text = String::from(
        "\n## Lab 05: builds and registries\n\n| what | median ms | ratio to the tool |\n|---|---:|---:|\n",
    );
    for (what, ms, reference) in rows {
        let ratio = reference
            .map(|r| format!("{:.2}x", ms / r))
            .unwrap_or_default();
        text.push_str(&format!("| {what} | {ms:.1} | {ratio} |\n"));
    }
    text.push_str(&format!(
        "\n{} cached rebuilds, {} fresh builds, {rounds} rounds of push and pull; the pushed image has {mb:.1} MB of random data in {LAYERS} layers; cache speed-up {:.1}x\n",
        cached.len(),
        fresh.len(),
        median(fresh.clone()) / median(cached.clone())
    ));
    let json = json!({
        "cached_rebuild_ms": cached,
        "no_cache_build_ms": fresh,
        "berth_push_ms": push,
        "skopeo_push_ms": skopeo_push,
        "berth_pull_ms": pull,
        "skopeo_pull_ms": skopeo_pull,
    });
    Ok((text, json))
}
