//! `middlebox`: an inline IPS resets flows it blocks (cause `middlebox`).

use rstwatch_schema::{Cause, RstClass, RstFlag};

use super::{client, local6_like4, MS, S};
use crate::gen::packet::{ACK, RST};
use crate::gen::world::{local4, v4, v6, Host, Os, Pkt, Verdict, Who, World};

use RstFlag::{SeqExact, TtlMismatch};

/// TTL of the IPS's resets at the sensor: it sends with TTL 64 (Suricata's `rejectboth`
/// through libnet) from the data-centre border, three routed hops before the servers'
/// segment. Every remote host is 4 or more hops away, so this differs from each one's
/// own TTL by the hop difference between it and the IPS.
const IPS_TTL: u8 = 61;

/// The IPS's reset on behalf of `who`: RST/ACK with `who`'s exact seq and ack, IP ID 0,
/// no options, window 0.
fn ips_rst<'a>(seq: u32, ack: u32) -> Pkt<'a> {
    Pkt {
        ttl: Some(IPS_TTL),
        ..Pkt::stateless_rst(RST | ACK, seq, ack)
    }
}

/// `middlebox`: an inline IPS at the border blocks flows mid-transfer and resets both
/// ends at once. It drops the offending segment, so the sensor never sees it, nor the
/// RST that goes back out towards the remote end: it sees the RST towards the local
/// end, which claims to come from the remote one with the IPS's TTL. Even flows: a
/// remote client's request to a local server (203.0.113.198, 2001:db8:a::198) is
/// blocked, the server gets an RST "from the client"; odd flows: a local host
/// (203.0.113.199, 2001:db8:a::199) downloads from a remote server and the IPS blocks
/// a response segment, the local client gets an RST "from the server". Nothing follows:
/// the IPS drops the rest, and the local end is reset.
pub(crate) fn middlebox(w: &mut World, t0: i64) {
    let v = |dir| {
        let flags: &'static [RstFlag] = &[SeqExact, TtlMismatch];
        Verdict::genuine(RstClass::Abort, dir, flags, Cause::Middlebox)
    };
    let mut t = t0 + 100 * MS;
    for i in 0..8 {
        let ipv6 = i % 4 >= 2;
        let inbound = i % 2 == 0;
        let (cl, server, port) = if inbound {
            let ip = if ipv6 { local6_like4(198) } else { local4(198) };
            (client(w, ipv6), Host::local(ip), 80)
        } else {
            let (local, remote) = if ipv6 {
                (
                    local6_like4(199),
                    v6([0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 0x120]),
                )
            } else {
                (local4(199), v4(192, 0, 2, 120))
            };
            (Host::local(local), Host::remote(remote, Os::Linux, 50), 443)
        };
        let mut c = w.conn(cl, server, port);
        let tt = w.handshake(&mut c, t);
        let (req, resp) = (w.rng.urange(200, 700), w.rng.urange(2000, 30_000));
        let think = w.rng.range(MS, 5 * MS);
        let tt = w.exchange(&mut c, tt + 200, req, resp, think);
        let tr = tt + w.rng.range(20 * MS, 2 * S);
        let remote = if inbound { Who::O } else { Who::R };
        let (seq, ack) = (c.side(remote).nxt, c.side(remote).rcv);
        w.send_rst(&mut c, remote, tr, ips_rst(seq, ack), v(remote.dir()));
        t += w.rng.range(S, 3 * S);
    }
}
