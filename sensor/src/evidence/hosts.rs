//! When each server host last sent anything (the reboot half of `state_loss`).
//!
//! A host that reboots goes silent on every flow, then answers its old connections'
//! retransmissions with bare RSTs (no socket). To tell that silence from one quiet
//! flow, this keeps, per responder address, the time of its latest packet and the
//! latest silence of at least `reboot_silence_s` it came back from.
//!
//! Updated for every packet a responder sends, so it is a direct-mapped table of
//! [`SLOTS`] entries of 32 bytes (512 KiB, cache resident) rather than a map: one hash
//! and one store per packet. Two hosts sharing a slot overwrite each other; an
//! overwritten host looks unknown, never silent, so a collision can only hide a reboot.

use rstwatch_schema::IpBytes;

/// Hosts tracked at once (a fixed table; a colliding host takes the slot).
pub const SLOTS: usize = 16_384;

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
    /// A fixed-size array, so the masked slot index needs no bounds check.
    slots: Box<[Slot; SLOTS]>,
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

impl HostActivity {
    /// A table calling `silence_us` of quiet a long silence.
    pub fn new(silence_us: i64) -> HostActivity {
        HostActivity {
            slots: vec![Slot::default(); SLOTS]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("SLOTS slots")),
            silence_us,
        }
    }

    /// `host` sent a packet at `ts_us`.
    #[inline]
    pub fn sent(&mut self, host: &IpBytes, ts_us: i64) {
        let tag = fold(host);
        let s = &mut self.slots[(tag >> 50) as usize % SLOTS];
        if s.tag != tag {
            *s = Slot {
                tag,
                last_us: ts_us,
                back_us: i64::MIN,
                gap_us: 0,
            };
            return;
        }
        let gap = ts_us - s.last_us;
        if gap >= self.silence_us {
            s.back_us = ts_us;
            s.gap_us = gap;
        }
        if ts_us > s.last_us {
            s.last_us = ts_us;
        }
    }

    /// The latest silence `host` came back from, if it ended at most `within_us` before
    /// `ts_us` (the RSTs of a reboot follow its end).
    pub fn comeback(&self, host: &IpBytes, ts_us: i64, within_us: i64) -> Option<Comeback> {
        let tag = fold(host);
        let s = &self.slots[(tag >> 50) as usize % SLOTS];
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
}
