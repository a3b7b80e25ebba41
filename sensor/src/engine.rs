//! The engine: parse → track → classify for one worker core.

use crate::config::EngineConfig;
use crate::parse::LinkType;
use crate::sink::Sink;

/// One worker's engine. Not `Sync`: each core owns its own.
pub struct Engine {
    _cfg: EngineConfig,
}

impl Engine {
    /// Builds an engine, reserving the flow table's memory up front.
    pub fn new(cfg: &EngineConfig) -> Engine {
        Engine { _cfg: cfg.clone() }
    }

    /// Feeds one captured frame with its capture timestamp (microseconds since the epoch).
    pub fn process<S: Sink + ?Sized>(
        &mut self,
        _ts_us: i64,
        _link: LinkType,
        _frame: &[u8],
        _sink: &mut S,
    ) {
        unimplemented!("being written")
    }

    /// Lets time pass without packets (live capture on a quiet link): expires idle
    /// flows and releases held RSTs whose verdict delay is over.
    pub fn advance<S: Sink + ?Sized>(&mut self, _now_us: i64, _sink: &mut S) {
        unimplemented!("being written")
    }

    /// End of input: releases every held RST and closes every flow (`end_of_capture`).
    pub fn finish<S: Sink + ?Sized>(&mut self, _sink: &mut S) {
        unimplemented!("being written")
    }

    /// The engine's counters by name (parse rejections, flow table, classifier).
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        unimplemented!("being written")
    }
}

/// A symmetric hash of a frame's flow key for fan-out (both directions of a flow give
/// the same value), or `None` when the frame is not TCP. Cheap: parses only as far as
/// the ports.
pub fn fanout_hash(_link: LinkType, _frame: &[u8]) -> Option<u64> {
    unimplemented!("being written")
}
