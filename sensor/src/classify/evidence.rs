//! What the cause rules look at, gathered when an RST arrives (from the flow's state
//! before it and the engine's cross-flow evidence) and completed while it is held.

use crate::evidence::hosts::Comeback;
use crate::evidence::races::{RaceQuery, RaceWinner};
use crate::evidence::CrossFlow;
use crate::flow::{bits, dflags, mac_tag, Flow, Role};
use crate::parse::Packet;
use rstwatch_schema::IpBytes;

/// Cause thresholds in microseconds (from [`crate::config::CauseConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct CauseSettings {
    /// `idle_threshold_s`, µs.
    pub idle_threshold_us: i64,
    /// `race_window_ms`, µs.
    pub race_window_us: i64,
    /// `race_reset_ms`, µs.
    pub race_reset_us: i64,
    /// `overload_rst_ms`, µs.
    pub overload_rst_us: i64,
    /// `reboot_silence_s`, µs.
    pub reboot_silence_us: i64,
    /// `keepalive_idle_s`, µs.
    pub keepalive_idle_us: i64,
    /// `unread_window_ms`, µs.
    pub unread_window_us: i64,
}

impl CauseSettings {
    /// The thresholds of `c`'s `[engine.cause]` (and `idle_threshold_s`) in µs.
    pub fn from_config(c: &crate::EngineConfig) -> CauseSettings {
        let ms = 1_000i64;
        let s = 1_000_000i64;
        let k = &c.cause;
        CauseSettings {
            idle_threshold_us: i64::from(c.idle_threshold_s) * s,
            race_window_us: i64::from(k.race_window_ms) * ms,
            race_reset_us: i64::from(k.race_reset_ms) * ms,
            overload_rst_us: i64::from(k.overload_rst_ms) * ms,
            reboot_silence_us: i64::from(k.reboot_silence_s) * s,
            keepalive_idle_us: i64::from(k.keepalive_idle_s) * s,
            unread_window_us: i64::from(k.unread_window_ms) * ms,
        }
    }
}

/// An RST whose answer window is unknown (no handshake seen) may follow the segment it
/// answers by at most this much.
const DEFAULT_ANSWER_US: i64 = 200_000;

/// The evidence behind one RST's cause. Times are microseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// The four-tuple had state before the RST.
    pub known: bool,
    /// The RST claims to come from the responder (the server).
    pub from_server: bool,
    /// The client end's address.
    pub client: IpBytes,
    /// The server end's address.
    pub server: IpBytes,
    /// The server end's port.
    pub server_port: u16,
    /// The silence the RST ended: since the flow's previous packet, or before the
    /// segment it answers (`silence_before_segment`).
    pub silence_us: i64,
    /// The silence was before the segment the RST answers, not before the RST.
    pub silence_before_segment: bool,
    /// Handshake RTT, and time from the handshake's completion to the RST.
    pub rtt_us: Option<i64>,
    /// Time from the handshake's completion to the RST.
    pub since_established_us: Option<i64>,
    /// Payload bytes the resetter and its peer had sent.
    pub resetter_sent: u64,
    /// Payload bytes the resetter's peer had sent.
    pub peer_sent: u64,
    /// Bare RST whose seq is the resetter's ISN + 1 (Linux's accept-queue overflow).
    pub bare_at_isn1: bool,
    /// A server RST whose source MAC differs from the server's earlier packets in the
    /// flow while its TTL does not: the same address at the same distance from another
    /// host (a VIP moved). A device on the path differs in both (`middlebox`).
    pub mac_changed: bool,
    /// The RST's source MAC (as a number).
    pub rst_mac: u64,
    /// Server RST in an established flow whose client data the server never ACKed.
    pub client_data_unanswered: bool,
    /// The server host came back from a long silence shortly before.
    pub comeback: Option<Comeback>,
    /// Counted towards a burst (see `evidence::bursts`).
    pub overload_candidate: bool,
    /// Counted towards a reboot burst of the server host.
    pub reboot_candidate: bool,
    /// The parallel connection this one lost to.
    pub race: Option<RaceWinner>,
    /// The resetter had sent a FIN.
    pub resetter_fin: bool,
    /// Silence before the resetter's FIN, when it was noted (idle or crossed).
    pub fin_idle_us: Option<i64>,
    /// The peer's payload and the resetter's FIN crossed.
    pub fin_crossed: bool,
    /// Peer payload arrived after (or crossed) the resetter's FIN: its bytes.
    pub peer_data_after_fin: Option<u32>,
    /// The peer's payload is the latest thing the peer sent (the RST answers it).
    pub answers_peer_data: bool,
    /// Time from the flow's latest packet to the RST, when the latest payload is the
    /// peer's and unanswered by the peer itself.
    pub peer_payload_lag_us: Option<i64>,
    /// The resetter's last advertised window was zero (it was not reading).
    pub zero_window: bool,
    /// Peer payload arrived after the RST, this long after it (set while held).
    pub peer_data_after_rst_us: Option<i64>,
    /// The resetter's own TTL baseline in this flow (0: none).
    pub ttl_baseline: u8,
    /// The resetter had already sent an RST in this flow (and its peer had not): this
    /// one answers a segment that crossed it.
    pub follow_up: bool,
    /// The cause of the flow's first RST, filled in when this one is released.
    pub first_cause: Option<rstwatch_schema::Cause>,
}

impl Evidence {
    /// How long after the RST peer data may arrive and still have crossed it (sent
    /// before the peer could see the RST): one handshake RTT, at most `recent_us` (the
    /// unread window: data that late is not "still sending" any more).
    pub fn crossing_window_us(&self, recent_us: i64) -> i64 {
        self.rtt_us
            .unwrap_or(DEFAULT_ANSWER_US)
            .max(1_000)
            .min(recent_us)
    }
}

/// Where an RST sits: its flow's slot, the sending role, its time, and whether the
/// flow was created by it (nothing was known of the four-tuple).
#[derive(Debug, Clone, Copy)]
pub struct RstAt {
    /// The flow's slot in the table.
    pub slot: u32,
    /// The side that sent the RST.
    pub role: Role,
    /// Packet time of the RST.
    pub ts_us: i64,
    /// The flow was created by this RST.
    pub fresh: bool,
}

/// Gathers the evidence for RST `p` of `flow` (state before the RST), and counts it
/// towards bursts.
pub fn gather(
    flow: &Flow,
    p: &Packet,
    at: RstAt,
    cf: &mut CrossFlow,
    st: &CauseSettings,
) -> Evidence {
    let RstAt {
        slot,
        role,
        ts_us,
        fresh,
    } = at;
    let mut e = Evidence {
        rst_mac: p.src_mac,
        ..Evidence::default()
    };
    if fresh {
        return e;
    }
    let me = flow.dir(role);
    let peer = flow.dir(role.other());
    let client_end = flow.key.end(flow.end_of(Role::Orig));
    let server_end = flow.key.end(flow.end_of(Role::Resp));
    e.known = true;
    e.from_server = role == Role::Resp;
    e.client = client_end.0;
    (e.server, e.server_port) = server_end;
    e.ttl_baseline = if me.has(dflags::SENT_NON_RST) {
        me.ttl
    } else {
        0
    };
    e.resetter_sent = me.payload_bytes();
    e.follow_up = me.has(dflags::RST) && !peer.has(dflags::RST);
    e.peer_sent = peer.payload_bytes();
    e.rtt_us = flow.rtt.us();
    e.since_established_us = flow.established_us().map(|t| ts_us - t);
    silence(&mut e, flow, slot, role, ts_us, cf, st);
    e.bare_at_isn1 = !p.flags.ack() && me.has(dflags::SYN | dflags::SYNACK) && p.seq == me.base;
    let established = flow.has(bits::ESTABLISHED);
    if e.from_server && established {
        let tag = mac_tag(p.src_mac);
        let same_distance = me.has(dflags::SENT_NON_RST) && p.ttl == me.ttl;
        e.mac_changed = tag != 0 && flow.resp_mac != 0 && tag != flow.resp_mac && same_distance;
        e.client_data_unanswered = peer.payload_bytes() > 0
            && (!me.has(dflags::ACKED) || crate::flow::seq_lt(me.ack, peer.next_seq));
    }
    payload_order(&mut e, flow, role, ts_us);
    fin_notes(&mut e, flow, slot, role, cf);
    cross_flow(&mut e, flow, p, role, ts_us, cf, st);
    e
}

/// The silence the RST ended, and whether it came before the segment the RST answers
/// (a middlebox resets the sender of the first segment after the silence, microseconds
/// later, claiming the other end as source).
fn silence(
    e: &mut Evidence,
    flow: &Flow,
    slot: u32,
    role: Role,
    ts_us: i64,
    cf: &CrossFlow,
    st: &CauseSettings,
) {
    let last = flow.last_us;
    e.silence_us = ts_us.saturating_sub(last).max(0);
    if !flow.has(bits::HAS_MEMO) {
        return;
    }
    let Some(s) = cf.memo.get(slot).and_then(|m| m.silence) else {
        return;
    };
    let window = flow.rtt.us().unwrap_or(DEFAULT_ANSWER_US) + st.overload_rst_us;
    if s.seg_us == last
        && s.by == role.other()
        && ts_us - s.seg_us <= window
        && s.gap_us > e.silence_us
    {
        e.silence_us = s.gap_us;
        e.silence_before_segment = true;
    }
}

/// Who sent the latest payload and whether the RST answers it.
fn payload_order(e: &mut Evidence, flow: &Flow, role: Role, ts_us: i64) {
    let by_peer = flow.last_payload_role() == Some(role.other());
    e.answers_peer_data = by_peer && flow.has(bits::LAST_PAYLOAD_FRESH);
    if e.answers_peer_data {
        e.peer_payload_lag_us = Some(ts_us.saturating_sub(flow.last_us));
    }
    let me = flow.dir(role);
    e.resetter_fin = me.has(dflags::FIN);
    e.zero_window = me.has(dflags::SENT_NON_RST) && me.win == 0 && !me.has(dflags::FIN);
}

/// What the memo knows of the resetter's FIN.
fn fin_notes(e: &mut Evidence, flow: &Flow, slot: u32, role: Role, cf: &CrossFlow) {
    if !flow.has(bits::HAS_MEMO) {
        return;
    }
    let Some(f) = cf.memo.get(slot).and_then(|m| m.fin) else {
        return;
    };
    if f.by != role {
        return;
    }
    e.fin_idle_us = Some(f.idle_before_us);
    e.fin_crossed = f.crossed;
    if f.peer_data_us.is_some() {
        e.peer_data_after_fin = Some(f.peer_data_len);
    }
}

/// Races, overload and reboot candidates.
fn cross_flow(
    e: &mut Evidence,
    flow: &Flow,
    p: &Packet,
    role: Role,
    ts_us: i64,
    cf: &mut CrossFlow,
    st: &CauseSettings,
) {
    let orig = flow.dir(Role::Orig);
    if role == Role::Orig && e.resetter_sent == 0 && orig.has(dflags::SYN) {
        let (_, client_port) = flow.key.end(flow.end_of(Role::Orig));
        e.race = cf.races.find(&RaceQuery {
            client: e.client,
            client_mac: p.src_mac,
            client_port,
            server: e.server,
            server_port: e.server_port,
            syn_us: flow.first_us(),
            rst_us: ts_us,
            window_us: st.race_window_us,
            reset_us: st.race_reset_us,
        });
    }
    if !e.from_server || !flow.has(bits::ESTABLISHED) {
        return;
    }
    let uid = flow.uid();
    if let (Some(since), Some(rtt)) = (e.since_established_us, e.rtt_us) {
        if e.bare_at_isn1 && e.resetter_sent == 0 && since <= st.overload_rst_us + rtt {
            e.overload_candidate = true;
            cf.overload.note((e.server, e.server_port), uid, ts_us);
        }
    }
    if e.client_data_unanswered {
        e.comeback = cf.hosts.comeback(&e.server, ts_us, st.reboot_silence_us);
        if e.comeback.is_some() {
            e.reboot_candidate = true;
            cf.reboot.note(e.server, uid, ts_us);
        }
    }
}
