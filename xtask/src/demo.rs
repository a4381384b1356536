//! `cargo xtask demo` (being written).

use anyhow::Result;

pub fn run() -> Result<()> {
    anyhow::bail!("being written")
}
