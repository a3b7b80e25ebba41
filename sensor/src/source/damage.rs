//! Saying what is wrong with a damaged capture file.
//!
//! `pcap-file` reports a file cut short inside a record as "Error reading bytes". When
//! reading fails, this walks the file's record (pcap) or block (pcapng) headers itself
//! and names the first damage: where it is (record or block number and byte offset)
//! and what (cut short, with how many bytes were needed and how many are left; a
//! length field larger than what it may be). It runs only on the error path.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

const PCAP_HEADER: u64 = 24;
const PCAP_RECORD_HEADER: u64 = 16;
const PCAPNG_MIN_BLOCK: u64 = 12;

/// The walk's read buffer. It skips each record's data within the buffer
/// (`seek_relative`); a skip past the buffer's end costs an `lseek` and a refill.
/// With `seek`, which always empties the buffer, the walk made a read and an `lseek` a
/// record (1.4 s of system time for a 1.3 GB capture cut short); with `seek_relative`
/// through 8 KiB, a pair every dozen records.
const WALK_BUFFER: usize = 1 << 20;

fn u32_at(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// The file at `path` when it is a regular file: a pipe (`-`, `/dev/stdin`) cannot
/// be read again from its start, so there is nothing to examine.
fn regular_file(path: &Path) -> Option<File> {
    let f = File::open(path).ok()?;
    f.metadata().ok()?.is_file().then_some(f)
}

/// Reads up to `buf.len()` bytes; returns how many there were.
fn read_upto(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The first damage in a pcap file, or None when its records are all well formed.
pub(super) fn pcap(path: &Path) -> Option<String> {
    let mut f = BufReader::with_capacity(WALK_BUFFER, regular_file(path)?);
    let size = f.get_ref().metadata().ok()?.len();
    let mut h = [0u8; PCAP_HEADER as usize];
    if read_upto(&mut f, &mut h).ok()? < h.len() {
        return Some(format!(
            "cut short: the file header needs {PCAP_HEADER} bytes, the file has {size}"
        ));
    }
    let big = matches!(h[..4], [0xa1, 0xb2, ..]);
    let snaplen = u32_at(&h[16..20], big);
    let mut off = PCAP_HEADER;
    for record in 1u64.. {
        let left = size.saturating_sub(off);
        if left == 0 {
            return None;
        }
        if left < PCAP_RECORD_HEADER {
            return Some(format!(
                "packet record {record} at byte {off}: cut short: its header needs \
                 {PCAP_RECORD_HEADER} bytes, {left} left"
            ));
        }
        let mut rh = [0u8; PCAP_RECORD_HEADER as usize];
        read_upto(&mut f, &mut rh).ok()?;
        let incl = u32_at(&rh[8..12], big);
        let orig = u32_at(&rh[12..16], big);
        if snaplen > 0 && incl > snaplen {
            return Some(format!(
                "packet record {record} at byte {off}: length field {incl} is larger than \
                 the file's snapshot length {snaplen}"
            ));
        }
        if incl > orig {
            return Some(format!(
                "packet record {record} at byte {off}: captured length {incl} is larger \
                 than the original length {orig}"
            ));
        }
        let data_left = left - PCAP_RECORD_HEADER;
        if u64::from(incl) > data_left {
            return Some(format!(
                "packet record {record} at byte {off}: cut short: {incl} bytes of packet \
                 data declared, {data_left} left"
            ));
        }
        f.seek_relative(i64::from(incl)).ok()?;
        off += PCAP_RECORD_HEADER + u64::from(incl);
    }
    None
}

/// The first damage in a pcapng file, or None when its blocks are all well framed.
pub(super) fn pcapng(path: &Path) -> Option<String> {
    let mut f = BufReader::with_capacity(WALK_BUFFER, regular_file(path)?);
    let size = f.get_ref().metadata().ok()?.len();
    let mut big = false;
    let mut off = 0u64;
    for block in 1u64.. {
        let left = size.saturating_sub(off);
        if left == 0 {
            return None;
        }
        if left < PCAPNG_MIN_BLOCK {
            return Some(format!(
                "block {block} at byte {off}: cut short: a block needs at least \
                 {PCAPNG_MIN_BLOCK} bytes, {left} left"
            ));
        }
        let mut bh = [0u8; 12];
        read_upto(&mut f, &mut bh).ok()?;
        if bh[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
            // A section header: its byte-order magic decides how lengths read.
            big = bh[8..12] == [0x1a, 0x2b, 0x3c, 0x4d];
        }
        let len = u64::from(u32_at(&bh[4..8], big));
        if len < PCAPNG_MIN_BLOCK || len % 4 != 0 {
            return Some(format!(
                "block {block} at byte {off}: length field {len} is not a block length \
                 (at least {PCAPNG_MIN_BLOCK}, a multiple of 4)"
            ));
        }
        if len > left {
            return Some(format!(
                "block {block} at byte {off}: cut short: length field says {len} bytes, \
                 {left} left"
            ));
        }
        f.seek_relative(len as i64 - 12).ok()?;
        off += len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_file(records: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        for r in records {
            v.extend_from_slice(&[0; 8]);
            v.extend_from_slice(&(r.len() as u32).to_le_bytes());
            v.extend_from_slice(&(r.len() as u32).to_le_bytes());
            v.extend_from_slice(r);
        }
        v
    }

    fn diagnose(bytes: &[u8]) -> Option<String> {
        let p = std::env::temp_dir().join(format!(
            "rstwatch-damage-{}-{}",
            std::process::id(),
            bytes.len()
        ));
        std::fs::write(&p, bytes).unwrap();
        let r = pcap(&p);
        std::fs::remove_file(&p).ok();
        r
    }

    #[test]
    fn names_where_and_how_a_pcap_is_damaged() {
        let good = pcap_file(&[&[1; 60], &[2; 60]]);
        assert_eq!(diagnose(&good), None);
        let cut = &good[..good.len() - 10];
        assert_eq!(
            diagnose(cut).unwrap(),
            "packet record 2 at byte 100: cut short: 60 bytes of packet data declared, 50 left"
        );
        assert!(diagnose(&good[..110])
            .unwrap()
            .contains("its header needs 16 bytes, 10 left"));
        let mut big = good.clone();
        big[32..36].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(diagnose(&big)
            .unwrap()
            .contains("length field 100000 is larger than the file's snapshot length 65535"));
    }

    /// Records of odd sizes over several of the walk's buffers, so that skips end
    /// inside the buffer, at its end and past it: the damage is still found where it is.
    #[test]
    fn the_walk_skips_across_its_buffer() {
        let sizes: Vec<usize> = (0..9_000).map(|i| 60 + (i * 37) % 1_400).collect();
        let data: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![7; n]).collect();
        let records: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let good = pcap_file(&records);
        assert!(good.len() > 3 * WALK_BUFFER, "{} bytes", good.len());
        assert_eq!(diagnose(&good), None);
        let last = *sizes.last().unwrap() as u64;
        let at = good.len() as u64 - last - PCAP_RECORD_HEADER;
        assert_eq!(
            diagnose(&good[..good.len() - 1]).unwrap(),
            format!(
                "packet record 9000 at byte {at}: cut short: {last} bytes of packet data \
                 declared, {} left",
                last - 1
            )
        );
    }
}
