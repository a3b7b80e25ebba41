//! Flow records against Zeek's own baselines (`corpus/zeek/*.conn.tsv`).
//!
//! Each trace runs with the options Zeek's test ran with: `-C` (ignore checksums)
//! turns checksum verification off. Timeouts are set to Zeek's
//! `tcp_inactivity_timeout` (5 min) for every state, since the point is the state
//! machine, not the timeout policy (rstwatch's own half-open default is 30 s).
//!
//! History is compared on the letters rstwatch implements with Zeek's meaning (see
//! `IMPLEMENTED_LETTERS`); the approximate ones (`T`, `G`, `W`) are left out of the
//! comparison on both sides.

use crate::common_corpus;
use common_corpus::*;
use rstwatch_schema::{FlowRecord, Record};
use rstwatch_sensor::EngineConfig;

const IMPLEMENTED_LETTERS: &str = "^SHADFRCIQshadfrciq";

/// Disagreements with Zeek we believe are Zeek's (or the baseline's) and not ours:
/// (trace, reason). Empty: every baseline row currently agrees.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

fn filtered(h: &str) -> String {
    h.chars()
        .filter(|c| IMPLEMENTED_LETTERS.contains(*c))
        .collect()
}

#[test]
fn flow_records_match_zeek_conn_state_and_history() {
    let dir = corpus_dir().join("zeek");
    let manifest = read_tsv(&dir.join("MANIFEST.tsv"));
    let mut checked = 0;
    let mut failures = vec![];
    for m in manifest.iter().filter(|m| m["baseline_path"] != "none") {
        let trace = &m["trace"];
        if KNOWN_DIFFERENCES.iter().any(|(t, _)| t == trace) {
            continue;
        }
        let cfg = EngineConfig {
            verify_checksum: !m["zeek_command"].split_whitespace().any(|w| w == "-C"),
            timeout_half_open_s: 300,
            timeout_established_s: 300,
            ..EngineConfig::default()
        };
        let (records, _) = replay(&dir.join(trace), &cfg);
        let mut flows: Vec<FlowRecord> = records
            .into_iter()
            .filter_map(|r| match r {
                Record::Flow(f) => Some(f),
                _ => None,
            })
            .collect();
        flows.sort_by_key(|f| f.ts_start_us);
        let expected = read_tsv(&dir.join(&m["corpus_tsv"]));
        if expected.len() != flows.len() {
            failures.push(format!(
                "{trace}: {} flows, Zeek has {}",
                flows.len(),
                expected.len()
            ));
            continue;
        }
        for (want, got) in expected.iter().zip(&flows) {
            let mut diffs = vec![];
            let mut cmp = |field: &str, ours: String| {
                let theirs = &want[field];
                if theirs != "-" && *theirs != ours {
                    diffs.push(format!("{field}: ours {ours}, Zeek {theirs}"));
                }
            };
            cmp("orig_h", got.orig_h.to_string());
            cmp("orig_p", got.orig_p.to_string());
            cmp("resp_h", got.resp_h.to_string());
            cmp("resp_p", got.resp_p.to_string());
            cmp("conn_state", got.conn_state.to_string());
            cmp("orig_pkts", got.orig_pkts.to_string());
            cmp("resp_pkts", got.resp_pkts.to_string());
            if want["history"] != "-" && filtered(&want["history"]) != filtered(&got.history) {
                diffs.push(format!(
                    "history: ours {}, Zeek {}",
                    got.history, want["history"]
                ));
            }
            checked += 1;
            if !diffs.is_empty() {
                failures.push(format!("{trace}: {}", diffs.join("; ")));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements with Zeek:\n{}",
        failures.join("\n")
    );
    assert!(checked >= 13, "only {checked} baseline rows checked");
}
