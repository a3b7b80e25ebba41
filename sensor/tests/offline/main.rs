//! Offline integration tests, one binary (each test binary costs a link on two
//! cores): the engine against the corpus and its peers' results, the flow table,
//! encapsulations, the parser under fuzzing, and the generated scenarios.

#[path = "../common_corpus/mod.rs"]
mod common_corpus;

mod corpus_ground_truth;
mod corpus_zeek;
mod encap;
mod engine_batch;
mod flow_table;
mod parse_fuzz;
mod scenarios;
