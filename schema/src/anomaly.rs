//! Aggregate anomaly rows over time windows (storms, scans, backscatter, injection).

use crate::str_enum::str_enum;

str_enum! {
    /// What kind of aggregate anomaly.
    pub enum AnomalyKind {
        /// RST rate of a server/service far above its own baseline, or Zeek's
        /// per-endpoint storm (many RSTs less than a second apart).
        RstStorm = 0 => "rst_storm",
        /// One source collecting rejects from many hosts on one port, or many ports on
        /// one host.
        Scan = 1 => "scan",
        /// Unsolicited RST/ACKs spread over many local addresses from one remote.
        Backscatter = 2 => "backscatter",
        /// Suspect RSTs clustering on a source, path or service.
        Injection = 3 => "injection",
        /// A server address seen from a new source MAC, followed by `state_loss`
        /// resets (a VIP moved: VRRP/keepalived failover).
        Failover = 4 => "failover",
    }
}

/// One anomaly row.
#[derive(
    Debug,
    Clone,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct Anomaly {
    /// When the threshold was crossed.
    #[serde(rename = "ts", with = "crate::timefmt")]
    pub ts_us: i64,
    /// What kind of anomaly.
    pub kind: AnomalyKind,
    /// What the anomaly is about, e.g. `198.51.100.7:443` or `203.0.113.9`.
    pub subject: String,
    /// The measured value (count or rate, see `detail`).
    pub value: f64,
    /// The threshold or baseline it was compared with.
    pub baseline: f64,
    /// A human sentence saying what was measured.
    pub detail: String,
}
