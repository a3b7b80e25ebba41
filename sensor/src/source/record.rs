//! pcap record headers: read by hand, and checked by the rules of this module rather
//! than `pcap-file`'s.
//!
//! Two reasons. Speed: `pcap-file`'s slice parser costs ~23 ns a record on the
//! benchmark capture (6.4 % of a whole `replay`, RESULTS.md), building a `Duration` and
//! a `Cow` per record that the caller turns back into microseconds; the header is four
//! `u32`s. Correctness: `pcap-file` 2.0.0 refuses a record whose original length
//! exceeds the file's snapshot length, which is every cut record of a capture taken
//! with `tcpdump -s 96` (header-only captures of busy links), so such files stopped at
//! their first record (courvoif/pcap-file#36, fixed upstream after 2.0.0 and not
//! released). The rules here are the crate's without that one:
//! - the timestamp's fraction is below a second;
//! - the captured length is at most the snapshot length (a snapshot length of 0,
//!   which the format forbids, is taken as "no limit", as the damage report does);
//! - the captured length is at most the original length.
//!
//! The errors are the crate's own values, so messages are unchanged.

use pcap_file::pcap::{PcapHeader, RawPcapPacket};
use pcap_file::{Endianness, PcapError, TsResolution};

/// How the records of one file are laid out (from its file header).
#[derive(Clone, Copy)]
pub(super) struct RecordLayout {
    big_endian: bool,
    nanos: bool,
    snaplen: u32,
}

/// One record: (timestamp µs, captured bytes, the bytes after the record).
pub(super) type Record<'a> = (i64, &'a [u8], &'a [u8]);

impl RecordLayout {
    pub(super) fn of(header: PcapHeader) -> RecordLayout {
        RecordLayout {
            big_endian: header.endianness == Endianness::Big,
            nanos: header.ts_resolution == TsResolution::NanoSecond,
            snaplen: header.snaplen,
        }
    }

    /// The record at the start of `bytes`; `IncompleteBuffer` when it continues past
    /// their end.
    #[inline(always)]
    pub(super) fn next<'a>(&self, bytes: &'a [u8]) -> Result<Record<'a>, PcapError> {
        let Some(h) = bytes.get(..16) else {
            return Err(PcapError::IncompleteBuffer);
        };
        let le = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let mut w = [le(0), le(4), le(8), le(12)];
        // One test a record rather than one a field.
        if self.big_endian {
            w = w.map(u32::swap_bytes);
        }
        let [sec, frac, incl, orig] = w;
        let rest = &bytes[16..];
        if incl as usize > rest.len() {
            return Err(PcapError::IncompleteBuffer);
        }
        let ts_us = self.check(sec, frac, incl, orig)?;
        let (data, rest) = rest.split_at(incl as usize);
        Ok((ts_us, data, rest))
    }

    /// The timestamp (µs) of a record read by `pcap-file`'s raw reader, by the rules
    /// above.
    pub(super) fn check_raw(&self, raw: &RawPcapPacket<'_>) -> Result<i64, PcapError> {
        self.check(raw.ts_sec, raw.ts_frac, raw.incl_len, raw.orig_len)
    }

    /// The record's timestamp in µs, or the rule it breaks.
    #[inline(always)]
    fn check(&self, sec: u32, frac: u32, incl: u32, orig: u32) -> Result<i64, PcapError> {
        let frac_us = if self.nanos {
            (frac < 1_000_000_000).then_some(frac / 1000)
        } else {
            (frac < 1_000_000).then_some(frac)
        };
        match frac_us {
            Some(us) if incl <= orig && (incl <= self.snaplen || self.snaplen == 0) => {
                Ok(i64::from(sec) * 1_000_000 + i64::from(us))
            }
            _ => Err(self.broken_rule(frac, incl, orig)),
        }
    }

    /// Which rule a record breaks, as `pcap-file` words it.
    #[cold]
    fn broken_rule(&self, frac: u32, incl: u32, orig: u32) -> PcapError {
        let bad = PcapError::InvalidField;
        if !self.nanos && frac > u32::MAX / 1000 {
            bad("PacketHeader ts_nanosecond is invalid")
        } else if frac >= if self.nanos { 1_000_000_000 } else { 1_000_000 } {
            bad("PacketHeader ts_nanosecond >= 1_000_000_000")
        } else if incl > self.snaplen && self.snaplen != 0 {
            bad("PacketHeader incl_len > snap_len")
        } else {
            debug_assert!(incl > orig);
            bad("PacketHeader incl_len > orig_len")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapParser;

    /// Random record headers (mostly near the limits that matter) with a random number
    /// of bytes after them, in all four layouts, against `pcap-file`: the same record
    /// or the same error wherever the crate's rules are this module's (snapshot length
    /// set, original length within it), and against the rules themselves everywhere.
    #[test]
    fn same_records_and_errors_as_pcap_file_but_for_the_snaplen_bug() {
        let mut rng = fastrand::Rng::with_seed(12);
        for (endianness, ts_resolution) in [
            (Endianness::Big, TsResolution::MicroSecond),
            (Endianness::Big, TsResolution::NanoSecond),
            (Endianness::Little, TsResolution::MicroSecond),
            (Endianness::Little, TsResolution::NanoSecond),
        ] {
            for snaplen in [0, 64, 65535, u32::MAX] {
                let header = PcapHeader {
                    endianness,
                    ts_resolution,
                    snaplen,
                    ..PcapHeader::default()
                };
                let mut file = Vec::new();
                header.write_to(&mut file).unwrap();
                let (_, parser) = PcapParser::new(&file).unwrap();
                let layout = RecordLayout::of(parser.header());
                let near = |rng: &mut fastrand::Rng, limits: &[u32]| -> u32 {
                    match rng.u8(0..4) {
                        0 => rng.u32(..),
                        _ => limits[rng.usize(..limits.len())]
                            .wrapping_add(rng.u32(0..3))
                            .wrapping_sub(1),
                    }
                };
                let (mut same, mut accepted, mut refused, mut cut) = (0, 0, 0, 0);
                for _ in 0..20_000 {
                    let sec = rng.u32(..);
                    let frac = near(&mut rng, &[0, 1_000_000, 4_294_967, 1_000_000_000]);
                    let incl = near(&mut rng, &[0, 40, 64, snaplen]);
                    let orig = near(&mut rng, &[0, 40, 64, snaplen, incl]);
                    let mut rec = Vec::new();
                    for w in [sec, frac, incl, orig] {
                        rec.extend(match endianness {
                            Endianness::Big => w.to_be_bytes(),
                            Endianness::Little => w.to_le_bytes(),
                        });
                    }
                    let extra = rng.usize(0..100);
                    rec.extend((0..extra).map(|_| rng.u8(..)));
                    let end = if rng.bool() {
                        rng.usize(0..=rec.len())
                    } else {
                        rec.len()
                    };
                    let bytes = &rec[..end];
                    let ours = layout.next(bytes);
                    // The rules, written plainly.
                    let whole = end >= 16 && (end - 16) as u64 >= u64::from(incl);
                    let ok_frac = match ts_resolution {
                        TsResolution::MicroSecond => frac < 1_000_000,
                        TsResolution::NanoSecond => frac < 1_000_000_000,
                    };
                    let ok = ok_frac && incl <= orig && (snaplen == 0 || incl <= snaplen);
                    match &ours {
                        Err(PcapError::IncompleteBuffer) => {
                            assert!(!whole);
                            cut += 1;
                        }
                        Ok((ts, data, rest)) => {
                            assert!(whole && ok);
                            let nanos = u64::from(frac)
                                * if ts_resolution == TsResolution::MicroSecond {
                                    1000
                                } else {
                                    1
                                };
                            assert_eq!(*ts as u64, u64::from(sec) * 1_000_000 + nanos / 1000);
                            assert_eq!(*data, &bytes[16..16 + incl as usize]);
                            assert_eq!(*rest, &bytes[16 + incl as usize..]);
                            accepted += 1;
                        }
                        Err(_) => {
                            assert!(whole && !ok);
                            refused += 1;
                        }
                    }
                    if snaplen != 0 && orig <= snaplen {
                        let theirs = parser
                            .next_packet(bytes)
                            .map(|(rest, p)| (p.timestamp.as_micros() as i64, rest));
                        match (&ours, theirs) {
                            (Ok((ts, _, rest)), Ok(t)) => assert_eq!((*ts, *rest), t),
                            (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
                            (a, b) => panic!("{a:?} against {b:?}: {bytes:?}"),
                        }
                        same += 1;
                    }
                }
                // Every outcome well represented.
                assert!(cut > 2_000 && refused > 2_000, "{cut} {refused}");
                assert!(accepted > 500, "{accepted}");
                assert!(snaplen == 0 || same > 2_000, "{same}");
            }
        }
    }
}
