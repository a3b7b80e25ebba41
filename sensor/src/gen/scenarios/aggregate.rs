//! `storm`, `scan`, `backscatter`: many RSTs that matter together (anomalies), and
//! whose causes depend on thresholds crossed across flows.

use std::collections::HashSet;

use rstwatch_schema::{AnomalyKind, Cause, Dir, RstClass};

use super::{client, kernel_rst, MS, S};
use crate::gen::packet::{ACK, RST, SYN};
use crate::gen::world::{local4, v4, Conn, Host, Os, Pkt, Verdict, Who, World};

use rstwatch_schema::RstFlag::SeqExact;

/// DESIGN's anomaly defaults the causes `scan` and `backscatter` depend on: a source
/// is a scanner from its reject by the 25th host on one port, a remote a backscatter
/// source from its unsolicited RST/ACK to the 25th local address.
const SCAN_HOSTS: usize = 25;
const BACKSCATTER_HOSTS: usize = 25;

/// `storm`: `n` flows to the VIP 203.0.113.10:443 all reset by the load balancer within
/// 200 ms, as F5's "action on service down: reset" does when the pool behind it fails
/// (the load balancer's own stack, same MAC: `abort`); a fifth of them are long-lived
/// connections from 20 NAT addresses that sent nothing during the capture (no state:
/// unsolicited, `unknown`).
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
        if *mid {
            let v = Verdict::genuine(RstClass::Unsolicited, Dir::Unknown, &[], Cause::Unknown);
            w.send_rst(c, Who::R, tr, p, v);
        } else {
            let v = Verdict::genuine(RstClass::Abort, Dir::Resp, &[SeqExact], Cause::Abort);
            w.send_rst(c, Who::R, tr, p, v);
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

/// Time between a scanner's probes: nmap `--scan-delay 600ms` plus up to 300 ms. More
/// than the 500 ms verdict delay, so each reject is released before the next one
/// arrives and "from the crossing on" has one meaning.
fn probe_gap(w: &mut World) -> i64 {
    w.rng.range(600 * MS, 900 * MS)
}

/// `scan`: an nmap-style SYN scan from 192.0.2.66 (one source port): port 23 on 36
/// hosts (32 closed, 4 filtered), then 24 ports on 203.0.113.25 (22, 80, 443 open).
/// The rejects are `refused` until the scanner has collected them from
/// [`SCAN_HOSTS`] hosts on port 23; from that one on, everything it draws is `scan`.
pub(crate) fn scan(w: &mut World, t0: i64) {
    let scanner = Host::remote(v4(192, 0, 2, 66), Os::Scanner, 49);
    let sport = 40_000 + w.rng.below(20_000) as u16;
    let mut t = t0 + 10 * MS;
    let mut rejecting_hosts = 0;
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
            rejecting_hosts += 1;
            let cause = if rejecting_hosts >= SCAN_HOSTS {
                Cause::Scan
            } else {
                Cause::Refused
            };
            let tr = t + w.react(&c, Who::R);
            let p = kernel_rst(&c, Who::R, RST | ACK, 0, c.o.isn.wrapping_add(1));
            let v = Verdict::genuine(RstClass::Reject, Dir::Resp, &[], cause);
            w.send_rst(&mut c, Who::R, tr, p, v);
        }
        t += probe_gap(w);
    }
    assert!(rejecting_hosts >= SCAN_HOSTS);
    let host = Host::local(local4(25));
    let mut ports = [
        21u16, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 199, 443, 445, 554, 587, 993, 995,
        1025, 1723, 3306, 3389, 5900, 8080,
    ];
    w.rng.shuffle(&mut ports);
    for port in ports {
        let mut c = w.conn_ports(scanner, sport, host, port);
        w.send(&mut c, Who::O, t, Pkt::new(SYN));
        let tr = t + w.react(&c, Who::R);
        if matches!(port, 22 | 80 | 443) {
            w.send(&mut c, Who::R, tr, Pkt::new(SYN | ACK));
            // The scanner's kernel knows no such connection: RST, seq = the SYN-ACK's ack.
            let ts = tr + w.react(&c, Who::O);
            let seq = c.o.isn.wrapping_add(1);
            let p = Pkt::stateless_rst(RST, seq, 0);
            let v = Verdict::genuine(RstClass::HandshakeAbort, Dir::Orig, &[], Cause::Scan);
            w.send_rst(&mut c, Who::O, ts, p, v);
        } else {
            let p = kernel_rst(&c, Who::R, RST | ACK, 0, c.o.isn.wrapping_add(1));
            let v = Verdict::genuine(RstClass::Reject, Dir::Resp, &[], Cause::Scan);
            w.send_rst(&mut c, Who::R, tr, p, v);
        }
        t += probe_gap(w);
    }
    w.expect_anomaly(AnomalyKind::Scan);
}

/// `backscatter`: RST/ACKs from 192.0.2.99 (the victim of a SYN flood with spoofed
/// sources in our address space) to 40 local addresses, 2-5 each, 0.6-1.2 s apart (more
/// than the verdict delay). `unknown` until the victim has reached [`BACKSCATTER_HOSTS`]
/// local addresses, `backscatter` from that RST on.
pub(crate) fn backscatter(w: &mut World, t0: i64) {
    let victim = Host::remote(v4(192, 0, 2, 99), Os::Linux, 55);
    let mut targets: Vec<u8> = Vec::new();
    for n in 100..140u8 {
        for _ in 0..w.rng.urange(2, 5) {
            targets.push(n);
        }
    }
    w.rng.shuffle(&mut targets);
    let mut used = HashSet::new();
    let mut reached = HashSet::new();
    let mut t = t0 + w.rng.range(0, S);
    for n in targets {
        let (vport, lport) = loop {
            let vport = 1 + w.rng.below(65_535) as u16;
            let lport = 1024 + w.rng.below(64_511) as u16;
            if used.insert((n, vport, lport)) {
                break (vport, lport);
            }
        };
        reached.insert(n);
        let cause = if reached.len() >= BACKSCATTER_HOSTS {
            Cause::Backscatter
        } else {
            Cause::Unknown
        };
        let mut c = w.conn_ports(victim, vport, Host::local(local4(n)), lport);
        let ack = w.rng.u32();
        let p = Pkt::stateless_rst(RST | ACK, 0, ack);
        let v = Verdict::genuine(RstClass::Unsolicited, Dir::Unknown, &[], cause);
        w.send_rst(&mut c, Who::O, t, p, v);
        t += w.rng.range(600 * MS, 1200 * MS);
    }
    w.expect_anomaly(AnomalyKind::Backscatter);
}
