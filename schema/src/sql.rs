//! What lands in ClickHouse: versioned migrations (`schema/sql/NNN_*.sql`) and the
//! canonical queries (`schema/queries/*.sql`), rendered for the server's version.
//!
//! The same files must work on Debian's ClickHouse 18.16 and on current ClickHouse;
//! where a modern feature matters (IPv6 type, LowCardinality, codecs, TTL, insert
//! deduplication on plain MergeTree) a placeholder is rendered by [`Dialect`].

use crate::{AnomalyKind, Cause, CloseReason, ConnState, Dir, RstClass};

/// One versioned migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Schema version this migration creates.
    pub version: u32,
    /// Short name (file name without extension).
    pub name: &'static str,
    /// The DDL, with `{db}` and dialect placeholders.
    pub sql: &'static str,
}

/// Every migration this build knows, in order. Append; never edit an applied one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_initial",
        sql: include_str!("../sql/001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "002_causes",
        sql: include_str!("../sql/002_causes.sql"),
    },
    Migration {
        version: 3,
        name: "003_encap",
        sql: include_str!("../sql/003_encap.sql"),
    },
    Migration {
        version: 4,
        name: "004_rollup_hour",
        sql: include_str!("../sql/004_rollup_hour.sql"),
    },
];

/// The hourly rollup (`rst_hour`, migration 4) is kept at least this many days, or the
/// raw retention when that is longer (on servers with TTL; see 004_rollup_hour.sql).
pub const ROLLUP_HOUR_DAYS: u32 = 400;

/// The newest schema version this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// The SQL cookbook shipped for analysts, dashboards, the web view and the report
/// (name = file name without `.sql`, SQL). They use unqualified table names (run them
/// with the rstwatch database as the default) and `{name:Type}` query parameters:
/// bind them with [`crate::cookbook::bind`]. Documented in `schema/README.md`.
pub const QUERIES: &[(&str, &str)] = &[
    (
        "reset_rate_by_class",
        include_str!("../queries/reset_rate_by_class.sql"),
    ),
    (
        "reset_rate_by_cause",
        include_str!("../queries/reset_rate_by_cause.sql"),
    ),
    ("top_services", include_str!("../queries/top_services.sql")),
    (
        "refused_hotspots",
        include_str!("../queries/refused_hotspots.sql"),
    ),
    (
        "suspected_injections",
        include_str!("../queries/suspected_injections.sql"),
    ),
    (
        "idle_timeouts",
        include_str!("../queries/idle_timeouts.sql"),
    ),
    ("anomalies", include_str!("../queries/anomalies.sql")),
    (
        "week_over_week",
        include_str!("../queries/week_over_week.sql"),
    ),
    (
        "sensor_health",
        include_str!("../queries/sensor_health.sql"),
    ),
    (
        "resets_by_cause",
        include_str!("../queries/resets_by_cause.sql"),
    ),
    ("scan_sources", include_str!("../queries/scan_sources.sql")),
    ("conn_states", include_str!("../queries/conn_states.sql")),
];

/// The tables that carry data rows with a `(sensor_id, boot_id, batch_seq)` origin.
pub const DATA_TABLES: &[&str] = &["rst_events", "flows", "anomalies", "sensor_stats"];

/// Every table with day partitions (retention drops them on servers without TTL).
pub const ALL_TABLES: &[&str] = &[
    "rst_events",
    "flows",
    "anomalies",
    "sensor_stats",
    "batches",
    "rst_minute",
    "rst_minute_cause",
];

/// The `flows.cause` value of a flow that no RST closed (`FlowRecord::cause == None`).
pub const NO_CAUSE_CODE: i8 = -1;

/// The `flows.cause` code of a flow record: the cause's own code, or
/// [`NO_CAUSE_CODE`] when no RST closed it.
pub fn flow_cause_code(cause: Option<Cause>) -> i8 {
    cause.map_or(NO_CAUSE_CODE, |c| c.code() as i8)
}

/// The statements that make `cause_remedies` match this build's [`Cause`] exactly
/// (`migrate` runs them every time): empty it, then one row per cause from
/// `meaning()` / `remedy()`, `precedence` = the rule order.
pub fn cause_remedies_refresh(db: &str) -> Vec<String> {
    let rows: Vec<String> = Cause::ALL
        .iter()
        .map(|c| {
            format!(
                "('{}', {}, {}, {})",
                c.as_str(),
                sql_string(c.meaning()),
                sql_string(c.remedy()),
                c.code()
            )
        })
        .collect();
    vec![
        format!("TRUNCATE TABLE {db}.cause_remedies"),
        format!(
            "INSERT INTO {db}.cause_remedies (cause, meaning, remedy, precedence) VALUES {}",
            rows.join(", ")
        ),
    ]
}

/// A ClickHouse string literal (backslash and quote escaped).
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// How to render the schema for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    /// Server version, major and minor (`SELECT version()`).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Keep data this many days (0: forever).
    pub retention_days: u32,
}

impl Dialect {
    /// Parses `SELECT version()` output such as `18.16.1` or `26.9.1.1`.
    pub fn from_version(v: &str, retention_days: u32) -> Option<Dialect> {
        let mut it = v.trim().split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        Some(Dialect {
            major,
            minor,
            retention_days,
        })
    }

    /// True for servers with the modern features (IPv6 type, LowCardinality, codecs,
    /// TTL). 20.1 is a conservative line: each arrived in 19.x.
    pub fn modern(&self) -> bool {
        (self.major, self.minor) >= (20, 1)
    }

    /// `insert_deduplication_token` plus `non_replicated_deduplication_window` (22.2+).
    pub fn has_dedup_token(&self) -> bool {
        (self.major, self.minor) >= (22, 2)
    }

    /// TTL clauses are rendered (else the collector drops old day partitions itself).
    pub fn has_ttl(&self) -> bool {
        self.modern()
    }

    /// Renders a SQL text for this server and database.
    pub fn render(&self, sql: &str, db: &str) -> String {
        let mut out = sql.replace("{{DB}}", db);
        for (placeholder, value) in self.substitutions() {
            out = out.replace(placeholder, &value);
        }
        let rollup_days = self.retention_days.max(ROLLUP_HOUR_DAYS);
        out = self.render_ttl(out, "{{TTL_ROLLUP_HOUR:", rollup_days);
        self.render_ttl(out, "{{TTL:", self.retention_days)
    }

    /// Every `{{NAME}}` placeholder but `{{DB}}` and `{{TTL:col}}`, with its rendering.
    fn substitutions(&self) -> Vec<(&'static str, String)> {
        let modern = self.modern();
        let pick = |new: &str, old: &str| if modern { new } else { old }.to_string();
        let dedup = if self.has_dedup_token() {
            "SETTINGS non_replicated_deduplication_window = 10000"
        } else {
            ""
        };
        vec![
            ("{{ADDR}}", pick("IPv6", "FixedString(16)")),
            ("{{LC}}", pick("LowCardinality(String)", "String")),
            ("{{CODEC_TS}}", pick("CODEC(DoubleDelta, ZSTD)", "")),
            ("{{MT_SETTINGS}}", dedup.to_string()),
            ("{{ROLLUP_HOUR_DAYS}}", ROLLUP_HOUR_DAYS.to_string()),
            (
                "{{ADD_COLUMN}}",
                pick("ADD COLUMN IF NOT EXISTS", "ADD COLUMN"),
            ),
            (
                "{{ENUM:Dir}}",
                enum8(names(Dir::ALL, Dir::as_str, Dir::code)),
            ),
            (
                "{{ENUM:RstClass}}",
                enum8(names(RstClass::ALL, RstClass::as_str, RstClass::code)),
            ),
            (
                "{{ENUM:ConnState}}",
                enum8(names(ConnState::ALL, ConnState::as_str, ConnState::code)),
            ),
            (
                "{{ENUM:CloseReason}}",
                enum8(names(
                    CloseReason::ALL,
                    CloseReason::as_str,
                    CloseReason::code,
                )),
            ),
            (
                "{{ENUM:AnomalyKind}}",
                enum8(names(
                    AnomalyKind::ALL,
                    AnomalyKind::as_str,
                    AnomalyKind::code,
                )),
            ),
            (
                "{{ENUM:Cause}}",
                enum8(names(Cause::ALL, Cause::as_str, Cause::code)),
            ),
            (
                "{{ENUM:FlowCause}}",
                enum8(
                    std::iter::once(("", NO_CAUSE_CODE))
                        .chain(names(Cause::ALL, Cause::as_str, Cause::code))
                        .collect(),
                ),
            ),
        ]
    }

    /// `{{TTL:column}}` (and `{{TTL_ROLLUP_HOUR:column}}`, `prefix` saying which): a
    /// TTL clause of `days` when the server has TTL and a retention is set.
    fn render_ttl(&self, mut out: String, prefix: &str, days: u32) -> String {
        while let Some(start) = out.find(prefix) {
            let Some(end_rel) = out[start..].find("}}") else {
                break;
            };
            let col = out[start + prefix.len()..start + end_rel].to_string();
            let clause = if self.has_ttl() && self.retention_days > 0 {
                format!("TTL {col} + INTERVAL {days} DAY")
            } else {
                String::new()
            };
            out.replace_range(start..start + end_rel + 2, &clause);
        }
        out
    }
}

/// (name, code) of every value of a schema enum, codes as `Enum8` wants them.
fn names<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    code: fn(T) -> u8,
) -> Vec<(&'static str, i8)> {
    all.iter().map(|&v| (name(v), code(v) as i8)).collect()
}

fn enum8(vals: Vec<(&str, i8)>) -> String {
    let parts: Vec<String> = vals.iter().map(|(n, c)| format!("'{n}' = {c}")).collect();
    format!("Enum8({})", parts.join(", "))
}

/// Splits a rendered migration into statements (a `;` ending a line ends one) and
/// drops comment-only lines.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let t = line.trim();
        if t.starts_with("--") || t.is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if t.ends_with(';') {
            let s = cur.trim().trim_end_matches(';').trim().to_string();
            if !s.is_empty() {
                out.push(s);
            }
            cur.clear();
        }
    }
    let s = cur.trim().trim_end_matches(';').trim().to_string();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(version: &str, retention_days: u32, m: &Migration) -> Vec<String> {
        let d = Dialect::from_version(version, retention_days).unwrap();
        statements(&d.render(m.sql, "rstwatch"))
    }

    #[test]
    fn renders_both_dialects_without_placeholders() {
        for (v, modern) in [("18.16.1", false), ("26.9.1.1", true)] {
            for m in MIGRATIONS {
                for st in rendered(v, 30, m) {
                    assert!(!st.contains("{{"), "{v}: {st}");
                }
            }
            let r = rendered(v, 30, &MIGRATIONS[0]).join(";\n");
            assert_eq!(r.contains(" IPv6,"), modern);
            assert_eq!(r.contains("TTL "), modern);
            assert!(r.contains("Enum8('reject' = 0, 'handshake_abort' = 1"));
            assert_eq!(rendered(v, 30, &MIGRATIONS[0]).len(), 7);
            let r = rendered(v, 30, &MIGRATIONS[1]);
            assert_eq!(r.len(), 7);
            let r = r.join(";\n");
            assert_eq!(r.contains("ADD COLUMN IF NOT EXISTS cause"), modern);
            assert_eq!(r.contains("TTL minute"), modern);
        }
        assert!(!rendered("26.9", 0, &MIGRATIONS[0])
            .join(";")
            .contains("TTL "));
    }

    /// The cause columns' Enum8 lists every cause with its code, in precedence order;
    /// the flows' variant adds '' for "no RST"; `failover` joins the anomaly kinds.
    #[test]
    fn cause_enums_follow_the_rust_definition() {
        let r = rendered("18.16.1", 0, &MIGRATIONS[1]).join(";\n");
        let causes: Vec<String> = Cause::ALL
            .iter()
            .map(|c| format!("'{}' = {}", c.as_str(), c.code()))
            .collect();
        let list = causes.join(", ");
        assert!(
            r.contains(&format!("cause Enum8({list}) DEFAULT 'unknown'")),
            "{r}"
        );
        assert!(
            r.contains(&format!("cause Enum8('' = -1, {list}) DEFAULT")),
            "{r}"
        );
        assert!(r.contains("'injection' = 0") && r.contains("'unknown' = 13"));
        assert!(r.contains("'failover' = 4)"), "{r}");
        assert_eq!(flow_cause_code(None), -1);
        assert_eq!(flow_cause_code(Some(Cause::Abort)), 12);
    }

    #[test]
    fn cause_remedies_rows_come_from_cause() {
        let st = cause_remedies_refresh("`db`");
        assert_eq!(st[0], "TRUNCATE TABLE `db`.cause_remedies");
        for c in Cause::ALL {
            let row = format!(
                "('{}', {}, {}, {})",
                c.as_str(),
                sql_string(c.meaning()),
                sql_string(c.remedy()),
                c.code()
            );
            assert!(st[1].contains(&row), "{row}");
        }
        assert_eq!(st[1].matches("), (").count(), Cause::ALL.len() - 1);
        assert_eq!(sql_string(r"it's a \ test"), r"'it\'s a \\ test'");
    }

    #[test]
    fn encap_migration_adds_the_columns_in_both_dialects() {
        let m = MIGRATIONS.iter().find(|m| m.name == "003_encap").unwrap();
        for (v, lc) in [
            ("18.16.1", "String"),
            ("26.9.1.1", "LowCardinality(String)"),
        ] {
            let d = Dialect::from_version(v, 30).unwrap();
            let r = d.render(m.sql, "rstwatch");
            let st = statements(&r);
            assert_eq!(st.len(), 2, "{v}: {r}");
            for (s, table) in st.iter().zip(["rst_events", "flows"]) {
                assert!(s.contains(&format!("ALTER TABLE rstwatch.{table}")), "{s}");
                assert!(
                    s.contains(&format!("ADD COLUMN encap {lc} DEFAULT ''")),
                    "{s}"
                );
                assert!(s.contains("ADD COLUMN tunnel_id UInt32 DEFAULT 0"), "{s}");
            }
        }
    }

    /// `rst_hour` outlives the raw rows: at least ROLLUP_HOUR_DAYS, more when the raw
    /// retention is longer; no TTL on 18.16 or without a retention.
    #[test]
    fn hourly_rollup_keeps_at_least_its_own_retention() {
        let m = MIGRATIONS.iter().find(|m| m.version == 4).unwrap();
        let ttl = |v: &str, days: u32| {
            let r = statements(&Dialect::from_version(v, days).unwrap().render(m.sql, "db"));
            assert_eq!(r.len(), 3, "table, backfill, view");
            let t = &r[0];
            t.find("TTL ").map(|i| t[i..].trim().to_string())
        };
        assert_eq!(
            ttl("26.9", 30).as_deref(),
            Some("TTL hour + INTERVAL 400 DAY")
        );
        assert_eq!(
            ttl("26.9", 500).as_deref(),
            Some("TTL hour + INTERVAL 500 DAY")
        );
        assert_eq!(ttl("26.9", 0), None);
        assert_eq!(ttl("18.16", 30), None);
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            Dialect::from_version("18.16.1\n", 0),
            Some(Dialect {
                major: 18,
                minor: 16,
                retention_days: 0
            })
        );
        assert_eq!(Dialect::from_version("x", 0), None);
    }
}

#[cfg(test)]
mod query_tests {
    use super::*;

    /// `suspected_injections.sql` spells the flag names by bit: they must match the Rust flags.
    #[test]
    fn flag_names_in_queries_follow_the_bits() {
        let q = QUERIES
            .iter()
            .find(|(n, _)| *n == "suspected_injections")
            .unwrap()
            .1;
        let names: Vec<String> = crate::RstFlag::ALL
            .iter()
            .map(|f| format!("'{}'", f.as_str()))
            .collect();
        assert!(q.contains(&names.join(", ")), "flag names drifted");
        let bits: Vec<String> = crate::RstFlag::ALL
            .iter()
            .map(|f| f.bit().to_string())
            .collect();
        assert!(q.contains(&bits.join(", ")));
    }
}
