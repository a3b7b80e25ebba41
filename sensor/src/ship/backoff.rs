//! Reconnect pacing: exponential backoff with jitter.
//!
//! The first retry waits about `base` (100 ms), each failed attempt doubles the wait up
//! to `cap` (`--retry-max-secs`, 30 s by default), and every wait is drawn uniformly
//! from its upper half, so sensors that lost the same collector do not come back in
//! step. It resets to `base` only when a connection made progress (a batch was
//! acknowledged or set aside), so a collector that accepts the connection and then
//! refuses the batch is not hammered: the retry rate stays below one per `cap` once
//! the cap is reached.

use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration) -> Backoff {
        let cap = cap.max(base);
        Backoff {
            base,
            cap,
            next: base,
        }
    }

    /// The wait before the next attempt (and doubles the one after, up to the cap).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        let half = d / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Progress was made: start again from the base.
    pub(crate) fn reset(&mut self) {
        self.next = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap_and_resets_on_progress() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let bounds = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (w, hi) in waits.iter().zip(bounds) {
            let hi = Duration::from_millis(hi);
            assert!(
                *w >= hi / 2 && *w <= hi,
                "{w:?} not in [{:?}, {hi:?}]",
                hi / 2
            );
        }
        // 20 failed attempts take at least the sum of the lower halves: no storm.
        let total: Duration = (0..20).map(|_| b.next_delay()).sum();
        assert!(total >= Duration::from_secs(20), "{total:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
