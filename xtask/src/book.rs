//! `cargo xtask book` (being written).

use anyhow::Result;

pub fn run() -> Result<()> {
    anyhow::bail!("being written")
}
