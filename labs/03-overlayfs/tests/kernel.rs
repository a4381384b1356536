//! Lab 03's steps, each checked against the real kernel (as root): overlays
//! of real layers mounted on temporary directories. Every mount goes
//! through `common::Lab`, which unmounts it even when the test fails and
//! fails the test if anything stays mounted.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{Lab, image, read, view, work_in, write};
use overlay::diff::{changes, changes_between, render};
use overlay::layer::{TarOptions, Target, apply, digest, tar_dir, tar_upper};
use overlay::mount::{Api, Overlay, is_mounted};
use overlay::vfs::{Driver, populate, same_ids};
use overlay::whiteout::{Xattr, is_opaque, is_whiteout, listing};

/// The ways of handing layers to the kernel that this machine has.
fn apis() -> Vec<Api> {
    let mut apis = vec![Api::Legacy];
    if Api::detect() != Api::Legacy {
        apis.push(Api::detect());
    }
    apis
}

/// A read-only overlay of `lowers` (top first): the view an image gives.
fn read_only(lowers: &[PathBuf]) -> Overlay {
    Overlay {
        lower: lowers.to_vec(),
        upper: None,
        work: None,
        userxattr: false,
    }
}

// --- 03.1 mounting an overlay ----------------------------------------------------

#[test]
fn step_03_1_reads_fall_through_to_the_top_most_layer() {
    if !testkit::require_root("step_03_1_reads_fall_through_to_the_top_most_layer") {
        return;
    }
    for api in apis() {
        let mut lab = Lab::new();
        let lowers = image(&lab);
        let (merged, upper) = lab.container("c", &lowers, api);
        // The top layer's hosts hides the bottom's; the rest falls through.
        assert_eq!(
            read(&merged, "etc/hosts"),
            "127.0.0.1 localhost box\n",
            "{api:?}"
        );
        assert_eq!(read(&merged, "etc/passwd"), read(&lowers[1], "etc/passwd"));
        assert_eq!(read(&merged, "usr/share/doc/c/README"), "c\n");
        assert_eq!(
            std::fs::read_link(merged.join("bin/ls")).unwrap(),
            Path::new("sh")
        );
        // The directories of both layers are merged.
        let docs: Vec<_> = std::fs::read_dir(merged.join("usr/share/doc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(docs.len(), 3, "{docs:?}");
        // Reading copies nothing up.
        assert_eq!(std::fs::read_dir(&upper).unwrap().count(), 0, "{api:?}");
        lab.unmount(&merged);
    }
}

#[test]
fn step_03_1_a_failing_test_leaves_no_mount_behind() {
    if !testkit::require_root("step_03_1_a_failing_test_leaves_no_mount_behind") {
        return;
    }
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut lab = Lab::new();
        let lowers = image(&lab);
        let (merged, _) = lab.container("c", &lowers, Api::detect());
        assert!(is_mounted(&merged));
        seen = Some(merged);
        panic!("this test fails on purpose, with its overlay still mounted");
    }));
    assert!(result.is_err());
    let merged = seen.unwrap();
    assert!(!is_mounted(&merged), "the guard unmounted it");
    assert!(!merged.exists(), "and the test's directory is gone");
}

// --- 03.2 copy-up, whiteouts and opaque directories ------------------------------

#[test]
fn step_03_2_the_first_write_copies_the_whole_file_up() {
    if !testkit::require_root("step_03_2_the_first_write_copies_the_whole_file_up") {
        return;
    }
    let mut lab = Lab::new();
    let lowers = image(&lab);
    let original = std::fs::read(lowers[1].join("bin/sh")).unwrap();
    let (merged, upper) = lab.container("c", &lowers, Api::detect());
    assert_eq!(std::fs::read(merged.join("bin/sh")).unwrap(), original);
    assert!(!upper.join("bin/sh").exists(), "reading copies nothing");
    // Append one byte to a 100 kB file that lives in the bottom layer.
    let mut sh = std::fs::OpenOptions::new()
        .append(true)
        .open(merged.join("bin/sh"))
        .unwrap();
    sh.write_all(b"!").unwrap();
    drop(sh);
    let copied = std::fs::read(upper.join("bin/sh")).unwrap();
    assert_eq!(
        copied.len(),
        original.len() + 1,
        "the whole file is in the upper"
    );
    assert_eq!(&copied[..original.len()], &original[..]);
    assert_eq!(
        std::fs::read(lowers[1].join("bin/sh")).unwrap(),
        original,
        "lower unchanged"
    );
    // Only the file and its parent directory were copied up.
    assert_eq!(listing(&upper, Xattr::Trusted).unwrap().lines().count(), 2);
}

#[test]
fn step_03_2_deleting_a_lower_file_leaves_a_whiteout() {
    if !testkit::require_root("step_03_2_deleting_a_lower_file_leaves_a_whiteout") {
        return;
    }
    let mut lab = Lab::new();
    let lowers = image(&lab);
    let (merged, upper) = lab.container("c", &lowers, Api::detect());
    std::fs::remove_file(merged.join("etc/motd")).unwrap();
    assert!(!merged.join("etc/motd").exists());
    let meta = std::fs::symlink_metadata(upper.join("etc/motd")).unwrap();
    assert!(
        is_whiteout(&meta),
        "mode {:o} rdev {}",
        meta.mode(),
        meta.rdev()
    );
    assert_eq!((meta.rdev(), meta.mode() & 0o7777), (0, 0));
    assert!(
        lowers[1].join("etc/motd").exists(),
        "the layer keeps its file"
    );
}

#[test]
fn step_03_2_a_directory_made_again_is_opaque() {
    if !testkit::require_root("step_03_2_a_directory_made_again_is_opaque") {
        return;
    }
    let mut lab = Lab::new();
    let lowers = image(&lab);
    let (merged, upper) = lab.container("c", &lowers, Api::detect());
    let doc = merged.join("usr/share/doc");
    std::fs::remove_dir_all(&doc).unwrap();
    std::fs::create_dir(&doc).unwrap();
    assert!(is_opaque(&upper.join("usr/share/doc"), Xattr::Trusted).unwrap());
    assert_eq!(
        std::fs::read_dir(&doc).unwrap().count(),
        0,
        "the layers' files are hidden"
    );
    write(&merged, "usr/share/doc/new", "new\n");
    let names: Vec<_> = std::fs::read_dir(&doc)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["new"]);
    // A directory that only holds changes is not opaque.
    assert!(!is_opaque(&upper.join("usr/share"), Xattr::Trusted).unwrap());
}

#[test]
fn step_03_2_userxattr_overlays_mark_with_user_attributes() {
    if !testkit::require_root("step_03_2_userxattr_overlays_mark_with_user_attributes") {
        return;
    }
    let mut lab = Lab::new();
    let lowers = image(&lab);
    let upper = lab.mkdir("c/upper");
    let merged = lab.mkdir("c/merged");
    let mut o = Overlay::new(lowers.clone(), upper.clone(), lab.mkdir("c/work"));
    o.userxattr = true;
    assert_eq!(Xattr::of(&o), Xattr::User);
    lab.mount(&o, &merged, Api::detect());
    std::fs::remove_dir_all(merged.join("usr/share/doc")).unwrap();
    std::fs::create_dir(merged.join("usr/share/doc")).unwrap();
    let doc = upper.join("usr/share/doc");
    assert!(is_opaque(&doc, Xattr::User).unwrap());
    assert!(!is_opaque(&doc, Xattr::Trusted).unwrap());
}

// --- 03.3 OCI markers ------------------------------------------------------------

#[test]
fn step_03_3_an_upper_converts_to_oci_and_back() {
    if !testkit::require_root("step_03_3_an_upper_converts_to_oci_and_back") {
        return;
    }
    let mut lab = Lab::new();
    let lowers = image(&lab);
    let (merged, upper) = lab.container("c", &lowers, Api::detect());
    work_in(&merged);
    let seen = view(&merged);
    lab.unmount(&merged);
    let before = listing(&upper, Xattr::Trusted).unwrap();
    overlay::whiteout::overlay_to_oci(&upper, Xattr::Trusted).unwrap();
    let oci = listing(&upper, Xattr::Trusted).unwrap();
    assert!(
        oci.contains(" etc/.wh.motd ") && oci.contains(" usr/share/doc/.wh..wh..opq "),
        "{oci}"
    );
    assert!(
        !oci.contains("(opaque)") && !oci.lines().any(|l| l.starts_with('w')),
        "{oci}"
    );
    overlay::whiteout::oci_to_overlay(&upper, Xattr::Trusted).unwrap();
    assert_eq!(listing(&upper, Xattr::Trusted).unwrap(), before);
    // The container, mounted again, sees what it saw.
    let o = Overlay::new(lowers, upper, lab.path("c/work"));
    lab.mount(&o, &merged, Api::detect());
    assert_eq!(view(&merged), seen);
}

// --- 03.4 diff -------------------------------------------------------------------

#[test]
fn step_03_4_the_diff_of_a_container() {
    if !testkit::require_root("step_03_4_the_diff_of_a_container") {
        return;
    }
    let mut lab = Lab::new();
    let lowers = image(&lab);
    let (merged, upper) = lab.container("c", &lowers, Api::detect());
    work_in(&merged);
    // docker diff works on a running container: read the upper as it is.
    let changes = changes(&upper, &lowers, Xattr::Trusted).unwrap();
    insta::assert_snapshot!("container_diff", render(&changes));
}

// --- 03.5 layers -------------------------------------------------------------------

#[test]
fn step_03_5_a_committed_layer_reproduces_the_container() {
    if !testkit::require_root("step_03_5_a_committed_layer_reproduces_the_container") {
        return;
    }
    let mut lab = Lab::new();
    let lowers = image(&lab);
    let (merged, upper) = lab.container("c", &lowers, Api::detect());
    work_in(&merged);
    let seen = listing(&merged, Xattr::Trusted).unwrap();
    lab.unmount(&merged);
    let layer = tar_upper(&upper, &TarOptions::reproducible(), Xattr::Trusted).unwrap();
    let again = tar_upper(&upper, &TarOptions::reproducible(), Xattr::Trusted).unwrap();
    assert_eq!(digest(&layer), digest(&again));
    // The new layer goes on top of the image's, as a lower of its own.
    let committed = lab.mkdir("layers/committed");
    apply(&layer[..], &committed, Target::Overlay(Xattr::Trusted)).unwrap();
    let image2 = [vec![committed], lowers].concat();
    let check = lab.mkdir("check");
    lab.mount(&read_only(&image2), &check, Api::detect());
    assert_eq!(listing(&check, Xattr::Trusted).unwrap(), seen);
}

// --- 03.6 the vfs driver -------------------------------------------------------------

#[test]
fn step_03_6_a_vfs_copy_equals_the_overlay() {
    if !testkit::require_root("step_03_6_a_vfs_copy_equals_the_overlay") {
        return;
    }
    let mut lab = Lab::new();
    let lowers = image(&lab);
    // The container's upper, with its whiteout and opaque directory, is
    // a layer like any other: stack it on the image both ways.
    let (merged, upper) = lab.container("c", &lowers, Api::detect());
    work_in(&merged);
    lab.unmount(&merged);
    let stack = [vec![upper], lowers].concat();
    let check = lab.mkdir("check");
    lab.mount(&read_only(&stack), &check, Api::detect());
    let copy = lab.path("copy");
    populate(&stack, Xattr::Trusted, &copy, &same_ids).unwrap();
    let seen = view(&check);
    assert!(
        seen.contains(" usr/share/doc/new ") && !seen.contains("doc/a"),
        "{seen}"
    );
    assert!(
        !seen.contains("etc/motd") && seen.contains(" etc/passwd "),
        "{seen}"
    );
    assert_eq!(view(&copy), seen);
}

#[test]
fn step_03_6_both_drivers_see_the_same_changes() {
    if !testkit::require_root("step_03_6_both_drivers_see_the_same_changes") {
        return;
    }
    let mut lab = Lab::new();
    let lowers = image(&lab);
    let (merged, upper) = lab.container("c", &lowers, Api::detect());
    work_in(&merged);
    let rootfs = lab.path("vfs/rootfs");
    populate(&lowers, Xattr::Trusted, &rootfs, &same_ids).unwrap();
    work_in(&rootfs);
    let by_overlay = changes(&upper, &lowers, Xattr::Trusted).unwrap();
    let by_copy = changes_between(&lowers, Xattr::Trusted, &rootfs, &same_ids).unwrap();
    assert_eq!(render(&by_copy), render(&by_overlay));
    // The vfs container's layer, applied on a fresh copy, gives its root.
    let layer = tar_dir(&rootfs, &by_copy, &TarOptions::default()).unwrap();
    let next = lab.path("vfs/next");
    populate(&lowers, Xattr::Trusted, &next, &same_ids).unwrap();
    apply(&layer[..], &next, Target::Plain).unwrap();
    assert_eq!(
        listing(&next, Xattr::Trusted).unwrap(),
        listing(&rootfs, Xattr::Trusted).unwrap()
    );
    assert_eq!(
        listing(&next, Xattr::Trusted).unwrap(),
        listing(&merged, Xattr::Trusted).unwrap()
    );
}

#[test]
fn step_03_6_detect_finds_overlay_here() {
    if !testkit::require_root("step_03_6_detect_finds_overlay_here") {
        return;
    }
    let lab = Lab::new();
    let (driver, why) = Driver::detect(lab.dir.path());
    eprintln!("{driver}: {why}");
    assert_eq!(driver, Driver::Overlay(Api::detect()), "{why}");
    assert_eq!(
        std::fs::read_dir(lab.dir.path()).unwrap().count(),
        0,
        "no scratch left"
    );
}

/// `lowerdir+` arrived in Linux 6.8: detection must say so on older and
/// newer kernels alike, or every mount on an older one fails.
#[test]
fn step_03_1_the_api_matches_the_kernel_version() {
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_string_lossy().to_string();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().unwrap().parse().unwrap();
    let minor: u32 = parts.next().unwrap().parse().unwrap();
    let want = if (major, minor) >= (6, 8) {
        Api::LowerdirPlus
    } else {
        Api::Legacy
    };
    assert_eq!(Api::detect(), want, "kernel {release}");
}
