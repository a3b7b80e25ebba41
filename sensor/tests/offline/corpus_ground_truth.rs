//! Every capture in the corpus: the RSTs reported equal tshark's count, and every frame
//! read is accounted for (TCP, or one named rejection).

use crate::common_corpus;
use common_corpus::*;
use rstwatch_schema::Record;
use rstwatch_sensor::EngineConfig;

#[test]
fn rst_counts_match_tshark_and_no_frame_is_lost() {
    let dir = corpus_dir();
    let rows = read_tsv(&dir.join("GROUND_TRUTH.tsv"));
    assert!(rows.len() >= 27, "ground truth has {} rows", rows.len());
    let cfg = EngineConfig {
        verify_checksum: false,
        ..EngineConfig::default()
    };
    let mut failures = vec![];
    for row in &rows {
        let file = &row["file"];
        let (records, counters) = replay(&dir.join(file), &cfg);
        let rst_events = records
            .iter()
            .filter(|r| matches!(r, Record::Rst(_)))
            .count() as u64;
        let want_rst: u64 = row["rst_packets"].parse().unwrap();
        let want_frames: u64 = row["packets"].parse().unwrap();
        let want_tcp: u64 = row["tcp_packets"].parse().unwrap();
        let frames = counter(&counters, "frames");
        let tcp = counter(&counters, "tcp");
        let rejected = counter(&counters, "rejected");
        let by_reason: u64 = counters
            .iter()
            .filter(|(n, _)| n.starts_with("rejected."))
            .map(|(_, v)| v)
            .sum();
        let got = (rst_events, counter(&counters, "rst"), frames, tcp);
        let want = (want_rst, want_rst, want_frames, want_tcp);
        if got != want || frames != tcp + rejected || rejected != by_reason {
            failures.push(format!(
                "{file}: (rst events, rst counter, frames, tcp) = {got:?}, want {want:?}; \
                 rejected {rejected} (by reason {by_reason})"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn checksum_verification_changes_no_rst_count() {
    // Bad-checksum RSTs are still reported (flagged), so the count is the same either way.
    let dir = corpus_dir();
    let file = dir.join("zeek/retransmit-fast009.pcap");
    let (records, _) = replay(&file, &EngineConfig::default());
    let rsts: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Rst(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(rsts.len(), 1);
    assert!(rsts[0]
        .flags
        .contains(rstwatch_schema::RstFlag::BadChecksum));
    assert!(!rsts[0].suspect);
}
