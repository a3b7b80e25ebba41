//! Semantic checks of a batch, after bytecheck has proven its layout.
//!
//! bytecheck says the bytes are a well-formed `ArchivedBatch`; it cannot say the values
//! make sense. Anyone holding a token can recompute the CRC over flipped bits, and a
//! `ts_us` of 10774424854964404 (year 2311) would land in ClickHouse as 1970-01-01. So
//! every value that becomes a column is checked here, and a batch with one bad value is
//! refused whole (reason `invalid_<what>`, counted per reason), never stored in part.
//!
//! Rules:
//! - `created_us` lies within ClickHouse `DateTime` (1970 to 2106).
//! - Every record timestamp lies in `[0, max(created_us, collector now) + 1 day]`: a
//!   replay of an old capture is fine (old packet times), a time after the batch was
//!   closed is not (a day of slack covers clock skew between sensor and collector).
//! - Strings have bounded lengths (history, cause detail, anomaly subject and detail,
//!   counter names), and a statistics record has a bounded number of counters.

use rstwatch_schema::batch::ArchivedBatch;

/// Slack after the batch's creation (or the collector's clock) for record timestamps.
pub const FUTURE_SLACK_US: i64 = 86_400 * 1_000_000;
/// Last second a ClickHouse `DateTime` holds.
const DATETIME_MAX_US: i64 = u32::MAX as i64 * 1_000_000;

/// String and list bounds (bytes, entries).
pub const MAX_HISTORY: usize = 64;
/// Longest `cause_detail`, bytes.
pub const MAX_CAUSE_DETAIL: usize = 1024;
/// Longest anomaly subject, bytes.
pub const MAX_SUBJECT: usize = 1024;
/// Longest anomaly detail, bytes.
pub const MAX_DETAIL: usize = 4096;
/// Longest counter name, bytes.
pub const MAX_COUNTER_NAME: usize = 256;
/// Counters in one stats record, at most.
pub const MAX_COUNTERS: usize = 4096;

/// Why a batch's values do not make sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Stable name (metrics label), `invalid_ts`, `invalid_length`, ...
    pub reason: &'static str,
    /// What is wrong, for the log and the reject frame.
    pub detail: String,
}

fn invalid(reason: &'static str, detail: String) -> Invalid {
    Invalid { reason, detail }
}

/// The window record timestamps must fall in, for this batch.
fn ts_window(created_us: i64, now_us: i64) -> (i64, i64) {
    (0, created_us.max(now_us).saturating_add(FUTURE_SLACK_US))
}

fn check_ts(what: &str, i: usize, ts: i64, window: (i64, i64)) -> Result<(), Invalid> {
    if ts < window.0 || ts > window.1 {
        return Err(invalid(
            "invalid_ts",
            format!(
                "{what} {i}: timestamp {ts} µs outside [{}, {}] (batch creation or collector \
                 clock plus a day)",
                window.0, window.1
            ),
        ));
    }
    Ok(())
}

fn check_len(what: &str, i: usize, field: &str, len: usize, max: usize) -> Result<(), Invalid> {
    if len > max {
        return Err(invalid(
            "invalid_length",
            format!("{what} {i}: {field} is {len} bytes, at most {max}"),
        ));
    }
    Ok(())
}

/// Checks every value of `b` that becomes a column. `now_us`: the collector's clock.
pub fn check(b: &ArchivedBatch, now_us: i64) -> Result<(), Invalid> {
    let created = b.header.created_us.to_native();
    if !(0..=DATETIME_MAX_US).contains(&created) {
        return Err(invalid(
            "invalid_ts",
            format!("batch created_us {created} is outside 1970..2106"),
        ));
    }
    let w = ts_window(created, now_us);
    for (i, e) in b.rst.iter().enumerate() {
        check_ts("rst", i, e.ts_us.to_native(), w)?;
        check_len(
            "rst",
            i,
            "cause_detail",
            e.cause_detail.len(),
            MAX_CAUSE_DETAIL,
        )?;
    }
    for (i, f) in b.flows.iter().enumerate() {
        check_ts("flow", i, f.ts_start_us.to_native(), w)?;
        check_ts("flow", i, f.ts_end_us.to_native(), w)?;
        check_len("flow", i, "history", f.history.len(), MAX_HISTORY)?;
    }
    for (i, a) in b.anomalies.iter().enumerate() {
        check_ts("anomaly", i, a.ts_us.to_native(), w)?;
        check_len("anomaly", i, "subject", a.subject.len(), MAX_SUBJECT)?;
        check_len("anomaly", i, "detail", a.detail.len(), MAX_DETAIL)?;
    }
    for (i, s) in b.stats.iter().enumerate() {
        check_ts("stats", i, s.ts_us.to_native(), w)?;
        check_len("stats", i, "counters", s.counters.len(), MAX_COUNTERS)?;
        for c in s.counters.iter() {
            check_len("stats", i, "counter name", c.name.len(), MAX_COUNTER_NAME)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstwatch_schema::batch::access_batch;
    use rstwatch_schema::{Batch, BatchHeader, Dir, IpBytes, RstClass, RstEvent, SCHEMA_VERSION};

    const NOW: i64 = 1_764_000_000_000_000;

    fn batch(ts_us: i64, created_us: i64) -> Batch {
        let e = RstEvent::new(
            ts_us,
            (IpBytes::from_v4([192, 0, 2, 1]), 1),
            (IpBytes::from_v4([198, 51, 100, 1]), 2),
            Dir::Orig,
            RstClass::Abort,
        );
        Batch {
            header: BatchHeader {
                schema_version: SCHEMA_VERSION,
                sensor_id: "edge-1".into(),
                boot_id: 1,
                seq: 0,
                created_us,
            },
            rst: vec![e],
            flows: vec![],
            anomalies: vec![],
            stats: vec![],
        }
    }

    fn verdict(b: &Batch) -> Result<(), Invalid> {
        let bytes = b.to_bytes();
        check(access_batch(&bytes).unwrap(), NOW)
    }

    #[test]
    fn timestamps_outside_the_window_are_invalid_ts() {
        // The bit-flipped value from issue 9: year 2311.
        let r = verdict(&batch(10_774_424_854_964_404, NOW));
        assert_eq!(r.unwrap_err().reason, "invalid_ts");
        assert_eq!(verdict(&batch(-1, NOW)).unwrap_err().reason, "invalid_ts");
        assert_eq!(verdict(&batch(NOW, -5)).unwrap_err().reason, "invalid_ts");
    }

    #[test]
    fn old_captures_and_small_clock_skew_are_valid() {
        assert_eq!(verdict(&batch(1_230_000_000_000_000, NOW)), Ok(()));
        assert_eq!(verdict(&batch(NOW + 3_600_000_000, NOW)), Ok(()));
        // A header without a creation time still has the collector's clock.
        assert_eq!(verdict(&batch(NOW, 0)), Ok(()));
    }

    #[test]
    fn overlong_strings_are_invalid_length() {
        let mut b = batch(NOW, NOW);
        b.rst[0].cause_detail = "x".repeat(MAX_CAUSE_DETAIL + 1);
        assert_eq!(verdict(&b).unwrap_err().reason, "invalid_length");
    }
}
