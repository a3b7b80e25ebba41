//! The disk spool: every sealed batch is written here as one file (the complete frame)
//! before it is sent, and removed when the collector acknowledges it. So unacknowledged
//! batches survive a collector outage and a sensor restart, and are resent in order.
//!
//! Bounded: when a new batch would push the spool past its byte limit, the oldest
//! batches are deleted first and counted (`dropped_batches`, `dropped_events`): the one
//! way shipped data may be lost, and it is reported.
//!
//! File name: `{order:020}-{boot_id:016x}-{seq:020}-{events}.rwb`; `order` increases
//! across restarts, so a directory listing sorted by name is the send order.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// One spooled batch.
#[derive(Debug, Clone)]
pub struct Entry {
    pub order: u64,
    pub boot_id: u64,
    pub seq: u64,
    pub events: u64,
    pub bytes: u64,
    /// May have reached the collector before (sent on an earlier connection, or left
    /// by an earlier run): sent with the resent flag so the collector checks.
    pub sent_before: bool,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    entries: VecDeque<Entry>,
    total_bytes: u64,
    next_order: u64,
    pub dropped_batches: u64,
    pub dropped_events: u64,
}

impl Spool {
    /// Opens (creating) the spool directory and picks up batches left by earlier runs.
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Spool> {
        fs::create_dir_all(dir)
            .with_context(|| format!("creating spool directory {}", dir.display()))?;
        let mut entries = Vec::new();
        for de in fs::read_dir(dir).with_context(|| format!("reading spool {}", dir.display()))? {
            let de = de?;
            let name = de.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                // A write cut short by a crash: never acknowledged, never complete.
                let _ = fs::remove_file(de.path());
                continue;
            }
            let Some(stem) = name.strip_suffix(".rwb") else {
                continue;
            };
            let parts: Vec<&str> = stem.split('-').collect();
            if parts.len() != 4 {
                continue;
            }
            let (Ok(order), Ok(boot_id), Ok(seq), Ok(events)) = (
                parts[0].parse::<u64>(),
                u64::from_str_radix(parts[1], 16),
                parts[2].parse::<u64>(),
                parts[3].parse::<u64>(),
            ) else {
                continue;
            };
            let bytes = de.metadata()?.len();
            entries.push(Entry {
                order,
                boot_id,
                seq,
                events,
                bytes,
                sent_before: true,
            });
        }
        entries.sort_by_key(|e| e.order);
        let next_order = entries.last().map(|e| e.order + 1).unwrap_or(0);
        let total_bytes = entries.iter().map(|e| e.bytes).sum();
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            entries: entries.into(),
            total_bytes,
            next_order,
            dropped_batches: 0,
            dropped_events: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, e: &Entry) -> PathBuf {
        self.dir.join(format!(
            "{:020}-{:016x}-{:020}-{}.rwb",
            e.order, e.boot_id, e.seq, e.events
        ))
    }

    /// Adds a sealed batch (the whole frame), dropping the oldest batches first when the
    /// spool would exceed its bound.
    pub fn push(
        &mut self,
        boot_id: u64,
        seq: u64,
        events: u64,
        frame: &[u8],
    ) -> anyhow::Result<()> {
        let bytes = frame.len() as u64;
        while self.total_bytes + bytes > self.max_bytes && !self.entries.is_empty() {
            let old = self.entries.pop_front().expect("not empty");
            let _ = fs::remove_file(self.path_of(&old));
            self.total_bytes -= old.bytes;
            self.dropped_batches += 1;
            self.dropped_events += old.events;
        }
        let e = Entry {
            order: self.next_order,
            boot_id,
            seq,
            events,
            bytes,
            sent_before: false,
        };
        self.next_order += 1;
        let path = self.path_of(&e);
        let tmp = path.with_extension("tmp");
        let mut f = fs::File::create(&tmp)
            .with_context(|| format!("writing spool file {}", tmp.display()))?;
        f.write_all(frame)
            .with_context(|| format!("writing spool file {}", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, &path)
            .with_context(|| format!("renaming spool file {}", path.display()))?;
        self.total_bytes += bytes;
        self.entries.push_back(e);
        Ok(())
    }

    /// The first entry at or after `order`.
    pub fn next_from(&self, order: u64) -> Option<Entry> {
        self.entries.iter().find(|e| e.order >= order).cloned()
    }

    /// Reads an entry's frame back.
    pub fn read(&self, e: &Entry) -> std::io::Result<Vec<u8>> {
        fs::read(self.path_of(e))
    }

    pub fn mark_sent(&mut self, order: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.order == order) {
            e.sent_before = true;
        }
    }

    /// Marks every entry as possibly delivered (after a connection was lost).
    pub fn mark_all_sent(&mut self) {
        for e in self.entries.iter_mut() {
            e.sent_before = true;
        }
    }

    /// Removes an acknowledged entry. Returns it (None when it had been dropped).
    pub fn remove(&mut self, order: u64) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.order == order)?;
        let e = self.entries.remove(i)?;
        let _ = fs::remove_file(self.path_of(&e));
        self.total_bytes -= e.bytes;
        Some(e)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn events(&self) -> u64 {
        self.entries.iter().map(|e| e.events).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_drops_oldest_when_full() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open(d.path(), 250).unwrap();
        s.push(7, 0, 10, &[0u8; 100]).unwrap();
        s.push(7, 1, 20, &[1u8; 100]).unwrap();
        assert_eq!(s.len(), 2);
        s.push(7, 2, 30, &[2u8; 100]).unwrap();
        assert_eq!((s.len(), s.dropped_batches, s.dropped_events), (2, 1, 10));
        drop(s);
        let s = Spool::open(d.path(), 250).unwrap();
        assert_eq!(s.len(), 2);
        let e = s.next_from(0).unwrap();
        assert_eq!(
            (e.boot_id, e.seq, e.events, e.sent_before),
            (7, 1, 20, true)
        );
        assert_eq!(s.read(&e).unwrap(), vec![1u8; 100]);
        let mut s = s;
        s.push(8, 0, 1, &[3u8; 10]).unwrap();
        assert_eq!(s.next_from(e.order + 2).unwrap().boot_id, 8);
        assert!(s.remove(e.order).is_some());
        assert_eq!(s.events(), 31);
    }
}
