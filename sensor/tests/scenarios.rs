//! Every `gen` scenario's labels are recovered by the engine exactly: for each RST
//! packet, its class, direction, the scenario's key flags and the suspect verdict; no
//! RST without a label; and the anomalies the scenario must raise.

use rstwatch_schema::{Anomaly, Record, RstEvent};
use rstwatch_sensor::gen::{self, GenOptions, Scenario};
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
    assert_eq!(
        c.rejected_total(),
        0,
        "{s}: generated frames rejected: {:?}",
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

fn check(s: Scenario, o: &GenOptions) -> Vec<String> {
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
        let Some(ev) = events
            .iter()
            .find(|e| l.is_for(e.src, e.sport, e.dst, e.dport, e.seq))
        else {
            problems.push(format!("{s}: no event for {l:?}"));
            continue;
        };
        let missing: Vec<_> = l.flags.iter().filter(|f| !ev.flags.contains(**f)).collect();
        if ev.class != l.class || ev.dir != l.dir || !missing.is_empty() || ev.suspect != l.suspect
        {
            problems.push(format!(
                "{s}: {}:{} > {}:{} seq {}: got {} {} {:?} suspect={}, want {} {} {:?} suspect={}",
                ev.src,
                ev.sport,
                ev.dst,
                ev.dport,
                ev.seq,
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
    for kind in &g.anomalies {
        if !anomalies.iter().any(|a| a.kind == *kind) {
            problems.push(format!(
                "{s}: no {kind} anomaly (got {:?})",
                anomalies.iter().map(|a| a.kind).collect::<Vec<_>>()
            ));
        }
    }
    problems
}

#[test]
fn every_scenario_is_recovered_exactly() {
    let mut problems = vec![];
    for s in Scenario::ALL {
        let o = GenOptions {
            flows: if *s == Scenario::Mixed { 400 } else { 2000 },
            ..GenOptions::default()
        };
        problems.extend(check(*s, &o));
    }
    let shown: Vec<_> = problems.iter().take(40).cloned().collect();
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        shown.join("\n")
    );
}

#[test]
fn benign_scenarios_raise_no_suspect_and_no_injection_anomaly() {
    for s in [
        Scenario::Refused,
        Scenario::Abort,
        Scenario::IdleTimeout,
        Scenario::AfterFin,
        Scenario::Storm,
        Scenario::Scan,
    ] {
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
            anomalies
                .iter()
                .all(|a| a.kind != rstwatch_schema::AnomalyKind::Injection),
            "{s}"
        );
    }
}

#[test]
fn other_seeds_are_recovered_too() {
    let mut problems = vec![];
    for seed in [2, 3] {
        let o = GenOptions {
            seed,
            flows: 300,
            ..GenOptions::default()
        };
        problems.extend(check(Scenario::Mixed, &o));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
