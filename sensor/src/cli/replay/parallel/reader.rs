//! The reader: reads the files in large shared buffers and hands each engine batches of
//! *indexes* into them (offset, length, timestamp), never copies of the frames,
//! choosing the engine by the flow hash of live fan-out.

use super::super::FilesRead;
use super::fanout::FlowHash;
use super::lanes::Lanes;
use crate::engine::fanout_index;
use crate::parse::LinkType;
use crate::source::{self, FileAccess, Readahead, SharedBuffer};
use crossbeam::channel::{Receiver, Sender};
use std::io::Write;
use std::path::PathBuf;

/// Frames a batch holds before it goes to its engine (fewer hand-overs, fewer wake-ups).
const FRAMES_PER_BATCH: usize = 1024;

/// One engine's frames of one read buffer.
pub(super) struct Batch {
    pub link: LinkType,
    /// The buffer the frames are in (`None` only while the batch is being filled).
    pub buffer: Option<SharedBuffer>,
    /// (timestamp µs, offset in `buffer`, length)
    pub frames: Vec<(i64, u32, u32)>,
    /// The reader's packet time when the batch was sent.
    pub now_us: i64,
}

impl Batch {
    pub(super) fn new() -> Batch {
        Batch {
            link: LinkType::Ethernet,
            buffer: None,
            frames: Vec::with_capacity(FRAMES_PER_BATCH),
            now_us: i64::MIN,
        }
    }
}

pub(super) struct Reader<'a, W: Write> {
    /// One queue per engine.
    queues: Vec<Sender<Batch>>,
    /// The engines: the reader runs their batches while it may queue no more.
    lanes: &'a Lanes<W>,
    /// Batches the engines are done with (their index lists' memory, reused).
    recycle: Receiver<Batch>,
    /// Each engine's batch being filled.
    pending: Vec<Batch>,
    hash: FlowHash,
    /// The buffer and link type the pending batches' frames are in.
    current: Option<(SharedBuffer, LinkType)>,
    /// The latest packet time read.
    now_us: i64,
}

impl<'a, W: Write + Send> Reader<'a, W> {
    pub(super) fn new(
        queues: Vec<Sender<Batch>>,
        lanes: &'a Lanes<W>,
        recycle: Receiver<Batch>,
        hash: FlowHash,
    ) -> Reader<'a, W> {
        Reader {
            lanes,
            pending: queues.iter().map(|_| Batch::new()).collect(),
            queues,
            recycle,
            hash,
            current: None,
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
            source::read_file_shared(path, progress, access, |link, buf, frames, ahead| {
                self.dispatch(link, buf, frames, ahead)
            })
        });
        self.flush_all();
        r
    }

    fn dispatch(
        &mut self,
        link: LinkType,
        buf: &SharedBuffer,
        frames: &[(i64, &[u8])],
        ahead: &mut Readahead,
    ) {
        let same =
            matches!(&self.current, Some((b, l)) if SharedBuffer::ptr_eq(b, buf) && *l == link);
        if !same {
            // A batch's frames are all in one buffer, of one link type.
            self.flush_all();
            self.current = Some((buf.clone(), link));
        }
        let n = self.queues.len();
        let base = buf.as_ptr() as usize;
        for &(ts, f) in frames {
            // The readahead's two steps a frame, as the engine takes them: the file's
            // next lines arrive while this loop hashes, not while the walk waits.
            ahead.step();
            ahead.step();
            self.now_us = self.now_us.max(ts);
            // Not TCP (or not parseable): engine 0, which counts why.
            let w = self.hash.of(link, f).map_or(0, |h| fanout_index(h, n));
            // `f` is a slice of `buf` (read_file_shared's promise): its offset.
            let at = (f.as_ptr() as usize).wrapping_sub(base);
            let b = &mut self.pending[w];
            b.frames.push((ts, at as u32, f.len() as u32));
            if b.frames.len() >= FRAMES_PER_BATCH {
                self.flush(w);
            }
        }
    }

    fn flush(&mut self, w: usize) {
        let Some((buf, link)) = &self.current else {
            return;
        };
        if self.pending[w].frames.is_empty() {
            return;
        }
        let fresh = self.recycle.try_recv().unwrap_or_else(|_| Batch::new());
        let mut b = std::mem::replace(&mut self.pending[w], fresh);
        b.buffer = Some(buf.clone());
        b.link = *link;
        b.now_us = self.now_us;
        self.lanes.send(&self.queues, w, b);
    }

    fn flush_all(&mut self) {
        for w in 0..self.pending.len() {
            self.flush(w);
        }
    }
}
