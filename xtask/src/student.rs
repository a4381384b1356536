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
//!
//! A student works through the steps in order, and each step's tests must
//! pass once the steps up to it are written. Some regions lie on the path
//! of *every* container, though, such as dropping capabilities (step 01.7)
//! or bringing up the loopback device (01.5), and their `todo!()` would stop
//! the containers of every earlier step. Such a region says what the
//! starter puts there instead, in `// STARTER:` lines:
//!
//! ```text
//! // BEGIN SOLUTION 01.7
//! // STARTER: Ok(())
//! ...the reference code...
//! // END SOLUTION
//! ```
//!
//! The export then writes, between the markers, a comment saying that this
//! is a stand-in for the step, and the `// STARTER:` lines without their
//! prefix (the indentation after `// STARTER: ` is kept, and a `todo!()`
//! in them becomes the step's `todo!("step 01.7: …")`). A stand-in must do
//! only what earlier steps need, so that the step's own tests still fail
//! until the student writes the real code: in the reference, `cargo xtask
//! test` checks that the starter scores nothing, with a `todo!()` message
//! in every failing test.
//!
//! Instructor tests stay out of the export: each lab's `tests/instructor.rs`
//! (and a `tests/instructor/` folder and `instructor__*` snapshots, should
//! there be any) is left out, and the `instructor_tests` entries are cut
//! from the exported `steps.toml` files, so the starter's manifests name
//! only tests the starter has. The grader copies both back from the
//! reference (see `grade::prepare_submission`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup;

/// Files the export leaves out: CI, which would fail on a starter.
const LEFT_OUT: [&str; 1] = [".ci/"];

/// True for a file that only instructors have: a lab's instructor test
/// target (`labs/NN-*/tests/instructor.rs` or anything under
/// `labs/NN-*/tests/instructor/`) or an insta snapshot of it (a file whose
/// name starts with `instructor__`, which is how insta names the snapshots
/// of the `instructor` target).
pub fn is_instructor_only(rel: &Path) -> bool {
    let parts: Vec<&str> = rel
        .components()
        .map(|c| c.as_os_str().to_str().unwrap_or(""))
        .collect();
    let target = crate::steps::INSTRUCTOR_TARGET;
    match parts.as_slice() {
        ["labs", _, "tests", first, ..] => {
            *first == format!("{target}.rs")
                || *first == target
                || parts
                    .last()
                    .is_some_and(|name| name.starts_with(&format!("{target}__")))
        }
        ["labs", .., name] => name.starts_with(&format!("{target}__")),
        _ => false,
    }
}

/// Removes the `instructor_tests = [...]` entries (on one line or spread
/// over several) from a step manifest, keeping everything else as it is.
/// The result is checked: it must parse, and equal the original with
/// those entries removed.
pub fn strip_instructor_tests(manifest: &str) -> Result<String> {
    let mut out = Vec::new();
    let mut in_list = false;
    for line in manifest.lines() {
        if in_list {
            in_list = !line.contains(']');
            continue;
        }
        let key = line.trim_start();
        let is_entry = key
            .strip_prefix("instructor_tests")
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_entry {
            let value = key.split_once('=').map_or("", |(_, v)| v);
            in_list = value.contains('[') && !value.contains(']');
            continue;
        }
        out.push(line);
    }
    let text = out.join("\n") + if manifest.ends_with('\n') { "\n" } else { "" };

    let mut want: toml::Value = toml::from_str(manifest)?;
    if let Some(steps) = want.get_mut("step").and_then(|s| s.as_array_mut()) {
        for step in steps {
            if let Some(table) = step.as_table_mut() {
                table.remove("instructor_tests");
            }
        }
    }
    let got: toml::Value = toml::from_str(&text)
        .context("the manifest without its instructor tests is not valid TOML")?;
    if got != want {
        bail!(
            "cutting the instructor_tests entries changed more than those entries; write each as `instructor_tests = [...]` with nothing else on its lines"
        );
    }
    Ok(text)
}

/// What a cut removed from one file.
#[derive(Debug, Default)]
pub struct Cut {
    pub text: String,
    /// The lines that were removed.
    pub removed: Vec<String>,
    /// The step ids whose regions were cut.
    pub steps: Vec<String>,
}

/// What a `// STARTER:` line starts with: the line's text, after it, is
/// what the starter has in place of the region's code.
pub const STARTER: &str = "// STARTER:";

/// The `todo!()` that stands for step `id`'s code in the starter.
fn todo(id: &str) -> String {
    format!(
        "todo!(\"step {id}: write this part (read the book's step {id}; `cargo xtask hint {id}` helps)\")"
    )
}

/// What the starter has between the markers of step `id`'s region, at
/// `indent`: its `// STARTER:` lines as code after a comment that says so,
/// or else the step's `todo!()`.
fn starter_body(id: &str, indent: &str, starter: &[String]) -> Vec<String> {
    if starter.is_empty() {
        return vec![format!("{indent}{}", todo(id))];
    }
    let mut out = vec![format!(
        "{indent}// A stand-in so that the steps before {id} can run: replace it with step {id}'s code (read the book's step {id}; `cargo xtask hint {id}` helps)."
    )];
    for line in starter {
        let code = line.replace("todo!()", &todo(id));
        out.push(if code.is_empty() {
            String::new()
        } else {
            format!("{indent}{code}")
        });
    }
    out
}

/// Replaces every solution region in `source` with a `todo!()`, or with
/// the stand-in its `// STARTER:` lines give.
pub fn cut_solutions(source: &str) -> Result<Cut> {
    let mut cut = Cut::default();
    let mut out = Vec::new();
    // The open region: its step, first line, indentation and starter lines.
    let mut open: Option<(String, usize, String, Vec<String>)> = None;
    for (n, line) in source.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(id) = trimmed.strip_prefix("// BEGIN SOLUTION ") {
            if open.is_some() {
                bail!("line {}: a solution region opens inside another", n + 1);
            }
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push(line.to_string());
            cut.steps.push(id.to_string());
            open = Some((id.to_string(), n + 1, indent.to_string(), Vec::new()));
        } else if trimmed == "// END SOLUTION" {
            let Some((id, _, indent, starter)) = open.take() else {
                bail!("line {}: END SOLUTION without BEGIN", n + 1);
            };
            out.extend(starter_body(&id, &indent, &starter));
            out.push(line.to_string());
        } else if let Some((_, _, _, starter)) = &mut open {
            if let Some(code) = trimmed.strip_prefix(STARTER) {
                // `// STARTER: code`: one space separates the prefix from
                // the code; more is the code's own indentation.
                starter.push(
                    code.strip_prefix(' ')
                        .unwrap_or(code)
                        .trim_end()
                        .to_string(),
                );
            }
            cut.removed.push(line.to_string());
        } else if trimmed.starts_with(STARTER) {
            bail!("line {}: a {STARTER} line outside a solution region", n + 1);
        } else {
            out.push(line.to_string());
        }
    }
    if let Some((id, line, _, _)) = open {
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
        if LEFT_OUT.iter().any(|p| name.starts_with(p))
            || is_instructor_only(&rel)
            || !root.join(&rel).is_file()
        {
            continue;
        }
        let dst = out.join(&rel);
        std::fs::create_dir_all(dst.parent().unwrap())?;
        if name.starts_with("labs/") && name.ends_with("/steps.toml") {
            let manifest = std::fs::read_to_string(root.join(&rel))?;
            let stripped =
                strip_instructor_tests(&manifest).with_context(|| format!("in {name}"))?;
            std::fs::write(&dst, stripped)?;
        } else if name.starts_with("labs/") && name.ends_with(".rs") {
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

    #[test]
    fn starter_lines_become_a_stand_in() {
        let src = "fn drop_caps(v: u32) -> Result<u32> {\n    // BEGIN SOLUTION 01.7\n    // STARTER: if v == 0 {\n    // STARTER:     return Ok(0);\n    // STARTER: }\n    // STARTER:\n    // STARTER: todo!()\n    let dropped = v - 1;\n    Ok(dropped)\n    // END SOLUTION\n}\n";
        let cut = cut_solutions(src).unwrap();
        assert_eq!(
            cut.text,
            "fn drop_caps(v: u32) -> Result<u32> {\n    // BEGIN SOLUTION 01.7\n    // A stand-in so that the steps before 01.7 can run: replace it with step 01.7's code (read the book's step 01.7; `cargo xtask hint 01.7` helps).\n    if v == 0 {\n        return Ok(0);\n    }\n\n    todo!(\"step 01.7: write this part (read the book's step 01.7; `cargo xtask hint 01.7` helps)\")\n    // END SOLUTION\n}\n"
        );
        assert_eq!(cut.steps, vec!["01.7"]);
        // Every line of the region counts as removed, the starter lines too;
        // being comments, they never count as telling.
        assert_eq!(cut.removed.len(), 7);
        assert!(
            !telling_lines(&cut.removed, "")
                .iter()
                .any(|l| l.contains("STARTER"))
        );
        // A region without starter lines still becomes a todo!(), and one
        // with them leaves the others alone.
        let two = format!(
            "{src}fn b() {{\n    // BEGIN SOLUTION 01.8\n    secret()\n    // END SOLUTION\n}}\n"
        );
        let cut = cut_solutions(&two).unwrap();
        assert!(cut.text.contains("    todo!(\"step 01.8: write this part"));
        assert!(!cut.text.contains("secret") && !cut.text.contains("dropped"));
        assert_eq!(cut.text.matches("A stand-in").count(), 1);
        // Starter lines belong inside a region.
        assert!(cut_solutions("// STARTER: Ok(())\n").is_err());
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

        // No instructor test, snapshot or test name reaches the starter.
        let reference_labs = crate::steps::load_all(&root).unwrap();
        let hidden: Vec<&str> = reference_labs
            .iter()
            .flat_map(|l| &l.steps)
            .flat_map(|s| &s.instructor_tests)
            .map(|t| t.rsplit("::").next().unwrap())
            .collect();
        assert!(!hidden.is_empty(), "the reference has no instructor tests");
        for lab in &reference_labs {
            let rel = lab.dir.strip_prefix(&root).unwrap();
            if lab.steps.iter().any(|s| !s.instructor_tests.is_empty()) {
                assert!(lab.dir.join("tests/instructor.rs").exists());
            }
            assert!(!out.join(rel).join("tests/instructor.rs").exists());
            assert!(!out.join(rel).join("tests/instructor").exists());
            let manifest = std::fs::read_to_string(out.join(rel).join("steps.toml")).unwrap();
            assert!(!manifest.contains("instructor"), "{manifest}");
        }
        let instructor_files: Vec<PathBuf> = walk(&out)
            .into_iter()
            .filter(|p| {
                is_instructor_only(p.strip_prefix(&out).unwrap())
                    || p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("instructor__"))
            })
            .collect();
        assert!(instructor_files.is_empty(), "{instructor_files:?}");
        let named: Vec<&&str> = hidden
            .iter()
            .filter(|name| exported.contains(**name))
            .collect();
        assert!(
            named.is_empty(),
            "the starter names instructor tests: {named:?}"
        );
        let starter_labs = crate::steps::load_all(&out).unwrap();
        assert!(
            starter_labs
                .iter()
                .flat_map(|l| &l.steps)
                .all(|s| s.instructor_tests.is_empty())
        );
        // The starter's manifests name only tests the starter has.
        let problems = crate::steps::check(&out).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");

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

    #[test]
    fn instructor_files_are_recognised() {
        for yes in [
            "labs/01-namespaces/tests/instructor.rs",
            "labs/02-cgroups/tests/instructor/mod.rs",
            "labs/03-overlayfs/tests/snapshots/instructor__tree.snap",
            "labs/03-overlayfs/src/snapshots/instructor__x.snap",
        ] {
            assert!(is_instructor_only(Path::new(yes)), "{yes}");
        }
        for no in [
            "labs/01-namespaces/tests/steps.rs",
            "labs/01-namespaces/tests/snapshots/steps__mounts.snap",
            "labs/01-namespaces/src/instructor.rs",
            "xtask/src/instructor.rs",
            "book/src/instructor.md",
        ] {
            assert!(!is_instructor_only(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn instructor_tests_are_cut_from_manifests() {
        let manifest = "lab = \"01\"\n\n[[step]]\nid = \"01.1\"\ntests = [\"lib::a\"]\ninstructor_tests = [\"instructor::b\"]\nhints = [\"h\"]\n\n[[step]]\nid = \"01.2\"\ntests = [\n  \"lib::c\",\n]\ninstructor_tests = [\n  \"instructor::d\",\n  \"instructor::e\",\n]\nhints = [\"h\"]\n";
        let cut = strip_instructor_tests(manifest).unwrap();
        assert_eq!(
            cut,
            "lab = \"01\"\n\n[[step]]\nid = \"01.1\"\ntests = [\"lib::a\"]\nhints = [\"h\"]\n\n[[step]]\nid = \"01.2\"\ntests = [\n  \"lib::c\",\n]\nhints = [\"h\"]\n"
        );
        // A manifest without instructor tests is left alone.
        assert_eq!(strip_instructor_tests(&cut).unwrap(), cut);
        // A form the cut cannot handle is refused, not half cut.
        let odd = "[[step]]\ninstructor_tests = [ # a comment with ]\n  \"instructor::b\",\n]\n";
        assert!(toml::from_str::<toml::Value>(odd).is_ok());
        assert!(strip_instructor_tests(odd).is_err());
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
