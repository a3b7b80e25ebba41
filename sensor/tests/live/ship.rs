//! `rstwatch-sensor run --ship` end to end: real AF_XDP capture on a veth pair, a real
//! collector, a real ClickHouse server. What lands in ClickHouse equals what `replay`
//! prints for the same capture, plus a `sensor_stats` snapshot at shutdown.

use crate::live_common;

use live_common::*;
use rstwatch_collector::testing::{ClickHouse, Collector};
use std::path::PathBuf;
use std::time::Duration;

const DB: &str = "rstwatch";

fn count(ch: &ClickHouse, sql: &str) -> u64 {
    ch.query_db(DB, sql).unwrap().trim().parse().unwrap()
}

#[test]
fn run_ship_stores_what_replay_prints() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    let test = "run_ship_stores_what_replay_prints";
    if should_skip(test) {
        return;
    }
    let Some(ch) = ClickHouse::start().expect("starting clickhouse-server") else {
        println!("SKIP {test}: clickhouse-server is not installed (scripts/setup.sh installs it)");
        return;
    };
    let collector: PathBuf = sensor_bin().with_file_name("rstwatch-collector");
    assert!(
        collector.exists(),
        "{} missing: build the workspace",
        collector.display()
    );
    ch.migrate(&collector, DB).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let col = Collector::start(
        &collector,
        &ch.url(),
        DB,
        &["--plaintext", "--token", "live-t0k"],
        &dir.path().join("collector.log"),
    )
    .unwrap();

    // The capture, and what replay says about it.
    let frames = synthetic_frames(300);
    let pcap = dir.path().join("live.pcap");
    write_pcap(&pcap, &frames, 1_700_000_000);
    let r = sensor_cmd(&["replay", "--only", "rst,flow", pcap.to_str().unwrap()]);
    assert!(r.status.success(), "replay: {}", r.stderr);
    let want_rst = r
        .stdout
        .lines()
        .filter(|l| l.contains(r#""type":"rst""#))
        .count() as u64;
    let want_flows = r
        .stdout
        .lines()
        .filter(|l| l.contains(r#""type":"flow""#))
        .count() as u64;
    assert!(
        want_rst > 100 && want_flows > 100,
        "{want_rst} RSTs, {want_flows} flows"
    );

    let veth = Veth::new();
    let spool = dir.path().join("spool");
    let addr = col.addr();
    let sensor = Sensor::start(
        None,
        &[
            "--iface",
            &veth.host,
            "--ship",
            &addr,
            "--plaintext",
            "--token",
            "live-t0k",
            "--sensor-id",
            "live-1",
            "--spool-dir",
            spool.to_str().unwrap(),
        ],
    )
    .unwrap_or_else(|o| panic!("sensor failed to start: {}", o.stderr));
    veth.tcpreplay(&pcap, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let o = sensor.stop();
    o.assert_success();
    assert!(
        o.stdout.is_empty(),
        "with --ship nothing goes to stdout: {}",
        o.stdout
    );
    assert!(o.stderr.contains("all acknowledged"), "{}", o.stderr);

    assert_eq!(count(&ch, "SELECT count() FROM rst_events"), want_rst);
    assert_eq!(count(&ch, "SELECT count() FROM flows"), want_flows);
    // The same classes, not just the same number.
    for class in ["reject", "handshake_abort", "abort", "unsolicited"] {
        let want = r
            .stdout
            .lines()
            .filter(|l| {
                l.contains(r#""type":"rst""#) && l.contains(&format!(r#""class":"{class}""#))
            })
            .count() as u64;
        let got = count(
            &ch,
            &format!("SELECT count() FROM rst_events WHERE class = '{class}'"),
        );
        assert_eq!(got, want, "class {class}");
    }
    assert!(
        count(
            &ch,
            "SELECT count() FROM sensor_stats WHERE sensor_id = 'live-1'"
        ) >= 1
    );
    drop(col);
}
