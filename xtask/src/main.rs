//! Course and developer tooling, run as `cargo xtask <command>`.
//!
//! `demo` and `test` are the README's two commands: each first installs
//! what the machine lacks (see [`setup`]), then does its job.

mod bench;
mod book;
mod demo;
mod setup;
mod steps;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Tooling for containers the hard way")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing, then show a container from the built-in image.
    Demo,
    /// Install what is missing, then run every check: format, lints, tests, book.
    Test {
        /// Skip installing system packages (for a machine you set up yourself).
        #[arg(long)]
        no_install: bool,
    },
    /// Measure container start-up against runc, crun and the unshare floor.
    Bench {
        /// Runs per tool.
        #[arg(long, default_value_t = 200)]
        runs: usize,
    },
    /// Check the book's includes and build it.
    Book,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Demo => demo::run(),
        Command::Test { no_install } => test::run(!no_install),
        Command::Bench { runs } => bench::run(runs),
        Command::Book => book::run(),
    }
}
