//! Helpers for lab 01's kernel tests: a busybox root with the probe in it,
//! and running a container with its output captured.

#![allow(dead_code)]

use std::io::Read;
use std::os::fd::OwnedFd;

use namespaces::{ContainerConfig, Exit, Running, Stdio};

/// A fresh root filesystem from the host's busybox, with the probe at /probe.
pub fn rootfs() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("lab01-").tempdir().unwrap();
    namespaces::host::populate_rootfs(dir.path()).unwrap();
    std::fs::copy(testkit::probe::probe_path(), dir.path().join("probe")).unwrap();
    dir
}

/// A container config for `args` in `root`, every namespace new but user.
pub fn config(root: &tempfile::TempDir, args: &[&str]) -> ContainerConfig {
    ContainerConfig::new(root.path(), args.iter().map(|s| s.to_string()).collect())
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

/// What a finished container printed.
pub struct Output {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
}

/// Starts a container with stdout and stderr going to pipes.
pub fn start(config: &ContainerConfig) -> namespaces::Result<(Running, OwnedFd, OwnedFd)> {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let stdio = Stdio {
        stdin: Some(std::fs::File::open("/dev/null").unwrap().into()),
        stdout: Some(out_w),
        stderr: Some(err_w),
    };
    let running = namespaces::spawn(config, stdio)?;
    Ok((running, out_r, err_r))
}

fn read_all(fd: OwnedFd) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        std::fs::File::from(fd).read_to_string(&mut s).unwrap();
        s
    })
}

/// Reads a started container's output to the end and reaps it.
pub fn finish(running: Running, out: OwnedFd, err: OwnedFd) -> Output {
    let (o, e) = (read_all(out), read_all(err));
    let exit = running.wait().unwrap();
    Output {
        exit,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

/// Runs a container to the end.
pub fn run(config: &ContainerConfig) -> Output {
    let (r, o, e) = start(config).unwrap_or_else(|e| panic!("container did not start: {e}"));
    finish(r, o, e)
}

/// Runs the probe in a container and returns its report.
pub fn probe(config: &ContainerConfig) -> serde_json::Value {
    let out = run(config);
    assert_eq!(out.exit, Exit::Code(0), "probe failed: {}", out.stderr);
    testkit::probe::parse(out.stdout.as_bytes())
}

/// Picks some top-level fields of a probe report.
pub fn pick(report: &serde_json::Value, fields: &[&str]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for f in fields {
        out.insert(f.to_string(), report[*f].clone());
    }
    serde_json::Value::Object(out)
}

/// The probe's mount list reduced to what a snapshot can compare across
/// machines: mount point, type and the options that the lab sets.
pub fn mount_summary(report: &serde_json::Value) -> Vec<String> {
    let interesting = ["ro", "rw", "nosuid", "nodev", "noexec"];
    report["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let opts: Vec<&str> = m["options"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|o| o.as_str())
                .filter(|o| interesting.contains(o))
                .collect();
            let mount_point = m["mount_point"].as_str().unwrap();
            // The root's type is whatever filesystem the host keeps it on.
            let fs_type = if mount_point == "/" {
                "[host fs]"
            } else {
                m["fs_type"].as_str().unwrap()
            };
            format!("{mount_point} {fs_type} {}", opts.join(","))
        })
        .collect()
}
