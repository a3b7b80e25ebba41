//! Every `gen` scenario's labels are recovered by the engine exactly: for each RST
//! packet, its class, direction, the scenario's key flags, the suspect verdict and the
//! cause; no RST without a label; the anomalies the scenario must raise; and the frames
//! that are not TCP counted as such.
//!
//! The verdict (class, direction, flags, suspect, anomalies) and the cause are checked
//! by separate tests, so that a failure says which of the two rule sets disagrees; both
//! through the engine's API and through the command line (`gen --labels` against
//! `replay`'s JSON).

use rstwatch_schema::{Anomaly, AnomalyKind, Record, RstEvent};
use rstwatch_sensor::gen::{self, GenOptions, Scenario};
use rstwatch_sensor::parse::Reject;
use rstwatch_sensor::{Engine, EngineConfig};

fn run(s: Scenario, o: &GenOptions) -> (gen::Generated, Vec<RstEvent>, Vec<Anomaly>) {
    let g = gen::generate(s, o);
    let mut e = Engine::new(&EngineConfig::default());
    let mut out: Vec<Record> = vec![];
    for f in &g.frames {
        e.process(f.ts_us, gen::LINK_TYPE, &f.data, &mut out);
    }
    e.finish(&mut out);
    let c = e.raw_counters();
    let not_ip = c.rejected[Reject::NotIp as usize] as usize;
    let not_tcp = c.rejected[Reject::NotTcp as usize] as usize;
    assert_eq!(
        (not_ip, not_tcp),
        (g.not_ip, g.not_tcp),
        "{s}: frames that are not TCP, counted as (not_ip, not_tcp)"
    );
    assert_eq!(
        c.rejected_total() as usize,
        g.not_ip + g.not_tcp,
        "{s}: generated TCP frames rejected: {:?}",
        e.counters()
    );
    assert_eq!(
        c.bad_checksum, 0,
        "{s}: generated frames with bad checksums"
    );
    let mut rst = vec![];
    let mut anomalies = vec![];
    for r in out {
        match r {
            Record::Rst(ev) => rst.push(ev),
            Record::Anomaly(a) => anomalies.push(a),
            Record::Flow(_) => {}
        }
    }
    (g, rst, anomalies)
}

/// What a check compares between a label and its event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Class, direction, required flags, suspect; the expected anomalies.
    Verdict,
    /// The cause.
    Cause,
}

fn describe(ev: &RstEvent) -> String {
    format!(
        "{} {}:{} > {}:{} seq {}",
        rstwatch_schema::timefmt::rfc3339_micros(ev.ts_us),
        ev.src,
        ev.sport,
        ev.dst,
        ev.dport,
        ev.seq
    )
}

fn check(s: Scenario, o: &GenOptions, part: Part) -> Vec<String> {
    let (g, events, anomalies) = run(s, o);
    let mut problems = vec![];
    if events.len() != g.labels.len() {
        problems.push(format!(
            "{s}: {} RST events for {} labelled RSTs",
            events.len(),
            g.labels.len()
        ));
    }
    for l in &g.labels {
        let Some(ev) = events.iter().find(|e| l.is_for(e)) else {
            problems.push(format!("{s}: no event for {l:?}"));
            continue;
        };
        match part {
            Part::Verdict => {
                let missing: Vec<_> = l.flags.iter().filter(|f| !ev.flags.contains(**f)).collect();
                if ev.class != l.class
                    || ev.dir != l.dir
                    || !missing.is_empty()
                    || ev.suspect != l.suspect
                {
                    problems.push(format!(
                        "{s}: {}: got {} {} {:?} suspect={}, want {} {} {:?} suspect={}",
                        describe(ev),
                        ev.class,
                        ev.dir,
                        ev.flags,
                        ev.suspect,
                        l.class,
                        l.dir,
                        l.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                        l.suspect
                    ));
                }
            }
            Part::Cause => {
                if ev.cause != l.cause {
                    problems.push(format!(
                        "{s}: {}: cause {} ({:?}), want {}",
                        describe(ev),
                        ev.cause,
                        ev.cause_detail,
                        l.cause
                    ));
                }
            }
        }
    }
    if part == Part::Verdict {
        for kind in &g.anomalies {
            if !anomalies.iter().any(|a| a.kind == *kind) {
                problems.push(format!(
                    "{s}: no {kind} anomaly (got {:?})",
                    anomalies.iter().map(|a| a.kind).collect::<Vec<_>>()
                ));
            }
        }
    }
    problems
}

fn options(s: Scenario) -> GenOptions {
    GenOptions {
        flows: if s == Scenario::Mixed { 400 } else { 2000 },
        ..GenOptions::default()
    }
}

fn assert_none(problems: Vec<String>) {
    let shown: Vec<_> = problems.iter().take(60).cloned().collect();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        shown.join("\n")
    );
}

#[test]
fn every_scenario_is_recovered_exactly() {
    let mut problems = vec![];
    for &s in Scenario::ALL {
        problems.extend(check(s, &options(s), Part::Verdict));
    }
    assert_none(problems);
}

#[test]
fn every_scenario_gets_its_causes() {
    let mut problems = vec![];
    for &s in Scenario::ALL {
        problems.extend(check(s, &options(s), Part::Cause));
    }
    assert_none(problems);
}

/// Scenarios without forged RSTs: nothing suspect, no injection anomaly. Every
/// scenario but the two that forge RSTs and `mixed`, which holds them.
fn benign() -> impl Iterator<Item = Scenario> {
    Scenario::ALL.iter().copied().filter(|s| {
        !matches!(
            s,
            Scenario::Injection | Scenario::BlindInWindow | Scenario::Mixed
        )
    })
}

#[test]
fn benign_scenarios_raise_no_suspect_and_no_injection_anomaly() {
    for s in benign() {
        let (_, events, anomalies) = run(s, &GenOptions::default());
        assert!(!events.is_empty(), "{s}: no RSTs at all");
        let suspects: Vec<_> = events.iter().filter(|e| e.suspect).collect();
        assert!(
            suspects.is_empty(),
            "{s}: {} suspect RSTs, e.g. {:?}",
            suspects.len(),
            suspects[0]
        );
        assert!(
            anomalies.iter().all(|a| a.kind != AnomalyKind::Injection),
            "{s}"
        );
    }
}

#[test]
fn benign_list_is_every_scenario_without_forged_rsts() {
    for &s in Scenario::ALL {
        let forged = gen::generate(s, &GenOptions::default())
            .labels
            .iter()
            .any(|l| l.suspect);
        assert_eq!(benign().any(|b| b == s), !forged, "{s}");
    }
}

fn other_seeds(part: Part) -> Vec<String> {
    let mut problems = vec![];
    for seed in [2, 3] {
        let o = GenOptions {
            seed,
            flows: 300,
            ..GenOptions::default()
        };
        problems.extend(check(Scenario::Mixed, &o, part));
    }
    problems
}

#[test]
fn other_seeds_are_recovered_too() {
    assert_none(other_seeds(Part::Verdict));
}

#[test]
fn other_seeds_get_their_causes_too() {
    assert_none(other_seeds(Part::Cause));
}

// ---- the same through the command line: `gen --labels` against `replay` ----

/// The key a label and an `"rst"` record share: timestamp, four-tuple, seq.
fn json_key(v: &serde_json::Value) -> String {
    ["ts", "src", "sport", "dst", "dport", "seq"]
        .iter()
        .map(|k| v[*k].to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `gen --labels` and `replay` for `s` and compares every label with the
/// `"rst"` record of the same packet.
fn cli_problems(s: Scenario, part: Part) -> Vec<String> {
    let bin = env!("CARGO_BIN_EXE_rstwatch-sensor");
    // One directory per call: several tests run this for the same scenario at once.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rstwatch-scen-{}-{n}-{s}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pcap, labels) = (dir.join("s.pcap"), dir.join("s.jsonl"));
    let g = std::process::Command::new(bin)
        .args(["gen", "--scenario", s.as_str(), "--flows", "300", "--out"])
        .arg(&pcap)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let r = std::process::Command::new(bin)
        .args(["replay", "--only", "rst"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let parse = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let events: std::collections::HashMap<String, serde_json::Value> =
        parse(&String::from_utf8_lossy(&r.stdout))
            .into_iter()
            .map(|v| (json_key(&v), v))
            .collect();
    let wanted = parse(&std::fs::read_to_string(&labels).unwrap());
    std::fs::remove_dir_all(&dir).ok();
    let mut problems = vec![];
    if events.len() != wanted.len() {
        problems.push(format!(
            "{s}: {} records, {} labels",
            events.len(),
            wanted.len()
        ));
    }
    let fields: &[&str] = match part {
        Part::Verdict => &["class", "dir", "suspect"],
        Part::Cause => &["cause"],
    };
    for l in &wanted {
        let Some(ev) = events.get(&json_key(l)) else {
            problems.push(format!("{s}: no record for {l}"));
            continue;
        };
        let flags_ok = part == Part::Cause
            || l["flags"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| ev["flags"].as_array().unwrap().contains(f));
        if !flags_ok || fields.iter().any(|f| ev[*f] != l[*f]) {
            problems.push(format!("{s}: replay printed {ev}\n    label says {l}"));
        }
    }
    problems
}

#[test]
fn replay_prints_what_gen_labels_say() {
    let mut problems = vec![];
    for &s in Scenario::ALL {
        problems.extend(cli_problems(s, Part::Verdict));
    }
    assert_none(problems);
}

#[test]
fn replay_prints_the_causes_gen_labels_give() {
    let mut problems = vec![];
    for &s in Scenario::ALL {
        problems.extend(cli_problems(s, Part::Cause));
    }
    assert_none(problems);
}
