//! Reading and writing cgroup files ("knobs"). A cgroup filesystem is
//! driven entirely by small text files: writing a number into `pids.max`
//! sets a limit, writing a pid into `cgroup.procs` moves a process. These
//! helpers add the file and the value to every error.

use std::io::ErrorKind;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `value` into the knob `dir/file`.
///
/// The kernel parses the value when it is written, so a bad value fails
/// here with EINVAL (or EBUSY, EPERM); the error names the value and file.
pub fn write(dir: &Path, file: &str, value: impl std::fmt::Display) -> Result<()> {
    let path = dir.join(file);
    let value = value.to_string();
    #[cfg(test)]
    WRITES.with(|w| w.borrow_mut().push((path.clone(), value.clone())));
    std::fs::write(&path, &value).map_err(|e| Error::io(format!("write {value} to"), &path, e))
}

/// Reads the knob `dir/file`, without the trailing newline.
pub fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path)
        .map(|s| s.trim_end().to_string())
        .map_err(|e| Error::io("read", &path, e))
}

/// Reads a knob if the file exists (`None` when the kernel lacks it).
pub fn read_optional(dir: &Path, file: &str) -> Result<Option<String>> {
    match read(dir, file) {
        Ok(s) => Ok(Some(s)),
        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads a knob holding one number; `max` (cgroup v2's "no limit") is `None`.
pub fn read_u64(dir: &Path, file: &str) -> Result<Option<u64>> {
    let text = read(dir, file)?;
    parse_u64_or_max(&text).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: expected a number or max, found {text:?}",
            dir.join(file).display()
        ))
    })
}

/// Parses `123` as `Some(Some(123))` and `max` as `Some(None)`.
pub fn parse_u64_or_max(text: &str) -> Option<Option<u64>> {
    match text.trim() {
        "max" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

/// Looks up `key` in a flat-keyed file such as `memory.events` or `cpu.stat`
/// (one `key value` pair per line).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
thread_local! {
    /// Every write this thread made, in order, for the snapshot tests.
    static WRITES: std::cell::RefCell<Vec<(std::path::PathBuf, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Takes the writes recorded so far on this thread, with paths shown
/// relative to `root` (test builds only).
#[cfg(test)]
pub fn take_writes(root: &Path) -> String {
    WRITES.with(|w| {
        w.borrow_mut()
            .drain(..)
            .map(|(path, value)| {
                let shown = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                format!("{shown} <- {value}\n")
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files() {
        let text = "usage_usec 120\nnr_periods 10\nnr_throttled 4\n";
        assert_eq!(keyed(text, "nr_throttled"), Some(4));
        assert_eq!(keyed(text, "nr_periods"), Some(10));
        assert_eq!(keyed(text, "missing"), None);
    }

    #[test]
    fn max_means_no_limit() {
        assert_eq!(parse_u64_or_max("max\n"), Some(None));
        assert_eq!(parse_u64_or_max("42"), Some(Some(42)));
        assert_eq!(parse_u64_or_max("lots"), None);
    }

    #[test]
    fn errors_name_the_value_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("missing"), "pids.max", 100).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("write 100 to "), "{text}");
        assert!(text.contains("missing/pids.max"), "{text}");
    }
}
