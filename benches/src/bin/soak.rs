//! Soak: continuous live capture and shipping while the collector and ClickHouse are
//! killed, restarted and frozen at random intervals; it ends by checking that every
//! record arrived exactly once and that memory stayed flat.
//!
//! ```text
//! sudo target/release/soak --minutes 10          # by hand (root: namespace, XDP)
//! target/debug/soak --seconds 60 --fault-every 15  # the CI smoke (benches/tests)
//! ```
//!
//! Set-up: a real ClickHouse (the collector's test harness), a collector, a network
//! namespace with a veth pair, `rstwatch-sensor run` on the capture side shipping to
//! the collector, and tcpreplay injecting generated captures (a new seed each round,
//! so flows never repeat) into the peer. Faults, one at a time, every `--fault-every`
//! seconds on average: collector `kill -9` + restart, ClickHouse `kill -9` + restart,
//! ClickHouse frozen (SIGSTOP) for 5 s. At the end the sensor is stopped (SIGTERM: it
//! flushes and waits for every acknowledgement) and the run fails unless:
//! - the sensor exits 0 saying "all acknowledged";
//! - `rst_events` holds exactly the RSTs `replay` prints for the injected captures,
//!   and every table holds exactly the rows its ledger rows announce (no loss, no
//!   duplicate), with one ledger row per (sensor, boot, seq);
//! - the collector's and the sensor's RSS in the last third of the run are within
//!   `--rss-slack` (default 25 %) of the first third (memory flat).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rstwatch_collector::testing::{ClickHouse, Collector, TempDir};

/// Soak: live capture and shipping while the collector and ClickHouse are killed, restarted and frozen; checks exactly-once delivery and flat memory.
#[derive(Debug, Parser)]
struct Args {
    /// Run time in minutes (overrides --seconds).
    #[arg(long)]
    minutes: Option<u64>,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Mean seconds between faults.
    #[arg(long, default_value_t = 30)]
    fault_every: u64,
    /// Packets per second injected.
    #[arg(long, default_value_t = 3000)]
    pps: u32,
    /// Background flows per generated capture.
    #[arg(long, default_value_t = 300)]
    flows: u32,
    /// Allowed RSS growth from the first to the last third of the run.
    #[arg(long, default_value_t = 0.25)]
    rss_slack: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory with rstwatch-sensor and rstwatch-collector (default: next to soak).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

const DB: &str = "rstwatch";
const TOKEN: &str = "soak-t0k";

fn main() {
    let a = Args::parse();
    match run(&a) {
        Ok(()) => println!("soak: PASS"),
        Err(e) => {
            eprintln!("soak: FAIL: {e:#}");
            std::process::exit(1);
        }
    }
}

fn bin(a: &Args, name: &str) -> anyhow::Result<PathBuf> {
    let dir = match &a.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("soak has no directory")?
            .to_path_buf(),
    };
    // `target/debug/deps/soak-HASH` (cargo test) or `target/debug/soak`.
    for d in [dir.clone(), dir.join("..")] {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found in {} (build it first)", dir.display())
}

/// xorshift64*, seeded: the fault schedule is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A veth pair: capture side here, peer in a namespace of its own.
struct Veth {
    ns: String,
    cap: String,
    peer: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new("ip").args(args).status()?;
    if !st.success() {
        bail!("ip {} failed", args.join(" "));
    }
    Ok(())
}

impl Veth {
    fn new() -> anyhow::Result<Veth> {
        let id = std::process::id() % 100_000;
        let v = Veth {
            ns: format!("rstw-soak-{id}"),
            cap: format!("rwsc{id}"),
            peer: format!("rwsp{id}"),
        };
        ip(&["netns", "add", &v.ns])?;
        ip(&[
            "link", "add", &v.cap, "type", "veth", "peer", "name", &v.peer, "netns", &v.ns,
        ])?;
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.cap),
            "1",
        );
        ip(&["link", "set", "dev", &v.cap, "up"])?;
        ip(&["-n", &v.ns, "link", "set", "dev", &v.peer, "up"])?;
        Ok(v)
    }

    fn tcpreplay(&self, file: &Path, pps: u32) -> anyhow::Result<()> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "tcpreplay",
                "-q",
                "-i",
                &self.peer,
            ])
            .arg(format!("--pps={pps}"))
            .arg(file)
            .output()?;
        if !out.status.success() {
            bail!("tcpreplay: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.cap])
            .stderr(Stdio::null())
            .status();
    }
}

/// Resident memory of a process, bytes (0 when gone).
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Generates the capture of one round and counts the RSTs `replay` prints for it.
fn round_capture(
    sensor: &Path,
    dir: &Path,
    seed: u64,
    flows: u32,
) -> anyhow::Result<(PathBuf, u64)> {
    let pcap = dir.join(format!("round-{seed}.pcap"));
    let st = Command::new(sensor)
        .args(["gen", "--scenario", "mixed", "--seed", &seed.to_string()])
        .args(["--flows", &flows.to_string(), "--out"])
        .arg(&pcap)
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("gen failed");
    }
    let out = Command::new(sensor)
        .args(["replay", "--only", "rst"])
        .arg(&pcap)
        .output()?;
    let rsts = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    Ok((pcap, rsts as u64))
}

/// One fault, chosen by `r`; returns what it was.
fn inject_fault(r: u64, ch: &mut ClickHouse, col: &mut Collector) -> anyhow::Result<&'static str> {
    Ok(match r % 3 {
        0 => {
            col.restart()?;
            "collector kill -9 + restart"
        }
        1 => {
            ch.restart()?;
            "clickhouse kill -9 + restart"
        }
        _ => {
            let pid = ch.pid().context("clickhouse not running")?.to_string();
            Command::new("kill").args(["-STOP", &pid]).status()?;
            std::thread::sleep(Duration::from_secs(5));
            Command::new("kill").args(["-CONT", &pid]).status()?;
            "clickhouse frozen 5 s"
        }
    })
}

fn start_sensor(sensor: &Path, v: &Veth, addr: &str, dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("sensor.log"))?;
    let child = Command::new(sensor)
        .args(["run", "--iface", &v.cap, "--ship", addr, "--plaintext"])
        .args([
            "--token",
            TOKEN,
            "--sensor-id",
            "soak-1",
            "--retry-max-secs",
            "2",
        ])
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .args(["--stats-interval", "5"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        let text = std::fs::read_to_string(dir.join("sensor.log")).unwrap_or_default();
        if text.contains("capturing on") {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("sensor did not start capturing")
}

fn count(ch: &ClickHouse, sql: &str) -> anyhow::Result<u64> {
    Ok(ch.query_db(DB, sql)?.trim().parse()?)
}

/// Exactly once: every table holds what its ledger rows announce, one ledger row per
/// batch, and the RSTs are those `replay` printed.
fn verify(ch: &ClickHouse, want_rst: u64) -> anyhow::Result<u64> {
    let rst = count(ch, "SELECT count() FROM rst_events")?;
    for (table, col) in [
        ("rst_events", "rst"),
        ("flows", "flows"),
        ("anomalies", "anomalies"),
        ("sensor_stats", "stats"),
    ] {
        let rows = count(ch, &format!("SELECT count() FROM {table}"))?;
        let ledger = count(ch, &format!("SELECT sum({col}) FROM batches"))?;
        if rows != ledger {
            bail!("{table}: {rows} rows, the ledger announces {ledger}");
        }
    }
    let ledger = count(ch, "SELECT count() FROM batches")?;
    let keys = count(ch, "SELECT uniqExact(sensor_id, boot_id, seq) FROM batches")?;
    if ledger != keys {
        bail!("ledger: {ledger} rows for {keys} batches");
    }
    if rst != want_rst {
        bail!("rst_events: {rst} rows, replay printed {want_rst} RSTs");
    }
    Ok(rst)
}

/// Median of the first and last third of `samples`.
fn thirds(samples: &[u64]) -> (u64, u64) {
    let n = samples.len().max(3) / 3;
    let med = |s: &[u64]| {
        let mut v = s.to_vec();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    (
        med(&samples[..n.min(samples.len())]),
        med(&samples[samples.len().saturating_sub(n)..]),
    )
}

fn run(a: &Args) -> anyhow::Result<()> {
    let secs = a.minutes.map_or(a.seconds, |m| m * 60);
    let (sensor_bin, collector_bin) = (bin(a, "rstwatch-sensor")?, bin(a, "rstwatch-collector")?);
    let dir = TempDir::new("rstwatch-soak")?;
    let mut ch = ClickHouse::start()?.context("clickhouse-server is not installed")?;
    ch.migrate(&collector_bin, DB)?;
    let mut col = Collector::start(
        &collector_bin,
        &ch.url(),
        DB,
        &["--plaintext", "--token", TOKEN],
        &dir.path().join("collector.log"),
    )?;
    let veth = Veth::new()?;
    let mut sensor = start_sensor(&sensor_bin, &veth, &col.addr(), dir.path())?;
    let spid = sensor.id();
    let mut rng = Rng(a.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let mut next_fault = t0 + Duration::from_secs(rng.next() % (2 * a.fault_every.max(1)) + 1);
    let (mut want_rst, mut round, mut faults) = (0u64, 0u64, Vec::new());
    let (mut col_rss, mut sensor_rss) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        let (pcap, n) = round_capture(&sensor_bin, dir.path(), a.seed * 1000 + round, a.flows)?;
        veth.tcpreplay(&pcap, a.pps)?;
        want_rst += n;
        round += 1;
        col_rss.push(col.pid().map_or(0, rss));
        sensor_rss.push(rss(spid));
        if Instant::now() >= next_fault {
            let what = inject_fault(rng.next(), &mut ch, &mut col)?;
            println!("{:>6.1} s: {what}", t0.elapsed().as_secs_f64());
            faults.push(what);
            next_fault =
                Instant::now() + Duration::from_secs(rng.next() % (2 * a.fault_every.max(1)) + 1);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    Command::new("kill")
        .args(["-TERM", &spid.to_string()])
        .status()?;
    let status = sensor.wait()?;
    let log = std::fs::read_to_string(dir.path().join("sensor.log"))?;
    let last = log
        .lines()
        .rev()
        .find(|l| l.contains("shipped"))
        .unwrap_or("")
        .to_string();
    println!("sensor: {status}; {last}");
    if !status.success() || !last.contains("all acknowledged") {
        bail!(
            "sensor did not deliver everything ({status}):\n{}",
            tail(&log, 15)
        );
    }
    let rst = verify(&ch, want_rst)?;
    let ((c0, c1), (s0, s1)) = (thirds(&col_rss), thirds(&sensor_rss));
    println!(
        "soak {secs} s: {round} rounds, {rst} RSTs stored exactly once, {} faults ({}), \
         collector RSS {:.1} -> {:.1} MiB, sensor RSS {:.1} -> {:.1} MiB",
        faults.len(),
        faults.join(", "),
        c0 as f64 / 1048576.0,
        c1 as f64 / 1048576.0,
        s0 as f64 / 1048576.0,
        s1 as f64 / 1048576.0
    );
    for (what, first, last) in [("collector", c0, c1), ("sensor", s0, s1)] {
        if last as f64 > first as f64 * (1.0 + a.rss_slack) + 8.0 * 1048576.0 {
            bail!("{what} RSS grew from {first} to {last} bytes");
        }
    }
    Ok(())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
