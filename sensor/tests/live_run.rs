//! `rstwatch-sensor run` on a real veth pair: the events equal those of `replay` of the
//! same capture (native and generic XDP, fan-out with two workers), metrics are served,
//! and shutdown leaves the interface clean.

mod live_common;

use live_common::*;
use std::path::PathBuf;
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rstwatch-live-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The synthetic capture (all RST classes) as a pcap, and `replay`'s output for it.
fn synthetic_capture(name: &str) -> (PathBuf, String) {
    let pcap = tmp(name);
    write_pcap(&pcap, &synthetic_frames(400), 1_700_000_000);
    let r = sensor_cmd(&["replay", pcap.to_str().unwrap()]);
    assert!(r.status.success(), "replay failed: {}", r.stderr);
    assert!(
        r.stdout.lines().count() > 400,
        "replay gave too little: {}",
        r.stdout
    );
    (pcap, r.stdout)
}

fn run_vs_replay(test: &str, extra: &[&str], expect_mode: &str) {
    if should_skip(test) {
        return;
    }
    let (pcap, replay) = synthetic_capture(&format!("{test}.pcap"));
    let veth = Veth::new();
    let port = free_port();
    let port_s = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--iface",
        &veth.host,
        "--metrics-listen",
        &port_s,
        "--stats-interval",
        "1",
    ];
    args.extend_from_slice(extra);
    let sensor = match Sensor::start(None, &args) {
        Ok(s) => s,
        Err(o) => panic!("sensor failed to start: {}", o.stderr),
    };
    assert!(
        sensor
            .stderr_now()
            .contains(&format!("attached in {expect_mode} mode")),
        "{}",
        sensor.stderr_now()
    );
    veth.tcpreplay(&pcap, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let metrics = http_get(port, "/metrics");
    let o = sensor.stop();
    assert!(
        o.status.success(),
        "sensor exit {:?}:\n{}",
        o.status,
        o.stderr
    );
    assert!(o.stderr.contains("XDP program detached"), "{}", o.stderr);

    // Everything sent arrived, nothing was dropped, and the numbers are in the metrics.
    let frames = synthetic_frames(400);
    let tcp = frames
        .iter()
        .filter(|f| f.len() > 23 && (f[23] == 6 || f[12] != 0x08))
        .count();
    assert!(
        o.stderr.contains(&format!("q0 rx={tcp} dropped=0")),
        "expected {tcp} frames, no drops:\n{}",
        o.stderr
    );
    assert!(
        metrics.contains(&format!(
            "rstwatch_xsk_rx_frames_total{{iface=\"{}\",queue=\"0\"}} {tcp}",
            veth.host
        )),
        "metrics:\n{metrics}"
    );
    assert!(
        metrics.contains("rstwatch_xsk_rx_dropped_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rstwatch_xdp_non_tcp_dropped_total"),
        "{metrics}"
    );
    assert_same_records(&replay, &o.stdout);

    // Detached: no XDP program left on the interface.
    let idx = rstwatch_xdp::ifindex(&veth.host).unwrap();
    assert!(!rstwatch_xdp::query_xdp(idx).unwrap().any());
}

#[test]
fn live_run_matches_replay_native() {
    run_vs_replay(
        "live_run_matches_replay_native",
        &["--mode", "native"],
        "native",
    );
}

#[test]
fn live_run_matches_replay_generic() {
    run_vs_replay(
        "live_run_matches_replay_generic",
        &["--mode", "generic"],
        "generic",
    );
}

#[test]
fn live_run_matches_replay_fanout2() {
    run_vs_replay(
        "live_run_matches_replay_fanout2",
        &["--mode", "auto", "--fanout", "2", "--cores", "0,1,1"],
        "native",
    );
}
