//! Every SQL statement the SOC view and the report run, keyed by the cookbook's file
//! names. A question the cookbook answers (`schema/queries/<name>.sql`) runs the
//! cookbook's file, bound by `rstwatch_schema::cookbook::bound`: the view, the report,
//! Grafana and an analyst at `clickhouse-client` get the same answer from the same SQL.
//!
//! The few statements written here are the ones the cookbook's common parameters
//! (range, sensor, service port) cannot express: the rows pages narrow by cause,
//! class, anomaly kind, server address and suspect flag, and the headline totals and
//! the cause breakdown are counted under that same narrowing so a number and the rows
//! behind it always agree. ClickHouse 18.16 has no query parameters, so their filter
//! values are substituted as literals, escaped: numbers are formatted from integers,
//! the one free string (the sensor name) goes through [`quote`], addresses are
//! formatted from `IpAddr`.

use std::fmt::Write as _;

use anyhow::Context;
use rstwatch_schema::{cookbook, RstFlag};

use super::filter::Filter;

/// One question the view asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// `reset_rate_by_class.sql`.
    ResetRateByClass,
    /// `reset_rate_by_cause.sql`.
    ResetRateByCause,
    /// `top_services.sql`.
    TopServices,
    /// `refused_hotspots.sql`.
    RefusedHotspots,
    /// `suspected_injections.sql`.
    SuspectedInjections,
    /// `idle_timeouts.sql`.
    IdleTimeouts,
    /// `anomalies.sql`.
    Anomalies,
    /// `week_over_week.sql`.
    WeekOverWeek,
    /// `sensor_health.sql`.
    SensorHealth,
    /// Not in the cookbook (they take the rows pages' narrowing, see the module
    /// comment): headline totals, anomaly counts per kind, causes with remedies, and
    /// the RST and anomaly rows behind a number.
    Totals,
    /// Anomaly rows per kind.
    AnomalyKinds,
    /// Causes with share, the same range a week before, first example and remedy.
    CauseBreakdown,
    /// The RST rows behind a number.
    RstRows,
    /// The anomaly rows behind a number.
    AnomalyRows,
}

impl Query {
    /// Every query, the cookbook's first.
    pub const ALL: [Query; 14] = [
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
        Query::AnomalyRows,
    ];

    /// The cookbook file name (without `.sql`) this query stands for, or the view's
    /// own name for the few written here.
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
            Query::AnomalyRows => "anomaly_rows",
        }
    }

    /// Whether this query is a cookbook file.
    pub fn in_cookbook(self) -> bool {
        cookbook::query(self.name()).is_some()
    }
}

/// The SQL of `q` for filter `f`; `modern` picks the address literal of the dialect
/// (`IPv6` columns on servers >= 20.1, `FixedString(16)` before). Cookbook queries
/// see only the range, sensor and port of `f` (the overview's filter).
pub fn render(q: Query, f: &Filter, modern: bool) -> anyhow::Result<String> {
    if q.in_cookbook() {
        return cookbook::bound(q.name(), &f.params()?)
            .with_context(|| format!("binding cookbook query {}", q.name()));
    }
    let s = Sql { f, modern };
    Ok(match q {
        Query::Totals => s.totals(),
        Query::AnomalyKinds => s.anomaly_kinds(),
        Query::CauseBreakdown => s.cause_breakdown(),
        Query::RstRows => s.rst_rows(),
        Query::AnomalyRows => s.anomaly_rows(),
        other => anyhow::bail!("{} is missing from the cookbook", other.name()),
    })
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

/// Server side of an RST (the RST's sender when the responder sent it).
const SERVER: &str = "if(dir = 'resp', src, dst)";
const SERVER_PORT: &str = "if(dir = 'resp', sport, dport)";

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

    fn range(&self, col: &str) -> String {
        format!(
            "{col} >= toDateTime({}) AND {col} < toDateTime({})",
            self.f.from, self.f.to
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

    /// The WHERE of `rst_events` for this filter.
    fn rst_where(&self) -> String {
        let mut w = self.range("ts") + &self.sensor() + &self.port(SERVER_PORT);
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

    fn totals(&self) -> String {
        format!(
            "SELECT count() AS rsts, sum(suspect) AS suspect_rsts, \
             countIf(class = 'reject') AS refused, countIf(cause = 'idle_timeout') AS idle, \
             uniqExact({SERVER}, {SERVER_PORT}) AS services \
             FROM rst_events WHERE {}",
            self.rst_where()
        )
    }

    fn anomaly_where(&self) -> String {
        let mut w = self.range("ts") + &self.sensor();
        if let Some(k) = self.f.kind {
            let _ = write!(w, " AND kind = {}", quote(k.as_str()));
        }
        w
    }

    fn anomaly_rows(&self) -> String {
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

    fn cause_breakdown(&self) -> String {
        format!(
            "SELECT cause, rsts, suspect_rsts, example, remedy FROM \
             (SELECT toString(cause) AS cause, count() AS rsts, sum(suspect) AS suspect_rsts, \
             argMin(cause_detail, ts_us) AS example FROM rst_events WHERE {} GROUP BY cause) AS r \
             ANY LEFT JOIN (SELECT toString(cause) AS cause, remedy FROM cause_remedies) AS c \
             USING (cause) ORDER BY rsts DESC, cause",
            self.rst_where()
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
            self.rst_where()
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
        let sql = render(Query::Totals, &f, false).unwrap();
        assert!(sql.contains(r"sensor_id = 'x\' OR 1=1 --'"), "{sql}");
    }

    #[test]
    fn cookbook_names_run_the_cookbook_files_bound() {
        let f = Filter {
            from: 1_767_225_600,
            to: 1_767_229_200,
            sensor: Some("edge-1".into()),
            service_port: Some(443),
            ..Filter::default()
        };
        let mut cookbook_names = 0;
        for q in Query::ALL {
            let sql = render(q, &f, false).unwrap();
            if let Some(file) = cookbook::query(q.name()) {
                cookbook_names += 1;
                let want = cookbook::bound(q.name(), &f.params().unwrap()).unwrap();
                assert_eq!(sql, want, "{}", q.name());
                assert_ne!(sql, file, "{} left unbound", q.name());
                assert!(sql.contains("'edge-1'") && sql.contains("toUInt16(443)"));
            }
        }
        assert_eq!(cookbook_names, 9);
    }
}
