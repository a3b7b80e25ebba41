//! Frames parsed ahead of their engine. `replay --workers`' reader and live fan-out's
//! capture thread parse every frame to choose its engine (its flow's hash); they hand
//! the engine these parsed frames instead of the frames
//! ([`Engine::process_parsed`](crate::Engine::process_parsed)), so no frame is parsed
//! twice, and the frame itself need not outlive the hand-over.

use super::{Packet, Reject};

/// Frames in order: frame `i` arrived at `times[i]`, parsed to `outcomes[i]` and, when
/// that is `Ok`, to `packets[i]` (105 bytes a frame in all).
pub struct ParsedBatch {
    times: Vec<i64>,
    outcomes: Vec<Result<(), Reject>>,
    packets: Vec<Packet>,
}

impl ParsedBatch {
    /// An empty batch with room for `n` frames.
    pub fn with_capacity(n: usize) -> ParsedBatch {
        ParsedBatch {
            times: Vec::with_capacity(n),
            outcomes: Vec::with_capacity(n),
            packets: Vec::with_capacity(n),
        }
    }

    /// Adds a frame that arrived at `ts_us`, with what parsing it gave.
    #[inline]
    pub fn push(&mut self, ts_us: i64, outcome: Result<(), Reject>, packet: &Packet) {
        self.times.push(ts_us);
        self.outcomes.push(outcome);
        self.packets.push(*packet);
    }

    /// Frames in the batch.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// True when the batch holds no frame.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Empties the batch, keeping its room.
    pub fn clear(&mut self) {
        self.times.clear();
        self.outcomes.clear();
        self.packets.clear();
    }

    /// The last frame's arrival time.
    pub fn last_time(&self) -> Option<i64> {
        self.times.last().copied()
    }

    /// The three columns, each [`ParsedBatch::len`] long.
    pub fn columns(&self) -> (&[i64], &[Result<(), Reject>], &[Packet]) {
        (&self.times, &self.outcomes, &self.packets)
    }
}
