//! Hints for the expiry sweep of a file table: one byte per slab slot, the second of
//! packet time (mod 256) before which the flow in that slot cannot expire, so the
//! sweep passes it without reading the flow's 116 bytes.
//!
//! Why: the sweep walks the whole slab once per second of packet time. Live, a second
//! holds hundreds of thousands of packets and the walk costs little per packet; in a
//! file of a quiet link it does not. A capture of 1,000 packets a second on 20,000 flows
//! replayed in 1.56× the time of the same frames 10 µs apart, the sweep reading every
//! flow 300 times; the `mixed` scenario (100 packets a second) spent 37 % of its
//! instructions there.
//!
//! Why it is exact: a flow expires when `now - last_us >= timeout`, the timeout of its
//! state (half-open, established, closed). A flow visited alive, its deadline
//! `last_us + timeout` then, cannot expire before that deadline while its packets keep
//! that timeout and move `last_us` forward. A packet that may change which timeout
//! applies (the handshake's last, a FIN, an RST) or that is older than the flow's last
//! one (a capture's timestamps out of order) sets the hint back to "look now"
//! (`FlowTable::recheck_expiry`). So the hint is the deadline, rounded down to the
//! second and at most [`MAX_AHEAD_S`] ahead.
//!
//! Why one byte is enough: a hint is set at most [`MAX_AHEAD_S`] seconds ahead of the
//! packet time it is set at; the sweep's cursor passes every slot at least once per
//! second of packet time unless time jumps, and a jump of more than [`JUMP_S`] seconds
//! sets every hint to "look now". So a hint is never more than 127 seconds from the time it is read at,
//! and its distance, taken as a signed byte, is exact.

/// Hints are set at most this far ahead of packet time, in seconds.
const MAX_AHEAD_S: i64 = 100;
/// A jump of packet time by more than this, in seconds, resets every hint.
const JUMP_S: i64 = 64;

/// One byte per slab slot (see the module's comment).
pub(super) struct SweepHints {
    not_before: Vec<u8>,
    /// Packet time of the last sweep, seconds: a hint set to it says "look now".
    now_s: i64,
}

impl SweepHints {
    /// Hints for a slab of up to `capacity` slots.
    pub(super) fn new(capacity: usize) -> SweepHints {
        SweepHints {
            not_before: Vec::with_capacity(capacity),
            now_s: 0,
        }
    }

    /// Bytes reserved for `capacity` slots.
    pub(super) fn reserved_bytes(&self) -> usize {
        self.not_before.capacity()
    }

    /// The sweep looks at slot `idx` at its next pass: it holds a new flow (a slot one
    /// past the last extends the slab), or its flow's deadline may have moved earlier.
    #[inline]
    pub(super) fn reset(&mut self, idx: usize) {
        let now = self.now_s as u8;
        match self.not_before.get_mut(idx) {
            Some(h) => *h = now,
            None => self.not_before.push(now),
        }
    }

    /// Starts a sweep step at packet time `now_us`, `elapsed_s` after the last.
    pub(super) fn start(&mut self, now_us: i64, elapsed_s: i64) {
        self.now_s = now_us.div_euclid(1_000_000);
        if !(0..=JUMP_S).contains(&elapsed_s) {
            self.not_before.fill(self.now_s as u8);
        }
    }

    /// The first slot of `from..to` whose flow may have expired (the sweep passes the
    /// others), if any.
    #[inline]
    pub(super) fn next_due(&self, from: usize, to: usize) -> Option<usize> {
        first_due(&self.not_before[from..to], self.now_s as u8).map(|k| from + k)
    }

    /// Slots the sweep would pass now (for tests).
    #[cfg(test)]
    pub(super) fn ruled_out(&self) -> usize {
        let now = self.now_s as u8;
        self.not_before.iter().filter(|&&b| !due_at(b, now)).count()
    }

    /// The flow in slot `idx` was visited alive; it expires at `deadline_us` unless a
    /// packet moves that earlier (which resets the hint).
    #[inline]
    pub(super) fn visited(&mut self, idx: usize, deadline_us: i64) {
        let earliest = deadline_us
            .div_euclid(1_000_000)
            .clamp(self.now_s, self.now_s + MAX_AHEAD_S);
        self.not_before[idx] = earliest as u8;
    }
}

/// The index of the first hint in `hints` that is due at second `now`: its distance
/// from `now`, as a signed byte, is not positive.
///
/// Eight hints at a time in a word (SWAR), by hand: a quiet link's sweep passes most
/// flows, so the scan is much of its work, and `Iterator::position` goes a byte at a
/// time (its early exit keeps it from vectorising). callgrind, replay of 300,000 frames
/// of 20,000 flows at 1,000 a second: 453.4 M instructions with `position`, 431.0 M
/// with this.
fn first_due(hints: &[u8], now: u8) -> Option<usize> {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let nows = u64::from(now) * ONES;
    let mut words = hints.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().expect("chunks of 8"));
        // Bytewise x - now, no borrow between bytes.
        let d = ((x | HIGH) - (nows & LOW7)) ^ ((x ^ !nows) & HIGH);
        // Due: the distance is 0 or negative (high bit set). The zero test can flag a
        // byte above a zero byte too (the borrow), never one below it, so the lowest
        // flagged byte is exact.
        let zero = d.wrapping_sub(ONES) & !d & HIGH;
        let due = (d & HIGH) | zero;
        if due != 0 {
            return Some(at + due.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| due_at(b, now))
        .map(|k| at + k)
}

/// Is the hint `b` due at second `now`?
#[inline]
fn due_at(b: u8, now: u8) -> bool {
    (b.wrapping_sub(now) as i8) <= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-at-a-time scan finds what a byte-at-a-time one finds, for every `now`
    /// and hints of every distance, the due one anywhere in the slice or nowhere.
    #[test]
    fn the_word_scan_finds_the_first_due_hint_as_a_byte_scan_does() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let now = rand() as u8;
            let len = (rand() % 40) as usize;
            // Mostly hints ahead of now (skipped), some due, some exactly now.
            let hints: Vec<u8> = (0..len)
                .map(|_| match rand() % 10 {
                    0 => now,
                    1 => now.wrapping_sub((rand() % 128) as u8),
                    _ => now.wrapping_add(1 + (rand() % 127) as u8),
                })
                .collect();
            let expected = hints.iter().position(|&b| due_at(b, now));
            assert_eq!(
                first_due(&hints, now),
                expected,
                "round {round}: {hints:?} at {now}"
            );
        }
        // Every byte value against every now, alone and after seven skipped hints.
        for now in 0..=255u8 {
            for b in 0..=255u8 {
                let skip = now.wrapping_add(1);
                let mut hints = vec![skip; 7];
                hints.push(b);
                let want = due_at(b, now).then_some(7);
                assert_eq!(first_due(&hints, now), want, "{b} at {now}");
                assert_eq!(first_due(&[b], now), due_at(b, now).then_some(0));
            }
        }
        assert!(due_at(5, 5) && due_at(4, 5) && !due_at(6, 5) && due_at(133, 5));
    }
}
