//! The engine: parse → track → classify for one worker core.
//!
//! The engine owns one flow table, the RSTs held for their verdict, and the aggregate
//! detectors. It never looks at the wall clock: time is the timestamp of the packets
//! fed to it (or `advance` on a quiet live link), so replaying a capture gives the same
//! records as seeing it live.

use crate::anomaly::{Detectors, Failover};
use crate::classify::cause::{self, Aggregates};
use crate::classify::evidence::{self, CauseSettings, Evidence, RstAt};
use crate::classify::pending::{Held, Pending};
use crate::classify::{self, verdict, Context};
use crate::config::EngineConfig;
use crate::counters::Counters;
use crate::evidence::macs::Mac;
use crate::evidence::CrossFlow;
use crate::flow::{
    bits, dflags, hash_key, mix64, seq_gt, End, Flow, FlowKey, FlowTable, KeyHasher, Role,
    Timeouts, TunnelSlots,
};
use crate::parse::{self, LinkType, Packet, ParseOptions, ParsedBatch, Reject};
use crate::sink::Sink;
use crate::source::{Readahead, READ_BATCH};
use crate::track;
use rstwatch_schema::{Anomaly, Cause, CloseReason, RstEvent, RstFlag};
use std::ops::Range;

mod lookup_batch;
use lookup_batch::{LookupBatch, Way};

/// What the flow lookup of a batch's parsed segment needs and found. Kept beside the
/// parsed [`Packet`]s rather than around them, so a packet is written once, where the
/// parser returns it, and never copied again.
#[derive(Clone, Copy)]
struct Looked {
    key: FlowKey,
    /// Which end of the flow sent it.
    end: End,
    /// `hash_key(&key)`, computed once.
    hash: u64,
    /// The slot the batch's lookup loop found (checked again before use).
    hint: Option<u32>,
}

impl Looked {
    /// An unused slot.
    fn empty() -> Looked {
        Looked {
            key: FlowKey::default(),
            end: End::Lo,
            hash: 0,
            hint: None,
        }
    }
}

/// Frames whose flow lookups [`Engine::process_batch`] overlaps, at most: it uses this,
/// half of it, or a quarter one chunk ahead, whichever its timing finds faster
/// ([`lookup_batch`]).
pub const BATCH: usize = 32;

/// The chunks of a batch of `len` frames, looked up `way.size` (at most [`BATCH`]) at a
/// time: chunk k's frames, and the half of the engine's two chunks of scratch (parsed
/// packets, lookups) it uses, by k's parity, so that with `way.ahead` a chunk is parsed
/// and looked up while the one before it still waits for its update.
struct Chunks {
    len: usize,
    size: usize,
    count: usize,
    /// Chunks the update runs behind the parse: 1 one chunk ahead, else 0.
    lag: usize,
}

impl Chunks {
    fn new(len: usize, way: Way) -> Chunks {
        debug_assert!((1..=BATCH).contains(&way.size));
        Chunks {
            len,
            size: way.size,
            count: len.div_ceil(way.size),
            lag: usize::from(way.ahead),
        }
    }

    /// Turns of the loop: one a chunk, and one more to update the last chunk when
    /// the updates lag.
    fn turns(&self) -> usize {
        self.count + self.lag
    }

    /// The chunk updated in turn `k`, if any.
    #[inline(always)]
    fn behind(&self, k: usize) -> Option<(Range<usize>, Range<usize>)> {
        k.checked_sub(self.lag).and_then(|j| self.get(j))
    }

    /// Chunk `k`'s frames and its scratch half; `None` past the last chunk.
    #[inline(always)]
    fn get(&self, k: usize) -> Option<(Range<usize>, Range<usize>)> {
        let start = k.checked_mul(self.size).filter(|&s| s < self.len)?;
        let end = (start + self.size).min(self.len);
        let half = (k % 2) * BATCH;
        Some((start..end, half..half + (end - start)))
    }
}

/// Requests the header lines of `frames`, a chunk before they are parsed (RESULTS.md:
/// up to 17 % less time at 10,000 and 100,000 flows, 8–14 % at 1 M, requested as the
/// chunk itself was parsed). A prefetch past a short frame's end is harmless.
#[inline(always)]
fn prefetch_headers(frames: &[(i64, &[u8])]) {
    for &(_, frame) in frames {
        crate::sys::prefetch(frame.as_ptr().cast::<[u8; parse::PLAIN_HEADER_BYTES]>());
    }
}

/// Packet time between two steps of the expiry sweep.
const SWEEP_TICK_US: i64 = 1000;

/// One worker's engine. Not `Sync`: each core owns its own.
pub struct Engine {
    parse_opts: ParseOptions,
    table: FlowTable,
    pending: Pending,
    detectors: Detectors,
    /// Evidence across packets and flows for the cause rules.
    cross: CrossFlow,
    settings: CauseSettings,
    counters: Counters,
    /// Tunnel identities of the flows, as slots in their keys (issue 11).
    tunnels: TunnelSlots,
    verdict_delay_us: i64,
    /// Latest packet time seen (packet time never runs backwards for deadlines).
    now_us: i64,
    /// Packet time of the next expiry sweep step.
    next_sweep_us: i64,
    /// The earlier of `next_sweep_us` and when a held RST may be due
    /// ([`Pending::due_at`]): the one time `advance` compares each packet's with. Set
    /// again wherever either changes (`refresh_next_event`).
    next_event_us: i64,
    // Scratch space reused across packets, so the packet path does not allocate.
    expired: Vec<u32>,
    released: Vec<Held>,
    anomalies: Vec<Anomaly>,
    /// `process_batch`'s packets, parsed in place, and their flow lookups; kept between
    /// calls so the arrays are not set up again for every batch (a few instructions a
    /// packet).
    batch_packets: Vec<Packet>,
    batch_looked: Vec<Looked>,
    /// How many of a batch's frames are looked up together.
    lookup_batch: LookupBatch,
}

impl Engine {
    /// Builds an engine for live capture, reserving the flow table's memory up front
    /// and its hash index at full size: no packet waits for the index to grow.
    pub fn new(cfg: &EngineConfig) -> Engine {
        Engine::with_table(
            cfg,
            FlowTable::new(cfg.flow_capacity, Timeouts::from_config(cfg)),
        )
    }

    /// Builds an engine for reading files: as [`Engine::new`], but the flow index
    /// starts small and doubles as flows arrive. A capture of fifty thousand flows then
    /// looks its flows up in a few hundred KiB instead of the 8 MiB a million-flow
    /// index spreads them over; each doubling pauses the engine to index its live flows
    /// again (14 ms for the last one on the way to a million flows, `engine_bench`),
    /// which only a live ring would notice.
    pub fn for_files(cfg: &EngineConfig) -> Engine {
        Engine::with_table(
            cfg,
            FlowTable::growing(cfg.flow_capacity, Timeouts::from_config(cfg)),
        )
    }

    fn with_table(cfg: &EngineConfig, table: FlowTable) -> Engine {
        Engine {
            parse_opts: cfg.parse_options(),
            table,
            pending: Pending::new(cfg.max_pending_rst),
            detectors: Detectors::new(&cfg.anomaly),
            cross: CrossFlow::new(&cfg.cause),
            settings: CauseSettings::from_config(cfg),
            counters: Counters::default(),
            tunnels: TunnelSlots::new(cfg.encap.tunnel_id_in_key),
            verdict_delay_us: i64::from(cfg.verdict_delay_ms) * 1000,
            now_us: i64::MIN,
            next_sweep_us: i64::MIN,
            next_event_us: i64::MIN,
            expired: Vec::new(),
            released: Vec::new(),
            anomalies: Vec::new(),
            batch_packets: vec![Packet::EMPTY; 2 * BATCH],
            batch_looked: vec![Looked::empty(); 2 * BATCH],
            lookup_batch: LookupBatch::new(),
        }
    }

    /// Feeds one captured frame with its capture timestamp (microseconds since the epoch).
    pub fn process<S: Sink + ?Sized>(
        &mut self,
        ts_us: i64,
        link: LinkType,
        frame: &[u8],
        sink: &mut S,
    ) {
        self.counters.frames += 1;
        let p = match parse::parse(link, frame, self.parse_opts) {
            Ok(p) => p,
            Err(r) => {
                self.counters.rejected[r as usize] += 1;
                self.advance(ts_us, sink);
                return;
            }
        };
        self.counters.tcp += 1;
        self.advance(ts_us, sink);
        self.tunnels.next_epoch();
        let (key, end) = self.key_of(&p);
        let hash = hash_key(&key);
        let found = self.table.find(&key, hash);
        self.packet(ts_us, &p, &key, end, hash, found, sink);
    }

    /// Feeds frames in order, exactly as calling [`Engine::process`] on each would, but
    /// faster on a large flow table: the flow lookups of up to [`BATCH`] frames are done
    /// first, back to back, so their cache misses overlap instead of queueing one per
    /// packet, and the flows found are prefetched before they are updated.
    pub fn process_batch<S: Sink + ?Sized>(
        &mut self,
        link: LinkType,
        frames: &[(i64, &[u8])],
        sink: &mut S,
    ) {
        let mut unused = Readahead::NONE;
        self.batch::<false, S>(link, frames, &mut unused, sink);
    }

    /// [`Engine::process_batch`] that also requests the lines of `ahead` (the capture
    /// file past these frames), a step in its parse loop and a step in its update loop
    /// for each frame, so their transfers overlap its work instead of the reader
    /// waiting for them (`replay` of a mapped file).
    pub fn process_batch_reading_ahead<S: Sink + ?Sized>(
        &mut self,
        link: LinkType,
        frames: &[(i64, &[u8])],
        ahead: &mut Readahead,
        sink: &mut S,
    ) {
        self.batch::<true, S>(link, frames, ahead, sink);
    }

    /// [`Engine::process_batch`] for frames parsed already (`replay --workers` and live
    /// fan-out, which parse every frame to choose its engine: [`FanoutParser`]), with
    /// this engine's parse options (its configuration's
    /// [`parse_options`](crate::EngineConfig::parse_options)). Gives exactly what
    /// [`Engine::process`] on each frame gives (`tests/offline/engine_batch.rs`).
    pub fn process_parsed<S: Sink + ?Sized>(&mut self, batch: &ParsedBatch, sink: &mut S) {
        let (times, parsed, packets) = batch.columns();
        // In calls of the one-engine path's size (the `READ_BATCH` frames a read hands
        // one engine's `replay`): the lookup ways' trial times 1,536 calls. With a
        // `replay --workers` batch of 1,024 frames as one call, the trial took ~1.5 M
        // frames an engine: longer than the benchmark capture (~1,000 batches an
        // engine), which then ran every way in turn to its end.
        // No change measured on the Zen 5 host, whose ways differ little at 50,000
        // and 500,000 flows; on the Zen 4 host they differed by 7–15 % at 1 M.
        for start in (0..times.len()).step_by(READ_BATCH) {
            let end = (start + READ_BATCH).min(times.len());
            let call = start..end;
            self.parsed_call(
                &times[call.clone()],
                &parsed[call.clone()],
                &packets[call],
                sink,
            );
        }
    }

    /// One call of [`Engine::process_parsed`]'s.
    #[inline(always)]
    fn parsed_call<S: Sink + ?Sized>(
        &mut self,
        times: &[i64],
        parsed: &[Result<(), Reject>],
        packets: &[Packet],
        sink: &mut S,
    ) {
        let mut looked = std::mem::take(&mut self.batch_looked);
        looked.resize(2 * BATCH, Looked::empty());
        let mut unused = Readahead::NONE;
        let way = self.lookup_batch.way();
        let chunks = Chunks::new(times.len(), way);
        // The loop of `batch`, stage for stage (the tunnel slots' epochs rely on the
        // order); its packets are the batch's own rather than parsed into scratch. One
        // loop for both, through a closure or an iterator of stages, cost `engine_bench`
        // 2–5 % (RESULTS.md, "One chunk loop for both batch paths").
        for k in 0..chunks.turns() {
            let front = chunks.get(k);
            if let Some((c, h)) = front.clone() {
                self.tunnels.next_epoch();
                self.key_chunk(
                    &parsed[c.clone()],
                    &packets[c.clone()],
                    &mut looked[h.clone()],
                );
                if !way.ahead {
                    self.look_up_chunk(&parsed[c], &mut looked[h], way.l2);
                }
            }
            if let Some((c, h)) = chunks.behind(k) {
                let times = times[c.clone()].iter().copied();
                let (parsed, packets) = (&parsed[c.clone()], &packets[c]);
                self.update_chunk::<false, S>(
                    times,
                    parsed,
                    packets,
                    &looked[h],
                    &mut unused,
                    sink,
                );
            }
            match front {
                Some((c, h)) if way.ahead => self.look_up_chunk(&parsed[c], &mut looked[h], way.l2),
                _ => {}
            }
        }
        self.lookup_batch.done(times.len());
        self.batch_looked = looked;
    }

    /// Stage 1 of [`Engine::process_parsed`]: each parsed packet's key and hash, and
    /// its index line requested.
    #[inline(always)]
    fn key_chunk(
        &mut self,
        parsed: &[Result<(), Reject>],
        packets: &[Packet],
        looked: &mut [Looked],
    ) {
        let hasher = KeyHasher::get();
        for ((slot, packet), l) in parsed.iter().zip(packets).zip(looked) {
            if slot.is_ok() {
                self.key_and_hash(hasher, packet, l);
            }
        }
    }

    /// A parsed packet's key, end and hash into `l` (its hint is stage 2's to write),
    /// and its index line requested before the first lookup.
    #[inline(always)]
    fn key_and_hash(&mut self, hasher: KeyHasher, packet: &Packet, l: &mut Looked) {
        let (key, end) = self.key_of(packet);
        let hash = hasher.hash(&key);
        self.table.prefetch_index(hash);
        self.cross.hosts.prefetch(&packet.src);
        (l.key, l.end, l.hash) = (key, end, hash);
    }

    /// The batch path, with `READ_AHEAD` stepping `ahead`: a constant, so that
    /// [`Engine::process_batch`] (live capture, `--workers`) does not pay for the steps.
    fn batch<const READ_AHEAD: bool, S: Sink + ?Sized>(
        &mut self,
        link: LinkType,
        frames: &[(i64, &[u8])],
        ahead: &mut Readahead,
        sink: &mut S,
    ) {
        // Slots past a chunk's end are never read (the loops below zip with it). The
        // packets are parsed in place; `parsed` says which ones were.
        let mut packets = std::mem::take(&mut self.batch_packets);
        // Always two chunks long (only an unwinding panic could have left it taken).
        packets.resize(2 * BATCH, Packet::EMPTY);
        // A slot of `looked` is written (stage 1, then its hint in stage 2) before it is
        // read, whatever an earlier batch left in it.
        let mut looked = std::mem::take(&mut self.batch_looked);
        looked.resize(2 * BATCH, Looked::empty());
        let mut parsed = [Err(Reject::TruncatedLink); 2 * BATCH];
        let way = self.lookup_batch.way();
        let chunks = Chunks::new(frames.len(), way);
        // Each chunk is parsed (its index lines requested), looked up (its flows
        // requested) and updated. One chunk ahead (`way.ahead`), chunk k is parsed, then
        // chunk k - 1 updated, then chunk k looked up: each request has a stage's work
        // to arrive in, where a chunk by itself leaves its first flows' lines a few
        // lookups; it pays at a million flows on the Zen 4 host, with small chunks
        // (`lookup_batch`).
        if let Some((c, _)) = chunks.get(0) {
            prefetch_headers(&frames[c]);
        }
        for k in 0..chunks.turns() {
            let front = chunks.get(k);
            if let Some((c, _)) = chunks.get(k + 1) {
                prefetch_headers(&frames[c]);
            }
            if let Some((c, h)) = front.clone() {
                let (parsed, packets) = (&mut parsed[h.clone()], &mut packets[h.clone()]);
                self.tunnels.next_epoch();
                self.parse_chunk::<READ_AHEAD>(
                    link,
                    &frames[c],
                    parsed,
                    packets,
                    &mut looked[h.clone()],
                    ahead,
                );
                if !way.ahead {
                    self.look_up_chunk(parsed, &mut looked[h], way.l2);
                }
            }
            if let Some((c, h)) = chunks.behind(k) {
                let times = frames[c].iter().map(|&(ts_us, _)| ts_us);
                let (parsed, packets) = (&parsed[h.clone()], &packets[h.clone()]);
                self.update_chunk::<READ_AHEAD, S>(times, parsed, packets, &looked[h], ahead, sink);
            }
            match front {
                Some((_, h)) if way.ahead => {
                    self.look_up_chunk(&parsed[h.clone()], &mut looked[h], way.l2)
                }
                _ => {}
            }
        }
        self.lookup_batch.done(frames.len());
        self.batch_packets = packets;
        self.batch_looked = looked;
    }

    /// Stages 0 and 1 of the batch path: requests every frame's header lines, then
    /// parses each frame, hashes its key and requests its index line, so that the
    /// cache misses of the chunk overlap instead of each waiting for its own.
    #[inline(always)]
    fn parse_chunk<const READ_AHEAD: bool>(
        &mut self,
        link: LinkType,
        chunk: &[(i64, &[u8])],
        parsed: &mut [Result<(), Reject>],
        packets: &mut [Packet],
        looked: &mut [Looked],
        ahead: &mut Readahead,
    ) {
        let hasher = KeyHasher::get();
        let opts = self.parse_opts;
        let each = parsed.iter_mut().zip(packets).zip(looked);
        for (((slot, packet), l), &(_, frame)) in each.zip(chunk) {
            *slot = parse::parse_into(link, frame, opts, packet);
            if READ_AHEAD {
                ahead.step();
            }
            if slot.is_ok() {
                self.key_and_hash(hasher, packet, l);
            }
        }
    }

    /// Stage 2: the lookups in a tight loop of their own, index only: the flows found
    /// are prefetched, not read, so the cache misses of the whole chunk overlap; into
    /// L2 rather than L1 when `l2` (the way's, `lookup_batch`).
    #[inline(always)]
    fn look_up_chunk(&mut self, parsed: &[Result<(), Reject>], looked: &mut [Looked], l2: bool) {
        for (slot, l) in parsed.iter().zip(looked) {
            if slot.is_ok() {
                l.hint = self.table.find_hint(l.hash);
                if let Some(i) = l.hint {
                    if l2 {
                        self.table.prefetch_to_l2(i);
                    } else {
                        self.table.prefetch(i);
                    }
                }
            }
        }
    }

    /// Stage 3: counts the chunk's frames, then reads and updates each frame's flow,
    /// in order, through the hints of stage 2 that still hold.
    #[inline(always)]
    fn update_chunk<const READ_AHEAD: bool, S: Sink + ?Sized>(
        &mut self,
        times: impl Iterator<Item = i64>,
        parsed: &[Result<(), Reject>],
        packets: &[Packet],
        looked: &[Looked],
        ahead: &mut Readahead,
        sink: &mut S,
    ) {
        // Counted once a chunk, not once a frame: a rejected frame takes its TCP count
        // back.
        let n = parsed.len() as u64;
        self.counters.frames += n;
        self.counters.tcp += n;
        let each = parsed.iter().zip(packets).zip(looked);
        for (((slot, packet), l), ts_us) in each.zip(times) {
            if READ_AHEAD {
                ahead.step();
            }
            if let Err(r) = slot {
                self.counters.tcp -= 1;
                self.counters.rejected[*r as usize] += 1;
                self.advance(ts_us, sink);
                continue;
            }
            self.advance(ts_us, sink);
            // Earlier frames of the chunk may have created, closed or evicted flows
            // since the lookup: trust the hint only if it still holds.
            let found = match l.hint {
                Some(i) if self.table.get(i).is_live() && self.table.get(i).key == l.key => Some(i),
                _ => self.table.find(&l.key, l.hash),
            };
            self.packet(ts_us, packet, &l.key, l.end, l.hash, found, sink);
        }
    }

    /// The flow key of `p`, with its tunnel's slot.
    #[inline]
    fn key_of(&mut self, p: &Packet) -> (FlowKey, End) {
        let (key, end) = FlowKey::of(p);
        (key.in_tunnel_slot(self.tunnels.slot_of(p)), end)
    }

    /// Lets time pass (live capture on a quiet link; called by `process` too): releases
    /// held RSTs whose verdict delay is over and expires idle flows. Inline, with the
    /// work itself out of line: every packet calls it, and nearly every call only
    /// compares the clock with one time, the earlier of the two deadlines.
    #[inline]
    pub fn advance<S: Sink + ?Sized>(&mut self, now_us: i64, sink: &mut S) {
        if now_us > self.now_us {
            self.now_us = now_us;
        }
        let now = self.now_us;
        if now >= self.next_event_us {
            self.due_events(now, sink);
        }
    }

    /// What `advance` found may be due at `now`: held RSTs to release, a sweep step.
    #[inline(never)]
    fn due_events<S: Sink + ?Sized>(&mut self, now: i64, sink: &mut S) {
        if self.pending.any_due(now) {
            self.release_due(now, sink);
        }
        // The sweep works in steps of at least a millisecond of packet time.
        if now >= self.next_sweep_us {
            self.sweep(now, sink);
        }
        self.refresh_next_event();
    }

    /// Sets `next_event_us` again, after the sweep's time or the held RSTs changed.
    fn refresh_next_event(&mut self) {
        self.next_event_us = self.next_sweep_us.min(self.pending.due_at());
    }

    /// Releases the held RSTs due at `now`.
    #[inline(never)]
    fn release_due<S: Sink + ?Sized>(&mut self, now: i64, sink: &mut S) {
        let mut released = std::mem::take(&mut self.released);
        self.pending.release_due(now, &mut released);
        self.emit_released(&mut released, sink);
        self.released = released;
    }

    /// One step of the expiry sweep: closes the idle flows of the next slice of slots.
    #[inline(never)]
    fn sweep<S: Sink + ?Sized>(&mut self, now: i64, sink: &mut S) {
        self.next_sweep_us = now.saturating_add(SWEEP_TICK_US);
        let mut expired = std::mem::take(&mut self.expired);
        self.table.collect_expired(now, &mut expired);
        for &i in &expired {
            if self.table.get(i).is_live() {
                self.close(i, CloseReason::Timeout, sink);
            }
        }
        expired.clear();
        self.expired = expired;
    }

    /// End of input: releases every held RST and closes every flow (`end_of_capture`).
    pub fn finish<S: Sink + ?Sized>(&mut self, sink: &mut S) {
        // Every flow ends, so the table is emptied at once after the records rather
        // than unindexed flow by flow: each removal waited on its index bucket, cold
        // by now (on the benchmark capture 6–8 % of `replay`'s time went to this loop,
        // a fifth to a third of that there: RESULTS.md, "The end of a capture").
        let live = self.table.live_slots();
        for &i in &live {
            self.end(i, CloseReason::EndOfCapture, sink);
        }
        self.table.remove_all(&live);
        let mut released = std::mem::take(&mut self.released);
        self.pending.release_all(&mut released);
        self.refresh_next_event();
        self.emit_released(&mut released, sink);
        self.released = released;
    }

    /// The engine's counters by name (parse rejections, flow table, classifier).
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut v = self.counters.named();
        let t = &self.table.stats;
        v.extend([
            ("flows_created", t.created),
            ("flows_live", self.table.len() as u64),
            ("flows_max_live", t.max_live),
            ("rst_held", self.pending.len() as u64),
            ("anomaly_tracker_full", self.detectors.tracker_full),
            ("tunnel_slot_overflow", self.tunnels.overflow),
        ]);
        v.extend(self.cross.counters());
        v
    }

    /// The raw counters (tests, benchmarks).
    pub fn raw_counters(&self) -> &Counters {
        &self.counters
    }

    /// Bytes the flow table reserves at its capacity (index and slab).
    pub fn table_reserved_bytes(&self) -> usize {
        self.table.reserved_bytes()
    }

    /// Buckets of the flow table's index now (an engine for files grows it).
    pub fn flow_index_buckets(&self) -> usize {
        self.table.index_buckets()
    }

    /// Flows currently tracked.
    pub fn flows_live(&self) -> usize {
        self.table.len()
    }

    /// One parsed TCP segment whose flow lookup gave `found`. Always inline, into
    /// `process_batch`'s loop and `process`, its two callers: as a call it moved
    /// the key and the packet's fields through the stack and saved registers for every
    /// packet; inline, `engine_bench` at 10,000 flows ran 3.8 % fewer instructions and
    /// 2–3 % less time at 10 k and 1 M flows (RESULTS.md, "Reading or mapping").
    /// `replay` is unchanged: its build already inlined it.
    ///
    /// The common path (no RST, good checksum) takes the flow from the table once and
    /// hands that reference to every step, rather than indexing the slab (a bounds
    /// check and a reload) at each.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn packet<S: Sink + ?Sized>(
        &mut self,
        ts_us: i64,
        p: &Packet,
        key: &FlowKey,
        end: End,
        hash: u64,
        mut found: Option<u32>,
        sink: &mut S,
    ) {
        if let Some(i) = found {
            // Past its timeout, or the four-tuple reused by a new connection after a
            // FIN or RST (the record then says `fin` / `rst`, not `timeout`).
            let flow = self.table.get(i);
            if flow.expired_at(ts_us, self.table.timeouts()) || restarts(flow, p, end) {
                self.close(i, CloseReason::Timeout, sink);
                found = None;
            }
        }
        let (i, fresh) = match found {
            Some(i) => (i, false),
            None => (self.create(*key, hash, p, end, ts_us, sink), true),
        };
        let flow = self.table.get_mut(i);
        let role = flow.role_of(end);

        if p.bad_checksum {
            self.bad_checksum_segment(i, p, role, ts_us, fresh, sink);
            return;
        }
        self.cross
            .before_update(flow, i, p, role, ts_us, &self.settings);
        if p.flags.rst() {
            self.rst_segment(i, p, role, ts_us, fresh, sink);
            return;
        }
        // `&`, not `&&`: whether a segment carries data is unpredictable per packet.
        let data_after_held = (p.payload_len > 0) & flow.has(bits::HAS_PENDING);
        if track::is_next_in_order(flow, p, role) {
            // The common segment, taken apart from the rest: it has nothing for
            // `after_update` (no SYN, and its flow is established already) and drops no
            // history letter, so only the expiry recheck is left of its `Update`.
            if track::next_in_order(flow, p, role, ts_us).recheck_expiry {
                self.table.recheck_expiry(i);
            }
        } else {
            let u = track::update_in_full(flow, p, role, ts_us);
            self.cross
                .after_update(flow, p, role, ts_us, u.became_established);
            self.count_update(i, u);
        }
        if data_after_held {
            self.note_data_after_held_rsts(i, role, ts_us);
        }
    }

    /// A segment whose checksum is wrong. Like Zeek: it is noted in the history and
    /// otherwise ignored; an RST is still reported, flagged `bad_checksum`.
    fn bad_checksum_segment<S: Sink + ?Sized>(
        &mut self,
        i: u32,
        p: &Packet,
        role: Role,
        ts_us: i64,
        fresh: bool,
        sink: &mut S,
    ) {
        self.counters.bad_checksum += 1;
        let u = track::bad_checksum(self.table.get_mut(i), role);
        self.counters.history_truncated += u64::from(u.letters_dropped);
        if p.flags.rst() {
            self.counters.rst += 1;
            let (ev, evd) = self.classify(i, p, role, ts_us, fresh);
            self.hold(i, role, ev, evd, sink);
        }
    }

    /// An RST on flow `i` (its cause evidence already noted): classified on the flow's
    /// state before it, cross-checked with the flow's other held RSTs, tracked, and
    /// held for its verdict.
    fn rst_segment<S: Sink + ?Sized>(
        &mut self,
        i: u32,
        p: &Packet,
        role: Role,
        ts_us: i64,
        fresh: bool,
        sink: &mut S,
    ) {
        self.counters.rst += 1;
        let (mut ev, evd) = self.classify(i, p, role, ts_us, fresh);
        let repeat_r = self.correlate_rsts(i, role, &mut ev);
        let u = track::update(self.table.get_mut(i), p, role, ts_us);
        self.count_update(i, u);
        let flow = self.table.get_mut(i);
        if flow.rst_count == u8::MAX {
            self.cross.more_rsts(flow, i);
        } else {
            flow.rst_count += 1;
        }
        if repeat_r && !flow.history.push(role.letter(b'R')) {
            self.counters.history_truncated += 1;
        }
        self.hold(i, role, ev, evd, sink);
    }

    /// Takes in the outcome `u` of updating flow `i`'s tracking (`track::update` or
    /// `track::update_in_full`, which the caller runs on the flow reference it already
    /// holds): counts the history letters that did not fit, and tells the expiry sweep
    /// when the flow may now expire sooner. Always inline: a call per packet otherwise.
    #[inline(always)]
    fn count_update(&mut self, i: u32, u: track::Update) {
        self.counters.history_truncated += u64::from(u.letters_dropped);
        if u.recheck_expiry {
            self.table.recheck_expiry(i);
        }
    }

    /// Payload from `role` at `ts_us` on flow `i`, which holds RSTs for their verdict:
    /// evidence about who sent them. Each held RST sees only the first payload from
    /// each side after it (`note_payload`): later ones would set the same flag again,
    /// and the peer's time is that of its first payload.
    fn note_data_after_held_rsts(&mut self, i: u32, role: Role, ts_us: i64) {
        self.pending.note_payload(i, role, |h| {
            if h.role == role {
                // The purported sender of a held RST keeps sending: it did not send it.
                h.add.insert(RstFlag::DataAfter);
            } else if h.peer_data_after_rst_us.is_none() {
                // Its peer was still sending (crossing data, if soon enough).
                h.peer_data_after_rst_us = Some(ts_us - h.ts_us);
            }
        });
    }

    /// Classifies an RST and gathers the evidence for its cause (flow state before it).
    fn classify(
        &mut self,
        i: u32,
        p: &Packet,
        role: Role,
        ts_us: i64,
        fresh: bool,
    ) -> (RstEvent, Evidence) {
        let flow = self.table.get(i);
        let at = RstAt {
            slot: i,
            role,
            ts_us,
            fresh,
        };
        let evd = evidence::gather(flow, p, at, &mut self.cross, &self.settings);
        let cx = Context {
            ts_us,
            fresh,
            idle_threshold_us: self.settings.idle_threshold_us,
            silence_us: evd.silence_us,
        };
        (classify::classify(flow, p, role, &cx), evd)
    }

    /// Cross-checks a new RST with the held RSTs of its flow from the same side:
    /// `multi_seq`, `multi_ack`, `rst_and_rstack` on both. Returns whether its seq
    /// differs from the previous RST's (Zeek repeats `R` in the history then).
    fn correlate_rsts(&mut self, i: u32, role: Role, ev: &mut RstEvent) -> bool {
        let flow = self.table.get(i);
        if !flow.has(bits::HAS_PENDING) {
            return false;
        }
        let me = *flow.dir(role);
        let sent_known = me.has(dflags::SENT_NON_RST);
        let mut last_seq = None;
        let mut add = rstwatch_schema::RstFlags::EMPTY;
        self.pending.for_each_of_flow(i, |h| {
            if h.role != role {
                return;
            }
            last_seq = Some(h.seq);
            if sent_known && seq_gt(ev.seq, h.seq) && seq_gt(ev.seq, me.next_seq) {
                h.add.insert(RstFlag::MultiSeq);
                add.insert(RstFlag::MultiSeq);
            }
            if ev.ack_flag && h.ack_flag && ev.ack != h.ack {
                h.add.insert(RstFlag::MultiAck);
                add.insert(RstFlag::MultiAck);
            }
            if ev.ack_flag != h.ack_flag {
                h.add.insert(RstFlag::RstAndRstack);
                add.insert(RstFlag::RstAndRstack);
            }
        });
        ev.flags.0 |= add.0;
        last_seq.is_some_and(|s| s != ev.seq)
    }

    fn hold<S: Sink + ?Sized>(
        &mut self,
        i: u32,
        role: Role,
        ev: RstEvent,
        evidence: Evidence,
        sink: &mut S,
    ) {
        let deadline_us = ev.ts_us.saturating_add(self.verdict_delay_us);
        self.table.get_mut(i).bits |= bits::HAS_PENDING;
        let mut released = std::mem::take(&mut self.released);
        let before = released.len();
        self.pending.hold(
            Held {
                deadline_us,
                flow: i,
                role,
                ev,
                evidence,
            },
            &mut released,
        );
        self.refresh_next_event();
        self.counters.rst_released_early += (released.len() - before) as u64;
        self.emit_released(&mut released, sink);
        self.released = released;
    }

    fn create<S: Sink + ?Sized>(
        &mut self,
        key: FlowKey,
        hash: u64,
        p: &Packet,
        sender: End,
        ts_us: i64,
        sink: &mut S,
    ) -> u32 {
        if self.table.is_full() {
            if let Some(v) = self.table.pick_victim(ts_us) {
                // An established flow evicted before its idle memory ran out: a late
                // RST (a firewall's, after an hour) will find no state.
                if self.table.get(v).has(bits::ESTABLISHED) && !self.table.is_expired(v, ts_us) {
                    self.counters.flows_forgotten_early += 1;
                }
                self.close(v, CloseReason::Evicted, sink);
                self.table.stats.evicted += 1;
            }
        }
        let (orig, flipped) = track::orientation(p, sender);
        let mut flow = Flow::new(key, orig, ts_us);
        if flipped {
            flow.history.push(b'^');
        }
        self.tunnels.hold(key.tunnel_slot());
        self.table.insert(hash, flow)
    }

    /// Ends flow `i`: releases its held RSTs, emits its record, frees its slot.
    fn close<S: Sink + ?Sized>(&mut self, i: u32, trigger: CloseReason, sink: &mut S) {
        self.end(i, trigger, sink);
        self.table.remove(i);
    }

    /// Releases flow `i`'s held RSTs and emits its record; the flow stays in the table
    /// (the caller removes it).
    fn end<S: Sink + ?Sized>(&mut self, i: u32, trigger: CloseReason, sink: &mut S) {
        if self.table.get(i).has(bits::HAS_PENDING) {
            let mut released = std::mem::take(&mut self.released);
            self.pending.release_flow(i, &mut released);
            self.refresh_next_event();
            self.emit_released(&mut released, sink);
            self.released = released;
        }
        let more_rsts = self.cross.forget(self.table.get(i), i);
        let mut rec = self.table.get(i).record(trigger, more_rsts);
        let slot = self.table.get(i).key.tunnel_slot();
        let tunnel = self.tunnels.identity(slot);
        (rec.encap, rec.tunnel_id) = (tunnel.encap, tunnel.id);
        self.tunnels.release(slot);
        self.count_one_sided(&rec);
        let c = &mut self.counters;
        match rec.close {
            CloseReason::Fin => c.flows_closed_fin += 1,
            CloseReason::Rst => c.flows_closed_rst += 1,
            CloseReason::Timeout => c.flows_timed_out += 1,
            CloseReason::Evicted => c.flows_evicted += 1,
            CloseReason::EndOfCapture => c.flows_end_of_capture += 1,
        }
        sink.flow(rec);
    }

    /// Counts a flow of which one direction was never seen although the other side
    /// acknowledged something (it heard from a peer the sensor did not see).
    fn count_one_sided(&mut self, rec: &rstwatch_schema::FlowRecord) {
        let acked = rec
            .history
            .bytes()
            .any(|c| matches!(c, b'A' | b'a' | b'D' | b'd'));
        if acked {
            self.counters.flows_conversing += 1;
            if rec.orig_pkts == 0 || rec.resp_pkts == 0 {
                self.counters.flows_one_sided += 1;
            }
        }
    }

    /// Gives released RSTs their verdict and cause, feeds the detectors and emits both.
    fn emit_released<S: Sink + ?Sized>(&mut self, released: &mut Vec<Held>, sink: &mut S) {
        for mut h in released.drain(..) {
            if !self.pending.holds(h.flow) {
                let f = self.table.get_mut(h.flow);
                f.bits &= !bits::HAS_PENDING;
            }
            h.ev.suspect = verdict::is_suspect(&h.ev);
            self.detectors.observe(&h.ev, &mut self.anomalies);
            h.evidence.first_cause = self.table.get(h.flow).first_cause();
            let (cause, detail) = cause::decide(
                &h.ev,
                &h.evidence,
                &Aggregates {
                    detectors: &self.detectors,
                    overload: &self.cross.overload,
                    reboot: &self.cross.reboot,
                    settings: &self.settings,
                },
            );
            h.ev.cause = cause;
            h.ev.cause_detail = detail;
            self.counters.causes[cause as usize] += 1;
            self.table.get_mut(h.flow).note_cause(cause);
            if cause == Cause::StateLoss && h.evidence.mac_changed {
                self.failover(&h.ev, &h.evidence);
            }
            sink.rst(h.ev);
            for a in self.anomalies.drain(..) {
                sink.anomaly(a);
            }
        }
    }

    /// Counts a flow reset from a server's new MAC; reports `failover` at the threshold.
    fn failover(&mut self, ev: &RstEvent, e: &Evidence) {
        let server = e.server;
        self.cross.failover.note(server, ev.flow_uid, ev.ts_us);
        let Some(flows) = self.cross.failover.reached(&server, ev.ts_us) else {
            return;
        };
        let old = self.cross.server_macs.before(&server, e.rst_mac);
        let f = Failover {
            ts_us: ev.ts_us,
            server,
            old_mac: Mac(old.unwrap_or(0)),
            new_mac: Mac(e.rst_mac),
            flows,
            need: self.cross.failover.need(),
        };
        self.detectors.failover(&f, &mut self.anomalies);
    }
}

/// A new SYN from the originator, with a new ISN, on a flow that already ended (FIN or
/// RST): the four-tuple is being reused for a new connection.
fn restarts(flow: &Flow, p: &Packet, sender: End) -> bool {
    if !(p.flags.syn() && !p.flags.ack() && !p.flags.rst()) {
        return false;
    }
    let any = flow.dirs[0].flags | flow.dirs[1].flags;
    if any & (dflags::FIN | dflags::RST) == 0 {
        return false;
    }
    let d = flow.dir(flow.role_of(sender));
    !(d.has(dflags::SYN) && d.base == p.seq.wrapping_add(1))
}

/// Parses frames for fan-out and picks each one's engine: the symmetric hash of its
/// flow key (both directions of a flow give the same value; a tunnelled frame hashes
/// its inner four-tuple, the key without its tunnel slot, which is each engine's own,
/// so both directions of an inner flow meet whatever the outer addresses), mapped to
/// an engine by [`fanout_index`]. A frame that does not parse goes to engine 0, which
/// counts why. Used by `replay --workers`' reader and live fan-out's capture threads,
/// which hand the engines the parsed frames ([`ParsedBatch`],
/// [`Engine::process_parsed`]) instead of parsing each frame twice.
pub struct FanoutParser {
    opts: ParseOptions,
    /// [`hash_key`](crate::flow::hash_key)'s hasher, looked up once.
    hasher: KeyHasher,
    /// The last frame parsed.
    packet: Packet,
}

impl FanoutParser {
    /// Parsing with `opts`, which must be the engines' own
    /// ([`EngineConfig::parse_options`](crate::EngineConfig::parse_options)).
    pub fn new(opts: ParseOptions) -> FanoutParser {
        FanoutParser {
            opts,
            hasher: KeyHasher::get(),
            packet: Packet::EMPTY,
        }
    }

    /// Parses `frame`: its engine of `n` and the outcome; the packet is
    /// [`FanoutParser::packet`] (meaningful when the outcome is `Ok`).
    #[inline]
    pub fn parse(&mut self, link: LinkType, frame: &[u8], n: usize) -> (usize, Result<(), Reject>) {
        let outcome = parse::parse_into(link, frame, self.opts, &mut self.packet);
        let engine = match outcome {
            Ok(()) => fanout_index(self.hasher.hash(&FlowKey::of(&self.packet).0), n),
            Err(_) => 0,
        };
        (engine, outcome)
    }

    /// The packet of the last frame parsed.
    pub fn packet(&self) -> &Packet {
        &self.packet
    }
}

/// The worker, of `n`, that a frame of fan-out hash `hash` goes to: the hash mixed
/// once more ([`mix64`]), then scaled to `0..n` by a multiply (its high 64 bits).
///
/// Why mixed: the key hash (foldhash's fast variant, seeded per process) does not
/// spread structured keys (one client, sequential ports) evenly enough in any fixed
/// bits for some seeds. Over 240,000 such flows, 16 workers, 300 processes each, a
/// worker got 5 % or more over its share in 3 processes by the high bits and in 10 by
/// `hash % n` (the mapping before), in none once mixed (the test in
/// `cli/replay/parallel/fanout.rs`). Why a multiply: a 64-bit division took 8 % of
/// the `replay --workers` reader's samples; the mix is two multiplies.
#[inline]
pub fn fanout_index(hash: u64, n: usize) -> usize {
    ((u128::from(mix64(hash)) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::encap::wrap;
    use crate::gen::packet::{build, Wire, ACK, PSH, SYN};
    use rstwatch_schema::{Encap, IpBytes};
    use std::net::IpAddr;

    /// `f` with one 802.1Q tag (id 7) after the MAC addresses.
    fn tagged(f: &[u8]) -> Vec<u8> {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        t.extend_from_slice(&f[12..]);
        t
    }

    /// Both directions of a flow go to one engine, a tunnelled flow to the engine of
    /// its plain form (fan-out keys the inner flow), for v4 and v6, SYNs and data; a
    /// frame that does not parse goes to engine 0 with the parser's reason.
    #[test]
    fn fanout_parser_sends_a_flow_to_one_engine() {
        let opts = crate::config::EngineConfig::default().parse_options();
        let mut fp = FanoutParser::new(opts);
        let eth = LinkType::Ethernet;
        let pairs: [(IpAddr, IpAddr); 2] = [
            (
                "192.0.2.1".parse().unwrap(),
                "198.51.100.7".parse().unwrap(),
            ),
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2:7".parse().unwrap(),
            ),
        ];
        let mut engines = std::collections::HashSet::new();
        for (a, b) in pairs {
            for port in 40_000..40_040u16 {
                for (flags, payload) in [(SYN, &[][..]), (ACK | PSH, &[7u8; 100][..])] {
                    let fwd = build(&Wire {
                        payload,
                        ..Wire::tcp(a, port, b, 443, flags, 1, 0)
                    });
                    let rev = build(&Wire {
                        payload,
                        ..Wire::tcp(b, 443, a, port, flags | ACK, 9, 2)
                    });
                    let (w, outcome) = fp.parse(eth, &fwd, 7);
                    assert!(outcome.is_ok());
                    engines.insert(w);
                    assert_eq!(fp.parse(eth, &rev, 7).0, w, "the reverse direction");
                    let (wt, _) = fp.parse(eth, &tagged(&fwd), 7);
                    let (wtr, _) = fp.parse(eth, &tagged(&rev), 7);
                    assert_eq!(wt, wtr, "both directions, tagged");
                    for encap in Encap::ALL.iter().copied().filter(|&e| e != Encap::None) {
                        let (we, outcome) = fp.parse(eth, &wrap(&fwd, encap, 1), 7);
                        assert!(outcome.is_ok(), "{encap:?}");
                        assert_eq!(we, w, "{encap:?} against the plain form");
                        assert_eq!(fp.parse(eth, &wrap(&rev, encap, 2), 7).0, w, "{encap:?}");
                    }
                }
            }
        }
        assert!(engines.len() > 1, "flows spread over engines: {engines:?}");
        assert_eq!(fp.parse(eth, &[0u8; 7], 7), (0, Err(Reject::TruncatedLink)));
    }

    /// Parsed frames handed over in large batches (`replay --workers`' 1,024) end the
    /// lookup ways' trial as soon as the one-engine path's calls would: the trial
    /// times calls, and one call a batch made it last 16 times as many frames.
    #[test]
    fn a_large_parsed_batch_is_timed_in_calls_of_the_one_engine_size() {
        let mut e = Engine::new(&crate::config::EngineConfig::default());
        let mut fp = FanoutParser::new(e.parse_opts);
        let mut batch = ParsedBatch::with_capacity(1024);
        let (a, b): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
        );
        // One engine's `replay` calls the batch path with this many frames at most.
        let trial = lookup_batch::LookupBatch::trial_frames(READ_BATCH);
        let mut sink: Vec<rstwatch_schema::Record> = Vec::new();
        assert!(e.lookup_batch.in_trial(), "a trial starts at once");
        let mut frames = 0;
        while frames < trial + 1024 {
            batch.clear();
            for i in 0..1024u32 {
                let port = 1024 + (frames as u32 + i) % 60_000;
                let f = build(&Wire::tcp(a, port as u16, b, 443, SYN, 1, 0));
                let (_, outcome) = fp.parse(LinkType::Ethernet, &f, 1);
                batch.push((frames + i as usize) as i64, outcome, fp.packet());
            }
            e.process_parsed(&batch, &mut sink);
            frames += 1024;
        }
        assert!(
            !e.lookup_batch.in_trial(),
            "still trying ways after {frames} frames"
        );
    }

    /// The workers' shares of many flows, by [`fanout_index`] of their key hash, are
    /// even (within 5 % of 1/n for 240,000 flows, where chance alone strays under 1 %
    /// at one standard deviation), and every index is a worker's.
    #[test]
    fn fanout_index_spreads_flows_evenly() {
        let hasher = KeyHasher::get();
        let client = IpBytes::from_v4([192, 0, 2, 1]);
        let hashes: Vec<u64> = (0..240_000u32)
            .map(|i| {
                let server = IpBytes::from_v4([198, 51, 100, (i % 200) as u8]);
                let port = 1024 + (i / 200) as u16;
                hasher.hash(&FlowKey::between((client, port), (server, 443), (0, 0)).0)
            })
            .collect();
        for n in [1usize, 2, 3, 4, 7, 16] {
            let mut shares = vec![0usize; n];
            for &x in &hashes {
                shares[fanout_index(x, n)] += 1;
            }
            let even = hashes.len() as f64 / n as f64;
            for (w, &c) in shares.iter().enumerate() {
                let off = (c as f64 - even).abs() / even;
                assert!(
                    off < 0.05,
                    "{n} workers: worker {w} has {c} flows, {even:.0} even"
                );
            }
        }
    }
}
