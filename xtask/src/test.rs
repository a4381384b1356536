//! `cargo xtask test` (being written).

use anyhow::Result;

pub fn run(_install: bool) -> Result<()> {
    anyhow::bail!("being written")
}
