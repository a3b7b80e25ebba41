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
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
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

    /// Cell `name` of row `r` as text.
    pub fn text(&self, r: usize, name: &str) -> String {
        self.col(name)
            .and_then(|c| self.rows.get(r)?.get(c))
            .map(cell_text)
            .unwrap_or_default()
    }
}

pub fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A cell as people read it: strings bare, numbers without a needless `.0`.
pub fn cell_text(v: &Value) -> String {
    match v {
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
    pub fn sql(&self, q: Query, f: &Filter) -> String {
        queries::render(q, f, self.modern)
    }

    /// Runs query `q` for `f`.
    pub async fn fetch(&self, q: Query, f: &Filter) -> anyhow::Result<Table> {
        let sql = self.sql(q, f);
        let bytes = self
            .client
            .query(&sql)
            .with_setting("output_format_json_quote_64bit_integers", "0")
            .with_setting("readonly", "2")
            .fetch_bytes("JSONCompact")?
            .collect()
            .await
            .with_context(|| format!("query {}", q.name()))?;
        parse_json_compact(&bytes).with_context(|| format!("reading the result of {}", q.name()))
    }
}

/// ClickHouse's `JSONCompact` output: `{"meta": [{"name": ..}], "data": [[..]]}`.
fn parse_json_compact(bytes: &[u8]) -> anyhow::Result<Table> {
    #[derive(serde::Deserialize)]
    struct Meta {
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Out {
        meta: Vec<Meta>,
        data: Vec<Vec<Value>>,
    }
    let out: Out = serde_json::from_slice(bytes)?;
    Ok(Table {
        columns: out.meta.into_iter().map(|m| m.name).collect(),
        rows: out.data,
    })
}

/// Everything the overview page and the report show, for one filter.
pub struct Overview {
    pub filter: Filter,
    pub totals: Table,
    pub by_class: Table,
    pub by_cause: Table,
    pub causes: Table,
    pub top_services: Table,
    pub refused: Table,
    pub injections: Table,
    pub idle: Table,
    pub anomaly_kinds: Table,
    pub anomalies: Table,
    pub week_over_week: Table,
    pub sensor_health: Table,
}

impl Overview {
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
