//! `rstwatch-sensor gen`: not built yet.

/// Write a pcap of a labelled scenario (not built yet).
#[derive(Debug, clap::Args)]
pub struct GenArgs {}

pub fn main(_a: GenArgs) -> anyhow::Result<i32> {
    anyhow::bail!("gen is not built yet")
}
