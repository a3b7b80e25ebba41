//! How much it costs to move cache lines between two cores of this machine: what
//! `replay --workers` pays for every batch the reader hands an engine.
//!
//! ```text
//! target/release/core_to_core [--cores 0,1] [--samples 5] [--trips 200000] [--kib 128]
//! ```
//!
//! Two measures, each `--samples` times, every thread pinned:
//! - *round trip*: two threads bounce one line (a counter each bumps in turn), ns for
//!   the line to go there and back;
//! - *hand-over*: one thread writes a buffer of `--kib`, the other reads it all, then
//!   hands it back (the reader's batches and the engines' reads of them), ns a line
//!   for the write and the read together; and the same buffer written and read by one
//!   thread alone, the cost without a second core.
//!
//! Why: on a VM the two vCPUs sit wherever the host puts them, sharing a core's caches,
//! a last-level cache, or neither, and `--workers 2` moves ~1.7 lines a frame from the
//! reader's core to an engine's. benches/RESULTS.md has runs next to `--workers 2`'s.

use clap::Parser;
use rstwatch_sensor::sys::pin_thread;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

const LINE: usize = 64;

#[derive(Parser)]
#[command(about = "Cost of moving cache lines between two cores (round trip, buffer hand-over)")]
struct Args {
    /// The two cores, comma-separated.
    #[arg(long, value_delimiter = ',', num_args = 2, default_values_t = [0usize, 1])]
    cores: Vec<usize>,
    /// Times each measure is taken.
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// Round trips a sample.
    #[arg(long, default_value_t = 200_000)]
    trips: u64,
    /// Buffer handed over, KiB.
    #[arg(long, default_value_t = 128)]
    kib: usize,
}

/// A counter alone on its lines (no neighbour shares them).
#[repr(align(128))]
struct Padded(AtomicU64);

impl Padded {
    /// Spins until the counter reads `v`.
    fn wait_for(&self, v: u64) {
        while self.0.load(Ordering::Acquire) != v {
            std::hint::spin_loop();
        }
    }
}

/// Round `r`'s writes: every word of `buf`.
#[inline(always)]
fn write_all(buf: &[AtomicU64], r: u64) {
    for (i, w) in buf.iter().enumerate() {
        w.store(r ^ i as u64, Ordering::Relaxed);
    }
}

/// `sum` plus every word of `buf`.
#[inline(always)]
fn read_all(buf: &[AtomicU64], sum: u64) -> u64 {
    buf.iter()
        .fold(sum, |s, w| s.wrapping_add(w.load(Ordering::Relaxed)))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.trips > 0 && args.kib > 0,
        "--trips and --kib must be above 0"
    );
    let (a, b) = (args.cores[0], args.cores[1]);
    println!("core_to_core: cores {a} and {b}, {} samples", args.samples);
    for s in 1..=args.samples {
        let trip = round_trip_ns(a, b, args.trips)?;
        let (crossing, alone) = hand_over_ns_per_line(a, b, args.kib)?;
        println!(
            "sample {s}: round trip {trip:.1} ns; hand-over of {} KiB {crossing:.2} ns a line \
             (one core alone {alone:.2}, {:.2}x)",
            args.kib,
            crossing / alone
        );
    }
    Ok(())
}

/// ns for one line to go from core `a` to `b` and back.
fn round_trip_ns(a: usize, b: usize, trips: u64) -> anyhow::Result<f64> {
    let flag = Arc::new(Padded(AtomicU64::new(0)));
    let start = Arc::new(Barrier::new(2));
    let peer = {
        let (flag, start) = (flag.clone(), start.clone());
        std::thread::spawn(move || -> std::io::Result<()> {
            pin_thread(&[b])?;
            start.wait();
            for i in 0..trips {
                flag.wait_for(2 * i + 1);
                flag.0.store(2 * i + 2, Ordering::Release);
            }
            Ok(())
        })
    };
    pin_thread(&[a])?;
    start.wait();
    let t = Instant::now();
    for i in 0..trips {
        flag.0.store(2 * i + 1, Ordering::Release);
        flag.wait_for(2 * i + 2);
    }
    let ns = t.elapsed().as_nanos() as f64 / trips as f64;
    peer.join().expect("the peer thread panicked")?;
    Ok(ns)
}

/// ns a line for core `a` to write a buffer of `kib` and core `b` to read it, and for
/// core `a` to write and read it alone.
fn hand_over_ns_per_line(a: usize, b: usize, kib: usize) -> anyhow::Result<(f64, f64)> {
    const ROUNDS: u64 = 400;
    let words = kib * 1024 / 8;
    let lines = (kib * 1024 / LINE) as f64;
    // Relaxed atomics compile to plain loads and stores on x86-64; the flag orders them.
    let buf: Arc<Vec<AtomicU64>> = Arc::new((0..words).map(|_| AtomicU64::new(0)).collect());
    let flag = Arc::new(Padded(AtomicU64::new(0)));
    let start = Arc::new(Barrier::new(2));
    let peer = {
        let (buf, flag, start) = (buf.clone(), flag.clone(), start.clone());
        std::thread::spawn(move || -> std::io::Result<u64> {
            pin_thread(&[b])?;
            start.wait();
            let mut sum = 0u64;
            for r in 0..ROUNDS {
                flag.wait_for(2 * r + 1);
                sum = read_all(&buf, sum);
                flag.0.store(2 * r + 2, Ordering::Release);
            }
            Ok(sum)
        })
    };
    pin_thread(&[a])?;
    start.wait();
    let t = Instant::now();
    for r in 0..ROUNDS {
        write_all(&buf, r);
        flag.0.store(2 * r + 1, Ordering::Release);
        flag.wait_for(2 * r + 2);
    }
    let crossing = t.elapsed().as_nanos() as f64 / (ROUNDS as f64 * lines);
    let seen = peer.join().expect("the peer thread panicked")?;
    // The same writes and reads on this core alone.
    let t = Instant::now();
    let mut sum = 0u64;
    for r in 0..ROUNDS {
        write_all(&buf, r);
        sum = read_all(&buf, sum);
    }
    let alone = t.elapsed().as_nanos() as f64 / (ROUNDS as f64 * lines);
    // Both sums are of the same values: a check that every word was read.
    anyhow::ensure!(
        seen == sum,
        "the peer read other values ({seen} against {sum})"
    );
    Ok((crossing, alone))
}
