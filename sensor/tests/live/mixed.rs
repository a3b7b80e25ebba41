//! The `mixed` scenario (`rstwatch-sensor gen --scenario mixed`) injected on a veth pair
//! gives the same events from `run` as from `replay` of the same file: same RST classes,
//! flags and counts, same flow records and anomalies (timestamps aside). Native and
//! generic XDP, and fan-out with two workers.
//!
//! The capture spans ten minutes; it is injected at 20 000 packets/s (about 3 s), so
//! time-driven thresholds longer than the injection would differ from the file's
//! timeline (an RST after five idle minutes in the file comes a fraction of a second
//! after its predecessor on the wire). Both sides therefore read the same config file,
//! which moves the idle threshold and the flow timeouts past the capture's span, and turns
//! off the cause rules that measure time windows between packets (connect races,
//! overload and reboot bursts, keep-alive races, the unread window: their evidence is
//! packet spacing, which injection at a fixed rate replaces); every other rule, the
//! verdict delay and the aggregate detectors included, runs as shipped, and the causes
//! must agree with replay's.

use crate::live_common;

use live_common::*;
use std::path::PathBuf;
use std::time::Duration;

const CONFIG: &str = "\
[engine]
idle_threshold_s = 3600
timeout_half_open_s = 3600
timeout_established_s = 3600
timeout_closed_s = 3600

[engine.cause]
race_window_ms = 0
race_reset_ms = 0
overload_flows = 256
reboot_flows = 256
keepalive_idle_s = 3600
unread_window_ms = 0
";

fn prepare(test: &str) -> (PathBuf, PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("rstwatch-mixed-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("mixed.pcap");
    let o = sensor_cmd(&[
        "gen",
        "--scenario",
        "mixed",
        "--out",
        pcap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "gen failed: {}", o.stderr);
    let cfg = dir.join("live.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let r = sensor_cmd(&[
        "replay",
        "--no-progress",
        "--config",
        cfg.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "replay failed: {}", r.stderr);
    (pcap, cfg, r.stdout)
}

fn mixed(test: &str, extra: &[&str], expect_mode: &str) {
    if should_skip(test) {
        return;
    }
    let (pcap, cfg, replay) = prepare(test);
    let rsts = replay.matches("\"type\":\"rst\"").count();
    assert!(rsts > 1000, "the scenario has plenty of RSTs ({rsts})");
    assert!(replay.contains("\"type\":\"anomaly\""), "and anomalies");
    let veth = Veth::new();
    let mut args = vec![
        "--iface",
        &veth.host,
        "--config",
        cfg.to_str().unwrap(),
        "--stats-interval",
        "1",
    ];
    args.extend_from_slice(extra);
    let s = Sensor::start(None, &args).unwrap_or_else(|o| panic!("{}", o.stderr));
    assert!(s
        .stderr_now()
        .contains(&format!("attached in {expect_mode} mode")));
    veth.tcpreplay(&pcap, &["--pps", "20000"]);
    std::thread::sleep(Duration::from_millis(800));
    let o = s.stop();
    o.assert_success();
    let last = o.final_stats();
    assert!(
        last.contains("dropped=0 ring_full=0"),
        "no frame lost: {last}"
    );
    assert!(!last.contains("fanout_dropped"), "no frame lost: {last}");
    // The periodic stats line (every second here) with rates.
    assert!(
        o.stderr
            .lines()
            .any(|l| l.contains("info: stats ") && l.contains(" pps)")),
        "no periodic stats line:\n{}",
        o.stderr
    );
    let causes = if extra.contains(&"--fanout") {
        Causes::Ignored
    } else {
        Causes::Exact
    };
    assert_same_records(&replay, &o.stdout, causes);
    let _ = std::fs::remove_dir_all(pcap.parent().unwrap());
}

#[test]
fn live_mixed_native() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    mixed("live_mixed_native", &["--mode", "native"], "native");
}

#[test]
fn live_mixed_generic() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    mixed("live_mixed_generic", &["--mode", "generic"], "generic");
}

#[test]
fn live_mixed_fanout2() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    mixed("live_mixed_fanout2", &["--fanout", "2"], "native");
}
