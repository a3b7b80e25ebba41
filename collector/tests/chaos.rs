//! Fault injection end to end: a proxy between the real sensor shipper and the real
//! collector that drops, delays, duplicates, truncates and corrupts what the sensor
//! sends; collectors killed under load with `--ship A,B` failover. The end state must
//! be exactly once: every event acknowledged, one row per event, one ledger row per
//! batch.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rstwatch_collector::testing::ClickHouse;
use rstwatch_sensor::ship::ShipSink;
use rstwatch_sensor::Sink;

/// What the proxy did, counted.
#[derive(Default, Debug)]
struct Faults {
    connections: AtomicU64,
    corrupted: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
    truncated: AtomicU64,
    dropped: AtomicU64,
}

/// A damaging TCP proxy on loopback.
struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    faults: Arc<Faults>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// xorshift64*: a seeded, reproducible fault schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

fn spawn_proxy(upstream: String, seed: u64) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Faults::default());
    let (st, f) = (stop.clone(), faults.clone());
    std::thread::spawn(move || {
        for (n, client) in l.incoming().enumerate() {
            if st.load(Relaxed) {
                return;
            }
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            f.connections.fetch_add(1, Relaxed);
            let mut rng = Rng(seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            // Every connection dies after 0.5 to 4 s: a damaged length field must not
            // stall the test until the ack timeout.
            let life = Duration::from_millis(500 + rng.next() % 3500);
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let f2 = f.clone();
            std::thread::spawn(move || damage(client, server, rng, life, f2));
            std::thread::spawn(move || pass(s2, c2));
        }
    });
    Proxy { port, stop, faults }
}

/// Server → sensor: acks pass unchanged (until either side closes).
fn pass(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Sensor → server, with faults.
fn damage(mut from: TcpStream, mut to: TcpStream, mut rng: Rng, life: Duration, f: Arc<Faults>) {
    let born = Instant::now();
    let mut buf = [0u8; 4096];
    from.set_read_timeout(Some(Duration::from_millis(100))).ok();
    loop {
        if born.elapsed() > life {
            f.dropped.fetch_add(1, Relaxed);
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => break,
        };
        let chunk = &mut buf[..n];
        if rng.chance(30) {
            let at = (rng.next() % n as u64) as usize;
            chunk[at] ^= 1 << (rng.next() % 8);
            f.corrupted.fetch_add(1, Relaxed);
        }
        if rng.chance(30) {
            std::thread::sleep(Duration::from_millis(rng.next() % 200));
            f.delayed.fetch_add(1, Relaxed);
        }
        if rng.chance(10) {
            let keep = (rng.next() % n as u64) as usize;
            let _ = to.write_all(&chunk[..keep]);
            f.truncated.fetch_add(1, Relaxed);
            break;
        }
        if to.write_all(chunk).is_err() {
            break;
        }
        if rng.chance(20) {
            let _ = to.write_all(chunk);
            f.duplicated.fetch_add(1, Relaxed);
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Exactly once: `n` events as `n` rows with distinct ids, one ledger row per batch.
fn assert_exactly_once(ch: &ClickHouse, n: u64) {
    assert_eq!(rows(ch, "rst_events"), n);
    assert_eq!(count(ch, "SELECT uniqExact(flow_uid) FROM rst_events"), n);
    assert_eq!(
        rows(ch, "batches"),
        count(ch, "SELECT uniqExact(sensor_id, boot_id, seq) FROM batches")
    );
    assert_eq!(count(ch, "SELECT sum(rst) FROM batches"), n);
}

/// Pushes `ids` through `sink` at a bounded pace (so faults land mid-stream).
fn pump(sink: &mut ShipSink, ids: std::ops::Range<u64>, per_ms: u64) {
    for i in ids {
        sink.rst(rst(i));
        if i.is_multiple_of(per_ms) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn a_damaging_link_loses_and_duplicates_nothing() {
    let Some(ch) = start_clickhouse("a_damaging_link_loses_and_duplicates_nothing") else {
        return;
    };
    let dir = tmp("rstwatch-chaos");
    let col = collector(&ch, dir.path(), "collector", &[]);
    let proxy = spawn_proxy(col.addr(), 0x5eed_1234);
    let addr = format!("127.0.0.1:{}", proxy.port);
    let mut args = ship_args(&addr, &dir.path().join("spool"), "edge-chaos");
    args.batch_max_events = 500;
    args.ship_timeout_secs = 300;
    args.retry_max_secs = 1;
    // Uncompressed: more bytes on the link, so more chunks for the faults to hit.
    args.compression = rstwatch_schema::frame::Codec::None;
    let n = 10_000;
    let t0 = Instant::now();
    let mut sink = ShipSink::start(&args).unwrap();
    pump(&mut sink, 0..n, 10);
    let r = sink.finish().unwrap();
    let took = t0.elapsed();
    println!("chaos: {:?} in {took:?}; sensor report {r:?}", proxy.faults);
    let (line, complete) = r.summary();
    assert!(complete, "{line}");
    assert_eq!(r.events_acked, n);
    assert_exactly_once(&ch, n);
    let f = &proxy.faults;
    // The schedule is seeded, but chunking follows the kernel: assert only that faults
    // of each family happened.
    assert!(f.corrupted.load(Relaxed) > 0, "{f:?}");
    assert!(
        f.truncated.load(Relaxed) + f.dropped.load(Relaxed) > 0,
        "{f:?}"
    );
    assert!(
        f.duplicated.load(Relaxed) + f.delayed.load(Relaxed) > 0,
        "{f:?}"
    );
    // Retry rate: bounded by the backoff, not by how fast the collector refuses.
    let conns = f.connections.load(Relaxed);
    assert!(
        (conns as f64) < 10.0 * took.as_secs_f64() + 10.0,
        "{conns} connections in {took:?}"
    );
    println!("collector metrics:\n{}", col.metrics().unwrap());
}

#[test]
fn failover_to_the_next_collector_keeps_exactly_once() {
    let Some(ch) = start_clickhouse("failover_to_the_next_collector") else {
        return;
    };
    let dir = tmp("rstwatch-failover");
    let mut a = collector(&ch, dir.path(), "collector-a", &[]);
    let b = collector(&ch, dir.path(), "collector-b", &[]);
    let mut args = ship_args(
        &format!("{},{}", a.addr(), b.addr()),
        &dir.path().join("spool"),
        "edge-fo",
    );
    args.batch_max_events = 500;
    let n = 40_000;
    let sensor = std::thread::spawn(move || {
        let mut sink = ShipSink::start(&args).unwrap();
        pump(&mut sink, 0..n, 4);
        sink.finish()
    });
    // Let the first collector take part of the stream, then kill it.
    let t0 = Instant::now();
    while a.metric("rstwatch_collector_batches_stored_total") < 10 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "collector A got nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill9();
    let r = sensor.join().unwrap().unwrap();
    assert_eq!(r.events_acked, n);
    assert!(b.metric("rstwatch_collector_batches_stored_total") > 0);
    assert_exactly_once(&ch, n);
    // Both took part: two collectors wrote into the one ledger.
    assert!(count(&ch, "SELECT count() FROM batches") >= 2);
}
