//! Shipping and storage benchmark: RST events per second from sensor batches into a
//! local ClickHouse (ShipSink → framed TCP → collector → ClickHouse, every batch
//! acknowledged), against the same rows bulk-inserted with `clickhouse-client` in the
//! same run; and bytes per RST event on the wire against the same events as JSON lines.
//!
//! Starts its own clickhouse-server (temp dir, loopback port) and collector. Build the
//! release binaries first: `cargo build --release -p rstwatch-collector -p rstwatch-benches`
//! then `target/release/collector_ingest --events 2000000`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use rstwatch_collector::testing::{cpu_seconds, ClickHouse, Collector, TempDir};
use rstwatch_schema::frame::Codec;
use rstwatch_schema::{Dir, IpBytes, Record, RstClass, RstEvent, RstFlags};
use rstwatch_sensor::ship::{ShipArgs, ShipSink};
use rstwatch_sensor::Sink;

/// Shipping and storage benchmark: RST events per second from sensor batches into a local ClickHouse, against a bulk insert.
#[derive(Debug, Parser)]
struct Args {
    /// RST events per run.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 16_384)]
    batch: usize,
    /// Wire compression.
    #[arg(long, default_value = "zstd")]
    compression: Codec,
    /// Batches of the connection the collector writes at once.
    #[arg(long, default_value_t = 2)]
    store_concurrency: usize,
    /// Runs of the shipped path (the median is reported).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The collector binary (default: next to this one).
    #[arg(long)]
    collector: Option<PathBuf>,
}

/// A plausible RST mix: a few hundred servers, many clients, one capture hour.
fn event(i: u64) -> RstEvent {
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let server = IpBytes::from_v4([192, 0, 2, (h % 200) as u8 + 1]);
    let client = if h.is_multiple_of(10) {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        b[8..].copy_from_slice(&h.to_be_bytes());
        IpBytes(b)
    } else {
        IpBytes::from_v4([198, 51, 100, ((h >> 8) % 250) as u8 + 1])
    };
    let from_server = !h.is_multiple_of(3);
    let (src, dst, sport, dport) = if from_server {
        (server, client, 443, 32_768 + (h >> 16) as u16 % 28_000)
    } else {
        (client, server, 32_768 + (h >> 16) as u16 % 28_000, 443)
    };
    RstEvent {
        ts_us: 1_763_700_000_000_000 + (i as i64) * 1_800 + (h % 1000) as i64,
        src,
        sport,
        dst,
        dport,
        vlan: 0,
        inner_vlan: 0,
        dir: if from_server { Dir::Resp } else { Dir::Orig },
        class: RstClass::ALL[(h >> 20) as usize % 4],
        flags: RstFlags(1 << ((h >> 24) % 3)),
        suspect: h.is_multiple_of(997),
        seq: (h >> 32) as u32,
        ack: (h >> 7) as u32,
        ack_flag: h.is_multiple_of(2),
        ttl: if from_server { 64 } else { 128 },
        ip_id: (h >> 40) as u16,
        payload_len: 0,
        flow_uid: i,
        ..RstEvent::new(
            0,
            (IpBytes::default(), 0),
            (IpBytes::default(), 0),
            Dir::Orig,
            RstClass::Abort,
        )
    }
}

/// The same rows as the collector writes, in RowBinary (column order of rst_events).
fn row_binary(events: &[RstEvent], out: &mut Vec<u8>) {
    for e in events {
        let ts = (e.ts_us.div_euclid(1_000_000)) as u32;
        out.extend_from_slice(&ts.to_le_bytes());
        out.extend_from_slice(&e.ts_us.to_le_bytes());
        let sensor = b"bench";
        out.push(sensor.len() as u8);
        out.extend_from_slice(sensor);
        out.extend_from_slice(&1u64.to_le_bytes()); // boot_id
        out.extend_from_slice(&0u64.to_le_bytes()); // batch_seq
        out.extend_from_slice(&e.src.0);
        out.extend_from_slice(&e.sport.to_le_bytes());
        out.extend_from_slice(&e.dst.0);
        out.extend_from_slice(&e.dport.to_le_bytes());
        out.extend_from_slice(&e.vlan.to_le_bytes());
        out.extend_from_slice(&e.inner_vlan.to_le_bytes());
        out.push(e.dir.code());
        out.push(e.class.code());
        out.extend_from_slice(&e.flags.0.to_le_bytes());
        out.push(e.suspect as u8);
        out.extend_from_slice(&e.seq.to_le_bytes());
        out.extend_from_slice(&e.ack.to_le_bytes());
        out.push(e.ack_flag as u8);
        out.push(e.ttl);
        out.extend_from_slice(&e.ip_id.to_le_bytes());
        out.extend_from_slice(&e.payload_len.to_le_bytes());
        out.extend_from_slice(&e.flow_uid.to_le_bytes());
    }
}

/// CPU seconds of this process (the sensor side: batcher, sender, the loop feeding it).
fn self_cpu() -> f64 {
    rusage(libc::RUSAGE_SELF)
}

/// CPU seconds of waited-for children (clickhouse-client).
fn children_cpu() -> f64 {
    rusage(libc::RUSAGE_CHILDREN)
}

fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the struct we pass; all-zero is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage for the call to fill.
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn count(ch: &ClickHouse, db: &str) -> anyhow::Result<u64> {
    Ok(ch
        .query_db(db, "SELECT count() FROM rst_events")?
        .trim()
        .parse()?)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let collector = a.collector.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .expect("current exe")
            .with_file_name("rstwatch-collector")
    });
    if !collector.exists() {
        bail!(
            "{} not found: cargo build --release -p rstwatch-collector",
            collector.display()
        );
    }
    let ch = ClickHouse::start()?.context("clickhouse-server is not installed")?;
    let version = ch.query("SELECT version()")?.trim().to_string();
    let migrate = |db: &str| -> anyhow::Result<()> {
        let out = Command::new(&collector)
            .args(["migrate", "--clickhouse-url", &ch.url(), "--database", db])
            .output()?;
        if !out.status.success() {
            bail!("migrate: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let n = a.events;
    eprintln!("generating {n} RST events");
    let events: Vec<RstEvent> = (0..n).map(event).collect();

    // JSON lines: the offline contract's form of the same events.
    let mut json_bytes = 0u64;
    for e in &events {
        json_bytes += serde_json::to_vec(&Record::Rst(e.clone()))?.len() as u64 + 1;
    }
    let mut rb = Vec::with_capacity(events.len() * 96);
    row_binary(&events, &mut rb);
    let dir = TempDir::new("rstwatch-bench")?;
    let col = Collector::start(
        &collector,
        &ch.url(),
        "ship0",
        &[
            "--plaintext",
            "--no-auth",
            "--migrate",
            "--store-concurrency",
            &a.store_concurrency.to_string(),
        ],
        &dir.path().join("collector.log"),
    )?;
    println!(
        "ClickHouse {version}, {n} RST events, batches of {}, {}, store concurrency {}",
        a.batch,
        a.compression.as_str(),
        a.store_concurrency
    );
    // Background merges of one phase must not run into the next one's time.
    let settle = || {
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        while Instant::now() < deadline {
            let busy = ch
                .query("SELECT count() FROM system.merges")
                .map(|s| s.trim() != "0")
                .unwrap_or(false);
            if !busy {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let ch_pid = ch.pid().context("server pid")?;
    let col_pid = col.pid().context("collector pid")?;
    let ch_cpu = || cpu_seconds(ch_pid);
    let col_cpu = || cpu_seconds(col_pid);
    let mut cpu_ratios = Vec::new();
    let mut cpu_per_m = Vec::new();
    let mut ratios = Vec::new();
    let mut rates = Vec::new();
    let mut wire = 0.0;
    let mut raw = 0.0;
    for run in 0..a.runs.max(1) {
        // Baseline: the same rows bulk-inserted with clickhouse-client (RowBinary, one
        // INSERT; the client parses and sends Native blocks), into a fresh database.
        let bulk_db = format!("bulk{run}");
        migrate(&bulk_db)?;
        settle();
        let ch_cpu0 = ch_cpu();
        let kids0 = children_cpu();
        let t0 = Instant::now();
        let mut child = Command::new("clickhouse-client")
            .args(["--port", &ch.tcp_port.to_string(), "--database", &bulk_db])
            .args(["--query", "INSERT INTO rst_events FORMAT RowBinary"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("clickhouse-client")?;
        child.stdin.take().expect("stdin").write_all(&rb)?;
        let st = child.wait()?;
        let bulk_s = t0.elapsed().as_secs_f64();
        let bulk_cpu = ch_cpu() - ch_cpu0 + children_cpu() - kids0;
        if !st.success() {
            bail!("clickhouse-client failed");
        }
        let bulk_rows = count(&ch, &bulk_db)?;
        if bulk_rows != n {
            bail!("bulk insert stored {bulk_rows} rows, expected {n}");
        }

        // The product path: ShipSink → collector → ClickHouse, all acknowledged. Each
        // run is a new sensor id, so rows are new and counted per sensor.
        let sensor = format!("bench{run}");
        let args = ShipArgs {
            ship: Some(col.addr()),
            plaintext: true,
            spool_dir: dir.path().join(format!("spool{run}")),
            sensor_id: Some(sensor.clone()),
            batch_max_events: a.batch,
            batch_max_bytes: 64 << 20,
            compression: a.compression,
            ship_timeout_secs: 600,
            ..ShipArgs::default()
        };
        let batch = events.clone();
        settle();
        let (c0, k0, s0) = (ch_cpu(), col_cpu(), self_cpu());
        let cpu0 = c0 + k0 + s0;
        let t0 = Instant::now();
        let mut sink = ShipSink::start(&args)?;
        for e in batch {
            sink.rst(e);
        }
        let report = sink.finish()?;
        let ship_s = t0.elapsed().as_secs_f64();
        let ship_cpu = ch_cpu() + col_cpu() + self_cpu() - cpu0;
        println!(
            "run {run}: shipped-path CPU s: clickhouse-server {:.2}, collector {:.2}, sensor side {:.2}",
            ch_cpu() - c0,
            col_cpu() - k0,
            self_cpu() - s0
        );
        let shipped_rows: u64 = ch
            .query_db(
                "ship0",
                &format!("SELECT count() FROM rst_events WHERE sensor_id = '{sensor}'"),
            )?
            .trim()
            .parse()?;
        if shipped_rows != n || report.events_acked != n {
            bail!(
                "collector stored {shipped_rows} rows, acked {}, expected {n}",
                report.events_acked
            );
        }
        let bulk_eps = n as f64 / bulk_s;
        let ship_eps = n as f64 / ship_s;
        wire = report.wire_bytes as f64 / n as f64;
        raw = report.raw_bytes as f64 / n as f64;
        println!(
            "run {run}: clickhouse-client bulk {bulk_s:.2} s ({bulk_eps:.0}/s, {bulk_cpu:.2} CPU s); \
             shipped and acked {ship_s:.2} s ({ship_eps:.0}/s, {ship_cpu:.2} CPU s, {} batches); \
             ratio {:.2}, CPU ratio {:.2}",
            report.batches_acked,
            ship_eps / bulk_eps,
            bulk_cpu / ship_cpu
        );
        cpu_ratios.push(bulk_cpu / ship_cpu);
        cpu_per_m.push(ship_cpu / (n as f64 / 1e6));
        ratios.push(ship_eps / bulk_eps);
        rates.push(ship_eps);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "median: shipped {:.0} events/s, ratio shipped/bulk {:.2} (min {:.2}, max {:.2})",
        median(&mut rates),
        median(&mut ratios),
        ratios.first().copied().unwrap_or(0.0),
        ratios.last().copied().unwrap_or(0.0)
    );
    println!(
        "median CPU: shipped path {:.2} CPU s per million events (server + collector + sensor); \
         CPU-normalised ratio shipped/bulk {:.2}",
        median(&mut cpu_per_m),
        median(&mut cpu_ratios)
    );
    println!(
        "wire bytes per RST event: {wire:.1} (archived rkyv {raw:.1}, JSON lines {:.1})",
        json_bytes as f64 / n as f64
    );
    Ok(())
}
