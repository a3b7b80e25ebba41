//! `diagnose`: a report for someone who just captured "connection reset by peer".
//!
//! The records of a replay (see `cli::replay::replay_files`) stream into a
//! [`Collector`], which tallies them per cause (DESIGN.md, "Why was it reset:
//! causes"); [`Report::build`] turns the tallies into the report model, and the
//! renderers lay it out as text for an 80-column terminal ([`text`]), Markdown tables
//! ([`markdown`]) or one JSON object (the model's serde form).
//!
//! What goes into the report, and where each decision is documented:
//! - services and client networks: [`service`] (server = responder; /24 and /64);
//! - when resets cluster: [`timeline`];
//! - the device's idle timeout from the silences of `idle_timeout` resets: [`idle`];
//! - the most telling example RSTs per cause: [`examples`].

mod collect;
mod examples;
mod idle;
mod layout;
pub mod markdown;
mod report;
mod service;
pub mod text;
mod timeline;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use collect::Collector;
pub use idle::IdleEstimate;
pub use report::{CauseReport, Report, Share};
pub use timeline::{Cluster, Timeline};

/// `part` of `total` in percent, rounded to one decimal (0 when `total` is 0).
fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / total as f64).round() / 10.0
}
