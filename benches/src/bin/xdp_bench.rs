//! Live-capture benchmark: on a veth pair in a fresh network namespace, offers traffic
//! (`xdp_gen`, a PACKET_MMAP TX ring looping a capture) at a series of rates to the raw
//! AF_XDP receive-and-drop baseline (`xdp_drop`) and to `rstwatch-sensor run`, one
//! after the other on the same interface, and prints a Markdown table: received pps,
//! loss, the kernel's XDP_STATISTICS drop counters and CPU per packet for each. With
//! `--touching-baseline`, also `xdp_drop --touch` (each frame's header line read), so
//! the sensor's CPU per packet can be set against a receiver that reads its frames.
//!
//! ```text
//! cargo build --release -p rstwatch-benches -p rstwatch-sensor
//! rstwatch-sensor gen --scenario mixed --out /tmp/mixed.pcap
//! sudo target/release/xdp_bench --pcap /tmp/mixed.pcap --rates 100000,200000,400000,0
//! ```
//! Rate 0 means "as fast as the generator goes". Needs root (namespaces, XDP).

#[path = "../xdp_common.rs"]
mod xdp_common;

use anyhow::{bail, Context};
use clap::Parser;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Live-capture benchmark: the sensor against a raw AF_XDP receive loop on a veth pair in a fresh namespace, at a series of offered rates.
#[derive(Parser)]
struct Args {
    /// Capture file to offer, looped.
    #[arg(long)]
    pcap: PathBuf,
    /// Offered rates in packets per second, comma-separated (0: generator's maximum).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000,200000,300000,400000,0"
    )]
    rates: Vec<u64>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// XDP mode for both receivers.
    #[arg(long, default_value = "native")]
    mode: String,
    /// Core of the generator (the veth's receive path runs there too, in softirq).
    #[arg(long, default_value_t = 0)]
    gen_core: usize,
    /// Core of the receiving thread (baseline and sensor).
    #[arg(long, default_value_t = 1)]
    rx_core: usize,
    /// Directory holding xdp_gen, xdp_drop and rstwatch-sensor (default: this program's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also run the baseline reading each frame's header line (`xdp_drop --touch`).
    #[arg(long)]
    touching_baseline: bool,
    /// Extra arguments for `rstwatch-sensor run`, space-separated (e.g. "--fanout 1").
    #[arg(long, default_value = "")]
    sensor_args: String,
    /// Wake-up coalescing for both receivers, microseconds (0: off).
    #[arg(long, default_value_t = 50)]
    coalesce_us: u32,
    /// Run receivers (SCHED_FIFO 50) and generator (SCHED_FIFO 40) with real-time
    /// priority through chrt(1), standing in for isolated cores on a shared machine
    /// (0: normal scheduling).
    #[arg(long, default_value_t = 1)]
    rt: u8,
}

/// A command, under `chrt -f PRIO` when asked.
fn cmd(program: PathBuf, rt_prio: Option<u8>) -> Command {
    match rt_prio {
        Some(p) => {
            let mut c = Command::new("chrt");
            c.args(["-f", &p.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

struct Net {
    ns: String,
    host: String,
    peer: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let o = Command::new("ip").args(args).output().context("run ip")?;
    if !o.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

impl Net {
    fn new() -> anyhow::Result<Net> {
        let id = std::process::id() % 100_000;
        let n = Net {
            ns: format!("rstw-bench-{id}"),
            host: format!("rwbc{id}"),
            peer: format!("rwbp{id}"),
        };
        ip(&["netns", "add", &n.ns])?;
        ip(&[
            "link", "add", &n.host, "type", "veth", "peer", "name", &n.peer, "netns", &n.ns,
        ])?;
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", n.host),
            "1",
        );
        {
            // From inside the namespace: /proc/sys/net is per namespace.
            let (ns, knob) = (
                n.ns.clone(),
                format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", n.peer),
            );
            let _ = std::thread::spawn(move || {
                if xdp_common::enter_netns(&ns).is_ok() {
                    let _ = std::fs::write(knob, "1");
                }
            })
            .join();
        }
        ip(&["link", "set", "dev", &n.host, "up"])?;
        ip(&["-n", &n.ns, "link", "set", "dev", &n.peer, "up"])?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(n)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[derive(Debug, Default, Clone)]
struct Row {
    receiver: &'static str,
    offered: u64,
    sent: u64,
    gen_secs: f64,
    rx: u64,
    dropped: u64,
    ring_full: u64,
    fill_empty: u64,
    /// CPU seconds the receiver process used while the generator ran.
    cpu_s: f64,
    /// The same by thread name, nanoseconds.
    threads: Vec<(String, u64)>,
}

impl Row {
    fn pps(&self) -> f64 {
        self.rx as f64 / self.gen_secs.max(1e-9)
    }
    fn loss(&self) -> u64 {
        self.sent.saturating_sub(self.rx)
    }
    fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu_s / self.gen_secs.max(1e-9)
    }
    fn ns_per_pkt(&self) -> f64 {
        if self.rx == 0 {
            0.0
        } else {
            self.cpu_s * 1e9 / self.rx as f64
        }
    }
}

/// Time on a CPU of each of a process's threads: the scheduler's own count
/// (`/proc/PID/task/*/schedstat`, nanoseconds). It agrees with `utime + stime` of
/// `/proc/PID/stat` (2.072 against 2.070 s and 2.740 against 2.730 s in one run,
/// 2026-12-01), which the kernel scales to the same runtime; a `perf record -F 2000`
/// profile gave the raw loop a sixth of that, sampling its 50 µs bursts poorly.
/// Kept by thread name (`comm`; threads of one name, such as several fan-out workers,
/// added up), nanoseconds.
fn cpu_by_thread(pid: u32) -> Vec<(String, u64)> {
    let mut by: Vec<(String, u64)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by;
    };
    for t in tasks.flatten() {
        let read = |f: &str| std::fs::read_to_string(t.path().join(f)).ok();
        let (Some(stat), Some(name)) = (read("schedstat"), read("comm")) else {
            continue;
        };
        let Some(ns) = stat.split_whitespace().next().and_then(|v| v.parse().ok()) else {
            continue;
        };
        let name = name.trim().to_string();
        match by.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum += ns,
            None => by.push((name, ns)),
        }
    }
    by
}

/// Each thread's CPU time between two [`cpu_by_thread`] readings, nanoseconds.
fn thread_deltas(before: &[(String, u64)], after: Vec<(String, u64)>) -> Vec<(String, u64)> {
    after
        .into_iter()
        .map(|(n, ns)| {
            let was = before.iter().find(|(b, _)| *b == n).map_or(0, |(_, v)| *v);
            (n, ns.saturating_sub(was))
        })
        .collect()
}

fn field(line: &str, key: &str) -> u64 {
    line.split(|c: char| c.is_whitespace() || c == ';')
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Starts a receiver and waits for its "capturing" line on stderr.
fn start(mut cmd: Command) -> anyhow::Result<(Child, std::thread::JoinHandle<String>)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start receiver")?;
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let mut all = String::new();
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if l.contains("capturing on") {
                let _ = tx.send(());
            }
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.recv_timeout(Duration::from_millis(50)).is_err() {
        if child.try_wait()?.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("receiver did not start:\n{}", h.join().unwrap_or_default());
        }
    }
    Ok((child, h))
}

fn stop(mut child: Child) -> anyhow::Result<String> {
    // SAFETY: signalling our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out)?;
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("receiver exited with {st}");
    }
    Ok(out)
}

fn generate(bin: &Path, net: &Net, a: &Args, rate: u64) -> anyhow::Result<(u64, f64)> {
    let o = cmd(bin.join("xdp_gen"), (a.rt != 0).then_some(40))
        .args(["--netns", &net.ns, "--iface", &net.peer, "--pcap"])
        .arg(&a.pcap)
        .args([
            "--rate",
            &rate.to_string(),
            "--duration",
            &a.duration.to_string(),
        ])
        .args(["--core", &a.gen_core.to_string()])
        .output()
        .context("run xdp_gen")?;
    if !o.status.success() {
        bail!("xdp_gen: {}", String::from_utf8_lossy(&o.stderr));
    }
    let s = String::from_utf8_lossy(&o.stdout);
    let secs = s
        .split_whitespace()
        .find_map(|w| w.strip_prefix("secs="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(a.duration);
    Ok((field(&s, "sent"), secs))
}

/// The receivers measured, in the order they run at each rate.
#[derive(Clone, Copy, PartialEq)]
enum Receiver {
    /// `xdp_drop`: frames returned untouched.
    Baseline,
    /// `xdp_drop --touch`: each frame's header line read.
    Touching,
    /// `rstwatch-sensor run`.
    Sensor,
}

impl Receiver {
    fn name(self) -> &'static str {
        match self {
            Receiver::Baseline => "baseline",
            Receiver::Touching => "touching",
            Receiver::Sensor => "sensor",
        }
    }
}

fn measure(bin: &Path, net: &Net, a: &Args, who: Receiver, rate: u64) -> anyhow::Result<Row> {
    let sensor = who == Receiver::Sensor;
    let mut row = Row {
        receiver: who.name(),
        offered: rate,
        ..Default::default()
    };
    let (child, err) = if sensor {
        let mut c = cmd(bin.join("rstwatch-sensor"), (a.rt != 0).then_some(50));
        c.args([
            "run",
            "--iface",
            &net.host,
            "--mode",
            &a.mode,
            "--stats-interval",
            "0",
        ])
        .args(["--cores", &a.rx_core.to_string()])
        .args(["--coalesce-us", &a.coalesce_us.to_string()])
        .args(a.sensor_args.split_whitespace())
        .stdout(Stdio::null());
        start(c)?
    } else {
        let mut c = cmd(bin.join("xdp_drop"), (a.rt != 0).then_some(50));
        c.args([
            "--iface",
            &net.host,
            "--mode",
            &a.mode,
            "--core",
            &a.rx_core.to_string(),
        ])
        .args(["--coalesce-us", &a.coalesce_us.to_string()])
        .stdout(Stdio::piped());
        if who == Receiver::Touching {
            c.arg("--touch");
        }
        start(c)?
    };
    let pid = child.id();
    let threads0 = cpu_by_thread(pid);
    let (sent, secs) = generate(bin, net, a, rate)?;
    row.threads = thread_deltas(&threads0, cpu_by_thread(pid));
    row.cpu_s = row.threads.iter().map(|(_, ns)| *ns).sum::<u64>() as f64 / 1e9;
    row.sent = sent;
    row.gen_secs = secs;
    std::thread::sleep(Duration::from_millis(500));
    let out = stop(child)?;
    let err = err.join().unwrap_or_default();
    let line = if sensor {
        err.lines()
            .rev()
            .find(|l| l.contains("final: stats"))
            .unwrap_or("")
            .to_string()
    } else {
        out
    };
    row.rx = field(&line, "rx");
    row.dropped = field(&line, "dropped");
    row.ring_full = field(&line, "ring_full");
    row.fill_empty = field(&line, "fill_empty");
    Ok(row)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let bin = match &a.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .context("no directory of this program")?,
    };
    for b in ["xdp_gen", "xdp_drop", "rstwatch-sensor"] {
        if !bin.join(b).exists() {
            bail!(
                "{} missing: cargo build --release -p rstwatch-benches -p rstwatch-sensor",
                bin.join(b).display()
            );
        }
    }
    let frames = xdp_common::load_frames(&a.pcap)?;
    let avg = frames.iter().map(|f| f.len()).sum::<usize>() as f64 / frames.len() as f64;
    let net = Net::new()?;
    eprintln!(
        "xdp_bench: {} ({} frames, {avg:.0} bytes on average), {} s per point, {} XDP, generator on core {}, receiver on core {}{}",
        a.pcap.display(),
        frames.len(),
        a.duration,
        a.mode,
        a.gen_core,
        a.rx_core,
        if a.rt != 0 { ", SCHED_FIFO" } else { "" }
    );
    let mut rows = Vec::new();
    let mut receivers = vec![Receiver::Baseline];
    if a.touching_baseline {
        receivers.push(Receiver::Touching);
    }
    receivers.push(Receiver::Sensor);
    for &rate in &a.rates {
        for &who in &receivers {
            let r = measure(&bin, &net, &a, who, rate)?;
            eprintln!(
                "  {:8} offered {:>9} sent {:>9} rx {:>9} ({:>9.0} pps) loss {} dropped {} ring_full {} fill_empty {} cpu {:.0}% {:.0} ns/pkt",
                r.receiver,
                offered(rate),
                r.sent,
                r.rx,
                r.pps(),
                r.loss(),
                r.dropped,
                r.ring_full,
                r.fill_empty,
                r.cpu_pct(),
                r.ns_per_pkt()
            );
            if r.rx > 0 {
                let each: Vec<String> = r
                    .threads
                    .iter()
                    .filter(|(_, ns)| *ns > 0)
                    .map(|(n, ns)| format!("{n} {:.0}", *ns as f64 / r.rx as f64))
                    .collect();
                eprintln!("           ns/pkt by thread: {}", each.join(", "));
            }
            rows.push(r);
        }
    }
    println!("| receiver | offered pps | sent | received | received pps | lost | rx_dropped | rx_ring_full | fill_ring_empty | receiver CPU | CPU ns/pkt |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {:.0}% | {:.0} |",
            r.receiver,
            offered(r.offered),
            r.sent,
            r.rx,
            r.pps(),
            r.loss(),
            r.dropped,
            r.ring_full,
            r.fill_empty,
            r.cpu_pct(),
            r.ns_per_pkt()
        );
    }
    let best = |who: &str| {
        rows.iter()
            .filter(|r| r.receiver == who && r.loss() == 0)
            .max_by(|x, y| x.pps().total_cmp(&y.pps()))
            .cloned()
    };
    let top = |who: &str| {
        rows.iter()
            .filter(|r| r.receiver == who)
            .map(Row::pps)
            .fold(0.0, f64::max)
    };
    println!();
    for who in receivers.iter().map(|r| r.name()) {
        match best(who) {
            Some(r) => println!(
                "- {who}: highest zero-loss point {:.0} pps (offered {}), peak {:.0} pps",
                r.pps(),
                if r.offered == 0 {
                    "max".into()
                } else {
                    r.offered.to_string()
                },
                top(who)
            ),
            None => println!("- {who}: no zero-loss point; peak {:.0} pps", top(who)),
        }
    }
    let (b, s) = (top("baseline"), top("sensor"));
    if b > 0.0 {
        println!("- sensor / baseline at peak: {:.2}", s / b);
    }
    print_cpu_ratios(&rows, &a.rates, &receivers);
    Ok(())
}

/// At each rate, the sensor's CPU per packet over each baseline's.
fn print_cpu_ratios(rows: &[Row], rates: &[u64], receivers: &[Receiver]) {
    for &rate in rates {
        let at = |who: Receiver| {
            rows.iter()
                .find(|r| r.offered == rate && r.receiver == who.name())
                .map(Row::ns_per_pkt)
                .filter(|&ns| ns > 0.0)
        };
        let Some(sensor) = at(Receiver::Sensor) else {
            continue;
        };
        let ratios: Vec<String> = receivers
            .iter()
            .filter(|&&r| r != Receiver::Sensor)
            .filter_map(|&r| at(r).map(|ns| format!("{:.2} over {}", sensor / ns, r.name())))
            .collect();
        println!(
            "- CPU per packet at {}: sensor {sensor:.0} ns, {}",
            offered(rate),
            ratios.join(", ")
        );
    }
}

/// An offered rate as the tables show it: packets per second, or "max" for 0.
fn offered(rate: u64) -> String {
    if rate == 0 {
        "max".to_string()
    } else {
        rate.to_string()
    }
}
