//! Whether a large capture file is read or mapped; `auto` maps the large ones.
//!
//! Either way each record is parsed in place; what differs is what the host charges
//! for bringing the bytes to the core. Reading pays the kernel's copy into a small
//! buffer (which then stays in L2); mapping pays page faults and page-table walks,
//! and the parser takes the bytes from memory itself. Mapped windows come with a
//! readahead (`readahead`): the engine requests the file's next lines while it works.
//! With it, mapping a pcap file took a fifth to a quarter less CPU than reading it on
//! both hosts measured, an Intel Xeon VM (copying at 4-6 GB/s) and an AMD EPYC VM
//! (copying at 9-20 GB/s), for one engine and for `--workers` (RESULTS.md, "`auto`
//! maps pcap"). On the AMD host on 2026-12-04 reading ran a fifth faster instead: the
//! readahead's requests fell on pages not yet mapped and were dropped. Since it maps
//! each block before requesting its lines, the two were level there (RESULTS.md,
//! "Pages mapped before their lines are requested"). pcapng windows had no readahead
//! until then (it made the block walk slower, its requests dropped the same way); on
//! the AMD host mapping a pcapng file took a sixth more CPU than reading it, and an
//! hour and a half later a tenth less, while the kernel's copy there ran at 9-11 and
//! 11-15 GB/s: its speed did not tell which way would win, so `auto` no longer times
//! it (RESULTS.md, "`auto` maps pcapng too"). With the readahead a mapped pcapng
//! replay takes 0.85 of the CPU it took without (RESULTS.md, "pcapng reads ahead
//! too").
//!
//! What mapping costs also depends on how the file sits in the page cache, which
//! `auto` cannot see. Read from disk, a file is cached in large folios (2 MiB on the
//! AMD host) and the 1.36 GB benchmark capture maps in ~2,300 faults. Paged out in
//! part and read back (that VM's DAMON daemon pages out files left untouched for a
//! few seconds) it is in 4 KiB pages: ~22,000 faults and ~0.09 s more system time
//! mapped, ~0.025 s more read, so reading then wins by about a tenth (RESULTS.md,
//! "The page cache's folios"). A capture replayed off disk is the first case.
//!
//! On a third host (a Zen 4 VM, 2026-12-04) reading took 0.685 of mapping's CPU with
//! the file in large folios. So `auto` no longer trusts one host's answer for a large
//! file: it times both ways on the file itself and takes the cheaper one for the rest
//! (`batched::read_trying_both`).

/// How a capture file of 16 MiB or more reaches the parser. Pipes, standard input and
/// smaller files are always read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileAccess {
    /// Map files of 128 MiB or more, read smaller ones; files of 256 MiB or more are
    /// taken both ways for a while, then the cheaper way (`batched::read_trying_both`).
    Auto,
    /// `read` the file in 512 KiB steps (1 MiB for `--workers`) into a buffer that
    /// stays in the core's L2.
    Read,
    /// Map the file in windows of a few MiB and parse it where the page cache holds it.
    Map,
}

/// Under `auto`, files smaller than this are read: mapping was measured on captures
/// of 233 MB and more, and below this size either way costs a few milliseconds, so
/// `auto` keeps smaller files on the read path, the one they always took.
pub(super) const AUTO_MIN: u64 = 128 << 20;

/// Whether a capture file of `size` bytes (a regular pcap or pcapng file, at least
/// the size from which mapping is allowed at all) is to be mapped under `access`.
pub(super) fn maps(access: FileAccess, size: u64) -> bool {
    match access {
        FileAccess::Read => false,
        FileAccess::Map => true,
        FileAccess::Auto => size >= AUTO_MIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_maps_large_files_only_and_fixed_choices_hold() {
        assert!(!maps(FileAccess::Read, AUTO_MIN * 4));
        assert!(maps(FileAccess::Map, AUTO_MIN * 4));
        assert!(maps(FileAccess::Map, 1));
        assert!(!maps(FileAccess::Auto, AUTO_MIN - 1));
        assert!(maps(FileAccess::Auto, AUTO_MIN));
    }
}
