//! Lab 03's instructor tests: edge cases of the students' code that the
//! tests they have do not reach. This file is not in the starter
//! repository; the grader copies it in and scores it (see the
//! `instructor_tests` of steps.toml). The parts that make device nodes or
//! `trusted.*` attributes need root, as the steps they belong to do.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use overlay::mount::{Overlay, PAGE_LIMIT};
use overlay::volume::{VolumeSource, parse_tmpfs, parse_volume, to_mount_spec};
use overlay::whiteout::{
    OciEntry, Xattr, is_opaque, is_whiteout, oci_name_for_whiteout, oci_to_overlay, parse_oci_name,
};

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lab03-instructor-")
        .tempdir()
        .unwrap()
}

fn lstat(path: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(path).unwrap()
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and value outlives the call.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "set {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

// --- 03.1 mounting an overlay ----------------------------------------------------

#[test]
fn legacy_options_at_their_edges() {
    let rw = |lower: &[&str], upper: &str, work: &str| {
        Overlay::new(
            lower.iter().map(PathBuf::from).collect(),
            upper.into(),
            work.into(),
        )
    };
    // A read-only overlay has no upperdir or workdir at all.
    let ro = Overlay {
        lower: vec!["/a".into(), "/b".into()],
        upper: None,
        work: None,
        userxattr: false,
    };
    assert_eq!(ro.legacy_options(None).unwrap(), "lowerdir=/a:/b");
    // userxattr is an option of its own.
    let mut o = rw(&["/l/top"], "/u", "/w");
    o.userxattr = true;
    assert_eq!(
        o.legacy_options(None).unwrap(),
        "lowerdir=/l/top,upperdir=/u,workdir=/w,userxattr"
    );
    // Only layers inside `base` are shortened: not `base` itself, and not a
    // path that merely starts with the same letters.
    let o = rw(&["/l", "/lx/a", "/l/b"], "/u", "/w");
    assert_eq!(
        o.legacy_options(Some(Path::new("/l"))).unwrap(),
        "lowerdir=/l:/lx/a:b,upperdir=/u,workdir=/w"
    );
    // Escaping applies to shortened layers, upperdir and workdir alike.
    let o = rw(&["/l/x:y", "/l/p,q"], "/c,1/upper", "/c:1/work");
    assert_eq!(
        o.legacy_options(Some(Path::new("/l"))).unwrap(),
        "lowerdir=x\\:y:p\\,q,upperdir=/c\\,1/upper,workdir=/c\\:1/work"
    );
    // The new API takes each path as it is: nothing to escape.
    assert_eq!(
        o.params().unwrap()[0],
        ("lowerdir+".to_string(), Some("/l/x:y".to_string()))
    );

    // 4095 bytes fit; one more does not. `lowerdir=` + `,upperdir=/u` +
    // `,workdir=/w` take 32 bytes; the layer's path the rest.
    let long = |len: usize| format!("/{}", "a".repeat(len - 1));
    let fits = rw(&[&long(PAGE_LIMIT - 32)], "/u", "/w");
    assert_eq!(fits.legacy_options(None).unwrap().len(), PAGE_LIMIT);
    let over = rw(&[&long(PAGE_LIMIT - 31)], "/u", "/w");
    let err = over.legacy_options(None).unwrap_err().to_string();
    assert!(err.contains("4095"), "{err}");
    // The limit counts the string as written, backslashes included.
    let escaped = rw(&[&format!("{}:", long(PAGE_LIMIT - 33))], "/u", "/w");
    assert!(escaped.legacy_options(None).is_err());
    assert!(escaped.params().is_ok(), "lowerdir+ has no such limit");

    // What the kernel would refuse is refused before it is asked.
    let lonely = Overlay {
        lower: vec!["/a".into()],
        upper: None,
        work: None,
        userxattr: false,
    };
    assert!(lonely.legacy_options(None).is_err());
    assert!(lonely.params().is_err());
    let no_work = Overlay {
        work: None,
        ..rw(&["/a"], "/u", "/w")
    };
    assert!(no_work.params().is_err());
}

// --- 03.2 whiteouts and opaque directories ---------------------------------------

#[test]
fn only_a_char_device_0_0_is_a_whiteout_and_only_y_is_opaque() {
    let d = tmp();
    let root = d.path();
    // Directories, fifos and symbolic links have device number 0 too.
    std::fs::create_dir(root.join("dir")).unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    std::os::unix::fs::symlink("/dev/null", root.join("link")).unwrap();
    std::fs::write(root.join("file"), "").unwrap();
    for name in ["dir", "fifo", "link", "file"] {
        let meta = lstat(&root.join(name));
        assert_eq!(meta.rdev(), 0, "{name}");
        assert!(!is_whiteout(&meta), "{name} is not a whiteout");
    }
    assert!(!is_whiteout(&lstat(Path::new("/dev/zero"))));

    if !testkit::require_root(
        "instructor::only_a_char_device_0_0_is_a_whiteout_and_only_y_is_opaque",
    ) {
        return;
    }
    // A block device 0/0 is not a whiteout, a char device 0/0 is, and a
    // char device 0/1 is not.
    mknod(
        &root.join("block"),
        SFlag::S_IFBLK,
        Mode::empty(),
        makedev(0, 0),
    )
    .unwrap();
    mknod(
        &root.join("char01"),
        SFlag::S_IFCHR,
        Mode::empty(),
        makedev(0, 1),
    )
    .unwrap();
    mknod(
        &root.join("char00"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o644),
        makedev(0, 0),
    )
    .unwrap();
    assert!(!is_whiteout(&lstat(&root.join("block"))));
    assert!(!is_whiteout(&lstat(&root.join("char01"))));
    assert!(
        is_whiteout(&lstat(&root.join("char00"))),
        "whatever its mode"
    );

    // overlayfs reads an opaque mark only when the value is exactly `y`.
    for (name, value, opaque) in [
        ("y", &b"y"[..], true),
        ("n", b"n", false),
        ("yes", b"yes", false),
        ("empty", b"", false),
    ] {
        let dir = root.join(format!("opaque-{name}"));
        std::fs::create_dir(&dir).unwrap();
        set_xattr(&dir, "trusted.overlay.opaque", value);
        assert_eq!(is_opaque(&dir, Xattr::Trusted).unwrap(), opaque, "{name}");
        assert!(!is_opaque(&dir, Xattr::User).unwrap(), "{name}");
    }
}

// --- 03.3 whiteouts in the OCI layer format --------------------------------------

#[test]
fn oci_names_are_bytes_not_text() {
    // File names need not be UTF-8: a Latin-1 é, for example.
    let latin1 = OsStr::from_bytes(b"caf\xe9");
    assert_eq!(
        oci_name_for_whiteout(latin1).as_bytes(),
        b".wh.caf\xe9".as_slice()
    );
    assert_eq!(
        parse_oci_name(OsStr::from_bytes(b".wh.caf\xe9")).unwrap(),
        OciEntry::Whiteout(OsString::from_vec(b"caf\xe9".to_vec()))
    );
    assert_eq!(
        parse_oci_name(OsStr::from_bytes(b"caf\xe9")).unwrap(),
        OciEntry::Plain(latin1.to_os_string())
    );
    // Three dots are a name like any other; the prefix must be whole and
    // at the start.
    assert_eq!(
        parse_oci_name(".wh....").unwrap(),
        OciEntry::Whiteout("...".into())
    );
    for plain in [".wh", "wh.x", "x.wh.y", "..wh.x", ".WH.x"] {
        assert_eq!(
            parse_oci_name(plain).unwrap(),
            OciEntry::Plain(plain.into()),
            "{plain}"
        );
    }
    // Round trips, for names that start like markers too.
    for name in ["passwd", ".wh.x", ".", "wh..opq"] {
        let marker = oci_name_for_whiteout(name);
        if name == "." {
            assert!(parse_oci_name(&marker).is_err());
        } else {
            assert_eq!(
                parse_oci_name(&marker).unwrap(),
                OciEntry::Whiteout(name.into()),
                "{name}"
            );
        }
    }
}

#[test]
fn an_oci_layer_that_deletes_and_adds_the_same_name() {
    // Reading names needs no root; making whiteouts does.
    assert_eq!(
        parse_oci_name(".wh.both").unwrap(),
        OciEntry::Whiteout("both".into())
    );
    if !testkit::require_root("instructor::an_oci_layer_that_deletes_and_adds_the_same_name") {
        return;
    }
    let d = tmp();
    let root = d.path();
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    };
    // `.wh.both` deletes `both` from the layers below, and this layer adds
    // a new `both`: the new file stays.
    write("both", "new\n");
    write(".wh.both", "");
    // A marker's owner becomes the whiteout's owner.
    let gone = write(".wh.gone", "");
    std::os::unix::fs::lchown(&gone, Some(1234), Some(5678)).unwrap();
    write("a/b/c/.wh.deep", "");
    write("dir/.wh..wh..opq", "");
    write("dir/kept", "x");

    oci_to_overlay(root, Xattr::Trusted).unwrap();

    assert_eq!(std::fs::read_to_string(root.join("both")).unwrap(), "new\n");
    let gone = lstat(&root.join("gone"));
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert_eq!((gone.uid(), gone.gid()), (1234, 5678));
    assert!(is_whiteout(&lstat(&root.join("a/b/c/deep"))));
    assert!(is_opaque(&root.join("dir"), Xattr::Trusted).unwrap());
    assert!(root.join("dir/kept").exists());
    for marker in [".wh.both", ".wh.gone", "a/b/c/.wh.deep", "dir/.wh..wh..opq"] {
        assert!(
            std::fs::symlink_metadata(root.join(marker)).is_err(),
            "{marker} is left"
        );
    }

    // A layer that would delete `..` is refused, wherever the marker is.
    let bad = tmp();
    std::fs::create_dir_all(bad.path().join("x/y")).unwrap();
    std::fs::write(bad.path().join("x/y/.wh.."), "").unwrap();
    assert!(oci_to_overlay(bad.path(), Xattr::Trusted).is_err());
}

// --- 03.7 volumes ----------------------------------------------------------------

#[test]
fn volume_flags_that_look_alike() {
    // With two parts, only a second part made of options is options: a
    // volume may be called `ro`.
    let m = parse_volume("ro:/data").unwrap();
    assert_eq!(
        m.source,
        VolumeSource::Named {
            name: "ro".into(),
            anonymous: false
        }
    );
    assert!(!m.readonly);
    let m = parse_volume("/data:ro,z").unwrap();
    assert!(matches!(
        m.source,
        VolumeSource::Named {
            anonymous: true,
            ..
        }
    ));
    assert!(m.readonly);
    let m = parse_volume("/data:nocopy").unwrap();
    assert!(m.nocopy && !m.readonly);
    // Saying the same thing twice is not a contradiction.
    assert!(parse_volume("/srv:/data:ro,ro").unwrap().readonly);
    assert!(parse_volume("/srv:/data:rw,ro").is_err());
    assert!(parse_volume("/srv:/data:ro,nocopy").is_err());

    // tmpfs flags: the last of `exec`/`noexec` wins, and ids come after
    // size and mode.
    let volumes = Path::new("/v");
    let spec = |s: &str| to_mount_spec(&parse_tmpfs(s).unwrap(), volumes).options;
    assert_eq!(
        spec("/t:exec,noexec,uid=5,size=1k,mode=700"),
        [
            "noexec",
            "nosuid",
            "nodev",
            "size=1024",
            "mode=700",
            "uid=5"
        ]
    );
    assert_eq!(spec("/t:noexec,exec,nodev,dev"), ["nosuid"]);
    // An anonymous volume mounts its own data directory.
    let m = parse_volume("/cache:ro").unwrap();
    let name = m.volume_name().unwrap().to_string();
    let s = to_mount_spec(&m, volumes);
    assert_eq!(s.source, volumes.join(&name).join("_data"));
    assert_eq!(s.options, ["rbind", "rprivate", "ro"]);
}
