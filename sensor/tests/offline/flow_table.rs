//! The flow table stays bounded under a SYN flood, counts what it evicts, and evicts
//! half-open flows before established ones.

use rstwatch_schema::{CloseReason, ConnState, Record};
use rstwatch_sensor::gen::packet::{build, Wire, ACK, FIN, PSH, RST, SYN};
use rstwatch_sensor::parse::LinkType;
use rstwatch_sensor::{Engine, EngineConfig};
use std::net::{IpAddr, Ipv4Addr};

/// An Ethernet/IPv4/TCP frame with valid checksums (the scenario generator's builder).
#[allow(clippy::too_many_arguments)]
fn frame(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: usize,
) -> Vec<u8> {
    let data = vec![0x61u8; payload];
    let (src, dst) = (
        IpAddr::V4(Ipv4Addr::from(src)),
        IpAddr::V4(Ipv4Addr::from(dst)),
    );
    build(&Wire {
        ip_id: 1,
        payload: &data,
        ..Wire::tcp(src, sport, dst, dport, flags, seq, ack)
    })
}

const SYNACK: u8 = SYN | ACK;
const FIN_ACK: u8 = FIN | ACK;
const PSH_ACK: u8 = PSH | ACK;
const SERVER: [u8; 4] = [203, 0, 113, 10];

fn cfg(capacity: usize) -> EngineConfig {
    EngineConfig {
        flow_capacity: capacity,
        verify_checksum: false,
        ..EngineConfig::default()
    }
}

/// Deterministic pseudo-random four-tuples (xorshift).
fn flood_source(i: u64) -> ([u8; 4], u16) {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (
        [198, 51, 100, (x >> 8) as u8],
        1024 + (x >> 16) as u16 % 60000,
    )
}

#[test]
fn syn_flood_stays_within_capacity_and_counts_evictions() {
    let mut e = Engine::new(&cfg(1000));
    let mut out: Vec<Record> = vec![];
    let t0 = 1_700_000_000_000_000i64;
    let n = 50_000u64;
    for i in 0..n {
        let (src, sport) = flood_source(i);
        let f = frame(src, sport, SERVER, 80, SYN, i as u32, 0, 0);
        e.process(t0 + i as i64 * 100, LinkType::Ethernet, &f, &mut out);
        assert!(e.flows_live() <= 1000);
    }
    e.finish(&mut out);
    let c = e.raw_counters();
    let flows = out.iter().filter(|r| matches!(r, Record::Flow(_))).count() as u64;
    let distinct = c.flows_evicted + c.flows_end_of_capture + c.flows_timed_out;
    assert_eq!(
        flows, distinct,
        "one record per flow, each with its reason counted"
    );
    assert!(c.flows_evicted > 40_000, "evicted {}", c.flows_evicted);
    assert!(
        e.table_reserved_bytes() < 1000 * 140,
        "reserved {} bytes",
        e.table_reserved_bytes()
    );
}

#[test]
fn established_flows_survive_a_syn_flood() {
    let mut e = Engine::new(&cfg(2000));
    let mut out: Vec<Record> = vec![];
    let mut t = 1_700_000_000_000_000i64;
    let client = |k: u16| ([192, 0, 2, (k % 250) as u8 + 1], 40_000 + k);
    let mut step = |e: &mut Engine, out: &mut Vec<Record>, f: Vec<u8>| {
        t += 10;
        e.process(t, LinkType::Ethernet, &f, out);
    };
    for k in 0..100u16 {
        let (c, p) = client(k);
        step(&mut e, &mut out, frame(c, p, SERVER, 443, SYN, 1000, 0, 0));
        step(
            &mut e,
            &mut out,
            frame(SERVER, 443, c, p, SYNACK, 5000, 1001, 0),
        );
        step(
            &mut e,
            &mut out,
            frame(c, p, SERVER, 443, ACK, 1001, 5001, 0),
        );
        step(
            &mut e,
            &mut out,
            frame(c, p, SERVER, 443, PSH_ACK, 1001, 5001, 100),
        );
    }
    for i in 0..20_000u64 {
        let (src, sport) = flood_source(i);
        step(
            &mut e,
            &mut out,
            frame(src, sport, SERVER, 80, SYN, i as u32, 0, 0),
        );
    }
    for k in 0..100u16 {
        let (c, p) = client(k);
        step(
            &mut e,
            &mut out,
            frame(c, p, SERVER, 443, FIN_ACK, 1101, 5001, 0),
        );
        step(
            &mut e,
            &mut out,
            frame(SERVER, 443, c, p, FIN_ACK, 5001, 1102, 0),
        );
        step(
            &mut e,
            &mut out,
            frame(c, p, SERVER, 443, ACK, 1102, 5002, 0),
        );
    }
    e.finish(&mut out);
    let established: Vec<_> = out
        .iter()
        .filter_map(|r| match r {
            Record::Flow(f) if f.resp_p == 443 => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(
        established.len(),
        100,
        "each established flow has exactly one record"
    );
    for f in established {
        assert_eq!(f.close, CloseReason::Fin, "{f:?}");
        assert_eq!(f.conn_state, ConnState::Sf, "{f:?}");
        assert_eq!(f.history, "ShADFf", "{f:?}");
    }
    assert!(e.raw_counters().flows_evicted > 15_000);
}

/// `replay`'s engine (`Engine::for_files`), whose flow index starts small and doubles
/// as flows arrive, gives the records and counters of a live engine's full-size index,
/// in the same order: 70,000 connections in a table of 60,000 (the index doubles, and
/// flows are evicted and closed around the doubling), a tenth reset by the server, the
/// rest half closed by FIN and half left open.
#[test]
fn a_growing_index_gives_the_records_of_a_full_one() {
    let n = 70_000u32;
    let client = |i: u32| ([198, 51, 100, (i % 200) as u8], 1024 + (i / 200) as u16);
    let mut frames: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut t = 1_700_000_000_000_000i64;
    let mut push = |f: Vec<u8>| {
        t += 7;
        frames.push((t, f));
    };
    for i in 0..n {
        let (c, p) = client(i);
        push(frame(c, p, SERVER, 80, SYN, 1000, 0, 0));
        if i >= 200 {
            // The server answers the connection opened 200 before: the flows overlap.
            let (c, p) = client(i - 200);
            push(frame(SERVER, 80, c, p, SYNACK, 5000, 1001, 0));
            push(frame(c, p, SERVER, 80, PSH_ACK, 1001, 5001, 100));
        }
    }
    for i in 0..n {
        let (c, p) = client(i);
        match i % 10 {
            0 => push(frame(SERVER, 80, c, p, RST | ACK, 5001, 1101, 0)),
            1..=5 => {
                push(frame(c, p, SERVER, 80, FIN_ACK, 1101, 5001, 0));
                push(frame(SERVER, 80, c, p, FIN_ACK, 5001, 1102, 0));
            }
            _ => push(frame(SERVER, 80, c, p, PSH_ACK, 5001, 1101, 300)),
        }
    }
    let run = |mut e: Engine| {
        let mut out: Vec<Record> = vec![];
        let batch: Vec<(i64, &[u8])> = frames.iter().map(|(t, f)| (*t, &f[..])).collect();
        for chunk in batch.chunks(64) {
            e.process_batch(LinkType::Ethernet, chunk, &mut out);
        }
        let buckets = e.flow_index_buckets();
        e.finish(&mut out);
        (out, e.counters(), buckets)
    };
    let cfg = cfg(60_000);
    let (want, want_counters, full) = run(Engine::new(&cfg));
    let (got, got_counters, grown) = run(Engine::for_files(&cfg));
    assert!(want.len() > 70_000, "{} records", want.len());
    let evicted = want_counters.iter().find(|(k, _)| *k == "flows_evicted");
    assert!(
        evicted.is_some_and(|&(_, v)| v > 5_000),
        "the table filled: {evicted:?}"
    );
    assert!(Engine::for_files(&cfg).flow_index_buckets() < full);
    assert_eq!(grown, full, "the growing index grew to the full size");
    assert_eq!(got_counters, want_counters);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "record {i}");
    }
}
