//! rstwatch collector: receives sensor batches over framed TCP (TLS by default),
//! validates them, writes them into ClickHouse exactly once, and acknowledges each
//! batch only after ClickHouse has committed it.
//!
//! ```text
//! sensor ─frame─▶ auth (token) ─▶ checks: size cap, checksum, version, rkyv bytecheck
//!        ─▶ per-sensor lock ─▶ dedup (ledger `batches`; per-table row check on resends)
//!        ─▶ INSERT RowBinary (rst_events, flows, anomalies, sensor_stats, then batches)
//!        ─▶ ack ─▶ sensor drops the batch from its spool
//! ```

#![forbid(unsafe_code)]

pub mod alert;
pub mod ch;
pub mod cluster;
pub mod config;
pub mod insight;
pub mod limits;
pub mod log;
pub mod metrics;
mod refusal;
pub mod report;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;
pub mod web;
