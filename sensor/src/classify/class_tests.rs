//! One test per classification rule (base class, sequence validity, the flow's own
//! flags, injection evidence) and per Zeek `conn_state`, named after the rule, each
//! built from a small packet sequence run through the whole engine. A failure names
//! the rule that broke; `rule_tests` does the same for the causes.

use super::rule_tests::{only_rst, rsts, Cap, Conv, Who, MS, S, T0};
use crate::gen::packet::{Wire, ACK, FIN, RST, SYN};
use crate::EngineConfig;
use rstwatch_schema::{ConnState, Dir, Record, RstClass, RstEvent, RstFlag};

/// A web conversation whose handshake completed and which carried data both ways.
fn talked(cap: &mut Cap) -> (Conv, i64) {
    let mut c = Conv::web(40_100, 443);
    let t = c.handshake(cap, T0, 20 * MS);
    c.data(cap, t + MS, Who::Client, 300);
    c.data(cap, t + 5 * MS, Who::Server, 900);
    c.ack(cap, t + 15 * MS, Who::Client);
    (c, t + 15 * MS)
}

/// An RST from `who` with `flags`, `seq` and `ack` as given and the sender's TTL,
/// IP ID (next in its counter) and MAC.
fn rst_from(c: &mut Conv, cap: &mut Cap, t: i64, who: Who, flags: u8, seq: u32) {
    let (me, peer) = match who {
        Who::Client => (&mut c.c, &c.s),
        Who::Server => (&mut c.s, &c.c),
    };
    let w = Wire {
        src_mac: me.mac,
        ttl: me.ttl,
        ip_id: me.ip_id,
        window: 0,
        ..Wire::tcp(me.ip, me.port, peer.ip, peer.port, flags, seq, me.rcv)
    };
    me.ip_id = me.ip_id.wrapping_add(1);
    cap.push(t, &w);
}

fn has(ev: &RstEvent, f: RstFlag) -> bool {
    ev.flags.contains(f)
}

// ---- base class (DESIGN.md, "RST classification") ----------------------------------

#[test]
fn reject_answers_syn_without_synack() {
    let mut cap = Cap::default();
    let mut c = Conv::web(40_101, 23);
    c.seg(&mut cap, T0, Who::Client, SYN, &[]);
    let w = Wire {
        ip_id: 0,
        ..Wire::tcp(c.s.ip, 23, c.c.ip, 40_101, RST | ACK, 0, c.c.nxt)
    };
    cap.push(T0 + 200, &w);
    let ev = only_rst(&cap.run(None));
    assert_eq!((ev.class, ev.dir), (RstClass::Reject, Dir::Resp));
}

#[test]
fn handshake_abort_after_synack_without_the_final_ack() {
    let mut cap = Cap::default();
    let mut c = Conv::web(40_102, 443);
    c.seg(&mut cap, T0, Who::Client, SYN, &[]);
    c.seg(&mut cap, T0 + 10 * MS, Who::Server, SYN | ACK, &[]);
    let seq = c.c.nxt;
    rst_from(&mut c, &mut cap, T0 + 11 * MS, Who::Client, RST, seq);
    let ev = only_rst(&cap.run(None));
    assert_eq!((ev.class, ev.dir), (RstClass::HandshakeAbort, Dir::Orig));
}

#[test]
fn abort_after_the_handshake_completed_says_who_sent_it() {
    for who in [Who::Client, Who::Server] {
        let mut cap = Cap::default();
        let (mut c, t) = talked(&mut cap);
        c.socket_rst(&mut cap, t + 100 * MS, who);
        let ev = only_rst(&cap.run(None));
        let dir = if who == Who::Client {
            Dir::Orig
        } else {
            Dir::Resp
        };
        assert_eq!((ev.class, ev.dir), (RstClass::Abort, dir), "{who:?}");
    }
}

#[test]
fn unsolicited_without_flow_state_says_dir_unknown() {
    let mut cap = Cap::default();
    let mut c = Conv::web(40_104, 443);
    let seq = c.s.nxt;
    rst_from(&mut c, &mut cap, T0, Who::Server, RST | ACK, seq);
    let ev = only_rst(&cap.run(None));
    assert_eq!((ev.class, ev.dir), (RstClass::Unsolicited, Dir::Unknown));
}

#[test]
fn unsolicited_when_the_responder_was_never_seen_and_the_originator_sent_more_than_syns() {
    let mut cap = Cap::default();
    let mut c = Conv::web(40_105, 443);
    c.seg(&mut cap, T0, Who::Client, SYN, &[]);
    c.data(&mut cap, T0 + 50 * MS, Who::Client, 100);
    let seq = c.c.nxt;
    rst_from(&mut c, &mut cap, T0 + 60 * MS, Who::Client, RST | ACK, seq);
    let ev = only_rst(&cap.run(None));
    assert_eq!(ev.class, RstClass::Unsolicited);
}

// ---- sequence validity (RFC 9293 §3.10.7.4) ----------------------------------------

#[test]
fn sequence_validity_exact_in_window_out_of_window() {
    // (rule, offset of the RST's seq from the receiver's next expected, flag)
    let table: [(&str, u32, RstFlag); 3] = [
        ("exact_is_seq_exact", 0, RstFlag::SeqExact),
        (
            "inexact_in_window_is_seq_in_window",
            100,
            RstFlag::SeqInWindow,
        ),
        (
            "beyond_the_window_is_seq_out_of_window",
            100_000,
            RstFlag::SeqOutOfWindow,
        ),
    ];
    for (rule, offset, flag) in table {
        let mut cap = Cap::default();
        let (mut c, t) = talked(&mut cap);
        let seq = c.s.nxt.wrapping_add(offset);
        rst_from(&mut c, &mut cap, t + 10 * MS, Who::Server, RST | ACK, seq);
        let ev = only_rst(&cap.run(None));
        assert!(has(&ev, flag), "{rule}: {:?}", ev.flags.names());
        let validity = [
            RstFlag::SeqExact,
            RstFlag::SeqInWindow,
            RstFlag::SeqOutOfWindow,
        ];
        let n = validity.iter().filter(|f| has(&ev, **f)).count();
        assert_eq!(n, 1, "{rule}: exactly one validity flag");
    }
}

#[test]
fn rst_in_syn_sent_is_exact_only_when_it_acknowledges_the_syn() {
    for (rule, ack_offset, flag) in [
        ("acks_the_syn_is_seq_exact", 0u32, RstFlag::SeqExact),
        ("other_ack_is_seq_out_of_window", 5, RstFlag::SeqOutOfWindow),
    ] {
        let mut cap = Cap::default();
        let mut c = Conv::web(40_107, 25);
        c.seg(&mut cap, T0, Who::Client, SYN, &[]);
        let w = Wire {
            ip_id: 0,
            ..Wire::tcp(
                c.s.ip,
                25,
                c.c.ip,
                40_107,
                RST | ACK,
                0,
                c.c.nxt.wrapping_add(ack_offset),
            )
        };
        cap.push(T0 + 200, &w);
        let ev = only_rst(&cap.run(None));
        assert!(has(&ev, flag), "{rule}: {:?}", ev.flags.names());
    }
}

// ---- the flow's own flags --------------------------------------------------------

#[test]
fn rst_after_fin_gets_after_fin() {
    let mut cap = Cap::default();
    let (mut c, t) = talked(&mut cap);
    c.fin(&mut cap, t + 10 * MS, Who::Server);
    c.socket_rst(&mut cap, t + 20 * MS, Who::Server);
    let ev = only_rst(&cap.run(None));
    assert!(has(&ev, RstFlag::AfterFin), "{:?}", ev.flags.names());
}

#[test]
fn rst_after_more_silence_than_the_idle_threshold_gets_idle() {
    // (silence before the RST, idle expected) against the default 300 s threshold.
    for (silence, idle) in [(10 * S, false), (400 * S, true)] {
        let mut cap = Cap::default();
        let (mut c, t) = talked(&mut cap);
        c.socket_rst(&mut cap, t + silence, Who::Server);
        let ev = only_rst(&cap.run(None));
        assert_eq!(has(&ev, RstFlag::Idle), idle, "silence {silence} µs");
    }
}

#[test]
fn malformed_and_payload_flags_say_what_the_rst_carried() {
    // (rule, extra TCP flags, payload, flag expected)
    let table: [(&str, u8, &[u8], RstFlag); 3] = [
        (
            "rst_with_payload_gets_with_payload",
            0,
            b"bye",
            RstFlag::WithPayload,
        ),
        ("syn_and_rst_gets_syn_rst", SYN, b"", RstFlag::SynRst),
        ("fin_and_rst_gets_fin_rst", FIN, b"", RstFlag::FinRst),
    ];
    for (rule, extra, payload, flag) in table {
        let mut cap = Cap::default();
        let (c, t) = talked(&mut cap);
        let w = Wire {
            src_mac: c.s.mac,
            ttl: c.s.ttl,
            ip_id: c.s.ip_id,
            payload,
            ..Wire::tcp(
                c.s.ip,
                c.s.port,
                c.c.ip,
                c.c.port,
                RST | ACK | extra,
                c.s.nxt,
                c.s.rcv,
            )
        };
        cap.push(t + 10 * MS, &w);
        let ev = only_rst(&cap.run(None));
        assert!(has(&ev, flag), "{rule}: {:?}", ev.flags.names());
    }
}

// ---- injection evidence ------------------------------------------------------------

#[test]
fn header_fields_off_the_senders_baseline_are_mismatches() {
    // (rule, TTL change, IP ID jump, flag expected)
    let table: [(&str, u8, u16, RstFlag); 2] = [
        (
            "ttl_one_hop_closer_is_ttl_mismatch",
            1,
            0,
            RstFlag::TtlMismatch,
        ),
        (
            "ip_id_far_ahead_is_ipid_mismatch",
            0,
            5_000,
            RstFlag::IpidMismatch,
        ),
    ];
    for (rule, ttl_less, id_jump, flag) in table {
        let mut cap = Cap::default();
        let (mut c, t) = talked(&mut cap);
        c.s.ttl -= ttl_less;
        c.s.ip_id = c.s.ip_id.wrapping_add(id_jump);
        let seq = c.s.nxt;
        rst_from(&mut c, &mut cap, t + 10 * MS, Who::Server, RST | ACK, seq);
        let ev = only_rst(&cap.run(None));
        assert!(has(&ev, flag), "{rule}: {:?}", ev.flags.names());
    }
}

#[test]
fn rst_seq_below_data_the_sender_sent_is_seq_behind() {
    let mut cap = Cap::default();
    let (mut c, t) = talked(&mut cap);
    let seq = c.s.nxt.wrapping_sub(500);
    rst_from(&mut c, &mut cap, t + 10 * MS, Who::Server, RST | ACK, seq);
    let ev = only_rst(&cap.run(None));
    assert!(has(&ev, RstFlag::SeqBehind), "{:?}", ev.flags.names());
}

#[test]
fn one_side_sending_rst_ack_and_bare_rst_is_rst_and_rstack() {
    let mut cap = Cap::default();
    let (mut c, t) = talked(&mut cap);
    let seq = c.s.nxt;
    rst_from(&mut c, &mut cap, t + 10 * MS, Who::Server, RST | ACK, seq);
    rst_from(&mut c, &mut cap, t + 11 * MS, Who::Server, RST, seq);
    let r = rsts(&cap.run(None));
    assert_eq!(r.len(), 2);
    assert!(
        r.iter().any(|e| has(e, RstFlag::RstAndRstack)),
        "{:?}",
        r.iter().map(|e| e.flags.names()).collect::<Vec<_>>()
    );
}

// ---- Zeek's conn_state, from the endpoint states -----------------------------------

fn conn_state(cap: Cap) -> ConnState {
    let out = cap.run(Some(EngineConfig::default()));
    let flows: Vec<&rstwatch_schema::FlowRecord> = out
        .iter()
        .filter_map(|r| match r {
            Record::Flow(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(flows.len(), 1, "{flows:#?}");
    flows[0].conn_state
}

#[test]
fn conn_state_follows_zeeks_table() {
    type Build = fn(&mut Cap);
    let table: [(&str, ConnState, Build); 10] = [
        ("s0_syn_without_answer", ConnState::S0, |cap| {
            Conv::web(40_200, 443).seg(cap, T0, Who::Client, SYN, &[]);
        }),
        ("rej_syn_answered_by_rst", ConnState::Rej, |cap| {
            let mut c = Conv::web(40_201, 23);
            c.seg(cap, T0, Who::Client, SYN, &[]);
            let w = Wire::tcp(c.s.ip, 23, c.c.ip, 40_201, RST | ACK, 0, c.c.nxt);
            cap.push(T0 + 200, &w);
        }),
        ("s1_established_not_closed", ConnState::S1, |cap| {
            talked(cap);
        }),
        ("sf_both_sides_closed_with_fin", ConnState::Sf, |cap| {
            let (mut c, t) = talked(cap);
            c.fin(cap, t + MS, Who::Client);
            c.fin(cap, t + 2 * MS, Who::Server);
            c.ack(cap, t + 3 * MS, Who::Client);
        }),
        ("s2_originator_closed_responder_not", ConnState::S2, |cap| {
            let (mut c, t) = talked(cap);
            c.fin(cap, t + MS, Who::Client);
            c.ack(cap, t + 2 * MS, Who::Server);
        }),
        ("s3_responder_closed_originator_not", ConnState::S3, |cap| {
            let (mut c, t) = talked(cap);
            c.fin(cap, t + MS, Who::Server);
            c.ack(cap, t + 2 * MS, Who::Client);
        }),
        ("rsto_originator_aborted", ConnState::Rsto, |cap| {
            let (mut c, t) = talked(cap);
            c.socket_rst(cap, t + MS, Who::Client);
        }),
        ("rstr_responder_aborted", ConnState::Rstr, |cap| {
            let (mut c, t) = talked(cap);
            c.socket_rst(cap, t + MS, Who::Server);
        }),
        (
            "rstos0_syn_then_rst_from_the_originator",
            ConnState::Rstos0,
            |cap| {
                let mut c = Conv::web(40_208, 443);
                c.seg(cap, T0, Who::Client, SYN, &[]);
                let seq = c.c.nxt;
                rst_from(&mut c, cap, T0 + MS, Who::Client, RST, seq);
            },
        ),
        ("sh_syn_then_fin_without_answer", ConnState::Sh, |cap| {
            let mut c = Conv::web(40_209, 443);
            c.seg(cap, T0, Who::Client, SYN, &[]);
            c.fin(cap, T0 + MS, Who::Client);
        }),
    ];
    let mut wrong = Vec::new();
    for (rule, want, build) in table {
        let mut cap = Cap::default();
        build(&mut cap);
        let got = conn_state(cap);
        if got != want {
            wrong.push(format!("{rule}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
