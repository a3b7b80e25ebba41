//! The rstwatch sensor engine.
//!
//! One engine runs per worker core and owns everything it touches (shared-nothing):
//!
//! ```text
//! frame ─▶ parse (zero-copy) ─▶ flow table (this core's) ─▶ TCP tracker ─▶ RST classifier
//!                                                                  │
//!                                              records ─▶ Sink (JSON, shipper, test)
//! ```
//!
//! The same [`Engine`] serves live capture and offline replay: timestamps come from
//! the packet source, never from the wall clock.

pub mod cli;
pub mod config;
pub mod engine;
pub mod parse;
pub mod ship;
pub mod sink;

pub use config::EngineConfig;
pub use engine::Engine;
pub use sink::Sink;
