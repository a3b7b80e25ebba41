//! The most telling example RSTs of a cause.
//!
//! "Telling" means, in this order:
//! 1. from different services: the best RST of each of the cause's top services, in
//!    the order of their reset counts, so the examples illustrate the services the
//!    report lists (a cause hitting three services shows one RST of each);
//! 2. then, within a service or to fill up when a cause hit fewer services, the RST
//!    with the most evidence flags (everything but the sequence-validity flags,
//!    `lossy` and `bad_checksum`, which say nothing about why), then one that carries
//!    a `cause_detail`, then one whose seq was exactly what the receiver expected (it
//!    really reset the connection), then the earliest seen.

use rstwatch_schema::{RstEvent, RstFlag};
use std::cmp::Ordering;

/// Examples shown per cause.
pub(crate) const EXAMPLES: usize = 3;

/// Flags that say nothing about why an RST was sent.
const NOT_EVIDENCE: &[RstFlag] = &[
    RstFlag::SeqExact,
    RstFlag::SeqInWindow,
    RstFlag::SeqOutOfWindow,
    RstFlag::Lossy,
    RstFlag::BadChecksum,
];

/// An RST that may be shown, with its rank.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    score: (u32, bool, bool),
    /// Arrival order: ties go to the earlier RST, and it tells candidates apart.
    seen: u64,
    pub event: RstEvent,
}

impl Candidate {
    pub(crate) fn new(event: RstEvent, seen: u64) -> Candidate {
        let evidence = event
            .flags
            .iter()
            .filter(|f| !NOT_EVIDENCE.contains(f))
            .count() as u32;
        let score = (
            evidence,
            !event.cause_detail.is_empty(),
            event.flags.contains(RstFlag::SeqExact),
        );
        Candidate { score, seen, event }
    }

    /// Better candidates sort first.
    pub(crate) fn rank(&self, other: &Candidate) -> Ordering {
        other
            .score
            .cmp(&self.score)
            .then(self.seen.cmp(&other.seen))
    }
}

/// The best few candidates, kept while records stream past.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopCandidates(Vec<Candidate>);

/// Candidates kept overall per cause: enough to fill up after the per-service picks.
const KEEP: usize = 2 * EXAMPLES;

impl TopCandidates {
    pub(crate) fn offer(&mut self, c: &Candidate) {
        if self.0.len() == KEEP && c.rank(&self.0[KEEP - 1]) != Ordering::Less {
            return;
        }
        let at = self.0.partition_point(|x| x.rank(c) == Ordering::Less);
        self.0.insert(at, c.clone());
        self.0.truncate(KEEP);
    }
}

/// Picks the examples: the best of each service in `per_service` (given in the order
/// of the services' reset counts), then the best of the rest from `overall`.
pub(crate) fn pick<'a>(
    per_service: impl IntoIterator<Item = &'a Candidate>,
    overall: &'a TopCandidates,
) -> Vec<RstEvent> {
    let mut chosen: Vec<&Candidate> = per_service.into_iter().take(EXAMPLES).collect();
    for c in &overall.0 {
        if chosen.len() == EXAMPLES {
            break;
        }
        if !chosen.iter().any(|x| x.seen == c.seen) {
            chosen.push(c);
        }
    }
    chosen.into_iter().map(|c| c.event.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::testing::rst_at;
    use rstwatch_schema::Cause;

    /// A candidate identified by `seen`, also written into its `flow_uid`.
    fn cand(seen: u64, flags: &[RstFlag], detail: &str) -> Candidate {
        let mut ev = rst_at(Cause::Abort, "203.0.113.5:443", "192.0.2.1:1", 0.0, flags);
        ev.cause_detail = detail.into();
        ev.flow_uid = seen;
        Candidate::new(ev, seen)
    }

    fn uids(picked: Vec<RstEvent>) -> Vec<u64> {
        picked.iter().map(|e| e.flow_uid).collect()
    }

    #[test]
    fn evidence_flags_then_detail_then_exact_seq_then_earliest() {
        let plain = cand(0, &[RstFlag::SeqExact, RstFlag::Lossy], "");
        let detail = cand(1, &[RstFlag::SeqOutOfWindow], "silent 3605 s");
        let exact_detail = cand(2, &[RstFlag::SeqExact], "silent 3605 s");
        let flagged = cand(3, &[RstFlag::Idle], "");
        let twice = cand(4, &[RstFlag::Idle], "");
        let mut all = [&twice, &plain, &detail, &flagged, &exact_detail];
        all.sort_by(|a, b| a.rank(b));
        let order: Vec<u64> = all.iter().map(|c| c.seen).collect();
        assert_eq!(order, vec![3, 4, 2, 1, 0]);
    }

    #[test]
    fn distinct_services_first_then_the_best_of_the_rest() {
        let mut top = TopCandidates::default();
        let cs: Vec<Candidate> = (0..10)
            .map(|i| cand(i, if i >= 8 { &[RstFlag::Idle] } else { &[] }, ""))
            .collect();
        for c in &cs {
            top.offer(c);
        }
        let kept: Vec<u64> = top.0.iter().map(|c| c.seen).collect();
        assert_eq!(kept, vec![8, 9, 0, 1, 2, 3]);
        // One service whose best RST is #5: then #8 and #9, the best overall.
        assert_eq!(uids(pick([&cs[5]], &top)), vec![5, 8, 9]);
        // A pick already among the overall best is not shown twice.
        assert_eq!(uids(pick([&cs[8]], &top)), vec![8, 9, 0]);
        // Four services: the best of the first three only.
        assert_eq!(
            uids(pick([&cs[1], &cs[2], &cs[3], &cs[4]], &top)),
            vec![1, 2, 3]
        );
    }
}
