//! What an analyst asks about: a time range plus optional sensor and service port,
//! and for the rows pages a narrower slice (one cause, class, kind, server). Parsed
//! once from user input (URL query, command line) into typed fields; the SQL layer
//! only ever sees these, never the raw strings.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use rstwatch_schema::cookbook::{Params, Step};
use rstwatch_schema::{AnomalyKind, Cause, RstClass};

/// Longest range a request may ask for (a year): bounds the work one click can cause.
pub const MAX_RANGE_S: i64 = 366 * 86_400;

/// The time range and filters of a view, report or rows page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// Start, seconds since the epoch (inclusive).
    pub from: i64,
    /// End, seconds since the epoch (exclusive).
    pub to: i64,
    /// Only this sensor.
    pub sensor: Option<String>,
    /// Only this service port.
    pub service_port: Option<u16>,
    /// Rows pages only: one cause, class or anomaly kind, one server address, or only
    /// suspect RSTs.
    pub cause: Option<Cause>,
    /// Rows pages only: one RST class.
    pub class: Option<RstClass>,
    /// Rows pages only: one anomaly kind.
    pub kind: Option<AnomalyKind>,
    /// Rows pages only: one server address.
    pub server: Option<std::net::IpAddr>,
    /// Rows pages only: suspect RSTs alone.
    pub suspect: bool,
}

/// A duration such as `90s`, `15m`, `24h`, `7d` in seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .with_context(|| format!("bad duration {s:?} (e.g. 15m, 24h, 7d)"))?;
    let mult = match unit {
        "s" => 1,
        "m" | "" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("bad duration unit in {s:?}: use s, m, h, d or w"),
    };
    let secs = n.saturating_mul(mult);
    if secs <= 0 || secs > MAX_RANGE_S {
        bail!("duration {s:?} out of range (1s .. 366d)");
    }
    Ok(secs)
}

/// A point in time given as RFC 3339 (`2026-12-01T14:00:00Z`) or epoch seconds.
fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    rstwatch_schema::timefmt::parse_rfc3339_micros(s)
        .map(|us| us.div_euclid(1_000_000))
        .with_context(|| format!("bad time {s:?} (RFC 3339 or epoch seconds)"))
}

impl Filter {
    /// The last `secs` seconds up to `now`.
    pub fn last(secs: i64, now: i64) -> Filter {
        Filter {
            from: now - secs,
            to: now,
            ..Filter::default()
        }
    }

    /// From URL query pairs (`range=24h` or `from=..&to=..`, `sensor`, `port`, `cause`,
    /// `class`, `kind`, `server`, `suspect=1`). Unknown keys are ignored (e.g. `refresh`).
    pub fn from_query(query: &str, now: i64) -> anyhow::Result<Filter> {
        let mut f = Filter::last(3600, now);
        let mut range = None;
        let (mut from, mut to) = (None, None);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if v.is_empty() {
                continue;
            }
            match k.as_ref() {
                "range" => range = Some(parse_duration(&v)?),
                "from" => from = Some(parse_time(&v)?),
                "to" => to = Some(parse_time(&v)?),
                "sensor" => f.sensor = Some(v.into_owned()),
                "port" => f.service_port = Some(v.parse().context("bad port")?),
                "cause" => {
                    f.cause = Some(v.parse().map_err(|_| anyhow::anyhow!("bad cause {v:?}"))?)
                }
                "class" => {
                    f.class = Some(v.parse().map_err(|_| anyhow::anyhow!("bad class {v:?}"))?)
                }
                "kind" => f.kind = Some(v.parse().map_err(|_| anyhow::anyhow!("bad kind {v:?}"))?),
                "server" => f.server = Some(v.parse().context("bad server address")?),
                "suspect" => f.suspect = v == "1",
                _ => {}
            }
        }
        f.to = to.unwrap_or(now);
        f.from = match (from, range) {
            (Some(fr), _) => fr,
            (None, Some(r)) => f.to - r,
            (None, None) => f.to - 3600,
        };
        if f.to <= f.from || f.to - f.from > MAX_RANGE_S {
            bail!("time range must be positive and at most 366 days");
        }
        Ok(f)
    }

    /// Back to a URL query (what `from_query` reads), with absolute times so a link
    /// shows the same rows tomorrow.
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("from", &self.from.to_string());
        q.append_pair("to", &self.to.to_string());
        if let Some(s) = &self.sensor {
            q.append_pair("sensor", s);
        }
        if let Some(p) = self.service_port {
            q.append_pair("port", &p.to_string());
        }
        if let Some(c) = self.cause {
            q.append_pair("cause", c.as_str());
        }
        if let Some(c) = self.class {
            q.append_pair("class", c.as_str());
        }
        if let Some(k) = self.kind {
            q.append_pair("kind", k.as_str());
        }
        if let Some(s) = self.server {
            q.append_pair("server", &s.to_string());
        }
        if self.suspect {
            q.append_pair("suspect", "1");
        }
        q.finish()
    }

    /// The same range and sensor/port, none of the rows-page narrowing.
    pub fn base(&self) -> Filter {
        Filter {
            from: self.from,
            to: self.to,
            sensor: self.sensor.clone(),
            service_port: self.service_port,
            ..Filter::default()
        }
    }

    /// The cookbook's parameters for this filter's range, sensor and port (the rows
    /// pages' narrowing has no cookbook parameter), with the step the cookbook picks
    /// for the span: per minute up to 6 h, per hour (`rst_hour`) up to 14 days, per
    /// day beyond.
    pub fn params(&self) -> anyhow::Result<Params> {
        let secs = |t: i64| u32::try_from(t).with_context(|| format!("time {t} out of range"));
        let mut p = Params::range(secs(self.from)?, secs(self.to)?);
        p.sensor = self.sensor.clone().unwrap_or_default();
        p.service_port = self.service_port.unwrap_or(0);
        Ok(p)
    }

    /// Width in seconds of the rate charts' buckets (the cookbook's step).
    pub fn step_seconds(&self) -> i64 {
        let span = u32::try_from(self.seconds().max(0)).unwrap_or(u32::MAX);
        i64::from(Step::for_span(span).seconds())
    }

    /// The range's length in seconds.
    pub fn seconds(&self) -> i64 {
        self.to - self.from
    }

    /// One line saying what this filter selects, for page titles.
    pub fn describe(&self) -> String {
        let mut s = format!("{} – {} UTC", fmt_time(self.from), fmt_time(self.to));
        if let Some(x) = &self.sensor {
            let _ = write!(s, ", sensor {x}");
        }
        if let Some(p) = self.service_port {
            let _ = write!(s, ", port {p}");
        }
        for (k, v) in [
            ("cause", self.cause.map(|c| c.as_str().to_string())),
            ("class", self.class.map(|c| c.as_str().to_string())),
            ("kind", self.kind.map(|c| c.as_str().to_string())),
            ("server", self.server.map(|a| a.to_string())),
        ] {
            if let Some(v) = v {
                let _ = write!(s, ", {k} {v}");
            }
        }
        if self.suspect {
            s.push_str(", suspect only");
        }
        s
    }
}

/// `2026-12-01 14:00:00` (UTC), seconds.
pub fn fmt_time(secs: i64) -> String {
    let s = rstwatch_schema::timefmt::rfc3339_micros(secs * 1_000_000);
    s.get(..19).unwrap_or(&s).replace('T', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_ends_now_and_absolute_times_win() {
        let f = Filter::from_query("range=24h&sensor=edge-1&port=443", 1_000_000).unwrap();
        assert_eq!((f.from, f.to), (1_000_000 - 86_400, 1_000_000));
        assert_eq!(f.sensor.as_deref(), Some("edge-1"));
        assert_eq!(f.service_port, Some(443));
        let g = Filter::from_query(&f.to_query(), 5).unwrap();
        assert_eq!(g, f);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for q in [
            "range=0h",
            "range=9999d",
            "range=5x",
            "port=70000",
            "cause=nope",
            "from=10&to=5",
            "server=not-an-ip",
        ] {
            assert!(Filter::from_query(q, 1_000_000).is_err(), "{q}");
        }
    }
}
