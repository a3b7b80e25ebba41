//! The cold per-flow memo: evidence that only a few flows ever have.
//!
//! A silence before a segment, a FIN after an idle period, peer data after a FIN, an RST
//! count past 255: each is rare next to the packets of a flow, so instead of widening
//! every [`Flow`](crate::flow::Flow) (a million per core) these go into a bounded side
//! table keyed by the flow's slot, written only when such an event happens. The flow's
//! `HAS_MEMO` bit says an entry exists, so the packet path pays one bit test.
//!
//! Bounded by [`MAX_ENTRIES`]: when full, the new evidence is not kept and
//! `memo_full` counts it (the cause rules that need it then fall through to a later
//! rule: a false negative, never a false positive).

use crate::flow::Role;
use hashbrown::HashMap;

/// Entries the memo holds at most per engine.
pub const MAX_ENTRIES: usize = 262_144;

/// The resetter-to-be's FIN and what crossed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinNote {
    /// Who sent the (first) FIN.
    pub by: Role,
    /// When the FIN was seen.
    pub ts_us: i64,
    /// Silence in the flow before that FIN.
    pub idle_before_us: i64,
    /// Latest peer payload received after the FIN (by sensor order), or that the FIN
    /// did not acknowledge: its time.
    pub peer_data_us: Option<i64>,
    /// Bytes of that peer payload.
    pub peer_data_len: u32,
    /// The peer's payload and the FIN crossed: the payload did not acknowledge the FIN,
    /// or the FIN did not acknowledge payload the peer had sent.
    pub crossed: bool,
}

/// A segment that arrived after a long silence (a middlebox's idle timer may have run
/// out meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SilenceNote {
    /// The segment's time.
    pub seg_us: i64,
    /// Who sent it.
    pub by: Role,
    /// How long the flow was silent before it.
    pub gap_us: i64,
}

/// Everything the memo may hold for one flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memo {
    /// The flow's first FIN and what followed it.
    pub fin: Option<FinNote>,
    /// A segment after a long silence.
    pub silence: Option<SilenceNote>,
    /// RSTs past the flow's one-byte `rst_count`.
    pub more_rsts: u32,
}

/// The memo of one engine.
#[derive(Default)]
pub struct MemoTable {
    entries: HashMap<u32, Memo>,
    /// Evidence not kept because the memo was full.
    pub full: u64,
}

impl MemoTable {
    /// The memo of flow slot `slot`, if any.
    pub fn get(&self, slot: u32) -> Option<&Memo> {
        self.entries.get(&slot)
    }

    /// The memo of `slot`, created if there is room. `has_memo` is the flow's
    /// `HAS_MEMO` bit, set here when an entry is created.
    pub fn entry(&mut self, slot: u32, has_memo: &mut bool) -> Option<&mut Memo> {
        if !*has_memo {
            if self.entries.len() >= MAX_ENTRIES {
                self.full += 1;
                return None;
            }
            *has_memo = true;
            // A stale entry of a previous flow in this slot cannot exist (removed at
            // close), but start clean regardless.
            self.entries.insert(slot, Memo::default());
        }
        self.entries.get_mut(&slot)
    }

    /// Forgets flow slot `slot` (the flow ended).
    pub fn remove(&mut self, slot: u32) -> Option<Memo> {
        self.entries.remove(&slot)
    }

    /// Flows with a memo.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No flow has a memo.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_is_bounded_and_counts_what_it_drops() {
        let mut m = MemoTable::default();
        let mut has = false;
        m.entry(7, &mut has).unwrap().more_rsts = 3;
        assert!(has);
        assert_eq!(m.get(7).unwrap().more_rsts, 3);
        assert_eq!(m.remove(7).unwrap().more_rsts, 3);
        assert!(m.is_empty());
        for slot in 0..MAX_ENTRIES as u32 {
            let mut has = false;
            assert!(m.entry(slot, &mut has).is_some());
        }
        let mut has = false;
        assert!(m.entry(u32::MAX - 1, &mut has).is_none());
        assert!(!has);
        assert_eq!(m.full, 1);
    }
}
