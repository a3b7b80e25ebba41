//! Engine configuration: flow table bounds, timeouts, classifier and anomaly thresholds.
//!
//! Every field has a default (documented beside it); a TOML file may set any subset.
//! Unknown keys are an error, so a typo does not silently leave a default in force.

use serde::{Deserialize, Serialize};

/// Settings of one engine (one per worker core; all workers share the same settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Flows one worker's table holds at most (1 to 16,777,215). Memory is reserved
    /// up front, about 127 bytes per flow.
    pub flow_capacity: usize,
    /// Idle timeout of a flow whose handshake has not completed, seconds.
    pub timeout_half_open_s: u32,
    /// Idle timeout of an established flow, seconds.
    pub timeout_established_s: u32,
    /// Idle timeout of a flow after FIN or RST, seconds (catches retransmissions and
    /// data after the reset before the record is closed).
    pub timeout_closed_s: u32,
    /// An RST after this much silence in its flow gets the `idle` flag (middlebox idle
    /// timeout), seconds.
    pub idle_threshold_s: u32,
    /// How long an RST is held for evidence that only later packets give (`data_after`,
    /// `multi_seq`, `multi_ack`), milliseconds.
    pub verdict_delay_ms: u32,
    /// RSTs held at once at most; when full, the oldest is released early (counted).
    pub max_pending_rst: usize,
    /// Verify TCP checksums of SYN/FIN/RST segments (see `parse::ParseOptions`).
    pub verify_checksum: bool,
    /// Thresholds of the aggregate anomaly detectors.
    pub anomaly: AnomalyConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            flow_capacity: 1_000_000,
            timeout_half_open_s: 30,
            timeout_established_s: 600,
            timeout_closed_s: 10,
            idle_threshold_s: 300,
            verdict_delay_ms: 500,
            max_pending_rst: 65_536,
            verify_checksum: true,
            anomaly: AnomalyConfig::default(),
        }
    }
}

impl EngineConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        let max = crate::flow::MAX_CAPACITY;
        if self.flow_capacity == 0 || self.flow_capacity > max {
            anyhow::bail!(
                "flow_capacity must be between 1 and {max} (one table), got {}",
                self.flow_capacity
            );
        }
        if self.max_pending_rst == 0 {
            anyhow::bail!("max_pending_rst must be at least 1");
        }
        Ok(())
    }
}

/// Thresholds of the aggregate detectors (defaults from Zeek's classic scan and storm
/// policies where one exists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Scan window, seconds (Zeek: 5 min).
    pub scan_window_s: u32,
    /// Distinct hosts rejecting one source on one port within the window (Zeek: 25).
    pub scan_hosts: u32,
    /// Distinct ports rejecting one source on one host within the window (Zeek: 15).
    pub scan_ports: u32,
    /// Per-endpoint storm: this many RSTs, each less than `storm_gap_ms` after the
    /// previous one (Zeek: 1000 and 1 s).
    pub storm_count: u32,
    pub storm_gap_ms: u32,
    /// Service storm: RSTs per second for one server address and port at least this
    /// many times the service's own moving baseline...
    pub storm_factor: f64,
    /// ...and at least this many RSTs in that second.
    pub storm_min_rate: u32,
    /// Backscatter: unsolicited RST/ACKs from one remote to this many distinct local
    /// addresses within `scan_window_s`.
    pub backscatter_hosts: u32,
    /// Injection cluster: suspect RSTs from one source within `scan_window_s`.
    pub injection_count: u32,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            scan_window_s: 300,
            scan_hosts: 25,
            scan_ports: 15,
            storm_count: 1000,
            storm_gap_ms: 1000,
            storm_factor: 10.0,
            storm_min_rate: 100,
            backscatter_hosts: 25,
            injection_count: 3,
        }
    }
}

/// Reads the `[engine]` table of a TOML configuration file (the same file `run`
/// uses; other tables are for other parts of the sensor and are ignored here).
pub fn load_engine_config(path: &std::path::Path) -> anyhow::Result<EngineConfig> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    match doc.remove("engine") {
        None => Ok(EngineConfig::default()),
        Some(t) => t
            .try_into()
            .with_context(|| format!("{}: in [engine]", path.display())),
    }
}
