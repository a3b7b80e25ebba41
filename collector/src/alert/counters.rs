//! Alert counters, rendered into the collector's `/metrics` as `rstwatch_collector_alerts_*`.

use rstwatch_schema::prometheus::{Exposition, MetricType::*};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What happened to notices, per sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Delivered (2xx, datagram sent, line written).
    Sent,
    /// A failed attempt that will be tried again (5xx, 429, connection error, timeout).
    Retried,
    /// Given up: attempts used up, or the receiver refused it (4xx).
    Failed,
    /// Dropped from a full queue before any attempt.
    Dropped,
}

impl Outcome {
    fn metric(self) -> &'static str {
        match self {
            Outcome::Sent => "rstwatch_collector_alerts_sent_total",
            Outcome::Retried => "rstwatch_collector_alerts_retries_total",
            Outcome::Failed => "rstwatch_collector_alerts_failed_total",
            Outcome::Dropped => "rstwatch_collector_alerts_dropped_total",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Outcome::Sent => "Alert notices delivered, by sink.",
            Outcome::Retried => "Failed delivery attempts that were retried, by sink.",
            Outcome::Failed => "Alert notices given up after the last attempt or refused, by sink.",
            Outcome::Dropped => "Alert notices dropped because the sink's queue was full, by sink.",
        }
    }

    const ALL: [Outcome; 4] = [
        Outcome::Sent,
        Outcome::Retried,
        Outcome::Failed,
        Outcome::Dropped,
    ];
}

/// The alerter's counters, shared by its threads and rendered into `/metrics`.
#[derive(Debug, Default)]
pub struct AlertCounters {
    by_sink: Mutex<BTreeMap<(Outcome, &'static str), u64>>,
    /// Notices decided, by status (`firing`, `resolved`).
    decided: Mutex<BTreeMap<&'static str, u64>>,
    /// Failed ClickHouse polls or rule evaluations, and failed state writes.
    pub source_errors: std::sync::atomic::AtomicU64,
    /// Failed writes of the state file.
    pub state_errors: std::sync::atomic::AtomicU64,
    /// Mirrors the open-alert table's count of alerts it refused (it is persisted).
    pub untracked: std::sync::atomic::AtomicU64,
    /// Notices waiting per sink.
    queued: Mutex<BTreeMap<&'static str, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AlertCounters {
    /// One notice of `sink` ended as `outcome`.
    pub fn count(&self, outcome: Outcome, sink: &'static str) {
        *lock(&self.by_sink).entry((outcome, sink)).or_insert(0) += 1;
    }

    /// How many notices of `sink` ended as `outcome`.
    pub fn get(&self, outcome: Outcome, sink: &'static str) -> u64 {
        lock(&self.by_sink)
            .get(&(outcome, sink))
            .copied()
            .unwrap_or(0)
    }

    /// One notice decided with `status` (`firing`, `resolved`).
    pub fn decided(&self, status: &'static str) {
        *lock(&self.decided).entry(status).or_insert(0) += 1;
    }

    /// Notices now waiting for `sink`.
    pub fn set_queued(&self, sink: &'static str, n: usize) {
        lock(&self.queued).insert(sink, n as u64);
    }

    /// Appends the alert families to a Prometheus exposition.
    pub fn render(&self, e: &mut Exposition) {
        use std::sync::atomic::Ordering::Relaxed;
        let by_sink = lock(&self.by_sink).clone();
        for o in Outcome::ALL {
            let mut f = e.family(o.metric(), o.help(), Counter);
            for ((_, sink), v) in by_sink.iter().filter(|((oo, _), _)| *oo == o) {
                f.sample(&[("sink", sink)], v);
            }
        }
        let mut f = e.family(
            "rstwatch_collector_alerts_total",
            "Alert notices decided, by status.",
            Counter,
        );
        for (st, v) in lock(&self.decided).iter() {
            f.sample(&[("status", st)], v);
        }
        let mut f = e.family(
            "rstwatch_collector_alerts_queued",
            "Alert notices waiting for delivery, by sink.",
            Gauge,
        );
        for (sink, v) in lock(&self.queued).iter() {
            f.sample(&[("sink", sink)], v);
        }
        e.single(
            "rstwatch_collector_alerts_source_errors_total",
            "Failed ClickHouse reads of the alerter (anomaly polls, rule queries).",
            Counter,
            self.source_errors.load(Relaxed),
        );
        e.single(
            "rstwatch_collector_alerts_state_errors_total",
            "Failed writes of the alerter's state file.",
            Counter,
            self.state_errors.load(Relaxed),
        );
        e.single(
            "rstwatch_collector_alerts_untracked_total",
            "New alerts not sent because 10000 alerts were open.",
            Counter,
            self.untracked.load(Relaxed),
        );
    }
}
