//! Generated captures read cleanly by tshark (checksums verified, nothing malformed),
//! tshark counts the same RSTs and the same frames that are not TCP as the labels, and
//! the `gen` command line works end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

use rstwatch_sensor::gen::{generate, write_pcap, GenOptions, Scenario};

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rstwatch-gen-{}-{name}", std::process::id()))
}

fn tshark() -> Option<&'static str> {
    let path = "/usr/bin/tshark";
    if Path::new(path).exists() {
        Some(path)
    } else {
        None
    }
}

/// Runs tshark on `file` and returns its stdout lines; fails on a non-zero exit or on
/// anything on stderr other than the "running as root" notice.
fn run_tshark(bin: &str, file: &Path, filter: &str) -> Vec<String> {
    let out = Command::new(bin)
        .arg("-r")
        .arg(file)
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .expect("running tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Running as user"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "tshark on {}: {}: {stderr}",
        file.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn tshark_reads_every_scenario_cleanly() {
    let Some(bin) = tshark() else {
        eprintln!("skipping: tshark is not installed at /usr/bin/tshark (apt-get install tshark)");
        return;
    };
    let opts = GenOptions {
        seed: 3,
        flows: 300,
        ..GenOptions::default()
    };
    for &s in Scenario::ALL {
        let g = generate(s, &opts);
        let path = tmp(&format!("{s}.pcap"));
        write_pcap(&path, &g.frames).unwrap();
        let bad = run_tshark(
            bin,
            &path,
            "tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.malformed \
             || _ws.expert.severity == error",
        );
        assert!(bad.is_empty(), "{s}: tshark flags frames {bad:?}");
        let all = run_tshark(bin, &path, "tcp");
        let tcp_frames = g.frames.len() - g.not_ip - g.not_tcp;
        assert_eq!(all.len(), tcp_frames, "{s}: tshark TCP frame count");
        let arp = run_tshark(bin, &path, "arp.isgratuitous");
        assert_eq!(arp.len(), g.not_ip, "{s}: gratuitous ARPs per tshark");
        let other = run_tshark(bin, &path, "vrrp || icmpv6.type == 136");
        assert_eq!(other.len(), g.not_tcp, "{s}: VRRP and NA frames per tshark");
        let rst = run_tshark(bin, &path, "tcp.flags.reset == 1");
        assert_eq!(rst.len(), g.labels.len(), "{s}: RSTs per tshark vs labels");
        std::fs::remove_file(&path).ok();
    }
}

#[test]
fn gen_command_writes_pcap_labels_and_a_summary() {
    let out = tmp("cli.pcap");
    let labels = tmp("cli.jsonl");
    let res = Command::new(env!("CARGO_BIN_EXE_rstwatch-sensor"))
        .args(["gen", "--scenario", "scan", "--seed", "5"])
        .args(["--start-time", "2026-03-01T12:00:00Z"])
        .arg("--out")
        .arg(&out)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let g = generate(
        Scenario::Scan,
        &GenOptions {
            seed: 5,
            start_us: 1_772_366_400_000_000,
            ..GenOptions::default()
        },
    );
    assert!(
        stderr.contains(&format!(
            "{} frames, {} RSTs",
            g.frames.len(),
            g.labels.len()
        )),
        "{stderr}"
    );
    let mut expected = Vec::new();
    write_pcap(&tmp("cli-expected.pcap"), &g.frames).unwrap();
    expected.extend(std::fs::read(tmp("cli-expected.pcap")).unwrap());
    assert_eq!(std::fs::read(&out).unwrap(), expected);
    let lines = std::fs::read_to_string(&labels).unwrap();
    assert_eq!(lines.lines().count(), g.labels.len());
    for (line, l) in lines.lines().zip(&g.labels) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v, l.to_json());
    }
    for p in [out, labels, tmp("cli-expected.pcap")] {
        std::fs::remove_file(p).ok();
    }
}

#[test]
fn gen_command_rejects_bad_input_clearly() {
    let bin = env!("CARGO_BIN_EXE_rstwatch-sensor");
    let res = Command::new(bin)
        .args(["gen", "--scenario", "nope", "--out", "/dev/null"])
        .output()
        .unwrap();
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("unknown scenario"));
    let res = Command::new(bin)
        .args(["gen", "--scenario", "abort", "--out", "/dev/null"])
        .args(["--start-time", "yesterday"])
        .output()
        .unwrap();
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("--start-time"));
    let res = Command::new(bin).args(["gen", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&res.stdout);
    for s in Scenario::ALL {
        assert!(help.contains(s.as_str()) && help.contains(s.description()));
    }
}
