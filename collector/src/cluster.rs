//! `migrate --cluster NAME`: the schema on a ClickHouse cluster (replicated local
//! tables, `Distributed` tables in front, DDL `ON CLUSTER`), rendered from the same
//! migrations by [`rstwatch_schema::cluster`]. Run it against any one node; ZooKeeper's
//! distributed DDL queue carries every statement to all nodes.
//!
//! Writes need nothing else from the collector: with `Distributed` tables named as the
//! single-server tables, `serve` inserts and checks its ledger through them. The
//! writer's profile must set (the clickhouse Ansible role does, in cluster mode):
//! - `insert_distributed_sync = 1`: an INSERT returns only when the shard has the block,
//!   so an ack means stored;
//! - `insert_quorum = 2` (every replica of a shard) and `select_sequential_consistency
//!   = 1`: a batch acknowledged, or half-written before a collector died, is on every
//!   replica of its shard, so the ledger check of a resent batch finds it whichever
//!   replica answers. Without these, a batch written to one replica that then dies is
//!   invisible to a check on the other and is written twice (scripts/test-cluster.sh
//!   caught exactly that);
//! - `load_balancing = in_order`: a shard's reads and writes go to the same replica
//!   while it is up.

use anyhow::{bail, Context};
use rstwatch_schema::cluster::Cluster;
use rstwatch_schema::sql::{self, Dialect};

use crate::ch::{base_client, ChConfig};

/// Names spliced into `ON CLUSTER` DDL: letters, digits and underscores only.
fn check_identifier(what: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("{what} name {name:?}: use letters, digits and underscores");
    }
    Ok(())
}

/// Creates or upgrades the schema on every node of `cluster`. Returns the versions
/// applied now.
pub async fn migrate(
    cfg: &ChConfig,
    cluster: &str,
    retention_days: u32,
) -> anyhow::Result<Vec<u32>> {
    check_identifier("cluster", cluster)?;
    check_identifier("database", &cfg.database)?;
    let node = Node {
        client: base_client(cfg),
        cfg,
        cluster: Cluster::new(cluster, &cfg.database),
    };
    let (version, dialect) = node.probe(retention_days).await?;
    node.check_cluster_known(cluster).await?;
    node.check_zookeeper().await?;
    node.exec(node.cluster.create_database()).await?;
    node.exec(node.cluster.schema_migrations()).await?;
    let current = node.current_version().await?;
    let applied = if current == 0 {
        node.create_fresh(&dialect, &version).await?
    } else {
        node.apply_migrations(current, &dialect, &version).await?
    };
    if current.max(applied.last().copied().unwrap_or(0)) >= crate::ch::CAUSE_REMEDIES_SINCE {
        node.refresh_cause_remedies().await?;
    }
    Ok(applied)
}

/// The node `migrate` talks to, and the cluster it renders DDL for.
struct Node<'a> {
    client: clickhouse::Client,
    cfg: &'a ChConfig,
    cluster: Cluster,
}

impl Node<'_> {
    /// Runs one statement (DDL `ON CLUSTER` goes to every node through ZooKeeper).
    async fn exec(&self, st: String) -> anyhow::Result<()> {
        self.client
            .query(&st)
            .execute()
            .await
            .with_context(|| format!("on cluster: {st}"))
    }

    /// The server's version string and the dialect it speaks.
    async fn probe(&self, retention_days: u32) -> anyhow::Result<(String, Dialect)> {
        let version: String = self
            .client
            .query("SELECT version()")
            .fetch_one()
            .await
            .with_context(|| format!("ClickHouse at {} does not answer", self.cfg.url))?;
        let dialect = Dialect::from_version(&version, retention_days)
            .with_context(|| format!("unrecognised ClickHouse version {version:?}"))?;
        Ok((version, dialect))
    }

    async fn check_cluster_known(&self, cluster: &str) -> anyhow::Result<()> {
        let known: u64 = self
            .client
            .query("SELECT count() FROM system.clusters WHERE cluster = ?")
            .bind(cluster)
            .fetch_one()
            .await?;
        if known == 0 {
            bail!(
                "ClickHouse at {} has no cluster {cluster:?} in its remote_servers",
                self.cfg.url
            );
        }
        Ok(())
    }

    /// `ON CLUSTER` DDL goes through ZooKeeper. ClickHouse 18.16 crashed (SIGSEGV) on
    /// such a statement when its DDL worker had never reached ZooKeeper
    /// (scripts/cluster-lib.sh), so a node that cannot reach it now gets none.
    async fn check_zookeeper(&self) -> anyhow::Result<()> {
        self.client
            .query("SELECT count() FROM system.zookeeper WHERE path = '/'")
            .fetch_one::<u64>()
            .await
            .with_context(|| {
                format!(
                    "ClickHouse at {} cannot reach ZooKeeper, which ON CLUSTER DDL needs \
                     (its <zookeeper> config, and is ZooKeeper serving?)",
                    self.cfg.url
                )
            })?;
        Ok(())
    }

    /// The highest migration applied; refuses a database newer than this build.
    async fn current_version(&self) -> anyhow::Result<u32> {
        let db = &self.cfg.database;
        let current: u32 = self
            .client
            .query(&format!(
                "SELECT toUInt32(max(version)) FROM `{db}`.schema_migrations"
            ))
            .fetch_one()
            .await?;
        let latest = sql::latest_version();
        if current > latest {
            bail!(
                "database {db} has schema version {current}, newer than this collector knows ({latest})"
            );
        }
        Ok(current)
    }

    /// A new cluster (no migration recorded): every migration at once, its `ALTER`s
    /// folded into the `CREATE`s (schema/src/cluster/fold.rs says why), then each
    /// recorded. Run again after an interruption, it completes what is missing: every
    /// statement is `CREATE ... IF NOT EXISTS` or a backfill of still-empty tables.
    async fn create_fresh(&self, dialect: &Dialect, version: &str) -> anyhow::Result<Vec<u32>> {
        let db = format!("`{}`", self.cfg.database);
        let rendered: Vec<String> = sql::MIGRATIONS
            .iter()
            .map(|m| dialect.render(m.sql, &db))
            .collect();
        for st in self.cluster.render_fresh(&rendered)? {
            self.exec(st).await.context("creating the schema")?;
        }
        let mut applied = Vec::new();
        for m in sql::MIGRATIONS {
            self.record(m, version).await?;
            applied.push(m.version);
        }
        Ok(applied)
    }

    /// Applies every migration above `current`, each recorded once it is in.
    async fn apply_migrations(
        &self,
        current: u32,
        dialect: &Dialect,
        version: &str,
    ) -> anyhow::Result<Vec<u32>> {
        let db = &self.cfg.database;
        let mut applied = Vec::new();
        for m in sql::MIGRATIONS.iter().filter(|m| m.version > current) {
            let rendered = dialect.render(m.sql, &format!("`{db}`"));
            for st in self.cluster.render_migration(&rendered)? {
                self.exec(st)
                    .await
                    .with_context(|| format!("migration {}", m.name))?;
            }
            self.record(m, version).await?;
            applied.push(m.version);
        }
        Ok(applied)
    }

    /// The ledger row of a migration applied.
    async fn record(&self, m: &sql::Migration, version: &str) -> anyhow::Result<()> {
        let db = &self.cfg.database;
        self.client
            .query(&format!(
                "INSERT INTO `{db}`.schema_migrations (version, name, applied, server_version) \
                 VALUES (?, ?, now(), ?)"
            ))
            .bind(m.version)
            .bind(m.name)
            .bind(version.trim())
            .execute()
            .await?;
        Ok(())
    }

    /// Reference rows, the same on every node (one replication path): refreshed on
    /// each migrate like a single server's.
    async fn refresh_cause_remedies(&self) -> anyhow::Result<()> {
        for st in sql::cause_remedies_refresh(&format!("`{}`", self.cfg.database)) {
            self.exec(st).await.context("refreshing cause_remedies")?;
        }
        Ok(())
    }
}
