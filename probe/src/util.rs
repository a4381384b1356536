//! Small helpers shared by the sections.

use std::fs;
use std::path::Path;

/// Reads a whole file as text, replacing invalid UTF-8; `None` when it cannot
/// be read (missing, permission denied, not mounted, ...).
pub fn read_text(path: impl AsRef<Path>) -> Option<String> {
    fs::read(path)
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads a one-line file (a cgroup knob, /etc/hostname) with surrounding
/// whitespace removed.
pub fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    read_text(path).map(|text| text.trim().to_owned())
}

/// Names the bits set in `bits`, lowest bit first, using `table` of
/// `(bit value, name)` pairs; a set bit missing from the table is written as
/// hex, e.g. `"0x100000"`.
pub fn flag_names(bits: u32, table: &[(u32, &str)]) -> Vec<String> {
    (0..u32::BITS)
        .map(|shift| 1u32 << shift)
        .filter(|bit| bits & bit != 0)
        .map(|bit| match table.iter().find(|(value, _)| *value == bit) {
            Some((_, name)) => (*name).to_owned(),
            None => format!("0x{bit:x}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_known_and_unknown_bits_in_bit_order() {
        let table = [(0x1, "UP"), (0x8, "LOOPBACK")];
        assert_eq!(flag_names(0x9 | 0x100, &table), ["UP", "LOOPBACK", "0x100"]);
        assert!(flag_names(0, &table).is_empty());
    }

    #[test]
    fn missing_file_is_none() {
        assert_eq!(read_text("/nonexistent/probe-test"), None);
    }
}
