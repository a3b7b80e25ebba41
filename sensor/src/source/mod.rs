//! Capture files: pcap (both byte orders, micro- and nanosecond timestamps) and pcapng
//! (any interface timestamp resolution), read with the `pcap-file` crate.
//!
//! Every problem with a file becomes one [`SourceError`] naming the file and what is
//! wrong with it; frames read before the problem have already been handed on.

mod access;
mod batched;
mod damage;
mod ng_blocks;
mod readahead;
mod record;

pub use access::FileAccess;
pub use batched::{read_file_batched, read_file_in_large_windows, READ_BATCH};
pub use readahead::Readahead;

use crate::parse::LinkType;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::PcapError;
use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One captured frame, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time, microseconds since the Unix epoch (0 when the block has none).
    pub ts_us: i64,
    /// The link layer the frame starts with.
    pub link: LinkType,
    /// The captured bytes (possibly cut at the snap length).
    pub data: &'a [u8],
}

/// What went wrong with a capture file.
#[derive(Debug)]
pub struct SourceError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it, and where.
    pub problem: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for SourceError {}

/// Counts of one file.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileStats {
    /// Frames handed on.
    pub frames: u64,
    /// pcapng blocks that carry no packet (statistics, name resolution, ...).
    pub other_blocks: u64,
    /// Whether the file was mapped rather than read (`FileAccess`).
    pub mapped: bool,
}

/// Shared progress of a read: bytes consumed so far (for a progress bar).
pub type Progress = Arc<AtomicU64>;

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
    [0x4d, 0x3c, 0xb2, 0xa1],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Opens the capture file at `path`, or standard input when `path` is `-` (a pipe
/// from `zcat` or `tcpdump -w -`). A pipe's buffer is grown to 1 MiB (`PIPE_BYTES`) where
/// the kernel allows.
pub fn open(path: &Path) -> std::io::Result<File> {
    let file = if path == Path::new("-") {
        use std::os::fd::AsFd;
        File::from(std::io::stdin().as_fd().try_clone_to_owned()?)
    } else {
        File::open(path)?
    };
    use std::os::unix::fs::FileTypeExt;
    if file.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
        // Speed only: where the kernel refuses, the pipe keeps its size.
        let _ = crate::sys::grow_pipe(&file, PIPE_BYTES);
    }
    Ok(file)
}

/// The pipe buffer asked for when a capture comes through a pipe: the most an
/// unprivileged process may ask for by default (`/proc/sys/fs/pipe-max-size`).
const PIPE_BYTES: usize = 1 << 20;

/// Reads every frame of the capture file at `path` (`-`: standard input), calling
/// `on_frame` for each.
pub fn read_file(
    path: &Path,
    progress: Option<Progress>,
    on_frame: impl FnMut(Frame<'_>),
) -> Result<FileStats, SourceError> {
    let file = open(path).map_err(|e| SourceError {
        path: path.to_path_buf(),
        problem: format!("cannot open: {e}"),
    })?;
    read_stream(path, file, progress, on_frame)
}

/// [`read_file`] of a file already open (`path` names it in messages), read from
/// its start: no seek, so a pipe will do.
fn read_stream(
    path: &Path,
    file: impl Read,
    progress: Option<Progress>,
    on_frame: impl FnMut(Frame<'_>),
) -> Result<FileStats, SourceError> {
    let err = |problem: String| SourceError {
        path: path.to_path_buf(),
        problem,
    };
    let mut magic = [0u8; 4];
    let mut head = file.take(4);
    let n = read_fully(&mut head, &mut magic).map_err(|e| err(format!("cannot read: {e}")))?;
    let file = head.into_inner();
    if n == 0 {
        return Err(err("empty file".into()));
    }
    if n < 4 {
        return Err(err(format!("too short to be a capture file ({n} bytes)")));
    }
    let rest = Counting {
        inner: file,
        progress: progress.unwrap_or_default(),
    };
    let input = BufReader::with_capacity(1 << 20, std::io::Cursor::new(magic).chain(rest));
    if PCAP_MAGICS.contains(&magic) {
        read_pcap(input, on_frame).map_err(|e| err(explain(e, || damage::pcap(path))))
    } else if magic == PCAPNG_MAGIC {
        read_pcapng(input, on_frame).map_err(|e| err(explain(e, || damage::pcapng(path))))
    } else {
        Err(err(format!(
            "not a pcap or pcapng file (starts with {:02x}{:02x}{:02x}{:02x})",
            magic[0], magic[1], magic[2], magic[3]
        )))
    }
}

/// Why reading stopped: a problem the reader named precisely, or one it could only call
/// "Error reading bytes" (then the file's own structure is examined to say more).
enum ReadError {
    Named(String),
    Damaged(String),
}

/// The message for a read error: for a damaged file, where and how it is damaged.
fn explain(e: ReadError, diagnose: impl FnOnce() -> Option<String>) -> String {
    match e {
        ReadError::Named(s) => s,
        ReadError::Damaged(fallback) => diagnose().unwrap_or(fallback),
    }
}

/// The text of a pcap-file error with its cause (its own text is often generic).
fn pcap_error(e: &pcap_file::PcapError) -> String {
    match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

/// A link type the parser cannot read: an error, not a file of silently ignored frames.
fn check_link(link: LinkType, what: &str) -> Result<LinkType, ReadError> {
    match link {
        LinkType::Other(v) => Err(ReadError::Named(format!(
            "{what} link type {v} is not supported (supported: Ethernet 1, raw IP \
             12/14/101/228/229, Linux cooked 113/276, BSD loopback 0/108)"
        ))),
        l => Ok(l),
    }
}

fn read_pcap<R: Read>(
    input: R,
    mut on_frame: impl FnMut(Frame<'_>),
) -> Result<FileStats, ReadError> {
    let mut reader = PcapReader::new(input)
        .map_err(|e| ReadError::Named(format!("bad pcap header: {}", pcap_error(&e))))?;
    let header = reader.header();
    let link = check_link(
        LinkType::from_linktype(u32::from(header.datalink)),
        "the file's",
    )?;
    let layout = record::RecordLayout::of(header);
    let mut stats = FileStats::default();
    // Raw records, checked by `record`'s rules (pcap-file's own refuse snap-length
    // cut captures).
    while let Some(pkt) = reader.next_raw_packet() {
        let damaged = |e: PcapError| {
            ReadError::Damaged(format!(
                "packet record {}: {}",
                stats.frames + 1,
                pcap_error(&e)
            ))
        };
        let pkt = pkt.map_err(damaged)?;
        let ts_us = layout.check_raw(&pkt).map_err(damaged)?;
        stats.frames += 1;
        on_frame(Frame {
            ts_us,
            link,
            data: &pkt.data,
        });
    }
    Ok(stats)
}

fn read_pcapng<R: Read>(
    input: R,
    mut on_frame: impl FnMut(Frame<'_>),
) -> Result<FileStats, ReadError> {
    let mut reader = PcapNgReader::new(input).map_err(|e| {
        ReadError::Damaged(format!("bad pcapng section header: {}", pcap_error(&e)))
    })?;
    let mut stats = FileStats::default();
    let mut ifaces = Interfaces::default();
    let mut block_no = 1u64;
    while let Some(block) = reader.next_block() {
        block_no += 1;
        let block = block
            .map_err(|e| ReadError::Damaged(format!("block {block_no}: {}", pcap_error(&e))))?;
        if let Some((ts_us, link, data)) = ifaces.read_block(block, block_no, &mut stats)? {
            stats.frames += 1;
            on_frame(Frame {
                ts_us,
                link,
                data: &data,
            });
        }
    }
    Ok(stats)
}

/// A packet block's frame: time in microseconds, link type and the data, borrowed from
/// the bytes the block was parsed from.
type BlockFrame<'a> = (i64, LinkType, Cow<'a, [u8]>);

/// The interfaces of the current pcapng section, in the order they were described:
/// link type and timestamp units per second.
#[derive(Default)]
struct Interfaces(Vec<(LinkType, u64)>);

impl Interfaces {
    /// Adds the interface an interface description block describes.
    fn describe(
        &mut self,
        idb: &InterfaceDescriptionBlock<'_>,
        block_no: u64,
    ) -> Result<(), ReadError> {
        let mut units = 1_000_000u64;
        for o in &idb.options {
            if let InterfaceDescriptionOption::IfTsResol(r) = o {
                units = ts_units_per_second(*r).ok_or_else(|| {
                    ReadError::Named(format!("block {block_no}: unsupported if_tsresol {r:#04x}"))
                })?;
            }
        }
        let what = format!("block {block_no}: interface {}", self.0.len());
        let link = check_link(LinkType::from_linktype(u32::from(idb.linktype)), &what)?;
        self.0.push((link, units));
        Ok(())
    }

    /// What pcapng block `block_no` means for the frames: a new section or interface
    /// (noted), a packet's frame, or another block (counted in `stats.other_blocks`).
    fn read_block<'a>(
        &mut self,
        block: Block<'a>,
        block_no: u64,
        stats: &mut FileStats,
    ) -> Result<Option<BlockFrame<'a>>, ReadError> {
        match block {
            Block::SectionHeader(_) => self.0.clear(),
            Block::InterfaceDescription(idb) => self.describe(&idb, block_no)?,
            other => {
                let frame = self.frame(other, block_no)?;
                if frame.is_none() {
                    stats.other_blocks += 1;
                }
                return Ok(frame);
            }
        }
        Ok(None)
    }

    /// The frame a packet block carries, with its time in microseconds (`None`: not a
    /// packet block). A packet naming an undescribed interface is an error. The block
    /// is taken whole, so its data keeps the lifetime of the bytes it was parsed from
    /// (a mapped window).
    fn frame<'a>(
        &self,
        block: Block<'a>,
        block_no: u64,
    ) -> Result<Option<BlockFrame<'a>>, ReadError> {
        let Some((ts_us, link)) = self.stamp(&block, block_no)? else {
            return Ok(None);
        };
        let data = match block {
            Block::EnhancedPacket(b) => b.data,
            Block::SimplePacket(b) => b.data,
            Block::Packet(b) => b.data,
            _ => return Ok(None),
        };
        Ok(Some((ts_us, link, data)))
    }

    /// The time in microseconds and the link type of a packet block (`None`: not a
    /// packet block).
    fn stamp(
        &self,
        block: &Block<'_>,
        block_no: u64,
    ) -> Result<Option<(i64, LinkType)>, ReadError> {
        Ok(Some(match block {
            Block::EnhancedPacket(epb) => {
                let (link, units) = self.get(epb.interface_id as usize, block_no)?;
                // pcap-file hands the raw 64-bit timestamp over as nanoseconds; it is
                // really in the interface's units.
                (to_micros(epb.timestamp.as_nanos(), units), link)
            }
            Block::SimplePacket(_) => {
                let &(link, _) = self.0.first().ok_or_else(|| {
                    ReadError::Named(format!(
                        "block {block_no}: simple packet before any interface"
                    ))
                })?;
                // Simple packet blocks carry no timestamp.
                (0, link)
            }
            Block::Packet(pb) => {
                let (link, units) = self.get(usize::from(pb.interface_id), block_no)?;
                (to_micros(u128::from(pb.timestamp), units), link)
            }
            _ => return Ok(None),
        }))
    }

    fn get(&self, id: usize, block_no: u64) -> Result<(LinkType, u64), ReadError> {
        self.0.get(id).copied().ok_or_else(|| {
            ReadError::Named(format!(
                "block {block_no}: packet names interface {id} which was never described"
            ))
        })
    }
}

/// A timestamp in `units` per second as microseconds (saturating).
fn to_micros(raw: u128, units: u64) -> i64 {
    (raw * 1_000_000 / u128::from(units)).min(i64::MAX as u128) as i64
}

/// `if_tsresol`: high bit clear, 10^-n seconds; set, 2^-n seconds.
fn ts_units_per_second(r: u8) -> Option<u64> {
    let n = u32::from(r & 0x7f);
    if r & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

fn read_fully(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A reader that publishes how many bytes went through it.
struct Counting<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_units() {
        assert_eq!(ts_units_per_second(6), Some(1_000_000));
        assert_eq!(ts_units_per_second(9), Some(1_000_000_000));
        assert_eq!(ts_units_per_second(0x80 | 10), Some(1024));
        assert_eq!(ts_units_per_second(30), None);
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::{DataLink, Endianness, TsResolution};
    use std::time::Duration;

    /// Both byte orders and both timestamp resolutions read back to the same
    /// microseconds.
    #[test]
    fn pcap_byte_orders_and_resolutions() {
        for endianness in [Endianness::Big, Endianness::Little] {
            for ts_resolution in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
                let dir = std::env::temp_dir().join(format!(
                    "rstwatch-src-{}-{endianness:?}-{ts_resolution:?}",
                    std::process::id()
                ));
                let header = PcapHeader {
                    endianness,
                    ts_resolution,
                    datalink: DataLink::RAW,
                    ..PcapHeader::default()
                };
                let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
                let ts = Duration::new(1_767_225_600, 123_456_789);
                let data = [0x45u8, 0, 0, 20];
                w.write_packet(&PcapPacket::new(ts, 4, &data)).unwrap();
                std::fs::write(&dir, w.into_writer()).unwrap();
                let mut seen = vec![];
                read_file(&dir, None, |f| {
                    seen.push((f.ts_us, f.link, f.data.to_vec()))
                })
                .unwrap();
                std::fs::remove_file(&dir).ok();
                // Nanoseconds are truncated to microseconds; a microsecond file holds
                // them already truncated.
                let want_us = 1_767_225_600_123_456;
                assert_eq!(
                    seen,
                    vec![(want_us, LinkType::RawIp, data.to_vec())],
                    "{endianness:?} {ts_resolution:?}"
                );
            }
        }
    }

    /// A capture taken with a snapshot length (`tcpdump -s 54`): every record's
    /// original length is larger than the file's snapshot length. Both readers hand
    /// on all of its frames (pcap-file 2.0.0's own check refused the first).
    #[test]
    fn snap_length_cut_records_are_read() {
        let mut bytes = vec![];
        for w in [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4]] {
            bytes.extend(w);
        }
        bytes.extend(54u32.to_le_bytes());
        bytes.extend(1u32.to_le_bytes());
        for i in 0..3u32 {
            for w in [1_767_225_600 + i, 250_000, 54, 1514] {
                bytes.extend(w.to_le_bytes());
            }
            bytes.extend([i as u8; 54]);
        }
        let path = std::env::temp_dir().join(format!("rstwatch-snap-{}", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let mut one_by_one = vec![];
        let r1 = read_file(&path, None, |f| one_by_one.push((f.ts_us, f.data.to_vec())));
        let mut batched = vec![];
        let r2 = read_file_batched(&path, None, FileAccess::Read, |_, frames, _| {
            batched.extend(frames.iter().map(|&(ts, d)| (ts, d.to_vec())))
        });
        std::fs::remove_file(&path).ok();
        assert_eq!(r1.map(|s| s.frames).map_err(|e| e.problem), Ok(3));
        assert_eq!(r2.map(|s| s.frames).map_err(|e| e.problem), Ok(3));
        let want: Vec<_> = (0..3u8)
            .map(|i| {
                (
                    (1_767_225_600 + i64::from(i)) * 1_000_000 + 250_000,
                    vec![i; 54],
                )
            })
            .collect();
        assert_eq!(one_by_one, want);
        assert_eq!(batched, want);
    }
}

#[cfg(test)]
mod damage_tests {
    use super::*;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::DataLink;
    use std::time::Duration;

    fn write(name: &str, datalink: DataLink, cut: usize) -> PathBuf {
        let header = PcapHeader {
            datalink,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for i in 0..3u8 {
            w.write_packet(&PcapPacket::new(Duration::new(1, 0), 60, &[i; 60]))
                .unwrap();
        }
        let mut bytes = w.into_writer();
        bytes.truncate(bytes.len() - cut);
        let p = std::env::temp_dir().join(format!("rstwatch-{name}-{}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn problem(p: &Path) -> (u64, String) {
        let mut frames = 0;
        let r = read_file(p, None, |_| frames += 1);
        std::fs::remove_file(p).ok();
        (
            frames,
            r.map(|_| String::new()).unwrap_or_else(|e| e.problem),
        )
    }

    #[test]
    fn a_file_cut_inside_a_record_says_where_and_by_how_much() {
        let (frames, why) = problem(&write("cut", DataLink::ETHERNET, 7));
        assert_eq!(frames, 2);
        assert_eq!(
            why,
            "packet record 3 at byte 176: cut short: 60 bytes of packet data declared, 53 left"
        );
        let (_, why) = problem(&write("cut-header", DataLink::ETHERNET, 70));
        assert!(why.contains("its header needs 16 bytes, 6 left"), "{why}");
    }

    #[test]
    fn an_unsupported_link_type_is_an_error() {
        let (frames, why) = problem(&write("wifi", DataLink::IEEE802_11, 0));
        assert_eq!(frames, 0);
        assert!(why.contains("link type 105 is not supported"), "{why}");
    }
}

#[cfg(test)]
mod pcapng_tests {
    use super::*;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;
    use std::borrow::Cow;
    use std::time::Duration;

    /// pcapng timestamps are counted in the interface's `if_tsresol` units.
    #[test]
    fn pcapng_nanosecond_interface() {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
        };
        w.write_pcapng_block(idb).unwrap();
        // pcap-file writes the Duration's nanoseconds as the raw count: with
        // if_tsresol 9 that is exactly right.
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::new(1_767_225_600, 987_654_321),
            original_len: 14,
            data: Cow::Borrowed(&[0u8; 14]),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
        let path = std::env::temp_dir().join(format!("rstwatch-ng-{}", std::process::id()));
        std::fs::write(&path, w.into_inner()).unwrap();
        let mut seen = vec![];
        let r = read_file(&path, None, |f| seen.push((f.ts_us, f.link)));
        std::fs::remove_file(&path).ok();
        r.unwrap();
        assert_eq!(seen, vec![(1_767_225_600_987_654, LinkType::Ethernet)]);
    }
}
