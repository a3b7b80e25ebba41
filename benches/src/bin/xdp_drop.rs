//! Raw AF_XDP receive-and-drop baseline: the sensor's exact socket setup (same XDP
//! program, same UMEM and ring sizes, same batch receive and fill-ring return), and no
//! parsing: each frame is returned to the fill ring untouched. The sensor's throughput
//! is reported against this one's.
//!
//! With `--touch`, each frame's first 64 bytes (its Ethernet, IP and TCP headers) are
//! read before it is returned: what any receiver that looks at packets pays for their
//! first read, and on veth a read of lines another core wrote (the generator's core
//! copies each frame into the UMEM). The sensor's own work is what it costs above this.
//!
//! ```text
//! xdp_drop --iface veth0 [--queue 0] [--mode native|generic|auto] [--core 1] [--duration S] [--touch]
//! ```
//! Runs until SIGINT/SIGTERM (or `--duration`), then prints
//! `rx=N bytes=B secs=S dropped=D ring_full=R fill_empty=F invalid=I`.

#[path = "../xdp_common.rs"]
mod xdp_common;

use clap::Parser;
use rstwatch_xdp::{ModeRequest, XdpProgram, XskConfig, XskSocket};
use std::time::{Duration, Instant};

/// Raw AF_XDP receive-and-drop baseline: the sensor's socket setup, no parsing.
#[derive(Parser)]
struct Args {
    #[arg(long)]
    iface: String,
    #[arg(long, default_value_t = 0)]
    queue: u32,
    #[arg(long, default_value = "auto")]
    mode: String,
    #[arg(long)]
    core: Option<usize>,
    /// Wake-up coalescing, microseconds (as the sensor's `--coalesce-us`).
    #[arg(long, default_value_t = 50)]
    coalesce_us: u32,
    /// Seconds to run (default: until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
    /// Read each frame's first 64 bytes before returning it.
    #[arg(long)]
    touch: bool,
}

/// The first 64 bytes of a frame folded into one word (eight 8-byte loads): a read of
/// its header line that the compiler cannot drop.
fn fold_header(frame: &[u8]) -> u64 {
    frame
        .chunks_exact(8)
        .take(8)
        .fold(0, |acc, w| acc ^ u64::from_le_bytes(w.try_into().unwrap()))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let mode: ModeRequest = a.mode.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    xdp_common::install_stop_handler();
    let mut prog = XdpProgram::attach(&a.iface, mode, false)?;
    let cfg = XskConfig {
        coalesce_us: a.coalesce_us,
        ..XskConfig::default()
    };
    let mut sock = XskSocket::open(&a.iface, a.queue, &cfg)?;
    prog.register(a.queue, sock.fd())?;
    if let Some(c) = a.core {
        xdp_common::pin(c)?;
    }
    eprintln!(
        "xdp_drop: capturing on {} queue {} ({} mode)",
        a.iface,
        a.queue,
        prog.mode().as_str()
    );
    let start = Instant::now();
    let limit = a.duration.map(Duration::from_secs_f64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while !xdp_common::stopped() && limit.is_none_or(|l| start.elapsed() < l) {
        if sock.wait(10)
            && sock.recv(|f| {
                if a.touch {
                    std::hint::black_box(fold_header(f.data));
                } else {
                    std::hint::black_box(f.data.len());
                }
            }) > 0
        {
            last = Instant::now();
            first.get_or_insert(last);
        }
    }
    prog.detach()?;
    while sock.recv(|_| {}) > 0 {}
    let st = sock.stats();
    let secs = first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0);
    println!(
        "rx={} bytes={} secs={secs:.3} dropped={} ring_full={} fill_empty={} invalid={}",
        st.rx_frames,
        st.rx_bytes,
        st.rx_dropped,
        st.rx_ring_full,
        st.rx_fill_ring_empty_descs,
        st.rx_invalid_descs
    );
    Ok(())
}
