//! The fast way through a pcap or pcapng file: large reads into one buffer, and the
//! frames handed on in batches that borrow from it (no copy, no allocation per
//! packet), so `replay` can use [`Engine::process_batch`](crate::Engine::process_batch).
//!
//! pcap records are decoded by `record`, pcapng blocks by `ng_blocks` (by hand or by
//! `pcap-file`'s own slice parser), and every problem gets the message
//! [`read_file`](super::read_file) gives for it.
//!
//! One read buffer serves the whole file: when a batch's frames are done with, the
//! partial record at its end is moved to the front and the next read goes after it.
//! No frame outlives its batch: `replay --workers`, whose batches used to hold their
//! buffers (reference-counted) for the engines to read later, hands on parsed frames
//! since 2026-12-04.
//!
//! With [`FileAccess::Map`] (or `Auto`, for files of 128 MiB or more, which from
//! [`TRIED_MIN`] on it also reads for a while and keeps the cheaper way: see `access`), a
//! regular file of at least [`MAP_MIN`] bytes is not read but mapped, in windows of
//! [`WINDOW`] bytes ([`SHARED_WINDOW`] for `--workers`, [`read_file_in_large_windows`];
//! `sys::FileMapping`, which also says what happens when the file shrinks
//! meanwhile): no copy, and the records are
//! parsed where the page cache holds them, with the bytes ahead prefetched: by the
//! consumer of each batch while it works on it ([`Readahead`]), else by the reader.
//! Each window is a buffer as above; consecutive windows overlap, so a record across a
//! window's end is read whole from the next.

use super::access::{self, FileAccess};
use super::ng_blocks::{NgBlocks, NgStop};
use super::readahead::{Readahead, READAHEAD_BYTES};
use super::record::RecordLayout;
use super::{
    self as source, check_link, damage, explain, pcap_error, read_fully, Counting, FileStats,
    Progress, ReadError, SourceError, PCAP_MAGICS,
};
use crate::parse::LinkType;
use crate::sys;
use pcap_file::pcap::PcapParser;
use pcap_file::PcapError;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Frames per call of the batch callback (two of the engine's lookup batches).
pub const READ_BATCH: usize = 64;

/// The largest read buffer: room for any record (pcap-file's reader uses the same
/// bound, so a record that does not fit is refused the same way).
const BUFFER: usize = 8_000_000;

/// The usual read: small enough that the records are still in the core's cache
/// (L2) when they are parsed after the kernel copied them in; an 8 MB read had them
/// evicted, and reading each record's header became a miss (RESULTS.md, "replay
/// --workers N"). Half a 1 MiB L2 leaves room for the engine's own lines: on the
/// Zen 4 host (1 MiB L2) one engine's replay took 0.939 and 0.922 of the CPU of
/// 256 KiB reads (medians of per-round ratios, 7 of 8 rounds faster in each of two
/// series), and 1 MiB reads 1.021; on an earlier host 256 KiB had taken 3–4 % less
/// than 1 MiB (RESULTS.md, "Reading or mapping", "The `--workers` reader's reads"). A
/// record larger than this grows the buffer, up to [`BUFFER`].
const READ_STEP: usize = 512 << 10;

/// The read of `replay --workers`' reader, whose core runs no engine while it can read
/// on, so its cache holds little besides the buffer: 1 MiB reads cost it less than
/// 256 KiB ones, fewer calls for the same bytes. `--workers 2` took 0.300 of a CPU
/// second against 0.320 and 0.190 s of wall time against 0.200 (medians of six
/// alternating runs; 512 KiB to 4 MiB alike), where one engine, which shares its core
/// with the reader, did best at 512 KiB ([`READ_STEP`]; RESULTS.md, "The `--workers`
/// reader's reads").
const SHARED_READ_STEP: usize = 1 << 20;

/// The sizes a reader works in: mapped windows, and reads.
#[derive(Clone, Copy)]
struct Steps {
    window: usize,
    read: usize,
}

/// One engine's replay: the engine runs on the reader's core.
const ONE_ENGINE: Steps = Steps {
    window: WINDOW,
    read: READ_STEP,
};

/// `replay --workers`' reader.
const SHARED: Steps = Steps {
    window: SHARED_WINDOW,
    read: SHARED_READ_STEP,
};

/// Files smaller than this are read: mapping pays off on large files only, and small
/// ones (tests, cut files) keep the one path whose messages they were written for.
const MAP_MIN: u64 = 16 << 20;

/// A mapped window: large enough that mapping calls are rare (one per ~10,000 frames of
/// 680 bytes, the windows overlapping by up to [`HUGE_ALIGN`]), small enough that the
/// pages mapped at once stay a small part of the resident memory (they count in it).
const WINDOW: usize = 8 << 20;

/// Where windows of at least four times this size start in the file: at multiples of
/// 2 MiB, so that page cache folios of 2 MiB (ext4 and xfs keep large folios for
/// files written in large writes, or read in large readaheads) are mapped whole, one
/// page-table entry for 512 pages, instead of a fault-around and a TLB miss every few
/// pages. Smaller windows (tests) start at the page holding the next record.
const HUGE_ALIGN: u64 = 2 << 20;

/// A mapped window of [`read_file_in_large_windows`] (`replay --workers`): larger,
/// because with other threads of the process running on other cores each unmapping
/// interrupts them to flush their TLBs (an exit to the hypervisor each, in a VM). With 4 MiB windows
/// those shootdowns were ~4.5 % of a `--workers 2` replay's samples.
const SHARED_WINDOW: usize = 16 << 20;

/// How far ahead of the record being parsed a mapped window's bytes are prefetched:
/// the next record's place is known only from this one's header, so without it each
/// header read waits for memory in turn (RESULTS.md, "mapping the file").
const PREFETCH_AHEAD: usize = 8 << 10;

/// Reads every frame of the capture file at `path`, handing them to `on_batch` in
/// order, up to [`READ_BATCH`] at a time, as `(timestamp µs, frame)` pairs, with the
/// lines of the file ahead for it to request while it works on them (nothing to
/// request unless the file is mapped; a consumer that does not step it leaves them to
/// the reader).
pub fn read_file_batched(
    path: &Path,
    progress: Option<Progress>,
    access: FileAccess,
    mut on_batch: impl FnMut(LinkType, &[(i64, &[u8])], &mut Readahead),
) -> Result<FileStats, SourceError> {
    read_any(
        path,
        progress,
        access,
        ONE_ENGINE,
        |link, _, frames, ahead| on_batch(link, frames, ahead),
    )
}

/// [`read_file_batched`] with a mapped file in larger windows ([`SHARED_WINDOW`]),
/// which unmap less often: each unmapping interrupts the process's other threads'
/// cores to flush their TLBs; and a read one in larger reads ([`SHARED_READ_STEP`]).
/// For `replay --workers`, whose reader steps the [`Readahead`] while it parses the
/// frames.
pub fn read_file_in_large_windows(
    path: &Path,
    progress: Option<Progress>,
    access: FileAccess,
    mut on_batch: impl FnMut(LinkType, &[(i64, &[u8])], &mut Readahead),
) -> Result<FileStats, SourceError> {
    read_any(path, progress, access, SHARED, |link, _, frames, ahead| {
        on_batch(link, frames, ahead)
    })
}

/// A pcap or pcapng file, mapped in windows of `steps.window` bytes when it is a
/// large regular file that `access` maps, else read `steps.read` bytes at a time.
fn read_any(
    path: &Path,
    progress: Option<Progress>,
    access: FileAccess,
    steps: Steps,
    on_batch: impl FnMut(LinkType, &[u8], &[(i64, &[u8])], &mut Readahead),
) -> Result<FileStats, SourceError> {
    let err = |problem: String| SourceError {
        path: path.to_path_buf(),
        problem,
    };
    let mut file = source::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let mut magic = [0u8; 4];
    let n = read_fully(&mut file, &mut magic).map_err(|e| err(format!("cannot read: {e}")))?;
    // What was read to see the format, then the rest: a pipe cannot go back.
    let whole = |file: File| std::io::Cursor::new(magic).take(n as u64).chain(file);
    let pcap = n == 4 && PCAP_MAGICS.contains(&magic);
    let pcapng = n == 4 && magic == source::PCAPNG_MAGIC;
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let progress = progress.unwrap_or_default();
    let diagnose = |e| explain_damage(e, path, pcapng);
    let mapped = size.filter(|&s| s >= MAP_MIN && (pcap || pcapng) && access::maps(access, s));
    if let Some(size) = mapped {
        let r = if access == FileAccess::Auto && size >= TRIED_MIN {
            let cheaper = |map: f64, read: f64| read < map;
            read_trying_both(
                &file,
                size,
                (steps, TRIAL),
                pcapng,
                &progress,
                cheaper,
                on_batch,
            )
        } else {
            read_mapped(
                &file,
                size,
                (steps.window, BUFFER),
                pcapng,
                &progress,
                on_batch,
            )
        };
        return r.map_err(|e| err(diagnose(e)));
    }
    if !(pcap || pcapng) {
        // Empty, too short or not a capture: the frame reader names the problem (it
        // hands on no frame then).
        return source::read_stream(path, whole(file), Some(progress), |_| {});
    }
    let input = Counting {
        inner: whole(file),
        progress,
    };
    let r = read_buffered(input, (steps.read, BUFFER), pcapng, on_batch);
    r.map_err(|e| err(diagnose(e)))
}

/// Under `auto`, a file of this size or more is taken both ways for a while, then
/// the cheaper way (`read_trying_both`).
const TRIED_MIN: u64 = 4 * TRIAL;

/// How much of the file each way is timed on, after as much again read untimed.
const TRIAL: u64 = 64 << 20;

/// A large file under `auto`: read for its first `trial` bytes (untimed: the engine's
/// tables fill), then `trial` bytes read and `trial` mapped, each timed in the
/// thread's CPU per byte, then the rest read if `pick_read(map, read)` says so
/// (`auto`: the cheaper way), else mapped. Which way costs less depends on the host and
/// on how the file sits in the page cache, and it has gone both ways by a third or
/// more (RESULTS.md, "Every target on a third host").
///
/// The untimed part is read: until 2026-12-05 it was mapped, so where mapping is the
/// dearer way it was paid for on twice as many bytes. On the Zen 4 host, where mapping
/// costs nearly twice the CPU, that and the `--workers` reader's larger reads
/// together took `--workers 2` under `auto` to 0.968 of the CPU (0.209 to 0.199 s of
/// wall time, 8 of 10 alternating rounds faster); one engine measured the same, 1.003
/// (RESULTS.md, "The `--workers` reader's reads").
fn read_trying_both(
    file: &File,
    size: u64,
    (steps, trial): (Steps, u64),
    pcapng: bool,
    progress: &Progress,
    pick_read: impl FnOnce(f64, f64) -> bool,
    mut on_batch: impl FnMut(LinkType, &[u8], &[(i64, &[u8])], &mut Readahead),
) -> Result<FileStats, ReadError> {
    // One leg of the walk: read, or mapped; the first from the file's header.
    let mut walk = |read: bool, from: Option<Records>, until: u64| match from {
        Some(from) if read => read_from(file, progress, from, (until, steps.read), &mut on_batch),
        None if read => {
            let input = Counting {
                inner: ReadAt { file, at: 0 },
                progress: progress.clone(),
            };
            read_head(input, (steps.read, BUFFER), pcapng, until, &mut on_batch)
        }
        from => {
            let sizes = (steps.window, BUFFER);
            map_records(
                file,
                size,
                sizes,
                pcapng,
                progress,
                &mut on_batch,
                from,
                until,
            )
        }
    };
    let mut leg = walk(true, None, trial)?;
    // The way of the last leg walked: a file that ends within the trial ended so.
    let mut last_read = true;
    // CPU per byte read, then mapped.
    let mut cost = [0.0f64; 2];
    for (way, c) in cost.iter_mut().enumerate() {
        let Leg::Paused(from) = leg else { break };
        let (t0, at0) = (sys::thread_cpu_ns(), from.at);
        last_read = way == 0;
        leg = walk(last_read, Some(from), at0 + trial)?;
        let at = match &leg {
            Leg::Paused(r) => r.at,
            Leg::Done(_) => size,
        };
        *c = sys::thread_cpu_ns().saturating_sub(t0) as f64 / (at - at0).max(1) as f64;
    }
    let (mut stats, read) = match leg {
        Leg::Done(stats) => (stats, last_read),
        Leg::Paused(from) => {
            let read = pick_read(cost[1], cost[0]);
            (finished(walk(read, Some(from), u64::MAX)?), read)
        }
    };
    stats.mapped = !read;
    Ok(stats)
}

/// The stats of a walk run to the file's end.
fn finished(leg: Leg) -> FileStats {
    match leg {
        Leg::Done(stats) => stats,
        Leg::Paused(_) => unreachable!("no pause before the end of the file"),
    }
}

/// The read path from the record at `from.at` until `until`, `step` bytes a read.
fn read_from(
    file: &File,
    progress: &Progress,
    from: Records,
    (until, step): (u64, usize),
    on_batch: impl FnMut(LinkType, &[u8], &[(i64, &[u8])], &mut Readahead),
) -> Result<Leg, ReadError> {
    progress.store(from.at, Ordering::Relaxed);
    let mut input = Counting {
        inner: ReadAt { file, at: from.at },
        progress: progress.clone(),
    };
    let mut buf = vec![0u8; step];
    let len = fill(&mut input, &mut buf)?;
    read_records(input, buf, (0, len), (step, BUFFER), from, until, on_batch)
}

/// Reads `file` from offset `at` on, whatever its descriptor's own offset.
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// The message for a read error of the file at `path`: for a damaged pcap (pcapng)
/// file, where and how it is damaged.
fn explain_damage(e: ReadError, path: &Path, pcapng: bool) -> String {
    if pcapng {
        explain(e, || damage::pcapng(path))
    } else {
        explain(e, || damage::pcap(path))
    }
}

/// Reads the pcap (or, with `pcapng`, pcapng) `file` of `size` bytes through mapped
/// windows of `window` bytes, refusing records (blocks) of more than `max` bytes. The
/// same frames, batches and errors as [`read_buffered`]; a file that shrinks while it
/// is read is an error once the frames before the change are handed on.
fn read_mapped(
    file: &File,
    size: u64,
    (window, max): (usize, usize),
    pcapng: bool,
    progress: &Progress,
    on_batch: impl FnMut(LinkType, &[u8], &[(i64, &[u8])], &mut Readahead),
) -> Result<FileStats, ReadError> {
    let leg = map_records(
        file,
        size,
        (window, max),
        pcapng,
        progress,
        on_batch,
        None,
        u64::MAX,
    )?;
    Ok(finished(leg))
}

/// [`read_mapped`] from `from` (else from the file's header) until a window's records
/// end at or past the file's offset `until`.
#[allow(clippy::too_many_arguments)]
fn map_records(
    file: &File,
    size: u64,
    (window, max): (usize, usize),
    pcapng: bool,
    progress: &Progress,
    mut on_batch: impl FnMut(LinkType, &[u8], &[(i64, &[u8])], &mut Readahead),
    from: Option<Records>,
    until: u64,
) -> Result<Leg, ReadError> {
    let changed = Arc::new(AtomicBool::new(false));
    let align = window_start_multiple(window);
    let map = |at: u64, len: usize| -> Result<sys::FileMapping, ReadError> {
        sys::FileMapping::new(file, at, len, &changed)
            .map_err(|e| ReadError::Named(format!("cannot map: {e}")))
    };
    let first_len = window.min(size as usize);
    let (mut first, mut format, mut stats, mut pos) = match from {
        Some(r) => (None, r.format, r.stats, r.at),
        None => {
            let first = map(0, first_len)?;
            let (header_len, format) = Format::of(&first, pcapng)?;
            (Some(first), format, FileStats::default(), header_len as u64)
        }
    };
    stats.mapped = true;
    let mut want = window;
    loop {
        let base = pos / align * align;
        let len = (want as u64).min(size - base) as usize;
        // The window the file header was read from serves as the first (same place,
        // same length).
        let win = match first.take() {
            Some(w) if base == 0 && len == first_len => w,
            _ => map(base, len)?,
        };
        let skip = (pos - base) as usize;
        // Once a vanished page has been read (as zeros), nothing more is handed on.
        let (stop, consumed) = format.parse::<true>(&win[skip..], &mut stats, |link, b, a| {
            if !changed.load(Ordering::SeqCst) {
                on_batch(link, &win, b, a)
            }
        });
        pos += consumed as u64;
        progress.store(pos, Ordering::Relaxed);
        if changed.load(Ordering::SeqCst) {
            return Err(shrank(file, size));
        }
        let at_end = base + len as u64 == size;
        match stop {
            Stop::Bad(e) => return Err(damaged(&stats, &e)),
            Stop::Failed(e) => return Err(e),
            Stop::NeedMore if pos == size => return Ok(Leg::Done(stats)),
            Stop::NeedMore if at_end => return Err(format.cut_short(&stats)),
            Stop::NeedMore if pos >= until => {
                return Ok(Leg::Paused(Records {
                    format,
                    stats,
                    at: pos,
                }))
            }
            // A record longer than the window: once more with room for the largest
            // record the read path takes, then it is refused as there.
            Stop::NeedMore if consumed == 0 => {
                if len - skip >= max {
                    return Err(format.cut_short(&stats));
                }
                want = skip + max;
            }
            Stop::NeedMore => want = window,
        }
    }
}

/// Where windows of `window` bytes start in the file: at multiples of [`HUGE_ALIGN`]
/// for large windows, of the page for small ones (tests).
fn window_start_multiple(window: usize) -> u64 {
    let page = sys::page_size() as u64;
    if window as u64 >= 4 * HUGE_ALIGN {
        HUGE_ALIGN.max(page)
    } else {
        page
    }
}

/// The error for a file of `size` bytes that shrank while it was mapped.
fn shrank(file: &File, size: u64) -> ReadError {
    let now = file.metadata().map(|m| m.len()).unwrap_or(0);
    ReadError::Named(format!(
        "the file shrank from {size} to {now} bytes while it was read: reading stopped \
         where it reached past the new end (frames being processed at that moment may \
         have been read as zeros)"
    ))
}

/// Reads the pcap file header at the start of `bytes`: its length, a parser of the
/// file's records and the link type.
fn file_header(bytes: &[u8]) -> Result<(usize, PcapParser, LinkType), ReadError> {
    let (rest, parser) = match PcapParser::new(bytes) {
        Ok(ok) => ok,
        Err(e) => {
            let e = match e {
                PcapError::IncompleteBuffer => cut_short(),
                e => e,
            };
            return Err(ReadError::Named(format!(
                "bad pcap header: {}",
                pcap_error(&e)
            )));
        }
    };
    let link = check_link(
        LinkType::from_linktype(u32::from(parser.header().datalink)),
        "the file's",
    )?;
    Ok((bytes.len() - rest.len(), parser, link))
}

/// The error pcap-file's reader gives for data that ends inside a header or record.
fn cut_short() -> PcapError {
    PcapError::IoError(std::io::ErrorKind::UnexpectedEof.into())
}

/// Reads from `input` until `buf` is full or the input ends; returns the bytes read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, ReadError> {
    read_fully(input, buf).map_err(|e| ReadError::Named(format!("cannot read: {e}")))
}

/// How parsing the bytes at hand stopped.
enum Stop {
    /// The next record continues past the bytes read so far (or there are none left).
    NeedMore,
    Bad(PcapError),
    /// A pcapng block the reader refused, with its message.
    Failed(ReadError),
}

/// The format of a file and the state of its reader.
enum Format {
    Pcap(PcapParser, LinkType),
    PcapNg(NgBlocks),
}

impl Format {
    /// Reads the file header at the start of `bytes` (a pcapng section header with
    /// `pcapng`); returns its length too.
    fn of(bytes: &[u8], pcapng: bool) -> Result<(usize, Format), ReadError> {
        if pcapng {
            let (len, blocks) = NgBlocks::new(bytes)?;
            Ok((len, Format::PcapNg(blocks)))
        } else {
            let (len, parser, link) = file_header(bytes)?;
            Ok((len, Format::Pcap(parser, link)))
        }
    }

    /// Hands on every whole record (block) in `bytes`, in batches; returns why it
    /// stopped and how many bytes it consumed. `PREFETCH` as [`parse_buffered`]'s.
    fn parse<'a, const PREFETCH: bool>(
        &mut self,
        bytes: &'a [u8],
        stats: &mut FileStats,
        mut on_batch: impl FnMut(LinkType, &[(i64, &'a [u8])], &mut Readahead),
    ) -> (Stop, usize) {
        match self {
            Format::Pcap(parser, link) => {
                let link = *link;
                parse_buffered::<PREFETCH>(parser, bytes, stats, |b, a| on_batch(link, b, a))
            }
            Format::PcapNg(blocks) => {
                let (stop, consumed) = blocks.parse::<PREFETCH>(bytes, stats, on_batch);
                let stop = match stop {
                    NgStop::NeedMore => Stop::NeedMore,
                    NgStop::Failed(e) => Stop::Failed(e),
                };
                (stop, consumed)
            }
        }
    }

    /// The error for a file that ends inside its next record (block).
    fn cut_short(&self, stats: &FileStats) -> ReadError {
        match self {
            Format::Pcap(..) => damaged(stats, &cut_short()),
            Format::PcapNg(blocks) => blocks.cut_short(),
        }
    }
}

/// Reads the pcap (or, with `pcapng`, pcapng) file in `input` with reads of `step`
/// bytes into buffers of up to `max`.
fn read_buffered<R: Read>(
    input: R,
    (step, max): (usize, usize),
    pcapng: bool,
    on_batch: impl FnMut(LinkType, &[u8], &[(i64, &[u8])], &mut Readahead),
) -> Result<FileStats, ReadError> {
    let leg = read_head(input, (step, max), pcapng, u64::MAX, on_batch)?;
    Ok(finished(leg))
}

/// [`read_buffered`] from the file's header, pausing once it has consumed up to
/// `until`.
fn read_head<R: Read>(
    mut input: R,
    (step, max): (usize, usize),
    pcapng: bool,
    until: u64,
    on_batch: impl FnMut(LinkType, &[u8], &[(i64, &[u8])], &mut Readahead),
) -> Result<Leg, ReadError> {
    let step = step.min(max);
    let mut buf = vec![0u8; step];
    let len = fill(&mut input, &mut buf)?;
    let (pos, format) = Format::of(&buf[..len], pcapng)?;
    let from = Records {
        format,
        stats: FileStats::default(),
        at: pos as u64,
    };
    read_records(input, buf, (pos, len), (step, max), from, until, on_batch)
}

/// Where a file's records are taken up (`at`, a record's start in the file), with the
/// format read from its header and what was counted before.
struct Records {
    format: Format,
    stats: FileStats,
    at: u64,
}

/// How a walk over part of a file ended: at the file's end, or paused at a record's
/// start at or past the byte it was given.
enum Leg {
    Done(FileStats),
    Paused(Records),
}

/// The read path's walk: `buf[pos..len]` holds the bytes from `from.at` on, `input`
/// what follows them; pauses once it has consumed up to `until` (the file's offsets).
fn read_records<R: Read>(
    mut input: R,
    mut buf: Vec<u8>,
    (mut pos, mut len): (usize, usize),
    (step, max): (usize, usize),
    from: Records,
    until: u64,
    mut on_batch: impl FnMut(LinkType, &[u8], &[(i64, &[u8])], &mut Readahead),
) -> Result<Leg, ReadError> {
    let Records {
        mut format,
        mut stats,
        at,
    } = from;
    // The file offset of buf[0].
    let mut base = at - pos as u64;
    let mut eof = len < buf.len();
    loop {
        let (stop, consumed) = format.parse::<false>(&buf[pos..len], &mut stats, |link, b, a| {
            on_batch(link, &buf, b, a)
        });
        pos += consumed;
        match stop {
            Stop::Bad(e) => return Err(damaged(&stats, &e)),
            Stop::Failed(e) => return Err(e),
            Stop::NeedMore if pos == len && eof => return Ok(Leg::Done(stats)),
            Stop::NeedMore if eof || (pos == 0 && len == max) => {
                return Err(format.cut_short(&stats))
            }
            Stop::NeedMore if base + pos as u64 >= until => {
                let at = base + pos as u64;
                return Ok(Leg::Paused(Records { format, stats, at }));
            }
            Stop::NeedMore => {
                // A record that fills the buffer: a larger one. Else room for a step
                // (and at least as much again as is carried over).
                let size = if pos == 0 && len == buf.len() {
                    buf.len() * 2
                } else {
                    step.max(2 * (len - pos))
                };
                // The partial record to the front, then room after it.
                buf.copy_within(pos..len, 0);
                buf.resize(size.min(max), 0);
                base += pos as u64;
                len -= pos;
                pos = 0;
                let n = fill(&mut input, &mut buf[len..])?;
                eof = len + n < buf.len();
                len += n;
            }
        }
    }
}

fn damaged(stats: &FileStats, e: &PcapError) -> ReadError {
    ReadError::Damaged(format!(
        "packet record {}: {}",
        stats.frames + 1,
        pcap_error(e)
    ))
}

/// Hands on every whole record in `bytes`, in batches; returns why it stopped and how
/// many bytes it consumed. `PREFETCH`: bring the bytes ahead into the cache (mapped
/// windows; read buffers are there already, the kernel has just copied them), through
/// each batch's [`Readahead`] and, for what its consumer did not request, as the
/// records are walked.
fn parse_buffered<'a, const PREFETCH: bool>(
    parser: &PcapParser,
    bytes: &'a [u8],
    stats: &mut FileStats,
    mut on_batch: impl FnMut(&[(i64, &'a [u8])], &mut Readahead),
) -> (Stop, usize) {
    let layout = RecordLayout::of(parser.header());
    let mut batch = [(0i64, &[][..]); READ_BATCH];
    let mut n = 0;
    let mut slice = bytes;
    // Offset in `bytes` up to which lines have been prefetched.
    let mut fetched = 0;
    let stop = loop {
        if PREFETCH {
            prefetch_ahead(bytes, bytes.len() - slice.len(), &mut fetched);
        }
        if slice.is_empty() {
            break Stop::NeedMore;
        }
        match layout.next(slice) {
            Ok((ts_us, data, rest)) => {
                batch[n] = (ts_us, data);
                n += 1;
                slice = rest;
                if n == READ_BATCH {
                    stats.frames += n as u64;
                    let at = bytes.len() - slice.len();
                    hand_on_reading_ahead::<PREFETCH>(
                        bytes,
                        at,
                        &mut fetched,
                        &batch,
                        &mut on_batch,
                    );
                    n = 0;
                }
            }
            Err(PcapError::IncompleteBuffer) => break Stop::NeedMore,
            Err(e) => break Stop::Bad(e),
        }
    };
    if n > 0 {
        stats.frames += n as u64;
        let at = bytes.len() - slice.len();
        hand_on_reading_ahead::<PREFETCH>(bytes, at, &mut fetched, &batch[..n], &mut on_batch);
    }
    (stop, bytes.len() - slice.len())
}

/// Hands `frames` (the records of `bytes` before offset `at`) to `on_batch`, with
/// `PREFETCH` the lines of `bytes` from `fetched` to [`READAHEAD_BYTES`] past `at` for
/// it to request while it works: spread over two steps a frame (the engine steps in
/// its parse loop and in its update loop). `fetched` then moves to where the consumer
/// got to; the walk requests the lines it did not.
#[inline(always)]
pub(super) fn hand_on_reading_ahead<'a, const PREFETCH: bool>(
    bytes: &[u8],
    at: usize,
    fetched: &mut usize,
    frames: &[(i64, &'a [u8])],
    mut on_batch: impl FnMut(&[(i64, &'a [u8])], &mut Readahead),
) {
    if !PREFETCH {
        let mut none = Readahead::NONE;
        return on_batch(frames, &mut none);
    }
    let to = at.saturating_add(READAHEAD_BYTES);
    let mut ahead = Readahead::over(bytes, *fetched, to, 2 * frames.len());
    on_batch(frames, &mut ahead);
    *fetched = (*fetched).max(ahead.reached());
}

/// Prefetches `bytes` into L2 up to [`PREFETCH_AHEAD`] past offset `at`, from
/// `fetched` on (advanced): mapped windows, whose records are not in the cache yet.
#[inline(always)]
pub(super) fn prefetch_ahead(bytes: &[u8], at: usize, fetched: &mut usize) {
    let ahead = (at + PREFETCH_AHEAD).min(bytes.len());
    // Two lines a turn, by address (a hint needs no bounds check; the second may fall
    // one line past the end, harmlessly): ten lines of an average frame cost 20 fewer
    // instructions than a checked turn per line.
    while *fetched < ahead {
        let p = bytes.as_ptr().wrapping_add(*fetched);
        sys::prefetch_to_l2(p);
        sys::prefetch_to_l2(p.wrapping_add(64));
        *fetched += 128;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::read_file;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::{DataLink, Endianness, TsResolution};
    use std::time::Duration;

    type Frames = Vec<(i64, LinkType, Vec<u8>)>;

    /// A pcap of `n` frames of varying sizes.
    fn capture(n: usize, endianness: Endianness, ts_resolution: TsResolution) -> Vec<u8> {
        let header = PcapHeader {
            endianness,
            ts_resolution,
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for i in 0..n {
            let data: Vec<u8> = (0..(i * 37) % 1500 + 1).map(|b| (b + i) as u8).collect();
            let ts = Duration::new(1_767_225_600 + i as u64, (i as u32 * 7919) % 1_000_000_000);
            w.write_packet(&PcapPacket::new(ts, data.len() as u32, &data))
                .unwrap();
        }
        w.into_writer()
    }

    fn write_tmp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        f
    }

    /// What the frame-at-a-time reader gives: frames and the error text.
    fn one_by_one(p: &Path) -> (Frames, Option<String>) {
        let mut seen = vec![];
        let r = read_file(p, None, |f| seen.push((f.ts_us, f.link, f.data.to_vec())));
        (seen, r.err().map(|e| e.problem))
    }

    fn batched(p: &Path) -> (Frames, Option<String>, usize) {
        let mut seen = vec![];
        let mut calls = 0;
        let r = read_file_batched(p, None, FileAccess::Read, |link, frames, _| {
            calls += 1;
            assert!(!frames.is_empty() && frames.len() <= READ_BATCH);
            seen.extend(frames.iter().map(|&(ts, d)| (ts, link, d.to_vec())));
        });
        (seen, r.err().map(|e| e.problem), calls)
    }

    #[test]
    fn same_frames_as_the_frame_reader_in_every_format() {
        for e in [Endianness::Big, Endianness::Little] {
            for r in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
                let f = write_tmp(&capture(300, e, r));
                let (want, none) = one_by_one(f.path());
                let (got, err, calls) = batched(f.path());
                assert_eq!(none, None);
                assert_eq!(err, None);
                assert_eq!(want.len(), 300);
                assert_eq!(got, want, "{e:?} {r:?}");
                assert_eq!(calls, 300usize.div_ceil(READ_BATCH));
            }
        }
    }

    /// Reads `p` through mapped windows of `sizes` (window, largest record), as
    /// `read_file_batched` does a large file: frames and the error text.
    fn mapped(p: &Path, sizes: (usize, usize)) -> (Frames, Option<String>) {
        mapped_as(p, sizes, false)
    }

    /// [`mapped`] of a pcap (`pcapng` false) or pcapng file.
    fn mapped_as(p: &Path, sizes: (usize, usize), pcapng: bool) -> (Frames, Option<String>) {
        let file = File::open(p).unwrap();
        let size = file.metadata().unwrap().len();
        let mut seen = vec![];
        let r = read_mapped(
            &file,
            size,
            sizes,
            pcapng,
            &Progress::default(),
            |link, _, frames, _| {
                assert!(!frames.is_empty() && frames.len() <= READ_BATCH);
                seen.extend(frames.iter().map(|&(ts, d)| (ts, link, d.to_vec())));
            },
        );
        (seen, r.err().map(|e| explain_damage(e, p, pcapng)))
    }

    /// Reads `p` as `auto` does a large file, both ways in turn: read for the first
    /// `trial` bytes and the next `trial`, mapped through windows of `window` bytes for
    /// the `trial` after, then the rest read (`read_rest`) or mapped.
    fn tried_as(
        p: &Path,
        (window, trial): (usize, u64),
        pcapng: bool,
        read_rest: bool,
    ) -> (Frames, Option<String>) {
        let file = File::open(p).unwrap();
        let size = file.metadata().unwrap().len();
        let mut seen = vec![];
        // Reads of a page: the read legs pause near their ends, as on a large file.
        let steps = Steps {
            window,
            read: TRIAL_READ,
        };
        let r = read_trying_both(
            &file,
            size,
            (steps, trial),
            pcapng,
            &Progress::default(),
            |_, _| read_rest,
            |link, _, frames, _| {
                assert!(!frames.is_empty() && frames.len() <= READ_BATCH);
                seen.extend(frames.iter().map(|&(ts, d)| (ts, link, d.to_vec())));
            },
        );
        // Past the trial's three legs (each ends within a read or a window, and a
        // record, past its bytes), the pick decides the way (a file that ends sooner:
        // the test below).
        let past_trial = size > 3 * (trial + (window.max(TRIAL_READ) + 2000) as u64);
        if let (Ok(stats), true) = (&r, past_trial) {
            assert_eq!(stats.mapped, !read_rest, "the way taken after the trial");
        }
        (seen, r.err().map(|e| explain_damage(e, p, pcapng)))
    }

    /// The read size of the trials of small files above and below.
    const TRIAL_READ: usize = 4096;

    /// Whether `auto` reports the pcap file `p` mapped, tried with `trial` bytes a leg
    /// and a pick of `read_rest`.
    fn mapped_after_trial(p: &Path, trial: u64, read_rest: bool) -> bool {
        let file = File::open(p).unwrap();
        let size = file.metadata().unwrap().len();
        let steps = Steps {
            window: 3 * sys::page_size(),
            read: TRIAL_READ,
        };
        let progress = Progress::default();
        let r = read_trying_both(
            &file,
            size,
            (steps, trial),
            false,
            &progress,
            |_, _| read_rest,
            |_, _, _, _| {},
        );
        match r {
            Ok(stats) => stats.mapped,
            Err(_) => panic!("{} did not read whole", p.display()),
        }
    }

    /// A file that ends within the trial is reported the way its last leg took it
    /// (`files_mapped`: the way each file ended on), whatever the pick would be.
    #[test]
    fn a_file_that_ends_within_the_trial_reports_the_way_it_ended_on() {
        let full = capture(300, Endianness::Little, TsResolution::MicroSecond);
        let f = write_tmp(&full);
        let len = full.len() as u64;
        // Half the file read untimed, the rest in the timed read leg.
        assert!(!mapped_after_trial(f.path(), len / 2, false));
        // Two fifths untimed, two fifths read, the end in the timed mapped leg.
        assert!(mapped_after_trial(f.path(), len * 2 / 5, true));
        // Long enough for the whole trial: the pick.
        assert!(mapped_after_trial(f.path(), len / 5, false));
        assert!(!mapped_after_trial(f.path(), len / 5, true));
    }

    /// Reads `p` through read buffers of `sizes` (read step, largest buffer), as
    /// `read_file_batched` reads a small file or a pipe: frames and the error text.
    fn read_as(p: &Path, sizes: (usize, usize), pcapng: bool) -> (Frames, Option<String>) {
        let mut seen = vec![];
        let r = read_buffered(
            File::open(p).unwrap(),
            sizes,
            pcapng,
            |link, _, frames, _| {
                assert!(!frames.is_empty() && frames.len() <= READ_BATCH);
                seen.extend(frames.iter().map(|&(ts, d)| (ts, link, d.to_vec())));
            },
        );
        (seen, r.err().map(|e| explain_damage(e, p, pcapng)))
    }

    /// Windows far smaller than the file (records across every window's end), the
    /// file cut anywhere: the frames and the message of the frame reader.
    #[test]
    fn mapped_windows_give_the_frames_and_messages_of_the_frame_reader() {
        let page = sys::page_size();
        let full = capture(300, Endianness::Big, TsResolution::NanoSecond);
        let mut rng = fastrand::Rng::with_seed(5);
        let cuts = [
            4,
            10,
            23,
            24,
            30,
            40,
            full.len() / 2,
            full.len() - 1,
            full.len(),
        ];
        for cut in cuts
            .into_iter()
            .chain((0..12).map(|_| rng.usize(24..full.len())))
        {
            let f = write_tmp(&full[..cut]);
            let (want, want_err) = one_by_one(f.path());
            for sizes in [(page, BUFFER), (3 * page, BUFFER), (page, 2 * page)] {
                let (got, err) = mapped(f.path(), sizes);
                assert_eq!(got, want, "cut at {cut}, {sizes:?}");
                assert_eq!(err, want_err, "cut at {cut}, {sizes:?}");
            }
            for (trial, read_rest) in [(3000, true), (3000, false), (40_000, true)] {
                let (got, err) = tried_as(f.path(), (3 * page, trial), false, read_rest);
                assert_eq!(
                    got, want,
                    "both ways, cut at {cut}, trial {trial}, {read_rest}"
                );
                assert_eq!(
                    err, want_err,
                    "both ways, cut at {cut}, trial {trial}, {read_rest}"
                );
            }
            if cut == full.len() {
                assert_eq!((want.len(), want_err), (300, None));
            }
        }
    }

    /// A record longer than a window is read from a larger one; one longer than the
    /// largest record is refused, as the read path refuses it.
    #[test]
    fn mapped_windows_grow_for_a_long_record_up_to_the_same_bound() {
        let page = sys::page_size();
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for len in [10, page + page / 2, 10] {
            let data = vec![7u8; len];
            w.write_packet(&PcapPacket::new(Duration::from_secs(1), len as u32, &data))
                .unwrap();
        }
        let f = write_tmp(&w.into_writer());
        let (want, none) = one_by_one(f.path());
        assert_eq!((want.len(), none), (3, None));
        assert_eq!(mapped(f.path(), (page, 2 * page)), (want.clone(), None));
        let (by_read, read_err) = read_as(f.path(), (page, page), false);
        let (got, err) = mapped(f.path(), (page, page));
        assert_eq!((got.len(), by_read.len()), (1, 1));
        assert!(read_err
            .as_deref()
            .is_some_and(|m| m.starts_with("packet record 2:")));
        assert_eq!(err, read_err);
    }

    /// A file truncated while it is read through mapped windows: an error naming the
    /// change, after the frames read before it, each one of the file's own (no page
    /// of zeros read as records); no SIGBUS.
    #[test]
    fn a_file_that_shrinks_while_mapped_is_an_error_not_a_crash() {
        let page = sys::page_size();
        let bytes = capture(2000, Endianness::Little, TsResolution::MicroSecond);
        let f = write_tmp(&bytes);
        let (all, _) = one_by_one(f.path());
        let size = bytes.len() as u64;
        let file = File::open(f.path()).unwrap();
        let mut seen: Frames = vec![];
        let r = read_mapped(
            &file,
            size,
            (16 * page, BUFFER),
            false,
            &Progress::default(),
            |link, _, frames, _| {
                let first = seen.is_empty();
                seen.extend(frames.iter().map(|&(ts, d)| (ts, link, d.to_vec())));
                if first {
                    f.as_file().set_len(size / 2).unwrap();
                }
            },
        );
        match r {
            Err(ReadError::Named(m)) => assert!(
                m.starts_with(&format!(
                    "the file shrank from {size} to {} bytes",
                    size / 2
                )),
                "{m}"
            ),
            _ => panic!("not an error"),
        }
        // The frames wholly before the new end that were handed on are the file's
        // own. Past it, the rest of its last page reads as zeros without a SIGBUS
        // (zero-length records, or a record's tail): at most a page's worth more.
        let whole = all
            .iter()
            .scan(24, |end, f| {
                *end += 16 + f.2.len();
                Some(*end)
            })
            .take_while(|&end| end <= size as usize / 2)
            .count();
        assert!(seen.len() >= READ_BATCH, "{}", seen.len());
        assert!(seen.len() <= whole + page / 16, "{} {whole}", seen.len());
        let n = seen.len().min(whole);
        assert!(seen[..n] == all[..n], "frames differ from the file's");
        assert!(n + READ_BATCH > whole, "{n} {whole}");
    }

    /// Cut anywhere (inside the header, a record header, a record), the batched reader
    /// hands on the same frames and names the same problem.
    #[test]
    fn same_frames_and_message_wherever_the_file_is_cut() {
        let full = capture(12, Endianness::Little, TsResolution::MicroSecond);
        for cut in (0..full.len()).step_by(7).chain([1, 4, 23, 24, 25, 39, 40]) {
            let f = write_tmp(&full[..cut]);
            let (want, want_err) = one_by_one(f.path());
            let (got, err, _) = batched(f.path());
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(err, want_err, "cut at {cut}");
        }
    }

    /// Buffers much smaller than the file: records straddle every refill, and a record
    /// larger than a read step grows the buffer.
    #[test]
    fn records_across_refills() {
        let bytes = capture(500, Endianness::Little, TsResolution::NanoSecond);
        let f = write_tmp(&bytes);
        let (want, _) = one_by_one(f.path());
        for sizes in [
            (1600, 1600),
            (4096, 4096),
            (10_000, 10_000),
            (100, 1600),
            (1000, 4096),
        ] {
            let mut got = vec![];
            let input = std::fs::File::open(f.path()).unwrap();
            let st = read_buffered(input, sizes, false, |link, _, frames, _| {
                got.extend(frames.iter().map(|&(ts, d)| (ts, link, d.to_vec())));
            })
            .unwrap_or_else(|_| panic!("buffer {sizes:?}"));
            assert_eq!(st.frames, 500);
            assert_eq!(got, want, "buffer {sizes:?}");
        }
    }

    /// A record larger than the largest buffer is refused, after the frames before it.
    #[test]
    fn a_record_larger_than_the_buffer_is_refused() {
        let bytes = capture(3, Endianness::Little, TsResolution::MicroSecond);
        let input = std::io::Cursor::new(bytes);
        let mut got = 0;
        // Frames 0, 1 and 2 hold 1, 38 and 75 bytes: 16 + 38 need a larger buffer
        // than the first read's 40 bytes, 16 + 75 do not fit in 80.
        let r = read_buffered(input, (40, 80), false, |_, _, frames, _| {
            got += frames.len()
        });
        assert_eq!(got, 2);
        match r {
            Err(ReadError::Damaged(m)) => assert!(m.starts_with("packet record 3:"), "{m}"),
            _ => panic!("not refused"),
        }
    }

    /// pcapng frames (borrowed from the read buffer, as pcap records are) come in order,
    /// with each frame's own link type, through interfaces of two link types
    /// interleaved.
    #[test]
    fn pcapng_frames_in_order_across_link_types() {
        let f = write_tmp(&pcapng(Endianness::Big));
        let (want, none) = one_by_one(f.path());
        let (got, err, calls) = batched(f.path());
        assert_eq!((none, err), (None, None));
        assert_eq!(want.len(), 300);
        assert_eq!(got, want);
        // Batches break at each change of link type, else hold READ_BATCH frames.
        assert!(calls > 300 / READ_BATCH && calls < 300, "{calls}");
    }

    /// Mapped pcap or pcapng: each batch comes with the lines past it up to
    /// [`READAHEAD_BYTES`] beyond its last record (or to the window's end), which two
    /// steps a frame request in full; what a consumer requested is not handed on again,
    /// what it left is.
    #[test]
    fn readahead_runs_past_each_batch_and_resumes_where_the_consumer_stopped() {
        let files = [
            (
                capture(3000, Endianness::Little, TsResolution::MicroSecond),
                false,
            ),
            // Four sections, to be larger than the readahead.
            (vec![pcapng(Endianness::Little); 4].concat(), true),
        ];
        for (bytes, pcapng) in files {
            let f = write_tmp(&bytes);
            let file = File::open(f.path()).unwrap();
            let (mut batches, mut previous) = (0, None);
            let r = read_mapped(
                &file,
                bytes.len() as u64,
                (8 << 20, 1 << 20),
                pcapng,
                &Progress::default(),
                |_, win, frames, ahead| {
                    let window_end = win.as_ptr() as usize + win.len();
                    let last = frames.last().unwrap().1;
                    // The end of the last record: a pcapng block goes on past its
                    // frame, by up to 3 bytes of padding, an option of 12 (in this
                    // file) and its 4-byte trailer.
                    let after = last.as_ptr() as usize + last.len();
                    let after = match pcapng {
                        false => after..=after,
                        true => after + 4..=after + 19,
                    };
                    let (start, end) = ahead.bounds();
                    batches += 1;
                    if start < end {
                        let reach = |after| window_end.min(after + READAHEAD_BYTES);
                        let reach = reach(*after.start())..=reach(*after.end());
                        assert!(reach.contains(&end), "{end} not in {reach:?}");
                    }
                    let after = *after.end();
                    // Past the lines handed on, the walk's own prefetch may have gone
                    // (to PREFETCH_AHEAD past the record it parsed last), no further.
                    let walked = after + PREFETCH_AHEAD + 128;
                    match previous {
                        // Nothing left to request: the lines to the window's end were
                        // requested already, by the walk or the steps.
                        _ if start >= end => {
                            let stepped_to_end = matches!(previous,
                                Some((ps, pe, stepped))
                                    if ps >= pe || (stepped && pe + 64 > window_end));
                            assert!(walked >= window_end || stepped_to_end)
                        }
                        None => {}
                        // The lines requested are not handed on again (a step ends on
                        // a whole line).
                        Some((_, prev_end, true)) => {
                            assert!(start >= prev_end && (start < prev_end + 64 || start <= walked))
                        }
                        // Those left are, unless the walk requested them.
                        Some((prev_start, _, false)) => {
                            assert!(start == prev_start || (start > prev_start && start <= walked))
                        }
                    }
                    // Every other batch, the engine's two steps a frame.
                    let stepped = batches % 2 == 1;
                    if stepped {
                        for _ in 0..2 * frames.len() {
                            ahead.step();
                        }
                        assert!(ahead.bounds().0 >= end);
                    }
                    previous = Some((start, end, stepped));
                },
            );
            assert!(r.is_ok());
            assert!(batches > 4, "{batches}");
        }
    }

    /// A pcapng file of 300 frames in runs of 70 on two interfaces of different link
    /// types, a name resolution block among them (neither interface nor packet).
    fn pcapng(endianness: Endianness) -> Vec<u8> {
        use pcap_file::pcapng::blocks::enhanced_packet::{
            EnhancedPacketBlock, EnhancedPacketOption,
        };
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        use pcap_file::pcapng::blocks::name_resolution::NameResolutionBlock;
        use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
        use pcap_file::pcapng::PcapNgWriter;
        let section = SectionHeaderBlock {
            endianness,
            ..SectionHeaderBlock::default()
        };
        let mut w = PcapNgWriter::with_section_header(Vec::new(), section).unwrap();
        for linktype in [DataLink::ETHERNET, DataLink::RAW] {
            let idb = InterfaceDescriptionBlock {
                linktype,
                snaplen: 0,
                options: vec![],
            };
            w.write_pcapng_block(idb).unwrap();
        }
        for i in 0..300u32 {
            let data: Vec<u8> = (0..i % 200 + 1).map(|b| (b + i) as u8).collect();
            let epb = EnhancedPacketBlock {
                // Runs of 70 frames on one interface, then the other.
                interface_id: (i / 70) % 2,
                timestamp: Duration::from_micros(1_767_225_600_000_000 + u64::from(i)),
                original_len: data.len() as u32,
                data: std::borrow::Cow::Owned(data),
                // Every tenth with an option: read by pcap-file's parser, not by hand.
                options: match i % 10 {
                    9 => vec![EnhancedPacketOption::Flags(1)],
                    _ => vec![],
                },
            };
            w.write_pcapng_block(epb).unwrap();
            if i == 150 {
                let nrb = NameResolutionBlock {
                    records: vec![],
                    options: vec![],
                };
                w.write_pcapng_block(nrb).unwrap();
            }
        }
        w.into_inner()
    }

    /// A pcapng file through mapped windows and read buffers far smaller than it
    /// (blocks across every window's end and every refill), in either byte order and
    /// with two sections of different byte orders, cut anywhere (inside the section
    /// header too): the frames, link types and message of the frame reader.
    #[test]
    fn mapped_pcapng_gives_the_frames_and_messages_of_the_frame_reader() {
        let page = sys::page_size();
        let two_sections = [pcapng(Endianness::Little), pcapng(Endianness::Big)].concat();
        for full in [
            pcapng(Endianness::Big),
            pcapng(Endianness::Little),
            two_sections,
        ] {
            let frames = if full.len() > pcapng(Endianness::Big).len() {
                600
            } else {
                300
            };
            let mut rng = fastrand::Rng::with_seed(7);
            let cuts = [10, 27, full.len() / 2, full.len() - 1, full.len()];
            let random = (0..12).map(|_| rng.usize(40..full.len()));
            for cut in cuts.into_iter().chain(random) {
                let f = write_tmp(&full[..cut]);
                let (want, want_err) = one_by_one(f.path());
                for sizes in [(page, BUFFER), (3 * page, BUFFER), (page, 2 * page)] {
                    let (got, err) = mapped_as(f.path(), sizes, true);
                    assert_eq!(got, want, "{frames} frames, cut at {cut}, {sizes:?}");
                    assert_eq!(err, want_err, "{frames} frames, cut at {cut}, {sizes:?}");
                }
                for read_rest in [true, false] {
                    let (got, err) = tried_as(f.path(), (3 * page, 3000), true, read_rest);
                    assert_eq!(got, want, "both ways, cut at {cut}, {read_rest}");
                    assert_eq!(err, want_err, "both ways, cut at {cut}, {read_rest}");
                }
                for sizes in [(100, BUFFER), (4096, BUFFER), (1 << 20, BUFFER)] {
                    let (got, err) = read_as(f.path(), sizes, true);
                    assert_eq!(got, want, "read, {frames} frames, cut at {cut}, {sizes:?}");
                    assert_eq!(
                        err, want_err,
                        "read, {frames} frames, cut at {cut}, {sizes:?}"
                    );
                }
                if cut == full.len() {
                    assert_eq!((want.len(), want_err), (frames, None));
                }
            }
        }
    }

    /// Random damage (bytes overwritten anywhere, the file cut anywhere) read through
    /// small mapped windows or read buffers gives the frames and message of the frame reader, for
    /// pcapng (blocks read by hand or by pcap-file) and pcap alike; never a panic.
    #[test]
    fn mapped_reads_of_damaged_files_match_the_frame_reader() {
        let page = sys::page_size();
        let mut rng = fastrand::Rng::with_seed(11);
        let originals = [
            (pcapng(Endianness::Little), true),
            (pcapng(Endianness::Big), true),
            (
                capture(200, Endianness::Little, TsResolution::MicroSecond),
                false,
            ),
        ];
        for _ in 0..100 {
            let (original, is_ng) = &originals[rng.usize(..originals.len())];
            let mut bytes = original.clone();
            // Past the file header, which is checked apart.
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(32..bytes.len());
                bytes[at] = rng.u8(..);
            }
            bytes.truncate(rng.usize(bytes.len() / 2..=bytes.len()));
            let f = write_tmp(&bytes);
            let (want, want_err) = one_by_one(f.path());
            let (got, err) = mapped_as(f.path(), (page, 2 * page), *is_ng);
            assert_eq!((got.len(), &err), (want.len(), &want_err));
            assert_eq!(got, want);
            let (got, err) = read_as(f.path(), (4096, BUFFER), *is_ng);
            assert_eq!((got.len(), &err), (want.len(), &want_err), "read");
            assert_eq!(got, want, "read");
            let (got, err) = tried_as(f.path(), (3 * page, 2000), *is_ng, rng.bool());
            assert_eq!((got.len(), &err), (want.len(), &want_err), "both ways");
            assert_eq!(got, want, "both ways");
        }
    }

    /// Damage the pcapng parser names: a block whose length is not a multiple of four,
    /// a packet naming an interface never described, a trailing length that differs, a
    /// packet longer than its block. Same message mapped as read.
    #[test]
    fn mapped_pcapng_refuses_what_the_frame_reader_refuses() {
        let page = sys::page_size();
        let full = pcapng(Endianness::Big);
        // The first enhanced packet block: after the section header and the two
        // interface descriptions (each block's length is its second word).
        let len_at = |at: usize| u32::from_be_bytes(full[at + 4..at + 8].try_into().unwrap());
        let mut at = 0;
        for _ in 0..3 {
            at += len_at(at) as usize;
        }
        assert_eq!(&full[at..at + 4], &6u32.to_be_bytes());
        let mut odd_length = full.clone();
        odd_length[at + 7] |= 1;
        let mut no_interface = full.clone();
        no_interface[at + 8..at + 12].copy_from_slice(&9u32.to_be_bytes());
        let mut other_trailer = full.clone();
        let end = at + len_at(at) as usize;
        other_trailer[end - 1] ^= 4;
        let mut data_past_block = full.clone();
        data_past_block[at + 20..at + 24].copy_from_slice(&4096u32.to_be_bytes());
        for bad in [odd_length, no_interface, other_trailer, data_past_block] {
            let f = write_tmp(&bad);
            let (want, want_err) = one_by_one(f.path());
            assert!(want_err.is_some());
            let (got, err) = mapped_as(f.path(), (page, BUFFER), true);
            assert_eq!((&got, &err), (&want, &want_err));
            assert_eq!(read_as(f.path(), (4096, BUFFER), true), (want, want_err));
        }
    }
}
