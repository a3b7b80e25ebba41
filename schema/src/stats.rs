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
    /// Counter name (`engine.flows_created`, `ship.reconnects`, ...).
    pub name: String,
    /// Its value.
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
    /// When the counters were read, µs since the epoch.
    #[serde(rename = "ts", with = "crate::timefmt")]
    pub ts_us: i64,
    /// The counters.
    pub counters: Vec<NamedCounter>,
}
