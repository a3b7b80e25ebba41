//! The report's input side: a [`Sink`] that tallies records as the engine emits them,
//! so a capture of any length is summarised without keeping its RSTs.
//!
//! Memory is bounded like everything else in the sensor: per cause at most
//! [`MAX_KEYS`] services and client networks are told apart (resets beyond are
//! counted as untracked and the report says so), at most [`MAX_ANOMALIES`] anomalies
//! and [`idle::MAX_SILENCES`] silences are kept; the per-second timeline grows with
//! the capture's duration, not its size.

use super::examples::{Candidate, TopCandidates};
use super::idle;
use super::service::{ends_of, ClientNet, Service};
use super::timeline::SecondCounts;
use crate::sink::Sink;
use rstwatch_schema::{Anomaly, Cause, FlowRecord, RstEvent};
use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// Services and client networks told apart per cause, at most.
pub(crate) const MAX_KEYS: usize = 100_000;
/// Anomalies kept, at most.
pub(crate) const MAX_ANOMALIES: usize = 10_000;

/// Everything the report needs, gathered from the engine's records.
#[derive(Debug)]
pub struct Collector {
    pub(super) resets: u64,
    pub(super) flows: u64,
    pub(super) flows_reset: u64,
    /// Earliest and latest packet time of any record, microseconds.
    pub(super) span_us: Option<(i64, i64)>,
    /// Indexed by `Cause::code()`.
    pub(super) causes: Vec<CauseTally>,
    pub(super) seconds: SecondCounts,
    pub(super) anomalies: Vec<Anomaly>,
    pub(super) anomalies_dropped: u64,
    seen: u64,
}

/// What is known of one cause.
#[derive(Debug, Default)]
pub(super) struct CauseTally {
    pub resets: u64,
    pub flows: u64,
    pub services: HashMap<Service, ServiceTally>,
    pub services_untracked: u64,
    pub networks: HashMap<ClientNet, u64>,
    pub networks_untracked: u64,
    pub seconds: SecondCounts,
    /// Only for `idle_timeout`.
    pub silences_ms: Vec<u64>,
    pub top: TopCandidates,
}

#[derive(Debug)]
pub(super) struct ServiceTally {
    pub resets: u64,
    pub best: Candidate,
}

impl Default for Collector {
    fn default() -> Self {
        Collector {
            resets: 0,
            flows: 0,
            flows_reset: 0,
            span_us: None,
            causes: Cause::ALL.iter().map(|_| CauseTally::default()).collect(),
            seconds: SecondCounts::default(),
            anomalies: Vec::new(),
            anomalies_dropped: 0,
            seen: 0,
        }
    }
}

impl Collector {
    fn widen_span(&mut self, from_us: i64, to_us: i64) {
        self.span_us = Some(match self.span_us {
            None => (from_us, to_us),
            Some((a, b)) => (a.min(from_us), b.max(to_us)),
        });
    }
}

impl Sink for Collector {
    fn rst(&mut self, ev: RstEvent) {
        self.resets += 1;
        self.seen += 1;
        self.widen_span(ev.ts_us, ev.ts_us);
        self.seconds.add(ev.ts_us);
        self.causes[ev.cause.code() as usize].add(ev, self.seen);
    }

    fn flow(&mut self, rec: FlowRecord) {
        self.flows += 1;
        self.widen_span(rec.ts_start_us, rec.ts_end_us);
        if rec.rst_count > 0 {
            self.flows_reset += 1;
        }
        if let Some(c) = rec.cause {
            self.causes[c.code() as usize].flows += 1;
        }
    }

    fn anomaly(&mut self, a: Anomaly) {
        self.widen_span(a.ts_us, a.ts_us);
        if self.anomalies.len() < MAX_ANOMALIES {
            self.anomalies.push(a);
        } else {
            self.anomalies_dropped += 1;
        }
    }
}

impl CauseTally {
    fn add(&mut self, ev: RstEvent, seen: u64) {
        self.resets += 1;
        self.seconds.add(ev.ts_us);
        if ev.cause == Cause::IdleTimeout && self.silences_ms.len() < idle::MAX_SILENCES {
            self.silences_ms.push(ev.silence_ms);
        }
        let ends = ends_of(&ev);
        let net = ClientNet::of(ends.client);
        if !bump(&mut self.networks, net) {
            self.networks_untracked += 1;
        }
        let cand = Candidate::new(ev, seen);
        self.top.offer(&cand);
        let full = self.services.len() >= MAX_KEYS;
        match self.services.entry(ends.service) {
            Entry::Occupied(mut o) => {
                let s = o.get_mut();
                s.resets += 1;
                if cand.rank(&s.best).is_lt() {
                    s.best = cand;
                }
            }
            Entry::Vacant(_) if full => self.services_untracked += 1,
            Entry::Vacant(v) => {
                v.insert(ServiceTally {
                    resets: 1,
                    best: cand,
                });
            }
        }
    }
}

/// Counts one for `key` unless the map is full and does not know it yet; false when
/// the count could not be kept.
fn bump(map: &mut HashMap<ClientNet, u64>, key: ClientNet) -> bool {
    if map.len() >= MAX_KEYS && !map.contains_key(&key) {
        return false;
    }
    *map.entry(key).or_default() += 1;
    true
}
