//! `rstwatch-sensor run` on a real veth pair: the events equal those of `replay` of the
//! same capture (native and generic XDP, fan-out with two workers), metrics are served,
//! and shutdown leaves the interface clean.

use crate::live_common;

use live_common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The synthetic capture (all RST classes) as a pcap, the configuration both `replay`
/// and `run` use ([`held_verdicts_config`]), and `replay`'s output for it.
fn synthetic_capture(dir: &Path, name: &str, frames: &[Vec<u8>]) -> (PathBuf, PathBuf, String) {
    let pcap = dir.join(name);
    write_pcap(&pcap, frames, 1_700_000_000);
    let config = held_verdicts_config(&pcap);
    let r = sensor_cmd(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "replay failed: {}", r.stderr);
    assert!(
        r.stdout.lines().count() > 400,
        "replay gave too little: {}",
        r.stdout
    );
    (pcap, config, r.stdout)
}

fn run_vs_replay(test: &str, extra: &[&str], expect_mode: &str) {
    run_vs_replay_q(test, 1, extra, expect_mode)
}

fn run_vs_replay_q(test: &str, queues: u32, extra: &[&str], expect_mode: &str) {
    if should_skip(test) {
        return;
    }
    let frames = synthetic_frames_opt(400, queues == 1);
    let dir = tempfile::tempdir().unwrap();
    let (pcap, config, replay) = synthetic_capture(dir.path(), &format!("{test}.pcap"), &frames);
    let veth = Veth::with_queues(queues);
    let port = free_port();
    let port_s = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--iface",
        &veth.host,
        "--metrics-listen",
        &port_s,
        "--stats-interval",
        "1",
        "--config",
        config.to_str().unwrap(),
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
    o.assert_success();
    assert!(o.stderr.contains("XDP program detached"), "{}", o.stderr);

    // Everything sent arrived, nothing was dropped, and the numbers are in the metrics.
    let tcp = frames
        .iter()
        .filter(|f| f.len() > 23 && (f[23] == 6 || f[12] != 0x08))
        .count();
    let last = o.final_stats();
    let mut total = 0;
    for q in 0..queues {
        let n: u64 = last
            .split(&format!("q{q} rx="))
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no count for queue {q}: {last}"));
        assert!(
            last.contains(&format!("q{q} rx={n} dropped=0 ring_full=0")),
            "{last}"
        );
        assert!(
            metrics.contains(&format!(
                "rstwatch_xsk_rx_frames_total{{iface=\"{}\",queue=\"{q}\"}} {n}",
                veth.host
            )),
            "metrics:\n{metrics}"
        );
        if queues > 1 {
            assert!(n > 0, "traffic spread over the queues: {last}");
        }
        total += n;
    }
    assert_eq!(total, tcp as u64, "expected {tcp} frames: {last}");
    assert!(
        metrics.contains("rstwatch_xsk_rx_dropped_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rstwatch_xdp_non_tcp_dropped_total"),
        "{metrics}"
    );
    let causes = if queues > 1 || extra.contains(&"--fanout") {
        Causes::Ignored
    } else {
        Causes::Exact
    };
    assert_same_records(&replay, &o.stdout, causes);

    if let Some(d) = pcap.parent() {
        let _ = std::fs::remove_dir_all(d);
    }

    // Detached: no XDP program left on the interface.
    let idx = rstwatch_xdp::ifindex(&veth.host).unwrap();
    assert!(!rstwatch_xdp::query_xdp(idx).unwrap().any());
}

#[test]
fn live_run_matches_replay_native() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    run_vs_replay(
        "live_run_matches_replay_native",
        &["--mode", "native"],
        "native",
    );
}

#[test]
fn live_run_matches_replay_generic() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    run_vs_replay(
        "live_run_matches_replay_generic",
        &["--mode", "generic"],
        "generic",
    );
}

#[test]
fn live_run_matches_replay_fanout2() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    run_vs_replay(
        "live_run_matches_replay_fanout2",
        &["--mode", "auto", "--fanout", "2", "--cores", "0,1,1"],
        "native",
    );
}

#[test]
fn live_run_matches_replay_busy_poll() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    run_vs_replay(
        "live_run_matches_replay_busy_poll",
        &[
            "--mode",
            "native",
            "--busy-poll",
            "20",
            "--busy-poll-budget",
            "32",
        ],
        "native",
    );
}

/// Two receive queues, one socket and one engine each (per-queue mode): the kernel's
/// symmetric flow hash keeps both directions of a flow on one queue.
#[test]
fn live_run_matches_replay_two_queues() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    run_vs_replay_q(
        "live_run_matches_replay_two_queues",
        2,
        &["--queues", "0,1", "--cores", "0,1"],
        "native",
    );
}
