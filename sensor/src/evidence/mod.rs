//! Evidence that spans packets or flows, kept for the cause rules (DESIGN.md, "Why was
//! it reset: causes"): the cold per-flow [`memo`], parallel connections ([`races`]),
//! bursts per service or host ([`bursts`]), host silences ([`hosts`]) and server MACs
//! ([`macs`]). Everything here is bounded, and what does not fit is counted.

pub mod bursts;
pub mod hosts;
pub mod macs;
pub mod memo;
pub mod races;

use crate::config::CauseConfig;
use rstwatch_schema::IpBytes;

/// A server: address and port.
pub type Service = (IpBytes, u16);

/// The cross-flow evidence of one engine.
pub struct CrossFlow {
    /// Per-flow notes the cause rules read (FINs, silences).
    pub memo: memo::MemoTable,
    /// Recent established connections per client (the connect race rule).
    pub races: races::RaceBook,
    /// Accept-queue overflow candidates per service.
    pub overload: bursts::BurstCounter<Service>,
    /// Reboot candidates per server host.
    pub reboot: bursts::BurstCounter<IpBytes>,
    /// Flows reset after a MAC change, per server address (the `failover` anomaly).
    pub failover: bursts::BurstCounter<IpBytes>,
    /// Last activity per host (the reboot rule).
    pub hosts: hosts::HostActivity,
    /// Source MACs per server address (the failover rule).
    pub server_macs: macs::ServerMacs,
}

impl CrossFlow {
    /// Empty evidence with the thresholds of `c`.
    pub fn new(c: &CauseConfig) -> CrossFlow {
        let s = 1_000_000i64;
        CrossFlow {
            memo: memo::MemoTable::default(),
            races: races::RaceBook::default(),
            overload: bursts::BurstCounter::new(
                c.overload_flows,
                i64::from(c.overload_window_s) * s,
            ),
            reboot: bursts::BurstCounter::new(c.reboot_flows, i64::from(c.reboot_silence_s) * s),
            failover: bursts::BurstCounter::new(c.failover_flows, 300 * s),
            hosts: hosts::HostActivity::new(i64::from(c.reboot_silence_s) * s),
            server_macs: macs::ServerMacs::default(),
        }
    }

    /// Evidence not kept because a table was full, by table.
    pub fn counters(&self) -> [(&'static str, u64); 5] {
        [
            ("cause_memo_full", self.memo.full),
            ("cause_race_book_full", self.races.full),
            (
                "cause_burst_tracker_full",
                self.overload.full + self.reboot.full + self.failover.full,
            ),
            ("cause_server_mac_full", self.server_macs.full),
            ("cause_memo_entries", self.memo.len() as u64),
        ]
    }
}

use crate::classify::evidence::CauseSettings;
use crate::flow::{bits, dflags, gap_at_least, seq_lt, Flow, Role};
use crate::parse::Packet;
use memo::{FinNote, SilenceNote};

impl CrossFlow {
    /// Notes what packet `p` (from `role` of flow `slot`, not yet applied to `flow`)
    /// tells the cause rules that the flow itself does not keep. The packet path: most
    /// packets pay one store (their host's activity) and three tests.
    #[inline]
    pub fn before_update(
        &mut self,
        flow: &mut Flow,
        slot: u32,
        p: &Packet,
        role: Role,
        ts_us: i64,
        st: &CauseSettings,
    ) {
        self.hosts.sent_if(role == Role::Resp, &p.src, ts_us);
        if p.flags.rst() {
            return;
        }
        // `ts - last > threshold`, exactly (the same answer as the saturated gap
        // note_rare keeps): a gap of at least `threshold + 1`, which cannot overflow
        // (the threshold is a `u32` of seconds in microseconds).
        let long_gap = gap_at_least(flow.last_us, ts_us, st.idle_threshold_us + 1);
        // `&` and `|`, not `&&` and `||`: whether a segment carries data is a coin flip
        // per packet, and short-circuiting made it a branch the predictor missed.
        let to_closed = (p.payload_len > 0) & flow.dir(role.other()).has(dflags::FIN);
        if long_gap | p.flags.fin() | to_closed {
            let gap = ts_us.saturating_sub(flow.last_us);
            self.note_rare(flow, slot, p, role, ts_us, gap, st);
        }
    }

    /// The rare half of [`CrossFlow::before_update`]: a segment after a long silence,
    /// a FIN, or payload to a side that has closed.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn note_rare(
        &mut self,
        flow: &mut Flow,
        slot: u32,
        p: &Packet,
        role: Role,
        ts_us: i64,
        gap: i64,
        st: &CauseSettings,
    ) {
        if gap > st.idle_threshold_us && flow.dirs.iter().any(|d| d.has(dflags::SEEN)) {
            self.note(flow, slot, |m| {
                m.silence = Some(SilenceNote {
                    seg_us: ts_us,
                    by: role,
                    gap_us: gap,
                })
            });
        }
        let me = *flow.dir(role);
        let other = *flow.dir(role.other());
        if p.flags.fin() && !me.has(dflags::FIN) && !other.has(dflags::FIN) {
            // The first FIN of the flow. Worth remembering when it ends an idle period
            // (a keep-alive close) or does not acknowledge payload the peer sent.
            let crossed = other.payload_bytes() > 0 && seq_lt(p.ack, other.next_seq);
            if gap >= st.keepalive_idle_us || crossed {
                let peer_data = (crossed && flow.last_payload_role() == Some(role.other()))
                    .then_some(flow.last_us);
                self.note(flow, slot, |m| {
                    m.fin = Some(FinNote {
                        by: role,
                        ts_us,
                        idle_before_us: gap,
                        peer_data_us: peer_data,
                        peer_data_len: 0,
                        crossed,
                    })
                });
            }
        }
        if p.payload_len > 0 && other.has(dflags::FIN) && !me.has(dflags::FIN) {
            // Payload to a side that has closed: does it acknowledge that FIN?
            let acks_fin = p.flags.ack() && !seq_lt(p.ack, other.next_seq);
            let len = p.payload_len;
            self.note(flow, slot, |m| {
                let f = m.fin.get_or_insert(FinNote {
                    by: role.other(),
                    ts_us: i64::MIN,
                    idle_before_us: 0,
                    peer_data_us: None,
                    peer_data_len: 0,
                    crossed: false,
                });
                if f.by == role.other() {
                    f.peer_data_us = Some(ts_us);
                    f.peer_data_len = f.peer_data_len.saturating_add(len);
                    f.crossed |= !acks_fin;
                }
            });
        }
    }

    /// Notes what the flow's update by `p` started: an established connection (the
    /// race book) and the server's handshake MAC. Only SYN-ACKs and the packet that
    /// completes a handshake have anything to note.
    #[inline]
    pub fn after_update(
        &mut self,
        flow: &Flow,
        p: &Packet,
        role: Role,
        ts_us: i64,
        became_established: bool,
    ) {
        if became_established || p.flags.syn() {
            self.note_handshake(flow, p, role, ts_us, became_established);
        }
    }

    #[cold]
    fn note_handshake(
        &mut self,
        flow: &Flow,
        p: &Packet,
        role: Role,
        ts_us: i64,
        became_established: bool,
    ) {
        if role == Role::Resp && p.flags.syn() && p.flags.ack() {
            self.server_macs.handshake(p.src, p.src_mac);
        }
        // Only handshakes: a midstream flow has no SYN time to race with. The exact
        // time of this packet, not the flow's log-scale RTT, marks the establishment.
        if !became_established || !flow.dir(Role::Orig).has(dflags::SYN) {
            return;
        }
        let est_us = ts_us;
        let (client, client_port) = flow.key.end(flow.end_of(Role::Orig));
        let (server, server_port) = flow.key.end(flow.end_of(Role::Resp));
        let client_mac = if role == Role::Orig { p.src_mac } else { 0 };
        self.races.established(
            races::Established {
                client,
                client_port,
                server,
                server_port,
                syn_us: flow.first_us(),
                est_us,
            },
            client_mac,
        );
    }

    /// Counts one more RST of flow `slot` past its one-byte counter.
    pub fn more_rsts(&mut self, flow: &mut Flow, slot: u32) {
        self.note(flow, slot, |m| m.more_rsts = m.more_rsts.saturating_add(1));
    }

    /// Forgets flow `slot` (it ended); returns the RSTs counted past its byte.
    pub fn forget(&mut self, flow: &Flow, slot: u32) -> u32 {
        if !flow.has(bits::HAS_MEMO) {
            return 0;
        }
        self.memo.remove(slot).map_or(0, |m| m.more_rsts)
    }

    fn note(&mut self, flow: &mut Flow, slot: u32, f: impl FnOnce(&mut memo::Memo)) {
        let mut has = flow.has(bits::HAS_MEMO);
        if let Some(m) = self.memo.entry(slot, &mut has) {
            f(m);
        }
        if has {
            flow.bits |= bits::HAS_MEMO;
        }
    }
}
