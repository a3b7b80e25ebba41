//! The `run` configuration: a TOML file and/or command-line flags (flags win).
//!
//! ```toml
//! iface = "eth1"
//! queues = [0]            # receive queues, one AF_XDP socket each
//! cores = [1]             # one per queue; with fanout, then one per worker
//! fanout = 0              # > 0: one capture core per queue hashes flows to N workers
//! mode = "auto"           # native | generic | auto (native, else generic)
//! non_tcp = "drop"        # drop | pass (hand non-TCP frames to the host stack)
//! zero_copy = "auto"      # auto | off | required
//! coalesce_us = 50        # wake-up coalescing while traffic flows (0: off)
//! stats_interval_s = 10   # periodic stats line on stderr (0: off)
//! metrics_listen = "127.0.0.1:9108"   # Prometheus text endpoint (default: off)
//! [busy_poll]             # optional: SO_PREFER_BUSY_POLL
//! usecs = 50
//! budget = 64
//! [engine]                # rstwatch_sensor::EngineConfig, every field optional
//! verdict_delay_ms = 500
//! ```

use crate::config::EngineConfig;
use anyhow::bail;
use rstwatch_xdp::{ModeRequest, NonTcp, ZeroCopy};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// Everything `rstwatch-sensor run` needs. The enums and the address are parsed when the
/// file or the flags are read; [`RunConfig::validate`] checks only how values fit together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Capture interface (mirror/TAP port).
    pub iface: Option<String>,
    /// Receive queues to capture from.
    pub queues: Vec<u32>,
    /// CPU cores: per-queue mode, one per queue; fan-out mode, one per queue (capture)
    /// then one per worker. Empty: threads are not pinned.
    pub cores: Vec<usize>,
    /// Fan-out workers (0: per-queue mode, each queue's thread runs its own engine).
    pub fanout: usize,
    /// XDP attach mode: native, generic or auto.
    pub mode: ModeRequest,
    /// What the XDP program does with non-TCP frames: drop or pass.
    pub non_tcp: NonTcp,
    /// Zero-copy bind: auto, off or required.
    pub zero_copy: ZeroCopy,
    /// Bytes per UMEM frame, 2048 or 4096: frames up to this minus the 256-byte XDP
    /// headroom fit (1792 or 3840 bytes); longer ones are dropped by the kernel and
    /// counted (`rx_dropped`). Default 2048 (standard MTU).
    pub frame_size: u32,
    /// UMEM frames per queue.
    pub frame_count: u32,
    /// Receive and fill ring entries per queue (power of two). Default 16384: 40 ms of
    /// 400 kpps, so a worker that stalls briefly loses nothing.
    pub ring_size: u32,
    /// Frames per receive batch.
    pub batch: u32,
    /// Wake-up coalescing while traffic flows, microseconds (0: off): the capture
    /// thread sleeps this long for frames to gather instead of being woken for every
    /// few. Cuts CPU per packet at moderate rates; adds at most this much latency.
    pub coalesce_us: u32,
    /// Seconds between stats lines on stderr (0: none).
    pub stats_interval_s: u32,
    /// Prometheus text endpoint address (off when absent).
    pub metrics_listen: Option<SocketAddr>,
    /// Frames a fan-out worker's queue holds (in batches of up to `batch`) before the
    /// capture core drops and counts (`fanout_dropped`).
    pub fanout_queue_batches: usize,
    /// Records the output queue holds (about: carried in batches of up to 64) before
    /// new ones are dropped and counted (`output_dropped`).
    pub output_queue: usize,
    /// Busy polling (off when absent).
    pub busy_poll: Option<BusyPollConfig>,
    /// The engine's settings (one engine per worker, all alike).
    pub engine: EngineConfig,
}

/// `[busy_poll]`: `SO_PREFER_BUSY_POLL` on every socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusyPollConfig {
    /// SO_BUSY_POLL: microseconds per busy-poll call.
    pub usecs: u32,
    /// SO_BUSY_POLL_BUDGET: packets per busy-poll round.
    #[serde(default = "default_budget")]
    pub budget: u32,
}

fn default_budget() -> u32 {
    64
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            iface: None,
            queues: vec![0],
            cores: vec![],
            fanout: 0,
            mode: ModeRequest::Auto,
            non_tcp: NonTcp::Drop,
            zero_copy: ZeroCopy::Auto,
            frame_size: 2048,
            frame_count: 32768,
            ring_size: 16384,
            batch: 64,
            coalesce_us: 50,
            stats_interval_s: 10,
            metrics_listen: None,
            fanout_queue_batches: 1024,
            output_queue: 1 << 16,
            busy_poll: None,
            engine: EngineConfig::default(),
        }
    }
}

impl RunConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<RunConfig> {
        let at = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: {e}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| at(&e))?;
        let cfg: RunConfig = toml::from_str(&text).map_err(|e| at(&e))?;
        cfg.validate().map_err(|e| at(&e))?;
        Ok(cfg)
    }

    /// Checks everything that can be checked without touching the system.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.engine
            .validate()
            .map_err(|e| anyhow::anyhow!("[engine] {e}"))?;
        if self.engine.flow_capacity == 0 {
            bail!("engine.flow_capacity must be positive");
        }
        self.check_queues()?;
        self.check_cores()?;
        self.check_umem()?;
        self.check_wakeups()?;
        if self.fanout_queue_batches == 0 || self.output_queue == 0 {
            bail!("fanout_queue_batches and output_queue must be positive");
        }
        Ok(())
    }

    /// Queues: at least one, none twice, ids the XSK map can hold; at most 64 workers.
    fn check_queues(&self) -> anyhow::Result<()> {
        if self.queues.is_empty() {
            bail!("queues: at least one queue is needed");
        }
        let mut q = self.queues.clone();
        q.sort_unstable();
        q.dedup();
        if q.len() != self.queues.len() {
            bail!("queues: {:?} lists a queue twice", self.queues);
        }
        if self.queues.iter().any(|&q| q >= 256) {
            bail!("queues: queue ids go up to 255");
        }
        if self.fanout > 64 {
            bail!("fanout: at most 64 workers");
        }
        Ok(())
    }

    /// Cores, when given: exactly one per thread (queues, then workers).
    fn check_cores(&self) -> anyhow::Result<()> {
        let want = self.queues.len() + self.fanout;
        if self.cores.is_empty() || self.cores.len() == want {
            return Ok(());
        }
        if self.fanout == 0 {
            bail!(
                "cores: {} core(s) for {} queue(s); give one core per queue",
                self.cores.len(),
                self.queues.len()
            );
        }
        bail!(
            "cores: {} core(s) given; fan-out needs {} (one capture core per queue, \
             then one per worker)",
            self.cores.len(),
            want
        );
    }

    /// UMEM and rings: sizes the kernel accepts, and enough frames to keep the fill
    /// ring full while the receive ring is full too.
    fn check_umem(&self) -> anyhow::Result<()> {
        if !(self.frame_size == 2048 || self.frame_size == 4096) {
            bail!("frame_size: 2048 or 4096, got {}", self.frame_size);
        }
        if !self.ring_size.is_power_of_two() || self.ring_size < 64 || self.ring_size > 1 << 16 {
            bail!(
                "ring_size: a power of two from 64 to 65536, got {}",
                self.ring_size
            );
        }
        if self.frame_count < self.ring_size * 2 {
            bail!(
                "frame_count: at least twice ring_size ({}), got {}",
                self.ring_size * 2,
                self.frame_count
            );
        }
        if self.batch == 0 || self.batch > self.ring_size {
            bail!("batch: 1 to ring_size, got {}", self.batch);
        }
        Ok(())
    }

    /// Coalescing and busy polling: positive, and short enough not to stall capture.
    fn check_wakeups(&self) -> anyhow::Result<()> {
        if self.coalesce_us > 10_000 {
            bail!(
                "coalesce_us: at most 10000 (10 ms), got {}",
                self.coalesce_us
            );
        }
        if let Some(bp) = &self.busy_poll {
            if bp.usecs == 0 || bp.budget == 0 {
                bail!("busy_poll: usecs and budget must be positive");
            }
        }
        Ok(())
    }

    /// The socket settings for every queue.
    pub fn xsk_config(&self) -> rstwatch_xdp::XskConfig {
        rstwatch_xdp::XskConfig {
            frame_size: self.frame_size,
            frame_count: self.frame_count,
            ring_size: self.ring_size,
            batch: self.batch,
            zero_copy: self.zero_copy,
            coalesce_us: self.coalesce_us,
            busy_poll: self.busy_poll.map(|b| rstwatch_xdp::BusyPoll {
                usecs: b.usecs,
                budget: b.budget,
            }),
        }
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = RunConfig::default();
        c.validate().unwrap();
        let back: RunConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        let mut c = RunConfig {
            iface: Some("eth1".into()),
            busy_poll: Some(BusyPollConfig {
                usecs: 50,
                budget: 64,
            }),
            metrics_listen: Some("127.0.0.1:9108".parse().unwrap()),
            mode: ModeRequest::Generic,
            non_tcp: NonTcp::Pass,
            zero_copy: ZeroCopy::Required,
            ..RunConfig::default()
        };
        c.engine.verdict_delay_ms = 100;
        let back: RunConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn rejects_inconsistent_settings() {
        let bad = |f: fn(&mut RunConfig), needle: &str| {
            let mut c = RunConfig::default();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        bad(|c| c.queues = vec![], "at least one queue");
        bad(|c| c.queues = vec![1, 1], "twice");
        bad(|c| c.cores = vec![0, 1], "one core per queue");
        bad(
            |c| {
                c.fanout = 2;
                c.cores = vec![0, 1]
            },
            "fan-out needs 3",
        );
        bad(|c| c.frame_size = 3000, "frame_size");
        bad(|c| c.ring_size = 1000, "ring_size");
        bad(|c| c.frame_count = 100, "frame_count");
        bad(|c| c.batch = 0, "batch");
        bad(|c| c.coalesce_us = 1_000_000, "coalesce_us");
    }

    /// A bad enum value or address fails when the file is read, naming the key and the
    /// values it takes.
    #[test]
    fn rejects_bad_values_when_parsing() {
        for (text, needles) in [
            (
                "mode = \"fast\"\n",
                &["mode", "unknown XDP mode \"fast\""][..],
            ),
            ("non_tcp = \"keep\"\n", &["non_tcp", "`drop`", "`pass`"]),
            (
                "zero_copy = \"maybe\"\n",
                &["zero_copy", "`auto`", "`required`"],
            ),
            (
                "metrics_listen = \"localhost\"\n",
                &["metrics_listen", "socket address"],
            ),
        ] {
            let e = toml::from_str::<RunConfig>(text).unwrap_err().to_string();
            for n in needles {
                assert!(e.contains(n), "{text:?}: expected {n:?} in {e}");
            }
        }
        let c: RunConfig = toml::from_str("mode = \"skb\"\nnon_tcp = \"pass\"\n").unwrap();
        assert_eq!((c.mode, c.non_tcp), (ModeRequest::Generic, NonTcp::Pass));
    }
}
