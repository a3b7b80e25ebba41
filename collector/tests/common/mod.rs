//! Helpers of the collector's integration tests (`hostile.rs`, `chaos.rs`, `alerts.rs`,
//! `shipping.rs`): a real ClickHouse, real collectors, the real sensor, raw frames, and
//! process measurements.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use rstwatch_collector::testing::{ClickHouse, Collector, TempDir};
use rstwatch_schema::frame::{self, Codec, Deframer, Frame, Hello, Kind, Limits};
use rstwatch_schema::{
    Batch, BatchHeader, Cause, Dir, IpBytes, RstClass, RstEvent, SCHEMA_VERSION,
};
use rstwatch_sensor::ship::ShipArgs;

pub(crate) const COLLECTOR: &str = env!("CARGO_BIN_EXE_rstwatch-collector");
pub(crate) const DB: &str = "rstwatch";
pub(crate) const TOKEN: &str = "t0k";
/// A fixed packet time (2025-11-21), well inside the collector's window.
pub(crate) const T0: i64 = 1_763_700_000_000_000;

pub(crate) fn start_clickhouse(test: &str) -> Option<ClickHouse> {
    ClickHouse::start_migrated(Path::new(COLLECTOR), DB, test)
}

/// The collector binary under test: this build's, or `RSTWATCH_TEST_COLLECTOR` (to show
/// that a test fails against an older build).
pub(crate) fn collector_bin() -> std::path::PathBuf {
    std::env::var_os("RSTWATCH_TEST_COLLECTOR")
        .map(Into::into)
        .unwrap_or_else(|| COLLECTOR.into())
}

/// A plaintext collector on loopback with the shared token and `extra` arguments.
pub(crate) fn collector(ch: &ClickHouse, dir: &Path, name: &str, extra: &[&str]) -> Collector {
    let mut args = vec!["--plaintext", "--token", TOKEN];
    args.extend_from_slice(extra);
    Collector::start(
        &collector_bin(),
        &ch.url(),
        DB,
        &args,
        &dir.join(format!("{name}.log")),
    )
    .unwrap()
}

/// The sensor binary, built by `cargo build --workspace` next to the collector's; `None`
/// when it was not built (the caller skips, saying so).
pub(crate) fn sensor_bin() -> Option<std::path::PathBuf> {
    let p = Path::new(COLLECTOR).with_file_name("rstwatch-sensor");
    p.exists().then_some(p)
}

/// Writes `gen`'s capture of `scenario` to `out` with the sensor binary `sensor`.
pub(crate) fn gen_capture(sensor: &Path, scenario: &str, out: &Path) {
    let g = std::process::Command::new(sensor)
        .args(["gen", "--scenario", scenario, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        g.status.success(),
        "gen {scenario}: {}",
        String::from_utf8_lossy(&g.stderr)
    );
}

pub(crate) fn tmp(name: &str) -> TempDir {
    TempDir::new(name).unwrap()
}

pub(crate) fn count(ch: &ClickHouse, sql: &str) -> u64 {
    ch.query_db(DB, sql).unwrap().trim().parse().unwrap()
}

pub(crate) fn rows(ch: &ClickHouse, table: &str) -> u64 {
    count(ch, &format!("SELECT count() FROM {table}"))
}

/// RST events whose `flow_uid`s are unique: `SELECT uniqExact(flow_uid)` equals the row
/// count exactly when nothing is duplicated.
pub(crate) fn rst(i: u64) -> RstEvent {
    let mut e = RstEvent::new(
        T0 + i as i64 * 1_000,
        (IpBytes::from_v4([192, 0, 2, (i % 250) as u8 + 1]), 443),
        (
            IpBytes::from_v4([198, 51, 100, (i % 200) as u8 + 1]),
            40_000 + (i % 20_000) as u16,
        ),
        Dir::Resp,
        RstClass::Abort,
    );
    e.seq = i as u32;
    e.ttl = 64;
    e.flow_uid = i;
    e.cause = Cause::Abort;
    e
}

pub(crate) fn batch(sensor: &str, boot: u64, seq: u64, ids: std::ops::Range<u64>) -> Batch {
    Batch {
        header: BatchHeader {
            schema_version: SCHEMA_VERSION,
            sensor_id: sensor.into(),
            boot_id: boot,
            seq,
            created_us: T0 + 10_000_000_000,
        },
        rst: ids.map(rst).collect(),
        flows: vec![],
        anomalies: vec![],
        stats: vec![],
    }
}

pub(crate) fn batch_frame(b: &Batch) -> Vec<u8> {
    frame::encode(Kind::Batch, Codec::Zstd, 0, &b.to_bytes())
}

pub(crate) fn hello(sensor: &str, token: &str) -> Vec<u8> {
    frame::encode(
        Kind::Hello,
        Codec::None,
        0,
        &serde_json::to_vec(&Hello {
            sensor_id: sensor.into(),
            token: token.into(),
            boot_id: 1,
            schema_version: SCHEMA_VERSION,
            software: "test".into(),
        })
        .unwrap(),
    )
}

/// A raw connection that speaks frames.
pub(crate) struct Raw {
    pub s: TcpStream,
    d: Deframer,
}

impl Raw {
    /// Frames over a socket accepted elsewhere (a fake collector).
    pub(crate) fn from_stream(s: TcpStream) -> Raw {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw {
            s,
            d: Deframer::new(Limits::new(64 << 20, 256 << 20)),
        }
    }

    pub(crate) fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw {
            s,
            d: Deframer::new(Limits::CONTROL),
        }
    }

    /// Connects and says hello; returns the answer's kind and payload.
    pub(crate) fn hello(addr: &str, sensor: &str, token: &str) -> (Raw, Kind, String) {
        let mut r = Raw::connect(addr);
        r.s.write_all(&hello(sensor, token)).unwrap();
        let f = r.next().expect("an answer to hello");
        let text = String::from_utf8_lossy(&f.payload).into_owned();
        (r, f.header.kind, text)
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next frame from the collector, None when it closed.
    pub(crate) fn next(&mut self) -> Option<Frame> {
        frame::read_frame_from(&mut self.s, &mut self.d)
            .ok()
            .flatten()
    }
}

/// Resident memory of a process, bytes.
pub(crate) fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Shipping arguments for a plaintext sensor on loopback.
pub(crate) fn ship_args(addr: &str, spool: &Path, sensor: &str) -> ShipArgs {
    ShipArgs {
        ship: Some(addr.to_string()),
        plaintext: true,
        token: Some(TOKEN.into()),
        spool_dir: spool.to_path_buf(),
        sensor_id: Some(sensor.to_string()),
        batch_max_events: 1_000,
        batch_max_ms: 100,
        ship_timeout_secs: 120,
        retry_max_secs: 2,
        ..ShipArgs::default()
    }
}

/// Reads whatever arrives until the peer closes or `t` passes.
pub(crate) fn drain(s: &mut TcpStream, t: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(t)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}
