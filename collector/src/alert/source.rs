//! What the alerter reads from ClickHouse: anomaly rows of batches in the ledger since
//! a cursor, and threshold rules' results. Read-only; SQL that 18.16 and current
//! servers both run.

use anyhow::Context;
use serde::Deserialize;

use super::config::Rule;
use super::model::{Alert, Origin, Severity};

/// One `anomalies` row with the ledger time of its batch.
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub(super) struct AnomalyRow {
    pub received: u32,
    pub sensor_id: String,
    pub boot_id: u64,
    pub batch_seq: u64,
    pub ts_us: i64,
    /// `kind` as text (an alias of its own name would be cyclic on old servers).
    pub kind_name: String,
    pub subject: String,
    pub value: f64,
    pub baseline: f64,
    pub detail: String,
}

impl AnomalyRow {
    /// The batch that delivered it: the unit the alerter marks as handled.
    pub(super) fn batch_key(&self) -> String {
        format!("{}/{}/{}", self.sensor_id, self.boot_id, self.batch_seq)
    }

    pub(super) fn alert(&self) -> Alert {
        Alert {
            origin: Origin::Anomaly,
            rule: self.kind_name.clone(),
            sensor_id: self.sensor_id.clone(),
            subject: self.subject.clone(),
            severity: Severity::of_anomaly(&self.kind_name),
            starts_us: self.ts_us,
            last_us: self.ts_us,
            value: self.value,
            baseline: self.baseline,
            detail: self.detail.clone(),
            rows: 1,
        }
    }
}

#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
struct RuleRow {
    subject: String,
    value: f64,
}

/// Read access for the alerter.
#[derive(Clone)]
pub(super) struct Source {
    client: clickhouse::Client,
    db: String,
}

/// The ledger row is written after the batch's data rows, so a batch visible in the
/// ledger has all its anomalies visible too. A batch resent after a lost ack has one
/// ledger row per delivery at most once (the collector dedups), but GROUP BY keeps the
/// join one-to-one even if a ledger row were doubled.
const NEW_ANOMALIES: &str = "\
SELECT first_received AS received, sensor_id, boot_id, batch_seq, ts_us, toString(kind) AS kind_name, \
       subject, value, baseline, detail \
FROM anomalies \
ALL INNER JOIN ( \
    SELECT sensor_id, boot_id, seq AS batch_seq, min(received) AS first_received \
    FROM batches WHERE received >= ? AND anomalies > 0 \
    GROUP BY sensor_id, boot_id, seq \
) AS ledger USING (sensor_id, boot_id, batch_seq) \
ORDER BY first_received, sensor_id, boot_id, batch_seq, ts_us";

/// The anomaly poll as text, with the cursor in place (for checks on other servers;
/// the alerter binds the cursor).
pub fn poll_sql(cursor: u32) -> String {
    NEW_ANOMALIES.replace('?', &cursor.to_string())
}

/// A threshold rule's query as the alerter runs it: the user's SELECT, typed and
/// filtered (inner aliases differ from the outer names: 18.16 calls `x AS x` cyclic).
pub fn rule_sql(db: &str, sql: &str, above: f64) -> String {
    let inner = sql.replace("{{DB}}", &format!("`{db}`"));
    format!(
        "SELECT toString(s) AS subject, toFloat64(v) AS value \
         FROM (SELECT subject AS s, value AS v FROM ({inner})) WHERE v > {above}"
    )
}

impl Source {
    pub(super) fn new(cfg: &crate::ch::ChConfig) -> Source {
        Source {
            client: crate::ch::base_client(cfg).with_database(cfg.database.clone()),
            db: cfg.database.clone(),
        }
    }

    /// Anomaly rows of batches received at or after `cursor` (seconds).
    pub(super) async fn anomalies_since(&self, cursor: u32) -> anyhow::Result<Vec<AnomalyRow>> {
        self.client
            .query(NEW_ANOMALIES)
            .bind(cursor)
            .fetch_all::<AnomalyRow>()
            .await
            .context("reading new anomalies")
    }

    /// Subjects whose value is above the rule's line now.
    pub(super) async fn evaluate(&self, rule: &Rule, now_us: i64) -> anyhow::Result<Vec<Alert>> {
        let sql = rule_sql(&self.db, &rule.sql, rule.above);
        let rows = self
            .client
            .query(&sql)
            .fetch_all::<RuleRow>()
            .await
            .with_context(|| format!("rule {}", rule.name))?;
        Ok(rows
            .into_iter()
            .map(|r| Alert {
                origin: Origin::Threshold,
                rule: rule.name.clone(),
                sensor_id: String::new(),
                detail: format!("{} = {} is above {}", rule.name, r.value, rule.above),
                subject: r.subject,
                severity: rule.severity,
                starts_us: now_us,
                last_us: now_us,
                value: r.value,
                baseline: rule.above,
                rows: 1,
            })
            .collect())
    }
}
