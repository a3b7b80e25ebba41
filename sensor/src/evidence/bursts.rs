//! "On at least N flows of one service (or host) within a window": the counting behind
//! `server_overload`, the reboot half of `state_loss`, and the `failover` anomaly.
//!
//! Each key keeps the times of its last few distinct flows' candidate RSTs (a ring of
//! four times the threshold, at most [`MAX_RING`], so a key costs a bounded amount
//! however long the burst; counts above the ring's size are reported as its size). A candidate's cause is
//! decided when it is released after the verdict delay, so members of a burst that
//! arrive within that delay of each other all see the full count; an RST released
//! before its burst grew large enough keeps its other cause ("from the crossing on").
//!
//! Bounded: [`MAX_KEYS`] keys; a key that does not fit is counted (`full`).

use hashbrown::HashMap;
use std::hash::Hash;

/// Keys a counter tracks at most; more are counted in `full`.
pub const MAX_KEYS: usize = 65_536;
/// Thresholds above this are treated as this.
pub const MAX_NEED: usize = 256;
/// Largest ring per key.
pub const MAX_RING: usize = 256;

struct Ring {
    /// (time, flow uid), oldest overwritten first.
    seen: Vec<(i64, u64)>,
    next: usize,
}

/// Counts events per key in a sliding window and says when a key reaches `need` of them (overload and reboot bursts, failovers).
pub struct BurstCounter<K> {
    keys: HashMap<K, Ring>,
    need: usize,
    ring: usize,
    window_us: i64,
    /// Keys not tracked because the counter was full.
    pub full: u64,
}

impl<K: Hash + Eq + Copy> BurstCounter<K> {
    /// A counter that fires at `need` events of one key within `window_us`.
    pub fn new(need: u32, window_us: i64) -> BurstCounter<K> {
        let need = (need as usize).clamp(1, MAX_NEED);
        BurstCounter {
            keys: HashMap::new(),
            need,
            ring: (need * 4).clamp(need, MAX_RING),
            window_us,
            full: 0,
        }
    }

    /// The threshold in force.
    pub fn need(&self) -> usize {
        self.need
    }

    /// Records a candidate RST of flow `uid` at `ts_us`. A flow counts once.
    pub fn note(&mut self, key: K, uid: u64, ts_us: i64) {
        if !self.keys.contains_key(&key) && self.keys.len() >= MAX_KEYS {
            let horizon = ts_us - self.window_us;
            self.keys
                .retain(|_, r| r.seen.iter().any(|&(t, _)| t >= horizon));
            if self.keys.len() >= MAX_KEYS {
                self.full += 1;
                return;
            }
        }
        let ring = self.ring;
        let r = self.keys.entry(key).or_insert_with(|| Ring {
            seen: Vec::new(),
            next: 0,
        });
        if r.seen.iter().any(|&(_, u)| u == uid) {
            return;
        }
        if r.seen.len() < ring {
            r.seen.push((ts_us, uid));
        } else {
            r.seen[r.next] = (ts_us, uid);
            r.next = (r.next + 1) % ring;
        }
    }

    /// Distinct flows of `key` with a candidate within the window around `ts_us`, when
    /// that reaches the threshold.
    pub fn reached(&self, key: &K, ts_us: i64) -> Option<usize> {
        let r = self.keys.get(key)?;
        let n = r
            .seen
            .iter()
            .filter(|&&(t, _)| (t - ts_us).abs() <= self.window_us)
            .count();
        (n >= self.need).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_flows_within_the_window() {
        let mut b = BurstCounter::new(3, 10_000_000);
        b.note(1u8, 100, 0);
        b.note(1, 100, 1_000); // same flow again
        b.note(1, 101, 2_000);
        assert_eq!(b.reached(&1, 2_000), None);
        b.note(1, 102, 3_000);
        assert_eq!(b.reached(&1, 2_000), Some(3));
        // Outside the window: the old ones no longer count.
        assert_eq!(b.reached(&1, 20_000_000), None);
        assert_eq!(b.reached(&2, 0), None);
    }
}
