//! Issue 9, break by break: each test reproduces one way the collector or the sensor
//! could be made to lose data or fall over, through the real collector binary, the real
//! sensor shipper and a real ClickHouse, and asserts the fixed behaviour.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rstwatch_collector::testing::{http_get, ClickHouse, Collector};
use rstwatch_schema::frame::{self, Codec, Kind};
use rstwatch_sensor::ship::ShipSink;
use rstwatch_sensor::Sink;

/// Break 1: a 36-byte hello declaring 256 MiB, from many connections, no token.
#[test]
fn unauthenticated_peers_cannot_size_the_collectors_memory() {
    let Some(ch) = start_clickhouse("unauthenticated_peers_cannot_size_memory") else {
        return;
    };
    let dir = tmp("rstwatch-bomb");
    let col = collector(
        &ch,
        dir.path(),
        "collector",
        &["--max-connections", "300", "--max-unauth-per-ip", "400"],
    );
    let pid = col.pid().unwrap();
    let before = rss(pid);
    let mut bomb = frame::encode(Kind::Hello, Codec::Zstd, 0, &[0u8; 16]);
    bomb[12..16].copy_from_slice(&(256u32 << 20).to_le_bytes());
    let mut held = Vec::new();
    let mut peak = 0;
    for _ in 0..250 {
        let mut s = TcpStream::connect(col.addr()).unwrap();
        let _ = s.write_all(&bomb);
        held.push(s);
        peak = peak.max(rss(pid));
    }
    std::thread::sleep(Duration::from_millis(500));
    peak = peak.max(rss(pid));
    // Each was refused at its header: the answers name the limit.
    let answer = String::from_utf8_lossy(&drain(&mut held[0], Duration::from_secs(5))).into_owned();
    assert!(answer.contains("too_long"), "{answer}");
    let growth = peak.saturating_sub(before);
    println!("collector RSS {before} -> peak {peak} bytes under 250 hello bombs");
    assert!(
        growth < 32 << 20,
        "collector RSS grew by {growth} bytes for 250 unauthenticated 36-byte frames"
    );
}

/// Break 1: connection bounds, globally and per unauthenticated address.
#[test]
fn connections_are_bounded_globally_and_per_address() {
    let Some(ch) = start_clickhouse("connections_are_bounded") else {
        return;
    };
    let dir = tmp("rstwatch-conns");
    let col = collector(
        &ch,
        dir.path(),
        "collector",
        &["--max-connections", "40", "--max-unauth-per-ip", "10"],
    );
    // Silent connections (no hello): ten are held, the rest closed at once.
    let mut silent: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(col.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut closed = 0;
    for s in silent.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        if matches!(std::io::Read::read(s, &mut b), Ok(0)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 20, "{}", col.metrics().unwrap());
    assert_eq!(
        col.metric("rstwatch_collector_rejected_total{reason=\"too_many_unauthenticated\"}"),
        20
    );
    // Once they are gone, sensors authenticate; authenticated connections no longer
    // count against their address, only against the global bound.
    drop(silent);
    std::thread::sleep(Duration::from_millis(300));
    let sensors: Vec<Raw> = (0..40)
        .map(|i| {
            let (r, kind, text) = Raw::hello(&col.addr(), &format!("edge-{i}"), TOKEN);
            assert_eq!(kind, Kind::Welcome, "{i}: {text}");
            r
        })
        .collect();
    let mut extra = TcpStream::connect(col.addr()).unwrap();
    let t0 = Instant::now();
    assert!(drain(&mut extra, Duration::from_secs(5)).is_empty());
    assert!(t0.elapsed() < Duration::from_secs(2), "not closed at once");
    assert_eq!(
        col.metric("rstwatch_collector_rejected_total{reason=\"too_many_connections\"}"),
        1
    );
    drop(sensors);
}

/// Break 1: 2,000 connections that never say hello (a slowloris) are held to the
/// global bound; the rest are closed at accept, and memory stays flat.
#[test]
fn a_flood_of_silent_connections_is_held_to_the_global_bound() {
    let Some(ch) = start_clickhouse("a_flood_of_silent_connections") else {
        return;
    };
    let dir = tmp("rstwatch-flood");
    // All from 127.0.0.1: lift the per-address bound to see the global one. The
    // handshake timeout is lifted too: on a loaded machine the flood takes longer than
    // the default 10 s to arrive, and the first held connections would time out (and
    // free their slots) before the last ones were counted.
    let col = collector(
        &ch,
        dir.path(),
        "collector",
        &[
            "--max-unauth-per-ip",
            "100000",
            "--handshake-timeout-secs",
            "600",
        ],
    );
    let pid = col.pid().unwrap();
    let before = rss(pid);
    // 2,000: more than that overflow the listen backlog and their SYN retries stretch
    // the flood past any timeout.
    let flood: Vec<TcpStream> = (0..2_000)
        .filter_map(|_| TcpStream::connect(col.addr()).ok())
        .collect();
    // Past the listen backlog, the kernel completes the rest as SYN-ACKs are retried:
    // wait until every connection was either held or closed.
    let t0 = Instant::now();
    let (mut held, mut refused) = (0, 0);
    while t0.elapsed() < Duration::from_secs(60) {
        held = col.metric("rstwatch_collector_connections_open");
        refused = col.metric("rstwatch_collector_rejected_total{reason=\"too_many_connections\"}");
        if held + refused >= flood.len() as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = rss(pid);
    println!(
        "flood: {} connections opened, {held} held, {refused} closed at accept; collector RSS \
         {before} -> {after} bytes",
        flood.len()
    );
    // Held at once: exactly the bound. The rest are closed at accept as they arrive
    // (under load some are still in SYN retries when the wait ends).
    assert_eq!(held, 512);
    assert!(
        refused > 0 && held + refused <= flood.len() as u64,
        "{refused}"
    );
    assert!(
        after.saturating_sub(before) < 48 << 20,
        "{before} -> {after}"
    );
    // A sensor gets in as soon as the strangers are gone.
    drop(flood);
    std::thread::sleep(Duration::from_millis(500));
    let (_s, kind, text) = Raw::hello(&col.addr(), "edge-1", TOKEN);
    assert_eq!(kind, Kind::Welcome, "{text}");
}

/// Break 4: the same batch twice without the resent flag, on one and on two
/// connections, is stored once; the ledger has one row per key.
#[test]
fn a_batch_sent_again_without_the_resent_flag_is_stored_once() {
    let Some(ch) = start_clickhouse("a_batch_sent_again_without_the_resent_flag") else {
        return;
    };
    let dir = tmp("rstwatch-dup");
    let col = collector(&ch, dir.path(), "collector", &[]);
    let f = batch_frame(&batch("edge-1", 7, 0, 0..16));
    let g = batch_frame(&batch("edge-1", 7, 1, 16..32));
    for _ in 0..2 {
        let (mut r, kind, _) = Raw::hello(&col.addr(), "edge-1", TOKEN);
        assert_eq!(kind, Kind::Welcome);
        // Twice in a row (one group) and once more after another batch.
        r.send(&[f.clone(), f.clone(), g.clone(), f.clone()].concat());
        for _ in 0..4 {
            let a = r.next().expect("an ack");
            assert_eq!(a.header.kind, Kind::Ack);
        }
    }
    assert_eq!(rows(&ch, "rst_events"), 32);
    assert_eq!(count(&ch, "SELECT uniqExact(flow_uid) FROM rst_events"), 32);
    assert_eq!(rows(&ch, "batches"), 2);
    assert_eq!(col.metric("rstwatch_collector_batches_duplicate_total"), 6);
}

/// Break 4: bit-flipped values with a recomputed checksum are refused by the semantic
/// checks and counted by reason; nothing of the batch is stored.
#[test]
fn out_of_range_values_are_refused_and_counted() {
    let Some(ch) = start_clickhouse("out_of_range_values_are_refused") else {
        return;
    };
    let dir = tmp("rstwatch-semantic");
    let col = collector(&ch, dir.path(), "collector", &[]);
    let mut b = batch("edge-1", 9, 0, 0..8);
    b.rst[3].ts_us = 10_774_424_854_964_404;
    let (mut r, _, _) = Raw::hello(&col.addr(), "edge-1", TOKEN);
    r.send(&batch_frame(&b));
    let f = r.next().expect("a refusal");
    assert_eq!(f.header.kind, Kind::Reject);
    let text = String::from_utf8_lossy(&f.payload).into_owned();
    assert!(text.starts_with("invalid_ts: rst 3"), "{text}");
    assert_eq!(
        col.metric("rstwatch_collector_rejected_total{reason=\"invalid_ts\"}"),
        1
    );
    // Corrupt rkyv (checksum recomputed): the log carries bytecheck's own reason.
    let mut raw = batch("edge-1", 9, 1, 0..2).to_bytes().to_vec();
    let l = raw.len();
    for x in &mut raw[l - 24..l - 8] {
        *x = 0xff;
    }
    let (mut r, _, _) = Raw::hello(&col.addr(), "edge-1", TOKEN);
    r.send(&frame::encode(Kind::Batch, Codec::None, 0, &raw));
    let f = r.next().expect("a refusal");
    let text = String::from_utf8_lossy(&f.payload).into_owned();
    assert!(text.starts_with("bad_batch"), "{text}");
    assert!(!text.contains("without error information"), "{text}");
    assert_eq!(rows(&ch, "rst_events"), 0);
}

/// Break 5: one canonical id; a per-sensor id cannot be claimed with the shared token.
#[test]
fn look_alike_sensor_ids_are_refused() {
    let Some(ch) = start_clickhouse("look_alike_sensor_ids_are_refused") else {
        return;
    };
    let dir = tmp("rstwatch-ids");
    let cfg = dir.path().join("collector.toml");
    std::fs::write(&cfg, "[sensors]\nedge-1 = \"tok-edge-1\"\n").unwrap();
    let col = collector(
        &ch,
        dir.path(),
        "collector",
        &["--config", cfg.to_str().unwrap()],
    );
    for id in ["EDGE-1", "edge-1 ", ""] {
        let (_, kind, text) = Raw::hello(&col.addr(), id, TOKEN);
        assert_eq!(kind, Kind::Reject, "{id:?}");
        assert!(text.starts_with("bad_sensor_id"), "{id:?}: {text}");
    }
    let (_, kind, text) = Raw::hello(&col.addr(), "edge-1", TOKEN);
    assert_eq!((kind, &text[..9]), (Kind::Reject, "bad_token"));
    let (_, kind, _) = Raw::hello(&col.addr(), "edge-1", "tok-edge-1");
    assert_eq!(kind, Kind::Welcome);
    // And the sensor refuses to start with a non-canonical id.
    let args = ship_args(&col.addr(), &dir.path().join("spool"), "Edge-1");
    let err = ShipSink::start(&args).err().expect("refused").to_string();
    assert!(err.contains("--sensor-id"), "{err}");
}

/// Break 6: health follows inserts that stall (ClickHouse frozen with SIGSTOP).
#[test]
fn health_fails_while_clickhouse_is_frozen() {
    let Some(ch) = start_clickhouse("health_fails_while_clickhouse_is_frozen") else {
        return;
    };
    let dir = tmp("rstwatch-frozen");
    let col = collector(&ch, dir.path(), "collector", &["--insert-stall-secs", "2"]);
    let healthy = || http_get(col.metrics_port, "/healthz").is_ok();
    assert!(healthy());
    let pid = ch.pid().unwrap().to_string();
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success())
    };
    signal("-STOP");
    let sensor = {
        let args = ship_args(&col.addr(), &dir.path().join("spool"), "edge-f");
        std::thread::spawn(move || {
            let mut sink = ShipSink::start(&args).unwrap();
            for i in 0..2_000 {
                sink.rst(rst(i));
            }
            sink.finish()
        })
    };
    let t0 = Instant::now();
    while healthy() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let unhealthy_after = t0.elapsed();
    let body = http_get(col.metrics_port, "/healthz")
        .unwrap_err()
        .to_string();
    let up = col.metric("rstwatch_collector_clickhouse_up");
    signal("-CONT");
    assert!(body.contains("503"), "{body}");
    assert!(
        unhealthy_after < Duration::from_secs(12),
        "{unhealthy_after:?}"
    );
    assert_eq!(up, 0);
    let r = sensor.join().unwrap().unwrap();
    assert_eq!(r.events_acked, 2_000);
    assert_eq!(rows(&ch, "rst_events"), 2_000);
    let t0 = Instant::now();
    while !healthy() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(healthy());
}

/// Break 6: `--plaintext` on a non-loopback address needs `--plaintext-anywhere`.
#[test]
fn plaintext_on_a_public_address_is_refused() {
    let out = Command::new(COLLECTOR)
        .args(["serve", "--plaintext", "--no-auth", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--plaintext-anywhere"), "{err}");
}

/// Break 2: a batch the collector refuses for good is set aside, the rest drains, and
/// the sensor does not hammer the collector meanwhile.
#[test]
fn a_permanently_refused_batch_is_quarantined_and_the_rest_drains() {
    let Some(ch) = start_clickhouse("a_permanently_refused_batch_is_quarantined") else {
        return;
    };
    let dir = tmp("rstwatch-refused");
    let col = collector(&ch, dir.path(), "collector", &[]);
    let spool = dir.path().join("spool");
    let mut args = ship_args(&col.addr(), &spool, "edge-q");
    args.batch_max_events = 100;
    let mut sink = ShipSink::start(&args).unwrap();
    for i in 0..1_000 {
        let mut e = rst(i);
        if i == 150 {
            // A value the collector's semantic checks refuse (the sensor cannot see it).
            e.ts_us = 10_774_424_854_964_404;
        }
        sink.rst(e);
    }
    let r = sink.finish().unwrap();
    let (line, complete) = r.summary();
    assert!(!complete, "{line}");
    assert!(line.contains("100 events LOST"), "{line}");
    assert!(line.contains("quarantine"), "{line}");
    assert_eq!(r.events_acked, 900);
    assert_eq!(r.losses.quarantined_events, 100);
    assert!(r.reconnects <= 2, "{r:?}");
    assert_eq!(rows(&ch, "rst_events"), 900);
    let q: Vec<_> = std::fs::read_dir(spool.join("quarantine"))
        .unwrap()
        .collect();
    assert_eq!(q.len(), 1);
    assert!(col.metric("rstwatch_collector_connections_total") <= 3);
}

/// Break 2: a collector that keeps refusing every batch for a reason the wire could
/// have caused (the spooled copy is intact) is retried with backoff, not in a storm.
#[test]
fn refusals_are_retried_with_backoff_not_in_a_storm() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    let dir = tmp("rstwatch-storm");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicU64::new(0));
    let n = accepted.clone();
    // A fake collector: welcome, then "bad_checksum" for whatever batch comes.
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            n.fetch_add(1, Relaxed);
            std::thread::spawn(move || {
                let mut r = Raw::from_stream(s);
                if r.next().is_none() {
                    return;
                }
                r.send(&frame::encode(Kind::Welcome, Codec::None, 0, b""));
                if r.next().is_some() {
                    let no = b"bad_checksum: checksum mismatch (header 00000000, payload 00000001)";
                    let _ =
                        r.s.write_all(&frame::encode(Kind::Reject, Codec::None, 0, no));
                }
            });
        }
    });
    let mut args = ship_args(&addr, &dir.path().join("spool"), "edge-s");
    args.retry_max_secs = 30;
    args.ship_timeout_secs = 10;
    let mut sink = ShipSink::start(&args).unwrap();
    sink.rst(rst(1));
    let err = sink.finish().unwrap_err().to_string();
    assert!(
        err.contains("1 events in 1 batches remain in the spool"),
        "{err}"
    );
    let conns = accepted.load(Relaxed);
    println!("{conns} connections in 10 s of refusals");
    // 0.1 s doubling: at most ~8 attempts fit in 10 s (each wait at least half its step).
    assert!((2..=9).contains(&conns), "{conns} connections in 10 s");
}

/// Break 2: a host renamed with its spool kept: the old batches are set aside at once
/// (checked before sending), not refused one reconnect at a time.
#[test]
fn a_renamed_sensor_sets_its_old_spool_aside_and_ships_the_new_data() {
    let Some(ch) = start_clickhouse("a_renamed_sensor_sets_its_old_spool_aside") else {
        return;
    };
    let dir = tmp("rstwatch-rename");
    let spool = dir.path().join("spool");
    let down = format!("127.0.0.1:{}", rstwatch_collector::testing::free_port());
    let mut old = ship_args(&down, &spool, "old-name");
    old.ship_timeout_secs = 1;
    let mut sink = ShipSink::start(&old).unwrap();
    for i in 0..3_000 {
        sink.rst(rst(i));
    }
    assert!(sink.finish().is_err());
    let col = collector(&ch, dir.path(), "collector", &[]);
    let t0 = Instant::now();
    let mut sink = ShipSink::start(&ship_args(&col.addr(), &spool, "new-name")).unwrap();
    for i in 3_000..5_000 {
        sink.rst(rst(i));
    }
    let r = sink.finish().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(r.events_acked, 2_000);
    assert_eq!(r.losses.quarantined_events, 3_000);
    assert_eq!(r.reconnects, 0, "{r:?}");
    assert_eq!(rows(&ch, "rst_events"), 2_000);
    assert_eq!(
        col.metric("rstwatch_collector_rejected_total{reason=\"wrong_sensor\"}"),
        0
    );
}

/// Break 3: damaged spool files (cut to zero, a flipped byte) from an earlier run are
/// counted and kept aside; the report does not claim success.
#[test]
fn damaged_spool_files_are_counted_not_silently_dropped() {
    let Some(ch) = start_clickhouse("damaged_spool_files_are_counted") else {
        return;
    };
    let dir = tmp("rstwatch-damaged");
    let spool = dir.path().join("spool");
    let down = format!("127.0.0.1:{}", rstwatch_collector::testing::free_port());
    let mut old = ship_args(&down, &spool, "edge-d");
    old.ship_timeout_secs = 1;
    let mut sink = ShipSink::start(&old).unwrap();
    for i in 0..3_000 {
        sink.rst(rst(i));
    }
    assert!(sink.finish().is_err());
    let mut files: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rwb"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    std::fs::write(&files[0], b"").unwrap();
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&files[1], bytes).unwrap();
    let col = collector(&ch, dir.path(), "collector", &[]);
    let mut sink = ShipSink::start(&ship_args(&col.addr(), &spool, "edge-d")).unwrap();
    sink.rst(rst(10_000));
    let r = sink.finish().unwrap();
    assert_eq!(r.events_acked, 1_001);
    assert_eq!(r.losses.quarantined_batches, 2);
    assert_eq!(r.losses.quarantined_events, 2_000);
    let (line, complete) = r.summary();
    assert!(!complete && line.contains("2000 events LOST"), "{line}");
    assert_eq!(rows(&ch, "rst_events"), 1_001);
    assert_eq!(
        col.metric("rstwatch_collector_rejected_total{reason=\"bad_checksum\"}"),
        0
    );
}

/// Break 3: an unwritable spool directory: ship from memory, say so, lose nothing.
#[test]
fn an_unwritable_spool_ships_from_memory() {
    let Some(ch) = start_clickhouse("an_unwritable_spool_ships_from_memory") else {
        return;
    };
    let dir = tmp("rstwatch-unwritable");
    let col = collector(&ch, dir.path(), "collector", &[]);
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let mut sink = ShipSink::start(&ship_args(&col.addr(), &file.join("spool"), "edge-m")).unwrap();
    for i in 0..5_000 {
        sink.rst(rst(i));
    }
    let r = sink.finish().unwrap();
    let (line, complete) = r.summary();
    assert!(complete, "{line}");
    assert_eq!(r.events_acked, 5_000);
    assert_eq!(rows(&ch, "rst_events"), 5_000);
}

/// Break 3: at start-up a full spool of an earlier run is drained before anything is
/// evicted, while a collector answers.
#[test]
fn a_full_spool_drains_before_it_evicts() {
    let Some(ch) = start_clickhouse("a_full_spool_drains_before_it_evicts") else {
        return;
    };
    let dir = tmp("rstwatch-drain");
    let spool = dir.path().join("spool");
    let down = format!("127.0.0.1:{}", rstwatch_collector::testing::free_port());
    let mut old = ship_args(&down, &spool, "edge-e");
    old.ship_timeout_secs = 1;
    old.compression = Codec::None;
    let mut sink = ShipSink::start(&old).unwrap();
    for i in 0..5_000 {
        sink.rst(rst(i));
    }
    assert!(sink.finish().is_err());
    let size: u64 = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let col = collector(&ch, dir.path(), "collector", &[]);
    let mut args = ship_args(&col.addr(), &spool, "edge-e");
    args.compression = Codec::None;
    // Room for the old batches and barely one more.
    args.spool_max_bytes = size + size / 5;
    let mut sink = ShipSink::start(&args).unwrap();
    for i in 5_000..10_000 {
        sink.rst(rst(i));
    }
    let r = sink.finish().unwrap();
    assert_eq!(r.losses, Default::default());
    assert_eq!(r.events_acked, 10_000);
    assert_eq!(rows(&ch, "rst_events"), 10_000);
}

/// Break 6: a plaintext sensor against a TLS collector, and a sensor that does not
/// trust the collector's certificate, stop at once and say which side is at fault.
#[test]
fn tls_mismatches_are_named_and_not_retried() {
    let Some(ch) = start_clickhouse("tls_mismatches_are_named") else {
        return;
    };
    let dir = tmp("rstwatch-tlsmsg");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let col = Collector::start(
        Path::new(COLLECTOR),
        &ch.url(),
        DB,
        &[
            "--token",
            TOKEN,
            "--tls-cert",
            cert_pem.to_str().unwrap(),
            "--tls-key",
            key_pem.to_str().unwrap(),
        ],
        &dir.path().join("collector.log"),
    )
    .unwrap();
    let mut plain = ship_args(&col.addr(), &dir.path().join("spool1"), "edge-t");
    plain.ship_timeout_secs = 30;
    let t0 = Instant::now();
    let mut sink = ShipSink::start(&plain).unwrap();
    sink.rst(rst(1));
    let err = sink.finish().unwrap_err().to_string();
    assert!(err.contains("speaks TLS"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());

    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_pem = dir.path().join("other.pem");
    std::fs::write(&other_pem, other.cert.pem()).unwrap();
    let mut wrong_ca = ship_args(&col.addr(), &dir.path().join("spool2"), "edge-t");
    wrong_ca.plaintext = false;
    wrong_ca.ca_cert = Some(other_pem);
    wrong_ca.tls_server_name = Some("localhost".into());
    let mut sink = ShipSink::start(&wrong_ca).unwrap();
    sink.rst(rst(2));
    let err = sink.finish().unwrap_err().to_string();
    assert!(err.contains("this sensor does not trust"), "{err}");
    assert!(!err.contains("refused this sensor"), "{err}");
}

/// The sensor binary, built next to the collector's by `cargo build --workspace`.
/// Breaks 3 and 6 at the command line: `replay --ship` exits 0 only when everything
/// arrived, and otherwise names what was lost and why.
#[test]
fn replay_ship_exit_status_and_summary_are_truthful() {
    let Some(ch) = start_clickhouse("replay_ship_exit_status_is_truthful") else {
        return;
    };
    let Some(sensor) = sensor_bin() else {
        println!("SKIP: rstwatch-sensor is not built (cargo build --workspace)");
        return;
    };
    let dir = tmp("rstwatch-cli");
    let pcap = dir.path().join("abort.pcap");
    gen_capture(&sensor, "abort", &pcap);
    let spool = dir.path().join("spool");
    let replay = |addr: &str, spool: &Path, timeout: &str| {
        let o = Command::new(&sensor)
            .args(["replay", "--ship", addr, "--plaintext", "--token", TOKEN])
            .args(["--sensor-id", "edge-cli", "--ship-timeout-secs", timeout])
            .arg("--spool-dir")
            .arg(spool)
            .arg(&pcap)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Nobody answers: exit 1, the events are named as left in the spool.
    let down = format!("127.0.0.1:{}", rstwatch_collector::testing::free_port());
    let (code, err) = replay(&down, &spool, "1");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("remain in the spool"), "{err}");
    // One spooled batch emptied (a crash mid-write on a careless filesystem).
    let file = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "rwb"))
        .unwrap();
    std::fs::write(&file, b"").unwrap();
    let col = collector(&ch, dir.path(), "collector", &[]);
    let (code, err) = replay(&col.addr(), &spool, "60");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("events LOST"), "{err}");
    assert!(err.contains("set aside"), "{err}");
    assert!(!err.contains("all acknowledged"), "{err}");
    // Everything delivered: exit 0.
    let (code, err) = replay(&col.addr(), &dir.path().join("spool2"), "60");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("all acknowledged"), "{err}");
}

/// RST counts a rollup holds for `sensor`, by its keys and bucket, against the same
/// counts computed from `rst_events`: `(rollup, raw)` as sorted TabSeparated rows.
fn rollup_and_raw(ch: &ClickHouse, table: &str, sensor: &str) -> (String, String) {
    let r = rstwatch_schema::rollup::ROLLUPS
        .iter()
        .find(|r| r.table == table)
        .unwrap();
    let (bucket, f, _) = r.bucket;
    let cols: Vec<&str> = r.keys.iter().map(|(c, _)| *c).collect();
    let exprs: Vec<String> = r.keys.iter().map(|(c, e)| format!("{e} AS {c}")).collect();
    let (cols, exprs) = (cols.join(", "), exprs.join(", "));
    // Addresses in hex, so that a difference prints legibly.
    let shown = cols.replace("server,", "hex(server),");
    let rollup = ch
        .query_db(
            DB,
            &format!(
                "SELECT {bucket}, {shown}, sum(rsts), sum(suspect_rsts) FROM {table} \
                 WHERE sensor_id = '{sensor}' GROUP BY {bucket}, {cols} ORDER BY {bucket}, {cols}"
            ),
        )
        .unwrap();
    let raw = ch
        .query_db(
            DB,
            &format!(
                "SELECT {f}(ts) AS {bucket}, {shown}, count(), sum(suspect) FROM (SELECT ts, suspect, {exprs} FROM rst_events) \
                 WHERE sensor_id = '{sensor}' GROUP BY {bucket}, {cols} ORDER BY {bucket}, {cols}"
            ),
        )
        .unwrap();
    (rollup, raw)
}

/// Sends one batch frame as `sensor` on a connection of its own and requires its ack.
fn send_acked(col: &Collector, sensor: &str, frame: &[u8]) {
    let (mut r, kind, _) = Raw::hello(&col.addr(), sensor, TOKEN);
    assert_eq!(kind, Kind::Welcome);
    r.send(frame);
    assert_eq!(r.next().expect("an ack").header.kind, Kind::Ack);
}

/// Stores `frame` (sensor edge-1's batch), keeps its RSTs in a Memory table `sent`,
/// then deletes the batch from `rst_events`, the rollups and the ledger, as though it
/// had never been written. Returns `rst_events` as the store left it.
fn stored_then_undone(ch: &ClickHouse, col: &Collector, frame: &[u8]) -> String {
    send_acked(col, "edge-1", frame);
    let stored = ch
        .query_db(DB, "SELECT * FROM rst_events ORDER BY flow_uid")
        .unwrap();
    ch.query_db(
        DB,
        "CREATE TABLE sent ENGINE = Memory AS SELECT * FROM rst_events",
    )
    .unwrap();
    for t in [
        "rst_events",
        "rst_minute",
        "rst_minute_cause",
        "rst_hour",
        "batches",
    ] {
        mutate(
            ch,
            &format!("ALTER TABLE {t} DELETE WHERE sensor_id = 'edge-1'"),
        );
    }
    stored
}

/// Runs `sql` (an `ALTER ... DELETE`, a mutation) and waits until it is done.
fn mutate(ch: &ClickHouse, sql: &str) {
    ch.query_db(DB, sql).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(ch, "SELECT count() FROM system.mutations WHERE is_done = 0") > 0 {
        assert!(Instant::now() < deadline, "mutation {sql} not done in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A write that failed after a batch's raw rows, before some of the rollup views (a
/// replica killed mid-insert, a server that died): the resent batch's raw rows are
/// found and not written again, so no view runs; the collector restores each rollup's
/// shortfall from `rst_events` instead. Reproduced here by deleting one sensor's rows
/// from two rollups and the batch's ledger row, as that failure leaves them.
#[test]
fn a_resent_batch_restores_the_rollups_a_failed_write_left_short() {
    let Some(ch) = start_clickhouse("a_resent_batch_restores_the_rollups") else {
        return;
    };
    let dir = tmp("rstwatch-rollup-repair");
    let col = collector(&ch, dir.path(), "collector", &[]);
    // 600 RSTs 7 s apart, over 70 minutes and two hours, to 250 servers (two or three
    // each), every third one suspect; and another sensor's batch.
    let mut a = batch("edge-1", 7, 0, 0..600);
    for (i, e) in a.rst.iter_mut().enumerate() {
        e.ts_us = T0 + i as i64 * 7_000_000;
        e.suspect = i % 3 == 0;
    }
    let b = batch("edge-2", 9, 0, 1000..1100);
    let (fa, fb) = (batch_frame(&a), batch_frame(&b));
    let send = |f: &[u8], sensor: &str| send_acked(&col, sensor, f);
    send(&fa, "edge-1");
    send(&fb, "edge-2");
    let rollups = ["rst_minute", "rst_minute_cause", "rst_hour"];
    let before: Vec<_> = rollups
        .iter()
        .map(|t| rollup_and_raw(&ch, t, "edge-2"))
        .collect();
    for t in rollups {
        let (rollup, raw) = rollup_and_raw(&ch, t, "edge-1");
        assert_eq!(rollup, raw, "{t} after a clean write");
        assert!(
            raw.lines().count() > 250,
            "{t}: {} keys",
            raw.lines().count()
        );
    }

    // The views of rst_minute and rst_hour did not run for edge-1's batch, and it never
    // reached the ledger.
    mutate(
        &ch,
        "ALTER TABLE rst_minute DELETE WHERE sensor_id = 'edge-1'",
    );
    mutate(
        &ch,
        "ALTER TABLE rst_hour DELETE WHERE sensor_id = 'edge-1'",
    );
    mutate(&ch, "ALTER TABLE batches DELETE WHERE sensor_id = 'edge-1'");
    let mut resent = fa.clone();
    frame::mark_resent(&mut resent).unwrap();
    send(&resent, "edge-1");
    for t in rollups {
        let (rollup, raw) = rollup_and_raw(&ch, t, "edge-1");
        assert_eq!(rollup, raw, "{t} restored");
    }
    assert_eq!(rows(&ch, "rst_events"), 700, "the raw rows written once");
    assert_eq!(rows(&ch, "batches"), 2);
    // rst_minute and rst_hour, 600 RSTs each; rst_minute_cause was whole.
    assert_eq!(
        col.metric("rstwatch_collector_rollup_rsts_restored_total"),
        1200
    );
    let after: Vec<_> = rollups
        .iter()
        .map(|t| rollup_and_raw(&ch, t, "edge-2"))
        .collect();
    assert_eq!(before, after, "the other sensor's rollups untouched");

    // Resent again after the same failure with nothing short: nothing is added.
    mutate(&ch, "ALTER TABLE batches DELETE WHERE sensor_id = 'edge-1'");
    send(&resent, "edge-1");
    for t in rollups {
        let (rollup, raw) = rollup_and_raw(&ch, t, "edge-1");
        assert_eq!(rollup, raw, "{t} not counted twice");
    }
    assert_eq!(
        col.metric("rstwatch_collector_rollup_rsts_restored_total"),
        1200
    );
    assert_eq!(rows(&ch, "rst_events"), 700);
}

/// What [`a_batch_an_insert_cut_short_left_part_of_gets_the_rest`] stands on: an HTTP
/// INSERT whose chunked body ends without its last chunk (the client killed) commits
/// a prefix of its rows, or none. ClickHouse 18.16 commits what it received
/// (ClickHouse#9666, #27667); this test requires that of a server before 20.x.
#[test]
fn an_insert_cut_short_commits_a_prefix_of_its_rows_or_none() {
    let Some(ch) = start_clickhouse("an_insert_cut_short_commits_a_prefix") else {
        return;
    };
    ch.query("CREATE TABLE default.cut (n UInt32) ENGINE = MergeTree ORDER BY n")
        .unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", ch.http_port)).unwrap();
    write!(
        s,
        "POST /?query=INSERT%20INTO%20default.cut%20FORMAT%20TSV HTTP/1.1\r\n\
         Host: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    for part in [0..500u32, 500..1000] {
        let rows: String = part.map(|n| format!("{n}\n")).collect();
        write!(s, "{:x}\r\n{rows}\r\n", rows.len()).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(s); // no "0\r\n\r\n": the body ends early
             // The server notices the closed connection on its next read; give it time.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        seen = ch
            .query("SELECT count(), min(n), max(n) FROM default.cut")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    let f: Vec<u64> = seen
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let (n, min, max) = (f[0], f[1], f[2]);
    assert!(
        n == 0 || (min == 0 && max == n - 1),
        "{n} rows from {min} to {max}: not a prefix of the rows sent"
    );
    let version = ch.query("SELECT version()").unwrap();
    let major: u32 = version.split('.').next().unwrap().trim().parse().unwrap();
    if major < 20 {
        assert_eq!(n, 1000, "ClickHouse {version} committed {n} rows of 1,000");
    }
    println!(
        "ClickHouse {} committed {n} of the 1,000 rows sent",
        version.trim()
    );
}

/// A collector killed while sending a batch's INSERT: ClickHouse 18.16 commits the
/// first rows it received (above). The resent batch finds some of its rows; the
/// collector writes the others, once, and the views count each RST once. Reproduced by
/// putting back the first 400 of a batch's 600 RSTs with an INSERT (so the views run
/// on them, as they did on the cut-short one) and deleting its ledger row.
#[test]
fn a_batch_an_insert_cut_short_left_part_of_gets_the_rest() {
    let Some(ch) = start_clickhouse("a_batch_an_insert_cut_short_left_part_of") else {
        return;
    };
    let dir = tmp("rstwatch-cut-short");
    let col = collector(&ch, dir.path(), "collector", &[]);
    let fa = batch_frame(&batch("edge-1", 7, 0, 0..600));
    let send = |f: &[u8]| send_acked(&col, "edge-1", f);
    let stored = stored_then_undone(&ch, &col, &fa);
    ch.query_db(
        DB,
        "INSERT INTO rst_events SELECT * FROM sent WHERE flow_uid < 400",
    )
    .unwrap();
    assert_eq!(rows(&ch, "rst_events"), 400);

    let mut resent = fa.clone();
    frame::mark_resent(&mut resent).unwrap();
    send(&resent);
    let now = ch
        .query_db(DB, "SELECT * FROM rst_events ORDER BY flow_uid")
        .unwrap();
    assert!(
        now == stored,
        "every RST once, as the first write stored them: {} rows, {} distinct RSTs",
        rows(&ch, "rst_events"),
        count(&ch, "SELECT uniqExact(flow_uid) FROM rst_events")
    );
    for t in ["rst_minute", "rst_minute_cause", "rst_hour"] {
        let (rollup, raw) = rollup_and_raw(&ch, t, "edge-1");
        assert_eq!(rollup, raw, "{t} counts each RST once");
    }
    assert_eq!(
        col.metric("rstwatch_collector_truncated_rows_completed_total"),
        200
    );
    assert_eq!(
        col.metric("rstwatch_collector_rollup_rsts_restored_total"),
        0
    );
    assert!(
        col.log_text()
            .contains("rst_events held the first 400 of its 600 rows"),
        "{}",
        col.log_text()
    );
}

/// A collector killed while its INSERT of a batch runs on: the server goes on with it
/// (it has the body, or commits what came), and the sensor resends the batch to
/// another collector. That one waits for the INSERT, which names the sensor in its
/// query id, before it checks what is stored; had it looked at once it would have
/// found nothing and written the batch a second time. Reproduced with the first
/// collector's INSERT held open (its body not finished) over raw HTTP.
#[test]
fn a_resent_batch_waits_for_a_killed_collectors_insert_of_it() {
    let Some(ch) = start_clickhouse("a_resent_batch_waits_for_a_killed") else {
        return;
    };
    let dir = tmp("rstwatch-killed-insert");
    let col = collector(&ch, dir.path(), "collector", &[]);
    let fa = batch_frame(&batch("edge-1", 7, 0, 0..600));
    let stored = stored_then_undone(&ch, &col, &fa);
    assert_eq!(rows(&ch, "rst_events"), 0);

    // The killed collector's INSERT of the batch's RSTs, its rows sent, its body not
    // ended: running on the server. ClickHouse 18.16 reads an HTTP body a MiB at a
    // time and starts the query once it has the first: another sensor's rows, sent
    // first, fill it.
    let columns = ch
        .query(
            "SELECT name FROM system.columns WHERE database = 'rstwatch' AND table = 'rst_events'",
        )
        .unwrap();
    let padded: Vec<&str> = columns
        .lines()
        .map(|c| if c == "sensor_id" { "'edge-pad'" } else { c })
        .collect();
    let rowbinary = |sql: &str| {
        ch.query_db_bytes(DB, &format!("{sql} FORMAT RowBinary"))
            .unwrap()
    };
    let mut body = rowbinary(&format!(
        "SELECT {} FROM sent ARRAY JOIN range(40) AS k",
        padded.join(", ")
    ));
    body.extend(rowbinary("SELECT * FROM sent"));
    let query_id = format!(
        "{}{:016x}-0",
        rstwatch_collector::ch::sensor_prefix("edge-1"),
        0xdead_u64
    );
    let mut s = TcpStream::connect(("127.0.0.1", ch.http_port)).unwrap();
    write!(
        s,
        "POST /?database={DB}&query_id={query_id}&query=INSERT%20INTO%20rst_events%20FORMAT%20RowBinary \
         HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    s.write_all(b"\r\n").unwrap();
    s.flush().unwrap();
    let running = format!("SELECT count() FROM system.processes WHERE query_id = '{query_id}'");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&ch, &running) == 0 {
        if Instant::now() > deadline {
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut reply = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut reply);
            panic!("the held INSERT never ran: {reply}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut resent = fa.clone();
    frame::mark_resent(&mut resent).unwrap();
    let waited = std::thread::scope(|sc| {
        let acked = sc.spawn(|| {
            send_acked(&col, "edge-1", &resent);
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            !acked.is_finished(),
            "acknowledged while the killed collector's INSERT ran"
        );
        let ended_at = Instant::now();
        write!(s, "0\r\n\r\n").unwrap();
        s.flush().unwrap();
        let acked_at = acked.join().unwrap();
        assert!(acked_at > ended_at);
        acked_at - ended_at
    });
    let mut reply = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    println!("acknowledged {waited:?} after the INSERT ended");

    let edge_1 = "SELECT * FROM rst_events WHERE sensor_id = 'edge-1' ORDER BY flow_uid";
    let now = ch.query_db(DB, edge_1).unwrap();
    assert!(
        now == stored,
        "every RST once: {} rows, {} distinct RSTs",
        count(
            &ch,
            "SELECT count() FROM rst_events WHERE sensor_id = 'edge-1'"
        ),
        count(
            &ch,
            "SELECT uniqExact(flow_uid) FROM rst_events WHERE sensor_id = 'edge-1'"
        )
    );
    assert_eq!(rows(&ch, "batches"), 1);
    for t in ["rst_minute", "rst_minute_cause", "rst_hour"] {
        let (rollup, raw) = rollup_and_raw(&ch, t, "edge-1");
        assert_eq!(rollup, raw, "{t} counts each RST once");
    }
}

/// Two resent batches of one sensor whose RSTs share minutes, restored at once over two
/// connections: each repair compares the same buckets, so only one may restore them
/// (`Store::writes`); otherwise both add the shortfall and the rollups count it twice.
#[test]
fn two_repairs_at_once_restore_a_shortfall_once() {
    let Some(ch) = start_clickhouse("two_repairs_at_once") else {
        return;
    };
    let dir = tmp("rstwatch-two-repairs");
    let col = collector(&ch, dir.path(), "collector", &[]);
    // Two batches of 600 RSTs over the same 70 minutes.
    let spread = |seq: u64, ids: std::ops::Range<u64>, offset_us: i64| {
        let mut b = batch("edge-1", 7, seq, ids);
        for (i, e) in b.rst.iter_mut().enumerate() {
            e.ts_us = T0 + offset_us + i as i64 * 7_000_000;
        }
        b
    };
    let frames = [
        batch_frame(&spread(0, 0..600, 0)),
        batch_frame(&spread(1, 600..1200, 3_000_000)),
    ];
    let send = |f: &[u8]| send_acked(&col, "edge-1", f);
    for f in &frames {
        send(f);
    }
    let rollups = ["rst_minute", "rst_minute_cause", "rst_hour"];
    for t in rollups {
        mutate(
            &ch,
            &format!("ALTER TABLE {t} DELETE WHERE sensor_id = 'edge-1'"),
        );
    }
    mutate(&ch, "ALTER TABLE batches DELETE WHERE sensor_id = 'edge-1'");
    let resent: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            frame::mark_resent(&mut f).unwrap();
            f
        })
        .collect();
    std::thread::scope(|s| {
        for f in &resent {
            s.spawn(|| send(f));
        }
    });
    for t in rollups {
        let (rollup, raw) = rollup_and_raw(&ch, t, "edge-1");
        assert_eq!(rollup, raw, "{t} restored once");
    }
    assert_eq!(
        col.metric("rstwatch_collector_rollup_rsts_restored_total"),
        3 * 1200
    );
    assert_eq!(rows(&ch, "rst_events"), 1200);
}
