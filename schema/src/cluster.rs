//! Cluster mode of the schema (`rstwatch-collector migrate --cluster NAME`): the same
//! migrations, transformed statement by statement for a ClickHouse cluster, so that
//! every migration (including ones added later) gets a cluster form without a second
//! copy of its DDL.
//!
//! For each table `T` of a migration:
//! - `T_local`, created `ON CLUSTER`, with the `Replicated` variant of its engine
//!   (`MergeTree` → `ReplicatedMergeTree('/clickhouse/tables/{shard}/DB/T_local',
//!   '{replica}')`, `SummingMergeTree(cols)` → `ReplicatedSummingMergeTree(path,
//!   '{replica}', cols)`): the server's `{shard}` and `{replica}` macros name the copy;
//! - `T` itself becomes a `Distributed` table over `T_local`, sharded by
//!   `cityHash64(sensor_id)`, so the collector and the canonical queries use the same
//!   names on one server and on a cluster.
//!
//! Materialized views are created on every node and read and write the local tables:
//! the per-minute rollup is computed per shard from the rows that shard stores, and the
//! `Distributed` `rst_minute` adds the shards' partial sums up at query time.
//! `ALTER TABLE` statements go to the local table and, for column changes, to the
//! `Distributed` table too (it must know the columns). Any other kind of statement is
//! refused with a clear error, not guessed at.
//!
//! Why shard by sensor: one sensor's rows (and its ledger rows) always land on the same
//! shard, so a batch resent after a collector failover is written to the shard that
//! already holds it — where the ledger finds it and where ClickHouse's replicated block
//! deduplication recognises an identical block — and a per-sensor query touches one
//! shard. The cost: a shard's load follows its sensors' traffic, so balance by having
//! several sensors per shard (a service-keyed shard would split a sensor's batches over
//! shards and lose both properties).

use crate::sql;

mod fold;

/// The sharding expression of every `Distributed` table.
pub const SHARDING_KEY: &str = "cityHash64(sensor_id)";

/// Suffix of the replicated table behind each `Distributed` table.
pub const LOCAL_SUFFIX: &str = "_local";

/// A cluster to render for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Name from the servers' `remote_servers`.
    pub name: String,
    /// Database (bare name, checked by the caller: letters, digits, underscores).
    pub db: String,
}

/// What a statement could not be rendered as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterError(pub String);

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cluster DDL: {}", self.0)
    }
}

impl std::error::Error for ClusterError {}

impl Cluster {
    /// The cluster `name` and the database `db` its DDL is rendered for.
    pub fn new(name: &str, db: &str) -> Cluster {
        Cluster {
            name: name.to_string(),
            db: db.to_string(),
        }
    }

    fn on_cluster(&self) -> String {
        format!(" ON CLUSTER `{}`", self.name)
    }

    fn qualified(&self, table: &str) -> String {
        format!("`{}`.{table}", self.db)
    }

    /// `CREATE DATABASE` on every node.
    pub fn create_database(&self) -> String {
        format!(
            "CREATE DATABASE IF NOT EXISTS `{}`{}",
            self.db,
            self.on_cluster()
        )
    }

    /// The migrations ledger, replicated to every node of the cluster (one path for
    /// all shards), so `serve` on any node sees the schema version.
    pub fn schema_migrations(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {}{} (version UInt32, name String, applied DateTime, \
             server_version String) ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{}/\
             schema_migrations', '{{replica}}') ORDER BY version",
            self.qualified("schema_migrations"),
            self.on_cluster(),
            self.db
        )
    }

    /// Renders one migration (already rendered for the server's dialect with
    /// `` `db` `` as the database) as cluster statements.
    pub fn render_migration(&self, rendered: &str) -> Result<Vec<String>, ClusterError> {
        self.render_statements(&sql::statements(rendered))
    }

    /// Renders every migration (each already rendered as for [`Self::render_migration`])
    /// for a cluster with no migration recorded yet: with their `ALTER`s folded into
    /// the `CREATE`s, so that no replicated `ALTER` runs on it (`cluster/fold.rs` says
    /// why).
    pub fn render_fresh(&self, rendered: &[String]) -> Result<Vec<String>, ClusterError> {
        let statements: Vec<String> = rendered.iter().flat_map(|r| sql::statements(r)).collect();
        self.render_statements(&fold::fold_alters(&statements)?)
    }

    fn render_statements(&self, statements: &[String]) -> Result<Vec<String>, ClusterError> {
        let tables = created_tables(statements, &self.qualified(""));
        let mut out = Vec::new();
        for st in statements {
            out.extend(self.render_statement(st, &tables)?);
        }
        Ok(out)
    }

    fn render_statement(&self, st: &str, tables: &[String]) -> Result<Vec<String>, ClusterError> {
        let head = st.trim_start().to_ascii_uppercase();
        if head.starts_with("CREATE TABLE") {
            self.create_table(st)
        } else if head.starts_with("CREATE MATERIALIZED VIEW") {
            Ok(vec![self.materialized_view(st, tables)?])
        } else if head.starts_with("ALTER TABLE") {
            self.alter_table(st)
        } else if head.starts_with("INSERT INTO") && head.contains("SELECT") {
            // A backfill (002 fills the cause rollup from existing RSTs): run once,
            // through the Distributed tables, which read every shard and route each
            // row by the sharding key the rollup's own rows follow.
            Ok(vec![st.to_string()])
        } else {
            Err(ClusterError(format!(
                "no cluster form for this statement (add one to schema/src/cluster.rs): {}",
                first_line(st)
            )))
        }
    }

    /// `CREATE TABLE db.T (...) ENGINE = E(args) ...` → the replicated `T_local` and the
    /// `Distributed` `T`.
    fn create_table(&self, st: &str) -> Result<Vec<String>, ClusterError> {
        let (name_start, name_end) = object_name(st, "TABLE")?;
        let table = self.bare_name(&st[name_start..name_end])?;
        if !is_sharded(st) {
            return self.reference_table(st, &table, name_start, name_end);
        }
        let local = format!("{table}{LOCAL_SUFFIX}");
        let engine_at = st
            .find("ENGINE = ")
            .ok_or_else(|| ClusterError(format!("no ENGINE in {}", first_line(st))))?
            + "ENGINE = ".len();
        let open = st[engine_at..]
            .find('(')
            .map(|i| engine_at + i)
            .ok_or_else(|| ClusterError(format!("no engine arguments in {}", first_line(st))))?;
        let engine = st[engine_at..open].trim();
        if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
            return Err(ClusterError(format!(
                "engine {engine} of {table}: only the MergeTree family is turned replicated"
            )));
        }
        let close = close_paren(st, open)
            .ok_or_else(|| ClusterError(format!("unbalanced engine arguments of {table}")))?;
        let args = st[open + 1..close].trim();
        let replicated = format!(
            "Replicated{engine}('/clickhouse/tables/{{shard}}/{}/{local}', '{{replica}}'{}{args})",
            self.db,
            if args.is_empty() { "" } else { ", " }
        );
        let local_stmt = format!(
            "{}{}{}{}{replicated}{}",
            &st[..name_start],
            self.qualified(&local),
            self.on_cluster(),
            &st[name_end..engine_at],
            &st[close + 1..]
        );
        let distributed = self.distributed(&table);
        Ok(vec![local_stmt, distributed])
    }

    /// The `Distributed` table `T` in front of `T_local`, with `T_local`'s columns.
    fn distributed(&self, table: &str) -> String {
        let local = format!("{table}{LOCAL_SUFFIX}");
        format!(
            "CREATE TABLE IF NOT EXISTS {}{} AS {} ENGINE = Distributed(`{}`, `{}`, {local}, {SHARDING_KEY})",
            self.qualified(table),
            self.on_cluster(),
            self.qualified(&local),
            self.name,
            self.db
        )
    }

    /// A table without `sensor_id` (reference data such as `cause_remedies`): the same
    /// rows on every node (one replication path for the whole cluster), so queries can
    /// join it locally; no Distributed table in front (it would repeat each row once
    /// per shard).
    fn reference_table(
        &self,
        st: &str,
        table: &str,
        name_start: usize,
        name_end: usize,
    ) -> Result<Vec<String>, ClusterError> {
        let engine_at = st.find("ENGINE = MergeTree()").ok_or_else(|| {
            ClusterError(format!("{table}: only plain MergeTree() reference tables"))
        })?;
        let rest = &st[engine_at + "ENGINE = MergeTree()".len()..];
        Ok(vec![format!(
            "{}{}{}{}ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{}/{table}', '{{replica}}'){rest}",
            &st[..name_start],
            self.qualified(table),
            self.on_cluster(),
            &st[name_end..engine_at],
            self.db
        )])
    }

    /// A materialized view on every node, reading and writing the local tables.
    fn materialized_view(&self, st: &str, tables: &[String]) -> Result<String, ClusterError> {
        let (_, name_end) = object_name(st, "VIEW")?;
        let mut body = st[name_end..].to_string();
        for t in tables {
            let local = self.qualified(&format!("{t}{LOCAL_SUFFIX}"));
            body = replace_table_refs(&body, &self.qualified(t), &local);
        }
        Ok(format!("{}{}{body}", &st[..name_end], self.on_cluster()))
    }

    /// `ALTER TABLE db.T ...` → on `T_local`, and on `T` when it changes columns.
    fn alter_table(&self, st: &str) -> Result<Vec<String>, ClusterError> {
        let (name_start, name_end) = object_name(st, "TABLE")?;
        let table = self.bare_name(&st[name_start..name_end])?;
        let rest = &st[name_end..];
        let on = |t: &str| {
            format!(
                "{}{}{}{rest}",
                &st[..name_start],
                self.qualified(t),
                self.on_cluster()
            )
        };
        let mut out = vec![on(&format!("{table}{LOCAL_SUFFIX}"))];
        if rest.to_ascii_uppercase().contains(" COLUMN ") {
            // ClickHouse refuses ALTER ... ON CLUSTER on a non-replicated table of a
            // cluster with internal replication (18.16: code 371); a Distributed table
            // holds no data, so it is recreated from its local table's new columns.
            out.push(format!(
                "DROP TABLE IF EXISTS {}{}",
                self.qualified(&table),
                self.on_cluster()
            ));
            out.push(self.distributed(&table));
        }
        Ok(out)
    }

    fn bare_name(&self, qualified: &str) -> Result<String, ClusterError> {
        qualified
            .strip_prefix(&self.qualified(""))
            .map(str::to_string)
            .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| {
                ClusterError(format!(
                    "{qualified}: expected a table of database `{}`",
                    self.db
                ))
            })
    }
}

/// Does a `CREATE TABLE` hold per-sensor rows (sharded), or reference data?
fn is_sharded(st: &str) -> bool {
    st.contains("sensor_id")
}

/// The schema's tables plus those created by these statements (bare names), longest
/// first so that replacing references never touches a prefix of a longer name.
fn created_tables(statements: &[String], prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = statements
        .iter()
        .filter(|s| {
            s.trim_start()
                .to_ascii_uppercase()
                .starts_with("CREATE TABLE")
                && is_sharded(s)
        })
        .filter_map(|s| {
            let (a, b) = object_name(s, "TABLE").ok()?;
            s[a..b].strip_prefix(prefix).map(str::to_string)
        })
        .chain(sql::ALL_TABLES.iter().map(|t| t.to_string()))
        .collect();
    v.sort();
    v.dedup();
    v.sort_by_key(|t| std::cmp::Reverse(t.len()));
    v
}

/// Replaces `from` where it is a whole table reference (not followed by a name
/// character).
fn replace_table_refs(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        let whole = !after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        out.push_str(if whole { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Byte range of the object name after `KIND [IF NOT EXISTS]`.
fn object_name(st: &str, kind: &str) -> Result<(usize, usize), ClusterError> {
    let upper = st.to_ascii_uppercase();
    let k = upper
        .find(&format!("{kind} "))
        .ok_or_else(|| ClusterError(format!("no {kind} in {}", first_line(st))))?
        + kind.len()
        + 1;
    let mut start = k + upper[k..].len() - upper[k..].trim_start().len();
    if upper[start..].starts_with("IF NOT EXISTS ") {
        start += "IF NOT EXISTS ".len();
    } else if upper[start..].starts_with("IF EXISTS ") {
        start += "IF EXISTS ".len();
    }
    let len = st[start..]
        .find(|c: char| c.is_whitespace() || c == '(')
        .unwrap_or(st.len() - start);
    if len == 0 {
        return Err(ClusterError(format!("no name in {}", first_line(st))));
    }
    Ok((start, start + len))
}

/// The `)` closing the `(` at `open`, quotes skipped (a default such as `'a('`): an
/// engine's arguments, or a column list ([`fold`]).
fn close_paren(s: &str, open: usize) -> Option<usize> {
    let mut close = None;
    for_each_unquoted(&s[open..], |i, c, depth| {
        if c == ')' && depth == 0 {
            close = Some(open + i);
        }
        close.is_none()
    });
    close
}

/// Calls `f(index, char, depth)` on each character of `s` outside quotes, with the
/// parentheses depth after it, until `f` returns false.
fn for_each_unquoted(s: &str, mut f: impl FnMut(usize, char, usize) -> bool) {
    let (mut depth, mut quote, mut escaped) = (0usize, None, false);
    for (i, c) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '`' | '"' => quote = Some(c),
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if !f(i, c, depth) {
            return;
        }
    }
}

fn first_line(st: &str) -> &str {
    st.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Dialect, MIGRATIONS};

    fn render_all(version: &str) -> Vec<String> {
        let d = Dialect::from_version(version, 0).unwrap();
        let c = Cluster::new("rw", "rstwatch");
        MIGRATIONS
            .iter()
            .flat_map(|m| c.render_migration(&d.render(m.sql, "`rstwatch`")).unwrap())
            .collect()
    }

    #[test]
    fn every_table_becomes_replicated_local_plus_distributed() {
        for v in ["18.16.1", "26.9.1"] {
            let all = render_all(v).join(";\n");
            for t in sql::ALL_TABLES {
                if *t == "rst_minute" {
                    assert!(all.contains(
                        "`rstwatch`.rst_minute_local ON CLUSTER `rw` (\n    minute DateTime,"
                    ));
                }
                assert!(
                    all.contains(&format!(
                        "CREATE TABLE IF NOT EXISTS `rstwatch`.{t} ON CLUSTER `rw` AS `rstwatch`.{t}_local \
                         ENGINE = Distributed(`rw`, `rstwatch`, {t}_local, cityHash64(sensor_id))"
                    )),
                    "{v}: {t}"
                );
                assert!(all.contains(&format!(
                    "ReplicatedMergeTree('/clickhouse/tables/{{shard}}/rstwatch/{t}_local', '{{replica}}')"
                )) || t.starts_with("rst_minute"));
            }
            // Reference rows: one replicated table on every node, no Distributed.
            assert!(
                all.contains("`rstwatch`.cause_remedies ON CLUSTER `rw` (\n    cause Enum8("),
                "{v}"
            );
            assert!(all.contains(
                "ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/rstwatch/cause_remedies', '{replica}')"
            ), "{v}");
            assert!(!all.contains("cause_remedies_local"), "{v}");
            assert!(all.contains(
                "ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/rstwatch/rst_minute_local', '{replica}', (rsts, suspect_rsts))"
            ));
            assert!(
                !all.contains("ENGINE = MergeTree"),
                "{v}: a plain MergeTree is left"
            );
        }
    }

    /// The rollup is computed per shard: the view reads the local raw table and writes
    /// the local rollup, never a Distributed table (that would count rows twice or
    /// cross shards).
    #[test]
    fn the_rollup_view_reads_and_writes_local_tables() {
        let all = render_all("18.16.1");
        let mv = all
            .iter()
            .find(|s| s.contains("MATERIALIZED VIEW"))
            .expect("the rollup view");
        assert!(mv.starts_with(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS `rstwatch`.rst_minute_mv ON CLUSTER `rw` TO `rstwatch`.rst_minute_local AS"
        ), "{mv}");
        assert!(mv.contains("FROM `rstwatch`.rst_events_local"), "{mv}");
        assert!(!mv.contains("`rstwatch`.rst_events\n") && !mv.contains("`rstwatch`.rst_events "));
    }

    #[test]
    fn column_changes_reach_local_and_distributed_tables() {
        let c = Cluster::new("rw", "db");
        let out = c
            .render_migration("ALTER TABLE `db`.rst_events ADD COLUMN cause UInt8;\nALTER TABLE `db`.flows MODIFY TTL ts_end + INTERVAL 1 DAY;")
            .unwrap();
        assert_eq!(
            out,
            [
                "ALTER TABLE `db`.rst_events_local ON CLUSTER `rw` ADD COLUMN cause UInt8",
                "DROP TABLE IF EXISTS `db`.rst_events ON CLUSTER `rw`",
                "CREATE TABLE IF NOT EXISTS `db`.rst_events ON CLUSTER `rw` AS `db`.rst_events_local ENGINE = Distributed(`rw`, `db`, rst_events_local, cityHash64(sensor_id))",
                "ALTER TABLE `db`.flows_local ON CLUSTER `rw` MODIFY TTL ts_end + INTERVAL 1 DAY",
            ]
        );
    }

    #[test]
    fn unknown_statements_and_engines_are_refused_clearly() {
        let c = Cluster::new("rw", "db");
        let e = c.render_migration("DROP TABLE `db`.x;").unwrap_err();
        assert!(e.to_string().contains("no cluster form"), "{e}");
        let e = c
            .render_migration("CREATE TABLE `db`.x (sensor_id String) ENGINE = Log;")
            .unwrap_err();
        assert!(e.to_string().contains("no engine arguments"), "{e}");
        let e = c
            .render_migration("CREATE TABLE `db`.x (sensor_id String) ENGINE = Memory();")
            .unwrap_err();
        assert!(e.to_string().contains("only the MergeTree family"), "{e}");
        let e = c
            .render_migration("CREATE TABLE `other`.x (a UInt8) ENGINE = MergeTree() ORDER BY a;")
            .unwrap_err();
        assert!(
            e.to_string().contains("expected a table of database"),
            "{e}"
        );
    }

    #[test]
    fn table_references_are_replaced_whole() {
        assert_eq!(
            replace_table_refs("FROM d.t JOIN d.t2 ON d.t.a", "d.t", "d.t_local"),
            "FROM d.t_local JOIN d.t2 ON d.t_local.a"
        );
    }
}
