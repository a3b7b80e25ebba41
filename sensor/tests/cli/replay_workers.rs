//! `replay --workers N` gives what one engine gives: the same RST events and flow
//! records (as a multiset, since N engines interleave), each flow's RST events in the
//! same order, the same counters, over a capture read in many reader batches.
//!
//! Anomalies are not compared: their detectors count across flows (RSTs per server in
//! a second, ...), and with N engines each sees its share of the flows, as in live
//! fan-out (README "Performance"); the storm here raises them at different moments.
//!
//! `flow_uid` is a hash with a per-process seed (it joins RSTs to their flow within
//! one output, and differs between any two runs), so records are compared with it
//! replaced by the flow it names: its record's endpoints and start time.

use rstwatch_schema::Record;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn sensor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rstwatch-sensor"))
}

/// The output lines of `replay` and its `--stats` counters.
fn replay(files: &[&Path], workers: u16) -> (Vec<String>, serde_json::Value) {
    let out = sensor()
        .arg("replay")
        .args([
            "--no-progress",
            "--stats",
            "--workers",
            &workers.to_string(),
        ])
        .args(files)
        .output()
        .expect("run rstwatch-sensor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "workers {workers}: {stderr}");
    let stats = stderr.lines().next().expect("--stats line");
    let lines = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(String::from)
        .collect();
    (lines, serde_json::from_str(stats).expect("stats JSON"))
}

/// The records with each `flow_uid` replaced by the identity of its flow record, and
/// each flow's RST events in output order (flow identity → (timestamp, seq) list).
type PerFlow = BTreeMap<String, Vec<(i64, u32)>>;

fn canonical(lines: &[String]) -> (Vec<String>, PerFlow) {
    let records: Vec<Record> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let mut flows = BTreeMap::new();
    for r in &records {
        if let Record::Flow(f) = r {
            let id = format!(
                "{}:{}>{}:{}@{}",
                f.orig_h, f.orig_p, f.resp_h, f.resp_p, f.ts_start_us
            );
            assert!(
                flows.insert(f.flow_uid, id).is_none(),
                "flow uid used twice"
            );
        }
    }
    let name = |uid: u64| match uid {
        0 => "none".to_string(),
        u => flows
            .get(&u)
            .cloned()
            .unwrap_or_else(|| panic!("RST of flow {u} without its flow record")),
    };
    let mut order = PerFlow::new();
    let mut out = Vec::new();
    for r in records {
        if matches!(r, Record::Anomaly(_)) {
            continue;
        }
        let mut v = match &r {
            Record::Rst(e) => {
                order
                    .entry(name(e.flow_uid))
                    .or_default()
                    .push((e.ts_us, e.seq));
                serde_json::to_value(&r).unwrap()
            }
            _ => serde_json::to_value(&r).unwrap(),
        };
        if let Some(uid) = v.get("flow_uid").and_then(|u| u.as_u64()) {
            v["flow_uid"] = name(uid).into();
        }
        out.push(v.to_string());
    }
    out.sort();
    (out, order)
}

fn gen(dir: &Path, scenario: &str, flows: &str, seed: &str) -> std::path::PathBuf {
    let out = dir.join(format!("{scenario}-{seed}.pcap"));
    let st = sensor()
        .args([
            "gen",
            "--scenario",
            scenario,
            "--flows",
            flows,
            "--seed",
            seed,
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("run gen");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

fn assert_same(files: &[&Path], workers: u16) {
    let (one, one_stats) = replay(files, 1);
    let (many, many_stats) = replay(files, workers);
    assert!(one.len() > 1000, "too small a test: {} records", one.len());
    let (a, one_order) = canonical(&one);
    let (b, many_order) = canonical(&many);
    assert!(
        one_order.len() > 100,
        "too few flows with RSTs: {}",
        one_order.len()
    );
    assert_eq!(
        many_order, one_order,
        "per-flow RST order, {workers} workers"
    );
    let differ: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).take(3).collect();
    assert!(
        a == b,
        "{workers} workers: {} vs {} records; first differences {differ:#?}",
        a.len(),
        b.len()
    );
    assert_eq!(many_stats, one_stats, "counters, {workers} workers");
}

/// Background flows with resets of every kind of flow-local evidence.
#[test]
fn workers_give_the_records_of_one_engine() {
    let dir = tempfile::tempdir().unwrap();
    let abort = gen(dir.path(), "abort", "3000", "1");
    let storm = gen(dir.path(), "storm", "3000", "2");
    for workers in [2, 3] {
        assert_same(&[&abort, &storm], workers);
    }
}
