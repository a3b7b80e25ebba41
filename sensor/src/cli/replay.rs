//! `rstwatch-sensor replay`: capture files through the engine, records to stdout.

mod parallel;

use crate::config::{load_engine_config, EngineConfig};
use crate::output::{JsonLines, Select, Table};
use crate::sink::Sink;
use crate::source::{self, FileAccess, Progress};
use crate::Engine;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Read pcap/pcapng files and print RST events, flow records and anomalies.
///
/// Files are read in the order given, through one engine, as if they were one capture
/// (so give them in time order). Output is one JSON object per line on stdout, each
/// with a "type" of "rst", "flow" or "anomaly" (see DESIGN.md, "The offline
/// contract"); RST events are printed after their verdict delay, so they are not
/// strictly in time order.
///
/// A file that cannot be read, or that is cut short or corrupt, is reported on stderr
/// in one line naming the file and the problem; everything read before the problem
/// is still processed and printed, the remaining files are still read, and the exit
/// status is 1.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rstwatch-sensor replay capture.pcap
  rstwatch-sensor replay --only rst capture.pcap | jq 'select(.suspect)'
  rstwatch-sensor replay --format table --stats monday.pcapng tuesday.pcapng")]
pub(super) struct ReplayArgs {
    /// Capture files (pcap or pcapng), in time order; `-` reads standard input (e.g.
    /// `zcat day.pcap.gz | rstwatch-sensor replay -`).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format: JSON lines, or aligned text for people.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// Print only these record types (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "TYPE")]
    pub only: Vec<RecordType>,

    #[command(flatten)]
    pub engine: EngineFlags,

    /// Print the engine's counters (frames, rejections by reason, flows) to stderr
    /// at the end, as JSON.
    #[arg(long)]
    pub stats: bool,

    /// Never show a progress bar (it is shown only when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,

    /// Engines on this many threads (JSON to stdout only: not with --ship or --format
    /// table): one thread reads and parses every frame and hands each flow's packets
    /// to one engine by the symmetric flow hash of live fan-out, and runs engines'
    /// batches itself whenever it is far enough ahead; the others run whichever engine
    /// has work. Given more than N cores (taskset, cgroup quota), N threads run
    /// engines besides the reader's, so the reader has a core of its own. Each engine
    /// writes its own records. Evidence across flows (a server's activity, RST
    /// bursts, anomalies) is then per engine, as in live fan-out. The reader bounds
    /// the gain: reading and parsing took about a third of one engine's CPU on the
    /// benchmark capture, and handing the packets to engines on other cores as much
    /// again, a ceiling of 1.5-3x one engine however many cores. On two cores,
    /// --workers 2 ran 1.36-1.55x one engine on a Zen 3 host and 1.4-1.6x in quiet
    /// runs on a Zen 5 VM, gaining least when one engine is quick (benches/RESULTS.md).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,

    /// How a capture file of 16 MiB or more reaches the parser: `read` (the kernel
    /// copies it into small buffers) or `map` (parsed where the page cache holds it,
    /// no copy, but page faults and page-table walks; the engine requests the next
    /// lines of the file while it works, mapping their pages first). Mapping a pcap
    /// file took a fifth to a quarter less CPU on both hosts measured (kernels copying
    /// at 4-6 and 9-20 GB/s); on the AMD host on 2026-12-04, as much as reading it;
    /// a pcapng file, before it had the readahead, from a sixth more to a tenth less,
    /// depending on the hour; on a third host reading took two thirds of mapping's CPU
    /// (benches/RESULTS.md). `auto` maps files from 128 MiB, and a file of 256 MiB or
    /// more it takes both ways for a while (64 MiB read untimed, 64 MiB read and
    /// 64 MiB mapped, each timed), then the rest the cheaper way; it reads smaller
    /// files. `--stats` shows `files_mapped` (the way each file ended on). Pipes and
    /// files under 16 MiB are always read.
    #[arg(long, value_enum, value_name = "HOW", default_value = "auto")]
    pub file_access: FileAccess,

    /// Ship to a collector instead of printing (see `--ship`).
    #[command(flatten)]
    pub ship: crate::ship::ShipArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    Json,
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum RecordType {
    Rst,
    Flow,
    Anomaly,
}

/// The engine options every offline command takes (`replay`, `diagnose`).
#[derive(Debug, clap::Args)]
pub(super) struct EngineFlags {
    /// Configuration file (TOML); its [engine] table sets flow table size, timeouts
    /// and thresholds (see `check-config`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// How long an RST is held for evidence from later packets, milliseconds [default: 500].
    #[arg(long, value_name = "MS")]
    pub verdict_delay_ms: Option<u32>,

    /// Silence before an RST that earns the `idle` flag, seconds [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub idle_threshold_s: Option<u32>,

    /// Flows held at most [default: 1000000].
    #[arg(long, value_name = "N")]
    pub flow_capacity: Option<usize>,

    /// Do not verify TCP checksums (for captures taken on a host with checksum
    /// offloading, where outgoing segments carry no valid checksum yet).
    #[arg(long)]
    pub no_verify_checksum: bool,
}

impl EngineFlags {
    /// The engine configuration: defaults, then the file, then flags.
    pub(super) fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let mut cfg = match &self.config {
            Some(p) => load_engine_config(p)?,
            None => EngineConfig::default(),
        };
        if let Some(v) = self.verdict_delay_ms {
            cfg.verdict_delay_ms = v;
        }
        if let Some(v) = self.idle_threshold_s {
            cfg.idle_threshold_s = v;
        }
        if let Some(v) = self.flow_capacity {
            cfg.flow_capacity = v;
        }
        if self.no_verify_checksum {
            cfg.verify_checksum = false;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

impl ReplayArgs {
    fn select(&self) -> Select {
        if self.only.is_empty() {
            return Select::default();
        }
        Select {
            rst: self.only.contains(&RecordType::Rst),
            flow: self.only.contains(&RecordType::Flow),
            anomaly: self.only.contains(&RecordType::Anomaly),
        }
    }
}

pub(super) fn main(a: ReplayArgs) -> anyhow::Result<i32> {
    let cfg = a.engine.engine_config()?;
    // Before the ship path: it runs one engine, and a shipped replay asked for N of
    // them must not quietly run one.
    if a.workers > 1 && (a.format != Format::Json || a.ship.ship.is_some()) {
        anyhow::bail!(
            "--workers works with JSON output to stdout only (not --format table or --ship); \
             replay without --workers to ship or print a table"
        );
    }
    if a.ship.ship.is_some() {
        return crate::ship::replay_shipped(&a.ship, |sink| {
            replay_files(&a.files, a.no_progress, a.file_access, &cfg, sink)
        });
    }
    let (bad_files, counters, written) = if a.workers > 1 {
        let o = parallel::replay(
            &a.files,
            a.no_progress,
            &cfg,
            a.select(),
            usize::from(a.workers),
            a.file_access,
            std::io::stdout(),
        )?;
        (o.bad_files, o.counters, o.written)
    } else {
        replay_serial(&a, &cfg)
    };
    report(a.stats, &counters);
    match written {
        Ok(_) => {}
        // Output closed early (`| head`): not an error of the input.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => anyhow::bail!("writing output: {e}"),
    }
    Ok(if bad_files > 0 { 1 } else { 0 })
}

/// One engine on this thread.
fn replay_serial(
    a: &ReplayArgs,
    cfg: &EngineConfig,
) -> (usize, Vec<(&'static str, u64)>, std::io::Result<u64>) {
    let stdout = std::io::stdout().lock();
    let out = std::io::BufWriter::with_capacity(1 << 16, stdout);
    match a.format {
        Format::Json => {
            let mut sink = JsonLines::new(out, a.select());
            let (bad, counters) =
                replay_files(&a.files, a.no_progress, a.file_access, cfg, &mut sink);
            (bad, counters, sink.finish())
        }
        Format::Table => {
            let mut sink = Table::new(out, a.select());
            let (bad, counters) =
                replay_files(&a.files, a.no_progress, a.file_access, cfg, &mut sink);
            (bad, counters, sink.finish())
        }
    }
}

/// `--stats`: the counters as one JSON object on stderr, and any warning they raise.
fn report(stats: bool, counters: &[(&'static str, u64)]) {
    if stats {
        let map: serde_json::Map<String, serde_json::Value> = counters
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        eprintln!("{}", serde_json::Value::Object(map));
        if let Some(w) = crate::counters::one_sided_warning(counters) {
            eprintln!("rstwatch-sensor: warning: {w}");
        }
    }
}

/// Runs every file through one engine into `sink`. Returns the number of files that
/// had a problem (each reported on stderr) and the engine's counters. `replay` and
/// `diagnose` both read captures through this one function.
pub(super) fn replay_files<S: Sink>(
    files: &[PathBuf],
    no_progress: bool,
    access: FileAccess,
    cfg: &EngineConfig,
    sink: &mut S,
) -> (usize, Vec<(&'static str, u64)>) {
    let mut engine = Engine::for_files(cfg);
    let files_read = read_each(files, no_progress, |path, progress| {
        // Batches of frames, so the flow lookups of each batch overlap their misses,
        // and the file ahead is requested while the engine works.
        source::read_file_batched(path, progress, access, |link, frames, ahead| {
            engine.process_batch_reading_ahead(link, frames, ahead, sink)
        })
    });
    engine.finish(sink);
    let mut counters = engine.counters();
    counters.extend(files_read.counters());
    (files_read.failed, counters)
}

/// What [`read_each`] found over all the files.
#[derive(Debug, Default)]
struct FilesRead {
    files: u64,
    /// Files with a problem (each reported on stderr).
    failed: usize,
    /// pcapng blocks that carried no packet (statistics, name resolution, ...).
    other_blocks: u64,
    /// Files mapped rather than read (`--file-access`).
    mapped: u64,
}

impl FilesRead {
    /// The reading's counters, as `--stats` shows them after the engine's.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("files", self.files),
            ("files_failed", self.failed as u64),
            ("files_mapped", self.mapped),
            ("pcapng_other_blocks", self.other_blocks),
        ]
    }
}

/// Reads every file with `read`, showing a progress bar for large files when stderr is
/// a terminal and reporting a file's problem on stderr as it comes (the next file is
/// still read). One engine and `--workers` both read through it.
fn read_each(
    files: &[PathBuf],
    no_progress: bool,
    mut read: impl FnMut(&Path, Option<Progress>) -> Result<source::FileStats, source::SourceError>,
) -> FilesRead {
    let mut totals = FilesRead {
        files: files.len() as u64,
        ..FilesRead::default()
    };
    for path in files {
        let bar = progress_bar(path, no_progress);
        let progress = bar.as_ref().map(|(_, p)| p.clone());
        let r = read(path, progress);
        if let Some((bar, _)) = bar {
            bar.finish_and_clear();
        }
        match r {
            Ok(st) => {
                totals.other_blocks += st.other_blocks;
                totals.mapped += u64::from(st.mapped);
            }
            Err(e) => {
                eprintln!("rstwatch-sensor: {e}");
                totals.failed += 1;
            }
        }
    }
    totals
}

/// Files smaller than this are read too fast for a bar to help.
const PROGRESS_MIN_BYTES: u64 = 32 << 20;

fn progress_bar(
    path: &std::path::Path,
    disabled: bool,
) -> Option<(indicatif::ProgressBar, Progress)> {
    if disabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let len = std::fs::metadata(path).ok()?.len();
    if len < PROGRESS_MIN_BYTES {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .ok()?
            .progress_chars("=> "),
    );
    bar.set_message(path.display().to_string());
    let progress: Progress = Default::default();
    let (b, p) = (bar.clone(), progress.clone());
    // The reader publishes its position; a small thread moves the bar, so the packet
    // loop never touches the terminal. Without that thread the replay runs as well.
    let _ = std::thread::Builder::new()
        .name("rw-progress".into())
        .spawn(move || {
            while !b.is_finished() {
                b.set_position(p.load(std::sync::atomic::Ordering::Relaxed));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
    Some((bar, progress))
}
