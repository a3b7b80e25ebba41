//! Timestamps: microseconds since the Unix epoch, UTC, printed as RFC 3339 with six
//! fractional digits (`2026-11-21T14:08:47.123456Z`).

use time::OffsetDateTime;

/// Microseconds since the epoch from the wall clock (0 if the clock is before 1970).
/// The one place either binary reads the wall clock for a timestamp: batch creation,
/// stats rows, log lines, the collector's ledger. The engine never calls it: its time
/// is packet time.
pub fn wall_clock_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Formats microseconds since the epoch as RFC 3339 UTC with microsecond precision.
pub fn rfc3339_micros(ts_us: i64) -> String {
    let secs = ts_us.div_euclid(1_000_000);
    let micros = ts_us.rem_euclid(1_000_000);
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            micros
        ),
        // Out of `time`'s range (years beyond ±9999): still print something that
        // says what it was rather than failing the whole record.
        Err(_) => format!("@{ts_us}us"),
    }
}

/// Parses what [`rfc3339_micros`] prints (used by tests and tools reading JSON back),
/// including its `@{µs}us` form for times beyond year 9999 (a capture with broken
/// timestamps): a record the sensor writes can always be read back.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    if let Some(us) = s.strip_prefix('@').and_then(|r| r.strip_suffix("us")) {
        return us.parse().ok();
    }
    let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let ns = t.unix_timestamp_nanos();
    i64::try_from(ns.div_euclid(1000)).ok()
}

/// serde helper: serialise an `i64` microsecond timestamp as RFC 3339.
pub fn serialize<S: serde::Serializer>(ts_us: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_micros(*ts_us))
}

/// serde helper: the reverse of [`serialize`].
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
    parse_rfc3339_micros(&s).ok_or_else(|| serde::de::Error::custom("bad RFC 3339 timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_six_digits_and_z() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(rfc3339_micros(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn parses_back() {
        // The last two are beyond year 9999, printed as `@…us`.
        for ts in [
            0,
            1,
            1_700_000_000_123_456,
            -1,
            1_767_225_600_082_574_000,
            i64::MIN,
        ] {
            assert_eq!(parse_rfc3339_micros(&rfc3339_micros(ts)), Some(ts));
        }
    }
}
