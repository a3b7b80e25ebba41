//! `server-overload`: a remote service whose accept queue overflows, seen from a sensor
//! on its clients' side (cause `server_overload`).

use rstwatch_schema::{Cause, Dir, RstClass, RstFlag};

use super::{local6_like4, MS, S};
use crate::gen::packet::{ACK, RST, SYN};
use crate::gen::world::{local4, v4, v6, Conn, Host, Os, Pkt, Verdict, Who, World};

const OVERLOAD: Verdict<'static> = Verdict {
    class: RstClass::Abort,
    dir: Dir::Resp,
    flags: &[RstFlag::SeqExact],
    suspect: false,
    cause: Cause::ServerOverload,
};

/// `server-overload`: two local application servers warm up their connection pools to a
/// remote MySQL service (192.0.2.33:3306: 12 connections 2-10 ms apart; then
/// [2001:db8:f::33]:3306: 8). The server's accept queue is full for most of them: with
/// `tcp_abort_on_overflow=1` its kernel answers the handshake's ACK with a bare RST
/// (seq = its ISN+1, ack 0, window 0, no options, IP ID 0) 2-30 µs after the ACK reached
/// it, which the sensor sees one round trip after the ACK; no SYN-ACK is retransmitted.
/// MySQL speaks first, so the clients send nothing before the RST. Every third
/// connection is accepted and works.
pub(crate) fn server_overload(w: &mut World, t0: i64) {
    let services = [
        (v4(192, 0, 2, 33), [local4(180), local4(181)], 12),
        (
            v6([0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 0x33]),
            [local6_like4(180), local6_like4(181)],
            8,
        ),
    ];
    for (idx, (ip, apps, n)) in services.into_iter().enumerate() {
        let server = Host::remote(ip, Os::Linux, 55);
        let rtt = w.rng.range(20 * MS, 80 * MS);
        let mut t = t0 + idx as i64 * 5 * S + w.rng.range(0, S);
        for k in 0..n {
            let app = Host::local(apps[k % 2]);
            let mut c = w.conn(app, server, 3306);
            c.rtt = rtt;
            let t_ack = handshake_on_path(w, &mut c, t);
            if k % 3 == 0 {
                accepted(w, &mut c, t_ack);
            } else {
                let tr = t_ack + rtt + w.rng.range(2, 30) + w.rng.range(0, 300);
                let p = Pkt::stateless_rst(RST, c.r.isn.wrapping_add(1), 0);
                w.send_rst(&mut c, Who::R, tr, p, OVERLOAD);
            }
            t += w.rng.range(2 * MS, 10 * MS);
        }
    }
}

/// SYN, SYN-ACK one round trip later (± 0.3 ms), ACK from the local client; returns
/// the ACK's time.
fn handshake_on_path(w: &mut World, c: &mut Conn, t: i64) -> i64 {
    w.send(c, Who::O, t, Pkt::new(SYN));
    let t1 = t + c.rtt + w.rng.range(0, 300);
    w.send(c, Who::R, t1, Pkt::new(SYN | ACK));
    let t2 = t1 + w.react(c, Who::O);
    w.send(c, Who::O, t2, Pkt::new(ACK));
    t2
}

/// An accepted connection: greeting, login, one query, COM_QUIT and close.
fn accepted(w: &mut World, c: &mut Conn, t_ack: i64) {
    let greet = w.message(3306, false, 78);
    let accept = w.rng.range(MS, 5 * MS);
    let t = w.transfer(c, Who::R, t_ack + c.rtt + accept, &greet);
    let login = w.message(3306, true, 180);
    let t = w.transfer(c, Who::O, t + 100, &login);
    let ok = w.message(3306, false, 11);
    let t = w.transfer(c, Who::R, t + MS, &ok);
    let len = w.rng.urange(40, 300);
    let query = w.message(3306, true, len);
    let t = w.transfer(c, Who::O, t + 200, &query);
    let len = w.rng.urange(100, 4000);
    let rows = w.message(3306, false, len);
    let t = w.transfer(c, Who::R, t + 2 * MS, &rows);
    let quit = w.message(3306, true, 5);
    let t = w.transfer(c, Who::O, t + 200, &quit);
    w.close(c, Who::O, t + 100);
}
