//! The engines and their queues, run by whichever thread is free.
//!
//! Each engine is a *lane*: a queue of batches and, behind a lock, the engine and its
//! output. A thread takes a lane's lock and only then its next batch, so the batches
//! of a lane (and the frames of a flow) are run in the reader's order, whichever
//! thread runs them. The workers run any lane with work, the fullest first. The
//! reader waits only when the lanes hold [`Lanes::new`]'s total *and* the batch's own
//! lane holds its share of it, not when one lane is full, and while it waits it runs
//! batches itself.
//!
//! Why: with one engine per thread, the reader was a third thread on two cores, and it
//! could wait on one engine's full queue while the other engine's queue ran dry; a
//! core then idled (11–17 % of the two cores' time in single `--workers 2` runs by
//! `/proc/stat`; medians 9.5–11 % against 6.5–8 % with lanes). Alternating against
//! it, `--workers 2` on two cores took 0.91–1.05× the wall time (eight series, median
//! 0.98): a few per cent, most when a core idled (RESULTS.md, "`--workers`: lanes").
//!
//! Why the share: with the total alone, a lane the reader had emptied by running its
//! batches could not be fed while the other lane held the whole total, and the worker
//! held that lane; the reader then spun until the worker let it go, its core idle
//! (`--workers 2` on two cores, the host busy: 0–21,755 such spins a run, each with a
//! lane empty; with the share, none in 11 of 12 runs, 540 in one). On a quiet host it
//! changed neither the wall time nor the CPU (1.013 and 0.991 of them, 16 rounds).

use super::output::{Chunks, Shared};
use super::reader::Batch;
use crate::config::EngineConfig;
use crate::output::{JsonLines, Select};
use crate::Engine;
use crossbeam::channel::{Receiver, Sender, TryRecvError};
use crossbeam::utils::Backoff;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::time::Duration;

/// An engine and where its records go.
struct Worker<W: Write> {
    engine: Engine,
    sink: JsonLines<Chunks<W>>,
    /// The reader's time of the last batch run: never decreasing, if the lane's
    /// batches run in the reader's order (checked in debug builds).
    last_now_us: i64,
}

/// One engine's queue and state.
struct Lane<W: Write> {
    queue: Receiver<Batch>,
    state: Mutex<State<W>>,
}

/// Where a lane's engine is.
enum State<W: Write> {
    /// Boxed: an engine is kilobytes, the other states a few words.
    Running(Box<Worker<W>>),
    /// Its queue closed and emptied, its engine ended (by the thread that found it so,
    /// so the engines end in parallel): the engine's counters and the records written.
    Done(Vec<(&'static str, u64)>, std::io::Result<u64>),
    /// A thread panicked running it, so its state is suspect: its batches are dropped
    /// from then on (so the reader never waits on it), and the replay reports it.
    Failed,
}

/// What one try at a lane did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Ran (or dropped) a batch.
    Ran,
    /// Nothing to run now: the queue is empty, or another thread holds the lane.
    Nothing,
    /// The queue is closed and empty: the lane is done (its engine ended).
    Closed,
}

/// The lanes and where finished batches go.
pub(super) struct Lanes<W: Write> {
    lanes: Vec<Lane<W>>,
    /// Batches in the lanes' queues, all lanes together.
    queued: AtomicUsize,
    /// Each lane's share of the batches queued ([`Lanes::max_queued`]).
    depth: usize,
    /// Batches go back to the reader, their vectors' memory reused.
    recycle: Sender<Batch>,
    bell: Doorbell,
}

/// How long a sleeping thread waits for a ring at most. Only a backstop: every event a
/// sleeper waits for rings. In tests it is long, so that a missing ring fails a test
/// (`ending_a_lane_wakes_a_thread_waiting_for_it`) rather than costing 10 ms, and a
/// test thread held up by a busy machine cannot pass for one.
const BACKSTOP: Duration = if cfg!(test) {
    Duration::from_secs(10)
} else {
    Duration::from_millis(10)
};

/// Where idle workers sleep until a batch is sent or a lane is let go (an event
/// count). A worker that found nothing usually waits for the thread holding the one
/// lane with work, for a batch's time (~0.1 ms): it must wake then, not a tick later.
struct Doorbell {
    /// Rings so far: a worker sleeps only if none came since it last looked for work.
    rings: AtomicU64,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    ring: Condvar,
    /// Sleeps that ended by the backstop rather than a ring.
    #[cfg(test)]
    timeouts: AtomicU64,
}

impl Doorbell {
    fn rings(&self) -> u64 {
        self.rings.load(Ordering::SeqCst)
    }

    /// Counts a ring and wakes the sleepers, if any (no system call when there are none).
    fn ring(&self) {
        self.rings.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.ring.notify_all();
        }
    }

    /// Sleeps until the next ring, unless one came after `seen` (the count read before
    /// the caller last looked for work). The timeout is only a backstop.
    fn sleep(&self, seen: u64) {
        let g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // Counted as a sleeper first: a ring from now on takes the lock to notify, so
        // it cannot fall between this check and the wait.
        if self.rings() == seen {
            let _woken = self.ring.wait_timeout(g, BACKSTOP);
            #[cfg(test)]
            if _woken.is_ok_and(|(_, r)| r.timed_out()) {
                self.timeouts.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<W: Write + Send> Lanes<W> {
    /// `n` lanes holding at most `depth` batches each on average (a lane may hold more
    /// while another holds fewer); the senders are the reader's.
    pub(super) fn new(
        n: usize,
        depth: usize,
        cfg: &EngineConfig,
        select: Select,
        out: &Arc<Shared<W>>,
        recycle: Sender<Batch>,
    ) -> (Arc<Lanes<W>>, Vec<Sender<Batch>>) {
        let (mut lanes, mut senders) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            // Unbounded: the reader waits on the lanes' total, not on one lane, so a
            // full lane never holds back the frames of the others (whose threads
            // would otherwise idle while the reader waits).
            let (tx, rx) = crossbeam::channel::unbounded();
            lanes.push(Lane {
                queue: rx,
                state: Mutex::new(State::Running(Box::new(Worker {
                    engine: Engine::for_files(cfg),
                    sink: JsonLines::new(Chunks::new(out.clone()), select),
                    last_now_us: i64::MIN,
                }))),
            });
            senders.push(tx);
        }
        let bell = Doorbell {
            rings: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            ring: Condvar::new(),
            #[cfg(test)]
            timeouts: AtomicU64::new(0),
        };
        let lanes = Lanes {
            lanes,
            queued: AtomicUsize::new(0),
            depth,
            recycle,
            bell,
        };
        (Arc::new(lanes), senders)
    }

    /// The reader waits for this many queued (bounds its lead, and so the parsed frames
    /// held) when the batch's lane holds its share or more; a lane holding fewer takes
    /// it at once. So at most `max_queued + (lanes - 1) * depth` are queued.
    fn max_queued(&self) -> usize {
        self.depth * self.lanes.len()
    }

    /// Runs the next batch of lane `i` if it has one and no other thread holds it.
    fn step(&self, i: usize) -> Step {
        let lane = &self.lanes[i];
        let mut g = match lane.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => return Step::Nothing,
            Err(TryLockError::Poisoned(p)) => {
                let mut g = p.into_inner();
                *g = State::Failed;
                lane.state.clear_poison();
                g
            }
        };
        // The batch is taken under the lane's lock: the lane's order is the queue's.
        let mut b = match lane.queue.try_recv() {
            Ok(b) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                b
            }
            Err(TryRecvError::Empty) => return Step::Nothing,
            Err(TryRecvError::Disconnected) => {
                let ending = matches!(*g, State::Running(_));
                g.end();
                drop(g);
                if ending {
                    // A thread that found this lane held may be asleep, waiting for
                    // it: it must see it closed now. Without this ring, when one
                    // thread was still ending a lane as the other finished, the other
                    // slept to the backstop: both idle for 10 ms of a ~130 ms
                    // `--workers 2` replay (`perf sched timehist`).
                    self.bell.ring();
                }
                return Step::Closed;
            }
        };
        if let State::Running(w) = &mut *g {
            w.run(&mut b);
        }
        drop(g);
        // A worker may be waiting for this lane.
        self.bell.ring();
        b.frames.clear();
        let _ = self.recycle.send(b);
        Step::Ran
    }

    /// Runs one batch of any lane, the one with the most queued first (the one the
    /// others are likeliest to wait on). `Closed`: every lane is.
    fn step_any(&self) -> Step {
        let n = self.lanes.len();
        let first = (0..n)
            .max_by_key(|&i| self.lanes[i].queue.len())
            .unwrap_or(0);
        let mut open = false;
        for k in 0..n {
            match self.step((first + k) % n) {
                Step::Ran => return Step::Ran,
                Step::Nothing => open = true,
                Step::Closed => {}
            }
        }
        if open {
            Step::Nothing
        } else {
            Step::Closed
        }
    }

    /// A worker thread (or the reader once it has read everything): runs batches until
    /// every lane is closed and empty. Spins briefly when there is nothing to do, then
    /// sleeps until a batch is sent or a lane let go.
    pub(super) fn work(&self) {
        let backoff = Backoff::new();
        loop {
            let seen = self.bell.rings();
            match self.step_any() {
                Step::Ran => backoff.reset(),
                Step::Nothing if backoff.is_completed() => {
                    self.bell.sleep(seen);
                    backoff.reset();
                }
                Step::Nothing => backoff.snooze(),
                Step::Closed => return,
            }
        }
    }

    /// The reader is done: every queue is closed (its senders dropped). Wakes the
    /// workers so they see it.
    pub(super) fn closed(&self) {
        self.bell.ring();
    }

    /// The reader's hand-over: sends `b` to lane `i` once fewer than the most batches
    /// are queued or lane `i` holds less than its share, running batches itself until
    /// then. A lane that is gone drops it.
    pub(super) fn send(&self, senders: &[Sender<Batch>], i: usize, b: Batch) {
        let backoff = Backoff::new();
        while self.queued.load(Ordering::SeqCst) >= self.max_queued()
            && self.lanes[i].queue.len() >= self.depth
        {
            // Nothing to run: the workers hold the lanes with work; one lets go soon.
            if self.step_any() == Step::Ran {
                backoff.reset();
            } else {
                backoff.snooze();
            }
        }
        // Counted before it can be taken, so the count never goes below zero.
        self.queued.fetch_add(1, Ordering::SeqCst);
        if senders[i].send(b).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        self.bell.ring();
    }

    /// The engines' counters, summed, and the records written or the first error.
    /// Call once every thread has stopped working: every lane is then done.
    pub(super) fn finish(&self) -> (Vec<(&'static str, u64)>, std::io::Result<u64>) {
        let mut counters: Vec<(&'static str, u64)> = Vec::new();
        let mut written = Ok(0);
        for lane in &self.lanes {
            let mut g = lane.state.lock().unwrap_or_else(|p| p.into_inner());
            if lane.state.is_poisoned() {
                *g = State::Failed;
            }
            g.end();
            let w = match std::mem::replace(&mut *g, State::Failed) {
                State::Done(c, w) => {
                    crate::counters::add_named(&mut counters, &c);
                    w
                }
                _ => Err(std::io::Error::other("a replay worker panicked")),
            };
            written = match (written, w) {
                (Ok(a), Ok(b)) => Ok(a + b),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        (counters, written)
    }
}

impl<W: Write> State<W> {
    /// Ends a running engine (done and failed lanes stay as they are). Failed until it
    /// has ended: a panic in the engine's end leaves it so.
    fn end(&mut self) {
        *self = match std::mem::replace(self, State::Failed) {
            State::Running(w) => w.end(),
            other => other,
        };
    }
}

impl<W: Write> Worker<W> {
    /// Ends the engine (the records of the flows still open) and flushes its output.
    fn end(mut self) -> State<W> {
        self.engine.finish(&mut self.sink);
        State::Done(self.engine.counters(), self.sink.finish())
    }

    /// The engine's batch path over one batch's parsed frames, then its clock run to
    /// the reader's time.
    fn run(&mut self, b: &mut Batch) {
        debug_assert!(
            b.now_us >= self.last_now_us,
            "a lane's batches ran out of order"
        );
        self.last_now_us = b.now_us;
        self.engine.process_parsed(&b.frames, &mut self.sink);
        self.engine.advance(b.now_us, &mut self.sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Packet, Reject};

    /// Lanes writing into memory, the reader's senders, and where batches come back.
    type TestLanes = (Arc<Lanes<Vec<u8>>>, Vec<Sender<Batch>>, Receiver<Batch>);

    /// `n` lanes of `depth`.
    fn lanes(n: usize, depth: usize) -> TestLanes {
        let out = Shared::new(Vec::new());
        let (recycle_tx, recycle_rx) = crossbeam::channel::unbounded();
        let cfg = EngineConfig::default();
        let (lanes, queues) = Lanes::new(n, depth, &cfg, Select::default(), &out, recycle_tx);
        (lanes, queues, recycle_rx)
    }

    /// Sends `batches` batches of `per` frames over `n` lanes of `depth`, with
    /// `threads` worker threads; returns the engines' summed counters. The frames are
    /// ones the reader could not parse: each engine counts them, in `frames`.
    fn run(
        n: usize,
        depth: usize,
        threads: usize,
        batches: usize,
        per: usize,
    ) -> Vec<(&'static str, u64)> {
        let (lanes, queues, recycle_rx) = lanes(n, depth);
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let lanes = lanes.clone();
                std::thread::spawn(move || lanes.work())
            })
            .collect();
        for i in 0..batches {
            let mut b = recycle_rx.try_recv().unwrap_or_else(|_| Batch::new());
            b.now_us = i as i64;
            for _ in 0..per {
                b.frames.push(i as i64, Err(Reject::NotIp), &Packet::EMPTY);
            }
            lanes.send(&queues, i % n, b);
            assert!(
                lanes.queued.load(Ordering::SeqCst) <= lanes.max_queued() + (n - 1) * depth,
                "the reader queued past its bound"
            );
        }
        drop(queues);
        lanes.closed();
        lanes.work();
        for h in handles {
            h.join().unwrap();
        }
        let (counters, written) = lanes.finish();
        written.unwrap();
        counters
    }

    fn count(counters: &[(&'static str, u64)], name: &str) -> u64 {
        counters
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |&(_, v)| v)
    }

    /// With no worker thread the reader runs every batch itself, whenever the lanes
    /// hold their total: nothing waits on a thread that does not exist.
    #[test]
    fn the_reader_alone_runs_every_batch() {
        let c = run(3, 1, 0, 300, 4);
        assert_eq!(count(&c, "frames"), 1200);
    }

    /// A lane with less than its share takes the reader's batch at once, even while
    /// the other lane holds the whole total and a worker holds that lane (so the
    /// reader can run none of it): the reader does not wait on work it cannot do.
    #[test]
    fn a_lane_short_of_its_share_is_fed_while_another_holds_the_total() {
        let (lanes, queues, _recycle_rx) = lanes(2, 2);
        for _ in 0..4 {
            lanes.send(&queues, 0, Batch::new());
        }
        assert_eq!(lanes.queued.load(Ordering::SeqCst), lanes.max_queued());
        // As a worker running lane 0 would.
        let held = lanes.lanes[0].state.lock().unwrap();
        let (done_tx, done_rx) = crossbeam::channel::bounded(1);
        std::thread::scope(|s| {
            s.spawn(|| {
                lanes.send(&queues, 1, Batch::new());
                done_tx.send(()).unwrap();
            });
            let fed = done_rx.recv_timeout(Duration::from_secs(10));
            // Let a waiting reader go, so the scope can end either way.
            drop(held);
            assert!(fed.is_ok(), "the reader waited with lane 1 empty");
        });
        assert_eq!(lanes.lanes[1].queue.len(), 1);
        drop(queues);
        lanes.closed();
        lanes.work();
        let (_, written) = lanes.finish();
        written.unwrap();
    }

    /// A thread asleep because another held a lane wakes when that lane is ended,
    /// not at the doorbell's backstop: the lane's end rings.
    #[test]
    fn ending_a_lane_wakes_a_thread_waiting_for_it() {
        let (lanes, queues, _recycle_rx) = lanes(2, 1);
        drop(queues);
        lanes.closed();
        // This thread holds lane 0, so the worker ends lane 1, finds lane 0 held and
        // sleeps.
        let held = lanes.lanes[0].state.lock().unwrap();
        let worker = {
            let lanes = lanes.clone();
            std::thread::spawn(move || lanes.work())
        };
        while lanes.bell.sleepers.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        drop(held);
        assert!(lanes.step(0) == Step::Closed, "lane 0's queue is closed");
        worker.join().unwrap();
        assert_eq!(
            lanes.bell.timeouts.load(Ordering::SeqCst),
            0,
            "the worker slept until the backstop"
        );
        let (counters, written) = lanes.finish();
        written.unwrap();
        assert!(!counters.is_empty());
    }

    /// Worker threads and the reader together run every batch exactly once, however
    /// the lanes' locks and the total bound interleave them, and each lane's in the
    /// order sent (`Worker::run`'s debug check of the batches' times).
    #[test]
    fn workers_and_the_reader_run_every_batch_once() {
        for (n, threads) in [(2, 1), (4, 3), (3, 5)] {
            let c = run(n, 2, threads, 3000, 8);
            assert_eq!(count(&c, "frames"), 24_000, "{n} lanes, {threads} threads");
        }
    }
}
