//! Shared helpers for the corpus tests: where the corpus is, and running a capture
//! through the engine.

#![allow(dead_code)]

use rstwatch_schema::Record;
use rstwatch_sensor::{source, Engine, EngineConfig};
use std::path::{Path, PathBuf};

/// `../shared/corpus` beside the repository, or `$RSTWATCH_CORPUS`.
pub(crate) fn corpus_dir() -> PathBuf {
    if let Ok(d) = std::env::var("RSTWATCH_CORPUS") {
        return PathBuf::from(d);
    }
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    assert!(
        d.join("GROUND_TRUTH.tsv").exists(),
        "corpus not found at {} (set RSTWATCH_CORPUS to its path)",
        d.display()
    );
    d
}

/// Reads a tab-separated file with a header line into rows of (column → value).
pub(crate) fn read_tsv(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header line").split('\t').collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            header
                .iter()
                .map(|h| h.to_string())
                .zip(l.split('\t').map(str::to_string))
                .collect()
        })
        .collect()
}

/// Runs one capture through a fresh engine; returns the records and the counters.
pub(crate) fn replay(path: &Path, cfg: &EngineConfig) -> (Vec<Record>, Vec<(&'static str, u64)>) {
    let mut engine = Engine::new(cfg);
    let mut out: Vec<Record> = Vec::new();
    source::read_file(path, None, |f| {
        engine.process(f.ts_us, f.link, f.data, &mut out)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    engine.finish(&mut out);
    (out, engine.counters())
}

pub(crate) fn counter(counters: &[(&'static str, u64)], name: &str) -> u64 {
    counters
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}
