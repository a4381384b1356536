//! Step 05.8: the build context, `.dockerignore`, and what COPY and ADD do.
//!
//! `docker build .` starts by packing up the directory it is given, the
//! *build context*, and handing it to the builder. `COPY` and `ADD` can only
//! take files from there: the builder sees nothing else, which is why
//! `COPY ../secrets /` fails, and why a context holding a 2 GB `target/`
//! makes every build slow. This module is that side of a build:
//!
//! - **`.dockerignore`** ([`Ignore`]) leaves files out of the context. One
//!   pattern per line; `#` in the first column starts a comment; blank lines
//!   are skipped; spaces around a pattern are trimmed; the pattern is
//!   tidied like a path (`./a//b/` is `a/b`) and a leading `/` is dropped,
//!   since the context is both the working directory and `/`. The wildcards
//!   are Go's `filepath.Match`: `*` is any run of characters except `/`, `?`
//!   one such character, `[a-z]` and `[^a-z]` a character class, `\` makes
//!   the next character plain; and `**` is any number of directories, none
//!   included, so `**/*.go` finds Go files at every depth. A pattern that
//!   matches a directory leaves out everything under it. A line starting
//!   with `!` is an exception that takes a path back in, and the *last* line
//!   that matches a path decides, so `*.md` then `!README.md` keeps the
//!   README and nothing else with `.md`.
//! - **The context** ([`Context`]) is the directory minus what is ignored:
//!   a snapshot of names, kinds and modes taken once, like the tar Docker
//!   sends. [`Context::resolve`] finds what a COPY source names. The path is
//!   relative to the context whatever it starts with, `/app` meaning
//!   `context/app`; `..` that climbs out is refused; each path component may
//!   hold wildcards; an ignored file is simply not there. A symbolic link
//!   named as a source is followed *inside the context*, as if the context
//!   were `/` (`link -> /etc/passwd` looks for `context/etc/passwd`), which
//!   is what Docker does; a link met inside a copied directory is copied as
//!   a link, unfollowed.
//! - **The cache key** ([`Context::checksum`]). A build reuses a cached
//!   layer when the instruction and its inputs are the same. For COPY the
//!   inputs are files, so the key is a SHA-256 over each file's path, type,
//!   mode, link target and content. The modification time is left out, so
//!   `touch` or a fresh `git clone` keeps the cache, while one changed
//!   byte, a renamed file or a `chmod +x` breaks it. The owner is left out
//!   too: COPY replaces it (with root, or `--chown`), so it cannot change
//!   the result.
//! - **The copy** ([`copy`], [`add`]) follows Docker's rules for COPY, listed
//!   at [`copy`]; [`add`] also unpacks local tar archives, recognised by
//!   their content, and refuses URLs because berth builds offline.
//!
//! ## Writing into an image without leaving it
//!
//! The image being built is a plain directory on the host, and it is full
//! of symbolic links written by whoever made the base image. If `/app` in
//! the image is a link to `/etc`, `COPY x /app/` must write the image's
//! `/etc/x`, not the host's: a link inside the image means what it would
//! mean inside the container. Joining `root` and `/app/x` into one host path
//! and calling `open` gets this wrong, because the kernel resolves `/etc`
//! from the host's `/`. Docker resolves such paths itself, one component at a
//! time, and had to fix races in that code more than once (CVE-2018-15664:
//! a link swapped in between the check and the use).
//!
//! berth asks the kernel instead. `openat2(2)` with `RESOLVE_IN_ROOT`
//! (Linux 5.6 and later) resolves a path with a directory standing in for
//! `/`: absolute links start from it and `..` stops at it, exactly as in a
//! `chroot`, and the check happens during the one lookup, so nothing can be
//! swapped in between. Every directory is opened that way, and everything
//! is then created *relative to the directory's descriptor* with calls that
//! never follow a link in the last component (`mkdirat`, `symlinkat`,
//! `openat` with `O_CREAT | O_EXCL | O_NOFOLLOW`). An existing link where a
//! file is to be written is replaced, never written through. Where a
//! copied directory is to go, a link that leads to a directory is entered
//! and anything else in the way is replaced, as `tar -x` does. Everything
//! below a destination directory (a copied directory's contents, an
//! unpacked archive) is resolved with *that* directory as `/`, which is
//! what Docker's own `chrootarchive` does.
//!
//! Files in the context are read the same way: relative to a descriptor of
//! the context, refusing symbolic links on the way, since the snapshot says
//! there are none on that path.
//!
//! ## Where berth differs from Docker
//!
//! - Several sources with a destination that does not end in `/` are an
//!   error, as the Dockerfile reference says and the classic builder
//!   enforces; BuildKit lets it through and then copies every source onto
//!   the same name (moby/buildkit#1853).
//! - Directories that COPY creates on the way get mode 0755 and the new
//!   owner (root, or `--chown`), as in BuildKit; BuildKit also gives them the
//!   `--chmod` mode (moby/buildkit#6801), which berth does not, since a file
//!   mode like 0644 makes a directory unusable. Directories that already
//!   exist keep their owner and mode.
//! - A file never replaces an existing directory (Docker deletes the
//!   directory and all it holds).
//! - Archive entries with `..` anywhere in their path, or an absolute path,
//!   are refused, where Docker tidies `a/../b` and re-roots `/etc/x` under
//!   the destination (it refuses `../x` too); the same goes for hard link
//!   targets. Relative symbolic links that climb out of the directory being
//!   unpacked are refused, as in Docker.
//! - ADD unpacks plain and gzip-compressed tar files; a bzip2, xz or zstd
//!   archive is refused with a message, since berth has no decompressor
//!   for them. Device nodes and FIFOs are not created.
//! - `--chmod` takes octal modes only; `--chown` with a user and no group
//!   uses the user's number as the group's, as the Dockerfile reference
//!   says.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags, fchmod, fstatat, futimens, mkdirat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use crate::digest::HashingWriter;
use crate::{Error, Result};

/// The name of the ignore file in the context directory.
pub const DOCKERIGNORE: &str = ".dockerignore";

/// How many symbolic links one lookup may follow before it is taken to be
/// a loop; Linux allows 40.
const MAX_LINKS: usize = 40;

// --- patterns ------------------------------------------------------------------

/// One piece of a compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// This character, exactly.
    Char(char),
    /// `*`: any run of characters other than `/`, the empty one included.
    AnyRun,
    /// `?`: one character other than `/`.
    AnyOne,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**/`, or `**` before more pattern: nothing, or any text that ends
    /// in `/` (any number of whole directories).
    AnyDirs,
    /// `**` at the end: anything at all.
    AnyTail,
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone)]
struct Glob {
    tokens: Vec<Token>,
    /// Docker's shortcut for `**` followed by plain text: the path only has
    /// to end with the text, so `**.log` matches `a/b.log` and `x.log`.
    suffix: Option<String>,
}

/// Where in a pattern it is wrong (a character offset) and why.
type PatternError = (usize, String);

impl Glob {
    /// Compiles `pattern`. With `double_star`, `**` spans directories, as in
    /// `.dockerignore`; without it `**` is just two `*`, as in Go's
    /// `filepath.Match`, which COPY sources use.
    fn compile(pattern: &str, double_star: bool) -> std::result::Result<Glob, PatternError> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut suffix = None;
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' if double_star && chars.get(i + 1) == Some(&'*') => {
                    let start = i;
                    i += 2;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    tokens.push(if i == chars.len() {
                        Token::AnyTail
                    } else {
                        Token::AnyDirs
                    });
                    let rest: String = chars[start + 2..].iter().collect();
                    if start == 0 && !rest.contains(['*', '?', '[', ']', '\\']) {
                        suffix = Some(rest);
                    }
                    continue;
                }
                '*' => tokens.push(Token::AnyRun),
                '?' => tokens.push(Token::AnyOne),
                '\\' => {
                    let Some(&c) = chars.get(i + 1) else {
                        return Err((
                            i,
                            "the pattern ends with `\\`, which escapes nothing: remove it, \
                             or write `\\\\` for a backslash"
                                .into(),
                        ));
                    };
                    tokens.push(Token::Char(c));
                    i += 1;
                }
                '[' => {
                    let (token, end) = class(&chars, i)?;
                    tokens.push(token);
                    i = end;
                }
                c => tokens.push(Token::Char(c)),
            }
            i += 1;
        }
        Ok(Glob { tokens, suffix })
    }

    /// Whether the whole of `text` matches.
    fn matches(&self, text: &str) -> bool {
        if let Some(suffix) = &self.suffix {
            return text.ends_with(suffix.as_str())
                || suffix.strip_prefix('/').is_some_and(|s| s == text);
        }
        let chars: Vec<char> = text.chars().collect();
        match_tokens(&self.tokens, &chars)
    }
}

/// Parses the character class that opens at `chars[open]`; returns it and
/// the offset of its closing `]`.
fn class(chars: &[char], open: usize) -> std::result::Result<(Token, usize), PatternError> {
    let unclosed = || {
        (
            open,
            "unclosed character class: `[` needs a matching `]` (write `\\[` for a plain bracket)"
                .to_string(),
        )
    };
    let mut i = open + 1;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(unclosed());
        };
        if c == ']' && !ranges.is_empty() {
            return Ok((Token::Class { negated, ranges }, i));
        }
        let (lo, next) = class_char(chars, i).ok_or_else(unclosed)??;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1).ok_or_else(unclosed)??;
            hi = h;
            i = next;
            if hi < lo {
                return Err((
                    open,
                    format!(
                        "the range {lo}-{hi} runs backwards: write the low end first, {hi}-{lo}"
                    ),
                ));
            }
        }
        ranges.push((lo, hi));
    }
}

/// One character of a class at `chars[i]` and the offset after it; `None`
/// at the end of the pattern.
fn class_char(
    chars: &[char],
    i: usize,
) -> Option<std::result::Result<(char, usize), PatternError>> {
    let c = *chars.get(i)?;
    Some(match c {
        '\\' => chars.get(i + 1).map(|&e| (e, i + 2)).ok_or((
            i,
            "the pattern ends with `\\` inside a character class".to_string(),
        )),
        '-' | ']' => Err((
            i,
            format!("`{c}` is out of place in a character class: write `\\{c}` for the character"),
        )),
        c => Ok((c, i + 1)),
    })
}

/// Backtracking match of `tokens` against all of `text`.
fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    // BEGIN SOLUTION 05.8
    let Some((first, rest)) = tokens.split_first() else {
        return text.is_empty();
    };
    match first {
        Token::Char(c) => text.first() == Some(c) && match_tokens(rest, &text[1..]),
        Token::AnyOne => text.first().is_some_and(|&c| c != '/') && match_tokens(rest, &text[1..]),
        Token::Class { negated, ranges } => {
            text.first()
                .is_some_and(|&c| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)
                && match_tokens(rest, &text[1..])
        }
        Token::AnyRun => {
            for skip in 0..=text.len() {
                if match_tokens(rest, &text[skip..]) {
                    return true;
                }
                if text.get(skip) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Token::AnyDirs => {
            match_tokens(rest, text)
                || (0..text.len()).any(|k| text[k] == '/' && match_tokens(rest, &text[k + 1..]))
        }
        Token::AnyTail => (0..=text.len()).any(|k| match_tokens(rest, &text[k..])),
    }
    // END SOLUTION
}

/// Whether a COPY source (or one component of it) has a wildcard: an
/// unescaped `*`, `?` or `[`. Without one it is a plain name, as written.
fn has_wildcards(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// `part` with each `\x` turned into `x`.
fn unescape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    let mut chars = part.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

/// Tidies a `/`-separated path the way Go's `filepath.Clean` does: no
/// empty or `.` components, `a/..` removed, no `..` above a leading `/`,
/// no trailing `/`; the empty path is `.`.
fn clean(path: &str) -> String {
    // BEGIN SOLUTION 05.8
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
    // END SOLUTION
}

// --- .dockerignore ---------------------------------------------------------------

/// One line of a `.dockerignore` file.
#[derive(Debug, Clone)]
struct Rule {
    /// The pattern as cleaned, without the `!`.
    pattern: String,
    glob: Glob,
    /// A `!` line: matching paths are taken back in.
    exception: bool,
    /// Where it was written, 1-based.
    line: usize,
}

/// The rules of a `.dockerignore` file: which paths the build context
/// leaves out.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

impl Ignore {
    /// Nothing ignored: the context is the whole directory.
    pub fn none() -> Ignore {
        Ignore::default()
    }

    /// Parses the text of a `.dockerignore` file. A pattern that cannot be
    /// used (an unclosed `[`, a lone `!`) is an error giving its line and
    /// column, rather than a rule that silently matches nothing.
    pub fn parse(text: &str) -> Result<Ignore> {
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = if index == 0 {
                raw.strip_prefix('\u{feff}').unwrap_or(raw)
            } else {
                raw
            };
            // Only a `#` in the very first column makes a comment: Docker
            // checks before trimming, so ` # x` is a pattern.
            if raw.starts_with('#') {
                continue;
            }
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let mut start = raw.len() - raw.trim_start().len();
            let (exception, body) = match trimmed.strip_prefix('!') {
                Some(after) => {
                    start += 1 + after.len() - after.trim_start().len();
                    (true, after.trim())
                }
                None => (false, trimmed),
            };
            let column = raw[..start].chars().count() + 1;
            let syntax = |column: usize, message: String| Error::Syntax {
                file: DOCKERIGNORE.to_string(),
                line,
                column,
                message,
            };
            if body.is_empty() {
                return Err(syntax(
                    column,
                    "a `!` alone takes nothing back: write the pattern to keep after it, \
                     as in `!README.md`"
                        .into(),
                ));
            }
            let mut pattern = clean(body);
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
            let glob = Glob::compile(&pattern, true).map_err(|(at, why)| {
                // Point into the line as written when cleaning changed
                // nothing; otherwise at the start of the pattern.
                let at = if pattern == body { at } else { 0 };
                syntax(column + at, format!("bad pattern {body:?}: {why}"))
            })?;
            rules.push(Rule {
                pattern,
                glob,
                exception,
                line,
            });
        }
        Ok(Ignore { rules })
    }

    /// Reads `dir/.dockerignore`; no file means nothing is ignored.
    pub fn load(dir: &Path) -> Result<Ignore> {
        let path = dir.join(DOCKERIGNORE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ignore::parse(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ignore::none()),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// Whether the context leaves out `rel`, a path relative to the
    /// context directory.
    pub fn excluded(&self, rel: &Path) -> bool {
        self.deciding_rule(rel).is_some_and(|r| !r.exception)
    }

    /// Whether any line is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether an exception could take back something under the ignored
    /// directory `dir`, so that the context has to look inside it. The test
    /// compares the exception's pattern with `dir` one component at a
    /// time, and answers yes when unsure (a `**`, a pattern shorter than
    /// `dir`); Docker skips ignored directories the same way.
    fn could_reinclude_under(&self, dir: &Path) -> bool {
        let dir = dir.to_string_lossy();
        let names: Vec<&str> = dir.split('/').collect();
        self.rules.iter().filter(|r| r.exception).any(|rule| {
            let parts: Vec<&str> = rule.pattern.split('/').collect();
            for (i, name) in names.iter().enumerate() {
                match parts.get(i) {
                    None => return true,
                    Some(part) if part.contains("**") => return true,
                    Some(part) => {
                        if !Glob::compile(part, false).map_or(true, |glob| glob.matches(name)) {
                            return false;
                        }
                    }
                }
            }
            true
        })
    }

    /// The last rule that matches `rel` or one of its parent directories:
    /// the one that decides.
    fn deciding_rule(&self, rel: &Path) -> Option<&Rule> {
        // BEGIN SOLUTION 05.8
        let path = clean(&rel.to_string_lossy());
        let path = path.trim_start_matches('/');
        if path == "." || path.is_empty() {
            return None;
        }
        let parents: Vec<&str> = path.match_indices('/').map(|(at, _)| &path[..at]).collect();
        self.rules
            .iter()
            .rev()
            .find(|rule| rule.glob.matches(path) || parents.iter().any(|p| rule.glob.matches(p)))
        // END SOLUTION
    }

    /// "line 3 (`*.log`)": the rule that leaves out `rel`, for messages.
    fn blame(&self, rel: &Path) -> Option<String> {
        self.deciding_rule(rel)
            .filter(|r| !r.exception)
            .map(|r| format!("line {} (`{}`)", r.line, r.pattern))
    }
}

// --- the context -----------------------------------------------------------------

/// What kind of thing a context path is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    /// A symbolic link and its target, as written.
    Symlink(PathBuf),
    /// A FIFO or a device node, which berth does not copy.
    Special(&'static str),
}

/// What the snapshot knows of one path.
#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    /// Permission bits, with set-user-id, set-group-id and sticky.
    mode: u32,
    /// Modification time (seconds, nanoseconds).
    mtime: (i64, i64),
}

impl Entry {
    fn from_metadata(meta: &std::fs::Metadata, kind: Kind) -> Entry {
        Entry {
            kind,
            mode: meta.mode() & 0o7777,
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// A build context: a directory, minus what `.dockerignore` leaves out.
pub struct Context {
    dir: PathBuf,
    fd: OwnedFd,
    ignore: Ignore,
    root: Entry,
    /// Every usable path, relative to the directory, in path order (a
    /// directory comes right before what it holds).
    entries: BTreeMap<PathBuf, Entry>,
}

/// A step of a path being followed.
enum Step {
    /// Back to the top (an absolute link target).
    Top,
    /// `..`.
    Up,
    Name(OsString),
}

fn steps(path: &Path) -> VecDeque<Step> {
    path.components()
        .filter_map(|c| match c {
            Component::RootDir | Component::Prefix(_) => Some(Step::Top),
            Component::CurDir => None,
            Component::ParentDir => Some(Step::Up),
            Component::Normal(n) => Some(Step::Name(n.to_os_string())),
        })
        .collect()
}

impl Context {
    /// Takes a snapshot of `dir` as a build context: every path that
    /// `ignore` does not leave out, with its kind and mode. Sockets are
    /// skipped, as Docker skips them.
    pub fn open(dir: &Path, ignore: Ignore) -> Result<Context> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot use {} as the build context: {}: give the path of an existing directory",
                dir.display(),
                io::Error::from(e)
            ))
        })?;
        let meta = std::fs::metadata(dir).map_err(|e| Error::io("stat", dir, e))?;
        let root = Entry::from_metadata(&meta, Kind::Dir);

        let mut entries = BTreeMap::new();
        // Ignored directories walked into because an exception might take
        // something under them back; kept only if something is.
        let mut held_back: HashMap<PathBuf, Entry> = HashMap::new();
        let mut todo = vec![PathBuf::new()];
        while let Some(rel) = todo.pop() {
            let here = dir.join(&rel);
            let listing = std::fs::read_dir(&here).map_err(|e| Error::io("read", &here, e))?;
            for item in listing {
                let item = item.map_err(|e| Error::io("read", &here, e))?;
                let path = rel.join(item.file_name());
                let full = dir.join(&path);
                let meta =
                    std::fs::symlink_metadata(&full).map_err(|e| Error::io("stat", &full, e))?;
                let kind = match meta.mode() & libc::S_IFMT {
                    libc::S_IFREG => Kind::File,
                    libc::S_IFDIR => Kind::Dir,
                    libc::S_IFLNK => Kind::Symlink(
                        std::fs::read_link(&full).map_err(|e| Error::io("read link", &full, e))?,
                    ),
                    libc::S_IFIFO => Kind::Special("a FIFO"),
                    libc::S_IFCHR => Kind::Special("a character device"),
                    libc::S_IFBLK => Kind::Special("a block device"),
                    _ => continue,
                };
                let is_dir = kind == Kind::Dir;
                let entry = Entry::from_metadata(&meta, kind);
                if !ignore.excluded(&path) {
                    entries.insert(path.clone(), entry);
                } else if is_dir && ignore.could_reinclude_under(&path) {
                    held_back.insert(path.clone(), entry);
                } else {
                    continue;
                }
                if is_dir {
                    todo.push(path);
                }
            }
        }
        // An exception inside an ignored directory brings its parents back
        // in, or the file would have nowhere to be.
        if !held_back.is_empty() {
            let kept: Vec<PathBuf> = entries.keys().cloned().collect();
            for path in kept {
                for parent in path.ancestors().skip(1) {
                    if let Some(entry) = held_back.remove(parent) {
                        entries.insert(parent.to_path_buf(), entry);
                    }
                }
            }
        }
        Ok(Context {
            dir: dir.to_path_buf(),
            fd,
            ignore,
            root,
            entries,
        })
    }

    /// The context directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every path in the context, relative to it, in order: what `docker
    /// build` would send.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.entries.keys().map(PathBuf::as_path)
    }

    /// The context paths a COPY or ADD source names, sorted. A path may be
    /// a symbolic link, which the copy follows inside the context; `.`
    /// stands for the context itself. Finding nothing is an error, as in
    /// Docker; the message names the `.dockerignore` line to blame, if any.
    pub fn resolve(&self, src: &str) -> Result<Vec<PathBuf>> {
        let parts = source_parts(src)?;
        let named: PathBuf = parts.iter().collect();
        if !has_wildcards(src) {
            return match self.follow(&named)? {
                Some(_) => Ok(vec![if parts.is_empty() {
                    PathBuf::from(".")
                } else {
                    named
                }]),
                None => Err(self.not_found(src, &named)),
            };
        }
        let mut found = vec![PathBuf::new()];
        for part in &parts {
            let mut next = Vec::new();
            for base in &found {
                if !has_wildcards(part) {
                    // A plain component of a pattern: `\` escapes still
                    // count, as `filepath.Match` reads the whole pattern.
                    next.push(base.join(unescape(part)));
                    continue;
                }
                let glob = Glob::compile(part, false).map_err(|(_, why)| {
                    Error::Invalid(format!("bad wildcard in COPY source {src:?}: {why}"))
                })?;
                let Some((real, entry)) = self.follow(base)? else {
                    continue;
                };
                if entry.kind != Kind::Dir {
                    continue;
                }
                for (rel, _) in self.under(&real) {
                    let name = rel.as_os_str();
                    if rel.components().count() == 1 && glob.matches(&name.to_string_lossy()) {
                        next.push(base.join(name));
                    }
                }
            }
            found = next;
        }
        let mut matched = Vec::new();
        for path in found {
            if self.follow(&path)?.is_some() {
                matched.push(path);
            }
        }
        matched.sort();
        if matched.is_empty() {
            return Err(Error::Invalid(format!(
                "COPY/ADD source {src:?} matches nothing in the build context {} (files that \
                 .dockerignore leaves out do not count): fix the pattern, or the .dockerignore",
                self.dir.display()
            )));
        }
        Ok(matched)
    }

    /// The error for a source that is not there, saying which
    /// `.dockerignore` line is to blame if one is.
    fn not_found(&self, src: &str, named: &Path) -> Error {
        let why = match self.ignore.blame(named) {
            Some(rule) => format!("it is excluded by .dockerignore {rule}"),
            None => "there is no such file or directory".to_string(),
        };
        Error::Invalid(format!(
            "COPY/ADD source {src:?} is not in the build context {}: {why}. Sources are \
             relative to the context directory; check the path and the .dockerignore",
            self.dir.display()
        ))
    }

    /// Follows `named` through the snapshot as if the context were `/`:
    /// symbolic links are followed, absolute ones from the context, and
    /// `..` stops at the top. Gives the real path and its entry, or `None`
    /// if it leads nowhere (or to something ignored).
    fn follow(&self, named: &Path) -> Result<Option<(PathBuf, &Entry)>> {
        let mut todo = steps(named);
        let mut at = PathBuf::new();
        let mut links = 0;
        while let Some(step) = todo.pop_front() {
            let name = match step {
                Step::Top => {
                    at.clear();
                    continue;
                }
                Step::Up => {
                    at.pop();
                    continue;
                }
                Step::Name(name) => name,
            };
            let next = at.join(&name);
            let Some(entry) = self.entries.get(&next) else {
                return Ok(None);
            };
            match &entry.kind {
                Kind::Dir => at = next,
                Kind::Symlink(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Error::Invalid(format!(
                            "{} in the build context: too many levels of symbolic links \
                             (is there a loop?)",
                            named.display()
                        )));
                    }
                    let mut expanded = steps(target);
                    expanded.extend(todo);
                    todo = expanded;
                }
                _ if todo.is_empty() => at = next,
                // A file cannot have anything under it.
                _ => return Ok(None),
            }
        }
        let entry = if at.as_os_str().is_empty() {
            &self.root
        } else {
            &self.entries[&at]
        };
        Ok(Some((at, entry)))
    }

    /// Everything under the real directory `dir`, as paths relative to it,
    /// parents first.
    fn under<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = (&'a Path, &'a Entry)> + 'a {
        self.entries
            .range::<Path, _>((Bound::Excluded(dir), Bound::Unbounded))
            .take_while(move |(path, _)| path.starts_with(dir))
            .map(move |(path, entry)| (path.strip_prefix(dir).expect("checked above"), entry))
    }

    /// Opens a file of the snapshot for reading. The path has no symbolic
    /// links in it, so the lookup refuses any: one that appeared since the
    /// snapshot cannot lead out of the context.
    fn read(&self, real: &Path) -> Result<File> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        openat2(self.fd.as_fd(), real, how)
            .map(File::from)
            .map_err(|e| Error::io("read from the build context", self.dir.join(real), e.into()))
    }

    /// A cache key for COPY or ADD of `sources`: `sha256:` over the path,
    /// type, mode, link target and content of everything they copy. Not
    /// the modification time or the owner, which cannot change the result,
    /// and nothing `.dockerignore` leaves out.
    pub fn checksum<S: AsRef<str>>(&self, sources: &[S]) -> Result<String> {
        let mut hash = HashingWriter::new(io::sink());
        let mut record = |parts: &[&[u8]]| {
            for part in parts {
                hash.write_all(part).and_then(|_| hash.write_all(b"\0"))?;
            }
            hash.write_all(b"\n")
        };
        // BEGIN SOLUTION 05.8
        for src in sources {
            let src = src.as_ref();
            refuse_url(src, "COPY")?;
            for named in self.resolve(src)? {
                let (real, top) = self.follow(&named)?.expect("resolve found it");
                let io_err = |e| Error::io("hash", self.dir.join(&named), e);
                record(&[b"source", named.as_os_str().as_bytes()]).map_err(io_err)?;
                let mut items = vec![(PathBuf::new(), top)];
                if top.kind == Kind::Dir {
                    items.extend(self.under(&real).map(|(p, e)| (p.to_path_buf(), e)));
                }
                for (rel, entry) in items {
                    let mode = format!("{:o}", entry.mode);
                    let (kind, payload): (&[u8], Vec<u8>) = match &entry.kind {
                        Kind::File => {
                            let mut content = HashingWriter::new(io::sink());
                            let path = if rel.as_os_str().is_empty() {
                                real.clone()
                            } else {
                                real.join(&rel)
                            };
                            io::copy(&mut self.read(&path)?, &mut content)
                                .map_err(|e| Error::io("read", self.dir.join(&path), e))?;
                            (b"file", content.finish().0.into_bytes())
                        }
                        Kind::Dir => (b"dir", Vec::new()),
                        Kind::Symlink(target) => {
                            (b"symlink", target.as_os_str().as_bytes().to_vec())
                        }
                        Kind::Special(what) => (what.as_bytes(), Vec::new()),
                    };
                    record(&[rel.as_os_str().as_bytes(), kind, mode.as_bytes(), &payload])
                        .map_err(io_err)?;
                }
            }
        }
        Ok(hash.finish().0)
        // END SOLUTION
    }
}

/// The components of a COPY source, relative to the context whatever it
/// starts with; `..` that would climb out of the context is refused.
fn source_parts(src: &str) -> Result<Vec<String>> {
    if src.is_empty() {
        return Err(Error::Invalid(
            "empty COPY/ADD source: name a file or directory in the build context, or `.` for all of it"
                .into(),
        ));
    }
    // BEGIN SOLUTION 05.8
    let cleaned = clean(src.trim_start_matches('/'));
    if cleaned == ".." || cleaned.starts_with("../") {
        return Err(Error::Invalid(format!(
            "COPY/ADD source {src:?} is outside the build context: a build can only use files \
             under the context directory; move the file in, or build from a directory that \
             holds it"
        )));
    }
    Ok(cleaned
        .split('/')
        .filter(|p| *p != ".")
        .map(str::to_string)
        .collect())
    // END SOLUTION
}

/// Refuses a URL source: berth's builds do not use the network.
fn refuse_url(src: &str, instruction: &str) -> Result<()> {
    // BEGIN SOLUTION 05.8
    let remote = ["http://", "https://", "git://", "git@"]
        .iter()
        .any(|p| src.starts_with(p));
    if !remote {
        return Ok(());
    }
    Err(Error::Invalid(if instruction == "ADD" {
        format!(
            "ADD {src}: ADD from a URL needs the network, which berth's builds do not use: \
             download the file into the build context and ADD or COPY it"
        )
    } else {
        format!(
            "COPY {src}: COPY takes files from the build context, not URLs (and berth's builds \
             do not use the network): download the file into the build context and COPY it"
        )
    }))
    // END SOLUTION
}

// --- COPY and ADD ----------------------------------------------------------------

/// The flags of COPY and ADD that change what is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `--chown`: the owner of everything written, as numbers (see
    /// [`parse_chown`]); `None` means root, 0:0.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`: the mode of everything written except symbolic links
    /// (see [`parse_chmod`]); `None` keeps each file's own mode.
    pub chmod: Option<u32>,
}

/// Reads an octal `--chmod` value such as `755` or `0644`.
pub fn parse_chmod(spec: &str) -> Result<u32> {
    // BEGIN SOLUTION 05.8
    let digits = spec.strip_prefix("0o").unwrap_or(spec);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if !digits.is_empty() && digits.len() <= 4 && mode <= 0o7777 => Ok(mode),
        _ => Err(Error::Invalid(format!(
            "--chmod={spec}: berth understands octal modes such as 755 or 0644, not symbolic \
             ones like u+x"
        ))),
    }
    // END SOLUTION
}

/// Reads a `--chown` value, `USER[:GROUP]`, into numbers. Numbers are used
/// as they are; names are looked up in the image's own `/etc/passwd` and
/// `/etc/group` under `root`, since the host's users mean nothing in the
/// image. Without a group the group id is the user id, as Docker does.
pub fn parse_chown(spec: &str, root: &Path) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(|g| g.is_empty() || g.contains(':')) {
        return Err(Error::Invalid(format!(
            "--chown={spec}: write USER, USER:GROUP, UID or UID:GID, e.g. --chown=1000:1000 or \
             --chown=app:app"
        )));
    }
    let uid = match user.parse() {
        Ok(uid) => uid,
        Err(_) => lookup(root, "etc/passwd", user, "user")?,
    };
    let gid = match group {
        None => uid,
        Some(group) => match group.parse() {
            Ok(gid) => gid,
            Err(_) => lookup(root, "etc/group", group, "group")?,
        },
    };
    Ok((uid, gid))
}

/// Looks `name` up in a passwd-style file of the image (`etc/passwd` or
/// `etc/group`: the id is the third field).
fn lookup(root: &Path, file: &str, name: &str, what: &str) -> Result<u32> {
    let root_fd = open_dir(root)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let text = match openat2(root_fd.as_fd(), file, how) {
        Ok(fd) => {
            let mut text = String::new();
            File::from(fd)
                .read_to_string(&mut text)
                .map_err(|e| Error::io("read", root.join(file), e))?;
            text
        }
        Err(Errno::ENOENT) => {
            return Err(Error::Invalid(format!(
                "--chown: cannot look up {what} {name:?}: the image has no /{file}; use numeric \
                 ids, such as --chown=1000:1000"
            )));
        }
        Err(e) => return Err(Error::io("open", root.join(file), e.into())),
    };
    id_in(&text, name).ok_or_else(|| {
        Error::Invalid(format!(
            "--chown: there is no {what} {name:?} in the image's /{file}: create it first \
             (RUN adduser …) or use a numeric id"
        ))
    })
}

/// The id (third field) of `name` in the text of a passwd or group file.
fn id_in(text: &str, name: &str) -> Option<u32> {
    // BEGIN SOLUTION 05.8
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 2 && fields[0] == name)
        .and_then(|fields| fields[2].trim().parse().ok())
    // END SOLUTION
}

/// A destination in the image, made absolute (from WORKDIR when it is
/// relative) and tidied; `..` stops at `/`. The flag says whether it was
/// written with a trailing `/`, marking a directory.
fn image_dest(dest: &str, workdir: &str) -> Result<(PathBuf, bool)> {
    // BEGIN SOLUTION 05.8
    if dest.is_empty() {
        return Err(Error::Invalid(
            "COPY needs a destination: the last argument is the path in the image".into(),
        ));
    }
    let is_dir = dest.ends_with('/');
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("/{workdir}/{dest}")
    };
    Ok((PathBuf::from(clean(&joined)), is_dir))
    // END SOLUTION
}

/// Where a file source of COPY goes, relative to the image root: *into*
/// `dest` under its own `name` when `dest` was written with a trailing
/// `/` (`dest_is_dir`) or already is a directory in the image
/// (`exists_as_dir`), and otherwise to `dest` itself. `dest` is absolute,
/// as [`image_dest`] makes it.
fn file_dest(dest: &Path, dest_is_dir: bool, exists_as_dir: bool, name: &OsStr) -> PathBuf {
    // BEGIN SOLUTION 05.8
    if dest_is_dir || exists_as_dir {
        inside(dest).join(name)
    } else {
        inside(dest).to_path_buf()
    }
    // END SOLUTION
}

/// A path in the image relative to its root, for `openat2`.
fn inside(image: &Path) -> &Path {
    image.strip_prefix("/").unwrap_or(image)
}

/// Copies `sources` from the build context into the image directory `root`,
/// as `COPY [--chown] [--chmod] SRC... DEST` does:
///
/// - `dest` is relative to `workdir` unless it starts with `/`;
/// - a `dest` ending in `/` is a directory, created (with its parents) if
///   missing; several sources, directly or through wildcards, need such a
///   `dest`;
/// - a file goes *into* `dest` when `dest` ends in `/` or already is a
///   directory in the image, and otherwise *becomes* `dest`;
/// - a directory source copies its *contents* into `dest`, not the
///   directory itself; `dest`, if it has to be made, is the copy of the
///   directory and takes its mode; a copied directory's symbolic links stay
///   links, while a source that is a link is followed (inside the context);
/// - files keep their mode unless `--chmod` is given; everything written
///   is owned by root (0:0) unless `--chown` is given; modification times
///   are kept;
/// - other directories made on the way get mode 0755 and the same owner;
///   directories that exist keep their mode and owner.
///
/// Nothing is written outside `root` (see the module documentation).
/// Returns the image paths written, in order.
pub fn copy<S: AsRef<str>>(
    context: &Context,
    sources: &[S],
    dest: &str,
    workdir: &str,
    root: &Path,
    options: &CopyOptions,
) -> Result<Vec<PathBuf>> {
    transfer(
        Instruction::Copy,
        context,
        sources,
        dest,
        workdir,
        root,
        options,
    )
}

/// `ADD`: [`copy`], except that a source file that is a tar archive (plain
/// or gzip-compressed, recognised by its content, not its name) is
/// unpacked into `dest` as a directory. Archive entries keep their owner
/// and mode unless `--chown` or `--chmod` is given; entries that would land
/// outside `dest` are refused with [`Error::Hostile`]. URLs are refused:
/// berth's builds are offline.
pub fn add<S: AsRef<str>>(
    context: &Context,
    sources: &[S],
    dest: &str,
    workdir: &str,
    root: &Path,
    options: &CopyOptions,
) -> Result<Vec<PathBuf>> {
    transfer(
        Instruction::Add,
        context,
        sources,
        dest,
        workdir,
        root,
        options,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instruction {
    Copy,
    Add,
}

impl Instruction {
    fn name(self) -> &'static str {
        match self {
            Instruction::Copy => "COPY",
            Instruction::Add => "ADD",
        }
    }
}

fn transfer<S: AsRef<str>>(
    instruction: Instruction,
    context: &Context,
    sources: &[S],
    dest: &str,
    workdir: &str,
    root: &Path,
    options: &CopyOptions,
) -> Result<Vec<PathBuf>> {
    let name = instruction.name();
    let mut matched = Vec::new();
    for src in sources {
        let src = src.as_ref();
        refuse_url(src, name)?;
        for named in context.resolve(src)? {
            let (real, entry) = context.follow(&named)?.expect("resolve found it");
            matched.push((src, named, real, entry));
        }
    }
    let (dest_path, dest_is_dir) = image_dest(dest, workdir)?;
    if matched.len() > 1 && !dest_is_dir {
        return Err(Error::Invalid(format!(
            "{name} of {} files to {dest:?}: with more than one source the destination must be \
             a directory, written with a trailing slash: {dest}/",
            matched.len()
        )));
    }
    // Refuse what cannot be copied before anything is written.
    for (src, named, real, entry) in &matched {
        let inner = context.under(real).filter(|_| entry.kind == Kind::Dir);
        for (rel, item) in std::iter::once((Path::new(""), *entry)).chain(inner) {
            if let Kind::Special(what) = &item.kind {
                return Err(Error::Invalid(format!(
                    "{name} {src}: {} is {what}; berth copies regular files, directories and \
                     symbolic links only: leave it out with .dockerignore",
                    named.join(rel).display()
                )));
            }
        }
    }
    let owner = options.chown.unwrap_or((0, 0));
    let mut out = Writer::new(root, owner)?;
    for (src, named, real, entry) in matched {
        match &entry.kind {
            Kind::Dir => {
                let meta = Meta {
                    mode: options.chmod.unwrap_or(entry.mode),
                    owner,
                    mtime: Some(entry.mtime),
                };
                let dir = out.dir(0, inside(&dest_path), Last::Dest(meta))?;
                let scope = out.scope(dir, dest_path.clone());
                for (rel, item) in context.under(&real) {
                    let meta = Meta {
                        mode: options.chmod.unwrap_or(item.mode),
                        owner,
                        mtime: Some(item.mtime),
                    };
                    match &item.kind {
                        Kind::Dir => drop(out.dir(scope, rel, Last::Entry(meta))?),
                        Kind::File => {
                            let mut file = context.read(&real.join(rel))?;
                            out.file(scope, rel, &mut file, meta)?;
                        }
                        Kind::Symlink(target) => out.symlink(scope, rel, target, meta)?,
                        Kind::Special(_) => unreachable!("refused above"),
                    }
                }
            }
            Kind::File => {
                let meta = Meta {
                    mode: options.chmod.unwrap_or(entry.mode),
                    owner,
                    mtime: Some(entry.mtime),
                };
                if instruction == Instruction::Add
                    && let Some(reader) = archive(context, src, &real)?
                {
                    let dir = out.dir(0, inside(&dest_path), Last::Parent)?;
                    let scope = out.scope(dir, dest_path.clone());
                    out.unpack(scope, src, reader, options)?;
                    continue;
                }
                let rel = file_dest(
                    &dest_path,
                    dest_is_dir,
                    out.is_dir(0, inside(&dest_path)),
                    named.file_name().expect("a file has a name"),
                );
                if rel.as_os_str().is_empty() {
                    return Err(Error::Invalid(format!(
                        "{name} {src} {dest}: a file cannot replace the image's root directory"
                    )));
                }
                let mut file = context.read(&real)?;
                out.file(0, &rel, &mut file, meta)?;
            }
            Kind::Symlink(_) => unreachable!("follow never stops at a link"),
            Kind::Special(_) => unreachable!("refused above"),
        }
    }
    out.finish()
}

// --- writing inside the image ------------------------------------------------------

/// The mode, owner and modification time to give something written.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: u32,
    owner: (u32, u32),
    mtime: Option<(i64, i64)>,
}

/// What [`Writer::dir`] does about the last name of its path.
#[derive(Debug, Clone, Copy)]
enum Last {
    /// A parent on the way: made with mode 0755 if missing.
    Parent,
    /// A destination named in the instruction: made with this metadata if
    /// missing; a non-directory in the way is an error.
    Dest(Meta),
    /// A directory being copied or unpacked: made with this metadata if
    /// missing; a file or link in the way is replaced, as `tar -x` does.
    Entry(Meta),
}

/// A directory that paths are resolved in as if it were `/`.
struct Scope {
    fd: OwnedFd,
    /// Its path as the container sees it, for reports and messages.
    image: PathBuf,
}

/// A directory created during the copy whose mode and time are set at the
/// end: set at once, a read-only mode would stop its own contents being
/// written, and each new entry would bump its time.
struct Pending {
    scope: usize,
    rel: PathBuf,
    mode: u32,
    mtime: Option<(i64, i64)>,
}

/// Writes files into an image directory, never outside it.
struct Writer<'a> {
    root: &'a Path,
    /// Scope 0 is the image root; the others are destination directories.
    scopes: Vec<Scope>,
    /// The owner of directories created on the way.
    owner: (u32, u32),
    pending: Vec<Pending>,
    written: Vec<PathBuf>,
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open directory", path, e.into()))
}

/// Opens directory `rel` under `base`, with `base` standing in for `/`.
fn open_in(base: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(base, rel, how)
}

fn timespec((sec, nsec): (i64, i64)) -> TimeSpec {
    TimeSpec::new(sec, nsec)
}

fn ids((uid, gid): (u32, u32)) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

impl<'a> Writer<'a> {
    fn new(root: &'a Path, owner: (u32, u32)) -> Result<Writer<'a>> {
        let fd = open_dir(root)?;
        if let Err(Errno::ENOSYS) = open_in(fd.as_fd(), Path::new("")) {
            return Err(Error::Invalid(
                "this kernel has no openat2(2), which berth needs to write into an image \
                 safely: COPY and ADD need Linux 5.6 or later"
                    .into(),
            ));
        }
        Ok(Writer {
            root,
            scopes: vec![Scope {
                fd,
                image: PathBuf::from("/"),
            }],
            owner,
            pending: Vec::new(),
            written: Vec::new(),
        })
    }

    /// Makes the open directory `fd` a scope of its own; returns its number.
    fn scope(&mut self, fd: OwnedFd, image: PathBuf) -> usize {
        self.scopes.push(Scope { fd, image });
        self.scopes.len() - 1
    }

    /// The image path of `rel` in `scope`.
    fn image(&self, scope: usize, rel: &Path) -> PathBuf {
        self.scopes[scope].image.join(rel)
    }

    /// A host path for messages about `rel` in `scope`.
    fn host(&self, scope: usize, rel: &Path) -> PathBuf {
        let image = self.image(scope, rel);
        self.root.join(inside(&image))
    }

    /// Whether `rel` is (or, through links inside the scope, leads to) a
    /// directory.
    fn is_dir(&self, scope: usize, rel: &Path) -> bool {
        open_in(self.scopes[scope].fd.as_fd(), rel).is_ok()
    }

    /// Opens directory `rel` in `scope`, creating what is missing: parents
    /// with mode 0755 and the copy's owner, `rel` itself as `last` says.
    /// Links on the way are followed inside the scope.
    fn dir(&mut self, scope: usize, rel: &Path, last: Last) -> Result<OwnedFd> {
        let names: Vec<&OsStr> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let mut at = PathBuf::new();
        let mut fd = open_in(self.scopes[scope].fd.as_fd(), &at)
            .map_err(|e| Error::io("open directory", self.host(scope, &at), e.into()))?;
        for (i, name) in names.iter().enumerate() {
            let parent = at.clone();
            at.push(name);
            let (meta, replace) = match last {
                Last::Dest(meta) if i == names.len() - 1 => (meta, false),
                Last::Entry(meta) if i == names.len() - 1 => (meta, true),
                _ => {
                    let parent = Meta {
                        mode: 0o755,
                        owner: self.owner,
                        mtime: None,
                    };
                    (parent, false)
                }
            };
            match open_in(self.scopes[scope].fd.as_fd(), &at) {
                Ok(next) => fd = next,
                Err(Errno::ENOENT | Errno::ENOTDIR) if replace => {
                    self.clear(&fd, name, scope, &at)?;
                    fd = self.mkdir(scope, &fd, name, &at, meta, &parent)?;
                }
                Err(Errno::ENOENT) => fd = self.mkdir(scope, &fd, name, &at, meta, &parent)?,
                Err(Errno::ENOTDIR) => {
                    return Err(Error::Invalid(format!(
                        "cannot make directory {}: {} exists in the image and is not a directory",
                        self.image(scope, rel).display(),
                        self.image(scope, &at).display()
                    )));
                }
                Err(e) => return Err(Error::io("open directory", self.host(scope, &at), e.into())),
            }
        }
        Ok(fd)
    }

    /// Creates directory `name` in `parent` (which is `parent_rel` in
    /// `scope`) and gives it its owner; mode and time come at the end.
    fn mkdir(
        &mut self,
        scope: usize,
        parent: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        meta: Meta,
        parent_rel: &Path,
    ) -> Result<OwnedFd> {
        let host = self.host(scope, rel);
        match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                // The lookup found nothing, yet the name is taken: a
                // symbolic link to something that does not exist.
                return Err(Error::Invalid(format!(
                    "cannot make directory {}: it is a symbolic link in the image to something \
                     that does not exist; create the target first (RUN mkdir -p …) or copy to \
                     the real path",
                    self.image(scope, rel).display()
                )));
            }
            Err(e) => {
                return Err(Error::io(
                    "create directory",
                    self.host(scope, parent_rel).join(name),
                    e.into(),
                ));
            }
        }
        let fd = openat(
            parent.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open directory", &host, e.into()))?;
        let (uid, gid) = ids(meta.owner);
        fchown(fd.as_fd(), uid, gid).map_err(|e| chown_error(&host, meta.owner, e))?;
        self.pending.push(Pending {
            scope,
            rel: rel.to_path_buf(),
            mode: meta.mode,
            mtime: meta.mtime,
        });
        self.written.push(self.image(scope, rel));
        Ok(fd)
    }

    /// The directory that will hold `rel`, and `rel`'s last name, with the
    /// name cleared.
    fn slot(&mut self, scope: usize, rel: &Path) -> Result<(OwnedFd, OsString)> {
        let name = rel.file_name().expect("a path with a name").to_os_string();
        let parent = self.dir(scope, rel.parent().unwrap_or(Path::new("")), Last::Parent)?;
        self.clear(&parent, &name, scope, rel)?;
        Ok((parent, name))
    }

    /// Makes room for `name` in `parent` (which holds `rel` of `scope`): an
    /// existing file or link is removed, never written through; an
    /// existing directory is an error.
    fn clear(&self, parent: &OwnedFd, name: &OsStr, scope: usize, rel: &Path) -> Result<()> {
        match fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(()),
            Ok(st) if is_dir(&st) => Err(Error::Invalid(format!(
                "{} is a directory in the image; berth will not replace a directory with a \
                 file: copy to another name, or remove it first",
                self.image(scope, rel).display()
            ))),
            Ok(_) => unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| Error::io("replace", self.host(scope, rel), e.into())),
            Err(e) => Err(Error::io("stat", self.host(scope, rel), e.into())),
        }
    }

    /// Writes a regular file at `rel` in `scope` from `data`.
    fn file(&mut self, scope: usize, rel: &Path, data: &mut dyn Read, meta: Meta) -> Result<()> {
        let (parent, name) = self.slot(scope, rel)?;
        let host = self.host(scope, rel);
        let fd = openat(
            parent.as_fd(),
            name.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| Error::io("create", &host, e.into()))?;
        let mut file = File::from(fd);
        io::copy(data, &mut file).map_err(|e| Error::io("write", &host, e))?;
        // The owner first: changing it clears set-user-id and set-group-id.
        let (uid, gid) = ids(meta.owner);
        fchown(file.as_fd(), uid, gid).map_err(|e| chown_error(&host, meta.owner, e))?;
        fchmod(
            file.as_fd(),
            Mode::from_bits_truncate(meta.mode as libc::mode_t),
        )
        .map_err(|e| Error::io("chmod", &host, e.into()))?;
        if let Some(mtime) = meta.mtime {
            futimens(file.as_fd(), &timespec(mtime), &timespec(mtime))
                .map_err(|e| Error::io("set the time of", &host, e.into()))?;
        }
        self.written.push(self.image(scope, rel));
        Ok(())
    }

    /// Makes a symbolic link at `rel` in `scope`. The target is stored as
    /// it is and never followed here; inside the container it means what
    /// it says.
    fn symlink(&mut self, scope: usize, rel: &Path, target: &Path, meta: Meta) -> Result<()> {
        let (parent, name) = self.slot(scope, rel)?;
        let host = self.host(scope, rel);
        symlinkat(target, parent.as_fd(), name.as_os_str())
            .map_err(|e| Error::io("create symbolic link", &host, e.into()))?;
        let (uid, gid) = ids(meta.owner);
        fchownat(
            parent.as_fd(),
            name.as_os_str(),
            uid,
            gid,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| chown_error(&host, meta.owner, e))?;
        if let Some(mtime) = meta.mtime {
            nix::sys::stat::utimensat(
                parent.as_fd(),
                name.as_os_str(),
                &timespec(mtime),
                &timespec(mtime),
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| Error::io("set the time of", &host, e.into()))?;
        }
        self.written.push(self.image(scope, rel));
        Ok(())
    }

    /// Makes `rel` in `scope` a hard link to `target`, an earlier entry of
    /// the same scope. Both are looked up inside the scope.
    fn hard_link(&mut self, scope: usize, rel: &Path, target: &Path) -> Result<()> {
        let target_dir = open_in(
            self.scopes[scope].fd.as_fd(),
            target.parent().unwrap_or(Path::new("")),
        )
        .map_err(|e| Error::io("open directory", self.host(scope, target), e.into()))?;
        let target_name = target.file_name().expect("checked by archive_path");
        let (parent, name) = self.slot(scope, rel)?;
        linkat(
            target_dir.as_fd(),
            target_name,
            parent.as_fd(),
            name.as_os_str(),
            AtFlags::empty(),
        )
        .map_err(|e| Error::io("create hard link", self.host(scope, rel), e.into()))?;
        self.written.push(self.image(scope, rel));
        Ok(())
    }

    /// Unpacks the tar stream `reader` (source `src`) into `scope`.
    fn unpack(
        &mut self,
        scope: usize,
        src: &str,
        reader: Box<dyn Read>,
        options: &CopyOptions,
    ) -> Result<()> {
        let host = self.host(scope, Path::new(""));
        let bad = |e: io::Error| Error::Invalid(format!("ADD {src}: unreadable tar archive: {e}"));
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let hostile = |why: String| Error::Hostile {
                entry: shown.clone(),
                why: format!("{why} (in ADD {src}); berth refuses such archives"),
            };
            let Some(rel) = archive_path(&raw).map_err(hostile)? else {
                continue;
            };
            let header = entry.header();
            let kind = header.entry_type();
            let number = |n: io::Result<u64>| n.ok().and_then(|n| u32::try_from(n).ok());
            let owner = match options.chown {
                Some(owner) => owner,
                None => match (number(header.uid()), number(header.gid())) {
                    (Some(uid), Some(gid)) => (uid, gid),
                    _ => return Err(bad(io::Error::other(format!("bad owner on {shown}")))),
                },
            };
            let mode = options
                .chmod
                .unwrap_or(header.mode().map_err(bad)? & 0o7777);
            let mtime = header.mtime().ok().map(|t| (t as i64, 0));
            let meta = Meta { mode, owner, mtime };
            match kind {
                tar::EntryType::Directory => drop(self.dir(scope, &rel, Last::Entry(meta))?),
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    self.file(scope, &rel, &mut entry, meta)?;
                }
                tar::EntryType::Symlink => {
                    let target = link_target(&entry)
                        .ok_or_else(|| hostile("a symbolic link without a target".into()))?;
                    if climbs_out(&rel, &target) {
                        return Err(hostile(format!(
                            "the symbolic link points to {}, outside the directory it is unpacked into",
                            target.display()
                        )));
                    }
                    self.symlink(scope, &rel, &target, meta)?;
                }
                tar::EntryType::Link => {
                    let raw_target = entry
                        .link_name_bytes()
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    let target = archive_path(&raw_target)
                        .map_err(|why| hostile(format!("its hard link target {why}")))?
                        .ok_or_else(|| hostile("a hard link to the directory itself".into()))?;
                    self.hard_link(scope, &rel, &target)?;
                }
                tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink => {}
                other => {
                    let what = match other {
                        tar::EntryType::Char => "a character device",
                        tar::EntryType::Block => "a block device",
                        tar::EntryType::Fifo => "a FIFO",
                        _ => "of a kind berth does not know",
                    };
                    return Err(Error::Invalid(format!(
                        "ADD {src}: archive entry {shown:?} is {what}, which berth does not \
                         create (unpacking into {}); remove it from the archive",
                        host.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Gives created directories their mode and time, deepest first, and
    /// returns the image paths written.
    fn finish(self) -> Result<Vec<PathBuf>> {
        for pending in self.pending.iter().rev() {
            let host = self.host(pending.scope, &pending.rel);
            let fd = open_in(self.scopes[pending.scope].fd.as_fd(), &pending.rel)
                .map_err(|e| Error::io("open directory", &host, e.into()))?;
            fchmod(
                fd.as_fd(),
                Mode::from_bits_truncate(pending.mode as libc::mode_t),
            )
            .map_err(|e| Error::io("chmod", &host, e.into()))?;
            if let Some(mtime) = pending.mtime {
                futimens(fd.as_fd(), &timespec(mtime), &timespec(mtime))
                    .map_err(|e| Error::io("set the time of", &host, e.into()))?;
            }
        }
        Ok(self.written)
    }
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFDIR
}

fn chown_error(path: &Path, (uid, gid): (u32, u32), e: Errno) -> Error {
    if e == Errno::EPERM {
        Error::Invalid(format!(
            "cannot give {} the owner {uid}:{gid}: only root may give files away; run the \
             build as root, or pass --chown with your own ids",
            path.display()
        ))
    } else {
        Error::io(format!("chown {uid}:{gid}"), path, e.into())
    }
}

/// The path of an archive entry, relative to where it is unpacked: `None`
/// for the directory itself (`.` or `./`), an error (the reason) for an
/// absolute path or one with `..` in it.
fn archive_path(raw: &[u8]) -> std::result::Result<Option<PathBuf>, String> {
    // BEGIN SOLUTION 05.8
    if raw.is_empty() {
        return Err("has an empty path".into());
    }
    if raw.starts_with(b"/") {
        return Err("has an absolute path".into());
    }
    let mut rel = PathBuf::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("has `..` in its path, which would climb out".into()),
            part => rel.push(OsStr::from_bytes(part)),
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
    // END SOLUTION
}

/// The target of a symbolic link entry.
fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> Option<PathBuf> {
    let raw = entry.link_name_bytes()?;
    (!raw.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(&raw)))
}

/// Whether a relative link `target`, stored at `link` (relative to the
/// directory being unpacked), points above that directory. Absolute
/// targets do not count: inside the container they start from its `/`.
fn climbs_out(link: &Path, target: &Path) -> bool {
    // BEGIN SOLUTION 05.8
    if target.is_absolute() {
        return false;
    }
    let mut depth: usize = link.components().count().saturating_sub(1);
    for part in target.components() {
        match part {
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
    // END SOLUTION
}

/// How a file's first bytes say it is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    /// A format berth cannot decompress, by name.
    Unsupported(&'static str),
}

fn compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Unsupported("bzip2")
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Unsupported("xz")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Unsupported("zstd")
    } else {
        Compression::None
    }
}

/// Whether a 512-byte block is a tar header: not all zeros, and its
/// checksum (the sum of its bytes, counting the checksum field as spaces)
/// is right. This is the test Go's tar reader, and so Docker, applies.
fn is_tar_header(block: &[u8]) -> bool {
    // BEGIN SOLUTION 05.8
    if block.len() < 512 || block.iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .map(|&b| b as char)
        .filter(|c| c.is_digit(8))
        .collect();
    let Ok(stored) = i64::from_str_radix(&text, 8) else {
        return false;
    };
    let spaces = 8 * i64::from(b' ');
    let outside = |(i, _): &(usize, &u8)| !(148..156).contains(i);
    let unsigned: i64 = block[..512]
        .iter()
        .enumerate()
        .filter(outside)
        .map(|(_, &b)| i64::from(b))
        .sum::<i64>()
        + spaces;
    let signed: i64 = block[..512]
        .iter()
        .enumerate()
        .filter(outside)
        .map(|(_, &b)| i64::from(b as i8))
        .sum::<i64>()
        + spaces;
    stored == unsigned || stored == signed
    // END SOLUTION
}

/// For ADD: if the context file `real` is a tar archive we can unpack, a
/// reader of the uncompressed tar; `None` if it is some other file, to be
/// copied as it is.
fn archive(context: &Context, src: &str, real: &Path) -> Result<Option<Box<dyn Read>>> {
    let path = context.dir.join(real);
    let mut head = Vec::with_capacity(512);
    context
        .read(real)?
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| Error::io("read", &path, e))?;
    let open = |compression| -> Result<Box<dyn Read>> {
        let file = context.read(real)?;
        Ok(match compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
            _ => Box::new(file),
        })
    };
    let compression = compression(&head);
    let first_block = match compression {
        Compression::Unsupported(format) => {
            return Err(Error::Invalid(format!(
                "ADD {src}: the file is {format}-compressed, and berth can unpack only plain \
                 and gzip tar archives: decompress it to a .tar (or recompress it with gzip) \
                 and ADD that, or use COPY to copy it still compressed"
            )));
        }
        Compression::None => head,
        Compression::Gzip => {
            let mut block = Vec::with_capacity(512);
            // A gzip file that is not valid is not an archive: copy it.
            if open(compression)?
                .take(512)
                .read_to_end(&mut block)
                .is_err()
            {
                return Ok(None);
            }
            block
        }
    };
    if is_tar_header(&first_block) {
        open(compression).map(Some)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented examples and the corners of Docker's matcher, each a
    /// `.dockerignore` text, a path, and whether the path is left out.
    #[test]
    fn dockerignore_table() {
        let cases: &[(&str, &str, bool)] = &[
            // Plain names match at the top only, and everything under them.
            ("foo", "foo", true),
            ("foo", "foo/bar/baz", true),
            ("foo", "a/foo", false),
            ("foo/bar", "foo/bar", true),
            ("/foo/bar", "foo/bar", true),
            ("./foo/../foo/bar/", "foo/bar", true),
            ("foo/bar", "foo", false),
            // The documented `*/temp*`, `*/*/temp*` and `temp?`.
            ("*/temp*", "somedir/temporary.txt", true),
            ("*/temp*", "somedir/temp", true),
            ("*/temp*", "temp", false),
            ("*/temp*", "a/b/temp", false),
            ("*/*/temp*", "somedir/subdir/temporary.txt", true),
            ("*/*/temp*", "somedir/temporary.txt", false),
            ("temp?", "tempa", true),
            ("temp?", "tempb/inside", true),
            ("temp?", "temp", false),
            ("temp?", "tempab", false),
            // `*` and `?` stop at `/`; `*` matches dot files.
            ("*.txt", "a.txt", true),
            ("*.txt", "dir/a.txt", false),
            ("*", ".hidden", true),
            ("a?c", "a/c", false),
            // `**` spans directories, none included.
            ("**/*.go", "main.go", true),
            ("**/*.go", "a/b/c.go", true),
            ("**/*.go", "a/b/c.rs", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "ab", false),
            ("a/**", "a/x/y", true),
            ("a/**", "a", false),
            ("**", "anything/at/all", true),
            ("**/node_modules", "node_modules/x", true),
            ("**/node_modules", "web/node_modules/y", true),
            // Docker's suffix shortcut for `**` then plain text.
            ("**.log", "a/b.log", true),
            ("**.log", "x.log", true),
            // Character classes and escapes.
            ("[a-c].txt", "b.txt", true),
            ("[a-c].txt", "d.txt", false),
            ("[^a-c].txt", "d.txt", true),
            ("[^a-c].txt", "a.txt", false),
            ("[!a].txt", "!.txt", true),
            ("file\\*", "file*", true),
            ("file\\*", "filex", false),
            ("f[\\]]", "f]", true),
            // Regex characters are plain.
            ("a.b", "axb", false),
            ("a+(b)", "a+(b)", true),
            // Comments only in column 1; spaces trimmed.
            ("# foo", "# foo", false),
            ("# foo\nfoo", "foo", true),
            (" # foo", "# foo", true),
            ("   foo   ", "foo", true),
            ("\u{feff}foo", "foo", true),
            // Exceptions: the last matching line decides.
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGES.md", true),
            (
                "*.md\n!README*.md\nREADME-secret.md",
                "README-secret.md",
                true,
            ),
            (
                "*.md\n!README*.md\nREADME-secret.md",
                "README-public.md",
                false,
            ),
            (
                "*.md\nREADME-secret.md\n!README*.md",
                "README-secret.md",
                false,
            ),
            ("*\n!src", "src/main.rs", false),
            ("*\n!src", "Cargo.toml", true),
            ("docs\n!docs/keep.md", "docs/keep.md", false),
            ("docs\n!docs/keep.md", "docs/other.md", true),
            ("! foo\nfoo\n!foo", "foo", false),
            // Things that never match.
            ("/", "x", false),
            ("", "x", false),
        ];
        for &(text, path, excluded) in cases {
            let ignore = Ignore::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(
                ignore.excluded(Path::new(path)),
                excluded,
                ".dockerignore {text:?}, path {path:?}"
            );
        }
    }

    #[test]
    fn bad_patterns_say_where() {
        let cases = [
            ("ok\n  [abc\n", 2, 3, "unclosed"),
            ("x\\", 1, 2, "escapes nothing"),
            ("!", 1, 2, "`!` alone"),
            ("[z-a]", 1, 1, "backwards"),
            ("[]", 1, 2, "out of place"),
            ("a[-b]", 1, 3, "out of place"),
        ];
        for (text, line, column, says) in cases {
            match Ignore::parse(text) {
                Err(Error::Syntax {
                    file,
                    line: l,
                    column: c,
                    message,
                }) => {
                    assert_eq!(
                        (file.as_str(), l, c),
                        (DOCKERIGNORE, line, column),
                        "{text:?}"
                    );
                    assert!(message.contains(says), "{text:?}: {message}");
                }
                other => panic!("{text:?}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn ignored_directories_are_entered_only_for_a_possible_exception() {
        let ignore = Ignore::parse("*\n!src\n!docs/guide/*.md\n").unwrap();
        let enter = |dir: &str| ignore.could_reinclude_under(Path::new(dir));
        assert!(!enter("target"));
        assert!(enter("docs"));
        assert!(enter("docs/guide"));
        assert!(!enter("docs/api"));
        assert!(
            !Ignore::parse("*")
                .unwrap()
                .could_reinclude_under(Path::new("x"))
        );
        assert!(
            Ignore::parse("*\n!**/keep")
                .unwrap()
                .could_reinclude_under(Path::new("x/y"))
        );
    }

    #[test]
    fn copy_sources_use_go_match_without_double_star() {
        let glob = Glob::compile("a**b", false).unwrap();
        assert!(glob.matches("axxb"));
        assert!(has_wildcards("*.txt") && has_wildcards("a[bc]") && has_wildcards("a?"));
        assert!(!has_wildcards("plain.txt") && !has_wildcards("file\\*.txt"));
        assert_eq!(unescape("dir\\[1\\]"), "dir[1]");
    }

    #[test]
    fn paths_are_cleaned_like_go() {
        for (raw, cleaned) in [
            ("", "."),
            ("a//b/./c/", "a/b/c"),
            ("a/../..", ".."),
            ("/../x", "/x"),
            ("../a/../b", "../b"),
            ("/", "/"),
        ] {
            assert_eq!(clean(raw), cleaned, "{raw:?}");
        }
    }

    #[test]
    fn sources_stay_in_the_context() {
        assert_eq!(source_parts("/app/x").unwrap(), ["app", "x"]);
        assert_eq!(source_parts("a/../b").unwrap(), ["b"]);
        assert!(source_parts(".").unwrap().is_empty());
        assert!(source_parts("/").unwrap().is_empty());
        for bad in ["..", "../x", "a/../../x", "/../x"] {
            let e = source_parts(bad).unwrap_err().to_string();
            assert!(e.contains("outside the build context"), "{bad}: {e}");
        }
    }

    #[test]
    fn destinations_are_absolute_and_clamped() {
        let cases = [
            ("x", "/app", "/app/x", false),
            ("x/", "/app", "/app/x", true),
            ("/x", "/app", "/x", false),
            (".", "/app", "/app", false),
            ("./", "", "/", true),
            ("../../../etc/", "/app", "/etc", true),
        ];
        for (dest, workdir, path, is_dir) in cases {
            assert_eq!(
                image_dest(dest, workdir).unwrap(),
                (PathBuf::from(path), is_dir),
                "{dest} in {workdir}"
            );
        }
        assert!(image_dest("", "/").is_err());
    }

    #[test]
    fn archive_entries_must_stay_below() {
        assert_eq!(archive_path(b"./a/b").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(archive_path(b"./").unwrap(), None);
        for bad in [&b"/etc/passwd"[..], b"../x", b"a/../../x", b"a/.."] {
            assert!(
                archive_path(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(climbs_out(Path::new("l"), Path::new("../x")));
        assert!(climbs_out(Path::new("a/l"), Path::new("../../x")));
        assert!(climbs_out(Path::new("a/l"), Path::new("b/../../../x")));
        assert!(!climbs_out(Path::new("a/l"), Path::new("../x")));
        assert!(!climbs_out(Path::new("l"), Path::new("/etc/passwd")));
    }

    #[test]
    fn chmod_is_octal() {
        assert_eq!(parse_chmod("755").unwrap(), 0o755);
        assert_eq!(parse_chmod("0644").unwrap(), 0o644);
        assert_eq!(parse_chmod("4755").unwrap(), 0o4755);
        for bad in ["", "u+x", "999", "77777", "-1"] {
            assert!(
                parse_chmod(bad).unwrap_err().to_string().contains("octal"),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_are_read_from_passwd_text() {
        let passwd = "# users\nroot:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
        assert_eq!(id_in(passwd, "app"), Some(1000));
        assert_eq!(id_in(passwd, "root"), Some(0));
        assert_eq!(id_in(passwd, "ap"), None);
        assert_eq!(id_in("staff:x:50:app,bob\n", "staff"), Some(50));
    }

    #[test]
    fn archives_are_recognised_by_content() {
        assert_eq!(compression(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(compression(b"BZh91AY"), Compression::Unsupported("bzip2"));
        assert_eq!(
            compression(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Unsupported("xz")
        );
        assert_eq!(compression(b"hello"), Compression::None);

        let mut header = tar::Header::new_gnu();
        header.set_path("a.txt").unwrap();
        header.set_size(0);
        header.set_cksum();
        assert!(is_tar_header(header.as_bytes()));
        let mut damaged = header.as_bytes().to_vec();
        damaged[0] = b'b';
        assert!(!is_tar_header(&damaged));
        assert!(!is_tar_header(&[0; 512]));
        assert!(!is_tar_header(&[b'x'; 512]));
    }
}
