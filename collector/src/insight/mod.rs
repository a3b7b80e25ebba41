//! Query the data and shape it: what the SOC view (`web`) and the report (`report`)
//! both show. One place runs the SQL of [`queries`] and returns plain tables; the two
//! renderers only format them.

pub mod filter;
pub mod queries;

use anyhow::Context;
use clickhouse::Client;
use serde_json::Value;

use crate::ch::{base_client, ChConfig};
pub use filter::Filter;
pub use queries::Query;

/// A read-only handle on the rstwatch database.
#[derive(Clone)]
pub struct Insight {
    client: Client,
    modern: bool,
}

/// Column names and rows of one query result; cells are JSON values (numbers are
/// numbers: 64-bit integers are not quoted).
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Column names, in the query's order.
    pub columns: Vec<String>,
    /// One vector of cells per row, in `columns` order.
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// The index of column `name`.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Cell `name` of row `r` as a number (0 when absent or not numeric).
    pub fn num(&self, r: usize, name: &str) -> f64 {
        self.col(name)
            .and_then(|c| self.rows.get(r)?.get(c))
            .map(as_f64)
            .unwrap_or(0.0)
    }

    /// Cell `name` of row `r`, a ClickHouse `DateTime` in UTC (`2026-12-01 14:00:00`),
    /// as seconds since the epoch; `None` when absent or not a time.
    pub fn epoch(&self, r: usize, name: &str) -> Option<i64> {
        let text = self.text(r, name);
        let us = rstwatch_schema::timefmt::parse_rfc3339_micros(&format!(
            "{}Z",
            text.replacen(' ', "T", 1)
        ))?;
        Some(us.div_euclid(1_000_000))
    }

    /// Cell `name` of row `r` as text.
    pub fn text(&self, r: usize, name: &str) -> String {
        self.col(name)
            .and_then(|c| self.rows.get(r)?.get(c))
            .map(cell_text)
            .unwrap_or_default()
    }
}

/// A cell as a number: JSON numbers and numeric strings (64-bit integers arrive
/// quoted); anything else is 0.
pub fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A cell as people read it: strings bare, numbers without a needless `.0`, arrays
/// as a comma list (tuples inside them as `a:b`, e.g. a silence histogram `350:7`).
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Array(t) => t.iter().map(cell_text).collect::<Vec<_>>().join(":"),
                other => cell_text(other),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

impl Insight {
    /// Connects to the database of `c` and reads the server version (for the dialect).
    pub async fn connect(c: &ChConfig) -> anyhow::Result<Insight> {
        let client = base_client(c).with_database(c.database.clone());
        let version: String = client
            .query("SELECT version()")
            .fetch_one()
            .await
            .with_context(|| format!("ClickHouse at {} does not answer", c.url))?;
        let d = rstwatch_schema::sql::Dialect::from_version(&version, 0)
            .with_context(|| format!("unrecognised ClickHouse version {version:?}"))?;
        Ok(Insight {
            client,
            modern: d.modern(),
        })
    }

    /// The SQL `q` runs for `f` (shown under each table for analysts who want it).
    pub fn sql(&self, q: Query, f: &Filter) -> anyhow::Result<String> {
        queries::render(q, f, self.modern)
    }

    /// Runs query `q` for `f`.
    pub async fn fetch(&self, q: Query, f: &Filter) -> anyhow::Result<Table> {
        let sql = self.sql(q, f)?;
        // No per-query settings: a user in a `readonly=1` profile may change none.
        let bytes = self
            .client
            .query(&sql)
            .fetch_bytes("JSONCompact")?
            .collect()
            .await
            .with_context(|| format!("query {}", q.name()))?;
        parse_json_compact(&bytes).with_context(|| format!("reading the result of {}", q.name()))
    }
}

/// ClickHouse's `JSONCompact` output: `{"meta": [{"name": .., "type": ..}], "data":
/// [[..]]}`. 64-bit integers arrive quoted (the server default, kept so a read-only
/// user works): they are turned back into numbers by their column type.
fn parse_json_compact(bytes: &[u8]) -> anyhow::Result<Table> {
    #[derive(serde::Deserialize)]
    struct Meta {
        name: String,
        #[serde(rename = "type")]
        ty: String,
    }
    #[derive(serde::Deserialize)]
    struct Out {
        meta: Vec<Meta>,
        data: Vec<Vec<Value>>,
    }
    let mut out: Out = serde_json::from_slice(bytes)?;
    let quoted: Vec<bool> = out
        .meta
        .iter()
        .map(|m| {
            m.ty.trim_start_matches("Nullable(").starts_with("UInt64")
                || m.ty.trim_start_matches("Nullable(").starts_with("Int64")
        })
        .collect();
    for row in &mut out.data {
        for (cell, q) in row.iter_mut().zip(&quoted) {
            if let (true, Value::String(s)) = (*q, &*cell) {
                if let Ok(n) = s.parse::<i64>() {
                    *cell = Value::from(n);
                } else if let Ok(n) = s.parse::<u64>() {
                    *cell = Value::from(n);
                }
            }
        }
    }
    Ok(Table {
        columns: out.meta.into_iter().map(|m| m.name).collect(),
        rows: out.data,
    })
}

/// Everything the overview page and the report show, for one filter.
pub struct Overview {
    /// The range and filters these answers are for.
    pub filter: Filter,
    /// Headline numbers (`Query::Totals`).
    pub totals: Table,
    /// RSTs per bucket and class (`reset_rate_by_class.sql`).
    pub by_class: Table,
    /// RSTs per bucket and cause (`reset_rate_by_cause.sql`).
    pub by_cause: Table,
    /// Causes with share, example and remedy (`Query::CauseBreakdown`).
    pub causes: Table,
    /// `top_services.sql`.
    pub top_services: Table,
    /// `refused_hotspots.sql`.
    pub refused: Table,
    /// `suspected_injections.sql`.
    pub injections: Table,
    /// `idle_timeouts.sql`, with the estimated firewall timeout.
    pub idle: Table,
    /// Anomaly counts per kind (`Query::AnomalyKinds`).
    pub anomaly_kinds: Table,
    /// `anomalies.sql`: one row per episode.
    pub anomalies: Table,
    /// `week_over_week.sql`.
    pub week_over_week: Table,
    /// `sensor_health.sql`.
    pub sensor_health: Table,
}

impl Overview {
    /// The cause breakdown with a `previous` column: the same cause's RSTs in the same
    /// range a week earlier (from `week_over_week`).
    pub fn causes_with_previous(&self) -> Table {
        let wow = &self.week_over_week;
        let mut t = self.causes.clone();
        t.columns.push("previous".into());
        for r in 0..t.rows.len() {
            let cause = t.text(r, "cause");
            let p = (0..wow.rows.len())
                .find(|w| wow.text(*w, "cause") == cause)
                .map_or(0.0, |w| wow.num(w, "previous_rsts"));
            t.rows[r].push(Value::from(p));
        }
        t
    }

    /// Runs every query of the overview (concurrently: each is one HTTP request).
    pub async fn load(i: &Insight, f: &Filter) -> anyhow::Result<Overview> {
        let f = f.base();
        let (totals, by_class, by_cause, causes, top_services, refused, injections) = tokio::try_join!(
            i.fetch(Query::Totals, &f),
            i.fetch(Query::ResetRateByClass, &f),
            i.fetch(Query::ResetRateByCause, &f),
            i.fetch(Query::CauseBreakdown, &f),
            i.fetch(Query::TopServices, &f),
            i.fetch(Query::RefusedHotspots, &f),
            i.fetch(Query::SuspectedInjections, &f),
        )?;
        let (idle, anomaly_kinds, anomalies, week_over_week, sensor_health) = tokio::try_join!(
            i.fetch(Query::IdleTimeouts, &f),
            i.fetch(Query::AnomalyKinds, &f),
            i.fetch(Query::Anomalies, &f),
            i.fetch(Query::WeekOverWeek, &f),
            i.fetch(Query::SensorHealth, &f),
        )?;
        Ok(Overview {
            filter: f,
            totals,
            by_class,
            by_cause,
            causes,
            top_services,
            refused,
            injections,
            idle,
            anomaly_kinds,
            anomalies,
            week_over_week,
            sensor_health,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_64_bit_integers_become_numbers_strings_stay_strings() {
        let t = parse_json_compact(
            br#"{"meta":[{"name":"n","type":"UInt64"},{"name":"s","type":"String"},{"name":"i","type":"Int64"}],
                "data":[["18446744073709551615","7",{"x":1}],["3","x","-5"]],"rows":2}"#,
        )
        .unwrap();
        assert_eq!(t.rows[0][0], Value::from(u64::MAX));
        assert_eq!(t.rows[0][1], Value::from("7"));
        assert_eq!(t.rows[1][0], Value::from(3));
        assert_eq!(t.rows[1][2], Value::from(-5));
        assert_eq!(t.num(1, "n"), 3.0);
        assert_eq!(t.text(1, "s"), "x");
    }

    #[test]
    fn cookbook_times_and_arrays_read_as_people_write_them() {
        let t = parse_json_compact(
            br#"{"meta":[{"name":"time","type":"DateTime('UTC')"},{"name":"h","type":"Array(Tuple(UInt64, UInt64))"}],
                "data":[["2026-12-01 14:05:00",[["350","7"],["351","1"]]],["nope",[]]],"rows":2}"#,
        )
        .unwrap();
        assert_eq!(t.epoch(0, "time"), Some(1_796_133_900));
        assert_eq!(t.epoch(1, "time"), None);
        assert_eq!(t.text(0, "h"), "350:7, 351:1");
    }
}
