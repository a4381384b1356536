//! The labs' step manifests (`labs/*/steps.toml`), read and checked.
//!
//! Every course tool reads the steps from these files. The checks here make
//! sure a manifest never names a test, a book section or a hint that does
//! not exist.
//!
//! A step has two lists of tests. `tests` are the ones students have: the
//! student runner (`cargo xtask check`) runs them, and they ship in the
//! starter repository. `instructor_tests` are kept from students: they live
//! in each lab's `tests/instructor.rs`, which the starter export leaves out
//! (together with the `instructor_tests` lines of the manifests), and the
//! grader puts them back and scores them with the others.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// One lab's manifest.
#[derive(Debug, Deserialize)]
pub struct Lab {
    pub lab: String,
    pub title: String,
    pub book: String,
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
    /// The lab's folder (filled in after reading).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// One step of a lab.
#[derive(Debug, Deserialize)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub book: String,
    pub points: u32,
    pub root: bool,
    /// The tests students have and `cargo xtask check` runs.
    pub tests: Vec<String>,
    /// Tests only the grader runs, named like `tests` (normally
    /// `instructor::NAME`, a test in `tests/instructor.rs`). Absent from the
    /// starter's manifests.
    #[serde(default)]
    pub instructor_tests: Vec<String>,
    pub hints: Vec<String>,
}

impl Step {
    /// Every test that scores this step: the students' tests, then the
    /// instructor tests.
    pub fn all_tests(&self) -> impl Iterator<Item = &String> {
        self.tests.iter().chain(&self.instructor_tests)
    }
}

/// The test target that holds instructor tests: `tests/instructor.rs`.
pub const INSTRUCTOR_TARGET: &str = "instructor";

/// Reads every lab's manifest, in lab order.
pub fn load_all(workspace: &Path) -> Result<Vec<Lab>> {
    let mut labs = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace.join("labs"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("steps.toml").exists())
        .collect();
    dirs.sort();
    for dir in dirs {
        let path = dir.join("steps.toml");
        let text = std::fs::read_to_string(&path)?;
        let mut lab: Lab = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid step manifest", path.display()))?;
        lab.dir = dir;
        labs.push(lab);
    }
    Ok(labs)
}

/// The id mdBook gives a heading: lower case, spaces to dashes, and only
/// letters, digits, `-` and `_` kept.
pub fn heading_id(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            c if c.is_whitespace() => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The heading ids of a Markdown file.
pub fn heading_ids(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut ids = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') {
            ids.push(heading_id(line.trim_start_matches('#')));
        }
    }
    ids
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// True when a test named `TARGET::PATH` exists: a `fn NAME` under the
/// lab's `src/` (target `lib`) or in `tests/TARGET.rs` and its modules.
fn test_exists(lab_dir: &Path, test: &str) -> bool {
    let Some((target, path)) = test.split_once("::") else {
        return false;
    };
    let name = path.rsplit("::").next().unwrap_or(path);
    let mut files = Vec::new();
    if target == "lib" {
        rust_files(&lab_dir.join("src"), &mut files);
    } else {
        files.push(lab_dir.join("tests").join(format!("{target}.rs")));
        rust_files(&lab_dir.join("tests").join(target), &mut files);
    }
    let needle = format!("fn {name}(");
    files
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains(&needle)))
}

/// Checks every manifest; returns one line per problem.
pub fn check(workspace: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let labs = load_all(workspace)?;
    if labs.is_empty() {
        bail!("no labs/*/steps.toml found");
    }
    let book = workspace.join("book/src");
    let mut ids = std::collections::HashSet::new();
    for lab in &labs {
        let where_ = lab.dir.join("steps.toml").display().to_string();
        if !book.join(&lab.book).exists() {
            problems.push(format!(
                "{where_}: book chapter {} does not exist",
                lab.book
            ));
        }
        if lab.steps.is_empty() {
            problems.push(format!("{where_}: no steps"));
        }
        for step in &lab.steps {
            let at = format!("{where_}: step {}", step.id);
            if !ids.insert(step.id.clone()) {
                problems.push(format!("{at}: the id is used twice"));
            }
            if !step.id.starts_with(&format!("{}.", lab.lab)) {
                problems.push(format!(
                    "{at}: ids of lab {} start with \"{}.\"",
                    lab.lab, lab.lab
                ));
            }
            if step.title.trim().is_empty() || step.points == 0 {
                problems.push(format!("{at}: needs a title and points"));
            }
            if step.tests.is_empty() {
                problems.push(format!("{at}: no tests check it"));
            }
            for t in step.all_tests() {
                if !test_exists(&lab.dir, t) {
                    problems.push(format!("{at}: test {t} does not exist"));
                }
            }
            for t in &step.tests {
                if t.starts_with(&format!("{INSTRUCTOR_TARGET}::")) {
                    problems.push(format!(
                        "{at}: test {t} is an instructor test, which the starter does not have: list it in instructor_tests"
                    ));
                }
            }
            for t in &step.instructor_tests {
                if !t.starts_with(&format!("{INSTRUCTOR_TARGET}::")) {
                    problems.push(format!(
                        "{at}: instructor test {t} must be in tests/{INSTRUCTOR_TARGET}.rs (named {INSTRUCTOR_TARGET}::NAME), the file the starter export leaves out"
                    ));
                }
            }
            let mut seen = std::collections::HashSet::new();
            for t in step.all_tests() {
                if !seen.insert(t) {
                    problems.push(format!("{at}: test {t} is listed twice"));
                }
            }
            if step.hints.is_empty() || step.hints.iter().any(|h| h.trim().is_empty()) {
                problems.push(format!("{at}: needs at least one non-empty hint"));
            }
            match step.book.split_once('#') {
                Some((file, anchor)) => match std::fs::read_to_string(book.join(file)) {
                    Ok(text) if heading_ids(&text).iter().any(|id| id == anchor) => {}
                    Ok(_) => problems.push(format!(
                        "{at}: book section {} has no heading with id {anchor}",
                        step.book
                    )),
                    Err(_) => problems.push(format!("{at}: book file {file} does not exist")),
                },
                None => problems.push(format!("{at}: book link {} needs a #section", step.book)),
            }
        }
        let _ = &lab.title;
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heading_ids_follow_mdbook() {
        assert_eq!(
            heading_id(" Step 01.1: Namespace ids"),
            "step-011-namespace-ids"
        );
        assert_eq!(
            heading_id("Step 01.8: PID 1, signals and zombies"),
            "step-018-pid-1-signals-and-zombies"
        );
        assert_eq!(
            heading_ids("# A\n```\n# not a heading\n```\n## B c\n"),
            vec!["a", "b-c"]
        );
    }

    #[test]
    fn every_manifest_names_real_tests_hints_and_sections() {
        let problems = check(&crate::setup::workspace()).unwrap();
        assert!(
            problems.is_empty(),
            "step manifests have problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn a_missing_test_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let lab = dir.path().join("labs/01-x");
        std::fs::create_dir_all(lab.join("src")).unwrap();
        std::fs::create_dir_all(dir.path().join("book/src")).unwrap();
        std::fs::write(dir.path().join("book/src/x.md"), "# X\n## Step 01.1: One\n").unwrap();
        std::fs::write(lab.join("src/lib.rs"), "#[test] fn real() {}\n").unwrap();
        std::fs::write(
            lab.join("steps.toml"),
            "lab = \"01\"\ntitle = \"x\"\nbook = \"x.md\"\n[[step]]\nid = \"01.1\"\ntitle = \"One\"\nbook = \"x.md#step-011-two\"\npoints = 1\nroot = false\ntests = [\"lib::real\", \"lib::imaginary\"]\nhints = [\"h\"]\n",
        )
        .unwrap();
        let problems = check(dir.path()).unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("test lib::imaginary does not exist"));
        assert!(problems[1].contains("no heading with id step-011-two"));
    }

    #[test]
    fn instructor_tests_are_checked_too() {
        let dir = tempfile::tempdir().unwrap();
        let lab = dir.path().join("labs/01-x");
        std::fs::create_dir_all(lab.join("src")).unwrap();
        std::fs::create_dir_all(lab.join("tests")).unwrap();
        std::fs::create_dir_all(dir.path().join("book/src")).unwrap();
        std::fs::write(dir.path().join("book/src/x.md"), "# X\n## Step 01.1: One\n").unwrap();
        std::fs::write(lab.join("src/lib.rs"), "#[test] fn real() {}\n").unwrap();
        std::fs::write(lab.join("tests/instructor.rs"), "#[test] fn hidden() {}\n").unwrap();
        let manifest = |tests: &str, instructor: &str| {
            format!(
                "lab = \"01\"\ntitle = \"x\"\nbook = \"x.md\"\n[[step]]\nid = \"01.1\"\ntitle = \"One\"\nbook = \"x.md#step-011-one\"\npoints = 1\nroot = false\ntests = [{tests}]\n{instructor}hints = [\"h\"]\n"
            )
        };
        // Without the field a step has no instructor tests.
        std::fs::write(lab.join("steps.toml"), manifest("\"lib::real\"", "")).unwrap();
        assert!(check(dir.path()).unwrap().is_empty());
        let labs = load_all(dir.path()).unwrap();
        assert!(labs[0].steps[0].instructor_tests.is_empty());

        std::fs::write(
            lab.join("steps.toml"),
            manifest(
                "\"lib::real\"",
                "instructor_tests = [\"instructor::hidden\"]\n",
            ),
        )
        .unwrap();
        assert!(check(dir.path()).unwrap().is_empty());
        let labs = load_all(dir.path()).unwrap();
        assert_eq!(
            labs[0].steps[0].all_tests().collect::<Vec<_>>(),
            ["lib::real", "instructor::hidden"]
        );

        std::fs::write(
            lab.join("steps.toml"),
            manifest(
                "\"lib::real\", \"instructor::hidden\"",
                "instructor_tests = [\"instructor::gone\", \"lib::real\"]\n",
            ),
        )
        .unwrap();
        let problems = check(dir.path()).unwrap();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("test instructor::gone does not exist"));
        assert!(problems[1].contains("list it in instructor_tests"));
        assert!(problems[2].contains("instructor test lib::real must be in tests/instructor.rs"));
        assert!(problems[3].contains("test lib::real is listed twice"));
    }
}
