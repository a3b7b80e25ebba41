//! The command line as a user runs it (the built binary): `replay`, `diagnose`, `gen`
//! checked against tshark. One binary for all of them.

#[path = "../common_corpus/mod.rs"]
mod common_corpus;

mod diagnose_cli;
mod gen_tshark;
mod replay_cli;
mod replay_input;
mod replay_workers;
