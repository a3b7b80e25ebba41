//! The flow table of one worker: a preallocated slab of [`Flow`]s and a hash index
//! from key to slot ([`FlowIndex`]).
//!
//! Bounded: never holds more than `capacity` flows. Expiry is a sweep that walks the
//! slab a slice at a time as packet time advances (a full pass per second of packet
//! time), so no per-packet list maintenance touches other flows' cache lines; a file
//! table's sweep passes the flows that cannot have expired yet ([`super::sweep_hints`]),
//! which a capture of a quiet link needs, its second holding few packets. When the
//! table is full, [`FlowTable::pick_victim`] samples flows near the sweep cursor and
//! returns the one most overdue for its own idle timeout: under a SYN flood that is a
//! half-open flow (30 s) long before any established one (600 s).

use super::index::{FlowIndex, MAX_SLOTS};
use super::sweep_hints::SweepHints;
use super::{Flow, FlowKey, Timeouts};
use crate::sys::{advise_huge_pages, prefetch};

/// How many flows an eviction looks at. Like Redis' approximated LRU (which samples
/// 5): under a SYN flood nearly every sample is a half-open flow, and the most overdue
/// of 16 is old with high probability, at a fixed cost of 16 overlapping cache misses.
const VICTIM_SAMPLE: usize = 16;
/// Sentinel for "no slot".
const NONE: u32 = u32::MAX;
/// Largest capacity of one table: the index keeps 24 bits per slot number (with 8
/// bits of the hash beside it), which bounds one table to 16 M flows; a worker core
/// holds far fewer in practice (default 1 M).
pub const MAX_CAPACITY: usize = MAX_SLOTS;

/// Counters of one table.
#[derive(Debug, Default, Clone, Copy)]
pub struct TableStats {
    /// Flows created.
    pub created: u64,
    /// Flows removed after their idle timeout.
    pub expired: u64,
    /// Flows removed early to make room in a full table.
    pub evicted: u64,
    /// The most flows live at once.
    pub max_live: u64,
}

/// One core's flows: a slab of fixed-size [`Flow`]s (huge pages where the kernel gives
/// them) and a hash index of slab slots, bounded, with idle sweeps and eviction when
/// full.
pub struct FlowTable {
    index: FlowIndex,
    slab: Vec<Flow>,
    /// Free slots, linked through `Flow::dirs[0].base` of dead slots (no extra memory).
    free_head: u32,
    capacity: usize,
    live: usize,
    cursor: usize,
    victim_rng: u64,
    last_sweep_us: i64,
    timeouts: Timeouts,
    /// A file table's sweep skips flows that cannot have expired yet (`sweep_hints`);
    /// a live table's sweep, run per millisecond of real time, reads them all.
    hints: Option<SweepHints>,
    /// Created, expired and evicted flows.
    pub stats: TableStats,
}

impl FlowTable {
    /// A table for at most `capacity` flows, its memory reserved now and its index at
    /// full size, so no packet ever waits for the index to grow (live capture).
    pub fn new(capacity: usize, timeouts: Timeouts) -> FlowTable {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        FlowTable::with_index(capacity, FlowIndex::with_capacity(capacity), timeouts, None)
    }

    /// A table for at most `capacity` flows whose index starts small and doubles as
    /// flows arrive, indexing every live flow again each time: for reading files,
    /// where that pause costs nothing and a small index keeps lookups in the cache.
    /// Its sweep keeps a byte per flow of hints (`sweep_hints`), which a file of a
    /// quiet link needs and a live table does not.
    pub fn growing(capacity: usize, timeouts: Timeouts) -> FlowTable {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let hints = SweepHints::new(capacity);
        FlowTable::with_index(
            capacity,
            FlowIndex::growing(capacity),
            timeouts,
            Some(hints),
        )
    }

    fn with_index(
        capacity: usize,
        index: FlowIndex,
        timeouts: Timeouts,
        hints: Option<SweepHints>,
    ) -> FlowTable {
        let slab: Vec<Flow> = Vec::with_capacity(capacity);
        advise_huge_pages(
            slab.as_ptr() as *const u8,
            capacity * std::mem::size_of::<Flow>(),
        );
        FlowTable {
            index,
            slab,
            free_head: NONE,
            capacity,
            live: 0,
            cursor: 0,
            victim_rng: 0x2545_f491_4f6c_dd1d,
            last_sweep_us: i64::MIN,
            timeouts,
            hints,
            stats: TableStats::default(),
        }
    }

    /// Flows live now.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no flow is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// True when a new flow needs an eviction first.
    pub fn is_full(&self) -> bool {
        self.live >= self.capacity
    }

    /// The idle timeouts the sweeps apply.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The flow in slot `idx` may expire sooner than when the sweep last looked at it
    /// (see [`crate::track::Update::recheck_expiry`]): the sweep looks again at its
    /// next pass.
    #[inline]
    pub fn recheck_expiry(&mut self, idx: u32) {
        if let Some(h) = &mut self.hints {
            h.reset(idx as usize);
        }
    }

    /// Bytes reserved by the index, the slab and the sweep's hints (what a full table
    /// costs).
    pub fn reserved_bytes(&self) -> usize {
        self.index.reserved_bytes()
            + self.slab.capacity() * std::mem::size_of::<Flow>()
            + self.hints.as_ref().map_or(0, SweepHints::reserved_bytes)
    }

    /// Buckets of the index now (a growing table's doubles as flows arrive).
    pub fn index_buckets(&self) -> usize {
        self.index.buckets()
    }

    /// The slot of the flow with `key` (whose hash is `hash`), if it is tracked.
    #[inline]
    pub fn find(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let slab = &self.slab;
        self.index.find(hash, |i| slab[i as usize].key == *key)
    }

    /// The slot of the flow whose key probably hashes to `hash`, judged from the index
    /// alone (8 bits of the hash): no flow is read, so several of these can run back
    /// to back with their cache misses overlapping. The caller must check the key
    /// before trusting it (see `Engine::process_batch`).
    #[inline]
    pub fn find_hint(&self, hash: u64) -> Option<u32> {
        self.index.find_hint(hash)
    }

    /// Hints the CPU to load the index line where a lookup of `hash` starts (a batch
    /// does this for all its frames before its first lookup).
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Hints the CPU to bring flow `idx` into the cache (every line it touches).
    #[inline]
    pub fn prefetch(&self, idx: u32) {
        prefetch(self.slab.as_ptr().wrapping_add(idx as usize));
    }

    /// [`FlowTable::prefetch`] into the second-level cache.
    #[inline]
    pub fn prefetch_to_l2(&self, idx: u32) {
        crate::sys::prefetch_all_to_l2(self.slab.as_ptr().wrapping_add(idx as usize));
    }

    /// The flow in slot `idx` (from [`FlowTable::find`]).
    #[inline]
    pub fn get(&self, idx: u32) -> &Flow {
        &self.slab[idx as usize]
    }

    /// The flow in slot `idx`, to update.
    #[inline]
    pub fn get_mut(&mut self, idx: u32) -> &mut Flow {
        &mut self.slab[idx as usize]
    }

    /// Is the flow past its idle timeout at `now_us`?
    #[inline]
    pub fn is_expired(&self, idx: u32, now_us: i64) -> bool {
        self.slab[idx as usize].expired_at(now_us, &self.timeouts)
    }

    /// Inserts a flow whose key hashes to `hash`. The caller makes room first (see
    /// [`FlowTable::pick_victim`]); inserting into a full table is a bug.
    pub fn insert(&mut self, hash: u64, flow: Flow) -> u32 {
        assert!(!self.is_full(), "insert into a full flow table");
        if self.index.is_due_to_grow() {
            self.grow_index();
        }
        let idx = if self.free_head != NONE {
            let i = self.free_head;
            self.free_head = self.slab[i as usize].dirs[0].base;
            self.slab[i as usize] = flow;
            i
        } else {
            self.slab.push(flow);
            (self.slab.len() - 1) as u32
        };
        if let Some(h) = &mut self.hints {
            h.reset(idx as usize);
        }
        self.index.insert(hash, idx);
        self.live += 1;
        self.stats.created += 1;
        self.stats.max_live = self.stats.max_live.max(self.live as u64);
        idx
    }

    /// Doubles the index and indexes every live flow again, walking the slab in slot
    /// order: the flows stream in, and only the new index is written at random.
    #[cold]
    fn grow_index(&mut self) {
        let slab = &self.slab;
        self.index.grow(
            slab.iter()
                .enumerate()
                .filter(|(_, f)| f.is_live())
                .map(|(i, f)| (super::hash_key(&f.key), i as u32)),
        );
    }

    /// Removes the flow in slot `idx`.
    pub fn remove(&mut self, idx: u32) {
        let slab = &self.slab;
        let hash = super::hash_key(&slab[idx as usize].key);
        self.index
            .remove(hash, idx, |i| super::hash_key(&slab[i as usize].key));
        self.free(idx);
        self.live -= 1;
    }

    /// Marks slot `idx` free and puts it at the head of the free list (its first
    /// direction's `base` is the link; see [`FlowTable::insert`]).
    fn free(&mut self, idx: u32) {
        let f = &mut self.slab[idx as usize];
        f.bits = 0;
        f.dirs[0].base = self.free_head;
        self.free_head = idx;
    }

    /// Removes the flows in `slots`, which are every live flow, in that order: leaves
    /// the slab as removing each in turn would, and empties the index at once instead
    /// of unindexing each (a wait on a cold bucket per flow).
    pub fn remove_all(&mut self, slots: &[u32]) {
        assert_eq!(slots.len(), self.live, "remove_all needs every live flow");
        for &idx in slots {
            assert!(
                self.slab[idx as usize].is_live(),
                "remove_all of a free slot"
            );
            self.free(idx);
        }
        self.live = 0;
        self.index.clear();
    }

    /// The flow to evict to make room: of a random sample of live flows, the one most
    /// overdue for its own timeout (or nearest to it). Random, not consecutive, slots:
    /// flows created together sit together in the slab, and a consecutive window could
    /// hold nothing but long-lived established flows.
    pub fn pick_victim(&mut self, now_us: i64) -> Option<u32> {
        let n = self.slab.len();
        if n == 0 || self.live == 0 {
            return None;
        }
        // Draw the sample first and prefetch it, so its cache misses overlap instead
        // of queueing one after another (this runs for every new flow of a SYN flood).
        let mut sample = [0u32; VICTIM_SAMPLE];
        for s in &mut sample {
            // xorshift64: cheap, and good enough to spread samples over the slab.
            let mut x = self.victim_rng;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.victim_rng = x;
            *s = (x % n as u64) as u32;
            self.prefetch(*s);
        }
        let mut best: Option<(i64, u32)> = None;
        for &i in &sample {
            let f = &self.slab[i as usize];
            if !f.is_live() {
                continue;
            }
            let last = f.last_us;
            let overdue = now_us.saturating_sub(last) - f.timeout_us(&self.timeouts);
            if best.is_none_or(|(b, _)| overdue > b) {
                best = Some((overdue, i));
            }
        }
        // A sample of only free slots (a sparse slab): take any live flow.
        best.map(|(_, i)| i)
            .or_else(|| (0..n as u32).find(|&i| self.slab[i as usize].is_live()))
    }

    /// Appends to `out` the slots of flows past their idle timeout, walking the slab a
    /// slice at a time: as many slots as a full pass per second of packet time needs for
    /// the time elapsed since the last call.
    pub fn collect_expired(&mut self, now_us: i64, out: &mut Vec<u32>) {
        let elapsed_ms = now_us.saturating_sub(self.last_sweep_us) / 1000;
        if elapsed_ms < 1 {
            // Time went backwards by more than a second (merged captures): restart the
            // clock rather than stop sweeping until it catches up.
            if elapsed_ms < -1000 {
                self.last_sweep_us = now_us;
                if let Some(h) = &mut self.hints {
                    h.start(now_us, -1);
                }
            }
            return;
        }
        self.last_sweep_us = now_us;
        let n = self.slab.len();
        if let Some(h) = &mut self.hints {
            h.start(now_us, elapsed_ms / 1000);
        }
        if n == 0 {
            return;
        }
        let per_ms = n.div_ceil(1000);
        let mut todo = (elapsed_ms.min(1000) as usize * per_ms).min(n);
        while todo > 0 {
            if self.cursor >= n {
                self.cursor = 0;
            }
            let (start, stop) = (self.cursor, (self.cursor + todo).min(n));
            todo -= stop - start;
            self.cursor = stop;
            self.sweep_slots(start, stop, now_us, out);
        }
    }

    /// The expired flows of slots `start..stop`, passing those the hints rule out.
    fn sweep_slots(&mut self, start: usize, stop: usize, now_us: i64, out: &mut Vec<u32>) {
        if self.hints.is_none() {
            for i in start..stop {
                self.visit(i, now_us, out);
            }
            return;
        }
        // The flows the hints leave are scattered over the slab, where the hardware's
        // stream prefetch does not reach them: they are gathered and prefetched a batch
        // at a time, so their cache misses overlap.
        let mut due = [0usize; 32];
        let mut i = start;
        while i < stop {
            let mut n = 0;
            if let Some(h) = &self.hints {
                while n < due.len() {
                    let Some(d) = h.next_due(i, stop) else {
                        i = stop;
                        break;
                    };
                    self.prefetch(d as u32);
                    due[n] = d;
                    n += 1;
                    i = d + 1;
                }
            }
            for &d in &due[..n] {
                self.visit(d, now_us, out);
            }
        }
    }

    /// One step of the sweep at slot `i`: an expired flow goes to `out`, a live one
    /// gets its hint, and so does a free slot (until a flow is put there).
    #[inline]
    fn visit(&mut self, i: usize, now_us: i64, out: &mut Vec<u32>) {
        let f = &self.slab[i];
        if !f.is_live() {
            if let Some(h) = &mut self.hints {
                h.visited(i, i64::MAX);
            }
            return;
        }
        if self.is_expired(i as u32, now_us) {
            // Its removal starts at its index bucket, which no packet has touched
            // since the flow went quiet: cold, and most of a removal's time was the
            // wait for it (RESULTS.md, "The end of a capture"). Requested now, it
            // arrives while the flows before it in `out` are closed.
            self.index.prefetch(super::hash_key(&f.key));
            out.push(i as u32);
        } else if let Some(h) = &mut self.hints {
            h.visited(i, f.last_us.saturating_add(f.timeout_us(&self.timeouts)));
        }
    }

    /// Slots of every live flow (end of capture).
    pub fn live_slots(&self) -> Vec<u32> {
        (0..self.slab.len() as u32)
            .filter(|&i| self.slab[i as usize].is_live())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{hash_key, End};

    fn key(n: u32) -> FlowKey {
        let mut k = FlowKey::default();
        k.lo = rstwatch_schema::IpBytes::from_v4([192, 0, 2, (n >> 16) as u8]);
        k.hi = rstwatch_schema::IpBytes::from_v4([198, 51, 100, 1]);
        k.lo_port = n as u16;
        k.hi_port = 443;
        k
    }

    fn timeouts() -> Timeouts {
        Timeouts::from_config(&crate::EngineConfig::default())
    }

    /// A growing table doubles its index several times under churn (flows closing while
    /// others arrive) and finds exactly what a full-size table finds, in the same slots.
    #[test]
    fn a_growing_table_finds_what_a_full_one_finds() {
        let cap = 1_000_000;
        let mut full = FlowTable::new(cap, timeouts());
        let mut grown = FlowTable::growing(cap, timeouts());
        let start = grown.index_buckets();
        let mut live: Vec<u32> = Vec::new();
        let mut x = 7u64;
        for n in 0..250_000u32 {
            let k = key(n);
            let h = hash_key(&k);
            let a = full.insert(h, Flow::new(k, End::Lo, i64::from(n)));
            let b = grown.insert(h, Flow::new(k, End::Lo, i64::from(n)));
            assert_eq!(a, b);
            live.push(n);
            // Close one flow in five, at random, so slots are reused while it grows.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(5) {
                let gone = live.swap_remove((x >> 8) as usize % live.len());
                let k = key(gone);
                let slot = full.find(&k, hash_key(&k)).expect("live in the full table");
                assert_eq!(grown.find(&k, hash_key(&k)), Some(slot));
                full.remove(slot);
                grown.remove(slot);
            }
        }
        assert!(
            grown.index_buckets() >= start * 8,
            "{start} -> {} buckets",
            grown.index_buckets()
        );
        assert!(grown.index_buckets() < full.index_buckets());
        // The same, and a byte per flow of the file table's sweep hints.
        assert_eq!(grown.reserved_bytes(), full.reserved_bytes() + cap);
        assert_eq!(grown.len(), live.len());
        for n in (0..250_000).step_by(7) {
            let k = key(n);
            assert_eq!(
                grown.find(&k, hash_key(&k)),
                full.find(&k, hash_key(&k)),
                "flow {n}"
            );
        }
    }

    /// A file table's sweep, passing the flows its hints rule out, finds the same
    /// expired flows at every step as a live table's sweep, which reads every flow:
    /// under churn, packets on live flows (some stamped out of order), handshakes, FINs
    /// and RSTs changing their timeouts, an established timeout beyond the hints' 100 s
    /// reach, and packet time advancing in small steps, long steps and jumps.
    #[test]
    fn the_hinted_sweep_expires_what_the_full_sweep_expires() {
        use crate::flow::{bits, dflags};
        let t = Timeouts {
            half_open_us: 3_000_000,
            established_us: 150_000_000,
            closed_us: 2_000_000,
        };
        let cap = 5_000;
        let mut full = FlowTable::new(cap, t);
        let mut hinted = FlowTable::growing(cap, t);
        assert!(full.hints.is_none() && hinted.hints.is_some());
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let (mut now, mut next_key) = (1_700_000_000_000_000i64, 0u32);
        let mut live: Vec<u32> = Vec::new();
        let (mut expired_total, mut ruled_out) = (0, 0);
        for step in 0..300_000 {
            now += match rand(20_000) {
                0 => 70_000_000,  // a jump past JUMP_S
                1 => 300_000_000, // and past a signed byte's reach
                2..=4 => 20_000_000,
                5..=104 => rand(2_000_000) as i64,
                _ => rand(2_000) as i64,
            };
            match rand(10) {
                0..=3 if !full.is_full() => {
                    let k = key(next_key);
                    next_key += 1;
                    let f = Flow::new(k, End::Lo, now);
                    let slot = full.insert(hash_key(&k), f);
                    assert_eq!(hinted.insert(hash_key(&k), f), slot);
                    live.push(slot);
                }
                _ if !live.is_empty() => {
                    // A packet on a live flow, sometimes one that changes its timeout,
                    // sometimes one stamped earlier than the flow's last (out of order).
                    let slot = live[rand(live.len() as u64) as usize];
                    let change = rand(20);
                    let ts = if rand(50) == 0 {
                        now - rand(5_000_000) as i64
                    } else {
                        now
                    };
                    for table in [&mut full, &mut hinted] {
                        let f = table.get_mut(slot);
                        let older = ts < f.last_us;
                        f.last_us = ts;
                        match change {
                            0 => f.bits |= bits::ESTABLISHED,
                            1 => f.dirs[0].flags |= dflags::FIN,
                            2 => f.dirs[1].flags |= dflags::RST,
                            _ if !older => continue,
                            _ => {}
                        }
                        table.recheck_expiry(slot);
                    }
                }
                _ => {}
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            full.collect_expired(now, &mut a);
            hinted.collect_expired(now, &mut b);
            assert_eq!(a, b, "step {step}, now {now}");
            if step % 100 == 0 {
                ruled_out += hinted.hints.as_ref().map_or(0, |h| h.ruled_out());
            }
            for &slot in &a {
                full.remove(slot);
                hinted.remove(slot);
                live.retain(|&l| l != slot);
                expired_total += 1;
            }
        }
        // The test means something: flows came and went, many were live at once, and
        // the hints ruled out most of them most of the time.
        let (max_live, created) = (full.stats.max_live, full.stats.created);
        assert!(
            expired_total > 10_000 && max_live > 1_000,
            "{expired_total} {max_live}"
        );
        assert!(
            ruled_out > created as usize,
            "{ruled_out} ruled out over {created} flows"
        );
    }

    /// Growth stops at the full size, and a growing table still fills to its capacity.
    #[test]
    fn a_growing_table_fills_to_its_capacity() {
        let cap = 100_000;
        let mut t = FlowTable::growing(cap, timeouts());
        for n in 0..cap as u32 {
            let k = key(n);
            t.insert(hash_key(&k), Flow::new(k, End::Lo, 0));
        }
        assert!(t.is_full());
        assert_eq!(
            t.index_buckets(),
            FlowTable::new(cap, timeouts()).index_buckets()
        );
        for n in 0..cap as u32 {
            let k = key(n);
            assert_eq!(t.find(&k, hash_key(&k)), Some(n));
        }
    }

    /// Removing every flow at once leaves the table as removing them one by one does:
    /// the same free slots handed out in the same order afterwards, no old flow found,
    /// and new flows found (on a grown index and on a full-size one, after churn).
    #[test]
    fn removing_all_at_once_equals_removing_each() {
        for growing in [false, true] {
            let make = || {
                if growing {
                    FlowTable::growing(50_000, timeouts())
                } else {
                    FlowTable::new(50_000, timeouts())
                }
            };
            let (mut each, mut all) = (make(), make());
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for n in 0..40_000u32 {
                let k = key(n);
                let h = hash_key(&k);
                assert_eq!(
                    each.insert(h, Flow::new(k, End::Lo, 0)),
                    all.insert(h, Flow::new(k, End::Lo, 0))
                );
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x.is_multiple_of(3) {
                    // Churn: a random earlier flow ends, so the free list is not in
                    // slot order when the rest are removed.
                    let k = key((x >> 8) as u32 % (n + 1));
                    if let Some(i) = each.find(&k, hash_key(&k)) {
                        assert_eq!(all.find(&k, hash_key(&k)), Some(i));
                        each.remove(i);
                        all.remove(i);
                    }
                }
            }
            let live = each.live_slots();
            assert!(live.len() > 10_000, "{} live", live.len());
            for &i in &live {
                each.remove(i);
            }
            all.remove_all(&live);
            assert_eq!((each.len(), all.len()), (0, 0));
            assert!(all.live_slots().is_empty());
            for n in (0..40_000u32).step_by(3) {
                let k = key(n);
                assert_eq!(all.find(&k, hash_key(&k)), None, "flow {n} still found");
            }
            for n in 100_000..140_000u32 {
                let k = key(n);
                let h = hash_key(&k);
                let slot = all.insert(h, Flow::new(k, End::Lo, 0));
                assert_eq!(each.insert(h, Flow::new(k, End::Lo, 0)), slot);
                assert_eq!(all.find(&k, h), Some(slot));
            }
        }
    }
}
