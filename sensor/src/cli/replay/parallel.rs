//! `replay --workers N`: one reader and N engines, run by N threads on N cores.
//!
//! The reader ([`reader`]) reads each file, parses every frame with the engines'
//! options and hands each engine batches of the parsed packets, so no frame is parsed
//! twice or read by a second core. It picks a frame's engine by the symmetric hash of
//! live fan-out ([`crate::engine::FanoutParser`]), so both directions of a flow
//! reach the same engine; frames that do not parse go to engine 0, which counts why.
//! Each batch carries the reader's packet time, and the engine's clock runs to it
//! after the batch's frames: every engine's time follows the capture as one engine's
//! would. The engines are [`lanes`]: worker threads run whichever has work, N of them
//! when the process may use more than N cores (the reader then has one of its own),
//! else N − 1; the reader runs batches too while the lanes hold as many as it may
//! queue (and its batch's lane holds its share). Each engine formats its records
//! as JSON lines and writes them in large chunks under a lock ([`output`]); a flow's
//! records come from one engine, in order, so its RSTs stay in order.
//!
//! What differs from one engine: evidence *across* flows (a responder's activity, RST
//! bursts, the anomaly detectors) is per engine, exactly as in live fan-out, so records
//! whose cause rests on other flows' packets can differ.

mod lanes;
mod output;
mod reader;

use crate::config::EngineConfig;
use crate::output::Select;
use crate::source::FileAccess;
use anyhow::Context;
use crossbeam::channel::unbounded;
use lanes::Lanes;
use reader::{Batch, Reader};
use std::io::Write;
use std::path::PathBuf;

/// Batches queued per engine, on average: bounds the reader's lead, and so the memory
/// its batches hold (up to 1,024 parsed frames each, ~105 KiB; a lane short of its
/// share takes a batch past the total, so at most 2N − 1 shares are queued; until
/// 2026-12-04 the batches held the read buffers or mapped windows their frames were
/// in, which is what the RSS figures below measured). When the reader shared the
/// cores with an engine thread each, the engines lived off their queues while the
/// reader waited for a core; with 8 batches (~1 ms of work) they ran dry. Mapped,
/// `--workers 2` on two cores, wall time median of eight runs with 8, 16, 32, 64:
/// 0.475, 0.455, 0.435, 0.42 s, peak RSS 62, 72, 93, 140 MiB. Reading, 8, 16 and 128
/// batches were no better than 32 (RESULTS.md).
const QUEUE_BATCHES: usize = 32;

/// Worker threads to start besides the reader's for `engines` engines when the process
/// may run on `cores` cores (its affinity mask and CPU quota). With a core to spare,
/// one per engine, and the reader has a core of its own: the layout of one reader and
/// N engines on N cores. Otherwise one fewer, and the reader's thread is the N-th: it
/// runs engines' batches whenever it may queue no more. With one engine a thread, a
/// reader as an (N + 1)-th thread on N cores waited for a core while the engines'
/// queues ran dry (a core idled 9.5–11 % of a `--workers 2` run on two cores); with
/// lanes the two layouts measured alike on two cores (the third thread 1.006 of the
/// wall time, 20 alternating rounds; RESULTS.md, "`--workers 2` against the work split
/// with nothing shared"), so on N cores there is one thread fewer.
fn worker_threads(engines: usize, cores: usize) -> usize {
    if cores > engines {
        engines
    } else {
        engines - 1
    }
}

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
    let (lanes, queues) = Lanes::new(workers, QUEUE_BATCHES, cfg, select, &out, recycle_tx);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = worker_threads(workers, cores);
    let mut handles = Vec::with_capacity(threads);
    for j in 0..threads {
        let lanes = lanes.clone();
        // Named as live fan-out's workers, so `top -H` and the benches can tell the
        // reader (the main thread) from the workers. Nothing is read yet, so a
        // worker that cannot start is an error that loses no input.
        handles.push(
            std::thread::Builder::new()
                .name(format!("rw-w{j}"))
                .spawn(move || lanes.work())
                .context("starting a replay worker thread")?,
        );
    }
    // The engines' own options: the packets the reader parses are theirs.
    let mut reader = Reader::new(queues, &lanes, recycle_rx, cfg.parse_options());
    let files_read = reader.read_files(files, no_progress, access);
    // Dropping the reader closes the queues; its thread then runs batches with the
    // workers until every lane is empty.
    drop(reader);
    lanes.closed();
    lanes.work();
    let mut panicked = false;
    for h in handles {
        panicked |= h.join().is_err();
    }
    let (mut counters, mut written) = lanes.finish();
    if panicked {
        written = written.and(Err(std::io::Error::other(
            "a replay worker thread panicked",
        )));
    }
    counters.extend(files_read.counters());
    Ok(Outcome {
        bad_files: files_read.failed,
        counters,
        // The output's own first error names what went wrong; the workers' only its kind.
        written: out.finish().and(written),
    })
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    /// A core of its own for the reader only when there is one to spare: on N cores
    /// the reader's thread is one of the N, never an (N + 1)-th waiting for a core.
    #[test]
    fn the_reader_gets_a_core_of_its_own_only_when_one_is_spare() {
        assert_eq!(worker_threads(2, 2), 1);
        assert_eq!(worker_threads(2, 1), 1);
        assert_eq!(worker_threads(2, 3), 2);
        assert_eq!(worker_threads(4, 64), 4);
        assert_eq!(worker_threads(4, 4), 3);
    }
}
