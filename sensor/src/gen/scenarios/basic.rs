//! `refused`, `abort`, `idle-timeout`, `after-fin`: one flow, one RST, one cause each.

use rstwatch_schema::{Cause, Dir, RstClass};

use super::{client, kernel_rst, local6_like4, local_windows, MS, S};
use crate::gen::packet::{ACK, FIN, RST, SYN};
use crate::gen::world::{local4, local6, Host, Pkt, Verdict, Who, World};

use rstwatch_schema::RstFlag::{AfterFin, Idle, SeqExact, TtlMismatch};

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
        let v = Verdict::genuine(RstClass::Reject, Dir::Resp, &[], Cause::Refused);
        w.send_rst(&mut c, Who::R, tr, p, v);
        t += w.rng.range(200 * MS, 3 * S);
    }
}

/// `abort`: established flows reset mid-response, all data acknowledged first so the
/// RST's seq is exactly the receiver's next expected. Half by the client: the download
/// is cancelled and the client application closes with the response's bytes unread, 5-90
/// ms after they arrived (Linux `tcp_close` sends RST/ACK: `unread_data_close`); half by
/// the server, which aborts a response it cannot finish (SO_LINGER 0, 5-300 ms after its
/// last segment was acknowledged: `abort`).
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
        let (who, cause, wait) = if i % 2 == 0 {
            (Who::O, Cause::UnreadDataClose, w.rng.range(5 * MS, 90 * MS))
        } else {
            (Who::R, Cause::Abort, w.rng.range(5 * MS, 300 * MS))
        };
        let v = Verdict::genuine(RstClass::Abort, who.dir(), &[SeqExact], cause);
        w.send_rst(&mut c, who, tt + wait, Pkt::new(RST | ACK), v);
        t += w.rng.range(300 * MS, 2 * S);
    }
}

/// The MAC of the stateful firewall in front of the `idle-timeout` servers.
const FIREWALL_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0xf1, 0x00, 0x01];

/// `idle-timeout`: flows silent for 380-440 s, longer than the stateful firewall on
/// their path remembers them (nftables `ct` timeout, AWS NLB 350 s). The firewall
/// drops the first segment after the silence and resets its sender only (nftables
/// `reject with tcp reset`): a bare RST with seq = the segment's ack, IP ID 0, and the
/// firewall's TTL, one hop closer than the real peer's.
///
/// The servers (203.0.113.50-55, 2001:db8:a::52 and ::55; no other scenario uses them)
/// sit one routed hop behind a firewall: TTL 63 at the sensor, frames from its MAC.
/// Even flows: the client's next request, reset by that firewall (its own TTL 64). Odd flows: the server pushes a message to a client behind
/// a firewall or NAT one hop before it (RST TTL = the client's + 1), one round trip later.
pub(crate) fn idle_timeout(w: &mut World, t0: i64) {
    let ports = [5432u16, 8883, 443, 5222, 443, 8883];
    for (i, &port) in ports.iter().enumerate() {
        let ipv6 = i % 3 == 2;
        let cl = client(w, ipv6);
        let n = 50 + i as u8;
        let ip = if ipv6 { local6_like4(n) } else { local4(n) };
        let server = Host {
            ttl: 63,
            mac: FIREWALL_MAC,
            ..Host::local(ip)
        };
        let mut c = w.conn(cl, server, port);
        let start = t0 + i as i64 * 2 * S + w.rng.range(0, S);
        let tt = w.handshake(&mut c, start);
        let (req, resp) = (w.rng.urange(200, 700), w.rng.urange(300, 5000));
        let think = w.rng.range(MS, 5 * MS);
        let tt = w.exchange(&mut c, tt + 200, req, resp, think);
        let td = tt + w.rng.range(380 * S, 440 * S);
        let (sender, len) = (
            if i % 2 == 0 { Who::O } else { Who::R },
            w.rng.urange(80, 600),
        );
        let msg = w.message(port, sender == Who::O, len);
        w.send(&mut c, sender, td, Pkt::data(&msg));
        let firewall = sender.peer();
        let (tr, ttl) = if sender == Who::O {
            (td + w.rng.range(20, 120), 64)
        } else {
            (td + c.rtt - c.rtt / 20, c.o.h.ttl + 1)
        };
        let seq = c.side(firewall).nxt;
        let p = Pkt {
            ttl: Some(ttl),
            ..Pkt::stateless_rst(RST, seq, 0)
        };
        let flags = [Idle, SeqExact, TtlMismatch];
        let v = Verdict::genuine(RstClass::Abort, firewall.dir(), &flags, Cause::IdleTimeout);
        w.send_rst(&mut c, firewall, tr, p, v);
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
        let v = |dir| {
            let flags: &'static [_] = &[AfterFin, SeqExact];
            Verdict::genuine(RstClass::Abort, dir, flags, Cause::WriteAfterClose)
        };
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
            let p = kernel_rst(&c, Who::O, RST, c.o.nxt, 0);
            w.send_rst(&mut c, Who::O, tr, p, v(Dir::Orig));
        } else {
            // The server's keep-alive timeout (1-4 s) closes the connection; the client
            // acknowledges the FIN, but its connection pool has not noticed and sends
            // the next request on it (not a keep-alive race: the request acknowledges
            // the FIN, and the connection was idle for less than 5 s).
            let tf = tt + w.rng.range(S, 4 * S);
            w.send(&mut c, Who::R, tf, Pkt::new(FIN | ACK));
            let ta = tf + w.react(&c, Who::O);
            w.send(&mut c, Who::O, ta, Pkt::new(ACK));
            let req_len = w.rng.urange(200, 700);
            let req = w.message(80, true, req_len);
            let td = ta + w.rng.range(50, 30 * MS);
            w.send(&mut c, Who::O, td, Pkt::data(&req));
            let tr = td + w.react(&c, Who::R);
            let p = kernel_rst(&c, Who::R, RST, c.r.nxt, 0);
            w.send_rst(&mut c, Who::R, tr, p, v(Dir::Resp));
        }
        t += w.rng.range(300 * MS, 2 * S);
    }
}
