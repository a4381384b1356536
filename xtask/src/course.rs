//! The student's runner: `cargo xtask check [STEP|LAB] [--watch]` runs a
//! step's tests and shows progress over the course; `cargo xtask hint STEP`
//! gives the next hint. Progress lives in `target/course/progress.json`.
//! The first `check` also runs `berth doctor`, the machine's preflight.
//!
//! The runner runs a step's `tests` only, never its `instructor_tests`:
//! the starter repository does not have those, and in the reference they
//! are the grader's business. It behaves the same in both, and a step that
//! passes shows the step's full points.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::setup;
use crate::steps::{Lab, Step};

/// What the runner remembers between runs.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    /// Steps whose tests all passed.
    pub passed: BTreeSet<String>,
    /// How many hints of each step have been shown.
    pub hints: BTreeMap<String, usize>,
    /// Whether `berth doctor` has run (once, on the first `check`).
    #[serde(default)]
    pub doctor: bool,
}

fn progress_path() -> PathBuf {
    setup::workspace().join("target/course/progress.json")
}

impl Progress {
    pub fn load(path: &Path) -> Progress {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

/// A bar like `[#######.............] 35/100 points, 4/10 steps`.
pub fn progress_bar(labs: &[Lab], progress: &Progress, width: usize) -> String {
    let steps: Vec<&Step> = labs.iter().flat_map(|l| &l.steps).collect();
    let total: u32 = steps.iter().map(|s| s.points).sum();
    let done: u32 = steps
        .iter()
        .filter(|s| progress.passed.contains(&s.id))
        .map(|s| s.points)
        .sum();
    let filled = if total == 0 {
        0
    } else {
        (done as usize * width) / total as usize
    };
    format!(
        "[{}{}] {done}/{total} points, {}/{} steps",
        "#".repeat(filled),
        ".".repeat(width - filled),
        steps
            .iter()
            .filter(|s| progress.passed.contains(&s.id))
            .count(),
        steps.len()
    )
}

/// Which steps a `check` argument means: a step id, a lab number, or (none)
/// the first step not yet passed.
pub fn select<'a>(
    labs: &'a [Lab],
    which: Option<&str>,
    progress: &Progress,
) -> Result<Vec<(&'a Lab, &'a Step)>> {
    let all: Vec<(&Lab, &Step)> = labs
        .iter()
        .flat_map(|l| l.steps.iter().map(move |s| (l, s)))
        .collect();
    let chosen: Vec<_> = match which {
        Some(w) if w.contains('.') => all.into_iter().filter(|(_, s)| s.id == w).collect(),
        Some(w) => {
            let lab = format!("{:0>2}", w.trim_start_matches("lab"));
            all.into_iter().filter(|(l, _)| l.lab == lab).collect()
        }
        None => all
            .into_iter()
            .find(|(_, s)| !progress.passed.contains(&s.id))
            .into_iter()
            .collect(),
    };
    if chosen.is_empty() && which.is_some() {
        bail!(
            "no step or lab {:?}; steps look like 01.3, labs like 01",
            which.unwrap_or_default()
        );
    }
    Ok(chosen)
}

/// The cargo commands that run a step's tests (its `tests`, not its
/// `instructor_tests`), one per test target.
pub fn test_commands(lab: &Lab, step: &Step) -> Result<Vec<Vec<String>>> {
    let manifest = std::fs::read_to_string(lab.dir.join("Cargo.toml"))?;
    let package = manifest
        .lines()
        .find_map(|l| {
            l.strip_prefix("name = \"")
                .and_then(|r| r.strip_suffix('"'))
        })
        .context("the lab's Cargo.toml has no package name")?;
    let mut by_target: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in &step.tests {
        let (target, path) = t
            .split_once("::")
            .context("test names look like TARGET::PATH")?;
        by_target.entry(target).or_default().push(path);
    }
    Ok(by_target
        .into_iter()
        .map(|(target, paths)| {
            let mut c: Vec<String> =
                vec!["test".into(), "--quiet".into(), "-p".into(), package.into()];
            if target == "lib" {
                c.push("--lib".into());
            } else {
                c.extend(["--test".into(), target.into()]);
            }
            c.extend(["--".into(), "--exact".into()]);
            c.extend(paths.iter().map(|p| p.to_string()));
            c
        })
        .collect())
}

/// Runs one step's tests; true when they all passed.
fn run_step(lab: &Lab, step: &Step) -> Result<bool> {
    println!("\n\x1b[1m{} {}\x1b[0m", step.id, step.title);
    if step.root && !setup::is_root() {
        println!(
            "  needs root: its tests create namespaces and mounts, which only root may do.\n  run it as root: sudo -E env PATH=\"$PATH\" cargo xtask check {}",
            step.id
        );
        return Ok(false);
    }
    let mut ok = true;
    for args in test_commands(lab, step)? {
        let status = setup::cargo(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .status()
            .context("cannot run cargo test")?;
        ok &= status.success();
    }
    if ok {
        println!("  \x1b[32mpassed\x1b[0m ({} points)", step.points);
    } else {
        println!(
            "  \x1b[31mnot yet\x1b[0m: read {} and try `cargo xtask hint {}`",
            step.book, step.id
        );
    }
    Ok(ok)
}

/// Builds berth and prints its `doctor` report: what this machine lacks
/// for the course, each with its fix. A failing check is reported, not
/// fatal. True when the doctor ran.
fn run_doctor() -> bool {
    let berth = setup::target_bin("debug", "berth");
    println!(
        "\x1b[1mberth doctor\x1b[0m: is this machine ready for the course? (shown on the first check; run {} doctor any time)",
        berth.display()
    );
    let built = setup::cargo(&["build", "--quiet", "-p", "berth"]).status();
    if !built.is_ok_and(|s| s.success()) {
        println!("  cannot build berth to run it now; it runs on the next check");
        return false;
    }
    match std::process::Command::new(&berth).arg("doctor").status() {
        Ok(status) => {
            if !status.success() {
                println!(
                    "  some checks fail: the steps that need them fail too until you run the fixes above; carrying on"
                );
            }
            true
        }
        Err(e) => {
            println!("  cannot run berth doctor ({e}); it runs on the next check");
            false
        }
    }
}

/// `cargo xtask check`.
pub fn check(which: Option<&str>, watch: bool) -> Result<()> {
    let labs = crate::steps::load_all(&setup::workspace())?;
    let path = progress_path();
    let mut progress = Progress::load(&path);
    if !progress.doctor && run_doctor() {
        progress.doctor = true;
        progress.save(&path)?;
    }
    loop {
        let mut progress = Progress::load(&path);
        let chosen = select(&labs, which, &progress)?;
        if chosen.is_empty() {
            println!("Every step passes. {}", progress_bar(&labs, &progress, 30));
            return Ok(());
        }
        for (lab, step) in &chosen {
            if run_step(lab, step)? {
                progress.passed.insert(step.id.clone());
            } else {
                progress.passed.remove(&step.id);
            }
        }
        progress.save(&path)?;
        println!("\n{}", progress_bar(&labs, &progress, 30));
        match select(&labs, None, &progress)?.first() {
            Some((_, next)) => println!(
                "next: step {} — {} (cargo xtask check)",
                next.id, next.title
            ),
            None => println!("next: nothing — the course is complete"),
        }
        if !watch {
            return Ok(());
        }
        println!("watching labs/ for changes (Ctrl-C to stop)");
        wait_for_change(&setup::workspace().join("labs"))?;
    }
}

fn newest_change(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        let t = if p.is_dir() {
            newest_change(&p)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(newest)
        };
        newest = newest.max(t);
    }
    newest
}

fn wait_for_change(dir: &Path) -> Result<()> {
    let start = newest_change(dir);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if newest_change(dir) > start {
            return Ok(());
        }
    }
}

/// `cargo xtask hint STEP`: the next hint, one level more each time.
pub fn hint(step_id: &str) -> Result<()> {
    let labs = crate::steps::load_all(&setup::workspace())?;
    let Some(step) = labs.iter().flat_map(|l| &l.steps).find(|s| s.id == step_id) else {
        bail!("no step {step_id:?}; steps look like 01.3 (see labs/*/steps.toml)");
    };
    let path = progress_path();
    let mut progress = Progress::load(&path);
    let shown = progress.hints.entry(step.id.clone()).or_default();
    let level = (*shown).min(step.hints.len() - 1);
    println!(
        "hint {}/{} for step {} ({}):\n\n  {}\n",
        level + 1,
        step.hints.len(),
        step.id,
        step.title,
        step.hints[level]
    );
    if level + 1 < step.hints.len() {
        println!(
            "run `cargo xtask hint {}` again for the next one; the book section is {}",
            step.id, step.book
        );
        *shown = level + 1;
    } else {
        println!("that was the last hint; the book section is {}", step.book);
    }
    progress.save(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labs() -> Vec<Lab> {
        crate::steps::load_all(&setup::workspace()).unwrap()
    }

    #[test]
    fn next_step_is_the_first_not_passed() {
        let labs = labs();
        let mut p = Progress::default();
        assert_eq!(select(&labs, None, &p).unwrap()[0].1.id, "01.1");
        p.passed.insert("01.1".into());
        assert_eq!(select(&labs, None, &p).unwrap()[0].1.id, "01.2");
        assert_eq!(select(&labs, Some("01.3"), &p).unwrap()[0].1.id, "01.3");
        assert_eq!(
            select(&labs, Some("1"), &p).unwrap().len(),
            labs[0].steps.len()
        );
        assert!(select(&labs, Some("09.9"), &p).is_err());
    }

    #[test]
    fn tests_are_grouped_by_target() {
        let labs = labs();
        let step = labs[0].steps.iter().find(|s| s.id == "01.3").unwrap();
        let cmds = test_commands(&labs[0], step).unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(
            &cmds[0][..5],
            ["test", "--quiet", "-p", "lab01-namespaces", "--lib"]
        );
        assert!(cmds[0].contains(&"rootfs::tests::setup_sequence".to_string()));
        assert_eq!(&cmds[1][4..6], ["--test", "steps"]);
    }

    #[test]
    fn instructor_tests_are_never_run() {
        let labs = labs();
        let mut with_instructor_tests = 0;
        for lab in &labs {
            for step in &lab.steps {
                with_instructor_tests += usize::from(!step.instructor_tests.is_empty());
                let cmds = test_commands(lab, step).unwrap();
                assert!(
                    !cmds.iter().flatten().any(|a| a.contains("instructor")),
                    "{}: {cmds:?}",
                    step.id
                );
                // The tests after `--exact` are exactly the step's `tests`.
                let mut ran: Vec<&str> = cmds
                    .iter()
                    .flat_map(|c| {
                        let exact = c.iter().position(|a| a == "--exact").unwrap();
                        c[exact + 1..].iter().map(String::as_str)
                    })
                    .collect();
                let mut want: Vec<&str> = step
                    .tests
                    .iter()
                    .map(|t| t.split_once("::").unwrap().1)
                    .collect();
                ran.sort();
                want.sort();
                assert_eq!(ran, want, "{}", step.id);
            }
        }
        assert!(with_instructor_tests > 0, "no step has instructor tests");
    }

    #[test]
    fn the_bar_counts_points() {
        let labs = labs();
        let points: u32 = labs.iter().flat_map(|l| &l.steps).map(|s| s.points).sum();
        let steps: usize = labs.iter().map(|l| l.steps.len()).sum();
        let mut p = Progress::default();
        let empty = format!("[..........] 0/{points} points, 0/{steps} steps");
        assert!(progress_bar(&labs, &p, 10).starts_with(&empty));
        // Step 01.3 is worth 20 points: with one mark per 20 points, it fills one.
        p.passed.insert("01.3".into());
        let bar = progress_bar(&labs, &p, points as usize / 20);
        assert!(
            bar.starts_with(&format!("[#{}", ".".repeat(points as usize / 20 - 1)))
                && bar.contains(&format!(" 20/{points} points, 1/{steps} steps")),
            "{bar}"
        );
    }

    #[test]
    fn progress_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let mut p = Progress::default();
        p.passed.insert("01.1".into());
        p.hints.insert("01.2".into(), 2);
        p.save(&path).unwrap();
        assert_eq!(Progress::load(&path), p);
        assert_eq!(
            Progress::load(&dir.path().join("missing.json")),
            Progress::default()
        );
    }

    #[test]
    fn progress_from_before_the_doctor_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"passed": ["01.1"], "hints": {}}"#).unwrap();
        let p = Progress::load(&path);
        assert!(p.passed.contains("01.1"));
        assert!(!p.doctor, "the doctor has not run yet");
    }

    #[test]
    fn the_doctor_wants_the_pinned_mdbook() {
        let doctor =
            std::fs::read_to_string(setup::workspace().join("capstone/src/doctor.rs")).unwrap();
        let pin = format!(
            "pub const MDBOOK_VERSION: &str = \"{}\";",
            setup::MDBOOK_VERSION
        );
        assert!(doctor.contains(&pin), "capstone/src/doctor.rs lacks {pin}");
    }
}
