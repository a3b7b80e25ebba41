//! Collector metrics (Prometheus text format) and the `/metrics` + `/healthz` endpoint.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_total: AtomicU64,
    pub connections_open: AtomicI64,
    pub batches_stored: AtomicU64,
    pub batches_duplicate: AtomicU64,
    pub rst_rows: AtomicU64,
    pub flow_rows: AtomicU64,
    pub anomaly_rows: AtomicU64,
    pub stats_rows: AtomicU64,
    pub wire_bytes: AtomicU64,
    pub clickhouse_errors: AtomicU64,
    /// 1 when the last ClickHouse operation succeeded.
    pub clickhouse_up: AtomicU64,
    /// Batches received and not yet acknowledged.
    pub batches_pending: AtomicI64,
    pub insert_us_total: AtomicU64,
    /// Refused frames and connections, by reason.
    pub rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let m = Metrics::default();
        m.clickhouse_up.store(1, Relaxed);
        Arc::new(m)
    }

    pub fn reject(&self, reason: &'static str) {
        *self.rejected.lock().unwrap().entry(reason).or_insert(0) += 1;
    }

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
        let mut s = String::new();
        fn c(s: &mut String, name: &str, help: &str, kind: &str, v: String) {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        c(
            &mut s,
            "rstwatch_collector_connections_total",
            "Sensor connections accepted.",
            "counter",
            self.connections_total.load(Relaxed).to_string(),
        );
        c(
            &mut s,
            "rstwatch_collector_connections_open",
            "Sensor connections open now.",
            "gauge",
            self.connections_open.load(Relaxed).to_string(),
        );
        c(
            &mut s,
            "rstwatch_collector_batches_stored_total",
            "Batches written to ClickHouse and acknowledged.",
            "counter",
            self.batches_stored.load(Relaxed).to_string(),
        );
        c(
            &mut s,
            "rstwatch_collector_batches_duplicate_total",
            "Redelivered batches found already stored (acknowledged, not stored again).",
            "counter",
            self.batches_duplicate.load(Relaxed).to_string(),
        );
        c(
            &mut s,
            "rstwatch_collector_batches_pending",
            "Batches received and not yet acknowledged.",
            "gauge",
            self.batches_pending.load(Relaxed).to_string(),
        );
        for (name, v) in [
            ("rst_events", &self.rst_rows),
            ("flows", &self.flow_rows),
            ("anomalies", &self.anomaly_rows),
            ("sensor_stats", &self.stats_rows),
        ] {
            let _ = writeln!(
                s,
                "rstwatch_collector_rows_total{{table=\"{name}\"}} {}",
                v.load(Relaxed)
            );
        }
        c(
            &mut s,
            "rstwatch_collector_wire_bytes_total",
            "Batch payload bytes received (compressed).",
            "counter",
            self.wire_bytes.load(Relaxed).to_string(),
        );
        c(
            &mut s,
            "rstwatch_collector_clickhouse_errors_total",
            "Failed ClickHouse operations (each is retried with backoff).",
            "counter",
            self.clickhouse_errors.load(Relaxed).to_string(),
        );
        c(
            &mut s,
            "rstwatch_collector_clickhouse_up",
            "1 when the last ClickHouse operation succeeded, 0 while it is failing.",
            "gauge",
            self.clickhouse_up.load(Relaxed).to_string(),
        );
        c(
            &mut s,
            "rstwatch_collector_insert_seconds_total",
            "Time spent storing batches.",
            "counter",
            format!("{:.6}", self.insert_us_total.load(Relaxed) as f64 / 1e6),
        );
        let _ = writeln!(
            s,
            "# HELP rstwatch_collector_rejected_total Refused frames and connections, by reason.\n\
             # TYPE rstwatch_collector_rejected_total counter"
        );
        for (reason, v) in self.rejected.lock().unwrap().iter() {
            let _ = writeln!(
                s,
                "rstwatch_collector_rejected_total{{reason=\"{reason}\"}} {v}"
            );
        }
        s
    }
}

/// Serves `GET /metrics` and `GET /healthz` (200 `ok` while ClickHouse answers, 503
/// otherwise) until the process ends.
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
                "/healthz" => {
                    if m.clickhouse_up.load(Relaxed) == 1 {
                        ("200 OK", "ok\n".to_string(), "text/plain")
                    } else {
                        (
                            "503 Service Unavailable",
                            "clickhouse unavailable\n".to_string(),
                            "text/plain",
                        )
                    }
                }
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
