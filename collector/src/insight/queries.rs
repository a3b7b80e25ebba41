//! Every SQL statement the SOC view and the report run, in one place, keyed by the
//! cookbook's file names (`schema/queries/<name>.sql`). Today each is written here
//! against the raw tables and rollups of `schema/sql/`; pointing a name at the
//! cookbook's file later changes nothing else.
//!
//! ClickHouse 18.16 has no query parameters, so the filter's values are substituted as
//! literals here, escaped: numbers are formatted from integers, the one free string
//! (the sensor name) goes through [`quote`], addresses are formatted from `IpAddr`.

use std::fmt::Write as _;

use rstwatch_schema::RstFlag;

use super::filter::Filter;

/// One question the view asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    ResetRateByClass,
    ResetRateByCause,
    TopServices,
    RefusedHotspots,
    SuspectedInjections,
    IdleTimeouts,
    Anomalies,
    WeekOverWeek,
    SensorHealth,
    /// Not in the cookbook: headline totals, anomaly counts, and the rows pages.
    Totals,
    AnomalyKinds,
    CauseBreakdown,
    RstRows,
}

impl Query {
    /// Every query, the cookbook's first.
    pub const ALL: [Query; 13] = [
        Query::ResetRateByClass,
        Query::ResetRateByCause,
        Query::TopServices,
        Query::RefusedHotspots,
        Query::SuspectedInjections,
        Query::IdleTimeouts,
        Query::Anomalies,
        Query::WeekOverWeek,
        Query::SensorHealth,
        Query::Totals,
        Query::AnomalyKinds,
        Query::CauseBreakdown,
        Query::RstRows,
    ];

    /// The cookbook file name (without `.sql`) this query stands for.
    pub const fn name(self) -> &'static str {
        match self {
            Query::ResetRateByClass => "reset_rate_by_class",
            Query::ResetRateByCause => "reset_rate_by_cause",
            Query::TopServices => "top_services",
            Query::RefusedHotspots => "refused_hotspots",
            Query::SuspectedInjections => "suspected_injections",
            Query::IdleTimeouts => "idle_timeouts",
            Query::Anomalies => "anomalies",
            Query::WeekOverWeek => "week_over_week",
            Query::SensorHealth => "sensor_health",
            Query::Totals => "totals",
            Query::AnomalyKinds => "anomaly_kinds",
            Query::CauseBreakdown => "cause_breakdown",
            Query::RstRows => "rst_rows",
        }
    }
}

/// The SQL of `q` for filter `f`; `modern` picks the address literal of the dialect
/// (`IPv6` columns on servers >= 20.1, `FixedString(16)` before).
pub fn render(q: Query, f: &Filter, modern: bool) -> String {
    let s = Sql { f, modern };
    match q {
        Query::ResetRateByClass => s.rate("rst_minute", "class"),
        Query::ResetRateByCause => s.rate("rst_minute_cause", "cause"),
        Query::TopServices => s.top_services(),
        Query::RefusedHotspots => s.refused_hotspots(),
        Query::SuspectedInjections => s.suspected_injections(),
        Query::IdleTimeouts => s.idle_timeouts(),
        Query::Anomalies => s.anomalies(),
        Query::WeekOverWeek => s.week_over_week(),
        Query::SensorHealth => s.sensor_health(),
        Query::Totals => s.totals(),
        Query::AnomalyKinds => s.anomaly_kinds(),
        Query::CauseBreakdown => s.cause_breakdown(),
        Query::RstRows => s.rst_rows(),
    }
}

/// A ClickHouse string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Chart bucket for a range: about 60 bars, at least one minute (the rollups' grain),
/// rounded to a step people read easily.
pub fn bucket_seconds(range_s: i64) -> i64 {
    const STEPS: [i64; 10] = [60, 120, 300, 600, 900, 1800, 3600, 10_800, 21_600, 86_400];
    let want = range_s / 60;
    STEPS.into_iter().find(|s| *s >= want).unwrap_or(86_400)
}

/// Server side of an RST (the RST's sender when the responder sent it).
const SERVER: &str = "if(dir = 'resp', src, dst)";
const SERVER_PORT: &str = "if(dir = 'resp', sport, dport)";
const CLIENT: &str = "if(dir = 'resp', dst, src)";

fn addr(col: &str) -> String {
    format!("replaceRegexpOne(IPv6NumToString({col}), '^::ffff:', '')")
}

/// `ts_us` as `2026-12-01 14:00:00.123456` (UTC).
fn time_us(col: &str) -> String {
    format!(
        "concat(toString(toDateTime(intDiv({col}, 1000000), 'UTC')), '.', \
         substring(toString(1000000 + {col} % 1000000), 2))"
    )
}

/// The flag bit names, from `RstFlag` (never a second list to drift).
fn flag_names(col: &str) -> String {
    let bits: Vec<String> = RstFlag::ALL.iter().map(|f| f.bit().to_string()).collect();
    let names: Vec<String> = RstFlag::ALL.iter().map(|f| quote(f.as_str())).collect();
    format!(
        "arrayStringConcat(arrayMap(b -> transform(toUInt64(b), [{}], [{}], 'unknown'), \
         bitmaskToArray(toUInt64({col}))), ' ')",
        bits.join(", "),
        names.join(", ")
    )
}

struct Sql<'a> {
    f: &'a Filter,
    modern: bool,
}

impl Sql<'_> {
    fn addr_literal(&self, a: std::net::IpAddr) -> String {
        let text = match a {
            std::net::IpAddr::V4(v4) => format!("::ffff:{v4}"),
            std::net::IpAddr::V6(v6) => v6.to_string(),
        };
        if self.modern {
            format!("toIPv6('{text}')")
        } else {
            format!("toFixedString(IPv6StringToNum('{text}'), 16)")
        }
    }

    fn range(&self, col: &str, shift: i64) -> String {
        format!(
            "{col} >= toDateTime({}) AND {col} < toDateTime({})",
            self.f.from - shift,
            self.f.to - shift
        )
    }

    fn sensor(&self) -> String {
        match &self.f.sensor {
            Some(s) => format!(" AND sensor_id = {}", quote(s)),
            None => String::new(),
        }
    }

    fn port(&self, col: &str) -> String {
        match self.f.service_port {
            Some(p) => format!(" AND {col} = {p}"),
            None => String::new(),
        }
    }

    /// The WHERE of `rst_events` for this filter (`shift`: seconds earlier).
    fn rst_where(&self, shift: i64) -> String {
        let mut w = self.range("ts", shift) + &self.sensor() + &self.port(SERVER_PORT);
        if let Some(c) = self.f.cause {
            let _ = write!(w, " AND cause = {}", quote(c.as_str()));
        }
        if let Some(c) = self.f.class {
            let _ = write!(w, " AND class = {}", quote(c.as_str()));
        }
        if let Some(a) = self.f.server {
            let _ = write!(w, " AND {SERVER} = {}", self.addr_literal(a));
        }
        if self.f.suspect {
            w.push_str(" AND suspect = 1");
        }
        w
    }

    fn rate(&self, table: &str, by: &str) -> String {
        let step = bucket_seconds(self.f.seconds());
        format!(
            "SELECT intDiv(toUInt32(minute), {step}) * {step} AS t, toString({by}) AS {by}, \
             sum(rsts) AS rsts, sum(suspect_rsts) AS suspect_rsts \
             FROM {table} WHERE {}{}{} GROUP BY t, {by} ORDER BY t, {by}",
            self.range("minute", 0),
            self.sensor(),
            self.port("server_port")
        )
    }

    fn totals(&self) -> String {
        format!(
            "SELECT count() AS rsts, sum(suspect) AS suspect_rsts, \
             countIf(class = 'reject') AS refused, countIf(cause = 'idle_timeout') AS idle, \
             uniqExact({SERVER}, {SERVER_PORT}) AS services \
             FROM rst_events WHERE {}",
            self.rst_where(0)
        )
    }

    fn top_services(&self) -> String {
        format!(
            "SELECT {} AS server_addr, server_port, rsts, suspect_rsts, flows, \
             if(flows = 0, 0, round(rsts / flows, 3)) AS ratio, top_cause \
             FROM (SELECT {SERVER} AS server, {SERVER_PORT} AS server_port, count() AS rsts, \
             sum(suspect) AS suspect_rsts, topK(1)(toString(cause))[1] AS top_cause \
             FROM rst_events WHERE {} GROUP BY server, server_port) AS r \
             ANY LEFT JOIN (SELECT resp_h AS server, resp_p AS server_port, count() AS flows \
             FROM flows WHERE {}{}{} GROUP BY server, server_port) AS fl USING (server, server_port) \
             ORDER BY rsts DESC, server_addr, server_port LIMIT 15",
            addr("server"),
            self.rst_where(0),
            self.range("ts_end", 0),
            self.sensor(),
            self.port("resp_p")
        )
    }

    fn refused_hotspots(&self) -> String {
        format!(
            "SELECT {} AS server_addr, {SERVER_PORT} AS server_port, count() AS rsts, \
             uniqExact({CLIENT}) AS clients FROM rst_events \
             WHERE {} AND class = 'reject' GROUP BY {SERVER}, server_port \
             ORDER BY rsts DESC, server_addr, server_port LIMIT 10",
            addr(SERVER),
            self.rst_where(0)
        )
    }

    fn suspected_injections(&self) -> String {
        format!(
            "SELECT {} AS time, sensor_id, {} AS src_addr, sport, {} AS dst_addr, dport, \
             toString(class) AS class, {} AS evidence, ttl, cause_detail FROM rst_events \
             WHERE {} AND suspect = 1 ORDER BY ts_us DESC LIMIT 50",
            time_us("ts_us"),
            addr("src"),
            addr("dst"),
            flag_names("flags"),
            self.rst_where(0)
        )
    }

    /// Per server: the silence before its idle-timeout RSTs in whole seconds; the most
    /// frequent value is the device's timeout (a firewall forgets at one value).
    fn idle_timeouts(&self) -> String {
        format!(
            "SELECT {} AS server_addr, server_port, sum(n) AS rsts, \
             argMax(silence_s, n) AS timeout_estimate_s, max(n) AS at_estimate, \
             min(silence_s) AS min_silence_s, max(silence_s) AS max_silence_s \
             FROM (SELECT {SERVER} AS server, {SERVER_PORT} AS server_port, \
             intDiv(silence_ms, 1000) AS silence_s, count() AS n FROM rst_events \
             WHERE {} AND cause = 'idle_timeout' GROUP BY server, server_port, silence_s) \
             GROUP BY server, server_port ORDER BY rsts DESC, server_addr, server_port LIMIT 10",
            addr("server"),
            self.rst_where(0)
        )
    }

    fn anomaly_where(&self) -> String {
        let mut w = self.range("ts", 0) + &self.sensor();
        if let Some(k) = self.f.kind {
            let _ = write!(w, " AND kind = {}", quote(k.as_str()));
        }
        w
    }

    fn anomalies(&self) -> String {
        format!(
            "SELECT {} AS time, sensor_id, toString(kind) AS kind, subject, value, baseline, \
             detail FROM anomalies WHERE {} ORDER BY ts_us DESC LIMIT 200",
            time_us("ts_us"),
            self.anomaly_where()
        )
    }

    fn anomaly_kinds(&self) -> String {
        format!(
            "SELECT toString(kind) AS kind, count() AS anomalies, uniqExact(subject) AS subjects \
             FROM anomalies WHERE {} GROUP BY kind ORDER BY anomalies DESC, kind",
            self.anomaly_where()
        )
    }

    fn week_over_week(&self) -> String {
        const WEEK: i64 = 7 * 86_400;
        format!(
            "SELECT toString(cause) AS cause, countIf({}) AS current, countIf({}) AS previous \
             FROM rst_events WHERE (({}) OR ({})){}{} GROUP BY cause \
             ORDER BY current DESC, previous DESC, cause",
            self.range("ts", 0),
            self.range("ts", WEEK),
            self.range("ts", 0),
            self.range("ts", WEEK),
            self.sensor(),
            self.port(SERVER_PORT)
        )
    }

    fn cause_breakdown(&self) -> String {
        format!(
            "SELECT cause, rsts, suspect_rsts, example, remedy FROM \
             (SELECT toString(cause) AS cause, count() AS rsts, sum(suspect) AS suspect_rsts, \
             argMin(cause_detail, ts_us) AS example FROM rst_events WHERE {} GROUP BY cause) AS r \
             ANY LEFT JOIN (SELECT toString(cause) AS cause, remedy FROM cause_remedies) AS c \
             USING (cause) ORDER BY rsts DESC, cause",
            self.rst_where(0)
        )
    }

    /// Counters that say whether a sensor keeps up, latest value in the range, with the
    /// batches it delivered in the range, the newest one's arrival and its age now (a
    /// sensor that fell behind or went quiet shows a growing age).
    fn sensor_health(&self) -> String {
        format!(
            "SELECT sensor_id, name, value, batches, last_batch, last_batch_age_s FROM \
             (SELECT sensor_id, name, argMax(value, ts_us) AS value FROM sensor_stats \
             WHERE {}{} AND (name IN ('frames', 'rst', 'rejected', 'flows_evicted') \
             OR match(name, 'drop|full|lost|spool|backlog')) GROUP BY sensor_id, name) AS s \
             ANY LEFT JOIN (SELECT sensor_id, count() AS batches, \
             toString(max(received)) AS last_batch, \
             toInt64(toUInt32(now())) - toInt64(toUInt32(max(received))) AS last_batch_age_s \
             FROM batches WHERE {}{} GROUP BY sensor_id) AS b \
             USING (sensor_id) ORDER BY sensor_id, name",
            self.range("ts", 0),
            self.sensor(),
            self.range("received", 0),
            self.sensor()
        )
    }

    fn rst_rows(&self) -> String {
        format!(
            "SELECT {} AS time, sensor_id, {} AS src_addr, sport, {} AS dst_addr, dport, \
             toString(dir) AS dir, toString(class) AS class, toString(cause) AS cause, \
             {} AS flag_names, ttl, silence_ms, cause_detail FROM rst_events WHERE {} \
             ORDER BY ts_us DESC LIMIT 1000",
            time_us("ts_us"),
            addr("src"),
            addr("dst"),
            flag_names("flags"),
            self.rst_where(0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_names_cannot_break_out_of_their_literal() {
        assert_eq!(quote(r"a'b\c"), r"'a\'b\\c'");
        let f = Filter {
            from: 0,
            to: 60,
            sensor: Some("x' OR 1=1 --".into()),
            ..Filter::default()
        };
        let sql = render(Query::Totals, &f, false);
        assert!(sql.contains(r"sensor_id = 'x\' OR 1=1 --'"), "{sql}");
    }

    #[test]
    fn buckets_are_about_sixty_per_range_and_never_below_a_minute() {
        assert_eq!(bucket_seconds(600), 60);
        assert_eq!(bucket_seconds(3600), 60);
        assert_eq!(bucket_seconds(86_400), 1800);
        assert_eq!(bucket_seconds(7 * 86_400), 10_800);
        assert_eq!(bucket_seconds(366 * 86_400), 86_400);
    }
}
