//! How `replay` takes its input: a large regular pcap is read or, with `--file-access
//! map`, mapped (the kernel's copy of every byte saved, at the price of page faults:
//! RESULTS.md), any capture can come on standard input (`-`), and all give exactly the
//! records and counters of a pipe.
//!
//! A pipe is the reference: it can only be read. `flow_uid` has a per-process seed, so
//! outputs are compared with each uid replaced by its order of first appearance (one
//! engine writes its records in the same order every run).

use crate::replay_workers::gen;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// `replay --stats --no-progress` of `input` (a path, or `-` with `stdin` fed in):
/// its output with uids renumbered, its counters, and the rest of stderr.
fn replay(input: &str, stdin: Option<&[u8]>) -> (Vec<String>, String, Vec<String>) {
    replay_with(&[], input, stdin)
}

/// [`replay`] with more options.
fn replay_with(
    options: &[&str],
    input: &str,
    stdin: Option<&[u8]>,
) -> (Vec<String>, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rstwatch-sensor"))
        .args(["replay", "--stats", "--no-progress"])
        .args(options)
        .arg(input)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rstwatch-sensor");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            // The sensor may stop reading at a damaged record: a closed pipe is fine.
            let _ = pipe.write_all(&bytes);
        });
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let (stats, messages): (Vec<_>, Vec<_>) = stderr
        .lines()
        .map(String::from)
        .partition(|l| l.starts_with('{'));
    let stats = stats.concat();
    let mut uids = HashMap::new();
    let records = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(uid) = v.get_mut("flow_uid") {
                let n = uids.len();
                *uid = (*uids.entry(uid.to_string()).or_insert(n)).into();
            }
            v.to_string()
        })
        .collect();
    (records, stats, messages)
}

/// A capture large enough to be mapped (over 16 MiB) gives, read from its file or
/// mapped, what it gives through a pipe.
#[test]
fn a_large_capture_read_or_mapped_gives_the_records_of_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let storm = gen(dir.path(), "storm", "4000", "1");
    let bytes = std::fs::read(&storm).unwrap();
    assert!(
        bytes.len() > 16 << 20,
        "{} bytes: too small to be mapped",
        bytes.len()
    );
    let path = storm.to_str().unwrap();
    let (mapped, mapped_stats, none) = replay_with(&["--file-access", "map"], path, None);
    let (read, read_stats, none2) = replay(path, None);
    let (piped, piped_stats, none3) = replay("-", Some(&bytes));
    assert!(mapped.len() > 4000, "{}", mapped.len());
    assert_eq!((none, none2, none3), (vec![], vec![], vec![]));
    assert!(mapped == piped, "mapped: records differ");
    assert!(read == piped, "read: records differ");
    assert_eq!(mapped_stats, piped_stats);
    assert_eq!(read_stats, piped_stats);
}

/// pcapng on standard input too; and a capture cut short in a pipe keeps its frames
/// before the cut and names the record, as a cut file does (but without the byte
/// offset, which needs the file read again from its start).
#[test]
fn standard_input_takes_pcapng_and_names_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let abort = gen(dir.path(), "abort", "2000", "1");
    let ng = dir.path().join("abort.pcapng");
    crate::replay_workers::as_pcapng(&abort, &ng);
    let (from_file, file_stats, _) = replay(abort.to_str().unwrap(), None);
    let (from_pipe, pipe_stats, none) = replay("-", Some(&std::fs::read(&ng).unwrap()));
    assert!(none.is_empty(), "{none:?}");
    assert!(from_file.len() > 10 && from_pipe == from_file);
    assert_eq!(pipe_stats, file_stats);

    let bytes = std::fs::read(&abort).unwrap();
    let cut = &bytes[..bytes.len() * 2 / 3];
    let path = dir.path().join("cut.pcap");
    std::fs::write(&path, cut).unwrap();
    let (file_records, _, file_msg) = replay(path.to_str().unwrap(), None);
    let (pipe_records, _, pipe_msg) = replay("-", Some(cut));
    assert_eq!(pipe_records, file_records);
    assert_eq!(file_msg.len(), 1, "{file_msg:?}");
    let record = file_msg[0].split(" at byte").next().unwrap();
    assert!(record.contains(": packet record "), "{file_msg:?}");
    let record = record.split(": packet record ").nth(1).unwrap();
    assert!(
        pipe_msg == [format!("rstwatch-sensor: -: packet record {record}: Error reading bytes: unexpected end of file")],
        "{pipe_msg:?} against {file_msg:?}"
    );
}
