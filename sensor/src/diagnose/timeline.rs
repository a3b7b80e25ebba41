//! When the resets happened: counts per second, grouped into at most
//! [`MAX_BUCKETS`] buckets of a round width, and the buckets where resets cluster.
//!
//! A burst of resets at one moment (a failover, a firewall reload, an overloaded
//! service, a scan) is itself a clue, so the report names the moment. A bucket is a
//! cluster when it holds at least [`CLUSTER_SHARE`] of all resets, at least
//! [`CLUSTER_FACTOR`] times the mean per bucket, and at least [`CLUSTER_MIN`] resets,
//! in a timeline of at least [`CLUSTER_MIN_BUCKETS`] buckets (when everything fits
//! in two or three buckets there is nothing to single out).

use std::collections::BTreeMap;

/// Most buckets a timeline is cut into (one text line of bars on 80 columns).
pub(crate) const MAX_BUCKETS: usize = 60;
/// Round bucket widths in seconds, smallest first; beyond the last, whole days.
const WIDTHS_S: &[i64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
];
pub(crate) const CLUSTER_SHARE: f64 = 0.2;
pub(crate) const CLUSTER_FACTOR: f64 = 3.0;
pub(crate) const CLUSTER_MIN: u64 = 5;
pub(crate) const CLUSTER_MIN_BUCKETS: usize = 4;
/// Clusters reported at most, the largest first.
const MAX_CLUSTERS: usize = 3;

/// Resets per second of packet time (seconds since the epoch).
#[derive(Debug, Default, Clone)]
pub(crate) struct SecondCounts(BTreeMap<i64, u64>);

impl SecondCounts {
    pub(crate) fn add(&mut self, ts_us: i64) {
        *self.0.entry(ts_us.div_euclid(1_000_000)).or_default() += 1;
    }
}

/// Resets per bucket from `start_s` on, each `bucket_s` wide.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Timeline {
    /// Width of a bucket, seconds.
    pub bucket_s: i64,
    /// Start of the first bucket, seconds since the epoch.
    #[serde(rename = "start", with = "secs_rfc3339")]
    pub start_s: i64,
    /// Resets per bucket.
    pub counts: Vec<u64>,
    /// Buckets holding a large share of the resets.
    pub clusters: Vec<Cluster>,
}

/// A bucket holding a large share of the resets.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cluster {
    /// The busiest second inside the bucket (the earliest of equals).
    #[serde(rename = "at", with = "secs_rfc3339")]
    pub at_s: i64,
    /// Start of its bucket, seconds since the epoch.
    #[serde(rename = "bucket_start", with = "secs_rfc3339")]
    pub bucket_start_s: i64,
    /// Width of the bucket, seconds.
    pub bucket_s: i64,
    /// Resets in the bucket.
    pub resets: u64,
    /// Share of all resets of the timeline, percent with one decimal.
    pub percent: f64,
}

/// The timeline of `seconds`, or `None` when there were no resets.
pub(crate) fn timeline(seconds: &SecondCounts) -> Option<Timeline> {
    let (&first, _) = seconds.0.first_key_value()?;
    let (&last, _) = seconds.0.last_key_value()?;
    let bucket_s = bucket_width(first, last);
    let start_s = first.div_euclid(bucket_s) * bucket_s;
    let n = ((last - start_s) / bucket_s + 1) as usize;
    let mut counts = vec![0u64; n];
    for (&s, &c) in &seconds.0 {
        counts[((s - start_s) / bucket_s) as usize] += c;
    }
    let clusters = clusters(seconds, start_s, bucket_s, &counts);
    Some(Timeline {
        bucket_s,
        start_s,
        counts,
        clusters,
    })
}

/// The smallest round width that cuts `first..=last` into at most `MAX_BUCKETS`
/// buckets aligned on multiples of the width (so they start at round clock times).
fn bucket_width(first: i64, last: i64) -> i64 {
    let fits = |w: i64| last.div_euclid(w) - first.div_euclid(w) < MAX_BUCKETS as i64;
    if let Some(&w) = WIDTHS_S.iter().find(|&&w| fits(w)) {
        return w;
    }
    let mut days = 2;
    while !fits(days * 86400) {
        days *= 2;
    }
    days * 86400
}

fn clusters(seconds: &SecondCounts, start_s: i64, bucket_s: i64, counts: &[u64]) -> Vec<Cluster> {
    if counts.len() < CLUSTER_MIN_BUCKETS {
        return Vec::new();
    }
    let total: u64 = counts.iter().sum();
    let mean = total as f64 / counts.len() as f64;
    let mut found: Vec<Cluster> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| {
            c >= CLUSTER_MIN
                && c as f64 >= CLUSTER_SHARE * total as f64
                && c as f64 >= CLUSTER_FACTOR * mean
        })
        .map(|(i, &c)| {
            let bucket_start_s = start_s + i as i64 * bucket_s;
            Cluster {
                at_s: busiest_second(seconds, bucket_start_s, bucket_s),
                bucket_start_s,
                bucket_s,
                resets: c,
                percent: super::percent(c, total),
            }
        })
        .collect();
    found.sort_by(|a, b| b.resets.cmp(&a.resets).then(a.at_s.cmp(&b.at_s)));
    found.truncate(MAX_CLUSTERS);
    found
}

fn busiest_second(seconds: &SecondCounts, from: i64, width: i64) -> i64 {
    let mut best = (from, 0);
    for (&s, &c) in seconds.0.range(from..from + width) {
        if c > best.1 {
            best = (s, c);
        }
    }
    best.0
}

/// serde: whole seconds since the epoch as RFC 3339 (the offline contract's format).
mod secs_rfc3339 {
    pub(crate) fn serialize<S: serde::Serializer>(s: &i64, ser: S) -> Result<S::Ok, S::Error> {
        rstwatch_schema::timefmt::serialize(&s.saturating_mul(1_000_000), ser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_at(secs: &[(i64, u64)]) -> SecondCounts {
        let mut sc = SecondCounts::default();
        for &(s, n) in secs {
            for _ in 0..n {
                sc.add(s * 1_000_000 + 123);
            }
        }
        sc
    }

    #[test]
    fn bucket_width_is_the_smallest_round_width_that_fits_sixty_buckets() {
        assert_eq!(bucket_width(0, 59), 1);
        assert_eq!(bucket_width(0, 60), 2);
        assert_eq!(bucket_width(100, 399), 5);
        assert_eq!(bucket_width(0, 3599), 60);
        assert_eq!(bucket_width(0, 3600), 120);
        assert_eq!(bucket_width(0, 30 * 86400), 86400);
        assert_eq!(bucket_width(0, 100 * 86400), 2 * 86400);
    }

    #[test]
    fn a_burst_in_one_minute_of_an_hour_is_a_cluster_at_its_busiest_second() {
        // One reset a minute for an hour, and 40 more in the minute from 00:30:00,
        // 25 of them in second 1815.
        let mut secs: Vec<(i64, u64)> = (0..60).map(|m| (m * 60, 1)).collect();
        secs.push((1815, 25));
        secs.push((1840, 15));
        let t = timeline(&counts_at(&secs)).unwrap();
        assert_eq!(t.bucket_s, 60);
        assert_eq!(t.counts.len(), 60);
        assert_eq!(t.counts.iter().sum::<u64>(), 100);
        assert_eq!(
            t.clusters,
            vec![Cluster {
                at_s: 1815,
                bucket_start_s: 1800,
                bucket_s: 60,
                resets: 41,
                percent: 41.0
            }]
        );
    }

    #[test]
    fn evenly_spread_resets_do_not_cluster() {
        let secs: Vec<(i64, u64)> = (0..600).map(|s| (s, 2)).collect();
        let t = timeline(&counts_at(&secs)).unwrap();
        assert_eq!(t.bucket_s, 10);
        assert!(t.counts.iter().all(|&c| c == 20));
        assert!(t.clusters.is_empty());
    }

    #[test]
    fn a_timeline_of_three_buckets_names_no_cluster() {
        let t = timeline(&counts_at(&[(0, 100), (1, 1), (2, 1)])).unwrap();
        assert_eq!(t.counts, vec![100, 1, 1]);
        assert!(t.clusters.is_empty());
        assert!(timeline(&SecondCounts::default()).is_none());
    }
}
