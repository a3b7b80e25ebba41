//! The framed wire protocol between a sensor and the collector.
//!
//! Every message is one frame: a fixed 20-byte header followed by the payload.
//!
//! ```text
//! offset size field
//!      0    4 magic      b"RSTW"
//!      4    1 version    FRAME_VERSION (the collector refuses any other)
//!      5    1 kind       Kind: hello, welcome, batch, ack, reject
//!      6    1 codec      Codec of the payload: none, lz4, zstd
//!      7    1 flags      FLAG_RESENT: this batch may have been sent before
//!      8    4 len        payload length on the wire (u32 LE), at most MAX_WIRE_LEN
//!     12    4 raw_len    payload length after decompression (u32 LE), at most MAX_RAW_LEN
//!     16    4 crc32      CRC-32 (IEEE) of the payload bytes as sent (u32 LE)
//!     20  len payload
//! ```
//!
//! A conversation: the sensor sends `Hello` (JSON [`Hello`]), the collector answers
//! `Welcome` or `Reject` (UTF-8 reason, then it closes). Then the sensor sends `Batch`
//! frames (compressed rkyv [`crate::Batch`]) and the collector answers each, in order,
//! with `Ack` ([`Ack`]: boot id and sequence number) once ClickHouse has committed it.
//! A `Reject` in answer to a batch names what was wrong with it.
//!
//! Everything here treats its input as untrusted: a bad header, an oversized length,
//! a checksum mismatch or a decompression bomb is an error value, never a panic.
//!
//! This module is the protocol's one implementation, without I/O: [`encode`] builds a
//! frame, [`Deframer`] turns bytes into frames (the sensor's blocking sockets through
//! [`read_frame_from`], the collector's tokio tasks by feeding it what they read),
//! [`mark_resent`] flags a stored frame, [`check_frame`] / [`verify_frame`] check a
//! frame held in memory (a spool file). Limits are checked at the header, before the
//! payload is read; memory grows only with bytes that arrived, and decompression is
//! streamed, so nothing a peer declares sizes an allocation. The property tests in
//! `schema/tests/wire.rs` are its fuzz run (bounded in CI; `PROPTEST_CASES` for more).

use std::fmt;
use std::io::{Read, Write};

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"RSTW";
/// Version of the frame layout.
pub const FRAME_VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 20;
/// Largest payload accepted on the wire (compressed).
pub const MAX_WIRE_LEN: u32 = 64 << 20;
/// Largest payload accepted after decompression.
pub const MAX_RAW_LEN: u32 = 256 << 20;
/// Header flag: the sender may have sent this batch before (after a reconnect, or from
/// the spool of an earlier run). The collector then checks what is already stored.
pub const FLAG_RESENT: u8 = 0x01;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Sensor → collector: who it is (JSON [`Hello`]).
    Hello = 1,
    /// Collector → sensor: hello accepted.
    Welcome = 2,
    /// Sensor → collector: one rkyv batch.
    Batch = 3,
    /// Collector → sensor: a batch is stored ([`Ack`]).
    Ack = 4,
    /// Collector → sensor: refused, `reason: detail`; the connection closes.
    Reject = 5,
}

impl Kind {
    /// The kind with this wire value.
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Batch,
            4 => Kind::Ack,
            5 => Kind::Reject,
            _ => return None,
        })
    }
}

/// How a payload is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Codec {
    /// Not compressed.
    None = 0,
    /// LZ4 block.
    Lz4 = 1,
    /// Zstandard.
    #[default]
    Zstd = 2,
}

impl Codec {
    /// The codec with this wire value.
    pub fn from_u8(v: u8) -> Option<Codec> {
        Some(match v {
            0 => Codec::None,
            1 => Codec::Lz4,
            2 => Codec::Zstd,
            _ => return None,
        })
    }

    /// Its name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Codec::None),
            "lz4" => Ok(Codec::Lz4),
            "zstd" => Ok(Codec::Zstd),
            _ => Err(format!("unknown codec {s:?} (none, lz4, zstd)")),
        }
    }
}

/// Why a frame was refused. Each variant has a stable short name for counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The first four bytes are not `RSTW`.
    BadMagic([u8; 4]),
    /// Another frame format version.
    BadVersion(u8),
    /// A frame kind this build does not know.
    BadKind(u8),
    /// A codec this build does not know.
    BadCodec(u8),
    /// The payload is longer than the limit in force.
    TooLong {
        /// Declared payload length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The decompressed size is above the limit in force.
    RawTooLong {
        /// Declared decompressed length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The payload's CRC32 does not match the header's.
    Checksum {
        /// CRC32 in the header.
        expected: u32,
        /// CRC32 of the payload received.
        actual: u32,
    },
    /// The payload does not decompress.
    Decompress(String),
    /// The payload decompresses to another size than declared.
    RawLenMismatch {
        /// Size the header declared.
        declared: u32,
        /// Size it decompressed to.
        actual: usize,
    },
    /// The stream ended inside a frame.
    Truncated,
    /// The peer speaks TLS where plain frames were expected (or the other way round).
    Tls,
    /// Bytes after the end of a frame that should stand alone.
    TrailingBytes(usize),
    /// Reading or writing the stream failed.
    Io(String),
}

impl FrameError {
    /// Short, stable name (metrics label).
    pub fn name(&self) -> &'static str {
        match self {
            FrameError::BadMagic(_) => "bad_magic",
            FrameError::BadVersion(_) => "bad_version",
            FrameError::BadKind(_) => "bad_kind",
            FrameError::BadCodec(_) => "bad_codec",
            FrameError::TooLong { .. } => "too_long",
            FrameError::RawTooLong { .. } => "too_long",
            FrameError::Checksum { .. } => "bad_checksum",
            FrameError::Decompress(_) => "bad_compression",
            FrameError::RawLenMismatch { .. } => "bad_compression",
            FrameError::Truncated => "truncated",
            FrameError::Tls => "tls_mismatch",
            FrameError::TrailingBytes(_) => "trailing_bytes",
            FrameError::Io(_) => "io",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadMagic(m) => write!(f, "bad magic {m:02x?} (not an rstwatch frame)"),
            FrameError::BadVersion(v) => {
                write!(f, "frame version {v}, this build speaks {FRAME_VERSION}")
            }
            FrameError::BadKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::BadCodec(c) => write!(f, "unknown codec {c}"),
            FrameError::TooLong { len, max } => {
                write!(f, "payload length {len} exceeds the limit {max}")
            }
            FrameError::RawTooLong { len, max } => {
                write!(f, "decompressed length {len} exceeds the limit {max}")
            }
            FrameError::Checksum { expected, actual } => write!(
                f,
                "checksum mismatch (header {expected:08x}, payload {actual:08x})"
            ),
            FrameError::Decompress(e) => write!(f, "payload does not decompress: {e}"),
            FrameError::RawLenMismatch { declared, actual } => write!(
                f,
                "payload decompresses to {actual} bytes, header says {declared}"
            ),
            FrameError::Truncated => write!(f, "connection closed inside a frame"),
            FrameError::Tls => write!(
                f,
                "the peer speaks TLS: use TLS on both sides (or --plaintext on both)"
            ),
            FrameError::TrailingBytes(n) => write!(f, "{n} bytes after the end of the frame"),
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Byte ranges of the fixed header, named once.
pub mod field {
    use std::ops::Range;
    /// Magic `RSTW`.
    pub const MAGIC: Range<usize> = 0..4;
    /// Frame format version.
    pub const VERSION: usize = 4;
    /// [`Kind`].
    pub const KIND: usize = 5;
    /// [`Codec`].
    pub const CODEC: usize = 6;
    /// Flag bits ([`FLAG_RESENT`]).
    pub const FLAGS: usize = 7;
    /// Payload length (big-endian u32).
    pub const LEN: Range<usize> = 8..12;
    /// Decompressed length (big-endian u32).
    pub const RAW_LEN: Range<usize> = 12..16;
    /// CRC32 of the payload (big-endian u32).
    pub const CRC32: Range<usize> = 16..20;
}

/// What a reader accepts: nothing a peer declares may size memory beyond these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload on the wire (compressed), at most [`MAX_WIRE_LEN`].
    pub max_wire: u32,
    /// Largest payload after decompression, at most [`MAX_RAW_LEN`].
    pub max_raw: u32,
}

impl Limits {
    /// Before authentication: a hello is a few hundred bytes of JSON.
    pub const HANDSHAKE: Limits = Limits {
        max_wire: 64 << 10,
        max_raw: 64 << 10,
    };
    /// Frames a collector sends (welcome, ack, reject).
    pub const CONTROL: Limits = Limits {
        max_wire: 1 << 20,
        max_raw: 1 << 20,
    };

    /// Limits capped at the protocol's own maxima.
    pub fn new(max_wire: u32, max_raw: u32) -> Limits {
        Limits {
            max_wire: max_wire.min(MAX_WIRE_LEN),
            max_raw: max_raw.min(MAX_RAW_LEN),
        }
    }
}

/// A parsed, checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the frame carries.
    pub kind: Kind,
    /// How the payload is compressed.
    pub codec: Codec,
    /// Flag bits.
    pub flags: u8,
    /// Payload length on the wire.
    pub len: u32,
    /// Payload length decompressed.
    pub raw_len: u32,
    /// CRC32 of the payload on the wire.
    pub crc32: u32,
}

fn le32(b: &[u8], r: std::ops::Range<usize>) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[r]);
    u32::from_le_bytes(a)
}

/// The first bytes of a TLS record (handshake or alert, TLS 1.0 to 1.3): what a
/// plaintext peer reads when the other side speaks TLS, and the other way round.
pub fn looks_like_tls(b: &[u8]) -> bool {
    match b {
        [0x15 | 0x16, 0x03] => true,
        [0x15 | 0x16, 0x03, v, ..] => *v <= 0x04,
        _ => false,
    }
}

impl FrameHeader {
    /// Checks the fixed header. `max_len` caps the wire length (use [`MAX_WIRE_LEN`] or
    /// less); the raw length is capped at [`MAX_RAW_LEN`].
    pub fn parse(b: &[u8; HEADER_LEN], max_len: u32) -> Result<FrameHeader, FrameError> {
        FrameHeader::parse_with(b, Limits::new(max_len, MAX_RAW_LEN))
    }

    /// Checks the fixed header against `limits`.
    pub fn parse_with(b: &[u8; HEADER_LEN], limits: Limits) -> Result<FrameHeader, FrameError> {
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            if looks_like_tls(b) {
                return Err(FrameError::Tls);
            }
            return Err(FrameError::BadMagic(magic));
        }
        let version = b[field::VERSION];
        if version != FRAME_VERSION {
            return Err(FrameError::BadVersion(version));
        }
        let kind = Kind::from_u8(b[field::KIND]).ok_or(FrameError::BadKind(b[field::KIND]))?;
        let codec = Codec::from_u8(b[field::CODEC]).ok_or(FrameError::BadCodec(b[field::CODEC]))?;
        let len = le32(b, field::LEN);
        let raw_len = le32(b, field::RAW_LEN);
        let limits = Limits::new(limits.max_wire, limits.max_raw);
        if len > limits.max_wire {
            return Err(FrameError::TooLong {
                len,
                max: limits.max_wire,
            });
        }
        if raw_len > limits.max_raw {
            return Err(FrameError::RawTooLong {
                len: raw_len,
                max: limits.max_raw,
            });
        }
        if codec == Codec::None && raw_len != len {
            return Err(FrameError::RawLenMismatch {
                declared: raw_len,
                actual: len as usize,
            });
        }
        Ok(FrameHeader {
            kind,
            codec,
            flags: b[field::FLAGS],
            len,
            raw_len,
            crc32: le32(b, field::CRC32),
        })
    }

    /// The header's 20 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[field::MAGIC].copy_from_slice(&MAGIC);
        b[field::VERSION] = FRAME_VERSION;
        b[field::KIND] = self.kind as u8;
        b[field::CODEC] = self.codec as u8;
        b[field::FLAGS] = self.flags;
        b[field::LEN].copy_from_slice(&self.len.to_le_bytes());
        b[field::RAW_LEN].copy_from_slice(&self.raw_len.to_le_bytes());
        b[field::CRC32].copy_from_slice(&self.crc32.to_le_bytes());
        b
    }

    /// Whether the sender marked the frame as sent before.
    pub fn is_resent(&self) -> bool {
        self.flags & FLAG_RESENT != 0
    }
}

/// Marks an encoded frame (header and payload, e.g. read back from a spool file) as
/// possibly sent before. The flag is outside the checksum, so the payload is untouched.
/// Fails when `frame` does not start with a valid header.
pub fn mark_resent(frame: &mut [u8]) -> Result<(), FrameError> {
    let hb: &[u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    FrameHeader::parse_with(hb, Limits::new(MAX_WIRE_LEN, MAX_RAW_LEN))?;
    frame[field::FLAGS] |= FLAG_RESENT;
    Ok(())
}

/// Compresses `raw` with `codec` and returns the whole frame (header + payload).
pub fn encode(kind: Kind, codec: Codec, flags: u8, raw: &[u8]) -> Vec<u8> {
    encode_level(kind, codec, flags, raw, 1)
}

/// [`encode`] with an explicit zstd level (ignored by the other codecs).
pub fn encode_level(kind: Kind, codec: Codec, flags: u8, raw: &[u8], zstd_level: i32) -> Vec<u8> {
    let payload: Vec<u8> = match codec {
        Codec::None => raw.to_vec(),
        Codec::Lz4 => lz4_flex::block::compress(raw),
        Codec::Zstd => zstd::bulk::compress(raw, zstd_level).expect("zstd compression of a buffer"),
    };
    let h = FrameHeader {
        kind,
        codec,
        flags,
        len: payload.len() as u32,
        raw_len: raw.len() as u32,
        crc32: crc32fast::hash(&payload),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Checks the payload's checksum and decompresses it into 16-byte aligned memory (what
/// rkyv's validated access needs). The raw length is capped at [`MAX_RAW_LEN`].
pub fn decode_payload(
    h: &FrameHeader,
    payload: &[u8],
) -> Result<rkyv::util::AlignedVec, FrameError> {
    decode_payload_limited(h, payload, MAX_RAW_LEN)
}

/// lz4's block format cannot expand more than this: 255 output bytes per input byte.
const LZ4_MAX_RATIO: usize = 255;

/// [`decode_payload`] with a configured cap on the decompressed size. Memory grows with
/// the bytes that actually come out of the decompressor, never with the size the
/// header declares: a lying header costs the sender, not the receiver.
pub fn decode_payload_limited(
    h: &FrameHeader,
    payload: &[u8],
    max_raw: u32,
) -> Result<rkyv::util::AlignedVec, FrameError> {
    if payload.len() != h.len as usize {
        return Err(FrameError::Truncated);
    }
    if h.raw_len > max_raw.min(MAX_RAW_LEN) {
        return Err(FrameError::RawTooLong {
            len: h.raw_len,
            max: max_raw.min(MAX_RAW_LEN),
        });
    }
    let actual = crc32fast::hash(payload);
    if actual != h.crc32 {
        return Err(FrameError::Checksum {
            expected: h.crc32,
            actual,
        });
    }
    let declared = h.raw_len as usize;
    let mut out = rkyv::util::AlignedVec::<16>::new();
    match h.codec {
        Codec::None => out.extend_from_slice(payload),
        Codec::Lz4 => {
            // The block format needs its output buffer up front: size it by what this
            // payload can possibly expand to, not by the declared length alone.
            let room = declared.min(payload.len().saturating_mul(LZ4_MAX_RATIO));
            out.resize(room, 0);
            let n = lz4_flex::block::decompress_into(payload, &mut out)
                .map_err(|e| FrameError::Decompress(e.to_string()))?;
            out.resize(n, 0);
        }
        Codec::Zstd => zstd_stream_into(payload, declared, &mut out)?,
    }
    if out.len() != declared {
        return Err(FrameError::RawLenMismatch {
            declared: h.raw_len,
            actual: out.len(),
        });
    }
    Ok(out)
}

/// Streams a zstd payload into `out`, at most `declared + 1` bytes (one more shows a
/// lie), growing `out` only as output arrives.
fn zstd_stream_into(
    payload: &[u8],
    declared: usize,
    out: &mut rkyv::util::AlignedVec,
) -> Result<(), FrameError> {
    let mut dec = zstd::stream::read::Decoder::with_buffer(payload)
        .map_err(|e| FrameError::Decompress(e.to_string()))?
        .single_frame();
    let mut chunk = [0u8; 32 << 10];
    let limit = declared + 1;
    while out.len() < limit {
        let want = chunk.len().min(limit - out.len());
        let n = dec
            .read(&mut chunk[..want])
            .map_err(|e| FrameError::Decompress(e.to_string()))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// One frame as read: checked header, payload bytes not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The checked header.
    pub header: FrameHeader,
    /// The payload as received (still compressed).
    pub payload: Vec<u8>,
}

/// The one frame reader, without I/O: bytes in, frames out.
///
/// The sensor (blocking sockets) and the collector (tokio) both feed it whatever they
/// read. The header is checked against [`Limits`] as soon as its 20 bytes are in, so
/// an oversized or foreign frame is refused before its payload is read; the payload
/// buffer grows only with bytes that actually arrived.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    header: Option<FrameHeader>,
    limits: Limits,
}

impl Deframer {
    /// A decoder refusing frames beyond `limits`.
    pub fn new(limits: Limits) -> Deframer {
        Deframer {
            buf: Vec::new(),
            header: None,
            limits: Limits::new(limits.max_wire, limits.max_raw),
        }
    }

    /// New limits for the frames to come (e.g. after the peer authenticated).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = Limits::new(limits.max_wire, limits.max_raw);
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Appends bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes the next frame needs at least (0: a frame is ready or an
    /// error is pending). Callers read at most this much to never buffer ahead.
    pub fn wanted(&self) -> usize {
        let need = match &self.header {
            None => HEADER_LEN,
            Some(h) => HEADER_LEN + h.len as usize,
        };
        need.saturating_sub(self.buf.len())
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or why the
    /// stream is bad (after an error the stream cannot be resynchronised: close it).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let h = match self.header {
            Some(h) => h,
            None => {
                let Some(hb) = self.buf.get(..HEADER_LEN) else {
                    if self.buf.len() >= 3 && looks_like_tls(&self.buf) {
                        return Err(FrameError::Tls);
                    }
                    return Ok(None);
                };
                let hb: &[u8; HEADER_LEN] = hb.try_into().map_err(|_| FrameError::Truncated)?;
                let h = FrameHeader::parse_with(hb, self.limits)?;
                self.header = Some(h);
                h
            }
        };
        let total = HEADER_LEN + h.len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..total].to_vec();
        self.buf.drain(..total);
        self.header = None;
        Ok(Some(Frame { header: h, payload }))
    }

    /// The peer closed: `Ok(())` between frames, otherwise why the last frame is bad.
    pub fn at_eof(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else if self.header.is_none() && looks_like_tls(&self.buf) {
            Err(FrameError::Tls)
        } else {
            Err(FrameError::Truncated)
        }
    }
}

/// Reads one frame (blocking) through `d`: `Ok(None)` on a clean close between frames.
pub fn read_frame_from<R: Read>(r: &mut R, d: &mut Deframer) -> Result<Option<Frame>, FrameError> {
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(f) = d.next_frame()? {
            return Ok(Some(f));
        }
        let want = d.wanted().clamp(1, chunk.len());
        match r.read(&mut chunk[..want]) {
            Ok(0) => return d.at_eof().map(|()| None),
            Ok(n) => d.push(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e.to_string())),
        }
    }
}

/// Reads one frame (blocking): header and raw payload bytes, not yet decoded. A close
/// before the frame is complete is [`FrameError::Truncated`].
pub fn read_frame<R: Read>(r: &mut R, max_len: u32) -> Result<(FrameHeader, Vec<u8>), FrameError> {
    let mut d = Deframer::new(Limits::new(max_len, MAX_RAW_LEN));
    match read_frame_from(r, &mut d)? {
        Some(f) => Ok((f.header, f.payload)),
        None => Err(FrameError::Truncated),
    }
}

/// Checks an encoded frame held in memory without decompressing it: header, exact
/// length and checksum (cheap enough to run on every spooled batch before it is sent).
pub fn check_frame(frame: &[u8]) -> Result<FrameHeader, FrameError> {
    let hb: &[u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    let h = FrameHeader::parse_with(hb, Limits::new(MAX_WIRE_LEN, MAX_RAW_LEN))?;
    let payload = &frame[HEADER_LEN..];
    match payload.len().cmp(&(h.len as usize)) {
        std::cmp::Ordering::Less => return Err(FrameError::Truncated),
        std::cmp::Ordering::Greater => {
            return Err(FrameError::TrailingBytes(payload.len() - h.len as usize))
        }
        std::cmp::Ordering::Equal => {}
    }
    let actual = crc32fast::hash(payload);
    if actual != h.crc32 {
        return Err(FrameError::Checksum {
            expected: h.crc32,
            actual,
        });
    }
    Ok(h)
}

/// Checks a whole encoded frame held in memory (a spool file): header, exact length,
/// checksum, decompression. Returns the header and the decoded payload.
pub fn verify_frame(
    frame: &[u8],
    limits: Limits,
) -> Result<(FrameHeader, rkyv::util::AlignedVec), FrameError> {
    let mut d = Deframer::new(limits);
    d.push(frame);
    let f = d.next_frame()?.ok_or(FrameError::Truncated)?;
    if d.buffered() != 0 {
        return Err(FrameError::TrailingBytes(d.buffered()));
    }
    let raw = decode_payload_limited(&f.header, &f.payload, limits.max_raw)?;
    Ok((f.header, raw))
}

/// Writes a frame built by [`encode`].
pub fn write_frame<W: Write>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(frame)
}

/// The sensor's first frame (JSON payload).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    /// The sensor's id (canonical form, see [`crate::sensor_id`]).
    pub sensor_id: String,
    /// The sensor's token; empty when the collector runs with `--no-auth`.
    pub token: String,
    /// Random per sensor start: batch sequence numbers restart with it.
    pub boot_id: u64,
    /// [`crate::SCHEMA_VERSION`] of the sensor's build.
    pub schema_version: u16,
    /// Free text: the sensor's software version.
    #[serde(default)]
    pub software: String,
}

/// The collector's acknowledgement of one batch: stored (or found already stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Boot of the acknowledged batch.
    pub boot_id: u64,
    /// Sequence number of the acknowledged batch.
    pub seq: u64,
}

impl Ack {
    /// The ack's 16 payload bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.boot_id.to_le_bytes());
        b[8..].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Reads an ack payload; None unless exactly 16 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Ack> {
        if b.len() != 16 {
            return None;
        }
        Some(Ack {
            boot_id: u64::from_le_bytes(b[..8].try_into().ok()?),
            seq: u64::from_le_bytes(b[8..].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_codec() {
        let raw: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
            let f = encode(Kind::Batch, codec, FLAG_RESENT, &raw);
            let (h, p) = read_frame(&mut &f[..], MAX_WIRE_LEN).unwrap();
            assert_eq!(h.kind, Kind::Batch);
            assert!(h.is_resent());
            assert_eq!(&decode_payload(&h, &p).unwrap()[..], &raw[..]);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let raw = vec![7u8; 1000];
        let f = encode(Kind::Batch, Codec::Zstd, 0, &raw);
        let hb: [u8; HEADER_LEN] = f[..HEADER_LEN].try_into().unwrap();
        // wrong magic, version, kind, codec
        for (i, v, name) in [
            (0, b'X', "bad_magic"),
            (4, 9, "bad_version"),
            (5, 77, "bad_kind"),
            (6, 9, "bad_codec"),
        ] {
            let mut b = hb;
            b[i] = v;
            assert_eq!(
                FrameHeader::parse(&b, MAX_WIRE_LEN).unwrap_err().name(),
                name
            );
        }
        // oversized length
        let mut b = hb;
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            FrameHeader::parse(&b, MAX_WIRE_LEN).unwrap_err().name(),
            "too_long"
        );
        // truncated
        assert_eq!(
            read_frame(&mut &f[..f.len() - 1], MAX_WIRE_LEN).unwrap_err(),
            FrameError::Truncated
        );
        // corrupt payload: checksum
        let mut g = f.clone();
        let last = g.len() - 1;
        g[last] ^= 0xff;
        let (h, p) = read_frame(&mut &g[..], MAX_WIRE_LEN).unwrap();
        assert_eq!(decode_payload(&h, &p).unwrap_err().name(), "bad_checksum");
        // lying raw length (decompression bomb guard)
        let mut g = f.clone();
        g[12..16].copy_from_slice(&10u32.to_le_bytes());
        let (h, p) = read_frame(&mut &g[..], MAX_WIRE_LEN).unwrap();
        assert_eq!(
            decode_payload(&h, &p).unwrap_err().name(),
            "bad_compression"
        );
        let lz = encode(Kind::Batch, Codec::Lz4, 0, &raw);
        let mut g = lz.clone();
        g[12..16].copy_from_slice(&10u32.to_le_bytes());
        let (h, p) = read_frame(&mut &g[..], MAX_WIRE_LEN).unwrap();
        assert_eq!(
            decode_payload(&h, &p).unwrap_err().name(),
            "bad_compression"
        );
    }

    #[test]
    fn ack_round_trips() {
        let a = Ack {
            boot_id: 0xdead_beef,
            seq: 42,
        };
        assert_eq!(Ack::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(Ack::from_bytes(&[0; 3]), None);
    }
}
