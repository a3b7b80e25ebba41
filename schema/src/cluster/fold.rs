//! A fresh cluster's schema without `ALTER`s: each migration's `ADD COLUMN` and
//! `MODIFY COLUMN` folded into the `CREATE TABLE` of an earlier one, so that
//! `migrate --cluster` on an empty database creates every table at its final shape.
//!
//! Why: ClickHouse before 20.7 races a replicated table's `ALTER ... ON CLUSTER`
//! between the replicas of a shard (ClickHouse PR #13450). Both can take the shard's
//! lock in turn and run it; the second then fails to mark it executed, and that
//! server's DDL worker stops ("Unexpected ZooKeeper error ... Terminating"). Every later
//! `ON CLUSTER` statement then waits `distributed_ddl_task_timeout` (180 s) for it,
//! until the server restarts. On Debian's 18.16, the five such `ALTER`s of a new
//! install hit it in 3 of the 23 trials that reached them (scripts/cluster-lib.sh).
//! Upgrades of an existing cluster still run their `ALTER`s; README "Scaling out" says
//! what to do then.
//!
//! The fold keeps ClickHouse's meaning: an added column goes last, as `ADD COLUMN`
//! puts it; `IF NOT EXISTS` skips a column already there; a modified column takes the
//! new type. Anything else (other `ALTER` commands, a column with a default or codec
//! modified, a table the statements do not create) is refused, never guessed at.

use super::{close_paren, first_line, for_each_unquoted, object_name, ClusterError};

/// `statements` (every migration's, in order, rendered for one dialect) with each
/// `ALTER TABLE` folded into its table's `CREATE TABLE`.
pub(super) fn fold_alters(statements: &[String]) -> Result<Vec<String>, ClusterError> {
    let mut out: Vec<String> = Vec::with_capacity(statements.len());
    for st in statements {
        if !st
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("ALTER TABLE")
        {
            out.push(st.clone());
            continue;
        }
        let (name_start, name_end) = object_name(st, "TABLE")?;
        let table = &st[name_start..name_end];
        let create = out
            .iter_mut()
            .find(|s| {
                s.trim_start()
                    .to_ascii_uppercase()
                    .starts_with("CREATE TABLE")
                    && object_name(s, "TABLE").is_ok_and(|(a, b)| &s[a..b] == table)
            })
            .ok_or_else(|| {
                ClusterError(format!(
                    "cannot fold {}: no CREATE TABLE {table} before it",
                    first_line(st)
                ))
            })?;
        let mut table_def = TableDef::parse(create)?;
        for command in split_top_level(&st[name_end..]) {
            table_def.apply(command.trim(), st)?;
        }
        *create = table_def.render();
    }
    Ok(out)
}

/// A `CREATE TABLE`'s text around its column list, and the columns.
struct TableDef {
    head: String,
    columns: Vec<String>,
    tail: String,
}

impl TableDef {
    fn parse(create: &str) -> Result<TableDef, ClusterError> {
        let (_, name_end) = object_name(create, "TABLE")?;
        // The column list follows the name (not `AS other`, nor an engine's arguments).
        let after_name = &create[name_end..];
        let open = name_end + after_name.len() - after_name.trim_start().len();
        let close = create[open..]
            .starts_with('(')
            .then(|| close_paren(create, open))
            .flatten()
            .ok_or_else(|| ClusterError(format!("no column list in {}", first_line(create))))?;
        Ok(TableDef {
            head: create[..=open].to_string(),
            columns: split_top_level(&create[open + 1..close])
                .into_iter()
                .map(|c| c.trim().to_string())
                .collect(),
            tail: create[close..].to_string(),
        })
    }

    fn render(&self) -> String {
        format!(
            "{}\n    {}\n{}",
            self.head,
            self.columns.join(",\n    "),
            self.tail
        )
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| column_name(c) == name)
    }

    /// One command of an `ALTER TABLE` (`alter`, for messages).
    fn apply(&mut self, command: &str, alter: &str) -> Result<(), ClusterError> {
        let upper = command.to_ascii_uppercase();
        if let Some(rest) = upper.strip_prefix("ADD COLUMN ") {
            let skip_existing = rest.starts_with("IF NOT EXISTS ");
            let def = &command[command.len() - rest.len()..];
            let def = if skip_existing {
                def["IF NOT EXISTS ".len()..].trim_start()
            } else {
                def
            };
            match self.position(column_name(def)) {
                Some(_) if skip_existing => {}
                Some(_) => {
                    return Err(ClusterError(format!(
                        "cannot fold {}: column {} exists",
                        first_line(alter),
                        column_name(def)
                    )))
                }
                None => self.columns.push(def.to_string()),
            }
            Ok(())
        } else if let Some(rest) = upper.strip_prefix("MODIFY COLUMN ") {
            let def = &command[command.len() - rest.len()..];
            let at = self.position(column_name(def)).ok_or_else(|| {
                ClusterError(format!(
                    "cannot fold {}: no column {}",
                    first_line(alter),
                    column_name(def)
                ))
            })?;
            let old = self.columns[at].to_ascii_uppercase();
            if ["DEFAULT", "MATERIALIZED", "ALIAS", "CODEC", "TTL"]
                .iter()
                .any(|kw| old.contains(&format!(" {kw}")))
            {
                return Err(ClusterError(format!(
                    "cannot fold {}: column {} has more than a type",
                    first_line(alter),
                    column_name(def)
                )));
            }
            self.columns[at] = def.to_string();
            Ok(())
        } else {
            Err(ClusterError(format!(
                "cannot fold {} (only ADD COLUMN and MODIFY COLUMN): {command}",
                first_line(alter)
            )))
        }
    }
}

/// A column definition's name (its first word).
fn column_name(def: &str) -> &str {
    def.split_whitespace().next().unwrap_or("")
}

/// `s` split at the commas outside parentheses and quotes.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for_each_unquoted(s, |i, c, depth| {
        if c == ',' && depth == 0 {
            parts.push(&s[start..i]);
            start = i + 1;
        }
        true
    });
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{self, Dialect, MIGRATIONS};

    fn all_statements(version: &str) -> Vec<String> {
        let d = Dialect::from_version(version, 0).unwrap();
        MIGRATIONS
            .iter()
            .flat_map(|m| sql::statements(&d.render(m.sql, "`rstwatch`")))
            .collect()
    }

    fn columns_of(statements: &[String], table: &str) -> Vec<String> {
        let create = statements
            .iter()
            .find(|s| s.contains(&format!("CREATE TABLE IF NOT EXISTS `rstwatch`.{table} (")))
            .unwrap();
        TableDef::parse(create).unwrap().columns
    }

    #[test]
    fn every_shipped_migration_folds_and_no_alter_is_left() {
        for v in ["18.16.1", "26.9.1"] {
            let all = all_statements(v);
            let folded = fold_alters(&all).unwrap();
            assert!(folded
                .iter()
                .all(|s| !s.to_ascii_uppercase().contains("ALTER TABLE")));
            // Every other statement is kept, in order.
            let kept: Vec<&String> = all
                .iter()
                .filter(|s| !s.trim_start().starts_with("ALTER TABLE"))
                .collect();
            assert_eq!(kept.len(), folded.len(), "{v}");
            for (k, f) in kept.iter().zip(&folded) {
                assert_eq!(first_line(k), first_line(f), "{v}");
            }
            // Added columns come last, in the order the migrations add them.
            let rst = columns_of(&folded, "rst_events");
            let tail: Vec<&str> = rst[rst.len() - 5..]
                .iter()
                .map(|c| column_name(c))
                .collect();
            assert_eq!(
                tail,
                ["cause", "cause_detail", "silence_ms", "encap", "tunnel_id"]
            );
            assert!(
                rst[rst.len() - 5].ends_with("DEFAULT 'unknown'"),
                "{}",
                rst[rst.len() - 5]
            );
            let flows = columns_of(&folded, "flows");
            assert!(flows.iter().any(|c| c.starts_with("cause Enum8(")
                && c.ends_with("DEFAULT if(close = 'rst' OR rst_count > 0, 'unknown', '')")));
        }
    }

    #[test]
    fn add_and_modify_fold_into_the_create() {
        let folded = fold_alters(&[
            "CREATE TABLE `d`.t (\n    a UInt8,\n    k Enum8('x' = 0, 'y' = 1)\n) ENGINE = MergeTree() ORDER BY a".into(),
            "CREATE MATERIALIZED VIEW `d`.v TO `d`.t AS SELECT a FROM `d`.t".into(),
            "ALTER TABLE `d`.t\n    ADD COLUMN s String DEFAULT 'a,b(',\n    MODIFY COLUMN k Enum8('x' = 0, 'y' = 1, 'z' = 2)".into(),
            "ALTER TABLE `d`.t ADD COLUMN IF NOT EXISTS a UInt8, ADD COLUMN IF NOT EXISTS n UInt32 DEFAULT 0".into(),
        ])
        .unwrap();
        assert_eq!(
            folded,
            [
                "CREATE TABLE `d`.t (\n    a UInt8,\n    k Enum8('x' = 0, 'y' = 1, 'z' = 2),\n    s String DEFAULT 'a,b(',\n    n UInt32 DEFAULT 0\n) ENGINE = MergeTree() ORDER BY a",
                "CREATE MATERIALIZED VIEW `d`.v TO `d`.t AS SELECT a FROM `d`.t",
            ]
        );
    }

    #[test]
    fn what_cannot_be_folded_is_refused() {
        let create =
            || "CREATE TABLE `d`.t (a UInt8 DEFAULT 1) ENGINE = MergeTree() ORDER BY a".to_string();
        for (alter, why) in [
            (
                "ALTER TABLE `d`.u ADD COLUMN b UInt8",
                "no CREATE TABLE `d`.u",
            ),
            ("ALTER TABLE `d`.t ADD COLUMN a UInt8", "column a exists"),
            ("ALTER TABLE `d`.t MODIFY COLUMN b UInt16", "no column b"),
            (
                "ALTER TABLE `d`.t MODIFY COLUMN a UInt16",
                "has more than a type",
            ),
            (
                "ALTER TABLE `d`.t DROP COLUMN a",
                "only ADD COLUMN and MODIFY COLUMN",
            ),
            (
                "ALTER TABLE `d`.t MODIFY TTL ts + INTERVAL 1 DAY",
                "only ADD COLUMN",
            ),
        ] {
            let e = fold_alters(&[create(), alter.to_string()]).unwrap_err();
            assert!(e.to_string().contains(why), "{alter}: {e}");
        }
    }

    #[test]
    fn a_table_made_from_another_has_no_column_list_to_fold_into() {
        let e = fold_alters(&[
            "CREATE TABLE `d`.c AS `d`.t ENGINE = MergeTree() ORDER BY a".to_string(),
            "ALTER TABLE `d`.c ADD COLUMN b UInt8".to_string(),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("no column list in"), "{e}");
    }
}
