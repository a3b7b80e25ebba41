//! `rstwatch-sensor diagnose`: why were connections reset, and what to do about it.

use super::replay::{replay_files, EngineFlags};
use crate::diagnose::{markdown, text, Collector, Report};
use crate::source::FileAccess;
use std::io::Write;
use std::path::PathBuf;

/// Read pcap/pcapng files and print a report: why connections were reset, and what
/// to do about it.
///
/// The files go through the same engine as `replay` (same configuration), and the
/// RSTs are summarised: how many, split by cause (in order of precedence) with the
/// meaning and remedy of each cause, the top services and client networks per cause,
/// when resets cluster, the idle timeout of the device behind `idle_timeout` resets,
/// three telling example RSTs per cause, and the anomalies.
///
/// A file that cannot be read, or that is cut short or corrupt, is reported on stderr
/// in one line naming the file and the problem, and the exit status is 1; the report
/// covers what could be read (none is printed when no file could be read at all).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rstwatch-sensor diagnose capture.pcap
  rstwatch-sensor diagnose --format markdown monday.pcapng tuesday.pcapng > resets.md
  rstwatch-sensor diagnose --format json capture.pcap | jq '.causes[] | {cause, resets}'")]
pub(crate) struct DiagnoseArgs {
    /// Capture files (pcap or pcapng), in time order; `-` reads standard input (e.g.
    /// `zcat day.pcap.gz | rstwatch-sensor replay -`).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format: text for an 80-column terminal, Markdown tables, or one JSON
    /// object (field names in the README, "diagnose").
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    #[command(flatten)]
    pub engine: EngineFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Markdown,
    Json,
}

pub(crate) fn main(a: DiagnoseArgs) -> anyhow::Result<i32> {
    let cfg = a.engine.engine_config()?;
    let mut collector = Collector::default();
    // The progress bar is replay's: on stderr, only for large files on a terminal. The
    // file access is replay's default: a large capture is mapped where that is faster.
    let (bad_files, _counters) =
        replay_files(&a.files, false, FileAccess::Auto, &cfg, &mut collector);
    if bad_files == a.files.len() {
        return Ok(1);
    }
    let names = a.files.iter().map(|p| p.display().to_string()).collect();
    let report = Report::build(&collector, names);
    let rendered = match a.format {
        Format::Text => text::render(&report),
        Format::Markdown => markdown::render(&report),
        Format::Json => serde_json::to_string(&report)? + "\n",
    };
    match std::io::stdout().lock().write_all(rendered.as_bytes()) {
        Ok(()) => {}
        // Output closed early (`| head`): not an error of the input.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => anyhow::bail!("writing output: {e}"),
    }
    Ok(if bad_files > 0 { 1 } else { 0 })
}
