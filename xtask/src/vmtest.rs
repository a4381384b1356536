//! `cargo xtask vmtest`: runs the kernel tests on a machine that has only
//! cgroup v2, whatever the host has.
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
//!    run ([`HOST_TOOLS`]), each executable with every shared library it
//!    needs (found with `ldd`), the probe as `/probe`, the insta snapshots,
//!    and two shell scripts. Everything from the host keeps its host path,
//!    so compile-time paths (`CARGO_BIN_EXE_*`, snapshot directories) hold
//!    in the machine too.
//! 4. It boots `/boot/vmlinuz-*` in QEMU with `cgroup_no_v1=all`, so cgroup2
//!    is the only hierarchy. The console is the serial port, which QEMU
//!    writes to its standard output; this command shows it and keeps it in
//!    `target/vmtest/console.log`. Each test executable runs between two
//!    marker lines, the second with its exit code, and then the machine
//!    powers off. The command passes only if every executable reported exit
//!    code 0.

use std::collections::BTreeMap;
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
];

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
];

/// The statically linked busybox the machine's shell and tools come from.
const BUSYBOX: &str = "/bin/busybox";

/// The kernel's command line. `cgroup_no_v1=all` keeps every controller off
/// the v1 hierarchies, so that cgroup2 is the only one; `panic=-1` reboots at
/// once on a panic, which `-no-reboot` turns into QEMU exiting.
const KERNEL_ARGS: &str = "console=ttyS0 panic=-1 cgroup_no_v1=all quiet";

/// The marker the machine prints after each test executable.
const RESULT_MARKER: &str = "VMTEST-RESULT";

/// The default for `--timeout`, in seconds: the whole run, boot included.
pub const DEFAULT_TIMEOUT: u64 = 20 * 60;

/// One test executable to run in the machine.
#[derive(Debug)]
struct Suite {
    /// `package/target`, as the markers name it.
    name: String,
    /// The package's directory, where cargo would run the test.
    crate_dir: PathBuf,
    executable: PathBuf,
    args: Vec<String>,
}

/// Builds everything, boots the machine, runs the tests there and checks
/// their exit codes. `kernel` overrides the newest `/boot/vmlinuz-*`; `kvm`
/// runs the machine with KVM instead of QEMU's emulator.
pub fn run(kernel: Option<&Path>, timeout: Duration, kvm: bool) -> Result<()> {
    let started = Instant::now();
    let kernel = match kernel {
        Some(path) => path.to_path_buf(),
        None => newest_kernel(Path::new("/boot"))?,
    };
    match File::open(&kernel) {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "cannot read the kernel image {k} ({err}); the tests boot it in QEMU. \
             Run as root, make it readable (sudo chmod a+r {k}), or pass --kernel",
            k = kernel.display()
        ),
        Err(err) => bail!("cannot read the kernel image {}: {err}", kernel.display()),
    }
    let workspace = setup::workspace();
    let out_dir = workspace.join("target/vmtest");
    std::fs::create_dir_all(&out_dir)?;

    let (suites, programs) = build_tests(&workspace)?;
    let probe = crate::test::build_probe()?;
    let built = started.elapsed();

    let initramfs = out_dir.join("initramfs.cpio");
    let archive = contents(&workspace, &suites, &programs, &probe)?;
    archive.write(&initramfs)?;
    eprintln!(
        "initramfs: {} ({} MB, {} entries)",
        initramfs.display(),
        std::fs::metadata(&initramfs)?.len() / 1_000_000,
        archive.entries.len()
    );

    let log = out_dir.join("console.log");
    let booted = Instant::now();
    let console = boot(&kernel, &initramfs, &log, timeout, kvm)?;
    let in_vm = booted.elapsed();

    let mut failed = Vec::new();
    eprintln!();
    for suite in &suites {
        match exit_code(&console, &suite.name) {
            Some(0) => eprintln!("vmtest: {} passed", suite.name),
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

/// Builds the test executables of [`SUITES`]. Returns them, and every other
/// program cargo built for them (the packages' binaries).
fn build_tests(workspace: &Path) -> Result<(Vec<Suite>, Vec<PathBuf>)> {
    let output = cargo(&["metadata", "--no-deps", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed");
    }
    let metadata: Value = serde_json::from_slice(&output.stdout)?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();

    let mut suites = Vec::new();
    let mut programs = Vec::new();
    for (package, target, args) in SUITES {
        let Some(manifest) = packages
            .iter()
            .find(|p| p["name"] == *package)
            .and_then(|p| p["manifest_path"].as_str())
        else {
            bail!(
                "vmtest lists package {package}, which is not in the workspace {}",
                workspace.display()
            );
        };
        let crate_dir = Path::new(manifest).parent().unwrap().to_path_buf();
        eprintln!("building {package} --test {target}");
        // `lib` names the unit tests in the crate's src/, like steps.toml.
        let selection: &[&str] = if *target == "lib" {
            &["--lib"]
        } else {
            &["--test", target]
        };
        let mut command_args = vec![
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
            "-p",
            package,
        ];
        command_args.extend_from_slice(selection);
        let output = cargo(&command_args)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run cargo test --no-run")?;
        if !output.status.success() {
            bail!("building {package} --test {target} failed");
        }
        let (tests, bins) = executables(&String::from_utf8_lossy(&output.stdout), target);
        let [executable] = tests.as_slice() else {
            bail!(
                "cargo built {} executables for {package} --test {target}",
                tests.len()
            );
        };
        suites.push(Suite {
            name: format!("{package}/{target}"),
            crate_dir,
            executable: executable.clone(),
            args: args.iter().map(|a| a.to_string()).collect(),
        });
        programs.extend(bins);
    }
    Ok((suites, programs))
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
) -> Result<Archive> {
    let mut archive = Archive::default();
    for (dir, mode) in [
        ("proc", 0o755),
        ("sys", 0o755),
        ("dev", 0o755),
        ("run", 0o755),
        ("newroot", 0o755),
        ("tmp", 0o1777),
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
    for program in programs {
        archive.host_program(program)?;
    }
    archive.file("probe", probe, 0o755);
    for suite in suites {
        archive.host_program(&suite.executable)?;
        archive.host_dir(&suite.crate_dir)?;
        for snapshot in snapshots(&suite.crate_dir)? {
            archive.host_file(&snapshot)?;
        }
    }
    archive.data("init", STAGE1, 0o755);
    archive.data("vmtest", &stage2(workspace, suites), 0o755);
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
/// below the root), runs each test executable from its crate's directory
/// with the environment `cargo test` would give it, prints the markers, and
/// powers off.
fn stage2(workspace: &Path, suites: &[Suite]) -> String {
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
    let env = [
        "CI=true",
        "BERTH_PROBE=/probe",
        "RUST_BACKTRACE=1",
        "HOME=/root",
        "USER=root",
        "PATH=/bin:/sbin:/usr/bin:/usr/sbin",
        "INSTA_UPDATE=no",
    ];
    for suite in suites {
        let mut command = vec!["env".to_string(), "-i".to_string()];
        command.extend(env.iter().map(|v| v.to_string()));
        command.push(format!("CARGO_MANIFEST_DIR={}", suite.crate_dir.display()));
        // insta finds snapshots under the workspace root, which it would
        // otherwise ask `cargo metadata` for.
        command.push(format!("INSTA_WORKSPACE_ROOT={}", workspace.display()));
        command.push(suite.executable.display().to_string());
        command.push("--test-threads=1".into());
        command.extend(suite.args.iter().cloned());
        let command: Vec<String> = command.iter().map(|a| quote(a)).collect();
        script.push_str(&format!(
            "echo \"VMTEST-BEGIN name={name}\"\n(cd {dir} && {command})\necho \"{RESULT_MARKER} name={name} code=$?\"\n",
            name = suite.name,
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

/// Boots the kernel with the initramfs and waits until the machine powers
/// off or `timeout` passes. Shows the console and writes it to `log`;
/// returns what it printed.
fn boot(
    kernel: &Path,
    initramfs: &Path,
    log: &Path,
    timeout: Duration,
    kvm: bool,
) -> Result<String> {
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
            let mut terminal = std::io::stdout().lock();
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
    let console = String::from_utf8_lossy(&reader.join().unwrap()).to_string();
    match status {
        None => bail!(
            "the VM did not power off within {timeout:?}; QEMU was killed. The console output is in {}",
            log.display()
        ),
        Some(status) if !status.success() => bail!(
            "QEMU failed with {status}; the console output is in {}",
            log.display()
        ),
        Some(_) => Ok(console),
    }
}

/// The exit code the machine reported for the suite `name`.
fn exit_code(console: &str, name: &str) -> Option<i32> {
    let marker = format!("{RESULT_MARKER} name={name} code=");
    console.lines().find_map(|line| {
        let rest = &line[line.find(&marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// One file in the archive.
#[derive(Debug)]
enum Entry {
    Dir(u32),
    /// A file copied from the host, with its permission bits.
    File(PathBuf, u32),
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
            }
        }
        cpio.finish()?.flush()?;
        Ok(())
    }
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
        let console = "[    1.0] booting\r\nVMTEST-RESULT name=lab01-namespaces/steps code=0\r\n\
                       VMTEST-RESULT name=lab02-cgroups/kernel code=101\r\n";
        assert_eq!(exit_code(console, "lab01-namespaces/steps"), Some(0));
        assert_eq!(exit_code(console, "lab02-cgroups/kernel"), Some(101));
        assert_eq!(exit_code(console, "lab03-overlayfs/kernel"), None);
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
    fn every_suite_names_a_package_and_a_target() {
        for (package, target, _) in SUITES {
            assert!(!package.is_empty() && !target.is_empty());
        }
    }
}
