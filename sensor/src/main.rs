//! `rstwatch-sensor`: see `rstwatch-sensor --help`.

fn main() {
    std::process::exit(rstwatch_sensor::cli::main());
}
