//! Parser benchmark: cost per frame of `parse::parse` for captures side by side in one
//! run, e.g. the same scenario plain and in each remote-mirroring encapsulation
//! (issue 11).
//!
//! ```text
//! cargo build --release -p rstwatch-sensor -p rstwatch-benches
//! for e in plain gre erspan1 erspan2 erspan3 vxlan geneve mpls pppoe; do
//!   target/release/rstwatch-sensor gen --scenario mixed --flows 3000 --out /tmp/pb-$e.pcap \
//!     $([ $e = plain ] || echo --encap $e)
//! done
//! target/release/parse_bench /tmp/pb-plain.pcap /tmp/pb-{gre,erspan1,erspan2,erspan3,vxlan,geneve,mpls,pppoe}.pcap
//! ```
//!
//! Every file's frames are held in memory and parsed `--rounds` times; the rounds
//! interleave the files (file 1, 2, ..., 1, 2, ...) so that machine noise hits them
//! alike, and the median per frame is compared with the first file's. The source uses
//! only the parser's public entry point, so the same file builds on an older commit for
//! an A/B of one capture across builds.

use clap::Parser;
use rstwatch_sensor::parse::{self, LinkType, ParseOptions};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

/// Parser benchmark: cost per frame of `parse::parse` for captures side by side in one run.
#[derive(Parser)]
struct Args {
    /// pcap files (the first is the reference).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Passes over each file.
    #[arg(long, default_value_t = 21)]
    rounds: usize,
    /// Times each file is parsed per round (longer rounds, less timer noise).
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

struct Capture {
    name: String,
    link: LinkType,
    frames: Vec<Vec<u8>>,
    ns_per_frame: Vec<f64>,
    tcp: usize,
}

fn load(path: &PathBuf) -> anyhow::Result<Capture> {
    let f = std::fs::File::open(path)?;
    let mut r = pcap_file::pcap::PcapReader::new(std::io::BufReader::new(f))?;
    let link = LinkType::from_linktype(u32::from(r.header().datalink));
    let mut frames = vec![];
    while let Some(p) = r.next_packet() {
        frames.push(p?.data.into_owned());
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Capture {
        name,
        link,
        frames,
        ns_per_frame: vec![],
        tcp: 0,
    })
}

/// One timed pass: parses every frame `reps` times; returns ns per frame and TCP count.
fn pass(c: &Capture, reps: usize, opts: ParseOptions) -> (f64, usize) {
    let t = Instant::now();
    let mut tcp = 0usize;
    for _ in 0..reps {
        for f in &c.frames {
            // black_box the whole result, or the compiler drops the field extraction.
            tcp += black_box(parse::parse(c.link, black_box(f), opts)).is_ok() as usize;
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / (reps * c.frames.len()) as f64;
    (ns, tcp / reps)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mut caps = a
        .files
        .iter()
        .map(load)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = ParseOptions {
        verify_checksum: true,
        ..ParseOptions::default()
    };
    for c in &caps {
        pass(c, 1, opts); // warm-up: caches, branch predictors, page faults
    }
    for _ in 0..a.rounds {
        for c in &mut caps {
            let (ns, tcp) = pass(c, a.reps, opts);
            c.ns_per_frame.push(ns);
            c.tcp = tcp;
        }
    }
    let reference = median(&caps[0].ns_per_frame);
    println!(
        "{:<12} {:>8} {:>8} {:>10} {:>10} {:>8}",
        "capture", "frames", "tcp", "median ns", "min ns", "ratio"
    );
    for c in &caps {
        let m = median(&c.ns_per_frame);
        let min = c.ns_per_frame.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "{:<12} {:>8} {:>8} {:>10.2} {:>10.2} {:>8.3}",
            c.name,
            c.frames.len(),
            c.tcp,
            m,
            min,
            m / reference
        );
    }
    Ok(())
}
