//! The image part of `cargo xtask bench`: how fast lab 05 unpacks a layer
//! (`images::extract::extract`, which also hashes it and checks every
//! entry) next to GNU tar unpacking the same archive, plain and gzipped.
//!
//! # The layer
//!
//! A tree made the same way on every machine (a fixed-seed generator):
//! 5,000 files in 220 directories, most of them small and a few of a
//! megabyte or more, some 125 MB in all, plus relative and absolute
//! symbolic links and hard links. The contents are words with runs of
//! random bytes, so gzip shrinks them about as much as it shrinks a real
//! distribution layer. GNU tar packs the tree (`--sort=name`, owners 0:0,
//! one modification time) and `gzip -6 -n` compresses the tar.
//!
//! # The rows
//!
//! - `GNU tar -xf` and `GNU tar -xzf` (tar runs `gzip -d` in a second
//!   process), each into a fresh directory, timed from spawn to exit;
//! - `images::extract` on the same `.tar` and `.tar.gz`, into a fresh
//!   directory as an overlay layer, timed around the call: it opens the
//!   file, decompresses, hashes the compressed and uncompressed streams,
//!   unpacks and checks the diff id.
//!
//! As root both restore owners (tar's default for root). The rows alternate
//! round by round after one untimed warm-up round, in which the two trees
//! are also compared (`diff -r`). Each output directory is deleted,
//! untimed, after its run. Nothing is synced: the archive is in the page
//! cache and the files are written to it, as in a real pull on a machine
//! with free memory. The figures are medians with p10 and p90; MB/s is the
//! uncompressed tar's size over the median, and CPU is the median of user
//! plus system time (both of our threads; tar and its gzip together).
//!
//! Every row runs twice: in the scratch directory, on the disk, and in a
//! directory on /dev/shm when that is a tmpfs. On the disk the times also
//! depend on the file system's state: ext4 creates inodes more slowly for
//! a while after many were deleted (see [`crate::bench`]), and this
//! benchmark deletes some 30,000 per round. On the tmpfs what is left is
//! the programs' own work and the kernel's, and the figures hold still.
//! On a busy machine the wall-clock time follows the CPU time: the two
//! threads of `images::extract` then share one core.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use images::extract::{self, Options, Target, Xattr};
use serde_json::{Value, json};

/// The image table: markdown text and JSON numbers.
pub struct Report {
    pub text: String,
    pub json: Value,
}

/// The layer made for the benchmark.
struct Layer {
    tar: PathBuf,
    gz: PathBuf,
    diff_id: String,
    files: u64,
    dirs: u64,
    symlinks: u64,
    hardlinks: u64,
    file_bytes: u64,
    tar_bytes: u64,
    gz_bytes: u64,
}

/// A small fixed-seed generator (xorshift64*), so that every machine makes
/// the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Text-like bytes that gzip shrinks about 2.5 times: words from a small
/// vocabulary, with a run of random bytes now and then.
fn corpus(rng: &mut Rng, len: usize) -> Vec<u8> {
    let words: Vec<Vec<u8>> = (0..400)
        .map(|_| {
            let n = rng.range(2, 11) as usize;
            (0..n).map(|_| b'a' + (rng.next() % 26) as u8).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        if rng.next() % 1000 < 4 {
            for _ in 0..rng.range(16, 256) {
                out.push(rng.next() as u8);
            }
        } else {
            out.extend_from_slice(&words[(rng.next() % words.len() as u64) as usize]);
            out.push(if rng.next().is_multiple_of(12) {
                b'\n'
            } else {
                b' '
            });
        }
    }
    out.truncate(len);
    out
}

/// Writes the benchmark tree into `root` (which must not exist).
fn make_tree(root: &Path) -> Result<(u64, u64, u64, u64, u64)> {
    let mut rng = Rng(0x6265_7274_685f_3035); // "berth_05"
    let text = corpus(&mut rng, 8 << 20);
    let mut dirs = Vec::new();
    for top in 0..20 {
        for sub in 0..10 {
            let d = root.join(format!("d{top:02}/s{sub}"));
            fs::create_dir_all(&d)?;
            dirs.push(d);
        }
    }
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut paths = Vec::new();
    for i in 0..5000u64 {
        let dir = &dirs[(rng.next() % dirs.len() as u64) as usize];
        let size = match rng.next() % 1000 {
            0..700 => rng.range(0, 4 << 10),
            700..950 => rng.range(4 << 10, 32 << 10),
            950..995 => rng.range(32 << 10, 256 << 10),
            _ => rng.range(1 << 20, 3 << 20),
        } as usize;
        let path = dir.join(format!("f{i:04}"));
        let mut file = fs::File::create(&path)?;
        let mut left = size;
        while left > 0 {
            let at = (rng.next() % text.len() as u64) as usize;
            let n = left.min(text.len() - at);
            file.write_all(&text[at..at + n])?;
            left -= n;
        }
        let mode = if rng.next().is_multiple_of(10) {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        files += 1;
        bytes += size as u64;
        paths.push(path);
    }
    let mut symlinks = 0;
    for i in 0..300u64 {
        let dir = &dirs[(rng.next() % dirs.len() as u64) as usize];
        let target = if i.is_multiple_of(3) {
            PathBuf::from(format!("/usr/lib/x86_64-linux-gnu/lib{i}.so.1"))
        } else {
            let to = &paths[(rng.next() % paths.len() as u64) as usize];
            Path::new("../..").join(to.strip_prefix(root)?)
        };
        std::os::unix::fs::symlink(target, dir.join(format!("l{i:03}")))?;
        symlinks += 1;
    }
    let mut hardlinks = 0;
    for i in 0..100u64 {
        let dir = &dirs[(rng.next() % dirs.len() as u64) as usize];
        let to = &paths[(rng.next() % paths.len() as u64) as usize];
        fs::hard_link(to, dir.join(format!("h{i:03}")))?;
        hardlinks += 1;
    }
    let all_dirs = dirs.len() as u64 + 20;
    Ok((files, all_dirs, symlinks, hardlinks, bytes))
}

/// Runs a command, failing with its error output.
fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Makes the tree, the tar and the gzipped tar under `scratch`.
fn make_layer(scratch: &Path) -> Result<Layer> {
    let tree = scratch.join("tree");
    let (files, dirs, symlinks, hardlinks, file_bytes) =
        make_tree(&tree).context("cannot make the benchmark tree")?;
    let tar = scratch.join("layer.tar");
    run(Command::new("tar")
        .args(["--sort=name", "--format=gnu", "--numeric-owner"])
        .args(["--owner=0", "--group=0", "--mtime=@1700000000", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&tree)
        .arg("."))?;
    fs::remove_dir_all(&tree)?;
    let gz = scratch.join("layer.tar.gz");
    let out = fs::File::create(&gz)?;
    let status = Command::new("gzip")
        .args(["-6", "-n", "-c"])
        .arg(&tar)
        .stdout(out)
        .status()?;
    if !status.success() {
        bail!("gzip -6 -n -c {} failed", tar.display());
    }
    let data = fs::read(&tar)?;
    Ok(Layer {
        diff_id: images::digest::sha256(&data),
        tar_bytes: data.len() as u64,
        gz_bytes: fs::metadata(&gz)?.len(),
        tar,
        gz,
        files,
        dirs,
        symlinks,
        hardlinks,
        file_bytes,
    })
}

/// The four ways of unpacking the layer, in the order they alternate.
const TOOLS: [&str; 4] = [
    "GNU tar -xf (plain tar)",
    "images::extract, plain tar",
    "GNU tar -xzf (tar+gzip)",
    "images::extract, tar+gzip",
];

/// One tool on one file system: its wall-clock and CPU times.
struct Row {
    tool: usize,
    place: &'static str,
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

/// CPU milliseconds (user and system) used so far by this process's
/// threads and by its waited-for children (tar and the gzip tar starts).
fn cpu_ms() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let ms = |who| {
        getrusage(who).map_or(0.0, |r| {
            let t =
                |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 * 1e3 + tv.tv_usec() as f64 / 1e3;
            t(r.user_time()) + t(r.system_time())
        })
    };
    ms(UsageWho::RUSAGE_SELF) + ms(UsageWho::RUSAGE_CHILDREN)
}

/// Unpacks the layer into `out` (which must not exist) with tool `tool`;
/// returns the wall-clock and CPU milliseconds it took.
fn once(tool: usize, layer: &Layer, out: &Path) -> Result<(f64, f64)> {
    fs::create_dir(out)?;
    let cpu = cpu_ms();
    let started = Instant::now();
    match tool {
        0 | 2 => {
            let flag = if tool == 0 { "-xf" } else { "-xzf" };
            let archive = if tool == 0 { &layer.tar } else { &layer.gz };
            run(Command::new("tar")
                .arg(flag)
                .arg(archive)
                .arg("-C")
                .arg(out))?;
        }
        _ => {
            let (archive, media) = if tool == 1 {
                (&layer.tar, extract::TAR)
            } else {
                (&layer.gz, extract::TAR_GZIP)
            };
            let mut options = Options::new(Target::Overlay(Xattr::Trusted));
            options.owners = nix::unistd::geteuid().is_root();
            let file = fs::File::open(archive)?;
            let done = extract::extract(file, media, &layer.diff_id, out, &options)?;
            if done.files != layer.files || done.tar_bytes != layer.tar_bytes {
                bail!(
                    "images::extract wrote {} files from a tar of {} bytes; expected {} \
                     files from {} bytes",
                    done.files,
                    done.tar_bytes,
                    layer.files,
                    layer.tar_bytes
                );
            }
        }
    }
    let wall = started.elapsed().as_secs_f64() * 1e3;
    Ok((wall, cpu_ms() - cpu))
}

fn median_p10_p90(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

/// A directory on a tmpfs for the second set of rows, if /dev/shm is one.
fn tmpfs_dir() -> Option<tempfile::TempDir> {
    use nix::sys::statfs::{TMPFS_MAGIC, statfs};
    if statfs("/dev/shm").ok()?.filesystem_type() != TMPFS_MAGIC {
        return None;
    }
    tempfile::Builder::new()
        .prefix("berth-bench-images-")
        .tempdir_in("/dev/shm")
        .ok()
}

// ANCHOR: extraction
/// Measures unpacking one generated layer, `runs` rounds after a warm-up,
/// with GNU tar and with `images::extract`, plain and gzipped, into
/// `scratch_dir` (on the disk: a directory of its own, left empty at the
/// end) and into a directory on /dev/shm if that is a tmpfs.
pub fn extraction(scratch_dir: &Path, runs: usize) -> Result<Report> {
    let runs = runs.max(1);
    eprintln!("==> making a layer of about 5,000 files for the extraction benchmark");
    let layer = make_layer(scratch_dir)?;
    let tmpfs = tmpfs_dir();
    let mut places: Vec<(&'static str, &Path)> = vec![("disk", scratch_dir)];
    if let Some(dir) = &tmpfs {
        places.push(("tmpfs", dir.path()));
    }
    let mut rows: Vec<Row> = places
        .iter()
        .flat_map(|&(place, _)| {
            (0..TOOLS.len()).map(move |tool| Row {
                tool,
                place,
                wall: Vec::new(),
                cpu: Vec::new(),
            })
        })
        .collect();
    eprintln!("==> unpacking it {runs} times each way, alternating");
    for round in 0..=runs {
        for (row, &(_, dir)) in rows.iter_mut().zip(places.iter().flat_map(|p| [p; 4])) {
            let out = dir.join(format!("out-{}", row.tool));
            let (wall, cpu) = once(row.tool, &layer, &out)
                .with_context(|| format!("{} on {} (round {round})", TOOLS[row.tool], row.place))?;
            if round > 0 {
                row.wall.push(wall);
                row.cpu.push(cpu);
            }
            // The warm-up checks that both unpack the same tree.
            if round == 0 && row.tool % 2 == 1 {
                let theirs = dir.join(format!("out-{}", row.tool - 1));
                run(Command::new("diff")
                    .args(["-r", "--no-dereference"])
                    .arg(&theirs)
                    .arg(&out))
                .context("images::extract and GNU tar unpacked different trees")?;
                fs::remove_dir_all(&theirs)?;
            }
            if round > 0 || row.tool % 2 == 1 {
                fs::remove_dir_all(&out)?;
            }
        }
    }
    for path in [&layer.tar, &layer.gz] {
        fs::remove_file(path)?;
    }
    Ok(report(&layer, &rows, runs))
}
// ANCHOR_END: extraction

fn report(layer: &Layer, rows: &[Row], runs: usize) -> Report {
    let mb = |b: u64| b as f64 / 1e6;
    let mut text = format!(
        "\nUnpacking one layer: {} files ({:.1} MB), {} directories, {} symbolic links, \
         {} hard links; tar {:.1} MB, gzipped {:.1} MB; {runs} rounds\n\n",
        layer.files,
        mb(layer.file_bytes),
        layer.dirs,
        layer.symlinks,
        layer.hardlinks,
        mb(layer.tar_bytes),
        mb(layer.gz_bytes),
    );
    text.push_str("| how | where | median | p10 | p90 | MB/s | vs GNU tar | CPU |\n");
    text.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    let mut json_rows = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let (m, p10, p90) = median_p10_p90(&row.wall);
        let cpu = median_p10_p90(&row.cpu).0;
        // GNU tar's row with the same compression, on the same file system.
        let base = median_p10_p90(&rows[i - row.tool % 2].wall).0;
        let rate = mb(layer.tar_bytes) / (m / 1e3);
        text.push_str(&format!(
            "| {} | {} | {m:.0} ms | {p10:.0} ms | {p90:.0} ms | {rate:.0} | {:.2}x | {cpu:.0} ms |\n",
            TOOLS[row.tool],
            row.place,
            m / base
        ));
        json_rows.push(json!({
            "label": TOOLS[row.tool],
            "where": row.place,
            "median_ms": m,
            "p10_ms": p10,
            "p90_ms": p90,
            "mb_per_s": rate,
            "cpu_median_ms": cpu,
            "samples_ms": row.wall,
            "cpu_samples_ms": row.cpu,
        }));
    }
    text.push_str(
        "\nvs GNU tar: the median over GNU tar's with the same compression on the same file \
         system (below 1 is faster). CPU: the median of user plus system time, both threads \
         of images::extract, tar and its gzip together; on a busy machine the wall-clock \
         time follows it. images::extract also hashes both streams and checks the diff id. \
         On the disk, times depend on the file system's state: ext4 creates inodes more \
         slowly for a while after many were deleted, as every run here does.\n",
    );
    Report {
        text,
        json: json!({
            "layer": {
                "files": layer.files,
                "dirs": layer.dirs,
                "symlinks": layer.symlinks,
                "hardlinks": layer.hardlinks,
                "file_bytes": layer.file_bytes,
                "tar_bytes": layer.tar_bytes,
                "gzip_bytes": layer.gz_bytes,
                "diff_id": layer.diff_id,
            },
            "rows": json_rows,
        }),
    }
}
