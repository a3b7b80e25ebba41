//! The SQL cookbook (`schema/queries/`, `schema/README.md`) over `gen` scenario data:
//! every scenario is generated, run through the sensor's engine and shipped to a real
//! collector writing to a real ClickHouse 18.16, then every cookbook query is run with
//! bound parameters and its answer compared with the numbers the scenario implies (its
//! labels: class, direction, cause and verdict of every RST; the engine's own records
//! where a label has no such field, e.g. flows and silences). The same rows are then
//! loaded into current ClickHouse (chdb) where each query runs with native query
//! parameters and must answer exactly as 18.16 did, and the Grafana dashboard is
//! checked and every panel and variable query run (`scripts/check_cookbook_chdb.py`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use rstwatch_collector::testing::{ClickHouse, Collector, TempDir};
use rstwatch_schema::cookbook::{self, Params, Step};
use rstwatch_schema::stats::{NamedCounter, SensorStats};
use rstwatch_schema::{Anomaly, Cause, Dir, FlowRecord, IpBytes, Record, RstClass, RstEvent};
use rstwatch_sensor::gen::{self, GenOptions, Label, Scenario};
use rstwatch_sensor::ship::{ShipArgs, ShipSink};
use rstwatch_sensor::{Engine, EngineConfig, Sink};

const COLLECTOR: &str = env!("CARGO_BIN_EXE_rstwatch-collector");
const DB: &str = "rstwatch";
const TOKEN: &str = "cookbook";
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// Monday 2026-01-05 00:00:00 UTC: the day the queries look at. The week before holds
/// the previous period of `week_over_week`.
const T0: i64 = 1_767_571_200;

/// What was loaded: (sensor, scenario, start), one shipment (one boot) each.
const LOAD: &[(&str, Scenario, i64)] = &[
    ("edge-a", Scenario::Refused, T0 - 7 * DAY + HOUR),
    ("edge-a", Scenario::IdleTimeout, T0 - 7 * DAY + 2 * HOUR),
    ("edge-a", Scenario::Refused, T0),
    ("edge-a", Scenario::IdleTimeout, T0 + HOUR),
    ("edge-a", Scenario::Injection, T0 + 2 * HOUR),
    ("edge-a", Scenario::BlindInWindow, T0 + 2 * HOUR + 1_800),
    ("edge-a", Scenario::Scan, T0 + 3 * HOUR),
    ("edge-a", Scenario::Backscatter, T0 + 4 * HOUR),
    ("edge-a", Scenario::Storm, T0 + 5 * HOUR),
    ("edge-a", Scenario::VipFailover, T0 + 6 * HOUR),
    ("edge-b", Scenario::AppAbort, T0 + 7 * HOUR),
];

/// One scenario as generated and as the sensor saw it.
struct Shipped {
    sensor: &'static str,
    labels: Vec<Label>,
    records: Vec<Record>,
    frames: u64,
    batches: u64,
}

/// Everything the checks compare against.
struct World {
    shipped: Vec<Shipped>,
}

impl World {
    fn labels(&self, from: i64, to: i64) -> impl Iterator<Item = (&'static str, &Label)> {
        self.shipped.iter().flat_map(move |s| {
            s.labels
                .iter()
                .filter(move |l| in_range(l.ts_us, from, to))
                .map(move |l| (s.sensor, l))
        })
    }

    fn rsts(&self, from: i64, to: i64) -> impl Iterator<Item = &RstEvent> {
        self.records().filter_map(move |r| match r {
            Record::Rst(e) if in_range(e.ts_us, from, to) => Some(e),
            _ => None,
        })
    }

    fn flows(&self, from: i64, to: i64) -> impl Iterator<Item = &FlowRecord> {
        self.records().filter_map(move |r| match r {
            Record::Flow(f) if in_range(f.ts_end_us, from, to) => Some(f),
            _ => None,
        })
    }

    fn records(&self) -> impl Iterator<Item = &Record> {
        self.shipped.iter().flat_map(|s| s.records.iter())
    }
}

fn in_range(ts_us: i64, from: i64, to: i64) -> bool {
    ts_us >= from * 1_000_000 && ts_us < to * 1_000_000
}

/// Generates `scenario`, runs it through the engine and ships what the engine says,
/// with its counters as the boot's `sensor_stats` (stamped with the last packet's time).
fn ship_scenario(
    col: &Collector,
    dir: &Path,
    sensor: &'static str,
    s: Scenario,
    start: i64,
) -> Shipped {
    let opts = GenOptions {
        start_us: start * 1_000_000,
        flows: 1_200,
        ..GenOptions::default()
    };
    let g = gen::generate(s, &opts);
    let mut engine = Engine::new(&EngineConfig::default());
    let mut records: Vec<Record> = Vec::new();
    for f in &g.frames {
        engine.process(f.ts_us, gen::LINK_TYPE, &f.data, &mut records);
    }
    engine.finish(&mut records);
    let args = ShipArgs {
        ship: Some(col.addr()),
        plaintext: true,
        token: Some(TOKEN.into()),
        spool_dir: dir.join(format!("spool-{s}-{start}")),
        sensor_id: Some(sensor.into()),
        batch_max_ms: 100,
        ship_timeout_secs: 120,
        ..ShipArgs::default()
    };
    let mut sink = ShipSink::start(&args).unwrap();
    for r in &records {
        match r.clone() {
            Record::Rst(e) => sink.rst(e),
            Record::Flow(f) => sink.flow(f),
            Record::Anomaly(a) => sink.anomaly(a),
        }
    }
    let counters = engine.counters().into_iter();
    sink.stats(SensorStats {
        ts_us: g.frames.last().map_or(start * 1_000_000, |f| f.ts_us),
        counters: counters
            .map(|(n, v)| NamedCounter {
                name: n.into(),
                value: v,
            })
            .collect(),
    });
    let report = sink.finish().unwrap();
    assert_eq!(
        report.events_acked, report.events_sealed,
        "{s}: all delivered"
    );
    Shipped {
        sensor,
        labels: g.labels,
        records,
        frames: g.frames.len() as u64,
        batches: report.batches_acked,
    }
}

/// A query's answer: column names and rows of TabSeparated fields.
#[derive(Debug, PartialEq)]
struct Answer {
    cols: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Answer {
    fn parse(tsv: &str) -> Answer {
        let mut lines = tsv.lines();
        let cols = lines
            .next()
            .unwrap_or("")
            .split('\t')
            .map(String::from)
            .collect();
        let rows = lines
            .map(|l| l.split('\t').map(String::from).collect())
            .collect();
        Answer { cols, rows }
    }

    fn col(&self, name: &str) -> usize {
        self.cols
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.cols))
    }

    /// The values of columns `names`, row by row.
    fn pick(&self, names: &[&str]) -> Vec<Vec<String>> {
        let idx: Vec<usize> = names.iter().map(|n| self.col(n)).collect();
        self.rows
            .iter()
            .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
            .collect()
    }

    fn num(&self, row: usize, name: &str) -> f64 {
        let v = &self.rows[row][self.col(name)];
        v.parse().unwrap_or_else(|e| panic!("{name} = {v:?}: {e}"))
    }
}

fn run(ch: &ClickHouse, name: &str, p: &Params) -> Answer {
    let sql = cookbook::bound(name, p).unwrap();
    let out = ch
        .query_db(DB, &format!("{sql}\nFORMAT TabSeparatedWithNames"))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    Answer::parse(&out)
}

fn params(from: i64, to: i64, sensor: &str, port: u16, step: Step) -> Params {
    Params {
        from_s: from as u32,
        to_s: to as u32,
        sensor: sensor.into(),
        service_port: port,
        step,
    }
}

/// "2026-01-05 01:00:00": how ClickHouse prints a DateTime in UTC.
fn utc(ts_s: i64) -> String {
    let s = rstwatch_schema::timefmt::rfc3339_micros(ts_s * 1_000_000);
    s[..19].replace('T', " ")
}

/// The same with microseconds.
fn utc_us(ts_us: i64) -> String {
    let s = rstwatch_schema::timefmt::rfc3339_micros(ts_us);
    s[..26].replace('T', " ")
}

/// The server side of an RST, as the rollups define it.
fn server_of(dir: Dir, src: (IpBytes, u16), dst: (IpBytes, u16)) -> (String, u16) {
    let (a, p) = if dir == Dir::Resp { src } else { dst };
    (a.to_string(), p)
}

fn label_server(l: &Label) -> (String, u16) {
    server_of(l.dir, (l.src, l.sport), (l.dst, l.dport))
}

/// "addr:port" or "[v6]:port", as the anomaly subjects and `anomalies.sql` print it.
fn service(s: &(String, u16)) -> String {
    if s.0.contains(':') {
        format!("[{}]:{}", s.0, s.1)
    } else {
        format!("{}:{}", s.0, s.1)
    }
}

fn rows<T: ToString>(m: BTreeMap<Vec<String>, T>) -> BTreeSet<Vec<String>> {
    m.into_iter()
        .map(|(mut k, v)| {
            k.push(v.to_string());
            k
        })
        .collect()
}

#[test]
fn cookbook_answers_what_the_scenarios_imply_on_18_16_and_chdb() {
    let Some(ch) = ClickHouse::start_migrated(Path::new(COLLECTOR), DB, "cookbook") else {
        return;
    };
    let dir = TempDir::new("rstwatch-cookbook").unwrap();
    let col = Collector::start(
        Path::new(COLLECTOR),
        &ch.url(),
        DB,
        &["--plaintext", "--token", TOKEN],
        &dir.path().join("collector.log"),
    )
    .unwrap();
    let t = std::time::Instant::now();
    let shipped = LOAD
        .iter()
        .map(|&(sensor, s, start)| ship_scenario(&col, dir.path(), sensor, s, start))
        .collect();
    let w = World { shipped };
    println!("loaded {} scenarios in {:?}", LOAD.len(), t.elapsed());
    reset_rate_by_class(&ch, &w);
    reset_rate_by_cause(&ch, &w);
    top_services(&ch, &w);
    refused_hotspots(&ch, &w);
    suspected_injections(&ch, &w);
    idle_timeouts(&ch, &w);
    anomalies(&ch, &w);
    week_over_week(&ch, &w);
    sensor_health(&ch, &w);
    other_queries_run(&ch);
    idle_timeout_spike(&ch);
    same_answers_on_chdb_and_grafana(&ch, dir.path());
}

/// Hourly RSTs per class of the day, all sensors; then one sensor, one port, and the
/// day and minute steps, each against the labels.
fn reset_rate_by_class(ch: &ClickHouse, w: &World) {
    let want = |from: i64, to: i64, sensor: &str, port: u16, step: i64| {
        let mut m: BTreeMap<Vec<String>, u64> = BTreeMap::new();
        for (s, l) in w.labels(from, to) {
            if (sensor.is_empty() || s == sensor) && (port == 0 || label_server(l).1 == port) {
                let bucket = l.ts_us.div_euclid(1_000_000 * step) * step;
                *m.entry(vec![utc(bucket), l.class.as_str().into()])
                    .or_default() += 1;
            }
        }
        rows(m)
    };
    for (from, to, sensor, port, step) in [
        (T0, T0 + DAY, "", 0, Step::Hour),
        (T0, T0 + DAY, "edge-b", 0, Step::Hour),
        (T0, T0 + DAY, "", 443, Step::Hour),
        (T0 - 7 * DAY, T0 + DAY, "", 0, Step::Day),
        (T0 + 3 * HOUR, T0 + 4 * HOUR, "", 0, Step::Minute),
    ] {
        let p = params(from, to, sensor, port, step);
        let got: BTreeSet<Vec<String>> = run(ch, "reset_rate_by_class", &p)
            .pick(&["time", "class", "rsts"])
            .into_iter()
            .collect();
        let expected = want(from, to, sensor, port, i64::from(step.seconds()));
        assert!(!expected.is_empty(), "{p:?}: the scenarios put RSTs here");
        assert_eq!(got, expected, "reset_rate_by_class {p:?}");
    }
    // The rate column: RSTs per minute of the bucket.
    let a = run(
        ch,
        "reset_rate_by_class",
        &params(T0, T0 + DAY, "", 0, Step::Hour),
    );
    for r in 0..a.rows.len() {
        let per_min = a.num(r, "rsts") / 60.0;
        assert!((a.num(r, "rsts_per_minute") - per_min).abs() < 0.001);
    }
}

/// Hourly RSTs per cause and the suspect ones, against the labels.
fn reset_rate_by_cause(ch: &ClickHouse, w: &World) {
    for (sensor, port) in [("", 0u16), ("edge-a", 23)] {
        let mut m: BTreeMap<Vec<String>, (u64, u64)> = BTreeMap::new();
        for (s, l) in w.labels(T0, T0 + DAY) {
            if (sensor.is_empty() || s == sensor) && (port == 0 || label_server(l).1 == port) {
                let hour = l.ts_us.div_euclid(1_000_000 * HOUR) * HOUR;
                let e = m
                    .entry(vec![utc(hour), l.cause.as_str().into()])
                    .or_default();
                e.0 += 1;
                e.1 += u64::from(l.suspect);
            }
        }
        let expected: BTreeSet<Vec<String>> = m
            .into_iter()
            .map(|(mut k, (n, s))| {
                k.extend([n.to_string(), s.to_string()]);
                k
            })
            .collect();
        let p = params(T0, T0 + DAY, sensor, port, Step::Hour);
        let got: BTreeSet<Vec<String>> = run(ch, "reset_rate_by_cause", &p)
            .pick(&["time", "cause", "rsts", "suspect_rsts"])
            .into_iter()
            .collect();
        assert_eq!(got, expected, "reset_rate_by_cause {p:?}");
    }
}

/// RSTs per service from the labels, flows per service from the engine's records; the
/// top service is the storm's load balancer, reset mostly by `abort`.
fn top_services(ch: &ClickHouse, w: &World) {
    let (from, to) = (T0, T0 + DAY);
    let mut rsts: BTreeMap<(String, u16), u64> = BTreeMap::new();
    for (_, l) in w.labels(from, to) {
        *rsts.entry(label_server(l)).or_default() += 1;
    }
    let mut flows: BTreeMap<(String, u16), u64> = BTreeMap::new();
    for f in w.flows(from, to) {
        *flows.entry((f.resp_h.to_string(), f.resp_p)).or_default() += 1;
    }
    let a = run(ch, "top_services", &params(from, to, "", 0, Step::Hour));
    assert_eq!(a.rows.len(), rsts.len().min(50));
    for (i, r) in a
        .pick(&["server_addr", "server_port", "rsts", "flows"])
        .iter()
        .enumerate()
    {
        let key = (r[0].clone(), r[1].parse::<u16>().unwrap());
        assert_eq!(r[2], rsts[&key].to_string(), "rsts of {key:?}");
        let nflows = flows.get(&key).copied().unwrap_or(0);
        assert_eq!(r[3], nflows.to_string(), "flows of {key:?}");
        if nflows > 0 {
            let ratio = rsts[&key] as f64 / nflows as f64;
            assert!(
                (a.num(i, "resets_per_flow") - ratio).abs() < 0.0001,
                "{key:?}"
            );
        }
    }
    let most = rsts.values().max().unwrap();
    assert_eq!(a.num(0, "rsts"), *most as f64, "most RSTs first");
    assert_eq!(
        a.pick(&["server_addr", "server_port", "top_cause"])[0],
        ["203.0.113.10", "443", "abort"]
    );
    // The storm resets 1200 flows; the 4/5 with their handshake in the capture are
    // the service's own (the rest are unsolicited: their server is the other end).
    assert_eq!(*most, 1_200 * 4 / 5, "the storm");
}

/// One service's refusals, as the labels count them.
#[derive(Default)]
struct Hotspot {
    refusals: u64,
    clients: BTreeSet<IpBytes>,
    scan: u64,
    first: i64,
    last: i64,
}

/// Every service that refused a SYN, with its clients and how many refusals went to
/// the scanner (cause `scan`), all from the labels.
fn refused_hotspots(ch: &ClickHouse, w: &World) {
    let mut m: BTreeMap<(String, u16), Hotspot> = BTreeMap::new();
    for (_, l) in w
        .labels(T0, T0 + DAY)
        .filter(|(_, l)| l.class == RstClass::Reject)
    {
        let e = m.entry(label_server(l)).or_insert(Hotspot {
            first: i64::MAX,
            last: i64::MIN,
            ..Hotspot::default()
        });
        e.refusals += 1;
        e.clients
            .insert(if l.dir == Dir::Resp { l.dst } else { l.src });
        e.scan += u64::from(l.cause == Cause::Scan);
        e.first = e.first.min(l.ts_us);
        e.last = e.last.max(l.ts_us);
    }
    let expected: BTreeSet<Vec<String>> = m
        .into_iter()
        .map(|((a, p), h)| {
            vec![
                a,
                p.to_string(),
                h.refusals.to_string(),
                h.clients.len().to_string(),
                h.scan.to_string(),
                (h.refusals - h.scan).to_string(),
                utc(h.first.div_euclid(1_000_000)),
                utc(h.last.div_euclid(1_000_000)),
            ]
        })
        .collect();
    let cols = [
        "server_addr",
        "server_port",
        "refusals",
        "clients",
        "scan_refusals",
        "client_refusals",
        "first_utc",
        "last_utc",
    ];
    let got: BTreeSet<Vec<String>> = run(
        ch,
        "refused_hotspots",
        &params(T0, T0 + DAY, "", 0, Step::Hour),
    )
    .pick(&cols)
    .into_iter()
    .collect();
    // refused (24 RST/ACKs) and scan (32 on port 23, 21 on 203.0.113.25).
    let total: u64 = got.iter().map(|r| r[2].parse::<u64>().unwrap()).sum();
    assert_eq!(total, 24 + 32 + 21);
    assert_eq!(got, expected);
}

/// Every suspect RST of the day, to the microsecond, with its flags; the `injection`
/// scenario's injector (TTL 243) impersonates clients at TTL 52: delta 191.
fn suspected_injections(ch: &ClickHouse, w: &World) {
    let a = run(
        ch,
        "suspected_injections",
        &params(T0, T0 + DAY, "", 0, Step::Hour),
    );
    let expected: BTreeSet<String> = w
        .labels(T0, T0 + DAY)
        .filter(|(_, l)| l.suspect)
        .map(|(_, l)| utc_us(l.ts_us))
        .collect();
    let got: BTreeSet<String> = a
        .pick(&["time_utc"])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(a.rows.len(), expected.len(), "one row per suspect RST");
    assert_eq!(got, expected);
    let injection_start = T0 + 2 * HOUR;
    let mut with_delta = 0;
    for r in a.pick(&[
        "time_utc",
        "flag_names",
        "ttl",
        "ttl_baseline",
        "ttl_delta",
        "class",
    ]) {
        let ttl_flag = r[1].contains("'ttl_mismatch'");
        assert_eq!(
            r[3] != "0",
            ttl_flag,
            "a baseline exactly when the TTL is off: {r:?}"
        );
        if ttl_flag && r[0] < utc(injection_start + 1_800) {
            assert_eq!(
                (&r[2][..], &r[3][..], &r[4][..]),
                ("243", "52", "191"),
                "{r:?}"
            );
            with_delta += 1;
        }
        assert_eq!(r[5], "abort");
    }
    // Groups A (4 RSTs) and B (2 bursts of 3): the forged RSTs with the injector's TTL.
    assert_eq!(with_delta, 4 + 6);
}

/// Idle-timeout resets per service: counts from the labels, silences from the engine.
fn idle_timeouts(ch: &ClickHouse, w: &World) {
    let mut m: BTreeMap<(String, u16), Vec<u64>> = BTreeMap::new();
    for e in w
        .rsts(T0, T0 + DAY)
        .filter(|e| e.cause == Cause::IdleTimeout)
    {
        let key = server_of(e.dir, (e.src, e.sport), (e.dst, e.dport));
        m.entry(key).or_default().push((e.silence_ms + 500) / 1_000);
    }
    let labelled = w
        .labels(T0, T0 + DAY)
        .filter(|(_, l)| l.cause == Cause::IdleTimeout)
        .count();
    assert_eq!(m.values().map(Vec::len).sum::<usize>(), labelled);
    let a = run(
        ch,
        "idle_timeouts",
        &params(T0, T0 + DAY, "", 0, Step::Hour),
    );
    assert_eq!(a.rows.len(), m.len());
    let got = a.pick(&[
        "server_addr",
        "server_port",
        "resets",
        "min_silence_s",
        "max_silence_s",
        "estimate",
        "estimated_timeout_s",
    ]);
    for r in got {
        let s = &m[&(r[0].clone(), r[1].parse().unwrap())];
        let (min, max) = (s.iter().min().unwrap(), s.iter().max().unwrap());
        assert_eq!(r[2], s.len().to_string(), "{r:?}");
        assert_eq!(
            (&r[3], &r[4]),
            (&min.to_string(), &max.to_string()),
            "{r:?}"
        );
        // The scenario's silences are 380-440 s, one flow each: no spike, so the
        // estimate is the shortest silence, an upper bound of the timeout.
        assert!((380..=440).contains(min), "{r:?}");
        assert_eq!((&r[5][..], &r[6]), ("at_most", &min.to_string()), "{r:?}");
    }
}

/// The RSTs an anomaly episode counts, by the rules `anomalies.sql` documents, applied
/// to the labels: (RSTs, distinct services).
fn episode_rsts(w: &World, kind: &str, subject: &str) -> (u64, BTreeSet<String>) {
    let mut n = 0;
    let mut services = BTreeSet::new();
    for (_, l) in w.labels(T0, T0 + DAY) {
        let svc = service(&label_server(l));
        let scanner = if l.class == RstClass::Reject {
            l.dst
        } else {
            l.src
        };
        let hits = match kind {
            "scan" => u64::from(l.cause == Cause::Scan && scanner.to_string() == subject),
            "backscatter" => {
                u64::from(l.cause == Cause::Backscatter && l.src.to_string() == subject)
            }
            "rst_storm" => u64::from(svc == subject) + u64::from(l.src.to_string() == subject),
            "injection" => u64::from(l.suspect && svc == subject),
            "failover" => u64::from(l.cause == Cause::StateLoss && label_server(l).0 == subject),
            other => panic!("unexpected anomaly kind {other}"),
        };
        if hits > 0 {
            n += hits;
            services.insert(svc);
        }
    }
    (n, services)
}

/// One row per (kind, subject, sensor) the engine raised, with its first report, peak
/// and report count, and the services its RSTs hit.
fn anomalies(ch: &ClickHouse, w: &World) {
    let mut want: BTreeMap<(String, String, String), Vec<&Anomaly>> = BTreeMap::new();
    for s in &w.shipped {
        for r in &s.records {
            if let Record::Anomaly(a) = r {
                if in_range(a.ts_us, T0, T0 + DAY) {
                    let key = (a.kind.as_str().into(), a.subject.clone(), s.sensor.into());
                    want.entry(key).or_default().push(a);
                }
            }
        }
    }
    let kinds: BTreeSet<&str> = want.keys().map(|k| k.0.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["backscatter", "failover", "injection", "rst_storm", "scan"]),
        "the scenarios raise all five"
    );
    let a = run(ch, "anomalies", &params(T0, T0 + DAY, "", 0, Step::Hour));
    assert_eq!(a.rows.len(), want.len());
    let cols = [
        "kind",
        "subject",
        "sensor_id",
        "start_utc",
        "reports",
        "peak_value",
        "rsts",
        "services",
    ];
    for r in a.pick(&cols) {
        let reports = &want[&(r[0].clone(), r[1].clone(), r[2].clone())];
        let start = reports.iter().map(|a| a.ts_us).min().unwrap();
        let peak = reports.iter().map(|a| a.value).fold(f64::MIN, f64::max);
        assert_eq!(r[3], utc(start.div_euclid(1_000_000)), "{r:?}");
        assert_eq!(r[4], reports.len().to_string(), "{r:?}");
        assert_eq!(r[5].parse::<f64>().unwrap(), peak, "{r:?}");
        let (n, services) = episode_rsts(w, &r[0], &r[1]);
        assert!(n > 0, "every episode has RSTs behind it: {r:?}");
        assert_eq!(
            (&r[6], &r[7]),
            (&n.to_string(), &services.len().to_string()),
            "{r:?}"
        );
    }
    // A service filter keeps only the episodes whose RSTs hit it: the storm's port.
    let only = run(ch, "anomalies", &params(T0, T0 + DAY, "", 443, Step::Hour));
    let storm = only.pick(&["kind", "affected_services"]);
    assert!(
        storm
            .iter()
            .any(|r| r[0] == "rst_storm" && r[1].contains("'203.0.113.10:443'")),
        "{storm:?}"
    );
    assert!(storm.len() < a.rows.len());
}

/// RSTs per cause on the day against the same day a week earlier (labels).
fn week_over_week(ch: &ClickHouse, w: &World) {
    let count = |from: i64| {
        let mut m: BTreeMap<String, i64> = BTreeMap::new();
        for (_, l) in w.labels(from, from + DAY) {
            *m.entry(l.cause.as_str().into()).or_default() += 1;
            *m.entry("all".into()).or_default() += 1;
        }
        m
    };
    let (now, before) = (count(T0), count(T0 - 7 * DAY));
    let causes: BTreeSet<&String> = now.keys().chain(before.keys()).collect();
    let expected: BTreeSet<Vec<String>> = causes
        .into_iter()
        .map(|c| {
            let (n, b) = (
                now.get(c).copied().unwrap_or(0),
                before.get(c).copied().unwrap_or(0),
            );
            vec![c.clone(), n.to_string(), b.to_string(), (n - b).to_string()]
        })
        .collect();
    let a = run(
        ch,
        "week_over_week",
        &params(T0, T0 + DAY, "", 0, Step::Hour),
    );
    assert_eq!(a.rows[0][a.col("cause")], "all", "the total first");
    let got: BTreeSet<Vec<String>> = a
        .pick(&["cause", "rsts", "previous_rsts", "change"])
        .into_iter()
        .collect();
    assert_eq!(got, expected);
    // Both weeks had the `refused` scenario (24) and the day also the scan's first 24
    // rejects: +100 %.
    assert_eq!((before["refused"], now["refused"]), (24, 48));
    let refused = a.pick(&["cause", "change_pct"]);
    assert!(
        refused.contains(&vec!["refused".into(), "100".into()]),
        "{refused:?}"
    );
}

/// Per sensor: the engine's frames, no loss, every batch in the ledger.
fn sensor_health(ch: &ClickHouse, w: &World) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let a = run(
        ch,
        "sensor_health",
        &params(T0 - 8 * DAY, now + HOUR, "", 0, Step::Hour),
    );
    let sensors: BTreeSet<&str> = w.shipped.iter().map(|s| s.sensor).collect();
    assert_eq!(a.rows.len(), sensors.len());
    for (i, sensor) in sensors.into_iter().enumerate() {
        let mine = || w.shipped.iter().filter(move |s| s.sensor == sensor);
        let evicted = mine()
            .flat_map(|s| s.records.iter())
            .filter(|r| matches!(r, Record::Flow(f) if f.close == rstwatch_schema::CloseReason::Evicted))
            .count();
        let last = mine()
            .flat_map(|s| s.labels.last())
            .map(|l| l.ts_us)
            .max()
            .unwrap();
        let r = a.pick(&[
            "sensor_id",
            "frames",
            "capture_lost",
            "flows_evicted",
            "spool_backlog_batches",
            "batches",
            "missing_batches",
        ]);
        let frames: u64 = mine().map(|s| s.frames).sum();
        let batches: u64 = mine().map(|s| s.batches).sum();
        let expected = [
            sensor.to_string(),
            frames.to_string(),
            "0".into(),
            evicted.to_string(),
            "0".into(),
            batches.to_string(),
            "0".into(),
        ];
        assert_eq!(r[i], expected);
        let since = a.num(i, "seconds_since_last_batch");
        assert!((0.0..600.0).contains(&since), "{since}");
        // The stats are stamped with the last packet; the last RST is close before it.
        let stats = &a.rows[i][a.col("last_stats_utc")];
        assert!(stats >= &utc(last.div_euclid(1_000_000)), "{stats}");
    }
    let one = run(
        ch,
        "sensor_health",
        &params(T0 - 8 * DAY, now + HOUR, "edge-b", 0, Step::Hour),
    );
    assert_eq!(one.pick(&["sensor_id"]), vec![vec!["edge-b".to_string()]]);
}

/// A firewall that resets when its timer expires: 5 of 6 resets after 300 s of
/// silence (± 0.4 s), one after 410 s. No scenario has one, so these rows are written
/// directly, two days after the scenarios (no other check looks there).
fn idle_timeout_spike(ch: &ClickHouse) {
    let t = T0 + 2 * DAY;
    let rows: Vec<String> = [300_100u64, 299_800, 300_400, 300_000, 299_700, 410_000]
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            format!(
                "(toDateTime({t}), {}, 'edge-a', toFixedString(IPv6StringToNum('::ffff:203.0.113.90'), 16), 8443, \
                 toFixedString(IPv6StringToNum('::ffff:198.51.100.9'), 16), {}, 'resp', 'abort', 'idle_timeout', {ms}, {})",
                t * 1_000_000 + i as i64,
                40_000 + i,
                9_000 + i
            )
        })
        .collect();
    ch.query_db(
        DB,
        &format!(
            "INSERT INTO rst_events (ts, ts_us, sensor_id, src, sport, dst, dport, dir, class, cause, silence_ms, flow_uid) VALUES {}",
            rows.join(", ")
        ),
    )
    .unwrap();
    let a = run(
        ch,
        "idle_timeouts",
        &params(t, t + HOUR, "", 8443, Step::Hour),
    );
    let got = a.pick(&[
        "server_addr",
        "resets",
        "min_silence_s",
        "mode_silence_s",
        "mode_resets",
        "estimate",
        "estimated_timeout_s",
    ]);
    assert_eq!(
        got,
        vec![vec!["203.0.113.90", "6", "300", "300", "5", "spike", "300"]]
    );
}

/// The remaining shipped queries answer the scan's and the refused scenario's numbers.
fn other_queries_run(ch: &ClickHouse) {
    let scan = run(
        ch,
        "scan_sources",
        &params(T0 + 3 * HOUR, T0 + 4 * HOUR, "", 0, Step::Hour),
    );
    // 32 closed hosts on port 23, and 203.0.113.25, whose port 23 is among its 21
    // closed ones.
    assert_eq!(
        scan.pick(&["scanner", "port", "hosts"]),
        vec![vec!["192.0.2.66", "23", "33"]]
    );
    let refused = run(
        ch,
        "resets_by_cause",
        &params(T0, T0 + HOUR, "", 0, Step::Hour),
    );
    let total: f64 = (0..refused.rows.len())
        .map(|i| refused.num(i, "rsts"))
        .sum();
    let share: f64 = (0..refused.rows.len())
        .map(|i| refused.num(i, "share"))
        .sum();
    assert_eq!(total, 24.0);
    assert!((share - 1.0).abs() < 0.01, "{share}");
    let states = run(ch, "conn_states", &params(T0, T0 + HOUR, "", 0, Step::Hour));
    assert!(states
        .pick(&["conn_state"])
        .contains(&vec!["REJ".to_string()]));
}

/// Columns whose value depends on when the query runs.
const VOLATILE: &[&str] = &["seconds_since_last_batch"];

/// Every table the collector writes, exported from 18.16 as TabSeparatedWithNames with
/// addresses as text (18.16 stores FixedString(16), current ClickHouse IPv6): the rows
/// chdb loads. The rollups are not exported: chdb's materialized views rebuild them.
fn export_tables(ch: &ClickHouse, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for table in [
        "rst_events",
        "flows",
        "anomalies",
        "sensor_stats",
        "batches",
    ] {
        let cols = ch
            .query_db(
                DB,
                &format!("SELECT name, type FROM system.columns WHERE database = '{DB}' AND table = '{table}'"),
            )
            .unwrap();
        let select: Vec<String> = cols
            .lines()
            .map(|l| match l.split_once('\t') {
                Some((n, "FixedString(16)")) => format!("IPv6NumToString({n}) AS {n}"),
                Some((n, _)) => n.to_string(),
                None => panic!("{l}"),
            })
            .collect();
        let tsv = ch
            .query_db(
                DB,
                &format!(
                    "SELECT {} FROM {table} FORMAT TabSeparatedWithNames",
                    select.join(", ")
                ),
            )
            .unwrap();
        std::fs::write(dir.join(format!("{table}.tsv")), tsv).unwrap();
    }
}

/// The parameter sets both servers answer (one query, one set each).
fn jobs() -> Vec<(String, &'static str, Params)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut out = Vec::new();
    for (name, _) in rstwatch_schema::sql::QUERIES {
        let sets = [
            params(T0, T0 + DAY, "", 0, Step::Hour),
            params(T0 - 7 * DAY, T0 + DAY, "edge-a", 443, Step::Day),
            params(T0 - 8 * DAY, now + HOUR, "", 0, Step::Minute),
        ];
        for (i, p) in sets.into_iter().enumerate() {
            out.push((format!("{name}#{i}"), *name, p));
        }
    }
    out
}

/// The same rows in current ClickHouse (chdb): every cookbook query with native
/// parameters answers exactly as 18.16 did; the Grafana dashboard passes its checks.
fn same_answers_on_chdb_and_grafana(ch: &ClickHouse, dir: &Path) {
    let probe = Command::new("python3").args(["-c", "import chdb"]).output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        println!("SKIP cookbook on chdb: python3 with chdb-core is not installed (pip install chdb-core)");
        return;
    }
    let data = dir.join("export");
    export_tables(ch, &data);
    let jobs = jobs();
    let spec: Vec<serde_json::Value> = jobs
        .iter()
        .map(|(id, name, p)| {
            let params: serde_json::Map<String, serde_json::Value> = p
                .native()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            serde_json::json!({"id": id, "name": name, "params": params})
        })
        .collect();
    let jobs_file = dir.join("jobs.json");
    std::fs::write(&jobs_file, serde_json::to_string(&spec).unwrap()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join("scripts/check_cookbook_chdb.py"))
        .arg(COLLECTOR)
        .arg(&data)
        .arg(&jobs_file)
        .arg(root.join("schema/grafana"))
        .arg(T0.to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check_cookbook_chdb.py failed:\n{stderr}"
    );
    print!("{stderr}");
    let answers: BTreeMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers.len(), jobs.len());
    let mut nonempty = 0;
    for (id, name, p) in &jobs {
        let old = run(ch, name, p);
        let new = Answer::parse(&answers[id]);
        assert_eq!(new.cols, old.cols, "{id}: columns");
        let keep: Vec<&str> = old
            .cols
            .iter()
            .map(String::as_str)
            .filter(|c| !VOLATILE.contains(c))
            .collect();
        assert_eq!(
            new.pick(&keep),
            old.pick(&keep),
            "{id}: 18.16 and chdb differ"
        );
        nonempty += usize::from(!old.rows.is_empty());
    }
    println!(
        "chdb: {} cookbook answers equal to 18.16's ({nonempty} non-empty)",
        jobs.len()
    );
    assert!(stderr.contains("grafana ok:"), "{stderr}");
}
