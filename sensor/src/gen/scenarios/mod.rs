//! The scenarios. Each writes its packets and the label of every RST it sends into the
//! [`World`], starting at `t0`. See the module documentation of `gen` for what each
//! label means and why.

mod aggregate;
mod basic;
mod closes;
mod forged;
mod middlebox;
mod overload;
mod race;
mod state_loss;

pub(crate) use aggregate::{backscatter, scan, storm};
pub(crate) use basic::{abort, after_fin, idle_timeout, refused};
pub(crate) use closes::{app_abort, keepalive_race, unread_close, write_after_close};
pub(crate) use forged::{blind_inwindow, injection};
pub(crate) use middlebox::middlebox;
pub(crate) use overload::server_overload;
pub(crate) use race::connect_race;
pub(crate) use state_loss::{reboot, vip_failover};

use super::rng::Rng;
use super::world::{local4, local6, Conn, Host, Os, Pkt, Who, World};

const MS: i64 = 1_000;
const S: i64 = 1_000_000;

/// A local server running Windows (TTL 128).
fn local_windows(ip: std::net::IpAddr) -> Host {
    Host {
        os: Os::Windows,
        ttl: 128,
        ..Host::local(ip)
    }
}

/// 2001:db8:a::n written with the decimal digits of `n`, so that a dual-stack host reads
/// 203.0.113.n and 2001:db8:a::n (e.g. 194 and ::194).
fn local6_like4(n: u8) -> std::net::IpAddr {
    let d = u16::from(n);
    local6((d / 100) << 8 | (d / 10 % 10) << 4 | (d % 10))
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
    w.with_rng(stream(10), |w| server_overload(w, t0 + 120 * S));
    w.with_rng(stream(11), |w| vip_failover(w, t0 + 180 * S));
    w.with_rng(stream(12), |w| connect_race(w, t0 + 250 * S));
    w.with_rng(stream(13), |w| keepalive_race(w, t0 + 270 * S));
    w.with_rng(stream(14), |w| write_after_close(w, t0 + 285 * S));
    w.with_rng(stream(15), |w| unread_close(w, t0 + 360 * S));
    w.with_rng(stream(16), |w| middlebox(w, t0 + 380 * S));
    w.with_rng(stream(17), |w| reboot(w, t0 + 400 * S));
    w.with_rng(stream(18), |w| app_abort(w, t0 + 440 * S));
    w.with_rng(stream(0), |w| background(w, t0, n, 590 * S));
}
