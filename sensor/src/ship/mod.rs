//! Shipping records to a collector.
//!
//! ```text
//! engine ─Sink─▶ ShipSink ─(bounded crossbeam channel)─▶ batcher thread
//!   batcher: rkyv Batch bounded by events / bytes / time ─▶ compress ─▶ frame ─▶ spool file
//!   sender thread: spool ─▶ framed TCP (+TLS, token) ─▶ collector ─ack─▶ delete spool file
//! ```
//!
//! Every sealed batch goes to the disk spool first, and is deleted only when the
//! collector acknowledges it (which it does only after ClickHouse committed it). After a
//! reconnect, or a restart of the sensor, unacknowledged batches are resent in order with
//! the resent flag, so the collector deduplicates them. Every way a batch can be lost
//! (evicted from a full spool while no collector answers, not spoolable at all, set
//! aside as damaged or refused for good) is counted by reason in [`ShipReport`]; see
//! [`spool`] for the faults and [`sender`] for refusals and failover.
//!
//! Defaults: a batch closes at 16,384 events, 4 MiB (archived) or 1 s after its first
//! record, whichever comes first; zstd level 1; up to 16 batches in flight; spool 1 GiB,
//! not fsynced (`--spool-fsync batch` to fsync each); memory fallback 64 MiB; reconnect backoff 0.1 s doubling to 30 s.

mod backoff;
mod batcher;
mod connect;
mod sender;
pub mod spool;

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crossbeam::channel::{self, Sender, TrySendError};
use rstwatch_schema::frame::{Codec, Hello};
use rstwatch_schema::{Anomaly, FlowRecord, NamedCounter, RstEvent, SensorStats, SCHEMA_VERSION};

use crate::sink::Sink;
use backoff::Backoff;
use batcher::Batcher;
use connect::Dialer;
use sender::SenderLoop;
use spool::{Fsync, Losses, Spool, SpoolConfig};

/// Options for shipping to a collector (flattened into `replay` and `run`).
#[derive(Debug, Clone, clap::Args)]
pub struct ShipArgs {
    /// Send records to the collector at ADDR (host:port) instead of printing them.
    /// A comma-separated list names several collectors (sharing one ClickHouse): the
    /// first that answers is used, the next ones on failure.
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    pub ship: Option<String>,
    /// The sensor's token (as configured on the collector).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Plain TCP instead of TLS (loopback tests only).
    #[arg(long)]
    pub plaintext: bool,
    /// CA certificate(s) (PEM) to verify the collector with (default: the system bundle).
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// Name to verify in the collector's certificate (default: the host part of ADDR).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Spool directory: unacknowledged batches live here, across restarts.
    #[arg(long, value_name = "DIR", default_value = "/var/spool/rstwatch")]
    pub spool_dir: PathBuf,
    /// Spool size bound. When full, the sensor waits for the collector to drain it;
    /// only while no collector answers are the oldest batches dropped (and counted).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    pub spool_max_bytes: u64,
    /// When spool writes reach the disk: `off` (the kernel decides: a power cut can
    /// lose the unacknowledged batches of the last seconds) or `batch` (each batch file
    /// and its directory entry are fsynced before it is sent: a power cut loses only
    /// records not yet sealed into a batch; costs throughput, see benches/RESULTS.md).
    #[arg(long, value_enum, default_value_t = Fsync::Off)]
    pub spool_fsync: Fsync,
    /// When the spool directory cannot be written, batches are held in memory up to
    /// this many bytes (and lost if the sensor stops before they are acknowledged).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub spool_memory_bytes: u64,
    /// Longest wait between reconnection attempts, seconds (the backoff's cap).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub retry_max_secs: u64,
    /// This sensor's name (default: the host name).
    #[arg(long, value_name = "ID")]
    pub sensor_id: Option<String>,
    /// Close a batch at this many records.
    #[arg(long, default_value_t = 16_384)]
    pub batch_max_events: usize,
    /// Close a batch at this many (archived) bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub batch_max_bytes: usize,
    /// Close a batch this many milliseconds after its first record.
    #[arg(long, default_value_t = 1000)]
    pub batch_max_ms: u64,
    /// Wire compression: zstd, lz4 or none.
    #[arg(long, default_value = "zstd")]
    pub compression: Codec,
    /// Batches sent ahead of their acknowledgement.
    #[arg(long, default_value_t = 16)]
    pub ship_window: usize,
    /// When finishing, keep trying to deliver for this many seconds before giving up.
    #[arg(long, default_value_t = 60)]
    pub ship_timeout_secs: u64,
}

impl Default for ShipArgs {
    fn default() -> Self {
        ShipArgs {
            ship: None,
            token: None,
            plaintext: false,
            ca_cert: None,
            tls_server_name: None,
            spool_dir: PathBuf::from("/var/spool/rstwatch"),
            spool_max_bytes: 1 << 30,
            spool_fsync: Fsync::Off,
            spool_memory_bytes: 64 << 20,
            retry_max_secs: 30,
            sensor_id: None,
            batch_max_events: 16_384,
            batch_max_bytes: 4 << 20,
            batch_max_ms: 1000,
            compression: Codec::Zstd,
            ship_window: 16,
            ship_timeout_secs: 60,
        }
    }
}

/// What shipping did, returned by [`ShipSink::finish`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipReport {
    /// Batches sealed by the batcher.
    pub batches_sealed: u64,
    /// Events in them.
    pub events_sealed: u64,
    /// Batches a collector acknowledged.
    pub batches_acked: u64,
    /// Events in them.
    pub events_acked: u64,
    /// Frame bytes sent for acknowledged batches (first transmission).
    pub wire_bytes: u64,
    /// Archived (uncompressed) bytes of the sealed batches.
    pub raw_bytes: u64,
    /// Sessions opened after the first.
    pub reconnects: u64,
    /// Batches sent again (after a lost connection or a restart).
    pub resent_batches: u64,
    /// Lost or set aside, all reasons together (see `losses`).
    pub dropped_batches: u64,
    /// Events in the batches lost or set aside.
    pub dropped_events: u64,
    /// Lost or set aside, by reason.
    pub losses: Losses,
    /// Batches refused by a collector although intact here (damaged on the way), and
    /// resent.
    pub transit_refusals: u64,
    /// Left in the spool at the end.
    pub spool_batches: u64,
    /// Events left in the spool at the end.
    pub spool_events: u64,
    /// Of those, held only in memory (the spool directory could not be written).
    pub memory_events: u64,
    /// Where the spool is.
    pub spool_dir: PathBuf,
    /// Records refused because the queue to the shipper was full (non-blocking mode).
    pub queue_full: u64,
    /// Failed attempts to open a session, by why (`ConnectError` names).
    pub connect_failures: std::collections::BTreeMap<&'static str, u64>,
}

impl ShipReport {
    /// Events that did not reach the collector (lost, set aside, refused by a full
    /// queue, or held only in memory at the end).
    pub fn lost_events(&self) -> u64 {
        self.losses.events() + self.queue_full + self.memory_events
    }

    /// One line for the operator, true only when everything arrived.
    pub fn summary(&self) -> (String, bool) {
        let head = format!(
            "shipped {} records in {} batches ({} bytes on the wire, {} resent, {} reconnects)",
            self.events_acked,
            self.batches_acked,
            self.wire_bytes,
            self.resent_batches,
            self.reconnects
        );
        if self.lost_events() == 0 && self.spool_batches == 0 {
            return (format!("{head}: all acknowledged"), true);
        }
        let l = &self.losses;
        let mut parts = Vec::new();
        for (n, what) in [
            (
                l.evicted_events,
                "evicted from a full spool while no collector answered".to_string(),
            ),
            (
                l.unspooled_events,
                "could not be spooled (disk and memory bound)".to_string(),
            ),
            (
                l.quarantined_events,
                format!(
                    "set aside as damaged or refused, in {}",
                    self.spool_dir.join("quarantine").display()
                ),
            ),
            (
                self.queue_full,
                "dropped: the queue to the shipper was full".to_string(),
            ),
            (
                self.memory_events,
                "held only in memory, not acknowledged".to_string(),
            ),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        (
            format!(
                "{head}; {} events LOST: {}",
                self.lost_events(),
                parts.join("; ")
            ),
            false,
        )
    }
}

enum Msg {
    Rst(RstEvent),
    Flow(FlowRecord),
    Anomaly(Anomaly),
    Stats(SensorStats),
    Finish,
}

#[derive(Default)]
struct Counters {
    batches_sealed: AtomicU64,
    events_sealed: AtomicU64,
    batches_acked: AtomicU64,
    events_acked: AtomicU64,
    wire_bytes: AtomicU64,
    raw_bytes: AtomicU64,
    reconnects: AtomicU64,
    resent_batches: AtomicU64,
    queue_full: AtomicU64,
    transit_refusals: AtomicU64,
    connect_failures: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

/// What the batcher knows of the sender's link (it evicts only while it is down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No attempt finished yet.
    Unknown = 0,
    Up = 1,
    Down = 2,
}

struct Shared {
    spool: Mutex<Spool>,
    link: AtomicU8,
    /// Signalled when the spool gains an entry, the batcher finishes, or on stop.
    cv: Condvar,
    batcher_done: AtomicBool,
    /// Give up delivering (deadline passed or fatal error).
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
    c: Counters,
}

impl Shared {
    /// State for a fresh start: the link not yet tried, nothing stopped.
    fn new(spool: Spool) -> Shared {
        Shared {
            spool: Mutex::new(spool),
            link: AtomicU8::new(Link::Unknown as u8),
            cv: Condvar::new(),
            batcher_done: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            fatal: Mutex::new(None),
            c: Counters::default(),
        }
    }

    fn link(&self) -> Link {
        match self.link.load(Relaxed) {
            1 => Link::Up,
            2 => Link::Down,
            _ => Link::Unknown,
        }
    }

    fn set_link(&self, l: Link) {
        self.link.store(l as u8, Relaxed);
        self.cv.notify_all();
    }
}

/// A [`Sink`] that ships every record to a collector.
pub struct ShipSink {
    tx: Sender<Msg>,
    blocking: bool,
    shared: Arc<Shared>,
    batcher: Option<JoinHandle<anyhow::Result<()>>>,
    sender: Option<JoinHandle<()>>,
    timeout: Duration,
}

/// The host name in canonical sensor-id form (lowercase; see
/// `rstwatch_schema::sensor_id`), or `sensor`.
fn default_sensor_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| rstwatch_schema::sensor_id::from_hostname(&h))
        .unwrap_or_else(|| "sensor".to_string())
}

fn random_boot_id() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    let t = now_us() as u64;
    t ^ (u64::from(std::process::id()) << 32)
}

pub(crate) use rstwatch_schema::timefmt::wall_clock_us as now_us;

/// `--ship`: the comma-separated collector addresses, each with a host part.
fn collector_addrs(args: &ShipArgs) -> anyhow::Result<Vec<String>> {
    let list = args.ship.clone().context("--ship ADDR is needed to ship")?;
    let addrs: Vec<String> = list
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if addrs.is_empty() {
        bail!("--ship {list:?}: no collector address");
    }
    for a in &addrs {
        connect::host_of(a)?;
    }
    Ok(addrs)
}

/// `--sensor-id`, or the host name, checked against the collector's rules.
fn checked_sensor_id(args: &ShipArgs) -> anyhow::Result<String> {
    let sensor_id = args.sensor_id.clone().unwrap_or_else(default_sensor_id);
    rstwatch_schema::sensor_id::check(&sensor_id)
        .with_context(|| format!("--sensor-id {sensor_id:?}"))?;
    Ok(sensor_id)
}

/// The batcher: records from `rx` into framed batches on the spool, within the
/// `--batch-max-*` limits (clamped to sane ranges).
fn new_batcher(
    args: &ShipArgs,
    rx: channel::Receiver<Msg>,
    shared: Arc<Shared>,
    sensor_id: String,
    boot_id: u64,
) -> Batcher {
    Batcher {
        rx,
        shared,
        sensor_id,
        boot_id,
        seq: 0,
        max_events: args.batch_max_events.clamp(1, 500_000),
        max_bytes: args.batch_max_bytes.max(1024),
        max_age: Duration::from_millis(args.batch_max_ms.max(1)),
        codec: args.compression,
        warned_memory: false,
        full_since: None,
    }
}

/// The sender: spooled batches to the first collector that answers, up to
/// `--ship-window` unacknowledged, retrying with backoff up to `--retry-max-secs`.
fn new_sender(
    args: &ShipArgs,
    addrs: Vec<String>,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ClientConfig>>,
    hello: Hello,
) -> SenderLoop {
    SenderLoop {
        shared,
        addrs,
        dialer: Dialer {
            tls,
            server_name: args.tls_server_name.clone(),
            hello,
        },
        window: args.ship_window.clamp(1, 1024),
        backoff: Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(args.retry_max_secs.max(1)),
        ),
        current: 0,
    }
}

impl ShipSink {
    /// Opens the spool and starts the batcher and sender threads. Fails on a bad
    /// address, TLS files or spool directory (not on an unreachable collector: that is
    /// what the spool is for).
    pub fn start(args: &ShipArgs) -> anyhow::Result<ShipSink> {
        let addrs = collector_addrs(args)?;
        let sensor_id = checked_sensor_id(args)?;
        let tls = if args.plaintext {
            None
        } else {
            Some(connect::tls_config(args.ca_cert.as_deref())?)
        };
        let shared = Arc::new(Shared::new(open_spool(args)?));
        let boot_id = random_boot_id();
        let (tx, rx) = channel::bounded(65_536);
        let batcher = new_batcher(args, rx, shared.clone(), sensor_id.clone(), boot_id);
        let batcher = std::thread::Builder::new()
            .name("ship-batcher".into())
            .spawn(move || batcher.run())?;
        let hello = Hello {
            sensor_id,
            token: args.token.clone().unwrap_or_default(),
            boot_id,
            schema_version: SCHEMA_VERSION,
            software: format!("rstwatch-sensor {}", env!("CARGO_PKG_VERSION")),
        };
        let sender = new_sender(args, addrs, shared.clone(), tls, hello);
        let sender = std::thread::Builder::new()
            .name("ship-sender".into())
            .spawn(move || sender.run())?;
        Ok(ShipSink {
            tx,
            blocking: true,
            shared,
            batcher: Some(batcher),
            sender: Some(sender),
            timeout: Duration::from_secs(args.ship_timeout_secs),
        })
    }

    /// Non-blocking mode (live capture): when the queue to the shipper is full, records
    /// are counted and dropped instead of stalling the caller.
    pub fn set_blocking(&mut self, blocking: bool) {
        self.blocking = blocking;
    }

    fn send(&mut self, m: Msg) {
        if self.blocking {
            let _ = self.tx.send(m);
        } else if let Err(TrySendError::Full(_)) = self.tx.try_send(m) {
            self.shared.c.queue_full.fetch_add(1, Relaxed);
        }
    }

    /// Ships a counters snapshot (capture health) into `sensor_stats`.
    pub fn stats(&mut self, s: SensorStats) {
        self.send(Msg::Stats(s));
    }

    /// Closes the last batch and waits until every batch is acknowledged, up to the
    /// ship timeout. Gives up with an error saying how many events are left in the
    /// spool and where.
    pub fn finish(mut self) -> anyhow::Result<ShipReport> {
        let _ = self.tx.send(Msg::Finish);
        let batcher = self.batcher.take().expect("finish once");
        let res = batcher
            .join()
            .map_err(|_| anyhow::anyhow!("ship batcher thread panicked"))?;
        self.shared.batcher_done.store(true, Relaxed);
        self.shared.cv.notify_all();
        let deadline = Instant::now() + self.timeout;
        // Wait for the spool to drain, a fatal error, or the deadline.
        {
            let mut sp = self.shared.spool.lock().unwrap();
            while !sp.is_empty()
                && Instant::now() < deadline
                && self.shared.fatal.lock().unwrap().is_none()
            {
                sp = self
                    .shared
                    .cv
                    .wait_timeout(sp, Duration::from_millis(100))
                    .unwrap()
                    .0;
            }
        }
        self.shared.stop.store(true, Relaxed);
        self.shared.cv.notify_all();
        if let Some(h) = self.sender.take() {
            let _ = h.join();
        }
        let report = self.report();
        res?;
        if report.spool_batches > 0 && report.memory_events < report.spool_events {
            let why = self
                .shared
                .fatal
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| format!("not acknowledged within {:?}", self.timeout));
            bail!(
                "gave up shipping: {} events in {} batches remain in the spool at {} ({why}); \
                 they are sent on the next run with the same --spool-dir",
                report.spool_events,
                report.spool_batches,
                report.spool_dir.display()
            );
        }
        Ok(report)
    }

    /// Counters so far.
    pub fn report(&self) -> ShipReport {
        let c = &self.shared.c;
        let sp = self.shared.spool.lock().unwrap();
        ShipReport {
            batches_sealed: c.batches_sealed.load(Relaxed),
            events_sealed: c.events_sealed.load(Relaxed),
            batches_acked: c.batches_acked.load(Relaxed),
            events_acked: c.events_acked.load(Relaxed),
            wire_bytes: c.wire_bytes.load(Relaxed),
            raw_bytes: c.raw_bytes.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
            resent_batches: c.resent_batches.load(Relaxed),
            dropped_batches: sp.losses.evicted_batches
                + sp.losses.unspooled_batches
                + sp.losses.quarantined_batches,
            dropped_events: sp.losses.events(),
            losses: sp.losses,
            transit_refusals: c.transit_refusals.load(Relaxed),
            spool_batches: sp.len() as u64,
            spool_events: sp.events(),
            memory_events: sp.memory_events(),
            spool_dir: sp.dir().to_path_buf(),
            queue_full: c.queue_full.load(Relaxed),
            connect_failures: c.connect_failures.lock().unwrap().clone(),
        }
    }
}

impl Drop for ShipSink {
    fn drop(&mut self) {
        // Dropped without finish (error path): stop the threads; the spool keeps
        // whatever was sealed.
        let _ = self.tx.send(Msg::Finish);
        if let Some(b) = self.batcher.take() {
            let _ = b.join();
        }
        self.shared.stop.store(true, Relaxed);
        self.shared.cv.notify_all();
        if let Some(s) = self.sender.take() {
            let _ = s.join();
        }
    }
}

impl Sink for ShipSink {
    fn rst(&mut self, ev: RstEvent) {
        self.send(Msg::Rst(ev));
    }
    fn flow(&mut self, rec: FlowRecord) {
        self.send(Msg::Flow(rec));
    }
    fn anomaly(&mut self, a: Anomaly) {
        self.send(Msg::Anomaly(a));
    }
}

/// A [`NamedCounter`] list of the shipper's counters (for a `SensorStats` record).
pub fn report_counters(r: &ShipReport) -> Vec<NamedCounter> {
    [
        ("ship.batches_sealed", r.batches_sealed),
        ("ship.batches_acked", r.batches_acked),
        ("ship.reconnects", r.reconnects),
        ("ship.resent_batches", r.resent_batches),
        ("ship.spool_dropped_batches", r.dropped_batches),
        ("ship.spool_dropped_events", r.dropped_events),
        ("ship.spool_evicted_events", r.losses.evicted_events),
        ("ship.spool_unspooled_events", r.losses.unspooled_events),
        ("ship.quarantined_events", r.losses.quarantined_events),
        ("ship.transit_refusals", r.transit_refusals),
        ("ship.queue_full", r.queue_full),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .chain(
        r.connect_failures
            .iter()
            .map(|(why, v)| (format!("ship.connect_failed.{why}"), *v)),
    )
    .map(|(name, value)| NamedCounter { name, value })
    .collect()
}

/// `replay --ship`: runs `replay` into a [`ShipSink`], ships the engine's counters as
/// a `sensor_stats` snapshot, and waits for every acknowledgement. Exit status 0 only
/// when every batch was acknowledged (and every file was read cleanly).
pub fn replay_shipped(
    args: &ShipArgs,
    replay: impl FnOnce(&mut ShipSink) -> (usize, Vec<(&'static str, u64)>),
) -> anyhow::Result<i32> {
    let mut sink = ShipSink::start(args)?;
    let (bad_files, counters) = replay(&mut sink);
    sink.stats(SensorStats {
        ts_us: now_us(),
        counters: counters
            .into_iter()
            .map(|(n, v)| NamedCounter {
                name: n.to_string(),
                value: v,
            })
            .collect(),
    });
    let r = sink.finish()?;
    let (line, complete) = r.summary();
    eprintln!("rstwatch-sensor: {line}");
    Ok(if bad_files > 0 || !complete { 1 } else { 0 })
}

/// Opens the spool of `args`; a directory that cannot be used is reported and the
/// spool lives in memory.
fn open_spool(args: &ShipArgs) -> anyhow::Result<Spool> {
    let sp = Spool::open_with(&SpoolConfig {
        dir: args.spool_dir.clone(),
        max_bytes: args.spool_max_bytes,
        mem_max_bytes: args.spool_memory_bytes,
        fsync: args.spool_fsync,
    })?;
    if let Some(why) = &sp.unusable {
        eprintln!(
            "rstwatch-sensor: {why}: shipping from memory (up to {} bytes); batches held \
             only in memory are lost if the sensor stops before they are acknowledged",
            args.spool_memory_bytes
        );
    }
    Ok(sp)
}
