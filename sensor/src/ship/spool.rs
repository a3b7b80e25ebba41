//! The disk spool: every sealed batch is written here as one file (the complete frame)
//! before it is sent, and removed when the collector acknowledges it. So unacknowledged
//! batches survive a collector outage and a sensor restart, and are resent in order.
//!
//! Faults, and what each costs (every loss is counted by reason, never silent):
//! - Full (`--spool-max-bytes`): [`Spool::push`] refuses; the batcher waits for the
//!   sender to drain while a collector answers, and evicts the oldest batches only
//!   while none does (`evicted_*`).
//! - Unwritable (directory gone, read-only, disk full): the batch is kept in memory,
//!   up to `--spool-memory-bytes`, and shipped from there (`memory_*`); past that bound
//!   it is lost (`unspooled_*`). The first failure is logged with its reason.
//! - Damaged (a file cut short, emptied or unreadable, or a batch the collector refuses
//!   for good): moved to `DIR/quarantine/` with a log line (`quarantined_*`), and the
//!   batches behind it drain.
//!
//! Files are created 0600 in a 0700 directory whatever the umask. With
//! [`Fsync::Batch`] each file and the directory entry are fsynced before the batch is
//! sent, so a power cut loses no batch the collector may have acknowledged; with
//! [`Fsync::Off`] a power cut can lose the batches written in the last seconds (those
//! the page cache had not written yet).
//!
//! File name: `{order:020}-{boot_id:016x}-{seq:020}-{events}.rwb`; `order` increases
//! across restarts, so a directory listing sorted by name is the send order.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

/// When spool writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Fsync {
    /// Leave it to the kernel: a power cut can lose the batches written in the last
    /// seconds (the default: an fsync per batch costs the pipeline its group commit,
    /// see benches/RESULTS.md).
    #[default]
    Off,
    /// fsync every batch file and the directory before sending it.
    Batch,
}

/// One spooled batch.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in the spool (sending order).
    pub order: u64,
    /// Boot of the batch.
    pub boot_id: u64,
    /// Sequence number of the batch.
    pub seq: u64,
    /// Events in the batch.
    pub events: u64,
    /// Frame bytes.
    pub bytes: u64,
    /// May have reached the collector before (sent on an earlier connection, or left
    /// by an earlier run): sent with the resent flag so the collector checks.
    pub sent_before: bool,
    /// Left by an earlier run: checked before it is sent (see `ship::preflight`).
    pub from_earlier_run: bool,
    /// The frame, when the disk refused it (shipped from memory).
    mem: Option<Arc<Vec<u8>>>,
}

/// Batches and events lost or set aside, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Losses {
    /// Evicted from a full spool while no collector answered.
    pub evicted_batches: u64,
    /// Events in them.
    pub evicted_events: u64,
    /// Neither the disk nor the memory bound could take them.
    pub unspooled_batches: u64,
    /// Events in them.
    pub unspooled_events: u64,
    /// Moved to the quarantine directory (damaged, or refused for good).
    pub quarantined_batches: u64,
    /// Events in them.
    pub quarantined_events: u64,
}

impl Losses {
    /// Events that will not reach ClickHouse from this spool.
    pub fn events(&self) -> u64 {
        self.evicted_events + self.unspooled_events + self.quarantined_events
    }
}

/// What [`Spool::push`] did with a batch.
#[derive(Debug)]
pub enum Pushed {
    /// On disk.
    Disk,
    /// Kept in memory: the disk refused it (why).
    Memory(String),
    /// Lost: neither disk nor memory could take it (why).
    Lost(String),
    /// Over the size bound: nothing done; drain or evict, then push again.
    Full,
}

/// Sealed batches waiting for their ack: files in a directory, or memory when the disk refuses; bounded.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    mem_max_bytes: u64,
    fsync: Fsync,
    entries: VecDeque<Entry>,
    total_bytes: u64,
    mem_bytes: u64,
    next_order: u64,
    /// Why the directory could not be used at start (shipping from memory only).
    pub unusable: Option<String>,
    /// Lost or set aside so far, by reason.
    pub losses: Losses,
}

/// Settings of a spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Spool directory (created 0700).
    pub dir: PathBuf,
    /// Bytes on disk at most; the oldest batches are evicted beyond.
    pub max_bytes: u64,
    /// Bytes held in memory at most when the disk refuses.
    pub mem_max_bytes: u64,
    /// When to fsync.
    pub fsync: Fsync,
}

fn parse_name(name: &str) -> Option<(u64, u64, u64, u64)> {
    let stem = name.strip_suffix(".rwb")?;
    let parts: Vec<&str> = stem.split('-').collect();
    let [order, boot, seq, events] = parts[..] else {
        return None;
    };
    Some((
        order.parse().ok()?,
        u64::from_str_radix(boot, 16).ok()?,
        seq.parse().ok()?,
        events.parse().ok()?,
    ))
}

/// Creates `dir` (0700) or tightens an existing one to 0700.
fn prepare_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

impl Spool {
    /// [`Spool::open_with`] with the default memory bound and fsync policy.
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Spool> {
        Spool::open_with(&SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes,
            mem_max_bytes: 64 << 20,
            fsync: Fsync::default(),
        })
    }

    /// Opens (creating) the spool directory and picks up batches left by earlier runs.
    /// A directory that cannot be created or read is not fatal: the spool then lives
    /// in memory only, and says so in [`Spool::unusable`].
    pub fn open_with(cfg: &SpoolConfig) -> anyhow::Result<Spool> {
        let mut sp = Spool {
            dir: cfg.dir.clone(),
            max_bytes: cfg.max_bytes,
            mem_max_bytes: cfg.mem_max_bytes,
            fsync: cfg.fsync,
            entries: VecDeque::new(),
            total_bytes: 0,
            mem_bytes: 0,
            next_order: 0,
            unusable: None,
            losses: Losses::default(),
        };
        match prepare_dir(&cfg.dir).and_then(|()| sp.scan()) {
            Ok(()) => {}
            Err(e) => {
                sp.unusable = Some(format!(
                    "spool directory {} unusable: {e}",
                    cfg.dir.display()
                ))
            }
        }
        Ok(sp)
    }

    /// Picks up the batches of earlier runs.
    fn scan(&mut self) -> std::io::Result<()> {
        let mut entries = Vec::new();
        for de in fs::read_dir(&self.dir)? {
            let de = de?;
            let name = de.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                // A write cut short by a crash: never acknowledged, never complete.
                let _ = fs::remove_file(de.path());
                continue;
            }
            let Some((order, boot_id, seq, events)) = parse_name(&name) else {
                continue;
            };
            entries.push(Entry {
                order,
                boot_id,
                seq,
                events,
                bytes: de.metadata()?.len(),
                sent_before: true,
                from_earlier_run: true,
                mem: None,
            });
        }
        entries.sort_by_key(|e| e.order);
        self.next_order = entries.last().map(|e| e.order + 1).unwrap_or(0);
        self.total_bytes = entries.iter().map(|e| e.bytes).sum();
        self.entries = entries.into();
        Ok(())
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where set-aside batches go.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.dir.join("quarantine")
    }

    fn path_of(&self, e: &Entry) -> PathBuf {
        self.dir.join(format!(
            "{:020}-{:016x}-{:020}-{}.rwb",
            e.order, e.boot_id, e.seq, e.events
        ))
    }

    /// Adds a sealed batch (the whole frame): on disk, else in memory, else lost;
    /// [`Pushed::Full`] (nothing done) when it would exceed the size bound.
    pub fn push(&mut self, boot_id: u64, seq: u64, events: u64, frame: &[u8]) -> Pushed {
        let bytes = frame.len() as u64;
        if self.total_bytes + bytes > self.max_bytes && !self.entries.is_empty() {
            return Pushed::Full;
        }
        let mut e = Entry {
            order: self.next_order,
            boot_id,
            seq,
            events,
            bytes,
            sent_before: false,
            from_earlier_run: false,
            mem: None,
        };
        let outcome = match self.write_file(&e, frame) {
            Ok(()) => Pushed::Disk,
            Err(why) if self.mem_bytes + bytes <= self.mem_max_bytes => {
                self.mem_bytes += bytes;
                e.mem = Some(Arc::new(frame.to_vec()));
                Pushed::Memory(format!("{why:#}"))
            }
            Err(why) => {
                self.losses.unspooled_batches += 1;
                self.losses.unspooled_events += events;
                return Pushed::Lost(format!(
                    "{why:#}; and the memory spool is full ({} bytes)",
                    self.mem_max_bytes
                ));
            }
        };
        self.next_order += 1;
        self.total_bytes += bytes;
        self.entries.push_back(e);
        outcome
    }

    /// Writes a batch file: a temporary name, 0600, fsync per policy, then the final
    /// name (and the directory entry fsynced too).
    fn write_file(&self, e: &Entry, frame: &[u8]) -> anyhow::Result<()> {
        if let Some(why) = &self.unusable {
            anyhow::bail!("{why}");
        }
        let path = self.path_of(e);
        let tmp = path.with_extension("tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating spool file {}", tmp.display()))?;
        f.write_all(frame)
            .with_context(|| format!("writing spool file {}", tmp.display()))?;
        if self.fsync == Fsync::Batch {
            f.sync_all()
                .with_context(|| format!("fsync of spool file {}", tmp.display()))?;
        }
        drop(f);
        fs::rename(&tmp, &path)
            .with_context(|| format!("renaming spool file {}", path.display()))?;
        if self.fsync == Fsync::Batch {
            fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("fsync of spool directory {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// Evicts the oldest batch (counted as lost). False when the spool is empty.
    pub fn evict_oldest(&mut self) -> bool {
        let Some(old) = self.entries.front().map(|e| e.order) else {
            return false;
        };
        if let Some(e) = self.take(old) {
            self.losses.evicted_batches += 1;
            self.losses.evicted_events += e.events;
        }
        true
    }

    /// The first entry at or after `order`.
    pub fn next_from(&self, order: u64) -> Option<Entry> {
        self.entries.iter().find(|e| e.order >= order).cloned()
    }

    /// Reads an entry's frame back.
    pub fn read(&self, e: &Entry) -> std::io::Result<Vec<u8>> {
        match &e.mem {
            Some(m) => Ok(m.as_ref().clone()),
            None => fs::read(self.path_of(e)),
        }
    }

    /// Marks batch `order` as sent (it goes out with the resent flag if sent again).
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

    /// Marks an entry of an earlier run as checked (it will not be checked again).
    pub fn mark_checked(&mut self, order: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.order == order) {
            e.from_earlier_run = false;
        }
    }

    /// Takes an entry out of the spool (deleting its file). None when already gone.
    fn take(&mut self, order: u64) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.order == order)?;
        let e = self.entries.remove(i)?;
        if e.mem.is_some() {
            self.mem_bytes -= e.bytes;
        } else {
            let _ = fs::remove_file(self.path_of(&e));
        }
        self.total_bytes -= e.bytes;
        Some(e)
    }

    /// Removes an acknowledged entry. Returns it (None when it had been dropped).
    pub fn remove(&mut self, order: u64) -> Option<Entry> {
        self.take(order)
    }

    /// Moves an entry to the quarantine directory (counted). Returns where it went, or
    /// why it could only be dropped.
    pub fn quarantine(&mut self, order: u64) -> Option<Result<PathBuf, String>> {
        let e = self.entries.iter().find(|e| e.order == order)?.clone();
        let qdir = self.quarantine_dir();
        let name = self.path_of(&e);
        let dest = qdir.join(name.file_name().unwrap_or_default());
        let moved = prepare_dir(&qdir)
            .and_then(|()| match &e.mem {
                Some(m) => fs::write(&dest, m.as_ref()),
                None => fs::rename(&name, &dest),
            })
            .map(|()| dest)
            .map_err(|err| format!("could not keep it in {}: {err}", qdir.display()));
        self.take(order);
        self.losses.quarantined_batches += 1;
        self.losses.quarantined_events += e.events;
        Some(moved)
    }

    /// Batches spooled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No batch spooled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Events in the spooled batches.
    pub fn events(&self) -> u64 {
        self.entries.iter().map(|e| e.events).sum()
    }

    /// Events held only in memory (lost if the process ends before they are acked).
    pub fn memory_events(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.mem.is_some())
            .map(|e| e.events)
            .sum()
    }

    /// Bytes of the spooled batches.
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, max: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes: max,
            mem_max_bytes: 150,
            fsync: Fsync::Batch,
        }
    }

    #[test]
    fn survives_reopen_and_refuses_when_full() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open_with(&cfg(d.path(), 250)).unwrap();
        assert!(matches!(s.push(7, 0, 10, &[0u8; 100]), Pushed::Disk));
        assert!(matches!(s.push(7, 1, 20, &[1u8; 100]), Pushed::Disk));
        assert!(matches!(s.push(7, 2, 30, &[2u8; 100]), Pushed::Full));
        assert_eq!(s.len(), 2);
        assert!(s.evict_oldest());
        assert!(matches!(s.push(7, 2, 30, &[2u8; 100]), Pushed::Disk));
        assert_eq!((s.losses.evicted_batches, s.losses.evicted_events), (1, 10));
        drop(s);
        let s = Spool::open_with(&cfg(d.path(), 250)).unwrap();
        assert_eq!(s.len(), 2);
        let e = s.next_from(0).unwrap();
        assert_eq!(
            (
                e.boot_id,
                e.seq,
                e.events,
                e.sent_before,
                e.from_earlier_run
            ),
            (7, 1, 20, true, true)
        );
        assert_eq!(s.read(&e).unwrap(), vec![1u8; 100]);
        let mut s = s;
        assert!(s.remove(e.order).is_some());
        assert_eq!(s.events(), 30);
    }

    #[test]
    fn files_are_0600_in_a_0700_directory_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("spool");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let mut s = Spool::open_with(&cfg(&dir, 1000)).unwrap();
        s.push(1, 0, 1, &[0u8; 10]);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let e = s.next_from(0).unwrap();
        assert_eq!(mode(&s.path_of(&e)), 0o600);
    }

    #[test]
    fn an_unwritable_directory_spools_to_memory_then_counts_losses() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("a-file");
        fs::write(&file, b"x").unwrap();
        let mut s = Spool::open_with(&cfg(&file.join("spool"), 1000)).unwrap();
        assert!(s.unusable.is_some());
        assert!(matches!(s.push(1, 0, 5, &[0u8; 100]), Pushed::Memory(_)));
        assert!(matches!(s.push(1, 1, 7, &[1u8; 100]), Pushed::Lost(_)));
        assert_eq!(s.memory_events(), 5);
        assert_eq!(s.read(&s.next_from(0).unwrap()).unwrap(), vec![0u8; 100]);
        assert_eq!(
            (s.losses.unspooled_batches, s.losses.unspooled_events),
            (1, 7)
        );
    }

    #[test]
    fn quarantine_keeps_the_file_and_counts_it() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Spool::open_with(&cfg(d.path(), 1000)).unwrap();
        s.push(1, 0, 4, &[0u8; 10]);
        let dest = s.quarantine(0).unwrap().unwrap();
        assert!(dest.starts_with(d.path().join("quarantine")));
        assert!(dest.exists());
        assert!(s.is_empty());
        assert_eq!(s.losses.quarantined_events, 4);
        // A reopened spool does not pick quarantined batches up again.
        assert!(Spool::open_with(&cfg(d.path(), 1000)).unwrap().is_empty());
    }
}
