//! The idle timeout of the device that reset idle flows, read off the silences
//! before its resets.
//!
//! A firewall, NAT or load balancer that forgets a flow after T seconds resets the
//! first segment that comes after the silence, so every `idle_timeout` RST carries a
//! silence of at least T; applications that poll or send keep-alives on a period make
//! the silences pile up just above T. The estimate is the mode of a histogram whose
//! bucket slides over the sorted silences: for each silence s, the silences within
//! ±tol(s) count, tol(s) = 2 % of s in whole seconds (at least 1 s: ±7 s at AWS NLB's
//! 350 s, ±72 s at a firewall's 3600 s), and the largest group wins (the shorter on a
//! tie: the timeout is below every silence it produced). The timeout reported is the
//! lower median of that group, rounded down to whole seconds.

/// Silences kept for the estimate at most; beyond that the sample is what came first.
pub(crate) const MAX_SILENCES: usize = 1 << 20;

/// Where the silences before idle resets cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdleEstimate {
    /// The device's idle timeout, seconds.
    pub timeout_s: u64,
    /// Half-width of the group around it, seconds.
    pub within_s: u64,
    /// Silences in the group.
    pub matching: u64,
    /// Silences considered.
    pub silences: u64,
    /// The shortest silence that was reset, seconds (rounded down): an upper bound of
    /// the timeout.
    pub shortest_s: u64,
}

/// The estimate from silences in milliseconds (zeros, i.e. no silence measured, are
/// ignored); `None` when there are none.
pub(crate) fn estimate(silences_ms: &[u64]) -> Option<IdleEstimate> {
    let mut s: Vec<u64> = silences_ms.iter().copied().filter(|&x| x > 0).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_unstable();
    let mut best = (0usize, 0usize, 0u64); // (from, to) indices of the group, tol
    for &x in &s {
        let tol = tolerance_ms(x);
        let from = s.partition_point(|&y| y < x.saturating_sub(tol));
        let to = s.partition_point(|&y| y <= x + tol);
        if to - from > best.1 - best.0 {
            best = (from, to, tol);
        }
    }
    let (from, to, tol) = best;
    let group = &s[from..to];
    Some(IdleEstimate {
        timeout_s: group[(group.len() - 1) / 2] / 1000,
        within_s: tol / 1000,
        matching: group.len() as u64,
        silences: s.len() as u64,
        shortest_s: s[0] / 1000,
    })
}

/// 2 % of `ms`, in whole seconds, at least one second.
fn tolerance_ms(ms: u64) -> u64 {
    (ms / 1000 / 50).max(1) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_clustering_at_3600_s_give_3600_s() {
        // A firewall with a one-hour timeout: 7 flows polled a little after the hour,
        // plus three stragglers silent far longer.
        let ms = [
            3_600_020, 3_600_250, 3_601_900, 3_600_400, 3_603_000, 3_600_010, 3_630_000, 7_300_000,
            9_000_000, 86_400_000,
        ];
        let e = estimate(&ms).unwrap();
        assert_eq!(
            e,
            IdleEstimate {
                timeout_s: 3600,
                within_s: 72,
                matching: 7,
                silences: 10,
                shortest_s: 3600
            }
        );
    }

    #[test]
    fn the_largest_group_wins_over_the_shortest_silence() {
        // Two devices: a 350 s load balancer (4 flows) and a 240 s one (2 flows).
        let ms = [240_100, 241_000, 350_010, 350_500, 351_200, 352_000];
        let e = estimate(&ms).unwrap();
        assert_eq!((e.timeout_s, e.within_s, e.matching), (350, 7, 4));
        assert_eq!(e.shortest_s, 240);
    }

    #[test]
    fn a_tie_goes_to_the_shorter_timeout_and_zeros_are_ignored() {
        let e = estimate(&[0, 600_000, 600_300, 1_800_000, 1_800_100]).unwrap();
        assert_eq!((e.timeout_s, e.matching, e.silences), (600, 2, 4));
        assert_eq!(estimate(&[0, 0]), None);
        assert_eq!(estimate(&[]), None);
    }
}
