//! The report model on synthetic records: every number asserted.

use super::collect::MAX_KEYS;
use super::testing::{anomaly, flow, rst_at, T0_US};
use super::{markdown, text, Collector, IdleEstimate, Report, Share};
use crate::sink::Sink;
use rstwatch_schema::{AnomalyKind, Cause, Dir, RstEvent, RstFlag};

fn report_of(events: Vec<RstEvent>, flows: &[Option<Cause>]) -> Report {
    let mut c = Collector::default();
    for e in events {
        c.rst(e);
    }
    for f in flows {
        c.flow(flow(*f));
    }
    Report::build(&c, vec!["test.pcap".into()])
}

fn share(name: &str, resets: u64, percent: f64) -> Share {
    Share {
        name: name.into(),
        resets,
        percent,
    }
}

/// 10 resets: 4 abort, 3 idle_timeout, 2 unknown, 1 injection, in arrival order that
/// is not precedence order.
fn ten_resets() -> Vec<RstEvent> {
    let mut v = Vec::new();
    for (i, cause) in [
        Cause::Abort,
        Cause::Unknown,
        Cause::IdleTimeout,
        Cause::Abort,
        Cause::Injection,
        Cause::IdleTimeout,
        Cause::Abort,
        Cause::Unknown,
        Cause::IdleTimeout,
        Cause::Abort,
    ]
    .into_iter()
    .enumerate()
    {
        v.push(rst_at(
            cause,
            "203.0.113.5:443",
            "192.0.2.10:40000",
            i as f64,
            &[],
        ));
    }
    v
}

#[test]
fn causes_come_in_precedence_order_with_counts_and_percentages() {
    let flows = [
        Some(Cause::Abort),
        Some(Cause::Abort),
        Some(Cause::IdleTimeout),
        None,
        None,
    ];
    let r = report_of(ten_resets(), &flows);
    assert_eq!((r.resets, r.flows, r.flows_reset), (10, 5, 3));
    let got: Vec<(Cause, u64, f64, u64)> = r
        .causes
        .iter()
        .map(|c| (c.cause, c.resets, c.percent, c.flows))
        .collect();
    assert_eq!(
        got,
        vec![
            (Cause::Injection, 1, 10.0, 0),
            (Cause::IdleTimeout, 3, 30.0, 1),
            (Cause::Abort, 4, 40.0, 2),
            (Cause::Unknown, 2, 20.0, 0),
        ]
    );
    assert_eq!(r.causes[1].remedy, Cause::IdleTimeout.remedy());
    assert_eq!(r.causes[1].meaning, Cause::IdleTimeout.meaning());
    assert_eq!(r.first, Some(T0_US));
    assert_eq!(r.last, Some(T0_US + 9_000_000));
}

#[test]
fn percentages_round_to_one_decimal() {
    assert_eq!(super::percent(1, 3), 33.3);
    assert_eq!(super::percent(2, 3), 66.7);
    assert_eq!(super::percent(1, 8), 12.5);
    assert_eq!(super::percent(0, 0), 0.0);
    let mut v = ten_resets();
    v.truncate(3); // abort, unknown, idle_timeout
    let r = report_of(v, &[]);
    let p: Vec<f64> = r.causes.iter().map(|c| c.percent).collect();
    assert_eq!(p, vec![33.3, 33.3, 33.3]);
}

#[test]
fn idle_timeout_silences_clustering_at_3600_s_estimate_3600_s() {
    let silences = [
        3_600_020, 3_600_250, 3_601_900, 3_600_400, 3_603_000, 3_600_010, 3_630_000, 7_300_000,
    ];
    let mut v: Vec<RstEvent> = silences
        .iter()
        .enumerate()
        .map(|(i, &ms)| {
            let mut e = rst_at(
                Cause::IdleTimeout,
                "203.0.113.5:22",
                "192.0.2.10:40000",
                i as f64 * 60.0,
                &[RstFlag::Idle],
            );
            e.silence_ms = ms;
            e
        })
        .collect();
    // Silences of other causes are not the device's timeout.
    let mut other = rst_at(Cause::Abort, "203.0.113.5:22", "192.0.2.10:1", 0.0, &[]);
    other.silence_ms = 500_000;
    v.push(other);
    let r = report_of(v, &[]);
    assert_eq!(r.causes[0].cause, Cause::IdleTimeout);
    assert_eq!(
        r.causes[0].idle_timeout,
        Some(IdleEstimate {
            timeout_s: 3600,
            within_s: 72,
            matching: 7,
            silences: 8,
            shortest_s: 3600
        })
    );
    assert_eq!(r.causes[1].idle_timeout, None);
    let t = text::render(&r);
    assert!(
        t.contains("The device's idle timeout is about 3600 s (7 of 8 silences within ±72 s;"),
        "{t}"
    );
}

/// Server 203.0.113.5:443 five times (server RSTs), 203.0.113.6:80 three times (client
/// RSTs: the service is the receiver), [2001:db8::5]:443 twice (no flow state: the
/// likely server port decides), then four services once each.
fn many_services() -> Vec<RstEvent> {
    let mut v = Vec::new();
    for i in 0..5 {
        let client = format!("192.0.2.{}:4000{i}", 10 + i);
        v.push(rst_at(Cause::Abort, "203.0.113.5:443", &client, 0.0, &[]));
    }
    for i in 0..3 {
        let mut e = rst_at(
            Cause::Abort,
            "198.51.100.7:5000",
            "203.0.113.6:80",
            i as f64,
            &[],
        );
        e.dir = Dir::Orig;
        v.push(e);
    }
    for _ in 0..2 {
        let mut e = rst_at(
            Cause::Abort,
            "[2001:db8:1:2::9]:50123",
            "[2001:db8::5]:443",
            0.0,
            &[],
        );
        e.dir = Dir::Unknown;
        v.push(e);
    }
    for port in [21, 22, 23, 25] {
        let server = format!("203.0.113.9:{port}");
        v.push(rst_at(Cause::Abort, &server, "192.0.2.200:1", 0.0, &[]));
    }
    v
}

#[test]
fn top_services_are_the_responders_most_reset_first() {
    let r = report_of(many_services(), &[]);
    let c = &r.causes[0];
    assert_eq!(c.resets, 14);
    assert_eq!(
        c.services,
        vec![
            share("203.0.113.5:443", 5, 35.7),
            share("203.0.113.6:80", 3, 21.4),
            share("[2001:db8::5]:443", 2, 14.3),
            share("203.0.113.9:21", 1, 7.1),
            share("203.0.113.9:22", 1, 7.1),
        ]
    );
    assert_eq!(c.services_untracked, 0);
}

#[test]
fn top_client_networks_are_slash_24_and_slash_64() {
    let r = report_of(many_services(), &[]);
    assert_eq!(
        r.causes[0].client_networks,
        vec![
            share("192.0.2.0/24", 9, 64.3),
            share("198.51.100.0/24", 3, 21.4),
            share("2001:db8:1:2::/64", 2, 14.3),
        ]
    );
}

#[test]
fn examples_show_the_top_services_first_with_their_most_telling_rst() {
    let mut v = many_services();
    // The third RST of 203.0.113.5:443 carries evidence: it is that service's example.
    v[2].flags.insert(RstFlag::AfterFin);
    v[2].cause_detail = "FIN sent 2 s before".into();
    // A service seen once but with the most evidence of all is not among the top
    // three services, so it is not shown.
    v[13].flags.insert(RstFlag::Idle);
    v[13].flags.insert(RstFlag::AfterFin);
    let r = report_of(v.clone(), &[]);
    let ex = &r.causes[0].examples;
    let tuples: Vec<(String, u16)> = ex.iter().map(|e| (e.dst.to_string(), e.dport)).collect();
    assert_eq!(
        tuples,
        vec![
            ("192.0.2.12".to_string(), 40002),
            ("203.0.113.6".to_string(), 80),
            ("2001:db8::5".to_string(), 443),
        ]
    );
    assert_eq!(ex[0].cause_detail, "FIN sent 2 s before");
    // One service only: its three most telling RSTs.
    let r = report_of(v[..5].to_vec(), &[]);
    let ports: Vec<u16> = r.causes[0].examples.iter().map(|e| e.dport).collect();
    assert_eq!(ports, vec![40002, 40000, 40001]);
}

#[test]
fn a_burst_of_one_cause_is_reported_as_its_cluster() {
    // Abort resets once a minute for 10 minutes, 20 more within second 300.
    let mut v: Vec<RstEvent> = (0..10)
        .map(|m| {
            rst_at(
                Cause::Abort,
                "203.0.113.5:443",
                "192.0.2.1:1",
                m as f64 * 60.0,
                &[],
            )
        })
        .collect();
    for i in 0..20 {
        v.push(rst_at(
            Cause::ServerOverload,
            "203.0.113.5:443",
            "192.0.2.1:1",
            300.0 + i as f64 / 100.0,
            &[],
        ));
    }
    let r = report_of(v, &[]);
    let tl = r.timeline.as_ref().unwrap();
    assert_eq!(tl.bucket_s, 10);
    assert_eq!(tl.clusters.len(), 1);
    assert_eq!(tl.clusters[0].at_s * 1_000_000, T0_US + 300_000_000);
    assert_eq!((tl.clusters[0].resets, tl.clusters[0].percent), (21, 70.0));
    // server_overload alone: all 20 in one second, one bucket: nothing to single out.
    assert_eq!(r.causes[0].cause, Cause::ServerOverload);
    assert!(r.causes[0].clusters.is_empty());
    assert!(r.causes[1].clusters.is_empty(), "abort is spread out");
    let t = text::render(&r);
    assert!(
        t.contains("Resets cluster around 00:05:00: 21 of 30 (70.0 %) in the 10 s from 00:05:00."),
        "{t}"
    );
}

#[test]
fn services_beyond_the_bound_are_counted_not_kept() {
    let mut c = Collector::default();
    for i in 0..MAX_KEYS as u32 + 10 {
        let [_, a, b, d] = i.to_be_bytes();
        let server = format!("10.{a}.{b}.{d}:443");
        c.rst(rst_at(Cause::Abort, &server, "192.0.2.1:1", 0.0, &[]));
    }
    let r = Report::build(&c, vec![]);
    assert_eq!(r.causes[0].resets, MAX_KEYS as u64 + 10);
    assert_eq!(r.causes[0].services_untracked, 10);
    assert_eq!(r.causes[0].services.len(), super::report::TOP);
    assert_eq!(r.causes[0].client_networks_untracked, 0);
}

#[test]
fn text_fits_80_columns_and_has_every_section() {
    let mut v = ten_resets();
    v[2].silence_ms = 3_600_500;
    v[4].cause_detail =
        "data from 203.0.113.5 continued 3 ms after its RST, which a real close never does".into();
    let mut c = Collector::default();
    for e in v {
        c.rst(e);
    }
    c.anomaly(anomaly(
        AnomalyKind::Failover,
        "203.0.113.5",
        "02:00:00:00:00:01 → 02:00:00:00:00:02, 3 flows",
    ));
    // The longest endpoints there are: the four-tuple takes two lines.
    c.rst(rst_at(
        Cause::Unknown,
        "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        "[2001:db8:eeee:eeee:eeee:eeee:eeee:eeee]:65534",
        5.0,
        &[RstFlag::Idle],
    ));
    let long = format!("/captures/{}/b.pcap", "x".repeat(100));
    let r = Report::build(&c, vec!["a.pcap".into(), long]);
    let t = text::render(&r);
    for l in t.lines() {
        assert!(l.chars().count() <= 80, "too wide: {l:?}");
    }
    for needle in [
        "rstwatch diagnose: 2 files\n  a.pcap\n  /captures/xxx",
        "xxx…xxx",
        "xxx/b.pcap\n",
        "2026-01-01 00:00:00 to 00:00:09 UTC (9 s)",
        "11 resets; 0 of 0 flows saw a reset.",
        "Why: causes in order of precedence",
        "  injection                   1     9.1        0  ██",
        "    [2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535 >\n      [2001:db8:eeee:",
        "When: resets per 1 s from 00:00:00 to 00:00:10",
        "Anomalies (1)",
        "failover     203.0.113.5",
        "── idle_timeout ── 3 resets (27.3 %), 0 flows ──",
        "── injection ── 1 reset (9.1 %), 0 flows ──",
        "  Remedy: Send keep-alives or heartbeats more often than the device's timeout,",
        "The device's idle timeout is about 3600 s (1 of 1 silences",
        "top services",
        "top client networks",
        "abort, sent by the server (resp)",
        "203.0.113.5:443 > 192.0.2.10:40000",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
}

#[test]
fn markdown_has_a_table_per_section() {
    let r = report_of(many_services(), &[Some(Cause::Abort)]);
    let m = markdown::render(&r);
    for needle in [
        "# rstwatch diagnose: `test.pcap`",
        "| cause | resets | % | flows | meaning | remedy |",
        "| `abort` | 14 | 100.0 | 1 |",
        "## `abort`: 14 resets (100.0 %), 1 flow",
        "| `203.0.113.5:443` | 5 | 35.7 |",
        "| `192.0.2.0/24` | 9 | 64.3 |",
        "| example RST | class | sender | flags | detail |",
    ] {
        assert!(m.contains(needle), "missing {needle:?} in\n{m}");
    }
    // Every table row has as many cells as its header (the first row of a table).
    let mut cols = None;
    for l in m.lines() {
        let n = l.replace("\\|", "").matches('|').count();
        match (l.starts_with('|'), cols) {
            (false, _) => cols = None,
            (true, None) => cols = Some(n),
            (true, Some(c)) => assert_eq!(n, c, "{l}"),
        }
    }
}

#[test]
fn json_field_names_are_the_documented_ones() {
    let r = report_of(ten_resets(), &[Some(Cause::Abort)]);
    let j = serde_json::to_value(&r).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&j),
        [
            "anomalies",
            "anomalies_dropped",
            "causes",
            "files",
            "first",
            "flows",
            "flows_reset",
            "last",
            "resets",
            "timeline"
        ]
    );
    assert_eq!(
        keys(&j["causes"][0]),
        [
            "cause",
            "client_networks",
            "client_networks_untracked",
            "clusters",
            "examples",
            "flows",
            "meaning",
            "percent",
            "remedy",
            "resets",
            "services",
            "services_untracked"
        ]
    );
    assert_eq!(
        keys(&j["timeline"]),
        ["bucket_s", "clusters", "counts", "start"]
    );
    assert_eq!(j["causes"][1]["cause"], "idle_timeout");
    assert_eq!(j["causes"][1]["percent"], 30.0);
    assert_eq!(j["first"], "2026-01-01T00:00:00.000000Z");
    // Examples are RST events in the offline contract's form.
    let ex: RstEvent = serde_json::from_value(j["causes"][0]["examples"][0].clone()).unwrap();
    assert_eq!(ex.cause, Cause::Injection);
}
