//! One test per aggregate detector rule (DESIGN.md, "Aggregates"), named after it:
//! each feeds [`Detectors`] the RST events that cross a threshold, checks the anomaly
//! comes exactly at the crossing, and that one short of it raises nothing.

use super::*;

const S: i64 = 1_000_000;
const T0: i64 = 1_767_225_600_000_000;

fn ip(s: &str) -> IpBytes {
    s.parse().unwrap()
}

/// Feeds `events` and returns, for each, the kinds of anomalies it raised.
fn feed(d: &mut Detectors, events: &[RstEvent]) -> Vec<Vec<AnomalyKind>> {
    events
        .iter()
        .map(|e| {
            let mut out = Vec::new();
            d.observe(e, &mut out);
            out.iter().map(|a| a.kind).collect()
        })
        .collect()
}

/// The index of the only event that raised `kind`, or a failure naming `rule`.
fn raised_once_at(rule: &str, raised: &[Vec<AnomalyKind>], kind: AnomalyKind) -> usize {
    let at: Vec<usize> = raised
        .iter()
        .enumerate()
        .filter(|(_, k)| k.contains(&kind))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "{rule}: {kind:?} raised at {at:?}");
    at[0]
}

/// A reject from `host:port` answering `scanner`'s SYN.
fn reject(t: i64, scanner: &str, host: &str, port: u16) -> RstEvent {
    RstEvent::new(
        t,
        (ip(host), port),
        (ip(scanner), 61_000),
        Dir::Resp,
        RstClass::Reject,
    )
}

#[test]
fn scan_when_rejects_come_from_scan_hosts_hosts_on_one_port() {
    let cfg = AnomalyConfig::default();
    let mut d = Detectors::new(&cfg);
    let events: Vec<RstEvent> = (0..cfg.scan_hosts + 5)
        .map(|h| {
            let host = format!("203.0.113.{}", 10 + h);
            reject(T0 + i64::from(h) * S, "192.0.2.66", &host, 23)
        })
        .collect();
    let raised = feed(&mut d, &events);
    let at = raised_once_at("scan_hosts", &raised, AnomalyKind::Scan);
    assert_eq!(at + 1, cfg.scan_hosts as usize);
    assert!(d.is_scanner(&ip("192.0.2.66")));
}

#[test]
fn scan_when_rejects_come_from_scan_ports_ports_on_one_host() {
    let cfg = AnomalyConfig::default();
    let mut d = Detectors::new(&cfg);
    let events: Vec<RstEvent> = (0..cfg.scan_ports + 5)
        .map(|p| {
            reject(
                T0 + i64::from(p) * S,
                "192.0.2.67",
                "203.0.113.9",
                1000 + p as u16,
            )
        })
        .collect();
    let raised = feed(&mut d, &events);
    let at = raised_once_at("scan_ports", &raised, AnomalyKind::Scan);
    assert_eq!(at + 1, cfg.scan_ports as usize);
}

#[test]
fn scan_counts_start_again_in_the_next_window() {
    let cfg = AnomalyConfig::default();
    let mut d = Detectors::new(&cfg);
    let half = cfg.scan_hosts / 2 + 1;
    let window = i64::from(cfg.scan_window_s) * S;
    // Half the hosts in one window, half in the next: no scan in either.
    let events: Vec<RstEvent> = (0..2 * half)
        .map(|h| {
            let t = T0 - T0.rem_euclid(window) + if h < half { 0 } else { window } + i64::from(h);
            reject(t, "192.0.2.68", &format!("203.0.113.{}", 10 + h), 23)
        })
        .collect();
    let raised = feed(&mut d, &events);
    assert!(raised.iter().all(|k| k.is_empty()), "{raised:?}");
}

#[test]
fn backscatter_when_unsolicited_rst_acks_reach_backscatter_hosts_addresses() {
    let cfg = AnomalyConfig::default();
    let mut d = Detectors::new(&cfg);
    let events: Vec<RstEvent> = (0..cfg.backscatter_hosts + 3)
        .map(|h| {
            let mut e = RstEvent::new(
                T0 + i64::from(h) * S,
                (ip("192.0.2.99"), 80),
                (ip(&format!("203.0.113.{}", 10 + h)), 40_000),
                Dir::Unknown,
                RstClass::Unsolicited,
            );
            e.ack_flag = true;
            e
        })
        .collect();
    let raised = feed(&mut d, &events);
    let at = raised_once_at("backscatter", &raised, AnomalyKind::Backscatter);
    assert_eq!(at + 1, cfg.backscatter_hosts as usize);
    assert!(d.is_backscatter_source(&ip("192.0.2.99")));
}

#[test]
fn backscatter_ignores_bare_rsts() {
    let cfg = AnomalyConfig::default();
    let mut d = Detectors::new(&cfg);
    let events: Vec<RstEvent> = (0..cfg.backscatter_hosts + 3)
        .map(|h| {
            RstEvent::new(
                T0 + i64::from(h) * S,
                (ip("192.0.2.98"), 80),
                (ip(&format!("203.0.113.{}", 10 + h)), 40_000),
                Dir::Unknown,
                RstClass::Unsolicited,
            )
        })
        .collect();
    assert!(feed(&mut d, &events).iter().all(|k| k.is_empty()));
}

#[test]
fn rst_storm_when_storm_count_rsts_from_one_endpoint_come_less_than_storm_gap_apart() {
    let cfg = AnomalyConfig {
        storm_min_rate: u32::MAX, // only the per-endpoint rule
        ..AnomalyConfig::default()
    };
    let mut d = Detectors::new(&cfg);
    let gap = i64::from(cfg.storm_gap_ms) * 1000 - 1;
    let events: Vec<RstEvent> = (0..cfg.storm_count + 10)
        .map(|i| {
            RstEvent::new(
                T0 + i64::from(i) * gap,
                (ip("203.0.113.5"), 443),
                (ip("198.51.100.1"), 40_000 + (i % 20_000) as u16),
                Dir::Resp,
                RstClass::Abort,
            )
        })
        .collect();
    let raised = feed(&mut d, &events);
    let at = raised_once_at("endpoint storm", &raised, AnomalyKind::RstStorm);
    assert_eq!(at + 1, cfg.storm_count as usize);
}

#[test]
fn rst_storm_when_a_services_rate_is_storm_factor_times_its_baseline() {
    let cfg = AnomalyConfig {
        storm_count: u32::MAX, // only the per-service rule
        ..AnomalyConfig::default()
    };
    let mut d = Detectors::new(&cfg);
    let ev = |t: i64, i: u32| {
        RstEvent::new(
            t,
            (ip("203.0.113.6"), 443),
            (ip("198.51.100.2"), 40_000 + i as u16),
            Dir::Resp,
            RstClass::Abort,
        )
    };
    // A quiet baseline: 2 RSTs a second for a minute, then a burst in one second.
    let mut events: Vec<RstEvent> = (0..120u32)
        .map(|i| ev(T0 + i64::from(i / 2) * S, i))
        .collect();
    let burst = T0 + 61 * S;
    events.extend((0..cfg.storm_min_rate + 10).map(|i| ev(burst + i64::from(i), 1000 + i)));
    let raised = feed(&mut d, &events);
    let at = raised_once_at("service storm", &raised, AnomalyKind::RstStorm);
    assert_eq!(at, 120 + cfg.storm_min_rate as usize - 1);
}

#[test]
fn a_service_storm_is_reported_once_per_window_however_long_it_lasts() {
    let cfg = AnomalyConfig {
        storm_count: u32::MAX, // only the per-service rule
        scan_window_s: 2,      // seconds T0 and T0 + 1 share a window, T0 + 2 starts one
        ..AnomalyConfig::default()
    };
    let mut d = Detectors::new(&cfg);
    let ev = |t: i64, i: u32| {
        RstEvent::new(
            t,
            (ip("203.0.113.6"), 443),
            (ip("198.51.100.2"), 1024 + (i % 60_000) as u16),
            Dir::Resp,
            RstClass::Abort,
        )
    };
    // 300 RSTs in a second with no baseline (crossing at the 100th), 400 the next
    // second (crossing again at the 300th: baseline 30), 800 in the next window
    // (crossing at the 670th: baseline 0.9 × 30 + 0.1 × 400 = 67).
    let mut events = Vec::new();
    for (second, n) in [(0, 300u32), (1, 400), (2, 800)] {
        let start = events.len() as u32;
        events.extend((0..n).map(|i| ev(T0 + second * S + i64::from(i), start + i)));
    }
    let raised = feed(&mut d, &events);
    let at: Vec<usize> = raised
        .iter()
        .enumerate()
        .filter(|(_, k)| k.contains(&AnomalyKind::RstStorm))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at, [99, 300 + 400 + 669]);
}

#[test]
fn injection_when_injection_count_suspect_rsts_hit_one_service() {
    let cfg = AnomalyConfig::default();
    let mut d = Detectors::new(&cfg);
    let events: Vec<RstEvent> = (0..cfg.injection_count + 2)
        .map(|i| {
            let mut e = RstEvent::new(
                T0 + i64::from(i) * S,
                (ip("198.51.100.3"), 50_000 + i as u16),
                (ip("203.0.113.7"), 443),
                Dir::Orig,
                RstClass::Abort,
            );
            e.suspect = true;
            e
        })
        .collect();
    let raised = feed(&mut d, &events);
    let at = raised_once_at("injection", &raised, AnomalyKind::Injection);
    assert_eq!(at + 1, cfg.injection_count as usize);
}

#[test]
fn an_anomaly_is_reported_once_per_window_and_subject() {
    let mut d = Detectors::new(&AnomalyConfig::default());
    let a = Anomaly {
        ts_us: T0,
        kind: AnomalyKind::Failover,
        subject: "203.0.113.10".into(),
        value: 2.0,
        baseline: 2.0,
        detail: String::new(),
    };
    assert!(d.first_report(&a));
    assert!(!d.first_report(&a), "second report in the same window");
    let later = Anomaly {
        ts_us: T0 + 3600 * S,
        ..a
    };
    assert!(d.first_report(&later), "a new window reports again");
}
