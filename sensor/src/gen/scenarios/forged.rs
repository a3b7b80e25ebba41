//! `injection` and `blind-inwindow`: forged RSTs (cause `injection`), and the genuine
//! resets they provoke.

use rstwatch_schema::{AnomalyKind, Cause, Dir, RstClass, RstFlag};

use super::{kernel_rst, MS, S};
use crate::gen::packet::{ACK, RST};
use crate::gen::rng::Rng;
use crate::gen::world::{
    bgp_open, local4, local6, v4, v6, Host, Os, Pkt, Verdict, Who, World, BGP_KEEPALIVE,
};

use RstFlag::{
    DataAfter, IpidMismatch, MultiSeq, SeqExact, SeqInWindow, SeqOutOfWindow, TtlMismatch,
};

/// TTL of the injector's packets at the sensor, and of the clients they impersonate.
const INJECTOR_TTL: u8 = 243;
const CLIENT_TTL: u8 = 52;

/// An IP ID far from `near` (at least 8000 away either way).
fn far_ipid(rng: &mut Rng, near: u16) -> u16 {
    near.wrapping_add(8000 + rng.below(49_536) as u16)
}

/// `injection`: three groups of forged RSTs, each forged RST with at least two
/// independent signals (see the module docs).
pub(crate) fn injection(w: &mut World, t0: i64) {
    let mut clients = Clients(0);
    let t = t0 + 100 * MS;
    let t = injection_a(w, &mut clients, t);
    let t = injection_b(w, &mut clients, t);
    injection_c(w, &mut clients, t);
    w.expect_anomaly(AnomalyKind::Injection);
}

/// The server the injection scenario's clients talk to.
fn servers() -> (Host, Host) {
    (Host::local(local4(30)), Host::local(local6(30)))
}

/// The impersonated clients, numbered in order of appearance.
struct Clients(u8);

impl Clients {
    fn next(&mut self, ipv6: bool) -> Host {
        self.0 += 1;
        let ip = if ipv6 {
            v6([0x2001, 0xdb8, 0xe, 0, 0, 0, 0, 0x10 + u16::from(self.0)])
        } else {
            v4(192, 0, 2, 10 + self.0)
        };
        Host::remote(ip, Os::Linux, CLIENT_TTL)
    }
}

/// Group A of `injection`; returns when the next group starts.
fn injection_a(w: &mut World, clients: &mut Clients, mut t: i64) -> i64 {
    let (server4, server6) = servers();
    // Group A: TTL far off + data after. An on-path injector resets the server side with
    // the exact seq and copies the client's IP ID sequence; the real client, knowing
    // nothing of it, sends its next request; the reset server answers that with a
    // stateless RST (legitimate, not suspect).
    for i in 0..4 {
        let ipv6 = i % 2 == 1;
        let mut c = w.conn(
            clients.next(ipv6),
            if ipv6 { server6 } else { server4 },
            443,
        );
        let tt = w.handshake(&mut c, t);
        let (req, resp) = (w.rng.urange(300, 600), w.rng.urange(2000, 9000));
        let think = w.rng.range(MS, 5 * MS);
        let tt = w.exchange(&mut c, tt + 200, req, resp, think);
        let tf = tt + w.rng.range(5 * MS, 50 * MS);
        let seq = c.o.nxt;
        let forged = Pkt {
            seq: Some(seq),
            ack: Some(c.o.rcv),
            ttl: Some(INJECTOR_TTL),
            ipid: Some(c.o.ipid),
            window: Some(0),
            bare: true,
            ..Pkt::new(RST | ACK)
        };
        let flags = [SeqExact, TtlMismatch, DataAfter];
        w.send_rst(
            &mut c,
            Who::O,
            tf,
            forged,
            Verdict::forged(Dir::Orig, &flags),
        );
        let req_len = w.rng.urange(300, 600);
        let req = w.message(443, true, req_len);
        let td = tf + w.rng.range(20 * MS, 80 * MS);
        w.send(&mut c, Who::O, td, Pkt::data(&req));
        let tr = td + w.react(&c, Who::R);
        // By the cause rules: the server resets while its peer's payload is the
        // flow's latest packet, no FIN: `unread_data_close`.
        let p = kernel_rst(&c, Who::R, RST, c.r.nxt, 0);
        let v = Verdict::genuine(
            RstClass::Abort,
            Dir::Resp,
            &[SeqExact],
            Cause::UnreadDataClose,
        );
        w.send_rst(&mut c, Who::R, tr, p, v);
        t += w.rng.range(500 * MS, 2 * S);
    }

    t
}

/// Group B of `injection`.
fn injection_b(w: &mut World, clients: &mut Clients, mut t: i64) -> i64 {
    let server4 = servers().0;
    // Group B: a burst of three RST/ACKs with increasing seq (seq, seq + W/4, seq + W/2,
    // W the server's receive window) right after a request with a filtered keyword,
    // TTL far off and IP IDs from the injector's own counter. Both ends are reset (the
    // client by a forged RST the sensor does not see); nothing follows.
    for _ in 0..2 {
        let mut c = w.conn(clients.next(false), server4, 80);
        let tt = w.handshake(&mut c, t);
        let (req, resp) = (w.rng.urange(300, 600), w.rng.urange(2000, 9000));
        let think = w.rng.range(MS, 5 * MS);
        let tt = w.exchange(&mut c, tt + 200, req, resp, think);
        let tq = tt + w.rng.range(100 * MS, S);
        let req_len = w.rng.urange(300, 600);
        let req = w.message(80, true, req_len);
        w.send(&mut c, Who::O, tq, Pkt::data(&req));
        let ta = tq + w.react(&c, Who::R);
        w.send(&mut c, Who::R, ta, Pkt::new(ACK));
        let x = c.o.nxt;
        let win = c.rcv_wnd(Who::R);
        let mut tb = tq + w.rng.range(300, 500);
        let mut id = far_ipid(&mut w.rng, c.o.ipid);
        let win_field = w.rng.range(1000, 16000) as u16;
        for k in 0..3u32 {
            let seq = x.wrapping_add(k * (win / 4));
            let forged = Pkt {
                seq: Some(seq),
                ack: Some(c.o.rcv),
                ttl: Some(INJECTOR_TTL),
                ipid: Some(id),
                window: Some(win_field),
                bare: true,
                ..Pkt::new(RST | ACK)
            };
            let flags: &[RstFlag] = if k == 0 {
                &[SeqExact, TtlMismatch, IpidMismatch]
            } else {
                &[SeqInWindow, MultiSeq, TtlMismatch, IpidMismatch]
            };
            w.send_rst(
                &mut c,
                Who::O,
                tb,
                forged,
                Verdict::forged(Dir::Orig, flags),
            );
            id = id.wrapping_add(1 + w.rng.below(3) as u16);
            tb += w.rng.range(10, 40);
        }
        t += w.rng.range(500 * MS, 2 * S);
    }

    t
}

/// Group C of `injection`.
fn injection_c(w: &mut World, clients: &mut Clients, mut t: i64) -> i64 {
    let server4 = servers().0;
    // Group C: TTL copied, IP ID far off, seq inside the window but not exact (three
    // segments ahead): the server answers with a challenge ACK (RFC 5961), the client
    // carries on with its upload, the flow ends with FINs.
    for _ in 0..2 {
        let mut c = w.conn(clients.next(false), server4, 443);
        let tt = w.handshake(&mut c, t);
        let up_len = w.rng.urange(20_000, 60_000);
        let upload = w.message(443, true, up_len);
        let tt = w.transfer(&mut c, Who::O, tt + 200, &upload);
        let tf = tt + w.rng.range(2 * MS, 20 * MS);
        let seq = c.o.nxt.wrapping_add(3 * c.seg_size(Who::O) as u32);
        debug_assert!(3 * c.seg_size(Who::O) < c.rcv_wnd(Who::R) as usize);
        let forged = Pkt {
            seq: Some(seq),
            ack: Some(c.o.rcv),
            ipid: Some(far_ipid(&mut w.rng, c.o.ipid)),
            window: Some(0),
            bare: true,
            ..Pkt::new(RST | ACK)
        };
        let flags = [SeqInWindow, IpidMismatch, DataAfter];
        w.send_rst(
            &mut c,
            Who::O,
            tf,
            forged,
            Verdict::forged(Dir::Orig, &flags),
        );
        let tc = tf + w.react(&c, Who::R);
        w.send(&mut c, Who::R, tc, Pkt::new(ACK));
        let more_len = w.rng.urange(3_000, 9_000);
        let more = w.message(443, true, more_len);
        let td = tf + w.rng.range(20 * MS, 60 * MS);
        let tt = w.transfer(&mut c, Who::O, td, &more);
        let resp_len = w.rng.urange(200, 600);
        let resp = w.message(443, false, resp_len);
        let tt = w.transfer(&mut c, Who::R, tt + 2 * MS, &resp);
        let gap = w.rng.range(MS, 100 * MS);
        w.close(&mut c, Who::O, tt + gap);
        t += w.rng.range(500 * MS, 2 * S);
    }
    t
}

/// `blind-inwindow`: an off-path attacker walks the receive window of two BGP sessions
/// with bare RSTs, one window apart; one lands inside the window (challenge ACK), the
/// rest outside. The real peer's next keepalive follows 25 ms after the walk.
pub(crate) fn blind_inwindow(w: &mut World, t0: i64) {
    let sessions = [
        // (local router, remote peer, peer initiates, attacker TTL)
        (
            Host::local(local4(1)),
            Host::remote(v4(192, 0, 2, 7), Os::Linux, 62),
            true,
            115u8,
        ),
        (
            Host::local(local6(1)),
            Host::remote(v6([0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 7]), Os::Linux, 60),
            false,
            113u8,
        ),
    ];
    let mut t = t0 + 100 * MS;
    for (idx, &(router, peer, peer_initiates, attacker_ttl)) in sessions.iter().enumerate() {
        let (mut c, p) = if peer_initiates {
            (w.conn(peer, router, 179), Who::O)
        } else {
            (w.conn(router, peer, 179), Who::R)
        };
        let v = p.peer();
        let tt = w.handshake(&mut c, t);
        // OPENs, then keepalives; each acknowledged.
        let open_o = bgp_open(64_500 + idx as u16, [192, 0, 2, 7]);
        let tt = w.transfer(&mut c, Who::O, tt + 300, &open_o);
        let open_r = bgp_open(64_510 + idx as u16, [203, 0, 113, 1]);
        let tt = w.transfer(&mut c, Who::R, tt + 300, &open_r);
        let tt = w.transfer(&mut c, Who::O, tt + 300, &BGP_KEEPALIVE);
        let tt = w.transfer(&mut c, Who::R, tt + 300, &BGP_KEEPALIVE);
        let tt = w.transfer(&mut c, p, tt + 10 * S, &BGP_KEEPALIVE);
        let gap = w.rng.range(MS, S);
        let tt = w.transfer(&mut c, v, tt + gap, &BGP_KEEPALIVE);
        // The walk.
        let rcv_nxt = c.side(p).nxt;
        let win = c.rcv_wnd(v);
        let n = 40u32;
        let m = 15 + w.rng.below(10) as u32;
        let d = win / 4 + w.rng.below(u64::from(win / 2)) as u32;
        let base = rcv_nxt.wrapping_add(d).wrapping_sub(m * win);
        let mut id = w.rng.u16();
        let mut ta = tt + w.rng.range(2 * S, 4 * S);
        for k in 0..n {
            let seq = base.wrapping_add(k * win);
            let forged = Pkt {
                seq: Some(seq),
                ttl: Some(attacker_ttl),
                ipid: Some(id),
                window: Some(0),
                bare: true,
                ..Pkt::new(RST)
            };
            let off = seq.wrapping_sub(rcv_nxt);
            let validity = if off < win {
                SeqInWindow
            } else {
                SeqOutOfWindow
            };
            debug_assert_eq!(k == m, validity == SeqInWindow);
            debug_assert!(off != 0);
            let flags = [validity, TtlMismatch, DataAfter];
            w.send_rst(&mut c, p, ta, forged, Verdict::forged(p.dir(), &flags));
            if k == m {
                let tc = ta + w.react(&c, v);
                w.send(&mut c, v, tc, Pkt::new(ACK));
            }
            id = id.wrapping_add(1);
            ta += 1_200 + w.rng.range(0, 600);
        }
        let tk = ta + 25 * MS;
        let tt = w.transfer(&mut c, p, tk, &BGP_KEEPALIVE);
        let gap = w.rng.range(MS, 2 * S);
        w.transfer(&mut c, v, tt + gap, &BGP_KEEPALIVE);
        t = tt + 5 * S;
    }
    w.expect_anomaly(AnomalyKind::Injection);
}
