//! `cargo xtask grade`: runs every step's tests against a submission, one
//! test at a time with a timeout, scores them with the points of the step
//! manifests, and writes the report a grading platform reads:
//!
//! - `gradescope`: Gradescope's `results.json` (score, execution_time,
//!   output, tests[] with name, number, score, max_score, status, output,
//!   visibility);
//! - `classroom`: the test-result JSON that GitHub Classroom's
//!   autograding reporter reads (version, status, max_score, tests[]);
//! - `junit`: JUnit XML, which most CI systems display;
//! - `table`: for people.
//!
//! A test that needs root and cannot get it is reported as *not run*, with
//! the reason, and scores nothing: never as passed.
//!
//! A step's points are shared equally by its `tests` and its
//! `instructor_tests`. Instructor tests are not in the starter repository;
//! the grader copies them in from the reference, runs them like the others,
//! and marks them in every report: Gradescope shows them to students only
//! once grades are published, the other formats put `(instructor)` before
//! their names.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use std::collections::HashMap;

use crate::setup;
use crate::steps::{Lab, Step};
use crate::vmtest::{self, VmOutcome, VmStatus, VmTest, tail};

/// How one test ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed,
    TimedOut,
    /// Not run, for this reason.
    NotRun(String),
}

/// One graded test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    pub lab: String,
    pub step: String,
    pub step_title: String,
    /// `TARGET::PATH`, as in the manifest.
    pub test: String,
    /// The test is one of the step's `instructor_tests`.
    pub instructor: bool,
    pub outcome: Outcome,
    pub output: String,
    pub score: f64,
    pub max_score: f64,
    pub seconds: f64,
}

impl TestResult {
    fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }

    /// The test's name in reports: `(instructor) ` before an instructor
    /// test's name.
    pub fn label(&self) -> String {
        if self.instructor {
            format!("{INSTRUCTOR_MARK} {}", self.test)
        } else {
            self.test.clone()
        }
    }
}

/// What reports put before an instructor test's name.
pub const INSTRUCTOR_MARK: &str = "(instructor)";

/// The package name in a crate's Cargo.toml.
fn package_name(dir: &Path) -> Result<String> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
    manifest
        .lines()
        .find_map(|l| {
            l.strip_prefix("name = \"")
                .and_then(|r| r.strip_suffix('"'))
        })
        .map(str::to_string)
        .context("no package name in the lab's Cargo.toml")
}

/// Runs a command in its own process group, killing the whole group when
/// `timeout` passes. Returns (success, timed out, combined output).
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<(bool, bool, String)> {
    use std::os::unix::process::CommandExt;
    let out_file = tempfile::tempfile()?;
    cmd.stdout(out_file.try_clone()?)
        .stderr(out_file.try_clone()?)
        .stdin(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().context("cannot run cargo")?;
    let deadline = Instant::now() + timeout;
    let (ok, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            break (status.success(), false);
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the process group we created.
            unsafe { kill(-(child.id() as i32), 9) };
            let _ = child.wait();
            break (false, true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    let mut f = out_file;
    std::io::Seek::rewind(&mut f)?;
    std::io::Read::read_to_string(&mut f, &mut text)?;
    Ok((ok, timed_out, text))
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// The cargo arguments that run exactly one test.
fn test_args(package: &str, test: &str) -> Result<Vec<String>> {
    let (target, path) = test
        .split_once("::")
        .context("test names look like TARGET::PATH")?;
    let mut args = vec![
        "test".to_string(),
        "--quiet".into(),
        "-p".into(),
        package.to_string(),
    ];
    if target == "lib" {
        args.push("--lib".into());
    } else {
        args.extend(["--test".to_string(), target.to_string()]);
    }
    args.extend(["--".to_string(), "--exact".into(), path.to_string()]);
    Ok(args)
}

/// Grades one step of one lab in `dir`.
/// Where a submission's tests run: its tree, its build directory, and the
/// probe they use.
struct Tree<'a> {
    dir: &'a Path,
    target_dir: &'a Path,
    probe: Option<&'a Path>,
}

fn grade_step(
    tree: &Tree<'_>,
    lab: &Lab,
    step: &Step,
    timeout: Duration,
    privileged: bool,
    vm: Option<&VmResults>,
) -> Result<Vec<TestResult>> {
    let package = package_name(&lab.dir)?;
    let each = step.points as f64 / step.all_tests().count() as f64;
    let mut results = Vec::new();
    for test in step.all_tests() {
        let base = TestResult {
            lab: lab.lab.clone(),
            step: step.id.clone(),
            step_title: step.title.clone(),
            test: test.clone(),
            instructor: step.instructor_tests.contains(test),
            outcome: Outcome::Failed,
            output: String::new(),
            score: 0.0,
            max_score: each,
            seconds: 0.0,
        };
        if step.root && (vm.is_some() || !privileged) {
            let key = (package.clone(), test.clone());
            results.push(match vm {
                Some(Ok(outcomes)) if outcomes.contains_key(&key) => {
                    let ran = &outcomes[&key];
                    let outcome = match ran.status {
                        VmStatus::Passed => Outcome::Passed,
                        VmStatus::Failed => Outcome::Failed,
                        VmStatus::TimedOut => Outcome::TimedOut,
                    };
                    let passed = outcome == Outcome::Passed;
                    TestResult {
                        score: if passed { each } else { 0.0 },
                        output: if passed {
                            String::new()
                        } else {
                            tail(&ran.output, 4000)
                        },
                        outcome,
                        seconds: ran.seconds,
                        ..base
                    }
                }
                Some(Err(why)) => TestResult {
                    outcome: Outcome::NotRun(format!(
                        "this test needs root, and the QEMU machine that was to run it failed: {why}"
                    )),
                    ..base
                },
                _ => TestResult {
                    outcome: Outcome::NotRun(NO_PRIVILEGES.into()),
                    ..base
                },
            });
            continue;
        }
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // No backtraces, whatever the grader's environment says: the report
        // keeps the end of the output, and the backtraces of a panic in a
        // test's helper thread and of the test itself would push the panic's
        // message (a step's `todo!()`, a failed assertion) out of it.
        cmd.args(test_args(&package, test)?)
            .current_dir(tree.dir)
            .env("CARGO_TARGET_DIR", tree.target_dir)
            .env("CI", "true")
            .env("RUST_BACKTRACE", "0");
        // The probe is the reference's (the grader puts the reference's
        // probe crate into every submission): built once, not once per
        // submission inside a test's time limit.
        if let Some(probe) = tree.probe {
            cmd.env("BERTH_PROBE", probe);
        }
        let started = Instant::now();
        let (ok, timed_out, output) = run_with_timeout(cmd, timeout)?;
        // `--exact` with a name that matches nothing "passes" with 0 tests.
        let ran = output.contains("1 passed") || output.contains("1 failed");
        let outcome = match (ok, timed_out, ran) {
            (_, true, _) => Outcome::TimedOut,
            (true, false, true) => Outcome::Passed,
            // A kernel test in a step not marked `root`: without root it
            // refuses to run (testkit's root_test!, under CI=true); as root
            // without the capabilities the kernel refuses it.
            _ if !privileged
                && [
                    "not run: this test needs root",
                    "EPERM",
                    "Operation not permitted",
                ]
                .iter()
                .any(|sign| output.contains(sign)) =>
            {
                Outcome::NotRun(NO_PRIVILEGES.into())
            }
            _ => Outcome::Failed,
        };
        results.push(TestResult {
            score: if outcome == Outcome::Passed {
                each
            } else {
                0.0
            },
            output: match &outcome {
                Outcome::Passed => String::new(),
                Outcome::TimedOut => format!(
                    "timed out after {} s\n{}",
                    timeout.as_secs(),
                    tail(&output, 2000)
                ),
                _ if !ran => format!(
                    "the test did not run (does it compile? does it exist?)\n{}",
                    tail(&output, 2000)
                ),
                _ => tail(&output, 4000),
            },
            outcome,
            seconds: started.elapsed().as_secs_f64(),
            ..base
        });
    }
    Ok(results)
}

/// The crates the labs' tests depend on (the probe run inside containers,
/// and the test helpers): the grader uses the reference's copies.
const TEST_CRATES: [&str; 2] = ["probe", "testkit"];

/// Copies a submission next to the reference tests: the submission's own
/// files, then on top the reference's `tests/` folders (with the instructor
/// tests, which the starter lacks), step manifests (which name them), the
/// test helper crates [`TEST_CRATES`] and the workspace manifest, so that a
/// submission cannot pass by editing the tests or what they rely on.
fn prepare_submission(submission: &Path, reference: &Path, into: &Path) -> Result<()> {
    setup::run(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", submission.display()))
            .arg(into),
    )?;
    let _ = std::fs::remove_dir_all(into.join("target"));
    for lab in crate::steps::load_all(reference)? {
        let rel = lab.dir.strip_prefix(reference)?.to_path_buf();
        let dst = into.join(&rel);
        let _ = std::fs::remove_dir_all(dst.join("tests"));
        std::fs::create_dir_all(&dst)?;
        setup::run(
            Command::new("cp")
                .arg("-a")
                .arg(lab.dir.join("tests"))
                .arg(dst.join("tests")),
        )?;
        std::fs::copy(lab.dir.join("steps.toml"), dst.join("steps.toml"))?;
    }
    for name in TEST_CRATES {
        let src = reference.join(name);
        if !src.is_dir() {
            bail!("the reference has no {name}/ crate to grade with");
        }
        let dst = into.join(name);
        let _ = std::fs::remove_dir_all(&dst);
        setup::run(Command::new("cp").arg("-a").arg(&src).arg(&dst))?;
        let _ = std::fs::remove_dir_all(dst.join("target"));
    }
    // The workspace manifest names where the test crates live: the
    // reference's, so that a submission cannot point them elsewhere.
    std::fs::copy(reference.join("Cargo.toml"), into.join("Cargo.toml"))?;
    Ok(())
}

/// Why a test that needs privileges was not run.
const NO_PRIVILEGES: &str = "needs root that may make namespaces and mounts, which this grader may not; grade as root on a Linux machine or VM, or with --vm";

/// How to use the QEMU machine for the steps that need root (`--vm`).
#[derive(Debug, Clone, Default)]
pub struct Vm {
    /// The kernel to boot; by default the newest in /boot.
    pub kernel: Option<PathBuf>,
    /// Use KVM rather than QEMU's emulator.
    pub kvm: bool,
}

/// The outcomes of the tests run in the machine, by (package, TARGET::PATH),
/// or why the machine could not run them.
type VmResults = std::result::Result<HashMap<(String, String), VmOutcome>, String>;

/// Runs the tests of the steps that need root in the QEMU machine that
/// `cargo xtask vmtest` boots, all in one boot.
fn run_root_steps_in_vm(
    dir: &Path,
    target_dir: &Path,
    only: Option<&str>,
    timeout: Duration,
    vm: Vm,
) -> VmResults {
    let inner = || -> Result<HashMap<(String, String), VmOutcome>> {
        let (mut tests, mut keys) = (Vec::new(), Vec::new());
        for lab in crate::steps::load_all(dir)? {
            let package = package_name(&lab.dir)?;
            for step in lab.steps.iter().filter(|s| s.root) {
                if only.is_some_and(|o| o != step.id && o != lab.lab) {
                    continue;
                }
                for test in step.all_tests() {
                    let (target, path) = test
                        .split_once("::")
                        .context("test names look like TARGET::PATH")?;
                    tests.push(VmTest {
                        package: package.clone(),
                        target: target.into(),
                        name: path.into(),
                    });
                    keys.push((package.clone(), test.clone()));
                }
            }
        }
        if tests.is_empty() {
            return Ok(HashMap::new());
        }
        eprintln!(
            "running {} tests that need root in the QEMU machine",
            tests.len()
        );
        let outcomes = vmtest::run_tests(
            dir,
            target_dir,
            &tests,
            vm.kernel.as_deref(),
            vm.kvm,
            timeout,
        )?;
        Ok(keys.into_iter().zip(outcomes).collect())
    };
    inner().map_err(|e| format!("{e:#}"))
}

/// Grades `submission` (or the reference itself) and returns every result.
/// Tests of steps that need root run in the QEMU machine with `vm`, and are
/// reported as not run when the grader cannot make containers itself.
pub fn grade(
    submission: Option<&Path>,
    only: Option<&str>,
    timeout: Duration,
    vm: Option<Vm>,
) -> Result<Vec<TestResult>> {
    let reference = setup::workspace();
    let staging;
    let dir: PathBuf = match submission {
        Some(s) => {
            staging = tempfile::Builder::new().prefix("berth-grade-").tempdir()?;
            prepare_submission(s, &reference, staging.path())?;
            staging.path().to_path_buf()
        }
        None => reference.clone(),
    };
    // Separate build directories for the reference and for submissions:
    // cargo names a workspace member's artifacts the same wherever the
    // workspace lives, so two trees sharing one directory overwrite each
    // other's test binaries.
    let target_dir = reference.join(if submission.is_some() {
        "target/course-submission"
    } else {
        "target/course"
    });
    // Build once up front, so the per-test timeouts time tests, not compiling.
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .args(["test", "--no-run", "--quiet", "--workspace"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target_dir);
    let (built, _, build_log) = run_with_timeout(build, Duration::from_secs(1800))?;
    if !built {
        eprintln!(
            "warning: the submission does not fully build; tests that need the broken parts fail\n{}",
            tail(&build_log, 3000)
        );
    }
    let privileged = setup::can_make_containers();
    if !privileged && vm.is_none() {
        eprintln!("warning: {NO_PRIVILEGES}");
    }
    let vm_results = vm.map(|vm| run_root_steps_in_vm(&dir, &target_dir, only, timeout, vm));
    let probe = match crate::test::build_probe() {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("warning: cannot build the probe ({e:#}); each test builds its own");
            None
        }
    };
    let mut results = Vec::new();
    for lab in crate::steps::load_all(&dir)? {
        for step in &lab.steps {
            if only.is_some_and(|o| o != step.id && o != lab.lab) {
                continue;
            }
            eprintln!("grading {} {}", step.id, step.title);
            let tree = Tree {
                dir: &dir,
                target_dir: &target_dir,
                probe: probe.as_deref(),
            };
            results.extend(grade_step(
                &tree,
                &lab,
                step,
                timeout,
                privileged,
                vm_results.as_ref(),
            )?);
        }
    }
    if results.is_empty() {
        bail!("no step matched {only:?}");
    }
    Ok(results)
}

fn status_word(o: &Outcome) -> &'static str {
    match o {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::TimedOut => "timed out",
        Outcome::NotRun(_) => "not run",
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Gradescope's `results.json`.
pub fn gradescope(results: &[TestResult], seconds: f64) -> Value {
    let score: f64 = results.iter().map(|r| r.score).sum();
    // The summary is visible at once, so it speaks only of the tests that
    // are: it must not give away how the instructor tests went.
    let shown: Vec<&TestResult> = results.iter().filter(|r| !r.instructor).collect();
    let not_run = shown
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::NotRun(_)))
        .count();
    let mut summary = format!(
        "Score: {:.2} / {:.2}",
        shown.iter().map(|r| r.score).sum::<f64>(),
        shown.iter().map(|r| r.max_score).sum::<f64>()
    );
    let hidden = results.len() - shown.len();
    if hidden > 0 {
        summary.push_str(&format!(" on the tests shown now; {hidden} instructor tests count too, and appear here once grades are published."));
    }
    if not_run > 0 {
        summary.push_str(&format!("\n\n**{not_run} tests were not run** because the grader had no root; they score 0 until graded on a machine with root."));
    }
    json!({
        "score": round2(score),
        "execution_time": seconds.round() as u64,
        "output": summary,
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": results.iter().map(|r| json!({
            "name": format!("{} {} — {}", r.step, r.step_title, r.label()),
            "number": r.step,
            "score": round2(r.score),
            "max_score": round2(r.max_score),
            "status": if r.passed() { "passed" } else { "failed" },
            "output": match &r.outcome {
                Outcome::NotRun(why) => format!("not run: {why}"),
                other => format!("{}\n{}", status_word(other), r.output).trim_end().to_string(),
            },
            "output_format": "text",
            "tags": if r.instructor {
                vec![format!("lab {}", r.lab), "instructor".to_string()]
            } else {
                vec![format!("lab {}", r.lab)]
            },
            // Students see an instructor test (its name, output and score)
            // only once the instructor publishes the grades.
            "visibility": if r.instructor { "after_published" } else { "visible" },
        })).collect::<Vec<_>>(),
    })
}

/// The test-result JSON of GitHub Classroom's autograding reporter.
pub fn classroom(results: &[TestResult]) -> Value {
    let all_passed = results.iter().all(TestResult::passed);
    json!({
        "version": 1,
        "status": if all_passed { "pass" } else { "fail" },
        "max_score": round2(results.iter().map(|r| r.max_score).sum()),
        "tests": results.iter().map(|r| json!({
            "name": format!("{} {}", r.step, r.label()),
            "status": match r.outcome { Outcome::Passed => "pass", Outcome::Failed | Outcome::NotRun(_) => "fail", Outcome::TimedOut => "error" },
            "message": match &r.outcome { Outcome::NotRun(why) => format!("not run: {why}"), other => status_word(other).to_string() },
            "test_code": r.test,
            "filename": "",
            "line_no": 0,
            "execution_time": format!("{:.2}s", r.seconds),
            "score": round2(r.score),
        })).collect::<Vec<_>>(),
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// JUnit XML: one test suite per step.
pub fn junit(results: &[TestResult]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let failures = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed | Outcome::TimedOut))
        .count();
    let skipped = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::NotRun(_)))
        .count();
    out.push_str(&format!("<testsuites name=\"containers the hard way\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">\n", results.len()));
    let mut steps: Vec<&str> = results.iter().map(|r| r.step.as_str()).collect();
    steps.dedup();
    for step in steps {
        let rs: Vec<&TestResult> = results.iter().filter(|r| r.step == step).collect();
        let f = rs
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed | Outcome::TimedOut))
            .count();
        let s = rs
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::NotRun(_)))
            .count();
        let time: f64 = rs.iter().map(|r| r.seconds).sum();
        out.push_str(&format!(
            "  <testsuite name=\"{step} {}\" tests=\"{}\" failures=\"{f}\" skipped=\"{s}\" time=\"{time:.3}\">\n",
            xml_escape(&rs[0].step_title),
            rs.len()
        ));
        for r in rs {
            out.push_str(&format!(
                "    <testcase classname=\"step.{step}\" name=\"{}\" time=\"{:.3}\">",
                xml_escape(&r.label()),
                r.seconds
            ));
            match &r.outcome {
                Outcome::Passed => {}
                Outcome::NotRun(why) => out.push_str(&format!(
                    "<skipped message=\"not run: {}\"/>",
                    xml_escape(why)
                )),
                other => out.push_str(&format!(
                    "<failure message=\"{}\">{}</failure>",
                    status_word(other),
                    xml_escape(&r.output)
                )),
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// A table for people.
pub fn table(results: &[TestResult]) -> String {
    let mut out = format!(
        "{:<6} {:<10} {:>6}  {}\n",
        "STEP", "RESULT", "POINTS", "TEST"
    );
    for r in results {
        out.push_str(&format!(
            "{:<6} {:<10} {:>6.2}  {}\n",
            r.step,
            status_word(&r.outcome),
            r.score,
            r.label()
        ));
        if let Outcome::NotRun(why) = &r.outcome {
            out.push_str(&format!("{:>26}{why}\n", ""));
        }
    }
    let score: f64 = results.iter().map(|r| r.score).sum();
    let max: f64 = results.iter().map(|r| r.max_score).sum();
    let passed = results.iter().filter(|r| r.passed()).count();
    out.push_str(&format!("\nscore {score:.2} / {max:.2}\n"));
    let instructor: Vec<&TestResult> = results.iter().filter(|r| r.instructor).collect();
    if !instructor.is_empty() {
        out.push_str(&format!(
            "of which {} instructor tests: {:.2} / {:.2}\n",
            instructor.len(),
            instructor.iter().map(|r| r.score).sum::<f64>(),
            instructor.iter().map(|r| r.max_score).sum::<f64>()
        ));
    }
    let not_run = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::NotRun(_)))
        .count();
    out.push_str(&format!(
        "{passed} passed, {} failed{}\n",
        results.len() - passed - not_run,
        if not_run > 0 {
            format!(", {not_run} not run")
        } else {
            String::new()
        }
    ));
    out
}

/// `cargo xtask grade`.
pub fn run(
    submission: Option<&Path>,
    format: &str,
    out: Option<&Path>,
    only: Option<&str>,
    timeout: u64,
    vm: Option<Vm>,
) -> Result<()> {
    let started = Instant::now();
    let results = grade(submission, only, Duration::from_secs(timeout), vm)?;
    let seconds = started.elapsed().as_secs_f64();
    let text = match format {
        "gradescope" => serde_json::to_string_pretty(&gradescope(&results, seconds))?,
        "classroom" => serde_json::to_string_pretty(&classroom(&results))?,
        "junit" => junit(&results),
        "table" => table(&results),
        other => bail!("unknown --format {other}: use gradescope, classroom, junit or table"),
    };
    match out {
        Some(path) => {
            std::fs::write(path, &text)?;
            eprintln!("==> {format} report written to {}", path.display());
            eprint!("{}", table(&results));
        }
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<TestResult> {
        let r = |step: &str, test: &str, outcome: Outcome, score: f64| TestResult {
            lab: "01".into(),
            step: step.into(),
            step_title: "A step".into(),
            test: test.into(),
            instructor: test.starts_with("instructor::"),
            output: if outcome == Outcome::Failed {
                "assertion failed: <left> & \"right\"".into()
            } else {
                String::new()
            },
            outcome,
            score,
            max_score: 2.5,
            seconds: 0.25,
        };
        vec![
            r("01.1", "lib::a", Outcome::Passed, 2.5),
            r("01.1", "steps::b", Outcome::Failed, 0.0),
            r(
                "01.2",
                "steps::c",
                Outcome::NotRun("needs root".into()),
                0.0,
            ),
            r("01.2", "steps::d", Outcome::TimedOut, 0.0),
            r("01.2", "instructor::e", Outcome::Passed, 2.5),
        ]
    }

    #[test]
    fn gradescope_has_the_documented_fields() {
        let v = gradescope(&sample(), 12.4);
        assert_eq!(v["score"], 5.0);
        assert_eq!(v["execution_time"], 12);
        assert!(
            ["text", "html", "simple_format", "md", "ansi"]
                .contains(&v["output_format"].as_str().unwrap())
        );
        assert!(
            v["output"]
                .as_str()
                .unwrap()
                .contains("1 tests were not run")
        );
        for t in v["tests"].as_array().unwrap() {
            for field in [
                "name",
                "number",
                "score",
                "max_score",
                "status",
                "output",
                "visibility",
            ] {
                assert!(t.get(field).is_some(), "missing {field} in {t}");
            }
            assert!(["passed", "failed"].contains(&t["status"].as_str().unwrap()));
            assert!(
                ["hidden", "after_due_date", "after_published", "visible"]
                    .contains(&t["visibility"].as_str().unwrap())
            );
        }
        // Not run is never passed, and says why.
        let not_run = &v["tests"][2];
        assert_eq!(
            (not_run["status"].as_str(), not_run["score"].as_f64()),
            (Some("failed"), Some(0.0))
        );
        assert!(
            not_run["output"]
                .as_str()
                .unwrap()
                .starts_with("not run: needs root")
        );
        // The summary counts only the tests students see now.
        assert!(
            v["output"].as_str().unwrap().starts_with(
                "Score: 2.50 / 10.00 on the tests shown now; 1 instructor tests count too"
            ),
            "{}",
            v["output"]
        );
        // Instructor tests appear once grades are published, and say what
        // they are; the others are visible at once.
        let tests = v["tests"].as_array().unwrap();
        let instructor = &tests[4];
        assert_eq!(instructor["visibility"], "after_published");
        assert_eq!(
            instructor["name"],
            "01.2 A step — (instructor) instructor::e"
        );
        assert_eq!(instructor["tags"], json!(["lab 01", "instructor"]));
        assert_eq!(instructor["score"], 2.5);
        for t in &tests[..4] {
            assert_eq!(t["visibility"], "visible", "{t}");
            assert!(!t["name"].as_str().unwrap().contains("instructor"), "{t}");
        }
    }

    #[test]
    fn classroom_matches_the_reporters_schema() {
        let v = classroom(&sample());
        assert_eq!(v["version"], 1);
        assert_eq!(v["status"], "fail");
        assert_eq!(v["max_score"], 12.5);
        let tests = v["tests"].as_array().unwrap();
        assert_eq!(tests.len(), 5);
        assert_eq!(tests[4]["name"], "01.2 (instructor) instructor::e");
        assert_eq!(tests[0]["name"], "01.1 lib::a");
        for t in tests {
            for field in [
                "name",
                "status",
                "message",
                "test_code",
                "filename",
                "line_no",
                "execution_time",
                "score",
            ] {
                assert!(t.get(field).is_some(), "missing {field}");
            }
            assert!(["pass", "fail", "error"].contains(&t["status"].as_str().unwrap()));
        }
        // The reporter sums test scores against max_score.
        let sum: f64 = tests.iter().map(|t| t["score"].as_f64().unwrap()).sum();
        assert_eq!(sum, 5.0);
    }

    #[test]
    fn junit_is_well_formed_and_counts() {
        let x = junit(&sample());
        assert!(x.starts_with("<?xml"));
        assert!(x.contains(
            "<testsuites name=\"containers the hard way\" tests=\"5\" failures=\"2\" skipped=\"1\">"
        ));
        assert!(
            x.contains("<testcase classname=\"step.01.2\" name=\"(instructor) instructor::e\"")
        );
        assert!(x.contains("<testcase classname=\"step.01.1\" name=\"lib::a\""));
        assert!(x.contains("<skipped message=\"not run: needs root\"/>"));
        assert!(x.contains("&lt;left&gt; &amp; &quot;right&quot;"));
        assert_eq!(x.matches("<testsuite ").count(), 2);
        assert_eq!(
            x.matches("<testcase ").count(),
            x.matches("</testcase>").count()
        );
    }

    #[test]
    fn table_ends_with_a_plain_summary() {
        let t = table(&sample());
        assert!(t.contains("score 5.00 / 12.50\nof which 1 instructor tests: 2.50 / 2.50\n"));
        assert!(t.contains("  (instructor) instructor::e\n"), "{t}");
        assert!(t.trim_end().ends_with("2 passed, 2 failed, 1 not run"));
        // Without instructor tests there is no line about them.
        let t = table(&sample()[..4]);
        assert!(!t.contains("instructor"), "{t}");
    }

    #[test]
    fn a_submission_gets_the_references_tests_and_test_crates() {
        let dir = tempfile::tempdir().unwrap();
        let (reference, submission, into) = (
            dir.path().join("reference"),
            dir.path().join("submission"),
            dir.path().join("into"),
        );
        let write = |root: &Path, rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let manifest = "lab = \"01\"\ntitle = \"x\"\nbook = \"x.md\"\n[[step]]\nid = \"01.1\"\ntitle = \"One\"\nbook = \"x.md#one\"\npoints = 2\nroot = false\ntests = [\"steps::a\"]\n";
        write(
            &reference,
            "labs/01-x/steps.toml",
            &format!("{manifest}instructor_tests = [\"instructor::b\"]\nhints = [\"h\"]\n"),
        );
        write(&reference, "labs/01-x/tests/steps.rs", "fn a() {}");
        write(&reference, "labs/01-x/tests/instructor.rs", "fn b() {}");
        write(&reference, "labs/01-x/src/lib.rs", "reference code");
        write(&reference, "probe/src/main.rs", "reference probe");
        write(&reference, "testkit/src/lib.rs", "reference testkit");
        write(&reference, "Cargo.toml", "[workspace]\nreference = true\n");
        // The starter lacks the instructor tests; the student changed a
        // test, the test helpers and the probe.
        write(
            &submission,
            "labs/01-x/steps.toml",
            &format!("{manifest}hints = [\"h\"]\n"),
        );
        write(
            &submission,
            "labs/01-x/tests/steps.rs",
            "fn a() { /* passes */ }",
        );
        write(&submission, "labs/01-x/src/lib.rs", "student code");
        write(&submission, "probe/src/main.rs", "student probe");
        write(&submission, "testkit/src/lib.rs", "student testkit");
        write(&submission, "testkit/src/extra.rs", "student helper");
        write(&submission, "Cargo.toml", "[workspace]\n# testkit moved\n");
        std::fs::create_dir_all(&into).unwrap();

        prepare_submission(&submission, &reference, &into).unwrap();
        let read = |rel: &str| std::fs::read_to_string(into.join(rel)).unwrap();
        assert_eq!(read("labs/01-x/src/lib.rs"), "student code");
        assert_eq!(read("labs/01-x/tests/steps.rs"), "fn a() {}");
        assert_eq!(read("labs/01-x/tests/instructor.rs"), "fn b() {}");
        assert_eq!(read("Cargo.toml"), "[workspace]\nreference = true\n");
        assert_eq!(read("probe/src/main.rs"), "reference probe");
        assert_eq!(read("testkit/src/lib.rs"), "reference testkit");
        assert!(!into.join("testkit/src/extra.rs").exists());
        let labs = crate::steps::load_all(&into).unwrap();
        assert_eq!(labs[0].steps[0].instructor_tests, ["instructor::b"]);
    }

    #[test]
    fn single_tests_are_selected_exactly() {
        assert_eq!(
            test_args("lab01-namespaces", "steps::step_01_1_a").unwrap(),
            [
                "test",
                "--quiet",
                "-p",
                "lab01-namespaces",
                "--test",
                "steps",
                "--",
                "--exact",
                "step_01_1_a"
            ]
        );
        assert_eq!(test_args("p", "lib::m::tests::t").unwrap()[4], "--lib");
    }

    #[test]
    fn grading_step_01_1_of_the_reference_gives_full_points() {
        let results = grade(None, Some("01.1"), Duration::from_secs(120), None).unwrap();
        let labs = crate::steps::load_all(&setup::workspace()).unwrap();
        let step = labs[0].steps.iter().find(|s| s.id == "01.1").unwrap();
        assert_eq!(
            results.len(),
            step.tests.len() + step.instructor_tests.len()
        );
        // The step's points are shared by all its tests, instructor tests too.
        let max: f64 = results.iter().map(|r| r.max_score).sum();
        assert!((max - step.points as f64).abs() < 1e-9, "{max}");
        assert_eq!(
            results.iter().filter(|r| r.instructor).count(),
            step.instructor_tests.len()
        );
        assert!(!step.instructor_tests.is_empty());
        for r in &results {
            if testkit_like_root() || !r.test.contains("container") {
                assert_eq!(r.outcome, Outcome::Passed, "{}: {}", r.test, r.output);
            }
        }
    }

    fn testkit_like_root() -> bool {
        setup::is_root()
    }
}
