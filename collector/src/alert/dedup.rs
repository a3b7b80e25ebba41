//! Open alerts: one alert per (origin, rule, sensor, subject) while it lasts, a
//! resolved message when it ends.
//!
//! Sensors report an anomaly (kind, subject) at most once per detector window (5 min by
//! default), so a scan that goes on produces one row per window. Rows of the same key
//! whose packet time is within `window` of the alert's last evidence join it; the
//! alert resolves when no row has joined it for `window` of wall-clock time (the
//! sensor would have reported a continuing anomaly by then). A threshold alert
//! resolves at the first evaluation that no longer finds its subject above the line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{Alert, Origin, Status};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Open {
    alert: Alert,
    /// Wall clock (µs) when evidence last joined it.
    seen_us: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct OpenAlerts {
    open: BTreeMap<String, Open>,
    /// New alerts not opened because [`MAX_OPEN`] were open (a metric).
    #[serde(default)]
    pub untracked: u64,
}

/// Open alerts held at most: the state file is rewritten every poll, and a rule
/// returning a million subjects, or an attacker spraying addresses, must not grow it
/// without bound. A new key past this is counted and not sent.
pub(super) const MAX_OPEN: usize = 10_000;

/// A decision: send this alert with this status.
pub(super) type Decision = (Status, Alert);

impl OpenAlerts {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.open.len()
    }

    /// One anomaly row, as an alert of one row. Fires when nothing of its key is
    /// open; joins the open alert when within `window_us` of its evidence; otherwise
    /// the open one resolves and this one fires.
    pub(super) fn observe(
        &mut self,
        row: Alert,
        now_us: i64,
        window_us: i64,
        out: &mut Vec<Decision>,
    ) {
        let key = row.key();
        if let Some(o) = self.open.get_mut(&key) {
            let a = &mut o.alert;
            if row.starts_us <= a.last_us.saturating_add(window_us) {
                a.starts_us = a.starts_us.min(row.starts_us);
                a.last_us = a.last_us.max(row.starts_us);
                a.rows += row.rows;
                if row.value >= a.value {
                    a.value = row.value;
                    a.baseline = row.baseline;
                    a.detail = row.detail;
                }
                o.seen_us = now_us;
                return;
            }
            let ended = self.open.remove(&key).expect("present");
            out.push((Status::Resolved, ended.alert));
        }
        if self.open.len() >= MAX_OPEN {
            self.untracked += 1;
            return;
        }
        out.push((Status::Firing, row.clone()));
        self.open.insert(
            key,
            Open {
                alert: row,
                seen_us: now_us,
            },
        );
    }

    /// Resolves anomaly alerts that nothing joined for `window_us` of wall clock.
    pub(super) fn expire(&mut self, now_us: i64, window_us: i64, out: &mut Vec<Decision>) {
        let done: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| {
                o.alert.origin == Origin::Anomaly && now_us.saturating_sub(o.seen_us) > window_us
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            let o = self.open.remove(&k).expect("present");
            out.push((Status::Resolved, o.alert));
        }
    }

    /// A threshold rule's evaluation: `above` holds one alert per subject over the
    /// line now. New subjects fire; open subjects of this rule not in `above` resolve
    /// (their `last_us` is the evaluation that last matched).
    pub(super) fn threshold(
        &mut self,
        rule: &str,
        above: Vec<Alert>,
        now_us: i64,
        out: &mut Vec<Decision>,
    ) {
        let mut current = BTreeMap::new();
        for a in above {
            current.insert(a.key(), a);
        }
        let gone: Vec<String> = self
            .open
            .iter()
            .filter(|(k, o)| {
                o.alert.origin == Origin::Threshold
                    && o.alert.rule == rule
                    && !current.contains_key(*k)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            let o = self.open.remove(&k).expect("present");
            out.push((Status::Resolved, o.alert));
        }
        for (k, a) in current {
            let full = self.open.len() >= MAX_OPEN;
            match self.open.get_mut(&k) {
                Some(o) => {
                    o.alert.last_us = now_us;
                    o.alert.value = a.value;
                    o.alert.detail = a.detail;
                    o.alert.rows += 1;
                    o.seen_us = now_us;
                }
                None if full => self.untracked += 1,
                None => {
                    out.push((Status::Firing, a.clone()));
                    self.open.insert(
                        k,
                        Open {
                            alert: a,
                            seen_us: now_us,
                        },
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Severity;
    use super::*;

    const S: i64 = 1_000_000;

    fn row(origin: Origin, subject: &str, ts_us: i64) -> Alert {
        Alert {
            origin,
            rule: "scan".into(),
            sensor_id: "edge-1".into(),
            subject: subject.into(),
            severity: Severity::Info,
            starts_us: ts_us,
            last_us: ts_us,
            value: 25.0,
            baseline: 25.0,
            detail: "d".into(),
            rows: 1,
        }
    }

    #[test]
    fn rows_of_one_key_within_the_window_make_one_alert() {
        let mut o = OpenAlerts::default();
        let mut out = Vec::new();
        for i in 0..5 {
            o.observe(
                row(Origin::Anomaly, "203.0.113.9", i * 100 * S),
                i,
                300 * S,
                &mut out,
            );
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, Status::Firing);
        o.expire(4 + 299 * S, 300 * S, &mut out);
        assert_eq!(out.len(), 1, "not yet expired");
        o.expire(4 + 301 * S, 300 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].0, Status::Resolved);
        assert_eq!(out[1].1.rows, 5);
        assert_eq!(out[1].1.starts_us, 0);
        assert_eq!(out[1].1.last_us, 400 * S);
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn a_row_past_the_window_resolves_the_old_alert_and_fires_a_new_one() {
        let mut o = OpenAlerts::default();
        let mut out = Vec::new();
        o.observe(row(Origin::Anomaly, "203.0.113.9", 0), 0, 300 * S, &mut out);
        o.observe(
            row(Origin::Anomaly, "203.0.113.9", 301 * S),
            0,
            300 * S,
            &mut out,
        );
        let st: Vec<Status> = out.iter().map(|d| d.0).collect();
        assert_eq!(st, [Status::Firing, Status::Resolved, Status::Firing]);
        assert_eq!(out[2].1.starts_us, 301 * S);
    }

    #[test]
    fn different_subjects_are_different_alerts() {
        let mut o = OpenAlerts::default();
        let mut out = Vec::new();
        o.observe(row(Origin::Anomaly, "203.0.113.9", 0), 0, 300 * S, &mut out);
        o.observe(
            row(Origin::Anomaly, "203.0.113.10", 0),
            0,
            300 * S,
            &mut out,
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn past_max_open_new_alerts_are_counted_not_sent() {
        let mut o = OpenAlerts::default();
        let mut out = Vec::new();
        for i in 0..MAX_OPEN + 5 {
            o.observe(
                row(Origin::Anomaly, &format!("s{i}"), 0),
                0,
                300 * S,
                &mut out,
            );
        }
        assert_eq!(out.len(), MAX_OPEN);
        assert_eq!(o.untracked, 5);
        // An open one still takes its rows.
        o.observe(row(Origin::Anomaly, "s0", 1), 0, 300 * S, &mut out);
        assert_eq!((out.len(), o.untracked), (MAX_OPEN, 5));
    }

    #[test]
    fn threshold_fires_once_and_resolves_when_below() {
        let mut o = OpenAlerts::default();
        let mut out = Vec::new();
        let a = row(Origin::Threshold, "192.0.2.10:443", 0);
        o.threshold("scan", vec![a.clone()], 0, &mut out);
        o.threshold("scan", vec![a.clone()], 60 * S, &mut out);
        assert_eq!(out.len(), 1);
        // Expiry by wall clock applies to anomalies only.
        o.expire(10_000 * S, 300 * S, &mut out);
        assert_eq!(out.len(), 1);
        o.threshold("scan", vec![], 120 * S, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].0, Status::Resolved);
        assert_eq!(out[1].1.last_us, 60 * S);
    }
}
