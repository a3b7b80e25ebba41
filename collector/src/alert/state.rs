//! The alerter's persisted state: one JSON file, replaced atomically (write a temp
//! file, fsync, rename, fsync the directory), so a crash leaves the old or the new
//! state, never a torn one.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::dedup::OpenAlerts;
use super::model::Notice;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct State {
    /// Ledger rows received at or after this second are read again each poll.
    pub cursor: u32,
    /// Batches already turned into alerts (`sensor/boot/seq` → received), pruned as
    /// the cursor passes them.
    pub handled: BTreeMap<String, u32>,
    pub open: OpenAlerts,
    /// Notices not yet delivered, per sink.
    pub outbox: BTreeMap<String, VecDeque<Notice>>,
    pub next_seq: u64,
}

pub(super) const FILE: &str = "state.json";

impl State {
    pub(super) fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// Loads the state; None when the directory has none yet. A file that does not
    /// parse is an error (starting over would resend or lose alerts silently).
    pub(super) fn load(dir: &Path) -> anyhow::Result<Option<State>> {
        let p = State::path(dir);
        match std::fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
                format!(
                    "alert state {} is damaged: move it away to start over",
                    p.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    pub(super) fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let p = State::path(dir);
        let tmp = dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec(self)?;
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &p).with_context(|| format!("replacing {}", p.display()))?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Forgets handled batches the cursor has passed.
    pub(super) fn advance(&mut self, cursor: u32) {
        self.cursor = self.cursor.max(cursor);
        let c = self.cursor;
        self.handled.retain(|_, received| *received >= c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_the_same_state_and_refuses_a_damaged_one() {
        let dir = std::env::temp_dir().join(format!("rstwatch-alert-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(State::load(&dir).unwrap(), None);
        let mut s = State {
            cursor: 100,
            next_seq: 3,
            ..State::default()
        };
        s.handled.insert("a/1/1".into(), 90);
        s.handled.insert("a/1/2".into(), 120);
        s.save(&dir).unwrap();
        assert_eq!(State::load(&dir).unwrap(), Some(s.clone()));
        s.advance(100);
        assert_eq!(s.handled.len(), 1);
        s.advance(50);
        assert_eq!(s.cursor, 100, "the cursor never goes back");
        std::fs::write(State::path(&dir), b"{not json").unwrap();
        assert!(State::load(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
