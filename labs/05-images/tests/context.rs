//! Step 05.8 on real directories: a build context, an image root and an
//! "outside" directory side by side in one temporary directory, so that
//! every test can check that nothing was written outside the image.
//!
//! Most tests run without root: they pass `--chown` with the test's own ids,
//! which any user may give their own files. The tests of ownership itself
//! (root by default, other ids, owners kept from an archive) need root and
//! say so when they cannot run.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use images::Error;
use images::context::{Context, CopyOptions, Ignore, add, copy, parse_chown};

/// A context, an image root and a directory that must stay untouched.
struct Lab {
    _tmp: tempfile::TempDir,
    ctx: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let tmp = tempfile::Builder::new()
            .prefix("lab05-ctx-")
            .tempdir()
            .unwrap();
        let ctx = tmp.path().join("ctx");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        for dir in [&ctx, &root, &outside] {
            fs::create_dir(dir).unwrap();
        }
        Lab {
            _tmp: tmp,
            ctx,
            root,
            outside,
        }
    }

    /// Writes a file in the context, making its parents.
    fn file(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.ctx.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        path
    }

    fn context(&self) -> Context {
        Context::open(&self.ctx, Ignore::load(&self.ctx).unwrap()).unwrap()
    }

    /// Copies with the test's own ids, so that no root is needed.
    fn copy(&self, sources: &[&str], dest: &str, workdir: &str) -> images::Result<Vec<PathBuf>> {
        copy(&self.context(), sources, dest, workdir, &self.root, &mine())
    }

    fn add(&self, sources: &[&str], dest: &str) -> images::Result<Vec<PathBuf>> {
        add(&self.context(), sources, dest, "/", &self.root, &mine())
    }

    /// The content of a file in the image.
    fn read(&self, image_path: &str) -> String {
        fs::read_to_string(self.in_root(image_path)).unwrap()
    }

    fn in_root(&self, image_path: &str) -> PathBuf {
        self.root.join(image_path.trim_start_matches('/'))
    }

    /// Everything under the image root, `path` or `path -> target`, sorted.
    fn image_tree(&self) -> Vec<String> {
        tree(&self.root)
    }

    /// Fails the test if anything appeared in the outside directory.
    fn assert_outside_untouched(&self) {
        assert_eq!(
            tree(&self.outside),
            Vec::<String>::new(),
            "written outside the image"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // A failing test may leave a directory the test user cannot enter
        // (as happens without root); open everything up so that the
        // temporary directory can still be removed.
        let mut todo = vec![self.root.clone()];
        while let Some(dir) = todo.pop() {
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
            for item in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if item.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(item.path());
                }
            }
        }
    }
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(here) = todo.pop() {
        for item in fs::read_dir(&here).unwrap() {
            let path = item.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    fs::read_link(&path).unwrap().display()
                ));
            } else if meta.is_dir() {
                out.push(format!("{rel}/"));
                todo.push(path);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

fn mine() -> CopyOptions {
    CopyOptions {
        chown: Some(own_ids()),
        chmod: None,
    }
}

fn own_ids() -> (u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn message<T: std::fmt::Debug>(result: images::Result<T>) -> String {
    result.unwrap_err().to_string()
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

// --- resolving sources -----------------------------------------------------------

#[test]
fn sources_are_relative_to_the_context_and_may_use_wildcards() {
    let lab = Lab::new();
    for f in [
        "a.txt",
        "b.txt",
        "c.md",
        "src/x.rs",
        "src/y.rs",
        "src/sub/z.rs",
    ] {
        lab.file(f, f);
    }
    let ctx = lab.context();
    assert_eq!(ctx.resolve("a.txt").unwrap(), paths(&["a.txt"]));
    assert_eq!(ctx.resolve("/a.txt").unwrap(), paths(&["a.txt"]));
    assert_eq!(ctx.resolve("./src/../a.txt").unwrap(), paths(&["a.txt"]));
    assert_eq!(ctx.resolve("*.txt").unwrap(), paths(&["a.txt", "b.txt"]));
    assert_eq!(ctx.resolve("[ab].*").unwrap(), paths(&["a.txt", "b.txt"]));
    assert_eq!(
        ctx.resolve("/src/*.rs").unwrap(),
        paths(&["src/x.rs", "src/y.rs"])
    );
    assert_eq!(ctx.resolve("s?c/*/z.rs").unwrap(), paths(&["src/sub/z.rs"]));
    // `*` does not cross a `/`.
    let e = message(ctx.resolve("*.rs"));
    assert!(e.contains("matches nothing"), "{e}");
    // Escapes make wildcard characters plain, in any component.
    lab.file("dir[1]/n.txt", "n");
    let ctx = lab.context();
    assert_eq!(
        ctx.resolve("dir\\[1\\]/*.txt").unwrap(),
        paths(&["dir[1]/n.txt"])
    );
    assert_eq!(ctx.resolve(".").unwrap(), paths(&["."]));
    assert_eq!(ctx.resolve("/").unwrap(), paths(&["."]));
}

#[test]
fn sources_outside_the_context_are_refused() {
    let lab = Lab::new();
    lab.file("a.txt", "a");
    fs::write(lab.outside.join("secret"), "s").unwrap();
    let ctx = lab.context();
    for src in [
        "../outside/secret",
        "a/../../outside/secret",
        "/../outside/secret",
        "..",
    ] {
        let e = message(ctx.resolve(src));
        assert!(e.contains("outside the build context"), "{src}: {e}");
    }
}

#[test]
fn missing_sources_say_so() {
    let lab = Lab::new();
    lab.file("a.txt", "a");
    let ctx = lab.context();
    let e = message(ctx.resolve("nope.txt"));
    assert!(
        e.contains("\"nope.txt\" is not in the build context") && e.contains("no such file"),
        "{e}"
    );
    let e = message(ctx.resolve("*.nope"));
    assert!(e.contains("matches nothing"), "{e}");
    let e = message(ctx.resolve("a.txt/inside"));
    assert!(e.contains("not in the build context"), "{e}");
}

#[test]
fn ignored_files_are_absent_and_the_rule_is_named() {
    let lab = Lab::new();
    lab.file(
        ".dockerignore",
        "# secrets\nsecret*\n*.log\n!keep.log\nnode_modules\n",
    );
    for f in [
        "secret.txt",
        "a.log",
        "keep.log",
        "app.js",
        "node_modules/x/index.js",
    ] {
        lab.file(f, f);
    }
    let ctx = lab.context();
    let e = message(ctx.resolve("secret.txt"));
    assert!(e.contains(".dockerignore line 2 (`secret*`)"), "{e}");
    let e = message(ctx.resolve("node_modules/x/index.js"));
    assert!(e.contains(".dockerignore line 5 (`node_modules`)"), "{e}");
    assert_eq!(ctx.resolve("*.log").unwrap(), paths(&["keep.log"]));
    assert_eq!(
        ctx.files().collect::<Vec<_>>(),
        paths(&[".dockerignore", "app.js", "keep.log"])
    );
    // COPY . copies what is left.
    lab.copy(&["."], "/app/", "/").unwrap();
    assert_eq!(
        lab.image_tree(),
        ["app/", "app/.dockerignore", "app/app.js", "app/keep.log"]
    );
}

#[test]
fn an_exception_inside_an_ignored_directory_brings_its_parents() {
    let lab = Lab::new();
    lab.file(".dockerignore", "docs\n!docs/guide/keep.md\n");
    for f in [
        "docs/other.md",
        "docs/guide/keep.md",
        "docs/guide/drop.md",
        "main.rs",
    ] {
        lab.file(f, f);
    }
    let ctx = lab.context();
    assert_eq!(
        ctx.files().collect::<Vec<_>>(),
        paths(&[
            ".dockerignore",
            "docs",
            "docs/guide",
            "docs/guide/keep.md",
            "main.rs"
        ])
    );
    lab.copy(&["docs"], "/d", "/").unwrap();
    assert_eq!(lab.image_tree(), ["d/", "d/guide/", "d/guide/keep.md"]);
}

#[test]
fn a_linked_source_is_followed_inside_the_context_only() {
    let lab = Lab::new();
    lab.file("real.txt", "real");
    lab.file("inner/f.txt", "inner");
    lab.file("hidden.txt", "hidden");
    lab.file(".dockerignore", "hidden.txt\n");
    fs::write(lab.outside.join("secret.txt"), "host secret").unwrap();
    symlink("real.txt", lab.ctx.join("rel")).unwrap();
    // Absolute targets start at the context, as if it were `/`.
    symlink("/inner/f.txt", lab.ctx.join("abs")).unwrap();
    // Climbing out stops at the context's top.
    symlink("../outside/secret.txt", lab.ctx.join("up")).unwrap();
    symlink(lab.outside.join("secret.txt"), lab.ctx.join("host")).unwrap();
    symlink("hidden.txt", lab.ctx.join("to-ignored")).unwrap();

    let ctx = lab.context();
    assert_eq!(ctx.resolve("rel").unwrap(), paths(&["rel"]));
    for src in ["up", "host", "to-ignored"] {
        let e = message(ctx.resolve(src));
        assert!(e.contains("not in the build context"), "{src}: {e}");
    }
    lab.copy(&["rel", "abs"], "/out/", "/").unwrap();
    // The file is named as the source was, and holds the target's content.
    assert_eq!(lab.read("/out/rel"), "real");
    assert_eq!(lab.read("/out/abs"), "inner");
    assert!(
        !fs::symlink_metadata(lab.in_root("/out/rel"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

// --- the cache key ---------------------------------------------------------------

#[test]
fn the_checksum_ignores_time_but_not_content_names_or_modes() {
    let lab = Lab::new();
    lab.file(".dockerignore", "**/*.tmp\n");
    let a = lab.file("app/a.txt", "alpha");
    lab.file("app/b.txt", "beta");
    symlink("a.txt", lab.ctx.join("app/link")).unwrap();
    let key = || lab.context().checksum(&["app"]).unwrap();
    let first = key();
    assert!(first.starts_with("sha256:") && first.len() == 71, "{first}");

    // touch: a new modification time, same bytes.
    let file = fs::File::options().write(true).open(&a).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    drop(file);
    assert_eq!(key(), first, "touch must keep the cache");

    // An ignored file is not part of the context at all.
    lab.file("app/scratch.tmp", "noise");
    assert_eq!(key(), first, "ignored files must not count");

    // One byte.
    fs::write(&a, "alphA").unwrap();
    assert_ne!(key(), first, "an edit must break the cache");
    fs::write(&a, "alpha").unwrap();
    assert_eq!(key(), first, "the key is a function of the content");

    // A mode.
    chmod(&a, 0o755);
    assert_ne!(key(), first, "chmod must break the cache");
    chmod(&a, mode(&lab.ctx.join("app/b.txt")));

    // A name.
    fs::rename(lab.ctx.join("app/b.txt"), lab.ctx.join("app/c.txt")).unwrap();
    assert_ne!(key(), first, "a rename must break the cache");
    fs::rename(lab.ctx.join("app/c.txt"), lab.ctx.join("app/b.txt")).unwrap();

    // A link's target.
    fs::remove_file(lab.ctx.join("app/link")).unwrap();
    symlink("b.txt", lab.ctx.join("app/link")).unwrap();
    assert_ne!(key(), first, "a new link target must break the cache");
}

#[test]
fn the_checksum_covers_what_a_wildcard_matched() {
    let lab = Lab::new();
    lab.file("one.txt", "1");
    lab.file("two.txt", "2");
    let key = || lab.context().checksum(&["*.txt"]).unwrap();
    let first = key();
    fs::rename(lab.ctx.join("two.txt"), lab.ctx.join("three.txt")).unwrap();
    assert_ne!(key(), first);
    let e = message(lab.context().checksum(&["missing"]));
    assert!(e.contains("not in the build context"), "{e}");
}

// --- COPY ------------------------------------------------------------------------

#[test]
fn a_file_becomes_dest_or_goes_into_a_directory() {
    let lab = Lab::new();
    lab.file("a.txt", "A");
    fs::create_dir(lab.root.join("existing")).unwrap();

    // No trailing slash, nothing there: the file takes that name, and
    // the parents are made.
    lab.copy(&["a.txt"], "/x/y/renamed.txt", "/").unwrap();
    assert_eq!(lab.read("/x/y/renamed.txt"), "A");
    assert_eq!(mode(&lab.in_root("/x")), 0o755);
    assert_eq!(mode(&lab.in_root("/x/y")), 0o755);
    // A trailing slash: a directory, made if missing.
    lab.copy(&["a.txt"], "/dir/", "/").unwrap();
    assert_eq!(lab.read("/dir/a.txt"), "A");
    // An existing directory without the slash: into it.
    lab.copy(&["a.txt"], "/existing", "/").unwrap();
    assert_eq!(lab.read("/existing/a.txt"), "A");
    // Copying again replaces the file.
    lab.file("a.txt", "A2");
    lab.copy(&["a.txt"], "/dir/", "/").unwrap();
    assert_eq!(lab.read("/dir/a.txt"), "A2");
    lab.assert_outside_untouched();
}

#[test]
fn a_relative_dest_starts_at_workdir() {
    let lab = Lab::new();
    lab.file("a.txt", "A");
    fs::create_dir(lab.root.join("app")).unwrap();
    lab.copy(&["a.txt"], "conf/b.txt", "/app").unwrap();
    assert_eq!(lab.read("/app/conf/b.txt"), "A");
    // `.` is WORKDIR, an existing directory.
    let written = lab.copy(&["a.txt"], ".", "/app").unwrap();
    assert_eq!(written, paths(&["/app/a.txt"]));
    // `..` stops at the image's `/`.
    lab.copy(&["a.txt"], "../../../../top.txt", "/app").unwrap();
    assert_eq!(lab.read("/top.txt"), "A");
    lab.assert_outside_untouched();
}

#[test]
fn several_sources_need_a_directory_with_a_slash() {
    let lab = Lab::new();
    lab.file("a.txt", "A");
    lab.file("b.txt", "B");
    lab.file("version-1.2.3.tar.gz.txt", "V");
    for (sources, dest) in [
        (&["a.txt", "b.txt"][..], "/dest"),
        (&["*.txt"][..], "/dest"),
    ] {
        let e = message(lab.copy(sources, dest, "/"));
        assert!(e.contains("trailing slash: /dest/"), "{sources:?}: {e}");
    }
    assert_eq!(
        lab.image_tree(),
        Vec::<String>::new(),
        "an error writes nothing"
    );
    let written = lab.copy(&["[ab].txt"], "/dest/", "/").unwrap();
    assert_eq!(written, paths(&["/dest", "/dest/a.txt", "/dest/b.txt"]));
    // A wildcard that matches one file is one source: dest is its name.
    lab.copy(&["version-*"], "/opt/app.txt", "/").unwrap();
    assert_eq!(lab.read("/opt/app.txt"), "V");
}

#[test]
fn a_directory_copies_its_contents() {
    let lab = Lab::new();
    lab.file("app/a.txt", "A");
    lab.file("app/sub/b.txt", "B");
    symlink("a.txt", lab.ctx.join("app/link")).unwrap();
    symlink("/etc/passwd", lab.ctx.join("app/abs")).unwrap();
    chmod(&lab.ctx.join("app"), 0o750);
    chmod(&lab.ctx.join("app/sub"), 0o700);
    lab.copy(&["app"], "/srv", "/").unwrap();
    assert_eq!(
        lab.image_tree(),
        [
            "srv/",
            "srv/a.txt",
            "srv/abs -> /etc/passwd",
            "srv/link -> a.txt",
            "srv/sub/",
            "srv/sub/b.txt"
        ]
    );
    // The new destination is the copy of the source directory.
    assert_eq!(mode(&lab.in_root("/srv")), 0o750);
    assert_eq!(mode(&lab.in_root("/srv/sub")), 0o700);

    // Into an existing directory: merged, and it keeps its own mode.
    fs::create_dir(lab.root.join("keep")).unwrap();
    chmod(&lab.root.join("keep"), 0o711);
    fs::write(lab.root.join("keep/old.txt"), "old").unwrap();
    lab.copy(&["app"], "/keep/", "/").unwrap();
    assert_eq!(mode(&lab.root.join("keep")), 0o711);
    assert_eq!(lab.read("/keep/old.txt"), "old");
    assert_eq!(lab.read("/keep/sub/b.txt"), "B");

    // A wildcard matching directories copies each one's contents.
    lab.file("lib1/one.so", "1");
    lab.file("lib2/two.so", "2");
    lab.copy(&["lib?"], "/usr/lib/", "/").unwrap();
    assert_eq!(lab.read("/usr/lib/one.so"), "1");
    assert_eq!(lab.read("/usr/lib/two.so"), "2");

    // A directory onto a file is refused.
    fs::write(lab.root.join("plain"), "x").unwrap();
    let e = message(lab.copy(&["app"], "/plain", "/"));
    assert!(e.contains("not a directory"), "{e}");
    lab.assert_outside_untouched();
}

#[test]
fn modes_and_times_are_kept_unless_chmod() {
    let lab = Lab::new();
    let script = lab.file("bin/run.sh", "#!/bin/sh\n");
    chmod(&script, 0o4755);
    let data = lab.file("bin/data", "d");
    chmod(&data, 0o640);
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(&script)
        .unwrap()
        .set_modified(when)
        .unwrap();

    lab.copy(&["bin"], "/usr/local/bin/", "/").unwrap();
    assert_eq!(mode(&lab.in_root("/usr/local/bin/run.sh")), 0o4755);
    assert_eq!(mode(&lab.in_root("/usr/local/bin/data")), 0o640);
    let copied = fs::metadata(lab.in_root("/usr/local/bin/run.sh")).unwrap();
    assert_eq!(copied.modified().unwrap(), when);

    let options = CopyOptions {
        chmod: Some(0o700),
        ..mine()
    };
    copy(
        &lab.context(),
        &["bin"],
        "/opt/bin/",
        "/",
        &lab.root,
        &options,
    )
    .unwrap();
    assert_eq!(mode(&lab.in_root("/opt/bin/run.sh")), 0o700);
    assert_eq!(mode(&lab.in_root("/opt/bin/data")), 0o700);
    // The copy of the directory gets the mode too (as in Docker), but the
    // directories made on the way to it keep 0755.
    assert_eq!(mode(&lab.in_root("/opt/bin")), 0o700);
    assert_eq!(mode(&lab.in_root("/opt")), 0o755);
}

#[test]
fn a_file_never_replaces_a_directory() {
    let lab = Lab::new();
    lab.file("a.txt", "A");
    fs::create_dir_all(lab.root.join("d/a.txt/inside")).unwrap();
    let e = message(lab.copy(&["a.txt"], "/d/", "/"));
    assert!(e.contains("/d/a.txt is a directory in the image"), "{e}");
    assert!(lab.root.join("d/a.txt/inside").is_dir());
}

#[test]
fn special_files_are_refused_clearly() {
    let lab = Lab::new();
    lab.file("dir/ok.txt", "ok");
    nix::unistd::mkfifo(
        &lab.ctx.join("dir/pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let e = message(lab.copy(&["d*"], "/x/", "/"));
    assert!(
        e.contains("dir/pipe is a FIFO") && e.contains(".dockerignore"),
        "{e}"
    );
    assert_eq!(
        lab.image_tree(),
        Vec::<String>::new(),
        "refused before writing"
    );
}

#[test]
fn urls_are_refused_because_builds_are_offline() {
    let lab = Lab::new();
    let e = message(lab.add(&["https://example.com/app.tar.gz"], "/opt/"));
    assert_eq!(
        e,
        "ADD https://example.com/app.tar.gz: ADD from a URL needs the network, which berth's \
         builds do not use: download the file into the build context and ADD or COPY it"
    );
    let e = message(lab.add(&["git@github.com:moby/moby.git"], "/src/"));
    assert!(e.contains("needs the network"), "{e}");
    let e = message(lab.copy(&["http://example.com/x"], "/x", "/"));
    assert!(
        e.contains("COPY takes files from the build context, not URLs"),
        "{e}"
    );
}

// --- staying inside the image ----------------------------------------------------

#[test]
fn links_in_the_image_are_resolved_inside_it() {
    let lab = Lab::new();
    lab.file("probe.txt", "P");
    fs::create_dir(lab.root.join("etc")).unwrap();
    // The host path of the outside directory, as an absolute link target.
    symlink(&lab.outside, lab.root.join("host")).unwrap();
    // An absolute link, as base images are full of.
    symlink("/etc", lab.root.join("app")).unwrap();
    // A relative link that climbs far beyond the root.
    symlink("../../../../../../outside", lab.root.join("up")).unwrap();
    // A link to the host's root.
    symlink("/", lab.root.join("slash")).unwrap();

    lab.copy(&["probe.txt"], "/app/", "/").unwrap();
    assert_eq!(lab.read("/etc/probe.txt"), "P");

    // Both lead to directories the image does not have: an error, and
    // nothing written anywhere.
    for dest in ["/up/", "/host/"] {
        let e = message(lab.copy(&["probe.txt"], dest, "/"));
        assert!(e.contains("does not exist"), "{dest}: {e}");
    }
    lab.assert_outside_untouched();
    // Once the image has them, the copies land there, inside the image.
    let host_inside = lab.root.join(lab.outside.strip_prefix("/").unwrap());
    fs::create_dir_all(&host_inside).unwrap();
    fs::create_dir(lab.root.join("outside")).unwrap();
    lab.copy(&["probe.txt"], "/up/", "/").unwrap();
    assert_eq!(lab.read("/outside/probe.txt"), "P");
    lab.copy(&["probe.txt"], "/host/", "/").unwrap();
    assert_eq!(
        fs::read_to_string(host_inside.join("probe.txt")).unwrap(),
        "P"
    );

    lab.copy(&["probe.txt"], "/slash/lab05-ctx-probe.txt", "/")
        .unwrap();
    assert_eq!(lab.read("/lab05-ctx-probe.txt"), "P");
    assert!(!Path::new("/lab05-ctx-probe.txt").exists());

    lab.assert_outside_untouched();
}

#[test]
fn a_link_at_the_destination_is_replaced_not_written_through() {
    let lab = Lab::new();
    lab.file("config", "mine");
    let target = lab.outside.join("victim");
    fs::write(&target, "precious").unwrap();
    fs::create_dir(lab.root.join("app")).unwrap();
    symlink(&target, lab.root.join("app/config")).unwrap();
    symlink("../../../outside/victim", lab.root.join("app/relative")).unwrap();
    lab.copy(&["config"], "/app/config", "/").unwrap();
    lab.copy(&["config"], "/app/relative", "/").unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    assert_eq!(lab.read("/app/config"), "mine");
    assert_eq!(lab.read("/app/relative"), "mine");
    assert_eq!(
        lab.image_tree(),
        ["app/", "app/config", "app/relative"],
        "the links are gone, replaced by files"
    );
}

#[test]
fn links_inside_a_destination_directory_cannot_lead_out() {
    let lab = Lab::new();
    lab.file("app/sub/b.txt", "B");
    lab.file("app/other/c.txt", "C");
    fs::create_dir(lab.root.join("srv")).unwrap();
    // The image has links where the copy puts directories.
    symlink(&lab.outside, lab.root.join("srv/sub")).unwrap();
    symlink("../../../..", lab.root.join("srv/other")).unwrap();
    lab.copy(&["app"], "/srv/", "/").unwrap();
    // `sub` led nowhere inside /srv and was replaced by a directory;
    // `other` climbs, and stops at the top of /srv: the destination is
    // the `/` of what is copied into it.
    assert_eq!(lab.read("/srv/sub/b.txt"), "B");
    assert_eq!(lab.read("/srv/c.txt"), "C");
    lab.assert_outside_untouched();
}

#[test]
fn a_dangling_link_on_the_way_is_an_error() {
    let lab = Lab::new();
    lab.file("a.txt", "A");
    symlink("/nowhere", lab.root.join("dangling")).unwrap();
    let e = message(lab.copy(&["a.txt"], "/dangling/", "/"));
    assert!(
        e.contains("symbolic link in the image to something that does not exist"),
        "{e}"
    );
    lab.assert_outside_untouched();
}

#[test]
fn names_in_chown_come_from_the_image() {
    let lab = Lab::new();
    let e = message(parse_chown("app", &lab.root));
    assert!(
        e.contains("the image has no /etc/passwd") && e.contains("numeric"),
        "{e}"
    );
    fs::create_dir(lab.root.join("etc")).unwrap();
    fs::write(
        lab.root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(lab.root.join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
    assert_eq!(parse_chown("app", &lab.root).unwrap(), (1000, 1000));
    assert_eq!(parse_chown("app:staff", &lab.root).unwrap(), (1000, 50));
    assert_eq!(parse_chown("7:staff", &lab.root).unwrap(), (7, 50));
    assert_eq!(parse_chown("1:2", &lab.root).unwrap(), (1, 2));
    assert_eq!(parse_chown("42", &lab.root).unwrap(), (42, 42));
    let e = message(parse_chown("ghost", &lab.root));
    assert!(e.contains("no user \"ghost\""), "{e}");
    let e = message(parse_chown("a:b:c", &lab.root));
    assert!(e.contains("USER:GROUP"), "{e}");

    // The image's /etc/passwd is read inside the image, even through a link.
    fs::write(lab.outside.join("passwd"), "app:x:666:666::/:/bin/sh\n").unwrap();
    fs::remove_file(lab.root.join("etc/passwd")).unwrap();
    symlink(lab.outside.join("passwd"), lab.root.join("etc/passwd")).unwrap();
    let e = message(parse_chown("app", &lab.root));
    assert!(e.contains("the image has no /etc/passwd"), "{e}");
}

// --- ADD -------------------------------------------------------------------------

/// A tar header with raw (unchecked) names, so that hostile archives can be
/// built too.
fn header(kind: tar::EntryType, name: &str, link: &str, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let old = h.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    let (uid, gid) = own_ids();
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(1_000_000_000);
    h.set_cksum();
    h
}

/// An archive entry: kind, name, link target or content, mode.
type Item<'a> = (tar::EntryType, &'a str, &'a str, u32);

/// A tar archive of `entries`.
fn tarball(entries: &[Item<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for &(kind, name, extra, mode) in entries {
        if kind == tar::EntryType::Regular {
            let h = header(kind, name, "", mode, extra.len() as u64);
            builder.append(&h, extra.as_bytes()).unwrap();
        } else {
            builder
                .append(&header(kind, name, extra, mode, 0), &[][..])
                .unwrap();
        }
    }
    builder.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as L};

#[test]
fn add_unpacks_a_gzip_tar_found_by_its_content() {
    let lab = Lab::new();
    let archive = tarball(&[
        (D, "./pkg/", "", 0o750),
        (F, "./pkg/a.txt", "alpha", 0o640),
        (F, "pkg/bin/tool", "#!/bin/sh\n", 0o755),
        (L, "pkg/link", "a.txt", 0o777),
        (L, "pkg/abs", "/usr/bin/env", 0o777),
        (H, "pkg/hard", "pkg/a.txt", 0o640),
    ]);
    // No telling extension: ADD looks at the bytes.
    fs::write(lab.ctx.join("bundle.bin"), gzip(&archive)).unwrap();
    fs::write(lab.ctx.join("plain.tar"), &archive).unwrap();

    lab.add(&["bundle.bin"], "/opt/").unwrap();
    assert_eq!(
        tree(&lab.root.join("opt")),
        [
            "pkg/",
            "pkg/a.txt",
            "pkg/abs -> /usr/bin/env",
            "pkg/bin/",
            "pkg/bin/tool",
            "pkg/hard",
            "pkg/link -> a.txt"
        ]
    );
    assert_eq!(lab.read("/opt/pkg/a.txt"), "alpha");
    assert_eq!(mode(&lab.in_root("/opt/pkg")), 0o750);
    assert_eq!(mode(&lab.in_root("/opt/pkg/a.txt")), 0o640);
    assert_eq!(mode(&lab.in_root("/opt/pkg/bin/tool")), 0o755);
    let a = fs::metadata(lab.in_root("/opt/pkg/a.txt")).unwrap();
    let hard = fs::metadata(lab.in_root("/opt/pkg/hard")).unwrap();
    assert_eq!(a.ino(), hard.ino(), "a hard link shares the file");
    assert_eq!(a.mtime(), 1_000_000_000);

    // A plain tar, and a destination without a slash: still a directory.
    lab.add(&["plain.tar"], "/srv").unwrap();
    assert_eq!(lab.read("/srv/pkg/a.txt"), "alpha");

    // COPY never unpacks.
    lab.copy(&["bundle.bin"], "/copied/", "/").unwrap();
    assert_eq!(
        fs::read(lab.in_root("/copied/bundle.bin")).unwrap(),
        gzip(&archive)
    );
    lab.assert_outside_untouched();
}

#[test]
fn add_copies_files_that_are_not_archives() {
    let lab = Lab::new();
    lab.file("notes.tar", "not a tar at all, whatever the name says");
    fs::write(lab.ctx.join("data.gz"), gzip(b"compressed text, not a tar")).unwrap();
    lab.add(&["notes.tar", "data.gz"], "/x/").unwrap();
    assert_eq!(
        lab.read("/x/notes.tar"),
        "not a tar at all, whatever the name says"
    );
    assert_eq!(
        fs::read(lab.in_root("/x/data.gz")).unwrap(),
        gzip(b"compressed text, not a tar")
    );
}

#[test]
fn add_refuses_formats_it_cannot_unpack() {
    let lab = Lab::new();
    fs::write(lab.ctx.join("a.tar.xz"), b"\xfd7zXZ\x00 and so on").unwrap();
    fs::write(lab.ctx.join("a.tar.bz2"), b"BZh91AY&SY and so on").unwrap();
    for (src, format) in [("a.tar.xz", "xz"), ("a.tar.bz2", "bzip2")] {
        let e = message(lab.add(&[src], "/x/"));
        assert!(
            e.contains(&format!("{format}-compressed")) && e.contains("COPY"),
            "{e}"
        );
    }
}

#[test]
fn add_refuses_hostile_archives() {
    let cases: &[(&[Item<'_>], &str, &str)] = &[
        (&[(F, "../evil", "x", 0o644)], "../evil", "`..`"),
        (&[(F, "a/../../evil", "x", 0o644)], "a/../../evil", "`..`"),
        (&[(F, "/etc/evil", "x", 0o644)], "/etc/evil", "absolute"),
        (
            &[(L, "up", "../../outside", 0o777)],
            "up",
            "outside the directory",
        ),
        (
            &[(L, "a/up", "../../x", 0o777)],
            "a/up",
            "outside the directory",
        ),
        (
            &[(H, "h", "../outside/victim", 0o644)],
            "h",
            "hard link target",
        ),
        (&[(H, "h", "/etc/passwd", 0o644)], "h", "hard link target"),
    ];
    for &(entries, bad, why) in cases {
        let lab = Lab::new();
        fs::write(lab.outside.join("victim"), "precious").unwrap();
        fs::write(lab.ctx.join("evil.tar.gz"), gzip(&tarball(entries))).unwrap();
        match lab.add(&["evil.tar.gz"], "/opt/") {
            Err(Error::Hostile { entry, why: text }) => {
                assert_eq!(entry, bad);
                assert!(
                    text.contains(why) && text.contains("ADD evil.tar.gz"),
                    "{bad}: {text}"
                );
            }
            other => panic!("{bad}: expected a refusal, got {other:?}"),
        }
        assert_eq!(
            fs::read_to_string(lab.outside.join("victim")).unwrap(),
            "precious"
        );
        assert_eq!(tree(&lab.outside), ["victim"]);
    }
}

#[test]
fn archive_links_are_resolved_inside_the_destination() {
    let lab = Lab::new();
    // A link to `/`, then a file through it: inside the unpacking, `/` is
    // the destination directory, as in Docker's chrooted unpacking.
    let archive = tarball(&[
        (L, "root", "/", 0o777),
        (F, "root/lab05-ctx-evil.txt", "gotcha", 0o644),
    ]);
    fs::write(lab.ctx.join("a.tar"), &archive).unwrap();
    lab.add(&["a.tar"], "/opt/").unwrap();
    assert_eq!(lab.read("/opt/lab05-ctx-evil.txt"), "gotcha");
    assert!(!Path::new("/lab05-ctx-evil.txt").exists());

    // A link to the host's outside directory leads nowhere inside.
    let lab = Lab::new();
    let outside = lab.outside.display().to_string();
    let archive = tarball(&[(L, "out", &outside, 0o777), (F, "out/x", "x", 0o644)]);
    fs::write(lab.ctx.join("b.tar"), &archive).unwrap();
    let e = message(lab.add(&["b.tar"], "/opt/"));
    assert!(e.contains("does not exist"), "{e}");
    lab.assert_outside_untouched();
}

// --- ownership (root) --------------------------------------------------------------

#[test]
fn everything_copied_belongs_to_root_unless_chown() {
    testkit::root_test!();
    let lab = Lab::new();
    lab.file("app/a.txt", "A");
    symlink("a.txt", lab.ctx.join("app/link")).unwrap();
    nix::unistd::chown(
        &lab.ctx.join("app/a.txt"),
        Some(nix::unistd::Uid::from_raw(4321)),
        Some(nix::unistd::Gid::from_raw(4321)),
    )
    .unwrap();
    fs::create_dir(lab.root.join("existing")).unwrap();
    nix::unistd::chown(
        &lab.root.join("existing"),
        Some(nix::unistd::Uid::from_raw(42)),
        Some(nix::unistd::Gid::from_raw(42)),
    )
    .unwrap();
    let owner = |image: &str| {
        let m = fs::symlink_metadata(lab.in_root(image)).unwrap();
        (m.uid(), m.gid())
    };
    let ctx = lab.context();

    copy(
        &ctx,
        &["app"],
        "/root-owned/",
        "/",
        &lab.root,
        &CopyOptions::default(),
    )
    .unwrap();
    for path in ["/root-owned", "/root-owned/a.txt", "/root-owned/link"] {
        assert_eq!(owner(path), (0, 0), "{path}");
    }

    let options = CopyOptions {
        chown: Some((1234, 5678)),
        chmod: None,
    };
    copy(
        &ctx,
        &["app"],
        "/existing/made/here/",
        "/",
        &lab.root,
        &options,
    )
    .unwrap();
    for path in [
        "/existing/made",
        "/existing/made/here",
        "/existing/made/here/a.txt",
        "/existing/made/here/link",
    ] {
        assert_eq!(owner(path), (1234, 5678), "{path}");
    }
    assert_eq!(
        owner("/existing"),
        (42, 42),
        "an existing directory keeps its owner"
    );
}

#[test]
fn add_keeps_archive_owners_unless_chown() {
    testkit::root_test!();
    let lab = Lab::new();
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = header(F, "owned.txt", "", 0o644, 1);
    h.set_uid(4321);
    h.set_gid(8765);
    h.set_cksum();
    builder.append(&h, &b"x"[..]).unwrap();
    fs::write(lab.ctx.join("owners.tar"), builder.into_inner().unwrap()).unwrap();
    let ctx = lab.context();
    add(
        &ctx,
        &["owners.tar"],
        "/a/",
        "/",
        &lab.root,
        &CopyOptions::default(),
    )
    .unwrap();
    let m = fs::metadata(lab.in_root("/a/owned.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (4321, 8765));
    let options = CopyOptions {
        chown: Some((7, 8)),
        chmod: Some(0o600),
    };
    add(&ctx, &["owners.tar"], "/b/", "/", &lab.root, &options).unwrap();
    let m = fs::metadata(lab.in_root("/b/owned.txt")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (7, 8, 0o600));
}
