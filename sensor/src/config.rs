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
    /// How long an established flow is remembered in silence, seconds (also accepted as
    /// `idle_memory_s`). Firewalls commonly drop idle established TCP after an hour
    /// (Cisco ASA, Palo Alto) and their RST comes when the flow next speaks; a sensor
    /// that forgot the flow sooner could only call that RST `unsolicited`. Default
    /// 7200 s; evictions before this much silence are counted (`flows_forgotten_early`).
    #[serde(alias = "idle_memory_s")]
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
    /// Thresholds of the cause rules.
    pub cause: CauseConfig,
    /// Remote-mirroring encapsulations (`[engine.encap]`).
    pub encap: EncapConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            flow_capacity: 1_000_000,
            timeout_half_open_s: 30,
            timeout_established_s: 7200,
            timeout_closed_s: 10,
            idle_threshold_s: 300,
            verdict_delay_ms: 500,
            max_pending_rst: 65_536,
            verify_checksum: true,
            anomaly: AnomalyConfig::default(),
            cause: CauseConfig::default(),
            encap: EncapConfig::default(),
        }
    }
}

impl EngineConfig {
    /// How this configuration's engines parse frames: every engine's own, and what
    /// `replay --workers` and live fan-out parse with for them
    /// ([`crate::Engine::process_parsed`]).
    pub fn parse_options(&self) -> crate::parse::ParseOptions {
        crate::parse::ParseOptions {
            verify_checksum: self.verify_checksum,
            // Validated with the configuration; defaults if it never was.
            tunnel_ports: self.encap.ports().unwrap_or_default(),
        }
    }

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
        self.encap
            .ports()
            .map_err(|e| anyhow::anyhow!("[engine.encap] {e}"))?;
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
    /// ...each less than this many ms after the previous one.
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

/// Thresholds of the cause rules (DESIGN.md, "Why was it reset: causes"; the rules
/// themselves are in `classify::cause`). Defaults are argued beside each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CauseConfig {
    /// Two connections of one client are parallel attempts when their SYNs are at most
    /// this far apart, ms. RFC 8305 (Happy Eyeballs) waits 250 ms before the second
    /// family's attempt; Windows SMB clients open 139 and 445 within ~5 ms (Samba).
    pub race_window_ms: u32,
    /// ...and the loser is reset at most this long after the winner is established,
    /// ms: clients drop the loser at once (a late SYN-ACK is answered within an RTT).
    pub race_reset_ms: u32,
    /// A server RST at most this long (plus one handshake RTT) after the handshake
    /// completed is an accept-queue overflow, ms. Linux with `tcp_abort_on_overflow`
    /// answers the handshake ACK within 2-30 µs; a sensor near the clients sees it one
    /// RTT later.
    pub overload_rst_ms: u32,
    /// Such RSTs on at least this many flows of one service...
    pub overload_flows: u32,
    /// ...within this window, seconds (an overflow comes in bursts).
    pub overload_window_s: u32,
    /// A server host silent this long on every flow, then resetting flows whose client
    /// data went unanswered, rebooted (or lost its state), seconds. Longer than the
    /// TCP retransmission backoff's early steps, shorter than a reboot.
    pub reboot_silence_s: u32,
    /// ...on at least this many flows of that host.
    pub reboot_flows: u32,
    /// The resetter's FIN after at least this much silence is an idle keep-alive close,
    /// seconds: Apache's `KeepAliveTimeout` is 5 s, nginx's 75 s, Node's 5 s.
    pub keepalive_idle_s: u32,
    /// Peer payload this recent (ms) when the resetter closed means it had unread data:
    /// Linux `tcp_close` sends RST/ACK at once when data is unread (RFC 2525 §2.17).
    /// Also bounds how late peer data may follow the RST and still count as crossing
    /// it. 0 leaves only the zero-window sign.
    pub unread_window_ms: u32,
    /// Flows of one server address reset after its MAC changed before the `failover`
    /// anomaly is reported (keepalived moves a VIP with a gratuitous ARP; the new
    /// master answers old connections with RSTs).
    pub failover_flows: u32,
}

impl Default for CauseConfig {
    fn default() -> Self {
        CauseConfig {
            race_window_ms: 250,
            race_reset_ms: 100,
            overload_rst_ms: 5,
            overload_flows: 5,
            overload_window_s: 10,
            reboot_silence_s: 30,
            reboot_flows: 3,
            keepalive_idle_s: 5,
            unread_window_ms: 100,
            failover_flows: 2,
        }
    }
}

/// Remote mirroring (issue 11): which UDP ports are tunnels, and whether the tunnel
/// identity separates flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncapConfig {
    /// UDP destination ports decoded as VXLAN (at most 4). AWS Traffic Mirroring: 4789.
    pub vxlan_ports: Vec<u16>,
    /// UDP destination ports decoded as Geneve (at most 4). AWS GWLB: 6081.
    pub geneve_ports: Vec<u16>,
    /// Keep the tunnel identity (VXLAN/Geneve VNI, ERSPAN session ID) in the flow key,
    /// so equal inner addresses in two tunnels are two flows. Turn off when several
    /// mirror sessions deliver the two directions of the same traffic.
    pub tunnel_id_in_key: bool,
}

impl Default for EncapConfig {
    fn default() -> Self {
        let p = crate::parse::TunnelPorts::default();
        EncapConfig {
            vxlan_ports: p.vxlan.iter().copied().filter(|&x| x != 0).collect(),
            geneve_ports: p.geneve.iter().copied().filter(|&x| x != 0).collect(),
            tunnel_id_in_key: true,
        }
    }
}

impl EncapConfig {
    /// The parser's port lists.
    pub fn ports(&self) -> Result<crate::parse::TunnelPorts, String> {
        crate::parse::TunnelPorts::from_lists(&self.vxlan_ports, &self.geneve_ports)
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
