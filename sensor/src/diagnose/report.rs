//! The report model: what `diagnose` prints, in every format. Built once from a
//! [`Collector`]; the renderers only lay it out. Its serde form is `--format json`
//! (field names are stable, see README "diagnose").

use super::collect::{CauseTally, Collector};
use super::examples;
use super::idle::{self, IdleEstimate};
use super::timeline::{self, Cluster, Timeline};
use rstwatch_schema::{Anomaly, Cause, RstEvent};

/// Services and client networks listed per cause.
pub(crate) const TOP: usize = 5;

/// The whole report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The capture files, as given.
    pub files: Vec<String>,
    /// Earliest packet time of any record (absent when there were none).
    #[serde(with = "opt_ts", skip_serializing_if = "Option::is_none")]
    pub first: Option<i64>,
    /// Latest packet time of any record.
    #[serde(with = "opt_ts", skip_serializing_if = "Option::is_none")]
    pub last: Option<i64>,
    /// RST events.
    pub resets: u64,
    /// Flow records (every TCP flow the engine tracked).
    pub flows: u64,
    /// Flows that saw at least one RST.
    pub flows_reset: u64,
    /// Causes with at least one reset or flow, in precedence order.
    pub causes: Vec<CauseReport>,
    /// All resets over time (absent when there were none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
    /// In the order the engine reported them.
    pub anomalies: Vec<Anomaly>,
    /// Anomalies beyond the ones kept.
    pub anomalies_dropped: u64,
}

/// One cause's part of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CauseReport {
    /// The cause.
    pub cause: Cause,
    /// What it means (DESIGN.md's table).
    pub meaning: &'static str,
    /// What the operator does about it.
    pub remedy: &'static str,
    /// RSTs with this cause.
    pub resets: u64,
    /// Share of all resets, percent with one decimal.
    pub percent: f64,
    /// Flows whose first RST had this cause.
    pub flows: u64,
    /// Top services (server address:port), most resets first.
    pub services: Vec<Share>,
    /// Resets of services beyond the ones told apart (memory bound).
    pub services_untracked: u64,
    /// Top client networks (/24, /64), most resets first.
    pub client_networks: Vec<Share>,
    /// Resets of client networks beyond the ones told apart (memory bound).
    pub client_networks_untracked: u64,
    /// Moments this cause's resets cluster (percent of this cause's resets).
    pub clusters: Vec<Cluster>,
    /// Only for `idle_timeout`: where the silences before the resets cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<IdleEstimate>,
    /// The most telling RSTs, in the offline contract's form.
    pub examples: Vec<RstEvent>,
}

/// A service or network and its resets.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Share {
    /// `address:port` or network.
    pub name: String,
    /// Its resets.
    pub resets: u64,
    /// Share of the cause's resets, percent with one decimal.
    pub percent: f64,
}

impl Report {
    /// The report of everything `c` gathered from `files`.
    pub fn build(c: &Collector, files: Vec<String>) -> Report {
        let causes = Cause::ALL
            .iter()
            .zip(&c.causes)
            .filter(|(_, t)| t.resets > 0 || t.flows > 0)
            .map(|(&cause, t)| cause_report(cause, t, c.resets))
            .collect();
        let mut anomalies = c.anomalies.clone();
        anomalies.sort_by_key(|a| a.ts_us);
        Report {
            files,
            first: c.span_us.map(|s| s.0),
            last: c.span_us.map(|s| s.1),
            resets: c.resets,
            flows: c.flows,
            flows_reset: c.flows_reset,
            causes,
            timeline: timeline::timeline(&c.seconds),
            anomalies,
            anomalies_dropped: c.anomalies_dropped,
        }
    }
}

fn cause_report(cause: Cause, t: &CauseTally, all_resets: u64) -> CauseReport {
    let mut services: Vec<_> = t.services.iter().collect();
    // Most resets first; equal counts in address order, so the report is stable.
    services.sort_by(|a, b| b.1.resets.cmp(&a.1.resets).then(a.0.cmp(b.0)));
    let examples = examples::pick(services.iter().map(|(_, s)| &s.best), &t.top);
    let shares = |items: Vec<(String, u64)>| -> Vec<Share> {
        items
            .into_iter()
            .take(TOP)
            .map(|(name, n)| Share {
                name,
                resets: n,
                percent: super::percent(n, t.resets),
            })
            .collect()
    };
    let services = shares(
        services
            .iter()
            .map(|(k, s)| (k.to_string(), s.resets))
            .collect(),
    );
    let mut nets: Vec<_> = t.networks.iter().collect();
    nets.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let client_networks = shares(nets.iter().map(|(k, n)| (k.to_string(), **n)).collect());
    CauseReport {
        cause,
        meaning: cause.meaning(),
        remedy: cause.remedy(),
        resets: t.resets,
        percent: super::percent(t.resets, all_resets),
        flows: t.flows,
        services,
        services_untracked: t.services_untracked,
        client_networks,
        client_networks_untracked: t.networks_untracked,
        clusters: timeline::timeline(&t.seconds)
            .map(|tl| tl.clusters)
            .unwrap_or_default(),
        idle_timeout: if cause == Cause::IdleTimeout {
            idle::estimate(&t.silences_ms)
        } else {
            None
        },
        examples,
    }
}

/// serde: an optional microsecond timestamp as RFC 3339.
mod opt_ts {
    pub(crate) fn serialize<S: serde::Serializer>(
        t: &Option<i64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(us) => rstwatch_schema::timefmt::serialize(us, s),
            None => s.serialize_none(),
        }
    }
}
