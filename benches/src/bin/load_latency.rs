//! How far away memory is on this machine, by buffer size: the latency of one load when
//! every load depends on the one before (a pointer chase in random order, one 64-byte
//! line a node), so nothing overlaps and the hardware prefetchers cannot guess.
//!
//! ```text
//! taskset -c 1 target/release/load_latency [--pages huge|small] [--loads 20000000]
//! ```
//!
//! Prints ns a load for buffers from 1 MiB to 2 GiB. Where the line steps up is where
//! a cache level ends (on a VM, the share of the last-level cache the guest gets); how
//! it climbs past the last-level cache, in 2 MiB pages, is what address translation
//! costs: flat on bare metal as long as the TLB reaches (Zen 4: 3,072 entries, 6 GiB in
//! 2 MiB pages), rising where the pages the hardware sees are smaller than the guest's.
//! `engine_bench`'s flow table does the same random lookups at 1 k to 16 M flows
//! (benches/RESULTS.md, "How cost grows with the flows").

use clap::{Parser, ValueEnum};
use std::time::Instant;

/// Buffer sizes tried, MiB.
const SIZES_MIB: [usize; 9] = [1, 4, 8, 16, 24, 64, 256, 1024, 2048];
const LINE: usize = 64;
const HUGE_PAGE: usize = 2 << 20;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pages {
    /// 2 MiB transparent huge pages (`MADV_HUGEPAGE`), as the flow table asks for.
    Huge,
    /// 4 KiB pages (`MADV_NOHUGEPAGE`).
    Small,
}

#[derive(Parser)]
#[command(about = "Latency of dependent random loads by buffer size (cache levels, TLB reach)")]
struct Args {
    /// Page size the buffers ask for.
    #[arg(long, value_enum, default_value = "huge")]
    pages: Pages,
    /// Timed loads at each size.
    #[arg(long, default_value_t = 20_000_000)]
    loads: usize,
}

/// An anonymous mapping, unmapped on drop.
struct Mapping {
    base: *mut u8,
    len: usize,
}

impl Mapping {
    /// `bytes` starting on a 2 MiB boundary, advised as `pages` asks.
    fn new(bytes: usize, pages: Pages) -> anyhow::Result<(Mapping, *mut u8)> {
        let len = bytes + HUGE_PAGE;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        anyhow::ensure!(
            base != libc::MAP_FAILED,
            "mmap of {len} bytes: {}",
            std::io::Error::last_os_error()
        );
        let m = Mapping {
            base: base.cast(),
            len,
        };
        let start = m.base.wrapping_add(m.base.align_offset(HUGE_PAGE));
        let advice = match pages {
            Pages::Huge => libc::MADV_HUGEPAGE,
            Pages::Small => libc::MADV_NOHUGEPAGE,
        };
        // SAFETY: the range lies inside the mapping; advice changes no contents.
        unsafe { libc::madvise(start.cast(), bytes, advice) };
        Ok((m, start))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping this struct made, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// A permutation of `0..n` by Fisher–Yates with xorshift64 (deterministic).
fn shuffled(n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut x: u64 = 0x0139_408d_cbbf_7a44;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// Mean ns a load of `loads` dependent loads over `mib` MiB.
fn chase(mib: usize, pages: Pages, loads: usize) -> anyhow::Result<f64> {
    let bytes = mib << 20;
    let nodes = bytes / LINE;
    let (_mapping, start) = Mapping::new(bytes, pages)?;
    let order = shuffled(nodes);
    // Each node's first word holds the address of the next node in `order`: one cycle
    // through every line of the buffer.
    for (i, &from) in order.iter().enumerate() {
        let to = order[(i + 1) % nodes];
        let at = start.wrapping_add(from as usize * LINE).cast::<*const u8>();
        // SAFETY: `at` is inside the mapping (from < nodes), line-aligned, written once.
        unsafe { at.write(start.wrapping_add(to as usize * LINE)) };
    }
    drop(order);
    let mut p = start.cast_const();
    // One pass (or two million loads) untimed: the translations and caches settle.
    for _ in 0..nodes.min(2_000_000) {
        // SAFETY: every node holds the address of another node of the mapping.
        p = unsafe { p.cast::<*const u8>().read() };
    }
    let t = Instant::now();
    for _ in 0..loads {
        // SAFETY: as above.
        p = unsafe { p.cast::<*const u8>().read() };
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / loads as f64;
    std::hint::black_box(p);
    Ok(ns)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.loads > 0, "--loads must be at least 1");
    let kind = match a.pages {
        Pages::Huge => "2 MiB pages",
        Pages::Small => "4 KiB pages",
    };
    println!("dependent random loads, one 64-byte line a node, {kind}:");
    for mib in SIZES_MIB {
        println!(
            "{mib:>6} MiB: {:6.1} ns a load",
            chase(mib, a.pages, a.loads)?
        );
    }
    Ok(())
}
