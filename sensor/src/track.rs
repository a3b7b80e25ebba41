//! The TCP tracker: updates a flow's per-direction state, Zeek endpoint states and
//! history with one packet.

use crate::flow::{bits, mac_tag, DirState, End, EndpointState, Flow, Role, RttCode};
use crate::flow::{dflags, seq_gt, NO_WSCALE};
use crate::parse::Packet;
use std::hint::select_unpredictable;

/// Ports Zeek's analyzers register as likely server ports (`likely_server_ports`),
/// used, like Zeek, to orient a flow picked up without its SYN.
const LIKELY_SERVER_PORTS: &[u16] = &[
    21, 22, 23, 25, 53, 80, 88, 110, 111, 135, 139, 143, 161, 389, 443, 445, 465, 502, 514, 587,
    636, 993, 995, 1080, 1433, 1521, 1723, 1883, 2049, 3128, 3306, 3389, 5060, 5222, 5432, 5672,
    5900, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8443, 8888, 9200, 11211, 27017,
];

/// Whether `p` is one of Zeek's likely server ports.
pub fn is_likely_server_port(p: u16) -> bool {
    LIKELY_SERVER_PORTS.binary_search(&p).is_ok()
}

/// Who is the originator of a flow whose first packet is `p`, sent from key end
/// `sender`: the SYN sender; for a SYN-ACK, its receiver; otherwise the sender, unless
/// the sender's port is a likely server port and the receiver's is not. The second
/// value says whether roles were flipped (Zeek's `^`).
pub fn orientation(p: &Packet, sender: End) -> (End, bool) {
    let f = p.flags;
    let flip = if f.syn() {
        f.ack()
    } else {
        !f.rst() && is_likely_server_port(p.sport) && !is_likely_server_port(p.dport)
    };
    if flip {
        (sender.other(), true)
    } else {
        (sender, false)
    }
}

/// Outcome of one update that the engine counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Update {
    /// History letters dropped (history full).
    pub letters_dropped: u32,
    /// This packet completed the handshake (or established a midstream flow).
    pub became_established: bool,
    /// The flow's idle deadline may now be earlier than the expiry sweep last found:
    /// this packet may have changed which timeout applies (it completed the handshake,
    /// or carried a FIN or RST), or it is older than the flow's last packet (a capture's
    /// timestamps out of order). The sweep must look at the flow again.
    pub recheck_expiry: bool,
}

/// Records a packet with a bad checksum: only the history learns of it (Zeek: `C`).
pub fn bad_checksum(flow: &mut Flow, role: Role) -> Update {
    let mut u = Update::default();
    add_once_by_scan(flow, role.letter(b'C'), &mut u);
    u
}

/// Updates `flow` with packet `p` sent by `role` at `ts_us`. (The engine's packet path
/// makes this choice itself, so it can skip what the in-order path never needs.)
#[inline]
pub fn update(flow: &mut Flow, p: &Packet, role: Role, ts_us: i64) -> Update {
    if is_next_in_order(flow, p, role) {
        next_in_order(flow, p, role, ts_us)
    } else {
        update_in_full(flow, p, role, ts_us)
    }
}

/// Whether `p` is the common segment of a busy link: an ACK without SYN, FIN or RST,
/// with an open window, on an established flow, at exactly its sender's next sequence
/// number, from a side past the handshake states that already has the history letter
/// (`D` or `A`) the segment would add. For such a segment most of
/// [`update_in_full`] changes nothing (no letter, no endpoint state, no handshake);
/// [`next_in_order`] does the rest alone, ~4× fewer instructions (callgrind).
#[inline]
pub fn is_next_in_order(flow: &Flow, p: &Packet, role: Role) -> bool {
    use crate::parse::TcpFlags as F;
    let control_or_ack = F::SYN | F::FIN | F::RST | F::ACK;
    if p.flags.0 & control_or_ack != F::ACK || p.window == 0 || !flow.has(bits::ESTABLISHED) {
        return false;
    }
    let letter = if p.payload_len > 0 {
        dflags::H_D
    } else {
        dflags::H_A
    };
    let need = dflags::SENT_NON_RST | dflags::ACKED | letter;
    let d = flow.dir(role);
    // The endpoint states that a plain ACK moves are the ones before `Partial`
    // (`past_handshake`).
    d.flags & need == need && p.seq == d.next_seq && flow.past_handshake(role)
}

/// [`update_in_full`]'s effect on a segment [`is_next_in_order`] admits, and nothing
/// else (the test `the_in_order_path_does_what_the_full_update_does` holds them equal).
/// Always inline: with `#[inline]` the compiler kept it out of line, a call with its
/// register saves for four packets in five.
#[inline(always)]
pub fn next_in_order(flow: &mut Flow, p: &Packet, role: Role, ts_us: i64) -> Update {
    let len = p.payload_len;
    let peer = *flow.dir(role.other());
    let d = flow.dir_mut(role);
    // `SEEN` needs no setting: it came with `SENT_NON_RST`, in the same update.
    d.pkts = d.pkts.saturating_add(1);
    // The payload ends ahead of `next_seq` (lengths are at most 64 KiB).
    d.advance(p.seq.wrapping_add(len));
    d.ip_id = p.ip_id;
    d.win = p.window;
    // A select, not a branch: whether a segment moves its sender's ack depends on the
    // direction and the other side's data, which change from one packet to the next
    // with nothing a predictor can follow (RESULTS.md, "Branches no predictor follows").
    d.ack = select_unpredictable(seq_gt(p.ack, d.ack), p.ack, d.ack);
    if peer.has(dflags::SENT_NON_RST) && seq_gt(p.ack, peer.next_seq) {
        flow.dir_mut(role.other()).flags |= dflags::LOSSY;
    }
    payload_order(flow, role, len);
    if role == Role::Resp && flow.resp_mac == 0 {
        flow.resp_mac = mac_tag(p.src_mac);
    }
    let u = Update {
        recheck_expiry: ts_us < flow.last_us,
        ..Update::default()
    };
    flow.last_us = ts_us;
    u
}

/// Updates `flow` with any packet `p` sent by `role` at `ts_us`. Out of line, so that
/// the short path inlined into the engine stays short.
#[inline(never)]
pub fn update_in_full(flow: &mut Flow, p: &Packet, role: Role, ts_us: i64) -> Update {
    let mut u = Update::default();
    history(flow, p, role, &mut u);
    endpoint_states(flow, p, role);

    let f = p.flags;
    let syn = f.syn();
    let fin = f.fin();
    let len = p.payload_len;
    let peer_next = flow.dir(role.other()).next_seq;
    let peer_sent = flow.dir(role.other()).has(dflags::SENT_NON_RST);
    {
        let d = flow.dir_mut(role);
        d.pkts = d.pkts.saturating_add(1);
        d.flags |= dflags::SEEN;
        if f.rst() {
            // An RST consumes no sequence space and its seq is only a claim: it never
            // moves the sender's sequence state or baselines.
            d.flags |= dflags::RST
                | if f.ack() {
                    dflags::RST_ACK
                } else {
                    dflags::RST_BARE
                };
        } else {
            track_sequence(d, p, syn, fin, len);
            d.ip_id = p.ip_id;
            d.win = p.window;
            if syn {
                d.flags |= if f.ack() { dflags::SYNACK } else { dflags::SYN };
                d.ws = (d.ws & 0xf0) | p.opts.wscale.unwrap_or(NO_WSCALE);
            }
            if fin {
                d.flags |= dflags::FIN;
            }
        }
        if f.ack() && (!d.has(dflags::ACKED) || seq_gt(p.ack, d.ack)) {
            d.ack = p.ack;
            d.flags |= dflags::ACKED;
        }
    }
    // Our ACK beyond what we saw the peer send: we missed some of the peer's packets.
    if f.ack() && !f.rst() && peer_sent && seq_gt(p.ack, peer_next) {
        flow.dir_mut(role.other()).flags |= dflags::LOSSY;
    }
    if !f.rst() {
        payload_order(flow, role, len);
        if role == Role::Resp && flow.resp_mac == 0 {
            flow.resp_mac = mac_tag(p.src_mac);
        }
    }
    u.recheck_expiry = fin || f.rst() || ts_us < flow.last_us;
    if !flow.has(bits::ESTABLISHED) && is_established(flow) {
        flow.bits |= bits::ESTABLISHED;
        u.became_established = true;
        u.recheck_expiry = true;
        if flow.dir(Role::Orig).has(dflags::SYN) {
            flow.rtt = RttCode::encode(ts_us - flow.first_us());
        }
    }
    flow.last_us = ts_us;
    u
}

/// Who sent the latest payload, and whether that sender has sent anything but payload
/// since (its peer answering does not count): the cause rules ask whether an RST
/// answers the peer's data.
#[inline]
fn payload_order(flow: &mut Flow, role: Role, len: u32) {
    let resp = role == Role::Resp;
    if len > 0 {
        flow.bits = (flow.bits & !bits::LAST_PAYLOAD_RESP)
            | bits::LAST_PAYLOAD_FRESH
            | if resp { bits::LAST_PAYLOAD_RESP } else { 0 };
    } else if flow.has(bits::LAST_PAYLOAD_RESP) == resp {
        flow.bits &= !bits::LAST_PAYLOAD_FRESH;
    }
}

fn track_sequence(d: &mut DirState, p: &Packet, syn: bool, fin: bool, len: u32) {
    let seq = p.seq;
    let end = seq
        .wrapping_add(len)
        .wrapping_add(u32::from(syn) + u32::from(fin));
    if !d.has(dflags::SENT_NON_RST) {
        d.flags |= dflags::SENT_NON_RST;
        d.base = if syn { seq.wrapping_add(1) } else { seq };
        d.next_seq = end;
        d.ttl = p.ttl;
        d.ws = NO_WSCALE;
        if p.df {
            d.flags |= dflags::DF;
        }
        return;
    }
    if syn && seq.wrapping_add(1) != d.base && !p.flags.ack() {
        // A new SYN with another ISN: the sender restarted the connection.
        d.base = seq.wrapping_add(1);
        d.next_seq = end;
        d.ws &= 0x0f;
        return;
    }
    if seq_gt(seq, d.next_seq) {
        d.flags |= dflags::LOSSY;
    }
    d.advance(end);
}

/// Zeek's `UpdateHistory`: one letter per kind and side, except S/H/F/R which repeat
/// when their sequence number differs from the previous one of the same kind.
fn history(flow: &mut Flow, p: &Packet, role: Role, u: &mut Update) {
    let f = p.flags;
    let n = u32::from(f.syn()) + u32::from(f.fin()) + u32::from(f.rst());
    if n > 1 {
        let c = if f.fin() && f.rst() { b'I' } else { b'Q' };
        add_once_by_scan(flow, role.letter(c), u);
        return;
    }
    let d = *flow.dir(role);
    if f.syn() {
        let c = role.letter(if f.ack() { b'H' } else { b'S' });
        let repeat = d.has(dflags::SENT_NON_RST) && p.seq.wrapping_add(1) != d.base;
        add_flagged(flow, role, dflags::H_S, c, repeat, u);
    } else if f.fin() {
        let end = p.seq.wrapping_add(p.payload_len);
        let repeat = d.has(dflags::FIN) && end.wrapping_add(1) != d.next_seq;
        add_flagged(flow, role, dflags::H_F, role.letter(b'F'), repeat, u);
    } else if f.rst() {
        add_flagged(flow, role, dflags::H_R, role.letter(b'R'), false, u);
    } else if p.payload_len > 0 {
        add_flagged(flow, role, dflags::H_D, role.letter(b'D'), false, u);
        if d.has(dflags::SENT_NON_RST) {
            let end = p.seq.wrapping_add(p.payload_len);
            if !seq_gt(end, d.next_seq) {
                add_once_by_scan(flow, role.letter(b'T'), u);
            } else if seq_gt(p.seq, d.next_seq) {
                add_once_by_scan(flow, role.letter(b'G'), u);
            }
        }
    } else if f.ack() {
        add_flagged(flow, role, dflags::H_A, role.letter(b'A'), false, u);
    }
    if p.window == 0 && !f.syn() && !f.rst() {
        add_once_by_scan(flow, role.letter(b'W'), u);
    }
}

/// Adds `c` the first time (tracked by `flag`), and again when `repeat`.
#[inline]
fn add_flagged(flow: &mut Flow, role: Role, flag: u16, c: u8, repeat: bool, u: &mut Update) {
    let d = flow.dir_mut(role);
    if !d.has(flag) {
        d.flags |= flag;
        push(flow, c, u);
    } else if repeat {
        push(flow, c, u);
    }
}

/// Adds `c` unless present (rare letters, no flag bit of their own).
fn add_once_by_scan(flow: &mut Flow, c: u8, u: &mut Update) {
    if !flow.history.contains(c) {
        push(flow, c, u);
    }
}

#[inline]
fn push(flow: &mut Flow, c: u8, u: &mut Update) {
    if !flow.history.push(c) {
        flow.bits |= bits::HISTORY_FULL;
        u.letters_dropped += 1;
    }
}

/// Zeek's endpoint state machine, reduced to the transitions `conn_state` looks at.
fn endpoint_states(flow: &mut Flow, p: &Packet, role: Role) {
    use EndpointState as S;
    let f = p.flags;
    let me = flow.state(role);
    let peer = flow.state(role.other());
    let next = if f.rst() {
        S::Reset
    } else if f.syn() && !f.ack() {
        if me == S::Inactive {
            S::SynSent
        } else {
            me
        }
    } else if f.syn() {
        if matches!(me, S::Inactive | S::SynSent) {
            S::SynAckSent
        } else {
            me
        }
    } else if f.fin() {
        if me == S::Reset {
            me
        } else {
            S::Closed
        }
    } else {
        match me {
            S::Inactive => S::Partial,
            S::SynSent | S::SynAckSent
                if f.ack() && matches!(peer, S::SynSent | S::SynAckSent | S::Established) =>
            {
                if matches!(peer, S::SynSent | S::SynAckSent) {
                    flow.set_state(role.other(), S::Established);
                }
                S::Established
            }
            s => s,
        }
    };
    flow.set_state(role, next);
}

/// Handshake completed, or both sides exchanged ACKed non-SYN traffic (midstream).
fn is_established(flow: &Flow) -> bool {
    let o = flow.state(Role::Orig);
    let r = flow.state(Role::Resp);
    if o == EndpointState::Established || r == EndpointState::Established {
        return true;
    }
    let both_acked = flow
        .dirs
        .iter()
        .all(|d| d.has(dflags::ACKED) && d.has(dflags::SENT_NON_RST));
    let any_syn = flow
        .dirs
        .iter()
        .any(|d| d.has(dflags::SYN) || d.has(dflags::SYNACK));
    both_acked && (!any_syn || flow.dirs.iter().any(|d| d.has(dflags::H_D)))
}

#[cfg(test)]
#[path = "track_tests.rs"]
mod tests;
