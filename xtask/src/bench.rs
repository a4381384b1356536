//! `cargo xtask bench`: how long a container takes to start, run `/bin/true`
//! and be gone, for `berth` and for the tools a reader knows.
//!
//! # What is measured
//!
//! Each row is one command, timed from spawn to exit with
//! [`Instant`] around [`Command::status`]:
//!
//! - the floor: `unshare --fork --pid --mount --uts --ipc --net true`, the
//!   namespaces a container gets and nothing else;
//! - `berth run --rm busybox true` (release build, a temporary `--root` and
//!   `--runroot`, berth's default `--network none`);
//! - `runc run` and `crun run` on an OCI bundle made from the same busybox
//!   root and `runc spec`'s default configuration (its namespaces are the
//!   floor's: pid, network, ipc, uts, mount), running `/bin/true` without a
//!   terminal;
//! - where this machine mounts cgroup v2 at `/sys/fs/cgroup/unified` beside the
//!   v1 controllers (a "hybrid" layout), `crun` refuses to run. It is then
//!   measured inside `unshare -m` with that mount unmounted in the private
//!   namespace, and the wrapper is timed alone too, so the reader can subtract
//!   it. Plain `crun run` is still tried: if it works it gets its own row.
//!
//! A second, smaller table says where `berth run`'s time goes: the same
//! container made with `berth create`, run with `berth start -a` and removed
//! with `berth rm`, each step timed on its own.
//!
//! A third table compares berth's two storage drivers: `berth run --rm IMAGE
//! true` (create, start and remove, the whole cost a user sees) with
//! `--storage-driver overlay` (the container's root is an overlay of the
//! image's unpacked layers; nothing is copied) and with `--storage-driver vfs`
//! (the image is copied into the container at `create` and deleted at `rm`),
//! for a small image (busybox plus a 3 MB file, about 5 MB) and a large one
//! (busybox plus a 200 MB file). Both images are made in the benchmark's own
//! berth root before the timing (`berth run` writing the file, then `berth
//! commit`), and their unpacked size is measured with `du` and printed. Each
//! driver's row is compared with the overlay row of the same image. A row
//! whose runs are slow (its timing run after the warm-up, times the number of
//! rounds, over a minute: the 200 MB copy on a slow disk) runs only every
//! k-th round, so the table still alternates; the table says so.
//!
//! # Method
//!
//! Runs alternate round-robin (run 1 of every tool, then run 2 of every tool,
//! and so on) in one process, so whatever drifts during the benchmark (CPU
//! frequency, page cache, another job on the machine) touches every tool
//! alike instead of favouring whichever ran in the quiet minute. Every tool
//! runs once untimed first, which is the warm-up and the check that it works
//! here: a tool that fails is reported once, with its error, and left out.
//!
//! The table shows the median, p10 and p90 rather than the mean: start-up
//! times have a long right tail (a page fault storm, a scheduler hiccup, a
//! concurrent build), and a few such runs move the mean a lot but the median
//! hardly at all. p10 and p90 show the spread without letting the tail
//! dominate.
//!
//! Alternating cannot spread drift that depends on one tool's own history.
//! With the vfs driver `berth run` copies the image's root filesystem (for
//! busybox some 300 files, most of them symlinks) for every container and
//! deletes it again. On ext4, creating an inode gets slower while many inodes
//! were deleted recently (the allocator skips them, reading inode table
//! blocks to find out), so such times move between regimes (40 to 350 ms on
//! the machine this was written on; about 10 ms with the root on a tmpfs) as
//! berth's own and other programs' deletions age. The first table's `berth
//! run` uses the driver berth picks by itself (overlay wherever overlayfs can
//! be mounted), which copies nothing. A row whose median moves by more than
//! half between the first and the last quarter of its runs gets a note saying
//! so, and both figures are in the JSON.
//!
//! The raw samples and the summary go to `target/bench/start.json`, so that
//! figures quoted elsewhere can be traced to a run.
//!
//! Last, [`crate::bench_net`] times one container's network set-up (lab 04)
//! through the lab's netlink code against the `ip` and `nft` commands, and
//! `berth run --rm` with and without a network; its samples go to
//! `target/bench/network.json`.
//!
//! Then [`crate::bench_images`] times lab 05's layer extraction against GNU
//! tar on the same 100 MB+ layer, plain and gzipped, and
//! [`crate::bench_build`] times lab 05's engine paths: a rebuild whose
//! every step hits the cache, and push and pull of a multi-layer image to
//! and from a local registry, beside `skopeo copy` of the same image
//! (`target/bench/images.json`).
//!
//! `--runs` (default 200) is the number of timed runs per tool, in the first
//! and the storage table; the step table uses half as many.
//!
//! Everything the benchmark makes lives under one temporary directory and is
//! removed at the end: berth's containers, any runc or crun container whose id
//! starts with `berth-bench-`, and the directory itself (with the images and
//! their unpacked layers), after checking that no mount of ours, no new
//! overlay mount, no new cgroup under `berth` and no process started from
//! the directory is left behind.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::setup;

/// Where the Debian packages put the two OCI runtimes.
const RUNC: &str = "/usr/sbin/runc";
const CRUN: &str = "/usr/bin/crun";
/// Where a hybrid cgroup layout mounts cgroup v2.
const UNIFIED: &str = "/sys/fs/cgroup/unified";
/// The prefix of every runc and crun container id (and berth name) the
/// benchmark makes; cleanup removes leftovers with this prefix.
const ID_PREFIX: &str = "berth-bench-";
/// The cgroup berth puts its containers' cgroups in (`berth/<id>`).
const BERTH_CGROUP: &str = "berth";
/// The storage table's images: name, and the bytes of random data the
/// benchmark adds to busybox (in `/blob`) to make it.
const STORAGE_IMAGES: [(&str, u64); 2] = [("small:5m", 3_000_000), ("big:200m", 200_000_000)];
/// The storage table's drivers; the first is the reference for the ratios.
const DRIVERS: [&str; 2] = ["overlay", "vfs"];
/// The time one storage row may take, in seconds: a row whose runs would
/// take longer runs only every k-th round.
const STORAGE_BUDGET_S: f64 = 60.0;
/// The fewest runs a thinned-out storage row gets (fewer only if `--runs`
/// is smaller).
const STORAGE_MIN_RUNS: usize = 20;

/// Measures container start-up; see the module documentation.
pub fn run(runs: usize, network_only: bool, images_only: bool) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !setup::is_root() {
        bail!(
            "the benchmark needs root (namespaces, mounts, cgroups): run it as root, e.g. `sudo -E cargo xtask bench`"
        );
    }
    setup::install(&[("runc", RUNC), ("crun", CRUN)])?;
    eprintln!("==> building berth (release)");
    setup::run(&mut setup::cargo(&["build", "--release", "-p", "berth"]))?;
    if network_only {
        return network_table(runs);
    }
    if images_only {
        return images_table(runs);
    }

    let unified_at_start = mount_points()?.iter().any(|m| m == UNIFIED);
    let host_before = HostState::now()?;
    let scratch = Scratch::create()?;
    let outcome = measure(&scratch, runs, unified_at_start);
    // Clean up whatever happened, then report: results first, so a cleanup
    // failure does not hide them.
    let cleaned = scratch.clean(unified_at_start, &host_before);
    let report = outcome?;
    println!("{}", report.text);
    let path = setup::target_bin("bench", "start.json"); // target/bench/start.json
    fs::create_dir_all(path.parent().unwrap())?;
    fs::write(&path, serde_json::to_string_pretty(&report.json)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("raw samples and summary: {}", path.display());
    cleaned?;
    network_table(runs.min(100))?;
    images_table(runs.min(20))
}

/// Lab 05: layer extraction against GNU tar, cached rebuilds, push and
/// pull against a local registry.
fn images_table(runs: usize) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("extraction-")
        .tempdir_in(setup::workspace().join("target"))?;
    let extraction = crate::bench_images::extraction(scratch.path(), runs.clamp(3, 10))?;
    println!("{}", extraction.text);
    let (text, mut json) =
        crate::bench_build::measure(runs, &setup::target_bin("release", "berth"))?;
    json["extraction"] = extraction.json;
    println!("{text}");
    let path = setup::target_bin("bench", "images.json");
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("image samples: {}", path.display());
    Ok(())
}

/// Lab 04: one container's network, in namespaces of its own.
fn network_table(runs: usize) -> Result<()> {
    let net = crate::bench_net::measure(runs, &setup::target_bin("release", "berth"))?;
    println!("{}", net.text);
    let path = crate::bench_net::json_path();
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(&path, serde_json::to_string_pretty(&net.json)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("network samples: {}", path.display());
    Ok(())
}

/// The printed tables and the JSON written to `target/bench/start.json`.
struct Report {
    text: String,
    json: Value,
}

/// What the host had before the benchmark that berth could leave behind:
/// overlay mounts and berth's cgroups (whoever made them).
struct HostState {
    overlay_mounts: usize,
    berth_cgroups: Vec<String>,
}

impl HostState {
    fn now() -> Result<Self> {
        Ok(Self {
            overlay_mounts: overlay_mounts()?,
            berth_cgroups: berth_cgroups(Path::new("/sys/fs/cgroup")),
        })
    }
}

/// The temporary directory everything lives in, and the berth binary.
struct Scratch {
    dir: PathBuf,
    berth: PathBuf,
}

impl Scratch {
    fn create() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("berth-bench.{}", std::process::id()));
        fs::create_dir(&dir).with_context(|| {
            format!(
                "cannot create {} (left by an earlier run? remove it)",
                dir.display()
            )
        })?;
        for sub in ["root", "runroot", "bundle", "logs"] {
            fs::create_dir(dir.join(sub))?;
        }
        Ok(Self {
            dir,
            berth: setup::target_bin("release", "berth"),
        })
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    /// `berth --root R --runroot RR <args>`, with the temporary root.
    fn berth(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.berth);
        c.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(args);
        c
    }

    /// Removes everything the benchmark made, then checks nothing is left.
    /// Every step is tried even if an earlier one fails.
    fn clean(&self, unified_at_start: bool, before: &HostState) -> Result<()> {
        let mut problems = Vec::new();

        // berth's containers: `rm -f $(ps -aq)`.
        match self.berth(&["ps", "-aq", "--no-trunc"]).output() {
            Ok(out) if out.status.success() => {
                let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                if !ids.is_empty() {
                    let mut rm = self.berth(&["rm", "-f"]);
                    rm.args(&ids).stdout(Stdio::null());
                    if let Err(e) = setup::run(&mut rm) {
                        problems.push(format!("{e:#}"));
                    }
                }
            }
            Ok(out) => problems.push(format!(
                "berth ps failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => problems.push(format!("cannot run berth ps: {e}")),
        }

        // runc and crun containers with our prefix (from this or a crashed run).
        for runtime in [RUNC, CRUN] {
            let Ok(out) = Command::new(runtime).args(["list", "-q"]).output() else {
                continue;
            };
            for id in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter(|id| id.starts_with(ID_PREFIX))
            {
                let mut delete = Command::new(runtime);
                delete.args(["delete", "-f", id]);
                if let Err(e) = setup::run(&mut delete) {
                    problems.push(format!("{e:#}"));
                }
            }
        }

        // Mounts under our directory: removing the directory would then
        // delete the files of whatever is mounted there, so stop instead.
        let dir = self.dir.to_string_lossy().into_owned();
        let inside = format!("{dir}/");
        let leftover: Vec<String> = mount_points()?
            .into_iter()
            .filter(|m| *m == dir || m.starts_with(&inside))
            .collect();
        if !leftover.is_empty() {
            bail!(
                "mounts left under {dir}, so it was not removed (unmount them, then remove it):\n  {}",
                leftover.join("\n  ")
            );
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            problems.push(format!("cannot remove {dir}: {e}"));
        }

        // The crun wrapper unmounts cgroup v2 in a private namespace only.
        if unified_at_start && !mount_points()?.iter().any(|m| m == UNIFIED) {
            problems.push(format!(
                "{UNIFIED} is no longer mounted on the host: the wrapper's unmount leaked"
            ));
        }
        let mut cgroups = leftover_cgroups(Path::new("/sys/fs/cgroup"), 5);
        // berth's containers' cgroups are berth/<id>: any that was not there
        // before is ours.
        cgroups.extend(
            berth_cgroups(Path::new("/sys/fs/cgroup"))
                .into_iter()
                .filter(|c| !before.berth_cgroups.contains(c)),
        );
        if !cgroups.is_empty() {
            problems.push(format!("cgroups left behind:\n  {}", cgroups.join("\n  ")));
        }
        // berth mounts a container's overlay in the container's own mount
        // namespace, so the host should never see one.
        match overlay_mounts() {
            Ok(n) if n > before.overlay_mounts => problems.push(format!(
                "overlay mounts on the host: {n}, {} before the benchmark",
                before.overlay_mounts
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("{e:#}")),
        }
        let procs = processes_mentioning(&dir);
        if !procs.is_empty() {
            problems.push(format!(
                "processes still running from {dir}:\n  {}",
                procs.join("\n  ")
            ));
        }

        if !problems.is_empty() {
            bail!("cleanup failed:\n{}", problems.join("\n"));
        }
        Ok(())
    }
}

/// One row of a table: a command that can be built for run `i`, and its
/// timings.
struct Subject {
    label: String,
    build: Box<dyn Fn(usize) -> Command>,
    /// Milliseconds, in run order.
    samples: Vec<f64>,
    /// Where the command's stderr goes during timed runs, to quote on failure.
    log: PathBuf,
    /// It runs in rounds `every`, `2 * every` ... only (1: every round).
    every: usize,
}

impl Subject {
    fn new(label: &str, scratch: &Scratch, build: impl Fn(usize) -> Command + 'static) -> Self {
        Self {
            label: label.to_string(),
            build: Box::new(build),
            samples: Vec::new(),
            log: scratch.dir.join("logs").join(slug(label) + ".err"),
            every: 1,
        }
    }

    /// The command line, for the JSON.
    fn shown(&self) -> String {
        let c = (self.build)(0);
        std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command once untimed with its output captured: the warm-up,
    /// and the check that the tool works here. Returns the error text.
    fn try_once(&self) -> Result<(), String> {
        let out = match (self.build)(0).stdin(Stdio::null()).output() {
            Ok(out) => out,
            Err(e) => return Err(format!("cannot run it: {e}")),
        };
        if out.status.success() {
            return Ok(());
        }
        let parts: Vec<String> = [&out.stderr, &out.stdout]
            .iter()
            .map(|b| String::from_utf8_lossy(b).trim().replace('\n', " / "))
            .filter(|t| !t.is_empty())
            .collect();
        let text = if parts.is_empty() {
            "no output".to_string()
        } else {
            parts.join(" / ")
        };
        Err(format!("{text} ({})", out.status))
    }

    fn summary(&self) -> Summary {
        Summary::of(&self.samples)
    }
}

/// A label made safe for a file or container name: letters and digits kept,
/// anything else a dash.
fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A tool that did not work here, with the reason.
struct LeftOut {
    label: String,
    error: String,
}

/// Runs every subject `runs` times, round-robin (run `i` of each in turn),
/// with output discarded and stderr kept in each subject's log. Run numbers
/// start at 1 (0 is the untimed check). A subject with `every` k > 1 runs in
/// every k-th round only. A subject that fails is dropped and returned with
/// its error.
fn alternate(subjects: &mut Vec<Subject>, runs: usize) -> Result<Vec<LeftOut>> {
    let mut logs = Vec::new();
    for s in subjects.iter() {
        logs.push(OpenOptions::new().create(true).append(true).open(&s.log)?);
    }
    let mut failed: Vec<Option<String>> = vec![None; subjects.len()];
    for i in 1..=runs {
        for (k, s) in subjects.iter_mut().enumerate() {
            if failed[k].is_some() || i % s.every != 0 {
                continue;
            }
            let mut cmd = (s.build)(i);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logs[k].try_clone()?);
            let start = Instant::now();
            let status = cmd.status();
            let elapsed = start.elapsed();
            match status {
                Ok(st) if st.success() => s.samples.push(elapsed.as_secs_f64() * 1e3),
                Ok(st) => failed[k] = Some(format!("run {i}: {st}: {}", tail(&s.log))),
                Err(e) => failed[k] = Some(format!("run {i}: cannot run it: {e}")),
            }
        }
        if runs >= 20 && i % (runs / 4) == 0 && i < runs {
            eprintln!("    {i}/{runs} rounds");
        }
    }
    let mut left_out = Vec::new();
    let mut kept = Vec::new();
    for (s, f) in std::mem::take(subjects).into_iter().zip(failed) {
        match f {
            Some(error) => left_out.push(LeftOut {
                label: s.label,
                error,
            }),
            None => kept.push(s),
        }
    }
    *subjects = kept;
    Ok(left_out)
}

/// The last lines of a log file, for an error message.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

/// The benchmark proper: prepares the tools, times them, builds the report.
fn measure(scratch: &Scratch, runs: usize, hybrid: bool) -> Result<Report> {
    // The warm-up: the first run also makes the busybox image from the host.
    eprintln!("==> warm-up: berth run --rm busybox true");
    let berth_run = {
        let (bin, root, runroot) = berth_paths(scratch);
        move |_: usize| {
            let mut c = Command::new(&bin);
            c.arg("--root")
                .arg(&root)
                .arg("--runroot")
                .arg(&runroot)
                // runc has no network either: the bridge is lab 04's
                // benchmark (bench_net).
                .args(["run", "--rm", "--network", "none", "busybox", "true"]);
            c
        }
    };
    let berth_row = Subject::new("berth run --rm busybox true", scratch, berth_run);
    berth_row
        .try_once()
        .map_err(|e| anyhow::anyhow!("berth run --rm busybox true fails: {e}"))?;

    let namespaces = make_bundle(scratch)?;
    let bundle = scratch.bundle();

    // Every candidate row, in table order.
    let mut subjects = vec![Subject::new("unshare floor", scratch, |_| {
        let mut c = Command::new("unshare");
        c.args([
            "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "true",
        ]);
        c
    })];
    subjects.push(berth_row);
    for (label, runtime) in [("runc run", RUNC), ("crun run", CRUN)] {
        let (b, tag) = (bundle.clone(), label.split(' ').next().unwrap());
        subjects.push(Subject::new(label, scratch, move |i| {
            let mut c = Command::new(runtime);
            c.args(["run", "--bundle"])
                .arg(&b)
                .arg(format!("{ID_PREFIX}{tag}-{i}"));
            c
        }));
    }
    if hybrid {
        let b = bundle.clone();
        subjects.push(Subject::new(
            "crun run (in unshare -m, unified unmounted)",
            scratch,
            move |i| {
                let mut c = Command::new("unshare");
                c.args([
                    "-m",
                    "sh",
                    "-c",
                    &format!("umount {UNIFIED} && exec \"$0\" run --bundle \"$1\" \"$2\""),
                    CRUN,
                ])
                .arg(&b)
                .arg(format!("{ID_PREFIX}crun-ns-{i}"));
                c
            },
        ));
        subjects.push(Subject::new(
            "wrapper alone (unshare -m, umount)",
            scratch,
            |_| {
                let mut c = Command::new("unshare");
                c.args(["-m", "sh", "-c", &format!("umount {UNIFIED} && exec true")]);
                c
            },
        ));
    }

    // Check each one (this is also its warm-up); leave out what fails.
    let mut left_out = Vec::new();
    subjects.retain(|s| {
        if s.label.starts_with("berth") {
            return true; // already run above
        }
        eprintln!("==> checking: {}", s.label);
        match s.try_once() {
            Ok(()) => true,
            Err(error) => {
                left_out.push(LeftOut {
                    label: s.label.clone(),
                    error,
                });
                false
            }
        }
    });
    for l in &left_out {
        eprintln!("    {} does not work here, left out: {}", l.label, l.error);
    }
    // Delete what the checks' failures may have left (crun run 0, say).
    delete_runtime_containers();

    eprintln!("==> timing {} tools, {runs} rounds", subjects.len());
    left_out.extend(alternate(&mut subjects, runs)?);
    if let Some(l) = left_out.iter().find(|l| l.label.starts_with("berth")) {
        bail!("{} failed: {}", l.label, l.error);
    }
    delete_runtime_containers();

    // Where berth's time goes: create, start -a, rm of one container per round.
    let step_runs = (runs / 2).max(1);
    let name = |i: usize| format!("{ID_PREFIX}step-{i}");
    let mut steps = Vec::new();
    for (label, args) in [
        (
            "berth create busybox true",
            &["create", "--name", "NAME", "busybox", "true"][..],
        ),
        (
            "berth start -a (created container)",
            &["start", "-a", "NAME"][..],
        ),
        ("berth rm (exited container)", &["rm", "NAME"][..]),
    ] {
        let (bin, root, runroot) = berth_paths(scratch);
        steps.push(Subject::new(label, scratch, move |i| {
            let mut c = Command::new(&bin);
            c.arg("--root").arg(&root).arg("--runroot").arg(&runroot);
            c.args(
                args.iter()
                    .map(|a| if *a == "NAME" { name(i) } else { a.to_string() }),
            );
            c
        }));
    }
    eprintln!("==> timing berth's steps, {step_runs} rounds");
    if let Some(l) = alternate(&mut steps, step_runs)?.into_iter().next() {
        bail!("{} failed: {}", l.label, l.error);
    }

    let storage = measure_storage(scratch, runs)?;

    let mut report = report(
        runs,
        step_runs,
        &subjects,
        &steps,
        &left_out,
        &namespaces,
        hybrid,
    );
    let (text, json) = storage.report(scratch);
    report.text.push_str(&text);
    report.json["storage"] = json;
    Ok(report)
}

/// The storage table: berth's two drivers on a small and a large image.
struct StorageTable {
    /// Rounds of the table (a thinned-out row runs in fewer).
    rounds: usize,
    rows: Vec<Subject>,
    images: Vec<ImageSize>,
    left_out: Vec<LeftOut>,
    /// The rows that run in fewer rounds, with the time (ms) of the run
    /// that decided it.
    thinned: Vec<(String, f64)>,
}

/// One of the storage table's images and what its unpacked layers take.
struct ImageSize {
    name: &'static str,
    /// Bytes of random data added to busybox.
    added: u64,
    /// Its unpacked layers (bottom first) and their disk usage, from `du`.
    layers: Vec<PathBuf>,
    du_bytes: u64,
}

/// A storage row's label: image, then driver.
fn storage_label(image: &str, driver: &str) -> String {
    format!("{image}, {driver}")
}

/// Makes the storage images, then times `berth run --rm IMAGE true` with each
/// driver on each, alternating. Nothing made here is timed but the runs.
fn measure_storage(scratch: &Scratch, runs: usize) -> Result<StorageTable> {
    let mut images = Vec::new();
    for (name, added) in STORAGE_IMAGES {
        eprintln!("==> making image {name}: busybox and {added} random bytes in /blob");
        images.push(make_image(scratch, name, added)?);
    }

    let mut rows = Vec::new();
    for (image, _) in STORAGE_IMAGES {
        for driver in DRIVERS {
            let (bin, root, runroot) = berth_paths(scratch);
            let label = storage_label(image, driver);
            rows.push(Subject::new(&label, scratch, move |_| {
                let mut c = Command::new(&bin);
                c.arg("--root")
                    .arg(&root)
                    .arg("--runroot")
                    .arg(&runroot)
                    .args([
                        "--storage-driver",
                        driver,
                        "run",
                        "--rm",
                        "--network",
                        "none",
                    ])
                    .args([image, "true"]);
                c
            }));
        }
    }

    // Check each row (the warm-up), then time one more untimed run to see
    // whether the row fits its budget.
    let mut left_out = Vec::new();
    let mut thinned = Vec::new();
    rows.retain_mut(|s| {
        eprintln!(
            "==> checking: berth --storage-driver ... run --rm: {}",
            s.label
        );
        let once = s.try_once().and_then(|()| {
            let start = Instant::now();
            s.try_once().map(|()| start.elapsed().as_secs_f64())
        });
        match once {
            Ok(secs) => {
                s.every = thin_out(secs, runs);
                if s.every > 1 {
                    thinned.push((s.label.clone(), secs * 1e3));
                }
                true
            }
            Err(error) => {
                left_out.push(LeftOut {
                    label: s.label.clone(),
                    error,
                });
                false
            }
        }
    });
    for l in &left_out {
        eprintln!("    {} does not work here, left out: {}", l.label, l.error);
    }
    eprintln!("==> timing the storage drivers, {runs} rounds");
    left_out.extend(alternate(&mut rows, runs)?);
    Ok(StorageTable {
        rounds: runs,
        rows,
        images,
        left_out,
        thinned,
    })
}

/// In which rounds a storage row runs (see [`Subject::every`]): every round
/// if `runs` runs of `secs` seconds fit in [`STORAGE_BUDGET_S`], else every
/// k-th, keeping at least [`STORAGE_MIN_RUNS`] runs.
fn thin_out(secs: f64, runs: usize) -> usize {
    let want = (secs * runs as f64 / STORAGE_BUDGET_S).ceil();
    let most = (runs / STORAGE_MIN_RUNS).max(1);
    if want.is_finite() && want >= 1.0 {
        (want as usize).min(most)
    } else {
        1
    }
}

/// Makes image `name` in the benchmark's berth root: a container of busybox
/// writes `added` random bytes to `/blob`, `berth commit` makes the image,
/// and the container is removed. Then measures its unpacked layers.
fn make_image(scratch: &Scratch, name: &'static str, added: u64) -> Result<ImageSize> {
    let maker = format!("{ID_PREFIX}make-{}", slug(name));
    let write = format!("head -c {added} /dev/urandom > /blob");
    setup::run(
        scratch
            .berth(&[
                "--storage-driver",
                "overlay",
                "run",
                "--network",
                "none",
                "--name",
                &maker,
                "busybox",
                "sh",
                "-c",
                &write,
            ])
            .stdin(Stdio::null()),
    )?;
    setup::run(
        scratch
            .berth(&["commit", &maker, name])
            .stdout(Stdio::null()),
    )?;
    setup::run(scratch.berth(&["rm", &maker]).stdout(Stdio::null()))?;

    // Its layers are the lower directories of an overlay container of it,
    // less the container's own init layer (which is not under `layers`).
    let probe = format!("{ID_PREFIX}layers-{}", slug(name));
    setup::run(
        scratch
            .berth(&[
                "--storage-driver",
                "overlay",
                "create",
                "--name",
                &probe,
                name,
                "true",
            ])
            .stdout(Stdio::null()),
    )?;
    let out = scratch
        .berth(&[
            "inspect",
            "--format",
            "{{.GraphDriver.Data.LowerDir}}",
            &probe,
        ])
        .output()?;
    setup::run(scratch.berth(&["rm", &probe]).stdout(Stdio::null()))?;
    if !out.status.success() {
        bail!(
            "berth inspect failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let store = scratch.dir.join("root/layers");
    let mut layers: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(':')
        .map(PathBuf::from)
        .filter(|p| p.starts_with(&store))
        .collect();
    layers.reverse(); // bottom first
    if layers.is_empty() {
        bail!(
            "no layers of {name} under {} (has berth's state layout changed?)",
            store.display()
        );
    }
    let du_bytes = du(&layers)?;
    Ok(ImageSize {
        name,
        added,
        layers,
        du_bytes,
    })
}

/// The disk usage of some directories together, from `du` (a file linked
/// into several is counted once).
fn du(dirs: &[PathBuf]) -> Result<u64> {
    let out = Command::new("du")
        .args(["-s", "-c", "-B1", "--"])
        .args(dirs)
        .output()
        .context("cannot run du")?;
    if !out.status.success() {
        bail!("du failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("cannot read du's total in {text:?}"))
}

/// A size in bytes as megabytes and mebibytes, e.g. "5.07 MB (4.83 MiB)".
fn megabytes(bytes: u64) -> String {
    format!(
        "{:.2} MB ({:.2} MiB)",
        bytes as f64 / 1e6,
        bytes as f64 / (1024.0 * 1024.0)
    )
}

impl StorageTable {
    /// The overlay row of the same image as `s`, whose median `s` is
    /// compared with.
    fn reference(&self, s: &Subject) -> Option<f64> {
        let image = s.label.split(", ").next()?;
        let twin = storage_label(image, DRIVERS[0]);
        self.rows
            .iter()
            .find(|r| r.label == twin)
            .map(|r| r.summary().median)
    }

    /// The table's text and its part of the JSON.
    fn report(&self, scratch: &Scratch) -> (String, Value) {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "\nstorage drivers: berth run --rm IMAGE true (create + start + rm), {} runs each{}, alternating (ms)",
            self.rounds,
            if self.thinned.is_empty() {
                ""
            } else {
                " (fewer where noted)"
            }
        );
        table(
            &mut text,
            &self.rows,
            &|s| self.reference(s),
            &format!("vs {}", DRIVERS[0]),
        );
        for i in &self.images {
            let _ = writeln!(
                text,
                "{}: busybox and {} random bytes, {} layers unpacked taking {} (du)",
                i.name,
                i.added,
                i.layers.len(),
                megabytes(i.du_bytes)
            );
        }
        for (label, ms) in &self.thinned {
            let Some(s) = self.rows.iter().find(|s| s.label == *label) else {
                continue; // it failed later and is left out
            };
            let _ = writeln!(
                text,
                "fewer runs, {label}: {} runs (one round in {}): its run after the warm-up took {ms:.0} ms, \
                 and {} runs would take more than {STORAGE_BUDGET_S:.0} s",
                s.samples.len(),
                s.every,
                self.rounds
            );
        }
        // Which driver the first table's `berth run` got: berth caches its
        // choice in the run root.
        let chosen = fs::read_to_string(scratch.dir.join("runroot/storage-driver"))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(": ");
        if !chosen.is_empty() {
            let _ = writeln!(
                text,
                "the first table's berth run uses the driver berth chose here: {chosen}"
            );
        }
        for l in &self.left_out {
            let _ = writeln!(text, "left out, {}: {}", l.label, l.error);
        }
        drift_notes(&mut text, &self.rows);

        let json = json!({
            "what": "berth run --rm IMAGE true with --storage-driver overlay and vfs: wall time from spawn to exit",
            "rounds": self.rounds,
            "budget_s_per_row": STORAGE_BUDGET_S,
            "images": self.images.iter().map(|i| json!({
                "name": i.name,
                "added_bytes": i.added,
                "layers": i.layers,
                "layers_du_bytes": i.du_bytes,
            })).collect::<Vec<_>>(),
            "rows": json_rows(&self.rows, "vs_overlay", &|s| self.reference(s)),
            "left_out": self.left_out.iter().map(|l| json!({ "tool": l.label, "error": l.error })).collect::<Vec<_>>(),
        });
        (text, json)
    }
}

/// The berth binary, root and runroot, owned, for a `'static` closure.
fn berth_paths(scratch: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    (
        scratch.berth.clone(),
        scratch.dir.join("root"),
        scratch.dir.join("runroot"),
    )
}

/// Makes the OCI bundle for runc and crun: berth's busybox root filesystem
/// and `runc spec`'s configuration, edited to run `/bin/true` without a
/// terminal. Returns the namespaces the configuration asks for.
fn make_bundle(scratch: &Scratch) -> Result<Vec<String>> {
    eprintln!("==> making the OCI bundle");
    let bundle = scratch.bundle();
    // The same root filesystem berth runs: the one `berth create` copies out
    // with the vfs driver (with overlay, `rootfs` is only a mount point).
    let src = format!("{ID_PREFIX}src");
    let out = scratch
        .berth(&[
            "--storage-driver",
            "vfs",
            "create",
            "--name",
            &src,
            "busybox",
            "true",
        ])
        .output()?;
    if !out.status.success() {
        bail!(
            "berth create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rootfs = scratch.dir.join("root/containers").join(&id).join("rootfs");
    if !rootfs.join("bin/true").exists() {
        bail!(
            "no busybox root at {} (has berth's state layout changed?)",
            rootfs.display()
        );
    }
    setup::run(
        Command::new("cp")
            .arg("-a")
            .arg(&rootfs)
            .arg(bundle.join("rootfs")),
    )?;
    setup::run(scratch.berth(&["rm", &src]).stdout(Stdio::null()))?;

    setup::run(Command::new(RUNC).arg("spec").current_dir(&bundle))?;
    let path = bundle.join("config.json");
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&path)?)?;
    config["process"]["args"] = json!(["/bin/true"]);
    config["process"]["terminal"] = json!(false);
    fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    let namespaces = config["linux"]["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["type"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(namespaces)
}

/// Deletes runc and crun containers with our prefix. `run` removes its
/// container when the process exits, so normally there are none; a failed
/// run can leave one in the "created" or "stopped" state.
fn delete_runtime_containers() {
    for runtime in [RUNC, CRUN] {
        let Ok(out) = Command::new(runtime).args(["list", "-q"]).output() else {
            continue;
        };
        for id in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|id| id.starts_with(ID_PREFIX))
        {
            let _ = Command::new(runtime)
                .args(["delete", "-f", id])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// p10, median and p90 of some samples, in milliseconds.
#[derive(Clone, Copy)]
struct Summary {
    p10: f64,
    median: f64,
    p90: f64,
}

impl Summary {
    fn of(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            p10: percentile(&sorted, 0.10),
            median: percentile(&sorted, 0.50),
            p90: percentile(&sorted, 0.90),
        }
    }
}

/// The `p` quantile of sorted samples, interpolating linearly between the
/// two nearest ranks (so the median of an even count is the mean of the two
/// middle samples).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Formats the tables and builds the JSON.
fn report(
    runs: usize,
    step_runs: usize,
    subjects: &[Subject],
    steps: &[Subject],
    left_out: &[LeftOut],
    namespaces: &[String],
    hybrid: bool,
) -> Report {
    let berth = subjects
        .iter()
        .find(|s| s.label.starts_with("berth"))
        .expect("berth is never left out")
        .summary();
    let mut text = String::new();

    let _ = writeln!(
        text,
        "container start to exit of /bin/true, {runs} runs each, alternating (medians in ms)"
    );
    table(&mut text, subjects, &|_| Some(berth.median), "vs berth");
    let _ = writeln!(
        text,
        "runc and crun: `runc spec` defaults (namespaces: {}), args [/bin/true], no terminal",
        namespaces.join(", ")
    );
    if hybrid && subjects.iter().any(|s| s.label.starts_with("crun run (")) {
        let _ = writeln!(
            text,
            "crun (in unshare -m ...): this machine mounts cgroup v2 at {UNIFIED} beside v1 (hybrid); \
             subtract \"wrapper alone\" for crun itself"
        );
    }
    for l in left_out {
        let _ = writeln!(text, "left out, {}: {}", l.label, l.error);
    }
    drift_notes(&mut text, subjects);

    let _ = writeln!(
        text,
        "\nwhere berth run's time goes: the steps on their own, {step_runs} runs each, alternating (ms)"
    );
    table(&mut text, steps, &|_| Some(berth.median), "vs run");
    let sum: f64 = steps.iter().map(|s| s.summary().median).sum();
    let _ = writeln!(
        text,
        "sum of the step medians: {sum:.2} ms; berth run --rm median: {:.2} ms",
        berth.median
    );
    drift_notes(&mut text, steps);

    let rows = |list: &[Subject]| json_rows(list, "vs_berth_run", &|_| Some(berth.median));
    let json = json!({
        "what": "container start to exit of /bin/true: wall time from spawn to exit of each command",
        "method": "round-robin over the tools within one process, one untimed warm-up each; p10/median/p90 with linear interpolation",
        "runs": runs,
        "step_runs": step_runs,
        "host": {
            "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "cgroup_hybrid": hybrid,
        },
        "versions": {
            "berth": first_line(&setup::target_bin("release", "berth").to_string_lossy(), "--version"),
            "runc": first_line(RUNC, "--version"),
            "crun": first_line(CRUN, "--version"),
        },
        "bundle_namespaces": namespaces,
        "start": rows(subjects),
        "steps": rows(steps),
        "left_out": left_out.iter().map(|l| json!({ "tool": l.label, "error": l.error })).collect::<Vec<_>>(),
    });
    Report { text, json }
}

/// A table's rows for the JSON: the summary, the median's ratio to the
/// row's reference (under `ratio`), and the raw samples.
fn json_rows(
    list: &[Subject],
    ratio: &str,
    reference: &dyn Fn(&Subject) -> Option<f64>,
) -> Vec<Value> {
    list.iter()
        .map(|s| {
            let m = s.summary();
            let (mean, sd) = mean_sd(&s.samples);
            let mut row = json!({
                "tool": s.label,
                "command": s.shown(),
                "runs": s.samples.len(),
                "p10_ms": m.p10,
                "median_ms": m.median,
                "p90_ms": m.p90,
                "mean_ms": mean,
                "sd_ms": sd,
                "min_ms": s.samples.iter().copied().reduce(f64::min),
                "max_ms": s.samples.iter().copied().reduce(f64::max),
                "first_quarter_median_ms": quarters(&s.samples).map(|q| q.0),
                "last_quarter_median_ms": quarters(&s.samples).map(|q| q.1),
                "samples_ms": s.samples,
            });
            row[ratio] = json!(reference(s).map(|r| m.median / r));
            if s.every > 1 {
                row["every_nth_round"] = json!(s.every);
            }
            row
        })
        .collect()
}

/// The mean and the sample standard deviation (0 for a single sample).
fn mean_sd(samples: &[f64]) -> (f64, f64) {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = if samples.len() > 1 {
        samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The medians of the first and the last quarter of the runs, in run order
/// (None for fewer than 8 runs).
fn quarters(samples: &[f64]) -> Option<(f64, f64)> {
    let q = samples.len() / 4;
    (q >= 2).then(|| {
        let first = Summary::of(&samples[..q]).median;
        let last = Summary::of(&samples[samples.len() - q..]).median;
        (first, last)
    })
}

/// Notes the rows whose times changed by more than half during the
/// benchmark. Alternating spreads drift that comes from outside over all the
/// tools, but not drift a tool causes itself (berth's own earlier runs, say):
/// the median then describes the mix, and the reader should know.
fn drift_notes(text: &mut String, rows: &[Subject]) {
    for s in rows {
        if let Some((first, last)) = quarters(&s.samples)
            && (last > 1.5 * first || first > 1.5 * last)
        {
            let _ = writeln!(
                text,
                "drift, {}: median of the first quarter of runs {first:.2} ms, of the last quarter {last:.2} ms",
                s.label
            );
        }
    }
}

/// Writes one table: p10, median, p90 and the median's ratio to the row's
/// `reference` ("-" without one).
fn table(
    text: &mut String,
    rows: &[Subject],
    reference: &dyn Fn(&Subject) -> Option<f64>,
    ratio: &str,
) {
    let width = rows.iter().map(|s| s.label.len()).max().unwrap_or(0).max(4) + 2;
    let _ = writeln!(
        text,
        "{:<width$}{:<8}{:<8}{:<8}{ratio}",
        "tool", "p10", "median", "p90"
    );
    for s in rows {
        let m = s.summary();
        let r = reference(s).map_or("-".to_string(), |r| ratio_text(m.median / r) + "x");
        let _ = writeln!(
            text,
            "{:<width$}{:<8.2}{:<8.2}{:<8.2}{r}",
            s.label, m.p10, m.median, m.p90,
        );
    }
}

/// A ratio with two decimals, or three below 0.1 so small ones keep a digit
/// that means something.
fn ratio_text(r: f64) -> String {
    if r < 0.1 {
        format!("{r:.3}")
    } else {
        format!("{r:.2}")
    }
}

/// The first line of a command's output, or "" if it cannot run.
fn first_line(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// The mount points in this process's mount namespace, from
/// `/proc/self/mountinfo` (field 5, with its octal escapes undone).
fn mount_points() -> Result<Vec<String>> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .collect())
}

/// Undoes mountinfo's escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Cgroup directories named with our prefix, searched `depth` levels deep.
fn leftover_cgroups(dir: &Path, depth: usize) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(ID_PREFIX) {
            found.push(path.display().to_string());
        } else if depth > 1 {
            found.extend(leftover_cgroups(&path, depth - 1));
        }
    }
    found
}

/// How many overlay filesystems this process's mount namespace has
/// mounted (`/proc/self/mountinfo`, the type after the ` - ` separator).
fn overlay_mounts() -> Result<usize> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|l| l.split_once(" - "))
        .filter(|(_, rest)| rest.split(' ').next() == Some("overlay"))
        .count())
}

/// berth's cgroups: `berth` and what is in it, in every hierarchy mounted
/// under `cgroup` (`cpu/berth/<id>` on v1, `berth/<id>` on v2,
/// `unified/berth/<id>` on a hybrid layout's v2).
fn berth_cgroups(cgroup: &Path) -> Vec<String> {
    let mut parents = vec![cgroup.join(BERTH_CGROUP)];
    if let Ok(entries) = fs::read_dir(cgroup) {
        for e in entries.flatten() {
            parents.push(e.path().join(BERTH_CGROUP));
        }
    }
    let mut found = Vec::new();
    for parent in parents.into_iter().filter(|p| p.is_dir()) {
        found.push(parent.display().to_string());
        if let Ok(entries) = fs::read_dir(&parent) {
            found.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path().display().to_string()),
            );
        }
    }
    found.sort();
    found
}

/// Processes whose command line mentions `dir` (berth run with our root,
/// or anything started from our directory), as "pid: command line".
fn processes_mentioning(dir: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(raw) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(dir) {
            found.push(format!("{pid}: {}", cmdline.trim()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s.median, 2.5);
        assert!((s.p10 - 1.3).abs() < 1e-9);
        assert!((s.p90 - 3.7).abs() < 1e-9);
        assert_eq!(Summary::of(&[7.0]).median, 7.0);
    }

    #[test]
    fn mean_and_sd() {
        let (mean, sd) = mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(mean, 5.0);
        assert!((sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-9);
        assert_eq!(mean_sd(&[3.0]), (3.0, 0.0));
    }

    #[test]
    fn slow_rows_are_thinned_out() {
        // 200 runs of 0.1 s fit in the budget; of 0.9 s (180 s) do not.
        assert_eq!(thin_out(0.1, 200), 1);
        assert_eq!(thin_out(0.9, 200), 3);
        // Never below STORAGE_MIN_RUNS runs...
        assert_eq!(thin_out(100.0, 200), 200 / STORAGE_MIN_RUNS);
        // ... unless --runs itself is smaller.
        assert_eq!(thin_out(100.0, 5), 1);
        assert_eq!(thin_out(0.0, 200), 1);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/x\\y"), r"/x\\y");
    }
}
