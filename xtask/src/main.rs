//! Course and developer tooling, run as `cargo xtask <command>`.
//!
//! `demo` and `test` are the README's two commands: each first installs
//! what the machine lacks (see [`setup`]), then does its job.

mod bench;
mod bench_build;
mod bench_images;
mod bench_net;
mod book;
mod course;
mod demo;
mod grade;
mod setup;
mod steps;
mod student;
mod test;
mod transcripts;
mod vmtest;

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
    /// Install what is missing (Debian packages, mdBook) and nothing else.
    Setup,
    /// Measure berth against the reference tools: container start-up (runc,
    /// crun, unshare), network set-up (ip, nft), layer extraction (GNU
    /// tar), builds, push and pull (skopeo).
    Bench {
        /// Runs per tool.
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// Only the network table (lab 04).
        #[arg(long)]
        network_only: bool,
        /// Only the image tables (lab 05): layer extraction, cached
        /// rebuilds, push and pull.
        #[arg(long)]
        images_only: bool,
    },
    /// Check the book's includes and build it; with --check, re-run its
    /// checked transcripts instead (as root).
    Book {
        /// Re-run the console blocks marked `<!-- checked -->` and compare.
        #[arg(long)]
        check: bool,
        /// Only chapters whose file name contains this.
        #[arg(long, requires = "check")]
        chapter: Option<String>,
    },
    /// Run a step's tests (or a lab's, or the next unfinished step) and show progress.
    Check {
        /// A step (01.3) or a lab (01); by default the next step not yet passed.
        which: Option<String>,
        /// Run again whenever a file under labs/ changes.
        #[arg(long)]
        watch: bool,
    },
    /// Write the starter repository: the labs with their solutions cut out.
    Student {
        /// A new or empty directory.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Grade a submission (or the reference): every step's tests, scored, as a report.
    Grade {
        /// The student's repository; the reference tests are put back on top.
        #[arg(long)]
        submission: Option<std::path::PathBuf>,
        /// gradescope, classroom, junit or table.
        #[arg(long, default_value = "table")]
        format: String,
        /// Write the report here instead of to stdout.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Only this step (01.3) or lab (01).
        #[arg(long)]
        only: Option<String>,
        /// Seconds each test may take.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Run the steps that need root in a QEMU machine (no privileges
        /// needed): for graders in unprivileged containers.
        #[arg(long)]
        vm: bool,
        /// With --vm: the kernel to boot (by default the newest in /boot).
        #[arg(long, requires = "vm")]
        kernel: Option<std::path::PathBuf>,
        /// With --vm: use KVM instead of QEMU's emulator.
        #[arg(long, requires = "vm")]
        kvm: bool,
    },
    /// Run the kernel tests in a QEMU machine whose only cgroup hierarchy is v2.
    Vmtest {
        /// The kernel image to boot; by default the newest /boot/vmlinuz-*.
        #[arg(long)]
        kernel: Option<std::path::PathBuf>,
        /// Seconds the whole run (boot and tests) may take.
        #[arg(long, default_value_t = vmtest::DEFAULT_TIMEOUT)]
        timeout: u64,
        /// Use KVM instead of QEMU's emulator (TCG): much faster, where the
        /// host allows hardware virtualization.
        #[arg(long)]
        kvm: bool,
    },
    /// Show the next hint for a step.
    Hint {
        /// The step, like 01.3.
        step: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Demo => demo::run(),
        Command::Test { no_install } => test::run(!no_install),
        Command::Setup => {
            setup::install(&[])?;
            eprintln!("every package and tool the course uses is installed");
            Ok(())
        }
        Command::Bench {
            runs,
            network_only,
            images_only,
        } => bench::run(runs, network_only, images_only),
        Command::Book { check: false, .. } => book::run(),
        Command::Book {
            check: true,
            chapter,
        } => transcripts::check(chapter.as_deref()),
        Command::Check { which, watch } => course::check(which.as_deref(), watch),
        Command::Hint { step } => course::hint(&step),
        Command::Vmtest {
            kernel,
            timeout,
            kvm,
        } => vmtest::run(
            kernel.as_deref(),
            std::time::Duration::from_secs(timeout),
            kvm,
        ),
        Command::Student { out } => student::run(&out),
        Command::Grade {
            submission,
            format,
            out,
            only,
            timeout,
            vm,
            kernel,
            kvm,
        } => grade::run(
            submission.as_deref(),
            &format,
            out.as_deref(),
            only.as_deref(),
            timeout,
            vm.then_some(grade::Vm { kernel, kvm }),
        ),
    }
}
