//! `rstwatch-sensor replay`: being written.

/// Read pcap/pcapng files and print RST events, flow records and anomalies.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng).
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
}

pub fn main(_a: ReplayArgs) -> anyhow::Result<i32> {
    anyhow::bail!("replay is being written")
}
