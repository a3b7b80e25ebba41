//! One test per transition rule of the tracker's endpoint states (Zeek's `TCP_*`
//! states, reduced to what `conn_state` reads), named after the rule. Each table row is
//! (state of the sender, state of its peer, flags of the sender's packet) and the two
//! states expected after [`update`]; a failure names the rule and the row.

use super::{update, update_in_full};
use crate::flow::{EndpointState as S, Flow, FlowKey, Role};
use crate::parse::{Packet, TcpFlags};
use rstwatch_schema::IpBytes;

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;

/// A data-less segment from the originator (192.0.2.1:40000) to 198.51.100.1:443.
fn segment(flags: u8) -> Packet {
    Packet {
        src: IpBytes::from_v4([192, 0, 2, 1]),
        dst: IpBytes::from_v4([198, 51, 100, 1]),
        sport: 40_000,
        dport: 443,
        seq: 1_000,
        ack: 5_000,
        flags: TcpFlags(flags),
        window: 512,
        ttl: 64,
        ip_id: 1,
        df: true,
        ..Packet::EMPTY
    }
}

/// Both endpoint states after the originator, in state `me` with a peer in `peer`,
/// sends a segment with `flags`.
fn after(me: S, peer: S, flags: u8) -> (S, S) {
    let p = segment(flags);
    let (key, sender) = FlowKey::of(&p);
    let mut flow = Flow::new(key, sender, 0);
    flow.set_state(Role::Orig, me);
    flow.set_state(Role::Resp, peer);
    update(&mut flow, &p, Role::Orig, 1_000);
    (flow.state(Role::Orig), flow.state(Role::Resp))
}

/// Checks every row: (sender, peer, flags) -> (sender, peer).
fn table(rule: &str, rows: &[(S, S, u8, S, S)]) {
    for &(me, peer, flags, want_me, want_peer) in rows {
        assert_eq!(
            after(me, peer, flags),
            (want_me, want_peer),
            "{rule}: sender {me:?}, peer {peer:?}, flags {flags:#04x}"
        );
    }
}

#[test]
fn rst_resets_the_sender_from_any_state() {
    for me in S::ALL {
        table(
            "rst",
            &[
                (me, S::Established, RST, S::Reset, S::Established),
                (me, S::Inactive, RST | ACK, S::Reset, S::Inactive),
            ],
        );
    }
}

#[test]
fn syn_moves_only_an_inactive_sender_to_syn_sent() {
    table(
        "syn",
        &[
            (S::Inactive, S::Inactive, SYN, S::SynSent, S::Inactive),
            (S::SynSent, S::Inactive, SYN, S::SynSent, S::Inactive),
            (
                S::Established,
                S::Established,
                SYN,
                S::Established,
                S::Established,
            ),
            (S::Closed, S::Closed, SYN, S::Closed, S::Closed),
        ],
    );
}

#[test]
fn synack_moves_an_inactive_or_syn_sent_sender_to_synack_sent() {
    table(
        "syn-ack",
        &[
            (
                S::Inactive,
                S::SynSent,
                SYN | ACK,
                S::SynAckSent,
                S::SynSent,
            ),
            (S::SynSent, S::SynSent, SYN | ACK, S::SynAckSent, S::SynSent),
            (S::Partial, S::Partial, SYN | ACK, S::Partial, S::Partial),
            (
                S::Established,
                S::Established,
                SYN | ACK,
                S::Established,
                S::Established,
            ),
        ],
    );
}

#[test]
fn fin_closes_the_sender_unless_it_was_reset() {
    table(
        "fin",
        &[
            (
                S::Established,
                S::Established,
                FIN | ACK,
                S::Closed,
                S::Established,
            ),
            (S::Inactive, S::Inactive, FIN, S::Closed, S::Inactive),
            (S::Partial, S::Partial, FIN | ACK, S::Closed, S::Partial),
            (
                S::Reset,
                S::Established,
                FIN | ACK,
                S::Reset,
                S::Established,
            ),
        ],
    );
}

#[test]
fn first_plain_segment_of_an_inactive_sender_is_partial() {
    table(
        "midstream",
        &[
            (S::Inactive, S::Inactive, ACK, S::Partial, S::Inactive),
            (S::Inactive, S::Established, ACK, S::Partial, S::Established),
            (S::Inactive, S::Inactive, 0, S::Partial, S::Inactive),
        ],
    );
}

#[test]
fn ack_after_handshake_establishes_both_ends() {
    table(
        "handshake ack",
        &[
            // The final ACK of the three-way handshake.
            (
                S::SynSent,
                S::SynAckSent,
                ACK,
                S::Established,
                S::Established,
            ),
            // Simultaneous open: both sent a SYN.
            (S::SynSent, S::SynSent, ACK, S::Established, S::Established),
            (
                S::SynAckSent,
                S::SynSent,
                ACK,
                S::Established,
                S::Established,
            ),
            // The peer is established already: only the sender moves.
            (
                S::SynSent,
                S::Established,
                ACK,
                S::Established,
                S::Established,
            ),
        ],
    );
}

#[test]
fn handshake_sender_stays_without_ack_or_with_a_peer_not_in_the_handshake() {
    table(
        "handshake ack needs ack and a peer in the handshake",
        &[
            (S::SynSent, S::SynAckSent, 0, S::SynSent, S::SynAckSent),
            (S::SynSent, S::Inactive, ACK, S::SynSent, S::Inactive),
            (S::SynAckSent, S::Partial, ACK, S::SynAckSent, S::Partial),
            (S::SynAckSent, S::Closed, ACK, S::SynAckSent, S::Closed),
            (S::SynSent, S::Reset, ACK, S::SynSent, S::Reset),
        ],
    );
}

#[test]
fn plain_segment_leaves_other_states_alone() {
    for me in [S::Partial, S::Established, S::Closed, S::Reset] {
        table(
            "plain segment",
            &[
                (me, S::Established, ACK, me, S::Established),
                (me, S::SynSent, ACK, me, S::SynSent),
            ],
        );
    }
}

/// The expiry sweep of a file table trusts a flow's deadline until `update` says it
/// may have moved earlier: the handshake completing, a FIN or RST (each can shorten
/// the timeout), or a packet stamped before the flow's last one.
#[test]
fn a_packet_asks_for_an_expiry_recheck_when_the_deadline_may_move_earlier() {
    let syn = segment(SYN);
    let (key, sender) = FlowKey::of(&syn);
    let mut flow = Flow::new(key, sender, 1_000);
    let from_resp = |flags: u8| {
        let mut p = segment(flags);
        (p.src, p.dst, p.sport, p.dport) = (p.dst, p.src, p.dport, p.sport);
        (p.seq, p.ack) = (5_000, 1_001);
        p
    };
    let mut step = |p: &Packet, role: Role, ts: i64| update(&mut flow, p, role, ts).recheck_expiry;
    assert!(!step(&syn, Role::Orig, 1_000), "SYN");
    assert!(!step(&from_resp(SYN | ACK), Role::Resp, 2_000), "SYN-ACK");
    let mut ack = segment(ACK);
    (ack.seq, ack.ack) = (1_001, 5_001);
    assert!(
        step(&ack, Role::Orig, 3_000),
        "the ACK completing the handshake"
    );
    assert!(!step(&ack, Role::Orig, 4_000), "an ACK in order");
    assert!(
        step(&ack, Role::Orig, 3_500),
        "an ACK stamped before the last packet"
    );
    assert!(!step(&ack, Role::Orig, 3_500), "the same time again");
    assert!(step(&from_resp(FIN | ACK), Role::Resp, 5_000), "FIN");
    assert!(step(&from_resp(RST), Role::Resp, 6_000), "RST");
}

/// Everything the tracker writes in a flow, as text, to compare two flows.
fn tracked(f: &Flow) -> String {
    let (last_us, rtt, dirs) = (f.last_us, f.rtt, f.dirs);
    let (states, bits, rsts, mac) = (f.states, f.bits, f.rst_count, f.resp_mac);
    let history = f.history.text();
    format!("{last_us} {rtt:?} {history} {dirs:?} {states:#x} {bits:#x} {rsts} {mac}")
}

/// `update` takes a short path for in-order ACKs on established flows; it must leave
/// every flow exactly as the full update does. Random segments (mostly the next in
/// order, some out of order, control flags, zero windows, time running back) on many
/// flows, both updates applied to copies and compared after every step.
#[test]
fn the_in_order_path_does_what_the_full_update_does() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    const FLAGS: [u8; 12] = [
        ACK,
        ACK,
        ACK,
        ACK | 0x08,
        ACK | 0x08,
        ACK | 0x20,
        SYN,
        SYN | ACK,
        FIN | ACK,
        RST,
        RST | ACK,
        0,
    ];
    let (mut steps, mut short) = (0u32, 0u32);
    for _ in 0..2_000 {
        let first = segment(SYN);
        let (key, sender) = FlowKey::of(&first);
        let mut ts = 1_000_000i64;
        let mut flow = Flow::new(key, sender, ts);
        for _ in 0..100 {
            let role = if rnd(2) == 0 { Role::Orig } else { Role::Resp };
            let mut p = segment(FLAGS[rnd(FLAGS.len() as u64) as usize]);
            let (me, peer) = (*flow.dir(role), *flow.dir(role.other()));
            p.seq = match rnd(8) {
                0 => rnd(1 << 32) as u32,
                1 => me.next_seq.wrapping_add(rnd(5) as u32).wrapping_sub(2),
                _ => me.next_seq,
            };
            p.ack = match rnd(6) {
                0 => peer.next_seq.wrapping_sub(rnd(3) as u32),
                1 => peer.next_seq.wrapping_add(1 + rnd(3) as u32),
                _ => peer.next_seq,
            };
            p.payload_len = [0, 0, 1, 100, 1448][rnd(5) as usize];
            p.window = if rnd(10) == 0 { 0 } else { 512 };
            p.ip_id = rnd(1 << 16) as u16;
            p.src_mac = rnd(3);
            ts += rnd(3_000) as i64 - 500;
            short += u32::from(super::is_next_in_order(&flow, &p, role));
            let mut full = flow;
            let u_full = update_in_full(&mut full, &p, role, ts);
            let u = update(&mut flow, &p, role, ts);
            let packet = format!(
                "{role:?} flags {:#x} seq {} ack {}",
                p.flags.0, p.seq, p.ack
            );
            assert_eq!(tracked(&flow), tracked(&full), "after {packet}");
            assert_eq!(format!("{u:?}"), format!("{u_full:?}"), "after {packet}");
            steps += 1;
        }
    }
    // The short path must have been taken often, or the comparison says nothing.
    assert!(
        short > steps / 10,
        "{short} of {steps} steps took the short path"
    );
}
