//! The book: every `{{#include}}` must name an existing file and, when it
//! names an anchor, a non-empty `ANCHOR`/`ANCHOR_END` region; then mdBook
//! builds it.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::setup;

/// One problem with an include, as `file: message`.
pub fn check_includes(book_src: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(book_src)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    for md in files {
        let text = std::fs::read_to_string(&md)?;
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{#include") {
            let after = &rest[start + "{{#include".len()..];
            let Some(end) = after.find("}}") else {
                problems.push(format!("{}: unclosed {{{{#include", md.display()));
                break;
            };
            let target = after[..end].trim();
            rest = &after[end..];
            let (file, anchor) = match target.split_once(':') {
                Some((f, a)) => (f, Some(a)),
                None => (target, None),
            };
            let path = md.parent().unwrap().join(file);
            let Ok(source) = std::fs::read_to_string(&path) else {
                problems.push(format!(
                    "{}: includes {file}, which does not exist",
                    md.display()
                ));
                continue;
            };
            // Line ranges (`:10:20`) are not used in this book; anchors are names.
            if let Some(anchor) =
                anchor.filter(|a| !a.chars().next().is_some_and(|c| c.is_ascii_digit()))
            {
                let begin = format!("ANCHOR: {anchor}");
                let finish = format!("ANCHOR_END: {anchor}");
                let lines: Vec<&str> = source.lines().collect();
                let open = lines.iter().position(|l| l.trim_end().ends_with(&begin));
                let close = lines.iter().position(|l| l.trim_end().ends_with(&finish));
                match (open, close) {
                    (Some(o), Some(c))
                        if c > o
                            && lines[o + 1..c]
                                .iter()
                                .any(|l| !l.trim().is_empty() && !l.contains("ANCHOR")) => {}
                    (Some(_), Some(_)) => problems.push(format!(
                        "{}: anchor {anchor} in {file} is empty",
                        md.display()
                    )),
                    _ => problems.push(format!("{}: {file} has no anchor {anchor}", md.display())),
                }
            }
        }
    }
    Ok(problems)
}

/// Checks the includes and builds the book.
pub fn run() -> Result<()> {
    let book = setup::workspace().join("book");
    let problems = check_includes(&book.join("src"))?;
    if !problems.is_empty() {
        bail!("the book has broken includes:\n{}", problems.join("\n"));
    }
    setup::run(Command::new("mdbook").arg("build").arg(&book))?;
    eprintln!("==> book built in {}", book.join("book").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_books_includes_resolve() {
        let problems = check_includes(&setup::workspace().join("book/src")).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn broken_includes_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("code.rs"), "// ANCHOR: full\nfn a() {}\n// ANCHOR_END: full\n// ANCHOR: empty\n// ANCHOR_END: empty\n").unwrap();
        std::fs::write(
            dir.path().join("ch.md"),
            "{{#include code.rs:full}}\n{{#include code.rs:empty}}\n{{#include code.rs:missing}}\n{{#include nope.rs}}\n",
        )
        .unwrap();
        let problems = check_includes(dir.path()).unwrap();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("anchor empty in code.rs is empty"));
        assert!(problems[1].contains("no anchor missing"));
        assert!(problems[2].contains("nope.rs, which does not exist"));
    }
}
