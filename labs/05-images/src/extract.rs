//! Step 05.3: unpacking a layer without trusting it.
//!
//! A layer arrives as a tar file, usually gzipped, from a registry we do
//! not control. The image's config names each layer by its *diff id*, the
//! SHA-256 of the uncompressed tar. [`extract`] makes one pass over the
//! bytes as they arrive: it decompresses them, hashes both the compressed
//! and the uncompressed stream, and unpacks each entry as soon as its
//! header has been read. Only at the end is the diff id known, so a layer
//! whose digest turns out wrong has already been written out. That is why
//! the store unpacks into a fresh *staging* directory next to the final
//! one and renames it into place only when everything checked out
//! ([`Staging`], [`extract_to`]): a failed or hostile layer leaves nothing
//! behind but a directory that is deleted.
//!
//! # What a hostile layer tries
//!
//! Each of these is refused with an error naming the entry, before
//! anything is written for it:
//!
//! - `../../etc/cron.d/x`: a `..` climbs out of the layer's directory.
//! - `/etc/passwd`: an absolute path names the host's file. (Docker strips
//!   the `/`; we refuse it, since no layer writer produces one.)
//! - `evil -> /` then `evil/etc/passwd`: an entry written *through* a
//!   symbolic link the layer made lands wherever the link points. So does
//!   `a -> b`, `b -> ..`, then `a/x`.
//! - `dir/` then `dir -> /etc` then `dir/passwd`: a link that replaces a
//!   directory halfway through the archive, hoping the unpacker remembers
//!   the directory.
//! - a hard link to `/etc/shadow`, `../x` or `evil/shadow`: a second name,
//!   inside the layer, for a file outside it, which later writes would go to.
//! - a character or block device, such as a copy of the host's disk:
//!   only made when the caller allows it (whiteouts, 0/0, are always fine).
//! - `.wh..` (a whiteout of `..`) or `.wh..wh..opq` at the top: a
//!   deletion marker that reaches the parent, or hides every layer below.
//! - PAX `path=../x` and GNU long names: extension headers that replace the
//!   name in the header, so the name must be checked after they apply.
//! - a name longer than Linux allows, or a long-name header claiming
//!   gigabytes to exhaust memory: limits of 255 bytes a name, 4095 a path
//!   and 1 MiB for an extension header.
//! - a device or directory header with data after it, or data after the
//!   end-of-archive marker: places where tar readers disagree, so that the
//!   same bytes unpack differently in Docker and here.
//!
//! Set-user-ID files are allowed: real images have them (`su`, `passwd`).
//! So are FIFOs: a named pipe leads nowhere outside the layer.
//!
//! # How nothing escapes
//!
//! Every operation is relative to an open directory: the layer's top is
//! opened once, and each entry's parent directory is opened from it with
//! `openat2(2)` and `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`. The kernel
//! then refuses any symbolic link on the way and any step outside the top,
//! in one system call, with no window between checking a path and using
//! it. (`RESOLVE_BENEATH` is a second fence: names were already cleaned
//! of `..` and of a leading `/`.) Where `openat2` is missing (Linux before
//! 5.6, or a seccomp filter that blocks it), the same walk is done one
//! name at a time with `openat(O_NOFOLLOW | O_DIRECTORY)`: slower, equally
//! safe. The last name is created with calls that never follow a link
//! either (`O_CREAT | O_EXCL | O_NOFOLLOW`, `mkdirat`, `symlinkat`,
//! `mknodat`, `linkat` without `AT_SYMLINK_FOLLOW`), and something already
//! there is removed first, never opened for writing. Owners, modes and
//! times go on the open file (`fchown`, `fchmod`, `futimens`) or use
//! `AT_SYMLINK_NOFOLLOW`.
//!
//! A link in an entry's path is refused rather than followed. Docker
//! unpacks inside a `chroot` of the layer and containerd resolves paths as
//! if the layer were `/` (`RESOLVE_IN_ROOT` would do that here): both
//! follow `evil -> /` to the layer's own top. Layer writers record real
//! paths, never paths through links, so refusing costs nothing real and
//! turns an attack into an error that says what happened.
//!
//! The tar reader is the module's own, a few hundred lines, rather than
//! the `tar` crate's (which lab 03 uses), for three reasons: a GNU long
//! name or PAX header is limited in size before it is read (the crate
//! reads it all, whatever size it claims); every question tar readers
//! answer differently (data after a directory header, data after the
//! end-of-archive marker) is refused; and file data is written straight
//! from the buffers it arrived in. The gzip stream is read to its very
//! end, so a damaged checksum or garbage after it is an error too.
//!
//! # Speed
//!
//! GNU tar is the yardstick. Two threads split the work: the caller's
//! thread reads the blob and decompresses it, and an unpacking thread
//! parses headers and makes files, so gzip runs beside the file system
//! work as `tar -xz` runs `gzip` beside `tar`. Data moves between them in
//! 1 MiB buffers that are sent back for reuse. Each file is made with one
//! `openat`, its data written straight from those buffers, and `fchown` or
//! `fchmod` only when the kernel did not already give the right owner and
//! mode. The parent directory of the last entry stays open, so a
//! directory of many files is resolved once (it is looked up afresh after
//! an entry removed a directory, which it might have been inside).
//! Directory modes and times are set at the end, since every file made
//! inside a directory changes its time (tar does the same). Nothing is
//! `fsync`ed: a crash leaves a staging directory, which is thrown away.
//!
//! What GNU tar does not do is hash: SHA-256 costs about 0.6 ms a
//! megabyte, which the reading thread pays while the other one makes
//! files. With a core free for each thread an uncompressed layer unpacks
//! faster than with `tar -xf`; on a machine busy enough to leave one core,
//! the hashing shows.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use overlay::whiteout::{OCI_OPAQUE, OciEntry, parse_oci_name};
use sha2::{Digest as _, Sha256};

pub use overlay::layer::Target;
pub use overlay::whiteout::Xattr;

use crate::{Error, Result, digest};

/// An uncompressed OCI layer.
pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// A gzipped OCI layer, the most common kind.
pub const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A zstd-compressed OCI layer (refused: see [`Compression::of_media_type`]).
pub const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// A gzipped layer of a Docker (schema 2) image.
pub const DOCKER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The size of the buffers the reading thread hands to the unpacking one.
const CHUNK: usize = 1 << 20;
/// How many buffers may wait between the two threads.
const IN_FLIGHT: usize = 4;
/// The most a GNU long name, long link or PAX header may hold.
const MAX_META: u64 = 1 << 20;
/// The longest file name Linux accepts (`NAME_MAX`).
const MAX_NAME: usize = 255;
/// The longest path Linux accepts, without its final NUL (`PATH_MAX - 1`).
const MAX_PATH: usize = 4095;
/// A tar file is made of blocks of this size.
const BLOCK: usize = 512;

/// How a layer's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// A tar in gzip (one or more gzip members).
    Gzip,
}

impl Compression {
    /// The compression a layer media type says. zstd layers are refused
    /// with an error saying so: unpacking them needs a zstd decoder this
    /// lab does not depend on.
    pub fn of_media_type(media_type: &str) -> Result<Compression> {
        match media_type {
            TAR | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
                Ok(Compression::None)
            }
            TAR_GZIP
            | DOCKER_TAR_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
            zstd if zstd.ends_with("+zstd") || zstd.ends_with(".zstd") => {
                Err(Error::Invalid(format!(
                    "layer media type {zstd} is zstd-compressed, which berth does not unpack: \
                     use an image pushed with gzip layers (docker buildx build --output \
                     type=image,compression=gzip), or add a zstd decoder to images::extract"
                )))
            }
            other => Err(Error::Invalid(format!(
                "unknown layer media type {other:?}: berth unpacks {TAR}, {TAR_GZIP} and \
                 {DOCKER_TAR_GZIP}"
            ))),
        }
    }
}

/// What [`extract`] may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// What the directory is for (lab 03): one lower layer of an overlay
    /// (`.wh.NAME` becomes a whiteout device, `.wh..wh..opq` the opaque
    /// attribute), or a plain directory holding the layers below already
    /// (markers delete what they name).
    pub target: Target,
    /// Whether character and block devices are made. Off by default: a
    /// device node such as a copy of the host's disk gives whoever opens it
    /// the hardware, so only a trusted image should have them. Whiteouts
    /// (character device 0/0) and FIFOs are always allowed.
    pub devices: bool,
    /// Whether entries get the owners the layer records. That needs root
    /// (or a user namespace mapping them). Off: everything belongs to the
    /// caller, as when tar is run by an ordinary user.
    pub owners: bool,
}

impl Options {
    /// Unpacks for `target`, with owners and without devices.
    pub fn new(target: Target) -> Options {
        Options {
            target,
            devices: false,
            owners: true,
        }
    }
}

/// What one [`extract`] read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// `sha256:` of the uncompressed tar: the diff id, checked.
    pub diff_id: String,
    /// `sha256:` of the bytes as read (the blob's digest in the manifest).
    pub digest: String,
    /// Bytes read from the blob.
    pub blob_bytes: u64,
    /// Bytes of uncompressed tar.
    pub tar_bytes: u64,
    /// Entries unpacked (files, directories, links, devices, markers).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Bytes of file data written.
    pub file_bytes: u64,
}

// ANCHOR: extract
/// Unpacks the layer blob `blob` of type `media_type` into the directory
/// `dir`, in one pass, and checks that the uncompressed tar hashes to
/// `diff_id`. On any error, hostile entry or wrong digest, `dir` holds a
/// partial layer and must be deleted: unpack into a [`Staging`] directory.
pub fn extract(
    blob: impl Read,
    media_type: &str,
    diff_id: &str,
    dir: &Path,
    options: &Options,
) -> Result<Extracted> {
    // BEGIN SOLUTION 05.3
    let compression = Compression::of_media_type(media_type)?;
    digest::hex_part(diff_id)?;
    let unpacker = Unpacker::new(dir, *options)?;
    let (chunks, arrived) = mpsc::sync_channel::<Chunk>(IN_FLIGHT);
    let (give_back, recycled) = mpsc::channel::<Vec<u8>>();
    // Decompressing is the heavier side with gzip: the uncompressed tar is
    // hashed on the unpacking thread then.
    let hash_there = compression == Compression::Gzip;
    let (read, unpacked) = std::thread::scope(|scope| {
        let unpacking = std::thread::Builder::new()
            .name("layer-unpack".into())
            .spawn_scoped(scope, move || {
                unpacker.run(Stream::new(arrived, give_back, hash_there))
            })
            .map_err(|e| Error::io("start a thread to unpack into", dir, e))?;
        let read = read_blob(blob, compression, &chunks, &recycled, dir);
        drop(chunks); // the end of the stream
        match unpacking.join() {
            Ok(unpacked) => Ok((read, unpacked)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })?;
    // The unpacker's error, unless it failed only because the reading side
    // stopped early: then the reader's error says why.
    let sums = match (read, unpacked.result) {
        (Err(e), Err(_)) if unpacked.ended => return Err(e),
        (_, Err(e)) | (Err(e), Ok(())) => return Err(e),
        (Ok(sums), Ok(())) => sums,
    };
    let (tar_digest, tar_bytes) = sums.tar.or(unpacked.tar).unwrap_or_default();
    let what = format!(
        "the layer unpacked into {} (delete that directory)",
        dir.display()
    );
    digest::verify(&what, diff_id, &tar_digest)?;
    Ok(Extracted {
        diff_id: tar_digest,
        digest: sums.blob.0,
        blob_bytes: sums.blob.1,
        tar_bytes,
        entries: unpacked.counts.entries,
        files: unpacked.counts.files,
        file_bytes: unpacked.counts.file_bytes,
    })
    // END SOLUTION
}
// ANCHOR_END: extract

/// Unpacks a layer as [`extract`] does, into a staging directory next to
/// `dest`, and renames it to `dest` only if everything checked out.
/// `dest` must not exist yet.
pub fn extract_to(
    blob: impl Read,
    media_type: &str,
    diff_id: &str,
    dest: &Path,
    options: &Options,
) -> Result<Extracted> {
    let staging = Staging::new(dest)?;
    let done = extract(blob, media_type, diff_id, staging.path(), options)?;
    staging.commit()?;
    Ok(done)
}

// ANCHOR: staging
/// An empty directory next to where a layer will live, deleted when
/// dropped unless [`Staging::commit`] renamed it into place. Being in the
/// same directory keeps it on the same file system, so the rename is one
/// atomic step: readers see no layer or the whole layer.
#[derive(Debug)]
pub struct Staging {
    dir: tempfile::TempDir,
    dest: PathBuf,
}

impl Staging {
    /// Makes the staging directory for `dest` (mode 0755, like a layer's
    /// top). For a [`Target::Plain`] layer on top of others, copy the
    /// layers below into it before unpacking.
    pub fn new(dest: &Path) -> Result<Staging> {
        use std::os::unix::fs::PermissionsExt;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dest.file_name().unwrap_or(OsStr::new("layer"));
        let dir = tempfile::Builder::new()
            .prefix(&format!(".{}.staging-", name.to_string_lossy()))
            .tempdir_in(parent)
            .map_err(|e| Error::io("make a staging directory in", parent, e))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("set the mode of", dir.path(), e))?;
        Ok(Staging {
            dir,
            dest: dest.to_path_buf(),
        })
    }

    /// Where to unpack.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Renames the staging directory to its destination. If something is
    /// there already (another pull of the same layer won), the error says
    /// so with the kind `AlreadyExists` and the staging copy is deleted.
    pub fn commit(self) -> Result<()> {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        let flags = RenameFlags::RENAME_NOREPLACE;
        match renameat2(AT_FDCWD, self.dir.path(), AT_FDCWD, &self.dest, flags) {
            Ok(()) => {
                let _kept = self.dir.keep();
                Ok(())
            }
            Err(Errno::EEXIST | Errno::ENOTEMPTY) => Err(Error::io(
                "move the unpacked layer into place: something is already at",
                &self.dest,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "another pull unpacked this layer first; use that one",
                ),
            )),
            Err(e) => Err(Error::io(
                format!("rename {} to", self.dir.path().display()),
                &self.dest,
                e.into(),
            )),
        }
    }
}
// ANCHOR_END: staging

// --- reading the blob (the caller's thread) ------------------------------------

/// A buffer of the uncompressed stream and how much of it is filled.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The digests and lengths the reading side worked out.
struct Sums {
    /// Of the blob as read.
    blob: (String, u64),
    /// Of the uncompressed tar, when it is the blob (no compression).
    tar: Option<(String, u64)>,
}

/// A reader that hashes and counts what passes.
struct Hashing<R> {
    inner: R,
    sha: Sha256,
    bytes: u64,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            sha: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (sha256_string(self.sha), self.bytes)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn sha256_string(sha: Sha256) -> String {
    format!("sha256:{}", hex::encode(sha.finalize()))
}

/// Reads the whole blob, decompressing it, and sends the tar in chunks.
/// Stops early, without an error, when the unpacker hangs up (it failed,
/// and its error says why).
fn read_blob(
    blob: impl Read,
    compression: Compression,
    chunks: &SyncSender<Chunk>,
    recycled: &Receiver<Vec<u8>>,
    dir: &Path,
) -> Result<Sums> {
    let mut blob = Hashing::new(blob);
    let failed = |e: io::Error| {
        let bad_data = matches!(
            e.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        );
        match compression {
            Compression::Gzip if bad_data => Error::Invalid(format!(
                "the layer for {} is not valid gzip ({e}): the download is damaged or the \
                 media type is wrong; pull the image again",
                dir.display()
            )),
            Compression::None if bad_data => {
                Error::Invalid(format!("the layer for {}: {e}", dir.display()))
            }
            _ => Error::io("read the layer blob for", dir, e),
        }
    };
    match compression {
        Compression::None => {
            send_all(&mut blob, chunks, recycled, true).map_err(failed)?;
            let sums = blob.finish();
            Ok(Sums {
                blob: sums.clone(),
                tar: Some(sums),
            })
        }
        Compression::Gzip => {
            let buffered = BufReader::with_capacity(1 << 17, blob);
            let mut gz = flate2::bufread::MultiGzDecoder::new(buffered);
            send_all(&mut gz, chunks, recycled, false).map_err(failed)?;
            Ok(Sums {
                blob: gz.into_inner().into_inner().finish(),
                tar: None,
            })
        }
    }
}

/// Sends everything `from` gives, in full chunks. With `plain`, checks
/// first that the bytes are not compressed after all.
fn send_all(
    from: &mut impl Read,
    chunks: &SyncSender<Chunk>,
    recycled: &Receiver<Vec<u8>>,
    plain: bool,
) -> io::Result<()> {
    let mut first = plain;
    loop {
        let mut buf = match recycled.try_recv() {
            Ok(buf) if buf.len() == CHUNK => buf,
            _ => vec![0; CHUNK],
        };
        let mut len = 0;
        while len < CHUNK {
            match from.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if len == 0 {
            return Ok(());
        }
        let compressed =
            buf.starts_with(&[0x1f, 0x8b]) || buf.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        if first && compressed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the media type says an uncompressed tar, but the bytes are gzip or zstd; \
                 the manifest is wrong",
            ));
        }
        first = false;
        if chunks.send(Chunk { buf, len }).is_err() {
            return Ok(());
        }
    }
}

// --- the tar stream (the unpacking thread) -------------------------------------

/// The uncompressed tar as it arrives. File data is handed on in place,
/// without copying it out of the buffers.
struct Stream {
    arrived: Receiver<Chunk>,
    give_back: Sender<Vec<u8>>,
    chunk: Chunk,
    pos: usize,
    /// The reading side closed the stream and everything was received.
    ended: bool,
    /// Hashes the tar here (when the reading side is busy decompressing).
    sha: Option<Sha256>,
    /// Bytes received so far.
    bytes: u64,
}

/// The stream ended in the middle of something.
struct Cut;

/// Why handing on an entry's data stopped.
enum TakeError {
    Cut,
    Write(io::Error),
}

impl Stream {
    fn new(arrived: Receiver<Chunk>, give_back: Sender<Vec<u8>>, hash: bool) -> Stream {
        Stream {
            arrived,
            give_back,
            chunk: Chunk {
                buf: Vec::new(),
                len: 0,
            },
            pos: 0,
            ended: false,
            sha: hash.then(Sha256::new),
            bytes: 0,
        }
    }

    /// Where the next unread byte is in the tar.
    fn offset(&self) -> u64 {
        self.bytes - (self.chunk.len - self.pos) as u64
    }

    /// Makes sure unread bytes are at hand; false at the end of the stream.
    fn ready(&mut self) -> bool {
        while self.pos == self.chunk.len {
            if self.ended {
                return false;
            }
            let Ok(next) = self.arrived.recv() else {
                self.ended = true;
                return false;
            };
            if let Some(sha) = &mut self.sha {
                sha.update(next.bytes());
            }
            self.bytes += next.len as u64;
            let old = std::mem::replace(&mut self.chunk, next);
            if !old.buf.is_empty() {
                let _ = self.give_back.send(old.buf);
            }
            self.pos = 0;
        }
        true
    }

    /// The next block; `Ok(false)` if the stream ended exactly before it.
    fn block(&mut self, out: &mut [u8; BLOCK]) -> Result<bool, Cut> {
        let mut got = 0;
        while got < BLOCK {
            if !self.ready() {
                return if got == 0 { Ok(false) } else { Err(Cut) };
            }
            let n = (BLOCK - got).min(self.chunk.len - self.pos);
            out[got..got + n].copy_from_slice(&self.chunk.bytes()[self.pos..self.pos + n]);
            self.pos += n;
            got += n;
        }
        Ok(true)
    }

    /// Hands the next `n` bytes to `write`, piece by piece as they lie in
    /// the buffers, then skips the padding to the next block.
    fn take(
        &mut self,
        n: u64,
        mut write: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), TakeError> {
        let mut left = n.saturating_add(pad(n));
        let mut data = n;
        while left > 0 {
            if !self.ready() {
                return Err(TakeError::Cut);
            }
            let here = (self.chunk.len - self.pos) as u64;
            let k = here.min(left);
            let useful = k.min(data) as usize;
            if useful > 0 {
                write(&self.chunk.bytes()[self.pos..self.pos + useful])
                    .map_err(TakeError::Write)?;
            }
            self.pos += k as usize;
            left -= k;
            data -= useful as u64;
        }
        Ok(())
    }

    /// Skips an entry's `n` bytes of data and their padding.
    fn skip(&mut self, n: u64) -> Result<(), Cut> {
        self.take(n, |_| Ok(())).map_err(|_| Cut)
    }

    /// Reads the `n` bytes of data of an extension header.
    fn meta(&mut self, n: u64) -> Result<Vec<u8>, Cut> {
        let mut data = Vec::with_capacity(n as usize);
        self.take(n, |piece| {
            data.extend_from_slice(piece);
            Ok(())
        })
        .map_err(|_| Cut)?;
        Ok(data)
    }

    /// Reads to the end; whether everything left was zeros (padding).
    fn rest_is_zeros(&mut self) -> bool {
        let mut zeros = true;
        while self.ready() {
            zeros &= self.chunk.bytes()[self.pos..].iter().all(|&b| b == 0);
            self.pos = self.chunk.len;
        }
        zeros
    }
}

/// The padding after `n` bytes of data, up to the next block.
fn pad(n: u64) -> u64 {
    (BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64
}

// --- tar headers -----------------------------------------------------------------

/// A tar header holds, at fixed places: the name (100 bytes), mode, owner,
/// group, size, modification time (octal text), a checksum, the type (one
/// byte), the target of a link (100 bytes), and in the POSIX "ustar" form a
/// prefix for longer names and a device number. Longer names, bigger
/// numbers and extended attributes come in extension entries just before:
/// GNU's `L` (long name) and `K` (long link target), or a PAX `x` entry of
/// `key=value` records.
struct Header {
    name: Vec<u8>,
    link: Vec<u8>,
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    device: (u32, u32),
}

/// The bytes of a header field up to its first NUL.
fn text(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// A number field: octal digits padded with spaces or NULs, or GNU's
/// base-256 form (first bit set) for numbers too big for octal.
fn number(field: &[u8]) -> Option<i64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let invert = if field[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &b) in field.iter().enumerate() {
            let b = if i == 0 {
                (b ^ invert) & 0x7f
            } else {
                b ^ invert
            };
            if x >> 56 != 0 {
                return None;
            }
            x = (x << 8) | u64::from(b);
        }
        let x = i64::try_from(x).ok()?;
        return Some(if invert == 0xff { !x } else { x });
    }
    let blank = |b: &u8| *b == b' ' || *b == 0;
    let Some(start) = field.iter().position(|b| !blank(b)) else {
        return Some(0);
    };
    let end = field.iter().rposition(|b| !blank(b))?;
    let mut x: i64 = 0;
    for &b in &field[start..=end] {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        x = x.checked_mul(8)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(x)
}

impl Header {
    /// Parses the header at byte `at` of the tar, checking its checksum.
    fn parse(b: &[u8; BLOCK], at: u64) -> Result<Header> {
        let bad = |what: &str| {
            Error::Invalid(format!(
                "the layer's tar header at byte {at} has a bad {what}: the blob is damaged \
                 or not a tar"
            ))
        };
        // The checksum is the sum of the header's bytes, its own field
        // counted as spaces; some old writers summed signed bytes.
        let sum = number(&b[148..156]).ok_or_else(|| bad("checksum field"))?;
        let spaces = 8 * i64::from(b' ');
        let outside = || b[..148].iter().chain(&b[156..]);
        let unsigned: i64 = outside().map(|&x| i64::from(x)).sum::<i64>() + spaces;
        if sum != unsigned && sum != outside().map(|&x| i64::from(x as i8)).sum::<i64>() + spaces {
            return Err(bad("checksum"));
        }
        let num = |range: std::ops::Range<usize>, what: &str| {
            number(&b[range])
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| bad(what))
        };
        let ustar = &b[257..263] == b"ustar\0";
        let gnu = &b[257..263] == b"ustar ";
        let mut name = Vec::new();
        if ustar && b[345] != 0 {
            name.extend_from_slice(text(&b[345..500]));
            name.push(b'/');
        }
        name.extend_from_slice(text(&b[..100]));
        let device = if ustar || gnu {
            let part = |range, what| {
                num(range, what).and_then(|n| u32::try_from(n).map_err(|_| bad(what)))
            };
            (
                part(329..337, "device major")?,
                part(337..345, "device minor")?,
            )
        } else {
            (0, 0)
        };
        Ok(Header {
            name,
            link: text(&b[157..257]).to_vec(),
            kind: b[156],
            mode: (num(100..108, "mode")? & 0o7777) as u32,
            uid: num(108..116, "owner")?,
            gid: num(116..124, "group")?,
            size: num(124..136, "size")?,
            mtime: number(&b[136..148]).ok_or_else(|| bad("modification time"))?,
            device,
        })
    }
}

/// What the extension entries before an entry said.
#[derive(Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Pax>,
}

impl Extensions {
    fn pending(&self) -> bool {
        self.long_name.is_some() || self.long_link.is_some() || self.pax.is_some()
    }
}

/// The PAX records berth uses.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, i64)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parses the records of a PAX header, each `LENGTH KEY=VALUE\n` with
/// LENGTH counting the whole record.
fn parse_pax(mut data: &[u8]) -> std::result::Result<Pax, String> {
    let mut pax = Pax::default();
    let malformed = || "a malformed PAX record".to_string();
    while data.first().is_some_and(|&b| b != 0) {
        let space = data.iter().position(|&b| b == b' ').ok_or_else(malformed)?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > space + 1 && n <= data.len())
            .ok_or_else(malformed)?;
        let record = data[space + 1..len]
            .strip_suffix(b"\n")
            .ok_or_else(malformed)?;
        data = &data[len..];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(malformed)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let shown = String::from_utf8_lossy(key);
        let decimal = || {
            std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| format!("the PAX record {shown} has a bad value"))
        };
        match key {
            b"path" | b"linkpath" if value.is_empty() => {
                return Err(format!("an empty PAX {shown} record"));
            }
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"size" => pax.size = Some(decimal()?),
            b"uid" => pax.uid = Some(decimal()?),
            b"gid" => pax.gid = Some(decimal()?),
            b"mtime" => {
                let bad = || format!("the PAX record {shown} has a bad value");
                pax.mtime = Some(pax_time(value).ok_or_else(bad)?);
            }
            k if k.starts_with(b"GNU.sparse.") => {
                return Err(
                    "a sparse file (GNU.sparse PAX records), which berth does not \
                            unpack: repack the layer without --sparse"
                        .into(),
                );
            }
            k if k.starts_with(b"SCHILY.xattr.") => {
                let name = k[b"SCHILY.xattr.".len()..].to_vec();
                pax.xattrs.push((name, value.to_vec()));
            }
            _ => {} // atime, ctime, uname, gname, comment, charset: not used
        }
    }
    Ok(pax)
}

/// A PAX time: seconds, maybe negative, maybe with a decimal fraction.
fn pax_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = whole.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain("000000000".chars()).take(9).collect();
    let nanos: i64 = digits.parse().ok()?;
    // -1.5 means 1.5 seconds before 1970: -2 s + 0.5 s.
    Some(if whole.starts_with('-') && nanos > 0 {
        (secs - 1, 1_000_000_000 - nanos)
    } else {
        (secs, nanos)
    })
}

/// One entry as the archive describes it, extension entries applied.
struct Entry {
    path: Vec<u8>,
    link: Vec<u8>,
    kind: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Seconds and nanoseconds.
    mtime: (i64, i64),
    size: u64,
    device: (u32, u32),
    /// The `SCHILY.xattr.*` records of a PAX header.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// The entry of header `h` and the extension entries before it: PAX
    /// records win over GNU long names, which win over the header.
    fn new(h: Header, ext: Extensions) -> Result<Entry> {
        let pax = ext.pax.unwrap_or_default();
        let path = pax.path.or(ext.long_name).unwrap_or(h.name);
        let id = |n: u64, what: &str| {
            u32::try_from(n).map_err(|_| Error::Hostile {
                entry: show(&path),
                why: format!("{what} {n} does not fit in 32 bits"),
            })
        };
        Ok(Entry {
            uid: id(pax.uid.unwrap_or(h.uid), "owner")?,
            gid: id(pax.gid.unwrap_or(h.gid), "group")?,
            link: pax.linkpath.or(ext.long_link).unwrap_or(h.link),
            kind: h.kind,
            mode: h.mode,
            mtime: pax.mtime.unwrap_or((h.mtime, 0)),
            size: pax.size.unwrap_or(h.size),
            device: h.device,
            xattrs: pax.xattrs,
            path,
        })
    }

    /// Access and modification time to give it: both its modification time.
    fn times(&self) -> (TimeSpec, TimeSpec) {
        let t = TimeSpec::new(self.mtime.0, self.mtime.1);
        (t, t)
    }
}

/// The kinds of entry a layer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    /// The kind of a type byte, or why it is refused.
    fn of(kind: u8, path: &[u8]) -> std::result::Result<Kind, String> {
        Ok(match kind {
            b'0' | b'7' => Kind::File,
            // Old archives mark a directory with a slash at the end.
            0 if path.ends_with(b"/") => Kind::Dir,
            0 => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'S' => {
                return Err(
                    "a GNU sparse file, which berth does not unpack: repack the \
                            layer without --sparse"
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "entry type {:?}, which is not one a layer may hold",
                    char::from(other)
                ));
            }
        })
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::File => "regular file",
            Kind::Dir => "directory",
            Kind::Symlink => "symbolic link",
            Kind::HardLink => "hard link",
            Kind::Char => "character device",
            Kind::Block => "block device",
            Kind::Fifo => "FIFO",
        }
    }
}

// --- entry names -------------------------------------------------------------------

/// An entry's path made relative and clean: `./a//b/` becomes `a/b`, the
/// top itself becomes empty. Refuses absolute paths, `..` anywhere, NUL
/// bytes, and names or paths too long for Linux, saying why.
fn clean_path(raw: &[u8]) -> std::result::Result<Vec<u8>, String> {
    // BEGIN SOLUTION 05.3
    if raw.contains(&0) {
        return Err("the name holds a NUL byte".into());
    }
    if raw.first() == Some(&b'/') {
        return Err(
            "an absolute path: a layer's paths are relative to its top, and \
                    this one names a file of the host"
                .into(),
        );
    }
    let mut out = Vec::with_capacity(raw.len());
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => continue,
            b".." => return Err("`..` in the path, which climbs out of the layer".into()),
            _ if part.len() > MAX_NAME => {
                return Err(format!(
                    "a name of {} bytes; Linux allows {MAX_NAME}",
                    part.len()
                ));
            }
            _ => {}
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    if out.len() > MAX_PATH {
        return Err(format!(
            "a path of {} bytes; Linux allows {MAX_PATH}",
            out.len()
        ));
    }
    Ok(out)
    // END SOLUTION
}

/// `a/b/c` as (`a/b`, `c`); `c` as (``, `c`).
fn split(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

/// `parent/name`, or `name` at the top.
fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut rel = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        rel.extend_from_slice(parent);
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
    rel
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// --- the directories of a layer ------------------------------------------------------

/// What decides the group of a file made in a directory.
#[derive(Debug, Clone, Copy)]
struct DirInfo {
    gid: u32,
    setgid: bool,
}

impl DirInfo {
    fn of(fd: BorrowedFd) -> nix::Result<DirInfo> {
        let st = nix::sys::stat::fstat(fd)?;
        Ok(DirInfo {
            gid: st.st_gid,
            setgid: st.st_mode & libc::S_ISGID != 0,
        })
    }
}

/// Why a directory of the layer could not be opened.
enum Blocked {
    /// A link or a non-directory on the way; the message says which.
    Refused(String),
    /// Part of the path does not exist (when not making it).
    Missing(String),
    Failed(Error),
}

/// The flags every directory is opened with: never through a final link.
const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// The layer's top directory, and the last parent directory opened.
struct Dirs {
    top: PathBuf,
    root: OwnedFd,
    root_info: DirInfo,
    /// The parent of the last entry: the next one is most likely its sibling.
    cached: Option<(Vec<u8>, OwnedFd, DirInfo)>,
    /// Whether `openat2` works here.
    openat2: bool,
}

impl Dirs {
    /// The directory `parent` of the layer (empty: the top), open, with
    /// missing directories made (mode 0755) when `create` is set.
    fn parent(
        &mut self,
        parent: &[u8],
        create: bool,
    ) -> Result<(BorrowedFd<'_>, DirInfo), Blocked> {
        if parent.is_empty() {
            return Ok((self.root.as_fd(), self.root_info));
        }
        if !matches!(&self.cached, Some((key, _, _)) if key == parent) {
            self.cached = None;
            let fd = self.open(parent, create)?;
            let info = DirInfo::of(fd.as_fd()).map_err(|e| {
                Blocked::Failed(Error::io("stat", self.top.join(show(parent)), e.into()))
            })?;
            self.cached = Some((parent.to_vec(), fd, info));
        }
        let (_, fd, info) = self.cached.as_ref().expect("just filled");
        Ok((fd.as_fd(), *info))
    }

    /// Opens the directory `rel` (not empty) of the layer, never through a
    /// symbolic link: with one `openat2` when it exists, else one name at a
    /// time, making what is missing when `create` is set.
    fn open(&mut self, rel: &[u8], create: bool) -> Result<OwnedFd, Blocked> {
        // BEGIN SOLUTION 05.3
        if self.openat2 {
            let how = OpenHow::new().flags(DIR_FLAGS).resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
            match nix::fcntl::openat2(self.root.as_fd(), rel, how) {
                Ok(fd) => return Ok(fd),
                // Missing, or a link or a file on the way: the walk makes
                // what is missing, or says exactly what is wrong.
                Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV) => {}
                // Not available (old kernel, seccomp filter): walk from now on.
                Err(_) => self.openat2 = false,
            }
        }
        self.walk(rel, create)
        // END SOLUTION
    }

    /// Opens `rel` one name at a time, each with `O_NOFOLLOW`.
    fn walk(&self, rel: &[u8], create: bool) -> Result<OwnedFd, Blocked> {
        let mut fd: Option<OwnedFd> = None;
        let mut end = 0;
        for part in rel.split(|&b| b == b'/') {
            end += part.len() + usize::from(end > 0);
            let so_far = &rel[..end];
            let at = fd.as_ref().map_or(self.root.as_fd(), |f| f.as_fd());
            let failed = |op: &str, e: Errno| {
                Blocked::Failed(Error::io(op, self.top.join(show(so_far)), e.into()))
            };
            if create {
                match nix::sys::stat::mkdirat(at, part, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(failed("make directory", e)),
                }
            }
            match nix::fcntl::openat(at, part, DIR_FLAGS, Mode::empty()) {
                Ok(next) => fd = Some(next),
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    return Err(Blocked::Refused(describe(at, part, so_far)));
                }
                Err(Errno::ENOENT) => {
                    return Err(Blocked::Missing(format!("{} does not exist", show(so_far))));
                }
                Err(e) => return Err(failed("open directory", e)),
            }
        }
        fd.ok_or_else(|| Blocked::Missing("an empty path".into()))
    }
}

/// Says what `name` in `dir` is, when it is not a directory to go into.
fn describe(dir: BorrowedFd, name: &[u8], path: &[u8]) -> String {
    match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
            let target = nix::fcntl::readlinkat(dir, name)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!(
                "{} is a symbolic link (to {target:?}), and a layer may not write through \
                 a link: it could lead outside the layer",
                show(path)
            )
        }
        _ => format!(
            "{} is not a directory, so nothing can go inside it",
            show(path)
        ),
    }
}

// --- unpacking -----------------------------------------------------------------------

/// What one unpacking counted.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    entries: u64,
    files: u64,
    file_bytes: u64,
}

/// What the unpacking thread hands back.
struct Unpacked {
    result: Result<()>,
    counts: Counts,
    /// The stream ended before the unpacker was done with it.
    ended: bool,
    /// The tar's digest and length, when hashed on this thread.
    tar: Option<(String, u64)>,
}

/// One unpacking: the directories, and the rest of the state apart, so
/// that a borrowed parent directory and the state can be used together.
struct Unpacker {
    dirs: Dirs,
    st: State,
}

/// Everything but the directories.
struct State {
    top: PathBuf,
    options: Options,
    euid: u32,
    egid: u32,
    /// The umask, when known and not overridden by a default ACL: then a
    /// new inode's mode is known without asking.
    umask: Option<u32>,
    /// Plain targets: every path this layer wrote, and their parents.
    written: HashSet<Vec<u8>>,
    /// Directories' modes and times, set at the end.
    dir_attrs: Vec<(Vec<u8>, u32, (i64, i64))>,
    /// A directory was removed: the open parent may be one of its own.
    removed_dir: bool,
    counts: Counts,
}

impl Unpacker {
    fn new(dir: &Path, options: Options) -> Result<Unpacker> {
        let flags = DIR_FLAGS.difference(OFlag::O_NOFOLLOW);
        let root = nix::fcntl::open(dir, flags, Mode::empty())
            .map_err(|e| Error::io("open the layer directory", dir, e.into()))?;
        let root_info = DirInfo::of(root.as_fd()).map_err(|e| Error::io("stat", dir, e.into()))?;
        let umask = if has_default_acl(root.as_fd()) {
            None
        } else {
            current_umask()
        };
        Ok(Unpacker {
            dirs: Dirs {
                top: dir.to_path_buf(),
                root,
                root_info,
                cached: None,
                openat2: true,
            },
            st: State {
                top: dir.to_path_buf(),
                options,
                euid: nix::unistd::geteuid().as_raw(),
                egid: nix::unistd::getegid().as_raw(),
                umask,
                written: HashSet::new(),
                dir_attrs: Vec::new(),
                removed_dir: false,
                counts: Counts::default(),
            },
        })
    }

    /// Unpacks the whole stream on this thread, then lets go of it, so that
    /// a reader waiting to send more learns that nobody listens.
    fn run(mut self, mut s: Stream) -> Unpacked {
        let result = self.unpack(&mut s).and_then(|()| self.finish());
        let ended = s.ended;
        let tar = match (&result, s.sha.take()) {
            (Ok(()), Some(sha)) => Some((sha256_string(sha), s.bytes)),
            _ => None,
        };
        Unpacked {
            result,
            counts: self.st.counts,
            ended,
            tar,
        }
    }

    /// Reads headers and unpacks entries up to the end of the archive.
    fn unpack(&mut self, s: &mut Stream) -> Result<()> {
        let mut ext = Extensions::default();
        let mut block = [0u8; BLOCK];
        let cut = |what: String| {
            Error::Invalid(format!(
                "the layer ends in the middle of {what}: the download was cut short or the \
                 blob is damaged"
            ))
        };
        loop {
            let at = s.offset();
            match s.block(&mut block) {
                Ok(true) => {}
                // No end-of-archive marker: accepted, as Docker and GNU tar
                // do. A layer cut at a header boundary fails its digest.
                Ok(false) if !ext.pending() => return Ok(()),
                Ok(false) | Err(Cut) => return Err(cut(format!("the header at byte {at}"))),
            }
            if block.iter().all(|&b| b == 0) {
                if ext.pending() {
                    return Err(cut("an entry whose extension headers came first".into()));
                }
                if s.rest_is_zeros() {
                    return Ok(());
                }
                return Err(Error::Hostile {
                    entry: format!("(after the end of the archive, byte {at})"),
                    why: "data after the end-of-archive marker: some tar readers would \
                          unpack it and some would not"
                        .into(),
                });
            }
            let h = Header::parse(&block, at)?;
            let name = show(&h.name);
            let hostile = |why: String| Error::Hostile {
                entry: name.clone(),
                why,
            };
            let mut meta = |what: &str| -> Result<Vec<u8>> {
                if h.size > MAX_META {
                    return Err(hostile(format!(
                        "a {what} of {} bytes, where {MAX_META} are allowed",
                        h.size
                    )));
                }
                s.meta(h.size).map_err(|Cut| cut(format!("a {what}")))
            };
            let twice = |what: &str| Err(hostile(format!("two {what}s for one entry")));
            match h.kind {
                b'L' if ext.long_name.is_some() => return twice("GNU long name"),
                b'K' if ext.long_link.is_some() => return twice("GNU long link"),
                b'x' if ext.pax.is_some() => return twice("PAX header"),
                b'L' => ext.long_name = Some(text(&meta("GNU long name")?).to_vec()),
                b'K' => ext.long_link = Some(text(&meta("GNU long link")?).to_vec()),
                b'x' => ext.pax = Some(parse_pax(&meta("PAX header")?).map_err(hostile)?),
                // A global PAX header sets defaults for the whole archive;
                // layer writers do not use it, and berth ignores it.
                b'g' => drop(meta("global PAX header")?),
                _ => {
                    let e = Entry::new(h, std::mem::take(&mut ext))?;
                    self.entry(&e, s)?;
                    // The open parent directory may be inside one that an
                    // entry removed (`d/x`, then `d` replaced by a link):
                    // it must be looked up again, by its path.
                    if std::mem::take(&mut self.st.removed_dir) {
                        self.dirs.cached = None;
                    }
                }
            }
        }
    }

    /// Unpacks one entry; its data, if any, is next in the stream.
    fn entry(&mut self, e: &Entry, s: &mut Stream) -> Result<()> {
        // BEGIN SOLUTION 05.3
        let name = show(&e.path);
        let hostile = |why: String| Error::Hostile {
            entry: name.clone(),
            why,
        };
        let cut = |_| {
            Error::Invalid(format!(
                "the layer ends in the middle of entry {name:?}: the download was cut short \
                 or the blob is damaged"
            ))
        };
        let kind = Kind::of(e.kind, &e.path).map_err(hostile)?;
        if kind != Kind::File && e.size != 0 {
            return Err(hostile(format!(
                "a {} header followed by {} bytes of data: tar readers disagree on whether \
                 to skip them, so the layer could unpack differently elsewhere",
                kind.noun(),
                e.size
            )));
        }
        let rel = clean_path(&e.path).map_err(hostile)?;
        if rel.is_empty() {
            if kind == Kind::Dir {
                return Ok(()); // the layer's top belongs to the store
            }
            return Err(hostile("the top of a layer can only be a directory".into()));
        }
        // AUFS kept metadata under `.wh..wh.*` at the top (Docker before
        // 1.10); Docker skips it, and so does berth.
        if rel.starts_with(b".wh..wh.") && !rel.starts_with(OCI_OPAQUE.as_bytes()) {
            return s.skip(e.size).map_err(cut);
        }
        let (parent, leaf) = split(&rel);
        if let Some(marker) = parent
            .split(|&b| b == b'/')
            .find(|p| p.starts_with(b".wh."))
        {
            return Err(hostile(format!(
                "{} is a whiteout marker, which cannot hold other entries",
                show(marker)
            )));
        }
        self.st.counts.entries += 1;
        if leaf.starts_with(b".wh.") {
            if kind != Kind::File {
                return Err(hostile(format!(
                    "a whiteout marker must be an empty regular file, not a {}",
                    kind.noun()
                )));
            }
            s.skip(e.size).map_err(cut)?;
            let marker =
                parse_oci_name(OsStr::from_bytes(leaf)).map_err(|err| hostile(err.to_string()))?;
            return match marker {
                OciEntry::Opaque if parent.is_empty() => Err(hostile(
                    "an opaque marker at the top of the layer, which would hide every layer \
                     below; it belongs inside a directory"
                        .into(),
                )),
                OciEntry::Opaque => self.opaque(parent, &name),
                OciEntry::Whiteout(hidden) => {
                    self.whiteout(&join(parent, hidden.as_bytes()), e, &name)
                }
                OciEntry::Plain(_) => unreachable!("the name starts with .wh."),
            };
        }
        match kind {
            Kind::File => self.file(&rel, e, s, &name),
            Kind::Dir => self.dir(&rel, e, &name),
            Kind::Symlink => self.symlink(&rel, e, &name),
            Kind::HardLink => self.hard_link(&rel, e, &name),
            Kind::Char | Kind::Block | Kind::Fifo => self.node(&rel, kind, e, &name),
        }
        // END SOLUTION
    }

    /// A regular file: made with `O_EXCL`, its data written from the stream.
    fn file(&mut self, rel: &[u8], e: &Entry, s: &mut Stream, name: &str) -> Result<()> {
        let (parent, leaf) = split(rel);
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mode = Mode::from_bits_truncate(e.mode & 0o777);
        let top = self.st.top.clone();
        let path = || top.join(show(rel));
        let (dir, info) = self
            .dirs
            .parent(parent, true)
            .map_err(|b| blocked(b, name))?;
        let fd = match nix::fcntl::openat(dir, leaf, flags, mode) {
            Err(Errno::EEXIST) => {
                self.st.clear(dir, leaf, rel)?;
                nix::fcntl::openat(dir, leaf, flags, mode)
            }
            other => other,
        };
        let mut file = File::from(fd.map_err(|err| Error::io("create", path(), err.into()))?);
        s.take(e.size, |piece| file.write_all(piece))
            .map_err(|err| match err {
                TakeError::Write(err) => Error::io("write", path(), err),
                TakeError::Cut => Error::Invalid(format!(
                    "the layer ends in the middle of entry {name:?}: the download was cut short \
                 or the blob is damaged"
                )),
            })?;
        self.st.set_owner_fd(&file, info, e, rel)?;
        if self.st.needs_chmod(e.mode) {
            nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(e.mode))
                .map_err(|err| mode_error(err, e, &path()))?;
        }
        if self.st.options.owners {
            for (key, value) in &e.xattrs {
                // File capabilities (ping's cap_net_raw) are what images
                // use; the rest, trusted.overlay.* above all, is ignored.
                if key == b"security.capability" {
                    set_xattr(&file, key, value)
                        .map_err(|err| Error::io("set security.capability on", path(), err))?;
                }
            }
        }
        let (atime, mtime) = e.times();
        nix::sys::stat::futimens(&file, &atime, &mtime)
            .map_err(|err| Error::io("set times of", path(), err.into()))?;
        self.st.counts.files += 1;
        self.st.counts.file_bytes += e.size;
        self.st.mark(rel);
        Ok(())
    }

    /// A directory: one already there stays; mode and time come at the end.
    fn dir(&mut self, rel: &[u8], e: &Entry, name: &str) -> Result<()> {
        let (parent, leaf) = split(rel);
        let top = self.st.top.clone();
        let path = || top.join(show(rel));
        let (dir, info) = self
            .dirs
            .parent(parent, true)
            .map_err(|b| blocked(b, name))?;
        // Owner-only until the end, whatever the layer says, so that the
        // unpacking can still go in; tar does the same.
        let private = Mode::from_bits_truncate(0o700);
        let owner = match nix::sys::stat::mkdirat(dir, leaf, private) {
            Ok(()) => self.st.default_owner(info),
            Err(Errno::EEXIST) => {
                let st = nix::sys::stat::fstatat(dir, leaf, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|err| Error::io("stat", path(), err.into()))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    (st.st_uid, st.st_gid)
                } else {
                    self.st.clear(dir, leaf, rel)?;
                    nix::sys::stat::mkdirat(dir, leaf, private)
                        .map_err(|err| Error::io("make directory", path(), err.into()))?;
                    self.st.default_owner(info)
                }
            }
            Err(err) => return Err(Error::io("make directory", path(), err.into())),
        };
        self.st.set_owner_at(dir, leaf, owner, e, rel)?;
        self.st.dir_attrs.push((rel.to_vec(), e.mode, e.mtime));
        self.st.mark(rel);
        Ok(())
    }

    /// A symbolic link, stored as it is: nothing here ever follows one.
    fn symlink(&mut self, rel: &[u8], e: &Entry, name: &str) -> Result<()> {
        let Some(target) = CString::new(e.link.clone()).ok().filter(|t| !t.is_empty()) else {
            return Err(Error::Hostile {
                entry: name.to_string(),
                why: "a symbolic link with an empty target, or one holding a NUL byte".into(),
            });
        };
        let leaf = split(rel).1;
        self.make(rel, name, |dir| {
            nix::unistd::symlinkat(target.as_c_str(), dir, leaf)
        })?;
        self.attributes(rel, e, name, false)
    }

    /// A device or FIFO. Character device 0/0 is an overlay whiteout.
    fn node(&mut self, rel: &[u8], kind: Kind, e: &Entry, name: &str) -> Result<()> {
        let whiteout = kind == Kind::Char && e.device == (0, 0);
        if whiteout && self.st.options.target == Target::Plain {
            return self.whiteout(rel, e, name);
        }
        if matches!(kind, Kind::Char | Kind::Block) && !whiteout && !self.st.options.devices {
            return Err(Error::Hostile {
                entry: name.to_string(),
                why: format!(
                    "a {} {}:{}: a device file gives whoever opens it the hardware behind \
                     it, so berth makes one only for an image you trust (Options::devices)",
                    kind.noun(),
                    e.device.0,
                    e.device.1
                ),
            });
        }
        let flag = match kind {
            Kind::Char => SFlag::S_IFCHR,
            Kind::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        let dev = nix::sys::stat::makedev(e.device.0.into(), e.device.1.into());
        let perm = Mode::from_bits_truncate(e.mode & 0o777);
        let leaf = split(rel).1;
        self.make(rel, name, |dir| {
            nix::sys::stat::mknodat(dir, leaf, flag, perm, dev)
        })?;
        self.attributes(rel, e, name, true)
    }

    /// A hard link: a second name for a file already in the layer's
    /// directory, reached without links.
    fn hard_link(&mut self, rel: &[u8], e: &Entry, name: &str) -> Result<()> {
        // BEGIN SOLUTION 05.3
        let hostile = |why: String| Error::Hostile {
            entry: name.to_string(),
            why: format!("a hard link to {:?}: {why}", show(&e.link)),
        };
        let target = clean_path(&e.link).map_err(hostile)?;
        if target.is_empty() || target == rel {
            return Err(hostile(
                "a hard link must name another file of the layer".into(),
            ));
        }
        let (tparent, tleaf) = split(&target);
        let tdir = if tparent.is_empty() {
            self.dirs
                .root
                .try_clone()
                .map_err(|err| Error::io("dup", &self.st.top, err))?
        } else {
            self.dirs.open(tparent, false).map_err(|b| match b {
                Blocked::Refused(why) | Blocked::Missing(why) => hostile(why),
                Blocked::Failed(err) => err,
            })?
        };
        match nix::sys::stat::fstatat(&tdir, tleaf, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                return Err(hostile("a directory, which cannot be hard-linked".into()));
            }
            Ok(_) => {}
            Err(Errno::ENOENT) => {
                return Err(hostile(
                    "no such file in the layer; a hard link must name a file an earlier \
                     entry made"
                        .into(),
                ));
            }
            Err(err) => {
                return Err(Error::io(
                    "stat",
                    self.st.top.join(show(&target)),
                    err.into(),
                ));
            }
        }
        // Without AT_SYMLINK_FOLLOW, linkat links a symbolic link itself,
        // never what it points to.
        let leaf = split(rel).1;
        self.make(rel, name, |dir| {
            nix::unistd::linkat(&tdir, tleaf, dir, leaf, AtFlags::empty())
        })?;
        self.st.mark(rel);
        Ok(())
        // END SOLUTION
    }

    /// Makes `rel` with `make`, clearing the way first if something is there.
    fn make(
        &mut self,
        rel: &[u8],
        name: &str,
        make: impl Fn(BorrowedFd) -> nix::Result<()>,
    ) -> Result<()> {
        let (parent, leaf) = split(rel);
        let (dir, _) = self
            .dirs
            .parent(parent, true)
            .map_err(|b| blocked(b, name))?;
        let made = match make(dir) {
            Err(Errno::EEXIST) => {
                self.st.clear(dir, leaf, rel)?;
                make(dir)
            }
            other => other,
        };
        made.map_err(|err| Error::io("create", self.st.top.join(show(rel)), err.into()))
    }

    /// Gives what [`Self::make`] made its owner, mode (`chmod`: not for a
    /// symbolic link) and times, without following a link.
    fn attributes(&mut self, rel: &[u8], e: &Entry, name: &str, chmod: bool) -> Result<()> {
        let (parent, leaf) = split(rel);
        let path = self.st.top.join(show(rel));
        let (dir, info) = self
            .dirs
            .parent(parent, true)
            .map_err(|b| blocked(b, name))?;
        let owner = self.st.default_owner(info);
        self.st.set_owner_at(dir, leaf, owner, e, rel)?;
        if chmod && self.st.needs_chmod(e.mode) {
            let mode = Mode::from_bits_truncate(e.mode);
            let flag = nix::sys::stat::FchmodatFlags::NoFollowSymlink;
            nix::sys::stat::fchmodat(dir, leaf, mode, flag)
                .map_err(|err| mode_error(err, e, &path))?;
        }
        set_times_at(dir, leaf, e, &path)?;
        self.st.mark(rel);
        Ok(())
    }

    /// `.wh.NAME`: `hidden` (the path of NAME) is deleted. By the OCI rule
    /// a whiteout hides only what the layers below hold, so what this layer
    /// wrote itself stays.
    fn whiteout(&mut self, hidden: &[u8], e: &Entry, name: &str) -> Result<()> {
        let (parent, leaf) = split(hidden);
        let path = self.st.top.join(show(hidden));
        let plain = self.st.options.target == Target::Plain;
        if plain && self.st.written.contains(hidden) {
            return Ok(());
        }
        let (dir, info) = match self.dirs.parent(parent, !plain) {
            Ok(found) => found,
            Err(Blocked::Missing(_)) => return Ok(()), // nothing to delete
            Err(b) => return Err(blocked(b, name)),
        };
        let there = match nix::sys::stat::fstatat(dir, leaf, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(_) => true,
            Err(Errno::ENOENT) => false,
            Err(err) => return Err(Error::io("stat", &path, err.into())),
        };
        if plain {
            return if there {
                self.st.clear(dir, leaf, hidden)
            } else {
                Ok(())
            };
        }
        // An overlay layer's directory starts empty: what is there is this
        // layer's own.
        if there {
            return Ok(());
        }
        nix::sys::stat::mknodat(dir, leaf, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|err| {
            let hint = if err == Errno::EPERM {
                " (a whiteout is a device node: unpack as root, or for a plain target)"
            } else {
                ""
            };
            Error::io(format!("make whiteout{hint}"), &path, err.into())
        })?;
        let owner = self.st.default_owner(info);
        self.st.set_owner_at(dir, leaf, owner, e, hidden)?;
        set_times_at(dir, leaf, e, &path)
    }

    /// `.wh..wh..opq` in `parent`: the directory hides what the layers
    /// below have in it.
    fn opaque(&mut self, parent: &[u8], name: &str) -> Result<()> {
        match self.st.options.target {
            Target::Overlay(xattr) => {
                let (dir, _) = self
                    .dirs
                    .parent(parent, true)
                    .map_err(|b| blocked(b, name))?;
                set_xattr(&dir, xattr.opaque().as_bytes(), b"y").map_err(|err| {
                    let hint = if xattr == Xattr::Trusted && err.raw_os_error() == Some(libc::EPERM)
                    {
                        " (trusted.* attributes need root; use Xattr::User in a user namespace)"
                    } else {
                        ""
                    };
                    let op = format!("set {}{hint} on", xattr.opaque());
                    Error::io(op, self.st.top.join(show(parent)), err)
                })
            }
            Target::Plain => match self.dirs.parent(parent, false) {
                Ok((dir, _)) => self.st.empty(dir, parent),
                Err(Blocked::Missing(_)) => Ok(()),
                Err(b) => Err(blocked(b, name)),
            },
        }
    }

    /// Sets the directories' modes and times, now that nothing more will be
    /// made in them. A directory replaced since is skipped.
    fn finish(&mut self) -> Result<()> {
        self.dirs.cached = None;
        for (rel, mode, mtime) in std::mem::take(&mut self.st.dir_attrs) {
            let path = || self.st.top.join(show(&rel));
            let fd = match self.dirs.open(&rel, false) {
                Ok(fd) => fd,
                Err(Blocked::Failed(err)) => return Err(err),
                Err(_) => continue,
            };
            nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(|err| {
                Error::io(format!("change mode to {mode:04o} of"), path(), err.into())
            })?;
            let t = TimeSpec::new(mtime.0, mtime.1);
            nix::sys::stat::futimens(&fd, &t, &t)
                .map_err(|err| Error::io("set times of", path(), err.into()))?;
        }
        Ok(())
    }
}

impl State {
    /// The owner the kernel gives a new inode in a directory like `info`.
    fn default_owner(&self, info: DirInfo) -> (u32, u32) {
        (self.euid, if info.setgid { info.gid } else { self.egid })
    }

    /// Whether an inode made with `mode & 0o777` needs `fchmod` to get
    /// `mode`: when the umask took bits away, or for set-user-ID,
    /// set-group-ID and sticky bits (which also go after a change of owner).
    fn needs_chmod(&self, mode: u32) -> bool {
        match self.umask {
            Some(umask) => mode & 0o7777 != mode & 0o777 & !umask,
            None => true,
        }
    }

    /// Gives an open file the entry's owner, unless the kernel did already.
    fn set_owner_fd(&self, file: &File, info: DirInfo, e: &Entry, rel: &[u8]) -> Result<()> {
        if !self.options.owners || (e.uid, e.gid) == self.default_owner(info) {
            return Ok(());
        }
        nix::unistd::fchown(file, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
            .map_err(|err| owner_error(err, e, &self.top.join(show(rel))))
    }

    /// Gives `leaf` in `dir`, never following a link, the entry's owner,
    /// unless `now` is that owner.
    fn set_owner_at(
        &self,
        dir: BorrowedFd,
        leaf: &[u8],
        now: (u32, u32),
        e: &Entry,
        rel: &[u8],
    ) -> Result<()> {
        if !self.options.owners || (e.uid, e.gid) == now {
            return Ok(());
        }
        nix::unistd::fchownat(
            dir,
            leaf,
            Some(Uid::from_raw(e.uid)),
            Some(Gid::from_raw(e.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|err| owner_error(err, e, &self.top.join(show(rel))))
    }

    /// Removes what is at `leaf` in `dir` (`rel` in the layer), to make
    /// room for a new entry or to delete it.
    fn clear(&mut self, dir: BorrowedFd, leaf: &[u8], rel: &[u8]) -> Result<()> {
        let path = || self.top.join(show(rel));
        let st = nix::sys::stat::fstatat(dir, leaf, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("stat", path(), e.into()))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return nix::unistd::unlinkat(dir, leaf, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(|e| Error::io("remove", path(), e.into()));
        }
        remove_tree(dir, leaf).map_err(|e| Error::io("remove", path(), e.into()))?;
        self.removed_dir = true;
        if !self.written.is_empty() {
            let prefix = join(rel, b"");
            self.written.retain(|p| !p.starts_with(&prefix));
        }
        Ok(())
    }

    /// Records that this layer wrote `rel`, and so its parents (plain
    /// targets only, where whiteouts need to know).
    fn mark(&mut self, rel: &[u8]) {
        if self.options.target != Target::Plain {
            return;
        }
        let mut path = rel;
        while self.written.insert(path.to_vec()) {
            match path.iter().rposition(|&b| b == b'/') {
                Some(i) => path = &path[..i],
                None => break,
            }
        }
    }

    /// Removes what is in the directory `rel` (open as `dir`) except what
    /// this layer wrote.
    fn empty(&mut self, dir: BorrowedFd, rel: &[u8]) -> Result<()> {
        let children = list(dir)
            .map_err(|e| Error::io("read directory", self.top.join(show(rel)), e.into()))?;
        for (child, is_dir) in children {
            let child_rel = join(rel, child.to_bytes());
            if !self.written.contains(&child_rel) {
                self.clear(dir, child.to_bytes(), &child_rel)?;
            } else if is_dir {
                let sub = nix::fcntl::openat(dir, child.as_c_str(), DIR_FLAGS, Mode::empty())
                    .map_err(|e| {
                        Error::io("open directory", self.top.join(show(&child_rel)), e.into())
                    })?;
                self.empty(sub.as_fd(), &child_rel)?;
            }
        }
        Ok(())
    }
}

/// Sets the times of `leaf` in `dir` to the entry's, not following a link.
fn set_times_at(dir: BorrowedFd, leaf: &[u8], e: &Entry, path: &Path) -> Result<()> {
    let (atime, mtime) = e.times();
    let flag = nix::sys::stat::UtimensatFlags::NoFollowSymlink;
    nix::sys::stat::utimensat(dir, leaf, &atime, &mtime, flag)
        .map_err(|err| Error::io("set times of", path, err.into()))
}

fn owner_error(err: Errno, e: &Entry, path: &Path) -> Error {
    let hint = if err == Errno::EPERM {
        " (unpack as root, or without owners: Options::owners = false)"
    } else {
        ""
    };
    Error::io(
        format!("change owner to {}:{}{hint} of", e.uid, e.gid),
        path,
        err.into(),
    )
}

fn mode_error(err: Errno, e: &Entry, path: &Path) -> Error {
    Error::io(
        format!("change mode to {:04o} of", e.mode),
        path,
        err.into(),
    )
}

/// The error for an entry whose parent directory could not be opened.
fn blocked(b: Blocked, name: &str) -> Error {
    match b {
        Blocked::Refused(why) | Blocked::Missing(why) => Error::Hostile {
            entry: name.to_string(),
            why,
        },
        Blocked::Failed(err) => err,
    }
}

/// Removes `name` in `dir` and everything under it, never following a
/// symbolic link.
fn remove_tree(dir: BorrowedFd, name: &[u8]) -> nix::Result<()> {
    let sub = nix::fcntl::openat(dir, name, DIR_FLAGS, Mode::empty())?;
    for (child, is_dir) in list(sub.as_fd())? {
        if is_dir {
            remove_tree(sub.as_fd(), child.to_bytes())?;
        } else {
            nix::unistd::unlinkat(
                &sub,
                child.as_c_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            )?;
        }
    }
    drop(sub);
    nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::RemoveDir)
}

/// The names in a directory, without `.` and `..`, and whether each is a
/// directory.
fn list(dir: BorrowedFd) -> nix::Result<Vec<(CString, bool)>> {
    use nix::dir::{Dir, Type};
    let mut d = Dir::openat(dir, ".", DIR_FLAGS, Mode::empty())?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            Some(t) => t == Type::Directory,
            None => nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR),
        };
        names.push((name.to_owned(), is_dir));
    }
    Ok(names)
}

/// Sets an extended attribute on an open file or directory.
fn set_xattr(fd: &impl AsFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the name is NUL-terminated and the value readable for its length.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_fd().as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a directory has a default ACL, which replaces the umask for
/// what is made inside it.
fn has_default_acl(dir: BorrowedFd) -> bool {
    let name: &CStr = c"system.posix_acl_default";
    // SAFETY: a size query with no buffer.
    let size = unsafe { libc::fgetxattr(dir.as_raw_fd(), name.as_ptr(), std::ptr::null_mut(), 0) };
    size > 0
}

/// The process's umask, from /proc/self/status (asking umask(2) would
/// change it for every thread for a moment).
fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}
