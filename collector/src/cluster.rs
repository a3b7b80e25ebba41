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
    let client = base_client(cfg);
    let version: String = client
        .query("SELECT version()")
        .fetch_one()
        .await
        .with_context(|| format!("ClickHouse at {} does not answer", cfg.url))?;
    let dialect = Dialect::from_version(&version, retention_days)
        .with_context(|| format!("unrecognised ClickHouse version {version:?}"))?;
    let known: u64 = client
        .query("SELECT count() FROM system.clusters WHERE cluster = ?")
        .bind(cluster)
        .fetch_one()
        .await?;
    if known == 0 {
        bail!(
            "ClickHouse at {} has no cluster {cluster:?} in its remote_servers",
            cfg.url
        );
    }
    let c = Cluster::new(cluster, &cfg.database);
    let exec = |st: String| {
        let client = client.clone();
        async move {
            client
                .query(&st)
                .execute()
                .await
                .with_context(|| format!("on cluster: {st}"))
        }
    };
    exec(c.create_database()).await?;
    exec(c.schema_migrations()).await?;
    let current: u32 = client
        .query(&format!(
            "SELECT toUInt32(max(version)) FROM `{}`.schema_migrations",
            cfg.database
        ))
        .fetch_one()
        .await?;
    let latest = sql::latest_version();
    if current > latest {
        bail!(
            "database {} has schema version {current}, newer than this collector knows ({latest})",
            cfg.database
        );
    }
    let mut applied = Vec::new();
    for m in sql::MIGRATIONS.iter().filter(|m| m.version > current) {
        let rendered = dialect.render(m.sql, &format!("`{}`", cfg.database));
        for st in c.render_migration(&rendered)? {
            exec(st)
                .await
                .with_context(|| format!("migration {}", m.name))?;
        }
        client
            .query(&format!(
                "INSERT INTO `{}`.schema_migrations (version, name, applied, server_version) \
                 VALUES (?, ?, now(), ?)",
                cfg.database
            ))
            .bind(m.version)
            .bind(m.name)
            .bind(version.trim())
            .execute()
            .await?;
        applied.push(m.version);
    }
    if current.max(applied.last().copied().unwrap_or(0)) >= crate::ch::CAUSE_REMEDIES_SINCE {
        // Reference rows, the same on every node (one replication path): refreshed
        // on each migrate like a single server's.
        for st in sql::cause_remedies_refresh(&format!("`{}`", cfg.database)) {
            exec(st).await.context("refreshing cause_remedies")?;
        }
    }
    Ok(applied)
}
