//! Delivery of one notice to one sink, with bounded retries (exponential backoff with
//! jitter) on errors worth retrying.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use tokio::io::AsyncWriteExt;

use super::config::{HttpConfig, LogTarget, RetryConfig, Settings, Transport};
use super::counters::{AlertCounters, Outcome};
use super::format::{self, Context};
use super::model::Notice;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Where notices go.
pub(super) enum Sink {
    Log(LogTarget),
    Alertmanager(HttpConfig),
    Slack(HttpConfig),
    Syslog {
        addr: SocketAddr,
        transport: Transport,
        timeout: Duration,
    },
}

/// Why an attempt failed.
#[derive(Debug)]
pub(super) enum DeliveryError {
    /// Worth another attempt: 5xx, 429, connection refused or reset, timeout.
    Retryable(String),
    /// Will fail the same way again: 4xx, a body that cannot be built.
    Permanent(String),
}

impl Sink {
    /// The configured sinks.
    pub(super) fn all(s: &Settings) -> Vec<Sink> {
        let mut v = Vec::new();
        if let Some(l) = &s.log {
            v.push(Sink::Log(l.clone()));
        }
        if let Some(h) = &s.webhook {
            v.push(Sink::Alertmanager(h.clone()));
        }
        if let Some(h) = &s.slack {
            v.push(Sink::Slack(h.clone()));
        }
        if let Some((addr, transport, timeout)) = s.syslog {
            v.push(Sink::Syslog {
                addr,
                transport,
                timeout,
            });
        }
        v
    }

    /// Metric label and outbox name.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Sink::Log(_) => "log",
            Sink::Alertmanager(_) => "webhook",
            Sink::Slack(_) => "slack",
            Sink::Syslog { .. } => "syslog",
        }
    }
}

/// Sends notices; holds the HTTP client (connection pool) of one sink.
pub(super) struct Deliverer {
    pub sink: Sink,
    http: Client<Https, Full<Bytes>>,
    retry: RetryConfig,
    observer: String,
    external_url: String,
}

pub(super) fn http_client() -> anyhow::Result<Client<Https, Full<Bytes>>> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(https))
}

/// Delay before attempt `n + 1` (n ≥ 1 failures so far): base·2^(n-1) capped at max,
/// then "equal jitter" (half fixed, half random) so many collectors retrying after
/// one outage do not hit the receiver in step.
pub(super) fn backoff(r: &RetryConfig, failures: u32) -> Duration {
    let exp = r
        .base_ms
        .saturating_mul(1u64 << failures.saturating_sub(1).min(30))
        .min(r.max_ms.max(r.base_ms));
    let half = exp / 2;
    Duration::from_millis(half + fastrand::u64(0..=exp - half))
}

impl Deliverer {
    pub(super) fn new(sink: Sink, s: &Settings) -> anyhow::Result<Deliverer> {
        Ok(Deliverer {
            sink,
            http: http_client()?,
            retry: s.retry.clone(),
            observer: s.observer.clone(),
            external_url: s.external_url.clone(),
        })
    }

    /// Tries up to `attempts` times; true when delivered. Every attempt is counted.
    pub(super) async fn deliver(&self, n: &Notice, c: &AlertCounters) -> bool {
        let name = self.sink.name();
        for attempt in 1..=self.retry.attempts {
            match self.once(n).await {
                Ok(()) => {
                    c.count(Outcome::Sent, name);
                    return true;
                }
                Err(DeliveryError::Retryable(why)) if attempt < self.retry.attempts => {
                    c.count(Outcome::Retried, name);
                    let wait = backoff(&self.retry, attempt);
                    crate::warn!(
                        "alert {} to {name}: attempt {attempt} failed ({why}); retrying in {} ms",
                        n.seq,
                        wait.as_millis()
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(DeliveryError::Retryable(why)) | Err(DeliveryError::Permanent(why)) => {
                    c.count(Outcome::Failed, name);
                    crate::warn!(
                        "alert {} to {name}: given up after attempt {attempt}: {why}",
                        n.seq
                    );
                    return false;
                }
            }
        }
        false
    }

    fn cx<'a>(&'a self, receiver: &'a str) -> Context<'a> {
        Context {
            observer: &self.observer,
            external_url: &self.external_url,
            receiver,
        }
    }

    async fn once(&self, n: &Notice) -> Result<(), DeliveryError> {
        match &self.sink {
            Sink::Log(t) => write_log(t, &format::ecs(n, &self.cx(""))),
            Sink::Alertmanager(h) => {
                let body = format::alertmanager(n, &self.cx(&h.receiver));
                self.post(h, &body).await
            }
            Sink::Slack(h) => self.post(h, &format::slack(n, &self.cx(""))).await,
            Sink::Syslog {
                addr,
                transport,
                timeout,
            } => {
                let line = format::syslog_line(n, &self.cx(""));
                send_syslog(*addr, *transport, *timeout, &line).await
            }
        }
    }

    async fn post(&self, h: &HttpConfig, body: &serde_json::Value) -> Result<(), DeliveryError> {
        let req = hyper::Request::post(h.url.as_str())
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("rstwatch-collector/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| DeliveryError::Permanent(format!("request: {e}")))?;
        let timeout = Duration::from_secs(h.timeout_secs.max(1));
        let resp = match tokio::time::timeout(timeout, self.http.request(req)).await {
            Err(_) => {
                return Err(DeliveryError::Retryable(format!(
                    "no answer in {timeout:?}"
                )))
            }
            Ok(Err(e)) => return Err(DeliveryError::Retryable(format!("{e}"))),
            Ok(Ok(r)) => r,
        };
        let st = resp.status();
        if st.is_success() {
            Ok(())
        } else if st.is_server_error() || st.as_u16() == 429 {
            Err(DeliveryError::Retryable(format!("HTTP {st}")))
        } else {
            Err(DeliveryError::Permanent(format!("HTTP {st}")))
        }
    }
}

fn write_log(t: &LogTarget, v: &serde_json::Value) -> Result<(), DeliveryError> {
    let line = format!("{v}\n");
    let r = match t {
        LogTarget::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes()).and_then(|_| out.flush())
        }
        LogTarget::File(p) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .and_then(|mut f| f.write_all(line.as_bytes())),
    };
    r.map_err(|e| DeliveryError::Retryable(format!("writing the alert log: {e}")))
}

async fn send_syslog(
    addr: SocketAddr,
    transport: Transport,
    timeout: Duration,
    line: &str,
) -> Result<(), DeliveryError> {
    let io = async {
        match transport {
            Transport::Udp => {
                let bind: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = tokio::net::UdpSocket::bind(bind).await?;
                s.send_to(line.as_bytes(), addr).await.map(|_| ())
            }
            // RFC 6587 non-transparent framing: one line per message.
            Transport::Tcp => {
                let mut s = tokio::net::TcpStream::connect(addr).await?;
                s.write_all(format!("{line}\n").as_bytes()).await?;
                s.shutdown().await
            }
        }
    };
    match tokio::time::timeout(timeout, io).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DeliveryError::Retryable(format!("syslog {addr}: {e}"))),
        Err(_) => Err(DeliveryError::Retryable(format!("syslog {addr}: timeout"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_stays_within_jitter_bounds_and_caps() {
        let r = RetryConfig {
            attempts: 10,
            base_ms: 100,
            max_ms: 1_000,
        };
        for _ in 0..200 {
            let d1 = backoff(&r, 1).as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            let d3 = backoff(&r, 3).as_millis();
            assert!((200..=400).contains(&d3), "{d3}");
            let d9 = backoff(&r, 9).as_millis();
            assert!((500..=1_000).contains(&d9), "{d9}");
        }
    }
}
