//! `rstwatch-sensor diagnose` as a user runs it, on `gen` captures: its numbers are
//! replay's numbers for the same file (computed here from replay's JSON, so the tests
//! hold for any mix of causes the engine decides), every format has its sections,
//! and bad files fail the way `replay`'s do.

use rstwatch_schema::{Cause, Record};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sensor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rstwatch-sensor"))
}

/// Writes scenario `name` into `dir` with `gen` (its default flows and seed).
fn gen(dir: &Path, name: &str) -> PathBuf {
    crate::replay_workers::gen(dir, name, "2000", "1")
}

fn run(args: &[&str], files: &[&Path]) -> Output {
    sensor().args(args).args(files).output().unwrap()
}

/// What replay says about `file`, tallied the way the report tallies it.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    resets: u64,
    flows: u64,
    flows_reset: u64,
    anomalies: u64,
    /// cause -> (resets, flows)
    causes: BTreeMap<Cause, (u64, u64)>,
    rsts: Vec<Value>,
}

fn replay_tally(file: &Path) -> Tally {
    let out = run(&["replay"], &[file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t = Tally::default();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        match serde_json::from_str::<Record>(line).unwrap() {
            Record::Rst(e) => {
                t.resets += 1;
                t.causes.entry(e.cause).or_default().0 += 1;
                let mut v: Value = serde_json::from_str(line).unwrap();
                v.as_object_mut().unwrap().remove("type");
                t.rsts.push(without_uid(v));
            }
            Record::Flow(f) => {
                t.flows += 1;
                t.flows_reset += u64::from(f.rst_count > 0);
                if let Some(c) = f.cause {
                    t.causes.entry(c).or_default().1 += 1;
                }
            }
            Record::Anomaly(_) => t.anomalies += 1,
        }
    }
    t
}

fn diagnose_json(file: &Path) -> Value {
    let out = run(&["diagnose", "--format", "json"], &[file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object on one line");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn per_cause_counts_equal_what_replay_says() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "mixed",
        "refused",
        "scan",
        "idle-timeout",
        "injection",
        "after-fin",
    ] {
        let f = gen(dir.path(), name);
        let want = replay_tally(&f);
        let j = diagnose_json(&f);
        assert_eq!(j["resets"], want.resets, "{name}");
        assert_eq!(j["flows"], want.flows, "{name}");
        assert_eq!(j["flows_reset"], want.flows_reset, "{name}");
        let anomalies = j["anomalies"].as_array().unwrap().len() as u64;
        assert_eq!(anomalies, want.anomalies, "{name}");
        let mut got = BTreeMap::new();
        let mut order = Vec::new();
        for c in j["causes"].as_array().unwrap() {
            let cause: Cause = c["cause"].as_str().unwrap().parse().unwrap();
            let (resets, flows) = (c["resets"].as_u64().unwrap(), c["flows"].as_u64().unwrap());
            got.insert(cause, (resets, flows));
            order.push(cause);
            let pct = (resets as f64 * 1000.0 / want.resets as f64).round() / 10.0;
            assert_eq!(c["percent"].as_f64().unwrap(), pct, "{name} {cause}");
            assert_eq!(c["remedy"], cause.remedy());
            check_shares(name, c, resets);
            check_examples(name, c, cause, &want.rsts);
        }
        assert_eq!(got, want.causes, "{name}");
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{name}: precedence order {order:?}"
        );
    }
}

/// Top lists: at most five, most resets first, within the cause's total.
fn check_shares(name: &str, c: &Value, resets: u64) {
    for key in ["services", "client_networks"] {
        let list = c[key].as_array().unwrap();
        assert!(list.len() <= 5, "{name} {key}");
        assert_eq!(list.is_empty(), resets == 0, "{name} {key}");
        let n: Vec<u64> = list.iter().map(|s| s["resets"].as_u64().unwrap()).collect();
        assert!(n.windows(2).all(|w| w[0] >= w[1]), "{name} {key} {n:?}");
        assert!(n.iter().sum::<u64>() <= resets, "{name} {key}");
    }
}

/// An RST event without its `flow_uid`, which differs from run to run (the flow
/// key's hasher is seeded per process).
fn without_uid(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("flow_uid");
    v
}

/// Examples: up to three, each one of replay's RSTs of that cause, verbatim but for
/// the flow's uid.
fn check_examples(name: &str, c: &Value, cause: Cause, rsts: &[Value]) {
    let ex = c["examples"].as_array().unwrap();
    let of_cause = rsts.iter().filter(|r| r["cause"] == cause.as_str()).count();
    assert_eq!(ex.len(), of_cause.min(3), "{name} {cause}");
    for e in ex {
        let e = without_uid(e.clone());
        assert!(
            rsts.contains(&e),
            "{name}: example not among replay's RSTs: {e}"
        );
    }
}

#[test]
fn text_report_has_its_sections_and_fits_80_columns() {
    let dir = tempfile::tempdir().unwrap();
    let f = gen(dir.path(), "mixed");
    let want = replay_tally(&f);
    let out = run(&["diagnose"], &[&f]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
    let text = String::from_utf8(out.stdout).unwrap();
    for l in text.lines() {
        assert!(l.chars().count() <= 80, "wider than 80 columns: {l:?}");
    }
    let head = format!(
        "{} resets; {} of {} flows saw a reset.",
        want.resets, want.flows_reset, want.flows
    );
    for needle in [
        head.as_str(),
        "Why: causes",
        "When: resets per",
        "Anomalies (",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    for (cause, (resets, _)) in &want.causes {
        let row = format!("\n  {:<20} {:>8} ", cause.as_str(), resets);
        assert!(text.contains(&row), "no table row for {cause}:\n{text}");
        // "1 reset" or "N resets".
        let section = format!("── {} ── {} reset", cause.as_str(), resets);
        assert!(text.contains(&section), "no section for {cause}:\n{text}");
    }
    // The storm of `mixed` (2000 RSTs at 00:04:00) is where its resets cluster.
    assert!(text.contains("Resets cluster around 00:04:00"), "{text}");
}

#[test]
fn markdown_report_has_its_tables() {
    let dir = tempfile::tempdir().unwrap();
    let f = gen(dir.path(), "mixed");
    let out = run(&["diagnose", "--format", "markdown"], &[&f]);
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "# rstwatch diagnose: `",
        "## Why: causes in order of precedence",
        "| cause | resets | % | flows | meaning | remedy |",
        "## When: resets per",
        "## Anomalies",
        "| top services | resets | % |",
        "| top client networks | resets | % |",
        "| example RST | class | sender | flags | detail |",
    ] {
        assert!(md.contains(needle), "missing {needle:?}:\n{md}");
    }
}

#[test]
fn a_corrupt_file_exits_1_with_one_line_and_the_rest_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let good = gen(dir.path(), "refused");
    let full = std::fs::read(gen(dir.path(), "mixed")).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &full[..full.len() / 2 + 7]).unwrap();
    let out = run(&["diagnose", "--format", "json"], &[&cut, &good]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("cut.pcap") && lines[0].contains("packet record"),
        "{}",
        lines[0]
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j["resets"].as_u64().unwrap() > replay_tally(&good).resets);
}

#[test]
fn files_that_cannot_be_read_at_all_give_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, b"this is not a capture\n").unwrap();
    let missing = dir.path().join("missing.pcap");
    let out = run(&["diagnose"], &[&text, &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("notes.txt: not a pcap or pcapng file"));
    assert!(lines[1].contains("missing.pcap: cannot open"));
}

#[test]
fn a_bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rstwatch.toml");
    std::fs::write(&cfg, "[engine]\nflow_capacty = 10\n").unwrap();
    let f = gen(dir.path(), "refused");
    let out = run(&["diagnose", "--config", cfg.to_str().unwrap()], &[&f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("flow_capacty"));
}
