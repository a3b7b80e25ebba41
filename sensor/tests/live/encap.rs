//! Remote mirroring on a real veth pair (issue 11): VXLAN- and ERSPAN-wrapped traffic
//! goes through the XDP program to AF_XDP (tunnel frames are handed up, not dropped),
//! is decoded in user space, and `run` reports the same records as `replay` of the
//! same capture, which are those of the plain capture apart from the encapsulation
//! fields. With fan-out, the inner four-tuple picks the worker.

use crate::live_common;

use live_common::*;
use rstwatch_schema::Encap;
use rstwatch_sensor::gen::encap::wrap;
use std::time::Duration;

fn replay(pcap: &std::path::Path, config: &std::path::Path) -> String {
    let r = sensor_cmd(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "replay failed: {}", r.stderr);
    r.stdout
}

/// `jsonl` with the fields `keys` removed from every record.
fn without(jsonl: &str, keys: &[&str]) -> String {
    let mut out = String::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(o) = v.as_object_mut() {
            for k in keys {
                o.remove(*k);
            }
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

fn without_encap(jsonl: &str) -> String {
    without(jsonl, &["encap", "tunnel_id"])
}

fn live_encap(test: &str, encap: Encap, extra: &[&str]) {
    live_encap_opt(test, encap, extra, false)
}

/// `cross_flow_causes_differ`: several workers see the cross-flow evidence of the
/// flows they own only (README, "Several workers"; which flows share a worker depends
/// on the per-process hash seed), so `connect_race` and `backscatter` may differ from a
/// single-worker replay: `cause` is left out of that comparison, everything else stays
/// (a flow whose two directions reached different workers would show up as two
/// one-sided records).
fn live_encap_opt(test: &str, encap: Encap, extra: &[&str], cross_flow_causes_differ: bool) {
    if should_skip(test) {
        return;
    }
    let plain = synthetic_frames_opt(400, true);
    let frames: Vec<Vec<u8>> = plain
        .iter()
        .enumerate()
        .map(|(i, f)| wrap(f, encap, i as u32))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let plain_pcap = dir.path().join(format!("{test}-plain.pcap"));
    write_pcap(&plain_pcap, &plain, 1_700_000_000);
    let pcap = dir.path().join(format!("{test}.pcap"));
    write_pcap(&pcap, &frames, 1_700_000_000);
    let config = held_verdicts_config(&pcap);
    let replayed = replay(&pcap, &config);
    assert!(replayed.lines().count() > 400, "{replayed}");
    assert!(
        replayed.contains(&format!("\"encap\":\"{}\"", encap.as_str())),
        "{replayed}"
    );
    // Offline first: the wrapped capture gives the plain capture's records.
    assert_same_records(
        &without_encap(&replay(&plain_pcap, &config)),
        &without_encap(&replayed),
        Causes::Exact,
    );

    let veth = Veth::new();
    let mut args = vec![
        "--iface",
        veth.host.as_str(),
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
    veth.tcpreplay(&pcap, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let o = sensor.stop();
    o.assert_success();
    let last = o.final_stats();
    // Every tunnel frame was handed up by the XDP program as a tunnel, none dropped.
    assert!(
        last.contains(&format!(
            "xdp tcp=0 tunnel={} non_tcp_dropped=0",
            frames.len()
        )),
        "{last}"
    );
    assert!(
        last.contains(&format!("q0 rx={} dropped=0", frames.len())),
        "{last}"
    );
    let causes = if cross_flow_causes_differ {
        Causes::Ignored
    } else {
        Causes::Exact
    };
    assert_same_records(&replayed, &o.stdout, causes);
    if let Some(d) = pcap.parent() {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn live_vxlan_matches_replay() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    live_encap(
        "live_vxlan_matches_replay",
        Encap::Vxlan,
        &["--mode", "native"],
    );
}

#[test]
fn live_erspan2_matches_replay() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    live_encap(
        "live_erspan2_matches_replay",
        Encap::Erspan2,
        &["--mode", "native"],
    );
}

#[test]
fn live_erspan3_matches_replay_generic() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    live_encap(
        "live_erspan3_matches_replay_generic",
        Encap::Erspan3,
        &["--mode", "generic"],
    );
}

/// Two workers behind one capture core: both directions of each inner flow must meet
/// on one worker although the outer header is the same for every frame.
#[test]
fn live_vxlan_fanout2_matches_replay() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    live_encap_opt(
        "live_vxlan_fanout2_matches_replay",
        Encap::Vxlan,
        &["--mode", "auto", "--fanout", "2", "--cores", "0,1,1"],
        true,
    );
}
