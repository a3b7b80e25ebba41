//! What an alert is, independent of where it is sent.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Where an alert comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Origin {
    /// An `anomalies` row written by a sensor.
    Anomaly,
    /// A configured threshold rule over a query.
    Threshold,
}

impl Origin {
    pub(super) fn name(self) -> &'static str {
        match self {
            Origin::Anomaly => "anomaly",
            Origin::Threshold => "threshold",
        }
    }
}

/// Alertmanager's two states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub(super) fn name(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// Severity on the 0..=10 scale CEF uses; the names are Alertmanager's usual ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn cef(self) -> u8 {
        match self {
            Severity::Info => 3,
            Severity::Warning => 6,
            Severity::Critical => 9,
        }
    }

    /// Forged RSTs are an attack on live connections; storms and failovers hurt
    /// service; scans and backscatter are noise the SOC wants to see, not be paged for.
    pub fn of_anomaly(kind: &str) -> Severity {
        match kind {
            "injection" => Severity::Critical,
            "rst_storm" | "failover" => Severity::Warning,
            _ => Severity::Info,
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// One alert: an anomaly (kind, subject) of one sensor, or a rule's subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Alert {
    pub origin: Origin,
    /// Anomaly kind (`scan`, `rst_storm`, ...) or the threshold rule's name.
    pub rule: String,
    /// Sensor that saw it; empty for threshold rules (they span sensors).
    pub sensor_id: String,
    /// What it is about: `203.0.113.9`, `192.0.2.10:443`, or a rule's subject column.
    pub subject: String,
    pub severity: Severity,
    /// First evidence (anomaly: packet time; threshold: when the rule first matched).
    pub starts_us: i64,
    /// Last evidence (packet time / last evaluation that matched).
    pub last_us: i64,
    pub value: f64,
    pub baseline: f64,
    pub detail: String,
    /// Anomaly rows (or rule evaluations) folded into this alert.
    pub rows: u64,
}

impl Alert {
    /// Identity for dedup: the same key is the same alert while it is open.
    pub(super) fn key(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.origin.name(),
            self.rule,
            self.sensor_id,
            self.subject
        )
    }

    /// Alertmanager's fingerprint: stable for a label set (FNV-1a 64 of the key), so a
    /// receiver pairs the resolved message with its firing one, across restarts too.
    pub(super) fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.key().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Alertmanager's `alertname`: `rstwatch_scan`, `rstwatch_rule_<name>`.
    pub(super) fn alertname(&self) -> String {
        match self.origin {
            Origin::Anomaly => format!("rstwatch_{}", self.rule),
            Origin::Threshold => format!("rstwatch_rule_{}", self.rule),
        }
    }

    /// The addresses the subject names, in ECS terms.
    pub(super) fn endpoints(&self) -> Endpoints {
        endpoints(self.origin, &self.rule, &self.subject)
    }
}

/// `source.ip`, `destination.ip`, `destination.port` of an alert, where known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Endpoints {
    pub source: Option<IpAddr>,
    pub destination: Option<IpAddr>,
    pub destination_port: Option<u16>,
}

/// Sensors name a service `addr:port` (storms, injection: the reset service is the
/// destination of the traffic being reset) and a bare address for the actor: the
/// scanner, the backscatter remote, the endpoint sending a storm of RSTs (sources),
/// or the server whose address moved (failover: a destination).
fn endpoints(origin: Origin, rule: &str, subject: &str) -> Endpoints {
    if let Ok(sa) = subject.parse::<SocketAddr>() {
        return Endpoints {
            destination: Some(sa.ip()),
            destination_port: Some(sa.port()),
            ..Endpoints::default()
        };
    }
    let Ok(ip) = subject.parse::<IpAddr>() else {
        return Endpoints::default();
    };
    let as_source = origin == Origin::Anomaly && rule != "failover";
    if as_source {
        Endpoints {
            source: Some(ip),
            ..Endpoints::default()
        }
    } else {
        Endpoints {
            destination: Some(ip),
            ..Endpoints::default()
        }
    }
}

/// One message for the sinks: an alert that starts firing or is resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Notice {
    /// Increasing over the life of the state directory: a receiver can spot a repeat.
    pub seq: u64,
    pub status: Status,
    pub alert: Alert,
    /// When the alerter decided to send it (wall clock, µs).
    pub decided_us: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(origin: Origin, rule: &str, subject: &str) -> Alert {
        Alert {
            origin,
            rule: rule.into(),
            sensor_id: "edge-1".into(),
            subject: subject.into(),
            severity: Severity::Info,
            starts_us: 0,
            last_us: 0,
            value: 0.0,
            baseline: 0.0,
            detail: String::new(),
            rows: 1,
        }
    }

    #[test]
    fn subjects_map_to_ecs_source_or_destination() {
        let e = alert(Origin::Anomaly, "scan", "203.0.113.9").endpoints();
        assert_eq!(e.source, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(e.destination, None);
        let e = alert(Origin::Anomaly, "injection", "[2001:db8::1]:443").endpoints();
        assert_eq!(e.destination, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(e.destination_port, Some(443));
        let e = alert(Origin::Anomaly, "failover", "192.0.2.10").endpoints();
        assert_eq!(e.destination, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(
            alert(Origin::Anomaly, "scan", "not an address").endpoints(),
            Endpoints::default()
        );
    }

    #[test]
    fn fingerprint_is_stable_and_differs_by_label_set() {
        let a = alert(Origin::Anomaly, "scan", "203.0.113.9");
        let mut later = a.clone();
        later.starts_us = 99;
        later.value = 7.0;
        assert_eq!(a.fingerprint(), later.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
        let b = alert(Origin::Anomaly, "scan", "203.0.113.10");
        assert_ne!(a.fingerprint(), b.fingerprint());
        let c = alert(Origin::Threshold, "scan", "203.0.113.9");
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
