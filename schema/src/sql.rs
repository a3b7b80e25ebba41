//! What lands in ClickHouse: versioned migrations (`schema/sql/NNN_*.sql`) and the
//! canonical queries (`schema/queries/*.sql`), rendered for the server's version.
//!
//! The same files must work on Debian's ClickHouse 18.16 and on current ClickHouse;
//! where a modern feature matters (IPv6 type, LowCardinality, codecs, TTL, insert
//! deduplication on plain MergeTree) a placeholder is rendered by [`Dialect`].

use crate::{AnomalyKind, CloseReason, ConnState, Dir, RstClass};

/// One versioned migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
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
        version: 3,
        name: "003_encap",
        sql: include_str!("../sql/003_encap.sql"),
    },
];

/// The newest schema version this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// The canonical queries shipped for analysts and dashboards (name, SQL). They use
/// unqualified table names: run them with the rstwatch database as the default.
pub const QUERIES: &[(&str, &str)] = &[
    (
        "rst_per_minute_by_class",
        include_str!("../queries/rst_per_minute_by_class.sql"),
    ),
    (
        "top_reset_servers",
        include_str!("../queries/top_reset_servers.sql"),
    ),
    ("suspect_rsts", include_str!("../queries/suspect_rsts.sql")),
    ("scan_sources", include_str!("../queries/scan_sources.sql")),
    ("conn_states", include_str!("../queries/conn_states.sql")),
    (
        "sensor_health",
        include_str!("../queries/sensor_health.sql"),
    ),
    (
        "anomalies_recent",
        include_str!("../queries/anomalies_recent.sql"),
    ),
];

/// The tables that carry data rows with a `(sensor_id, boot_id, batch_seq)` origin.
pub const DATA_TABLES: &[&str] = &["rst_events", "flows", "anomalies", "sensor_stats"];

/// Every table (and view) the schema creates, for retention and checks.
pub const ALL_TABLES: &[&str] = &[
    "rst_events",
    "flows",
    "anomalies",
    "sensor_stats",
    "batches",
    "rst_minute",
];

/// How to render the schema for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    /// Server version, major and minor (`SELECT version()`).
    pub major: u32,
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
        let modern = self.modern();
        let mut out = sql
            .replace("{{DB}}", db)
            .replace("{{ADDR}}", if modern { "IPv6" } else { "FixedString(16)" })
            .replace(
                "{{LC}}",
                if modern {
                    "LowCardinality(String)"
                } else {
                    "String"
                },
            )
            .replace(
                "{{CODEC_TS}}",
                if modern {
                    "CODEC(DoubleDelta, ZSTD)"
                } else {
                    ""
                },
            )
            .replace(
                "{{MT_SETTINGS}}",
                if self.has_dedup_token() {
                    "SETTINGS non_replicated_deduplication_window = 10000"
                } else {
                    ""
                },
            )
            .replace(
                "{{ENUM:Dir}}",
                &enum8(Dir::ALL.iter().map(|v| (v.as_str(), v.code()))),
            )
            .replace(
                "{{ENUM:RstClass}}",
                &enum8(RstClass::ALL.iter().map(|v| (v.as_str(), v.code()))),
            )
            .replace(
                "{{ENUM:ConnState}}",
                &enum8(ConnState::ALL.iter().map(|v| (v.as_str(), v.code()))),
            )
            .replace(
                "{{ENUM:CloseReason}}",
                &enum8(CloseReason::ALL.iter().map(|v| (v.as_str(), v.code()))),
            )
            .replace(
                "{{ENUM:AnomalyKind}}",
                &enum8(AnomalyKind::ALL.iter().map(|v| (v.as_str(), v.code()))),
            );
        // {{TTL:column}}
        while let Some(start) = out.find("{{TTL:") {
            let Some(end_rel) = out[start..].find("}}") else {
                break;
            };
            let col = out[start + 6..start + end_rel].to_string();
            let clause = if self.has_ttl() && self.retention_days > 0 {
                format!("TTL {col} + INTERVAL {} DAY", self.retention_days)
            } else {
                String::new()
            };
            out.replace_range(start..start + end_rel + 2, &clause);
        }
        out
    }
}

fn enum8<'a>(vals: impl Iterator<Item = (&'a str, u8)>) -> String {
    let parts: Vec<String> = vals.map(|(n, c)| format!("'{n}' = {c}")).collect();
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

    #[test]
    fn renders_both_dialects_without_placeholders() {
        for (v, modern) in [("18.16.1", false), ("26.9.1.1", true)] {
            let d = Dialect::from_version(v, 30).unwrap();
            assert_eq!(d.modern(), modern);
            for m in MIGRATIONS {
                let r = d.render(m.sql, "rstwatch");
                for st in statements(&r) {
                    assert!(!st.contains("{{"), "{v}: {st}");
                }
                if m.version != 1 {
                    continue;
                }
                let r = statements(&r).join(";\n");
                assert_eq!(r.contains(" IPv6,"), modern);
                assert_eq!(r.contains("TTL "), modern);
                assert!(r.contains("Enum8('reject' = 0, 'handshake_abort' = 1"));
                assert_eq!(statements(&r).len(), 7);
            }
        }
        let d = Dialect::from_version("26.9", 0).unwrap();
        assert!(!statements(&d.render(MIGRATIONS[0].sql, "x"))
            .join(";")
            .contains("TTL "));
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

    /// `suspect_rsts.sql` spells the flag names by bit: they must match the Rust flags.
    #[test]
    fn flag_names_in_queries_follow_the_bits() {
        let q = QUERIES
            .iter()
            .find(|(n, _)| *n == "suspect_rsts")
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
