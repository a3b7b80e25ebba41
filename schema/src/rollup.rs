//! The rollups of `rst_events` (`rst_minute`, `rst_minute_cause`, `rst_hour`), and the
//! query that restores what a write failed part-way left out of them.
//!
//! The rollups are materialized views: an INSERT into `rst_events` writes its part,
//! then one part per view. If that INSERT fails after the raw part (a replica killed
//! while a view's part waits for its quorum, a server that dies), the collector
//! retries, finds the batch's raw rows and does not write them again (that is what
//! keeps the raw tables exact), so the views do not run again either: the rollups
//! stay short by those RSTs. [`repair_sql`] is the collector's answer, run for a batch
//! whose raw rows it found: within the buckets the batch's RSTs fall in, it counts
//! each rollup key in `rst_events`, takes away what the rollup holds for it, and
//! inserts the shortfall (the rollups are `SummingMergeTree`s, so an added row adds to
//! the key). Exact while no other write of the sensor's rows runs at the same time: a
//! repair runs with none of the collector's own writes in flight and no other repair,
//! and the failed write is over once no INSERT into `rst_events` runs, which the
//! collector waits for (`collector/src/ch/repair.rs`, also for a cluster). Run again,
//! it finds nothing short.

/// One rollup of `rst_events`: the columns its view groups by and the expressions over
/// `rst_events` that fill them. `schema/sql` defines the views; the test below holds
/// these to them.
#[derive(Debug, Clone, Copy)]
pub struct Rollup {
    /// The rollup table.
    pub table: &'static str,
    /// Its time bucket column, the function that maps `ts` into it, and the bucket's
    /// length in seconds (a bucket holds no `ts` further than that from its RSTs).
    pub bucket: (&'static str, &'static str, u32),
    /// Its other key columns, each with the expression over `rst_events` it is.
    pub keys: &'static [(&'static str, &'static str)],
}

/// The responder of an RST's flow, whichever side sent it (the rollups count by server).
const SERVER: (&str, &str) = ("server", "if(dir = 'resp', src, dst)");
const SERVER_PORT: (&str, &str) = ("server_port", "if(dir = 'resp', sport, dport)");

/// Every rollup of `rst_events`.
pub const ROLLUPS: &[Rollup] = &[
    Rollup {
        table: "rst_minute",
        bucket: ("minute", "toStartOfMinute", 60),
        keys: &[
            ("sensor_id", "sensor_id"),
            ("class", "class"),
            SERVER,
            SERVER_PORT,
            ("flags", "flags"),
        ],
    },
    Rollup {
        table: "rst_minute_cause",
        bucket: ("minute", "toStartOfMinute", 60),
        keys: &[
            ("sensor_id", "sensor_id"),
            ("cause", "cause"),
            SERVER,
            SERVER_PORT,
        ],
    },
    Rollup {
        table: "rst_hour",
        bucket: ("hour", "toStartOfHour", 3_600),
        keys: &[
            ("sensor_id", "sensor_id"),
            ("class", "class"),
            ("cause", "cause"),
            SERVER,
            SERVER_PORT,
        ],
    },
];

/// What `rollup` lacks for one sensor (`?`, bound once) in the buckets from the one
/// holding `first_s` to the one holding `last_s` (seconds since the epoch): a SELECT
/// of the rollup's columns with the shortfall as `rsts` and `suspect_rsts`, one row a
/// key that is short. [`repair_sql`] inserts it; the collector counts it first.
///
/// Both sides are bounded by the bucket function in the server's time zone, so a
/// bucket is compared whole with its rollup rows wherever the zone puts its edges;
/// the raw side is first narrowed by `ts` (the table's order) to a bucket's length
/// either side.
/// A key the rollup holds more of than `rst_events` (raw rows dropped by retention
/// before the rollup's) is left alone: only a shortfall is restored.
pub fn shortfall_sql(rollup: &Rollup, first_s: u32, last_s: u32) -> String {
    let (bucket, bucket_fn, span) = rollup.bucket;
    let cols: Vec<&str> = rollup.keys.iter().map(|(c, _)| *c).collect();
    let raw_keys: Vec<String> = rollup
        .keys
        .iter()
        .map(|(c, e)| {
            if c == e {
                c.to_string()
            } else {
                format!("{e} AS {c}")
            }
        })
        .collect();
    let from = format!("{bucket_fn}(toDateTime({first_s}))");
    let to = format!("{bucket_fn}(toDateTime({last_s}))");
    let (lo, hi) = (
        first_s.saturating_sub(span),
        u64::from(last_s) + u64::from(span),
    );
    format!(
        "SELECT {bucket}, {cols}, toUInt64(greatest(sum(n), 0)) AS rsts, \
         toUInt64(greatest(sum(s), 0)) AS suspect_rsts FROM (\
         SELECT {bucket_fn}(ts) AS {bucket}, {raw_keys}, toInt64(1) AS n, toInt64(suspect) AS s \
         FROM rst_events WHERE sensor_id = ? AND ts >= toDateTime({lo}) AND ts < toDateTime({hi}) \
         AND {bucket_fn}(ts) >= {from} AND {bucket_fn}(ts) <= {to} \
         UNION ALL \
         SELECT {bucket}, {cols}, -toInt64(rsts) AS n, -toInt64(suspect_rsts) AS s \
         FROM {table} WHERE sensor_id = ? AND {bucket} >= {from} AND {bucket} <= {to}) \
         GROUP BY {bucket}, {cols} HAVING sum(n) > 0 OR sum(s) > 0",
        cols = cols.join(", "),
        raw_keys = raw_keys.join(", "),
        table = rollup.table,
    )
}

/// [`shortfall_sql`] as an INSERT into the rollup: restores what it lacks.
pub fn repair_sql(rollup: &Rollup, first_s: u32, last_s: u32) -> String {
    let cols: Vec<&str> = rollup.keys.iter().map(|(c, _)| *c).collect();
    format!(
        "INSERT INTO {} ({}, {}, rsts, suspect_rsts) {}",
        rollup.table,
        rollup.bucket.0,
        cols.join(", "),
        shortfall_sql(rollup, first_s, last_s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::MIGRATIONS;

    /// The view that fills `table`, as the migrations define it.
    fn view(table: &str) -> String {
        let head = format!("CREATE MATERIALIZED VIEW IF NOT EXISTS {{{{DB}}}}.{table}_mv TO");
        let sql = MIGRATIONS
            .iter()
            .find_map(|m| m.sql.find(&head).map(|at| &m.sql[at..]))
            .unwrap_or_else(|| panic!("no view fills {table}"));
        let end = sql.find(';').expect("the view's statement ends");
        sql[..end].split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Each rollup's buckets and keys are its view's: the same expressions over
    /// `rst_events`, grouped by the same columns, summed into `rsts` and `suspect_rsts`.
    #[test]
    fn rollups_group_as_their_views_do() {
        for r in ROLLUPS {
            let v = view(r.table);
            let (bucket, f, _) = r.bucket;
            assert!(
                v.contains(&format!("{f}(ts) AS {bucket}")),
                "{}: {v}",
                r.table
            );
            for (col, expr) in r.keys {
                let select = if col == expr {
                    format!(" {col},")
                } else {
                    format!("{expr} AS {col},")
                };
                assert!(v.contains(&select), "{}: {col} is not {expr}: {v}", r.table);
            }
            let group: Vec<&str> = std::iter::once(bucket)
                .chain(r.keys.iter().map(|(c, _)| *c))
                .collect();
            let group = format!("GROUP BY {}", group.join(", "));
            assert!(v.ends_with(&group), "{}: {v} is not {group}", r.table);
            assert!(v.contains("count() AS rsts, sum(suspect) AS suspect_rsts"));
        }
        // Every view into a rollup table is one of these.
        let views = MIGRATIONS
            .iter()
            .map(|m| m.sql.matches("CREATE MATERIALIZED VIEW").count())
            .sum::<usize>();
        assert_eq!(views, ROLLUPS.len());
    }

    #[test]
    fn the_repair_inserts_the_shortfall_of_the_buckets_it_names() {
        let sql = repair_sql(&ROLLUPS[2], 1_763_700_000, 1_763_703_700);
        assert!(sql.starts_with(
            "INSERT INTO rst_hour (hour, sensor_id, class, cause, server, server_port, rsts, suspect_rsts) SELECT hour,"
        ));
        assert!(sql.contains("toStartOfHour(ts) >= toStartOfHour(toDateTime(1763700000))"));
        assert!(sql.contains("hour <= toStartOfHour(toDateTime(1763703700))"));
        assert!(sql.contains("if(dir = 'resp', src, dst) AS server"));
        assert_eq!(
            sql.matches('?').count(),
            2,
            "the sensor, bound on both sides"
        );
    }
}
