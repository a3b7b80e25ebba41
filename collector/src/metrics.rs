//! Collector metrics (Prometheus text format) and the `/metrics` + `/healthz` endpoint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rstwatch_schema::prometheus::{Exposition, MetricType, MetricType::*};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The collector's counters, rendered by [`Metrics::render`].
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sensor connections accepted.
    pub connections_total: AtomicU64,
    /// Sensor connections open now.
    pub connections_open: AtomicI64,
    /// Batches written to ClickHouse and acknowledged.
    pub batches_stored: AtomicU64,
    /// Redelivered batches found already stored.
    pub batches_duplicate: AtomicU64,
    /// RSTs restored to the rollups after writes that failed part-way.
    pub rollup_rsts_restored: AtomicU64,
    /// Rows written to complete batches whose earlier INSERT the server committed
    /// only in part (its first rows).
    pub truncated_rows_completed: AtomicU64,
    /// Rows written to `rst_events`.
    pub rst_rows: AtomicU64,
    /// Rows written to `flows`.
    pub flow_rows: AtomicU64,
    /// Rows written to `anomalies`.
    pub anomaly_rows: AtomicU64,
    /// Rows written to `sensor_stats`.
    pub stats_rows: AtomicU64,
    /// Batch payload bytes received (compressed).
    pub wire_bytes: AtomicU64,
    /// Failed ClickHouse operations (each retried).
    pub clickhouse_errors: AtomicU64,
    /// 1 when the last ClickHouse operation succeeded.
    pub clickhouse_up: AtomicU64,
    /// Batches received and not yet acknowledged.
    pub batches_pending: AtomicI64,
    /// Time spent storing batches, µs.
    pub insert_us_total: AtomicU64,
    /// Refused frames and connections, by reason.
    pub rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Log lines held back by the per-peer, per-reason rate limit.
    pub log_suppressed: AtomicU64,
    /// ClickHouse writes in progress, by id, with their start.
    inserts: Mutex<BTreeMap<u64, Instant>>,
    next_insert: AtomicU64,
    /// An insert running longer than this makes the collector unhealthy (µs; 0: 10 s).
    pub stall_after_us: AtomicU64,
    /// `rstwatch_collector_alerts_*` (the alerter's deliveries, per sink).
    pub alerts: crate::alert::AlertCounters,
}

/// A ClickHouse write in progress; dropping it ends it.
pub struct InsertGuard<'a> {
    m: &'a Metrics,
    id: u64,
}

impl Drop for InsertGuard<'_> {
    fn drop(&mut self) {
        self.m.lock_inserts().remove(&self.id);
    }
}

impl Metrics {
    /// Fresh counters, ClickHouse assumed up.
    pub fn new() -> Arc<Metrics> {
        let m = Metrics::default();
        m.clickhouse_up.store(1, Relaxed);
        Arc::new(m)
    }

    fn lock_inserts(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Instant>> {
        self.inserts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a ClickHouse write as started (until the guard drops).
    pub fn insert_begin(&self) -> InsertGuard<'_> {
        let id = self.next_insert.fetch_add(1, Relaxed);
        self.lock_inserts().insert(id, Instant::now());
        InsertGuard { m: self, id }
    }

    /// How long the oldest write in progress has been running.
    pub fn oldest_insert(&self) -> Option<Duration> {
        self.lock_inserts().values().min().map(|t| t.elapsed())
    }

    fn stall_after(&self) -> Duration {
        match self.stall_after_us.load(Relaxed) {
            0 => Duration::from_secs(10),
            us => Duration::from_micros(us),
        }
    }

    /// Healthy while the last ClickHouse operation succeeded and no write has been
    /// stalled past the bound; otherwise why not.
    pub fn health(&self) -> Result<(), String> {
        if let Some(age) = self.oldest_insert().filter(|a| *a > self.stall_after()) {
            return Err(format!(
                "clickhouse stalled: an insert has been running for {:.1} s",
                age.as_secs_f64()
            ));
        }
        if self.clickhouse_up.load(Relaxed) != 1 {
            return Err("clickhouse unavailable".into());
        }
        Ok(())
    }

    /// Counts one refusal for `reason` (a `Refusal` name).
    pub fn reject(&self, reason: &'static str) {
        *self.rejected.lock().unwrap().entry(reason).or_insert(0) += 1;
    }

    /// How often `reason` was refused so far.
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected
            .lock()
            .unwrap()
            .get(reason)
            .copied()
            .unwrap_or(0)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut e = Exposition::new();
        self.render_connections(&mut e);
        self.render_storage(&mut e);
        self.render_rollup_repairs(&mut e);
        self.render_refusals(&mut e);
        self.alerts.render(&mut e);
        e.finish()
    }

    fn render_connections(&self, e: &mut Exposition) {
        e.single(
            "rstwatch_collector_connections_total",
            "Sensor connections accepted.",
            Counter,
            self.connections_total.load(Relaxed),
        );
        e.single(
            "rstwatch_collector_connections_open",
            "Sensor connections open now.",
            Gauge,
            self.connections_open.load(Relaxed),
        );
    }

    fn render_storage(&self, e: &mut Exposition) {
        let counters: [(&str, &str, MetricType, &dyn Fn() -> String); 5] = [
            (
                "rstwatch_collector_batches_stored_total",
                "Batches written to ClickHouse and acknowledged.",
                Counter,
                &|| self.batches_stored.load(Relaxed).to_string(),
            ),
            (
                "rstwatch_collector_batches_duplicate_total",
                "Redelivered batches found already stored (acknowledged, not stored again).",
                Counter,
                &|| self.batches_duplicate.load(Relaxed).to_string(),
            ),
            (
                "rstwatch_collector_batches_pending",
                "Batches received and not yet acknowledged.",
                Gauge,
                &|| self.batches_pending.load(Relaxed).to_string(),
            ),
            (
                "rstwatch_collector_wire_bytes_total",
                "Batch payload bytes received (compressed).",
                Counter,
                &|| self.wire_bytes.load(Relaxed).to_string(),
            ),
            (
                "rstwatch_collector_clickhouse_errors_total",
                "Failed ClickHouse operations (each is retried with backoff).",
                Counter,
                &|| self.clickhouse_errors.load(Relaxed).to_string(),
            ),
        ];
        for (name, help, kind, value) in counters {
            e.single(name, help, kind, value());
        }
        let mut rows = e.family(
            "rstwatch_collector_rows_total",
            "Rows written to ClickHouse, by table.",
            Counter,
        );
        for (table, v) in [
            ("rst_events", &self.rst_rows),
            ("flows", &self.flow_rows),
            ("anomalies", &self.anomaly_rows),
            ("sensor_stats", &self.stats_rows),
        ] {
            rows.sample(&[("table", table)], v.load(Relaxed));
        }
        e.single(
            "rstwatch_collector_clickhouse_up",
            "1 when the last ClickHouse operation succeeded and no insert is stalled, 0 otherwise.",
            Gauge,
            u8::from(self.health().is_ok()),
        );
        e.single(
            "rstwatch_collector_oldest_insert_seconds",
            "Age of the oldest ClickHouse insert in progress (0 when none).",
            Gauge,
            format!(
                "{:.3}",
                self.oldest_insert().unwrap_or_default().as_secs_f64()
            ),
        );
        e.single(
            "rstwatch_collector_insert_seconds_total",
            "Time spent storing batches.",
            Counter,
            format!("{:.6}", self.insert_us_total.load(Relaxed) as f64 / 1e6),
        );
    }

    /// What became of the rollups of batches found partly written (`ch/repair.rs`).
    fn render_rollup_repairs(&self, e: &mut Exposition) {
        e.single(
            "rstwatch_collector_rollup_rsts_restored_total",
            "RSTs restored to the rollups (rst_minute, rst_minute_cause, rst_hour, all \
             together) for batches whose write failed after their raw rows.",
            Counter,
            self.rollup_rsts_restored.load(Relaxed),
        );
        e.single(
            "rstwatch_collector_truncated_rows_completed_total",
            "Rows written to complete batches of which an earlier INSERT, cut short (a \
             collector killed mid-write), left only the first rows: ClickHouse 18.16 \
             commits such a prefix (ClickHouse#9666, #27667).",
            Counter,
            self.truncated_rows_completed.load(Relaxed),
        );
    }

    fn render_refusals(&self, e: &mut Exposition) {
        e.single(
            "rstwatch_collector_log_suppressed_total",
            "Log lines held back by the per-peer, per-reason rate limit.",
            Counter,
            self.log_suppressed.load(Relaxed),
        );
        let mut rejected = e.family(
            "rstwatch_collector_rejected_total",
            "Refused frames and connections, by reason.",
            Counter,
        );
        for (reason, v) in self.rejected.lock().unwrap().iter() {
            rejected.sample(&[("reason", reason)], v);
        }
    }
}

/// Serves `GET /metrics` and `GET /healthz` (200 `ok` while ClickHouse answers and no
/// insert is stalled, 503 with the reason otherwise) until the process ends.
pub async fn serve_http(listener: TcpListener, m: Arc<Metrics>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let m = m.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read until the end of the request head (bounded: 4 KiB, 5 s).
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body, ctype) = match path {
                "/metrics" => ("200 OK", m.render(), "text/plain; version=0.0.4"),
                "/healthz" => match m.health() {
                    Ok(()) => ("200 OK", "ok\n".to_string(), "text/plain"),
                    Err(why) => ("503 Service Unavailable", format!("{why}\n"), "text/plain"),
                },
                _ => ("404 Not Found", "not found\n".to_string(), "text/plain"),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
