//! The rstwatch sensor engine.
//!
//! One engine runs per worker core and owns everything it touches (shared-nothing):
//!
//! ```text
//! frame ─▶ parse (zero-copy) ─▶ flow table (this core's) ─▶ TCP tracker ─▶ RST classifier
//!                                                                  │
//!                                 held for the verdict delay ◀─────┘
//!                                              │
//!                   records + anomalies ─▶ Sink (JSON lines, shipper, test vector)
//! ```
//!
//! The same [`Engine`] serves live capture and offline replay: timestamps come from
//! the packet source, never from the wall clock.

// Unsafe code lives in `sys` alone (pinning, signals, huge pages, prefetch), each
// block with its SAFETY reason; everywhere else the compiler refuses it.
#![deny(unsafe_code)]

pub mod anomaly;
pub mod capture;
pub mod classify;
pub mod cli;
pub mod config;
pub mod counters;
pub mod diagnose;
pub mod engine;
pub mod evidence;
pub mod flow;
pub mod gen;
pub mod output;
pub mod parse;
pub mod ship;
pub mod sink;
pub mod source;
#[allow(unsafe_code)]
pub mod sys;
pub mod track;

pub use config::EngineConfig;
pub use engine::Engine;
pub use sink::Sink;
