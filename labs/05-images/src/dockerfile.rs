//! Step 05.6: reading a Dockerfile.
//!
//! `berth build`, like `docker build`, follows a Dockerfile: a text file of
//! instructions, one per line. `FROM` picks the image to start from, `RUN`
//! runs a command in it, `COPY` adds files, `ENV` sets variables, `CMD` says
//! what the finished image runs. This module turns that text into data: build
//! stages, each a list of typed [`Instruction`]s. A mistake comes back as
//! `Dockerfile:LINE:COLUMN: message`, pointing at the word that is wrong, so
//! the reader can fix it without guessing. Nothing here runs anything: the
//! build engine walks the result.
//!
//! The rules are Docker's (BuildKit's, today's `docker build`):
//!
//! - **Lines.** An instruction is a keyword, in any case, and its arguments.
//!   A line that ends with the escape character (`\`) goes on on the next
//!   line. Inside such a continued instruction, comment lines and blank lines
//!   are skipped, so a long `RUN` can carry comments between its lines. A
//!   comment is a line whose first non-blank character is `#`; a `#` anywhere
//!   else is text, so `RUN echo hi # there` gives the shell `# there`.
//! - **Parser directives.** Comments of the form `# name=value` at the very
//!   top change how the rest is read. `escape` sets the escape character to
//!   `\` or `` ` ``; the backtick suits Windows paths such as `C:\app\`, where
//!   a backslash at the end of a line would otherwise continue it. `syntax`
//!   names a BuildKit frontend image and `check` configures its linter: berth
//!   notes them and goes on. The first line that is not a directive (another
//!   comment, a blank line, an instruction) ends the directives; below it, a
//!   `# escape=` line is just a comment. An unknown directive is a comment
//!   too, and so also ends them.
//! - **Flags.** Words starting with `--` right after the keyword are flags:
//!   `COPY --from=build /app /app`. Each instruction has its own, and an
//!   unknown one is an error, not something silently ignored.
//! - **Two forms.** `RUN`, `CMD`, `ENTRYPOINT` and `HEALTHCHECK CMD` take a
//!   *shell form*, `CMD echo $HOME`, one string handed to `/bin/sh -c`, or an
//!   *exec form*, a JSON array of strings, `CMD ["echo", "hi"]`, run as it is
//!   without a shell. Text that starts with `[` but is not valid JSON is shell
//!   form, as in Docker: `CMD ['echo', 'hi']` (single quotes are not JSON)
//!   quietly becomes a shell command. `COPY`, `ADD` and `VOLUME` accept the
//!   JSON form for paths with spaces; `SHELL` accepts nothing else.
//! - **Variables.** Most instructions (see [`Keyword::substitutes`]) replace
//!   `$NAME`, `${NAME}` and `${NAME:-default}` with ARG and ENV values, and
//!   treat quotes and escapes as a shell would. The values depend on where
//!   the build has got to, so the parser keeps every argument as a [`Word`]:
//!   the raw text and where it came from. The build engine calls
//!   [`Word::expand`] (or [`expand`]) with its variables at that point. `RUN`,
//!   `CMD` and `ENTRYPOINT` are left alone: their own shell expands them when
//!   it runs. The parser still tries every expansion once with dummy values,
//!   so an unclosed `${` is reported before the build starts.
//! - **Stages.** `FROM` starts a stage, and `FROM image AS name` names it,
//!   for `COPY --from=name` and `berth build --target name`. An `ARG` before
//!   the first `FROM` is global: it can be used in `FROM` lines. Nothing else
//!   may come before the first `FROM`.
//!
//! Left out: heredocs (`RUN <<EOF`), which are refused with an error that
//! says so, and some newer flags (`RUN --security`, `ADD --checksum`,
//! `COPY --parents` and `--exclude`), which are reported as unknown flags.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use crate::error::{Error, Result};

/// The escape character when no `# escape=` directive says otherwise.
pub const DEFAULT_ESCAPE: char = '\\';

/// A syntax error at `pos` in `file`.
fn syntax(file: &str, pos: Pos, message: impl Into<String>) -> Error {
    Error::Syntax {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        message: message.into(),
    }
}

/// A place in a Dockerfile: a line and a column, both counted from 1.
/// Columns count characters, so a tab or an `é` is one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl Pos {
    /// The place `chars` characters further right on the same line.
    pub fn right(self, chars: usize) -> Pos {
        Pos {
            line: self.line,
            column: self.column + chars,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One argument as written in the Dockerfile, before variables are expanded:
/// `$HOME/app`, `"a b"`, `--from`'s `build`. It remembers where it came
/// from, so a mistake found later (an unclosed `${`, a missing file) can
/// still point at the right line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The text, quotes and escapes included (for a JSON string: decoded).
    pub text: String,
    /// Where the first character is.
    pub pos: Pos,
    /// Where the text jumps to another line: (character offset, position of
    /// that character). Empty unless a continuation cuts the word in two.
    /// For a JSON string, offsets are counted after the opening quote.
    breaks: Vec<(usize, Pos)>,
}

impl Word {
    /// A word whose characters all sit on one line, starting at `pos`.
    pub fn new(text: impl Into<String>, pos: Pos) -> Word {
        Word {
            text: text.into(),
            pos,
            breaks: Vec::new(),
        }
    }

    /// Where the character at `offset` (counted in characters) is.
    pub fn pos_at(&self, offset: usize) -> Pos {
        match self.breaks.iter().rev().find(|(at, _)| *at <= offset) {
            Some(&(at, pos)) => pos.right(offset - at),
            None => self.pos.right(offset),
        }
    }

    /// The word with its variables replaced, using `lookup` for their values
    /// (see [`expand`]). A mistake is reported at its place in `file`.
    pub fn expand(
        &self,
        file: &str,
        lookup: impl Fn(&str) -> Option<String>,
        escape: char,
    ) -> Result<String> {
        expand(&self.text, lookup, escape)
            .map_err(|e| syntax(file, self.pos_at(e.offset), e.message))
    }

    /// An error about this word, for problems found after parsing ("COPY
    /// failed: no such file").
    pub fn error(&self, file: &str, message: impl Into<String>) -> Error {
        syntax(file, self.pos, message)
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The instruction keywords Docker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `ADD`: copy files, URLs or archives into the image.
    Add,
    /// `ARG`: declare a build-time variable.
    Arg,
    /// `CMD`: the default command, or ENTRYPOINT's default arguments.
    Cmd,
    /// `COPY`: copy files from the build context or another stage.
    Copy,
    /// `ENTRYPOINT`: the program the container runs.
    Entrypoint,
    /// `ENV`: set environment variables in the image.
    Env,
    /// `EXPOSE`: record the ports the program listens on.
    Expose,
    /// `FROM`: start a stage from a base image.
    From,
    /// `HEALTHCHECK`: how to tell whether the container works.
    Healthcheck,
    /// `LABEL`: add metadata.
    Label,
    /// `MAINTAINER`: the deprecated author field.
    Maintainer,
    /// `ONBUILD`: an instruction to run when another build uses this image.
    Onbuild,
    /// `RUN`: run a command during the build.
    Run,
    /// `SHELL`: the shell for shell forms.
    Shell,
    /// `STOPSIGNAL`: the signal `stop` sends.
    StopSignal,
    /// `USER`: the user the next instructions and the container run as.
    User,
    /// `VOLUME`: directories a container keeps in volumes.
    Volume,
    /// `WORKDIR`: the working directory.
    Workdir,
}

impl Keyword {
    /// Every keyword, in alphabetical order.
    pub const ALL: [Keyword; 18] = [
        Keyword::Add,
        Keyword::Arg,
        Keyword::Cmd,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Env,
        Keyword::Expose,
        Keyword::From,
        Keyword::Healthcheck,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Onbuild,
        Keyword::Run,
        Keyword::Shell,
        Keyword::StopSignal,
        Keyword::User,
        Keyword::Volume,
        Keyword::Workdir,
    ];

    /// The keyword as conventionally written, in capitals.
    pub fn name(self) -> &'static str {
        match self {
            Keyword::Add => "ADD",
            Keyword::Arg => "ARG",
            Keyword::Cmd => "CMD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Env => "ENV",
            Keyword::Expose => "EXPOSE",
            Keyword::From => "FROM",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Run => "RUN",
            Keyword::Shell => "SHELL",
            Keyword::StopSignal => "STOPSIGNAL",
            Keyword::User => "USER",
            Keyword::Volume => "VOLUME",
            Keyword::Workdir => "WORKDIR",
        }
    }

    /// The keyword `word` names, in any case: `run`, `Run` and `RUN` are one.
    pub fn parse(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(word))
    }

    /// True when the build engine replaces variables in this instruction's
    /// arguments: Docker's list (ADD, COPY, ENV, EXPOSE, FROM, LABEL,
    /// STOPSIGNAL, USER, VOLUME, WORKDIR) plus ARG, whose default values
    /// BuildKit expands too (`ARG IMAGE=$REGISTRY/app`). RUN, CMD and
    /// ENTRYPOINT are not on it: their shell expands variables when the
    /// command runs. ONBUILD stores its instruction unexpanded; the build
    /// that triggers it expands it then.
    pub fn substitutes(self) -> bool {
        // BEGIN SOLUTION 05.6
        matches!(
            self,
            Keyword::Add
                | Keyword::Arg
                | Keyword::Copy
                | Keyword::Env
                | Keyword::Expose
                | Keyword::From
                | Keyword::Label
                | Keyword::StopSignal
                | Keyword::User
                | Keyword::Volume
                | Keyword::Workdir
        )
        // END SOLUTION
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a command is written: for the shell, or as a list of arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// `CMD echo $HOME`: one string for the shell (`/bin/sh -c`), kept as
    /// written, continuations joined.
    Shell(String),
    /// `CMD ["echo", "hi"]`: the program and its arguments, run without a
    /// shell.
    Exec(Vec<String>),
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The image, or an earlier stage's name; may use global ARGs.
    pub image: Word,
    /// `--platform`, as in `linux/arm64`.
    pub platform: Option<Word>,
    /// The stage name after `AS`, as written.
    pub name: Option<Word>,
}

/// `RUN [--mount=...] [--network=...] COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: Form,
    /// Each `--mount` (a cache, a secret, a bind from another stage), kept as
    /// written for the build engine to interpret.
    pub mounts: Vec<Word>,
    /// `--network`: `default`, `none` or `host`.
    pub network: Option<Word>,
}

/// One `NAME=VALUE` of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The name, before expansion.
    pub key: Word,
    /// The value, before expansion (quotes still in it).
    pub value: Word,
}

/// One name of an ARG, with its default value if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDef {
    /// The variable's name.
    pub name: Word,
    /// `ARG NAME=default`: used when `--build-arg` does not set it.
    pub default: Option<Word>,
}

/// `COPY` or `ADD`: sources, a destination and the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// One or more sources, relative to the context (or the `--from` stage).
    pub sources: Vec<Word>,
    /// Where they go in the image; a directory if it ends with `/`.
    pub dest: Word,
    /// `--from`: a stage name, a stage index or an image (COPY only).
    pub from: Option<Word>,
    /// `--chown=USER[:GROUP]`.
    pub chown: Option<Word>,
    /// `--chmod=MODE`.
    pub chmod: Option<Word>,
    /// `--link`: copy into a layer of its own, independent of the ones below.
    pub link: bool,
}

/// `HEALTHCHECK`: either none, or a command run from time to time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// `HEALTHCHECK NONE`: switch off a check inherited from the base image.
    None,
    /// `HEALTHCHECK [OPTIONS] CMD COMMAND`.
    Check(HealthCheck),
}

/// A health check's command and timing. An option left out keeps Docker's
/// default (30s interval, 30s timeout, 0s start period, 5s start interval,
/// 3 retries), which the engine fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The command; exit status 0 means healthy.
    pub command: Form,
    /// `--interval`: time between checks.
    pub interval: Option<Duration>,
    /// `--timeout`: how long one check may take.
    pub timeout: Option<Duration>,
    /// `--start-period`: time to start up, during which failures don't count.
    pub start_period: Option<Duration>,
    /// `--start-interval`: time between checks during the start period.
    pub start_interval: Option<Duration>,
    /// `--retries`: failures in a row before the container is unhealthy.
    pub retries: Option<u32>,
}

impl Health {
    /// The check as the image config's `Healthcheck.Test` stores it:
    /// `["NONE"]`, `["CMD", program, args...]` for the exec form, or
    /// `["CMD-SHELL", command]` for the shell form.
    pub fn test(&self) -> Vec<String> {
        match self {
            Health::None => vec!["NONE".to_string()],
            Health::Check(check) => match &check.command {
                Form::Exec(args) => std::iter::once("CMD".to_string())
                    .chain(args.iter().cloned())
                    .collect(),
                Form::Shell(command) => vec!["CMD-SHELL".to_string(), command.clone()],
            },
        }
    }
}

/// What an instruction says, by keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `FROM`.
    From(Base),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(Form),
    /// `ENTRYPOINT`.
    Entrypoint(Form),
    /// `SHELL ["executable", "args"...]`.
    Shell(Vec<String>),
    /// `ENV NAME=VALUE...` (or the old `ENV NAME VALUE`).
    Env(Vec<Pair>),
    /// `LABEL NAME=VALUE...` (or the old `LABEL NAME VALUE`).
    Label(Vec<Pair>),
    /// `ARG NAME[=DEFAULT]...`.
    Arg(Vec<ArgDef>),
    /// `EXPOSE PORT[/PROTOCOL]...`; see [`exposed_ports`].
    Expose(Vec<Word>),
    /// `ADD`.
    Add(Box<Transfer>),
    /// `COPY`.
    Copy(Box<Transfer>),
    /// `VOLUME PATH...`.
    Volume(Vec<Word>),
    /// `USER USER[:GROUP]`, as one word.
    User(Word),
    /// `WORKDIR PATH`.
    Workdir(Word),
    /// `STOPSIGNAL SIGNAL`: a name (`SIGTERM`, `TERM`) or a number.
    StopSignal(Word),
    /// `HEALTHCHECK`.
    Healthcheck(Health),
    /// `MAINTAINER NAME`: Docker stores it as the image's author.
    Maintainer(Word),
    /// `ONBUILD INSTRUCTION`: stored in the image, run by builds that use it
    /// as their base.
    Onbuild(Box<Instruction>),
}

/// One instruction: where it is, its text, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Where its keyword is.
    pub pos: Pos,
    /// The last line it takes up (after continuations).
    pub end_line: usize,
    /// The instruction as one line, continuations joined, as `docker build`
    /// shows it in `Step 3/7 : RUN make`.
    pub original: String,
    /// What it says.
    pub kind: Kind,
}

impl Instruction {
    /// The instruction's keyword.
    pub fn keyword(&self) -> Keyword {
        match &self.kind {
            Kind::From(_) => Keyword::From,
            Kind::Run(_) => Keyword::Run,
            Kind::Cmd(_) => Keyword::Cmd,
            Kind::Entrypoint(_) => Keyword::Entrypoint,
            Kind::Shell(_) => Keyword::Shell,
            Kind::Env(_) => Keyword::Env,
            Kind::Label(_) => Keyword::Label,
            Kind::Arg(_) => Keyword::Arg,
            Kind::Expose(_) => Keyword::Expose,
            Kind::Add(_) => Keyword::Add,
            Kind::Copy(_) => Keyword::Copy,
            Kind::Volume(_) => Keyword::Volume,
            Kind::User(_) => Keyword::User,
            Kind::Workdir(_) => Keyword::Workdir,
            Kind::StopSignal(_) => Keyword::StopSignal,
            Kind::Healthcheck(_) => Keyword::Healthcheck,
            Kind::Maintainer(_) => Keyword::Maintainer,
            Kind::Onbuild(_) => Keyword::Onbuild,
        }
    }

    /// An error about this instruction as a whole, at its keyword.
    pub fn error(&self, file: &str, message: impl Into<String>) -> Error {
        syntax(file, self.pos, message)
    }
}

/// A build stage: a `FROM` and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Its place among the stages, from 0 (`COPY --from=0`).
    pub index: usize,
    /// The name after `AS`, in lower case as Docker compares them.
    pub name: Option<String>,
    /// The `FROM` instruction.
    pub from: Instruction,
    /// The instructions after `FROM`, in order.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The stage's `FROM`: base image, platform and name.
    pub fn base(&self) -> &Base {
        match &self.from.kind {
            Kind::From(base) => base,
            _ => unreachable!("a stage always starts with FROM"),
        }
    }
}

/// Something legal but doubtful, which `docker build` also warns about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where.
    pub pos: Pos,
    /// What, and what to write instead.
    pub message: String,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The name errors use, as the caller gave it.
    pub file: String,
    /// The escape character (`# escape=`), for [`Word::expand`].
    pub escape: char,
    /// The `# syntax=` directive, which berth ignores.
    pub syntax: Option<String>,
    /// The ARG instructions before the first FROM, usable in FROM lines.
    pub global_args: Vec<Instruction>,
    /// The stages, in order; there is at least one.
    pub stages: Vec<Stage>,
    /// Warnings to show before building.
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// Parses the text of a Dockerfile. `file` is the name errors show,
    /// such as `Dockerfile` or `app/Dockerfile.dev`.
    pub fn parse(file: &str, text: &str) -> Result<Dockerfile> {
        let mut parser = Parser {
            file,
            escape: DEFAULT_ESCAPE,
            syntax: None,
            warnings: Vec::new(),
        };
        let lines = parser.lines(text)?;
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let instruction = parser.instruction(line, 0, i > 0)?;
            if let Kind::From(base) = &instruction.kind {
                let name = base.name.as_ref().map(|w| w.text.to_ascii_lowercase());
                if let (Some(word), Some(lower)) = (&base.name, &name)
                    && let Some(first) = stages.iter().find(|s| s.name.as_ref() == Some(lower))
                {
                    return Err(word.error(
                        file,
                        format!(
                            "duplicate stage name {lower:?}: the stage on line {} already has \
                             it; give each stage its own name",
                            first.from.pos.line
                        ),
                    ));
                }
                stages.push(Stage {
                    index: stages.len(),
                    name,
                    from: instruction,
                    instructions: Vec::new(),
                });
                continue;
            }
            match stages.last_mut() {
                Some(stage) => stage.instructions.push(instruction),
                None if instruction.keyword() == Keyword::Arg => global_args.push(instruction),
                None => {
                    return Err(instruction.error(
                        file,
                        format!(
                            "{} comes before the first FROM: every instruction except ARG \
                             belongs to a build stage, and FROM starts one",
                            instruction.keyword()
                        ),
                    ));
                }
            }
        }
        if stages.is_empty() {
            let last = Pos {
                line: text.lines().count().max(1),
                column: 1,
            };
            let message = if global_args.is_empty() {
                "the Dockerfile has no instructions: start it with FROM IMAGE, as in FROM alpine"
            } else {
                "the Dockerfile has no FROM: ARGs alone build nothing; add FROM IMAGE after them"
            };
            return Err(syntax(file, last, message));
        }
        Ok(Dockerfile {
            file: file.to_string(),
            escape: parser.escape,
            syntax: parser.syntax,
            global_args,
            stages,
            warnings: parser.warnings,
        })
    }

    /// The stage called `name` (in any case), or else the one at that index:
    /// how `--target` and `COPY --from` find a stage.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }

    /// The stage `berth build` builds: the one `--target` names, or else the
    /// last.
    pub fn target(&self, target: Option<&str>) -> Result<&Stage> {
        let Some(target) = target else {
            return Ok(self.stages.last().expect("parse makes at least one stage"));
        };
        self.stage(target).ok_or_else(|| {
            let names: Vec<String> = self
                .stages
                .iter()
                .map(|s| s.name.clone().unwrap_or_else(|| s.index.to_string()))
                .collect();
            Error::Invalid(format!(
                "target stage {target:?} not found in {}: its stages are {}",
                self.file,
                names.join(", ")
            ))
        })
    }

    /// Every instruction in file order: global ARGs, then each stage's FROM
    /// and the instructions after it. Counting them gives the "/7" of
    /// `Step 3/7`.
    pub fn instructions(&self) -> impl Iterator<Item = &Instruction> {
        self.global_args.iter().chain(
            self.stages
                .iter()
                .flat_map(|s| std::iter::once(&s.from).chain(&s.instructions)),
        )
    }
}

/// The characters of one instruction, its continuation lines joined, and a
/// map back to the file: where each joined piece started.
struct Line {
    /// The joined text, continuation characters removed.
    text: String,
    /// (byte offset in `text`, position in the file) of each piece.
    pieces: Vec<(usize, Pos)>,
    /// The last line it took.
    end_line: usize,
}

impl Line {
    /// Where the character at byte `offset` of the text is in the file.
    fn pos(&self, offset: usize) -> Pos {
        let (start, pos) = self
            .pieces
            .iter()
            .rev()
            .find(|(at, _)| *at <= offset)
            .copied()
            .unwrap_or(self.pieces[0]);
        pos.right(self.text[start..offset].chars().count())
    }

    /// The text in `range` as a word that knows its place.
    fn word(&self, range: Range<usize>) -> Word {
        let breaks = self
            .pieces
            .iter()
            .filter(|(at, _)| *at > range.start && *at < range.end)
            .map(|&(at, pos)| (self.text[range.start..at].chars().count(), pos))
            .collect();
        Word {
            text: self.text[range.clone()].to_string(),
            pos: self.pos(range.start),
            breaks,
        }
    }

    /// A decoded JSON string whose opening quote is at byte `quote`.
    fn json_word(&self, text: String, quote: usize) -> Word {
        Word {
            text,
            pos: self.pos(quote),
            breaks: vec![(0, self.pos(quote + 1))],
        }
    }
}

/// The arguments of one instruction: a byte range of its [`Line`], after the
/// keyword and flags, without the blanks around it.
#[derive(Clone, Copy)]
struct Args<'l> {
    line: &'l Line,
    start: usize,
    end: usize,
}

impl<'l> Args<'l> {
    /// The arguments on `line` from byte `start` to the end of the text.
    fn after(line: &'l Line, start: usize) -> Args<'l> {
        let start = skip_blanks(&line.text, start);
        let end = line.text.trim_end().len().max(start);
        Args { line, start, end }
    }

    fn text(&self) -> &'l str {
        &self.line.text[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// All of it as one word (USER, WORKDIR, STOPSIGNAL).
    fn whole(&self) -> Word {
        self.line.word(self.start..self.end)
    }

    /// Where a missing argument belongs: just after the last thing written.
    fn missing(&self) -> Pos {
        let written = self.line.text[..self.end].trim_end().len();
        self.line.pos(written)
    }

    /// The words between blanks, quotes not considered (FROM, EXPOSE, COPY).
    fn split(&self) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut at = self.start;
        while at < self.end {
            let end = self.line.text[at..self.end]
                .find(char::is_whitespace)
                .map_or(self.end, |i| at + i);
            out.push(at..end);
            at = skip_blanks(&self.line.text[..self.end], end);
        }
        out
    }

    /// The words between blanks, where a quoted or escaped blank does not
    /// split (ENV, LABEL, ARG). Quotes and escapes stay in the words; the
    /// expansion removes them.
    fn words(&self, escape: char) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut at = self.start;
        while at < self.end {
            let end = word_end(&self.line.text[..self.end], at, escape);
            out.push(at..end);
            at = skip_blanks(&self.line.text[..self.end], end);
        }
        out
    }
}

/// The first byte at or after `from` that is not a blank.
fn skip_blanks(text: &str, from: usize) -> usize {
    text[from..]
        .find(|c: char| !c.is_whitespace())
        .map_or(text.len(), |i| from + i)
}

/// Where the word starting at byte `from` ends: at the first blank that is
/// neither quoted nor escaped. Inside single quotes the escape character is
/// an ordinary one, as in a shell.
fn word_end(text: &str, from: usize, escape: char) -> usize {
    let mut quote = None;
    let mut chars = text[from..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(q) if c == escape && q != '\'' => {
                chars.next();
            }
            Some(_) => {}
            None if c.is_whitespace() => return from + i,
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == escape => {
                chars.next();
            }
            None => {}
        }
    }
    text.len()
}

/// A `--name[=value]` flag found after a keyword.
struct Flag {
    name: String,
    /// The text after `=`; `None` when there is no `=`.
    value: Option<Word>,
    pos: Pos,
}

/// How a flag takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    /// `--from=build`, at most once.
    Value,
    /// `--link`, `--link=true` or `--link=false`.
    Bool,
    /// `--mount=...`, any number of times.
    List,
}

/// The flags each instruction accepts.
fn flag_spec(keyword: Keyword) -> &'static [(&'static str, FlagKind)] {
    use FlagKind::{Bool, List, Value};
    match keyword {
        Keyword::From => &[("platform", Value)],
        Keyword::Run => &[("mount", List), ("network", Value)],
        Keyword::Copy => &[
            ("from", Value),
            ("chown", Value),
            ("chmod", Value),
            ("link", Bool),
        ],
        Keyword::Add => &[("chown", Value), ("chmod", Value), ("link", Bool)],
        Keyword::Healthcheck => &[
            ("interval", Value),
            ("timeout", Value),
            ("start-period", Value),
            ("start-interval", Value),
            ("retries", Value),
        ],
        _ => &[],
    }
}

fn flag_value(flags: &[Flag], name: &str) -> Option<Word> {
    flags
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.value.clone())
}

fn flag_list(flags: &[Flag], name: &str) -> Vec<Word> {
    flags
        .iter()
        .filter(|f| f.name == name)
        .filter_map(|f| f.value.clone())
        .collect()
}

fn flag_bool(flags: &[Flag], name: &str) -> bool {
    flags.iter().find(|f| f.name == name).is_some_and(|f| {
        f.value
            .as_ref()
            .is_none_or(|v| v.text.eq_ignore_ascii_case("true"))
    })
}

/// The result of reading text as a JSON array.
enum Json {
    /// It does not start with `[`.
    Absent,
    /// It starts with `[` but is not valid JSON: at byte `offset`, `message`.
    Invalid { offset: usize, message: String },
    /// Valid JSON, but the element at byte `offset` is `found`, not a string.
    NotString { offset: usize, found: &'static str },
    /// An array of strings, each with the byte offset of its opening quote.
    Strings(Vec<(String, usize)>),
}

/// Reads `text` as a JSON array of strings. serde_json checks it; a small
/// scan finds where each element starts, for error positions.
fn json_array(text: &str) -> Json {
    if !text.starts_with('[') {
        return Json::Absent;
    }
    let items = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(other) => {
            return Json::NotString {
                offset: 0,
                found: json_kind(&other),
            };
        }
        Err(e) => {
            // serde_json counts columns in bytes, from 1.
            let mut offset = if e.is_eof() {
                text.len()
            } else {
                e.column().saturating_sub(1).min(text.len())
            };
            while !text.is_char_boundary(offset) {
                offset -= 1;
            }
            let message = e.to_string();
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m)
                .to_string();
            return Json::Invalid { offset, message };
        }
    };
    let starts = json_element_starts(text.as_bytes());
    let mut out = Vec::new();
    for (item, offset) in items.into_iter().zip(starts) {
        match item {
            serde_json::Value::String(s) => out.push((s, offset)),
            other => {
                return Json::NotString {
                    offset,
                    found: json_kind(&other),
                };
            }
        }
    }
    Json::Strings(out)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Where each element of a valid JSON array starts. JSON's punctuation is
/// ASCII, and UTF-8 never reuses ASCII bytes, so bytes are safe to scan.
fn json_element_starts(b: &[u8]) -> Vec<usize> {
    let blank = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let skip_string = |mut i: usize| {
        i += 1;
        while b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i + 1
    };
    let mut starts = Vec::new();
    let mut i = 1;
    loop {
        while blank(b[i]) {
            i += 1;
        }
        if b[i] == b']' {
            return starts;
        }
        starts.push(i);
        match b[i] {
            b'"' => i = skip_string(i),
            b'[' | b'{' => {
                let mut depth = 0;
                loop {
                    match b[i] {
                        b'"' => {
                            i = skip_string(i);
                            continue;
                        }
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {
                while !matches!(b[i], b',' | b']') && !blank(b[i]) {
                    i += 1;
                }
            }
        }
        while blank(b[i]) {
            i += 1;
        }
        if b[i] != b',' {
            return starts;
        }
        i += 1;
    }
}

/// The closest of `names` to `word` (ignoring case), if it is close enough
/// to be a typo: at most two edits, and fewer edits than the word is long.
fn closest<'n>(word: &str, names: &[&'n str]) -> Option<&'n str> {
    // BEGIN SOLUTION 05.6
    let word: Vec<char> = word.to_lowercase().chars().collect();
    names
        .iter()
        .map(|&name| {
            let name_chars: Vec<char> = name.to_lowercase().chars().collect();
            (edit_distance(&word, &name_chars), name)
        })
        .filter(|&(d, _)| d <= 2 && d < word.len())
        .min_by_key(|&(d, _)| d)
        .map(|(_, name)| name)
    // END SOLUTION
}

/// How many single-character edits (insert, delete, replace, or swap two
/// neighbours) turn `a` into `b`.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The parser's state: the file name for errors, and what the directives
/// set.
struct Parser<'f> {
    file: &'f str,
    escape: char,
    syntax: Option<String>,
    warnings: Vec<Warning>,
}

impl Parser<'_> {
    fn error(&self, pos: Pos, message: impl Into<String>) -> Error {
        syntax(self.file, pos, message)
    }

    fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.warnings.push(Warning {
            pos,
            message: message.into(),
        });
    }

    /// Splits the text into instructions: reads the parser directives at
    /// the top, skips comments and blank lines, and joins continued lines.
    fn lines(&mut self, text: &str) -> Result<Vec<Line>> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let physical: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        let mut directives = true;
        let mut seen: Vec<(String, usize)> = Vec::new();
        let mut lines = Vec::new();
        let mut i = 0;
        while i < physical.len() {
            let raw = physical[i];
            i += 1;
            let trimmed = raw.trim_start();
            let start = Pos {
                line: i,
                column: raw[..raw.len() - trimmed.len()].chars().count() + 1,
            };
            if directives {
                directives = self.directive(trimmed, start, &mut seen)?;
            }
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (piece, continued) = self.continuation(trimmed);
            let mut line = Line {
                text: piece.to_string(),
                pieces: vec![(0, start)],
                end_line: i,
            };
            if continued {
                self.join_continued(&mut line, &physical, &mut i);
            }
            // A continuation at the end of the file just ends the instruction,
            // as in Docker.
            if !line.text.trim().is_empty() {
                lines.push(line);
            }
        }
        Ok(lines)
    }

    /// Joins the lines that continue `line`, which ended with the escape
    /// character, onto it: from `physical[*next]` on, advancing `*next` past
    /// every line taken. Comment lines among them are skipped, and blank
    /// lines too (with a warning); the joining stops after a line that does
    /// not end with the escape character, or at the end of the file.
    fn join_continued(&mut self, line: &mut Line, physical: &[&str], next: &mut usize) {
        // BEGIN SOLUTION 05.6
        while *next < physical.len() {
            let raw = physical[*next];
            *next += 1;
            line.end_line = *next;
            let trimmed = raw.trim_start();
            if trimmed.starts_with('#') {
                continue;
            }
            if trimmed.is_empty() {
                self.warn(
                    Pos {
                        line: *next,
                        column: 1,
                    },
                    "empty line inside a continued instruction: Docker says this will \
                     become an error; delete the line, or end the instruction above it",
                );
                continue;
            }
            let (piece, more) = self.continuation(raw);
            line.pieces.push((
                line.text.len(),
                Pos {
                    line: *next,
                    column: 1,
                },
            ));
            line.text.push_str(piece);
            if !more {
                break;
            }
        }
        // END SOLUTION
    }

    /// Removes a continuation character (and the blanks after it) from the
    /// end of a line, and says whether there was one. An escaped escape
    /// character (`\\` at the end) is not a continuation.
    fn continuation<'t>(&self, line: &'t str) -> (&'t str, bool) {
        // BEGIN SOLUTION 05.6
        let trimmed = line.trim_end_matches([' ', '\t']);
        if let Some(before) = trimmed.strip_suffix(self.escape)
            && !before.ends_with(self.escape)
        {
            return (before, true);
        }
        (line, false)
        // END SOLUTION
    }

    /// Reads a possible parser directive, `# name=value`, from a line with
    /// its leading blanks removed (`at` is where it starts). Returns whether
    /// directives may still follow.
    fn directive(
        &mut self,
        trimmed: &str,
        at: Pos,
        seen: &mut Vec<(String, usize)>,
    ) -> Result<bool> {
        let Some(body) = trimmed.strip_prefix('#') else {
            return Ok(false);
        };
        let name_start = trimmed.len() - body.trim_start().len();
        let rest = &trimmed[name_start..];
        let name_len = rest
            .char_indices()
            .take_while(|&(i, c)| c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
            .count();
        let Some(value) = rest[name_len..].trim_start().strip_prefix('=') else {
            return Ok(false);
        };
        let value_start = trimmed.len() - value.trim_start().len();
        let value = value.trim();
        let key = rest[..name_len].to_ascii_lowercase();
        if name_len == 0 || value.is_empty() || !["syntax", "escape", "check"].contains(&&*key) {
            return Ok(false);
        }
        let name_pos = at.right(trimmed[..name_start].chars().count());
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            return Err(self.error(
                name_pos,
                format!(
                    "the {key} directive is given twice (first on line {first}): a parser \
                     directive may appear only once"
                ),
            ));
        }
        seen.push((key.clone(), at.line));
        match key.as_str() {
            "escape" => {
                self.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(self.error(
                            at.right(trimmed[..value_start].chars().count()),
                            format!(
                                "invalid escape character {value:?}: the escape directive \
                                 takes \\ (the default) or `"
                            ),
                        ));
                    }
                }
            }
            "syntax" => self.syntax = Some(value.to_string()),
            _ => {}
        }
        Ok(true)
    }

    /// Parses the instruction that starts at byte `from` of `line` (0, or
    /// after `ONBUILD`). `follows` says whether another instruction came
    /// before it, for the hint about a forgotten continuation.
    fn instruction(&mut self, line: &Line, from: usize, follows: bool) -> Result<Instruction> {
        let text = line.text.as_str();
        let start = skip_blanks(text, from);
        let keyword_end = text[start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |i| start + i);
        let word = &text[start..keyword_end];
        let pos = line.pos(start);
        let Some(keyword) = Keyword::parse(word) else {
            return Err(self.unknown(word, pos, follows));
        };
        let (flags, args_start) = self.flags(line, keyword_end);
        self.check_flags(keyword, &flags)?;
        let args = Args::after(line, args_start);
        let kind = self.kind(keyword, &flags, args)?;
        Ok(Instruction {
            pos,
            end_line: line.end_line,
            original: text[start..].trim_end().to_string(),
            kind,
        })
    }

    fn unknown(&self, word: &str, pos: Pos, follows: bool) -> Error {
        let names = Keyword::ALL.map(Keyword::name);
        let message = if let Some(name) = closest(word, &names) {
            format!("unknown instruction {word} (did you mean {name}?)")
        } else if follows {
            format!(
                "unknown instruction {word}: if this line belongs to the instruction above, \
                 end that line with {}",
                self.escape
            )
        } else {
            format!(
                "unknown instruction {word}: a line starts with an instruction such as FROM, \
                 RUN, COPY or CMD"
            )
        };
        self.error(pos, message)
    }

    /// Reads the `--name[=value]` words after the keyword. Returns them and
    /// where the arguments start. A lone `--` ends the flags.
    fn flags(&self, line: &Line, from: usize) -> (Vec<Flag>, usize) {
        // BEGIN SOLUTION 05.6
        let text = line.text.as_str();
        let mut flags = Vec::new();
        let mut at = skip_blanks(text, from);
        while text[at..].starts_with("--") {
            let end = word_end(text, at, self.escape);
            if end == at + 2 {
                return (flags, end);
            }
            let body = &text[at + 2..end];
            let (name, value) = match body.find('=') {
                Some(eq) => (&body[..eq], Some(line.word(at + 3 + eq..end))),
                None => (body, None),
            };
            flags.push(Flag {
                name: name.to_string(),
                value,
                pos: line.pos(at),
            });
            at = skip_blanks(text, end);
        }
        (flags, at)
        // END SOLUTION
    }

    /// Checks the flags against what `keyword` accepts.
    fn check_flags(&self, keyword: Keyword, flags: &[Flag]) -> Result<()> {
        let spec = flag_spec(keyword);
        let names: Vec<&str> = spec.iter().map(|(n, _)| *n).collect();
        for (i, flag) in flags.iter().enumerate() {
            let name = &flag.name;
            let Some(&(_, kind)) = spec.iter().find(|(n, _)| n == name) else {
                let message = if names.is_empty() {
                    format!("unknown flag --{name}: {keyword} takes no flags")
                } else if let Some(near) = closest(name, &names) {
                    format!("unknown flag --{name} for {keyword} (did you mean --{near}?)")
                } else {
                    let list: Vec<String> = names.iter().map(|n| format!("--{n}")).collect();
                    format!(
                        "unknown flag --{name} for {keyword}: it takes {}",
                        list.join(", ")
                    )
                };
                return Err(self.error(flag.pos, message));
            };
            if kind != FlagKind::List && flags[..i].iter().any(|f| f.name == *name) {
                return Err(self.error(flag.pos, format!("flag --{name} is given twice")));
            }
            match (&flag.value, kind) {
                (None, FlagKind::Value | FlagKind::List) => {
                    return Err(self.error(
                        flag.pos,
                        format!("flag --{name} needs a value: write --{name}=VALUE"),
                    ));
                }
                (Some(v), FlagKind::Value | FlagKind::List) if v.text.is_empty() => {
                    return Err(self.error(
                        flag.pos,
                        format!("flag --{name} has an empty value: write --{name}=VALUE"),
                    ));
                }
                (Some(v), FlagKind::Bool)
                    if !v.text.eq_ignore_ascii_case("true")
                        && !v.text.eq_ignore_ascii_case("false") =>
                {
                    return Err(self.error(
                        v.pos,
                        format!(
                            "flag --{name} takes true or false, not {:?}; --{name} alone \
                             means true",
                            v.text
                        ),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Expands `word` once with every variable set to a dummy value, so a
    /// syntax mistake (an unclosed `${` or quote) is found now, at its place.
    fn check(&self, word: &Word) -> Result<()> {
        word.expand(self.file, |_| Some("x".to_string()), self.escape)
            .map(|_| ())
    }

    /// The word's value if it uses no variables, for checks that need it
    /// (a port number, a signal name).
    fn literal(&self, word: &Word) -> Option<String> {
        if word.text.contains('$') {
            return None;
        }
        expand(&word.text, |_| None, self.escape).ok()
    }

    /// Parses the arguments of one instruction.
    fn kind(&mut self, keyword: Keyword, flags: &[Flag], args: Args) -> Result<Kind> {
        let line = args.line;
        let kind = match keyword {
            Keyword::From => Kind::From(self.base(flags, args)?),
            Keyword::Run => {
                let command = self.command(keyword, args, false)?;
                let network = flag_value(flags, "network");
                if let Some(net) = &network
                    && let Some(value) = self.literal(net)
                    && !["default", "none", "host"].contains(&value.as_str())
                {
                    return Err(self.error(
                        net.pos,
                        format!("RUN --network takes default, none or host, not {value:?}"),
                    ));
                }
                Kind::Run(Run {
                    command,
                    mounts: flag_list(flags, "mount"),
                    network,
                })
            }
            Keyword::Cmd => Kind::Cmd(self.command(keyword, args, true)?),
            Keyword::Entrypoint => Kind::Entrypoint(self.command(keyword, args, true)?),
            Keyword::Shell => Kind::Shell(self.shell(args)?),
            Keyword::Env => Kind::Env(self.pairs(keyword, args)?),
            Keyword::Label => Kind::Label(self.pairs(keyword, args)?),
            Keyword::Arg => Kind::Arg(self.arg(args)?),
            Keyword::Expose => {
                if args.is_empty() {
                    return Err(self.error(
                        args.missing(),
                        "EXPOSE needs at least one port, as in EXPOSE 80 or EXPOSE 53/udp",
                    ));
                }
                let ports: Vec<Word> = args.split().into_iter().map(|r| line.word(r)).collect();
                for port in &ports {
                    if let Some(value) = self.literal(port) {
                        port_range(&value).map_err(|why| self.error(port.pos, why))?;
                    }
                }
                Kind::Expose(ports)
            }
            Keyword::Add => Kind::Add(Box::new(self.transfer(keyword, flags, args)?)),
            Keyword::Copy => Kind::Copy(Box::new(self.transfer(keyword, flags, args)?)),
            Keyword::Volume => {
                let paths = self.list(args)?;
                if paths.is_empty() {
                    return Err(self.error(
                        args.missing(),
                        "VOLUME needs at least one path, as in VOLUME /data",
                    ));
                }
                if let Some(empty) = paths.iter().find(|p| p.text.trim().is_empty()) {
                    return Err(self.error(empty.pos, "a VOLUME path can not be empty"));
                }
                Kind::Volume(paths)
            }
            Keyword::User => Kind::User(self.one(
                args,
                "USER needs a user, as in USER app, USER 1000 or USER app:staff",
            )?),
            Keyword::Workdir => {
                Kind::Workdir(self.one(args, "WORKDIR needs a directory, as in WORKDIR /app")?)
            }
            Keyword::StopSignal => {
                let signal = self.one(
                    args,
                    "STOPSIGNAL needs a signal, as in STOPSIGNAL SIGINT or STOPSIGNAL 2",
                )?;
                if let Some(value) = self.literal(&signal)
                    && !is_signal(&value)
                {
                    return Err(self.error(
                        signal.pos,
                        format!(
                            "unknown signal {value:?}: write a name such as SIGTERM or SIGQUIT, \
                             or a number from 1 to 64"
                        ),
                    ));
                }
                Kind::StopSignal(signal)
            }
            Keyword::Healthcheck => Kind::Healthcheck(self.health(flags, args)?),
            Keyword::Maintainer => {
                let name = self.one(
                    args,
                    "MAINTAINER needs a name, as in MAINTAINER Jane Doe <jane@example.com>",
                )?;
                self.warn(
                    line.pos(args.start),
                    "MAINTAINER is deprecated: write LABEL org.opencontainers.image.authors=\
                     \"NAME\" instead",
                );
                Kind::Maintainer(name)
            }
            Keyword::Onbuild => Kind::Onbuild(Box::new(self.onbuild(args)?)),
        };
        if keyword.substitutes() {
            for word in substituted_words(&kind, flags) {
                self.check(word)?;
            }
        }
        Ok(kind)
    }

    fn base(&self, flags: &[Flag], args: Args) -> Result<Base> {
        let line = args.line;
        let words = args.split();
        let is_as = |r: &Range<usize>| line.text[r.clone()].eq_ignore_ascii_case("as");
        let extra = |r: &Range<usize>| {
            self.error(
                line.pos(r.start),
                "FROM takes an image and, optionally, AS and a stage name: FROM IMAGE [AS NAME]",
            )
        };
        let name = match words.as_slice() {
            [] => {
                return Err(self.error(
                    args.missing(),
                    "FROM needs an image, as in FROM alpine:3.20 or FROM golang:1.23 AS build",
                ));
            }
            [_] => None,
            [_, as_] if is_as(as_) => {
                return Err(self.error(
                    args.missing(),
                    "AS needs a stage name after it: FROM IMAGE AS NAME",
                ));
            }
            [_, as_, name] if is_as(as_) => {
                let word = line.word(name.clone());
                if !valid_stage_name(&word.text) {
                    return Err(self.error(
                        word.pos,
                        format!(
                            "invalid stage name {:?}: a stage name starts with a letter and \
                             has only letters, digits, '-', '_' and '.'",
                            word.text
                        ),
                    ));
                }
                Some(word)
            }
            [_, as_, _, more, ..] if is_as(as_) => return Err(extra(more)),
            [_, more, ..] => return Err(extra(more)),
        };
        Ok(Base {
            image: line.word(words[0].clone()),
            platform: flag_value(flags, "platform"),
            name,
        })
    }

    /// The shell or exec form of RUN, CMD, ENTRYPOINT and HEALTHCHECK CMD.
    /// `empty_ok` allows `CMD []`, which clears an inherited CMD.
    fn command(&self, keyword: Keyword, args: Args, empty_ok: bool) -> Result<Form> {
        let what = match keyword {
            Keyword::Healthcheck => "HEALTHCHECK CMD",
            _ => keyword.name(),
        };
        // BEGIN SOLUTION 05.6
        let form = match json_array(args.text()) {
            Json::Strings(items) => Form::Exec(items.into_iter().map(|(s, _)| s).collect()),
            Json::NotString { offset, found } => {
                return Err(self.not_string(args.line.pos(args.start + offset), found));
            }
            Json::Absent | Json::Invalid { .. } => {
                if args.is_empty() {
                    return Err(self.error(
                        args.missing(),
                        format!(
                            "{what} needs a command, as in {what} [\"executable\", \
                             \"argument\"] or {what} executable argument"
                        ),
                    ));
                }
                if keyword == Keyword::Run {
                    self.no_heredoc(args)?;
                }
                Form::Shell(args.text().to_string())
            }
        };
        if form == Form::Exec(Vec::new()) && !empty_ok {
            return Err(self.error(
                args.line.pos(args.start),
                format!("{what} [] has no command: name at least the program to run"),
            ));
        }
        Ok(form)
        // END SOLUTION
    }

    fn not_string(&self, pos: Pos, found: &str) -> Error {
        self.error(
            pos,
            format!(
                "found {found} where a string belongs: every element of the JSON form is a \
                 string in double quotes"
            ),
        )
    }

    /// Refuses heredocs: a word like `<<EOF`, `<<-EOF` or `3<<EOF`.
    fn no_heredoc(&self, args: Args) -> Result<()> {
        for range in args.words(self.escape) {
            let word = &args.line.text[range.clone()];
            let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
            let Some(name) = rest.strip_prefix("<<") else {
                continue;
            };
            let name = name.strip_prefix('-').unwrap_or(name);
            if !name.is_empty() && !name.contains('<') {
                return Err(self.error(
                    args.line.pos(range.start),
                    format!(
                        "heredocs ({word}) are not supported by berth: put the text in a \
                         file and COPY it, or write the commands on one line joined with &&, \
                         continued with {}",
                        self.escape
                    ),
                ));
            }
        }
        Ok(())
    }

    /// SHELL's arguments: only the JSON form, with at least the program.
    fn shell(&self, args: Args) -> Result<Vec<String>> {
        let example = "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]";
        match json_array(args.text()) {
            Json::Strings(items) if items.is_empty() => Err(self.error(
                args.line.pos(args.start),
                format!("SHELL [] names no shell: write, for example, {example}"),
            )),
            Json::Strings(items) => Ok(items.into_iter().map(|(s, _)| s).collect()),
            Json::NotString { offset, found } => {
                Err(self.not_string(args.line.pos(args.start + offset), found))
            }
            Json::Invalid { offset, message } => Err(self.error(
                args.line.pos(args.start + offset),
                format!(
                    "SHELL takes a JSON array of strings, and this is not valid JSON: {message}"
                ),
            )),
            Json::Absent if args.is_empty() => Err(self.error(
                args.missing(),
                format!("SHELL needs a JSON array, as in {example}"),
            )),
            Json::Absent => Err(self.error(
                args.line.pos(args.start),
                format!("SHELL takes only the JSON form, as in {example}"),
            )),
        }
    }

    /// ENV and LABEL: `NAME=VALUE` pairs, or the old `NAME VALUE`, where the
    /// value is the rest of the line.
    fn pairs(&mut self, keyword: Keyword, args: Args) -> Result<Vec<Pair>> {
        let line = args.line;
        let words = args.words(self.escape);
        let Some(first) = words.first() else {
            return Err(self.error(
                args.missing(),
                format!("{keyword} needs NAME=VALUE, as in {keyword} VERSION=1.2"),
            ));
        };
        if !line.text[first.clone()].contains('=') {
            let key_end = line.text[args.start..args.end]
                .find(char::is_whitespace)
                .map_or(args.end, |i| args.start + i);
            let value_start = skip_blanks(&line.text[..args.end], key_end);
            if value_start >= args.end {
                return Err(self.error(
                    args.missing(),
                    format!("{keyword} needs a value: write {keyword} NAME=VALUE"),
                ));
            }
            let key = line.word(args.start..key_end);
            self.warn(
                key.pos,
                format!(
                    "the old form {keyword} NAME VALUE is deprecated: write {keyword} {}=VALUE",
                    key.text
                ),
            );
            return Ok(vec![Pair {
                key,
                value: line.word(value_start..args.end),
            }]);
        }
        let mut pairs = Vec::new();
        for range in words {
            let text = &line.text[range.clone()];
            let Some(eq) = text.find('=') else {
                return Err(self.error(
                    line.pos(range.start),
                    format!(
                        "{text:?} has no '=': {keyword} takes NAME=VALUE pairs separated by \
                         blanks; quote a value that has blanks in it"
                    ),
                ));
            };
            if eq == 0 {
                return Err(self.error(
                    line.pos(range.start),
                    format!("{keyword} name is empty in {text:?}: write NAME=VALUE"),
                ));
            }
            let eq = range.start + eq;
            pairs.push(Pair {
                key: line.word(range.start..eq),
                value: line.word(eq + 1..range.end),
            });
        }
        Ok(pairs)
    }

    fn arg(&self, args: Args) -> Result<Vec<ArgDef>> {
        let line = args.line;
        let words = args.words(self.escape);
        if words.is_empty() {
            return Err(self.error(
                args.missing(),
                "ARG needs a name, as in ARG VERSION or ARG VERSION=1.2",
            ));
        }
        let mut defs = Vec::new();
        for range in words {
            let def = match line.text[range.clone()].find('=') {
                Some(0) => {
                    return Err(self.error(
                        line.pos(range.start),
                        "ARG name is empty: write ARG NAME or ARG NAME=DEFAULT",
                    ));
                }
                Some(eq) => ArgDef {
                    name: line.word(range.start..range.start + eq),
                    default: Some(line.word(range.start + eq + 1..range.end)),
                },
                None => ArgDef {
                    name: line.word(range),
                    default: None,
                },
            };
            defs.push(def);
        }
        Ok(defs)
    }

    /// The JSON array of COPY, ADD and VOLUME, or else words between blanks.
    fn list(&self, args: Args) -> Result<Vec<Word>> {
        match json_array(args.text()) {
            Json::Strings(items) => Ok(items
                .into_iter()
                .map(|(s, at)| args.line.json_word(s, args.start + at))
                .collect()),
            Json::NotString { offset, found } => {
                Err(self.not_string(args.line.pos(args.start + offset), found))
            }
            Json::Absent | Json::Invalid { .. } => Ok(args
                .split()
                .into_iter()
                .map(|r| args.line.word(r))
                .collect()),
        }
    }

    fn transfer(&self, keyword: Keyword, flags: &[Flag], args: Args) -> Result<Transfer> {
        let mut paths = self.list(args)?;
        if !args.text().starts_with('[') {
            self.no_heredoc(args)?;
        }
        if paths.len() < 2 {
            return Err(self.error(
                args.missing(),
                format!(
                    "{keyword} needs at least one source and a destination, as in \
                     {keyword} app.py /app/"
                ),
            ));
        }
        let dest = paths.pop().expect("at least two paths");
        Ok(Transfer {
            sources: paths,
            dest,
            from: flag_value(flags, "from"),
            chown: flag_value(flags, "chown"),
            chmod: flag_value(flags, "chmod"),
            link: flag_bool(flags, "link"),
        })
    }

    /// The arguments as one word, which must not be empty.
    fn one(&self, args: Args, missing: &str) -> Result<Word> {
        if args.is_empty() {
            return Err(self.error(args.missing(), missing));
        }
        Ok(args.whole())
    }

    fn health(&self, flags: &[Flag], args: Args) -> Result<Health> {
        let line = args.line;
        if args.is_empty() {
            return Err(self.error(
                args.missing(),
                "HEALTHCHECK needs CMD COMMAND or NONE, as in HEALTHCHECK CMD curl -f \
                 http://localhost/",
            ));
        }
        let type_end = args
            .text()
            .find(char::is_whitespace)
            .map_or(args.end, |i| args.start + i);
        let kind = &line.text[args.start..type_end];
        let rest = Args::after(line, type_end);
        if kind.eq_ignore_ascii_case("none") {
            if !rest.is_empty() {
                return Err(self.error(line.pos(rest.start), "HEALTHCHECK NONE takes no arguments"));
            }
            if let Some(flag) = flags.first() {
                return Err(self.error(
                    flag.pos,
                    "HEALTHCHECK NONE takes no options: they belong to HEALTHCHECK CMD",
                ));
            }
            return Ok(Health::None);
        }
        if !kind.eq_ignore_ascii_case("cmd") {
            return Err(self.error(
                line.pos(args.start),
                format!(
                    "unknown HEALTHCHECK type {kind:?}: write HEALTHCHECK [OPTIONS] CMD \
                     COMMAND, or HEALTHCHECK NONE"
                ),
            ));
        }
        let command = self.command(Keyword::Healthcheck, rest, false)?;
        let duration = |name: &str| -> Result<Option<Duration>> {
            let Some(word) = flag_value(flags, name) else {
                return Ok(None);
            };
            let value = self.literal(&word).unwrap_or_else(|| word.text.clone());
            match parse_duration(&value) {
                Some(d) if d >= Duration::from_millis(1) => Ok(Some(d)),
                Some(_) => Err(self.error(word.pos, format!("--{name} must be at least 1ms"))),
                None => Err(self.error(
                    word.pos,
                    format!(
                        "invalid --{name} {value:?}: write a duration such as 30s, 1m30s or \
                         500ms"
                    ),
                )),
            }
        };
        let retries = match flag_value(flags, "retries") {
            None => None,
            Some(word) => {
                let value = self.literal(&word).unwrap_or_else(|| word.text.clone());
                match value.parse::<u32>() {
                    Ok(n) if n >= 1 => Some(n),
                    _ => {
                        return Err(self.error(
                            word.pos,
                            format!("invalid --retries {value:?}: write a whole number, 1 or more"),
                        ));
                    }
                }
            }
        };
        Ok(Health::Check(HealthCheck {
            command,
            interval: duration("interval")?,
            timeout: duration("timeout")?,
            start_period: duration("start-period")?,
            start_interval: duration("start-interval")?,
            retries,
        }))
    }

    fn onbuild(&mut self, args: Args) -> Result<Instruction> {
        let line = args.line;
        if args.is_empty() {
            return Err(self.error(
                args.missing(),
                "ONBUILD needs an instruction, as in ONBUILD COPY . /app",
            ));
        }
        let end = args
            .text()
            .find(char::is_whitespace)
            .map_or(args.end, |i| args.start + i);
        let pos = line.pos(args.start);
        match Keyword::parse(&line.text[args.start..end]) {
            Some(Keyword::Onbuild) => Err(self.error(
                pos,
                "ONBUILD ONBUILD is not allowed: a trigger cannot add another trigger",
            )),
            Some(k @ (Keyword::From | Keyword::Maintainer)) => {
                Err(self.error(pos, format!("{k} isn't allowed as an ONBUILD trigger")))
            }
            _ => self.instruction(line, args.start, false),
        }
    }
}

/// The words of an instruction that the build engine will expand.
fn substituted_words<'k>(kind: &'k Kind, flags: &'k [Flag]) -> Vec<&'k Word> {
    let mut words: Vec<&Word> = flags.iter().filter_map(|f| f.value.as_ref()).collect();
    match kind {
        Kind::From(base) => words.push(&base.image),
        Kind::Env(pairs) | Kind::Label(pairs) => {
            words.extend(pairs.iter().flat_map(|p| [&p.key, &p.value]));
        }
        Kind::Arg(defs) => words.extend(defs.iter().filter_map(|d| d.default.as_ref())),
        Kind::Expose(list) | Kind::Volume(list) => words.extend(list),
        Kind::Add(t) | Kind::Copy(t) => {
            words.extend(&t.sources);
            words.push(&t.dest);
        }
        Kind::User(w) | Kind::Workdir(w) | Kind::StopSignal(w) => words.push(w),
        _ => {}
    }
    words
}

/// Stage names: a letter, then letters, digits, `-`, `_` and `.`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Signal names Linux knows, without the `SIG` prefix.
const SIGNALS: [&str; 34] = [
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// True for what `STOPSIGNAL` accepts: a number from 1 to 64, or a name
/// with or without `SIG`, in any case, including `RTMIN+3` and `RTMAX-1`.
fn is_signal(value: &str) -> bool {
    if let Ok(n) = value.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let upper = value.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) || name == "RTMIN" || name == "RTMAX" {
        return true;
    }
    let offset = name
        .strip_prefix("RTMIN+")
        .or_else(|| name.strip_prefix("RTMAX-"));
    offset.is_some_and(|n| n.parse::<u32>().is_ok_and(|n| (1..=15).contains(&n)))
}

/// Parses a duration as Go writes them (Docker's flags use Go's parser):
/// numbers with units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, one after
/// another, as in `1m30s` or `1.5s`; a bare `0` is zero.
fn parse_duration(text: &str) -> Option<Duration> {
    // BEGIN SOLUTION 05.6
    if text == "0" {
        return Some(Duration::ZERO);
    }
    const UNITS: [(&str, f64); 9] = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("μs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3600e9),
        ("", 0.0),
    ];
    let mut rest = text;
    let mut nanos = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let &(unit, scale) = UNITS.iter().find(|(u, _)| rest.starts_with(u))?;
        if unit.is_empty() {
            return None;
        }
        nanos += number * scale;
        rest = &rest[unit.len()..];
    }
    (!text.is_empty()).then(|| Duration::from_nanos(nanos as u64))
    // END SOLUTION
}

/// Checks one EXPOSE port after expansion and returns (first, last,
/// protocol): `80` is (80, 80, tcp), `53/udp` is (53, 53, udp), and
/// `8000-8009` is (8000, 8009, tcp).
fn port_range(spec: &str) -> std::result::Result<(u16, u16, String), String> {
    let (ports, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
        return Err(format!(
            "unknown protocol {protocol:?} in EXPOSE {spec}: use tcp, udp or sctp"
        ));
    }
    if ports.contains(':') {
        return Err(format!(
            "EXPOSE {spec}: EXPOSE takes container ports only; publish a host port when \
             running, with -p HOST:CONTAINER"
        ));
    }
    let number = |p: &str| p.parse::<u16>().ok().filter(|&n| n != 0);
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (number(a), number(b)),
        None => (number(ports), number(ports)),
    };
    match (first, last) {
        (Some(a), Some(b)) if a <= b => Ok((a, b, protocol)),
        _ => Err(format!(
            "invalid port {spec:?}: write PORT, PORT/PROTOCOL or FIRST-LAST, with ports \
             from 1 to 65535"
        )),
    }
}

/// The image config's `ExposedPorts` keys for one expanded EXPOSE word:
/// `80` gives `80/tcp`, `53/udp` gives `53/udp`, and a range such as
/// `8000-8002` gives one key per port.
pub fn exposed_ports(spec: &str) -> Result<Vec<String>> {
    // BEGIN SOLUTION 05.6
    let (first, last, protocol) = port_range(spec).map_err(Error::Invalid)?;
    Ok((first..=last).map(|p| format!("{p}/{protocol}")).collect())
    // END SOLUTION
}

/// A mistake found by [`expand`]: where in the word, counted in characters,
/// and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    /// The character where the problem starts (a `$` or a quote).
    pub offset: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExpandError {}

/// Replaces variables in a word the way Docker does for ENV, COPY, FROM and
/// the rest, which is the way a shell does, in small:
///
/// - `$NAME` and `${NAME}` become the value, or nothing if it is unset;
/// - `${NAME:-word}` is `word` if NAME is unset or empty, `${NAME-word}` only
///   if unset; `${NAME:+word}` is `word` if NAME is set and not empty (else
///   nothing), `${NAME+word}` if set; `${NAME:?message}` and
///   `${NAME?message}` are errors when NAME is unset (or empty);
/// - inside single quotes nothing is replaced; inside double quotes
///   variables are; the quotes themselves are removed;
/// - the escape character keeps the next character as it is (`\$HOME` is
///   `$HOME`), and is removed.
///
/// `lookup` gives a variable's value, `None` when it is unset; `escape` is
/// the Dockerfile's escape character.
pub fn expand(
    word: &str,
    lookup: impl Fn(&str) -> Option<String>,
    escape: char,
) -> std::result::Result<String, ExpandError> {
    let mut lexer = Lexer {
        chars: word.chars().collect(),
        at: 0,
        escape,
        lookup: &lookup,
    };
    Ok(lexer.until(None)?.0)
}

/// [`expand`]'s state: the characters and how far it has read.
struct Lexer<'f> {
    chars: Vec<char>,
    at: usize,
    escape: char,
    lookup: &'f dyn Fn(&str) -> Option<String>,
}

type Expanded<T> = std::result::Result<T, ExpandError>;

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += usize::from(c.is_some());
        c
    }

    fn fail<T>(&self, offset: usize, message: impl Into<String>) -> Expanded<T> {
        Err(ExpandError {
            offset,
            message: message.into(),
        })
    }

    /// Reads up to `stop` (consumed) or to the end. Returns the text and
    /// whether `stop` was found.
    fn until(&mut self, stop: Option<char>) -> Expanded<(String, bool)> {
        // BEGIN SOLUTION 05.6
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.at += 1;
                return Ok((out, true));
            }
            match c {
                '\'' => out.push_str(&self.single_quoted()?),
                '"' => out.push_str(&self.double_quoted()?),
                '$' => out.push_str(&self.dollar()?),
                _ => {
                    self.at += 1;
                    if c != self.escape {
                        out.push(c);
                    } else if let Some(next) = self.next() {
                        out.push(next);
                    }
                }
            }
        }
        Ok((out, false))
        // END SOLUTION
    }

    fn single_quoted(&mut self) -> Expanded<String> {
        let start = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => return self.fail(start, "unterminated single quote: add the closing '"),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    /// Inside double quotes the escape character only escapes `"`, `$` and
    /// itself; before anything else it is kept.
    fn double_quoted(&mut self) -> Expanded<String> {
        let start = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return self.fail(start, "unterminated double quote: add the closing \""),
                Some('"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) => {
                    self.at += 1;
                    if c == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.at += 1;
                                out.push(n);
                                continue;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn dollar(&mut self) -> Expanded<String> {
        // BEGIN SOLUTION 05.6
        let start = self.at;
        self.at += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok((self.lookup)(&name).unwrap_or_default());
        }
        self.at += 1;
        let unterminated = "unterminated ${: add the closing }";
        let bad = "bad substitution: write ${NAME}, with a variable name between the braces";
        match self.peek() {
            None => return self.fail(start, unterminated),
            Some('{' | '}' | ':') => return self.fail(start, bad),
            Some(_) => {}
        }
        let name = self.name();
        if name.is_empty() {
            return self.fail(start, bad);
        }
        let (colon, op) = match self.next() {
            None => return self.fail(start, unterminated),
            Some('}') => return Ok((self.lookup)(&name).unwrap_or_default()),
            Some(op @ ('-' | '+' | '?')) => (false, op),
            Some(':') => match self.next() {
                None => return self.fail(start, unterminated),
                Some(op @ ('-' | '+' | '?')) => (true, op),
                Some(other) => {
                    return self.fail(
                        start,
                        format!(
                            "unsupported modifier :{other} in ${{{name}:{other}...}}: berth \
                             knows ${{NAME:-default}}, ${{NAME:+alternative}} and \
                             ${{NAME:?message}}"
                        ),
                    );
                }
            },
            Some(op @ ('#' | '%' | '/')) => {
                return self.fail(
                    start,
                    format!(
                        "${{{name}{op}...}} (pattern removal or replacement) is not supported \
                         by berth; it knows ${{NAME:-default}}, ${{NAME:+alternative}} and \
                         ${{NAME:?message}}"
                    ),
                );
            }
            Some(_) => return self.fail(start, bad),
        };
        let (word, closed) = self.until(Some('}'))?;
        if !closed {
            return self.fail(start, unterminated);
        }
        let value = (self.lookup)(&name);
        let missing = match &value {
            None => true,
            Some(v) => colon && v.is_empty(),
        };
        match op {
            '-' if missing => Ok(word),
            '+' if missing => Ok(String::new()),
            '+' => Ok(word),
            '?' if missing => {
                let why = match (word.is_empty(), &value) {
                    (false, _) => word,
                    (true, None) => "is not set".to_string(),
                    (true, Some(_)) => "is empty".to_string(),
                };
                self.fail(start, format!("{name}: {why}"))
            }
            _ => Ok(value.unwrap_or_default()),
        }
        // END SOLUTION
    }

    /// A variable name: letters, digits and `_`; or a run of digits (`$1`);
    /// or one of the shell's special parameters (`$?`, `$@`, ...), which are
    /// always unset in a Dockerfile.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.at += 1;
                }
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                name.push(c);
                self.at += 1;
            }
            _ => {
                while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                    self.at += 1;
                }
            }
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(text: &str) -> Dockerfile {
        match Dockerfile::parse("Dockerfile", text) {
            Ok(df) => df,
            Err(e) => panic!("{e}\n--- in ---\n{text}"),
        }
    }

    fn err(text: &str) -> String {
        match Dockerfile::parse("Dockerfile", text) {
            Ok(df) => panic!("parsed, but should not have:\n{text}\n{df:#?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The instructions of the only stage, after FROM.
    fn body(text: &str) -> Vec<Instruction> {
        let df = parse(&format!("FROM scratch\n{text}"));
        df.stages.into_iter().next().unwrap().instructions
    }

    /// The single instruction after `FROM scratch`.
    fn one(text: &str) -> Kind {
        let mut all = body(text);
        assert_eq!(all.len(), 1, "{all:#?}");
        all.remove(0).kind
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// A word as `"text"@line:column`.
    fn w(word: &Word) -> String {
        format!("{:?}@{}", word.text, word.pos)
    }

    fn opt(word: &Option<Word>) -> String {
        word.as_ref().map_or("-".to_string(), w)
    }

    fn list(words: &[Word]) -> String {
        words.iter().map(w).collect::<Vec<_>>().join(" ")
    }

    fn form(form: &Form) -> String {
        match form {
            Form::Shell(s) => format!("shell {s:?}"),
            Form::Exec(v) => format!("exec {v:?}"),
        }
    }

    /// One line per instruction, for snapshots.
    fn show(ins: &Instruction) -> String {
        let detail = match &ins.kind {
            Kind::From(b) => format!(
                "image {} platform {} name {}",
                w(&b.image),
                opt(&b.platform),
                opt(&b.name)
            ),
            Kind::Run(r) => format!(
                "{} mounts [{}] network {}",
                form(&r.command),
                list(&r.mounts),
                opt(&r.network)
            ),
            Kind::Cmd(f) | Kind::Entrypoint(f) => form(f),
            Kind::Shell(v) => format!("{v:?}"),
            Kind::Env(p) | Kind::Label(p) => p
                .iter()
                .map(|p| format!("{}={}", w(&p.key), w(&p.value)))
                .collect::<Vec<_>>()
                .join(" "),
            Kind::Arg(defs) => defs
                .iter()
                .map(|d| format!("{}={}", w(&d.name), opt(&d.default)))
                .collect::<Vec<_>>()
                .join(" "),
            Kind::Expose(l) | Kind::Volume(l) => list(l),
            Kind::Add(t) | Kind::Copy(t) => format!(
                "[{}] -> {} from {} chown {} chmod {} link {}",
                list(&t.sources),
                w(&t.dest),
                opt(&t.from),
                opt(&t.chown),
                opt(&t.chmod),
                t.link
            ),
            Kind::User(x) | Kind::Workdir(x) | Kind::StopSignal(x) | Kind::Maintainer(x) => w(x),
            Kind::Healthcheck(h) => match h {
                Health::None => "NONE".to_string(),
                Health::Check(c) => format!(
                    "{} interval {:?} timeout {:?} start-period {:?} start-interval {:?} \
                     retries {:?} test {:?}",
                    form(&c.command),
                    c.interval,
                    c.timeout,
                    c.start_period,
                    c.start_interval,
                    c.retries,
                    h.test()
                ),
            },
            Kind::Onbuild(inner) => format!("[{}]", show(inner)),
        };
        format!(
            "{} {} (to line {}) {detail}",
            ins.pos,
            ins.keyword(),
            ins.end_line
        )
    }

    fn dump(df: &Dockerfile) -> String {
        let mut out = format!("escape {:?} syntax {:?}\n", df.escape, df.syntax);
        for ins in &df.global_args {
            out += &format!("global {}\n", show(ins));
        }
        for stage in &df.stages {
            out += &format!("stage {} {:?}\n", stage.index, stage.name);
            out += &format!("  {}\n", show(&stage.from));
            for ins in &stage.instructions {
                out += &format!("  {}\n    original {:?}\n", show(ins), ins.original);
            }
        }
        for warning in &df.warnings {
            out += &format!("warning {}: {}\n", warning.pos, warning.message);
        }
        out
    }

    const KITCHEN_SINK: &str = r#"# syntax=docker/dockerfile:1
# check=skip=JSONArgsRecommended

# Global arguments, usable in FROM.
ARG BASE=alpine:3.20 REGISTRY
arg VERSION

FROM --platform=$BUILDPLATFORM ${REGISTRY:-docker.io}/golang:1.23 AS Build
WORKDIR /src
COPY --chown=app:app go.mod go.sum ./
RUN --mount=type=cache,target=/root/.cache/go-build \
    # comments inside a continued RUN are skipped
    go build \
      -o /out/app .
RUN ["go", "vet", "./..."]

from ${BASE}
LABEL org.opencontainers.image.title="my app" version=$VERSION
LABEL legacy a value with spaces
ENV PATH=/app/bin:$PATH HOME=/home/app
ENV OLD some value
COPY --from=build --link /out/app /app/bin/app
ADD ["with space.txt", "/app/data/"]
EXPOSE 8080 53/udp 9000-9002/tcp
VOLUME ["/data", "/cache"]
VOLUME /logs /tmp/x
USER app:app
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --timeout=2s --start-period=1m --start-interval=500ms --retries=4 CMD wget -q -O- http://localhost:8080/health || exit 1
SHELL ["/bin/sh", "-eu", "-c"]
ONBUILD COPY . /app/src
MAINTAINER someone@example.com
ENTRYPOINT ["/app/bin/app"]
CMD ["--port", "8080"]
"#;

    #[test]
    fn kitchen_sink() {
        insta::assert_snapshot!("kitchen_sink", dump(&parse(KITCHEN_SINK)));
    }

    #[test]
    fn keywords_are_case_insensitive_and_suggested() {
        for k in Keyword::ALL {
            assert_eq!(Keyword::parse(k.name()), Some(k));
            assert_eq!(Keyword::parse(&k.name().to_lowercase()), Some(k));
        }
        assert_eq!(Keyword::parse("Run"), Some(Keyword::Run));
        assert_eq!(Keyword::parse("RUUN"), None);
        let names = Keyword::ALL.map(Keyword::name);
        for (typo, want) in [
            ("RUUN", Some("RUN")),
            ("FORM", Some("FROM")),
            ("ENTRYPIONT", Some("ENTRYPOINT")),
            ("cpy", Some("COPY")),
            ("workdirr", Some("WORKDIR")),
            ("apt-get", None),
            ("X", None),
        ] {
            assert_eq!(closest(typo, &names), want, "{typo}");
        }
    }

    #[test]
    fn from_forms() {
        let df = parse("FROM alpine\nFROM --platform=linux/arm64 golang:1.23 as Build\n");
        assert_eq!(df.stages.len(), 2);
        assert_eq!(df.stages[0].name, None);
        assert_eq!(df.stages[0].base().image.text, "alpine");
        let build = &df.stages[1];
        assert_eq!(build.name.as_deref(), Some("build"));
        assert_eq!(build.base().name.as_ref().unwrap().text, "Build");
        assert_eq!(build.base().platform.as_ref().unwrap().text, "linux/arm64");
        assert_eq!(
            build.base().image.pos,
            Pos {
                line: 2,
                column: 29
            }
        );
    }

    #[test]
    fn stages_by_name_or_index() {
        let df = parse("FROM a AS one\nFROM b\nFROM c AS Three\n");
        assert_eq!(df.stage("one").unwrap().index, 0);
        assert_eq!(df.stage("ONE").unwrap().index, 0);
        assert_eq!(df.stage("three").unwrap().index, 2);
        assert_eq!(df.stage("1").unwrap().index, 1);
        assert!(df.stage("9").is_none());
        assert!(df.stage("two").is_none());
        assert_eq!(df.target(None).unwrap().index, 2);
        assert_eq!(df.target(Some("one")).unwrap().index, 0);
        assert_eq!(
            df.target(Some("two")).unwrap_err().to_string(),
            "target stage \"two\" not found in Dockerfile: its stages are one, 1, three"
        );
        // Step numbering counts every instruction in file order.
        let df = parse("ARG V\nFROM a\nRUN x\nFROM b\nCMD y\n");
        let keywords: Vec<Keyword> = df.instructions().map(Instruction::keyword).collect();
        use Keyword as K;
        assert_eq!(keywords, [K::Arg, K::From, K::Run, K::From, K::Cmd]);
    }

    #[test]
    fn run_cmd_entrypoint_both_forms() {
        let shell = Form::Shell("echo \"$HOME\" && ls".to_string());
        let exec = Form::Exec(strings(&["echo", "hi there"]));
        for keyword in ["RUN", "CMD", "ENTRYPOINT", "run", "Cmd"] {
            let got = one(&format!("{keyword} echo \"$HOME\" && ls"));
            let want = match Keyword::parse(keyword).unwrap() {
                Keyword::Run => Kind::Run(Run {
                    command: shell.clone(),
                    mounts: vec![],
                    network: None,
                }),
                Keyword::Cmd => Kind::Cmd(shell.clone()),
                _ => Kind::Entrypoint(shell.clone()),
            };
            assert_eq!(got, want, "{keyword}");
            let got = one(&format!("{keyword} [ \"echo\",\"hi there\" ]"));
            match got {
                Kind::Run(r) => assert_eq!(r.command, exec),
                Kind::Cmd(f) | Kind::Entrypoint(f) => assert_eq!(f, exec),
                other => panic!("{other:?}"),
            }
        }
        // Not valid JSON: the shell form, as in Docker.
        assert_eq!(
            one("CMD ['echo', 'hi']"),
            Kind::Cmd(Form::Shell("['echo', 'hi']".into()))
        );
        assert_eq!(
            one("CMD [\"a\",]"),
            Kind::Cmd(Form::Shell("[\"a\",]".into()))
        );
        assert_eq!(
            one("CMD [\"a\"] b"),
            Kind::Cmd(Form::Shell("[\"a\"] b".into()))
        );
        // JSON escapes are decoded.
        assert_eq!(
            one(r#"CMD ["a\"b", "\u00e9\\"]"#),
            Kind::Cmd(Form::Exec(strings(&["a\"b", "é\\"])))
        );
        // An empty exec form clears CMD and ENTRYPOINT.
        assert_eq!(one("CMD []"), Kind::Cmd(Form::Exec(vec![])));
        assert_eq!(one("ENTRYPOINT []"), Kind::Entrypoint(Form::Exec(vec![])));
        // The shell form is kept as written, escapes and all: the shell
        // reads it, and nothing is expanded.
        let Kind::Run(r) = one("RUN echo \\$HOME ${X:-y}") else {
            panic!()
        };
        assert_eq!(r.command, Form::Shell("echo \\$HOME ${X:-y}".into()));
        let Kind::Run(r) = one(
            "RUN --network=none --mount=type=cache,target=/c \\\n  --mount=type=tmpfs,target=/t make",
        ) else {
            panic!()
        };
        assert_eq!(r.command, Form::Shell("make".into()));
        assert_eq!(r.network.unwrap().text, "none");
        assert_eq!(
            r.mounts.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
            ["type=cache,target=/c", "type=tmpfs,target=/t"]
        );
        assert_eq!(
            r.mounts[1].pos,
            Pos {
                line: 3,
                column: 11
            }
        );
    }

    #[test]
    fn env_and_label() {
        let Kind::Env(pairs) = one(r#"ENV A=1 B="two words" C=three\ words D="#) else {
            panic!()
        };
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.key.text.as_str(), p.value.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("A", "1"),
                ("B", "\"two words\""),
                ("C", "three\\ words"),
                ("D", "")
            ]
        );
        // The legacy form: the value is the rest of the line, blanks and all.
        let Kind::Label(pairs) = one("LABEL description  a   spaced   value ") else {
            panic!()
        };
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].key.text, "description");
        assert_eq!(pairs[0].value.text, "a   spaced   value");
        assert_eq!(
            pairs[0].value.pos,
            Pos {
                line: 2,
                column: 20
            }
        );
        // An `=` later in the line does not make it the new form.
        let Kind::Env(pairs) = one("ENV GREETING hello=world") else {
            panic!()
        };
        assert_eq!(
            (pairs[0].key.text.as_str(), pairs[0].value.text.as_str()),
            ("GREETING", "hello=world")
        );
        // Quoted keys, as LABEL often has them.
        let Kind::Label(pairs) = one(r#"LABEL "com.example.vendor"="ACME Inc""#) else {
            panic!()
        };
        assert_eq!(
            pairs[0].key.expand("Dockerfile", |_| None, '\\').unwrap(),
            "com.example.vendor"
        );
        assert_eq!(
            pairs[0].value.expand("Dockerfile", |_| None, '\\').unwrap(),
            "ACME Inc"
        );
    }

    #[test]
    fn env_words_without_equals_sign_fail() {
        // D= is fine (empty value), but a bare E is not once the line uses `=`.
        assert_eq!(
            err("FROM a\nENV A=1 B=\"two words\" D= E"),
            "Dockerfile:2:26: \"E\" has no '=': ENV takes NAME=VALUE pairs separated by blanks; \
             quote a value that has blanks in it"
        );
    }

    #[test]
    fn arg_forms() {
        let Kind::Arg(defs) = one("ARG A B=2 C=\"x y\" D=") else {
            panic!()
        };
        let got: Vec<(&str, Option<&str>)> = defs
            .iter()
            .map(|d| {
                (
                    d.name.text.as_str(),
                    d.default.as_ref().map(|w| w.text.as_str()),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("A", None),
                ("B", Some("2")),
                ("C", Some("\"x y\"")),
                ("D", Some(""))
            ]
        );
        let df = parse("ARG A\nARG B=1\nFROM $A\nARG A\n");
        assert_eq!(df.global_args.len(), 2);
        assert_eq!(df.stages[0].instructions.len(), 1);
    }

    #[test]
    fn copy_and_add() {
        let Kind::Copy(t) =
            one("COPY --from=build --chown=1000:1000 --chmod=0755 --link a b /dst/")
        else {
            panic!()
        };
        assert_eq!(list(&t.sources), "\"a\"@2:57 \"b\"@2:59");
        assert_eq!(w(&t.dest), "\"/dst/\"@2:61");
        assert_eq!(opt(&t.from), "\"build\"@2:13");
        assert_eq!(opt(&t.chown), "\"1000:1000\"@2:27");
        assert_eq!(opt(&t.chmod), "\"0755\"@2:45");
        assert!(t.link);
        let Kind::Copy(t) = one("COPY --link=false a b") else {
            panic!()
        };
        assert!(!t.link);
        let Kind::Add(t) = one(r#"ADD ["my file.txt", "other", "/in dir/"]"#) else {
            panic!()
        };
        assert_eq!(list(&t.sources), "\"my file.txt\"@2:6 \"other\"@2:21");
        assert_eq!(w(&t.dest), "\"/in dir/\"@2:30");
        // The position of a character inside a JSON string skips the quote.
        assert_eq!(
            t.dest.pos_at(0),
            Pos {
                line: 2,
                column: 31
            }
        );
        let Kind::Add(t) = one("ADD https://example.com/a.tgz /opt/") else {
            panic!()
        };
        assert_eq!(t.sources[0].text, "https://example.com/a.tgz");
    }

    #[test]
    fn other_instructions() {
        assert_eq!(
            one("SHELL [\"powershell\", \"-command\"]"),
            Kind::Shell(strings(&["powershell", "-command"]))
        );
        let Kind::Expose(ports) = one("EXPOSE 80 80/tcp 53/udp 8000-8002 $PORT") else {
            panic!()
        };
        assert_eq!(ports.len(), 5);
        let Kind::User(user) = one("USER app:staff") else {
            panic!()
        };
        assert_eq!(w(&user), "\"app:staff\"@2:6");
        let Kind::Workdir(dir) = one("WORKDIR /my dir") else {
            panic!()
        };
        assert_eq!(dir.text, "/my dir");
        for signal in ["SIGTERM", "term", "9", "SIGRTMIN+3", "$SIG"] {
            assert!(matches!(
                one(&format!("STOPSIGNAL {signal}")),
                Kind::StopSignal(_)
            ));
        }
        assert_eq!(one("HEALTHCHECK NONE"), Kind::Healthcheck(Health::None));
        let Kind::Healthcheck(h) = one("HEALTHCHECK CMD [\"/bin/check\", \"-q\"]") else {
            panic!()
        };
        assert_eq!(h.test(), strings(&["CMD", "/bin/check", "-q"]));
        let Kind::Healthcheck(h) = one("healthcheck --interval=1m30s --retries=1 cmd curl -f x")
        else {
            panic!()
        };
        assert_eq!(h.test(), strings(&["CMD-SHELL", "curl -f x"]));
        let Health::Check(check) = h else { panic!() };
        assert_eq!(check.interval, Some(Duration::from_secs(90)));
        assert_eq!(check.retries, Some(1));
        let Kind::Onbuild(inner) = one("ONBUILD RUN make install") else {
            panic!()
        };
        assert_eq!(inner.original, "RUN make install");
        assert_eq!(inner.pos, Pos { line: 2, column: 9 });
        let Kind::Maintainer(name) = one("MAINTAINER Jane Doe <jane@example.com>") else {
            panic!()
        };
        assert_eq!(name.text, "Jane Doe <jane@example.com>");
    }

    #[test]
    fn durations_as_go_writes_them() {
        for (text, want) in [
            ("0", Some(Duration::ZERO)),
            ("30s", Some(Duration::from_secs(30))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("500ms", Some(Duration::from_millis(500))),
            ("2h", Some(Duration::from_secs(7200))),
            ("10us", Some(Duration::from_micros(10))),
            ("", None),
            ("5", None),
            ("5x", None),
            ("s", None),
            ("-5s", None),
        ] {
            assert_eq!(parse_duration(text), want, "{text:?}");
        }
    }

    #[test]
    fn exposed_port_keys() {
        assert_eq!(exposed_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(exposed_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            exposed_ports("8000-8002/tcp").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(exposed_ports("0").is_err());
        assert!(exposed_ports("70000").is_err());
        assert!(exposed_ports("9-8").is_err());
        assert!(exposed_ports("80/icmp").is_err());
        assert!(exposed_ports("8080:80").is_err());
    }

    #[test]
    fn continuations_join_lines_and_skip_comments_and_blanks() {
        let text = "FROM a\nRUN echo one \\\n    # a comment, skipped\n\n  && echo two \\\n\t&& echo three\nCMD x\n";
        let df = parse(text);
        let run = &df.stages[0].instructions[0];
        assert_eq!(run.original, "RUN echo one   && echo two \t&& echo three");
        assert_eq!((run.pos, run.end_line), (Pos { line: 2, column: 1 }, 6));
        assert_eq!(df.stages[0].instructions[1].pos.line, 7);
        // The blank line draws Docker's warning.
        assert_eq!(df.warnings.len(), 1);
        assert_eq!(df.warnings[0].pos, Pos { line: 4, column: 1 });
        // Blanks after the continuation character are allowed.
        assert_eq!(body("RUN a \\  \t\nb")[0].original, "RUN a b");
        // An escaped escape character is not a continuation.
        let all = body("RUN echo a\\\\\nCMD b");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].original, "RUN echo a\\\\");
        // A continuation at the end of the file just ends the instruction.
        assert_eq!(body("RUN echo hi \\")[0].original, "RUN echo hi");
        assert_eq!(body("RUN echo hi \\\n\n# c\n")[0].original, "RUN echo hi");
        // Indented instructions, CRLF line ends and a byte order mark.
        let df = parse("\u{feff}FROM a\r\n   RUN x \\\r\n  y\r\n");
        let run = &df.stages[0].instructions[0];
        assert_eq!(
            (run.pos, run.original.as_str()),
            (Pos { line: 2, column: 4 }, "RUN x   y")
        );
        // A `#` after the start of a line is not a comment.
        let Kind::Run(r) = one("RUN echo hi # there") else {
            panic!()
        };
        assert_eq!(r.command, Form::Shell("echo hi # there".into()));
    }

    #[test]
    fn positions_follow_continuations() {
        let df = parse("FROM a\nENV A=1 \\\n  B=${A}x \\\n    C=3\n");
        let Kind::Env(pairs) = &df.stages[0].instructions[0].kind else {
            panic!()
        };
        let got: Vec<String> = pairs
            .iter()
            .map(|p| format!("{} {}", w(&p.key), w(&p.value)))
            .collect();
        assert_eq!(
            got,
            [
                "\"A\"@2:5 \"1\"@2:7",
                "\"B\"@3:3 \"${A}x\"@3:5",
                "\"C\"@4:5 \"3\"@4:7"
            ]
        );
        // A word cut in two by a continuation maps each half to its line.
        let df = parse("FROM a\nCOPY ab\\\ncd /x\n");
        let Kind::Copy(t) = &df.stages[0].instructions[0].kind else {
            panic!()
        };
        let word = &t.sources[0];
        assert_eq!(word.text, "abcd");
        assert_eq!(word.pos_at(1), Pos { line: 2, column: 7 });
        assert_eq!(word.pos_at(2), Pos { line: 3, column: 1 });
        assert_eq!(word.pos_at(3), Pos { line: 3, column: 2 });
    }

    #[test]
    fn parser_directives() {
        // escape=` makes backslashes ordinary: Windows paths.
        let df = parse(
            "# escape=`\nFROM mcr.microsoft.com/windows/servercore\nCOPY . C:\\app\\\nRUN dir `\n  C:\\app\n",
        );
        assert_eq!(df.escape, '`');
        let all = &df.stages[0].instructions;
        assert_eq!(all.len(), 2);
        let Kind::Copy(t) = &all[0].kind else {
            panic!()
        };
        assert_eq!(t.dest.text, "C:\\app\\");
        assert_eq!(all[1].original, "RUN dir   C:\\app");
        // Directives: any case, blanks around `=`, then syntax is recorded.
        let df = parse("#  ESCAPE = ` \n# Syntax=docker/dockerfile:1.7\nFROM a\n");
        assert_eq!(
            (df.escape, df.syntax.as_deref()),
            ('`', Some("docker/dockerfile:1.7"))
        );
        // After a comment, a blank line or an instruction, it is a comment.
        for text in [
            "# a comment\n# escape=`\nFROM a\n",
            "\n# escape=`\nFROM a\n",
            "FROM a\n# escape=`\n",
            "# unknowndirective=x\n# escape=`\nFROM a\n",
            "# escape=\nFROM a\n",
        ] {
            assert_eq!(parse(text).escape, '\\', "{text:?}");
        }
        // The escape character also escapes inside words.
        let df = parse("# escape=`\nFROM a\nENV A=x`\"y B=C:\\dir\n");
        let Kind::Env(pairs) = &df.stages[0].instructions[0].kind else {
            panic!()
        };
        assert_eq!(
            pairs[0]
                .value
                .expand("Dockerfile", |_| None, df.escape)
                .unwrap(),
            "x\"y"
        );
        assert_eq!(
            pairs[1]
                .value
                .expand("Dockerfile", |_| None, df.escape)
                .unwrap(),
            "C:\\dir"
        );
    }

    #[test]
    fn substitution() {
        let vars: HashMap<&str, &str> = [
            ("A", "alpha"),
            ("EMPTY", ""),
            ("SPACE", "a b"),
            ("_x1", "u"),
        ]
        .into();
        let lookup = |name: &str| vars.get(name).map(|v| v.to_string());
        let cases = [
            ("$A", "alpha"),
            ("${A}", "alpha"),
            ("x${A}y", "xalphay"),
            ("$A-$A", "alpha-alpha"),
            ("$Ax", ""),
            ("$_x1", "u"),
            ("$UNSET", ""),
            ("${UNSET}", ""),
            ("${UNSET:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${A:-def}", "alpha"),
            ("${UNSET-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${UNSET:+alt}", ""),
            ("${EMPTY:+alt}", ""),
            ("${A:+alt}", "alt"),
            ("${EMPTY+alt}", "alt"),
            ("${A:?no}", "alpha"),
            ("${UNSET:-${A}}", "alpha"),
            ("${UNSET:-a b}", "a b"),
            ("${UNSET:-\"q}\"}", "q}"),
            ("\\$A", "$A"),
            ("\\${A}", "${A}"),
            ("$", "$"),
            ("a$", "a$"),
            ("$ a", "$ a"),
            ("$1", ""),
            ("$?", ""),
            ("'$A'", "$A"),
            ("\"$A\"", "alpha"),
            ("\"$SPACE\"", "a b"),
            ("\"a\\\"b\"", "a\"b"),
            ("\"a\\nb\"", "a\\nb"),
            ("\"\\$A\"", "$A"),
            ("'a\\b'", "a\\b"),
            ("a\\ b", "a b"),
            ("a\\", "a"),
            ("C:\\dir", "C:dir"),
            ("\"\"", ""),
        ];
        for (word, want) in cases {
            assert_eq!(expand(word, lookup, '\\').as_deref(), Ok(want), "{word}");
        }
        // With the backtick as escape character, backslashes are ordinary.
        assert_eq!(
            expand("C:\\dir\\`$A", lookup, '`').as_deref(),
            Ok("C:\\dir\\$A")
        );
    }

    #[test]
    fn substitution_errors() {
        let lookup = |name: &str| (name == "EMPTY").then(String::new);
        let cases = [
            ("${A", 0, "unterminated ${: add the closing }"),
            ("ab${A:-x", 2, "unterminated ${: add the closing }"),
            ("${", 0, "unterminated ${: add the closing }"),
            (
                "${}",
                0,
                "bad substitution: write ${NAME}, with a variable name between the braces",
            ),
            (
                "x${:-a}",
                1,
                "bad substitution: write ${NAME}, with a variable name between the braces",
            ),
            (
                "${A B}",
                0,
                "bad substitution: write ${NAME}, with a variable name between the braces",
            ),
            ("'abc", 0, "unterminated single quote: add the closing '"),
            ("a\"bc", 1, "unterminated double quote: add the closing \""),
            ("${A:?must be set}", 0, "A: must be set"),
            ("${A?}", 0, "A: is not set"),
            ("${EMPTY:?}", 0, "EMPTY: is empty"),
            (
                "${A#prefix}",
                0,
                "${A#...} (pattern removal or replacement) is not supported by berth; it knows \
                 ${NAME:-default}, ${NAME:+alternative} and ${NAME:?message}",
            ),
            (
                "${A:x}",
                0,
                "unsupported modifier :x in ${A:x...}: berth knows ${NAME:-default}, \
                 ${NAME:+alternative} and ${NAME:?message}",
            ),
        ];
        for (word, offset, message) in cases {
            let got = expand(word, lookup, '\\').unwrap_err();
            assert_eq!(
                (got.offset, got.message.as_str()),
                (offset, message),
                "{word}"
            );
        }
        // The word maps the offset to a line and column.
        let word = Word::new(
            "ab${X",
            Pos {
                line: 4,
                column: 10,
            },
        );
        assert_eq!(
            word.expand("Dockerfile", |_| None, '\\')
                .unwrap_err()
                .to_string(),
            "Dockerfile:4:12: unterminated ${: add the closing }"
        );
    }

    #[test]
    fn substitutes_docker_list() {
        use Keyword as K;
        let yes: Vec<Keyword> = Keyword::ALL
            .into_iter()
            .filter(|k| k.substitutes())
            .collect();
        assert_eq!(
            yes,
            [
                K::Add,
                K::Arg,
                K::Copy,
                K::Env,
                K::Expose,
                K::From,
                K::Label,
                K::StopSignal,
                K::User,
                K::Volume,
                K::Workdir
            ]
        );
    }

    /// Every error, with its exact place. The messages are in the snapshot.
    const ERRORS: &[(&str, &str, &str)] = &[
        ("unknown instruction", "FROM a\nRUUN make\n", "2:1"),
        (
            "unknown instruction, lower case",
            "FROM a\n  ruun make\n",
            "2:3",
        ),
        (
            "forgotten continuation",
            "FROM a\nRUN apt-get update &&\n    apt-get install -y curl\n",
            "3:5",
        ),
        ("unknown first instruction", "apt-get install\n", "1:1"),
        ("before FROM", "# comment\nRUN make\nFROM a\n", "2:1"),
        ("empty file", "", "1:1"),
        ("only comments", "# nothing\n\n", "2:1"),
        ("only ARG", "ARG A=1\n", "1:1"),
        ("FROM without image", "FROM\n", "1:5"),
        (
            "FROM with flags only",
            "FROM --platform=linux/amd64\n",
            "1:28",
        ),
        ("FROM AS without name", "FROM a AS\n", "1:10"),
        ("FROM two words", "FROM a b\n", "1:8"),
        ("FROM four words", "FROM a AS b c\n", "1:13"),
        ("bad stage name", "FROM a AS 1st\n", "1:11"),
        ("bad stage name symbol", "FROM a AS my/stage\n", "1:11"),
        ("duplicate stage", "FROM a AS x\nFROM b AS X\n", "2:11"),
        (
            "unknown flag, suggested",
            "FROM a\nCOPY --form=build /a /b\n",
            "2:6",
        ),
        (
            "unknown flag, listed",
            "FROM a\nCOPY --parents a /b\n",
            "2:6",
        ),
        (
            "flag on instruction without flags",
            "FROM a\nENV --x=1 A=1\n",
            "2:5",
        ),
        ("ADD --from", "FROM a\nADD --from=b x /y\n", "2:5"),
        (
            "RUN --security",
            "FROM a\nRUN --security=insecure make\n",
            "2:5",
        ),
        ("flag without value", "FROM a\nCOPY --from a /b\n", "2:6"),
        (
            "flag with empty value",
            "FROM a\nCOPY --chown= a /b\n",
            "2:6",
        ),
        (
            "flag twice",
            "FROM a\nCOPY --from=x --from=y a /b\n",
            "2:15",
        ),
        ("bool flag value", "FROM a\nCOPY --link=yes a /b\n", "2:13"),
        (
            "flag on continuation line",
            "FROM a\nRUN --mount=type=cache,target=/c \\\n  --netwrok=host make\n",
            "3:3",
        ),
        (
            "RUN --network value",
            "FROM a\nRUN --network=bridge make\n",
            "2:15",
        ),
        ("RUN without command", "FROM a\nRUN\n", "2:4"),
        ("RUN []", "FROM a\nRUN []\n", "2:5"),
        ("CMD without command", "FROM a\nCMD   \n", "2:4"),
        ("ENTRYPOINT without command", "FROM a\nENTRYPOINT\n", "2:11"),
        ("JSON not strings", "FROM a\nCMD [\"echo\", 1]\n", "2:14"),
        (
            "JSON nested array",
            "FROM a\nENTRYPOINT [\"a\", [\"b\"]]\n",
            "2:18",
        ),
        (
            "COPY JSON not strings",
            "FROM a\nCOPY [\"a\", null]\n",
            "2:12",
        ),
        (
            "heredoc RUN",
            "FROM a\nRUN cat <<EOF > /x\nhi\nEOF\n",
            "2:9",
        ),
        ("heredoc COPY", "FROM a\nCOPY <<-EOT /x\n", "2:6"),
        ("ENV empty", "FROM a\nENV\n", "2:4"),
        ("ENV blank name", "FROM a\nENV =x\n", "2:5"),
        ("ENV blank name later", "FROM a\nENV A=1 =x\n", "2:9"),
        ("ENV legacy without value", "FROM a\nENV A\n", "2:6"),
        ("LABEL without =", "FROM a\nLABEL a=1 b\n", "2:11"),
        ("ENV unterminated ${", "FROM a\nENV A=1 B=x${A\n", "2:12"),
        (
            "ENV unterminated ${ on a continuation line",
            "FROM a\nENV A=1 \\\n    B=x${A:-y\n",
            "3:8",
        ),
        ("ENV unterminated quote", "FROM a\nENV A=\"one two\n", "2:7"),
        (
            "LABEL unsupported modifier",
            "FROM a\nLABEL v=${VERSION%.*}\n",
            "2:9",
        ),
        ("FROM unterminated ${", "ARG BASE\nFROM ${BASE\n", "2:6"),
        (
            "COPY --from unterminated ${",
            "FROM a\nCOPY --from=${X a /b\n",
            "2:13",
        ),
        ("ARG default unterminated ${", "ARG A=${B\nFROM a\n", "1:7"),
        ("ARG empty", "FROM a\nARG\n", "2:4"),
        ("ARG blank name", "FROM a\nARG A =1\n", "2:7"),
        ("COPY one path", "FROM a\nCOPY app.py\n", "2:12"),
        ("COPY nothing", "FROM a\nCOPY --from=b\n", "2:14"),
        ("ADD JSON one path", "FROM a\nADD [\"a\"]\n", "2:10"),
        ("EXPOSE nothing", "FROM a\nEXPOSE\n", "2:7"),
        ("EXPOSE bad port", "FROM a\nEXPOSE 80 http\n", "2:11"),
        ("EXPOSE host mapping", "FROM a\nEXPOSE 8080:80\n", "2:8"),
        (
            "EXPOSE bad protocol",
            "FROM a\nEXPOSE 80/tcp 53/icmp\n",
            "2:15",
        ),
        ("VOLUME nothing", "FROM a\nVOLUME\n", "2:7"),
        (
            "VOLUME empty JSON path",
            "FROM a\nVOLUME [\"/a\", \" \"]\n",
            "2:15",
        ),
        ("USER nothing", "FROM a\nUSER\n", "2:5"),
        ("WORKDIR nothing", "FROM a\nWORKDIR \n", "2:8"),
        (
            "STOPSIGNAL bad",
            "FROM a\nSTOPSIGNAL SIGTERMINATE\n",
            "2:12",
        ),
        ("STOPSIGNAL zero", "FROM a\nSTOPSIGNAL 0\n", "2:12"),
        ("MAINTAINER nothing", "FROM a\nMAINTAINER\n", "2:11"),
        ("SHELL shell form", "FROM a\nSHELL /bin/bash -c\n", "2:7"),
        (
            "SHELL bad JSON",
            "FROM a\nSHELL [\"/bin/bash\", \"-c\"\n",
            "2:25",
        ),
        (
            "SHELL trailing comma",
            "FROM a\nSHELL [\"/bin/bash\", ]\n",
            "2:21",
        ),
        ("SHELL empty", "FROM a\nSHELL []\n", "2:7"),
        ("SHELL nothing", "FROM a\nSHELL\n", "2:6"),
        (
            "SHELL not strings",
            "FROM a\nSHELL [\"sh\", true]\n",
            "2:14",
        ),
        ("HEALTHCHECK nothing", "FROM a\nHEALTHCHECK\n", "2:12"),
        (
            "HEALTHCHECK unknown type",
            "FROM a\nHEALTHCHECK --interval=5s RUN curl x\n",
            "2:27",
        ),
        (
            "HEALTHCHECK CMD without command",
            "FROM a\nHEALTHCHECK CMD\n",
            "2:16",
        ),
        ("HEALTHCHECK CMD []", "FROM a\nHEALTHCHECK CMD []\n", "2:17"),
        (
            "HEALTHCHECK NONE with arguments",
            "FROM a\nHEALTHCHECK NONE now\n",
            "2:18",
        ),
        (
            "HEALTHCHECK NONE with options",
            "FROM a\nHEALTHCHECK --retries=3 NONE\n",
            "2:13",
        ),
        (
            "HEALTHCHECK bad duration",
            "FROM a\nHEALTHCHECK --interval=5 CMD true\n",
            "2:24",
        ),
        (
            "HEALTHCHECK zero duration",
            "FROM a\nHEALTHCHECK --timeout=0s CMD true\n",
            "2:23",
        ),
        (
            "HEALTHCHECK bad retries",
            "FROM a\nHEALTHCHECK --retries=0 CMD true\n",
            "2:23",
        ),
        ("ONBUILD nothing", "FROM a\nONBUILD\n", "2:8"),
        ("ONBUILD ONBUILD", "FROM a\nONBUILD onbuild RUN x\n", "2:9"),
        ("ONBUILD FROM", "FROM a\nONBUILD FROM b\n", "2:9"),
        (
            "ONBUILD MAINTAINER",
            "FROM a\nONBUILD MAINTAINER me\n",
            "2:9",
        ),
        ("ONBUILD unknown", "FROM a\nONBUILD RUUN x\n", "2:9"),
        (
            "ONBUILD inner error",
            "FROM a\nONBUILD COPY --form=x a b\n",
            "2:14",
        ),
        ("escape directive value", "# escape=x\nFROM a\n", "1:10"),
        (
            "escape directive twice",
            "# escape=`\n#escape=\\\nFROM a\n",
            "2:2",
        ),
        (
            "syntax directive twice",
            "# syntax=a\n# SYNTAX = b\nFROM a\n",
            "2:3",
        ),
    ];

    #[test]
    fn errors_point_at_the_mistake() {
        let mut messages = String::new();
        for (name, text, place) in ERRORS {
            let got = err(text);
            let want = format!("Dockerfile:{place}: ");
            assert!(
                got.starts_with(&want),
                "{name}: got {got:?}, want it at {place}"
            );
            messages += &format!("{name}\n  {got}\n");
        }
        insta::assert_snapshot!("errors", messages);
    }

    #[test]
    fn error_is_the_lab_syntax_error() {
        match Dockerfile::parse("app/Dockerfile.dev", "FROM a\nRUUN x\n") {
            Err(Error::Syntax {
                file,
                line,
                column,
                message,
            }) => assert_eq!(
                (file.as_str(), line, column, message.as_str()),
                (
                    "app/Dockerfile.dev",
                    2,
                    1,
                    "unknown instruction RUUN (did you mean RUN?)"
                )
            ),
            other => panic!("{other:?}"),
        }
    }
}
