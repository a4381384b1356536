//! A root filesystem made from the host's own programs, so that the course
//! needs no image registry: a statically linked busybox with a link per
//! applet when the host has one (Debian's `busybox-static`), otherwise the
//! host's shell and core tools together with the shared libraries they load.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// Where a static busybox is looked for.
pub const BUSYBOX_PATHS: [&str; 3] = ["/bin/busybox", "/usr/bin/busybox", "/sbin/busybox"];

/// The tools copied when there is no static busybox.
pub const FALLBACK_TOOLS: [&str; 24] = [
    "sh", "ls", "cat", "echo", "env", "hostname", "id", "ps", "sleep", "true", "false", "mkdir",
    "touch", "rm", "cp", "mv", "grep", "sed", "head", "tail", "wc", "readlink", "uname", "kill",
];

/// How a root filesystem was made, to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// From a static busybox at this path, with this many applet links.
    Busybox(PathBuf, usize),
    /// From these host programs and their libraries.
    HostTools(Vec<PathBuf>),
}

/// Parses `ldd` output into the files a program needs at run time: lines
/// like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and the loader,
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`. The vDSO has no file and is skipped.
pub fn parse_ldd(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// True when `path` is an ELF file with no program interpreter, i.e. a
/// statically linked program that runs in an empty root.
pub fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    // ELF64 little-endian: program headers at e_phoff, e_phnum of them.
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        // PT_INTERP = 3 names the dynamic loader.
        o + 4 > bytes.len() || u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) != 3
    })
}

/// Finds a statically linked busybox on the host.
pub fn find_static_busybox() -> Option<PathBuf> {
    BUSYBOX_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| is_static_elf(p))
}

fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("mkdir", parent, e))?;
    }
    std::fs::copy(src, dst).map_err(|e| Error::io("copy", src, e))?;
    Ok(())
}

/// The skeleton every root filesystem gets: the directories that mounts
/// need, and passwd/group files with root and nobody.
pub fn write_skeleton(root: &Path) -> Result<()> {
    for dir in [
        "bin", "dev", "etc", "proc", "sys", "tmp", "root", "home", "usr/bin", "usr/sbin", "sbin",
        "var",
    ] {
        let p = root.join(dir);
        std::fs::create_dir_all(&p).map_err(|e| Error::io("mkdir", &p, e))?;
    }
    let tmp = root.join("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
        .map_err(|e| Error::io("chmod", &tmp, e))?;
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"),
        ("etc/hostname", "localhost\n"),
    ];
    for (name, text) in files {
        let p = root.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io("write", &p, e))?;
    }
    Ok(())
}

// ANCHOR: from_host
/// Fills the empty directory `root` with a small root filesystem made from
/// the host's programs.
pub fn populate_rootfs(root: &Path) -> Result<Source> {
    write_skeleton(root)?;
    if let Some(busybox) = find_static_busybox() {
        let binary = root.join("bin/busybox");
        copy_file(&busybox, &binary)?;
        // `busybox --list-full` prints each applet with its usual path. Each
        // becomes a hard link to the one binary, as in Docker's busybox
        // image: a hard link is only a directory entry, while a symbolic
        // link costs an inode of its own (about 50 times slower to make on
        // ext4, which matters when every container gets a copy).
        let out = Command::new(&busybox)
            .arg("--list-full")
            .output()
            .map_err(|e| Error::io("run", &busybox, e))?;
        let mut count = 0;
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let link = root.join(applet);
            if applet.is_empty() || applet == "bin/busybox" || link.symlink_metadata().is_ok() {
                continue;
            }
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io("mkdir", parent, e))?;
            }
            std::fs::hard_link(&binary, &link).map_err(|e| Error::io("link", &link, e))?;
            count += 1;
        }
        return Ok(Source::Busybox(busybox, count));
    }
    let mut copied = Vec::new();
    let mut libraries = BTreeSet::new();
    for tool in FALLBACK_TOOLS {
        let Some(path) = which(tool) else { continue };
        copy_file(&path, &root.join("bin").join(tool))?;
        if let Ok(out) = Command::new("ldd").arg(&path).output() {
            libraries.extend(parse_ldd(&String::from_utf8_lossy(&out.stdout)));
        }
        copied.push(path);
    }
    if copied.is_empty() {
        return Err(Error::Invalid(
            "no static busybox and no host tools found; install busybox-static".into(),
        ));
    }
    for lib in libraries {
        // Keep each library at the path the loader will look for it.
        let real = std::fs::canonicalize(&lib).map_err(|e| Error::io("resolve", &lib, e))?;
        copy_file(&real, &root.join(lib.strip_prefix("/").unwrap_or(&lib)))?;
    }
    Ok(Source::HostTools(copied))
}
// ANCHOR_END: from_host

/// Finds a program in the host's `$PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_else(|_| crate::config::DEFAULT_PATH.into());
    path.split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\tlibmissing.so => not found\n";
        assert_eq!(
            parse_ldd(out),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn static_detection() {
        // Our own test binary is dynamically linked.
        assert!(!is_static_elf(&std::env::current_exe().unwrap()));
        assert!(!is_static_elf(Path::new("/etc/passwd")));
    }
}
