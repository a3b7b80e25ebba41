//! Resets around an endpoint's close: `keepalive-race`, `write-after-close`,
//! `unread-close`, `app-abort`.

use rstwatch_schema::{Cause, Dir, RstClass, RstFlag};

use super::{client, kernel_rst, local6_like4, MS, S};
use crate::gen::packet::{ACK, FIN, RST};
use crate::gen::world::{local4, Conn, Host, Pkt, Verdict, Who, World};

use RstFlag::{AfterFin, SeqExact};

/// A client (a third IPv6) connected to local server `n` on `port`, handshake done and
/// one request/response exchanged, everything acknowledged; returns the connection and
/// the time of the last ACK.
fn served(w: &mut World, i: usize, n: u8, port: u16, t: i64) -> (Conn, i64) {
    let ipv6 = i % 3 == 2;
    let cl = client(w, ipv6);
    let server = if ipv6 {
        Host::local(local6_like4(n))
    } else {
        Host::local(local4(n))
    };
    let mut c = w.conn(cl, server, port);
    let tt = w.handshake(&mut c, t);
    let (req, resp) = (w.rng.urange(200, 700), w.rng.urange(300, 9000));
    let think = w.rng.range(MS, 5 * MS);
    let tt = w.exchange(&mut c, tt + 200, req, resp, think);
    (c, tt)
}

/// `keepalive-race`: Apache's `KeepAliveTimeout 5` closes idle HTTP connections with a
/// FIN just as the clients send their next request. The request left the client before
/// the FIN reached it, so it arrives within one round trip of the FIN and does not
/// acknowledge it; the server (FIN-WAIT-1, receive side shut) answers with a bare RST
/// whose seq is the request's ack, the FIN's own seq (Linux accepts it in CLOSE-WAIT:
/// `tcp_reset_check`). The client's ACK of the FIN, sent when the FIN reached it a
/// moment later, meets no socket and draws a second bare RST (seq FIN+1).
pub(crate) fn keepalive_race(w: &mut World, t0: i64) {
    let v = Verdict::genuine(
        RstClass::Abort,
        Dir::Resp,
        &[AfterFin, SeqExact],
        Cause::KeepaliveRace,
    );
    let mut t = t0 + 100 * MS;
    for i in 0..6 {
        let (mut c, tt) = served(w, i, 194, 80, t);
        let fin_seq = c.r.nxt;
        let tf = tt + 5 * S + w.rng.range(MS, 40 * MS);
        w.send(&mut c, Who::R, tf, Pkt::new(FIN | ACK));
        let len = w.rng.urange(200, 700);
        let req = w.message(80, true, len);
        let td = tf + c.rtt * w.rng.range(10, 90) / 100;
        let crossing = Pkt {
            ack: Some(fin_seq),
            ..Pkt::data(&req)
        };
        w.send(&mut c, Who::O, td, crossing);
        let tr = td + w.react(&c, Who::R);
        let p = kernel_rst(&c, Who::R, RST, fin_seq, 0);
        w.send_rst(&mut c, Who::R, tr, p, v);
        let ta = td + w.rng.range(MS, 5 * MS);
        w.send(&mut c, Who::O, ta, Pkt::new(ACK));
        let tr = ta + w.react(&c, Who::R);
        let p = kernel_rst(&c, Who::R, RST, c.r.nxt, 0);
        w.send_rst(&mut c, Who::R, tr, p, v);
        t += w.rng.range(S, 3 * S);
    }
}

/// `write-after-close`: the server answers with `Connection: close` and closes (FIN
/// right after the response); the client acknowledges the FIN but, not looking at the
/// header, sends its next request on the connection 50 ms-2 s later. The server's
/// kernel (FIN-WAIT-2, receive side shut) answers it with a bare RST, seq FIN+1.
pub(crate) fn write_after_close(w: &mut World, t0: i64) {
    let v = Verdict::genuine(
        RstClass::Abort,
        Dir::Resp,
        &[AfterFin, SeqExact],
        Cause::WriteAfterClose,
    );
    let mut t = t0 + 100 * MS;
    for i in 0..6 {
        let (mut c, tt) = served(w, i, 195, 80, t);
        let tf = tt + w.rng.range(30, 300);
        w.send(&mut c, Who::R, tf, Pkt::new(FIN | ACK));
        let ta = tf + w.react(&c, Who::O);
        w.send(&mut c, Who::O, ta, Pkt::new(ACK));
        let len = w.rng.urange(200, 700);
        let req = w.message(80, true, len);
        let td = ta + w.rng.range(50 * MS, 2 * S);
        w.send(&mut c, Who::O, td, Pkt::data(&req));
        let tr = td + w.react(&c, Who::R);
        let p = kernel_rst(&c, Who::R, RST, c.r.nxt, 0);
        w.send_rst(&mut c, Who::R, tr, p, v);
        t += w.rng.range(S, 3 * S);
    }
}

const UNREAD: Verdict<'static> = Verdict {
    class: RstClass::Abort,
    dir: Dir::Resp,
    flags: &[SeqExact],
    suspect: false,
    cause: Cause::UnreadDataClose,
};

/// `unread-close`: clients upload (HTTP POST to 8080); the server application reads the
/// headers, rejects the request and closes with the body unread. Linux sends RST/ACK
/// from the socket (seq = SND.NXT, ack = everything received, IP ID counting on). Four
/// patterns, two flows each:
///
/// 0. the upload is complete and acknowledged; the close follows 1-60 ms later;
/// 1. the upload's last, short segment is not acknowledged yet (delayed ACK): the
///    RST/ACK acknowledges it, 1-40 ms after it;
/// 2. mid-upload: the client's next burst, sent before the RST reached it, crosses it;
///    the server's kernel answers each of those segments with a bare RST of the same
///    seq (IP ID 0);
/// 3. the application stopped reading long before: the server advertised a zero
///    window, the client sent window probes, and the close comes seconds later.
pub(crate) fn unread_close(w: &mut World, t0: i64) {
    let mut t = t0 + 100 * MS;
    for i in 0..8 {
        let (mut c, tt) = served(w, i, 196, 8080, t);
        let len = w.rng.urange(20_000, 120_000);
        let body = w.message(8080, true, len);
        let start = tt + w.rng.range(100 * MS, S);
        match i % 4 {
            0 => {
                let ta = w.transfer(&mut c, Who::O, start, &body);
                let tr = ta + w.rng.range(MS, 60 * MS);
                w.send_rst(&mut c, Who::R, tr, Pkt::new(RST | ACK), UNREAD);
            }
            1 => {
                let seg = c.seg_size(Who::O);
                let cut = body.len() - w.rng.urange(100, seg - 1);
                let ta = w.transfer(&mut c, Who::O, start, &body[..cut]);
                let tl = ta + w.react(&c, Who::O);
                w.send(&mut c, Who::O, tl, Pkt::data(&body[cut..]));
                let tr = tl + w.rng.range(MS, 40 * MS);
                w.send_rst(&mut c, Who::R, tr, Pkt::new(RST | ACK), UNREAD);
            }
            2 => crossing_upload(w, &mut c, start, &body),
            _ => zero_window(w, &mut c, start, &body),
        }
        t += w.rng.range(S, 3 * S);
    }
}

/// Pattern 2 of `unread-close`.
fn crossing_upload(w: &mut World, c: &mut Conn, start: i64, body: &[u8]) {
    let seg = c.seg_size(Who::O);
    let cut = body.len() - 3 * seg;
    let ta = w.transfer(c, Who::O, start, &body[..cut]);
    let tr = ta + w.rng.range(2 * MS, 4 * MS);
    w.send_rst(c, Who::R, tr, Pkt::new(RST | ACK), UNREAD);
    let mut td = ta + w.react(c, Who::O);
    for chunk in body[cut..].chunks(seg) {
        w.send(c, Who::O, td, Pkt::data(chunk));
        let trx = td + w.react(c, Who::R);
        let p = kernel_rst(c, Who::R, RST, c.r.nxt, 0);
        w.send_rst(c, Who::R, trx, p, UNREAD);
        td += w.rng.range(300, 900);
    }
}

/// Pattern 3 of `unread-close`: the upload's last segment fills the receive buffer and
/// its ACK closes the window.
fn zero_window(w: &mut World, c: &mut Conn, start: i64, body: &[u8]) {
    let cut = body.len() - c.seg_size(Who::O);
    let ta = w.transfer(c, Who::O, start, &body[..cut]);
    let zero = |p: Pkt<'static>| Pkt {
        window: Some(0),
        ..p
    };
    let mut t = ta + w.react(c, Who::O);
    w.send(c, Who::O, t, Pkt::data(&body[cut..]));
    t += w.react(c, Who::R);
    w.send(c, Who::R, t, zero(Pkt::new(ACK)));
    let mut backoff = 200 * MS + c.rtt;
    for _ in 0..3 {
        t += backoff;
        let probe = Pkt {
            seq: Some(c.o.nxt.wrapping_sub(1)),
            ..Pkt::new(ACK)
        };
        w.send(c, Who::O, t, probe);
        t += w.react(c, Who::R);
        w.send(c, Who::R, t, zero(Pkt::new(ACK)));
        backoff *= 2;
    }
    let tr = t + w.rng.range(S, 3 * S);
    w.send_rst(c, Who::R, tr, zero(Pkt::new(RST | ACK)), UNREAD);
}

/// `app-abort`: applications closing with SO_LINGER 0 when everything is acknowledged
/// and nothing is unread: RST/ACK from the socket (seq = SND.NXT, IP ID counting on).
/// Even flows: the client's connection pool evicts an idle connection 0.2-4 s after
/// the last response (Java's `setSoLinger(true, 0)`); odd flows: the server (HAProxy
/// `option nolinger`) closes 0.15-4 s after its response.
pub(crate) fn app_abort(w: &mut World, t0: i64) {
    let mut t = t0 + 100 * MS;
    for i in 0..6 {
        let port = if i % 2 == 0 { 443 } else { 80 };
        let (mut c, tt) = served(w, i, 197, port, t);
        let (who, wait) = if i % 2 == 0 {
            (Who::O, w.rng.range(200 * MS, 4 * S))
        } else {
            (Who::R, w.rng.range(150 * MS, 4 * S))
        };
        let v = Verdict::genuine(RstClass::Abort, who.dir(), &[SeqExact], Cause::Abort);
        w.send_rst(&mut c, who, tt + wait, Pkt::new(RST | ACK), v);
        t += w.rng.range(S, 3 * S);
    }
}
