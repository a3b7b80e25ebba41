//! ClickHouse: version detection, migrations, exactly-once batch writes, retention.
//!
//! Exactly once: a batch is identified by (sensor_id, boot_id, seq). Its rows go in with
//! one INSERT per table (each INSERT is one block, so it is committed whole or not at
//! all), then one row into the `batches` ledger; only then is the batch acknowledged.
//! A connection's batches never sent before go in together, one INSERT per table
//! ([`Store::store_group`]). Batches that may have been seen before (the sensor flags
//! resends; the collector's own retries count too) are checked first
//! ([`Store::store_checked`]): found in the ledger → acknowledged without writing;
//! otherwise each table is checked for rows of those batches and only the rows not
//! there are written. So a crash between any two INSERTs never double-counts. On
//! servers that have it, `insert_deduplication_token` adds the server's own guard.
//!
//! A retry sends the same blocks as the attempt that failed. An INSERT can fail for the
//! collector and be committed all the same: on a cluster, a replica killed after it
//! registered a part in ZooKeeper, before it answered, leaves that part waiting for its
//! quorum, unseen by reads with `select_sequential_consistency` until the replica is
//! back. The retry's checks find nothing; the part appears later. A replicated table
//! drops a block identical to one it has (ZooKeeper keeps the hashes of its recent
//! blocks), so the retry writes the same batches together, with the ledger's
//! `received` time of the first attempt. (`scripts/test-cluster.sh` found a batch twice
//! in the ledger when that time differed, 2026-12-04.) And a killed collector's INSERT
//! runs on at the server: resent batches are checked only once no write of their
//! sensor runs anywhere ([`in_flight`]).
//!
//! "Whole or not at all" holds for an INSERT that fails on the server. One whose body
//! ends early, because the collector was killed while sending it, is committed as far
//! as it got by ClickHouse 18.16 (a test here checks it) and by later versions in some
//! cases (ClickHouse#9666, #27667): the first rows, in the order sent. So a table
//! holding some of a batch's rows gets the rest, not nothing ([`Store::store_checked`]).
//!
//! The rollups are the exception the per-table check cannot cover: they are filled by
//! views as `rst_events` is written, so a resent batch whose raw rows are found runs no
//! view. For such a batch the rollups' shortfall in its buckets is restored from
//! `rst_events` before it goes into the ledger ([`repair`]).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clickhouse::Client;
use rstwatch_schema::batch::ArchivedBatch;
use rstwatch_schema::sql::{self, Dialect};
use rstwatch_schema::{AnomalyKind, Cause, CloseReason, ConnState, Dir, Encap, RstClass};

mod checked;
mod in_flight;
mod repair;

pub use in_flight::sensor_prefix;

/// Largest number of rows of one kind in a batch: below ClickHouse's
/// `max_insert_block_size` (1,048,576), so one INSERT is one block, atomic.
pub const MAX_ROWS_PER_TABLE: usize = 1_000_000;

/// The schema version that created `cause_remedies`.
pub(crate) const CAUSE_REMEDIES_SINCE: u32 = 2;

/// A stalled ClickHouse (not refusing, just not answering) fails the insert after
/// these, so it is retried instead of hanging the sensor's batches forever.
const SEND_TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));
const END_TIMEOUT: Option<Duration> = Some(Duration::from_secs(300));

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ChConfig {
    /// ClickHouse HTTP URL (`http://host:8123`).
    pub url: String,
    /// Database the tables live in (default `rstwatch`).
    pub database: String,
    /// User name, when the server wants one.
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// None: decide by server version.
    pub validation: Option<bool>,
}

/// A ClickHouse handle bound to one database and server dialect.
#[derive(Clone)]
pub struct Store {
    client: Client,
    /// Without a default database (it may not exist yet): migrations, probes.
    admin: Client,
    /// The database this handle writes.
    pub db: String,
    /// What the server's version supports (TTL, dedup tokens, ...).
    pub dialect: Dialect,
    /// The server's version string, as it reported it.
    pub version: String,
    /// Held shared by every write of data rows and exclusively by a rollup repair,
    /// which compares `rst_events` with the rollups: an INSERT of this collector's in
    /// flight has its raw block committed before its views' blocks, and a repair that
    /// looked then would restore what the views are about to write. Two repairs of
    /// one minute would each restore its shortfall (CI, 2026-12-04: two groups of one
    /// sensor, stored at once, each restored the same 2,000 RSTs).
    writes: std::sync::Arc<tokio::sync::RwLock<()>>,
    /// This collector process, in its writes' query ids ([`in_flight`]).
    instance: u64,
    /// Query ids handed out.
    queries: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The nodes of the cluster the tables are on (None: one server), looked up once.
    cluster_nodes: std::sync::Arc<tokio::sync::OnceCell<Option<String>>>,
}

/// What happened to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written now.
    New,
    /// Already in the ledger: acknowledged, nothing written.
    Duplicate,
    /// Rows of it were written before, by an attempt that failed part-way: what the
    /// tables lacked was written now, and the rollups restored where they can be.
    Completed {
        /// RSTs restored to the rollups, all together: what the views of the failed
        /// attempt did not write (usually 0; 0 too when none of its RSTs were there).
        rollup_rsts_restored: u64,
        /// Rows written now after the first rows of the batch that a truncated INSERT
        /// had committed (all tables together; `Store::store_checked`).
        truncated_rows_completed: u64,
    },
}

/// A client for `c` with the collector's settings (no compression, no schema validation), not yet bound to a database.
pub fn base_client(c: &ChConfig) -> Client {
    // No HTTP body compression: the collector sits next to ClickHouse (loopback or
    // LAN), where LZ4 costs both sides CPU and saves nothing that matters.
    let mut client = Client::default()
        .with_url(c.url.clone())
        .with_compression(clickhouse::Compression::None)
        .with_validation(false);
    if let Some(u) = &c.user {
        client = client.with_user(u.clone());
    }
    if let Some(p) = &c.password {
        client = client.with_password(p.clone());
    }
    client
}

impl Store {
    /// Connects, reads the server version and picks the dialect.
    pub async fn connect(c: &ChConfig, retention_days: u32) -> anyhow::Result<Store> {
        let client = base_client(c);
        let version: String = client
            .query("SELECT version()")
            .fetch_one()
            .await
            .with_context(|| format!("ClickHouse at {} does not answer", c.url))?;
        let dialect = Dialect::from_version(&version, retention_days)
            .with_context(|| format!("unrecognised ClickHouse version {version:?}"))?;
        // Schema validation needs the server's DESCRIBE settings (24.x and later); 18.16
        // lacks them, so it is off there.
        let validation = c
            .validation
            .unwrap_or((dialect.major, dialect.minor) >= (24, 1));
        let admin = client.clone();
        let client = client
            .with_database(c.database.clone())
            .with_validation(validation);
        Ok(Store {
            client,
            admin,
            db: c.database.clone(),
            dialect,
            version: version.trim().to_string(),
            writes: Default::default(),
            instance: fastrand::u64(..),
            queries: Default::default(),
            cluster_nodes: Default::default(),
        })
    }

    fn q(&self, sql: &str) -> clickhouse::query::Query {
        self.client.query(sql)
    }

    fn qa(&self, sql: &str) -> clickhouse::query::Query {
        self.admin.query(sql)
    }

    /// The schema version recorded in the database (0 when none).
    pub async fn schema_version(&self) -> anyhow::Result<u32> {
        let exists: u64 = self
            .qa("SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
            .bind(&self.db)
            .fetch_one()
            .await?;
        if exists == 0 {
            return Ok(0);
        }
        let v: u32 = self
            .qa(&format!(
                "SELECT toUInt32(max(version)) FROM `{}`.schema_migrations",
                self.db
            ))
            .fetch_one()
            .await?;
        Ok(v)
    }

    /// Creates or upgrades the schema to the newest version. Safe to run twice;
    /// refuses a newer schema. Returns the versions applied now.
    pub async fn migrate(&self) -> anyhow::Result<Vec<u32>> {
        self.migrate_to(sql::latest_version()).await
    }

    /// Creates or upgrades the schema up to version `target` (staged upgrades, tests),
    /// then refreshes `cause_remedies` from this build's causes when the schema has it.
    /// Returns the versions applied now.
    pub async fn migrate_to(&self, target: u32) -> anyhow::Result<Vec<u32>> {
        let latest = sql::latest_version();
        if target > latest {
            bail!("schema version {target} is unknown to this collector (newest: {latest})");
        }
        self.create_database().await?;
        let current = self.schema_version().await?;
        if current > latest {
            bail!(
                "database {} has schema version {current}, newer than this collector knows \
                 ({latest}): upgrade the collector, do not migrate with this one",
                self.db
            );
        }
        let mut applied = Vec::new();
        for m in sql::MIGRATIONS
            .iter()
            .filter(|m| m.version > current && m.version <= target)
        {
            self.apply(m).await?;
            applied.push(m.version);
        }
        if current.max(target) >= CAUSE_REMEDIES_SINCE {
            self.refresh_cause_remedies().await?;
        }
        Ok(applied)
    }

    /// The database and the `schema_migrations` table, when missing.
    async fn create_database(&self) -> anyhow::Result<()> {
        check_db_name(&self.db)?;
        self.qa(&format!("CREATE DATABASE IF NOT EXISTS `{}`", self.db))
            .execute()
            .await
            .context("creating the database")?;
        self.qa(&format!(
            "CREATE TABLE IF NOT EXISTS `{}`.schema_migrations (version UInt32, name String, \
             applied DateTime, server_version String) ENGINE = MergeTree() ORDER BY version",
            self.db
        ))
        .execute()
        .await
        .context("creating schema_migrations")?;
        Ok(())
    }

    /// Runs one migration's statements, then records it.
    async fn apply(&self, m: &sql::Migration) -> anyhow::Result<()> {
        let rendered = self.dialect.render(m.sql, &format!("`{}`", self.db));
        for (i, st) in sql::statements(&rendered).iter().enumerate() {
            if let Err(e) = self.qa(st).execute().await {
                if self.already_applied(st, &e) {
                    continue;
                }
                return Err(anyhow::Error::new(e).context(format!(
                    "migration {} statement {}: {st}",
                    m.name,
                    i + 1
                )));
            }
        }
        self.qa(&format!(
            "INSERT INTO `{}`.schema_migrations (version, name, applied, server_version) \
             VALUES (?, ?, now(), ?)",
            self.db
        ))
        .bind(m.version)
        .bind(m.name)
        .bind(&self.version)
        .execute()
        .await?;
        Ok(())
    }

    /// 18.x has no `ADD COLUMN IF NOT EXISTS`: when a migration that failed part-way is
    /// run again, its ALTER finds its columns there ("already exists", code 44). That
    /// ALTER is all-or-nothing, so the columns are the migration's own.
    fn already_applied(&self, statement: &str, e: &clickhouse::error::Error) -> bool {
        !self.dialect.modern()
            && statement.contains("ADD COLUMN")
            && e.to_string().contains("Code: 44")
            && e.to_string().contains("already exists")
    }

    /// Makes `cause_remedies` match this build's `Cause` (meaning, remedy, order).
    async fn refresh_cause_remedies(&self) -> anyhow::Result<()> {
        for st in sql::cause_remedies_refresh(&format!("`{}`", self.db)) {
            self.qa(&st)
                .execute()
                .await
                .context("refreshing cause_remedies")?;
        }
        Ok(())
    }

    /// Fails unless the database has exactly the schema this build writes.
    pub async fn check_schema(&self) -> anyhow::Result<()> {
        let v = self.schema_version().await?;
        let latest = sql::latest_version();
        if v < latest {
            bail!(
                "database {} has schema version {v}, this collector writes {latest}: run \
                 `rstwatch-collector migrate` first",
                self.db
            );
        }
        if v > latest {
            bail!(
                "database {} has schema version {v}, newer than this collector ({latest}): \
                 upgrade the collector",
                self.db
            );
        }
        Ok(())
    }

    /// Stores several batches that were never sent before (one connection's
    /// consecutive batches, none flagged as resent) with one INSERT per table, then one
    /// ledger INSERT: fewer, bigger parts for ClickHouse. Each INSERT is atomic, so a
    /// failure part-way is completed by [`Store::store_checked`], which sends the same
    /// blocks where nothing of them is there. `received`: when the collector got them.
    /// The caller holds every batch's lock.
    ///
    /// Returns `Ok(false)`, writing nothing, when a batch of the group is already in
    /// the ledger (sent again without the resent flag): the caller then stores the
    /// group with checks, which acknowledges that one as a duplicate.
    pub async fn store_group(
        &self,
        group: &[(&ArchivedBatch, u32)],
        received: u32,
    ) -> anyhow::Result<bool> {
        let batches: Vec<&ArchivedBatch> = group.iter().map(|(b, _)| *b).collect();
        let rows = total_rows(&batches);
        check_rows(rows)?;
        if self.ledger_holds(&batches).await? > 0 {
            return Ok(false);
        }
        let token_base = token_base(&batches);
        self.write_rows(&batches, rows, [0; 4], &token_base).await?;
        self.write_ledger(group, &token_base, received).await?;
        Ok(true)
    }

    /// How many of `batches` (one sensor's) the ledger holds: one query.
    async fn ledger_holds(&self, batches: &[&ArchivedBatch]) -> anyhow::Result<usize> {
        let Some(first) = batches.first() else {
            return Ok(0);
        };
        let n: u64 = self
            .q(&format!(
                "SELECT count() FROM batches WHERE sensor_id = ? AND (boot_id, seq) IN ({})",
                batch_keys(batches)
            ))
            .bind(ids(first).0)
            .fetch_one()
            .await?;
        Ok(n as usize)
    }

    /// One INSERT per table (in [`sql::DATA_TABLES`] order: rst, flows, anomalies,
    /// stats) of the rows of every batch in order, each row stamped with its batch, but
    /// for the first `skip[table]` rows; a table with no rows left gets no INSERT.
    /// `rows`: the batches' rows per table ([`total_rows`]).
    async fn write_rows(
        &self,
        batches: &[&ArchivedBatch],
        rows: [usize; 4],
        skip: [usize; 4],
        token_base: &str,
    ) -> anyhow::Result<()> {
        let _shared = self.writes.read().await;
        let todo: [bool; 4] = std::array::from_fn(|i| rows[i] > skip[i]);
        if todo[0] {
            self.insert_rows::<RstEvents>(batches, skip[0], token_base)
                .await?;
        }
        if todo[1] {
            self.insert_rows::<Flows>(batches, skip[1], token_base)
                .await?;
        }
        if todo[2] {
            self.insert_rows::<Anomalies>(batches, skip[2], token_base)
                .await?;
        }
        if todo[3] {
            self.insert_rows::<SensorStats>(batches, skip[3], token_base)
                .await?;
        }
        Ok(())
    }

    /// One INSERT (one block: atomic, but for a body cut short, of which ClickHouse
    /// 18.16 commits the rows it received; see the module's note) of table `T`'s rows
    /// of `batches` but the first `skip`. Rows written after skipped ones get a
    /// deduplication token of their own: they are not the block the full attempt sent.
    async fn insert_rows<T: DataTable>(
        &self,
        batches: &[&ArchivedBatch],
        skip: usize,
        token_base: &str,
    ) -> anyhow::Result<()> {
        let token = match skip {
            0 => token_base.to_string(),
            n => format!("{token_base}/after{n}"),
        };
        let sensor = ids(batches[0]).0;
        let mut ins = self
            .begin_insert::<T::Row>(T::TABLE, sensor, &token)
            .await?;
        let rows = batches.iter().flat_map(|b| T::rows(b, Stamp::of(b)));
        for row in rows.skip(skip) {
            ins.write(&row).await?;
        }
        ins.end().await?;
        Ok(())
    }

    /// An INSERT into `table` of `sensor`'s rows with the write timeouts, a query id
    /// that names the sensor ([`in_flight`]) and, where the server has it, the
    /// deduplication token `token_base/table`.
    async fn begin_insert<T: clickhouse::Row>(
        &self,
        table: &str,
        sensor: &str,
        token_base: &str,
    ) -> anyhow::Result<clickhouse::insert::Insert<T>> {
        let mut ins = self
            .client
            .insert::<T>(table)
            .await?
            .with_timeouts(SEND_TIMEOUT, END_TIMEOUT)
            .with_setting("query_id", self.write_query_id(sensor));
        if self.dialect.has_dedup_token() {
            ins = ins.with_setting(
                "insert_deduplication_token",
                format!("{token_base}/{table}"),
            );
        }
        Ok(ins)
    }

    /// The ledger rows of stored batches (the last INSERT before the ack).
    /// `received`: when the collector got them, the same in every attempt (the
    /// module's note on retries).
    async fn write_ledger(
        &self,
        group: &[(&ArchivedBatch, u32)],
        token_base: &str,
        received: u32,
    ) -> anyhow::Result<()> {
        let sensor = ids(group[0].0).0;
        let mut ins = self
            .begin_insert::<LedgerRow>("batches", sensor, token_base)
            .await?;
        for (b, wire_bytes) in group {
            let (sensor, boot, seq) = ids(b);
            let r = row_counts(b);
            ins.write(&LedgerRow {
                received,
                sensor_id: sensor,
                boot_id: boot,
                seq,
                created_us: b.header.created_us.to_native(),
                rst: r[0] as u32,
                flows: r[1] as u32,
                anomalies: r[2] as u32,
                stats: r[3] as u32,
                wire_bytes: *wire_bytes,
            })
            .await?;
        }
        ins.end().await?;
        Ok(())
    }

    /// Retention on servers without TTL: drops whole day partitions older than
    /// `days`. Returns how many partitions were dropped.
    pub async fn drop_expired_partitions(&self, days: u32) -> anyhow::Result<usize> {
        if days == 0 {
            return Ok(0);
        }
        let cutoff = crate::log::now_us() / 1_000_000 - i64::from(days) * 86_400;
        let cutoff_day: u32 = self
            .q("SELECT toUInt32(toYYYYMMDD(toDate(toDateTime(?))))")
            .bind(cutoff.max(0) as u32)
            .fetch_one()
            .await?;
        let mut dropped = 0;
        for table in sql::ALL_TABLES {
            let parts: Vec<String> = self
                .q("SELECT DISTINCT partition_id FROM system.parts WHERE database = ? AND table = ? AND active")
                .bind(&self.db)
                .bind(*table)
                .fetch_all()
                .await?;
            for p in parts {
                let Ok(day) = p.parse::<u32>() else { continue };
                if day < cutoff_day {
                    self.q(&format!("ALTER TABLE {table} DROP PARTITION ID '{p}'"))
                        .execute()
                        .await?;
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }

    /// A cheap liveness probe.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let _: u8 = self.qa("SELECT toUInt8(1)").fetch_one().await?;
        Ok(())
    }
}

/// Retries `op` with capped exponential backoff until it succeeds, reporting each
/// failure through `on_err`. Bounded only by `deadline` (None: forever).
pub async fn with_backoff<T, F, Fut>(
    mut op: F,
    mut on_err: impl FnMut(&anyhow::Error, u32),
    deadline: Option<Instant>,
) -> anyhow::Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0u32;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                on_err(&e, attempt);
                if deadline.is_some_and(|d| Instant::now() + delay > d) {
                    return Err(e);
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}

fn check_db_name(db: &str) -> anyhow::Result<()> {
    if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("database name {db:?}: use letters, digits and underscores");
    }
    Ok(())
}

/// Refuses rows per table that would not go in as one block each (atomic).
fn check_rows(rows: [usize; 4]) -> anyhow::Result<()> {
    for (table, n) in sql::DATA_TABLES.iter().zip(rows) {
        if n > MAX_ROWS_PER_TABLE {
            bail!("{n} rows for {table} in one store, more than {MAX_ROWS_PER_TABLE}");
        }
    }
    Ok(())
}

/// The deduplication token of a store of `batches` (one sensor's, consecutive):
/// `sensor/boot/seq` for one, `sensor/boot/first-last` for more.
fn token_base(batches: &[&ArchivedBatch]) -> String {
    let (sensor, boot, first) = ids(batches[0]);
    match batches {
        [_] => format!("{sensor}/{boot:016x}/{first}"),
        [.., last] => format!("{sensor}/{boot:016x}/{first}-{}", ids(last).2),
        [] => unreachable!("a store of no batch"),
    }
}

/// `(boot_id, seq), ...` of `batches`, for an `IN` list. Numbers only: formatting
/// them into a query cannot inject anything.
fn batch_keys(batches: &[&ArchivedBatch]) -> String {
    let keys: Vec<String> = batches
        .iter()
        .map(|b| {
            let (_, boot, seq) = ids(b);
            format!("({boot}, {seq})")
        })
        .collect();
    keys.join(", ")
}

/// (sensor id, boot id, sequence) of a batch.
fn ids(b: &ArchivedBatch) -> (&str, u64, u64) {
    (
        b.header.sensor_id.as_str(),
        b.header.boot_id.to_native(),
        b.header.seq.to_native(),
    )
}

/// The rows of `batches` per table, all together.
fn total_rows(batches: &[&ArchivedBatch]) -> [usize; 4] {
    let mut rows = [0usize; 4];
    for b in batches {
        for (total, n) in rows.iter_mut().zip(row_counts(b)) {
            *total += n;
        }
    }
    rows
}

/// Rows per table: rst_events, flows, anomalies, sensor_stats.
fn row_counts(b: &ArchivedBatch) -> [usize; 4] {
    [
        b.rst.len(),
        b.flows.len(),
        b.anomalies.len(),
        b.stats.iter().map(|s| s.counters.len()).sum(),
    ]
}

/// Seconds for `DateTime` columns (clamped to its range).
pub(crate) fn secs(us: i64) -> u32 {
    us.div_euclid(1_000_000).clamp(0, u32::MAX as i64) as u32
}

/// The batch a row came from: the columns every data table starts with.
#[derive(Clone, Copy)]
struct Stamp<'a> {
    sensor_id: &'a str,
    boot_id: u64,
    batch_seq: u64,
}

impl<'a> Stamp<'a> {
    fn of(b: &'a ArchivedBatch) -> Stamp<'a> {
        let (sensor_id, boot_id, batch_seq) = ids(b);
        Stamp {
            sensor_id,
            boot_id,
            batch_seq,
        }
    }
}

/// One data table: its name and how a batch becomes its rows (the row type is the
/// table's RowBinary layout, column for column).
trait DataTable {
    const TABLE: &'static str;
    type Row: clickhouse::RowWrite;
    fn rows<'a>(
        b: &'a ArchivedBatch,
        stamp: Stamp<'a>,
    ) -> impl Iterator<Item = <Self::Row as clickhouse::Row>::Value<'a>> + Send + 'a;
}

/// The data tables, as types for [`Store::insert_rows`].
struct RstEvents;
struct Flows;
struct Anomalies;
struct SensorStats;

impl DataTable for RstEvents {
    type Row = RstRow<'static>;
    const TABLE: &'static str = "rst_events";
    fn rows<'a>(
        b: &'a ArchivedBatch,
        st: Stamp<'a>,
    ) -> impl Iterator<Item = RstRow<'a>> + Send + 'a {
        b.rst.iter().map(move |e| {
            let ts_us = e.ts_us.to_native();
            RstRow {
                ts: secs(ts_us),
                ts_us,
                sensor_id: st.sensor_id,
                boot_id: st.boot_id,
                batch_seq: st.batch_seq,
                src: e.src.0,
                sport: e.sport.to_native(),
                dst: e.dst.0,
                dport: e.dport.to_native(),
                vlan: e.vlan.to_native(),
                inner_vlan: e.inner_vlan.to_native(),
                dir: Dir::from_archived(&e.dir).code() as i8,
                class: RstClass::from_archived(&e.class).code() as i8,
                flags: e.flags.0.to_native(),
                suspect: e.suspect as u8,
                seq: e.seq.to_native(),
                ack: e.ack.to_native(),
                ack_flag: e.ack_flag as u8,
                ttl: e.ttl,
                ip_id: e.ip_id.to_native(),
                payload_len: e.payload_len.to_native(),
                flow_uid: e.flow_uid.to_native(),
                cause: Cause::from_archived(&e.cause).code() as i8,
                cause_detail: e.cause_detail.as_str(),
                silence_ms: e.silence_ms.to_native(),
                encap: Encap::from_archived(&e.encap).as_str(),
                tunnel_id: e.tunnel_id.to_native(),
            }
        })
    }
}

impl DataTable for Flows {
    type Row = FlowRow<'static>;
    const TABLE: &'static str = "flows";
    fn rows<'a>(
        b: &'a ArchivedBatch,
        st: Stamp<'a>,
    ) -> impl Iterator<Item = FlowRow<'a>> + Send + 'a {
        b.flows.iter().map(move |f| {
            let (s, e) = (f.ts_start_us.to_native(), f.ts_end_us.to_native());
            FlowRow {
                ts_start: secs(s),
                ts_start_us: s,
                ts_end: secs(e),
                ts_end_us: e,
                sensor_id: st.sensor_id,
                boot_id: st.boot_id,
                batch_seq: st.batch_seq,
                orig_h: f.orig_h.0,
                orig_p: f.orig_p.to_native(),
                resp_h: f.resp_h.0,
                resp_p: f.resp_p.to_native(),
                vlan: f.vlan.to_native(),
                inner_vlan: f.inner_vlan.to_native(),
                conn_state: ConnState::from_archived(&f.conn_state).code() as i8,
                history: f.history.as_str(),
                orig_pkts: f.orig_pkts.to_native(),
                resp_pkts: f.resp_pkts.to_native(),
                orig_bytes: f.orig_bytes.to_native(),
                resp_bytes: f.resp_bytes.to_native(),
                rst_count: f.rst_count.to_native(),
                close: CloseReason::from_archived(&f.close).code() as i8,
                flow_uid: f.flow_uid.to_native(),
                cause: sql::flow_cause_code(f.cause.as_ref().map(Cause::from_archived)),
                encap: Encap::from_archived(&f.encap).as_str(),
                tunnel_id: f.tunnel_id.to_native(),
            }
        })
    }
}

impl DataTable for Anomalies {
    type Row = AnomalyRow<'static>;
    const TABLE: &'static str = "anomalies";
    fn rows<'a>(
        b: &'a ArchivedBatch,
        st: Stamp<'a>,
    ) -> impl Iterator<Item = AnomalyRow<'a>> + Send + 'a {
        b.anomalies.iter().map(move |a| {
            let ts_us = a.ts_us.to_native();
            AnomalyRow {
                ts: secs(ts_us),
                ts_us,
                sensor_id: st.sensor_id,
                boot_id: st.boot_id,
                batch_seq: st.batch_seq,
                kind: AnomalyKind::from_archived(&a.kind).code() as i8,
                subject: a.subject.as_str(),
                value: a.value.to_native(),
                baseline: a.baseline.to_native(),
                detail: a.detail.as_str(),
            }
        })
    }
}

impl DataTable for SensorStats {
    type Row = StatRow<'static>;
    const TABLE: &'static str = "sensor_stats";
    fn rows<'a>(
        b: &'a ArchivedBatch,
        st: Stamp<'a>,
    ) -> impl Iterator<Item = StatRow<'a>> + Send + 'a {
        b.stats.iter().flat_map(move |s| {
            let ts_us = s.ts_us.to_native();
            s.counters.iter().map(move |c| StatRow {
                ts: secs(ts_us),
                ts_us,
                sensor_id: st.sensor_id,
                boot_id: st.boot_id,
                batch_seq: st.batch_seq,
                name: c.name.as_str(),
                value: c.value.to_native(),
            })
        })
    }
}

#[derive(clickhouse::Row, serde::Serialize)]
struct RstRow<'a> {
    ts: u32,
    ts_us: i64,
    sensor_id: &'a str,
    boot_id: u64,
    batch_seq: u64,
    src: [u8; 16],
    sport: u16,
    dst: [u8; 16],
    dport: u16,
    vlan: u16,
    inner_vlan: u16,
    dir: i8,
    class: i8,
    flags: u32,
    suspect: u8,
    seq: u32,
    ack: u32,
    ack_flag: u8,
    ttl: u8,
    ip_id: u16,
    payload_len: u16,
    flow_uid: u64,
    cause: i8,
    cause_detail: &'a str,
    silence_ms: u64,
    encap: &'a str,
    tunnel_id: u32,
}

#[derive(clickhouse::Row, serde::Serialize)]
struct FlowRow<'a> {
    ts_start: u32,
    ts_start_us: i64,
    ts_end: u32,
    ts_end_us: i64,
    sensor_id: &'a str,
    boot_id: u64,
    batch_seq: u64,
    orig_h: [u8; 16],
    orig_p: u16,
    resp_h: [u8; 16],
    resp_p: u16,
    vlan: u16,
    inner_vlan: u16,
    conn_state: i8,
    history: &'a str,
    orig_pkts: u64,
    resp_pkts: u64,
    orig_bytes: u64,
    resp_bytes: u64,
    rst_count: u32,
    close: i8,
    flow_uid: u64,
    /// `sql::NO_CAUSE_CODE` ('') when no RST closed the flow.
    cause: i8,
    encap: &'a str,
    tunnel_id: u32,
}

#[derive(clickhouse::Row, serde::Serialize)]
struct AnomalyRow<'a> {
    ts: u32,
    ts_us: i64,
    sensor_id: &'a str,
    boot_id: u64,
    batch_seq: u64,
    kind: i8,
    subject: &'a str,
    value: f64,
    baseline: f64,
    detail: &'a str,
}

#[derive(clickhouse::Row, serde::Serialize)]
struct StatRow<'a> {
    ts: u32,
    ts_us: i64,
    sensor_id: &'a str,
    boot_id: u64,
    batch_seq: u64,
    name: &'a str,
    value: u64,
}

#[derive(clickhouse::Row, serde::Serialize)]
struct LedgerRow<'a> {
    received: u32,
    sensor_id: &'a str,
    boot_id: u64,
    seq: u64,
    created_us: i64,
    rst: u32,
    flows: u32,
    anomalies: u32,
    stats: u32,
    wire_bytes: u32,
}
