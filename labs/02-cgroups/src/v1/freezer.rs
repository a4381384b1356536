//! v1 freezer controller: writing `FROZEN` to `freezer.state` stops every
//! process in the cgroup; the state reads `FREEZING` until all have stopped.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fs;

pub const STATE: &str = "freezer.state";

// ANCHOR: freeze
/// Freezes the cgroup and waits until the kernel reports it frozen.
pub fn freeze(dir: &Path) -> Result<()> {
    // BEGIN SOLUTION 02.6
    // STARTER: // Until step 02.6 there is no freezer, and kill_all kills without it.
    // STARTER: Err(Error::Unsupported(format!("freezing {} is step 02.6", dir.display())))
    set(dir, "FROZEN")
    // END SOLUTION
}
// ANCHOR_END: freeze

/// Thaws the cgroup.
pub fn thaw(dir: &Path) -> Result<()> {
    set(dir, "THAWED")
}

/// Whether the cgroup is frozen.
pub fn is_frozen(dir: &Path) -> Result<bool> {
    Ok(fs::read(dir, STATE)? == "FROZEN")
}

fn set(dir: &Path, state: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        fs::write(dir, STATE, state)?;
        let now = fs::read(dir, STATE)?;
        if now == state {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Unsupported(format!(
                "{} stayed {now} instead of {state}",
                dir.join(STATE).display()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
