//! A sensor and a collector of different schema versions refuse each other with a
//! message naming both versions and the side to upgrade, in both directions: a
//! version-1 sensor (its hello and its batch layout crafted here by hand) against this
//! collector, and this sensor against a version-1 collector (its refusal crafted here,
//! word for word what the version-1 build sends).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use rstwatch_collector::testing::{ClickHouse, Collector, TempDir};
use rstwatch_schema::frame::{self, Codec, Hello, Kind};
use rstwatch_schema::{
    BatchHeader, CloseReason, ConnState, Dir, IpBytes, RstClass, RstFlags, SCHEMA_VERSION,
};
use rstwatch_sensor::ship::{ShipArgs, ShipSink};
use rstwatch_sensor::Sink;

const COLLECTOR: &str = env!("CARGO_BIN_EXE_rstwatch-collector");

/// `RstEvent` as schema version 1 archived it (no cause, cause_detail, silence_ms).
#[derive(rkyv::Archive, rkyv::Serialize)]
struct RstEventV1 {
    ts_us: i64,
    src: IpBytes,
    sport: u16,
    dst: IpBytes,
    dport: u16,
    vlan: u16,
    inner_vlan: u16,
    dir: Dir,
    class: RstClass,
    flags: RstFlags,
    suspect: bool,
    seq: u32,
    ack: u32,
    ack_flag: bool,
    ttl: u8,
    ip_id: u16,
    payload_len: u16,
    flow_uid: u64,
}

/// `FlowRecord` as schema version 1 archived it (no cause).
#[derive(rkyv::Archive, rkyv::Serialize)]
struct FlowRecordV1 {
    ts_start_us: i64,
    ts_end_us: i64,
    orig_h: IpBytes,
    orig_p: u16,
    resp_h: IpBytes,
    resp_p: u16,
    vlan: u16,
    inner_vlan: u16,
    conn_state: ConnState,
    history: String,
    orig_pkts: u64,
    resp_pkts: u64,
    orig_bytes: u64,
    resp_bytes: u64,
    rst_count: u32,
    close: CloseReason,
    flow_uid: u64,
}

/// `Batch` of schema version 1.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct BatchV1 {
    header: BatchHeader,
    rst: Vec<RstEventV1>,
    flows: Vec<FlowRecordV1>,
    anomalies: Vec<rstwatch_schema::Anomaly>,
    stats: Vec<rstwatch_schema::SensorStats>,
}

fn v1_batch(sensor: &str) -> Vec<u8> {
    let rst = RstEventV1 {
        ts_us: 1_763_700_000_000_000,
        src: IpBytes::from_v4([192, 0, 2, 1]),
        sport: 443,
        dst: IpBytes::from_v4([198, 51, 100, 1]),
        dport: 40_000,
        vlan: 0,
        inner_vlan: 0,
        dir: Dir::Resp,
        class: RstClass::Abort,
        flags: RstFlags(1),
        suspect: false,
        seq: 1,
        ack: 2,
        ack_flag: true,
        ttl: 64,
        ip_id: 0,
        payload_len: 0,
        flow_uid: 1,
    };
    let b = BatchV1 {
        header: BatchHeader {
            schema_version: 1,
            sensor_id: sensor.into(),
            boot_id: 1,
            seq: 0,
            created_us: 0,
        },
        rst: vec![rst],
        flows: vec![],
        anomalies: vec![],
        stats: vec![],
    };
    rkyv::to_bytes::<rkyv::rancor::Error>(&b).unwrap().to_vec()
}

fn hello(sensor: &str, schema_version: u16) -> Vec<u8> {
    let h = Hello {
        sensor_id: sensor.into(),
        token: String::new(),
        boot_id: 1,
        schema_version,
        software: "rstwatch-sensor (crafted by the test)".into(),
    };
    frame::encode(
        Kind::Hello,
        Codec::None,
        0,
        &serde_json::to_vec(&h).unwrap(),
    )
}

/// Sends `frames` and returns the text of the collector's `Reject` (or panics).
fn refusal(addr: &str, frames: &[Vec<u8>]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for f in frames {
        s.write_all(f).unwrap();
    }
    loop {
        let (h, p) = frame::read_frame(&mut s, 1 << 20).unwrap();
        match h.kind {
            Kind::Welcome => continue,
            Kind::Reject => return String::from_utf8(p).unwrap(),
            k => panic!("unexpected {k:?}"),
        }
    }
}

#[test]
fn a_version_1_sensor_is_told_to_upgrade_the_sensor() {
    let Some(ch) = ClickHouse::start().unwrap() else {
        println!("SKIP a_version_1_sensor_is_told_to_upgrade_the_sensor: clickhouse-server is not installed");
        return;
    };
    ch.migrate(Path::new(COLLECTOR), "rstwatch").unwrap();
    let dir = TempDir::new("rstwatch-versions").unwrap();
    let col = Collector::start(
        Path::new(COLLECTOR),
        &ch.url(),
        "rstwatch",
        &["--plaintext", "--no-auth"],
        &dir.path().join("collector.log"),
    )
    .unwrap();
    let advice = "upgrade the sensor to a build with schema version 2";
    // A version-1 sensor's hello.
    assert_eq!(
        refusal(&col.addr(), &[hello("edge-v1", 1)]),
        format!("schema_version: sensor schema version 1, collector 2: {advice}")
    );
    // A version-1 batch after a hello claiming the current version: refused for its
    // version, not as an unreadable batch.
    let batch = frame::encode(Kind::Batch, Codec::Zstd, 0, &v1_batch("edge-v1"));
    assert_eq!(
        refusal(&col.addr(), &[hello("edge-v1", SCHEMA_VERSION), batch]),
        format!("schema_version: batch of sensor schema version 1, collector 2: {advice}")
    );
    let log = col.log_text();
    assert_eq!(log.matches("refused (schema_version)").count(), 2, "{log}");
    assert_eq!(
        col.metric("rstwatch_collector_rejected_total{reason=\"schema_version\"}"),
        2
    );
    let stored = ch
        .query_db("rstwatch", "SELECT count() FROM rst_events")
        .unwrap();
    assert_eq!(stored.trim(), "0");
}

/// A version-1 collector: reads the hello, answers what its `serve` answered to any
/// other schema version (collector/src/server.rs at schema version 1), closes.
fn fake_version_1_collector() -> (String, std::sync::mpsc::Receiver<u16>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let Ok((_, p)) = frame::read_frame(&mut s, 1 << 20) else {
                continue;
            };
            let h: Hello = serde_json::from_slice(&p).unwrap();
            let text = format!(
                "schema_version: sensor schema version {}, collector 1",
                h.schema_version
            );
            let _ = s.write_all(&frame::encode(
                Kind::Reject,
                Codec::None,
                0,
                text.as_bytes(),
            ));
            let _ = s.shutdown(std::net::Shutdown::Write);
            let _ = s.read_to_end(&mut Vec::new());
            let _ = tx.send(h.schema_version);
        }
    });
    (addr, rx)
}

#[test]
fn this_sensor_against_a_version_1_collector_names_both_versions() {
    let (addr, hellos) = fake_version_1_collector();
    let dir = TempDir::new("rstwatch-versions-sensor").unwrap();
    let args = ShipArgs {
        ship: Some(addr),
        plaintext: true,
        spool_dir: dir.path().join("spool"),
        sensor_id: Some("edge-v2".into()),
        ship_timeout_secs: 10,
        ..ShipArgs::default()
    };
    let mut sink = ShipSink::start(&args).unwrap();
    sink.rst(rstwatch_schema::RstEvent::new(
        1,
        (IpBytes::from_v4([192, 0, 2, 1]), 443),
        (IpBytes::from_v4([198, 51, 100, 1]), 40_000),
        Dir::Resp,
        RstClass::Abort,
    ));
    let err = sink.finish().unwrap_err().to_string();
    assert_eq!(hellos.recv().unwrap(), SCHEMA_VERSION);
    // Refused at once (not retried until the timeout), keeping the batch, naming both
    // versions.
    assert!(
        err.contains("collector refused: schema_version: sensor schema version 2, collector 1"),
        "{err}"
    );
    assert!(
        err.contains("1 events in 1 batches remain in the spool"),
        "{err}"
    );
    // And what to upgrade, which the version-1 collector's text does not say.
    assert!(
        err.contains(
            "upgrade the collector to a build with schema version 2 and run \
             `rstwatch-collector migrate`"
        ),
        "{err}"
    );
}
