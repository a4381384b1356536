//! The book checks its own transcripts.
//!
//! A console block in the book preceded by an HTML comment (which mdBook
//! does not show) is run again and compared with what the page says:
//!
//! ````text
//! <!-- checked -->
//! ```console
//! # echo hello
//! hello
//! ```
//! ````
//!
//! - `<!-- checked -->` runs the block's commands and compares their output;
//! - `<!-- checked: setup -->` runs them and ignores their output (builds,
//!   downloads, anything whose output is noise);
//!
//! A command is a line that starts with the root prompt `# ` (or `$ `),
//! with its continuation lines (a trailing `\`, or the body of a heredoc);
//! every other line is output. All checked blocks of one chapter run in
//! order in one bash process, from the top of the repository, so a later
//! block can use what an earlier one made, just as a reader's shell would.
//! The chapter gets a mount namespace of its own with an empty /tmp (and an
//! empty /run/netns, for `ip netns add`), and a network namespace of its
//! own, so its files, mounts, links and firewall rules are its own, and a
//! check never touches the machine's.
//!
//! Output and text are both *redacted* before they are compared: container
//! ids, digests, times, durations, dates, IPv4 addresses, sizes and
//! namespace inode numbers become placeholders. A line `…` (or `...`) in
//! the book matches any number of lines. What is left must be equal.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use regex::Regex;

use crate::setup;

/// How a marked block is used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Run, and compare the output with the book.
    Compare,
    /// Run only.
    Setup,
}

/// One command of a transcript and the output the book shows for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The Markdown line the command is on (1-based).
    pub line: usize,
    pub command: String,
    pub expected: String,
    pub mode: Mode,
}

/// The checked commands of one chapter, in order.
#[derive(Debug)]
pub struct Chapter {
    pub file: PathBuf,
    pub steps: Vec<Step>,
}

/// The marker comment's mode, if `line` is one.
fn marker(line: &str) -> Option<Mode> {
    let inner = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    match inner {
        "checked" => Some(Mode::Compare),
        "checked: setup" => Some(Mode::Setup),
        _ => None,
    }
}

/// The heredoc terminator a command line opens, if any (`<<EOF`,
/// `<<'EOF'`, `<<-"EOF"`).
fn heredoc(command: &str) -> Option<String> {
    static HEREDOC: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"<<-?\s*['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?"#).unwrap());
    HEREDOC.captures(command).map(|c| c[1].to_string())
}

/// Reads the checked blocks of a Markdown file.
pub fn parse(file: &Path, markdown: &str) -> Result<Chapter> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(mode) = marker(lines[i]) else {
            i += 1;
            continue;
        };
        let at = i + 1;
        i += 1;
        while i < lines.len() && lines[i].trim().is_empty() {
            i += 1;
        }
        if lines.get(i).is_none_or(|l| l.trim() != "```console") {
            bail!(
                "{}:{at}: a <!-- checked --> mark must stand right before a ```console block",
                file.display()
            );
        }
        i += 1;
        let mut current: Option<Step> = None;
        loop {
            let Some(&line) = lines.get(i) else {
                bail!("{}:{at}: the console block is never closed", file.display());
            };
            if line.trim_end() == "```" {
                i += 1;
                break;
            }
            let prompt = line.strip_prefix("# ").or_else(|| line.strip_prefix("$ "));
            if let Some(first) = prompt {
                steps.extend(current.take());
                let mut command = first.to_string();
                let start = i + 1;
                // Continuation lines belong to the command.
                while command.ends_with('\\') && i + 1 < lines.len() {
                    i += 1;
                    command.push('\n');
                    command.push_str(lines[i]);
                }
                if let Some(end) = heredoc(&command) {
                    loop {
                        i += 1;
                        let Some(&body) = lines.get(i) else {
                            bail!(
                                "{}:{start}: the heredoc {end} is never closed",
                                file.display()
                            );
                        };
                        command.push('\n');
                        command.push_str(body);
                        if body.trim() == end {
                            break;
                        }
                    }
                }
                current = Some(Step {
                    line: start,
                    command,
                    expected: String::new(),
                    mode,
                });
            } else if let Some(step) = current.as_mut() {
                step.expected.push_str(line);
                step.expected.push('\n');
            } else {
                bail!(
                    "{}:{}: a checked block must start with a command (`# ...`)",
                    file.display(),
                    i + 1
                );
            }
            i += 1;
        }
        steps.extend(current.take());
    }
    Ok(Chapter {
        file: file.to_path_buf(),
        steps,
    })
}

/// Replaces what changes from run to run with placeholders.
pub fn redact(text: &str) -> String {
    static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
        [
            // MAC addresses (a veth pair's ends get random ones), before
            // the clock times that would match their digits.
            (r"\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b", "<mac>"),
            // Dates and clock times before the numbers inside them (with
            // or without seconds: `tar tv` prints `2026-11-23 14:28`).
            (
                r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?( [A-Z]{3,4})?",
                "<date>",
            ),
            // `ls -l` dates: `Nov 23 07:29`, or `Nov 23  2025` when older.
            (
                r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} +(\d\d:\d\d|\d{4})\b",
                "<date>",
            ),
            (r"\b\d\d:\d\d(:\d\d)?\b", "<clock>"),
            // Relative times, as `ps` and `images` print them.
            (
                r"(About an?|Less than a|\d+) (seconds?|minutes?|hours?|days?|weeks?|months?|years?|second|minute|hour)( ago)?",
                "<when>",
            ),
            // Digests and ids: sha256:…, 64 or 12 hex digits, and hex runs
            // of 16 or more (random names, boot ids).
            (r"sha256:[0-9a-f]{6,64}", "sha256:<digest>"),
            (r"\b[0-9a-f]{64}\b", "<id>"),
            (r"\b[0-9a-f]{16,}\b", "<id>"),
            (r"\b[0-9a-f]{12}\b", "<id>"),
            // Kernel log times: `[29670.465925]`.
            (r"(?m)^\[\s*\d+\.\d+\]", "[<uptime>]"),
            // overlayfs's work files (`#1788`) and `stat` inode numbers.
            (r"#[0-9a-f]+\b", "#<n>"),
            (r"\binode \d+", "inode <n>"),
            // The lab demos name their cgroups after their process id.
            (r"\bdemo-\d+\b", "demo-<pid>"),
            // Namespace and file inodes: `uts:[4026531838]`, `4026532271`.
            (r"\b40265\d{5}\b", "<inode>"),
            // IPv4 addresses, with a prefix length when there is one.
            (r"\b\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?\b", "<ip>"),
            // ping's summary: `min/avg/max = 0.071/0.083/0.090 ms`.
            (r"\b\d+(\.\d+)?(/\d+(\.\d+)?)+ ms\b", "<duration>"),
            // Durations: 0.13s, 12ms, 1.2µs, 0m0.002s.
            (r"\b\d+m\d+(\.\d+)?s\b", "<duration>"),
            (r"\b\d+(\.\d+)?\s?(ns|µs|us|ms|s|secs?)\b", "<duration>"),
            // Sizes: 4.1kB, 69.63 kB, 12 MiB, 100K.
            (
                r"\b\d+(\.\d+)?\s?(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB|[KMGT])\b",
                "<size>",
            ),
        ]
        .into_iter()
        .map(|(re, to)| (Regex::new(re).unwrap(), to))
        .collect()
    });
    let mut out = text.to_string();
    for (re, to) in RULES.iter() {
        out = re.replace_all(&out, *to).into_owned();
    }
    out
}

/// Compares redacted lines; a `…` or `...` line in `expected` matches any
/// number of lines. Trailing blanks and blank lines at the end are ignored.
pub fn matches(expected: &str, actual: &str) -> bool {
    fn lines(text: &str) -> Vec<String> {
        let mut v: Vec<String> = redact(text)
            .lines()
            // Column widths follow the widest value, which redaction hides.
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        while v.last().is_some_and(|l| l.is_empty()) {
            v.pop();
        }
        v
    }
    fn go(e: &[String], a: &[String]) -> bool {
        match e.split_first() {
            None => a.is_empty(),
            Some((first, rest)) if first.trim() == "…" || first.trim() == "..." => {
                (0..=a.len()).any(|skip| go(rest, &a[skip..]))
            }
            Some((first, rest)) => a.first() == Some(first) && go(rest, &a[1..]),
        }
    }
    go(&lines(expected), &lines(actual))
}

/// One command whose output no longer matches the book.
#[derive(Debug)]
pub struct Mismatch {
    pub file: PathBuf,
    pub line: usize,
    pub command: String,
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}:{}: # {}",
            self.file.display(),
            self.line,
            self.command
        )?;
        writeln!(f, "--- the book says (redacted)")?;
        write!(f, "{}", indent(&redact(&self.expected)))?;
        writeln!(f, "+++ the command printed (redacted)")?;
        write!(f, "{}", indent(&redact(&self.actual)))
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Where the repository was when the book's outputs were recorded.
const BOOK_CHECKOUT: &str = "/work/main";

/// A marker line that no command output will contain.
const SEPARATOR: &str = "\u{1e}TRANSCRIPT-STEP";

/// Run after a chapter, inside its mount namespace: removes the containers
/// of every berth state directory the chapter made under /tmp (a state
/// directory holds `containers/`; its runroot is not recorded there, so
/// every other directory is tried as one), then the processes and network
/// namespaces left under the chapter's /run/netns.
const CLEANUP: &str = r#"
for root in /tmp/*/; do
  [ -d "$root/containers" ] || continue
  for run in /tmp/*/; do
    ids=$(target/debug/berth --root "$root" --runroot "$run" ps -aq --no-trunc 2>/dev/null)
    [ -n "$ids" ] && target/debug/berth --root "$root" --runroot "$run" rm -f -v $ids >/dev/null 2>&1
  done
done
# Processes left in the chapter's named network namespaces (a daemon such
# as busybox httpd leaves the process group, so the timeout misses it).
for ns in $(ip netns list | cut -d" " -f1); do
  pids=$(ip netns pids "$ns")
  [ -n "$pids" ] && kill -9 $pids
  ip netns del "$ns"
done
true
"#;

/// Runs a chapter's checked commands in one bash process and returns the
/// commands whose output differs from the book.
///
/// The process has its own mount namespace with an empty /tmp, so the
/// chapter's `/tmp/...` files are its own, and every mount it makes goes
/// with the namespace; and its own network namespace (with loopback up),
/// so the bridges, veth pairs and firewall rules a chapter makes are gone
/// with it too.
pub fn run_chapter(
    chapter: &Chapter,
    workspace: &Path,
    timeout: Duration,
) -> Result<Vec<Mismatch>> {
    if chapter.steps.is_empty() {
        return Ok(Vec::new());
    }
    // `set -u`: a variable an earlier command failed to set stops the
    // chapter rather than expanding to nothing (`find $upper` would walk /).
    let mut script = String::from("exec 2>&1 </dev/null\nshopt -s expand_aliases\nset -u\n");
    for (n, step) in chapter.steps.iter().enumerate() {
        script.push_str(&format!("printf '\\n{SEPARATOR} {n}\\n'\n"));
        // Commands that name the checkout name this one.
        script.push_str(
            &step
                .command
                .replace(BOOK_CHECKOUT, &workspace.display().to_string()),
        );
        script.push('\n');
    }
    script.push_str(&format!("printf '\\n{SEPARATOR} end\\n'\n"));
    // Outside /tmp, which the namespace hides, and on a disk rather than a
    // tmpfs (it holds the chapter's /tmp as well): /var/tmp.
    let dir = tempfile::Builder::new()
        .prefix("berth-book-")
        .tempdir_in("/var/tmp")?;
    let script_file = dir.path().join("chapter.sh");
    std::fs::write(&script_file, &script)?;
    let cleanup_file = dir.path().join("cleanup.sh");
    std::fs::write(&cleanup_file, CLEANUP)?;
    // The chapter's /tmp: a new directory on a disk (so file systems look
    // as they do for a reader), bound over /tmp in the namespace. A
    // checkout under /tmp stays visible there, bound back in.
    let tmp = dir.path().join("tmp");
    let inner = format!(
        r#"set -e
mkdir -p {tmp}; chmod 1777 {tmp}
case {ws}/ in /tmp/*) rel=${{1#/tmp/}}; mkdir -p {tmp}/$rel; mount --bind {ws} {tmp}/$rel;; esac
mount --rbind {tmp} /tmp
ip link set lo up
# `ip netns add` pins namespaces in /run/netns: a tmpfs of the chapter's
# own there keeps them off the host's /run (a directory made here for it
# goes again at the end).
made=; [ -d /run/netns ] || {{ mkdir /run/netns; made=1; }}
mount -t tmpfs -o mode=755 netns /run/netns
set +e
timeout --foreground -s KILL {secs} bash {script}
bash {cleanup} >/dev/null 2>&1
umount -l /run/netns; [ -z "$made" ] || rmdir /run/netns"#,
        tmp = tmp.display(),
        ws = workspace.display(),
        secs = timeout.as_secs(),
        script = script_file.display(),
        cleanup = cleanup_file.display(),
    );
    let output = run_script(&inner, workspace, timeout + Duration::from_secs(120))?
        // Paths in the repository print as they did where the book was
        // written.
        .replace(&workspace.display().to_string(), BOOK_CHECKOUT);

    // Cut the output at the separators: the text after `SEPARATOR n` up to
    // the next separator is command n's output.
    let mut outputs: Vec<Option<String>> = vec![None; chapter.steps.len()];
    let separator = format!("\n{SEPARATOR} ");
    let mut pieces = output.split(&separator);
    pieces.next();
    for piece in pieces {
        let (label, text) = piece.split_once('\n').unwrap_or((piece, ""));
        if let Ok(n) = label.parse::<usize>()
            && n < outputs.len()
        {
            outputs[n] = Some(text.to_string());
        }
    }
    let mut mismatches = Vec::new();
    for (step, actual) in chapter.steps.iter().zip(outputs) {
        let actual = actual.unwrap_or_else(|| {
            format!(
                "(the command never ran: the chapter's script stopped or took more than {} s)",
                timeout.as_secs()
            )
        });
        if step.mode == Mode::Compare && !matches(&step.expected, &actual) {
            mismatches.push(Mismatch {
                file: chapter.file.clone(),
                line: step.line,
                command: step.command.clone(),
                expected: step.expected.clone(),
                actual,
            });
        }
    }
    Ok(mismatches)
}

/// Runs `shell` with bash in new mount and network namespaces and its own
/// process group; kills the group when it ends (background jobs included) or when
/// `timeout` passes.
fn run_script(shell: &str, cwd: &Path, timeout: Duration) -> Result<String> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let out = tempfile::tempfile()?;
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "--",
            "bash",
            "-c",
            shell,
            "bash",
        ])
        .arg(cwd)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?)
        .env("LC_ALL", "C.UTF-8")
        .env("TERM", "dumb")
        .env("COLUMNS", "120")
        .process_group(0)
        .spawn()
        .context("cannot run unshare and bash")?;
    let deadline = Instant::now() + timeout;
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the process group created above.
    unsafe { libc_kill(-(child.id() as i32), 9) };
    let _ = child.wait();
    let mut text = String::new();
    let mut out = out;
    std::io::Seek::rewind(&mut out)?;
    out.read_to_string(&mut text)?;
    Ok(text)
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// The book's chapters, sorted.
pub fn chapters(book_src: &Path) -> Result<Vec<Chapter>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(book_src)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| parse(f, &std::fs::read_to_string(f)?))
        .collect()
}

/// Runs every checked transcript of the book; the error lists each
/// command whose output changed.
pub fn check(only: Option<&str>) -> Result<()> {
    if !setup::is_root() {
        bail!(
            "the book's transcripts run containers and mounts as root: run this as root (sudo -E cargo xtask book --check)"
        );
    }
    let workspace = setup::workspace();
    // The programs the chapters run from target/debug.
    setup::run(&mut setup::cargo(&[
        "build",
        "--quiet",
        "--bins",
        "-p",
        "berth",
        "-p",
        "lab01-namespaces",
        "-p",
        "lab02-cgroups",
        "-p",
        "lab03-overlayfs",
    ]))?;
    let mut failures = Vec::new();
    let mut total = 0;
    for chapter in chapters(&workspace.join("book/src"))? {
        let name = chapter
            .file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if chapter.steps.is_empty() || only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let started = Instant::now();
        let mismatches = run_chapter(&chapter, &workspace, Duration::from_secs(600))?;
        let compared = chapter
            .steps
            .iter()
            .filter(|s| s.mode == Mode::Compare)
            .count();
        total += compared;
        eprintln!(
            "==> {name}: {} of {compared} checked commands match ({:.1} s)",
            compared - mismatches.len(),
            started.elapsed().as_secs_f64()
        );
        failures.extend(mismatches);
    }
    if !failures.is_empty() {
        let text: Vec<String> = failures.iter().map(|m| m.to_string()).collect();
        bail!(
            "{} of {total} checked transcripts in the book no longer match:\n\n{}",
            failures.len(),
            text.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "Text.\n\n<!-- checked -->\n```console\n# echo one \\\n  two\none two\n# cat <<'EOF'\nline\n# not a prompt inside\nEOF\nline\n# not a prompt inside\n# true\n```\n\n```console\n# ignored\n```\n<!-- checked: setup -->\n\n```console\n# true\nnoise\n```\n";

    #[test]
    fn blocks_commands_and_outputs_are_read() {
        let chapter = parse(Path::new("ch.md"), PAGE).unwrap();
        let got: Vec<(usize, &str, &str, Mode)> = chapter
            .steps
            .iter()
            .map(|s| (s.line, s.command.as_str(), s.expected.as_str(), s.mode))
            .collect();
        assert_eq!(
            got,
            [
                (5, "echo one \\\n  two", "one two\n", Mode::Compare),
                // Output lines that look like prompts are commands.
                (
                    8,
                    "cat <<'EOF'\nline\n# not a prompt inside\nEOF",
                    "line\n",
                    Mode::Compare
                ),
                (13, "not a prompt inside", "", Mode::Compare),
                (14, "true", "", Mode::Compare),
                (23, "true", "noise\n", Mode::Setup),
            ]
        );
    }

    #[test]
    fn marks_away_from_a_console_block_are_errors() {
        let err = parse(Path::new("ch.md"), "<!-- checked -->\nprose\n").unwrap_err();
        assert!(
            err.to_string().contains("ch.md:1: a <!-- checked --> mark"),
            "{err}"
        );
        let err = parse(
            Path::new("ch.md"),
            "<!-- checked -->\n```console\noutput first\n```\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("must start with a command"),
            "{err}"
        );
    }

    #[test]
    fn what_changes_between_runs_is_redacted() {
        let text = "-rw-r--r-- 1 0 0 0 Nov  3 07:29 f\nc0ffee123456  busybox  \"sh\"  3 seconds ago  Up 2 seconds  quirky_1\n\
                    sha256:181bd219ecc341d6ab929c8fde7be7c92e9189ef709e1f7298a40f12ef9369fb 69.63kB\n\
                    uts:[4026532271] 10.88.0.2/16 finished in 0.13s at 2026-11-23T16:05:27.123Z\n";
        assert_eq!(
            redact(text),
            "-rw-r--r-- 1 0 0 0 <date> f\n<id>  busybox  \"sh\"  <when>  Up <when>  quirky_1\n\
             sha256:<digest> <size>\n\
             uts:[<inode>] <ip> finished in <duration> at <date>\n"
        );
        // What stays must still be compared.
        assert_eq!(redact("exit code 127\n5 passed"), "exit code 127\n5 passed");
        // What `ip link` and `ping` print.
        assert_eq!(
            redact(
                "veth-c1@if2 DOWN 06:9f:7c:c0:d3:9b <BROADCAST>\nround-trip min/avg/max = 0.104/0.104/0.104 ms\n"
            ),
            "veth-c1@if2 DOWN <mac> <BROADCAST>\nround-trip min/avg/max = <duration>\n"
        );
    }

    #[test]
    fn ellipsis_lines_match_any_lines() {
        assert!(matches("a\n…\nd\n", "a\nb\nc\nd\n"));
        assert!(matches("a\n...\nd\n", "a\nd\n"));
        assert!(matches("a\nb\n", "a   \nb\n\n"));
        assert!(!matches("a\nb\n", "a\nc\n"));
        assert!(!matches("a\n…\nd\n", "a\nb\n"));
        assert!(matches("id 0123456789ab\n", "id fedcba987654\n"));
    }

    /// Root, or a reason to skip outside CI.
    fn root() -> bool {
        if setup::is_root() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "the book's transcripts need root (a mount namespace), and CI must run them"
        );
        eprintln!("skipped: the book's transcripts need root");
        false
    }

    /// A transcript that no longer matches fails, and the report says
    /// where and how; /tmp is the chapter's own.
    #[test]
    fn a_changed_output_is_reported_with_its_line() {
        if !root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let page = "<!-- checked -->\n```console\n# mkdir -p /tmp/x && echo hi > /tmp/x/f && cat /tmp/x/f\nhi\n# ls -d /tmp/x\n/tmp/x\n# echo 'wrong'\nright\n# cd /tmp/x && pwd\n/tmp/x\n```\n";
        let chapter = parse(&dir.path().join("ch.md"), page).unwrap();
        let mismatches = run_chapter(&chapter, dir.path(), Duration::from_secs(30)).unwrap();
        assert_eq!(mismatches.len(), 1, "{mismatches:#?}");
        let m = &mismatches[0];
        assert_eq!((m.line, m.command.as_str()), (7, "echo 'wrong'"));
        assert!(m.to_string().contains("ch.md:7: # echo 'wrong'"));
        assert!(
            m.to_string()
                .contains("    right\n+++ the command printed (redacted)\n    wrong\n")
        );
        assert!(
            !Path::new("/tmp/x/f").exists(),
            "the chapter wrote to the real /tmp"
        );
    }

    /// Every mark in the book stands before a console block.
    #[test]
    fn the_books_marks_are_well_formed() {
        let chapters = chapters(&setup::workspace().join("book/src")).unwrap();
        let checked: usize = chapters
            .iter()
            .flat_map(|c| &c.steps)
            .filter(|s| s.mode == Mode::Compare)
            .count();
        assert!(checked >= 40, "only {checked} checked commands in the book");
    }

    /// The book's checked transcripts still match, run for real. Needs root.
    #[test]
    fn the_books_transcripts_still_match() {
        if root() {
            check(None).unwrap();
        }
    }
}
