//! Looking for what a test might leave behind: mounts under a directory,
//! and processes whose command line mentions it.

use std::path::Path;

/// Mount points at or under `dir`, from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| mp.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Processes (pid and command line) whose command line contains `needle`,
/// other than this one.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline.trim().to_string()));
        }
    }
    found
}

/// Panics with a list of what is left under `dir`, if anything.
pub fn assert_clean(dir: &Path) {
    let mounts = mounts_under(dir);
    let procs = processes_mentioning(&dir.to_string_lossy());
    assert!(
        mounts.is_empty() && procs.is_empty(),
        "left behind under {}: mounts {mounts:?}, processes {procs:?}",
        dir.display()
    );
}
