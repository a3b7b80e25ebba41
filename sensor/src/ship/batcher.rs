//! The batcher thread: records → rkyv batches bounded by count, bytes and age →
//! compressed frames → the spool.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError};
use rstwatch_schema::frame::{self, Codec, Kind};
use rstwatch_schema::{Batch, BatchHeader, SCHEMA_VERSION};

use super::spool::Pushed;
use super::{now_us, Link, Msg, Shared};

/// A full spool waits this long for the sender to make progress before it evicts.
const DRAIN_STALL: Duration = Duration::from_secs(30);

pub(crate) struct Batcher {
    pub(crate) rx: Receiver<Msg>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) sensor_id: String,
    pub(crate) boot_id: u64,
    pub(crate) seq: u64,
    pub(crate) max_events: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_age: Duration,
    pub(crate) codec: Codec,
    /// The memory fallback was announced already.
    pub(crate) warned_memory: bool,
    /// While the spool is full: since when the sender has made no progress, and its
    /// progress count then. Kept across batches, so once draining has stalled, later
    /// batches evict at once instead of each waiting again.
    pub(crate) full_since: Option<(Instant, u64)>,
}

impl Batcher {
    fn empty(&self) -> Batch {
        Batch {
            header: BatchHeader {
                schema_version: SCHEMA_VERSION,
                sensor_id: self.sensor_id.clone(),
                boot_id: self.boot_id,
                seq: 0,
                created_us: 0,
            },
            rst: Vec::new(),
            flows: Vec::new(),
            anomalies: Vec::new(),
            stats: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) -> anyhow::Result<()> {
        let mut batch = self.empty();
        let mut bytes = 0usize;
        let mut opened: Option<Instant> = None;
        loop {
            let msg = match opened {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(t) => self
                    .rx
                    .recv_timeout((t + self.max_age).saturating_duration_since(Instant::now())),
            };
            let finish = match msg {
                Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => true,
                Err(RecvTimeoutError::Timeout) => {
                    self.seal(&mut batch)?;
                    bytes = 0;
                    opened = None;
                    continue;
                }
                Ok(m) => {
                    bytes += match m {
                        Msg::Rst(e) => {
                            batch.rst.push(e);
                            80
                        }
                        Msg::Flow(f) => {
                            let n = 128 + f.history.len();
                            batch.flows.push(f);
                            n
                        }
                        Msg::Anomaly(a) => {
                            let n = 64 + a.subject.len() + a.detail.len();
                            batch.anomalies.push(a);
                            n
                        }
                        Msg::Stats(s) => {
                            let n =
                                32 + s.counters.iter().map(|c| 24 + c.name.len()).sum::<usize>();
                            batch.stats.push(s);
                            n
                        }
                        Msg::Finish => unreachable!(),
                    };
                    opened.get_or_insert_with(Instant::now);
                    false
                }
            };
            if finish {
                if !batch.is_empty() {
                    self.seal(&mut batch)?;
                }
                return Ok(());
            }
            if batch.len() >= self.max_events || bytes >= self.max_bytes {
                self.seal(&mut batch)?;
                bytes = 0;
                opened = None;
            }
        }
    }

    fn seal(&mut self, batch: &mut Batch) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut b = std::mem::replace(batch, self.empty());
        b.header.seq = self.seq;
        b.header.created_us = now_us();
        self.seq += 1;
        let events = b.len() as u64;
        let raw = b.to_bytes();
        let f = frame::encode(Kind::Batch, self.codec, 0, &raw);
        let c = &self.shared.c;
        c.batches_sealed.fetch_add(1, Relaxed);
        c.events_sealed.fetch_add(events, Relaxed);
        c.raw_bytes.fetch_add(raw.len() as u64, Relaxed);
        self.spool_batch(b.header.seq, events, &f);
        self.shared.cv.notify_all();
        Ok(())
    }

    /// Puts a sealed batch into the spool. When the spool is full, waits for the
    /// sender to drain it while a collector answers (or has not been tried yet), and
    /// evicts the oldest batches only while none does, or when draining stalls.
    fn spool_batch(&mut self, seq: u64, events: u64, f: &[u8]) {
        let mut sp = self.shared.spool.lock().unwrap();
        loop {
            match sp.push(self.boot_id, seq, events, f) {
                Pushed::Disk => return,
                Pushed::Memory(why) => {
                    if !self.warned_memory {
                        self.warned_memory = true;
                        eprintln!(
                            "rstwatch-sensor: cannot write the spool ({why}): shipping from \
                             memory (bounded by --spool-memory-bytes); batches held only in \
                             memory are lost if the sensor stops before they are acknowledged"
                        );
                    }
                    return;
                }
                Pushed::Lost(why) => {
                    eprintln!("rstwatch-sensor: batch {seq} ({events} events) LOST: {why}");
                    return;
                }
                Pushed::Full => {}
            }
            let acked = self.shared.c.batches_acked.load(Relaxed) + sp.losses.quarantined_batches;
            let (since, at) = match self.full_since {
                Some((t, n)) if n == acked => (t, n),
                _ => (Instant::now(), acked),
            };
            self.full_since = Some((since, at));
            let stalled = since.elapsed() > DRAIN_STALL;
            if self.shared.link() == Link::Down || self.shared.stop.load(Relaxed) || stalled {
                sp.evict_oldest();
                eprintln!(
                    "rstwatch-sensor: spool full ({} bytes) and {}: evicted the oldest \
                     batch, {} events lost so far",
                    sp.bytes(),
                    if stalled {
                        "the collector is not draining it"
                    } else {
                        "no collector answers"
                    },
                    sp.losses.evicted_events
                );
                continue;
            }
            sp = self
                .shared
                .cv
                .wait_timeout(sp, Duration::from_millis(50))
                .unwrap()
                .0;
        }
    }
}
