//! `rstwatch-sensor gen`: writes a labelled scenario capture (see [`crate::gen`]).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::gen::{self, GenOptions, Scenario};

/// Write a pcap of a labelled scenario, for tests, demos and benchmarks.
///
/// The capture is Ethernet with microsecond timestamps; every address is from the
/// documentation prefixes (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32).
/// The same options always give the same file. `--labels` writes what the sensor
/// should say about each RST (class, direction, required flags, suspect, cause) as JSON
/// lines.
#[derive(Debug, clap::Args)]
#[command(after_help = gen::scenario_help())]
pub(crate) struct GenArgs {
    /// Which scenario (listed below).
    #[arg(long, value_name = "NAME")]
    pub scenario: Scenario,
    /// Where to write the pcap.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Random seed.
    #[arg(long, value_name = "N", default_value_t = GenOptions::default().seed)]
    pub seed: u64,
    /// Background flows in `mixed`, flows reset in `storm` (at least 1200); other
    /// scenarios have a fixed shape.
    #[arg(long, value_name = "N", default_value_t = GenOptions::default().flows)]
    pub flows: usize,
    /// Timestamp of the start of the capture [default: 2026-01-01T00:00:00Z].
    #[arg(long, value_name = "RFC3339")]
    pub start_time: Option<String>,
    /// Also write the labels, one JSON object per RST, to this file.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Wrap every frame as a remote mirror or carrier link delivers it: erspan1,
    /// erspan2, erspan3, gre, vxlan (VNI 4242, UDP 4789), geneve (VNI 4242, UDP 6081),
    /// mpls or pppoe. ERSPAN session 42.
    #[arg(long, value_name = "ENCAP")]
    pub encap: Option<rstwatch_schema::Encap>,
}

pub(crate) fn main(a: GenArgs) -> anyhow::Result<i32> {
    let start_us = match &a.start_time {
        None => gen::DEFAULT_START_US,
        Some(s) => rstwatch_schema::timefmt::parse_rfc3339_micros(s)
            .filter(|us| *us >= 0)
            .with_context(|| {
                format!("--start-time {s:?}: not an RFC 3339 time at or after 1970 (e.g. 2026-01-01T00:00:00Z)")
            })?,
    };
    let opts = GenOptions {
        seed: a.seed,
        flows: a.flows,
        start_us,
    };
    let mut g = gen::generate(a.scenario, &opts);
    gen::encap::wrap_frames(&mut g.frames, a.encap.unwrap_or_default());
    gen::write_pcap(&a.out, &g.frames)?;
    if let Some(path) = &a.labels {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        for l in &g.labels {
            serde_json::to_writer(&mut w, &l.to_json())?;
            w.write_all(b"\n")?;
        }
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let anomalies: Vec<&str> = g.anomalies.iter().map(|k| k.as_str()).collect();
    eprintln!(
        "rstwatch-sensor gen: {} (seed {}): {} frames, {} RSTs, {} flows{} -> {}",
        a.scenario,
        a.seed,
        g.frames.len(),
        g.labels.len(),
        g.flows,
        if anomalies.is_empty() {
            String::new()
        } else {
            format!(", expected anomalies: {}", anomalies.join(" "))
        },
        a.out.display()
    );
    Ok(0)
}
