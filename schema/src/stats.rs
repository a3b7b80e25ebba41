//! Sensor statistics: capture health and the engine's counters, sent periodically.

/// A counter by name (`parse.truncated`, `flows.evicted`, `xdp.rx_dropped`, ...).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct NamedCounter {
    pub name: String,
    pub value: u64,
}

/// A snapshot of a sensor's counters (cumulative since the sensor's boot).
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
pub struct SensorStats {
    #[serde(rename = "ts", with = "crate::timefmt")]
    pub ts_us: i64,
    pub counters: Vec<NamedCounter>,
}
