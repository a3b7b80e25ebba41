//! `split_capture` (the perfect split `benches/workers_scaling.sh` measures against)
//! must split as `replay --workers` does: every flow, both directions, wholly in one
//! part, each part in the capture's order, nothing lost or added. Which part a flow
//! lands in depends on the process's hash seed, as which engine does in one
//! `--workers` run, so that is not compared.

use pcap_file::pcap::PcapReader;
use rstwatch_sensor::engine::FanoutParser;
use rstwatch_sensor::flow::FlowKey;
use rstwatch_sensor::parse::LinkType;
use rstwatch_sensor::EngineConfig;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Each frame's time (ns) and bytes, with the file's link type.
fn frames(path: &Path) -> (LinkType, Vec<(u128, Vec<u8>)>) {
    let mut r = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let link = LinkType::from_linktype(u32::from(r.header().datalink));
    let mut v = vec![];
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        v.push((p.timestamp.as_nanos(), p.data.into_owned()));
    }
    (link, v)
}

fn run(bin: &str, args: &[&str]) {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_parts_split_the_capture_by_flow_in_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("c.pcap");
    let prefix = dir.path().join("part");
    run(
        env!("CARGO_BIN_EXE_replay_capture"),
        &[
            "--packets",
            "20000",
            "--flows",
            "300",
            "--out",
            capture.to_str().unwrap(),
        ],
    );
    // Three parts, so a split that only alternates or halves would not pass.
    run(
        env!("CARGO_BIN_EXE_split_capture"),
        &[
            "--parts",
            "3",
            "--out",
            prefix.to_str().unwrap(),
            capture.to_str().unwrap(),
        ],
    );
    let (link, all) = frames(&capture);
    let mut parser = FanoutParser::new(EngineConfig::default().parse_options());
    let mut key = |frame: &[u8]| {
        let (_, outcome) = parser.parse(link, frame, 1);
        assert!(outcome.is_ok(), "the synthetic capture's frames all parse");
        FlowKey::of(parser.packet()).0
    };
    // Which part holds each flow: one part, or the split is not by flow.
    let mut part_of = HashMap::new();
    let mut parts = vec![];
    for i in 0..3 {
        let (part_link, got) = frames(&dir.path().join(format!("part-{i}.pcap")));
        assert_eq!(part_link, link);
        assert!(
            got.len() > all.len() / 6,
            "part {i}: {} of {} frames",
            got.len(),
            all.len()
        );
        for f in &got {
            let before = part_of.insert(key(&f.1), i);
            assert!(
                before.is_none() || before == Some(i),
                "a flow in parts {before:?} and {i}"
            );
        }
        parts.push(got);
    }
    // The capture's frames, each sent to its flow's part, give the parts exactly.
    let mut want = vec![vec![]; 3];
    for f in &all {
        let i = *part_of.get(&key(&f.1)).expect("every flow is in a part");
        want[i].push(f.clone());
    }
    for (i, (got, want)) in parts.iter().zip(&want).enumerate() {
        assert_eq!(got.len(), want.len(), "part {i}: frames");
        if let Some(k) = (0..got.len()).find(|&k| got[k] != want[k]) {
            panic!("part {i} differs from its flows' frames in order at frame {k}");
        }
    }
}
