//! Container logs in Docker's `json-file` format: one JSON object per line,
//! `{"log":"hello\n","stream":"stdout","time":"2026-11-23T06:30:00.123456789Z"}`.
//! The monitor writes them; `berth logs` reads them back.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Splits a stream of output chunks into lines, keeping an unfinished line
/// until the rest arrives, so that a line written in two `write` calls is
/// still one log entry.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Adds a chunk and returns every line it completed (with its newline).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        lines
    }

    /// Whatever is left at end of stream.
    pub fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty())
            .then(|| String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned())
    }
}

/// Appends entries to a container's log file.
pub struct Writer {
    file: File,
}

impl Writer {
    pub fn open(path: &Path) -> Result<Writer> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Writer { file })
    }

    pub fn write(&mut self, stream: &str, line: String) -> Result<()> {
        let entry = Entry {
            log: line,
            stream: stream.to_string(),
            time: humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        };
        let mut bytes = serde_json::to_vec(&entry)?;
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        Ok(())
    }
}

/// Options of `berth logs`.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

/// Prints a container's log: stdout entries to `out`, stderr entries to
/// `err`. With `follow`, keeps reading while `still_running()` says so.
pub fn print(
    path: &Path,
    opts: &ReadOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    still_running: &dyn Fn() -> bool,
) -> Result<()> {
    let Ok(file) = File::open(path) else {
        return Ok(()); // never started: no log yet
    };
    let mut reader = BufReader::new(file);
    if let Some(n) = opts.tail {
        let all: Vec<String> = (&mut reader).lines().collect::<Result<_, _>>()?;
        for line in &all[all.len().saturating_sub(n)..] {
            emit(line, opts, out, err)?;
        }
    }
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n > 0 && line.ends_with('\n') {
            emit(line.trim_end_matches('\n'), opts, out, err)?;
            continue;
        }
        if n > 0 {
            // A line still being written: read it again in a moment.
            reader.seek(SeekFrom::Current(-(n as i64)))?;
        }
        if !opts.follow {
            return Ok(());
        }
        out.flush()?;
        err.flush()?;
        if !still_running() {
            // One last pass for what was written just before the exit.
            let rest: Vec<String> = (&mut reader).lines().collect::<Result<_, _>>()?;
            for l in rest {
                emit(&l, opts, out, err)?;
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn emit(line: &str, opts: &ReadOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let Ok(entry) = serde_json::from_str::<Entry>(line) else {
        return Ok(()); // a damaged line (say, from a crash mid-write) is skipped
    };
    let target: &mut dyn Write = if entry.stream == "stderr" { err } else { out };
    if opts.timestamps {
        write!(target, "{} ", entry.time)?;
    }
    target.write_all(entry.log.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_reassembled() {
        let mut b = LineBuffer::default();
        assert!(b.push(b"hel").is_empty());
        assert_eq!(b.push(b"lo\nwor"), vec!["hello\n"]);
        assert_eq!(b.push(b"ld\n\n"), vec!["world\n", "\n"]);
        assert_eq!(b.push(b"tail"), Vec::<String>::new());
        assert_eq!(b.finish().as_deref(), Some("tail"));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = Writer::open(&path).unwrap();
        w.write("stdout", "one\n".into()).unwrap();
        w.write("stderr", "oops\n".into()).unwrap();
        w.write("stdout", "two\n".into()).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        print(&path, &ReadOptions::default(), &mut out, &mut err, &|| {
            false
        })
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\n");
        assert_eq!(String::from_utf8(err).unwrap(), "oops\n");
        let mut out = Vec::new();
        let opts = ReadOptions {
            tail: Some(1),
            ..Default::default()
        };
        print(&path, &opts, &mut out, &mut Vec::new(), &|| false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "two\n");
    }
}
