//! `rstwatch-sensor replay` as a user runs it: bad files give one clear line and a
//! non-zero exit without losing what was read before the problem; damaged captures
//! never crash the reader.

use crate::common_corpus;
use common_corpus::corpus_dir;
use proptest::prelude::*;
use rstwatch_schema::Record;
use std::path::Path;
use std::process::Command;

fn sensor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rstwatch-sensor"))
}

struct Run {
    code: i32,
    records: Vec<Record>,
    stderr: String,
}

fn replay(args: &[&str]) -> Run {
    let out = sensor()
        .arg("replay")
        .args(args)
        .output()
        .expect("run rstwatch-sensor");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let records = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a record: {l}: {e}")))
        .collect();
    Run {
        code: out.status.code().unwrap_or(-1),
        records,
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn rsts(r: &Run) -> usize {
    r.records
        .iter()
        .filter(|r| matches!(r, Record::Rst(_)))
        .count()
}

#[test]
fn a_good_file_gives_records_and_exit_zero() {
    let f = corpus_dir().join("ndpi/ethereum.pcap");
    let r = replay(&[f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(rsts(&r), 419);
    assert!(r.records.iter().any(|r| matches!(r, Record::Flow(_))));
    assert!(r.stderr.is_empty(), "unexpected stderr: {}", r.stderr);
}

#[test]
fn a_truncated_file_keeps_what_came_before_and_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(corpus_dir().join("ndpi/ethereum.pcap")).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &full[..full.len() / 2 + 7]).unwrap();
    let r = replay(&[cut.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let n = rsts(&r);
    assert!(n > 50 && n < 419, "{n} RSTs from half the file");
    let lines: Vec<_> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", lines);
    assert!(
        lines[0].contains("cut.pcap") && lines[0].contains("packet record"),
        "{}",
        lines[0]
    );
}

#[test]
fn bad_files_are_named_and_the_good_ones_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, b"this is not a capture\n").unwrap();
    let missing = dir.path().join("missing.pcap");
    let good = corpus_dir().join("zeek/single-rst.pcap");
    let r = replay(&[
        empty.to_str().unwrap(),
        text.to_str().unwrap(),
        missing.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(rsts(&r), 1, "the good file is still read");
    let lines: Vec<_> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{:?}", lines);
    assert!(lines[0].contains("empty.pcap: empty file"), "{}", lines[0]);
    assert!(
        lines[1].contains("notes.txt: not a pcap or pcapng file"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("missing.pcap: cannot open"),
        "{}",
        lines[2]
    );
}

#[test]
fn table_format_and_stats() {
    let f = corpus_dir().join("zeek/syn-then-rst.pcap");
    let out = sensor()
        .args(["replay", "--format", "table", "--stats"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("rst ") && l.contains("handshake_abort")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("flow ") && l.contains("RSTOS0")),
        "{text}"
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stderr).expect("stats are JSON");
    assert_eq!(stats["frames"], 2);
    assert_eq!(stats["rst"], 1);
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rstwatch.toml");
    std::fs::write(&cfg, "[engine]\nflow_capacty = 10\n").unwrap();
    let f = corpus_dir().join("zeek/single-rst.pcap");
    let r = replay(&["--config", cfg.to_str().unwrap(), f.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("flow_capacty"), "{}", r.stderr);
}

#[test]
fn a_flow_table_too_large_for_one_index_is_refused() {
    let f = corpus_dir().join("zeek/single-rst.pcap");
    let r = replay(&["--flow-capacity", "16777216", f.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("flow_capacity must be between 1 and 16777215"),
        "{}",
        r.stderr
    );
    assert!(r.records.is_empty());
}

fn read_all(path: &Path) -> Result<u64, String> {
    let mut n = 0;
    rstwatch_sensor::source::read_file(path, None, |_| n += 1).map_err(|e| e.to_string())?;
    Ok(n)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Damaged pcap and pcapng files: an error or fewer frames, never a panic.
    #[test]
    fn damaged_captures_never_panic(
        which in 0usize..2,
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let src = ["ndpi/tcp_scan.pcapng", "zeek/syn-then-stuff-then-rst.pcap"][which];
        let mut bytes = std::fs::read(corpus_dir().join(src)).unwrap();
        for (i, x) in flips {
            let i = i.index(bytes.len());
            bytes[i] = x;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("damaged");
        std::fs::write(&p, &bytes).unwrap();
        let _ = read_all(&p);
    }
}
