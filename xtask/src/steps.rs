//! The labs' step manifests (`labs/*/steps.toml`), read and checked.
//!
//! Every course tool reads the steps from these files. The checks here make
//! sure a manifest never names a test, a book section or a hint that does
//! not exist.

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
    pub tests: Vec<String>,
    pub hints: Vec<String>,
}

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
            for t in &step.tests {
                if !test_exists(&lab.dir, t) {
                    problems.push(format!("{at}: test {t} does not exist"));
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
}
