//! v2 freezing: every cgroup has `cgroup.freeze`; `cgroup.events` says
//! `frozen 1` once every process in it has stopped.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fs;

pub const FREEZE: &str = "cgroup.freeze";
pub const EVENTS: &str = "cgroup.events";

// ANCHOR: freeze
/// Freezes the cgroup and waits until the kernel reports it frozen.
pub fn freeze(dir: &Path) -> Result<()> {
    // BEGIN SOLUTION 02.6
    set(dir, true)
    // END SOLUTION
}
// ANCHOR_END: freeze

/// Thaws the cgroup.
pub fn thaw(dir: &Path) -> Result<()> {
    set(dir, false)
}

/// Whether the cgroup is frozen.
pub fn is_frozen(dir: &Path) -> Result<bool> {
    let events = fs::read_optional(dir, EVENTS)?.unwrap_or_default();
    Ok(fs::keyed(&events, "frozen") == Some(1))
}

fn set(dir: &Path, frozen: bool) -> Result<()> {
    fs::write(dir, FREEZE, u8::from(frozen))?;
    if !crate::manager::is_cgroupfs(dir) {
        return Ok(()); // a test directory: nothing reports back
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_frozen(dir)? != frozen {
        if Instant::now() > deadline {
            return Err(Error::Unsupported(format!(
                "{} did not report frozen {} in time",
                dir.join(EVENTS).display(),
                u8::from(frozen)
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
