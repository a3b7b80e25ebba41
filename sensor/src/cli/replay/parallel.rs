//! `replay --workers N`: one reader, N engines on N threads writing their own output.
//!
//! The reader ([`reader`]) reads each file in large reference-counted buffers and hands
//! every worker index lists into them: no frame is copied. It picks a frame's worker
//! by the symmetric hash of live fan-out ([`fanout`], from the headers alone), so both
//! directions of a flow reach the same engine. Each batch carries the reader's packet
//! time, and a worker lets its engine's clock run to it after the batch's frames:
//! every engine's time follows the capture as one engine's would. Workers format their
//! records as JSON lines and write them in large chunks under a lock ([`output`]); a
//! flow's records come from one worker, so its RSTs stay in order.
//!
//! What differs from one engine: evidence *across* flows (a responder's activity, RST
//! bursts, the anomaly detectors) is per engine, exactly as in live fan-out, so records
//! whose cause rests on other flows' packets can differ.

mod fanout;
mod output;
mod reader;

use crate::config::EngineConfig;
use crate::output::{JsonLines, Select};
use crate::parse::ParseOptions;
use crate::source::{FileAccess, READ_BATCH};
use crate::Engine;
use anyhow::Context;
use crossbeam::channel::{bounded, unbounded, Receiver, Sender};
use reader::{Batch, Reader};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Batches in flight per worker: bounds the reader's lead, and so the read buffers or
/// mapped windows held (a batch ends with its buffer: up to 256 KiB of frames read,
/// ~0.7 MB mapped). When workers and the reader share cores, the workers live off
/// their queues while the reader waits for a core; with 8 batches (~1 ms of work)
/// they ran dry. Mapped, `--workers 2` on two cores, wall time median of eight runs
/// with 8, 16, 32, 64: 0.475, 0.455, 0.435, 0.42 s, peak RSS 62, 72, 93, 140 MiB.
/// Reading, 8, 16 and 128 batches were no better than 32 (RESULTS.md).
const QUEUE_BATCHES: usize = 32;

/// What the workers did.
pub(super) struct Outcome {
    pub bad_files: usize,
    pub counters: Vec<(&'static str, u64)>,
    /// Records written, or the first write error.
    pub written: std::io::Result<u64>,
}

/// Replays `files` through `workers` engines, JSON lines to `out`.
pub(super) fn replay<W: Write + Send + 'static>(
    files: &[PathBuf],
    no_progress: bool,
    cfg: &EngineConfig,
    select: Select,
    workers: usize,
    access: FileAccess,
    out: W,
) -> anyhow::Result<Outcome> {
    let out = output::Shared::new(out);
    let (recycle_tx, recycle_rx) = unbounded::<Batch>();
    let mut queues = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for j in 0..workers {
        let (tx, rx) = bounded::<Batch>(QUEUE_BATCHES);
        let (cfg, out, recycle) = (cfg.clone(), out.clone(), recycle_tx.clone());
        // Named as live fan-out's workers, so `top -H` and the benches can tell the
        // reader (the main thread) from the engines. Nothing is read yet, so a
        // worker that cannot start is an error that loses no input.
        handles.push(
            std::thread::Builder::new()
                .name(format!("rw-w{j}"))
                .spawn(move || work(&cfg, select, rx, recycle, out))
                .context("starting a replay worker thread")?,
        );
        queues.push(tx);
    }
    let hash = fanout::FlowHash::new(ParseOptions {
        // The worker's engine checks the checksum; the hash only needs the key.
        verify_checksum: false,
        tunnel_ports: cfg.encap.ports().unwrap_or_default(),
    });
    let mut reader = Reader::new(queues, recycle_rx, hash);
    let files_read = reader.read_files(files, no_progress, access);
    drop(reader);
    let mut counters: Vec<(&'static str, u64)> = Vec::new();
    let mut written = Ok(0);
    for h in handles {
        let (c, w) = h.join().unwrap_or_else(|_| {
            (
                Vec::new(),
                Err(std::io::Error::other("a worker thread panicked")),
            )
        });
        add_counters(&mut counters, &c);
        written = match (written, w) {
            (Ok(a), Ok(b)) => Ok(a + b),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
    }
    counters.extend(files_read.counters());
    Ok(Outcome {
        bad_files: files_read.failed,
        counters,
        // The output's own first error names what went wrong; the workers' only its kind.
        written: out.finish().and(written),
    })
}

/// Sums counters by name, keeping the first worker's order.
fn add_counters(sum: &mut Vec<(&'static str, u64)>, more: &[(&'static str, u64)]) {
    for &(k, v) in more {
        match sum.iter_mut().find(|(n, _)| *n == k) {
            Some((_, s)) => *s += v,
            None => sum.push((k, v)),
        }
    }
}

/// One worker: an engine whose records go as JSON chunks to the shared output.
fn work<W: Write>(
    cfg: &EngineConfig,
    select: Select,
    rx: Receiver<Batch>,
    recycle: Sender<Batch>,
    out: Arc<output::Shared<W>>,
) -> (Vec<(&'static str, u64)>, std::io::Result<u64>) {
    let mut engine = Engine::for_files(cfg);
    let mut sink = JsonLines::new(output::Chunks::new(out), select);
    for mut b in rx {
        let Some(buf) = b.buffer.take() else { continue };
        let mut frames = [(0i64, &[][..]); READ_BATCH];
        // The engine's batch path, READ_BATCH frames at a time (as one engine reads).
        for part in b.frames.chunks(READ_BATCH) {
            let mut n = 0;
            for &(ts, at, len) in part {
                let (at, len) = (at as usize, len as usize);
                // Always inside: the reader took these from `buf` itself.
                if let Some(f) = buf.get(at..at + len) {
                    frames[n] = (ts, f);
                    n += 1;
                }
            }
            warm(&frames[..n]);
            engine.process_batch(b.link, &frames[..n], &mut sink);
        }
        engine.advance(b.now_us, &mut sink);
        b.frames.clear();
        drop(buf);
        let _ = recycle.send(b);
    }
    engine.finish(&mut sink);
    (engine.counters(), sink.finish())
}

/// Loads the headers of a batch's frames before the engine parses them one by one.
/// The reader's core read them last, so each is a miss here; issued together, the
/// misses overlap instead of stalling the parse one after another.
#[inline]
fn warm(frames: &[(i64, &[u8])]) {
    let mut x = 0u8;
    for (_, f) in frames {
        // The Ethernet/IP header and the TCP header (usually in the next line).
        x ^= f.first().copied().unwrap_or(0) ^ f.get(64).copied().unwrap_or(0);
    }
    std::hint::black_box(x);
}
