//! `lab01-demo`: lab 01 step by step, on a busybox root made from the host.
//!
//! ```text
//! lab01-demo                       the tour: each step, what it shows, and the output
//! lab01-demo run [--ns LIST] ROOTFS CMD...
//!                                  run CMD in a container; LIST picks the new
//!                                  namespaces (default uts,pid,mnt,ipc,net,cgroup)
//! lab01-demo rootless ROOTFS CMD.. the same as an ordinary user, in a user namespace
//! lab01-demo lsns                  list the machine's namespaces, like `lsns`
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use namespaces::{ContainerConfig, IdMap, Namespace, NsMode};

fn usage() -> ExitCode {
    eprintln!(
        "usage: lab01-demo [run [--ns uts,pid,mnt,ipc,net,cgroup,user] ROOTFS CMD... | rootless ROOTFS CMD... | lsns]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    // Like any Unix tool, end quietly when the reader of our output goes
    // away (`lab-demo tour | head`) instead of panicking on EPIPE.
    // SAFETY: restores the default action of one signal before any thread.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("tour") => tour(),
        Some("run") if args.len() >= 5 && args[1] == "--ns" => match parse_ns_list(&args[2]) {
            Ok(list) => run_with(Path::new(&args[3]), &args[4..], Some(list)),
            Err(e) => Err(e),
        },
        Some("run") if args.len() >= 3 => run_one(Path::new(&args[1]), &args[2..], false),
        Some("rootless") if args.len() >= 3 => run_one(Path::new(&args[1]), &args[2..], true),
        Some("lsns") => lsns(),
        _ => return usage(),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("lab01-demo: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Parses `uts,pid,mnt`: the namespaces to make new; the rest are shared
/// with the host. The mount namespace is always new (the root filesystem
/// needs it).
fn parse_ns_list(list: &str) -> namespaces::Result<Vec<Namespace>> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// Runs a command with only the listed namespaces new.
fn run_with(
    rootfs: &Path,
    cmd: &[String],
    only: Option<Vec<Namespace>>,
) -> namespaces::Result<i32> {
    let rootfs =
        std::fs::canonicalize(rootfs).map_err(|e| namespaces::Error::io("resolve", rootfs, e))?;
    let mut config = ContainerConfig::new(rootfs, cmd.to_vec());
    if let Some(only) = only {
        config.namespaces = only.into_iter().map(|ns| (ns, NsMode::New)).collect();
        config.namespaces.insert(Namespace::Mount, NsMode::New);
        if config.new_namespace(Namespace::User) {
            config.uid_mappings = vec![IdMap::new(0, nix::unistd::geteuid().as_raw(), 1)];
            config.gid_mappings = vec![IdMap::new(0, nix::unistd::getegid().as_raw(), 1)];
        }
    }
    if config.new_namespace(Namespace::Uts) {
        config.hostname = Some("lab01".into());
    }
    let running = namespaces::spawn(&config, namespaces::Stdio::default())?;
    Ok(running.wait()?.status())
}

/// Runs one command in a container and returns its exit status.
fn run_one(rootfs: &Path, cmd: &[String], rootless: bool) -> namespaces::Result<i32> {
    let rootfs =
        std::fs::canonicalize(rootfs).map_err(|e| namespaces::Error::io("resolve", rootfs, e))?;
    let mut config = ContainerConfig::new(rootfs, cmd.to_vec());
    config.hostname = Some("lab01".into());
    if rootless {
        // ANCHOR: rootless
        // Map our own (unprivileged) uid and gid to root inside. One id is
        // all an ordinary user may map without help from setuid tools.
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        config.namespaces.insert(Namespace::User, NsMode::New);
        config.uid_mappings = vec![IdMap::new(0, uid, 1)];
        config.gid_mappings = vec![IdMap::new(0, gid, 1)];
        // ANCHOR_END: rootless
    }
    let running = namespaces::spawn(&config, namespaces::Stdio::default())?;
    Ok(running.wait()?.status())
}

fn lsns() -> namespaces::Result<i32> {
    println!(
        "{:>12} {:<7} {:>6} {:>7} COMMAND",
        "NS", "TYPE", "NPROCS", "PID"
    );
    for u in namespaces::namespace::list_namespaces(Path::new("/proc"))? {
        println!(
            "{:>12} {:<7} {:>6} {:>7} {}",
            u.inode,
            u.kind.to_string(),
            u.nprocs,
            u.pid,
            u.command
        );
    }
    Ok(0)
}

fn step(title: &str, explain: &str) {
    println!("\n\x1b[1m== {title}\x1b[0m\n{explain}");
}

fn show(
    rootfs: &Path,
    config: impl FnOnce(&mut ContainerConfig),
    script: &str,
) -> namespaces::Result<()> {
    let mut c = ContainerConfig::new(rootfs, vec!["sh".into(), "-c".into(), script.into()]);
    c.hostname = Some("lab01".into());
    config(&mut c);
    println!("\x1b[2m$ {script}\x1b[0m");
    let running = namespaces::spawn(&c, namespaces::Stdio::default())?;
    running.wait()?;
    Ok(())
}

fn tour() -> namespaces::Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "lab01-demo: the tour needs root (try: sudo {}); `lab01-demo rootless ROOTFS CMD` works without",
            std::env::args().next().unwrap_or_default()
        );
        return Ok(1);
    }
    let dir = PathBuf::from(format!("/tmp/lab01-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| namespaces::Error::io("mkdir", &dir, e))?;
    let source = namespaces::host::populate_rootfs(&dir)?;
    println!("A root filesystem in {} from {source:?}", dir.display());

    let result = (|| {
        step(
            "01.2  UTS and PID namespaces",
            "The container has its own hostname, and its first process is PID 1.",
        );
        show(&dir, |_| {}, "hostname; echo my pid is $$; ps")?;
        println!(
            "(on the host: hostname is {:?})",
            nix::unistd::gethostname().unwrap_or_default()
        );

        step(
            "01.3  Mount namespace and pivot_root",
            "Only the container's mounts are visible; the host's root is gone.",
        );
        show(&dir, |_| {}, "cat /proc/self/mounts; ls /dev")?;

        step(
            "01.3  Read-only root",
            "With a read-only root, writes fail; /dev/shm (a tmpfs) still works.",
        );
        show(
            &dir,
            |c| c.readonly_rootfs = true,
            "touch /file; touch /dev/shm/file && echo /dev/shm is writable",
        )?;

        step(
            "01.5  Network namespace",
            "A new network namespace: only the loopback device.",
        );
        show(&dir, |_| {}, "ip addr")?;

        step(
            "01.6  User namespace",
            "Root inside, uid 100000 outside: the map says so.",
        );
        chown_tree(&dir, 100000);
        show(
            &dir,
            |c| {
                c.namespaces.insert(Namespace::User, NsMode::New);
                c.uid_mappings = vec![IdMap::new(0, 100000, 65536)];
                c.gid_mappings = vec![IdMap::new(0, 100000, 65536)];
            },
            "id; cat /proc/self/uid_map",
        )?;
        chown_tree(&dir, 0);

        step(
            "01.7  Capabilities",
            "Root in the container keeps 14 capabilities, not all 41 (see CapBnd).",
        );
        show(&dir, |_| {}, "grep Cap /proc/self/status")?;

        step(
            "01.1  Namespace ids",
            "The same process seen by namespace: each link names a namespace by inode.",
        );
        show(
            &dir,
            |_| {},
            "ls -l /proc/self/ns | sed 's/.*:[0-9][0-9] //'",
        )?;
        println!("\x1b[2m(the host's, for comparison)\x1b[0m");
        let me = std::process::id() as i32;
        for (ns, inode) in namespaces::namespace::namespace_ids(Path::new("/proc"), me)? {
            println!("{} -> {}:[{inode}]", ns.proc_name(), ns.proc_name());
        }
        Ok(0)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Shifts the owner of every file to `base` (the demo's user namespace
/// maps root to it), or back to 0.
fn chown_tree(dir: &Path, base: u32) {
    let _ = std::os::unix::fs::lchown(dir, Some(base), Some(base));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                chown_tree(&p, base);
            } else {
                let _ = std::os::unix::fs::lchown(&p, Some(base), Some(base));
            }
        }
    }
}
