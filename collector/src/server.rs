//! The sensor-facing server: framed TCP (TLS by default), one task per connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rstwatch_schema::frame::{self, Ack, Codec, FrameError, FrameHeader, Hello, Kind, HEADER_LEN};
use rstwatch_schema::SCHEMA_VERSION;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::ch::{with_backoff, Store, Stored};
use crate::config::Auth;
use crate::metrics::Metrics;
use crate::{info, warn};

/// Settings of `serve`.
pub struct ServeConfig {
    pub auth: Auth,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Largest frame payload accepted (compressed bytes).
    pub max_frame: u32,
    /// Close a connection that sends nothing for this long.
    pub idle_timeout: Duration,
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

/// Why a connection ended early, for the log and the counters.
struct Refusal {
    reason: &'static str,
    detail: String,
}

impl From<FrameError> for Refusal {
    fn from(e: FrameError) -> Self {
        Refusal {
            reason: e.name(),
            detail: e.to_string(),
        }
    }
}

impl Server {
    pub fn new(cfg: ServeConfig, store: Store, metrics: Arc<Metrics>) -> Arc<Server> {
        Arc::new(Server {
            cfg,
            store,
            metrics,
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
            let _ = sock.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                me.metrics.connections_total.fetch_add(1, Relaxed);
                me.metrics.connections_open.fetch_add(1, Relaxed);
                match &me.cfg.tls {
                    Some(tls) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock))
                            .await
                        {
                            Ok(Ok(s)) => me.clone().connection(s, peer).await,
                            Ok(Err(e)) => {
                                me.metrics.reject("tls_handshake");
                                warn!("{peer}: TLS handshake failed: {e}");
                            }
                            Err(_) => {
                                me.metrics.reject("tls_handshake");
                                warn!("{peer}: TLS handshake timed out");
                            }
                        }
                    }
                    None => me.clone().connection(sock, peer).await,
                }
                me.metrics.connections_open.fetch_sub(1, Relaxed);
            });
        }
    }

    async fn connection<S>(self: Arc<Self>, sock: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(sock);
        // Hello: small, and within 10 s.
        let hello =
            match tokio::time::timeout(Duration::from_secs(10), read_frame(&mut rd, 64 * 1024))
                .await
            {
                Err(_) => {
                    self.refuse(&mut wr, peer, "-", "timeout", "no hello within 10 s".into())
                        .await;
                    return;
                }
                Ok(Err(e)) => {
                    let r = Refusal::from(e);
                    self.refuse(&mut wr, peer, "-", r.reason, r.detail).await;
                    return;
                }
                Ok(Ok((h, p))) => match parse_hello(&h, &p) {
                    Ok(hello) => hello,
                    Err(r) => {
                        self.refuse(&mut wr, peer, "-", r.reason, r.detail).await;
                        return;
                    }
                },
            };
        let sensor = hello.sensor_id.clone();
        if let Err(e) = self.cfg.auth.check(&hello.sensor_id, &hello.token) {
            let detail = match e {
                crate::config::AuthError::UnknownSensor => {
                    "sensor id not configured and no shared token".to_string()
                }
                crate::config::AuthError::BadToken => "wrong token".to_string(),
            };
            self.refuse(&mut wr, peer, &sensor, e.name(), detail).await;
            return;
        }
        if hello.schema_version != SCHEMA_VERSION {
            let d = rstwatch_schema::compat::mismatch(hello.schema_version, SCHEMA_VERSION);
            self.refuse(&mut wr, peer, &sensor, "schema_version", d)
                .await;
            return;
        }
        let welcome = frame::encode(Kind::Welcome, Codec::None, 0, b"");
        if wr.write_all(&welcome).await.is_err() {
            return;
        }
        info!(
            "{peer}: sensor {sensor:?} connected (boot {:016x}, {})",
            hello.boot_id, hello.software
        );

        // Reader → (bounded queue) → writer: frames keep being read and checked while
        // the previous batch is being written; acks go out in order.
        let (tx, mut rx) = mpsc::channel::<Result<(FrameHeader, Vec<u8>), Refusal>>(16);
        // Up to `store_concurrency` groups of this connection's batches are stored at
        // once; acks still go out strictly in order. Batches that queued up while
        // ClickHouse was busy go in together (one INSERT per table for the group).
        let (ack_tx, mut ack_rx) =
            mpsc::channel::<tokio::task::JoinHandle<Vec<Result<Ack, Refusal>>>>(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.cfg.store_concurrency.max(1),
        ));
        let me = self.clone();
        let sensor2 = sensor.clone();
        let dispatcher = tokio::spawn(async move {
            let mut ready: std::collections::VecDeque<Result<Decoded, Refusal>> =
                Default::default();
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                if ready.is_empty() {
                    match rx.recv().await {
                        Some(item) => ready.push_back(decode(item)),
                        None => return,
                    }
                }
                while let Ok(item) = rx.try_recv() {
                    ready.push_back(decode(item));
                }
                let mut group = Vec::new();
                let mut bytes = 0usize;
                let mut refusal = None;
                while let Some(front) = ready.front() {
                    match front {
                        Ok(d) => {
                            if !group.is_empty()
                                && (group.len() >= MAX_GROUP_BATCHES
                                    || bytes + d.bytes.len() > MAX_GROUP_BYTES)
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
                                    refusal = Some(r);
                                }
                            }
                            break;
                        }
                    }
                }
                let me = me.clone();
                let sensor = sensor2.clone();
                let handle = tokio::spawn(async move {
                    let r = match refusal {
                        Some(r) => vec![Err(r)],
                        None => me.store_frames(&sensor, group).await,
                    };
                    drop(permit);
                    r
                });
                if ack_tx.send(handle).await.is_err() {
                    return;
                }
            }
        });
        let me = self.clone();
        let sensor2 = sensor.clone();
        let writer = tokio::spawn(async move {
            while let Some(handle) = ack_rx.recv().await {
                let results = handle.await.unwrap_or_else(|e| {
                    vec![Err(Refusal {
                        reason: "internal",
                        detail: format!("store task failed: {e}"),
                    })]
                });
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
                            me.refuse(&mut wr, peer, &sensor2, r.reason, r.detail).await;
                            return;
                        }
                    }
                }
                if wr.write_all(&acks).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        loop {
            let r = tokio::time::timeout(
                self.cfg.idle_timeout,
                read_frame_or_close(&mut rd, self.cfg.max_frame),
            )
            .await;
            let item = match r {
                Err(_) => Err(Refusal {
                    reason: "timeout",
                    detail: format!("idle for {:?}", self.cfg.idle_timeout),
                }),
                // A clean close between frames.
                Ok(Ok(None)) => break,
                Ok(Err(e)) => Err(Refusal::from(e)),
                Ok(Ok(Some((h, _)))) if h.kind != Kind::Batch => Err(Refusal {
                    reason: "unexpected_frame",
                    detail: format!("expected a batch frame, got {:?}", h.kind),
                }),
                Ok(Ok(Some(x))) => Ok(x),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
        drop(tx);
        let _ = dispatcher.await;
        let _ = writer.await;
        info!("{peer}: sensor {sensor:?} disconnected");
    }

    async fn refuse<W: AsyncWrite + Unpin>(
        &self,
        wr: &mut W,
        peer: SocketAddr,
        sensor: &str,
        reason: &'static str,
        detail: String,
    ) {
        self.metrics.reject(reason);
        warn!("{peer}: sensor {sensor:?}: refused ({reason}): {detail}");
        let f = frame::encode(
            Kind::Reject,
            Codec::None,
            0,
            format!("{reason}: {detail}").as_bytes(),
        );
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
    fn check<'a>(
        &self,
        sensor: &str,
        d: &'a Decoded,
    ) -> Result<&'a rstwatch_schema::batch::ArchivedBatch, Refusal> {
        // The version first: another version's layout cannot be validated as ours.
        if let Some(v) = rstwatch_schema::compat::batch_schema_version(&d.bytes) {
            if v != SCHEMA_VERSION {
                return Err(Refusal {
                    reason: "schema_version",
                    detail: format!(
                        "batch of {}",
                        rstwatch_schema::compat::mismatch(v, SCHEMA_VERSION)
                    ),
                });
            }
        }
        let batch = rstwatch_schema::batch::access_batch(&d.bytes).map_err(|e| Refusal {
            reason: "bad_batch",
            detail: format!("batch does not validate: {e}"),
        })?;
        let hd = &batch.header;
        if hd.sensor_id.as_str() != sensor {
            return Err(Refusal {
                reason: "wrong_sensor",
                detail: format!(
                    "batch says sensor {:?}, connection authenticated as {sensor:?}",
                    hd.sensor_id.as_str()
                ),
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
            let m = &self.metrics;
            let acks: Vec<Ack> = valid
                .iter()
                .map(|(b, _)| Ack {
                    boot_id: b.header.boot_id.to_native(),
                    seq: b.header.seq.to_native(),
                })
                .collect();
            m.batches_pending.fetch_add(valid.len() as i64, Relaxed);
            // Lock every batch of the group, in key order (no deadlock between groups).
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
            let any_resent = valid.iter().any(|(_, d)| d.resent);
            let group: Vec<(&rstwatch_schema::batch::ArchivedBatch, u32)> =
                valid.iter().map(|(b, d)| (*b, d.wire)).collect();
            let result = with_backoff(
                |attempt| {
                    let group = &group;
                    async move {
                        if attempt == 0 && !any_resent {
                            self.store.store_group(group).await?;
                            Ok(vec![Stored::New; group.len()])
                        } else {
                            // Possibly seen before, or a retry after a failure part-way:
                            // batch by batch, checking what is already stored.
                            let mut v = Vec::with_capacity(group.len());
                            for (b, wire) in group {
                                v.push(self.store.store_batch(b, true, *wire).await?);
                            }
                            Ok(v)
                        }
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
            .await;
            drop(guards);
            for (k, l) in keys.iter().zip(locks) {
                self.release_batch_lock(k, l);
            }
            m.batches_pending.fetch_sub(valid.len() as i64, Relaxed);
            m.insert_us_total
                .fetch_add(t0.elapsed().as_micros() as u64, Relaxed);
            match result {
                Ok(stored) => {
                    m.clickhouse_up.store(1, Relaxed);
                    for ((b, d), st) in valid.iter().zip(stored) {
                        m.wire_bytes.fetch_add(u64::from(d.wire), Relaxed);
                        match st {
                            Stored::New => {
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
                    out.extend(acks.into_iter().map(Ok));
                }
                Err(e) => out.push(Err(Refusal {
                    reason: "store_failed",
                    detail: format!("{e:#}"),
                })),
            }
        }
        if let Some(r) = refusal {
            out.push(Err(r));
        }
        out
    }
}

/// Batches stored together at most (count, decompressed bytes).
const MAX_GROUP_BATCHES: usize = 16;
const MAX_GROUP_BYTES: usize = 24 << 20;

/// A batch frame whose checksum and compression checked out.
struct Decoded {
    bytes: rkyv::util::AlignedVec,
    resent: bool,
    wire: u32,
}

/// Checksum and decompression of one frame (CPU work off the async threads).
fn decode(item: Result<(FrameHeader, Vec<u8>), Refusal>) -> Result<Decoded, Refusal> {
    let (h, payload) = item?;
    let bytes = tokio::task::block_in_place(|| frame::decode_payload(&h, &payload))?;
    Ok(Decoded {
        bytes,
        resent: h.is_resent(),
        wire: h.len,
    })
}

fn parse_hello(h: &FrameHeader, p: &[u8]) -> Result<Hello, Refusal> {
    if h.kind != Kind::Hello {
        return Err(Refusal {
            reason: "unexpected_frame",
            detail: format!("expected hello, got {:?}", h.kind),
        });
    }
    let raw = frame::decode_payload(h, p)?;
    serde_json::from_slice::<Hello>(&raw).map_err(|e| Refusal {
        reason: "bad_hello",
        detail: format!("hello is not valid JSON: {e}"),
    })
}

/// Reads one frame (async): checked header, raw payload.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max_len: u32,
) -> Result<(FrameHeader, Vec<u8>), FrameError> {
    match read_frame_or_close(r, max_len).await? {
        Some(x) => Ok(x),
        None => Err(FrameError::Truncated),
    }
}

/// Like [`read_frame`], but a close before the first header byte is `Ok(None)`.
async fn read_frame_or_close<R: AsyncRead + Unpin>(
    r: &mut R,
    max_len: u32,
) -> Result<Option<(FrameHeader, Vec<u8>)>, FrameError> {
    let mut hb = [0u8; HEADER_LEN];
    let first = r
        .read(&mut hb)
        .await
        .map_err(|e| FrameError::Io(e.to_string()))?;
    if first == 0 {
        return Ok(None);
    }
    read_exact(r, &mut hb[first..]).await?;
    let h = FrameHeader::parse(&hb, max_len)?;
    let mut payload = vec![0u8; h.len as usize];
    read_exact(r, &mut payload).await?;
    Ok(Some((h, payload)))
}

async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), FrameError> {
    r.read_exact(buf).await.map(|_| ()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e.to_string())
        }
    })
}
