//! How `replay` takes its input: a large regular pcap is read or, with `--file-access
//! map`, mapped (the kernel's copy of every byte saved, at the price of page faults:
//! RESULTS.md), or under `auto` (the default) either, by the kernel's copy speed; any
//! capture can come on standard input (`-`); and all give exactly the records and
//! engine counters of a pipe.
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
    let out = run_replay(options, input, stdin);
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
/// mapped, what it gives through a pipe; `--stats` says which way it went.
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
    let (read, read_stats, none2) = replay_with(&["--file-access", "read"], path, None);
    // The default, `auto`, reads a file under 128 MiB.
    let (auto, auto_stats, none3) = replay(path, None);
    let (piped, piped_stats, none4) = replay("-", Some(&bytes));
    assert!(mapped.len() > 4000, "{}", mapped.len());
    assert_eq!(
        (none, none2, none3, none4),
        (vec![], vec![], vec![], vec![])
    );
    assert!(mapped == piped, "mapped: records differ");
    assert!(read == piped, "read: records differ");
    assert!(auto == piped, "auto: records differ");
    let piped_stats = reading(&piped_stats, 0);
    assert_eq!(reading(&mapped_stats, 1), piped_stats);
    assert_eq!(reading(&read_stats, 0), piped_stats);
    assert_eq!(reading(&auto_stats, 0), piped_stats);
}

/// `auto` maps a pcap or pcapng capture of 128 MiB or more, and the records are those
/// of both fixed ways.
#[test]
fn auto_maps_a_large_pcap_and_a_large_pcapng() {
    let dir = tempfile::tempdir().unwrap();
    let storm = gen(dir.path(), "storm", "4000", "2");
    let large = dir.path().join("large.pcap");
    repeat_in_time(&storm, &large, 128 << 20);
    assert!(std::fs::metadata(&large).unwrap().len() >= 128 << 20);
    let path = large.to_str().unwrap();
    let (auto, auto_stats) = replay_plain(&[], path);
    let (read, read_stats) = replay_plain(&["--file-access", "read"], path);
    let (mapped, mapped_stats) = replay_plain(&["--file-access", "map"], path);
    assert!(auto.len() > 7 * 4000, "{}", auto.len());
    assert!(auto == read && auto == mapped, "records differ");
    let expected = reading(&read_stats, 0);
    assert_eq!(reading(&mapped_stats, 1), expected);
    assert_eq!(reading(&auto_stats, 1), expected);

    let large_ng = dir.path().join("large.pcapng");
    crate::replay_workers::as_pcapng(&large, &large_ng);
    let path = large_ng.to_str().unwrap();
    let (auto_ng, auto_ng_stats) = replay_plain(&[], path);
    let (read_ng, read_ng_stats) = replay_plain(&["--file-access", "read"], path);
    assert!(auto_ng == auto && read_ng == auto, "pcapng: records differ");
    let expected_ng = reading(&read_ng_stats, 0);
    assert_eq!(reading(&auto_ng_stats, 1), expected_ng);
}

/// `replay --stats --no-progress` of `input` (a path, or `-` with `stdin` fed in), with
/// `options`: what it wrote and its exit status.
fn run_replay(options: &[&str], input: &str, stdin: Option<&[u8]>) -> std::process::Output {
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
    child.wait_with_output().unwrap()
}

/// `replay --stats --no-progress` of the file `path`: its output lines without their
/// `flow_uid`s (seeded per process), and the `--stats` line. Lighter than [`replay`]'s
/// renumbering, for outputs of ~60,000 records.
fn replay_plain(options: &[&str], path: &str) -> (Vec<String>, String) {
    let out = run_replay(options, path, None);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let stats: Vec<&str> = stderr.lines().collect();
    assert!(stats.len() == 1 && stats[0].starts_with('{'), "{stderr}");
    let records = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| match l.split_once("\"flow_uid\":") {
            Some((a, b)) => {
                let rest = b.trim_start_matches(|c: char| c.is_ascii_digit());
                format!("{a}{rest}")
            }
            None => l.to_string(),
        })
        .collect();
    (records, stats[0].to_string())
}

/// The `--stats` object `stats` with its `files_mapped` checked and taken out, for
/// comparing the engine's counters across ways of reading.
fn reading(stats: &str, mapped: u64) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(stats).unwrap();
    let m = v.as_object_mut().unwrap();
    assert_eq!(m.remove("files_mapped"), Some(mapped.into()), "{stats}");
    v
}

/// Writes the pcap `from` again and again into `to` until it holds at least `bytes`,
/// each copy's packets moved later by the capture's span (plus a second), so time
/// only goes forward.
fn repeat_in_time(from: &std::path::Path, to: &std::path::Path, bytes: u64) {
    use pcap_file::pcap::{PcapReader, PcapWriter};
    let mut r = PcapReader::new(std::fs::File::open(from).unwrap()).unwrap();
    let header = r.header();
    let mut packets = Vec::new();
    while let Some(p) = r.next_packet() {
        packets.push(p.unwrap().into_owned());
    }
    let span = packets.last().unwrap().timestamp - packets[0].timestamp
        + std::time::Duration::from_secs(1);
    let file = std::io::BufWriter::new(std::fs::File::create(to).unwrap());
    let mut w = PcapWriter::with_header(file, header).unwrap();
    let mut written = 0u64;
    let mut copy = 0;
    while written < bytes {
        for p in &packets {
            let mut p = p.clone();
            p.timestamp += span * copy;
            written += w.write_packet(&p).unwrap() as u64;
        }
        copy += 1;
    }
    std::io::Write::flush(&mut w.into_writer()).unwrap();
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
