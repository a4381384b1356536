//! Step 05.3: hostile layers are refused and leave everything outside the
//! layer's directory as it was; honest layers unpack exactly.
//!
//! Every archive is written here byte by byte (a `tar` library refuses to
//! write the bad names). Each hostile case unpacks into `target/` inside a
//! sandbox that also holds sentinel files and directories; a listing of the
//! sandbox without `target/` (paths, types, modes, owners, sizes, times and
//! content hashes) must be the same before and after, and the absolute
//! paths a case names must not exist afterwards.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use images::Error;
use images::extract::{self, Extracted, Options, Staging, Target, Xattr};
use sha2::{Digest, Sha256};

// --- writing archives by hand -------------------------------------------------------

const MTIME: u64 = 1_700_000_000;

fn me() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// A tar archive written one raw 512-byte header at a time.
struct Tar(Vec<u8>);

/// The fields of one raw header.
struct Raw<'a> {
    name: &'a [u8],
    kind: u8,
    link: &'a [u8],
    size: u64,
    mode: u32,
    owner: (u32, u32),
    device: (u32, u32),
}

impl Default for Raw<'_> {
    fn default() -> Self {
        Raw {
            name: b"",
            kind: b'0',
            link: b"",
            size: 0,
            mode: 0o644,
            owner: me(),
            device: (0, 0),
        }
    }
}

fn octal(field: &mut [u8], n: u64) {
    let text = format!("{n:0width$o}", width = field.len() - 1);
    field[..text.len()].copy_from_slice(text.as_bytes());
}

impl Tar {
    fn new() -> Tar {
        Tar(Vec::new())
    }

    /// Writes a header exactly as given: names are not checked or split.
    fn raw(&mut self, r: Raw) -> &mut Tar {
        let mut h = [0u8; 512];
        h[..r.name.len()].copy_from_slice(r.name);
        octal(&mut h[100..108], r.mode.into());
        octal(&mut h[108..116], r.owner.0.into());
        octal(&mut h[116..124], r.owner.1.into());
        octal(&mut h[124..136], r.size);
        octal(&mut h[136..148], MTIME);
        h[156] = r.kind;
        h[157..157 + r.link.len()].copy_from_slice(r.link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], r.device.0.into());
        octal(&mut h[337..345], r.device.1.into());
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        self.0.extend_from_slice(&h);
        self
    }

    /// Data after a header, padded to the next block.
    fn data(&mut self, data: &[u8]) -> &mut Tar {
        self.0.extend_from_slice(data);
        self.0
            .resize(self.0.len() + (512 - data.len() % 512) % 512, 0);
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Tar {
        self.file_mode(name, data, 0o644, me())
    }

    fn file_mode(&mut self, name: &str, data: &[u8], mode: u32, owner: (u32, u32)) -> &mut Tar {
        self.raw(Raw {
            name: name.as_bytes(),
            size: data.len() as u64,
            mode,
            owner,
            ..Raw::default()
        })
        .data(data)
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Tar {
        self.raw(Raw {
            name: name.as_bytes(),
            kind: b'5',
            mode,
            ..Raw::default()
        })
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(Raw {
            name: name.as_bytes(),
            kind: b'2',
            link: target.as_bytes(),
            mode: 0o777,
            ..Raw::default()
        })
    }

    fn hard_link(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(Raw {
            name: name.as_bytes(),
            kind: b'1',
            link: target.as_bytes(),
            ..Raw::default()
        })
    }

    fn node(&mut self, name: &str, kind: u8, device: (u32, u32)) -> &mut Tar {
        self.raw(Raw {
            name: name.as_bytes(),
            kind,
            device,
            ..Raw::default()
        })
    }

    /// A PAX extension entry with `records`, for the entry after it.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        let mut data = Vec::new();
        for (key, value) in records {
            // The length counts itself: try until it is consistent.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw(Raw {
            name: b"././@PaxHeader",
            kind: b'x',
            size: data.len() as u64,
            ..Raw::default()
        })
        .data(&data)
    }

    /// A GNU long name entry holding `name`, for the entry after it.
    fn long_name(&mut self, name: &[u8]) -> &mut Tar {
        let mut data = name.to_vec();
        data.push(0);
        self.raw(Raw {
            name: b"././@LongLink",
            kind: b'L',
            size: data.len() as u64,
            ..Raw::default()
        })
        .data(&data)
    }

    /// The archive with its end marker (two zero blocks).
    fn finish(&mut self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend_from_slice(&[0; 1024]);
        out
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

// --- the sandbox ------------------------------------------------------------------------

/// A directory holding the layer's `target/` and, around it, things a
/// hostile layer would like to reach.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("lab05-ext-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("target")).unwrap();
        std::fs::write(root.join("outside.txt"), "keep me\n").unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::create_dir(root.join("escape")).unwrap();
        std::fs::create_dir_all(root.join("deep/er")).unwrap();
        std::os::unix::fs::symlink("target", root.join("to-target")).unwrap();
        Sandbox { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn target(&self) -> PathBuf {
        self.root().join("target")
    }

    /// Everything in the sandbox except `target/`, one line per path.
    fn listing(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        walk(self.root(), self.root(), &mut out);
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    out.insert(
        dir.strip_prefix(root).unwrap().to_path_buf(),
        describe(dir, &meta),
    );
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if dir == root && path.file_name().unwrap() == "target" {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            walk(root, &path, out);
        } else {
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                describe(&path, &meta),
            );
        }
    }
}

fn describe(path: &Path, meta: &std::fs::Metadata) -> String {
    let ft = meta.file_type();
    let what = if ft.is_symlink() {
        format!("-> {}", std::fs::read_link(path).unwrap().display())
    } else if ft.is_file() {
        sha256(&std::fs::read(path).unwrap())
    } else {
        String::new()
    };
    format!(
        "{:o} {}:{} {} {}.{} nlink={} {what}",
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        if ft.is_dir() { 0 } else { meta.nlink() },
    )
}

/// A name under /tmp that nothing uses, for the absolute-path cases.
fn unused_tmp(case: &str) -> PathBuf {
    let path = PathBuf::from(format!("/tmp/lab05-ext-abs-{}-{case}", std::process::id()));
    assert!(!path.exists(), "{} exists before the test", path.display());
    path
}

/// Unpacks `layer` (a tar, or gzip if `gz`) into a fresh sandbox for each
/// target, checks that it fails with an error for which `check` returns
/// true, and that nothing outside `target/` changed, and that none of
/// `absent` exists afterwards.
fn refused_with(layer: &[u8], gz: bool, absent: &[&Path], check: impl Fn(&Error) -> bool) {
    let (media, diff_id) = if gz {
        let mut tar = Vec::new();
        let _ = std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(layer), &mut tar);
        (extract::TAR_GZIP, sha256(&tar))
    } else {
        (extract::TAR, sha256(layer))
    };
    for target in [Target::Plain, Target::Overlay(Xattr::User)] {
        let sandbox = Sandbox::new();
        let before = sandbox.listing();
        let options = Options::new(target);
        let result = extract::extract(layer, media, &diff_id, &sandbox.target(), &options);
        let err = match result {
            Ok(done) => panic!("{target:?}: the layer was accepted: {done:?}"),
            Err(err) => err,
        };
        assert!(check(&err), "{target:?}: unexpected error: {err}");
        let after = sandbox.listing();
        assert_eq!(
            before, after,
            "{target:?}: something outside target/ changed ({err})"
        );
        for path in absent {
            assert!(
                !path.exists(),
                "{target:?}: {} was made ({err})",
                path.display()
            );
        }
    }
}

/// `refused_with` for a hostile entry: the error names `entry` and its
/// reason contains `why`.
fn refused(layer: &[u8], entry: &str, why: &str, absent: &[&Path]) {
    refused_with(layer, false, absent, |err| match err {
        Error::Hostile { entry: e, why: w } => {
            e == entry && w.contains(why) && err.to_string().starts_with("refusing layer entry")
        }
        _ => false,
    });
}

// --- names that climb out -------------------------------------------------------------

#[test]
fn dot_dot_is_refused() {
    refused(
        &Tar::new().file("../escape", b"x").finish(),
        "../escape",
        "`..`",
        &[],
    );
    refused(
        &Tar::new()
            .dir("a/", 0o755)
            .file("a/../../escape", b"x")
            .finish(),
        "a/../../escape",
        "`..`",
        &[],
    );
}

#[test]
fn absolute_paths_are_refused() {
    // Docker strips the leading slash; berth refuses, since no layer
    // writer produces one.
    let abs = unused_tmp("absolute");
    let name = format!("{}/x", abs.display());
    refused(
        &Tar::new().file(&name, b"x").finish(),
        &name,
        "absolute path",
        &[&abs],
    );
    refused(
        &Tar::new().file("/abs/path", b"x").finish(),
        "/abs/path",
        "absolute path",
        &[Path::new("/abs")],
    );
}

// --- links on the way -----------------------------------------------------------------------

#[test]
fn writing_through_a_symlink_to_root_is_refused() {
    let abs = unused_tmp("through-root");
    let name = format!("evil{}", abs.display());
    refused(
        &Tar::new().symlink("evil", "/").file(&name, b"x").finish(),
        &name,
        "evil is a symbolic link (to \"/\")",
        &[&abs],
    );
}

#[test]
fn writing_through_a_relative_symlink_is_refused() {
    refused(
        &Tar::new()
            .symlink("evil", "../..")
            .file("evil/escape", b"x")
            .finish(),
        "evil/escape",
        "evil is a symbolic link",
        &[],
    );
    // A chain: a -> b, b -> .., then a/x.
    refused(
        &Tar::new()
            .symlink("a", "b")
            .symlink("b", "..")
            .file("a/outside.txt", b"overwritten")
            .finish(),
        "a/outside.txt",
        "a is a symbolic link (to \"b\")",
        &[],
    );
    // A link deeper down the path.
    refused(
        &Tar::new()
            .dir("d/", 0o755)
            .symlink("d/up", "../..")
            .file("d/up/escape/x", b"x")
            .finish(),
        "d/up/escape/x",
        "d/up is a symbolic link",
        &[],
    );
}

#[test]
fn a_symlink_replacing_a_directory_is_not_followed() {
    let sandbox_escape = "/proc/self/cwd"; // any absolute target will do
    refused(
        &Tar::new()
            .dir("d/", 0o755)
            .file("d/ok", b"fine")
            .symlink("d", sandbox_escape)
            .file("d/pwned", b"x")
            .finish(),
        "d/pwned",
        "d is a symbolic link",
        &[],
    );
    // The same with a relative link to the sandbox's `escape/`.
    refused(
        &Tar::new()
            .dir("d/", 0o755)
            .file("d/ok", b"fine")
            .symlink("d", "../escape")
            .file("d/pwned", b"x")
            .finish(),
        "d/pwned",
        "d is a symbolic link",
        &[],
    );
}

#[test]
fn hard_links_out_of_the_layer_are_refused() {
    refused(
        &Tar::new().hard_link("h", "/etc/passwd").finish(),
        "h",
        "hard link to \"/etc/passwd\": an absolute path",
        &[],
    );
    refused(
        &Tar::new().hard_link("h", "../outside.txt").finish(),
        "h",
        "`..`",
        &[],
    );
    // Through a symbolic link the layer made.
    refused(
        &Tar::new()
            .symlink("up", "..")
            .hard_link("h", "up/outside.txt")
            .finish(),
        "h",
        "up is a symbolic link",
        &[],
    );
    refused(
        &Tar::new()
            .symlink("etc", "/etc")
            .hard_link("h", "etc/passwd")
            .finish(),
        "h",
        "etc is a symbolic link",
        &[],
    );
    // To something that is not in the layer.
    refused(
        &Tar::new().hard_link("h", "etc/passwd").finish(),
        "h",
        "does not exist",
        &[],
    );
}

// --- devices, markers, headers ------------------------------------------------------------

#[test]
fn devices_are_refused_unless_allowed() {
    refused(
        &Tar::new().node("dev/mem", b'3', (1, 1)).finish(),
        "dev/mem",
        "character device 1:1",
        &[],
    );
    refused(
        &Tar::new().node("disk", b'4', (8, 0)).finish(),
        "disk",
        "block device 8:0",
        &[],
    );
}

#[test]
fn whiteouts_of_dot_and_dot_dot_are_refused() {
    for name in ["d/.wh..", "d/.wh...", ".wh..."] {
        refused(
            &Tar::new().dir("d/", 0o755).file(name, b"").finish(),
            name,
            "does not name a file",
            &[],
        );
    }
}

#[test]
fn markers_in_the_wrong_place_are_refused() {
    refused(
        &Tar::new().file(".wh..wh..opq", b"").finish(),
        ".wh..wh..opq",
        "at the top of the layer",
        &[],
    );
    refused(
        &Tar::new()
            .dir("d/", 0o755)
            .dir("d/.wh..wh..opq/", 0o755)
            .finish(),
        "d/.wh..wh..opq/",
        "must be an empty regular file",
        &[],
    );
    refused(
        &Tar::new().symlink("d/.wh.x", "/").finish(),
        "d/.wh.x",
        "must be an empty regular file",
        &[],
    );
    refused(
        &Tar::new().file("d/.wh.x/y", b"").finish(),
        "d/.wh.x/y",
        "whiteout marker, which cannot hold",
        &[],
    );
}

#[test]
fn pax_and_gnu_names_are_checked_after_they_apply() {
    // The header says `innocent`; the PAX record before it says `../x`.
    refused(
        &Tar::new()
            .pax(&[("path", b"../pax-escape")])
            .file("innocent", b"x")
            .finish(),
        "../pax-escape",
        "`..`",
        &[],
    );
    let abs = unused_tmp("pax");
    let name = format!("{}/x", abs.display());
    refused(
        &Tar::new()
            .pax(&[("path", name.as_bytes())])
            .file("innocent", b"x")
            .finish(),
        &name,
        "absolute path",
        &[&abs],
    );
    refused(
        &Tar::new()
            .pax(&[("linkpath", b"../outside.txt")])
            .hard_link("h", "innocent")
            .finish(),
        "h",
        "`..`",
        &[],
    );
    // A GNU long name, longer than the header's 100 bytes.
    let long = format!("{}escape", "../".repeat(40));
    refused(
        &Tar::new()
            .long_name(long.as_bytes())
            .file("innocent", b"x")
            .finish(),
        &long,
        "`..`",
        &[],
    );
}

#[test]
fn names_too_long_for_linux_are_refused() {
    let name = "n".repeat(300);
    refused(
        &Tar::new()
            .long_name(name.as_bytes())
            .file("x", b"x")
            .finish(),
        &name,
        "a name of 300 bytes",
        &[],
    );
    let path = "abcdefghi/".repeat(500) + "x";
    refused(
        &Tar::new()
            .pax(&[("path", path.as_bytes())])
            .file("x", b"x")
            .finish(),
        &path,
        "a path of 5001 bytes",
        &[],
    );
    // A long name header claiming more than the limit is refused before
    // its data is read.
    let mut tar = Tar::new();
    tar.raw(extract_raw(b"././@LongLink", b'L', 1 << 30));
    refused(
        &tar.finish(),
        "././@LongLink",
        "where 1048576 are allowed",
        &[],
    );
}

fn extract_raw(name: &[u8], kind: u8, size: u64) -> Raw<'_> {
    Raw {
        name,
        kind,
        size,
        ..Raw::default()
    }
}

#[test]
fn ambiguous_archives_are_refused() {
    // Data after a directory header: skipped by some readers, not others.
    let mut tar = Tar::new();
    tar.raw(extract_raw(b"d/", b'5', 512)).data(&[b'x'; 512]);
    refused(&tar.finish(), "d/", "bytes of data", &[]);
    // Data after the end-of-archive marker.
    let mut layer = Tar::new().file("a", b"a").finish();
    Tar::new()
        .file("b", b"b")
        .0
        .iter()
        .for_each(|&b| layer.push(b));
    refused_with(
        &layer,
        false,
        &[],
        |err| matches!(err, Error::Hostile { why, .. } if why.contains("after the end-of-archive")),
    );
    // Two long names for one entry.
    refused(
        &Tar::new()
            .long_name(b"one")
            .long_name(b"two")
            .file("x", b"")
            .finish(),
        "././@LongLink",
        "two GNU long names",
        &[],
    );
    // A sparse file, which berth does not unpack.
    let mut tar = Tar::new();
    tar.raw(extract_raw(b"sparse", b'S', 0));
    refused(&tar.finish(), "sparse", "sparse", &[]);
}

// --- damaged streams and wrong digests ------------------------------------------------------

fn invalid_containing(text: &'static str) -> impl Fn(&Error) -> bool {
    move |err| matches!(err, Error::Invalid(m) if m.contains(text))
}

#[test]
fn a_truncated_archive_is_refused() {
    let layer = Tar::new()
        .dir("d/", 0o755)
        .file("d/big", &[7; 10_000])
        .file("d/after", b"x")
        .finish();
    // Cut inside the data of d/big: the error names the entry.
    refused_with(
        &layer[..512 * 6],
        false,
        &[],
        invalid_containing("entry \"d/big\""),
    );
    // Cut inside a header.
    refused_with(
        &layer[..512 + 100],
        false,
        &[],
        invalid_containing("header at byte 512"),
    );
    // Cut exactly between entries: only the digest shows it.
    let full = sha256(&layer);
    let cut = &layer[..512];
    let sandbox = Sandbox::new();
    let options = Options::new(Target::Plain);
    let err = extract::extract(cut, extract::TAR, &full, &sandbox.target(), &options).unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, .. } if *expected == full),
        "{err}"
    );
    assert!(err.to_string().contains("delete that directory"), "{err}");
}

#[test]
fn damaged_gzip_is_refused() {
    let tar = Tar::new().file("a", &[1; 100_000]).file("b", b"b").finish();
    let good = gzip(&tar);
    // Garbage inside the compressed data.
    let mut bad = good.clone();
    for b in &mut bad[20..200] {
        *b = 0x5a;
    }
    refused_with(&bad, true, &[], invalid_containing("not valid gzip"));
    // Garbage after the gzip stream.
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"this is not gzip");
    refused_with(&trailing, true, &[], invalid_containing("not valid gzip"));
    // A gzip member cut short.
    refused_with(
        &good[..good.len() - 8],
        true,
        &[],
        invalid_containing("not valid gzip"),
    );
    // Not gzip at all, though the media type says so.
    refused_with(&tar, true, &[], invalid_containing("not valid gzip"));
}

#[test]
fn the_wrong_media_type_or_compression_is_refused() {
    let tar = Tar::new().file("a", b"a").finish();
    let sandbox = Sandbox::new();
    let options = Options::new(Target::Plain);
    let gz = gzip(&tar);
    let err = extract::extract(
        &gz[..],
        extract::TAR,
        &sha256(&tar),
        &sandbox.target(),
        &options,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("bytes are gzip"), "{err}");
    let err = extract::extract(
        &tar[..],
        extract::TAR_ZSTD,
        &sha256(&tar),
        &sandbox.target(),
        &options,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("zstd") && err.contains("gzip"), "{err}");
    let err = extract::extract(
        &tar[..],
        "text/plain",
        &sha256(&tar),
        &sandbox.target(),
        &options,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown layer media type"), "{err}");
}

#[test]
fn a_wrong_diff_id_is_refused() {
    let tar = Tar::new().file("a", b"a").finish();
    let wrong = sha256(b"another layer");
    for (layer, media) in [(tar.clone(), extract::TAR), (gzip(&tar), extract::TAR_GZIP)] {
        let sandbox = Sandbox::new();
        let before = sandbox.listing();
        let err = extract::extract(
            &layer[..],
            media,
            &wrong,
            &sandbox.target(),
            &Options::new(Target::Plain),
        )
        .unwrap_err();
        match &err {
            Error::DigestMismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, &wrong);
                assert_eq!(actual, &sha256(&tar));
            }
            other => panic!("{other}"),
        }
        assert_eq!(before, sandbox.listing());
    }
}

#[test]
fn a_refused_layer_leaves_nothing_through_staging() {
    let sandbox = Sandbox::new();
    // The staging directory comes and goes next to `dest`, which changes
    // the sandbox's time: compare without it.
    let listing = |s: &Sandbox| {
        let mut l = s.listing();
        l.remove(Path::new(""));
        l.retain(|path, _| !path.starts_with("layer"));
        l
    };
    let before = listing(&sandbox);
    let dest = sandbox.root().join("layer");
    let layer = Tar::new()
        .file("ok", b"ok")
        .file("../escape", b"x")
        .finish();
    let options = Options::new(Target::Plain);
    let err = extract::extract_to(&layer[..], extract::TAR, &sha256(&layer), &dest, &options);
    assert!(matches!(err, Err(Error::Hostile { .. })));
    assert!(!dest.exists());
    assert_eq!(before, listing(&sandbox), "the staging directory is gone");
    // A good layer lands at `dest`, with nothing else left next to it.
    let good = Tar::new().file("ok", b"ok").finish();
    extract::extract_to(&good[..], extract::TAR, &sha256(&good), &dest, &options).unwrap();
    assert_eq!(std::fs::read(dest.join("ok")).unwrap(), b"ok");
    assert_eq!(before, listing(&sandbox));
    // A second unpacking of the same layer finds it there.
    let staging = Staging::new(&dest).unwrap();
    let err = staging.commit().unwrap_err();
    assert!(
        matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{err}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(sandbox.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("staging"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// --- honest layers ------------------------------------------------------------------------

/// What a tree looks like: one line per path, with type, mode, owner,
/// size, time and content or link target.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_fifo() {
                'p'
            } else if ft.is_char_device() {
                'c'
            } else {
                '-'
            };
            let extra = if ft.is_symlink() {
                format!(" -> {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                format!(
                    " {}",
                    std::fs::read_to_string(&path).unwrap_or_default().trim()
                )
            } else if ft.is_char_device() {
                format!(" {}", meta.rdev())
            } else {
                String::new()
            };
            let time = if ft.is_symlink() { 0 } else { meta.mtime() };
            out.push(format!(
                "{kind}{:04o} {}:{} {} {}{extra}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                time,
                path.strip_prefix(dir).unwrap().display(),
            ));
            if ft.is_dir() {
                todo.push(path);
            }
        }
    }
    out.sort_by(|a, b| a.split(' ').nth(3).cmp(&b.split(' ').nth(3)));
    out
}

/// A layer with a bit of everything an image has, for `owner` (the
/// caller's ids, or root's for the root test).
fn honest(owner: (u32, u32), other: (u32, u32)) -> Vec<u8> {
    let long = format!("usr/share/{}/file", "long-directory-name".repeat(6));
    let mut tar = Tar::new();
    tar.dir("./", 0o755)
        .dir("etc/", 0o755)
        .file_mode("etc/hostname", b"box", 0o644, owner)
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .file("etc/.wh.motd", b"")
        .dir("usr/", 0o755)
        .dir("usr/bin/", 0o755)
        .file_mode("usr/bin/busybox", b"#!/bin/sh", 0o755, owner)
        .hard_link("usr/bin/ls", "usr/bin/busybox")
        .symlink("usr/bin/sh", "busybox")
        .file_mode("usr/bin/su", b"su", 0o4755, owner)
        .dir("var/", 0o755)
        .dir("var/cache/", 0o755)
        .file("var/cache/.wh..wh..opq", b"")
        .file("var/cache/fresh", b"fresh")
        .file_mode("home-file", b"mine", 0o600, other)
        .dir("ro/", 0o555)
        .file("ro/inside", b"made before ro/ lost its write bit")
        .node("run-fifo", b'6', (0, 0))
        .long_name(long.as_bytes())
        .file("ignored-short-name", b"long")
        .pax(&[
            ("path", b"pax/\xc3\xa9t\xc3\xa9"),
            ("mtime", b"1600000000.5"),
        ])
        .file("ignored", b"pax");
    tar.finish()
}

fn unpack(layer: &[u8], gz: bool, options: Options) -> (tempfile::TempDir, Extracted) {
    let dir = tempfile::Builder::new()
        .prefix("lab05-ext-")
        .tempdir()
        .unwrap();
    let (blob, media) = if gz {
        (gzip(layer), extract::DOCKER_TAR_GZIP)
    } else {
        (layer.to_vec(), extract::TAR)
    };
    let done = extract::extract(&blob[..], media, &sha256(layer), dir.path(), &options).unwrap();
    assert_eq!(done.diff_id, sha256(layer));
    assert_eq!(done.digest, sha256(&blob));
    assert_eq!(done.blob_bytes, blob.len() as u64);
    assert_eq!(done.tar_bytes, layer.len() as u64);
    (dir, done)
}

#[test]
fn an_honest_layer_unpacks_exactly_on_a_plain_target() {
    // Without root: everything belongs to the caller, and a plain target
    // turns markers into deletions (of nothing, here).
    let layer = honest(me(), me());
    let (dir, done) = unpack(&layer, false, Options::new(Target::Plain));
    assert_eq!((done.files, done.entries), (8, 20));
    let (me_u, me_g) = me();
    let expected = format!(
        "d0755 {me_u}:{me_g} {MTIME} etc
-0644 {me_u}:{me_g} {MTIME} etc/hostname box
l0777 {me_u}:{me_g} 0 etc/localtime -> /usr/share/zoneinfo/UTC
-0600 {me_u}:{me_g} {MTIME} home-file mine
d0755 {me_u}:{me_g} {MTIME} pax
-0644 {me_u}:{me_g} 1600000000 pax/été pax
d0555 {me_u}:{me_g} {MTIME} ro
-0644 {me_u}:{me_g} {MTIME} ro/inside made before ro/ lost its write bit
p0644 {me_u}:{me_g} {MTIME} run-fifo
d0755 {me_u}:{me_g} {MTIME} usr
d0755 {me_u}:{me_g} {MTIME} usr/bin
-0755 {me_u}:{me_g} {MTIME} usr/bin/busybox #!/bin/sh
-0755 {me_u}:{me_g} {MTIME} usr/bin/ls #!/bin/sh
l0777 {me_u}:{me_g} 0 usr/bin/sh -> busybox
-4755 {me_u}:{me_g} {MTIME} usr/bin/su su
d0755 {me_u}:{me_g} {MTIME} usr/share
d0755 {me_u}:{me_g} {MTIME} usr/share/{long}
-0644 {me_u}:{me_g} {MTIME} usr/share/{long}/file long
d0755 {me_u}:{me_g} {MTIME} var
d0755 {me_u}:{me_g} {MTIME} var/cache
-0644 {me_u}:{me_g} {MTIME} var/cache/fresh fresh",
        long = "long-directory-name".repeat(6)
    );
    let long_dir = format!("usr/share/{}", "long-directory-name".repeat(6));
    let made_on_the_way = ["usr/share", "pax", long_dir.as_str()];
    let got = tree(dir.path());
    // usr/share, the long one in it and pax were made on the way (no
    // entries of their own): their times are when they were made.
    let got: Vec<String> = got
        .into_iter()
        .map(|l| {
            let mut parts: Vec<&str> = l.split(' ').collect();
            if made_on_the_way.contains(&parts[3]) {
                parts[2] = "1700000000";
                parts.join(" ")
            } else {
                l
            }
        })
        .collect();
    assert_eq!(got.join("\n"), expected);
    let ino = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().ino();
    assert_eq!(ino("usr/bin/ls"), ino("usr/bin/busybox"), "a hard link");
    // The same from gzip.
    let (dir2, _) = unpack(&layer, true, Options::new(Target::Plain));
    assert_eq!(tree(dir2.path()).len(), tree(dir.path()).len());
    // Without root, a directory without its write bit could not be deleted.
    for d in [&dir, &dir2] {
        let ro = d.path().join("ro");
        std::fs::set_permissions(ro, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_plain_target_applies_deletions_to_the_layers_below() {
    let below = tempfile::Builder::new()
        .prefix("lab05-ext-")
        .tempdir()
        .unwrap();
    let root = below.path();
    for (path, text) in [
        ("etc/motd", "hello"),
        ("etc/keep", "keep"),
        ("var/cache/old", "old"),
        ("var/cache/sub/older", "older"),
    ] {
        std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
        std::fs::write(root.join(path), text).unwrap();
    }
    let layer = Tar::new()
        .file("etc/.wh.motd", b"")
        .file("var/cache/-mine", b"mine") // sorts before the marker: stays
        .file("var/cache/.wh..wh..opq", b"")
        .file("var/cache/new", b"new")
        .file("etc/own", b"own")
        .file("etc/.wh.own", b"") // this layer's own file stays
        .finish();
    let options = Options::new(Target::Plain);
    extract::extract(&layer[..], extract::TAR, &sha256(&layer), root, &options).unwrap();
    let listing: Vec<String> = tree(root)
        .iter()
        .map(|l| l.split(' ').nth(3).unwrap().to_string())
        .collect();
    assert_eq!(
        listing,
        [
            "etc",
            "etc/keep",
            "etc/own",
            "var",
            "var/cache",
            "var/cache/-mine",
            "var/cache/new"
        ]
    );
}

#[test]
fn a_directory_replaced_twice_holds_only_the_new_files() {
    let layer = Tar::new()
        .dir("d/", 0o755)
        .file("d/old", b"old")
        .file("d", b"now a file")
        .dir("d/", 0o755)
        .file("d/new", b"new")
        .finish();
    for target in [Target::Plain, Target::Overlay(Xattr::User)] {
        let (dir, _) = unpack(&layer, false, Options::new(target));
        let names: Vec<String> = tree(dir.path())
            .iter()
            .map(|l| l.split(' ').nth(3).unwrap().to_string())
            .collect();
        assert_eq!(names, ["d", "d/new"], "{target:?}");
    }
}

#[test]
fn an_honest_layer_unpacks_exactly_as_an_overlay_layer() {
    testkit::root_test!();
    let layer = honest((0, 0), (1000, 1000));
    let mut options = Options::new(Target::Overlay(Xattr::Trusted));
    options.devices = true;
    let (dir, done) = unpack(&layer, true, options);
    assert_eq!(done.files, 8);
    let got = overlay::whiteout::listing(dir.path(), Xattr::Trusted).unwrap();
    for line in [
        "w0000 0:0      - etc/motd",
        "-0600 1000:1000      4 home-file",
        "-4755 0:0      2 usr/bin/su",
        "d0755 0:0      - var/cache (opaque)",
        "l0777 0:0      - etc/localtime -> /usr/share/zoneinfo/UTC",
        "p0644 0:0      - run-fifo",
    ] {
        assert!(got.lines().any(|l| l.starts_with(line)), "{line}\n{got}");
    }
    // A device, when allowed.
    let tar = Tar::new().node("dev-null", b'3', (1, 3)).finish();
    let (dir, _) = unpack(&tar, false, options);
    let meta = std::fs::symlink_metadata(dir.path().join("dev-null")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), nix::sys::stat::makedev(1, 3));
}

#[test]
fn a_layer_packed_by_lab_03_unpacks_to_the_same_tree() {
    testkit::root_test!();
    use overlay::layer::{TarOptions, tar_upper};
    let upper = tempfile::Builder::new()
        .prefix("lab05-ext-")
        .tempdir()
        .unwrap();
    let u = upper.path();
    std::fs::create_dir_all(u.join("etc")).unwrap();
    std::fs::write(u.join("etc/hosts"), "127.0.0.1 box\n").unwrap();
    overlay::whiteout::make_whiteout(&u.join("etc/motd")).unwrap();
    std::fs::create_dir_all(u.join("var/cache")).unwrap();
    overlay::whiteout::set_opaque(&u.join("var/cache"), Xattr::Trusted).unwrap();
    std::fs::write(u.join("var/cache/new"), "fresh\n").unwrap();
    std::os::unix::fs::symlink("/etc/hosts", u.join("hosts")).unwrap();
    std::fs::hard_link(u.join("etc/hosts"), u.join("etc/hosts2")).unwrap();
    std::os::unix::fs::chown(u.join("var/cache/new"), Some(1000), Some(100)).unwrap();
    let layer = tar_upper(u, &TarOptions::reproducible(), Xattr::Trusted).unwrap();
    let options = Options::new(Target::Overlay(Xattr::Trusted));
    let (dir, _) = unpack(&layer, false, options);
    assert_eq!(
        overlay::whiteout::listing(dir.path(), Xattr::Trusted).unwrap(),
        overlay::whiteout::listing(u, Xattr::Trusted).unwrap()
    );
    // And packing it again gives the same bytes.
    let again = tar_upper(dir.path(), &TarOptions::reproducible(), Xattr::Trusted).unwrap();
    assert!(again == layer);
}
