//! Alerts: every anomaly row, and every configured threshold rule, becomes an alert
//! sent to the configured sinks (ECS JSON lines, an Alertmanager v4 webhook, a Slack
//! incoming webhook, syslog CEF).
//!
//! ```text
//! ClickHouse ─poll (ledger cursor)─▶ anomalies ─┐
//!            ─rule SQL every N s──▶ thresholds ─┴▶ dedup (open alerts) ─▶ outbox per sink
//!   ─▶ state.json (atomic) ─▶ one worker per sink: deliver, retry with backoff + jitter
//! ```
//!
//! The alerter runs on its own thread with its own runtime and only reads ClickHouse:
//! the ingest path never waits for it, so a webhook that hangs cannot slow inserts.
//! It finds new anomalies through the batch ledger (`batches.received`), re-reading a
//! lookback window so that a batch committed late is not skipped, and remembers which
//! batches it has handled. Cursor, handled batches, open alerts and undelivered
//! notices are saved in one file, written atomically, before any notice is sent: a
//! collector killed and started again with the same state directory neither loses an
//! alert nor sends one twice (except a notice whose delivery was under way at the
//! kill: that one is sent again, at-least-once).

mod config;
mod counters;
mod dedup;
mod format;
mod model;
mod run;
mod sink;
mod source;
mod state;

pub use config::{AlertConfig, Settings};
pub use counters::AlertCounters;
pub use format::{cef_escape_ext, cef_escape_header};
pub use run::spawn;
pub use source::{poll_sql, rule_sql};
