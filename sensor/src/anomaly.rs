//! Aggregate detectors over released RST events: `scan`, `rst_storm`, `backscatter`
//! and `injection` (DESIGN.md, "Aggregates").
//!
//! Per-window state lives in tumbling windows of `scan_window_s`; each (kind, subject)
//! is reported at most once per window. Every map is bounded by [`MAX_KEYS`]: a key
//! that does not fit is not tracked and is counted (`anomaly_tracker_full`), so an
//! attacker spraying addresses costs bounded memory.

use crate::config::AnomalyConfig;
use crate::track::is_likely_server_port;
use hashbrown::{HashMap, HashSet};
use rstwatch_schema::{Anomaly, AnomalyKind, Dir, IpBytes, RstClass, RstEvent};

/// Keys each tracker holds at most.
pub const MAX_KEYS: usize = 65_536;
/// Weight of the newest second in a service's moving RST-rate baseline.
const BASELINE_ALPHA: f64 = 0.1;

type Endpoint = (IpBytes, u16);

#[derive(Default)]
struct ServiceRate {
    second: i64,
    count: u32,
    baseline: f64,
    /// The window in which its storm was reported: every later RST of the storm in
    /// that window is known to be a repeat without formatting its report first.
    reported_in: Option<i64>,
}

/// The aggregate detectors of one output stage (or one engine), with their windows.
pub struct Detectors {
    cfg: AnomalyConfig,
    window_start_us: i64,
    /// (scanner, port) → hosts that rejected it.
    scan_hosts: HashMap<Endpoint, HashSet<IpBytes>>,
    /// (scanner, host) → ports that rejected it.
    scan_ports: HashMap<(IpBytes, IpBytes), HashSet<u16>>,
    /// remote → local addresses it sent unsolicited RST/ACKs to.
    backscatter: HashMap<IpBytes, HashSet<IpBytes>>,
    /// service → suspect RSTs.
    injection: HashMap<Endpoint, u32>,
    /// RST source → (last RST, RSTs in the current run of short gaps).
    endpoint_runs: HashMap<IpBytes, (i64, u32)>,
    services: HashMap<Endpoint, ServiceRate>,
    reported: HashSet<(AnomalyKind, String)>,
    /// Sources that crossed a scan threshold in this window (the `scan` cause).
    scanners: HashSet<IpBytes>,
    /// Remotes that crossed the backscatter threshold in this window.
    backscatter_sources: HashSet<IpBytes>,
    /// Keys not tracked because a map was full.
    pub tracker_full: u64,
}

impl Detectors {
    /// Empty detectors with the thresholds of `cfg`.
    pub fn new(cfg: &AnomalyConfig) -> Detectors {
        Detectors {
            cfg: cfg.clone(),
            window_start_us: i64::MIN,
            scan_hosts: HashMap::new(),
            scan_ports: HashMap::new(),
            backscatter: HashMap::new(),
            injection: HashMap::new(),
            endpoint_runs: HashMap::new(),
            services: HashMap::new(),
            reported: HashSet::new(),
            scanners: HashSet::new(),
            backscatter_sources: HashSet::new(),
            tracker_full: 0,
        }
    }

    /// Feeds one released RST event; anomalies found go to `out`.
    pub fn observe(&mut self, ev: &RstEvent, out: &mut Vec<Anomaly>) {
        self.roll_window(ev.ts_us);
        self.scan(ev, out);
        self.backscatter(ev, out);
        self.storms(ev, out);
        if ev.suspect {
            self.injection(ev, out);
        }
    }

    fn roll_window(&mut self, ts_us: i64) {
        let len = i64::from(self.cfg.scan_window_s.max(1)) * 1_000_000;
        if self.window_start_us == i64::MIN || ts_us >= self.window_start_us.saturating_add(len) {
            self.window_start_us = ts_us - ts_us.rem_euclid(len);
            self.scan_hosts.clear();
            self.scan_ports.clear();
            self.backscatter.clear();
            self.injection.clear();
            self.reported.clear();
            self.scanners.clear();
            self.backscatter_sources.clear();
        }
    }

    fn scan(&mut self, ev: &RstEvent, out: &mut Vec<Anomaly>) {
        // Who probed whom: a reject answers the scanner's SYN; a scanner's own RST
        // after a SYN-ACK closes a half-open probe (the SYN-scan pattern).
        let (scanner, host, port) = match (ev.class, ev.dir) {
            (RstClass::Reject, _) => (ev.dst, ev.src, ev.sport),
            (RstClass::HandshakeAbort, Dir::Orig) => (ev.src, ev.dst, ev.dport),
            _ => return,
        };
        let need_hosts = self.cfg.scan_hosts as usize;
        let hosts = insert_bounded(
            &mut self.scan_hosts,
            (scanner, port),
            host,
            need_hosts,
            &mut self.tracker_full,
        );
        self.scan_crossed(ev.ts_us, scanner, hosts, need_hosts, out, |n| {
            format!("{scanner} collected rejects from {n} hosts on port {port}")
        });
        let need_ports = self.cfg.scan_ports as usize;
        let ports = insert_bounded(
            &mut self.scan_ports,
            (scanner, host),
            port,
            need_ports,
            &mut self.tracker_full,
        );
        self.scan_crossed(ev.ts_us, scanner, ports, need_ports, out, |n| {
            format!("{scanner} collected rejects from {n} ports on {host}")
        });
    }

    /// Reports `scanner` when its count `n` just reached the threshold `need`.
    fn scan_crossed(
        &mut self,
        ts_us: i64,
        scanner: IpBytes,
        n: Option<usize>,
        need: usize,
        out: &mut Vec<Anomaly>,
        detail: impl FnOnce(usize) -> String,
    ) {
        if n != Some(need) {
            return;
        }
        self.scanners.insert(scanner);
        self.report(
            Anomaly {
                ts_us,
                kind: AnomalyKind::Scan,
                subject: scanner.to_string(),
                value: need as f64,
                baseline: need as f64,
                detail: detail(need),
            },
            out,
        );
    }

    fn backscatter(&mut self, ev: &RstEvent, out: &mut Vec<Anomaly>) {
        if ev.class != RstClass::Unsolicited || !ev.ack_flag {
            return;
        }
        let need = self.cfg.backscatter_hosts as usize;
        if let Some(n) = insert_bounded(
            &mut self.backscatter,
            ev.src,
            ev.dst,
            need,
            &mut self.tracker_full,
        ) {
            if n == need {
                self.backscatter_sources.insert(ev.src);
                let detail = format!(
                    "unsolicited RST/ACKs from {} to {n} local addresses",
                    ev.src
                );
                self.report(
                    Anomaly {
                        ts_us: ev.ts_us,
                        kind: AnomalyKind::Backscatter,
                        subject: ev.src.to_string(),
                        value: n as f64,
                        baseline: need as f64,
                        detail,
                    },
                    out,
                );
            }
        }
    }

    fn storms(&mut self, ev: &RstEvent, out: &mut Vec<Anomaly>) {
        self.endpoint_storm(ev, out);
        self.service_storm(ev, out);
    }

    /// Zeek's per-endpoint storm: a long run of RSTs from one source, each less than
    /// `storm_gap_ms` after the previous one.
    fn endpoint_storm(&mut self, ev: &RstEvent, out: &mut Vec<Anomaly>) {
        let gap = i64::from(self.cfg.storm_gap_ms) * 1000;
        let room = self.endpoint_runs.len() < MAX_KEYS;
        let run = match self.endpoint_runs.entry(ev.src) {
            hashbrown::hash_map::Entry::Occupied(mut e) => {
                let (last, run) = e.get_mut();
                *run = if ev.ts_us.saturating_sub(*last) < gap {
                    *run + 1
                } else {
                    1
                };
                *last = ev.ts_us;
                Some(*run)
            }
            hashbrown::hash_map::Entry::Vacant(e) if room => {
                e.insert((ev.ts_us, 1));
                Some(1)
            }
            hashbrown::hash_map::Entry::Vacant(_) => {
                self.tracker_full += 1;
                None
            }
        };
        if run == Some(self.cfg.storm_count) {
            let detail = format!(
                "{} RSTs from {}, each less than {} ms after the previous",
                self.cfg.storm_count, ev.src, self.cfg.storm_gap_ms
            );
            let n = f64::from(self.cfg.storm_count);
            self.report(
                Anomaly {
                    ts_us: ev.ts_us,
                    kind: AnomalyKind::RstStorm,
                    subject: ev.src.to_string(),
                    value: n,
                    baseline: n,
                    detail,
                },
                out,
            );
        }
    }

    /// Service storm: this second's RSTs against the service's own baseline.
    fn service_storm(&mut self, ev: &RstEvent, out: &mut Vec<Anomaly>) {
        let svc = service_of(ev);
        let second = ev.ts_us.div_euclid(1_000_000);
        if !self.services.contains_key(&svc) && self.services.len() >= MAX_KEYS {
            self.tracker_full += 1;
            return;
        }
        let r = self.services.entry(svc).or_default();
        if r.second != second {
            if r.count > 0 || r.baseline > 0.0 {
                let idle = (second - r.second - 1).clamp(0, 3600) as i32;
                r.baseline =
                    (1.0 - BASELINE_ALPHA) * r.baseline + BASELINE_ALPHA * f64::from(r.count);
                r.baseline *= (1.0 - BASELINE_ALPHA).powi(idle);
            }
            r.second = second;
            r.count = 0;
        }
        r.count += 1;
        let (count, baseline) = (r.count, r.baseline);
        if count >= self.cfg.storm_min_rate
            && f64::from(count) >= self.cfg.storm_factor * baseline.max(1.0)
            && r.reported_in != Some(self.window_start_us)
        {
            r.reported_in = Some(self.window_start_us);
            let subject = format!("{}", Ep(svc));
            let detail =
                format!("{count} RSTs in one second for {subject}, baseline {baseline:.1}/s");
            self.report(
                Anomaly {
                    ts_us: ev.ts_us,
                    kind: AnomalyKind::RstStorm,
                    subject,
                    value: f64::from(count),
                    baseline,
                    detail,
                },
                out,
            );
        }
    }

    fn injection(&mut self, ev: &RstEvent, out: &mut Vec<Anomaly>) {
        let svc = service_of(ev);
        let room = self.injection.len() < MAX_KEYS;
        let n = match self.injection.entry(svc) {
            hashbrown::hash_map::Entry::Occupied(mut e) => {
                *e.get_mut() += 1;
                *e.get()
            }
            hashbrown::hash_map::Entry::Vacant(e) if room => *e.insert(1),
            hashbrown::hash_map::Entry::Vacant(_) => {
                self.tracker_full += 1;
                return;
            }
        };
        if n == self.cfg.injection_count {
            let subject = format!("{}", Ep(svc));
            let detail = format!("{n} suspect (forged) RSTs on flows of {subject}");
            let need = f64::from(self.cfg.injection_count);
            self.report(
                Anomaly {
                    ts_us: ev.ts_us,
                    kind: AnomalyKind::Injection,
                    subject,
                    value: f64::from(n),
                    baseline: need,
                    detail,
                },
                out,
            );
        }
    }

    /// Has `addr` crossed a scan threshold in the current window (after the RSTs
    /// observed so far)?
    pub fn is_scanner(&self, addr: &IpBytes) -> bool {
        self.scanners.contains(addr)
    }

    /// Has `addr` crossed the backscatter threshold in the current window?
    pub fn is_backscatter_source(&self, addr: &IpBytes) -> bool {
        self.backscatter_sources.contains(addr)
    }

    /// A server address moved to another MAC and `flows` of its flows were reset
    /// since (`state_loss`): reported once per window.
    pub fn failover(&mut self, f: &Failover, out: &mut Vec<Anomaly>) {
        self.roll_window(f.ts_us);
        let detail = format!(
            "{} moved from {} to {}: {} flows reset by the new MAC",
            f.server, f.old_mac, f.new_mac, f.flows
        );
        self.report(
            Anomaly {
                ts_us: f.ts_us,
                kind: AnomalyKind::Failover,
                subject: f.server.to_string(),
                value: f.flows as f64,
                baseline: f.need as f64,
                detail,
            },
            out,
        );
    }

    /// An anomaly raised elsewhere (a worker's `failover`): true the first time its
    /// (kind, subject) is seen in the current window, so several workers report it once.
    pub fn first_report(&mut self, a: &Anomaly) -> bool {
        self.roll_window(a.ts_us);
        self.reported.insert((a.kind, a.subject.clone()))
    }

    /// Adds `a` to `out` unless its (kind, subject) was already reported in this
    /// window.
    fn report(&mut self, a: Anomaly, out: &mut Vec<Anomaly>) {
        if self.reported.insert((a.kind, a.subject.clone())) {
            out.push(a);
        }
    }
}

/// A VIP failover seen through the resets that follow it.
pub struct Failover {
    /// When the failover was recognised.
    pub ts_us: i64,
    /// The server address that moved.
    pub server: IpBytes,
    /// The MAC it had.
    pub old_mac: crate::evidence::macs::Mac,
    /// The MAC that now resets its flows.
    pub new_mac: crate::evidence::macs::Mac,
    /// Flows reset by the new MAC so far.
    pub flows: usize,
    /// Flows needed before it is reported (`failover_flows`).
    pub need: usize,
}

/// The server side of an RST's flow: the responder when the direction is known,
/// otherwise the end with a likely server port (or the lower port).
fn service_of(ev: &RstEvent) -> Endpoint {
    let src = (ev.src, ev.sport);
    let dst = (ev.dst, ev.dport);
    match ev.dir {
        Dir::Resp => src,
        Dir::Orig => dst,
        Dir::Unknown => {
            let s = is_likely_server_port(ev.sport);
            let d = is_likely_server_port(ev.dport);
            if s != d {
                if s {
                    src
                } else {
                    dst
                }
            } else if ev.sport <= ev.dport {
                src
            } else {
                dst
            }
        }
    }
}

/// Adds `v` to the set of `k`, both bounded; returns the set's size when it changed.
fn insert_bounded<K: std::hash::Hash + Eq, V: std::hash::Hash + Eq>(
    map: &mut HashMap<K, HashSet<V>>,
    k: K,
    v: V,
    max_set: usize,
    full: &mut u64,
) -> Option<usize> {
    if !map.contains_key(&k) && map.len() >= MAX_KEYS {
        *full += 1;
        return None;
    }
    let set = map.entry(k).or_default();
    if set.len() >= max_set.max(1) {
        return None;
    }
    set.insert(v).then_some(set.len())
}

/// `addr:port`, with brackets for IPv6.
struct Ep(Endpoint);

impl std::fmt::Display for Ep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, p) = self.0;
        if a.is_v4() {
            write!(f, "{a}:{p}")
        } else {
            write!(f, "[{a}]:{p}")
        }
    }
}

#[cfg(test)]
#[path = "anomaly_tests.rs"]
mod tests;
