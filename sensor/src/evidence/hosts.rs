//! When each server host last sent anything (the reboot half of `state_loss`).
//!
//! A host that reboots goes silent on every flow, then answers its old connections'
//! retransmissions with bare RSTs (no socket). To tell that silence from one quiet
//! flow, this keeps, per responder address, the time of its latest packet and the
//! latest silence of at least `reboot_silence_s` it came back from.
//!
//! Updated for every packet a responder sends, so it is a direct-mapped table of
//! [`SLOTS`] entries of 32 bytes (512 KiB) rather than a map: one hash and one store
//! per packet. The engine requests the slot's line when it hashes the packet's key
//! ([`HostActivity::prefetch`]): with many servers the table shares the L2 with the
//! flow table and the frames, and its load took ~7 % of the one-engine replay's engine
//! samples (benches/RESULTS.md). Two hosts sharing a slot overwrite each other; an
//! overwritten host looks unknown, never silent, so a collision can only hide a reboot.

use rstwatch_schema::IpBytes;
use std::hint::select_unpredictable;

/// Hosts tracked at once (a fixed table; a colliding host takes the slot).
pub const SLOTS: usize = 16_384;

/// The slot that packets which do not count write to (see [`HostActivity::sent_if`]).
const SPARE: usize = SLOTS;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// Which address owns the slot (a 64-bit fold of it; 0 = empty).
    tag: u64,
    last_us: i64,
    /// End of the latest long silence, and its length.
    back_us: i64,
    gap_us: i64,
}

/// When each host last sent anything, and whether it came back from a long silence (the reboot rule).
pub struct HostActivity {
    /// A fixed-size array, so the masked slot index needs no bounds check; the last
    /// slot is the spare of [`HostActivity::sent_if`].
    slots: Box<[Slot; SLOTS + 1]>,
    silence_us: i64,
}

/// A host came back from a silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comeback {
    /// When its first packet after the silence arrived.
    pub back_us: i64,
    /// How long the silence was.
    pub gap_us: i64,
}

#[inline]
fn fold(a: &IpBytes) -> u64 {
    let v = u128::from_ne_bytes(a.0);
    let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

/// The slot of a host whose address folds to `tag` (its top bits: the fold's
/// multiply mixes every address bit into them).
#[inline]
fn slot_of(tag: u64) -> usize {
    (tag >> 50) as usize % SLOTS
}

impl HostActivity {
    /// A table calling `silence_us` of quiet a long silence.
    pub fn new(silence_us: i64) -> HostActivity {
        HostActivity {
            slots: vec![Slot::default(); SLOTS + 1]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("SLOTS + 1 slots")),
            silence_us,
        }
    }

    /// `host` sent a packet at `ts_us`.
    #[cfg(test)]
    pub fn sent(&mut self, host: &IpBytes, ts_us: i64) {
        self.sent_if(true, host, ts_us);
    }

    /// Requests the line of `host`'s slot, ahead of [`HostActivity::sent_if`].
    #[inline]
    pub fn prefetch(&self, host: &IpBytes) {
        crate::sys::prefetch(&self.slots[slot_of(fold(host))]);
    }

    /// `host` sent a packet at `ts_us`, if `counts`; else the table does not change.
    ///
    /// Without a branch on `counts`: the engine passes "sent by the responder", a coin
    /// flip from one packet to the next that a branch predictor missed on about half
    /// of all packets (RESULTS.md, "Branches no predictor follows"). A packet that
    /// does not count updates the spare slot past the table's end under tag 0, which
    /// no lookup reads and no host folds to: its branches below then go the way of a
    /// known host's, and the spare stays in the L1 cache.
    #[inline]
    pub fn sent_if(&mut self, counts: bool, host: &IpBytes, ts_us: i64) {
        let folded = fold(host);
        let tag = select_unpredictable(counts, folded, 0);
        let at = select_unpredictable(counts, slot_of(folded), SPARE);
        let s = &mut self.slots[at];
        if s.tag != tag {
            *s = Slot {
                tag,
                last_us: ts_us,
                back_us: i64::MIN,
                gap_us: 0,
            };
            return;
        }
        // Wrapping (what a release build does anyway), never a panic: the spare slot
        // sees every other packet's time, a damaged capture's extreme ones included.
        let gap = ts_us.wrapping_sub(s.last_us);
        if gap >= self.silence_us {
            s.back_us = ts_us;
            s.gap_us = gap;
        }
        // A max, not a branch: packets less than a microsecond apart share their
        // timestamp, so on the spare slot a branch here went either way.
        s.last_us = s.last_us.max(ts_us);
    }

    /// The latest silence `host` came back from, if it ended at most `within_us` before
    /// `ts_us` (the RSTs of a reboot follow its end).
    pub fn comeback(&self, host: &IpBytes, ts_us: i64, within_us: i64) -> Option<Comeback> {
        let tag = fold(host);
        let s = &self.slots[slot_of(tag)];
        (s.tag == tag && s.back_us != i64::MIN && ts_us - s.back_us <= within_us).then_some(
            Comeback {
                back_us: s.back_us,
                gap_us: s.gap_us,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_silence_is_remembered_after_the_host_returns() {
        let mut h = HostActivity::new(30_000_000);
        let a: IpBytes = "203.0.113.5".parse().unwrap();
        h.sent(&a, 0);
        h.sent(&a, 10_000_000);
        assert_eq!(h.comeback(&a, 10_000_000, 30_000_000), None);
        h.sent(&a, 50_000_000); // silent 40 s
        let c = h.comeback(&a, 50_000_100, 30_000_000).unwrap();
        assert_eq!((c.back_us, c.gap_us), (50_000_000, 40_000_000));
        // Long after the comeback it no longer explains an RST.
        assert_eq!(h.comeback(&a, 200_000_000, 30_000_000), None);
        let b: IpBytes = "203.0.113.6".parse().unwrap();
        assert_eq!(h.comeback(&b, 50_000_000, 30_000_000), None);
    }

    /// Packets that do not count (the originators') change no host's answers, however
    /// they interleave with those that do, and whatever their addresses and times.
    #[test]
    fn packets_that_do_not_count_change_nothing() {
        let mut rng = fastrand::Rng::with_seed(3);
        let hosts: Vec<IpBytes> = (0..64u8)
            .map(|i| IpBytes::from_v4([198, 51, 100, i]))
            .collect();
        let (mut with, mut without) = (HostActivity::new(5_000), HostActivity::new(5_000));
        let mut ts = 0i64;
        for _ in 0..50_000 {
            // Equal timestamps, small steps and long silences all occur.
            ts += [0, 1, 7, 6_000][rng.usize(..4)];
            let host = hosts[rng.usize(..hosts.len())];
            let counts = rng.bool();
            with.sent_if(counts, &host, ts);
            if counts {
                without.sent(&host, ts);
            }
        }
        let mut comebacks = 0;
        for host in &hosts {
            for within in [0, 10, 10_000, i64::MAX / 2] {
                let c = with.comeback(host, ts, within);
                assert_eq!(c, without.comeback(host, ts, within), "{host}");
                comebacks += usize::from(c.is_some());
            }
        }
        // The test saw silences come back, not only unknown hosts.
        assert!(comebacks > 0);
    }
}
