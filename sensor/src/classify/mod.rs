//! The RST classifier: base class, direction and flags of one RST (DESIGN.md, "RST
//! classification"), from the flow's state *before* the RST.
//!
//! Flags that need later packets (`data_after`, `multi_seq`, `multi_ack`,
//! `rst_and_rstack` on the earlier RST of a pair) are added while the RST is held for
//! its verdict delay (see [`pending`]); [`verdict::is_suspect`] decides `suspect` when
//! it is released.

pub mod cause;
pub mod evidence;
pub mod pending;
pub mod verdict;

#[cfg(test)]
mod class_tests;
#[cfg(test)]
mod rule_tests;

use crate::flow::{bits, dflags, seq_ge, seq_lt, Flow, Role};
use crate::parse::Packet;
use rstwatch_schema::{Dir, RstClass, RstEvent, RstFlag, RstFlags};

/// A TTL differing from the sender's baseline in this flow by more than this is a
/// mismatch. Zero: within one flow a sender's TTL at the sensor is constant (one path,
/// one initial TTL), and a firewall resetting on the endpoint's behalf is often just
/// one hop closer, so a difference of 1 can be the only sign (DESIGN.md). A route
/// change inside a flow would also show; `ttl_mismatch` alone is never `suspect` (the
/// verdict needs a second signal), it only makes the cause `middlebox`.
pub const TTL_TOLERANCE: u8 = 0;
/// An IPv4 ID more than this far ahead of (or at all behind) the sender's last one is a
/// mismatch: stacks with per-connection counters move forward by one per segment.
/// An RST with ID 0 is never a mismatch: Linux sends bare RSTs for segments without a
/// socket (refused, after close, overload, follow-ups) with ID 0.
pub const IPID_MAX_STEP: u16 = 1024;

/// What the classifier needs besides the flow and packet.
pub struct Context {
    /// Packet time of the RST.
    pub ts_us: i64,
    /// The flow was created by this very RST: nothing was known of the four-tuple.
    pub fresh: bool,
    /// An RST after more silence than this gets `idle`, µs.
    pub idle_threshold_us: i64,
    /// The silence the RST ended (see `evidence::Evidence::silence_us`).
    pub silence_us: i64,
}

/// Classifies RST `p`, sent by `role` of `flow`. `flow` is the state before `p`.
pub fn classify(flow: &Flow, p: &Packet, role: Role, cx: &Context) -> RstEvent {
    let class = base_class(flow, role, cx.fresh);
    // Unsolicited: nothing says which end is which (a one-sided mirror, a midstream
    // pickup), so say unknown rather than guess from port numbers.
    let dir = if cx.fresh || class == RstClass::Unsolicited {
        Dir::Unknown
    } else if role == Role::Orig {
        Dir::Orig
    } else {
        Dir::Resp
    };
    let mut fl = flow_flags(flow, p, role, cx);
    fl.0 |= injection_evidence(flow, p, role).0;

    RstEvent {
        ts_us: cx.ts_us,
        src: p.src,
        sport: p.sport,
        dst: p.dst,
        dport: p.dport,
        vlan: p.vlan,
        inner_vlan: p.inner_vlan,
        dir,
        class,
        flags: fl,
        suspect: false,
        seq: p.seq,
        ack: if p.flags.ack() { p.ack } else { 0 },
        ack_flag: p.flags.ack(),
        ttl: p.ttl,
        ip_id: p.ip_id,
        payload_len: p.payload_len.min(u32::from(u16::MAX)) as u16,
        flow_uid: flow.uid(),
        cause: rstwatch_schema::Cause::Unknown,
        cause_detail: String::new(),
        silence_ms: (cx.silence_us.max(0) / 1000) as u64,
        encap: p.encap,
        tunnel_id: p.tunnel_id,
    }
}

/// The base class (DESIGN.md's table) of an RST from `role`.
fn base_class(flow: &Flow, role: Role, fresh: bool) -> RstClass {
    let me = flow.dir(role);
    let peer = flow.dir(role.other());
    let any = me.flags | peer.flags;
    let established = flow.has(bits::ESTABLISHED);
    let any_handshake = any & (dflags::SYN | dflags::SYNACK) != 0;
    // Zeek: a flow whose responder was never seen is OTH when the originator sent more
    // than SYNs before its RST, RSTOS0 when it sent only SYNs.
    // (Every non-SYN packet of the originator leaves a trace: payload 'D', a pure ACK
    // 'A', or a FIN.)
    let one_sided_midstream = !peer.has(dflags::SEEN)
        && role == Role::Orig
        && me.has(dflags::SYN)
        && me.has(dflags::H_A | dflags::H_D | dflags::FIN);
    if fresh || (!established && !any_handshake) || one_sided_midstream {
        RstClass::Unsolicited
    } else if established {
        RstClass::Abort
    } else if role == Role::Resp && peer.has(dflags::SYN) && !me.has(dflags::SYNACK) {
        RstClass::Reject
    } else {
        RstClass::HandshakeAbort
    }
}

/// Sequence validity and what the flow and the packet say of themselves.
fn flow_flags(flow: &Flow, p: &Packet, role: Role, cx: &Context) -> RstFlags {
    let any = flow.dir(role).flags | flow.dir(role.other()).flags;
    let mut fl = RstFlags::EMPTY;
    if let Some(v) = seq_validity(flow, p, role) {
        fl.insert(v);
    }
    fl.set(RstFlag::AfterFin, any & dflags::FIN != 0);
    fl.set(
        RstFlag::Idle,
        !cx.fresh && cx.silence_us > cx.idle_threshold_us,
    );
    fl.set(RstFlag::WithPayload, p.payload_len > 0);
    fl.set(RstFlag::SynRst, p.flags.syn());
    fl.set(RstFlag::FinRst, p.flags.fin());
    fl.set(RstFlag::Lossy, any & dflags::LOSSY != 0);
    fl.set(RstFlag::BadChecksum, p.bad_checksum);
    fl
}

/// Header and sequence signals against the purported sender's own baseline (the
/// ones held RSTs gain later are added by the engine).
fn injection_evidence(flow: &Flow, p: &Packet, role: Role) -> RstFlags {
    let me = flow.dir(role);
    let mut fl = RstFlags::EMPTY;
    if me.has(dflags::SENT_NON_RST) {
        fl.set(RstFlag::TtlMismatch, p.ttl.abs_diff(me.ttl) > TTL_TOLERANCE);
        if !p.is_v6 && p.ip_id != 0 {
            let step = p.ip_id.wrapping_sub(me.ip_id);
            fl.set(RstFlag::IpidMismatch, step > IPID_MAX_STEP);
        }
        // Behind the data the sender sent: not behind its FIN, whose sequence number
        // a kernel reset answering a segment that has not acknowledged the FIN yet
        // carries (Linux accepts that RST).
        let sent_data = me.payload_bytes() > 0;
        let data_end = me.next_seq.wrapping_sub(u32::from(me.has(dflags::FIN)));
        fl.set(RstFlag::SeqBehind, sent_data && seq_lt(p.seq, data_end));
    }
    let other_flavour = if p.flags.ack() {
        dflags::RST_BARE
    } else {
        dflags::RST_ACK
    };
    fl.set(RstFlag::RstAndRstack, me.has(other_flavour));
    fl
}

/// RFC 9293 §3.10.7.4 from the receiver's side: is the RST's seq the receiver's next
/// expected (exact), inside its window, or outside? `None` when nothing is known to
/// compare with.
fn seq_validity(flow: &Flow, p: &Packet, role: Role) -> Option<RstFlag> {
    let me = flow.dir(role);
    let peer = flow.dir(role.other());
    let sender_known = me.has(dflags::SENT_NON_RST);
    // Receiver in SYN-SENT: the RST is acceptable when it acknowledges the SYN.
    if peer.has(dflags::SYN) && !sender_known {
        let ok = p.flags.ack() && p.ack == peer.next_seq;
        return Some(if ok {
            RstFlag::SeqExact
        } else {
            RstFlag::SeqOutOfWindow
        });
    }
    let peer_acked = peer.has(dflags::ACKED) && peer.has(dflags::SENT_NON_RST);
    if !sender_known && !peer_acked {
        return None;
    }
    let seq = p.seq;
    if (sender_known && seq == me.next_seq) || (peer_acked && seq == peer.ack) {
        return Some(RstFlag::SeqExact);
    }
    // The receiver's RCV.NXT lies between its last ACK and what the sender has sent.
    let (lo, hi) = match (sender_known, peer_acked) {
        (true, true) => {
            if seq_lt(peer.ack, me.next_seq) {
                (peer.ack, me.next_seq)
            } else {
                (me.next_seq, peer.ack)
            }
        }
        (true, false) => (me.next_seq, me.next_seq),
        _ => (peer.ack, peer.ack),
    };
    let window = receive_window(flow, role.other());
    let in_window = seq_ge(seq, lo) && seq_lt(seq, hi.wrapping_add(window.max(1)));
    Some(if in_window {
        RstFlag::SeqInWindow
    } else {
        RstFlag::SeqOutOfWindow
    })
}

/// The receive window `role` last advertised, scaled when both SYNs negotiated scaling.
/// Unknown (nothing advertised yet): 65535, the largest unscaled window.
fn receive_window(flow: &Flow, role: Role) -> u32 {
    let d = flow.dir(role);
    if !d.has(dflags::SENT_NON_RST) {
        return 65_535;
    }
    let scale = match (d.wscale(), flow.dir(role.other()).wscale()) {
        (Some(s), Some(_)) => u32::from(s),
        _ => 0,
    };
    u32::from(d.win) << scale
}
