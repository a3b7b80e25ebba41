//! The sensor-facing server: framed TCP (TLS by default), one task per connection.
//!
//! A connection goes through named steps: [`Server::run`] admits it (connection
//! bounds, see [`crate::limits`]), `handshake` reads the hello under the handshake
//! limits and authenticates it, then `serve_batches` runs three tasks: the reader
//! (frames through the shared [`Deframer`]), the dispatcher (checks, groups and stores
//! batches) and the ack writer (acks strictly in order).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rstwatch_schema::batch::ArchivedBatch;
use rstwatch_schema::frame::{self, Ack, Codec, Deframer, Frame, FrameError, Hello, Kind, Limits};
use rstwatch_schema::SCHEMA_VERSION;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::ch::{secs, with_backoff, Store, Stored};
use crate::config::Auth;
use crate::limits::{Admission, ConnLimits, Slot};
use crate::log::{RateLimit, Verdict};
use crate::metrics::Metrics;
use crate::refusal::Refusal;
use crate::{info, warn};

/// Settings of `serve`.
pub struct ServeConfig {
    /// Who may send (tokens, or `--no-auth`).
    pub auth: Auth,
    /// TLS settings; None with `--plaintext`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Largest frame payload accepted after authentication (compressed bytes).
    pub max_frame: u32,
    /// Largest batch accepted after decompression.
    pub max_raw: u32,
    /// Connection bounds and timeouts.
    pub conn: ConnLimits,
    /// Batches of one connection stored concurrently (acks stay in order).
    pub store_concurrency: usize,
}

/// (sensor id, boot id, sequence number): one batch.
type BatchKey = (String, u64, u64);

/// Shared state of the server.
pub struct Server {
    cfg: ServeConfig,
    store: Store,
    metrics: Arc<Metrics>,
    admission: Arc<Admission>,
    log_limit: RateLimit,
    /// One lock per batch being stored, by (sensor, boot, seq): a batch is never
    /// stored twice at once, e.g. resent on a new connection while the old
    /// connection's insert of it is still being retried.
    batch_locks: Mutex<HashMap<BatchKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Loads a PEM certificate chain and private key into a rustls server config.
pub fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    Ok(Arc::new(cfg))
}

/// Bytes read from a socket per call: small while the peer is nobody, larger once it
/// authenticated (batches are megabytes; fewer reads, fewer wake-ups).
const READ_CHUNK: usize = 16 << 10;
const READ_CHUNK_AUTHENTICATED: usize = 128 << 10;

/// The reading half of a connection, framed by the shared decoder.
struct FrameReader<R> {
    rd: R,
    deframer: Deframer,
    chunk: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    fn new(rd: R, limits: Limits) -> Self {
        FrameReader {
            rd,
            deframer: Deframer::new(limits),
            chunk: vec![0u8; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// The peer authenticated: frames up to `limits`, read in larger chunks.
    fn authenticated(&mut self, limits: Limits) {
        self.deframer.set_limits(limits);
        self.chunk = vec![0u8; READ_CHUNK_AUTHENTICATED].into_boxed_slice();
    }

    /// The next frame; `Ok(None)` on a clean close between frames.
    async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(f) = self.deframer.next_frame()? {
                return Ok(Some(f));
            }
            let n = self
                .rd
                .read(&mut self.chunk)
                .await
                .map_err(|e| FrameError::Io(e.to_string()))?;
            if n == 0 {
                return self.deframer.at_eof().map(|()| None);
            }
            self.deframer.push(&self.chunk[..n]);
        }
    }
}

/// An authenticated connection, ready for batches.
struct Session<S> {
    reader: FrameReader<ReadHalf<S>>,
    wr: WriteHalf<S>,
    peer: SocketAddr,
    sensor: String,
}

impl Server {
    /// The server with its store and counters; [`Server::run`] accepts.
    pub fn new(cfg: ServeConfig, store: Store, metrics: Arc<Metrics>) -> Arc<Server> {
        let admission = Admission::new(cfg.conn);
        Arc::new(Server {
            cfg,
            store,
            metrics,
            admission,
            log_limit: RateLimit::new(5, Duration::from_secs(60)),
            batch_locks: Mutex::new(HashMap::new()),
        })
    }

    /// Accepts connections until the process ends.
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (sock, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let slot = match self.admission.admit(peer.ip()) {
                Ok(s) => s,
                Err(r) => {
                    // Not worth a frame or a task: close at once, count, log sparsely.
                    let r = Refusal::Admission(r);
                    self.metrics.reject(r.name());
                    self.log_refusal(peer, "-", &r);
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(self.clone().accepted(sock, peer, slot));
        }
    }

    /// One admitted connection: TLS (when configured), then the conversation.
    async fn accepted(self: Arc<Self>, sock: tokio::net::TcpStream, peer: SocketAddr, slot: Slot) {
        self.metrics.connections_total.fetch_add(1, Relaxed);
        self.metrics.connections_open.fetch_add(1, Relaxed);
        match &self.cfg.tls {
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                let timeout = self.cfg.conn.handshake_timeout;
                match tokio::time::timeout(timeout, acceptor.accept(sock)).await {
                    Ok(Ok(s)) => self.clone().connection(s, peer, slot).await,
                    Ok(Err(e)) => self.tls_failed(peer, e.to_string()),
                    Err(_) => self.tls_failed(peer, "timed out".into()),
                }
            }
            None => self.clone().connection(sock, peer, slot).await,
        }
        self.metrics.connections_open.fetch_sub(1, Relaxed);
    }

    fn tls_failed(&self, peer: SocketAddr, why: String) {
        let r = Refusal::TlsHandshake(why);
        self.metrics.reject(r.name());
        self.log_refusal(peer, "-", &r);
    }

    /// Logs a refusal, at most a few lines per peer address and reason per minute.
    fn log_refusal(&self, peer: SocketAddr, sensor: &str, refusal: &Refusal) {
        let reason = refusal.name();
        let detail = refusal;
        match self.log_limit.check(peer.ip(), reason) {
            Verdict::Emit { held: 0 } => {
                warn!("{peer}: sensor {sensor:?}: refused ({reason}): {detail}")
            }
            Verdict::Emit { held } => warn!(
                "{peer}: sensor {sensor:?}: refused ({reason}): {detail} \
                 ({held} more like it from {} in the last minute not logged)",
                peer.ip()
            ),
            Verdict::Suppress => {
                self.metrics.log_suppressed.fetch_add(1, Relaxed);
            }
        }
    }

    async fn connection<S>(self: Arc<Self>, sock: S, peer: SocketAddr, mut slot: Slot)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (rd, mut wr) = tokio::io::split(sock);
        let mut reader = FrameReader::new(rd, Limits::HANDSHAKE);
        let Some(hello) = self.handshake(&mut reader, &mut wr, peer).await else {
            return;
        };
        slot.authenticated();
        // Only now may frames be as large as the configuration allows.
        reader.authenticated(Limits::new(self.cfg.max_frame, self.cfg.max_raw));
        info!(
            "{peer}: sensor {:?} connected (boot {:016x}, {})",
            hello.sensor_id, hello.boot_id, hello.software
        );
        let session = Session {
            reader,
            wr,
            peer,
            sensor: hello.sensor_id,
        };
        let sensor = session.sensor.clone();
        self.serve_batches(session).await;
        info!("{peer}: sensor {sensor:?} disconnected");
    }

    /// Reads and checks the hello (within the handshake timeout), authenticates it and
    /// answers welcome; or refuses and returns None.
    async fn handshake<R, W>(
        &self,
        reader: &mut FrameReader<R>,
        wr: &mut W,
        peer: SocketAddr,
    ) -> Option<Hello>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let timeout = self.cfg.conn.handshake_timeout;
        let read = tokio::time::timeout(timeout, reader.next()).await;
        let hello = match read {
            Err(_) => Err(Refusal::HelloTimeout(timeout)),
            Ok(Err(e)) => Err(Refusal::from(e)),
            Ok(Ok(None)) => Err(Refusal::from(FrameError::Truncated)),
            Ok(Ok(Some(f))) => parse_hello(&f),
        };
        let hello = match hello {
            Ok(h) => h,
            Err(r) => {
                self.refuse(wr, peer, "-", r).await;
                return None;
            }
        };
        if let Err(e) = self.cfg.auth.check(&hello.sensor_id, &hello.token) {
            self.refuse(wr, peer, &hello.sensor_id, Refusal::Auth(e))
                .await;
            return None;
        }
        if hello.schema_version != SCHEMA_VERSION {
            let d = rstwatch_schema::compat::mismatch(hello.schema_version, SCHEMA_VERSION);
            self.refuse(wr, peer, &hello.sensor_id, Refusal::SchemaVersion(d))
                .await;
            return None;
        }
        let welcome = frame::encode(Kind::Welcome, Codec::None, 0, b"");
        wr.write_all(&welcome).await.ok()?;
        Some(hello)
    }

    /// Reader → (bounded queue) → dispatcher → ack writer: frames keep being read and
    /// checked while earlier batches are written; acks go out in order.
    async fn serve_batches<S>(self: Arc<Self>, s: Session<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Session {
            mut reader,
            wr,
            peer,
            sensor,
        } = s;
        let (tx, rx) = mpsc::channel::<Result<Frame, Refusal>>(16);
        let (ack_tx, ack_rx) = mpsc::channel::<StoreTask>(64);
        let dispatcher = tokio::spawn(self.clone().dispatch(sensor.clone(), rx, ack_tx));
        let writer = tokio::spawn(self.clone().write_acks(wr, peer, sensor, ack_rx));
        loop {
            let item = self.next_batch_frame(&mut reader).await;
            let Some(item) = item else { break };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
        drop(tx);
        let _ = dispatcher.await;
        let _ = writer.await;
    }

    /// The next batch frame, a refusal, or None on a clean close.
    async fn next_batch_frame<R: AsyncRead + Unpin>(
        &self,
        reader: &mut FrameReader<R>,
    ) -> Option<Result<Frame, Refusal>> {
        let idle = self.cfg.conn.idle_timeout;
        match tokio::time::timeout(idle, reader.next()).await {
            Err(_) => Some(Err(Refusal::Idle(idle))),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => Some(Err(Refusal::from(e))),
            Ok(Ok(Some(f))) if f.header.kind != Kind::Batch => {
                Some(Err(Refusal::UnexpectedFrame {
                    expected: "a batch frame",
                    got: f.header.kind,
                }))
            }
            Ok(Ok(Some(f))) => Some(Ok(f)),
        }
    }

    /// Decodes the frames of one connection and stores them in groups: up to
    /// `store_concurrency` groups at once, each handed to the ack writer in order.
    async fn dispatch(
        self: Arc<Self>,
        sensor: String,
        mut rx: mpsc::Receiver<Result<Frame, Refusal>>,
        ack_tx: mpsc::Sender<StoreTask>,
    ) {
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.cfg.store_concurrency.max(1),
        ));
        let max_raw = self.cfg.max_raw;
        let mut ready: VecDeque<Result<Decoded, Refusal>> = VecDeque::new();
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            if ready.is_empty() {
                match rx.recv().await {
                    Some(item) => ready.push_back(decode(item, max_raw)),
                    None => return,
                }
            }
            while let Ok(item) = rx.try_recv() {
                ready.push_back(decode(item, max_raw));
            }
            let next = next_group(&mut ready);
            let me = self.clone();
            let sensor = sensor.clone();
            let handle = tokio::spawn(async move {
                let r = match next {
                    Err(r) => vec![Err(r)],
                    Ok(group) => me.store_frames(&sensor, group).await,
                };
                drop(permit);
                r
            });
            if ack_tx.send(handle).await.is_err() {
                return;
            }
        }
    }

    /// Writes each stored group's acks in order; a refusal ends the connection.
    async fn write_acks<W: AsyncWrite + Unpin>(
        self: Arc<Self>,
        mut wr: W,
        peer: SocketAddr,
        sensor: String,
        mut ack_rx: mpsc::Receiver<StoreTask>,
    ) {
        while let Some(handle) = ack_rx.recv().await {
            let results = handle
                .await
                .unwrap_or_else(|e| vec![Err(Refusal::Internal(e.to_string()))]);
            let mut acks = Vec::new();
            for r in results {
                match r {
                    Ok(ack) => acks.extend_from_slice(&frame::encode(
                        Kind::Ack,
                        Codec::None,
                        0,
                        &ack.to_bytes(),
                    )),
                    Err(r) => {
                        let _ = wr.write_all(&acks).await;
                        self.refuse(&mut wr, peer, &sensor, r).await;
                        return;
                    }
                }
            }
            if wr.write_all(&acks).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    }

    async fn refuse<W: AsyncWrite + Unpin>(
        &self,
        wr: &mut W,
        peer: SocketAddr,
        sensor: &str,
        refusal: Refusal,
    ) {
        self.metrics.reject(refusal.name());
        self.log_refusal(peer, sensor, &refusal);
        let text = format!("{}: {refusal}", refusal.name());
        let f = frame::encode(Kind::Reject, Codec::None, 0, text.as_bytes());
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = wr.write_all(&f).await;
            let _ = wr.shutdown().await;
        })
        .await;
    }

    fn batch_lock(&self, key: &BatchKey) -> Arc<tokio::sync::Mutex<()>> {
        self.batch_locks
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .clone()
    }

    fn release_batch_lock(&self, key: &BatchKey, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.batch_locks.lock().unwrap();
        // Only the map and this holder: nobody else waits for it.
        if Arc::strong_count(&lock) == 2 {
            map.remove(key);
        }
    }

    /// Checks a decoded batch: bytecheck validation, schema version, sensor id.
    fn check<'a>(&self, sensor: &str, d: &'a Decoded) -> Result<&'a ArchivedBatch, Refusal> {
        // The version first: another version's layout cannot be validated as ours.
        if let Some(v) = rstwatch_schema::compat::batch_schema_version(&d.bytes) {
            if v != SCHEMA_VERSION {
                return Err(Refusal::SchemaVersion(format!(
                    "batch of {}",
                    rstwatch_schema::compat::mismatch(v, SCHEMA_VERSION)
                )));
            }
        }
        let batch = rstwatch_schema::batch::access_batch(&d.bytes)
            .map_err(|e| Refusal::BadBatch(e.to_string()))?;
        let hd = &batch.header;
        crate::validate::check(batch, crate::log::now_us()).map_err(Refusal::Invalid)?;
        if hd.sensor_id.as_str() != sensor {
            return Err(Refusal::WrongSensor {
                batch: hd.sensor_id.as_str().to_string(),
                connection: sensor.to_string(),
            });
        }
        Ok(batch)
    }

    /// Checks and stores a group of consecutive batch frames; returns one ack per
    /// stored batch, in order, then the refusal of the first bad one (the rest are
    /// dropped: the connection closes). ClickHouse failures are retried with backoff
    /// for as long as it takes (the sensor stops getting acks and spools meanwhile).
    async fn store_frames(&self, sensor: &str, frames: Vec<Decoded>) -> Vec<Result<Ack, Refusal>> {
        let mut valid = Vec::new();
        let mut refusal = None;
        for d in &frames {
            match self.check(sensor, d) {
                Ok(b) => valid.push((b, d)),
                Err(r) => {
                    refusal = Some(r);
                    break;
                }
            }
        }
        let mut out: Vec<Result<Ack, Refusal>> = Vec::new();
        if !valid.is_empty() {
            match self.store_checked(sensor, &valid).await {
                Ok(acks) => out.extend(acks.into_iter().map(Ok)),
                Err(r) => out.push(Err(r)),
            }
        }
        if let Some(r) = refusal {
            out.push(Err(r));
        }
        out
    }

    /// Stores checked batches under their locks (taken in key order, so groups never
    /// deadlock) and counts them. Returns their acks, in order.
    async fn store_checked(
        &self,
        sensor: &str,
        valid: &[Checked<'_>],
    ) -> Result<Vec<Ack>, Refusal> {
        let m = &self.metrics;
        let acks: Vec<Ack> = valid
            .iter()
            .map(|(b, _)| Ack {
                boot_id: b.header.boot_id.to_native(),
                seq: b.header.seq.to_native(),
            })
            .collect();
        m.batches_pending.fetch_add(valid.len() as i64, Relaxed);
        let mut keys: Vec<BatchKey> = acks
            .iter()
            .map(|a| (sensor.to_string(), a.boot_id, a.seq))
            .collect();
        keys.sort();
        keys.dedup();
        let locks: Vec<_> = keys.iter().map(|k| self.batch_lock(k)).collect();
        let mut guards = Vec::with_capacity(locks.len());
        for l in &locks {
            guards.push(l.clone().lock_owned().await);
        }
        let t0 = Instant::now();
        // Batch by batch, checking what is stored, when any batch may have been seen
        // before: flagged as resent, or the same key twice in this group.
        let maybe_seen = valid.iter().any(|(_, d)| d.resent) || keys.len() < valid.len();
        let result = self
            .store_with_retry(sensor, valid, maybe_seen, &acks)
            .await;
        drop(guards);
        for (k, l) in keys.iter().zip(locks) {
            self.release_batch_lock(k, l);
        }
        m.batches_pending.fetch_sub(valid.len() as i64, Relaxed);
        m.insert_us_total
            .fetch_add(t0.elapsed().as_micros() as u64, Relaxed);
        let stored = result.map_err(|e| Refusal::StoreFailed(format!("{e:#}")))?;
        m.clickhouse_up.store(1, Relaxed);
        self.count_stored(valid, &stored);
        Ok(acks)
    }

    /// Writes a group into ClickHouse, retrying with backoff until it is in: in one
    /// go when no batch can have been seen before, else batch by batch with checks.
    async fn store_with_retry(
        &self,
        sensor: &str,
        valid: &[Checked<'_>],
        maybe_seen: bool,
        acks: &[Ack],
    ) -> anyhow::Result<Vec<Stored>> {
        let m = &self.metrics;
        let group: Vec<(&ArchivedBatch, u32)> = valid.iter().map(|(b, d)| (*b, d.wire)).collect();
        // Fixed here: every attempt writes the same ledger rows (crate::ch, on retries).
        let received = secs(crate::log::now_us());
        with_backoff(
            |attempt| {
                let group = &group;
                async move {
                    let _insert = m.insert_begin();
                    let g = &group[..];
                    if attempt == 0 && !maybe_seen && self.store.store_group(g, received).await? {
                        return Ok(vec![Stored::New; group.len()]);
                    }
                    // Possibly seen before, or a retry after a failure part-way.
                    self.store.store_checked(g, received, attempt > 0).await
                }
            },
            |e, attempt| {
                m.clickhouse_errors.fetch_add(1, Relaxed);
                m.clickhouse_up.store(0, Relaxed);
                if attempt < 3 || attempt % 20 == 0 {
                    warn!(
                        "sensor {sensor:?} batches {:016x}/{}..{}: ClickHouse write failed \
                         (attempt {}), retrying, not acknowledging: {e:#}",
                        acks[0].boot_id,
                        acks[0].seq,
                        acks[acks.len() - 1].seq,
                        attempt + 1
                    );
                }
            },
            None,
        )
        .await
    }

    /// Counts what a group's storing did, batch by batch.
    fn count_stored(&self, valid: &[Checked<'_>], stored: &[Stored]) {
        let m = &self.metrics;
        for ((b, d), st) in valid.iter().zip(stored) {
            m.wire_bytes.fetch_add(u64::from(d.wire), Relaxed);
            match st {
                Stored::New | Stored::Completed { .. } => {
                    if let Stored::Completed {
                        rollup_rsts_restored,
                        truncated_rows_completed,
                    } = st
                    {
                        m.rollup_rsts_restored
                            .fetch_add(*rollup_rsts_restored, Relaxed);
                        m.truncated_rows_completed
                            .fetch_add(*truncated_rows_completed, Relaxed);
                    }
                    m.batches_stored.fetch_add(1, Relaxed);
                    m.rst_rows.fetch_add(b.rst.len() as u64, Relaxed);
                    m.flow_rows.fetch_add(b.flows.len() as u64, Relaxed);
                    m.anomaly_rows.fetch_add(b.anomalies.len() as u64, Relaxed);
                    m.stats_rows.fetch_add(
                        b.stats.iter().map(|s| s.counters.len() as u64).sum(),
                        Relaxed,
                    );
                }
                Stored::Duplicate => {
                    m.batches_duplicate.fetch_add(1, Relaxed);
                }
            }
        }
    }
}

/// A batch that passed every check, with its frame.
type Checked<'a> = (&'a ArchivedBatch, &'a Decoded);

/// Batches stored together at most (count, decompressed bytes).
const MAX_GROUP_BATCHES: usize = 16;
const MAX_GROUP_BYTES: usize = 24 << 20;

/// A group being stored: its acks (or the refusal that ends the connection).
type StoreTask = tokio::task::JoinHandle<Vec<Result<Ack, Refusal>>>;

/// A batch frame whose checksum and compression checked out.
struct Decoded {
    bytes: rkyv::util::AlignedVec,
    resent: bool,
    wire: u32,
}

/// Checksum and decompression of one frame (CPU work off the async threads).
fn decode(item: Result<Frame, Refusal>, max_raw: u32) -> Result<Decoded, Refusal> {
    let f = item?;
    let bytes = tokio::task::block_in_place(|| {
        frame::decode_payload_limited(&f.header, &f.payload, max_raw)
    })?;
    Ok(Decoded {
        bytes,
        resent: f.header.is_resent(),
        wire: f.header.len,
    })
}

/// Takes the next group off `ready`: consecutive good batches within the group
/// bounds, or the refusal at its front.
fn next_group(ready: &mut VecDeque<Result<Decoded, Refusal>>) -> Result<Vec<Decoded>, Refusal> {
    let mut group = Vec::new();
    let mut bytes = 0usize;
    while let Some(front) = ready.front() {
        match front {
            Ok(d) => {
                if !group.is_empty()
                    && (group.len() >= MAX_GROUP_BATCHES || bytes + d.bytes.len() > MAX_GROUP_BYTES)
                {
                    break;
                }
                bytes += d.bytes.len();
                if let Some(Ok(d)) = ready.pop_front() {
                    group.push(d);
                }
            }
            Err(_) => {
                if group.is_empty() {
                    if let Some(Err(r)) = ready.pop_front() {
                        return Err(r);
                    }
                }
                break;
            }
        }
    }
    Ok(group)
}

fn parse_hello(f: &Frame) -> Result<Hello, Refusal> {
    if f.header.kind != Kind::Hello {
        return Err(Refusal::UnexpectedFrame {
            expected: "hello",
            got: f.header.kind,
        });
    }
    let raw = frame::decode_payload_limited(&f.header, &f.payload, Limits::HANDSHAKE.max_raw)?;
    serde_json::from_slice::<Hello>(&raw).map_err(Refusal::BadHello)
}
