//! Storing batches that may have been written in part before: resent by a sensor, or
//! retried after an attempt that failed.
//!
//! What the ledger and each table hold already is not written again. A table's rows of
//! a store go in batch order, and an INSERT is committed whole, or (its body cut short
//! by a killed collector) its first rows: so what a table holds of a group stored
//! together is its first rows, whole batches and then part of one. Those are skipped
//! and the rest is written, by one INSERT per table as [`Store::store_group`] does. A
//! table holding nothing of them gets the very block the first attempt sent, which a
//! replicated table drops if that attempt's block is there unseen (the module
//! [`super`] says when). Rows found in another shape, written by a collector that
//! grouped the batches otherwise, send the store batch by batch.

use rstwatch_schema::batch::ArchivedBatch;
use rstwatch_schema::sql;

use super::in_flight::Writers;
use super::{batch_keys, check_rows, ids, row_counts, token_base, total_rows, Store, Stored};
use crate::warn;

impl Store {
    /// Stores `group` (one sensor's consecutive batches, with their wire sizes) exactly
    /// once whatever of it was written before. `received`: when the collector got
    /// them, the same in every attempt. `retry`: an attempt of this store failed
    /// before. The caller holds every batch's lock.
    pub async fn store_checked(
        &self,
        group: &[(&ArchivedBatch, u32)],
        received: u32,
        retry: bool,
    ) -> anyhow::Result<Vec<Stored>> {
        if !retry {
            // Resent: a killed collector's INSERT of these batches may still run.
            let sensor = ids(group[0].0).0;
            self.wait_for_sensor_writes(sensor, Writers::Others).await?;
        }
        // A batch twice in the group (sent again without the resent flag) is stored by
        // its first copy and found in the ledger by the second: batch by batch.
        let keys: std::collections::HashSet<(u64, u64)> =
            group.iter().map(|(b, _)| (ids(b).1, ids(b).2)).collect();
        if keys.len() == group.len() {
            if let Some(stored) = self.store_checked_together(group, received, retry).await? {
                return Ok(stored);
            }
        }
        let mut stored = Vec::with_capacity(group.len());
        for one in group.chunks(1) {
            let v = self.store_checked_together(one, received, retry).await?;
            stored.extend(v.expect("one batch's rows are always its first rows"));
        }
        Ok(stored)
    }

    /// [`Store::store_checked`] with one INSERT per table for the whole group. None,
    /// writing nothing, when the ledger holds some of the group and not all, or a
    /// table holds rows of it that are not its first rows (never for one batch).
    async fn store_checked_together(
        &self,
        group: &[(&ArchivedBatch, u32)],
        received: u32,
        retry: bool,
    ) -> anyhow::Result<Option<Vec<Stored>>> {
        let batches: Vec<&ArchivedBatch> = group.iter().map(|(b, _)| *b).collect();
        let rows = total_rows(&batches);
        check_rows(rows)?;
        match self.ledger_holds(&batches).await? {
            0 => {}
            n if n == batches.len() => return Ok(Some(vec![Stored::Duplicate; n])),
            _ => return Ok(None),
        }
        let Some(held) = self.rows_held(&batches, rows).await? else {
            return Ok(None);
        };
        let token_base = token_base(&batches);
        self.write_rows(&batches, rows, held.skip, &token_base)
            .await?;
        // The views ran on whatever rows of the group an earlier INSERT committed, and
        // a write killed between the rows and the views leaves the rollups short. A
        // retry's rst block, when it is dropped as the failed attempt's, runs no view.
        let rst_found = held.by_batch.iter().any(|h| h[0] > 0);
        let rst_maybe_dropped = retry && held.skip[0] == 0 && rows[0] > 0;
        let restored = if rst_found || rst_maybe_dropped {
            self.repair_rollups(&batches).await?
        } else {
            0
        };
        self.write_ledger(group, &token_base, received).await?;
        let stored = held.by_batch.iter().zip(&held.completed).enumerate();
        Ok(Some(
            stored
                .map(|(k, (h, &completed))| {
                    let restored = if k == 0 { restored } else { 0 };
                    if h.iter().all(|&n| n == 0) && restored == 0 {
                        Stored::New
                    } else {
                        Stored::Completed {
                            rollup_rsts_restored: restored,
                            truncated_rows_completed: completed,
                        }
                    }
                })
                .collect(),
        ))
    }

    /// What each table holds of `batches` (`rows`: theirs per table). None when a
    /// table's rows of them are not their first rows.
    async fn rows_held(
        &self,
        batches: &[&ArchivedBatch],
        rows: [usize; 4],
    ) -> anyhow::Result<Option<Held>> {
        let per_batch: Vec<[usize; 4]> = batches.iter().map(|b| row_counts(b)).collect();
        let mut held = Held {
            skip: [0; 4],
            by_batch: vec![[0; 4]; batches.len()],
            completed: vec![0; batches.len()],
        };
        for (i, table) in sql::DATA_TABLES.iter().enumerate() {
            if rows[i] == 0 {
                continue;
            }
            let want: Vec<usize> = per_batch.iter().map(|r| r[i]).collect();
            let have = self.rows_of_batches(table, batches).await?;
            let Some(skip) = first_rows(&want, &have) else {
                return Ok(None);
            };
            held.skip[i] = skip;
            for (k, (&w, &h)) in want.iter().zip(&have).enumerate() {
                let (sensor, boot, seq) = ids(batches[k]);
                if h > w {
                    warn!(
                        "sensor {sensor:?} batch {boot:016x}/{seq}: {table} holds {h} of its \
                         rows, more than the {w} it has; not written again"
                    );
                } else if h > 0 && h < w {
                    warn!(
                        "sensor {sensor:?} batch {boot:016x}/{seq}: {table} held the first \
                         {h} of its {w} rows, from an INSERT cut short; writing the other {}",
                        w - h
                    );
                    held.completed[k] += (w - h) as u64;
                }
                held.by_batch[k][i] = h;
            }
        }
        Ok(Some(held))
    }

    /// Rows `table` holds of each of `batches` (one sensor's), in their order.
    async fn rows_of_batches(
        &self,
        table: &str,
        batches: &[&ArchivedBatch],
    ) -> anyhow::Result<Vec<usize>> {
        let found: Vec<(u64, u64, u64)> = self
            .q(&format!(
                "SELECT boot_id, batch_seq, count() FROM {table} WHERE sensor_id = ? AND \
                 (boot_id, batch_seq) IN ({}) GROUP BY boot_id, batch_seq",
                batch_keys(batches)
            ))
            .bind(ids(batches[0]).0)
            .fetch_all()
            .await?;
        Ok(batches
            .iter()
            .map(|b| {
                let (_, boot, seq) = ids(b);
                found
                    .iter()
                    .find(|&&(fb, fs, _)| (fb, fs) == (boot, seq))
                    .map_or(0, |&(_, _, n)| n as usize)
            })
            .collect())
    }
}

/// What the tables hold of a store's batches.
struct Held {
    /// Per table: its rows of the store to skip (they are there).
    skip: [usize; 4],
    /// Per batch, per table: its rows there.
    by_batch: Vec<[usize; 4]>,
    /// Per batch: rows written after the first ones a truncated INSERT committed.
    completed: Vec<u64>,
}

/// How many of a store's rows in one table `have` amounts to, as rows to skip, when
/// they are its first rows: whole batches, then the first rows of one (`want`: each
/// batch's rows). A batch holding more than its rows counts as whole. None otherwise.
fn first_rows(want: &[usize], have: &[usize]) -> Option<usize> {
    let mut skip = 0;
    let mut whole_so_far = true;
    for (&w, &h) in want.iter().zip(have) {
        if whole_so_far {
            skip += h.min(w);
            whole_so_far = h >= w;
        } else if h > 0 {
            return None;
        }
    }
    Some(skip)
}

#[cfg(test)]
mod tests {
    use super::first_rows;

    #[test]
    fn first_rows_are_whole_batches_then_part_of_one() {
        assert_eq!(first_rows(&[3, 4, 5], &[0, 0, 0]), Some(0));
        assert_eq!(first_rows(&[3, 4, 5], &[3, 4, 5]), Some(12));
        assert_eq!(first_rows(&[3, 4, 5], &[3, 2, 0]), Some(5));
        assert_eq!(first_rows(&[3, 4, 5], &[1, 0, 0]), Some(1));
        // An empty batch in the middle holds nothing and is whole.
        assert_eq!(first_rows(&[3, 0, 5], &[3, 0, 2]), Some(5));
        // More than a batch has (written twice before): whole, never written again.
        assert_eq!(first_rows(&[3], &[7]), Some(3));
        assert_eq!(first_rows(&[3, 4], &[7, 1]), Some(4));
    }

    #[test]
    fn rows_in_another_shape_are_not_first_rows() {
        // A batch after a partial one, or after a missing one: another grouping.
        assert_eq!(first_rows(&[3, 4, 5], &[3, 2, 1]), None);
        assert_eq!(first_rows(&[3, 4, 5], &[0, 4, 5]), None);
        assert_eq!(first_rows(&[3, 4, 5], &[0, 0, 5]), None);
        // One batch: whatever it holds is its first rows.
        for h in 0..6 {
            assert!(first_rows(&[4], &[h]).is_some());
        }
    }
}
