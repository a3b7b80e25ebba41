//! What this machine's memory allows the engine's flow lookups, with no engine around
//! them: the floor under `engine_bench` at a million flows.
//!
//! ```text
//! cargo run --release -p rstwatch-benches --bin memory_floor [-- --flows 1000000 --lookups 20000000]
//! ```
//!
//! The flow table's memory traffic, reproduced alone: a slab of 116-byte flows packed
//! at 4-byte alignment and an index of `u32` buckets (1.5 × the capacity, rounded up to
//! a power of two), both in transparent huge pages as the table asks for. Each lookup
//! picks a flow at random, as `engine_bench`'s steady traffic does, and goes through the
//! engine's batch stages with nothing else in them: 32 lookups at a time, the index line
//! prefetched for each, then each bucket read and the flow's lines prefetched, then each
//! flow's key read and two of its words written. Prints the time a lookup at 1 k, 10 k,
//! and `--flows` flows and, from the last two, what the misses of a large table cost on
//! this machine per packet, however few instructions an engine spent: the part of the
//! engine's 67 ns (15 Mpps) budget that memory takes before any work is done.
//!
//! `--flow-bytes` and `--line-aligned` try other layouts of the flows: what a smaller
//! flow, or one that starts on a cache line, would leave the engine. It prints the
//! large table's size too: how much of it the last-level cache can hold is much of what
//! its lookups cost (benches/RESULTS.md, "What the flow's size does to the floor").

use rstwatch_sensor::flow::{mix64, Flow};
use rstwatch_sensor::sys::{advise_huge_pages, prefetch};
use std::hint::black_box;
use std::mem::{align_of, size_of, size_of_val};
use std::time::Instant;

// The engine's flow is 116 bytes, `repr(C, packed(4))`: 4-byte aligned, so packed in
// the slab at a stride of 116 bytes, which is what the defaults reproduce.
const _: () = assert!(align_of::<Flow>() == 4);

/// Lookups whose misses a batch overlaps (`engine::BATCH`).
const BATCH: usize = 32;

/// One cache line of the slab: the slab starts on a line, as the engine's huge-page
/// slab does.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u32; 16]);

/// How the flows lie in the slab.
#[derive(Clone, Copy)]
struct Layout {
    /// A flow's bytes (a multiple of 4).
    bytes: usize,
    /// From one flow's start to the next, in 4-byte words.
    stride: usize,
}

impl Layout {
    fn new(bytes: usize, line_aligned: bool) -> Layout {
        let stride = if line_aligned {
            bytes.div_ceil(64) * 16
        } else {
            bytes / 4
        };
        Layout { bytes, stride }
    }
}

struct Table {
    slab: Vec<Line>,
    layout: Layout,
    index: Vec<u32>,
    mask: usize,
}

impl Table {
    fn new(flows: usize, layout: Layout) -> Table {
        // The full-size index's rule (`full_buckets` in the sensor's `flow/index.rs`).
        let buckets = (flows.max(1) * 3 / 2 + 1).next_power_of_two();
        let words = flows * layout.stride + 16;
        let slab = vec![Line([0; 16]); words.div_ceil(16)];
        let index = vec![0u32; buckets];
        advise_huge_pages(slab.as_ptr().cast(), size_of_val(&slab[..]));
        advise_huge_pages(index.as_ptr().cast(), size_of_val(&index[..]));
        let mut t = Table {
            slab,
            layout,
            index,
            mask: buckets - 1,
        };
        // Every flow in its own bucket by its key's hash (the key is its number here);
        // linear probing as the real index does.
        for i in 0..flows {
            t.flow_mut(i)[0] = i as u32;
            let mut b = hash(i as u64) as usize & (buckets - 1);
            while t.index[b] != 0 {
                b = (b + 1) & (buckets - 1);
            }
            t.index[b] = i as u32 + 1;
        }
        t
    }

    /// The words of flow `i`.
    #[inline(always)]
    fn flow_mut(&mut self, i: usize) -> &mut [u32] {
        let Layout { bytes, stride } = self.layout;
        &mut words_of(&mut self.slab)[i * stride..][..bytes / 4]
    }

    /// Requests every cache line of flow `i` as `sys::prefetch` does a `Flow`'s: its
    /// first byte, every 64th after it, and its last.
    #[inline(always)]
    fn prefetch_flow(&self, i: usize) {
        let bytes = self.layout.bytes;
        let start = self
            .slab
            .as_ptr()
            .cast::<u8>()
            .wrapping_add(i * self.layout.stride * 4);
        let mut at = 0;
        while at < bytes {
            prefetch(start.wrapping_add(at));
            at += 64;
        }
        prefetch(start.wrapping_add(bytes - 1));
    }

    /// One batch of lookups through the engine's three stages.
    #[inline(never)]
    fn batch(&mut self, keys: &[u64; BATCH], now: u32) -> u32 {
        let mut homes = [0usize; BATCH];
        for (h, &k) in homes.iter_mut().zip(keys) {
            *h = hash(k) as usize & self.mask;
            prefetch(&self.index[*h]);
        }
        let mut slots = [0usize; BATCH];
        for ((s, &h), &k) in slots.iter_mut().zip(&homes).zip(keys) {
            let mut b = h;
            // The probe ends at the flow's bucket (every key looked up is present).
            while self.index[b] != k as u32 + 1 {
                b = (b + 1) & self.mask;
            }
            *s = (self.index[b] - 1) as usize;
            self.prefetch_flow(*s);
        }
        let mut seen = 0;
        for (&s, &k) in slots.iter().zip(keys) {
            let f = self.flow_mut(s);
            // The key check, then the update: the last-seen time and a sequence number,
            // one at each end of the flow (the real update writes across it too).
            seen += u32::from(f[0] == k as u32);
            f[1] = now;
            let last = f.len() - 1;
            f[last] = f[last].wrapping_add(1);
        }
        seen
    }
}

/// A stand-in for the key hash: SplitMix64's finaliser.
fn hash(x: u64) -> u64 {
    mix64(x)
}

/// The slab's lines as its words.
fn words_of(lines: &mut [Line]) -> &mut [u32] {
    // SAFETY: `Line` is `repr(C)` around `[u32; 16]`, with no padding (64 bytes at an
    // alignment of 64), so its lines are `16 * len` contiguous, initialised `u32`s.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u32>(), lines.len() * 16) }
}

/// Nanoseconds a lookup over `lookups` random lookups into a table of `flows`.
fn run(flows: usize, lookups: usize, layout: Layout) -> f64 {
    let mut t = Table::new(flows, layout);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % flows as u64
    };
    // The keys are drawn before the clock starts, so the generator is not timed.
    let keys: Vec<[u64; BATCH]> = (0..lookups / BATCH)
        .map(|_| std::array::from_fn(|_| next()))
        .collect();
    // One pass untimed: the pages are in, the caches hold what they will.
    let warm = keys.len().min(flows / BATCH + 1);
    for k in &keys[..warm] {
        black_box(t.batch(k, 0));
    }
    let start = Instant::now();
    let mut seen = 0u64;
    for (i, k) in keys.iter().enumerate() {
        seen += u64::from(t.batch(k, i as u32));
    }
    let ns = start.elapsed().as_nanos() as f64 / (keys.len() * BATCH) as f64;
    assert_eq!(seen, (keys.len() * BATCH) as u64, "every key is found");
    ns
}

/// What this machine's memory allows the engine's flow lookups, with no engine around them.
#[derive(clap::Parser)]
struct Args {
    /// Flows in the large table.
    #[arg(long, default_value_t = 1_000_000)]
    flows: usize,
    /// Lookups timed at each size.
    #[arg(long, default_value_t = 20_000_000)]
    lookups: usize,
    /// Rounds; each runs every size once, and the medians are printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Bytes a flow (a multiple of 4, from 8 to 4096): the engine's `Flow` by default.
    #[arg(long, default_value_t = size_of::<Flow>(), value_parser = flow_bytes)]
    flow_bytes: usize,
    /// Start every flow on a 64-byte cache line (the slab's stride rounded up to whole
    /// lines) instead of packing the flows at 4-byte alignment as the engine does.
    #[arg(long)]
    line_aligned: bool,
}

fn flow_bytes(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if !(8..=4096).contains(&n) || !n.is_multiple_of(4) {
        return Err(format!("{n}: a multiple of 4 from 8 to 4096"));
    }
    Ok(n)
}

fn main() {
    let a = <Args as clap::Parser>::parse();
    let layout = Layout::new(a.flow_bytes, a.line_aligned);
    let mib = |bytes: usize| bytes as f64 / f64::from(1 << 20);
    println!(
        "flows of {} bytes, {}; at {} flows the slab takes {:.0} MiB and the index {:.0} MiB",
        a.flow_bytes,
        if a.line_aligned {
            format!(
                "each from the start of a cache line ({} bytes apart)",
                layout.stride * 4
            )
        } else {
            "packed at 4-byte alignment".to_string()
        },
        a.flows,
        mib(a.flows * layout.stride * 4),
        mib((a.flows * 3 / 2 + 1).next_power_of_two() * 4),
    );
    let sizes = [1_000, 10_000, a.flows];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    for r in 0..a.rounds {
        let row: Vec<f64> = sizes.iter().map(|&f| run(f, a.lookups, layout)).collect();
        println!(
            "round {}: {}",
            r + 1,
            sizes
                .iter()
                .zip(&row)
                .map(|(f, n)| format!("{f} flows {n:.1} ns"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (v, n) in ns.iter_mut().zip(row) {
            v.push(n);
        }
    }
    let med: Vec<f64> = ns
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    for (f, m) in sizes.iter().zip(&med) {
        println!("{f} flows: {m:.1} ns a lookup (median of {})", a.rounds);
    }
    println!(
        "the misses of {} flows over 10,000: {:.1} ns a lookup, {:.0} % of the 67 ns a packet that 15 Mpps allows",
        a.flows,
        med[2] - med[1],
        (med[2] - med[1]) / 66.7 * 100.0
    );
}
