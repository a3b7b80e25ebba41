//! `replay --workers N` gives what one engine gives: the same RST events and flow
//! records (as a multiset, since N engines interleave), each flow's RST events in the
//! same order, the same counters, over a capture read in many reader batches.
//!
//! Anomalies are not compared: their detectors count across flows (RSTs per server in
//! a second, ...), and with N engines each sees its share of the flows, as in live
//! fan-out (README "Performance"); the storm here raises them at different moments.
//!
//! `flow_uid` is a hash with a per-process seed (it joins RSTs to their flow within
//! one output, and differs between any two runs), so records are compared with it
//! replaced by the flow it names: its record's endpoints and start time.

use rstwatch_schema::Record;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

fn sensor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rstwatch-sensor"))
}

/// `replay --no-progress --stats --workers N` of `files`, its output to `stdout`.
fn run(files: &[&Path], workers: u16, stdout: Stdio) -> std::process::Output {
    run_with(files, workers, &[], stdout)
}

/// [`run`] with `extra` options.
fn run_with(files: &[&Path], workers: u16, extra: &[&str], stdout: Stdio) -> std::process::Output {
    sensor()
        .arg("replay")
        .args([
            "--no-progress",
            "--stats",
            "--workers",
            &workers.to_string(),
        ])
        .args(extra)
        .args(files)
        .stdout(stdout)
        .output()
        .expect("run rstwatch-sensor")
}

/// The output lines of `replay` and its `--stats` counters.
fn replay(files: &[&Path], workers: u16) -> (Vec<String>, serde_json::Value) {
    replay_with(files, workers, &[])
}

/// [`replay`] with `extra` options.
fn replay_with(files: &[&Path], workers: u16, extra: &[&str]) -> (Vec<String>, serde_json::Value) {
    let out = run_with(files, workers, extra, Stdio::piped());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "workers {workers}: {stderr}");
    let stats = stderr.lines().next().expect("--stats line");
    let lines = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(String::from)
        .collect();
    (lines, serde_json::from_str(stats).expect("stats JSON"))
}

/// The records with each `flow_uid` replaced by the identity of its flow record, and
/// each flow's RST events in output order (flow identity → (timestamp, seq) list).
type PerFlow = BTreeMap<String, Vec<(i64, u32)>>;

fn canonical(lines: &[String]) -> (Vec<String>, PerFlow) {
    let records: Vec<Record> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let mut flows = BTreeMap::new();
    for r in &records {
        if let Record::Flow(f) = r {
            let id = format!(
                "{}:{}>{}:{}@{}",
                f.orig_h, f.orig_p, f.resp_h, f.resp_p, f.ts_start_us
            );
            assert!(
                flows.insert(f.flow_uid, id).is_none(),
                "flow uid used twice"
            );
        }
    }
    let name = |uid: u64| match uid {
        0 => "none".to_string(),
        u => flows
            .get(&u)
            .cloned()
            .unwrap_or_else(|| panic!("RST of flow {u} without its flow record")),
    };
    let mut order = PerFlow::new();
    let mut out = Vec::new();
    for r in records {
        if matches!(r, Record::Anomaly(_)) {
            continue;
        }
        let mut v = match &r {
            Record::Rst(e) => {
                order
                    .entry(name(e.flow_uid))
                    .or_default()
                    .push((e.ts_us, e.seq));
                serde_json::to_value(&r).unwrap()
            }
            _ => serde_json::to_value(&r).unwrap(),
        };
        if let Some(uid) = v.get("flow_uid").and_then(|u| u.as_u64()) {
            v["flow_uid"] = name(uid).into();
        }
        out.push(v.to_string());
    }
    out.sort();
    (out, order)
}

/// A `gen` capture of `scenario` in `dir` (the other CLI tests use it too).
pub(crate) fn gen(dir: &Path, scenario: &str, flows: &str, seed: &str) -> std::path::PathBuf {
    gen_wrapped(dir, scenario, flows, seed, None)
}

/// A `gen` capture, every frame wrapped in `encap` when given.
fn gen_wrapped(
    dir: &Path,
    scenario: &str,
    flows: &str,
    seed: &str,
    encap: Option<&str>,
) -> std::path::PathBuf {
    let out = dir.join(format!(
        "{scenario}-{seed}-{}.pcap",
        encap.unwrap_or("plain")
    ));
    let st = sensor()
        .args([
            "gen",
            "--scenario",
            scenario,
            "--flows",
            flows,
            "--seed",
            seed,
            "--out",
        ])
        .arg(&out)
        .args(encap.map(|e| ["--encap", e]).into_iter().flatten())
        .output()
        .expect("run gen");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

fn assert_same(files: &[&Path], workers: u16) {
    assert_same_with(files, workers, &[]);
}

/// [`assert_same`], both runs with `extra` options (which must apply to one engine
/// too: `--file-access` shows in the counters, as `files_mapped`).
fn assert_same_with(files: &[&Path], workers: u16, extra: &[&str]) {
    let (one, one_stats) = replay_with(files, 1, extra);
    let (many, many_stats) = replay_with(files, workers, extra);
    assert!(one.len() > 1000, "too small a test: {} records", one.len());
    let (a, one_order) = canonical(&one);
    let (b, many_order) = canonical(&many);
    assert!(
        one_order.len() > 100,
        "too few flows with RSTs: {}",
        one_order.len()
    );
    assert_eq!(
        many_order, one_order,
        "per-flow RST order, {workers} workers"
    );
    let differ: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).take(3).collect();
    assert!(
        a == b,
        "{workers} workers: {} vs {} records; first differences {differ:#?}",
        a.len(),
        b.len()
    );
    assert_eq!(many_stats, one_stats, "counters, {workers} workers");
}

/// Background flows with resets of every kind of flow-local evidence.
#[test]
fn workers_give_the_records_of_one_engine() {
    let dir = tempfile::tempdir().unwrap();
    let abort = gen(dir.path(), "abort", "3000", "1");
    let storm = gen(dir.path(), "storm", "3000", "2");
    for workers in [2, 3] {
        assert_same(&[&abort, &storm], workers);
    }
}

/// A capture large enough to be mapped (over 16 MiB: more than one of the workers'
/// 16 MiB windows), read (the default) and mapped: the workers read their frames from
/// read buffers or windows the reader has already left, and still give the records
/// of one engine (which reads the file); so does the same capture as pcapng, whose
/// blocks are read in place too, and its records are the pcap's.
#[test]
fn workers_over_a_large_capture_read_or_mapped_give_the_records_of_one_engine() {
    let dir = tempfile::tempdir().unwrap();
    let storm = gen(dir.path(), "storm", "4000", "5");
    let size = std::fs::metadata(&storm).unwrap().len();
    assert!(size > 16 << 20, "{size} bytes: too small to be mapped");
    let ng = dir.path().join("storm.pcapng");
    as_pcapng(&storm, &ng);
    for access in [&[][..], &["--file-access", "map"][..]] {
        assert_same_with(&[&storm], 2, access);
        assert_same_with(&[&ng], 2, access);
    }
    assert_eq!(
        canonical(&replay(&[&ng], 1).0),
        canonical(&replay(&[&storm], 1).0)
    );
}

/// Tunnelled frames (whose flow key the reader finds by the full parse, not from the
/// headers alone): still one engine's records. (Not `mixed`: its causes rest on other
/// flows, e.g. a client's parallel connection, which another engine may hold.)
#[test]
fn tunnelled_flows_give_the_records_of_one_engine() {
    let dir = tempfile::tempdir().unwrap();
    let vxlan = gen_wrapped(dir.path(), "storm", "2000", "3", Some("vxlan"));
    let erspan = gen_wrapped(dir.path(), "abort", "2000", "4", Some("erspan2"));
    assert_same(&[&vxlan, &erspan], 2);
}

/// The first line of stderr (the `--stats` counters) apart, the rest of it.
fn messages(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.starts_with('{'))
        .map(String::from)
        .collect()
}

/// A capture cut inside a record: the same message, exit status, counters and
/// records as with one engine (the frames before the cut, and the next file).
#[test]
fn a_damaged_file_is_reported_as_one_engine_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let whole = gen(dir.path(), "storm", "3000", "6");
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.pcap");
    // Two thirds in: inside some record, past many whole ones.
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let abort = gen(dir.path(), "abort", "3000", "7");
    let files = [cut.as_path(), abort.as_path()];
    let one = run(&files, 1, Stdio::piped());
    let two = run(&files, 2, Stdio::piped());
    assert_eq!(one.status.code(), Some(1));
    assert_eq!(two.status.code(), one.status.code());
    let said = messages(&one.stderr);
    assert!(
        said.iter()
            .any(|l| l.contains("cut.pcap") && l.contains("packet record")),
        "{said:?}"
    );
    assert_eq!(messages(&two.stderr), said);
    let stats = |o: &std::process::Output| -> serde_json::Value {
        let e = String::from_utf8_lossy(&o.stderr);
        serde_json::from_str(e.lines().find(|l| l.starts_with('{')).expect("stats")).unwrap()
    };
    assert_eq!(stats(&two), stats(&one));
    assert_eq!(stats(&one)["files_failed"], 1);
    let lines = |o: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(String::from)
            .collect()
    };
    assert_eq!(canonical(&lines(&two)), canonical(&lines(&one)));
}

/// A full disk is an error named as one engine names it; a reader that goes away
/// (`| head`) ends the replay quietly, without hanging a worker.
#[test]
fn write_failures_end_as_with_one_engine() {
    let dir = tempfile::tempdir().unwrap();
    let storm = gen(dir.path(), "storm", "3000", "8");
    let full = |w| {
        run(
            &[&storm],
            w,
            std::fs::File::create("/dev/full").unwrap().into(),
        )
    };
    let (one, two) = (full(1), full(2));
    assert!(!one.status.success());
    assert_eq!(two.status.code(), one.status.code());
    let said = messages(&one.stderr);
    assert!(
        said.iter().any(|l| l.contains("writing output")),
        "{said:?}"
    );
    assert_eq!(messages(&two.stderr), said);
    for workers in [1, 2] {
        let mut child = sensor()
            .args(["replay", "--no-progress", "--workers", &workers.to_string()])
            .arg(&storm)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut head = [0u8; 4096];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut head).unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "workers {workers}: {:?}", out.status);
        assert_eq!(
            messages(&out.stderr),
            Vec::<String>::new(),
            "workers {workers}"
        );
    }
}

/// `--workers` with `--ship` or `--format table` is refused with the reason, before
/// anything is read or spooled: the ship path runs one engine, and a replay asked for
/// more must not quietly run one.
#[test]
fn workers_refuse_what_they_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let storm = gen(dir.path(), "storm", "300", "8");
    let spool = dir.path().join("spool");
    let ship = [
        "--ship",
        "127.0.0.1:1",
        "--plaintext",
        "--spool-dir",
        spool.to_str().unwrap(),
    ];
    for extra in [&ship[..], &["--format", "table"][..]] {
        let out = sensor()
            .args(["replay", "--no-progress", "--workers", "2"])
            .args(extra)
            .arg(&storm)
            .output()
            .unwrap();
        let said = messages(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {said:?}");
        assert!(
            said.iter()
                .any(|l| l.contains("--workers works with JSON output")),
            "{extra:?}: {said:?}"
        );
        assert!(out.stdout.is_empty(), "{extra:?}");
    }
    assert!(!spool.exists(), "a refused replay spooled");
}

/// `pcap` rewritten as pcapng (one Ethernet interface, nanosecond timestamps: what
/// `pcap-file` writes a timestamp as).
pub(crate) fn as_pcapng(pcap: &Path, out: &Path) {
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;
    let mut r = PcapReader::new(std::fs::File::open(pcap).unwrap()).unwrap();
    let file = std::io::BufWriter::new(std::fs::File::create(out).unwrap());
    let mut w = PcapNgWriter::new(file).unwrap();
    let idb = InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    };
    w.write_pcapng_block(idb).unwrap();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: p.timestamp,
            original_len: p.orig_len,
            data: p.data,
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
    }
    std::io::Write::flush(&mut w.into_inner()).unwrap();
}

/// pcapng (read into shared buffers as a pcap is, its blocks parsed in place) gives
/// what its pcap gives, with one engine and with two.
#[test]
fn pcapng_gives_the_records_of_one_engine() {
    let dir = tempfile::tempdir().unwrap();
    let storm = gen(dir.path(), "storm", "3000", "9");
    let ng = dir.path().join("storm.pcapng");
    as_pcapng(&storm, &ng);
    assert_same(&[&ng], 2);
    let (from_pcap, _) = replay(&[&storm], 2);
    let (from_ng, _) = replay(&[&ng], 2);
    assert_eq!(canonical(&from_ng), canonical(&from_pcap));
}
