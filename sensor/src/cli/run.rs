//! `rstwatch-sensor run` (live capture with AF_XDP) and `check-config`.
//!
//! `run` writes the same JSON lines as `replay` to stdout; logs and the periodic stats
//! line go to stderr. SIGINT/SIGTERM stop it cleanly: the XDP program is detached, the
//! queues drain, the engines flush held RSTs and open flows, then it exits 0.

use crate::anomaly::Detectors;
use crate::capture::{self, Processor, RunConfig};
use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::parse::LinkType;
use crate::ship::ShipSink;
use crate::sink::Sink;
use crossbeam::channel::{bounded, Receiver, Sender, TrySendError};
use rstwatch_schema::{
    Anomaly, AnomalyKind, FlowRecord, NamedCounter, Record, RstEvent, SensorStats,
};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Capture live with AF_XDP on a mirror/TAP port and print RST events, flow records and
/// anomalies as JSON lines (the same as `replay`).
///
/// Needs CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON, CAP_NET_RAW and CAP_IPC_LOCK (or root). Flags override
/// the config file.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
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
    /// XDP attach mode: native, generic or auto (native, else generic).
    #[arg(long)]
    pub mode: Option<String>,
    /// Configuration file (TOML; see `check-config`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9108).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Seconds between stats lines on stderr (0: off).
    #[arg(long, value_name = "SECS")]
    pub stats_interval: Option<u32>,
    /// Hand non-TCP frames to the host stack instead of dropping them.
    #[arg(long)]
    pub pass_non_tcp: bool,
    /// Zero-copy bind: auto, off or required.
    #[arg(long)]
    pub zero_copy: Option<String>,
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
pub struct CheckConfigArgs {
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
        if let Some(v) = &self.mode {
            cfg.mode = v.clone();
        }
        if let Some(v) = &self.metrics_listen {
            cfg.metrics_listen = Some(v.clone());
        }
        if let Some(v) = self.stats_interval {
            cfg.stats_interval_s = v;
        }
        if self.pass_non_tcp {
            cfg.non_tcp = "pass".into();
        }
        if let Some(v) = &self.zero_copy {
            cfg.zero_copy = v.clone();
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

/// Sends records to the output thread. Never blocks while capturing (a full queue is
/// counted); blocks at the end, when nothing is captured any more.
struct ChannelSink {
    tx: Sender<Record>,
    dropped: Arc<AtomicU64>,
    blocking: bool,
    /// Several engines each see only part of the traffic, so their aggregate detectors
    /// (scan, storm, backscatter, injection) would each see a fraction: their anomalies
    /// are dropped here and one set of detectors in the output stage sees every RST.
    /// `failover` is kept: it comes from the engine's own cause evidence (flows of one
    /// server address reset by a new MAC), which the output stage does not have.
    drop_anomalies: bool,
}

impl ChannelSink {
    fn put(&mut self, r: Record) {
        if self.blocking {
            let _ = self.tx.send(r);
            return;
        }
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Sink for ChannelSink {
    fn rst(&mut self, ev: RstEvent) {
        self.put(Record::Rst(ev));
    }
    fn flow(&mut self, rec: FlowRecord) {
        self.put(Record::Flow(rec));
    }
    fn anomaly(&mut self, a: Anomaly) {
        if !self.drop_anomalies || a.kind == AnomalyKind::Failover {
            self.put(Record::Anomaly(a));
        }
    }
}

/// One worker's engine and its way to the output.
struct EngineProcessor {
    engine: Engine,
    sink: ChannelSink,
}

impl Processor for EngineProcessor {
    fn frame(&mut self, ts_us: i64, frame: &[u8]) {
        self.engine
            .process(ts_us, LinkType::Ethernet, frame, &mut self.sink);
    }
    fn tick(&mut self, now_us: i64) {
        self.engine.advance(now_us, &mut self.sink);
    }
    fn finish(&mut self) {
        self.sink.blocking = true;
        self.engine.finish(&mut self.sink);
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.engine.counters()
    }
}

/// Causes the output stage raised (several engines): RST flow → cause, so the flow's
/// record, which follows its RSTs, says the same. Bounded; what does not fit keeps the
/// engine's cause in its flow record (counted).
#[derive(Default)]
struct Refined {
    by_flow: hashbrown::HashMap<u64, rstwatch_schema::Cause>,
    full: u64,
}

impl Refined {
    const MAX: usize = 65_536;

    /// Feeds `r` to the one set of detectors and applies the aggregate cause rules.
    /// Returns false for a record to drop: a `failover` another worker already
    /// reported (each worker reports the flows it saw reset).
    fn apply(&mut self, d: &mut Detectors, r: &mut Record, found: &mut Vec<Anomaly>) -> bool {
        match r {
            Record::Rst(ev) => {
                d.observe(ev, found);
                if crate::classify::cause::refine(ev, d) {
                    if self.by_flow.len() < Self::MAX {
                        self.by_flow.insert(ev.flow_uid, ev.cause);
                    } else {
                        self.full += 1;
                    }
                }
            }
            Record::Flow(f) => {
                if let Some(c) = self.by_flow.remove(&f.flow_uid) {
                    f.cause = Some(c);
                }
            }
            Record::Anomaly(a) => return d.first_report(a),
        }
        true
    }
}

/// Writes records as JSON lines, or hands them to `ship` (a collector) when given;
/// flushes whenever the queue runs dry so a reader sees events promptly. With
/// `detectors` (several engines), every RST also feeds the one set of aggregate
/// detectors, whose anomalies follow the RST that raised them. Returns the shipper,
/// still open, so the caller can add the final counters and wait for the acks.
fn output_thread(
    rx: Receiver<Record>,
    written: Arc<AtomicU64>,
    mut detectors: Option<Detectors>,
    failed: Arc<AtomicBool>,
    mut ship: Option<ShipSink>,
) -> std::io::Result<Option<ShipSink>> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut err: Option<std::io::Error> = None;
    let mut found: Vec<Anomaly> = Vec::new();
    let mut refined = Refined::default();
    let mut write = |out: &mut std::io::BufWriter<_>, r: &Record| -> std::io::Result<()> {
        match ship.as_mut() {
            Some(sink) => match r.clone() {
                Record::Rst(ev) => sink.rst(ev),
                Record::Flow(f) => sink.flow(f),
                Record::Anomaly(a) => sink.anomaly(a),
            },
            None => serde_json::to_writer(&mut *out, r)
                .map_err(std::io::Error::from)
                .and_then(|_| out.write_all(b"\n"))?,
        }
        written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    };
    loop {
        let mut r = match rx.try_recv() {
            Ok(r) => r,
            Err(crossbeam::channel::TryRecvError::Empty) => {
                if err.is_none() {
                    if let Err(e) = out.flush() {
                        failed.store(true, Ordering::SeqCst);
                        err = Some(e);
                    }
                }
                match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            }
            Err(crossbeam::channel::TryRecvError::Disconnected) => break,
        };
        if err.is_some() {
            continue; // keep draining so workers never block
        }
        let keep = match detectors.as_mut() {
            Some(d) => refined.apply(d, &mut r, &mut found),
            None => true,
        };
        let mut res = if keep { write(&mut out, &r) } else { Ok(()) };
        for a in found.drain(..) {
            if res.is_ok() {
                res = write(&mut out, &Record::Anomaly(a));
            }
        }
        if let Err(e) = res {
            // The reader is gone (or the disk is full): stop capturing, cleanly.
            failed.store(true, Ordering::SeqCst);
            err = Some(e);
        }
    }
    if let Some(e) = err {
        return Err(e);
    }
    out.flush()?;
    Ok(ship)
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

pub fn main(a: RunArgs) -> anyhow::Result<i32> {
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
    let (tx, rx) = bounded::<Record>(cfg.output_queue);
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
        sink: ChannelSink {
            tx: tx.clone(),
            dropped: dropped.clone(),
            blocking: false,
            drop_anomalies: central,
        },
    };
    let started = Instant::now();
    let limit = a.duration.map(Duration::from_secs_f64);
    let stop = || {
        capture::signal_received()
            || limit.is_some_and(|l| started.elapsed() >= l)
            || out_failed.load(Ordering::SeqCst)
    };
    let _ = crate::engine::FANOUT_PARSE_OPTIONS.set(crate::parse::ParseOptions {
        verify_checksum: false,
        tunnel_ports: cfg.engine.encap.ports().unwrap_or_default(),
    });
    let result = capture::run(&cfg, make, crate::engine::fanout_hash, &stop, counters);
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
    match out_res {
        Ok(Some(mut sink)) => {
            // Capture health at shutdown into `sensor_stats`, then every ack.
            let mut counters: Vec<NamedCounter> = report
                .view
                .engine_totals()
                .into_iter()
                .map(|(n, v)| NamedCounter {
                    name: n.to_string(),
                    value: v,
                })
                .collect();
            counters.push(NamedCounter {
                name: "capture.rx_frames".into(),
                value: report.view.rx_frames(),
            });
            counters.push(NamedCounter {
                name: "capture.lost".into(),
                value: report.view.lost(),
            });
            counters.push(NamedCounter {
                name: "output.dropped".into(),
                value: lost_output,
            });
            sink.stats(SensorStats {
                ts_us: crate::ship::now_us(),
                counters,
            });
            let r = sink.finish()?;
            let (line, complete) = r.summary();
            if complete {
                log::info!("{line}");
            } else {
                log::warn!("{line}");
                return Ok(1);
            }
        }
        Ok(None) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            log::info!("stdout was closed by its reader: stopped");
        }
        Err(e) => anyhow::bail!("writing to stdout: {e}"),
    }
    Ok(0)
}

pub fn check_config(a: CheckConfigArgs) -> anyhow::Result<i32> {
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
