//! Restoring the rollups after a write that failed part-way.
//!
//! A failed INSERT into `rst_events` may have committed the raw block and not some of
//! the views' blocks (the rollups `rst_minute`, `rst_minute_cause`, `rst_hour`): a
//! ClickHouse killed mid-insert, or on a cluster a replica killed while a view's part
//! waits for its quorum. The resent batch's raw rows are found and not written again,
//! so no view runs again; and a retry's raw block, identical to one the failed attempt
//! committed unseen, is dropped by a replicated table, views and all ([`super`], on
//! retries). For such a batch the collector compares each rollup with
//! `rst_events` in the minutes and hours of its RSTs and inserts what the rollup lacks
//! ([`rstwatch_schema::rollup`]).
//!
//! That comparison is exact only once nothing of the failed insert can still land, and
//! while nothing else is on its way from `rst_events` to the views:
//! - no write of the batch's sensor still running on any server (one sent by a killed
//!   collector runs on to its views), which it waits for ([`super::in_flight`]); a
//!   shard's insert needs its quorum (every replica), so a batch that failed with a
//!   replica is resent, and repaired, only once that replica is back;
//! - none of this collector's own inserts in flight, and no other repair: a repair
//!   holds `Store::writes` exclusively.
//!
//! On a cluster the first two tries (2026-12-04, before `Store::writes`) over-counted in
//! `scripts/test-cluster.sh`: `rst_minute` restored by 400 RSTs and then 400 over, and
//! in another run `rst_hour` by 100 (the second try also waited for every node's
//! inserts and every shard's pending quorums). Two groups of one sensor are stored at
//! once, and a single server's CI run then showed two repairs of one minute each
//! restoring its whole shortfall. With repairs alone, twenty runs of `test-cluster.sh`
//! ended with every rollup equal to `rst_events`, five of them after repairs (from 3 to
//! 246 RSTs a rollup).

use anyhow::Context;
use rstwatch_schema::batch::ArchivedBatch;
use rstwatch_schema::rollup;

use super::in_flight::Writers;
use super::{secs, Store};
use crate::warn;

impl Store {
    /// Restores what the rollups lack in the buckets of the RSTs of `batches` (one
    /// sensor's), whose raw rows an earlier attempt may have written (module docs).
    /// Returns the RSTs restored, all rollups together. Safe to repeat: once restored,
    /// nothing is short. This collector writes no rows meanwhile (`Store::writes`);
    /// another collector's INSERT is waited for.
    pub(super) async fn repair_rollups(&self, batches: &[&ArchivedBatch]) -> anyhow::Result<u64> {
        // No write of this collector's runs from here to the end (`Store::writes`).
        let _only = self.writes.write().await;
        let (sensor, boot, first_seq) = super::ids(batches[0]);
        self.wait_for_sensor_writes(sensor, Writers::All).await?;
        let secs_of = |e: &rstwatch_schema::event::ArchivedRstEvent| secs(e.ts_us.to_native());
        let rsts = || batches.iter().flat_map(|b| b.rst.iter());
        let (Some(first), Some(last)) = (rsts().map(secs_of).min(), rsts().map(secs_of).max())
        else {
            return Ok(0);
        };
        let last_seq = super::ids(batches[batches.len() - 1]).2;
        let mut restored = 0;
        for r in rollup::ROLLUPS {
            let (keys, short): (u64, u64) = self
                .q(&format!(
                    "SELECT count(), toUInt64(sum(rsts)) FROM ({})",
                    rollup::shortfall_sql(r, first, last)
                ))
                .bind(sensor)
                .bind(sensor)
                .fetch_one()
                .await
                .with_context(|| format!("checking {} against rst_events", r.table))?;
            if keys == 0 {
                continue;
            }
            // Not deduplicated: a replicated table drops a block identical to one of
            // its recent ones, and a view's block of the same key and count can be.
            self.q(&rollup::repair_sql(r, first, last))
                .bind(sensor)
                .bind(sensor)
                .with_setting("insert_deduplicate", "0")
                .with_setting("query_id", self.write_query_id(sensor))
                .execute()
                .await
                .with_context(|| format!("restoring {short} RSTs to {}", r.table))?;
            warn!(
                "sensor {sensor:?} batches {boot:016x}/{first_seq}..{last_seq}: {} was \
                 {short} RSTs short of rst_events after a write that failed part-way; restored",
                r.table
            );
            restored += short;
        }
        Ok(restored)
    }
}
