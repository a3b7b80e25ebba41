//! The fast way through a pcap file: large reads into one buffer, and the frames handed
//! on in batches that borrow from it (no copy, no allocation per packet), so `replay`
//! can use [`Engine::process_batch`](crate::Engine::process_batch). pcapng files go
//! through the frame-at-a-time reader, a frame per batch.
//!
//! Records are decoded with `pcap-file`'s own slice parser, and every problem gets the
//! message [`read_file`](super::read_file) gives for it.

use super::{
    check_link, damage, duration_us, explain, pcap_error, read_file, read_fully, Counting,
    FileStats, Progress, ReadError, SourceError, PCAP_MAGICS,
};
use crate::parse::LinkType;
use pcap_file::pcap::PcapParser;
use pcap_file::PcapError;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

/// Frames per call of the batch callback (two of the engine's lookup batches).
pub const READ_BATCH: usize = 64;

/// The read buffer: large reads, and room for any record (pcap-file's reader uses the
/// same bound, so a record that does not fit is refused the same way).
const BUFFER: usize = 8_000_000;

/// Reads every frame of the capture file at `path`, handing them to `on_batch` in
/// order, up to [`READ_BATCH`] at a time, as `(timestamp µs, frame)` pairs.
pub fn read_file_batched(
    path: &Path,
    progress: Option<Progress>,
    mut on_batch: impl FnMut(LinkType, &[(i64, &[u8])]),
) -> Result<FileStats, SourceError> {
    let err = |problem: String| SourceError {
        path: path.to_path_buf(),
        problem,
    };
    let mut magic = [0u8; 4];
    let pcap = File::open(path).ok().and_then(|mut f| {
        let n = read_fully(&mut f, &mut magic).ok()?;
        (n == 4 && PCAP_MAGICS.contains(&magic) && f.rewind().is_ok()).then_some(f)
    });
    let Some(file) = pcap else {
        // pcapng, or a problem the frame reader names.
        return read_file(path, progress, |f| on_batch(f.link, &[(f.ts_us, f.data)]));
    };
    let input = Counting {
        inner: file,
        progress: progress.unwrap_or_default(),
    };
    read_pcap(input, BUFFER, on_batch).map_err(|e| err(explain(e, || damage::pcap(path))))
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
}

fn read_pcap<R: Read>(
    mut input: R,
    buffer: usize,
    mut on_batch: impl FnMut(LinkType, &[(i64, &[u8])]),
) -> Result<FileStats, ReadError> {
    let mut buf = vec![0u8; buffer];
    let mut len = fill(&mut input, &mut buf)?;
    let mut eof = len < buf.len();
    let (rest, parser) = match PcapParser::new(&buf[..len]) {
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
    let mut pos = len - rest.len();
    let mut stats = FileStats::default();
    loop {
        let (stop, consumed) =
            parse_buffered(&parser, &buf[pos..len], &mut stats, |b| on_batch(link, b));
        pos += consumed;
        match stop {
            Stop::Bad(e) => return Err(damaged(&stats, &e)),
            Stop::NeedMore if pos == len && eof => return Ok(stats),
            Stop::NeedMore if eof || (pos == 0 && len == buf.len()) => {
                return Err(damaged(&stats, &cut_short()))
            }
            Stop::NeedMore => {
                buf.copy_within(pos..len, 0);
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
/// many bytes it consumed.
fn parse_buffered<'a>(
    parser: &PcapParser,
    bytes: &'a [u8],
    stats: &mut FileStats,
    mut on_batch: impl FnMut(&[(i64, &'a [u8])]),
) -> (Stop, usize) {
    let mut batch = [(0i64, &[][..]); READ_BATCH];
    let mut n = 0;
    let mut slice = bytes;
    let stop = loop {
        if slice.is_empty() {
            break Stop::NeedMore;
        }
        match parser.next_packet(slice) {
            Ok((rest, pkt)) => {
                // The record's data: after its 16-byte header, up to the rest.
                let data = &slice[16..slice.len() - rest.len()];
                batch[n] = (duration_us(pkt.timestamp), data);
                n += 1;
                stats.frames += 1;
                slice = rest;
                if n == READ_BATCH {
                    on_batch(&batch);
                    n = 0;
                }
            }
            Err(PcapError::IncompleteBuffer) => break Stop::NeedMore,
            Err(e) => break Stop::Bad(e),
        }
    };
    if n > 0 {
        on_batch(&batch[..n]);
    }
    (stop, bytes.len() - slice.len())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let r = read_file_batched(p, None, |link, frames| {
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

    /// A buffer much smaller than the file: records straddle every refill.
    #[test]
    fn records_across_refills() {
        let bytes = capture(500, Endianness::Little, TsResolution::NanoSecond);
        let f = write_tmp(&bytes);
        let (want, _) = one_by_one(f.path());
        for buffer in [1600, 4096, 10_000] {
            let mut got = vec![];
            let input = std::fs::File::open(f.path()).unwrap();
            let st = read_pcap(input, buffer, |link, frames| {
                got.extend(frames.iter().map(|&(ts, d)| (ts, link, d.to_vec())));
            })
            .unwrap_or_else(|_| panic!("buffer {buffer}"));
            assert_eq!(st.frames, 500);
            assert_eq!(got, want, "buffer {buffer}");
        }
    }
}
