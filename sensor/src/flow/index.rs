//! The flow table's hash index: slab slots by key hash, open addressing with linear
//! probing, in one flat array of `u32` entries.
//!
//! Written for the flow table instead of using `hashbrown::HashTable` (issue 12) because
//! a batch of lookups must be able to prefetch its buckets by hash before probing, and
//! hashbrown exposes no bucket address. An entry is 8 bits of the key's hash (the tag)
//! above a 24-bit slot number plus one; 0 is an empty bucket, so a fresh index is
//! zeroed memory the kernel hands out lazily. The bucket count is the power of two at
//! or above 1.5 times the capacity: the load stays at or below two thirds (a probe
//! rarely leaves the 64-byte line, 16 buckets, it starts in), and the index costs at
//! most 12 bytes per flow, which with the 116-byte [`super::Flow`] keeps the 128-byte
//! per-flow budget at every capacity (twice the capacity would cost up to 16). Deletion shifts the following
//! entries back (Knuth's algorithm R) instead of leaving tombstones, so probe lengths
//! do not grow with churn.
//!
//! An index is either made at that full size ([`FlowIndex::with_capacity`], live
//! capture) or starts small and doubles as flows arrive ([`FlowIndex::growing`],
//! files). A full-size index of a million flows spreads tens of thousands of flows over
//! 8 MiB, one cache line and often one TLB entry per lookup; a grown one keeps them in
//! the few hundred KiB they need (RESULTS.md, "A flow index sized to the flows"). Each
//! doubling indexes every live flow again, which a file reader absorbs and a live
//! receive ring at line rate would not.

use crate::sys::{advise_huge_pages, populate_for_write, prefetch};

/// Bits of an entry that hold the slot (plus one).
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
/// An empty bucket.
const EMPTY: u32 = 0;
/// The most slots an index can point at (slot numbers `0..MAX_SLOTS`).
pub(super) const MAX_SLOTS: usize = SLOT_MASK as usize;

/// The 8-bit tag of a hash: its top bits (the bucket comes from the low bits).
#[inline(always)]
fn tag_of(hash: u64) -> u32 {
    (hash >> 56) as u32
}

#[inline(always)]
fn slot_of(entry: u32) -> u32 {
    (entry & SLOT_MASK) - 1
}

/// Slab slots by key hash. The index does not know the keys: lookups take a closure
/// that compares the key of a candidate slot, removal one that rehashes it.
pub(super) struct FlowIndex {
    buckets: Vec<u32>,
    mask: usize,
    len: usize,
    capacity: usize,
    /// Entries at which the bucket array doubles (`usize::MAX` once at full size).
    grow_at: usize,
}

/// Buckets a growing index starts with: 256 KiB, well inside one core's L2.
const START_BUCKETS: usize = 1 << 16;

/// Buckets of an index at its full size for `capacity` slots: the power of two at or
/// above 1.5 times the capacity.
fn full_buckets(capacity: usize) -> usize {
    (capacity.max(1) * 3 / 2 + 1).next_power_of_two()
}

impl FlowIndex {
    /// An index for up to `capacity` slots (at most [`MAX_SLOTS`]), at its full size
    /// now: no lookup ever waits for a doubling.
    pub(super) fn with_capacity(capacity: usize) -> FlowIndex {
        let capacity = capacity.min(MAX_SLOTS);
        FlowIndex::sized(capacity, full_buckets(capacity))
    }

    /// An index for up to `capacity` slots that starts at [`START_BUCKETS`] and doubles
    /// whenever half its buckets are taken, up to the full size (the caller calls
    /// [`FlowIndex::grow`] when [`FlowIndex::is_due_to_grow`] says so).
    pub(super) fn growing(capacity: usize) -> FlowIndex {
        let capacity = capacity.min(MAX_SLOTS);
        FlowIndex::sized(capacity, full_buckets(capacity).min(START_BUCKETS))
    }

    fn sized(capacity: usize, n: usize) -> FlowIndex {
        // Zeroed (empty) memory, huge pages for the same reason as the slab: lookups
        // land at random. Populated now: every bucket is read (a lookup) before it is
        // written (an insert), which on lazily mapped memory costs a second fault per
        // page, and with `replay --workers` or live fan-out an interrupt to every other
        // core (RESULTS.md). 4 bytes per bucket, 8 MiB at the default million flows.
        let buckets = vec![EMPTY; n];
        advise_huge_pages(buckets.as_ptr() as *const u8, n * 4);
        populate_for_write(buckets.as_ptr() as *const u8, n * 4);
        FlowIndex {
            buckets,
            mask: n - 1,
            len: 0,
            capacity,
            grow_at: if n < full_buckets(capacity) {
                n / 2
            } else {
                usize::MAX
            },
        }
    }

    /// Bytes of the bucket array at its full size (what a full table costs, whether
    /// or not this index has grown to it yet).
    pub(super) fn reserved_bytes(&self) -> usize {
        full_buckets(self.capacity) * std::mem::size_of::<u32>()
    }

    /// Buckets now.
    pub(super) fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// True when the next insert should follow a [`FlowIndex::grow`].
    #[inline]
    pub(super) fn is_due_to_grow(&self) -> bool {
        self.len >= self.grow_at
    }

    /// Doubles the bucket array (at most to the full size) and indexes `entries`
    /// again: every indexed slot with its full hash (the index keeps only 8 bits).
    pub(super) fn grow(&mut self, entries: impl Iterator<Item = (u64, u32)>) {
        let n = (self.buckets.len() * 2).min(full_buckets(self.capacity));
        let len = self.len;
        // The old array goes first, so the two are never held at once.
        self.buckets = Vec::new();
        *self = FlowIndex::sized(self.capacity, n);
        for (hash, slot) in entries {
            self.insert(hash, slot);
        }
        assert_eq!(self.len, len, "a growing index lost or gained entries");
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Hints the CPU to load the bucket line where a lookup of `hash` starts.
    #[inline(always)]
    pub(super) fn prefetch(&self, hash: u64) {
        prefetch(self.buckets.as_ptr().wrapping_add(self.home(hash)));
    }

    /// The first slot with `hash`'s tag for which `is_key` holds.
    #[inline]
    pub(super) fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let mut i = self.home(hash);
        loop {
            let e = self.buckets[i];
            if e == EMPTY {
                return None;
            }
            if e >> SLOT_BITS == tag && is_key(slot_of(e)) {
                return Some(slot_of(e));
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The first slot whose tag matches `hash`'s, from the index alone: a guess the
    /// caller must check against the key (1 in 256 wrong candidates pass the tag).
    #[inline]
    pub(super) fn find_hint(&self, hash: u64) -> Option<u32> {
        self.find(hash, |_| true)
    }

    /// Indexes `slot` under `hash`. The caller never indexes one slot twice nor more
    /// than the capacity (a bug: it panics rather than loop on a full array).
    pub(super) fn insert(&mut self, hash: u64, slot: u32) {
        assert!(self.len < self.capacity, "insert into a full flow index");
        assert!((slot as usize) < MAX_SLOTS, "slot {slot} beyond the index");
        let mut i = self.home(hash);
        while self.buckets[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.buckets[i] = (tag_of(hash) << SLOT_BITS) | (slot + 1);
        self.len += 1;
    }

    /// Removes every entry. The buckets are zeroed in place, at their present size.
    pub(super) fn clear(&mut self) {
        self.buckets.fill(EMPTY);
        self.len = 0;
    }

    /// Removes `slot`, indexed under `hash`, and shifts back the entries of its probe
    /// run that may now sit nearer their home bucket. `hash_of` gives the hash of an
    /// indexed slot (the index stores only 8 bits of it). Returns whether it was found.
    pub(super) fn remove(
        &mut self,
        hash: u64,
        slot: u32,
        mut hash_of: impl FnMut(u32) -> u64,
    ) -> bool {
        let mut hole = self.home(hash);
        loop {
            let e = self.buckets[hole];
            if e == EMPTY {
                return false;
            }
            if slot_of(e) == slot {
                break;
            }
            hole = (hole + 1) & self.mask;
        }
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let e = self.buckets[j];
            if e == EMPTY {
                break;
            }
            // The entry at `j` may move into the hole unless its home lies cyclically
            // in (hole, j]: then a lookup from its home would stop at the hole.
            let home = self.home(hash_of(slot_of(e)));
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.buckets[hole] = e;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Slot `s`'s hash in these tests: all slots of one `home` share a home bucket and
    /// a tag, so probe runs are long and tags collide.
    fn clash(s: u32, homes: u64) -> u64 {
        (s as u64 % homes) | (0xab << 56)
    }

    #[test]
    fn costs_at_most_12_bytes_per_slot_of_capacity() {
        // Capacities just above, at and below powers of two (the worst case of rounding
        // up), the default, and the largest.
        for cap in [
            1, 2, 3, 683, 1_000, 1_366, 65_537, 699_051, 1_000_000, MAX_SLOTS,
        ] {
            let ix = FlowIndex::with_capacity(cap);
            let per_slot = ix.reserved_bytes() as f64 / cap as f64;
            assert!(
                per_slot <= 12.0 + 4.0 / cap as f64,
                "{cap}: {per_slot} bytes per slot"
            );
            // Always an empty bucket beyond a full index, so a probe ends.
            assert!(ix.buckets.len() > cap, "{cap}");
        }
    }

    #[test]
    fn finds_what_was_inserted_and_not_what_was_not() {
        let mut ix = FlowIndex::with_capacity(100);
        for s in 0..100 {
            ix.insert(clash(s, 7), s);
        }
        assert_eq!(ix.len, 100);
        for s in 0..100 {
            assert_eq!(ix.find(clash(s, 7), |c| c == s), Some(s));
        }
        assert_eq!(ix.find(clash(100, 7), |c| c == 100), None);
        // A tag no entry has: not even a hint.
        assert_eq!(ix.find_hint(3), None);
        // The hint is the first entry of the run with the tag (the caller checks it).
        assert_eq!(ix.find_hint(clash(1, 7)), Some(1));
    }

    #[test]
    fn removal_shifts_entries_back_and_keeps_them_findable() {
        // Homes wrap around the end of the array too (7 homes, high buckets).
        let mut ix = FlowIndex::with_capacity(64);
        let n = ix.mask as u64 + 1;
        let hash = |s: u32| ((n - 3 + s as u64 % 5) % n) | (0x11 << 56);
        for s in 0..60 {
            ix.insert(hash(s), s);
        }
        let mut live: Vec<u32> = (0..60).collect();
        // Remove in a scrambled order, checking every survivor after each removal.
        let mut x = 12345u64;
        while !live.is_empty() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let s = live.swap_remove((x >> 33) as usize % live.len());
            assert!(ix.remove(hash(s), s, hash));
            assert!(!ix.remove(hash(s), s, hash), "removed twice");
            assert_eq!(ix.find(hash(s), |c| c == s), None);
            for &t in &live {
                assert_eq!(ix.find(hash(t), |c| c == t), Some(t), "lost {t}");
            }
            assert_eq!(ix.len, live.len());
        }
        // Empty again: every bucket is empty (no tombstones left behind).
        assert!(ix.buckets.iter().all(|&e| e == EMPTY));
    }

    #[test]
    fn a_full_index_still_answers_and_refuses_more() {
        let mut ix = FlowIndex::with_capacity(16);
        for s in 0..16 {
            ix.insert(clash(s, 3), s);
        }
        assert_eq!(ix.find(clash(99, 3), |c| c == 99), None);
        let more = std::panic::catch_unwind(move || {
            let mut ix = ix;
            ix.insert(0, 16);
        });
        assert!(
            more.is_err(),
            "inserting past the capacity must fail loudly"
        );
    }

    #[test]
    fn random_churn_agrees_with_a_hashmap() {
        let mut ix = FlowIndex::with_capacity(1000);
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut hashes = vec![0u64; 1000];
        let mut x = 99u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = (x % 1000) as u32;
            if let Some(h) = model.remove(&s) {
                assert!(ix.remove(h, s, |t| hashes[t as usize]));
            } else {
                let h = x.rotate_left(17) & !0x7f0; // 16 homes of 2,048: long runs
                hashes[s as usize] = h;
                model.insert(s, h);
                ix.insert(h, s);
            }
        }
        assert_eq!(ix.len, model.len());
        for (&s, &h) in &model {
            assert_eq!(ix.find(h, |c| c == s), Some(s));
        }
    }
}
