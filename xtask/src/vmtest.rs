//! `cargo xtask vmtest`: runs the kernel tests on a machine that has only
//! cgroup v2, whatever the host has. The grader uses the same machine, through
//! [`run_tests`], to run single tests that need root when it has none.
//!
//! Many hosts (this one included) still mount the cgroup v1 controllers, and
//! a lab about cgroups must be checked against the unified hierarchy that
//! current distributions use. So this command boots a real kernel in QEMU and
//! runs the tests there:
//!
//! 1. It builds each test executable listed in [`SUITES`] with `cargo test
//!    --no-run --message-format=json` and reads the executables' paths from
//!    cargo's JSON messages, together with the package's binaries (tests
//!    find those through `CARGO_BIN_EXE_*`, a path fixed at compile time).
//! 2. It builds the static probe, as `cargo xtask test` does.
//! 3. It writes an initramfs: a cpio archive that the kernel unpacks into
//!    its first root filesystem. It holds busybox, the host tools the tests
//!    run ([`HOST_TOOLS`]), each executable (without its debugging
//!    information, most of its size) with every shared library it needs
//!    (found with `ldd`), the probe as `/probe`, the insta snapshots,
//!    the kernel modules of [`MODULES`] built for the kernel it boots, and
//!    two shell scripts. Everything from the host keeps its host path, so
//!    compile-time paths (`CARGO_BIN_EXE_*`, snapshot directories) hold in
//!    the machine too.
//! 4. It boots `/boot/vmlinuz-*` in QEMU with `cgroup_no_v1=all`, so cgroup2
//!    is the only hierarchy. The machine loads the modules (on Debian's
//!    kernels, overlayfs for lab 03, and veth, the bridge and nftables for
//!    lab 04, are modules), and puts the tests' temporary
//!    directories on an ext4 filesystem in a RAM disk ([`SCRATCH`]). The
//!    console is the serial port, which QEMU writes to its standard output;
//!    this command shows it and keeps it in `target/vmtest/console.log`.
//!    Each test executable runs between two marker lines, the first with the
//!    machine's uptime and the second with the executable's exit code and
//!    the uptime again, and then the machine powers off. The command passes
//!    only if every executable reported exit code 0 and the machine
//!    reported no error while setting itself up.
//!
//! [`run_tests`] takes the same steps for a list of single tests in any
//! workspace (the grader's copy of a submission): it builds the executables
//! that hold them, boots the machine once, runs each test alone between its
//! own markers, under busybox's `timeout`, and cuts each test's output and
//! exit code out of the console.
//!
//! On a Debian 12 machine the kernel in /boot is 6.1, often older than the
//! one the host runs, which is the point for lab 03: Linux 6.1 has no
//! overlayfs `lowerdir+` (6.8), so the overlays are mounted there with
//! `mount(2)`'s option string (`Api::Legacy`), the path a newer host does
//! not take by default.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::setup::{self, cargo};

/// The test executables run in the machine: (package, integration test
/// target or `lib` for the unit tests in src/, extra arguments for the
/// test harness, such as a name filter).
/// Adding a line here is all it takes to run another lab's kernel tests.
pub const SUITES: &[(&str, &str, &[&str])] = &[
    ("lab01-namespaces", "steps", &[]),
    ("lab02-cgroups", "kernel", &[]),
    ("lab02-cgroups", "lib", &[]),
    ("lab03-overlayfs", "kernel", &[]),
    ("lab03-overlayfs", "lib", &[]),
    ("lab04-bridge-veth-nat", "kernel", &[]),
    ("lab04-bridge-veth-nat", "firewall", &[]),
    ("lab04-bridge-veth-nat", "network", &[]),
    ("lab04-bridge-veth-nat", "dns", &[]),
    ("lab04-bridge-veth-nat", "lib", &[]),
];

/// Kernel modules the machine loads before the tests, with their
/// parameters: looked up in the booted kernel's `modules.dep` (which gives
/// what each needs loaded first) and skipped when `modules.builtin` says
/// the kernel has them built in. Debian builds all of these as modules.
const MODULES: &[(&str, &str)] = &[
    // Lab 03 mounts overlays.
    ("overlay", ""),
    // The scratch filesystem (SCRATCH): a RAM disk and ext4 on it, whose
    // metadata checksums need crc32c (a soft dependency, which modules.dep
    // does not list).
    ("brd", RAM_DISK_PARAMS),
    ("crc32c_generic", ""),
    ("ext4", ""),
    // Lab 04: veth pairs and bridges, and the firewall table `ip berth`,
    // whose chains and rules need nf_tables' nat chain type (nft_chain_nat),
    // `dnat` (nft_nat), `masquerade` (nft_masq), `ct state` and `ct status`
    // (nft_ct) and `fib daddr type local` (nft_fib_ipv4). nf_conntrack and
    // nf_nat come with them (modules.dep).
    ("veth", ""),
    ("bridge", ""),
    ("nf_tables", ""),
    ("nft_chain_nat", ""),
    ("nft_nat", ""),
    ("nft_masq", ""),
    ("nft_ct", ""),
    ("nft_fib_ipv4", ""),
];

/// One RAM disk, /dev/ram0, of 512 MiB. Its pages are allocated as they
/// are written.
const RAM_DISK_PARAMS: &str = "rd_nr=1 rd_size=524288";

/// Where the tests' temporary directories go (`TMPDIR`): an ext4 filesystem
/// on /dev/ram0, as /tmp is on the root filesystem of a Debian 12 host. The
/// machine's root is a tmpfs, and tmpfs stores `user.*` extended
/// attributes only since Linux 6.6: overlays mounted with `userxattr`
/// (lab 03) need them in their upper directory.
const SCRATCH: &str = "/var/tmp";

/// Host programs the tests run, copied with their libraries. They take the
/// place of busybox's applets of the same name, which lack options the
/// tests use (busybox `setpriv` has no `--reuid`, for one).
const HOST_TOOLS: &[&str] = &[
    "/usr/bin/setpriv",
    "/usr/bin/unshare",
    "/usr/sbin/ip",
    "/usr/sbin/nft",
    "/usr/bin/ps",
    "/usr/bin/killall",
    // GNU cp: lab 03 copies layers with `--no-preserve=links -T`.
    "/usr/bin/cp",
    // Makes the scratch filesystem (busybox's makes ext2 only).
    MKE2FS,
];

/// e2fsprogs' mke2fs, which [`stage2`] runs by its path: busybox's shell
/// prefers its own applets to programs found in `PATH`.
const MKE2FS: &str = "/usr/sbin/mke2fs";

/// The statically linked busybox the machine's shell and tools come from.
const BUSYBOX: &str = "/bin/busybox";

/// The kernel's command line. `cgroup_no_v1=all` keeps every controller off
/// the v1 hierarchies, so that cgroup2 is the only one; `panic=-1` reboots at
/// once on a panic, which `-no-reboot` turns into QEMU exiting.
const KERNEL_ARGS: &str = "console=ttyS0 panic=-1 cgroup_no_v1=all quiet";

/// The marker the machine prints before each test executable runs.
const BEGIN_MARKER: &str = "VMTEST-BEGIN";

/// The marker the machine prints after each test executable.
const RESULT_MARKER: &str = "VMTEST-RESULT";

/// The marker of a line that says the machine could not set itself up
/// (a module that does not load, no scratch filesystem): the run fails.
const ERROR_MARKER: &str = "VMTEST-ERROR";

/// The default for `--timeout`, in seconds: the whole run, boot included.
pub const DEFAULT_TIMEOUT: u64 = 20 * 60;

/// What [`run_tests`] allows the machine besides the tests themselves:
/// booting, copying the initramfs into a tmpfs, loading the modules and
/// powering off. Under QEMU's emulator these take about 20 seconds on a
/// 2-core host; the rest is room for a slower one.
const MACHINE_ALLOWANCE: Duration = Duration::from_secs(5 * 60);

/// What [`run_tests`] allows each test beyond its own timeout: busybox's
/// `timeout` looks at the clock once a second, and the shell starts each
/// test with a few programs.
const TEST_ALLOWANCE: Duration = Duration::from_secs(15);

/// The exit status the machine's shell reports for a program killed by
/// SIGKILL (128 + 9), which is how busybox's `timeout -s KILL` ends a test.
const KILLED: i32 = 128 + 9;

/// One test executable to run in the machine, with its arguments.
#[derive(Debug)]
struct Suite {
    /// The name the markers give it: `package/target` for a whole
    /// executable, `package/target::path` for a single test.
    name: String,
    /// The package's directory, where cargo would run the test.
    crate_dir: PathBuf,
    executable: PathBuf,
    args: Vec<String>,
    /// Whole seconds after which busybox's `timeout` kills it, if any.
    timeout: Option<u64>,
}

/// Builds everything, boots the machine, runs the tests there and checks
/// their exit codes. `kernel` overrides the newest `/boot/vmlinuz-*`; `kvm`
/// runs the machine with KVM instead of QEMU's emulator.
pub fn run(kernel: Option<&Path>, timeout: Duration, kvm: bool) -> Result<()> {
    let started = Instant::now();
    let kernel = Kernel::find(kernel)?;
    let workspace = setup::workspace();
    let out_dir = workspace.join("target/vmtest");

    let builder = Builder::new(&workspace, None, true)?;
    let mut suites = Vec::new();
    let mut programs = Vec::new();
    for (package, target, args) in SUITES {
        let built = builder.build(package, target)?;
        suites.push(Suite {
            name: format!("{package}/{target}"),
            crate_dir: built.crate_dir,
            executable: built.executable,
            args: args.iter().map(|a| a.to_string()).collect(),
            timeout: None,
        });
        programs.extend(built.programs);
    }
    let machine = Machine {
        kernel: &kernel,
        workspace: &workspace,
        out_dir: &out_dir,
        timeout,
        kvm,
        echo: Echo::Stdout,
    };
    let initramfs = machine.pack(&suites, &programs)?;
    let built = started.elapsed();

    let booted = Instant::now();
    let console = machine.boot(&initramfs)?;
    let log = &console.log;
    match &console.ended {
        Ended::Exited => {}
        Ended::Killed(after) => bail!(
            "the VM did not power off within {after:?}; QEMU was killed. The console output is in {}",
            log.display()
        ),
        Ended::Failed(status) => bail!(
            "QEMU failed with {status}; the console output is in {}",
            log.display()
        ),
    }
    let console_text = &console.text;
    let in_vm = booted.elapsed();

    let mut failed = Vec::new();
    eprintln!();
    for line in machine_errors(console_text) {
        eprintln!("vmtest: the machine reported: {line}");
        failed.push(line);
    }
    for suite in &suites {
        let report = Report::cut(console_text, &suite.name);
        match report.code {
            Some(0) => eprintln!(
                "vmtest: {} passed ({})",
                suite.name,
                summary(&report.output)
            ),
            Some(code) => {
                eprintln!("vmtest: {} FAILED (exit code {code})", suite.name);
                failed.push(format!("{} exited with {code}", suite.name));
            }
            None => {
                eprintln!("vmtest: {} did not finish", suite.name);
                failed.push(format!("{} did not report its exit code", suite.name));
            }
        }
    }
    eprintln!(
        "vmtest: build {:.0?}, machine {:.0?}, total {:.0?}; console log: {}",
        built,
        in_vm,
        started.elapsed(),
        log.display()
    );
    if !failed.is_empty() {
        bail!(
            "kernel tests in the VM failed: {}; the console output is in {}",
            failed.join(", "),
            log.display()
        );
    }
    Ok(())
}

/// One test for [`run_tests`], named as `cargo test -p PACKAGE --test
/// TARGET -- --exact NAME` (or `--lib` for the target `lib`) selects it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VmTest {
    /// The package's name, as in its Cargo.toml.
    pub package: String,
    /// `lib` for the unit tests in the package's src/, or the name of an
    /// integration test (its file name in tests/, without `.rs`).
    pub target: String,
    /// The test's full path in its executable, as libtest prints it
    /// (`namespace::tests::parses_namespace_links`, `step_01_2_hostname_and_pid_1`).
    pub name: String,
}

impl VmTest {
    /// The name the console markers give the test:
    /// `package/target::name`.
    fn label(&self) -> String {
        format!("{}/{}::{}", self.package, self.target, self.name)
    }
}

/// How a test ended in the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmStatus {
    /// It exited with 0, and the test harness said that one test passed.
    Passed,
    /// Anything else: it failed, did not build, matched no test, or never
    /// reported because the machine stopped first. The outcome's output
    /// says which.
    Failed,
    /// busybox's `timeout` killed it when its time ran out.
    TimedOut,
}

/// What [`run_tests`] found out about one test.
#[derive(Debug, Clone, PartialEq)]
pub struct VmOutcome {
    /// The test this is the outcome of.
    pub test: VmTest,
    pub status: VmStatus,
    /// What the test printed on the machine's console between its markers
    /// (the harness's output, and any kernel message printed meanwhile),
    /// after a first line that explains a failure other than the test's
    /// own: the executable did not build, no test has the name, the time
    /// ran out, the machine stopped. A failed test's output ends with any
    /// error the machine reported while setting itself up.
    pub output: String,
    /// How long the test ran, by the machine's clock; 0 when it did not
    /// start or did not finish.
    pub seconds: f64,
}

/// Runs single tests as root in the machine, for the grader.
///
/// `workspace` is the cargo workspace that holds the tests (the grader's
/// copy of a submission), and `target_dir` the `CARGO_TARGET_DIR` it is
/// built in; the machine's initramfs and console log go to
/// `target_dir/vmtest`. For each distinct package and target among `tests`
/// this builds the test executable (`cargo test --no-run`), then it boots
/// the machine once and runs each test alone, in its package's directory
/// with the environment `cargo test` would give it, as `EXECUTABLE
/// --test-threads=1 --exact NAME` under `timeout -s KILL` with `timeout`
/// (rounded up to whole seconds). The machine as a whole may run for
/// [`MACHINE_ALLOWANCE`] plus `timeout` and [`TEST_ALLOWANCE`] for each
/// test; a test it had not finished by then, or when it stopped for any
/// other reason, fails as not finished.
///
/// Returns one outcome for each of `tests`, in the same order. A test whose
/// executable did not build fails with cargo's errors as its output, and
/// the machine is not booted when no test built. `kernel` and `kvm` are as
/// for [`run`]; the console is echoed to standard error. Errors are for
/// what stops every test from running: no kernel or modules to boot, no
/// QEMU, no probe, no `cargo metadata`.
pub fn run_tests(
    workspace: &Path,
    target_dir: &Path,
    tests: &[VmTest],
    kernel: Option<&Path>,
    kvm: bool,
    timeout: Duration,
) -> Result<Vec<VmOutcome>> {
    if tests.is_empty() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let kernel = Kernel::find(kernel)?;
    let target_dir = std::path::absolute(target_dir)?;
    let builder = Builder::new(workspace, Some(&target_dir), false)?;
    let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    let seconds = seconds.max(1);

    // Build each executable once, and run each distinct test once.
    let mut builds: BTreeMap<(&str, &str), std::result::Result<Built, String>> = BTreeMap::new();
    let mut suites = Vec::new();
    let mut programs = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for test in tests {
        let key = (test.package.as_str(), test.target.as_str());
        let built = builds.entry(key).or_insert_with(|| {
            builder
                .build(&test.package, &test.target)
                .map_err(|err| format!("{err:#}"))
        });
        let Ok(built) = built else { continue };
        if !valid_test_name(&test.name) || !labels.insert(test.label()) {
            continue;
        }
        programs.extend(built.programs.iter().cloned());
        suites.push(Suite {
            name: test.label(),
            crate_dir: built.crate_dir.clone(),
            executable: built.executable.clone(),
            args: vec!["--exact".into(), test.name.clone()],
            timeout: Some(seconds),
        });
    }

    let console = if suites.is_empty() {
        None
    } else {
        let allowance = MACHINE_ALLOWANCE + (timeout + TEST_ALLOWANCE) * suites.len() as u32;
        let machine = Machine {
            kernel: &kernel,
            workspace,
            out_dir: &target_dir.join("vmtest"),
            timeout: allowance,
            kvm,
            echo: Echo::Stderr,
        };
        let programs: Vec<PathBuf> = programs.into_iter().collect();
        let initramfs = machine.pack(&suites, &programs)?;
        let built = started.elapsed();
        let booted = Instant::now();
        let console = machine.boot(&initramfs)?;
        eprintln!(
            "\nvmtest: build {built:.0?}, machine {:.0?} for {} tests; console log: {}",
            booted.elapsed(),
            suites.len(),
            console.log.display()
        );
        Some(console)
    };

    let outcomes = tests
        .iter()
        .map(|test| {
            let failed = |output: String| VmOutcome {
                test: test.clone(),
                status: VmStatus::Failed,
                output,
                seconds: 0.0,
            };
            if let Err(reason) = &builds[&(test.package.as_str(), test.target.as_str())] {
                return failed(format!("the test executable did not build: {reason}"));
            }
            if !valid_test_name(&test.name) {
                return failed(format!("{:?} is not the name of a test", test.name));
            }
            let console = console
                .as_ref()
                .expect("the machine ran the tests that built");
            let report = Report::cut(&console.text, &test.label());
            let (status, mut output) = judge(&report, seconds, &console.ended);
            if status != VmStatus::Passed {
                for error in machine_errors(&console.text) {
                    output.push_str(&format!("\nthe machine reported: {error}"));
                }
            }
            VmOutcome {
                test: test.clone(),
                status,
                output,
                seconds: report.seconds.unwrap_or(0.0),
            }
        })
        .collect();
    Ok(outcomes)
}

/// Whether `name` can be a test's path: one word, since the console markers
/// are split at spaces.
fn valid_test_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Decides how a test ended from its part of the console: `seconds` is the
/// timeout it ran under. Returns the status and the output to report,
/// which starts with the reason when the test's own output may not show
/// it.
fn judge(report: &Report, seconds: u64, ended: &Ended) -> (VmStatus, String) {
    let output = report.output.trim_end();
    let explain = |why: String| {
        if output.is_empty() {
            why
        } else {
            format!("{why}\n{output}")
        }
    };
    match report.code {
        None => (
            VmStatus::Failed,
            explain(format!(
                "the machine stopped before the test finished ({})",
                ended.describe()
            )),
        ),
        Some(0) if harness_counts(output) == Some((1, 0)) => (VmStatus::Passed, output.to_string()),
        Some(0) => (
            VmStatus::Failed,
            explain("the test did not run: its executable has no test of exactly this name".into()),
        ),
        Some(KILLED) if report.seconds.is_some_and(|s| s + 1.0 >= seconds as f64) => (
            VmStatus::TimedOut,
            explain(format!("timed out after {seconds} s in the machine")),
        ),
        Some(code) => (
            VmStatus::Failed,
            explain(format!("the test executable exited with {code}")),
        ),
    }
}

/// The numbers of tests passed and failed on libtest's `test result:` line
/// (`test result: ok. 1 passed; 0 failed; 0 ignored; …`), if it printed one.
fn harness_counts(output: &str) -> Option<(u64, u64)> {
    let line = output.lines().rev().find(|l| l.contains("test result: "))?;
    let count = |what: &str| -> Option<u64> {
        line.split(';').find_map(|part| {
            let number = part.trim().strip_suffix(what)?.trim_end();
            number.rsplit(' ').next()?.parse().ok()
        })
    };
    Some((count(" passed")?, count(" failed")?))
}

/// The lines in which the machine reported that it could not set itself
/// up, without the marker.
fn machine_errors(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| {
            let at = l.find(ERROR_MARKER)?;
            Some(l[at..].trim().to_string())
        })
        .collect()
}

/// The kernel the machine boots, with the modules it loads.
#[derive(Debug)]
struct Kernel {
    image: PathBuf,
    modules: Modules,
}

impl Kernel {
    /// `image`, or else the newest `/boot/vmlinuz-*`, once it is known to be
    /// readable, and its modules from /lib/modules.
    fn find(image: Option<&Path>) -> Result<Kernel> {
        let image = match image {
            Some(path) => path.to_path_buf(),
            None => newest_kernel(Path::new("/boot"))?,
        };
        match File::open(&image) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                "cannot read the kernel image {k} ({err}); the tests boot it in QEMU. \
                 Run as root, make it readable (sudo chmod a+r {k}), or pass --kernel",
                k = image.display()
            ),
            Err(err) => bail!("cannot read the kernel image {}: {err}", image.display()),
        }
        let release = kernel_release(&image)?;
        let modules = Modules::find(Path::new("/lib/modules"), &release)?;
        Ok(Kernel { image, modules })
    }
}

/// Where the machine's console goes besides its log.
#[derive(Debug, Clone, Copy)]
enum Echo {
    Stdout,
    Stderr,
}

/// One run of the machine: what it boots, where its files go, and how long
/// it may take.
struct Machine<'a> {
    kernel: &'a Kernel,
    /// The workspace the tests belong to (insta looks for snapshots there).
    workspace: &'a Path,
    /// Where the initramfs and the console log are written.
    out_dir: &'a Path,
    /// How long the machine may run, boot included.
    timeout: Duration,
    kvm: bool,
    echo: Echo,
}

impl Machine<'_> {
    /// Builds the probe and writes the initramfs that runs `suites` (with
    /// the `programs` they run) into the output directory; returns its path.
    fn pack(&self, suites: &[Suite], programs: &[PathBuf]) -> Result<PathBuf> {
        std::fs::create_dir_all(self.out_dir)
            .with_context(|| format!("cannot create {}", self.out_dir.display()))?;
        let probe = crate::test::build_probe()?;
        let initramfs = self.out_dir.join("initramfs.cpio");
        let archive = contents(
            self.workspace,
            suites,
            programs,
            &probe,
            &self.kernel.modules,
        )?;
        archive.write(&initramfs)?;
        eprintln!(
            "initramfs: {} ({} MB, {} entries)",
            initramfs.display(),
            std::fs::metadata(&initramfs)?.len() / 1_000_000,
            archive.entries.len()
        );
        Ok(initramfs)
    }

    /// Boots the kernel with `initramfs` and waits until the machine stops;
    /// the console log goes to the output directory.
    fn boot(&self, initramfs: &Path) -> Result<Console> {
        boot(
            &self.kernel.image,
            initramfs,
            &self.out_dir.join("console.log"),
            self.timeout,
            self.kvm,
            self.echo,
        )
    }
}

/// The release of the kernel in the image `kernel` (what `uname -r` prints
/// there, and the name of its directory under /lib/modules): from the name
/// of an image `vmlinuz-RELEASE`, as distributions install them, or else
/// from the version string that an x86 image's setup header points to.
fn kernel_release(kernel: &Path) -> Result<String> {
    if let Some(release) = kernel
        .file_name()
        .and_then(|n| n.to_str()?.strip_prefix("vmlinuz-"))
        .filter(|r| !r.is_empty())
    {
        return Ok(release.to_string());
    }
    let image =
        std::fs::read(kernel).with_context(|| format!("cannot read {}", kernel.display()))?;
    header_release(&image).with_context(|| {
        format!(
            "cannot tell the release of the kernel {}: its name is not vmlinuz-RELEASE \
             and it has no x86 boot header with a version string; the machine needs its \
             modules from /lib/modules/RELEASE",
            kernel.display()
        )
    })
}

/// The release in an x86 bzImage: the setup header (magic `HdrS` at 0x202)
/// holds at 0x20e the offset, less 0x200, of a string such as
/// `6.1.0-56-amd64 (debian-kernel@…) #1 SMP …`.
fn header_release(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let offset = u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?]) as usize + 0x200;
    let text = image.get(offset..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    let release = std::str::from_utf8(&text[..end]).ok()?;
    (!release.is_empty()).then(|| release.to_string())
}

/// The kernel modules of [`MODULES`] for one kernel release, with those
/// they depend on, in the order to load them.
#[derive(Debug)]
struct Modules {
    /// `/lib/modules/RELEASE`.
    dir: PathBuf,
    /// (path relative to `dir`, as modules.dep gives it, parameters).
    load: Vec<(String, String)>,
}

impl Modules {
    fn find(root: &Path, release: &str) -> Result<Modules> {
        let dir = root.join(release);
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).with_context(|| {
                format!(
                    "cannot read {}: the machine needs the modules of the kernel it boots \
                     ({release}); install them with apt-get install linux-image-{release}",
                    dir.join(name).display()
                )
            })
        };
        let deps = read("modules.dep")?;
        // Older kernels may lack the list of built-in modules.
        let builtin = read("modules.builtin").unwrap_or_default();
        let load = load_order(&deps, &builtin, MODULES)
            .with_context(|| format!("the modules of kernel {release} (in {})", dir.display()))?;
        Ok(Modules { dir, load })
    }

    /// Adds each module, decompressed, under its host path.
    fn add_to(&self, archive: &mut Archive) -> Result<()> {
        for (rel, _) in &self.load {
            let host = self.dir.join(rel);
            let at = archive.mirror(&host)?;
            let data = decompressed(&host)?;
            archive.add(uncompressed_name(&at), Entry::Data(data, 0o644));
        }
        Ok(())
    }

    /// The shell commands that load the modules, each reporting its failure.
    fn script(&self) -> String {
        let mut script = String::new();
        for (rel, params) in &self.load {
            let path = self.dir.join(uncompressed_name(Path::new(rel)));
            let path = quote(&path.display().to_string());
            let params = if params.is_empty() {
                String::new()
            } else {
                format!(" {params}")
            };
            script.push_str(&format!(
                "insmod {path}{params} || echo \"{ERROR_MARKER} cannot load the module {path}\"\n"
            ));
        }
        script
    }
}

/// The name of a module file `NAME.ko[.COMPRESSION]`, as `modprobe` and
/// `/proc/modules` spell it (with `_` for `-`).
fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let (name, _) = file.split_once(".ko")?;
    Some(name.replace('-', "_"))
}

/// The modules to load for `wanted`, dependencies first, as paths relative
/// to the modules directory with their parameters. `deps` is modules.dep
/// (`kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko …`),
/// `builtin` is modules.builtin (one path a line): a built-in module has
/// nothing to load.
fn load_order(deps: &str, builtin: &str, wanted: &[(&str, &str)]) -> Result<Vec<(String, String)>> {
    let table: BTreeMap<String, (String, Vec<String>)> = deps
        .lines()
        .filter_map(|line| {
            let (path, needs) = line.split_once(':')?;
            let needs = needs.split_whitespace().map(str::to_string).collect();
            Some((module_name(path)?, (path.trim().to_string(), needs)))
        })
        .collect();
    let builtin: Vec<String> = builtin.lines().filter_map(module_name).collect();

    fn visit(
        path: &str,
        params: &str,
        table: &BTreeMap<String, (String, Vec<String>)>,
        order: &mut Vec<(String, String)>,
    ) {
        if order.iter().any(|(p, _)| p == path) {
            return;
        }
        let name = module_name(path).unwrap_or_default();
        if let Some((_, needs)) = table.get(&name) {
            for need in needs {
                visit(need, "", table, order);
            }
        }
        order.push((path.to_string(), params.to_string()));
    }

    let mut order = Vec::new();
    for (name, params) in wanted {
        let name = name.replace('-', "_");
        match table.get(&name) {
            Some((path, _)) => visit(path, params, &table, &mut order),
            None if builtin.contains(&name) => {}
            None => bail!(
                "the module {name} is neither in modules.dep nor built in; \
                 the tests in the machine need it"
            ),
        }
    }
    Ok(order)
}

/// `path` without a compression suffix after `.ko`.
fn uncompressed_name(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    match text.rfind(".ko") {
        Some(at) => PathBuf::from(&text[..at + 3]),
        None => path.to_path_buf(),
    }
}

/// The contents of the module file `path`, decompressed when its name ends
/// in `.xz`, `.zst` or `.gz` (busybox's insmod cannot load those, and a 6.1
/// kernel decompresses only what it was built to).
fn decompressed(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let (tool, package) = if name.ends_with(".ko") {
        return std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    } else if name.ends_with(".ko.xz") {
        ("xz", "xz-utils")
    } else if name.ends_with(".ko.zst") {
        ("zstd", "zstd")
    } else if name.ends_with(".ko.gz") {
        ("gzip", "gzip")
    } else {
        bail!(
            "{}: a kernel module compressed in a way this command does not know \
             (it handles .ko, .ko.xz, .ko.zst and .ko.gz)",
            path.display()
        );
    };
    let output = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| {
            format!(
                "cannot run {tool} to decompress {} (install it with apt-get install {package})",
                path.display()
            )
        })?;
    if !output.status.success() || output.stdout.is_empty() {
        bail!("{tool} -dc {} failed ({})", path.display(), output.status);
    }
    Ok(output.stdout)
}

/// The kernel image with the highest version under `boot`.
fn newest_kernel(boot: &Path) -> Result<PathBuf> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir(boot)
        .with_context(|| format!("cannot list {}", boot.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort_by_key(|p| version_key(&p.file_name().unwrap().to_string_lossy()));
    kernels.pop().with_context(|| {
        format!(
            "no kernel image {}/vmlinuz-*: install one with apt-get install linux-image-amd64, or pass --kernel",
            boot.display()
        )
    })
}

/// The numbers in a name, in order, so that `6.10.0` sorts after `6.9.0`.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// Builds test executables in one workspace, with cargo's JSON messages.
struct Builder<'a> {
    workspace: &'a Path,
    /// The `CARGO_TARGET_DIR` to build in; `None` leaves it to cargo (and
    /// to the environment).
    target_dir: Option<&'a Path>,
    /// Whether cargo's messages go to the terminal as it builds (else they
    /// are kept, and a failure's error carries them).
    show: bool,
    /// The workspace's packages, from `cargo metadata`.
    packages: Vec<Value>,
}

/// A test executable and what it needs in the machine.
#[derive(Debug, Clone)]
struct Built {
    /// The package's directory, where cargo runs its tests.
    crate_dir: PathBuf,
    executable: PathBuf,
    /// The package's binaries that cargo built along (`CARGO_BIN_EXE_*`).
    programs: Vec<PathBuf>,
}

impl<'a> Builder<'a> {
    fn new(workspace: &'a Path, target_dir: Option<&'a Path>, show: bool) -> Result<Self> {
        let mut builder = Builder {
            workspace,
            target_dir,
            show,
            packages: Vec::new(),
        };
        let output = builder
            .cargo(&["metadata", "--no-deps", "--format-version", "1"])
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run cargo metadata")?;
        if !output.status.success() {
            bail!("cargo metadata failed in {}", workspace.display());
        }
        let metadata: Value = serde_json::from_slice(&output.stdout)?;
        builder.packages = metadata["packages"].as_array().cloned().unwrap_or_default();
        Ok(builder)
    }

    /// `cargo` with `args`, run in the workspace and its target directory.
    fn cargo(&self, args: &[&str]) -> Command {
        let mut command = cargo(args);
        command.current_dir(self.workspace);
        if let Some(dir) = self.target_dir {
            command.env("CARGO_TARGET_DIR", dir);
        }
        command
    }

    /// Builds the test executable of `target` (`lib`, as in steps.toml, for
    /// the unit tests in the package's src/) in `package`.
    fn build(&self, package: &str, target: &str) -> Result<Built> {
        let Some(manifest) = self
            .packages
            .iter()
            .find(|p| p["name"] == *package)
            .and_then(|p| p["manifest_path"].as_str())
        else {
            bail!(
                "the package {package} is not in the workspace {}",
                self.workspace.display()
            );
        };
        let crate_dir = Path::new(manifest).parent().unwrap().to_path_buf();
        eprintln!("building {package} --test {target}");
        let mut args = vec![
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
            "-p",
            package,
        ];
        if target == "lib" {
            args.push("--lib");
        } else {
            args.extend(["--test", target]);
        }
        let mut command = self.cargo(&args);
        if self.show {
            command.stderr(Stdio::inherit());
        }
        let output = command.output().context("cannot run cargo test --no-run")?;
        if !output.status.success() {
            let errors = String::from_utf8_lossy(&output.stderr);
            bail!(
                "building {package} --test {target} failed{}{}",
                if errors.trim().is_empty() { "" } else { ":\n" },
                tail(errors.trim_end(), 4000)
            );
        }
        let (tests, programs) = executables(&String::from_utf8_lossy(&output.stdout), target);
        let [executable] = tests.as_slice() else {
            bail!(
                "cargo built {} executables for {package} --test {target}",
                tests.len()
            );
        };
        Ok(Built {
            crate_dir,
            executable: executable.clone(),
            programs,
        })
    }
}

/// The end of `text`, at most about `max` bytes of it, starting on a whole
/// character.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Reads cargo's JSON messages: the executables of test target `target`,
/// and those of binary targets.
fn executables(messages: &str, target: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut tests, mut bins) = (Vec::new(), Vec::new());
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        let kinds = message["target"]["kind"].as_array().cloned();
        let is = |kind: &str| kinds.iter().flatten().any(|k| k == kind);
        let wanted = if target == "lib" {
            is("lib")
        } else {
            is("test") && message["target"]["name"] == target
        };
        if message["profile"]["test"] == true && wanted {
            tests.push(PathBuf::from(executable));
        } else if is("bin") {
            bins.push(PathBuf::from(executable));
        }
    }
    (tests, bins)
}

/// The shared libraries `program` loads, the dynamic loader included, as
/// `ldd` names them. None for a static program.
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(program)
        .output()
        .context("cannot run ldd")?;
    // ldd fails for a static program ("not a dynamic executable").
    if !output.status.success() {
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&output.stdout)))
}

/// Reads `ldd` output: `libc.so.6 => /lib/…/libc.so.6 (0x…)` names a library
/// and where it was found; `/lib64/ld-linux-x86-64.so.2 (0x…)` is the loader;
/// `linux-vdso.so.1 (0x…)` is provided by the kernel and has no file.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, found)) => found.trim(),
                None => line,
            };
            let path = path.split(" (").next().unwrap_or("").trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Everything the machine's root filesystem holds.
fn contents(
    workspace: &Path,
    suites: &[Suite],
    programs: &[PathBuf],
    probe: &Path,
    modules: &Modules,
) -> Result<Archive> {
    let mut archive = Archive::default();
    for (dir, mode) in [
        ("proc", 0o755),
        ("sys", 0o755),
        ("dev", 0o755),
        ("run", 0o755),
        ("newroot", 0o755),
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
        ("root", 0o700),
    ] {
        archive.dir(dir, mode);
    }
    // The kernel opens /dev/console for the first program's standard
    // input and output, before anything mounts /dev.
    archive.char_device("dev/console", 5, 1);
    archive.data(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        0o644,
    );
    archive.data(
        "etc/group",
        "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
        0o644,
    );
    archive.data("etc/hostname", "vmtest\n", 0o644);

    // The directories busybox installs its applets in, laid out as on the
    // host: on a merged-/usr system, /bin and /sbin are links into /usr.
    for dir in ["bin", "sbin", "lib", "lib64", "usr/bin", "usr/sbin"] {
        let host = Path::new("/").join(dir);
        match std::fs::read_link(&host) {
            Ok(target) => archive.add(dir, Entry::Symlink(target)),
            Err(_) => archive.dir(dir, 0o755),
        }
    }
    archive.host_program(Path::new(BUSYBOX))?;
    for tool in HOST_TOOLS {
        let tool = Path::new(tool);
        if !tool.exists() {
            bail!(
                "{} is missing; the tests run it (cargo xtask test installs it)",
                tool.display()
            );
        }
        archive.host_program(tool)?;
    }
    // Suites of one package share its binaries, directory and executables.
    for program in programs.iter().collect::<BTreeSet<_>>() {
        archive.built_program(program)?;
    }
    // mke2fs's defaults for ext4, which it has built in too.
    let mke2fs_conf = Path::new("/etc/mke2fs.conf");
    if mke2fs_conf.exists() {
        archive.host_file(mke2fs_conf)?;
    }
    modules.add_to(&mut archive)?;
    archive.file("probe", probe, 0o755);
    for executable in suites
        .iter()
        .map(|s| &s.executable)
        .collect::<BTreeSet<_>>()
    {
        archive.built_program(executable)?;
    }
    for crate_dir in suites.iter().map(|s| &s.crate_dir).collect::<BTreeSet<_>>() {
        archive.host_dir(crate_dir)?;
        for snapshot in snapshots(crate_dir)? {
            archive.host_file(&snapshot)?;
        }
    }
    archive.data("init", STAGE1, 0o755);
    archive.data("vmtest", &stage2(workspace, suites, modules), 0o755);
    Ok(archive)
}

/// The insta snapshot files under a crate's directory (`*.snap` in
/// `snapshots` directories), skipping build output.
fn snapshots(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.file_type()?.is_dir() {
            if name != "target" && !name.starts_with('.') {
                found.extend(snapshots(&path)?);
            }
        } else if name.ends_with(".snap") && dir.ends_with("snapshots") {
            found.push(path);
        }
    }
    Ok(found)
}

/// The first program the kernel runs (`/init`). The initramfs is the
/// kernel's own `rootfs` mount, which can never be unmounted, and
/// `pivot_root(2)` refuses to move it away (EINVAL): containers could not
/// start. So this stage copies everything into a tmpfs and makes that the
/// root with `switch_root`, as an initramfs does before it starts a
/// distribution's init; then it runs the second stage, `/vmtest`.
const STAGE1: &str = r#"#!/bin/busybox sh
# busybox finds its own path in /proc/self/exe to link its applets to.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
umount /proc
mount -t tmpfs -o mode=0755 tmpfs /newroot
for entry in /*; do
    case "$entry" in
        /newroot|/init) ;;
        *) cp -a "$entry" /newroot/ ;;
    esac
done
exec switch_root /newroot /vmtest
echo "switch_root failed"
poweroff -f
"#;

/// The second stage: mounts the filesystems a systemd machine has (cgroup2
/// alone at /sys/fs/cgroup, with the controllers enabled for the cgroups
/// below the root), loads the kernel modules, makes the scratch filesystem,
/// runs each test executable from its crate's directory with the
/// environment `cargo test` would give it (under busybox's `timeout` when
/// the suite has one), prints the markers, and powers off.
fn stage2(workspace: &Path, suites: &[Suite], modules: &Modules) -> String {
    let mut script = String::from(
        r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# No tmpfs on /tmp: the root is a tmpfs already, and the workspace (whose
# paths the tests were compiled with) may itself live under /tmp.
mount -t tmpfs -o mode=755 tmpfs /run
# systemd mounts cgroup2 with these options and makes every mount shared.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
mount --make-rshared /
controllers=""
for c in cpu cpuset io memory pids; do
    grep -qw "$c" /sys/fs/cgroup/cgroup.controllers && controllers="$controllers +$c"
done
echo $controllers > /sys/fs/cgroup/cgroup.subtree_control
hostname vmtest
ip link set lo up
cgroups=$(awk '$3 ~ /^cgroup/ { printf "%s %s; ", $2, $3 }' /proc/mounts)
echo "VMTEST-INFO kernel=$(uname -r) cgroup mounts: $cgroups root subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
"#,
    );
    script.push_str(&modules.script());
    script.push_str(&format!(
        r#"if {MKE2FS} -q -F -t ext4 /dev/ram0 && mount -t ext4 /dev/ram0 {scratch} && chmod 1777 {scratch}; then
    echo "VMTEST-INFO modules: $(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ') scratch: $(grep ' {scratch} ' /proc/mounts)"
else
    echo "{ERROR_MARKER} cannot make the scratch filesystem on {scratch}"
fi
"#,
        scratch = SCRATCH
    ));
    let env = [
        "CI=true",
        "BERTH_PROBE=/probe",
        "RUST_BACKTRACE=1",
        "HOME=/root",
        "USER=root",
        "PATH=/bin:/sbin:/usr/bin:/usr/sbin",
        "INSTA_UPDATE=no",
    ];
    // Every suite's temporary directories go on the scratch filesystem.
    let tmpdir = format!("TMPDIR={SCRATCH}");
    for suite in suites {
        let mut command = vec!["env".to_string(), "-i".to_string()];
        command.extend(env.iter().map(|v| v.to_string()));
        command.push(tmpdir.clone());
        command.push(format!("CARGO_MANIFEST_DIR={}", suite.crate_dir.display()));
        // insta finds snapshots under the workspace root, which it would
        // otherwise ask `cargo metadata` for.
        command.push(format!("INSTA_WORKSPACE_ROOT={}", workspace.display()));
        command.push(suite.executable.display().to_string());
        command.push("--test-threads=1".into());
        command.extend(suite.args.iter().cloned());
        if let Some(seconds) = suite.timeout {
            // SIGKILL: a test that hangs may well ignore SIGTERM's default.
            let timeout = ["timeout", "-s", "KILL", &seconds.to_string()].map(String::from);
            command.splice(0..0, timeout);
        }
        let command: Vec<String> = command.iter().map(|a| quote(a)).collect();
        // The uptime (seconds, to the hundredth) times the test.
        script.push_str(&format!(
            "echo {begin} \"up=$(cut -d' ' -f1 /proc/uptime)\"\n\
             (cd {dir} && {command})\n\
             code=$?\n\
             echo {result} \"code=$code\" \"up=$(cut -d' ' -f1 /proc/uptime)\"\n",
            begin = quote(&format!("{BEGIN_MARKER} name={}", suite.name)),
            result = quote(&format!("{RESULT_MARKER} name={}", suite.name)),
            dir = quote(&suite.crate_dir.display().to_string()),
            command = command.join(" "),
        ));
    }
    script.push_str("echo VMTEST-DONE\nsync\npoweroff -f\necho o > /proc/sysrq-trigger\n");
    script
}

/// Quotes `s` for the shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// How the machine's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    /// QEMU exited by itself with success: the machine powered off (or
    /// its kernel panicked, which `panic=-1` and `-no-reboot` turn into a
    /// clean exit).
    Exited,
    /// QEMU exited with this failure status.
    Failed(String),
    /// The machine was still running after this long, and QEMU was killed.
    Killed(Duration),
}

impl Ended {
    /// Why the machine stopped, for a test that had not finished.
    fn describe(&self) -> String {
        match self {
            Ended::Exited => "it powered off or its kernel panicked".into(),
            Ended::Failed(status) => format!("QEMU failed with {status}"),
            Ended::Killed(after) => format!(
                "it was still running after {} s, the time allowed for the whole run, and QEMU was killed",
                after.as_secs()
            ),
        }
    }
}

/// What the machine printed on its console, and how it stopped.
#[derive(Debug)]
struct Console {
    text: String,
    ended: Ended,
    /// The file that holds `text`.
    log: PathBuf,
}

/// Boots the kernel with the initramfs and waits until the machine powers
/// off or `timeout` passes. Shows the console on `echo`, writes it to
/// `log`, and returns it with how the machine stopped; a machine that
/// does not stop in time is killed.
fn boot(
    kernel: &Path,
    initramfs: &Path,
    log: &Path,
    timeout: Duration,
    kvm: bool,
    echo: Echo,
) -> Result<Console> {
    let mut qemu = Command::new("qemu-system-x86_64");
    // QEMU's emulator (TCG) works everywhere. KVM is much faster but needs
    // a host that lets this machine use hardware virtualization: inside a
    // VM, /dev/kvm can exist and still hang the guest at boot.
    qemu.args(["-accel", if kvm { "kvm" } else { "tcg" }]);
    qemu.args([
        "-m",
        "2048",
        "-smp",
        "2",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
    ])
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(initramfs)
    .args(["-append", KERNEL_ARGS])
    .stdin(Stdio::null())
    .stdout(Stdio::piped());
    eprintln!("{qemu:?}");
    let mut child = qemu.spawn().context(
        "cannot run qemu-system-x86_64 (install it with apt-get install qemu-system-x86)",
    )?;
    let mut stdout = child.stdout.take().unwrap();
    let mut file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut terminal: Box<dyn Write> = match echo {
                Echo::Stdout => Box::new(std::io::stdout().lock()),
                Echo::Stderr => Box::new(std::io::stderr().lock()),
            };
            let _ = terminal.write_all(&buf[..n]);
            let _ = terminal.flush();
            let _ = file.write_all(&buf[..n]);
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = String::from_utf8_lossy(&reader.join().unwrap()).to_string();
    let ended = match status {
        None => Ended::Killed(timeout),
        Some(status) if !status.success() => Ended::Failed(status.to_string()),
        Some(_) => Ended::Exited,
    };
    Ok(Console {
        text,
        ended,
        log: log.to_path_buf(),
    })
}

/// What the console says of one suite, cut out between its markers.
#[derive(Debug, Default, PartialEq)]
struct Report {
    /// The lines it printed (without carriage returns), or everything after
    /// its first marker if it never reported its exit code.
    output: String,
    /// Its exit code, if the machine reported one.
    code: Option<i32>,
    /// The time between its markers, by the machine's uptime.
    seconds: Option<f64>,
}

impl Report {
    /// Cuts the suite `name` out of `console`. The markers are found
    /// anywhere in a line, since the output before them need not end with
    /// a newline; the text before the second marker belongs to the output.
    fn cut(console: &str, name: &str) -> Report {
        let mut lines = console
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l));
        let Some(begun) = lines.find_map(|l| marker(l, BEGIN_MARKER, name).map(|(_, f)| f)) else {
            return Report::default();
        };
        let mut output = String::new();
        for line in lines {
            if let Some((before, fields)) = marker(line, RESULT_MARKER, name) {
                if !before.is_empty() {
                    output.push_str(before);
                    output.push('\n');
                }
                let uptime = |fields: &str| field(fields, "up")?.parse::<f64>().ok();
                return Report {
                    output,
                    code: field(fields, "code").and_then(|c| c.parse().ok()),
                    seconds: uptime(fields)
                        .zip(uptime(begun))
                        .map(|(end, start)| ((end - start) * 100.0).round() / 100.0),
                };
            }
            output.push_str(line);
            output.push('\n');
        }
        Report {
            output,
            ..Report::default()
        }
    }
}

/// If `line` holds `marker` for the suite `name`: the text before the
/// marker, and the fields after it (`name=… code=… up=…`).
fn marker<'a>(line: &'a str, marker: &str, name: &str) -> Option<(&'a str, &'a str)> {
    let at = line.find(marker)?;
    let fields = &line[at + marker.len()..];
    (field(fields, "name") == Some(name)).then_some((&line[..at], fields))
}

/// The value of `key=value` among space-separated fields.
fn field<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    fields
        .split_whitespace()
        .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
}

/// What the test harness said in a suite's `output`: its `test result:`
/// lines, less the prefix (`ok. 12 passed; 0 failed; …`), and how many
/// tests printed that they did not run.
fn summary(output: &str) -> String {
    let mut results = Vec::new();
    let mut not_run = 0;
    for line in output.lines() {
        if let Some(at) = line.find("test result: ") {
            results.push(line[at + "test result: ".len()..].trim().to_string());
        }
        if line.contains(": not run: ") {
            not_run += 1;
        }
    }
    if not_run > 0 {
        results.push(format!("{not_run} said they did not run"));
    }
    results.join("; ")
}

/// One file in the archive.
#[derive(Debug)]
enum Entry {
    Dir(u32),
    /// A file copied from the host, with its permission bits.
    File(PathBuf, u32),
    /// A program built by cargo, copied without its debugging information
    /// (see [`Archive::built_program`]), with its permission bits.
    Stripped(PathBuf, u32),
    Data(Vec<u8>, u32),
    Symlink(PathBuf),
    CharDevice(u32, u32),
}

/// The files of an initramfs, by path (relative to the root), written as a
/// cpio archive in the "newc" format that the kernel unpacks.
#[derive(Debug, Default)]
struct Archive {
    /// Sorted by path, so that every directory comes before what it holds:
    /// the kernel creates each entry in turn and never makes a missing
    /// parent.
    entries: BTreeMap<PathBuf, Entry>,
}

impl Archive {
    /// Adds a directory and its missing parents.
    fn dir(&mut self, path: impl AsRef<Path>, mode: u32) {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.dir(parent, 0o755);
        }
        self.entries
            .entry(path.to_path_buf())
            .or_insert(Entry::Dir(mode));
    }

    fn add(&mut self, path: impl AsRef<Path>, entry: Entry) {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.dir(parent, 0o755);
        }
        self.entries.insert(path.to_path_buf(), entry);
    }

    fn file(&mut self, path: impl AsRef<Path>, source: &Path, mode: u32) {
        self.add(path, Entry::File(source.to_path_buf(), mode));
    }

    fn data(&mut self, path: impl AsRef<Path>, text: &str, mode: u32) {
        self.add(path, Entry::Data(text.as_bytes().to_vec(), mode));
    }

    fn char_device(&mut self, path: impl AsRef<Path>, major: u32, minor: u32) {
        self.add(path, Entry::CharDevice(major, minor));
    }

    /// Where the host file `path` goes so that the same path reaches it in
    /// the machine: symbolic links among its parent directories (such as
    /// `/lib64 -> usr/lib64` or `/bin -> usr/bin` on a merged-/usr system)
    /// are copied as links, and the file is placed in the real directory.
    fn mirror(&mut self, path: &Path) -> Result<PathBuf> {
        let path = std::path::absolute(path)?;
        for ancestor in path.ancestors().skip(1) {
            if ancestor.parent().is_none() {
                break;
            }
            if ancestor.symlink_metadata()?.is_symlink() {
                let target = std::fs::read_link(ancestor)?;
                self.add(relative(ancestor), Entry::Symlink(target));
            }
        }
        let parent = std::fs::canonicalize(path.parent().unwrap())
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        Ok(relative(&parent.join(path.file_name().unwrap())))
    }

    /// Adds the host file `path` at the same path, with its permissions.
    fn host_file(&mut self, path: &Path) -> Result<()> {
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode();
        let at = self.mirror(path)?;
        self.file(at, path, mode & 0o7777);
        Ok(())
    }

    /// Adds the host directory `path` (empty) at the same path.
    fn host_dir(&mut self, path: &Path) -> Result<()> {
        let at = self.mirror(path)?;
        self.dir(at, 0o755);
        Ok(())
    }

    /// Adds a program that cargo built (a test executable, or a binary the
    /// tests run) and the shared libraries it loads. The program goes in
    /// without its debugging information, as `objcopy --strip-debug`
    /// leaves it: that is most of a debug build's size (a lab's test
    /// executable is some 90 MB with it and 10 MB without), and the machine
    /// holds the archive and what it unpacks to in its memory at once, then
    /// a copy of the files (see [`STAGE1`]). Symbols stay, so a backtrace
    /// still names its functions, and a panic's message its file and line.
    fn built_program(&mut self, program: &Path) -> Result<()> {
        let mode = std::fs::metadata(program)
            .with_context(|| format!("cannot read {}", program.display()))?
            .permissions()
            .mode();
        let at = self.mirror(program)?;
        self.add(at, Entry::Stripped(program.to_path_buf(), mode & 0o7777));
        for library in shared_libraries(program)? {
            self.host_file(&library)?;
        }
        Ok(())
    }

    /// Adds a host program and the shared libraries it loads.
    fn host_program(&mut self, program: &Path) -> Result<()> {
        self.host_file(program)?;
        for library in shared_libraries(program)? {
            self.host_file(&library)?;
        }
        Ok(())
    }

    /// Writes the archive to `path`.
    fn write(&self, path: &Path) -> Result<()> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut cpio = Cpio::new(BufWriter::new(file));
        for (name, entry) in &self.entries {
            let name = name.to_string_lossy();
            match entry {
                Entry::Dir(mode) => cpio.entry(&name, 0o040000 | mode, (0, 0), 0, &[][..])?,
                Entry::Data(data, mode) => {
                    cpio.entry(&name, 0o100000 | mode, (0, 0), data.len() as u64, &data[..])?
                }
                Entry::Symlink(target) => {
                    let target = target.to_string_lossy();
                    let target = target.as_bytes();
                    cpio.entry(&name, 0o120777, (0, 0), target.len() as u64, target)?
                }
                Entry::CharDevice(major, minor) => {
                    cpio.entry(&name, 0o020600, (*major, *minor), 0, &[][..])?
                }
                Entry::File(source, mode) => {
                    let file = File::open(source)
                        .with_context(|| format!("cannot read {}", source.display()))?;
                    let size = file.metadata()?.len();
                    cpio.entry(&name, 0o100000 | mode, (0, 0), size, file)
                        .with_context(|| format!("cannot archive {}", source.display()))?
                }
                Entry::Stripped(source, mode) => {
                    let stripped = without_debug_info(source, path.parent().unwrap())?;
                    let file = stripped.reopen()?;
                    let size = file.metadata()?.len();
                    cpio.entry(&name, 0o100000 | mode, (0, 0), size, file)
                        .with_context(|| format!("cannot archive {}", source.display()))?
                }
            }
        }
        cpio.finish()?.flush()?;
        Ok(())
    }
}

/// A copy of the program `source` without its debugging information
/// (`objcopy --strip-debug`), as a temporary file in `dir`.
fn without_debug_info(source: &Path, dir: &Path) -> Result<tempfile::NamedTempFile> {
    let copy = tempfile::NamedTempFile::new_in(dir)?;
    let output = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(source)
        .arg(copy.path())
        .stdout(Stdio::null())
        .output()
        .context("cannot run objcopy (install it with apt-get install binutils)")?;
    if !output.status.success() {
        bail!(
            "objcopy --strip-debug {} failed: {}",
            source.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(copy)
}

/// `path` without its leading `/`.
fn relative(path: &Path) -> PathBuf {
    path.strip_prefix("/").unwrap_or(path).to_path_buf()
}

/// A writer of cpio archives in the "newc" format (the one the kernel reads
/// for an initramfs). Each entry is a 110-byte ASCII header — the magic
/// `070701` and thirteen 8-digit hexadecimal fields — then the name with a
/// NUL, padded to a multiple of 4 bytes, then the data, padded the same way.
/// An entry named `TRAILER!!!` ends the archive.
struct Cpio<W: Write> {
    out: W,
    /// Bytes written so far, for the padding.
    offset: u64,
    next_inode: u32,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Self {
        Cpio {
            out,
            offset: 0,
            next_inode: 1,
        }
    }

    /// Writes one entry whose data is `size` bytes read from `data`.
    /// `(major, minor)` is a device's number, (0, 0) for anything else.
    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        (major, minor): (u32, u32),
        size: u64,
        data: impl Read,
    ) -> Result<()> {
        let size32 = u32::try_from(size).context("a file over 4 GiB does not fit in newc")?;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size32,
            0, // device major and minor of the file system
            0,
            major,
            minor,
            name.len() as u32 + 1,
            0, // checksum, unused in newc
        ];
        self.next_inode += 1;
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(b"\0")?;
        self.pad()?;
        let copied = std::io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            bail!("{name}: expected {size} bytes, read {copied}");
        }
        self.offset += copied;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let zeros = (4 - self.offset % 4) % 4;
        self.put(&[0u8; 3][..zeros as usize])
    }

    /// Ends the archive and returns the writer.
    fn finish(mut self) -> Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), 0, &[][..])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_newc() {
        let mut cpio = Cpio::new(Vec::new());
        cpio.entry("etc/hostname", 0o100644, (0, 0), 3, &b"vm\n"[..])
            .unwrap();
        let out = cpio.finish().unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("070701"));
        // The header: inode 1, mode, uid, gid, one link, mtime, 3 bytes…
        let fields = ["00000001", "000081a4", "00000000", "00000000", "00000001"];
        assert_eq!(&text[6..46], fields.concat());
        assert_eq!(&text[54..62], "00000003");
        // …then the name with its NUL (110 + 13 = 123, padded to 124), the
        // data padded to 128, and the trailer.
        assert_eq!(&out[110..123], b"etc/hostname\0");
        assert_eq!(&out[124..128], b"vm\n\0");
        assert_eq!(&out[128..134], b"070701");
        assert!(text.contains("TRAILER!!!"));
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn ldd_output_names_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f64)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f64)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f64)\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn cargo_messages_give_the_test_and_the_binaries() {
        let messages = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"namespaces"},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"lab01-demo"},"profile":{"test":false},"executable":"/w/target/debug/lab01-demo"}
{"reason":"compiler-artifact","target":{"kind":["test"],"name":"steps"},"profile":{"test":true},"executable":"/w/target/debug/deps/steps-1"}
{"reason":"build-finished","success":true}"#;
        let (tests, bins) = executables(messages, "steps");
        assert_eq!(tests, [PathBuf::from("/w/target/debug/deps/steps-1")]);
        assert_eq!(bins, [PathBuf::from("/w/target/debug/lab01-demo")]);
    }

    #[test]
    fn markers_give_exit_codes() {
        let console = "[    1.0] booting\r\n\
                       VMTEST-BEGIN name=lab01-namespaces/steps up=3.50\r\n\
                       VMTEST-RESULT name=lab01-namespaces/steps code=0 up=14.75\r\n\
                       VMTEST-BEGIN name=lab02-cgroups/kernel up=14.80\r\n\
                       VMTEST-RESULT name=lab02-cgroups/kernel code=101 up=20.00\r\n";
        let code = |name| Report::cut(console, name).code;
        assert_eq!(code("lab01-namespaces/steps"), Some(0));
        assert_eq!(code("lab02-cgroups/kernel"), Some(101));
        assert_eq!(code("lab03-overlayfs/kernel"), None);
        // A name is a whole field: lab02-cgroups/kernel is not lab02-cgroups/k.
        assert_eq!(code("lab02-cgroups/k"), None);
        let report = Report::cut(console, "lab01-namespaces/steps");
        assert_eq!(report.seconds, Some(11.25));
    }

    /// A console as the machine prints it for `run_tests`: carriage
    /// returns, a kernel message, a marker after output that did not end
    /// its line, and a test the machine never finished.
    const PER_TEST_CONSOLE: &str = "\x1bc\x1b[?7lSeaBIOS\r\n\
        VMTEST-INFO kernel=6.1.0-56-amd64\r\n\
        VMTEST-BEGIN name=lab01-namespaces/steps::step_01_2_hostname_and_pid_1 up=4.10\r\n\
        \r\n\
        running 1 test\r\n\
        test step_01_2_hostname_and_pid_1 ... ok\r\n\
        \r\n\
        test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 19 filtered out; finished in 0.61s\r\n\
        \r\n\
        VMTEST-RESULT name=lab01-namespaces/steps::step_01_2_hostname_and_pid_1 code=0 up=5.02\r\n\
        VMTEST-BEGIN name=lab02-cgroups/kernel::step_02_2_a_memory_hog_is_oom_killed up=5.05\r\n\
        running 1 test\r\n\
        test step_02_2_a_memory_hog_is_oom_killed ... [   26.41] Memory cgroup out of memory: Killed process 300 (dd)\r\n\
        FAILED\r\n\
        \r\n\
        failures:\r\n\
        \r\n\
        ---- step_02_2_a_memory_hog_is_oom_killed stdout ----\r\n\
        thread 'step_02_2_a_memory_hog_is_oom_killed' panicked at tests/kernel.rs:40:5:\r\n\
        the hog survived\r\n\
        \r\n\
        test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 11 filtered out; finished in 2.00s\r\n\
        VMTEST-RESULT name=lab02-cgroups/kernel::step_02_2_a_memory_hog_is_oom_killed code=101 up=7.30\r\n\
        VMTEST-BEGIN name=lab01-namespaces/steps::no_such_test up=7.31\r\n\
        \r\n\
        running 0 tests\r\n\
        \r\n\
        test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 20 filtered out; finished in 0.00s\r\n\
        \r\n\
        VMTEST-RESULT name=lab01-namespaces/steps::no_such_test code=0 up=7.60\r\n\
        VMTEST-BEGIN name=lab03-overlayfs/kernel::step_03_2_hangs up=7.62\r\n\
        running 1 test\r\n\
        test step_03_2_hangs ... VMTEST-RESULT name=lab03-overlayfs/kernel::step_03_2_hangs code=137 up=127.90\r\n\
        VMTEST-BEGIN name=lab03-overlayfs/kernel::step_03_6_never_ends up=128.00\r\n\
        running 1 test\r\n\
        [  200.00] Kernel panic - not syncing: something\r\n";

    #[test]
    fn per_test_markers_give_each_tests_output_code_and_time() {
        let cut = |name| Report::cut(PER_TEST_CONSOLE, name);
        let passed = cut("lab01-namespaces/steps::step_01_2_hostname_and_pid_1");
        assert_eq!(passed.code, Some(0));
        assert_eq!(passed.seconds, Some(0.92));
        assert_eq!(
            passed.output,
            "\nrunning 1 test\ntest step_01_2_hostname_and_pid_1 ... ok\n\n\
             test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 19 filtered out; finished in 0.61s\n\n"
        );
        let failed = cut("lab02-cgroups/kernel::step_02_2_a_memory_hog_is_oom_killed");
        assert_eq!(failed.code, Some(101));
        assert!(failed.output.starts_with("running 1 test\n"));
        assert!(failed.output.contains("Memory cgroup out of memory"));
        assert!(failed.output.ends_with("finished in 2.00s\n"));
        assert!(!failed.output.contains("VMTEST"));
        // The output before a marker in the middle of a line is kept.
        let hung = cut("lab03-overlayfs/kernel::step_03_2_hangs");
        assert_eq!(hung.code, Some(KILLED));
        assert!(hung.output.ends_with("test step_03_2_hangs ... \n"));
        let unfinished = cut("lab03-overlayfs/kernel::step_03_6_never_ends");
        assert_eq!((unfinished.code, unfinished.seconds), (None, None));
        assert!(unfinished.output.contains("Kernel panic"));
        assert_eq!(
            cut("lab03-overlayfs/kernel::never_started"),
            Report::default()
        );
    }

    #[test]
    fn each_test_is_judged_from_its_report() {
        let judged = |name| {
            let report = Report::cut(PER_TEST_CONSOLE, name);
            judge(&report, 120, &Ended::Exited)
        };
        let (status, output) = judged("lab01-namespaces/steps::step_01_2_hostname_and_pid_1");
        assert_eq!(status, VmStatus::Passed);
        assert!(output.contains("1 passed"));
        let (status, output) = judged("lab02-cgroups/kernel::step_02_2_a_memory_hog_is_oom_killed");
        assert_eq!(status, VmStatus::Failed);
        assert!(
            output.starts_with("the test executable exited with 101\nrunning 1 test"),
            "{output}"
        );
        // libtest exits with 0 when `--exact` matches no test.
        let (status, output) = judged("lab01-namespaces/steps::no_such_test");
        assert_eq!(status, VmStatus::Failed);
        assert!(output.starts_with("the test did not run: "), "{output}");
        let (status, output) = judged("lab03-overlayfs/kernel::step_03_2_hangs");
        assert_eq!(status, VmStatus::TimedOut);
        assert!(output.starts_with("timed out after 120 s"), "{output}");
        let (status, output) = judged("lab03-overlayfs/kernel::step_03_6_never_ends");
        assert_eq!(status, VmStatus::Failed);
        assert!(
            output.starts_with("the machine stopped before the test finished"),
            "{output}"
        );
        assert!(output.contains("Kernel panic"));
        // Killed early (by the OOM killer, say): not a timeout.
        let report = Report {
            code: Some(KILLED),
            seconds: Some(3.0),
            ..Report::default()
        };
        assert_eq!(judge(&report, 120, &Ended::Exited).0, VmStatus::Failed);
    }

    #[test]
    fn harness_counts_come_from_the_result_line() {
        let counts = |text| harness_counts(text);
        assert_eq!(
            counts("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out"),
            Some((1, 0))
        );
        assert_eq!(
            counts("test result: FAILED. 0 passed; 1 failed; 0 ignored"),
            Some((0, 1))
        );
        assert_eq!(
            counts("test result: ok. 11 passed; 0 failed"),
            Some((11, 0))
        );
        assert_eq!(counts("running 1 test"), None);
    }

    #[test]
    fn single_tests_run_under_timeout_with_their_markers() {
        let modules = Modules {
            dir: PathBuf::from("/lib/modules/6.1.0-56-amd64"),
            load: Vec::new(),
        };
        let suite = Suite {
            name: "lab01-namespaces/steps::step_01_2_hostname_and_pid_1".into(),
            crate_dir: PathBuf::from("/w/labs/01-namespaces"),
            executable: PathBuf::from("/t/debug/deps/steps-1"),
            args: vec!["--exact".into(), "step_01_2_hostname_and_pid_1".into()],
            timeout: Some(120),
        };
        let script = stage2(Path::new("/w"), &[suite], &modules);
        assert!(
            script.contains(
                "echo 'VMTEST-BEGIN name=lab01-namespaces/steps::step_01_2_hostname_and_pid_1' \
                 \"up=$(cut -d' ' -f1 /proc/uptime)\"\n\
                 (cd '/w/labs/01-namespaces' && 'timeout' '-s' 'KILL' '120' 'env' '-i' "
            ),
            "{script}"
        );
        assert!(
            script.contains(
                "'/t/debug/deps/steps-1' '--test-threads=1' '--exact' 'step_01_2_hostname_and_pid_1')\n\
                 code=$?\n\
                 echo 'VMTEST-RESULT name=lab01-namespaces/steps::step_01_2_hostname_and_pid_1' \
                 \"code=$code\" \"up=$(cut -d' ' -f1 /proc/uptime)\"\n"
            ),
            "{script}"
        );
    }

    #[test]
    fn kernels_sort_by_version() {
        let mut names = ["vmlinuz-6.10.0-1-amd64", "vmlinuz-6.9.0-3-amd64"];
        names.sort_by_key(|n| version_key(n));
        assert_eq!(names[1], "vmlinuz-6.10.0-1-amd64");
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_release_comes_from_the_name_or_the_boot_header() {
        let release = kernel_release(Path::new("/boot/vmlinuz-6.1.0-56-amd64")).unwrap();
        assert_eq!(release, "6.1.0-56-amd64");
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let version = b"6.18.3-custom (me@host) #1 SMP\0";
        image[0x300..0x300 + version.len()].copy_from_slice(version);
        assert_eq!(header_release(&image).as_deref(), Some("6.18.3-custom"));
        image[0x202] = b'X';
        assert_eq!(header_release(&image), None, "no boot header");
        assert_eq!(header_release(&image[..0x100]), None, "too short");
    }

    #[test]
    fn modules_load_after_what_they_need() {
        let deps = "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
                    kernel/lib/crc16.ko:\n\
                    kernel/fs/mbcache.ko:\n\
                    kernel/fs/jbd2/jbd2.ko:\n\
                    kernel/fs/overlayfs/overlay.ko.zst:\n\
                    kernel/arch/x86/crypto/crc32c-intel.ko:\n";
        let builtin = "kernel/crypto/crc32c_generic.ko\n";
        let order = load_order(
            deps,
            builtin,
            &[
                ("overlay", ""),
                ("jbd2", ""),
                ("crc32c_generic", ""),
                ("ext4", "x=1"),
                ("crc32c-intel", ""),
            ],
        )
        .unwrap();
        let order: Vec<(&str, &str)> = order
            .iter()
            .map(|(p, a)| (p.as_str(), a.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("kernel/fs/overlayfs/overlay.ko.zst", ""),
                ("kernel/fs/jbd2/jbd2.ko", ""),
                ("kernel/lib/crc16.ko", ""),
                ("kernel/fs/mbcache.ko", ""),
                ("kernel/fs/ext4/ext4.ko", "x=1"),
                ("kernel/arch/x86/crypto/crc32c-intel.ko", ""),
            ]
        );
        let err = load_order(deps, builtin, &[("brd", "")]).unwrap_err();
        assert!(err.to_string().contains("brd"), "{err}");
    }

    #[test]
    fn compressed_modules_are_loaded_uncompressed() {
        assert_eq!(
            uncompressed_name(Path::new(
                "usr/lib/modules/6.1/kernel/fs/overlayfs/overlay.ko.xz"
            )),
            Path::new("usr/lib/modules/6.1/kernel/fs/overlayfs/overlay.ko")
        );
        assert_eq!(
            uncompressed_name(Path::new("kernel/lib/crc16.ko")),
            Path::new("kernel/lib/crc16.ko")
        );
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("m.ko");
        std::fs::write(&plain, b"\x7fELF module").unwrap();
        assert_eq!(decompressed(&plain).unwrap(), b"\x7fELF module");
        // gzip is on every Debian system; xz and zstd take the same path.
        let status = Command::new("gzip").arg("-k").arg(&plain).status().unwrap();
        assert!(status.success());
        assert_eq!(
            decompressed(&dir.path().join("m.ko.gz")).unwrap(),
            b"\x7fELF module"
        );
        let odd = dir.path().join("m.ko.lz4");
        std::fs::write(&odd, b"").unwrap();
        let err = decompressed(&odd).unwrap_err().to_string();
        assert!(err.contains("does not know"), "{err}");
    }

    #[test]
    fn the_machine_loads_its_modules_and_reports_failures() {
        let modules = Modules {
            dir: PathBuf::from("/lib/modules/6.1.0-56-amd64"),
            load: vec![
                ("kernel/fs/overlayfs/overlay.ko.xz".into(), String::new()),
                ("kernel/drivers/block/brd.ko".into(), "rd_nr=1".into()),
            ],
        };
        let script = modules.script();
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with(
                "insmod '/lib/modules/6.1.0-56-amd64/kernel/fs/overlayfs/overlay.ko' || echo \"VMTEST-ERROR "
            ),
            "{script}"
        );
        assert!(
            lines[1].starts_with(
                "insmod '/lib/modules/6.1.0-56-amd64/kernel/drivers/block/brd.ko' rd_nr=1 || "
            ),
            "{script}"
        );
    }

    #[test]
    fn a_summary_gives_the_harness_results() {
        let console = "VMTEST-BEGIN name=a/kernel up=1.00\r\n\
                       a_test: not run: this test needs root\r\n\
                       test result: ok. 3 passed; 0 failed; 0 ignored\r\n\
                       VMTEST-RESULT name=a/kernel code=0 up=2.00\r\n\
                       VMTEST-BEGIN name=a/lib up=2.00\r\n\
                       test result: ok. 5 passed; 0 failed; 0 ignored\r\n\
                       VMTEST-RESULT name=a/lib code=0 up=3.00\r\n";
        assert_eq!(
            summary(&Report::cut(console, "a/kernel").output),
            "ok. 3 passed; 0 failed; 0 ignored; 1 said they did not run"
        );
        assert_eq!(
            summary(&Report::cut(console, "a/lib").output),
            "ok. 5 passed; 0 failed; 0 ignored"
        );
    }

    #[test]
    fn built_programs_lose_their_debugging_information() {
        let program = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stripped = without_debug_info(&program, dir.path()).unwrap();
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert!(size(stripped.path()) > 0);
        assert!(size(stripped.path()) <= size(&program));
        let mut magic = [0u8; 4];
        stripped.reopen().unwrap().read_exact(&mut magic).unwrap();
        assert_eq!(&magic, b"\x7fELF");
        let err = without_debug_info(&dir.path().join("missing"), dir.path()).unwrap_err();
        assert!(err.to_string().contains("objcopy"), "{err}");
    }

    #[test]
    fn every_suite_names_a_package_and_a_target() {
        for (package, target, _) in SUITES {
            assert!(!package.is_empty() && !target.is_empty());
        }
    }
}
