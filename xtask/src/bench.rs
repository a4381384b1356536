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
//! `berth run` copies the image's root filesystem (some 300 files, most of
//! them symlinks) for every container and deletes it again. On ext4, creating
//! an inode gets slower while many inodes were deleted recently (the
//! allocator skips them, reading inode table blocks to find out), so berth's
//! times move between regimes (40 to 350 ms on the machine this was written
//! on; about 10 ms with the root on a tmpfs) as its own and other programs'
//! deletions age. A row whose median moves by more than half between the
//! first and the last quarter of its runs gets a note saying so, and both
//! figures are in the JSON.
//!
//! The raw samples and the summary go to `target/bench/start.json`, so that
//! figures quoted elsewhere can be traced to a run.
//!
//! `--runs` (default 200) is the number of timed runs per tool; the step
//! table uses half as many. The default takes about a minute and a half on a
//! 2-core machine, most of it in berth's copy of the root filesystem.
//!
//! Everything the benchmark makes lives under one temporary directory and is
//! removed at the end: berth's containers, any runc or crun container whose id
//! starts with `berth-bench-`, and the directory itself, after checking that
//! no mount and no cgroup of ours is left behind.

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

/// Measures container start-up; see the module documentation.
pub fn run(runs: usize) -> Result<()> {
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

    let unified_at_start = mount_points()?.iter().any(|m| m == UNIFIED);
    let scratch = Scratch::create()?;
    let outcome = measure(&scratch, runs, unified_at_start);
    // Clean up whatever happened, then report: results first, so a cleanup
    // failure does not hide them.
    let cleaned = scratch.clean(unified_at_start);
    let report = outcome?;
    println!("{}", report.text);
    let path = setup::target_bin("bench", "start.json"); // target/bench/start.json
    fs::create_dir_all(path.parent().unwrap())?;
    fs::write(&path, serde_json::to_string_pretty(&report.json)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("raw samples and summary: {}", path.display());
    cleaned
}

/// The printed tables and the JSON written to `target/bench/start.json`.
struct Report {
    text: String,
    json: Value,
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
    fn clean(&self, unified_at_start: bool) -> Result<()> {
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
        let cgroups = leftover_cgroups(Path::new("/sys/fs/cgroup"), 5);
        if !cgroups.is_empty() {
            problems.push(format!("cgroups left behind:\n  {}", cgroups.join("\n  ")));
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
}

impl Subject {
    fn new(label: &str, scratch: &Scratch, build: impl Fn(usize) -> Command + 'static) -> Self {
        let slug: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        Self {
            label: label.to_string(),
            build: Box::new(build),
            samples: Vec::new(),
            log: scratch.dir.join("logs").join(slug + ".err"),
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

/// A tool that did not work here, with the reason.
struct LeftOut {
    label: String,
    error: String,
}

/// Runs every subject `runs` times, round-robin (run `i` of each in turn),
/// with output discarded and stderr kept in each subject's log. Run numbers
/// start at 1 (0 is the untimed check). A subject that fails is dropped and
/// returned with its error.
fn alternate(subjects: &mut Vec<Subject>, runs: usize) -> Result<Vec<LeftOut>> {
    let mut logs = Vec::new();
    for s in subjects.iter() {
        logs.push(OpenOptions::new().create(true).append(true).open(&s.log)?);
    }
    let mut failed: Vec<Option<String>> = vec![None; subjects.len()];
    for i in 1..=runs {
        for (k, s) in subjects.iter_mut().enumerate() {
            if failed[k].is_some() {
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
                .args(["run", "--rm", "busybox", "true"]);
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

    Ok(report(
        runs,
        step_runs,
        &subjects,
        &steps,
        &left_out,
        &namespaces,
        hybrid,
    ))
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
    // The same root filesystem berth runs: the one `berth create` copies out.
    let src = format!("{ID_PREFIX}src");
    let out = scratch
        .berth(&["create", "--name", &src, "busybox", "true"])
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
    table(&mut text, subjects, berth.median, "vs berth");
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
    table(&mut text, steps, berth.median, "vs run");
    let sum: f64 = steps.iter().map(|s| s.summary().median).sum();
    let _ = writeln!(
        text,
        "sum of the step medians: {sum:.2} ms; berth run --rm median: {:.2} ms",
        berth.median
    );
    drift_notes(&mut text, steps);

    let rows = |list: &[Subject]| -> Vec<Value> {
        list.iter()
            .map(|s| {
                let m = s.summary();
                json!({
                    "tool": s.label,
                    "command": s.shown(),
                    "p10_ms": m.p10,
                    "median_ms": m.median,
                    "p90_ms": m.p90,
                    "vs_berth_run": m.median / berth.median,
                    "first_quarter_median_ms": quarters(&s.samples).map(|q| q.0),
                    "last_quarter_median_ms": quarters(&s.samples).map(|q| q.1),
                    "samples_ms": s.samples,
                })
            })
            .collect()
    };
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

/// Writes one table: p10, median, p90 and the median's ratio to `reference`.
fn table(text: &mut String, rows: &[Subject], reference: f64, ratio: &str) {
    let width = rows.iter().map(|s| s.label.len()).max().unwrap_or(0).max(4) + 2;
    let _ = writeln!(
        text,
        "{:<width$}{:<8}{:<8}{:<8}{ratio}",
        "tool", "p10", "median", "p90"
    );
    for s in rows {
        let m = s.summary();
        let _ = writeln!(
            text,
            "{:<width$}{:<8.2}{:<8.2}{:<8.2}{}x",
            s.label,
            m.p10,
            m.median,
            m.p90,
            ratio_text(m.median / reference)
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
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/x\\y"), r"/x\\y");
    }
}
