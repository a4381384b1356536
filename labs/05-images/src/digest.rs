//! Step 05.1: content addresses.
//!
//! Everything in an image is named by the SHA-256 of its bytes, written
//! `sha256:` followed by 64 hexadecimal digits. A name computed from the
//! content means anyone holding the bytes can check them: a registry, an
//! archive or the disk can be wrong, and the hash shows it. Three kinds of
//! name follow from that one rule:
//!
//! - a *digest* names a blob as stored or sent (a gzipped layer, a
//!   manifest, a config);
//! - a *diff id* names a layer's uncompressed tar, so the same layer
//!   compressed twice is still one layer;
//! - a *chain id* names a stack of layers: the first layer's diff id, then
//!   `sha256(previous chain id + " " + next diff id)`, so two images share
//!   an unpacked stack only when every layer below is the same too.
//!
//! The image's *id* is the digest of its config, which lists the diff ids.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::{Error, Result};

/// `sha256:<hex>` of some bytes: the name those bytes are stored under.
pub fn sha256(data: &[u8]) -> String {
    // BEGIN SOLUTION 05.1
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
    // END SOLUTION
}

/// The 64 hex digits of a `sha256:` digest, or an error naming what is
/// wrong with it. Only SHA-256 is accepted: it is what every registry uses.
pub fn hex_part(digest: &str) -> Result<&str> {
    // BEGIN SOLUTION 05.1
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
        Error::Invalid(format!(
            "unsupported digest {digest:?}: expected sha256: followed by 64 hex digits"
        ))
    })?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::Invalid(format!(
            "malformed digest {digest:?}: expected sha256: followed by 64 lower-case hex digits"
        )));
    }
    Ok(hex)
    // END SOLUTION
}

/// The chain id of a stack of layers, bottom first: it names the whole
/// stack, so it changes if any layer below changes.
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    // BEGIN SOLUTION 05.1
    let mut ids = diff_ids.iter();
    let mut chain = ids.next()?.clone();
    for id in ids {
        chain = sha256(format!("{chain} {id}").as_bytes());
    }
    Some(chain)
    // END SOLUTION
}

/// A writer that hashes what goes through it, for checking a blob while it
/// is copied instead of reading it twice.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`; nothing is hashed yet.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Forgets what was hashed so far (the caller empties `inner` too).
    pub fn reset(&mut self) {
        self.hasher = Sha256::new();
        self.written = 0;
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The digest and length of everything written, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (digest, self.written, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`; nothing is hashed yet.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// The digest and length of everything read so far.
    pub fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.read,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Checks that `actual` is `expected`, with a message saying what `what` was.
pub fn verify(what: &str, expected: &str, actual: &str) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_of_nothing_is_the_well_known_one() {
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hashing_while_copying_gives_the_same_digest() {
        let data = b"a layer, or anything";
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(data).unwrap();
        let (digest, n, copy) = w.finish();
        assert_eq!(
            (digest.as_str(), n, &copy[..]),
            (&sha256(data)[..], 20, &data[..])
        );
        let mut r = HashingReader::new(&data[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.finish(), (sha256(data), 20));
    }

    #[test]
    fn digests_are_checked_for_form() {
        let good = sha256(b"x");
        assert_eq!(hex_part(&good).unwrap().len(), 64);
        for bad in [
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            &good.to_uppercase(),
            &good.replace("sha256:", "sha256:../"),
        ] {
            let e = hex_part(bad).unwrap_err().to_string();
            assert!(e.contains("digest"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_chain_id_changes_when_a_lower_layer_does() {
        let (a, b, c) = (sha256(b"a"), sha256(b"b"), sha256(b"c"));
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let ab = chain_id(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(ab, sha256(format!("{a} {b}").as_bytes()));
        // The same top layer on a different base is a different stack.
        assert_ne!(
            chain_id(&[a.clone(), c.clone()]),
            chain_id(&[b.clone(), c.clone()])
        );
        assert_ne!(chain_id(&[a.clone(), b.clone()]), chain_id(&[b, a]));
    }
}
