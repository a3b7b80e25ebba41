//! Writes of one sensor's batches still running on the servers, and waiting for them.
//!
//! A collector killed mid-INSERT leaves the INSERT running on the server: it has the
//! whole body, or commits what it got, and then runs the rollup views. The sensor
//! resends those batches to another collector, whose checks must not look before that
//! INSERT is over: it would find nothing and write the rows again, or find the raw rows
//! and restore rollups the views are about to fill (`scripts/test-cluster.sh` did both
//! on 2026-12-04: a repair 200 RSTs over, the killed collector's INSERT on another node).
//!
//! So every INSERT the collector sends has a query id naming its sensor
//! (`rstwatch-<sensor id in hex>-<collector instance>-<n>`); ClickHouse passes it on
//! as `initial_query_id` to the queries an INSERT into a `Distributed` table runs on
//! the shards. Before a resent batch is checked, and before a rollup repair, the
//! collector waits until no such query runs: on one server, in its `system.processes`;
//! on a cluster, on every node of the cluster its `Distributed` tables name (nodes that
//! are down run nothing and are skipped).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::Store;
use crate::warn;

/// How long to wait for a sensor's writes to end before the attempt fails (and is
/// retried): a server that has not finished an INSERT in this time is not well.
const SETTLE_WAIT: Duration = Duration::from_secs(30);

/// The query id prefix of every write of `sensor`'s batches, any collector's.
pub fn sensor_prefix(sensor: &str) -> String {
    let hex: String = sensor.bytes().map(|b| format!("{b:02x}")).collect();
    format!("rstwatch-{hex}-")
}

/// Whose writes to wait for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Writers {
    /// Every collector's, this one's too.
    All,
    /// Other collectors' (this one's INSERTs of the batches in question are over).
    Others,
}

impl Store {
    /// A new query id for a write of `sensor`'s batches.
    pub(super) fn write_query_id(&self, sensor: &str) -> String {
        let n = self.queries.fetch_add(1, Relaxed);
        format!("{}{:016x}-{n}", sensor_prefix(sensor), self.instance)
    }

    /// Waits until no write of `sensor`'s batches runs on any server (module docs).
    pub(super) async fn wait_for_sensor_writes(
        &self,
        sensor: &str,
        writers: Writers,
    ) -> anyhow::Result<()> {
        let source = match self.cluster_nodes().await? {
            Some(nodes) => format!("remote('{nodes}', system, processes)"),
            None => "system.processes".to_string(),
        };
        // Hex digits and dashes only: nothing in them to escape.
        let prefix = sensor_prefix(sensor);
        let mut sql =
            format!("SELECT count() FROM {source} WHERE initial_query_id LIKE '{prefix}%'");
        if writers == Writers::Others {
            sql += &format!(
                " AND initial_query_id NOT LIKE '{prefix}{:016x}-%'",
                self.instance
            );
        }
        let start = Instant::now();
        let deadline = start + SETTLE_WAIT;
        let mut first_seen = 0;
        loop {
            let running: u64 = self
                .qa(&sql)
                .with_setting("skip_unavailable_shards", "1")
                .fetch_one()
                .await
                .context("looking for writes of the sensor still running")?;
            if running == 0 {
                if first_seen > 0 {
                    warn!(
                        "sensor {sensor:?}: waited {} ms for {first_seen} write(s) of its \
                         batches still running (a collector killed mid-INSERT runs on)",
                        start.elapsed().as_millis()
                    );
                }
                return Ok(());
            }
            if first_seen == 0 {
                first_seen = running;
            }
            if Instant::now() > deadline {
                bail!(
                    "a write of sensor {sensor:?} has run for {} s: its batches are checked \
                     once none runs",
                    SETTLE_WAIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// On a cluster, `host:port,...` of every node of the cluster that `rst_events`
    /// (a `Distributed` table) names, for `remote()`; None on one server. Looked up
    /// once.
    async fn cluster_nodes(&self) -> anyhow::Result<Option<String>> {
        let nodes = self
            .cluster_nodes
            .get_or_try_init(|| async {
                let engine: Vec<String> = self
                    .qa("SELECT engine_full FROM system.tables WHERE database = ? AND name = 'rst_events'")
                    .bind(&self.db)
                    .fetch_all()
                    .await?;
                let Some(cluster) = engine.first().and_then(|e| distributed_cluster(e)) else {
                    return Ok(None);
                };
                // The address the server resolved, or its name when it could not.
                let hosts: Vec<(String, u16)> = self
                    .qa("SELECT if(host_address = '', host_name, host_address), port \
                         FROM system.clusters WHERE cluster = ?")
                    .bind(&cluster)
                    .fetch_all()
                    .await?;
                if hosts.is_empty() {
                    bail!("rst_events is on cluster {cluster:?}, which system.clusters does not list");
                }
                Ok(Some(remote_addresses(&hosts)))
            })
            .await?;
        Ok(nodes.clone())
    }
}

/// The cluster a `Distributed(cluster, db, table, ...)` engine names.
fn distributed_cluster(engine_full: &str) -> Option<String> {
    let args = engine_full.trim().strip_prefix("Distributed(")?;
    let first = args.split(',').next()?.trim();
    let name = first.trim_matches(|c| c == '`' || c == '\'' || c == '"');
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    plain.then(|| name.to_string())
}

/// `remote()`'s address list with every node its own shard, so each is asked.
fn remote_addresses(hosts: &[(String, u16)]) -> String {
    let addr = |(h, p): &(String, u16)| {
        if h.contains(':') {
            format!("[{h}]:{p}")
        } else {
            format!("{h}:{p}")
        }
    };
    hosts.iter().map(addr).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_names_the_sensor_unambiguously() {
        assert_eq!(sensor_prefix("ab"), "rstwatch-6162-");
        // A sensor whose id extends another's has a prefix the other's does not match.
        assert!(!sensor_prefix("ab-1").starts_with(&sensor_prefix("ab")));
        assert!(sensor_prefix("x'y%")
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }

    #[test]
    fn the_cluster_of_a_distributed_engine() {
        let e = "Distributed(`rw`, `rstwatch`, rst_events_local, cityHash64(sensor_id))";
        assert_eq!(distributed_cluster(e).as_deref(), Some("rw"));
        assert_eq!(
            distributed_cluster("Distributed(rw2, db, t)").as_deref(),
            Some("rw2")
        );
        assert_eq!(
            distributed_cluster("MergeTree PARTITION BY x ORDER BY y"),
            None
        );
        assert_eq!(distributed_cluster("Distributed('a b', db, t)"), None);
    }

    #[test]
    fn every_node_is_its_own_shard() {
        let hosts = [("127.0.0.1".to_string(), 9000), ("::1".to_string(), 9001)];
        assert_eq!(remote_addresses(&hosts), "127.0.0.1:9000,[::1]:9001");
    }
}
