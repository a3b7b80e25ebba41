//! RSTs held for their verdict delay.
//!
//! Some evidence comes after the RST: the purported sender's next packets
//! (`data_after`) or more RSTs (`multi_seq`, `multi_ack`). An RST is held until its
//! deadline in packet time, or until its flow ends, then released with its final flags.
//! Bounded: when `max` RSTs are held, the oldest is released early (counted by the
//! engine as `rst_released_early`).

use super::evidence::Evidence;
use crate::flow::Role;
use rstwatch_schema::{RstEvent, RstFlags};
use std::collections::VecDeque;

/// One held RST.
#[derive(Debug, Clone)]
pub struct Held {
    /// Released at this packet time at the latest.
    pub deadline_us: i64,
    /// The flow's slot in the table.
    pub flow: u32,
    /// Which side of the flow sent it.
    pub role: Role,
    /// The event. The flags it gains while held wait in its [`Brief`] until release.
    pub ev: RstEvent,
    /// What the cause rules will look at when it is released (the peer's first data
    /// after it, likewise, from the brief).
    pub evidence: Evidence,
}

/// RSTs one flow holds at most (see [`Pending::hold`]).
pub const MAX_PER_FLOW: usize = 64;

/// What the flow's later packets read and add while an RST is held. It is kept with
/// the flow's entry, next to the flow's other held RSTs, and merged into the
/// [`Held`] when that is released. A `Held` is 128 bytes, and a flow's are scattered
/// through the queue among every other flow's. Walking them at each packet of a flow
/// that holds many (a blind RST flood) was a cache miss per RST.
#[derive(Debug, Clone, Copy)]
pub struct Brief {
    /// Which side sent the RST.
    pub role: Role,
    /// The RST's time.
    pub ts_us: i64,
    /// The RST's sequence number.
    pub seq: u32,
    /// Its acknowledgment number (meaningful with `ack_flag`).
    pub ack: u32,
    /// Whether it carried ACK.
    pub ack_flag: bool,
    /// Flags to add to the event when it is released.
    pub add: RstFlags,
    /// [`Evidence::peer_data_after_rst_us`], once known.
    pub peer_data_after_rst_us: Option<i64>,
}

impl Brief {
    fn of(h: &Held) -> Brief {
        Brief {
            role: h.role,
            ts_us: h.ev.ts_us,
            seq: h.ev.seq,
            ack: h.ev.ack,
            ack_flag: h.ev.ack_flag,
            add: RstFlags::EMPTY,
            peer_data_after_rst_us: h.evidence.peer_data_after_rst_us,
        }
    }

    /// What was learnt while it was held, into the released RST.
    fn merge_into(self, h: &mut Held) {
        h.ev.flags.0 |= self.add.0;
        h.evidence.peer_data_after_rst_us = self.peer_data_after_rst_us;
    }
}

/// One flow's held RSTs.
#[derive(Default)]
struct FlowHeld {
    /// Each one's sequence number in the queue and its brief, oldest first.
    rsts: Vec<(u64, Brief)>,
    /// Index `role as usize`: how many of them, from the oldest, have had payload from
    /// that side noted ([`Pending::note_payload`]); the RSTs held since follow.
    noted: [usize; 2],
}

impl FlowHeld {
    /// Drops the RST at `at`, keeping `noted` pointing past the same RSTs.
    fn remove(&mut self, at: usize) -> (u64, Brief) {
        for n in &mut self.noted {
            if at < *n {
                *n -= 1;
            }
        }
        self.rsts.remove(at)
    }
}

/// The RSTs held for their verdict delay, in deadline order, bounded.
pub struct Pending {
    /// Held RSTs in arrival order (deadlines are arrival + a constant delay, so this is
    /// also deadline order). Released entries leave a `None` until they reach the front.
    queue: VecDeque<Option<Held>>,
    /// Sequence number of `queue[0]`.
    front: u64,
    /// The entries of each flow that holds any.
    by_flow: hashbrown::HashMap<u32, FlowHeld>,
    held: usize,
    max: usize,
    /// When [`Pending::any_due`] turns true: the front entry's deadline, `i64::MIN`
    /// when the front is a released entry, `i64::MAX` (never) when nothing is queued.
    /// Kept by every method that changes the queue (`refresh_due`), so the check every
    /// packet makes is one compare instead of a look into the ring buffer.
    due_at: i64,
}

impl Pending {
    /// Holds at most `max` RSTs (`max_pending_rst`).
    pub fn new(max: usize) -> Pending {
        Pending {
            queue: VecDeque::new(),
            front: 0,
            by_flow: hashbrown::HashMap::new(),
            held: 0,
            max: max.max(1),
            due_at: i64::MAX,
        }
    }

    /// RSTs held now.
    pub fn len(&self) -> usize {
        self.held
    }

    /// No RST held.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Holds `h`. When already full, first releases the oldest into `out` and returns
    /// true (an early release).
    pub fn hold(&mut self, h: Held, out: &mut Vec<Held>) -> bool {
        let early = self.held >= self.max;
        if early {
            self.release_oldest(out);
        }
        let seq = self.front + self.queue.len() as u64;
        let flow = h.flow;
        let mine = self.by_flow.entry(flow).or_default();
        mine.rsts.push((seq, Brief::of(&h)));
        let mut early = early;
        if mine.rsts.len() > MAX_PER_FLOW {
            // One flow holding this many is a blind attack in progress: release its
            // oldest so each later packet of the flow costs a bounded amount of work.
            let (oldest, brief) = mine.remove(0);
            early |= self.release_at(oldest, brief, out);
        }
        self.queue.push_back(Some(h));
        self.held += 1;
        self.refresh_due();
        early
    }

    /// Calls `f` on each held RST of `flow`, oldest first.
    pub fn for_each_of_flow(&mut self, flow: u32, f: impl FnMut(&mut Brief)) {
        if let Some(mine) = self.by_flow.get_mut(&flow) {
            mine.rsts.iter_mut().map(|(_, b)| b).for_each(f);
        }
    }

    /// Payload from `role` on `flow`: calls `f` on each held RST of the flow that has
    /// not seen payload from `role` yet, oldest first. So `f` is what the *first*
    /// payload from a side after an RST means to it (set a flag, fill a time that is
    /// unset), and each held RST costs one call per side instead of one per packet.
    /// That matters under a blind RST flood, where a flow holds up to
    /// [`MAX_PER_FLOW`] RSTs, a new one every few packets, while its data keeps flowing.
    pub fn note_payload(&mut self, flow: u32, role: Role, f: impl FnMut(&mut Brief)) {
        let Some(mine) = self.by_flow.get_mut(&flow) else {
            return;
        };
        let noted = &mut mine.noted[role as usize];
        mine.rsts[*noted..].iter_mut().map(|(_, b)| b).for_each(f);
        *noted = mine.rsts.len();
    }

    /// Does `flow` hold any RST?
    pub fn holds(&self, flow: u32) -> bool {
        self.by_flow.contains_key(&flow)
    }

    /// Whether [`Pending::release_due`] at `now_us` has anything to do: the oldest held
    /// RST is due, or a released one left its place at the front. Checked on every
    /// packet, so the release call (and its caller's bookkeeping) is skipped when not.
    #[inline]
    pub fn any_due(&self, now_us: i64) -> bool {
        // `due_at` of an empty queue is also a deadline's (`i64::MAX`): the rare true
        // answer asks the queue.
        self.due_at <= now_us && !self.queue.is_empty()
    }

    /// The earliest packet time at which [`Pending::any_due`] may say true (`i64::MAX`
    /// when nothing is held): the engine folds it into the one time it checks.
    #[inline]
    pub fn due_at(&self) -> i64 {
        self.due_at
    }

    /// Sets `due_at` from the queue's front (after any change to the queue).
    fn refresh_due(&mut self) {
        self.due_at = match self.queue.front() {
            Some(Some(h)) => h.deadline_us,
            Some(None) => i64::MIN,
            None => i64::MAX,
        };
    }

    /// Releases into `out` every RST whose deadline is at or before `now_us`.
    pub fn release_due(&mut self, now_us: i64, out: &mut Vec<Held>) {
        while let Some(front) = self.queue.front() {
            match front {
                None => {
                    self.pop_front();
                }
                Some(h) if h.deadline_us <= now_us => self.release_oldest(out),
                Some(_) => break,
            }
        }
        self.refresh_due();
    }

    /// Releases into `out` every RST held for `flow` (its flow is ending).
    pub fn release_flow(&mut self, flow: u32, out: &mut Vec<Held>) {
        let Some(mine) = self.by_flow.remove(&flow) else {
            return;
        };
        for (s, brief) in mine.rsts {
            self.release_at(s, brief, out);
        }
        self.refresh_due();
    }

    /// Releases everything (end of input).
    pub fn release_all(&mut self, out: &mut Vec<Held>) {
        while !self.queue.is_empty() {
            self.release_oldest(out);
        }
        self.refresh_due();
    }

    fn release_oldest(&mut self, out: &mut Vec<Held>) {
        while let Some(e) = self.pop_front() {
            if let Some(mut h) = e {
                self.held -= 1;
                if let Some(brief) = self.forget(h.flow, self.front - 1) {
                    brief.merge_into(&mut h);
                }
                out.push(h);
                return;
            }
        }
    }

    /// Releases the queue's RST `seq`, with what its `brief` gathered, into `out`
    /// (its flow's entry has already let it go). Whether it was still held.
    fn release_at(&mut self, seq: u64, brief: Brief, out: &mut Vec<Held>) -> bool {
        let i = (seq - self.front) as usize;
        let Some(mut h) = self.queue.get_mut(i).and_then(Option::take) else {
            return false;
        };
        self.held -= 1;
        brief.merge_into(&mut h);
        out.push(h);
        true
    }

    fn pop_front(&mut self) -> Option<Option<Held>> {
        let e = self.queue.pop_front()?;
        self.front += 1;
        Some(e)
    }

    /// Drops the queue's RST `seq` from its flow's entry; returns its brief.
    fn forget(&mut self, flow: u32, seq: u64) -> Option<Brief> {
        let mine = self.by_flow.get_mut(&flow)?;
        let brief = mine
            .rsts
            .iter()
            .position(|(s, _)| *s == seq)
            .map(|at| mine.remove(at).1);
        if mine.rsts.is_empty() {
            self.by_flow.remove(&flow);
        }
        brief
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstwatch_schema::{Dir, RstClass};

    fn held(flow: u32, deadline_us: i64) -> Held {
        Held {
            deadline_us,
            flow,
            role: Role::Orig,
            ev: RstEvent {
                seq: flow,
                ..RstEvent::new(
                    deadline_us,
                    ("192.0.2.1".parse().unwrap(), 1),
                    ("192.0.2.2".parse().unwrap(), 2),
                    Dir::Orig,
                    RstClass::Abort,
                )
            },
            evidence: Evidence::default(),
        }
    }

    #[test]
    fn releases_by_deadline_by_flow_and_when_full() {
        let mut p = Pending::new(3);
        let mut out = vec![];
        assert!(!p.hold(held(1, 10), &mut out));
        assert!(!p.hold(held(2, 20), &mut out));
        assert!(!p.hold(held(1, 30), &mut out));
        let mut n = 0;
        p.for_each_of_flow(1, |_| n += 1);
        assert_eq!(n, 2);
        // Full: holding a fourth releases the oldest early.
        assert!(p.hold(held(3, 40), &mut out));
        assert_eq!(out.iter().map(|h| h.deadline_us).collect::<Vec<_>>(), [10]);
        out.clear();
        p.release_flow(1, &mut out);
        assert_eq!(out.iter().map(|h| h.deadline_us).collect::<Vec<_>>(), [30]);
        assert!(!p.holds(1));
        out.clear();
        p.release_due(25, &mut out);
        assert_eq!(out.iter().map(|h| h.deadline_us).collect::<Vec<_>>(), [20]);
        out.clear();
        p.release_all(&mut out);
        assert_eq!(out.iter().map(|h| h.deadline_us).collect::<Vec<_>>(), [40]);
        assert!(p.is_empty());
    }

    #[test]
    fn payload_is_noted_once_per_side_on_each_held_rst() {
        let mut p = Pending::new(8);
        let mut out = vec![];
        p.hold(held(1, 10), &mut out);
        p.hold(held(1, 20), &mut out);
        p.hold(held(2, 30), &mut out);
        let mut calls = 0;
        let mut count = |p: &mut Pending, flow, role| {
            let before = calls;
            p.note_payload(flow, role, |_| calls += 1);
            calls - before
        };
        // Each held RST of the flow, once per side.
        assert_eq!(count(&mut p, 1, Role::Orig), 2);
        assert_eq!(count(&mut p, 1, Role::Orig), 0);
        assert_eq!(count(&mut p, 1, Role::Resp), 2);
        assert_eq!(count(&mut p, 1, Role::Resp), 0);
        // Another flow's count is its own.
        assert_eq!(count(&mut p, 2, Role::Orig), 1);
        // A new RST held: only it sees the next payload of each side.
        p.hold(held(1, 40), &mut out);
        assert_eq!(count(&mut p, 1, Role::Orig), 1);
        assert_eq!(count(&mut p, 1, Role::Orig), 0);
        // The oldest released by its deadline: the others keep their place.
        p.release_due(10, &mut out);
        assert_eq!(out.len(), 1);
        p.hold(held(1, 50), &mut out);
        let mut seen = vec![];
        p.note_payload(1, Role::Resp, |b| seen.push(b.ts_us));
        assert_eq!(seen, [40, 50]);
        seen.clear();
        p.note_payload(1, Role::Orig, |b| seen.push(b.ts_us));
        assert_eq!(seen, [50]);
        // Released with its flow: nothing left to note, and a later hold starts afresh.
        p.release_flow(1, &mut out);
        assert_eq!(count(&mut p, 1, Role::Orig), 0);
        p.hold(held(1, 60), &mut out);
        assert_eq!(count(&mut p, 1, Role::Orig), 1);
        assert!(out.iter().all(|h| h.flow == 1));
    }

    #[test]
    fn what_is_learnt_while_held_reaches_the_released_rst() {
        use rstwatch_schema::RstFlag;
        let mut p = Pending::new(2);
        let mut out = vec![];
        p.hold(held(1, 10), &mut out);
        p.hold(held(2, 20), &mut out);
        p.note_payload(1, Role::Resp, |b| b.peer_data_after_rst_us = Some(7));
        p.for_each_of_flow(1, |b| b.add.insert(RstFlag::MultiSeq));
        p.for_each_of_flow(2, |b| b.add.insert(RstFlag::DataAfter));
        // Released early (full), by its flow's end, and by its deadline: each way
        // carries what its brief gathered.
        assert!(p.hold(held(3, 30), &mut out));
        p.release_flow(2, &mut out);
        p.for_each_of_flow(3, |b| b.add.insert(RstFlag::MultiAck));
        p.release_due(30, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|h| (h.flow, h.ev.flags, h.evidence.peer_data_after_rst_us))
            .collect();
        let flags = |f: &[RstFlag]| {
            let mut r = RstFlags::EMPTY;
            f.iter().for_each(|&x| r.insert(x));
            r
        };
        assert_eq!(
            got,
            [
                (1, flags(&[RstFlag::MultiSeq]), Some(7)),
                (2, flags(&[RstFlag::DataAfter]), None),
                (3, flags(&[RstFlag::MultiAck]), None),
            ]
        );
        // The bound per flow releases the oldest with its brief too.
        let mut p = Pending::new(MAX_PER_FLOW * 2);
        out.clear();
        for t in 0..MAX_PER_FLOW as i64 {
            p.hold(held(9, t), &mut out);
        }
        p.for_each_of_flow(9, |b| b.add.insert(RstFlag::MultiSeq));
        assert!(p.hold(held(9, 1000), &mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].ev.ts_us, 0);
        assert_eq!(out[0].ev.flags, flags(&[RstFlag::MultiSeq]));
    }

    #[test]
    fn any_due_says_whether_release_due_has_work() {
        let mut p = Pending::new(8);
        let mut out = vec![];
        assert!(!p.any_due(i64::MAX));
        p.hold(held(1, 10), &mut out);
        p.hold(held(2, 20), &mut out);
        assert!(!p.any_due(9));
        assert!(p.any_due(10));
        // The oldest released with its flow leaves a gap at the front: still work
        // (dropping the gap), though nothing is due.
        p.release_flow(1, &mut out);
        assert!(p.any_due(0));
        out.clear();
        p.release_due(0, &mut out);
        assert!(out.is_empty());
        assert!(!p.any_due(19));
        assert!(p.any_due(20));
    }
}
