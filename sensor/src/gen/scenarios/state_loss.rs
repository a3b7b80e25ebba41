//! `vip-failover` and `reboot`: a server that lost its connections' state answers the
//! clients' next segments with bare RSTs (cause `state_loss`).

use std::net::IpAddr;

use rstwatch_schema::{AnomalyKind, Cause, Dir, RstClass, RstFlag};

use super::{client, kernel_rst, local6_like4, MS, S};
use crate::gen::control::{self, VrrpNode};
use crate::gen::packet::RST;
use crate::gen::world::{local4, v4, v6, Conn, Host, NonTcp, Pkt, Verdict, Who, World};

const STATE_LOSS: Verdict<'static> = Verdict {
    class: RstClass::Abort,
    dir: Dir::Resp,
    flags: &[RstFlag::SeqExact],
    suspect: false,
    cause: Cause::StateLoss,
};

/// keepalived's takeover delay for a backup of priority 100 with a 1 s advertisement
/// interval: three missed advertisements plus the skew time (256 - 100) / 256 s.
const TAKEOVER_US: i64 = 3 * S + (256 - 100) * S / 256;

fn ip4(h: &Host) -> std::net::Ipv4Addr {
    match h.ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("an IPv4 host"),
    }
}

fn ip6(h: &Host) -> std::net::Ipv6Addr {
    match h.ip {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => unreachable!("an IPv6 host"),
    }
}

/// The two keepalived nodes (203.0.113.81 master, .82 backup, and their IPv6
/// addresses) holding the VIPs 203.0.113.80 and 2001:db8:a::80, one VRRP instance per
/// family, advertising to each other unicast.
struct Vrrp {
    v4: [VrrpNode<std::net::Ipv4Addr>; 2],
    v6: [VrrpNode<std::net::Ipv6Addr>; 2],
    vip4: Host,
    vip6: Host,
    ip_id: [u16; 2],
}

impl Vrrp {
    fn new(w: &mut World) -> Vrrp {
        let (a4, b4) = (Host::local(local4(81)), Host::local(local4(82)));
        let (a6, b6) = (Host::local(local6_like4(81)), Host::local(local6_like4(82)));
        let node4 = |me: &Host, peer: &Host, priority| VrrpNode {
            mac: me.mac,
            addr: ip4(me),
            peer_mac: peer.mac,
            peer_addr: ip4(peer),
            vrid: 51,
            priority,
        };
        let node6 = |me: &Host, my: &Host, peer: &Host, their: &Host, priority| VrrpNode {
            mac: me.mac,
            addr: ip6(my),
            peer_mac: peer.mac,
            peer_addr: ip6(their),
            vrid: 52,
            priority,
        };
        Vrrp {
            v4: [node4(&a4, &b4, 150), node4(&b4, &a4, 100)],
            v6: [
                node6(&a4, &a6, &b4, &b6, 150),
                node6(&b4, &b6, &a4, &a6, 100),
            ],
            vip4: Host {
                mac: a4.mac,
                ..Host::local(local4(80))
            },
            vip6: Host {
                mac: a4.mac,
                ..Host::local(local6_like4(80))
            },
            ip_id: [w.rng.u16(), w.rng.u16()],
        }
    }

    /// Advertisements of node `k` (0 master, 1 backup) once a second in `[from, to)`.
    fn advertise(&mut self, w: &mut World, k: usize, from: i64, to: i64) {
        let mut t = from;
        while t < to {
            let f = control::vrrp_v2(&self.v4[k], ip4(&self.vip4), self.ip_id[k]);
            self.ip_id[k] = self.ip_id[k].wrapping_add(1);
            w.push_non_tcp(t, f, NonTcp::NotTcp);
            let f = control::vrrp_v3(&self.v6[k], ip6(&self.vip6));
            w.push_non_tcp(t + 40, f, NonTcp::NotTcp);
            t += S + w.rng.range(0, 2 * MS);
        }
    }

    /// What the backup sends for each VIP on becoming master (keepalived's
    /// `garp_master_repeat` 5, repeated after `garp_master_delay` 5 s).
    fn announce(&self, w: &mut World, t: i64) {
        let mac = self.v4[1].mac;
        for round in 0..2 {
            for k in 0..5 {
                let at = t + round * 5 * S + k * 20;
                w.push_non_tcp(
                    at,
                    control::gratuitous_arp(mac, ip4(&self.vip4)),
                    NonTcp::NotIp,
                );
                let na = control::unsolicited_na(mac, ip6(&self.vip6));
                w.push_non_tcp(at + 10, na, NonTcp::NotTcp);
            }
        }
    }
}

/// `vip-failover`: keepalived VIPs (203.0.113.80, 2001:db8:a::80; HTTPS) served by node
/// A. Nine clients (three IPv6) hold established, idle connections when A dies; node B
/// takes over 3.6 s later (gratuitous ARPs, unsolicited neighbour advertisements, VRRP
/// advertisements: all counted as not TCP), and answers each client's next request
/// with a bare RST from its own MAC (its kernel knows no such connection: seq = the
/// request's ack, IP ID 0). The clients reconnect to B. Expected anomaly: `failover`.
pub(crate) fn vip_failover(w: &mut World, t0: i64) {
    let mut vrrp = Vrrp::new(w);
    let t_fail = t0 + 20 * S;
    let t_master = t_fail + TAKEOVER_US;
    let t_end = t_master + 15 * S;
    vrrp.advertise(w, 0, t0, t_fail);
    vrrp.advertise(w, 1, t_master, t_end);
    vrrp.announce(w, t_master);
    let mut conns = Vec::new();
    for i in 0..9 {
        let ipv6 = i >= 6;
        let cl = client(w, ipv6);
        let vip = if ipv6 { vrrp.vip6 } else { vrrp.vip4 };
        let mut c = w.conn(cl, vip, 443);
        let start = t0 + w.rng.range(0, 15 * S);
        let tt = w.handshake(&mut c, start);
        let (req, resp) = (w.rng.urange(200, 800), w.rng.urange(300, 6000));
        let think = w.rng.range(MS, 5 * MS);
        w.exchange(&mut c, tt + 200, req, resp, think);
        conns.push(c);
    }
    let mac_b = vrrp.v4[1].mac;
    for mut c in conns {
        // The router's neighbour cache now points the VIP at B.
        c.r.h.mac = mac_b;
        let len = w.rng.urange(200, 800);
        let req = w.message(443, true, len);
        let td = t_master + w.rng.range(500 * MS, 12 * S);
        w.send(&mut c, Who::O, td, Pkt::data(&req));
        let tr = td + w.react(&c, Who::R);
        let p = kernel_rst(&c, Who::R, RST, c.r.nxt, 0);
        w.send_rst(&mut c, Who::R, tr, p, STATE_LOSS);
        let start = tr + w.react(&c, Who::O);
        let cl = c.o.h;
        healthy_flow(w, cl, c.r.h, 443, start);
    }
    w.expect_anomaly(AnomalyKind::Failover);
}

/// A new connection that works: handshake, one exchange, the client closes.
fn healthy_flow(w: &mut World, cl: Host, server: Host, port: u16, start: i64) {
    let mut c = w.conn(cl, server, port);
    let tt = w.handshake(&mut c, start);
    let (req, resp) = (w.rng.urange(200, 800), w.rng.urange(300, 6000));
    let think = w.rng.range(MS, 5 * MS);
    let tt = w.exchange(&mut c, tt + 200, req, resp, think);
    let gap = w.rng.range(MS, S);
    w.close(&mut c, Who::O, tt + gap);
}

/// A connection whose query was outstanding when the server died.
struct Outstanding {
    c: Conn,
    seq: u32,
    query: Vec<u8>,
    /// When the sensor saw the query first.
    sent: i64,
}

/// Retransmits `o`'s query with exponential backoff until one arrives after `t_up`;
/// returns that one's time.
fn retransmit_past(w: &mut World, o: &mut Outstanding, rto: i64, t_up: i64) -> i64 {
    let mut k = 1;
    loop {
        let at = retransmission(o.sent, rto, k);
        let again = Pkt {
            seq: Some(o.seq),
            ..Pkt::data(&o.query)
        };
        w.send(&mut o.c, Who::O, at, again);
        if at > t_up {
            return at;
        }
        k += 1;
    }
}

/// One client host's pool of connections to the rebooting server.
struct Pool {
    conns: Vec<Outstanding>,
    /// Linux's retransmission timeout for this path: RTT + 200 ms (`tcp_rto_min`).
    rto: i64,
}

/// Arrival time at the sensor of retransmission `k` (1 = the first) of a request first
/// sent at `sent`, with exponential backoff from `rto`.
fn retransmission(sent: i64, rto: i64, k: u32) -> i64 {
    sent + rto * ((1i64 << k) - 1)
}

impl Pool {
    /// True when `t` falls inside some retransmission round of the pool (some
    /// connections' `k`-th retransmission before it, others' after).
    fn splits(&self, t: i64) -> bool {
        (1..12).any(|k| {
            let times = self
                .conns
                .iter()
                .map(|x| retransmission(x.sent, self.rto, k));
            let (lo, hi) = times.fold((i64::MAX, i64::MIN), |(l, h), x| (l.min(x), h.max(x)));
            lo <= t && t <= hi
        })
    }
}

/// `reboot`: a PostgreSQL server (203.0.113.70 and 2001:db8:a::70, one host) crashes
/// while two application servers (192.0.2.140 with four connections, 2001:db8:e::140
/// with three) have queries outstanding on every connection. They retransmit with
/// exponential backoff; the host comes back after 45 s or more, and its kernel answers
/// each connection's next retransmission with a bare RST (seq = its ack, IP ID 0,
/// same MAC as before). The applications reconnect.
pub(crate) fn reboot(w: &mut World, t0: i64) {
    let db4 = Host::local(local4(70));
    let db6 = Host {
        mac: db4.mac,
        ..Host::local(local6_like4(70))
    };
    let t_crash = t0 + 10 * S;
    let apps = [
        (v4(192, 0, 2, 140), db4, 4),
        (v6([0x2001, 0xdb8, 0xe, 0, 0, 0, 0, 0x140]), db6, 3),
    ];
    let mut pools = Vec::new();
    for (ip, db, n) in apps {
        let app = w.remote_host(ip);
        let rtt = w.rng.range(10 * MS, 60 * MS);
        let mut conns = Vec::new();
        for _ in 0..n {
            let mut c = w.conn(app, db, 5432);
            c.rtt = rtt;
            let start = t0 + w.rng.range(0, 3 * S);
            let tt = w.handshake(&mut c, start);
            let (req, resp) = (w.rng.urange(100, 600), w.rng.urange(200, 3000));
            let think = w.rng.range(MS, 5 * MS);
            w.exchange(&mut c, tt + 300, req, resp, think);
            let len = w.rng.urange(60, 900);
            let query = w.message(5432, true, len);
            let sent = t_crash + w.rng.range(MS, 50 * MS);
            let seq = w.send(&mut c, Who::O, sent, Pkt::data(&query));
            conns.push(Outstanding {
                c,
                seq,
                query,
                sent,
            });
        }
        pools.push(Pool {
            conns,
            rto: rtt + 200 * MS,
        });
    }
    let mut t_up = t_crash + 45 * S;
    while pools.iter().any(|p| p.splits(t_up)) {
        t_up += 100 * MS;
    }
    for pool in &mut pools {
        let rto = pool.rto;
        for o in &mut pool.conns {
            let at = retransmit_past(w, o, rto, t_up);
            let c = &mut o.c;
            let tr = at + w.react(c, Who::R);
            let p = kernel_rst(c, Who::R, RST, c.r.nxt, 0);
            w.send_rst(c, Who::R, tr, p, STATE_LOSS);
            let start = tr + w.react(c, Who::O) + w.rng.range(MS, 20 * MS);
            healthy_flow(w, c.o.h, c.r.h, 5432, start);
        }
    }
}
