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
//! the resent flag, so the collector deduplicates them. The spool is bounded; when full,
//! the oldest batches are dropped and counted (the only way shipped data is lost).
//!
//! Defaults: a batch closes at 16,384 events, 4 MiB (archived) or 1 s after its first
//! record, whichever comes first; zstd level 1; up to 16 batches in flight; spool 1 GiB.

pub mod spool;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TrySendError};
use rstwatch_schema::frame::{self, Ack, Codec, FrameHeader, Hello, Kind, FLAG_RESENT, HEADER_LEN};
use rstwatch_schema::{
    Anomaly, Batch, BatchHeader, FlowRecord, NamedCounter, RstEvent, SensorStats, SCHEMA_VERSION,
};

use crate::sink::Sink;
use spool::Spool;

/// Options for shipping to a collector (flattened into `replay` and `run`).
#[derive(Debug, Clone, clap::Args)]
pub struct ShipArgs {
    /// Send records to the collector at ADDR (host:port) instead of printing them.
    #[arg(long, value_name = "ADDR")]
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
    /// Spool size bound; past it the oldest batches are dropped (and counted).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    pub spool_max_bytes: u64,
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
    pub batches_sealed: u64,
    pub events_sealed: u64,
    pub batches_acked: u64,
    pub events_acked: u64,
    /// Frame bytes sent for acknowledged batches (first transmission).
    pub wire_bytes: u64,
    /// Archived (uncompressed) bytes of the sealed batches.
    pub raw_bytes: u64,
    pub reconnects: u64,
    pub resent_batches: u64,
    /// Dropped from a full spool (lost, counted).
    pub dropped_batches: u64,
    pub dropped_events: u64,
    /// Left in the spool at the end.
    pub spool_batches: u64,
    pub spool_events: u64,
    pub spool_dir: PathBuf,
    /// Records refused because the queue to the shipper was full (non-blocking mode).
    pub queue_full: u64,
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
}

struct Shared {
    spool: Mutex<Spool>,
    /// Signalled when the spool gains an entry, the batcher finishes, or on stop.
    cv: Condvar,
    batcher_done: AtomicBool,
    /// Give up delivering (deadline passed or fatal error).
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
    c: Counters,
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

fn default_sensor_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
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
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl ShipSink {
    /// Opens the spool and starts the batcher and sender threads. Fails on a bad
    /// address, TLS files or spool directory (not on an unreachable collector: that is
    /// what the spool is for).
    pub fn start(args: &ShipArgs) -> anyhow::Result<ShipSink> {
        let addr = args.ship.clone().context("--ship ADDR is needed to ship")?;
        let sensor_id = args.sensor_id.clone().unwrap_or_else(default_sensor_id);
        if sensor_id.is_empty() {
            bail!("--sensor-id must not be empty");
        }
        let tls = if args.plaintext {
            None
        } else {
            Some(tls_config(args.ca_cert.as_deref())?)
        };
        let host = addr
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
            .with_context(|| format!("--ship {addr}: expected HOST:PORT"))?;
        let server_name = args.tls_server_name.clone().unwrap_or(host);
        let server_name = rustls_pki_types::ServerName::try_from(server_name.clone())
            .with_context(|| format!("bad TLS server name {server_name:?}"))?
            .to_owned();
        let spool = Spool::open(&args.spool_dir, args.spool_max_bytes)?;
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            cv: Condvar::new(),
            batcher_done: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            fatal: Mutex::new(None),
            c: Counters::default(),
        });
        let boot_id = random_boot_id();
        let (tx, rx) = channel::bounded(65_536);
        let b = Batcher {
            rx,
            shared: shared.clone(),
            sensor_id: sensor_id.clone(),
            boot_id,
            seq: 0,
            max_events: args.batch_max_events.clamp(1, 500_000),
            max_bytes: args.batch_max_bytes.max(1024),
            max_age: Duration::from_millis(args.batch_max_ms.max(1)),
            codec: args.compression,
        };
        let batcher = std::thread::Builder::new()
            .name("ship-batcher".into())
            .spawn(move || b.run())?;
        let s = SenderLoop {
            shared: shared.clone(),
            addr,
            tls,
            server_name,
            hello: Hello {
                sensor_id,
                token: args.token.clone().unwrap_or_default(),
                boot_id,
                schema_version: SCHEMA_VERSION,
                software: format!("rstwatch-sensor {}", env!("CARGO_PKG_VERSION")),
            },
            window: args.ship_window.clamp(1, 1024),
        };
        let sender = std::thread::Builder::new()
            .name("ship-sender".into())
            .spawn(move || s.run())?;
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
        if report.spool_batches > 0 {
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
            dropped_batches: sp.dropped_batches,
            dropped_events: sp.dropped_events,
            spool_batches: sp.len() as u64,
            spool_events: sp.events(),
            spool_dir: sp.dir().to_path_buf(),
            queue_full: c.queue_full.load(Relaxed),
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

struct Batcher {
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    sensor_id: String,
    boot_id: u64,
    seq: u64,
    max_events: usize,
    max_bytes: usize,
    max_age: Duration,
    codec: Codec,
}

impl Batcher {
    fn empty(&self) -> Batch {
        Batch {
            header: BatchHeader {
                schema_version: SCHEMA_VERSION,
                sensor_id: self.sensor_id.clone(),
                boot_id: self.boot_id,
                seq: 0,
                created_us: 0,
            },
            rst: Vec::new(),
            flows: Vec::new(),
            anomalies: Vec::new(),
            stats: Vec::new(),
        }
    }

    fn run(mut self) -> anyhow::Result<()> {
        let mut batch = self.empty();
        let mut bytes = 0usize;
        let mut opened: Option<Instant> = None;
        loop {
            let msg = match opened {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(t) => self
                    .rx
                    .recv_timeout((t + self.max_age).saturating_duration_since(Instant::now())),
            };
            let finish = match msg {
                Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => true,
                Err(RecvTimeoutError::Timeout) => {
                    self.seal(&mut batch)?;
                    bytes = 0;
                    opened = None;
                    continue;
                }
                Ok(m) => {
                    bytes += match m {
                        Msg::Rst(e) => {
                            batch.rst.push(e);
                            80
                        }
                        Msg::Flow(f) => {
                            let n = 128 + f.history.len();
                            batch.flows.push(f);
                            n
                        }
                        Msg::Anomaly(a) => {
                            let n = 64 + a.subject.len() + a.detail.len();
                            batch.anomalies.push(a);
                            n
                        }
                        Msg::Stats(s) => {
                            let n =
                                32 + s.counters.iter().map(|c| 24 + c.name.len()).sum::<usize>();
                            batch.stats.push(s);
                            n
                        }
                        Msg::Finish => unreachable!(),
                    };
                    opened.get_or_insert_with(Instant::now);
                    false
                }
            };
            if finish {
                if !batch.is_empty() {
                    self.seal(&mut batch)?;
                }
                return Ok(());
            }
            if batch.len() >= self.max_events || bytes >= self.max_bytes {
                self.seal(&mut batch)?;
                bytes = 0;
                opened = None;
            }
        }
    }

    fn seal(&mut self, batch: &mut Batch) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut b = std::mem::replace(batch, self.empty());
        b.header.seq = self.seq;
        b.header.created_us = now_us();
        self.seq += 1;
        let events = b.len() as u64;
        let raw = b.to_bytes();
        let f = frame::encode(Kind::Batch, self.codec, 0, &raw);
        let c = &self.shared.c;
        c.batches_sealed.fetch_add(1, Relaxed);
        c.events_sealed.fetch_add(events, Relaxed);
        c.raw_bytes.fetch_add(raw.len() as u64, Relaxed);
        let mut sp = self.shared.spool.lock().unwrap();
        let before = sp.dropped_batches;
        if let Err(e) = sp.push(self.boot_id, b.header.seq, events, &f) {
            // Disk full or gone: this batch cannot be kept. Count it as lost and go on
            // (stopping here would silently lose everything after it).
            sp.dropped_batches += 1;
            sp.dropped_events += events;
            eprintln!(
                "rstwatch-sensor: cannot spool batch {} ({events} events LOST): {e:#}",
                b.header.seq
            );
            return Ok(());
        }
        if sp.dropped_batches > before {
            eprintln!(
                "rstwatch-sensor: spool full ({} bytes): dropped the oldest batches, {} events lost so far",
                sp.bytes(),
                sp.dropped_events
            );
        }
        drop(sp);
        self.shared.cv.notify_all();
        Ok(())
    }
}

fn tls_config(ca: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let path = match ca {
        Some(p) => p.to_path_buf(),
        None => {
            let sys = Path::new("/etc/ssl/certs/ca-certificates.crt");
            if !sys.exists() {
                bail!("TLS needs --ca-cert PEM (no system CA bundle found), or --plaintext");
            }
            sys.to_path_buf()
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .with_context(|| format!("reading CA certificates {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing CA certificates {}", path.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        bail!("no usable CA certificate in {}", path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

struct SenderLoop {
    shared: Arc<Shared>,
    addr: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: rustls_pki_types::ServerName<'static>,
    hello: Hello,
    window: usize,
}

/// An in-flight batch.
struct InFlight {
    order: u64,
    boot_id: u64,
    seq: u64,
    events: u64,
    bytes: u64,
}

enum ConnEnd {
    /// Drained and told to stop, or stopped.
    Done,
    /// Lost: reconnect.
    Lost(String),
}

const IO_TIMEOUT: Duration = Duration::from_secs(30);
const ACK_TIMEOUT: Duration = Duration::from_secs(120);

impl SenderLoop {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Relaxed)
    }

    fn run(self) {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0u64;
        while !self.stopping() {
            // Nothing to send: wait.
            {
                let sp = self.shared.spool.lock().unwrap();
                if sp.is_empty() {
                    let _ = self.shared.cv.wait_timeout(sp, Duration::from_millis(200));
                    continue;
                }
            }
            match self.connect() {
                Ok((conn, _handle)) => {
                    if attempt > 0 {
                        self.shared.c.reconnects.fetch_add(1, Relaxed);
                    }
                    attempt += 1;
                    delay = Duration::from_millis(100);
                    match self.session(conn) {
                        ConnEnd::Done => return,
                        ConnEnd::Lost(why) => {
                            eprintln!("rstwatch-sensor: connection to collector {} lost: {why}; resending unacknowledged batches", self.addr);
                            self.shared.spool.lock().unwrap().mark_all_sent();
                        }
                    }
                }
                Err(e) => {
                    if let ConnectError::Fatal(msg) = &e {
                        eprintln!(
                            "rstwatch-sensor: collector {} refused this sensor: {msg}",
                            self.addr
                        );
                        *self.shared.fatal.lock().unwrap() =
                            Some(format!("collector refused: {msg}"));
                        self.shared.cv.notify_all();
                        return;
                    }
                    if attempt == 0 || delay >= Duration::from_secs(5) {
                        eprintln!("rstwatch-sensor: collector {} unreachable ({e}); spooling to {}, retrying", self.addr, self.shared.spool.lock().unwrap().dir().display());
                    }
                    attempt += 1;
                    // Sleep, but wake up for a stop.
                    let end = Instant::now() + delay;
                    while Instant::now() < end && !self.stopping() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn connect(&self) -> Result<(Box<dyn Conn>, TcpStream), ConnectError> {
        let addrs: Vec<_> = self
            .addr
            .to_socket_addrs()
            .map_err(|e| ConnectError::Retry(format!("resolving: {e}")))?
            .collect();
        let mut last = String::from("no address");
        let mut sock = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let sock = sock.ok_or(ConnectError::Retry(last))?;
        let _ = sock.set_nodelay(true);
        sock.set_write_timeout(Some(IO_TIMEOUT)).ok();
        sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let handle = sock
            .try_clone()
            .map_err(|e| ConnectError::Retry(e.to_string()))?;
        let mut conn: Box<dyn Conn> = match &self.tls {
            None => Box::new(sock),
            Some(cfg) => {
                let c = rustls::ClientConnection::new(cfg.clone(), self.server_name.clone())
                    .map_err(|e| ConnectError::Fatal(format!("TLS setup: {e}")))?;
                Box::new(rustls::StreamOwned::new(c, sock))
            }
        };
        let hello = serde_json::to_vec(&self.hello).expect("hello serialises");
        conn.write_all(&frame::encode(Kind::Hello, Codec::None, 0, &hello))
            .and_then(|_| conn.flush())
            .map_err(|e| tls_or_retry(e, "sending hello"))?;
        let (h, p) = frame::read_frame(&mut conn, 1 << 20)
            .map_err(|e| ConnectError::Retry(format!("waiting for welcome: {e}")))?;
        match h.kind {
            Kind::Welcome => {
                // From now on reads poll for acks.
                handle
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .ok();
                Ok((conn, handle))
            }
            Kind::Reject => Err(ConnectError::Fatal(
                String::from_utf8_lossy(&p).into_owned(),
            )),
            k => Err(ConnectError::Retry(format!(
                "unexpected {k:?} instead of welcome"
            ))),
        }
    }

    /// Sends spooled batches in order with a window, collects acks.
    fn session(&self, mut conn: Box<dyn Conn>) -> ConnEnd {
        let mut inflight: std::collections::VecDeque<InFlight> = Default::default();
        let mut cursor = 0u64; // spool order of the next batch to send on this connection
        let mut rbuf: Vec<u8> = Vec::with_capacity(4096);
        let mut last_progress = Instant::now();
        loop {
            if self.stopping() {
                return ConnEnd::Done;
            }
            // Fill the window.
            let mut sent_any = false;
            while inflight.len() < self.window {
                let next = {
                    let sp = self.shared.spool.lock().unwrap();
                    sp.next_from(cursor).map(|e| (e.clone(), sp.read(&e)))
                };
                let Some((e, data)) = next else { break };
                let mut data = match data {
                    Ok(d) => d,
                    Err(err) => {
                        // Dropped from the spool meanwhile (full), or unreadable.
                        eprintln!("rstwatch-sensor: spool entry {} unreadable: {err}", e.order);
                        self.shared.spool.lock().unwrap().remove(e.order);
                        cursor = e.order + 1;
                        continue;
                    }
                };
                if data.len() < HEADER_LEN {
                    self.shared.spool.lock().unwrap().remove(e.order);
                    cursor = e.order + 1;
                    continue;
                }
                if e.sent_before {
                    data[7] |= FLAG_RESENT;
                    self.shared.c.resent_batches.fetch_add(1, Relaxed);
                }
                if let Err(err) = conn.write_all(&data) {
                    return ConnEnd::Lost(format!("sending: {err}"));
                }
                self.shared.spool.lock().unwrap().mark_sent(e.order);
                inflight.push_back(InFlight {
                    order: e.order,
                    boot_id: e.boot_id,
                    seq: e.seq,
                    events: e.events,
                    bytes: data.len() as u64,
                });
                cursor = e.order + 1;
                sent_any = true;
            }
            if sent_any {
                if let Err(err) = conn.flush() {
                    return ConnEnd::Lost(format!("sending: {err}"));
                }
            }
            if inflight.is_empty() {
                // All acknowledged: done if the batcher is done and the spool is empty.
                let sp = self.shared.spool.lock().unwrap();
                if sp.is_empty() && self.shared.batcher_done.load(Relaxed) {
                    return ConnEnd::Done;
                }
                if sp.next_from(cursor).is_none() {
                    let _ = self.shared.cv.wait_timeout(sp, Duration::from_millis(100));
                }
                last_progress = Instant::now();
                continue;
            }
            // Read acks (short timeout so new batches and stops are noticed).
            let mut tmp = [0u8; 4096];
            match conn.read(&mut tmp) {
                Ok(0) => return ConnEnd::Lost("collector closed the connection".into()),
                Ok(n) => rbuf.extend_from_slice(&tmp[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return ConnEnd::Lost(format!("reading: {e}")),
            }
            // Parse complete frames.
            loop {
                if rbuf.len() < HEADER_LEN {
                    break;
                }
                let hb: [u8; HEADER_LEN] = rbuf[..HEADER_LEN].try_into().expect("len");
                let h = match FrameHeader::parse(&hb, 1 << 20) {
                    Ok(h) => h,
                    Err(e) => return ConnEnd::Lost(format!("bad frame from collector: {e}")),
                };
                let total = HEADER_LEN + h.len as usize;
                if rbuf.len() < total {
                    break;
                }
                let payload: Vec<u8> = rbuf[HEADER_LEN..total].to_vec();
                rbuf.drain(..total);
                match h.kind {
                    Kind::Ack => {
                        let Some(ack) = frame::decode_payload(&h, &payload)
                            .ok()
                            .and_then(|p| Ack::from_bytes(&p))
                        else {
                            return ConnEnd::Lost("malformed ack".into());
                        };
                        let Some(f) = inflight.pop_front() else {
                            return ConnEnd::Lost("ack for nothing in flight".into());
                        };
                        if (f.boot_id, f.seq) != (ack.boot_id, ack.seq) {
                            return ConnEnd::Lost(format!(
                                "ack for {:016x}/{} while {:016x}/{} was next",
                                ack.boot_id, ack.seq, f.boot_id, f.seq
                            ));
                        }
                        let c = &self.shared.c;
                        c.batches_acked.fetch_add(1, Relaxed);
                        c.events_acked.fetch_add(f.events, Relaxed);
                        c.wire_bytes.fetch_add(f.bytes, Relaxed);
                        self.shared.spool.lock().unwrap().remove(f.order);
                        self.shared.cv.notify_all();
                        last_progress = Instant::now();
                    }
                    Kind::Reject => {
                        return ConnEnd::Lost(format!(
                            "collector refused a batch: {}",
                            String::from_utf8_lossy(&payload)
                        ));
                    }
                    k => return ConnEnd::Lost(format!("unexpected {k:?} frame")),
                }
            }
            if last_progress.elapsed() > ACK_TIMEOUT {
                return ConnEnd::Lost(format!("no acknowledgement for {ACK_TIMEOUT:?}"));
            }
        }
    }
}

enum ConnectError {
    Retry(String),
    Fatal(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Retry(s) | ConnectError::Fatal(s) => f.write_str(s),
        }
    }
}

fn tls_or_retry(e: std::io::Error, what: &str) -> ConnectError {
    // A certificate the CA does not vouch for will not get better by retrying.
    let s = e.to_string();
    if s.contains("certificate") || s.contains("InvalidCertificate") {
        ConnectError::Fatal(format!("{what}: TLS: {s}"))
    } else {
        ConnectError::Retry(format!("{what}: {s}"))
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
        ("ship.queue_full", r.queue_full),
    ]
    .into_iter()
    .map(|(n, v)| NamedCounter {
        name: n.to_string(),
        value: v,
    })
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
    eprintln!(
        "rstwatch-sensor: shipped {} records in {} batches, all acknowledged ({} bytes on the wire, {} resent, {} reconnects{})",
        r.events_acked,
        r.batches_acked,
        r.wire_bytes,
        r.resent_batches,
        r.reconnects,
        if r.dropped_events > 0 {
            format!(", {} events LOST to a full spool", r.dropped_events)
        } else {
            String::new()
        }
    );
    Ok(if bad_files > 0 || r.dropped_events > 0 {
        1
    } else {
        0
    })
}
