//! The `rstwatch-sensor` command line. One module per subcommand.

mod diagnose;
mod gen;
mod live;
mod replay;
mod run;

use clap::{Parser, Subcommand};

/// rstwatch sensor: tracks every TCP flow and classifies every TCP reset (RST).
///
/// Offline: `replay` reads pcap/pcapng files and prints one JSON object per RST event,
/// flow record and anomaly; `diagnose` reads them into a report of why connections
/// were reset and what to do about it. Live: `run` captures with AF_XDP on a mirror port.
/// `gen` writes labelled scenario captures for tests, demos and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "rstwatch-sensor", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Replay(replay::ReplayArgs),
    Diagnose(diagnose::DiagnoseArgs),
    Gen(gen::GenArgs),
    Run(run::RunArgs),
    CheckConfig(run::CheckConfigArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(a) => replay::main(a),
        Command::Diagnose(a) => diagnose::main(a),
        Command::Gen(a) => gen::main(a),
        Command::Run(a) => run::main(a),
        Command::CheckConfig(a) => run::check_config(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rstwatch-sensor: {e:#}");
            1
        }
    }
}
