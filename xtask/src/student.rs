//! `cargo xtask student --out DIR`: the starter repository a student gets.
//!
//! Solution code in the labs is marked:
//!
//! ```text
//! // BEGIN SOLUTION 01.3
//! ...the reference code...
//! // END SOLUTION
//! ```
//!
//! The export keeps the markers and replaces what is between them with a
//! `todo!()` that names the step and the hint command, so the starter
//! compiles and each step's tests fail with that message until the student
//! writes the code. The book in the export includes the same source files,
//! so it is the student edition without further work.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup;

/// Files the export leaves out: CI, which would fail on a starter.
const LEFT_OUT: [&str; 1] = [".ci/"];

/// What a cut removed from one file.
#[derive(Debug, Default)]
pub struct Cut {
    pub text: String,
    /// The lines that were removed.
    pub removed: Vec<String>,
    /// The step ids whose regions were cut.
    pub steps: Vec<String>,
}

/// Replaces every solution region in `source` with a `todo!()`.
pub fn cut_solutions(source: &str) -> Result<Cut> {
    let mut cut = Cut::default();
    let mut out = Vec::new();
    let mut open: Option<(String, usize)> = None;
    for (n, line) in source.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(id) = trimmed.strip_prefix("// BEGIN SOLUTION ") {
            if open.is_some() {
                bail!("line {}: a solution region opens inside another", n + 1);
            }
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push(line.to_string());
            out.push(format!(
                "{indent}todo!(\"step {id}: write this part (read the book's step {id}; `cargo xtask hint {id}` helps)\")"
            ));
            cut.steps.push(id.to_string());
            open = Some((id.to_string(), n + 1));
        } else if trimmed == "// END SOLUTION" {
            if open.take().is_none() {
                bail!("line {}: END SOLUTION without BEGIN", n + 1);
            }
            out.push(line.to_string());
        } else if open.is_some() {
            cut.removed.push(line.to_string());
        } else {
            out.push(line.to_string());
        }
    }
    if let Some((id, line)) = open {
        bail!("line {line}: solution region {id} is never closed");
    }
    cut.text = out.join("\n") + if source.ends_with('\n') { "\n" } else { "" };
    Ok(cut)
}

/// The files of the repository: what git tracks, or every file outside
/// `target/` and `.git/` when there is no git.
fn repository_files(root: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output();
    if let Ok(out) = out.ok().filter(|o| o.status.success()).ok_or(()) {
        return Ok(out
            .stdout
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| PathBuf::from(String::from_utf8_lossy(s).into_owned()))
            .collect());
    }
    bail!(
        "cannot list the repository's files: git ls-files failed in {}",
        root.display()
    )
}

/// Writes the starter repository to `out` and returns every solution line
/// that was removed (for the check that none is left).
pub fn export(root: &Path, out: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for rel in repository_files(root)? {
        let name = rel.to_string_lossy();
        if LEFT_OUT.iter().any(|p| name.starts_with(p)) || !root.join(&rel).is_file() {
            continue;
        }
        let dst = out.join(&rel);
        std::fs::create_dir_all(dst.parent().unwrap())?;
        if name.starts_with("labs/") && name.ends_with(".rs") {
            let source = std::fs::read_to_string(root.join(&rel))?;
            let mut cut = cut_solutions(&source).with_context(|| format!("in {name}"))?;
            if name.ends_with("src/lib.rs") {
                // Code the student has not written yet leaves helpers unused.
                cut.text = allow_unused(&cut.text);
            }
            removed.extend(cut.removed);
            std::fs::write(&dst, cut.text)?;
        } else {
            std::fs::copy(root.join(&rel), &dst)?;
        }
    }
    // The starter grades itself on GitHub Classroom.
    let workflow = out.join(".github/workflows/classroom.yml");
    std::fs::create_dir_all(workflow.parent().unwrap())?;
    std::fs::copy(root.join("course/classroom/classroom.yml"), &workflow)?;
    Ok(removed)
}

/// Adds `#![allow(unused)]` after a crate's leading `//!` documentation.
fn allow_unused(lib: &str) -> String {
    let lines: Vec<&str> = lib.lines().collect();
    let at = lines
        .iter()
        .position(|l| !l.starts_with("//!"))
        .unwrap_or(lines.len());
    let mut out: Vec<String> = lines[..at].iter().map(|s| s.to_string()).collect();
    out.push("#![allow(unused)] // starter code: some helpers wait for the code you write".into());
    out.extend(lines[at..].iter().map(|s| s.to_string()));
    out.join("\n") + "\n"
}

#[cfg(test)]
/// Solution lines that would give the answer away: long enough to mean
/// something, and not also written somewhere outside a solution region.
pub fn telling_lines(removed: &[String], kept_text: &str) -> Vec<String> {
    let kept: std::collections::HashSet<&str> = kept_text.lines().map(str::trim).collect();
    let mut lines: Vec<String> = removed
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| l.len() >= 24 && !l.starts_with("//") && !kept.contains(l.as_str()))
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

/// `cargo xtask student --out DIR`.
pub fn run(out: &Path) -> Result<()> {
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{} is not empty; give a new or empty directory",
            out.display()
        );
    }
    let removed = export(&setup::workspace(), out)?;
    eprintln!(
        "==> starter repository in {} ({} solution lines cut)",
        out.display(),
        removed.len()
    );
    eprintln!(
        "    students start with: cd {} && cargo xtask check",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_become_todo() {
        let src = "fn a() -> u32 {\n    // BEGIN SOLUTION 01.2\n    let secret = 40 + 2;\n    secret\n    // END SOLUTION\n}\n";
        let cut = cut_solutions(src).unwrap();
        assert_eq!(
            cut.text,
            "fn a() -> u32 {\n    // BEGIN SOLUTION 01.2\n    todo!(\"step 01.2: write this part (read the book's step 01.2; `cargo xtask hint 01.2` helps)\")\n    // END SOLUTION\n}\n"
        );
        assert_eq!(cut.steps, vec!["01.2"]);
        assert_eq!(cut.removed.len(), 2);
        assert!(cut_solutions("// BEGIN SOLUTION 01.1\n").is_err());
        assert!(cut_solutions("// END SOLUTION\n").is_err());
    }

    /// The export compiles, contains no solution text, and a step's test
    /// fails with the step's message. This builds the starter, so it takes
    /// a minute or two.
    #[test]
    fn the_starter_compiles_without_solutions() {
        let root = setup::workspace();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("starter");
        let removed = export(&root, &out).unwrap();
        assert!(
            removed.len() > 100,
            "only {} solution lines cut",
            removed.len()
        );

        let mut exported = String::new();
        let mut original_outside = String::new();
        for entry in walk(&out) {
            if let Ok(text) = std::fs::read_to_string(&entry) {
                exported.push_str(&text);
                exported.push('\n');
                if let Ok(orig) =
                    std::fs::read_to_string(root.join(entry.strip_prefix(&out).unwrap()))
                {
                    original_outside
                        .push_str(&cut_solutions(&orig).map(|c| c.text).unwrap_or(orig));
                    original_outside.push('\n');
                }
            }
        }
        let telling = telling_lines(&removed, &original_outside);
        assert!(telling.len() > 50, "{telling:?}");
        let exported_lines: std::collections::HashSet<&str> =
            exported.lines().map(str::trim).collect();
        let leaked: Vec<&String> = telling
            .iter()
            .filter(|l| exported_lines.contains(l.as_str()))
            .collect();
        assert!(
            leaked.is_empty(),
            "solution text in the starter: {leaked:#?}"
        );
        assert!(!out.join(".ci/run").exists());
        assert!(out.join(".github/workflows/classroom.yml").exists());

        // It compiles, and a step's test fails with the step's message.
        // Its own build directory: see `grade` on why trees must not share one.
        let target = root.join("target/course-starter");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let test = Command::new(&cargo)
            .args([
                "test",
                "--offline",
                "-p",
                "lab01-namespaces",
                "--lib",
                "namespace::tests::parses_namespace_links",
            ])
            .current_dir(&out)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&test.stdout).to_string()
            + &String::from_utf8_lossy(&test.stderr);
        assert!(
            !test.status.success(),
            "the starter's step 01.1 test passed without code:\n{text}"
        );
        assert!(
            text.contains("not yet implemented: step 01.1: write this part"),
            "{text}"
        );
        assert!(
            !text.contains("error[E"),
            "the starter does not compile:\n{text}"
        );
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
