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
            let d = format!(
                "sensor schema version {}, collector {SCHEMA_VERSION}",
                hello.schema_version
            );
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
        let (tx, mut rx) = mpsc::channel::<Result<(FrameHeader, Vec<u8>), Refusal>>(4);
        // Up to `store_concurrency` batches of this connection are stored at once;
        // acks still go out strictly in order.
        let (ack_tx, mut ack_rx) =
            mpsc::channel::<tokio::task::JoinHandle<Result<Ack, Refusal>>>(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.cfg.store_concurrency.max(1),
        ));
        let me = self.clone();
        let sensor2 = sensor.clone();
        let dispatcher = tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                let handle = match item {
                    Ok((h, payload)) => {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            return;
                        };
                        let me = me.clone();
                        let sensor = sensor2.clone();
                        tokio::spawn(async move {
                            let r = me.handle_batch(&sensor, &h, payload).await;
                            drop(permit);
                            r
                        })
                    }
                    Err(r) => tokio::spawn(async move { Err(r) }),
                };
                if ack_tx.send(handle).await.is_err() {
                    return;
                }
            }
        });
        let me = self.clone();
        let sensor2 = sensor.clone();
        let writer = tokio::spawn(async move {
            while let Some(handle) = ack_rx.recv().await {
                let r = handle.await.unwrap_or_else(|e| {
                    Err(Refusal {
                        reason: "internal",
                        detail: format!("store task failed: {e}"),
                    })
                });
                match r {
                    Ok(ack) => {
                        let f = frame::encode(Kind::Ack, Codec::None, 0, &ack.to_bytes());
                        if wr.write_all(&f).await.is_err() {
                            return;
                        }
                    }
                    Err(r) => {
                        me.refuse(&mut wr, peer, &sensor2, r.reason, r.detail).await;
                        return;
                    }
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

    /// Checks, stores and returns the ack for one batch frame. ClickHouse failures are
    /// retried with backoff for as long as it takes (the sensor stops getting acks and
    /// spools meanwhile); bad frames are refused.
    async fn handle_batch(
        &self,
        sensor: &str,
        h: &FrameHeader,
        payload: Vec<u8>,
    ) -> Result<Ack, Refusal> {
        let bytes = tokio::task::block_in_place(|| frame::decode_payload(h, &payload))?;
        let batch = rstwatch_schema::batch::access_batch(&bytes).map_err(|e| Refusal {
            reason: "bad_batch",
            detail: format!("batch does not validate: {e}"),
        })?;
        let hd = &batch.header;
        if hd.schema_version.to_native() != SCHEMA_VERSION {
            return Err(Refusal {
                reason: "schema_version",
                detail: format!(
                    "batch schema version {}, collector {SCHEMA_VERSION}",
                    hd.schema_version.to_native()
                ),
            });
        }
        if hd.sensor_id.as_str() != sensor {
            return Err(Refusal {
                reason: "wrong_sensor",
                detail: format!(
                    "batch says sensor {:?}, connection authenticated as {sensor:?}",
                    hd.sensor_id.as_str()
                ),
            });
        }
        let ack = Ack {
            boot_id: hd.boot_id.to_native(),
            seq: hd.seq.to_native(),
        };
        let m = &self.metrics;
        m.batches_pending.fetch_add(1, Relaxed);
        let key = (sensor.to_string(), ack.boot_id, ack.seq);
        let lock = self.batch_lock(&key);
        let guard = lock.lock().await;
        let t0 = Instant::now();
        let resent = h.is_resent();
        let wire = h.len;
        let result = with_backoff(
            |attempt| self.store.store_batch(batch, resent || attempt > 0, wire),
            |e, attempt| {
                m.clickhouse_errors.fetch_add(1, Relaxed);
                m.clickhouse_up.store(0, Relaxed);
                if attempt < 3 || attempt % 20 == 0 {
                    warn!(
                        "sensor {sensor:?} batch {:016x}/{}: ClickHouse write failed (attempt {}), \
                         retrying, not acknowledging: {e:#}",
                        ack.boot_id,
                        ack.seq,
                        attempt + 1
                    );
                }
            },
            None,
        )
        .await;
        drop(guard);
        self.release_batch_lock(&key, lock);
        m.batches_pending.fetch_sub(1, Relaxed);
        m.insert_us_total
            .fetch_add(t0.elapsed().as_micros() as u64, Relaxed);
        match result {
            Ok(stored) => {
                m.clickhouse_up.store(1, Relaxed);
                m.wire_bytes.fetch_add(u64::from(wire), Relaxed);
                match stored {
                    Stored::New => {
                        m.batches_stored.fetch_add(1, Relaxed);
                        m.rst_rows.fetch_add(batch.rst.len() as u64, Relaxed);
                        m.flow_rows.fetch_add(batch.flows.len() as u64, Relaxed);
                        m.anomaly_rows
                            .fetch_add(batch.anomalies.len() as u64, Relaxed);
                        m.stats_rows.fetch_add(
                            batch.stats.iter().map(|s| s.counters.len() as u64).sum(),
                            Relaxed,
                        );
                    }
                    Stored::Duplicate => {
                        m.batches_duplicate.fetch_add(1, Relaxed);
                    }
                }
                Ok(ack)
            }
            Err(e) => Err(Refusal {
                reason: "store_failed",
                detail: format!("{e:#}"),
            }),
        }
    }
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
