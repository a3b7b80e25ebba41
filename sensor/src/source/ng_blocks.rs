//! pcapng blocks read in place from a mapped window, for [`super::batched`]: the frames
//! and errors of the frame-at-a-time reader (`pcap-file`'s `PcapNgParser`), without its
//! reader's copies (every block from the kernel into its buffer, each frame again into
//! a batch).
//!
//! Enhanced packet blocks without options, nearly every block of a capture, are read
//! by hand ([`NgBlocks::plain_epb`]): `pcap-file` parses each into a block with an
//! options vector, which left a replay of 2,000,000 frames a fifth slower than the
//! same frames as pcap (RESULTS.md). Anything the hand-reader is not sure of (another
//! block type, options, a length it would refuse) goes to `pcap-file`'s parser, which
//! then accepts it or names the problem as the frame reader does.

use super::batched::{hand_on_reading_ahead, READ_BATCH};
use super::readahead::Readahead;
use super::{pcap_error, FileStats, Interfaces, ReadError};
use crate::parse::LinkType;
use pcap_file::pcapng::PcapNgParser;
use pcap_file::PcapError;
use std::borrow::Cow;

/// The state of a pcapng file read in pieces: its parser (the section's byte order
/// and interfaces), the interfaces as the sensor reads them, and the number of the
/// next block (for messages, counted as the frame reader counts them).
pub(super) struct NgBlocks {
    parser: PcapNgParser,
    ifaces: Interfaces,
    block_no: u64,
    /// The current section's byte order is big-endian.
    big: bool,
}

/// pcapng block type of an enhanced packet block.
const EPB: u32 = 6;

/// An enhanced packet block without options, as [`NgBlocks::plain_epb`] read it.
struct PlainEpb<'a> {
    /// The whole block's length.
    len: usize,
    interface: u32,
    /// Timestamp in the interface's units.
    ts: u64,
    data: &'a [u8],
}

/// How reading the bytes at hand stopped.
pub(super) enum NgStop {
    /// The next block continues past the bytes at hand (or there are none left).
    NeedMore,
    Failed(ReadError),
}

impl NgBlocks {
    /// Reads the section header at the start of `bytes`; returns its length too.
    pub(super) fn new(bytes: &[u8]) -> Result<(usize, NgBlocks), ReadError> {
        let (rest, parser) = PcapNgParser::new(bytes).map_err(|e| {
            // Bytes that end inside the header: what the frame reader's reader says.
            let e = match e {
                PcapError::IncompleteBuffer => {
                    PcapError::IoError(std::io::ErrorKind::UnexpectedEof.into())
                }
                e => e,
            };
            ReadError::Damaged(format!("bad pcapng section header: {}", pcap_error(&e)))
        })?;
        let ng = NgBlocks {
            big: parser.section().endianness == pcap_file::Endianness::Big,
            parser,
            ifaces: Interfaces::default(),
            block_no: 1,
        };
        Ok((bytes.len() - rest.len(), ng))
    }

    /// The error for a file that ends inside the next block (the frame reader's).
    pub(super) fn cut_short(&self) -> ReadError {
        let e = PcapError::IoError(std::io::ErrorKind::UnexpectedEof.into());
        ReadError::Damaged(format!("block {}: {}", self.block_no + 1, pcap_error(&e)))
    }

    /// Hands on the frames of every whole block in `bytes`, in batches of one link
    /// type; returns why it stopped and how many bytes it consumed.
    pub(super) fn parse<'a, const PREFETCH: bool>(
        &mut self,
        bytes: &'a [u8],
        stats: &mut FileStats,
        mut on_batch: impl FnMut(LinkType, &[(i64, &'a [u8])], &mut Readahead),
    ) -> (NgStop, usize) {
        let mut batch = FrameBatch {
            frames: [(0i64, &[][..]); READ_BATCH],
            n: 0,
            link: LinkType::Ethernet,
            end: 0,
        };
        let mut slice = bytes;
        // Offset in `bytes` up to which lines have been prefetched.
        let mut fetched = 0;
        let stop = loop {
            if PREFETCH {
                super::batched::prefetch_ahead(bytes, bytes.len() - slice.len(), &mut fetched);
            }
            if slice.is_empty() {
                break NgStop::NeedMore;
            }
            let (ts_us, frame_link, data) = if let Some(epb) = self.plain_epb(slice) {
                self.block_no += 1;
                slice = &slice[epb.len..];
                match self.ifaces.get(epb.interface as usize, self.block_no) {
                    Ok((link, units)) => (micros(epb.ts, units), link, epb.data),
                    Err(e) => break NgStop::Failed(e),
                }
            } else {
                let (rest, block) = match self.parser.next_block(slice) {
                    Ok(ok) => ok,
                    Err(PcapError::IncompleteBuffer) => break NgStop::NeedMore,
                    Err(e) => {
                        let no = self.block_no + 1;
                        break NgStop::Failed(ReadError::Damaged(format!(
                            "block {no}: {}",
                            pcap_error(&e)
                        )));
                    }
                };
                self.block_no += 1;
                slice = rest;
                // The parser follows section headers: its byte order is the section's.
                self.big = self.parser.section().endianness == pcap_file::Endianness::Big;
                match self.ifaces.read_block(block, self.block_no, stats) {
                    Ok(Some((ts_us, link, Cow::Borrowed(data)))) => (ts_us, link, data),
                    // pcap-file's slice parser borrows packet data from the slice.
                    Ok(Some((_, _, Cow::Owned(_)))) => {
                        unreachable!("pcap-file copied a packet it parsed in place")
                    }
                    Ok(None) => continue,
                    Err(e) => break NgStop::Failed(e),
                }
            };
            if batch.n > 0 && frame_link != batch.link {
                batch.hand_on::<PREFETCH>(&mut on_batch, stats, bytes, &mut fetched);
            }
            batch.push(frame_link, (ts_us, data), bytes.len() - slice.len());
            if batch.n == READ_BATCH {
                batch.hand_on::<PREFETCH>(&mut on_batch, stats, bytes, &mut fetched);
            }
        };
        batch.hand_on::<PREFETCH>(&mut on_batch, stats, bytes, &mut fetched);
        (stop, bytes.len() - slice.len())
    }

    /// The enhanced packet block at the start of `slice` if it is whole, has no options
    /// and is one `pcap-file` reads without complaint (its checks, in its order: the
    /// length a multiple of four and at least 12, the trailing length equal, the body
    /// at least 20 bytes, the data with its padding inside the body); `None` for
    /// anything else, which its parser then reads.
    #[inline]
    fn plain_epb<'a>(&self, slice: &'a [u8]) -> Option<PlainEpb<'a>> {
        let word = |at: usize| -> Option<u32> {
            let b = *slice.get(at..at + 4)?.first_chunk::<4>()?;
            Some(if self.big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            })
        };
        if word(0)? != EPB {
            return None;
        }
        let len = word(4)? as usize;
        if !len.is_multiple_of(4) || len < 12 || slice.len() < len || word(len - 4)? != len as u32 {
            return None;
        }
        // The body: between the two length words.
        let body = len - 12;
        if body < 20 {
            return None;
        }
        let captured = word(20)? as usize;
        // Data and padding fill the rest of the body exactly: no options.
        if captured.checked_add((4 - captured % 4) % 4)? != body - 20 {
            return None;
        }
        Some(PlainEpb {
            len,
            interface: word(8)?,
            ts: (u64::from(word(12)?) << 32) + u64::from(word(16)?),
            data: &slice[28..28 + captured],
        })
    }
}

/// A timestamp of `units` per second as microseconds: [`super::to_micros`], without its
/// 128-bit division for the usual units.
#[inline]
fn micros(ts: u64, units: u64) -> i64 {
    match units {
        1_000_000 => ts.min(i64::MAX as u64) as i64,
        1_000_000_000 => (ts / 1000) as i64,
        _ => super::to_micros(u128::from(ts), units),
    }
}

/// Frames walked and not yet handed on (the first `n`), all of one link type.
struct FrameBatch<'a> {
    frames: [(i64, &'a [u8]); READ_BATCH],
    n: usize,
    link: LinkType,
    /// The offset in the walked bytes just past the block of the latest frame: where
    /// the batch's readahead starts.
    end: usize,
}

impl<'a> FrameBatch<'a> {
    /// Adds a frame of `link` whose block ends at offset `end`.
    #[inline]
    fn push(&mut self, link: LinkType, frame: (i64, &'a [u8]), end: usize) {
        self.link = link;
        self.frames[self.n] = frame;
        self.n += 1;
        self.end = end;
    }

    /// Hands on the frames (if any) and empties the batch, with the lines of `bytes`
    /// past its end for the consumer to request while it works, as for pcap
    /// ([`hand_on_reading_ahead`]). That once cost a pcapng replay CPU, most likely
    /// because the readahead requested lines of pages not yet mapped (which the CPU
    /// drops); now that it maps each block first, a mapped pcapng replay takes 0.85 of
    /// the CPU it takes without (benches/RESULTS.md, "pcapng reads ahead too").
    fn hand_on<const PREFETCH: bool>(
        &mut self,
        on_batch: &mut impl FnMut(LinkType, &[(i64, &'a [u8])], &mut Readahead),
        stats: &mut FileStats,
        bytes: &[u8],
        fetched: &mut usize,
    ) {
        if self.n > 0 {
            stats.frames += self.n as u64;
            let (link, frames) = (self.link, &self.frames[..self.n]);
            hand_on_reading_ahead::<PREFETCH>(bytes, self.end, fetched, frames, |f, ahead| {
                on_batch(link, f, ahead)
            });
            self.n = 0;
        }
    }
}
