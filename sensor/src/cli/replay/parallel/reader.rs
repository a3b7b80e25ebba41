//! The reader: reads the files, parses every frame once and hands each engine batches
//! of the parsed packets, choosing the engine by the flow hash of live fan-out.
//!
//! Why the reader parses, not the engines: it must read each frame's headers to hash
//! its flow anyway, and an engine that parsed the frame again paid for its lines a
//! second time, read by another core or long after (the reader queues ~64,000 frames
//! ahead). The engines read the parsed packets instead (105 bytes a frame with its
//! time and parse outcome), and no batch holds the file's buffers or mapped windows
//! any more. Against the reader hashing the headers alone and the engines parsing,
//! `--workers 2` took 0.873 and 0.956 of the CPU in two series of twelve rounds
//! (0.85 and 0.94 of the wall time), and its peak RSS fell from 123–129 to 43 MiB
//! (benches/RESULTS.md, "The `--workers` reader parses").

use super::super::FilesRead;
use super::lanes::Lanes;
use crate::engine::FanoutParser;
use crate::parse::{LinkType, ParseOptions, ParsedBatch};
use crate::source::{self, FileAccess, Readahead};
use crossbeam::channel::{Receiver, Sender};
use std::io::Write;
use std::path::PathBuf;

/// Frames a batch holds before it goes to its engine (fewer hand-overs, fewer wake-ups).
const FRAMES_PER_BATCH: usize = 1024;

/// One engine's frames, parsed by the reader.
pub(super) struct Batch {
    pub frames: ParsedBatch,
    /// The reader's packet time when the batch was sent.
    pub now_us: i64,
}

impl Batch {
    pub(super) fn new() -> Batch {
        Batch {
            frames: ParsedBatch::with_capacity(FRAMES_PER_BATCH),
            now_us: i64::MIN,
        }
    }
}

pub(super) struct Reader<'a, W: Write> {
    /// One queue per engine.
    queues: Vec<Sender<Batch>>,
    /// The engines: the reader runs their batches while it may queue no more.
    lanes: &'a Lanes<W>,
    /// Batches the engines are done with (their vectors' memory, reused).
    recycle: Receiver<Batch>,
    /// Each engine's batch being filled.
    pending: Vec<Batch>,
    /// Parses every frame for the engines and picks its engine.
    parser: FanoutParser,
    /// The latest packet time read.
    now_us: i64,
}

impl<'a, W: Write + Send> Reader<'a, W> {
    pub(super) fn new(
        queues: Vec<Sender<Batch>>,
        lanes: &'a Lanes<W>,
        recycle: Receiver<Batch>,
        opts: ParseOptions,
    ) -> Reader<'a, W> {
        Reader {
            lanes,
            pending: queues.iter().map(|_| Batch::new()).collect(),
            queues,
            recycle,
            parser: FanoutParser::new(opts),
            now_us: i64::MIN,
        }
    }

    /// Reads every file through the one-engine path's `read_each`, which reports each
    /// file's problem.
    pub(super) fn read_files(
        &mut self,
        files: &[PathBuf],
        no_progress: bool,
        access: FileAccess,
    ) -> FilesRead {
        let r = super::super::read_each(files, no_progress, |path, progress| {
            source::read_file_in_large_windows(path, progress, access, |link, frames, ahead| {
                self.dispatch(link, frames, ahead)
            })
        });
        self.flush_all();
        r
    }

    /// Parses each frame with the engines' options and adds it to its engine's batch.
    fn dispatch(&mut self, link: LinkType, frames: &[(i64, &[u8])], ahead: &mut Readahead) {
        let n = self.queues.len();
        for &(ts, f) in frames {
            // The readahead's two steps a frame, as the engine takes them: the file's
            // next lines arrive while this loop parses, not while the walk waits.
            ahead.step();
            ahead.step();
            self.now_us = self.now_us.max(ts);
            let (w, outcome) = self.parser.parse(link, f, n);
            let b = &mut self.pending[w].frames;
            b.push(ts, outcome, self.parser.packet());
            if b.len() >= FRAMES_PER_BATCH {
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
        self.lanes.send(&self.queues, w, b);
    }

    fn flush_all(&mut self) {
        for w in 0..self.pending.len() {
            self.flush(w);
        }
    }
}
