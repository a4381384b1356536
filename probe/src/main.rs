//! `probe`: copied into a container's root filesystem by the tests and run
//! there, it prints one JSON object describing what the process sees: its
//! ids, namespaces, mounts, capabilities, cgroup limits, network, resolver
//! configuration, terminal and more.
//!
//! It must work in any container, so it is built statically (no C library
//! in the container, no NSS), and nothing it reads is assumed to exist: a
//! field that cannot be read is `null`. See `probe --help` for usage.

mod caps;
mod cgroup;
mod etc;
mod net;
mod procfs;
mod report;
mod sys;
mod util;

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use report::{FIELDS, Report};

/// Exit status for a command line the probe does not understand.
const USAGE_ERROR: u8 = 2;

/// How long to stay alive after printing.
#[derive(Debug, PartialEq)]
enum Sleep {
    For(Duration),
    Forever,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Probe(Options),
}

/// How to probe.
#[derive(Debug, Default, PartialEq)]
struct Options {
    /// The fields to print, as named on the command line; empty means all.
    fields: Vec<String>,
    /// Whether and how long to sleep after printing.
    sleep: Option<Sleep>,
    /// The exit status.
    exit: u8,
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Probe(options)) => options,
        Err(message) => {
            eprintln!("probe: {message}");
            eprintln!("Try 'probe --help' for more information.");
            return ExitCode::from(USAGE_ERROR);
        }
    };

    let fields = &options.fields;
    let report = Report::collect(|name| fields.is_empty() || fields.iter().any(|f| f == name));
    if let Err(err) = print(&report) {
        eprintln!("probe: cannot write the report: {err}");
        return ExitCode::FAILURE;
    }

    match options.sleep {
        Some(Sleep::For(duration)) => thread::sleep(duration),
        Some(Sleep::Forever) => loop {
            thread::sleep(Duration::from_secs(3600));
        },
        None => {}
    }
    ExitCode::from(options.exit)
}

/// Writes the report as pretty JSON and a newline, flushed, so that a
/// reader sees it all even while the probe then sleeps.
fn print(report: &Report) -> io::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{json}")?;
    stdout.flush()
}

/// Parses the arguments after the program name.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|arg| format!("argument is not UTF-8: {}", arg.to_string_lossy()))?;
        // Options take their value as the next argument or after `=`.
        let (option, inline_value) = match arg.split_once('=') {
            Some((option, value)) if option.starts_with("--") => (option, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| args.next().map(|v| v.to_string_lossy().into_owned()))
                .ok_or_else(|| format!("{option} needs a value"))
        };
        match option {
            "-h" | "--help" => return Ok(Command::Help),
            "--sleep" => options.sleep = Some(parse_sleep(&value()?)?),
            "--exit" => {
                let text = value()?;
                options.exit = text
                    .parse()
                    .map_err(|_| format!("--exit takes a status from 0 to 255, not '{text}'"))?;
            }
            _ if option.starts_with('-') => return Err(format!("unknown option '{arg}'")),
            _ if report::is_field(&arg) => options.fields.push(arg),
            _ => {
                return Err(format!(
                    "unknown field '{arg}'; valid fields: {}",
                    field_list()
                ));
            }
        }
    }
    Ok(Command::Probe(options))
}

/// Parses a `--sleep` value: seconds, possibly fractional, or `inf`/`infinity`.
fn parse_sleep(text: &str) -> Result<Sleep, String> {
    let invalid = || format!("--sleep takes a number of seconds or 'infinity', not '{text}'");
    let seconds: f64 = text.parse().map_err(|_| invalid())?;
    if seconds == f64::INFINITY {
        return Ok(Sleep::Forever);
    }
    Duration::try_from_secs_f64(seconds)
        .map(Sleep::For)
        .map_err(|_| invalid())
}

/// The valid field names, comma-separated.
fn field_list() -> String {
    let names: Vec<&str> = FIELDS.iter().map(|field| field.name).collect();
    names.join(", ")
}

/// The `--help` text.
fn usage() -> String {
    format!(
        "\
probe: print, as one JSON object, what this process sees of its container

Usage: probe [OPTIONS] [FIELD...]

With no FIELD, print every field; otherwise print only the named top-level
fields. A field that cannot be read (no /proc, no /etc, ...) is null. Nothing
but the JSON is written to standard output.

Options:
  --sleep SECONDS  after printing, sleep SECONDS (fractions and 'infinity'
                   allowed), e.g. to keep a container alive
  --exit N         exit with status N (0-255) after printing (and sleeping)
  -h, --help       print this help

Fields:
{}

Exit status: 0 (or N from --exit), 1 if the report cannot be written,
2 for a bad command line.
",
        wrapped_field_list()
    )
}

/// The valid field names, comma-separated, as lines of at most 78 columns
/// indented by two spaces.
fn wrapped_field_list() -> String {
    let mut text = String::new();
    let mut line = String::from(" ");
    for (i, field) in FIELDS.iter().enumerate() {
        let comma = if i + 1 < FIELDS.len() { "," } else { "" };
        let word = format!(" {}{comma}", field.name);
        if line.len() + word.len() > 78 {
            text.push_str(&line);
            text.push('\n');
            line = String::from(" ");
        }
        line.push_str(&word);
    }
    text + &line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn no_arguments_means_everything() {
        assert_eq!(parse(&[]), Ok(Command::Probe(Options::default())));
    }

    #[test]
    fn parses_fields_and_options() {
        assert_eq!(
            parse(&["pid", "--sleep", "1.5", "hostname", "--exit=3"]),
            Ok(Command::Probe(Options {
                fields: vec!["pid".into(), "hostname".into()],
                sleep: Some(Sleep::For(Duration::from_millis(1500))),
                exit: 3
            }))
        );
        assert_eq!(
            parse(&["--sleep=infinity"]),
            Ok(Command::Probe(Options {
                sleep: Some(Sleep::Forever),
                ..Options::default()
            }))
        );
        assert_eq!(parse(&["pid", "--help"]), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_command_lines() {
        let unknown = parse(&["pid", "nonsense"]).unwrap_err();
        assert!(unknown.contains("'nonsense'") && unknown.contains("pid_namespace_view"));
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(parse(&["--sleep"]).is_err());
        assert!(parse(&["--sleep", "-1"]).is_err());
        assert!(parse(&["--sleep", "NaN"]).is_err());
        assert!(parse(&["--exit", "256"]).is_err());
        assert!(parse(&["--exit", "x"]).is_err());
    }
}
