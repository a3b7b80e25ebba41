//! Engine benchmark: parse → track → classify on one core.
//!
//! ```text
//! cargo run --release -p rstwatch-benches --bin engine_bench [-- --flows N --packets N --flood N
//!     --capacity N --mixed-every N --packet-rate PPS --no-batch]
//! ```
//!
//! (`--help` says what each flag does and its default.)
//!
//! Prints, in one run on one core:
//! 1. peak memory while a SYN flood of `--flood` random four-tuples (default 10,000,000)
//!    goes through an engine with the default capacity (run first, so the process's
//!    high-water mark is the engine's);
//! 2. bytes per flow of the flow table at capacity, reserved and actually resident;
//! 3. steady-state throughput with `--flows` concurrent flows (default 1,000,000) in the
//!    table: data packets on those flows interleaved with the `mixed` scenario capture
//!    (all held in memory), against a parse-only pass over the same frames in the same
//!    run (the ratio is the figure to compare across machines; these VMs are noisy);
//! 4. the core's clock right after (x86-64), and the two passes in cycles per packet;
//! 5. the flow index of `replay`, which starts small and doubles (`Engine::for_files`):
//!    filling a table with `--flows` flows, its longest single insert (the pause of the
//!    last doubling) and the whole fill against a table whose index is at full size,
//!    each twice, alternating (the first table also pays for fresh memory).

use rstwatch_sensor::gen::packet::{build, Wire, ACK, PSH, SYN};
use rstwatch_sensor::gen::{self, GenOptions, Scenario};
use rstwatch_sensor::parse::{self, LinkType, ParseOptions};
use rstwatch_sensor::sink::CountingSink;
use rstwatch_sensor::{Engine, EngineConfig};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

const T0: i64 = 1_767_225_600_000_000;
const SERVER_PORT: u16 = 443;

/// Frames in one buffer: (timestamp, offset, length) plus the bytes. A `Vec` per frame
/// would add 24 bytes of header and an allocation to each of tens of millions.
#[derive(Default)]
struct Frames {
    bytes: Vec<u8>,
    index: Vec<(i64, u32, u16)>,
}

impl Frames {
    fn push(&mut self, ts_us: i64, f: &[u8]) {
        self.index
            .push((ts_us, self.bytes.len() as u32, f.len() as u16));
        self.bytes.extend_from_slice(f);
    }
    fn iter(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.index
            .iter()
            .map(|&(t, o, l)| (t, &self.bytes[o as usize..o as usize + l as usize]))
    }
    fn len(&self) -> usize {
        self.index.len()
    }
}

/// Flow `k`'s client: 192.0.2.0/24 × ports 1024..65535 (16 M tuples), server
/// 203.0.113.(k % 200 + 1):443.
fn tuple(k: u64) -> (Ipv4Addr, u16, Ipv4Addr) {
    let port = 1024 + (k % 64_000) as u16;
    let host = (k / 64_000) as u8;
    (
        Ipv4Addr::new(192, 0, 2, host),
        port,
        Ipv4Addr::new(203, 0, 113, (k % 200) as u8 + 1),
    )
}

#[allow(clippy::too_many_arguments)]
fn frame(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst) = (IpAddr::V4(src), IpAddr::V4(dst));
    build(&Wire {
        ip_id: (seq as u16).wrapping_mul(7),
        window: 502,
        payload,
        ..Wire::tcp(src, sport, dst, dport, flags, seq, ack)
    })
}

fn rss_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Engine benchmark: parse, track and classify on one core (pin it with `taskset`).
#[derive(clap::Parser)]
#[command(
    after_help = "The README's figure for the 1 M-flow target: taskset -c 1 \
target/release/engine_bench --flows 1000000 --packets 10000000 --flood 1000 \
--capacity 1258192 --packet-rate 15000000"
)]
struct Args {
    /// Concurrent flows in the table during the steady phase.
    #[arg(long, default_value_t = 1_000_000, value_parser = count)]
    flows: u64,
    /// Steady-phase packets, all built in memory first (~172 bytes each).
    #[arg(long, default_value_t = 20_000_000, value_parser = count)]
    packets: u64,
    /// SYNs of random four-tuples through an engine of the default capacity (the
    /// peak-memory figure; 0 skips it).
    #[arg(long, default_value_t = 10_000_000, value_parser = count)]
    flood: u64,
    /// Flow table capacity of the steady phase [default: flows + a quarter, never
    /// less than the engine's default].
    #[arg(long, value_parser = count)]
    capacity: Option<u64>,
    /// One steady packet in this many comes from the `mixed` scenario (handshakes,
    /// closes, RSTs); 0 for none.
    #[arg(long, default_value_t = 4, value_parser = count)]
    mixed_every: u64,
    /// Packets per second of capture time in the steady phase [default: the packets
    /// spread over ten seconds, at least 1 µs apart].
    #[arg(long, default_value_t = 0, hide_default_value = true, value_parser = count)]
    packet_rate: u64,
    /// Feed the steady phase a frame at a time (`Engine::process`) instead of in
    /// batches of 64 (`Engine::process_batch`).
    #[arg(long)]
    no_batch: bool,
}

/// A count, with `_` allowed between digits (`1_000_000`).
fn count(s: &str) -> Result<u64, String> {
    s.replace('_', "")
        .parse()
        .map_err(|e| format!("{s:?} is not a count: {e}"))
}

fn main() {
    let a = <Args as clap::Parser>::parse();
    let (flows, packets, flood) = (a.flows, a.packets, a.flood);
    let mixed_every = a.mixed_every;
    // Packet time sets how often the expiry sweep passes over the whole table (once
    // per second of it): at 1 µs apart that is once per million packets, where a link
    // at 15 Mpps sweeps once per 15 million.
    let packet_rate = a.packet_rate;
    // Room for the mixed scenario's own flows beside the concurrent ones, and never
    // less than the default: a full table would turn every new flow into an eviction.
    let capacity = a
        .capacity
        .unwrap_or((flows + flows / 4).max(EngineConfig::default().flow_capacity as u64));
    println!(
        "engine_bench: {} flows, {} steady packets, {} flood SYNs",
        flows, packets, flood
    );

    // 1. SYN flood with the default capacity, first: the process's peak RSS is then the
    //    engine's (plus a small constant).
    let rss_before = rss_kib("VmRSS:");
    let cfg = EngineConfig::default();
    let mut e = Engine::new(&cfg);
    let mut sink = CountingSink::default();
    let server = Ipv4Addr::new(203, 0, 113, 80);
    let t = Instant::now();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..flood {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let src = Ipv4Addr::new(198, 51, 100, x as u8);
        let f = frame(
            src,
            (x >> 8) as u16 | 1024,
            server,
            80 + (x >> 24) as u16 % 8,
            SYN,
            (x >> 32) as u32,
            0,
            &[],
        );
        e.process(T0 + i as i64, LinkType::Ethernet, &f, &mut sink);
    }
    let flood_s = t.elapsed().as_secs_f64();
    let c = e.raw_counters();
    println!(
        "syn flood: {} SYNs in {:.1} s ({:.2} Mpps incl. frame building); live flows {}, evicted {}; \
         peak RSS {} MiB (VmHWM), engine RSS {} MiB",
        flood,
        flood_s,
        flood as f64 / flood_s / 1e6,
        e.flows_live(),
        c.flows_evicted,
        rss_kib("VmHWM:") / 1024,
        rss_kib("VmRSS:").saturating_sub(rss_before) / 1024
    );
    drop(e);

    // 2 + 3. Steady state with `flows` concurrent flows.
    let mut prefill = Frames::default();
    for k in 0..flows {
        let (c, p, s) = tuple(k);
        let ts = T0 + k as i64;
        prefill.push(ts, &frame(c, p, s, SERVER_PORT, SYN, 1000, 0, &[]));
        prefill.push(ts, &frame(s, SERVER_PORT, c, p, SYN | ACK, 5000, 1001, &[]));
        prefill.push(ts, &frame(c, p, s, SERVER_PORT, ACK, 1001, 5001, &[]));
    }
    let t_start = T0 + flows as i64 + 1_000_000;
    let mixed = gen::generate(
        Scenario::Mixed,
        &GenOptions {
            flows: 20_000,
            start_us: t_start,
            ..GenOptions::default()
        },
    );
    let mut steady = Frames::default();
    let mut next = vec![(1001u32, 5001u32); flows as usize];
    let payload = [0x61u8; 18];
    let mut mixed_frames = mixed.frames.iter().cycle();
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let step_us = 10_000_000 / packets.max(1) as i64 + 1;
    for i in 0..packets {
        let ts = if packet_rate > 0 {
            t_start + (i as i64).saturating_mul(1_000_000) / packet_rate as i64
        } else {
            t_start + i as i64 * step_us
        };
        if mixed_every > 0 && i % mixed_every == mixed_every - 1 {
            // One packet in four from the mixed scenario (handshakes, closes, RSTs).
            let f = mixed_frames.next().expect("cycle");
            steady.push(ts, &f.data);
            continue;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let k = rng % flows.max(1);
        let (c, p, s) = tuple(k);
        let n = &mut next[k as usize];
        if rng & (1 << 40) == 0 {
            steady.push(
                ts,
                &frame(c, p, s, SERVER_PORT, PSH | ACK, n.0, n.1, &payload),
            );
            n.0 = n.0.wrapping_add(payload.len() as u32);
        } else {
            steady.push(
                ts,
                &frame(s, SERVER_PORT, c, p, PSH | ACK, n.1, n.0, &payload),
            );
            n.1 = n.1.wrapping_add(payload.len() as u32);
        }
    }
    drop(next);
    let avg_len = steady.bytes.len() as f64 / steady.len() as f64;
    println!(
        "steady capture: {} frames in memory, {:.0} bytes average",
        steady.len(),
        avg_len
    );

    // Baseline: parse only, same frames, same run, into one packet in place as the
    // engine's batch path does (until 2026-12-03 this returned each `Packet` by value,
    // ~110 instructions of moves a frame that the engine does not pay).
    let opts = ParseOptions {
        verify_checksum: true,
        ..ParseOptions::default()
    };
    let t = Instant::now();
    let mut ok = 0u64;
    let mut packet = parse::Packet::EMPTY;
    for (_, f) in steady.iter() {
        ok += parse::parse_into(LinkType::Ethernet, black_box(f), opts, &mut packet).is_ok() as u64;
        // The packet escapes, or the compiler drops the field extraction.
        black_box(&mut packet);
    }
    let parse_s = t.elapsed().as_secs_f64();
    black_box(ok);

    let mut e = Engine::new(&EngineConfig {
        flow_capacity: capacity as usize,
        ..EngineConfig::default()
    });
    let mut sink = CountingSink::default();
    let t = Instant::now();
    for (ts, f) in prefill.iter() {
        e.process(ts, LinkType::Ethernet, f, &mut sink);
    }
    let fill_s = t.elapsed().as_secs_f64();
    let live = e.flows_live();
    drop(prefill);
    // Batches of 64, like an AF_XDP receive ring hands them over.
    let batches: Vec<Vec<(i64, &[u8])>> = {
        let all: Vec<(i64, &[u8])> = steady.iter().collect();
        all.chunks(64).map(|c| c.to_vec()).collect()
    };
    let single = a.no_batch;
    let t = Instant::now();
    if single {
        for (ts, f) in steady.iter() {
            e.process(ts, LinkType::Ethernet, f, &mut sink);
        }
    } else {
        for b in &batches {
            e.process_batch(LinkType::Ethernet, b, &mut sink);
        }
    }
    let engine_s = t.elapsed().as_secs_f64();
    let n = steady.len() as f64;
    println!(
        "flow table: capacity {capacity}, {live} live after fill ({:.2} M flows/s set-up); \
         reserved {:.1} B/flow at capacity (Flow record {} B)",
        flows as f64 / fill_s / 1e6,
        e.table_reserved_bytes() as f64 / capacity as f64,
        std::mem::size_of::<rstwatch_sensor::flow::Flow>()
    );
    println!(
        "parse only:  {:.2} Mpps, {:.1} ns/packet",
        n / parse_s / 1e6,
        parse_s * 1e9 / n
    );
    println!(
        "engine:      {:.2} Mpps, {:.1} ns/packet ({} RST events, {} flow records, {} anomalies); \
         engine/parse-only time ratio {:.2}",
        n / engine_s / 1e6,
        engine_s * 1e9 / n,
        sink.rst,
        sink.flows,
        sink.anomalies,
        engine_s / parse_s
    );
    // These VMs move between hosts whose clocks differ by half or more (and `perf`
    // has no cycle counter in them): cycles are what compares across hosts.
    if let Some(ghz) = core_clock_ghz() {
        println!(
            "core clock:  ~{ghz:.2} GHz (dependent 64-bit multiplies, 3 cycles each); \
             engine ~{:.0} cycles/packet, parse only ~{:.0}",
            engine_s * 1e9 / n * ghz,
            parse_s * 1e9 / n * ghz
        );
    }
    index_growth(flows, capacity as usize);
}

/// The core's clock as it runs now, from the time of a chain of dependent 64-bit
/// multiplies (3 cycles each on every x86-64 core of the last fifteen years, Intel and
/// AMD alike; each one waits for the one before, so nothing overlaps them). `None`
/// elsewhere, where the latency is not known.
fn core_clock_ghz() -> Option<f64> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    const ROUNDS: u64 = 20_000_000;
    const PER_ROUND: u64 = 10;
    let mut x = black_box(3u64);
    let t = Instant::now();
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            x = x.wrapping_mul(x);
        }
    }
    let s = t.elapsed().as_secs_f64();
    black_box(x);
    Some((ROUNDS * PER_ROUND * 3) as f64 / s / 1e9)
}

/// Fills a full-size and a growing flow table with `flows` flows (keys of [`tuple`]),
/// straight through `FlowTable::insert`, twice each, alternating, and prints each
/// fill's rate and longest insert: for the growing one, the pause of its last doubling.
fn index_growth(flows: u64, capacity: usize) {
    use rstwatch_schema::IpBytes;
    use rstwatch_sensor::flow::{hash_key, End, Flow, FlowKey, FlowTable, Timeouts};
    let timeouts = Timeouts::from_config(&EngineConfig::default());
    let flows = flows.min(capacity as u64);
    for growing in [false, true, false, true] {
        let mut table = if growing {
            FlowTable::growing(capacity, timeouts)
        } else {
            FlowTable::new(capacity, timeouts)
        };
        let mut longest = std::time::Duration::ZERO;
        let t = Instant::now();
        for k in 0..flows {
            let (client, port, server) = tuple(k);
            let mut key = FlowKey::default();
            key.lo = IpBytes::from_v4(client.octets());
            key.hi = IpBytes::from_v4(server.octets());
            key.lo_port = port;
            key.hi_port = SERVER_PORT;
            let hash = hash_key(&key);
            let one = Instant::now();
            table.insert(hash, Flow::new(key, End::Lo, T0));
            longest = longest.max(one.elapsed());
        }
        println!(
            "index {}: {flows} flows inserted at {:.2} M/s, longest insert {:.2} ms, {} buckets",
            if growing { "growing  " } else { "full size" },
            flows as f64 / t.elapsed().as_secs_f64() / 1e6,
            longest.as_secs_f64() * 1e3,
            table.index_buckets()
        );
    }
}
