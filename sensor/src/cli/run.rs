//! `rstwatch-sensor run` and `check-config`: not built yet (live capture issue).

/// Capture live with AF_XDP (not built yet).
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Validate a configuration file and print the effective configuration (not built yet).
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {}

pub fn main(_a: RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("run is not built yet: live capture comes with its own issue")
}

pub fn check_config(_a: CheckConfigArgs) -> anyhow::Result<i32> {
    anyhow::bail!("check-config is not built yet")
}
