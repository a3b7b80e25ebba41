//! The live output stage of `run`: every worker's engine hands its records to a
//! [`ChannelSink`]; one output thread takes them off the queue, feeds the one set of
//! aggregate detectors (several engines), and writes them with the same JSON-lines
//! writer as `replay` ([`crate::output::JsonLines`]) or hands them to the shipper.

use std::cell::RefCell;
use std::io::{BufWriter, StdoutLock, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use rstwatch_schema::{Anomaly, AnomalyKind, FlowRecord, Record, RstEvent};

use crate::anomaly::Detectors;
use crate::capture::Processor;
use crate::engine::Engine;
use crate::output::{JsonLines, Select};
use crate::parse::{LinkType, ParsedBatch};
use crate::ship::ShipSink;
use crate::sink::Sink;

/// Records an engine sends to the output thread at most in one channel operation.
/// Each operation may wake the output thread: on `mixed` traffic at ~420 kpps (a record
/// every 8 frames) the output thread took 44–56 ns a frame with 64, 29–32 with 256
/// (`xdp_bench`, three rounds each).
const SEND_AT: usize = 256;

/// The queue from the workers' engines to the output thread, holding about `records`
/// records: it carries them in batches of at most [`SEND_AT`].
pub(super) fn output_channel(records: usize) -> (Sender<Vec<Record>>, Receiver<Vec<Record>>) {
    bounded(records.div_ceil(SEND_AT).max(1))
}

/// Sends records to the output thread in batches of [`SEND_AT`], and whatever is
/// gathered at each of the worker's ticks (at most 100 ms apart while frames arrive,
/// every 10 ms on an idle link): one channel operation, and at most one wake-up of a
/// sleeping output thread, per batch of records. Sending after every receive batch
/// instead woke the output thread every ~20 frames at 420 kpps and cost both threads a
/// futex call each time (`xdp_bench`: 140–180 ns a frame in the output thread on
/// `mixed`, 100–120 on bulk traffic, against 29–35 and 3–5 now).
/// Records wait at most one tick more; RST events already wait their verdict delay.
/// Never blocks while capturing (a full queue is counted); blocks at the end, when
/// nothing is captured any more.
pub(super) struct ChannelSink {
    tx: Sender<Vec<Record>>,
    buf: Vec<Record>,
    dropped: Arc<AtomicU64>,
    blocking: bool,
    /// Several engines each see only part of the traffic, so their aggregate detectors
    /// (scan, storm, backscatter, injection) would each see a fraction: their anomalies
    /// are dropped here and one set of detectors in the output stage sees every RST.
    /// `failover` is kept: it comes from the engine's own cause evidence (flows of one
    /// server address reset by a new MAC), which the output stage does not have.
    drop_anomalies: bool,
}

impl ChannelSink {
    /// A non-blocking sink counting what a full queue drops in `dropped`.
    pub(super) fn new(
        tx: Sender<Vec<Record>>,
        dropped: Arc<AtomicU64>,
        drop_anomalies: bool,
    ) -> Self {
        ChannelSink {
            tx,
            buf: Vec::new(),
            dropped,
            blocking: false,
            drop_anomalies,
        }
    }

    fn put(&mut self, r: Record) {
        self.buf.push(r);
        if self.buf.len() >= SEND_AT {
            self.send();
        }
    }

    /// Sends the records gathered so far as one batch.
    fn send(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let b = std::mem::replace(&mut self.buf, Vec::with_capacity(SEND_AT));
        if self.blocking {
            let _ = self.tx.send(b);
            return;
        }
        match self.tx.try_send(b) {
            Ok(()) => {}
            Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => {
                self.dropped.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Sink for ChannelSink {
    fn rst(&mut self, ev: RstEvent) {
        self.put(Record::Rst(ev));
    }
    fn flow(&mut self, rec: FlowRecord) {
        self.put(Record::Flow(rec));
    }
    fn anomaly(&mut self, a: Anomaly) {
        if !self.drop_anomalies || a.kind == AnomalyKind::Failover {
            self.put(Record::Anomaly(a));
        }
    }
}

/// One worker's engine and its way to the output.
pub(super) struct EngineProcessor {
    pub(super) engine: Engine,
    pub(super) sink: ChannelSink,
}

impl Processor for EngineProcessor {
    fn frame(&mut self, ts_us: i64, frame: &[u8]) {
        self.engine
            .process(ts_us, LinkType::Ethernet, frame, &mut self.sink);
    }
    fn batch(&mut self, frames: &[(i64, &[u8])]) {
        self.engine
            .process_batch(LinkType::Ethernet, frames, &mut self.sink);
    }
    fn parsed(&mut self, frames: &ParsedBatch) {
        self.engine.process_parsed(frames, &mut self.sink);
    }
    fn tick(&mut self, now_us: i64) {
        self.engine.advance(now_us, &mut self.sink);
        self.sink.send();
    }
    fn finish(&mut self) {
        self.sink.send();
        self.sink.blocking = true;
        self.engine.finish(&mut self.sink);
        self.sink.send();
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.engine.counters()
    }
}

/// Causes the output stage raised (several engines): RST flow → cause, so the flow's
/// record, which follows its RSTs, says the same. Bounded; what does not fit keeps the
/// engine's cause in its flow record (counted).
#[derive(Default)]
struct Refined {
    by_flow: hashbrown::HashMap<u64, rstwatch_schema::Cause>,
    full: u64,
}

impl Refined {
    const MAX: usize = 65_536;

    /// Feeds `r` to the one set of detectors and applies the aggregate cause rules.
    /// Returns false for a record to drop: a `failover` another worker already
    /// reported (each worker reports the flows it saw reset).
    fn apply(&mut self, d: &mut Detectors, r: &mut Record, found: &mut Vec<Anomaly>) -> bool {
        match r {
            Record::Rst(ev) => {
                d.observe(ev, found);
                if crate::classify::cause::refine(ev, d) {
                    if self.by_flow.len() < Self::MAX {
                        self.by_flow.insert(ev.flow_uid, ev.cause);
                    } else {
                        self.full += 1;
                    }
                }
            }
            Record::Flow(f) => {
                if let Some(c) = self.by_flow.remove(&f.flow_uid) {
                    f.cause = Some(c);
                }
            }
            Record::Anomaly(a) => return d.first_report(a),
        }
        true
    }
}

/// Buffered stdout shared by the JSON-lines writer (which writes records) and the
/// output loop (which flushes whenever the queue runs dry).
#[derive(Clone)]
struct SharedStdout(Rc<RefCell<BufWriter<StdoutLock<'static>>>>);

impl Write for SharedStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// Where the output thread puts records: stdout as JSON lines, or a collector.
enum Output {
    Json {
        lines: JsonLines<SharedStdout>,
        stdout: SharedStdout,
    },
    Ship(ShipSink),
}

impl Output {
    fn new(ship: Option<ShipSink>) -> Output {
        match ship {
            Some(s) => Output::Ship(s),
            None => {
                let stdout = SharedStdout(Rc::new(RefCell::new(BufWriter::with_capacity(
                    1 << 16,
                    std::io::stdout().lock(),
                ))));
                Output::Json {
                    lines: JsonLines::new(stdout.clone(), Select::default()),
                    stdout,
                }
            }
        }
    }

    /// Writes one record; false when it could not (the writer keeps the error for
    /// [`Output::finish`]).
    fn write(&mut self, r: Record) -> bool {
        match self {
            Output::Ship(s) => {
                s.record(r);
                true
            }
            Output::Json { lines, .. } => {
                let before = lines.written;
                lines.record(r);
                lines.written > before
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Ship(_) => Ok(()),
            Output::Json { stdout, .. } => stdout.flush(),
        }
    }

    /// The first write error, else the shipper, still open.
    fn finish(self) -> std::io::Result<Option<ShipSink>> {
        match self {
            Output::Ship(s) => Ok(Some(s)),
            Output::Json { lines, .. } => lines.finish().map(|_| None),
        }
    }
}

/// The output stage's state besides the writer: the one set of aggregate detectors
/// (several engines) and what they decided.
struct Stage {
    detectors: Option<Detectors>,
    refined: Refined,
    found: Vec<Anomaly>,
}

impl Stage {
    /// Writes `r` and the anomalies it raised; false when the writer failed.
    fn deliver(&mut self, out: &mut Output, written: &AtomicU64, mut r: Record) -> bool {
        let keep = match self.detectors.as_mut() {
            Some(d) => self.refined.apply(d, &mut r, &mut self.found),
            None => true,
        };
        let mut ok = true;
        for rec in keep
            .then_some(r)
            .into_iter()
            .chain(self.found.drain(..).map(Record::Anomaly))
        {
            if ok && out.write(rec) {
                written.fetch_add(1, Ordering::Relaxed);
            } else {
                ok = false;
            }
        }
        ok
    }
}

/// Writes records as JSON lines, or hands them to `ship` (a collector) when given;
/// flushes whenever the queue runs dry so a reader sees events promptly. With
/// `detectors` (several engines), every RST also feeds the one set of aggregate
/// detectors, whose anomalies follow the RST that raised them. Returns the shipper,
/// still open, so the caller can add the final counters and wait for the acks.
pub(super) fn output_thread(
    rx: Receiver<Vec<Record>>,
    written: Arc<AtomicU64>,
    detectors: Option<Detectors>,
    failed: Arc<AtomicBool>,
    ship: Option<ShipSink>,
) -> std::io::Result<Option<ShipSink>> {
    let mut out = Output::new(ship);
    let mut flush_error: Option<std::io::Error> = None;
    let mut broken = false;
    let mut stage = Stage {
        detectors,
        refined: Refined::default(),
        found: Vec::new(),
    };
    let fail = |broken: &mut bool| {
        // The reader is gone (or the disk is full): stop capturing, cleanly.
        failed.store(true, Ordering::SeqCst);
        *broken = true;
    };
    loop {
        let batch = match rx.try_recv() {
            Ok(b) => b,
            Err(TryRecvError::Empty) => {
                if !broken {
                    if let Err(e) = out.flush() {
                        fail(&mut broken);
                        flush_error = Some(e);
                    }
                }
                match rx.recv() {
                    Ok(b) => b,
                    Err(_) => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        for r in batch {
            if broken {
                break; // keep draining so workers never block
            }
            if !stage.deliver(&mut out, &written, r) {
                fail(&mut broken);
            }
        }
    }
    if let Some(e) = flush_error {
        return Err(e);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::gen::{self, GenOptions, Scenario};

    /// While frames arrive, the output thread is sent full batches of records only;
    /// a tick sends the rest; and nothing is lost or added on the way: the records are
    /// those of one engine writing straight into a vector.
    #[test]
    fn records_go_out_in_full_batches_and_at_ticks() {
        let cap = gen::generate(Scenario::Mixed, &GenOptions::default());
        let cfg = EngineConfig::default();
        let (tx, rx) = output_channel(1 << 20);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut p = EngineProcessor {
            engine: Engine::new(&cfg),
            sink: ChannelSink::new(tx, dropped.clone(), false),
        };
        let mut sent: Vec<Record> = Vec::new();
        let mut messages = 0;
        let mut ticks = 0;
        for (i, chunk) in cap.frames.chunks(32).enumerate() {
            let frames: Vec<(i64, &[u8])> =
                chunk.iter().map(|f| (f.ts_us, f.data.as_slice())).collect();
            p.batch(&frames);
            for m in rx.try_iter() {
                assert_eq!(m.len(), SEND_AT, "a partial batch sent between ticks");
                messages += 1;
                sent.extend(m);
            }
            if i % 50 == 49 {
                // What the worker does every TICK_EVERY: the rest goes out now.
                p.tick(frames.last().unwrap().0);
                ticks += 1;
                let rest: Vec<Vec<Record>> = rx.try_iter().collect();
                assert!(rest.len() <= 1 && rest.iter().all(|m| m.len() <= SEND_AT));
                sent.extend(rest.into_iter().flatten());
                assert!(p.sink.buf.is_empty(), "records held past a tick");
            }
        }
        p.finish();
        drop(p);
        sent.extend(rx.try_iter().flatten());
        assert!(
            messages > 10 && ticks > 10,
            "{messages} full batches, {ticks} ticks"
        );
        assert_eq!(dropped.load(Ordering::Relaxed), 0);

        let mut alone: Vec<Record> = Vec::new();
        let mut e = Engine::new(&cfg);
        for f in &cap.frames {
            e.process(f.ts_us, LinkType::Ethernet, &f.data, &mut alone);
        }
        e.finish(&mut alone);
        let json = |rs: &[Record]| -> Vec<String> {
            rs.iter()
                .map(|r| serde_json::to_string(r).unwrap())
                .collect()
        };
        assert_eq!(json(&sent), json(&alone));
    }
}
