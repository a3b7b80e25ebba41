//! Splits a pcap file into `--parts` files by the flow hash `replay --workers` and live
//! fan-out use: each part holds, in the capture's order, the frames of the flows one
//! engine of `--parts` gets (frames that do not parse go to part 0, as there). Which
//! flows share a part depends on the process's hash seed, as which share an engine
//! does in one `--workers` run. `benches/workers_scaling.sh` replays the parts at once,
//! one engine a core, to measure what two cores give this work on this machine when
//! it is split with no reader, no hand-over and nothing shared (each part does pay a
//! process's start, ~5 ms, which one `--workers` replay pays once).
//!
//! ```text
//! target/release/split_capture --parts 2 --out /tmp/part capture.pcap   # /tmp/part-0.pcap, /tmp/part-1.pcap
//! ```

use anyhow::Context;
use clap::Parser;
use pcap_file::pcap::{PcapReader, PcapWriter};
use rstwatch_sensor::engine::FanoutParser;
use rstwatch_sensor::parse::LinkType;
use rstwatch_sensor::EngineConfig;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

/// Splits a pcap file by the flow hash of `replay --workers` (one file per engine).
#[derive(Parser)]
struct Args {
    /// Engines to split for (the files written).
    #[arg(long, default_value_t = 2)]
    parts: usize,
    /// Prefix of the files written: `<out>-<i>.pcap`.
    #[arg(long)]
    out: PathBuf,
    /// The pcap file (not pcapng) to split.
    capture: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.parts >= 1, "--parts must be at least 1");
    let f = File::open(&a.capture).with_context(|| format!("opening {}", a.capture.display()))?;
    let mut r = PcapReader::new(BufReader::with_capacity(1 << 20, f))
        .with_context(|| format!("{} is not a pcap file", a.capture.display()))?;
    let header = r.header();
    let link = LinkType::from_linktype(u32::from(header.datalink));
    let mut outs = (0..a.parts)
        .map(|i| {
            let path = PathBuf::from(format!("{}-{i}.pcap", a.out.display()));
            let file =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            Ok(PcapWriter::with_header(
                BufWriter::with_capacity(1 << 20, file),
                header,
            )?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The engines' own parse options, so each frame goes where `--workers` sends it.
    let mut parser = FanoutParser::new(EngineConfig::default().parse_options());
    let mut counts = vec![0u64; a.parts];
    while let Some(p) = r.next_packet() {
        let p = p.context("reading a packet")?;
        let (i, _) = parser.parse(link, &p.data, a.parts);
        outs[i].write_packet(&p)?;
        counts[i] += 1;
    }
    for (i, n) in counts.iter().enumerate() {
        println!("{}-{i}.pcap: {n} frames", a.out.display());
    }
    Ok(())
}
