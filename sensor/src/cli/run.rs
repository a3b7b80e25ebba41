//! `rstwatch-sensor run` (live capture with AF_XDP) and `check-config`.
//!
//! `run` writes the same JSON lines as `replay` to stdout; logs and the periodic stats
//! line go to stderr. SIGINT/SIGTERM stop it cleanly: the XDP program is detached, the
//! queues drain, the engines flush held RSTs and open flows, then it exits 0.

use super::live::{output_channel, output_thread, ChannelSink, EngineProcessor};
use crate::anomaly::Detectors;
use crate::capture::{self, RunConfig};
use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::ship::ShipSink;
use rstwatch_schema::{NamedCounter, SensorStats};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Capture live with AF_XDP on a mirror/TAP port and print RST events, flow records and
/// anomalies as JSON lines (the same as `replay`).
///
/// Needs CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON, CAP_NET_RAW and CAP_IPC_LOCK (or root). Flags override
/// the config file.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Ship to a collector instead of printing (see `--ship`).
    #[command(flatten)]
    pub ship: crate::ship::ShipArgs,
    /// Capture interface.
    #[arg(long)]
    pub iface: Option<String>,
    /// Receive queues, comma-separated (default 0).
    #[arg(long, value_delimiter = ',')]
    pub queues: Option<Vec<u32>>,
    /// Cores to pin threads to, comma-separated: one per queue; with --fanout, one per
    /// queue (capture) then one per worker.
    #[arg(long, value_delimiter = ',')]
    pub cores: Option<Vec<usize>>,
    /// Fan-out mode: N worker threads fed by the capture thread(s) by flow hash.
    #[arg(long, value_name = "N")]
    pub fanout: Option<usize>,
    /// XDP attach mode (auto: native, else generic).
    #[arg(long, value_enum)]
    pub mode: Option<rstwatch_xdp::ModeRequest>,
    /// Configuration file (TOML; see `check-config`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9108).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Seconds between stats lines on stderr (0: off).
    #[arg(long, value_name = "SECS")]
    pub stats_interval: Option<u32>,
    /// Hand non-TCP frames to the host stack instead of dropping them.
    #[arg(long)]
    pub pass_non_tcp: bool,
    /// Zero-copy bind (auto: zero-copy when the driver supports it).
    #[arg(long, value_enum)]
    pub zero_copy: Option<rstwatch_xdp::ZeroCopy>,
    /// Busy polling: microseconds per poll (enables SO_PREFER_BUSY_POLL).
    #[arg(long, value_name = "USECS")]
    pub busy_poll: Option<u32>,
    /// Busy-poll budget (packets per round; default 64).
    #[arg(long, value_name = "N", requires = "busy_poll")]
    pub busy_poll_budget: Option<u32>,
    /// Wake-up coalescing while traffic flows, microseconds (0: off).
    #[arg(long, value_name = "USECS")]
    pub coalesce_us: Option<u32>,
    /// Stop by itself after this many seconds (as on SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Log level on stderr: error, warn, info, debug.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// Validate a `run` configuration file (TOML) and print the effective configuration.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckConfigArgs {
    /// The configuration file.
    pub file: PathBuf,
}

impl RunArgs {
    fn effective(&self) -> anyhow::Result<RunConfig> {
        let mut cfg = match &self.config {
            Some(p) => RunConfig::load(p)?,
            None => RunConfig::default(),
        };
        if let Some(v) = &self.iface {
            cfg.iface = Some(v.clone());
        }
        if let Some(v) = &self.queues {
            cfg.queues = v.clone();
        }
        if let Some(v) = &self.cores {
            cfg.cores = v.clone();
        }
        if let Some(v) = self.fanout {
            cfg.fanout = v;
        }
        if let Some(v) = self.mode {
            cfg.mode = v;
        }
        if let Some(v) = self.metrics_listen {
            cfg.metrics_listen = Some(v);
        }
        if let Some(v) = self.stats_interval {
            cfg.stats_interval_s = v;
        }
        if self.pass_non_tcp {
            cfg.non_tcp = rstwatch_xdp::NonTcp::Pass;
        }
        if let Some(v) = self.zero_copy {
            cfg.zero_copy = v;
        }
        if let Some(v) = self.coalesce_us {
            cfg.coalesce_us = v;
        }
        if let Some(us) = self.busy_poll {
            cfg.busy_poll = Some(capture::BusyPollConfig {
                usecs: us,
                budget: self.busy_poll_budget.unwrap_or(64),
            });
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// A small stderr logger for the `log` facade.
struct StderrLog {
    level: log::LevelFilter,
}

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            // Keep aya's own chatter at debug level only.
            if r.level() > log::Level::Info && !r.target().starts_with("rstwatch") {
                return;
            }
            eprintln!(
                "rstwatch-sensor: {}: {}",
                r.level().as_str().to_lowercase(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

fn init_log(level: &str) -> anyhow::Result<()> {
    let level: log::LevelFilter = level
        .parse()
        .map_err(|_| anyhow::anyhow!("--log-level: unknown level {level:?}"))?;
    let logger = Box::leak(Box::new(StderrLog { level }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
    Ok(())
}

pub(crate) fn main(a: RunArgs) -> anyhow::Result<i32> {
    init_log(&a.log_level)?;
    let cfg = a.effective()?;
    capture::install_signal_handlers();
    if capture::preflight(&cfg).is_ok() {
        capture::pin_housekeeping(&cfg.cores);
    }

    // Connects lazily and spools meanwhile: a collector that is down does not stop
    // capture. Blocking is right here: the output thread is off the capture path, and
    // a full output queue is counted by the workers.
    let ship = match a.ship.ship {
        Some(_) => Some(ShipSink::start(&a.ship)?),
        None => None,
    };
    let (tx, rx) = output_channel(cfg.output_queue);
    let counters = capture::OutputCounters::default();
    let out_failed = Arc::new(AtomicBool::new(false));
    let written = counters.written.clone();
    let engines = if cfg.fanout > 0 {
        cfg.fanout
    } else {
        cfg.queues.len()
    };
    let central = engines > 1;
    let out = {
        let written = written.clone();
        let failed = out_failed.clone();
        let detectors = central.then(|| Detectors::new(&cfg.engine.anomaly));
        std::thread::Builder::new()
            .name("rw-output".into())
            .spawn(move || output_thread(rx, written, detectors, failed, ship))?
    };
    let dropped = counters.dropped.clone();
    let engine_cfg: EngineConfig = cfg.engine.clone();
    let make = |_: usize| EngineProcessor {
        engine: Engine::new(&engine_cfg),
        sink: ChannelSink::new(tx.clone(), dropped.clone(), central),
    };
    let started = Instant::now();
    let limit = a.duration.map(Duration::from_secs_f64);
    let stop = || {
        capture::signal_received()
            || limit.is_some_and(|l| started.elapsed() >= l)
            || out_failed.load(Ordering::SeqCst)
    };
    let result = capture::run(&cfg, make, &stop, counters);
    drop(tx);
    let out_res = out
        .join()
        .map_err(|_| anyhow::anyhow!("output thread panicked"))?;
    let report = result?;
    let lost_output = dropped.load(Ordering::Relaxed);
    log::info!(
        "done: {} frames captured, {} records written{}",
        report.view.rx_frames(),
        written.load(Ordering::Relaxed),
        if lost_output > 0 {
            format!(", {lost_output} records dropped (output queue full)")
        } else {
            String::new()
        }
    );
    end_of_run(out_res, &report, lost_output)
}

/// The exit status once capture stopped: the shipper's verdict, or how stdout ended.
fn end_of_run(
    out_res: std::io::Result<Option<ShipSink>>,
    report: &capture::CaptureReport,
    lost_output: u64,
) -> anyhow::Result<i32> {
    match out_res {
        Ok(Some(sink)) => finish_shipping(sink, report, lost_output),
        Ok(None) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            log::info!("stdout was closed by its reader: stopped");
            Ok(0)
        }
        Err(e) => anyhow::bail!("writing to stdout: {e}"),
    }
}

/// Ships capture health at shutdown into `sensor_stats`, then waits for every ack:
/// 0 when everything was acknowledged, 1 otherwise.
fn finish_shipping(
    mut sink: ShipSink,
    report: &capture::CaptureReport,
    lost_output: u64,
) -> anyhow::Result<i32> {
    let counters: Vec<NamedCounter> = report
        .view
        .engine_totals()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .chain([
            ("capture.rx_frames".to_string(), report.view.rx_frames()),
            ("capture.lost".to_string(), report.view.lost()),
            ("output.dropped".to_string(), lost_output),
        ])
        .map(|(name, value)| NamedCounter { name, value })
        .collect();
    sink.stats(SensorStats {
        ts_us: crate::ship::now_us(),
        counters,
    });
    let r = sink.finish()?;
    let (line, complete) = r.summary();
    if complete {
        log::info!("{line}");
        Ok(0)
    } else {
        log::warn!("{line}");
        Ok(1)
    }
}

pub(crate) fn check_config(a: CheckConfigArgs) -> anyhow::Result<i32> {
    let cfg = RunConfig::load(&a.file)?;
    println!(
        "# {}: valid. Effective configuration (defaults filled in):",
        a.file.display()
    );
    print!("{}", cfg.to_toml());
    if cfg.iface.is_none() {
        eprintln!("note: no iface in the file; `run` needs --iface");
    }
    Ok(0)
}
