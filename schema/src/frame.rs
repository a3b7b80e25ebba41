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
    Hello = 1,
    Welcome = 2,
    Batch = 3,
    Ack = 4,
    Reject = 5,
}

impl Kind {
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
    None = 0,
    Lz4 = 1,
    #[default]
    Zstd = 2,
}

impl Codec {
    pub fn from_u8(v: u8) -> Option<Codec> {
        Some(match v {
            0 => Codec::None,
            1 => Codec::Lz4,
            2 => Codec::Zstd,
            _ => return None,
        })
    }

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
    BadMagic([u8; 4]),
    BadVersion(u8),
    BadKind(u8),
    BadCodec(u8),
    TooLong { len: u32, max: u32 },
    RawTooLong { len: u32, max: u32 },
    Checksum { expected: u32, actual: u32 },
    Decompress(String),
    RawLenMismatch { declared: u32, actual: usize },
    Truncated,
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
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A parsed, checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: Kind,
    pub codec: Codec,
    pub flags: u8,
    pub len: u32,
    pub raw_len: u32,
    pub crc32: u32,
}

impl FrameHeader {
    /// Checks the fixed header. `max_len` caps the wire length (use [`MAX_WIRE_LEN`] or
    /// less); the raw length is capped at [`MAX_RAW_LEN`].
    pub fn parse(b: &[u8; HEADER_LEN], max_len: u32) -> Result<FrameHeader, FrameError> {
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if b[4] != FRAME_VERSION {
            return Err(FrameError::BadVersion(b[4]));
        }
        let kind = Kind::from_u8(b[5]).ok_or(FrameError::BadKind(b[5]))?;
        let codec = Codec::from_u8(b[6]).ok_or(FrameError::BadCodec(b[6]))?;
        let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let raw_len = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        let crc32 = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
        let max_len = max_len.min(MAX_WIRE_LEN);
        if len > max_len {
            return Err(FrameError::TooLong { len, max: max_len });
        }
        if raw_len > MAX_RAW_LEN {
            return Err(FrameError::RawTooLong {
                len: raw_len,
                max: MAX_RAW_LEN,
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
            flags: b[7],
            len,
            raw_len,
            crc32,
        })
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = FRAME_VERSION;
        b[5] = self.kind as u8;
        b[6] = self.codec as u8;
        b[7] = self.flags;
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.raw_len.to_le_bytes());
        b[16..20].copy_from_slice(&self.crc32.to_le_bytes());
        b
    }

    pub fn is_resent(&self) -> bool {
        self.flags & FLAG_RESENT != 0
    }
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
/// rkyv's validated access needs).
pub fn decode_payload(
    h: &FrameHeader,
    payload: &[u8],
) -> Result<rkyv::util::AlignedVec, FrameError> {
    if payload.len() != h.len as usize {
        return Err(FrameError::Truncated);
    }
    let actual = crc32fast::hash(payload);
    if actual != h.crc32 {
        return Err(FrameError::Checksum {
            expected: h.crc32,
            actual,
        });
    }
    let mut out = rkyv::util::AlignedVec::<16>::with_capacity(h.raw_len as usize);
    match h.codec {
        Codec::None => out.extend_from_slice(payload),
        Codec::Lz4 => {
            // Decompress straight into a zeroed buffer of the declared size: the
            // declared size is capped, so a bomb cannot allocate more than that.
            out.resize(h.raw_len as usize, 0);
            let n = lz4_flex::block::decompress_into(payload, &mut out)
                .map_err(|e| FrameError::Decompress(e.to_string()))?;
            if n != h.raw_len as usize {
                return Err(FrameError::RawLenMismatch {
                    declared: h.raw_len,
                    actual: n,
                });
            }
        }
        Codec::Zstd => {
            out.resize(h.raw_len as usize, 0);
            let n = zstd::bulk::decompress_to_buffer(payload, &mut out[..])
                .map_err(|e| FrameError::Decompress(e.to_string()))?;
            if n != h.raw_len as usize {
                return Err(FrameError::RawLenMismatch {
                    declared: h.raw_len,
                    actual: n,
                });
            }
        }
    }
    Ok(out)
}

/// Reads one frame (blocking): header and raw payload bytes, not yet decoded.
pub fn read_frame<R: Read>(r: &mut R, max_len: u32) -> Result<(FrameHeader, Vec<u8>), FrameError> {
    let mut hb = [0u8; HEADER_LEN];
    read_exact(r, &mut hb)?;
    let h = FrameHeader::parse(&hb, max_len)?;
    let mut payload = vec![0u8; h.len as usize];
    read_exact(r, &mut payload)?;
    Ok((h, payload))
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), FrameError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e.to_string())
        }
    })
}

/// Writes a frame built by [`encode`].
pub fn write_frame<W: Write>(w: &mut W, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(frame)
}

/// The sensor's first frame (JSON payload).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    pub sensor_id: String,
    /// The sensor's token; empty when the collector runs with `--no-auth`.
    pub token: String,
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
    pub boot_id: u64,
    pub seq: u64,
}

impl Ack {
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.boot_id.to_le_bytes());
        b[8..].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

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
