//! v1 devices controller: `devices.deny` and `devices.allow` edit the
//! cgroup's allow-list, one rule per write.

use std::path::Path;

use crate::devices::default_rules;
use crate::error::Result;
use crate::fs;
use crate::resources::Resources;

pub const ALLOW: &str = "devices.allow";
pub const DENY: &str = "devices.deny";
pub const LIST: &str = "devices.list";

// ANCHOR: apply
/// Denies everything (`a`), then allows the defaults and the `--device`
/// rules one by one.
pub fn apply(dir: &Path, r: &Resources) -> Result<()> {
    // BEGIN SOLUTION 02.5
    // STARTER: // Until step 02.5, the container may use every device.
    // STARTER: Ok(())
    fs::write(dir, DENY, "a")?;
    for rule in default_rules().iter().chain(&r.devices) {
        let file = if rule.allow { ALLOW } else { DENY };
        fs::write(dir, file, rule)?;
    }
    Ok(())
    // END SOLUTION
}
// ANCHOR_END: apply
