//! Whether a large capture file is read or mapped, and `auto`, which maps pcap files
//! and lets the machine decide for pcapng by timing the kernel's copy.
//!
//! Either way each record is parsed in place; what differs is what the host charges
//! for bringing the bytes to the core. Reading pays the kernel's copy into a small
//! buffer (which then stays in L2); mapping pays page faults and page-table walks,
//! and the parser takes the bytes from memory itself. Mapped pcap windows come with a
//! readahead (`readahead`): the engine requests the file's next lines while it works.
//! With it, mapping a pcap file took a fifth to a quarter less CPU than reading it on
//! both hosts measured, an Intel Xeon VM (copying at 4–6 GB/s) and an AMD EPYC VM
//! (copying at 11–20 GB/s), for one engine and for `--workers` (RESULTS.md, "`auto`
//! maps pcap"). pcapng windows have no readahead (it made the block walk slower), and
//! there the copy's speed still decides which way is cheaper: on the AMD host reading
//! a pcapng file took a sixth less CPU than mapping it (on the Intel one, where
//! mapping pcap won before the readahead existed, pcapng was not compared). So `auto`
//! maps large pcap files, and for pcapng times the copy of the first such file's first
//! [`PROBE_SLICES`] × [`PROBE_SLICE`] bytes, once per process, mapping when the copy
//! ran slower than [`MAP_BELOW`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How a capture file of 16 MiB or more reaches the parser. Pipes, standard input and
/// smaller files are always read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileAccess {
    /// Files of 128 MiB or more: map pcap; map pcapng when this host's kernel copies
    /// slowly, else read it (decided once per run by timing the copy of the first
    /// such file's first 16 MiB). Smaller files are read.
    Auto,
    /// `read` the file in 256 KiB steps into a buffer that stays in the core's L2.
    Read,
    /// Map the file in windows of a few MiB and parse it where the page cache holds it.
    Map,
}

/// Under `auto`, files smaller than this are read without a probe: the probe (a few
/// ms where copies are slow) would be a noticeable share of their replay, and which
/// way they are read changes little in absolute time.
pub(super) const AUTO_MIN: u64 = 128 << 20;

/// The probe reads the file in steps of this size, as the read path does, so that it
/// times the same copies: into a buffer that stays in L2.
const PROBE_STEP: usize = 256 << 10;

/// What the probe's buffer is aligned to (`probe`).
const PAGE: usize = 4096;

/// The probe times this many bytes at a time...
const PROBE_SLICE: usize = 4 << 20;

/// ...this many times, and keeps the fastest: a slice during which the thread lost its
/// core, or which waited for the disk, says nothing about the copy.
const PROBE_SLICES: usize = 4;

/// A copy slower than this, in bytes a second, costs more than a mapping does: 0.1 s
/// a GB, inside the mapping's 0.05–0.15 s a GB on the two hosts measured and well
/// apart from their copies' ~30 and 4–6 GB/s (module docs).
const MAP_BELOW: f64 = 10e9;

/// What `auto` found, the first time it was asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoChoice {
    /// The kernel's copy into the read buffer, bytes a second (the fastest slice).
    pub copy_bytes_per_s: f64,
    /// Whether large files are mapped.
    pub map: bool,
}

static AUTO: OnceLock<Option<AutoChoice>> = OnceLock::new();

/// What `auto` decided in this process, if it was asked to and could probe.
pub fn auto_choice() -> Option<AutoChoice> {
    AUTO.get().copied().flatten()
}

/// Whether a capture `file` of `size` bytes (a regular file, at least the size from
/// which mapping is allowed at all; pcapng if `pcapng`, else pcap) is to be mapped
/// under `access`.
pub(super) fn maps(access: FileAccess, file: &File, size: u64, pcapng: bool) -> bool {
    match access {
        FileAccess::Read => false,
        FileAccess::Map => true,
        FileAccess::Auto if size < AUTO_MIN => false,
        FileAccess::Auto if !pcapng => true,
        // A probe that could not read (an I/O error, a file cut meanwhile) leaves this
        // file, and the run's later ones, to the read path, whose messages name any
        // problem.
        FileAccess::Auto => AUTO
            .get_or_init(|| probe(file).map(decide))
            .is_some_and(|c| c.map),
    }
}

/// The choice for a copy that took `per_slice` for [`PROBE_SLICE`] bytes.
fn decide(per_slice: Duration) -> AutoChoice {
    let copy_bytes_per_s = PROBE_SLICE as f64 / per_slice.as_secs_f64().max(1e-9);
    AutoChoice {
        copy_bytes_per_s,
        map: copy_bytes_per_s < MAP_BELOW,
    }
}

/// The fastest of [`PROBE_SLICES`] timed copies of the file's first bytes, or `None`
/// when the file could not be read that far. Positioned reads: the file's offset,
/// where the read path goes on from, does not move.
///
/// Into a page-aligned buffer: on the AMD host the kernel's copy (`rep movsb`) runs at
/// ~1.7 GB/s instead of 11–20 when the destination is 1–31 bytes past the source
/// modulo 4 KiB, as it always was for a fresh allocation (16 bytes past a page) and
/// page-aligned file offsets. The read path meets that only by chance (its
/// destinations follow the records), so the probe timed a copy the reads rarely pay.
fn probe(file: &File) -> Option<Duration> {
    let mut whole = vec![0u8; PROBE_STEP + PAGE];
    let at = whole.as_ptr().align_offset(PAGE);
    let buf = &mut whole[at..at + PROBE_STEP];
    let mut fastest = Duration::MAX;
    for slice in 0..PROBE_SLICES {
        let start = (slice * PROBE_SLICE) as u64;
        let t = Instant::now();
        for step in (0..PROBE_SLICE).step_by(PROBE_STEP) {
            file.read_exact_at(buf, start + step as u64).ok()?;
        }
        fastest = fastest.min(t.elapsed());
    }
    std::hint::black_box(&buf);
    Some(fastest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_slow_copy_maps_and_a_fast_one_reads() {
        // 4 MiB in 1 ms is ~4.2 GB/s (the Intel VM's copy); in 0.14 ms ~30 GB/s (AMD).
        let slow = decide(Duration::from_micros(1000));
        assert!(slow.map, "{slow:?}");
        assert!((slow.copy_bytes_per_s - 4.194e9).abs() < 1e7, "{slow:?}");
        let fast = decide(Duration::from_micros(140));
        assert!(!fast.map, "{fast:?}");
        // Either side of the threshold.
        assert!(decide(Duration::from_secs_f64(PROBE_SLICE as f64 / 9.9e9)).map);
        assert!(!decide(Duration::from_secs_f64(PROBE_SLICE as f64 / 10.1e9)).map);
        // A slice timed as zero (a coarse clock) is a very fast copy, not a division by zero.
        assert!(!decide(Duration::ZERO).map);
    }

    #[test]
    fn the_probe_times_the_files_first_bytes_and_leaves_its_offset() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![7u8; PROBE_SLICES * PROBE_SLICE]).unwrap();
        let pos = std::io::Seek::stream_position(&mut f).unwrap();
        let t = probe(&f).expect("a file long enough is probed");
        assert!(t > Duration::ZERO && t < Duration::from_secs(5), "{t:?}");
        assert_eq!(std::io::Seek::stream_position(&mut f).unwrap(), pos);
        // One byte short of what the probe reads: no figure, so `auto` reads the file.
        f.set_len((PROBE_SLICES * PROBE_SLICE - 1) as u64).unwrap();
        assert_eq!(probe(&f), None);
    }

    #[test]
    fn fixed_choices_and_small_files_need_no_probe() {
        let f = tempfile::tempfile().unwrap();
        // An empty file could not be probed; these never try.
        assert!(!maps(FileAccess::Read, &f, AUTO_MIN * 4, false));
        assert!(maps(FileAccess::Map, &f, AUTO_MIN * 4, true));
        assert!(!maps(FileAccess::Auto, &f, AUTO_MIN - 1, true));
        // A large pcap file is mapped without timing anything.
        assert!(maps(FileAccess::Auto, &f, AUTO_MIN, false));
        assert_eq!(
            AUTO.get(),
            None,
            "no probe for a fixed choice, a small file or pcap"
        );
    }
}
