//! `replay --workers N`: one reader, N engines on N threads, one writer.
//!
//! The reader hashes each frame's flow key with the symmetric hash of live fan-out
//! ([`crate::engine::fanout_hash_with`]), so both directions of a flow reach the same
//! engine, and copies the frames into per-worker batches. Each batch carries the
//! reader's packet time, and a worker lets its engine's clock run to it after the
//! batch's frames: every engine's time follows the capture as one engine's would.
//! Workers format their records as JSON lines themselves and hand the writer whole
//! chunks; a flow's records come from one worker, so its RSTs stay in order.
//!
//! What differs from one engine: evidence *across* flows (a responder's activity, RST
//! bursts, the anomaly detectors) is per engine, exactly as in live fan-out, so records
//! whose cause rests on other flows' packets can differ.

use crate::config::EngineConfig;
use crate::engine::fanout_hash_with;
use crate::output::{JsonLines, Select};
use crate::parse::{LinkType, ParseOptions};
use crate::source;
use crate::Engine;
use crossbeam::channel::{bounded, unbounded, Receiver, Sender};
use std::io::Write;
use std::path::PathBuf;

/// Frames a reader batch holds before it goes to its worker.
const FRAMES_PER_BATCH: usize = 256;
/// Batches in flight per worker (bounds the reader's lead and the memory).
const QUEUE_BATCHES: usize = 16;
/// Bytes of JSON a worker collects before handing them to the writer.
const CHUNK: usize = 1 << 16;

/// Frames copied out of the reader's buffer for one worker.
struct Batch {
    link: LinkType,
    data: Vec<u8>,
    /// (timestamp µs, end offset in `data`)
    frames: Vec<(i64, u32)>,
    /// The reader's packet time when the batch was sent.
    now_us: i64,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            link: LinkType::Ethernet,
            data: Vec::with_capacity(FRAMES_PER_BATCH * 512),
            frames: Vec::with_capacity(FRAMES_PER_BATCH),
            now_us: i64::MIN,
        }
    }
}

/// What the workers and the writer did.
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
    out: W,
) -> Outcome {
    let (chunk_tx, chunk_rx) = bounded::<Vec<u8>>(workers * 4);
    let writer = std::thread::spawn(move || write_chunks(out, chunk_rx));
    let (recycle_tx, recycle_rx) = unbounded::<Batch>();
    let mut queues = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = bounded::<Batch>(QUEUE_BATCHES);
        let (cfg, chunks, recycle) = (cfg.clone(), chunk_tx.clone(), recycle_tx.clone());
        handles.push(std::thread::spawn(move || {
            work(&cfg, select, rx, recycle, chunks)
        }));
        queues.push(tx);
    }
    drop(chunk_tx);
    let opts = ParseOptions {
        // The worker's engine checks the checksum; the hash only needs the key.
        verify_checksum: false,
        tunnel_ports: cfg.encap.ports().unwrap_or_default(),
    };
    let mut reader = Reader {
        queues,
        recycle: recycle_rx,
        pending: (0..workers).map(|_| Batch::new()).collect(),
        opts,
        now_us: i64::MIN,
    };
    let (bad, other_blocks) = reader.read_files(files, no_progress);
    reader.flush_all();
    drop(reader);
    let mut counters: Vec<(&'static str, u64)> = Vec::new();
    let mut written = Ok(0);
    for h in handles {
        let (c, w) = h.join().unwrap_or_else(|_| (Vec::new(), Ok(0)));
        add_counters(&mut counters, &c);
        written = match (written, w) {
            (Ok(a), Ok(b)) => Ok(a + b),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
    }
    let out = writer
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("writer thread panicked")));
    counters.extend([
        ("files", files.len() as u64),
        ("files_failed", bad as u64),
        ("pcapng_other_blocks", other_blocks),
    ]);
    Outcome {
        bad_files: bad,
        counters,
        written: out.and(written),
    }
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

struct Reader {
    queues: Vec<Sender<Batch>>,
    recycle: Receiver<Batch>,
    pending: Vec<Batch>,
    opts: ParseOptions,
    now_us: i64,
}

impl Reader {
    /// Reads every file; returns the number that had a problem and the pcapng blocks
    /// without packets.
    fn read_files(&mut self, files: &[PathBuf], no_progress: bool) -> (usize, u64) {
        let (mut bad, mut other_blocks) = (0, 0);
        for path in files {
            let bar = super::progress_bar(path, no_progress);
            let progress = bar.as_ref().map(|(_, p)| p.clone());
            let r = source::read_file_batched(path, progress, |link, frames| {
                self.dispatch(link, frames)
            });
            if let Some((bar, _)) = bar {
                bar.finish_and_clear();
            }
            match r {
                Ok(st) => other_blocks += st.other_blocks,
                Err(e) => {
                    eprintln!("rstwatch-sensor: {e}");
                    bad += 1;
                }
            }
            // A batch holds frames of one link type, and files may differ.
            self.flush_all();
        }
        (bad, other_blocks)
    }

    fn dispatch(&mut self, link: LinkType, frames: &[(i64, &[u8])]) {
        let n = self.queues.len() as u64;
        for &(ts, f) in frames {
            self.now_us = self.now_us.max(ts);
            // Not TCP (or not parseable): worker 0, whose engine counts why.
            let w = fanout_hash_with(link, f, self.opts).map_or(0, |h| (h % n) as usize);
            let b = &mut self.pending[w];
            b.link = link;
            b.data.extend_from_slice(f);
            b.frames.push((ts, b.data.len() as u32));
            if b.frames.len() >= FRAMES_PER_BATCH {
                self.flush(w);
            }
        }
    }

    fn flush(&mut self, w: usize) {
        if self.pending[w].frames.is_empty() {
            return;
        }
        let fresh = self.recycle.try_recv().unwrap_or_else(|_| Batch::new());
        let mut b = std::mem::replace(&mut self.pending[w], fresh);
        b.now_us = self.now_us;
        // A worker that is gone has failed; its join reports it.
        let _ = self.queues[w].send(b);
    }

    fn flush_all(&mut self) {
        for w in 0..self.pending.len() {
            self.flush(w);
        }
    }
}

/// One worker: an engine whose records go as JSON chunks to the writer.
fn work(
    cfg: &EngineConfig,
    select: Select,
    rx: Receiver<Batch>,
    recycle: Sender<Batch>,
    chunks: Sender<Vec<u8>>,
) -> (Vec<(&'static str, u64)>, std::io::Result<u64>) {
    let mut engine = Engine::new(cfg);
    let mut sink = JsonLines::new(Chunks::new(chunks), select);
    for mut b in rx {
        let mut start = 0usize;
        let frames: Vec<(i64, &[u8])> = b
            .frames
            .iter()
            .map(|&(ts, end)| {
                let f = (ts, &b.data[start..end as usize]);
                start = end as usize;
                f
            })
            .collect();
        engine.process_batch(b.link, &frames, &mut sink);
        engine.advance(b.now_us, &mut sink);
        drop(frames);
        b.data.clear();
        b.frames.clear();
        let _ = recycle.send(b);
    }
    engine.finish(&mut sink);
    (engine.counters(), sink.finish())
}

/// Collects bytes and hands them to the writer in chunks of about [`CHUNK`].
struct Chunks {
    buf: Vec<u8>,
    tx: Sender<Vec<u8>>,
}

impl Chunks {
    fn new(tx: Sender<Vec<u8>>) -> Chunks {
        Chunks {
            buf: Vec::with_capacity(CHUNK + 1024),
            tx,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK + 1024));
        self.tx
            .send(full)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for Chunks {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The writer: chunks to `out` as they come. After a write error it keeps receiving
/// (so no worker blocks) and returns the error.
fn write_chunks<W: Write>(mut out: W, rx: Receiver<Vec<u8>>) -> std::io::Result<u64> {
    let mut error = None;
    for chunk in rx {
        if error.is_none() {
            if let Err(e) = out.write_all(&chunk) {
                error = Some(e);
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => out.flush().map(|_| 0),
    }
}
