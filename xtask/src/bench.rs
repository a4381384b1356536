//! `cargo xtask bench` (being written).

use anyhow::Result;

pub fn run(_runs: usize) -> Result<()> {
    anyhow::bail!("the benchmark is being written")
}
