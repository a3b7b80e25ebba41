//! The scenarios. Each writes its packets and the label of every RST it sends into the
//! [`World`], starting at `t0`. See the module documentation of `gen` for what each
//! label means and why.

use std::collections::HashSet;

use rstwatch_schema::{AnomalyKind, Dir, RstClass, RstFlag};

use super::packet::{ACK, FIN, RST, SYN};
use super::rng::Rng;
use super::world::{
    bgp_open, local4, local6, v4, v6, Conn, Host, Os, Pkt, Who, World, BGP_KEEPALIVE,
};

const MS: i64 = 1_000;
const S: i64 = 1_000_000;

use RstFlag::{
    AfterFin, DataAfter, Idle, IpidMismatch, MultiSeq, SeqExact, SeqInWindow, SeqOutOfWindow,
    TtlMismatch,
};

/// A local server running Windows (TTL 128).
fn local_windows(ip: std::net::IpAddr) -> Host {
    Host {
        os: Os::Windows,
        ttl: 128,
        ..Host::local(ip)
    }
}

/// A client of the given family.
fn client(w: &mut World, ipv6: bool) -> Host {
    w.client(if ipv6 { 1.0 } else { 0.0 })
}

/// A stateless reset from `who`'s kernel: Linux sends IP ID 0; Windows keeps counting.
fn kernel_rst<'a>(c: &Conn, who: Who, flags: u8, seq: u32, ack: u32) -> Pkt<'a> {
    let mut p = Pkt::stateless_rst(flags, seq, ack);
    if c.side(who).h.os == Os::Windows {
        p.ipid = None;
    }
    p
}

/// `refused`: SYNs to closed ports, answered RST/ACK seq 0, ack ISN+1.
pub(crate) fn refused(w: &mut World, t0: i64) {
    let closed = [8443u16, 3306, 5432, 6379, 9200, 27017, 11211, 5601];
    let mut t = t0 + 50 * MS;
    for i in 0..24u8 {
        let ipv6 = i % 4 == 3;
        let cl = client(w, ipv6);
        let server = if ipv6 {
            Host::local(local6(20 + u16::from(i % 10)))
        } else if i % 7 == 5 {
            local_windows(local4(60 + i % 4))
        } else {
            Host::local(local4(20 + i % 10))
        };
        let port = *w.rng.pick(&closed);
        let mut c = w.conn(cl, server, port);
        w.send(&mut c, Who::O, t, Pkt::new(SYN));
        let tr = t + w.react(&c, Who::R);
        let ack = c.o.isn.wrapping_add(1);
        let p = kernel_rst(&c, Who::R, RST | ACK, 0, ack);
        w.send(&mut c, Who::R, tr, p);
        w.label(tr, &c, Who::R, 0, RstClass::Reject, Dir::Resp, &[], false);
        t += w.rng.range(200 * MS, 3 * S);
    }
}

/// `abort`: established flows reset mid-transfer, half by the client (download
/// cancelled), half by the server (abortive close), all data acknowledged first so the
/// RST's seq is exactly the receiver's next expected.
pub(crate) fn abort(w: &mut World, t0: i64) {
    let mut t = t0 + 100 * MS;
    for i in 0..12u8 {
        let ipv6 = i % 3 == 2;
        let cl = client(w, ipv6);
        let server = if ipv6 {
            Host::local(local6(20 + u16::from(i)))
        } else {
            Host::local(local4(20 + i))
        };
        let port = if i % 2 == 0 { 443 } else { 80 };
        let mut c = w.conn(cl, server, port);
        let tt = w.handshake(&mut c, t);
        let req = w.rng.urange(250, 800);
        let resp = w.rng.urange(800, 6000);
        let think = w.rng.range(MS, 10 * MS);
        let tt = w.exchange(&mut c, tt + 150, req, resp, think);
        // A second request whose (long) response is cut short.
        let gap = w.rng.range(20 * MS, 2 * S);
        let req_len = w.rng.urange(250, 800);
        let req = w.message(port, true, req_len);
        let tt = w.transfer(&mut c, Who::O, tt + gap, &req);
        let total = w.rng.urange(200_000, 2_000_000);
        let part = w.rng.urange(8_000, 40_000);
        let resp = w.message(port, false, total);
        let think = w.rng.range(MS, 10 * MS);
        let tt = w.transfer(&mut c, Who::R, tt + think, &resp[..part]);
        // Everything both sides sent is acknowledged now.
        let who = if i % 2 == 0 { Who::O } else { Who::R };
        let tr = tt + w.rng.range(5 * MS, 300 * MS);
        let seq = w.send(&mut c, who, tr, Pkt::new(RST | ACK));
        w.label(
            tr,
            &c,
            who,
            seq,
            RstClass::Abort,
            who.dir(),
            &[SeqExact],
            false,
        );
        t += w.rng.range(300 * MS, 2 * S);
    }
}

/// `idle-timeout`: a flow silent for ~400 s, then reset by the stateful firewall in
/// front of the server (same hop count, the server's IP ID sequence), as the first
/// packet after the silence.
pub(crate) fn idle_timeout(w: &mut World, t0: i64) {
    for i in 0..4u8 {
        let ipv6 = i == 3;
        let cl = client(w, ipv6);
        let server = if ipv6 {
            Host::local(local6(40 + u16::from(i)))
        } else {
            Host::local(local4(40 + i))
        };
        let port = if i % 2 == 0 { 443 } else { 8443 };
        let mut c = w.conn(cl, server, port);
        let start = t0 + i64::from(i) * 2 * S + w.rng.range(0, S);
        let tt = w.handshake(&mut c, start);
        let (req, resp) = (w.rng.urange(200, 700), w.rng.urange(300, 5000));
        let think = w.rng.range(MS, 5 * MS);
        let tt = w.exchange(&mut c, tt + 200, req, resp, think);
        let tr = tt + w.rng.range(380 * S, 440 * S);
        let p = Pkt {
            bare: true,
            window: Some(0),
            ..Pkt::new(RST | ACK)
        };
        let seq = w.send(&mut c, Who::R, tr, p);
        w.label(
            tr,
            &c,
            Who::R,
            seq,
            RstClass::Abort,
            Dir::Resp,
            &[Idle, SeqExact],
            false,
        );
    }
}

/// `after-fin`: one side closes (FIN), the other keeps sending, the closed side's
/// kernel answers the data with an RST whose seq is the data's ACK number.
pub(crate) fn after_fin(w: &mut World, t0: i64) {
    let mut t = t0 + 100 * MS;
    for i in 0..6u8 {
        let ipv6 = i == 5;
        let cl = client(w, ipv6);
        let server = if ipv6 {
            Host::local(local6(20 + u16::from(i)))
        } else {
            Host::local(local4(20 + i))
        };
        let mut c = w.conn(cl, server, 80);
        let tt = w.handshake(&mut c, t);
        let (req, resp) = (w.rng.urange(200, 700), w.rng.urange(300, 9000));
        let think = w.rng.range(MS, 5 * MS);
        let tt = w.exchange(&mut c, tt + 200, req, resp, think);
        if i % 2 == 0 {
            // The client gives up on a slow second request and closes; the server's
            // response comes after the client's FIN.
            let req_len = w.rng.urange(200, 700);
            let req = w.message(80, true, req_len);
            let gap = w.rng.range(MS, S);
            let tt = w.transfer(&mut c, Who::O, tt + gap, &req);
            let tf = tt + w.rng.range(50 * MS, 500 * MS);
            w.send(&mut c, Who::O, tf, Pkt::new(FIN | ACK));
            let ta = tf + w.react(&c, Who::R);
            w.send(&mut c, Who::R, ta, Pkt::new(ACK));
            let resp_len = w.rng.urange(300, 1400);
            let resp = w.message(80, false, resp_len);
            let td = ta + w.rng.range(20 * MS, 300 * MS);
            w.send(&mut c, Who::R, td, Pkt::data(&resp));
            let tr = td + w.react(&c, Who::O);
            let seq = c.o.nxt;
            let p = kernel_rst(&c, Who::O, RST, seq, 0);
            w.send(&mut c, Who::O, tr, p);
            w.label(
                tr,
                &c,
                Who::O,
                seq,
                RstClass::Abort,
                Dir::Orig,
                &[AfterFin, SeqExact],
                false,
            );
        } else {
            // The server's keep-alive timeout closes the connection while the client
            // sends its next request (the classic keep-alive race).
            let tf = tt + w.rng.range(S, 5 * S);
            w.send(&mut c, Who::R, tf, Pkt::new(FIN | ACK));
            let ta = tf + w.react(&c, Who::O);
            w.send(&mut c, Who::O, ta, Pkt::new(ACK));
            let req_len = w.rng.urange(200, 700);
            let req = w.message(80, true, req_len);
            let td = ta + w.rng.range(50, 30 * MS);
            w.send(&mut c, Who::O, td, Pkt::data(&req));
            let tr = td + w.react(&c, Who::R);
            let seq = c.r.nxt;
            let p = kernel_rst(&c, Who::R, RST, seq, 0);
            w.send(&mut c, Who::R, tr, p);
            w.label(
                tr,
                &c,
                Who::R,
                seq,
                RstClass::Abort,
                Dir::Resp,
                &[AfterFin, SeqExact],
                false,
            );
        }
        t += w.rng.range(300 * MS, 2 * S);
    }
}

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
    let server4 = Host::local(local4(30));
    let server6 = Host::local(local6(30));
    let mut t = t0 + 100 * MS;
    let mut next_client = 0u8;
    let mut new_client = |ipv6: bool| {
        next_client += 1;
        let ip = if ipv6 {
            v6([
                0x2001,
                0xdb8,
                0xe,
                0,
                0,
                0,
                0,
                0x10 + u16::from(next_client),
            ])
        } else {
            v4(192, 0, 2, 10 + next_client)
        };
        Host::remote(ip, Os::Linux, CLIENT_TTL)
    };

    // Group A: TTL far off + data after. An on-path injector resets the server side with
    // the exact seq and copies the client's IP ID sequence; the real client, knowing
    // nothing of it, sends its next request; the reset server answers that with a
    // stateless RST (legitimate, not suspect).
    for i in 0..4 {
        let ipv6 = i % 2 == 1;
        let mut c = w.conn(new_client(ipv6), if ipv6 { server6 } else { server4 }, 443);
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
        w.send(&mut c, Who::O, tf, forged);
        w.label(
            tf,
            &c,
            Who::O,
            seq,
            RstClass::Abort,
            Dir::Orig,
            &[SeqExact, TtlMismatch, DataAfter],
            true,
        );
        let req_len = w.rng.urange(300, 600);
        let req = w.message(443, true, req_len);
        let td = tf + w.rng.range(20 * MS, 80 * MS);
        w.send(&mut c, Who::O, td, Pkt::data(&req));
        let tr = td + w.react(&c, Who::R);
        let rseq = c.r.nxt;
        let p = kernel_rst(&c, Who::R, RST, rseq, 0);
        w.send(&mut c, Who::R, tr, p);
        w.label(
            tr,
            &c,
            Who::R,
            rseq,
            RstClass::Abort,
            Dir::Resp,
            &[SeqExact],
            false,
        );
        t += w.rng.range(500 * MS, 2 * S);
    }

    // Group B: a burst of three RST/ACKs with increasing seq (seq, seq + W/4, seq + W/2,
    // W the server's receive window) right after a request with a filtered keyword,
    // TTL far off and IP IDs from the injector's own counter. Both ends are reset (the
    // client by a forged RST the sensor does not see); nothing follows.
    for _ in 0..2 {
        let mut c = w.conn(new_client(false), server4, 80);
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
            w.send(&mut c, Who::O, tb, forged);
            let flags: &[RstFlag] = if k == 0 {
                &[SeqExact, TtlMismatch, IpidMismatch]
            } else {
                &[SeqInWindow, MultiSeq, TtlMismatch, IpidMismatch]
            };
            w.label(tb, &c, Who::O, seq, RstClass::Abort, Dir::Orig, flags, true);
            id = id.wrapping_add(1 + w.rng.below(3) as u16);
            tb += w.rng.range(10, 40);
        }
        t += w.rng.range(500 * MS, 2 * S);
    }

    // Group C: TTL copied, IP ID far off, seq inside the window but not exact (three
    // segments ahead): the server answers with a challenge ACK (RFC 5961), the client
    // carries on with its upload, the flow ends with FINs.
    for _ in 0..2 {
        let mut c = w.conn(new_client(false), server4, 443);
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
        w.send(&mut c, Who::O, tf, forged);
        w.label(
            tf,
            &c,
            Who::O,
            seq,
            RstClass::Abort,
            Dir::Orig,
            &[SeqInWindow, IpidMismatch, DataAfter],
            true,
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
    w.expect_anomaly(AnomalyKind::Injection);
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
            w.send(&mut c, p, ta, forged);
            let off = seq.wrapping_sub(rcv_nxt);
            let validity = if off < win {
                SeqInWindow
            } else {
                SeqOutOfWindow
            };
            debug_assert_eq!(k == m, validity == SeqInWindow);
            debug_assert!(off != 0);
            w.label(
                ta,
                &c,
                p,
                seq,
                RstClass::Abort,
                p.dir(),
                &[validity, TtlMismatch, DataAfter],
                true,
            );
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

/// `storm`: `n` flows to the VIP 203.0.113.10:443 all reset by the load balancer within
/// 200 ms; a fifth of them are long-lived connections from 20 NAT addresses that sent
/// nothing during the capture (no state: unsolicited).
pub(crate) fn storm(w: &mut World, t0: i64, n: usize) {
    let vip = Host::local(local4(10));
    let t_storm = t0 + 90 * S;
    // 20 NAT addresses have ~28k ephemeral ports each: stay well below reusing a 4-tuple.
    let n_mid = (n / 5).min(400_000);
    let mut conns: Vec<(Conn, bool)> = Vec::with_capacity(n);
    for _ in 0..n - n_mid {
        let cl = client(w, false);
        let mut c = w.conn(cl, vip, 443);
        let start = t0 + w.rng.range(0, 60 * S);
        let tt = w.handshake(&mut c, start);
        let (req, resp) = (w.rng.urange(200, 900), w.rng.urange(300, 6000));
        let think = w.rng.range(MS, 5 * MS);
        let tt = w.exchange(&mut c, tt + 200, req, resp, think);
        if w.rng.chance(0.2) {
            let (req, resp) = (w.rng.urange(200, 900), w.rng.urange(300, 6000));
            let gap = w.rng.range(S, 20 * S);
            w.exchange(&mut c, tt + gap, req, resp, think);
        }
        conns.push((c, false));
    }
    for i in 0..n_mid {
        let ip = v4(192, 0, 2, 200 + (i % 20) as u8);
        let cl = w.remote_host(ip);
        let mut c = w.conn(cl, vip, 443);
        c.o.nxt = w.rng.u32();
        c.r.nxt = w.rng.u32();
        c.o.rcv = c.r.nxt;
        c.r.rcv = c.o.nxt;
        conns.push((c, true));
    }
    w.rng.shuffle(&mut conns);
    let mut offsets: Vec<i64> = (0..conns.len())
        .map(|_| w.rng.range(0, 200 * MS - 1))
        .collect();
    offsets.sort_unstable();
    let mut reconnect = Vec::new();
    for ((c, mid), off) in conns.iter_mut().zip(offsets) {
        let tr = t_storm + off;
        let p = Pkt {
            bare: true,
            window: Some(0),
            ..Pkt::new(RST | ACK)
        };
        let seq = w.send(c, Who::R, tr, p);
        if *mid {
            w.label(
                tr,
                c,
                Who::R,
                seq,
                RstClass::Unsolicited,
                Dir::Unknown,
                &[],
                false,
            );
        } else {
            w.label(
                tr,
                c,
                Who::R,
                seq,
                RstClass::Abort,
                Dir::Resp,
                &[SeqExact],
                false,
            );
            if w.rng.chance(0.3) {
                reconnect.push(c.o.h);
            }
        }
    }
    // Clients reconnect to the standby 1-3 s later: new, healthy flows.
    for cl in reconnect {
        let mut c = w.conn(cl, vip, 443);
        let start = t_storm + w.rng.range(S, 3 * S);
        let tt = w.handshake(&mut c, start);
        let (req, resp) = (w.rng.urange(200, 900), w.rng.urange(300, 6000));
        let think = w.rng.range(MS, 5 * MS);
        w.exchange(&mut c, tt + 200, req, resp, think);
    }
    w.expect_anomaly(AnomalyKind::RstStorm);
}

/// `scan`: an nmap-style SYN scan from 192.0.2.66 (one source port): port 23 on 36
/// hosts (32 closed, 4 filtered), then 24 ports on 203.0.113.25 (22, 80, 443 open).
pub(crate) fn scan(w: &mut World, t0: i64) {
    let scanner = Host::remote(v4(192, 0, 2, 66), Os::Scanner, 49);
    let sport = 40_000 + w.rng.below(20_000) as u16;
    let mut t = t0 + 10 * MS;
    for n in 100..=135u8 {
        let target = Host::local(local4(n));
        let mut c = w.conn_ports(scanner, sport, target, 23);
        w.send(&mut c, Who::O, t, Pkt::new(SYN));
        if n % 9 == 4 {
            // Filtered: no answer; nmap probes once more.
            let again = Pkt {
                seq: Some(c.o.isn),
                ..Pkt::new(SYN)
            };
            let jitter = w.rng.range(0, 100 * MS);
            w.send(&mut c, Who::O, t + S + jitter, again);
        } else {
            let tr = t + w.react(&c, Who::R);
            let p = kernel_rst(&c, Who::R, RST | ACK, 0, c.o.isn.wrapping_add(1));
            w.send(&mut c, Who::R, tr, p);
            w.label(tr, &c, Who::R, 0, RstClass::Reject, Dir::Resp, &[], false);
        }
        t += w.rng.range(300, 2 * MS);
    }
    let host = Host::local(local4(25));
    let mut ports = [
        21u16, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 199, 443, 445, 554, 587, 993, 995,
        1025, 1723, 3306, 3389, 5900, 8080,
    ];
    w.rng.shuffle(&mut ports);
    t += 500 * MS;
    for port in ports {
        let mut c = w.conn_ports(scanner, sport, host, port);
        w.send(&mut c, Who::O, t, Pkt::new(SYN));
        let tr = t + w.react(&c, Who::R);
        if matches!(port, 22 | 80 | 443) {
            w.send(&mut c, Who::R, tr, Pkt::new(SYN | ACK));
            // The scanner's kernel knows no such connection: RST, seq = the SYN-ACK's ack.
            let ts = tr + w.react(&c, Who::O);
            let seq = c.o.isn.wrapping_add(1);
            w.send(&mut c, Who::O, ts, Pkt::stateless_rst(RST, seq, 0));
            w.label(
                ts,
                &c,
                Who::O,
                seq,
                RstClass::HandshakeAbort,
                Dir::Orig,
                &[],
                false,
            );
        } else {
            let p = kernel_rst(&c, Who::R, RST | ACK, 0, c.o.isn.wrapping_add(1));
            w.send(&mut c, Who::R, tr, p);
            w.label(tr, &c, Who::R, 0, RstClass::Reject, Dir::Resp, &[], false);
        }
        t += w.rng.range(300, 2 * MS);
    }
    w.expect_anomaly(AnomalyKind::Scan);
}

/// `backscatter`: RST/ACKs from 192.0.2.99 (the victim of a SYN flood with spoofed
/// sources in our address space) to 40 local addresses, over a minute.
pub(crate) fn backscatter(w: &mut World, t0: i64) {
    let victim = Host::remote(v4(192, 0, 2, 99), Os::Linux, 55);
    let mut events: Vec<(i64, u8)> = Vec::new();
    for n in 100..140u8 {
        for _ in 0..w.rng.urange(2, 5) {
            events.push((t0 + w.rng.range(0, 60 * S), n));
        }
    }
    events.sort_unstable();
    let mut used = HashSet::new();
    for (t, n) in events {
        let (vport, lport) = loop {
            let vport = 1 + w.rng.below(65_535) as u16;
            let lport = 1024 + w.rng.below(64_511) as u16;
            if used.insert((n, vport, lport)) {
                break (vport, lport);
            }
        };
        let mut c = w.conn_ports(victim, vport, Host::local(local4(n)), lport);
        let ack = w.rng.u32();
        w.send(&mut c, Who::O, t, Pkt::stateless_rst(RST | ACK, 0, ack));
        w.label(
            t,
            &c,
            Who::O,
            0,
            RstClass::Unsolicited,
            Dir::Unknown,
            &[],
            false,
        );
    }
    w.expect_anomaly(AnomalyKind::Backscatter);
}

/// Normal traffic: HTTP(S) flows with handshake, one to three request/response
/// exchanges and an orderly FIN close. No RSTs.
pub(crate) fn background(w: &mut World, t0: i64, n: usize, span: i64) {
    for _ in 0..n {
        let start = t0 + w.rng.range(0, span);
        let cl = w.client(0.2);
        let k = w.rng.below(30) as u16;
        let server = if cl.ip.is_ipv6() {
            Host::local(local6(20 + k))
        } else {
            Host::local(local4(20 + k as u8))
        };
        let port = if w.rng.chance(0.7) { 443 } else { 80 };
        let mut c = w.conn(cl, server, port);
        let mut tt = w.handshake(&mut c, start);
        let exchanges = 1 + usize::from(w.rng.chance(0.3)) + usize::from(w.rng.chance(0.1));
        for e in 0..exchanges {
            let gap = if e == 0 {
                w.rng.range(100, 2 * MS)
            } else {
                w.rng.range(50 * MS, 5 * S)
            };
            let req = w.rng.urange(200, 900);
            let resp = match w.rng.below(10) {
                0..=5 => w.rng.urange(200, 1400),
                6..=8 => w.rng.urange(1500, 8000),
                _ => w.rng.urange(8000, 40_000),
            };
            let think = w.rng.range(300, 20 * MS);
            tt = w.exchange(&mut c, tt + gap, req, resp, think);
        }
        let first = if w.rng.chance(0.6) { Who::O } else { Who::R };
        let tc = tt + w.rng.range(MS, 3 * S);
        w.close(&mut c, first, tc);
    }
}

/// `mixed`: everything above inside `n` background flows over ten minutes.
pub(crate) fn mixed(w: &mut World, seed: u64, t0: i64, n: usize) {
    let stream = |k: u64| Rng::derive(seed, 1000 + k);
    // The labelled parts first, so they come out the same whatever the background's size
    // (the background then continues each client's ephemeral port sequence).
    w.with_rng(stream(1), |w| idle_timeout(w, t0 + 5 * S));
    w.with_rng(stream(2), |w| refused(w, t0 + 20 * S));
    w.with_rng(stream(3), |w| abort(w, t0 + 40 * S));
    w.with_rng(stream(4), |w| after_fin(w, t0 + 60 * S));
    w.with_rng(stream(5), |w| injection(w, t0 + 80 * S));
    w.with_rng(stream(6), |w| blind_inwindow(w, t0 + 100 * S));
    w.with_rng(stream(7), |w| storm(w, t0 + 150 * S, 2000));
    w.with_rng(stream(8), |w| scan(w, t0 + 300 * S));
    w.with_rng(stream(9), |w| backscatter(w, t0 + 330 * S));
    w.with_rng(stream(0), |w| background(w, t0, n, 590 * S));
}
