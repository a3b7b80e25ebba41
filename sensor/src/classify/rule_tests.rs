//! One test per cause rule and per precedence conflict, each built from the wire
//! patterns real Linux stacks produce (DESIGN.md, "What real Linux stacks put on the
//! wire"), run through the whole engine. A failure names the rule that broke.

use crate::gen::packet::{build, Wire, ACK, FIN, RST, SYN};
use crate::{Engine, EngineConfig};
use rstwatch_schema::{Anomaly, AnomalyKind, Cause, Dir, Record, RstClass, RstEvent, RstFlag};
use std::net::IpAddr;

pub(super) const MS: i64 = 1_000;
pub(super) const S: i64 = 1_000_000;
pub(super) const T0: i64 = 1_767_225_600_000_000;

/// One end of a conversation.
#[derive(Clone)]
pub(super) struct Host {
    pub(super) ip: IpAddr,
    pub(super) port: u16,
    pub(super) mac: [u8; 6],
    pub(super) ttl: u8,
    pub(super) ip_id: u16,
    /// Next sequence number to send, and the highest byte received (+1).
    pub(super) nxt: u32,
    pub(super) rcv: u32,
}

impl Host {
    pub(super) fn new(ip: &str, port: u16, mac_last: u8, ttl: u8, isn: u32) -> Host {
        Host {
            ip: ip.parse().unwrap(),
            port,
            mac: [2, 0, 0, 0, 0, mac_last],
            ttl,
            ip_id: 1000 + u16::from(mac_last) * 100,
            nxt: isn,
            rcv: 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Who {
    Client,
    Server,
}

/// A TCP conversation whose packets are built with the sequence state real stacks
/// keep; frames go into a shared capture.
pub(super) struct Conv {
    pub(super) c: Host,
    pub(super) s: Host,
}

/// The capture being built.
#[derive(Default)]
pub(super) struct Cap {
    pub(super) frames: Vec<(i64, Vec<u8>)>,
}

impl Cap {
    pub(super) fn push(&mut self, t: i64, w: &Wire<'_>) {
        self.frames.push((t, build(w)));
    }

    /// Runs the engine (default config unless given) and returns every record.
    pub(super) fn run(mut self, cfg: Option<EngineConfig>) -> Vec<Record> {
        self.frames.sort_by_key(|f| f.0);
        let mut e = Engine::new(&cfg.unwrap_or_default());
        let mut out = vec![];
        for (t, f) in &self.frames {
            e.process(*t, crate::gen::LINK_TYPE, f, &mut out);
        }
        e.finish(&mut out);
        out
    }
}

pub(super) fn rsts(out: &[Record]) -> Vec<RstEvent> {
    let mut v: Vec<RstEvent> = out
        .iter()
        .filter_map(|r| match r {
            Record::Rst(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    v.sort_by_key(|e| e.ts_us);
    v
}

pub(super) fn anomalies(out: &[Record]) -> Vec<Anomaly> {
    out.iter()
        .filter_map(|r| match r {
            Record::Anomaly(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

impl Conv {
    pub(super) fn new(client: Host, server: Host) -> Conv {
        Conv {
            c: client,
            s: server,
        }
    }

    /// A Linux client on 198.51.100.7 (TTL 52 at the sensor) to 203.0.113.10:`port`.
    pub(super) fn web(cport: u16, port: u16) -> Conv {
        Conv::new(
            Host::new("198.51.100.7", cport, 7, 52, 1_000_000),
            Host::new("203.0.113.10", port, 10, 64, 5_000_000),
        )
    }

    pub(super) fn ends(&mut self, who: Who) -> (&mut Host, &mut Host) {
        match who {
            Who::Client => (&mut self.c, &mut self.s),
            Who::Server => (&mut self.s, &mut self.c),
        }
    }

    /// A segment from `who` with its own counters; `seq_len` is what it consumes.
    pub(super) fn seg(&mut self, cap: &mut Cap, t: i64, who: Who, flags: u8, payload: &[u8]) {
        let (me, peer) = self.ends(who);
        let w = Wire {
            src_mac: me.mac,
            dst_mac: peer.mac,
            ttl: me.ttl,
            ip_id: me.ip_id,
            window: 502,
            payload,
            ..Wire::tcp(me.ip, me.port, peer.ip, peer.port, flags, me.nxt, me.rcv)
        };
        cap.push(t, &w);
        me.ip_id = me.ip_id.wrapping_add(1);
        let used = payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        me.nxt = me.nxt.wrapping_add(used);
        // The peer receives it (the sensor sits on a link, delivery is assumed).
        peer.rcv = me.nxt;
    }

    /// SYN at `t`, SYN-ACK at `t + rtt/2`, ACK at `t + rtt` (sensor in the middle).
    pub(super) fn handshake(&mut self, cap: &mut Cap, t: i64, rtt: i64) -> i64 {
        self.seg(cap, t, Who::Client, SYN, &[]);
        self.seg(cap, t + rtt / 2, Who::Server, SYN | ACK, &[]);
        self.seg(cap, t + rtt, Who::Client, ACK, &[]);
        t + rtt
    }

    pub(super) fn data(&mut self, cap: &mut Cap, t: i64, who: Who, len: usize) {
        self.seg(cap, t, who, ACK, &vec![b'x'; len]);
    }

    pub(super) fn ack(&mut self, cap: &mut Cap, t: i64, who: Who) {
        self.seg(cap, t, who, ACK, &[]);
    }

    pub(super) fn fin(&mut self, cap: &mut Cap, t: i64, who: Who) {
        self.seg(cap, t, who, FIN | ACK, &[]);
    }

    /// A socket's abort (`tcp_send_active_reset`): RST/ACK, seq = SND.NXT, ack =
    /// RCV.NXT, the socket's IP ID counter.
    pub(super) fn socket_rst(&mut self, cap: &mut Cap, t: i64, who: Who) {
        let (me, peer) = self.ends(who);
        let w = Wire {
            src_mac: me.mac,
            ttl: me.ttl,
            ip_id: me.ip_id,
            window: 0,
            ..Wire::tcp(
                me.ip,
                me.port,
                peer.ip,
                peer.port,
                RST | ACK,
                me.nxt,
                me.rcv,
            )
        };
        me.ip_id = me.ip_id.wrapping_add(1);
        cap.push(t, &w);
    }

    /// A kernel reset for a segment with no socket (`tcp_v4_send_reset`): bare RST,
    /// seq = the segment's ack (here: what the peer acknowledged), IP ID 0, window 0.
    pub(super) fn kernel_rst(&mut self, cap: &mut Cap, t: i64, who: Who, ttl: u8, mac: [u8; 6]) {
        let (me, peer) = self.ends(who);
        let w = Wire {
            src_mac: mac,
            ttl,
            ip_id: 0,
            window: 0,
            ..Wire::tcp(
                me.ip,
                me.port,
                peer.ip,
                peer.port,
                RST,
                peer_acked(peer, me),
                0,
            )
        };
        cap.push(t, &w);
    }
}

/// What `peer` last acknowledged of `me`'s data: `me`'s next seq (all received).
pub(super) fn peer_acked(peer: &Host, me: &Host) -> u32 {
    let _ = peer;
    me.nxt
}

pub(super) fn only_rst(out: &[Record]) -> RstEvent {
    let r = rsts(out);
    assert_eq!(r.len(), 1, "{r:#?}");
    r.into_iter().next().unwrap()
}

// ---- 1. injection -----------------------------------------------------------------

#[test]
fn injection_when_suspect_wins_over_every_later_rule() {
    let mut cap = Cap::default();
    let mut c = Conv::web(40_001, 443);
    let t = c.handshake(&mut cap, T0, 20 * MS);
    c.data(&mut cap, t + MS, Who::Client, 300);
    c.data(&mut cap, t + 5 * MS, Who::Server, 900);
    c.ack(&mut cap, t + 15 * MS, Who::Client);
    // Forged "client" RST: TTL 243, the client then keeps sending (data_after).
    let mut forged = c.c.clone();
    forged.ttl = 243;
    let w = Wire {
        ttl: 243,
        ip_id: c.c.ip_id,
        ..Wire::tcp(
            forged.ip,
            forged.port,
            c.s.ip,
            c.s.port,
            RST | ACK,
            c.c.nxt,
            c.c.rcv,
        )
    };
    cap.push(t + 400 * S, &w); // also idle: injection still wins
    c.data(&mut cap, t + 400 * S + 30 * MS, Who::Client, 200);
    let ev = rsts(&cap.run(None)).remove(0);
    assert!(ev.suspect);
    assert!(ev.flags.contains(RstFlag::Idle));
    assert_eq!(ev.cause, Cause::Injection, "{}", ev.cause_detail);
    assert!(
        ev.cause_detail.contains("data_after"),
        "{}",
        ev.cause_detail
    );
}

// ---- 2/4. scan and refused ----------------------------------------------------------

fn syn_rejected(cap: &mut Cap, t: i64, scanner: &str, host: &str, port: u16) {
    let mut c = Conv::new(
        Host::new(scanner, 61_000, 66, 50, 77),
        Host::new(host, port, 10, 64, 0),
    );
    c.seg(cap, t, Who::Client, SYN, &[]);
    // RST/ACK seq 0, ack ISN+1, ID 0 (closed port).
    let w = Wire {
        ip_id: 0,
        window: 0,
        ..Wire::tcp(c.s.ip, port, c.c.ip, 61_000, RST | ACK, 0, c.c.nxt)
    };
    cap.push(t + 200, &w);
}

#[test]
fn refused_answers_a_syn_and_scan_takes_over_once_the_scanner_crosses() {
    let mut cap = Cap::default();
    for h in 0..30u8 {
        syn_rejected(
            &mut cap,
            T0 + i64::from(h) * S,
            "192.0.2.66",
            &format!("203.0.113.{}", 20 + h),
            23,
        );
    }
    let r = rsts(&cap.run(None));
    assert_eq!(r.len(), 30);
    assert!(r[..24]
        .iter()
        .all(|e| e.class == RstClass::Reject && e.cause == Cause::Refused));
    assert!(
        r[24..].iter().all(|e| e.cause == Cause::Scan),
        "{:?}",
        r[24]
    );
    assert!(
        r[0].cause_detail.contains("port 23"),
        "{}",
        r[0].cause_detail
    );
}

// ---- 3. backscatter -----------------------------------------------------------------

#[test]
fn backscatter_from_the_crossing_on() {
    let mut cap = Cap::default();
    for h in 0..30u8 {
        let w = Wire {
            ip_id: 0,
            ..Wire::tcp(
                "192.0.2.99".parse().unwrap(),
                80,
                format!("203.0.113.{}", 20 + h).parse().unwrap(),
                40_000 + u16::from(h),
                RST | ACK,
                0,
                12_345,
            )
        };
        cap.push(T0 + i64::from(h) * S, &w);
    }
    let r = rsts(&cap.run(None));
    assert!(r[..24]
        .iter()
        .all(|e| e.cause == Cause::Unknown && e.class == RstClass::Unsolicited));
    assert!(r[24..].iter().all(|e| e.cause == Cause::Backscatter));
    assert!(
        r[0].cause_detail.contains("no state"),
        "{}",
        r[0].cause_detail
    );
}

// ---- 5. connect_race ----------------------------------------------------------------

#[test]
fn connect_race_smb_139_loses_to_445() {
    let mut cap = Cap::default();
    let client = Host::new("198.51.100.30", 50_445, 30, 128, 10);
    let server445 = Host::new("203.0.113.50", 445, 50, 64, 90_000);
    let server139 = Host::new("203.0.113.50", 139, 50, 64, 70_000);
    let mut win = Conv::new(client.clone(), server445);
    let mut lose = Conv::new(
        Host {
            port: 50_139,
            nxt: 20_000,
            ..client
        },
        server139,
    );
    let est = win.handshake(&mut cap, T0, 2 * MS);
    lose.handshake(&mut cap, T0 + 5 * MS, 2 * MS);
    // Windows drops the 139 connection as soon as 445 works: RST/ACK, nothing sent.
    lose.socket_rst(&mut cap, est + 8 * MS, Who::Client);
    let ev = only_rst(&cap.run(None));
    assert_eq!(ev.cause, Cause::ConnectRace, "{}", ev.cause_detail);
    assert!(ev.cause_detail.contains("445"), "{}", ev.cause_detail);
}

#[test]
fn connect_race_happy_eyeballs_late_synack_answered_by_the_clients_kernel() {
    let mut cap = Cap::default();
    let mut v6 = Conv::new(
        Host::new("2001:db8:c::7", 51_000, 7, 64, 10),
        Host::new("2001:db8:a::10", 443, 10, 64, 500),
    );
    let mut v4 = Conv::new(
        Host::new("198.51.100.7", 52_000, 7, 64, 900),
        Host::new("203.0.113.10", 443, 10, 64, 7_000),
    );
    // IPv6 first; its SYN-ACK is slow. IPv4 250 ms later wins at once.
    v6.seg(&mut cap, T0, Who::Client, SYN, &[]);
    let est = v4.handshake(&mut cap, T0 + 250 * MS, 10 * MS);
    // The client closed the v6 socket in SYN_SENT (sends nothing); the late SYN-ACK is
    // answered by its kernel: bare RST, seq = the SYN-ACK's ack, ID 0.
    v6.seg(&mut cap, est + 30 * MS, Who::Server, SYN | ACK, &[]);
    let mac = v6.c.mac;
    v6.kernel_rst(&mut cap, est + 30 * MS + 40, Who::Client, 64, mac);
    let ev = only_rst(&cap.run(None));
    assert_eq!(ev.class, RstClass::HandshakeAbort);
    assert_eq!(ev.cause, Cause::ConnectRace, "{}", ev.cause_detail);
}

// ---- 6. server_overload -------------------------------------------------------------

/// `n` clients connect; the server's accept queue is full: Linux
/// (`tcp_abort_on_overflow`) answers each handshake ACK with a bare RST at ISN+1, seen
/// here one RTT later (sensor near the clients).
fn overload(n: u8) -> Vec<RstEvent> {
    let mut cap = Cap::default();
    for i in 0..n {
        let mut c = Conv::new(
            Host::new(
                &format!("198.51.100.{}", 40 + i),
                41_000 + u16::from(i),
                40 + i,
                52,
                100,
            ),
            Host::new("203.0.113.10", 80, 10, 64, 9_000 + u32::from(i) * 1000),
        );
        let t = T0 + i64::from(i) * 3 * MS;
        // Sensor near the client: SYN-ACK a full RTT after the SYN, ACK at once.
        c.seg(&mut cap, t, Who::Client, SYN, &[]);
        c.seg(&mut cap, t + 30 * MS, Who::Server, SYN | ACK, &[]);
        c.seg(&mut cap, t + 30 * MS + 50, Who::Client, ACK, &[]);
        c.data(&mut cap, t + 30 * MS + 80, Who::Client, 120);
        let mac = c.s.mac;
        let w = Wire {
            src_mac: mac,
            ip_id: 0,
            window: 0,
            ..Wire::tcp(
                c.s.ip,
                80,
                c.c.ip,
                c.c.port,
                RST,
                9_000 + u32::from(i) * 1000 + 1,
                0,
            )
        };
        cap.push(t + 60 * MS + 70, &w);
    }
    rsts(&cap.run(None))
}

#[test]
fn server_overload_needs_a_burst_on_one_service() {
    let burst = overload(6);
    assert!(
        burst.iter().all(|e| e.cause == Cause::ServerOverload),
        "{burst:#?}"
    );
    assert!(
        burst[0].cause_detail.contains("6 flows"),
        "{}",
        burst[0].cause_detail
    );
    // Alone, the same reset is the server answering a request it did not read.
    let one = overload(1);
    assert_eq!(
        one[0].cause,
        Cause::UnreadDataClose,
        "{}",
        one[0].cause_detail
    );
}

// ---- 7. state_loss ------------------------------------------------------------------

#[test]
fn state_loss_when_the_servers_mac_changes_and_failover_is_reported() {
    let mut cap = Cap::default();
    for i in 0..3u8 {
        let mut c = Conv::new(
            Host::new(
                &format!("198.51.100.{}", 60 + i),
                42_000 + u16::from(i),
                60 + i,
                52,
                10,
            ),
            Host::new("203.0.113.80", 443, 0xa, 64, 30_000 * (u32::from(i) + 1)),
        );
        let t = c.handshake(&mut cap, T0 + i64::from(i) * MS, 20 * MS);
        c.data(&mut cap, t + MS, Who::Client, 200);
        c.data(&mut cap, t + 3 * MS, Who::Server, 700);
        c.ack(&mut cap, t + 13 * MS, Who::Client);
        // Failover at T0 + 60 s: the backup (MAC ...:0b) has no state; the client's
        // next request gets a bare RST, ID 0, from the new MAC.
        let tr = T0 + 60 * S + i64::from(i) * 10 * MS;
        c.data(&mut cap, tr, Who::Client, 180);
        c.kernel_rst(&mut cap, tr + 40, Who::Server, 64, [2, 0, 0, 0, 0, 0xb]);
    }
    let out = cap.run(None);
    let r = rsts(&out);
    assert!(
        r.iter().all(|e| e.cause == Cause::StateLoss && !e.suspect),
        "{r:#?}"
    );
    let f: Vec<Anomaly> = anomalies(&out)
        .into_iter()
        .filter(|a| a.kind == AnomalyKind::Failover)
        .collect();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].subject, "203.0.113.80");
    assert!(
        f[0].detail
            .contains("02:00:00:00:00:0a to 02:00:00:00:00:0b"),
        "{}",
        f[0].detail
    );
}

#[test]
fn state_loss_after_a_reboot_silence_on_three_flows() {
    let mut cap = Cap::default();
    for i in 0..3u8 {
        let mut c = Conv::new(
            Host::new(
                &format!("198.51.100.{}", 70 + i),
                43_000 + u16::from(i),
                70 + i,
                52,
                10,
            ),
            Host::new("203.0.113.90", 22, 0x90, 64, 40_000 * (u32::from(i) + 1)),
        );
        let t = c.handshake(&mut cap, T0 + i64::from(i) * MS, 20 * MS);
        c.data(&mut cap, t + MS, Who::Client, 100);
        c.data(&mut cap, t + 3 * MS, Who::Server, 100);
        c.ack(&mut cap, t + 13 * MS, Who::Client);
        // The server dies at T0 + 1 s; the client's data goes unanswered and is
        // retransmitted until the host is back at T0 + 50 s and resets it.
        let lost = c.c.nxt;
        c.data(&mut cap, T0 + 2 * S, Who::Client, 100);
        for k in 0..3 {
            let w = Wire {
                ttl: 52,
                ip_id: 7,
                payload: &[b'x'; 100],
                ..Wire::tcp(c.c.ip, c.c.port, c.s.ip, 22, ACK, lost, c.c.rcv)
            };
            cap.push(T0 + (4 + 8 * k) * S, &w);
        }
        let mac = c.s.mac;
        let w = Wire {
            src_mac: mac,
            ip_id: 0,
            window: 0,
            ..Wire::tcp(c.s.ip, 22, c.c.ip, c.c.port, RST, c.c.rcv, 0)
        };
        let tr = T0 + 50 * S + i64::from(i) * 100 * MS;
        let w2 = Wire {
            ttl: 52,
            payload: &[b'x'; 100],
            ..Wire::tcp(c.c.ip, c.c.port, c.s.ip, 22, ACK, lost, c.c.rcv)
        };
        cap.push(tr, &w2);
        cap.push(tr + 50, &w);
    }
    let r = rsts(&cap.run(None));
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|e| e.cause == Cause::StateLoss), "{r:#?}");
    assert!(
        r[0].cause_detail.contains("silent"),
        "{}",
        r[0].cause_detail
    );
}

// ---- 8. keepalive_race (and its conflict with idle) ---------------------------------

fn keepalive(idle: i64) -> RstEvent {
    let mut cap = Cap::default();
    let mut c = Conv::web(44_000, 80);
    let t = c.handshake(&mut cap, T0, 20 * MS);
    c.data(&mut cap, t + MS, Who::Client, 300);
    c.data(&mut cap, t + 3 * MS, Who::Server, 2000);
    c.ack(&mut cap, t + 13 * MS, Who::Client);
    // The server closes the idle connection as the client sends its next request: the
    // two cross (the request does not ACK the FIN).
    let tf = t + 13 * MS + idle;
    c.fin(&mut cap, tf, Who::Server);
    let fin_seen = c.c.rcv;
    c.c.rcv = fin_seen.wrapping_sub(1); // the client had not seen the FIN
    c.data(&mut cap, tf + 2 * MS, Who::Client, 310);
    c.c.rcv = fin_seen;
    // The server's socket is closed: its kernel answers with a bare RST, ID 0.
    let mac = c.s.mac;
    c.kernel_rst(&mut cap, tf + 22 * MS, Who::Server, 64, mac);
    only_rst(&cap.run(None))
}

#[test]
fn keepalive_race_fin_after_idle_crossed_by_a_request() {
    let ev = keepalive(15 * S);
    assert_eq!(ev.cause, Cause::KeepaliveRace, "{}", ev.cause_detail);
    assert!(!ev.suspect);
    assert!(ev.cause_detail.contains("15 s idle"), "{}", ev.cause_detail);
}

#[test]
fn keepalive_race_wins_over_idle_timeout() {
    let ev = keepalive(400 * S);
    assert!(ev.flags.contains(RstFlag::Idle) || ev.silence_ms < 300_000);
    assert_eq!(ev.cause, Cause::KeepaliveRace, "{}", ev.cause_detail);
}

#[test]
fn write_after_close_without_idle_or_crossing() {
    let ev = keepalive(100 * MS);
    assert_eq!(ev.cause, Cause::WriteAfterClose, "{}", ev.cause_detail);
}

// ---- 9. idle_timeout: a firewall resets the sender of the first segment -------------

#[test]
fn idle_timeout_firewall_resets_the_sender_of_the_first_segment_after_silence() {
    let mut cap = Cap::default();
    let mut c = Conv::web(45_000, 5432);
    let t = c.handshake(&mut cap, T0, 20 * MS);
    c.data(&mut cap, t + MS, Who::Client, 100);
    c.data(&mut cap, t + 3 * MS, Who::Server, 100);
    c.ack(&mut cap, t + 13 * MS, Who::Client);
    // An hour later the client speaks; the firewall (one hop closer than the server:
    // TTL 65 at the sensor instead of 64 — the sensor is beyond it from the server)
    // resets the client: bare RST, exact seq, ID 0, claiming the server as source.
    let ts = t + 13 * MS + 3605 * S;
    c.data(&mut cap, ts, Who::Client, 120);
    let mac = c.s.mac;
    c.kernel_rst(&mut cap, ts + 30, Who::Server, 65, mac);
    let ev = only_rst(&cap.run(None));
    assert!(ev.flags.contains(RstFlag::Idle), "{:?}", ev.flags);
    assert!(ev.flags.contains(RstFlag::SeqExact), "{:?}", ev.flags);
    assert!(ev.flags.contains(RstFlag::TtlMismatch), "{:?}", ev.flags);
    assert!(!ev.flags.contains(RstFlag::IpidMismatch));
    assert!(!ev.suspect);
    assert_eq!(ev.cause, Cause::IdleTimeout, "{}", ev.cause_detail);
    assert_eq!(ev.silence_ms / 1000, 3605);
    assert!(
        ev.cause_detail.contains("silent 3605 s"),
        "{}",
        ev.cause_detail
    );
}

// ---- 10. middlebox (and its conflict with abort) ------------------------------------

#[test]
fn middlebox_ips_resets_both_ends_and_wins_over_abort() {
    let mut cap = Cap::default();
    let mut c = Conv::web(46_000, 443);
    let t = c.handshake(&mut cap, T0, 20 * MS);
    c.data(&mut cap, t + MS, Who::Client, 400);
    c.data(&mut cap, t + 3 * MS, Who::Server, 1400);
    c.ack(&mut cap, t + 13 * MS, Who::Client);
    // An IPS 3 hops from the server resets both ends at once with its own TTL.
    let (cip, sip) = (c.c.ip, c.s.ip);
    let to_client = Wire {
        ttl: 61,
        ip_id: 0,
        ..Wire::tcp(sip, 443, cip, 46_000, RST | ACK, c.s.nxt, c.s.rcv)
    };
    let to_server = Wire {
        ttl: 61,
        ip_id: 0,
        ..Wire::tcp(cip, 46_000, sip, 443, RST | ACK, c.c.nxt, c.c.rcv)
    };
    cap.push(t + 2 * S, &to_client);
    cap.push(t + 2 * S + 1, &to_server);
    let r = rsts(&cap.run(None));
    assert_eq!(r.len(), 2);
    for ev in &r {
        assert_eq!(ev.class, RstClass::Abort);
        assert!(!ev.suspect, "{ev:?}");
        assert_eq!(ev.cause, Cause::Middlebox, "{}", ev.cause_detail);
    }
}

// ---- 12. unread_data_close ----------------------------------------------------------

#[test]
fn unread_data_close_server_closes_with_a_request_unread() {
    let mut cap = Cap::default();
    let mut c = Conv::web(47_000, 8080);
    let t = c.handshake(&mut cap, T0, 20 * MS);
    c.data(&mut cap, t + MS, Who::Client, 1448);
    c.data(&mut cap, t + MS + 20, Who::Client, 1448);
    c.ack(&mut cap, t + MS + 60, Who::Server); // two full segments ACKed at once
    c.socket_rst(&mut cap, t + 4 * MS, Who::Server); // ack = everything received
    let ev = only_rst(&cap.run(None));
    assert!(ev.flags.contains(RstFlag::SeqExact));
    assert_eq!(ev.cause, Cause::UnreadDataClose, "{}", ev.cause_detail);
}

#[test]
fn unread_data_close_when_data_crosses_the_rst_and_follow_up_is_not_evidence() {
    let mut cap = Cap::default();
    let mut c = Conv::web(48_000, 8080);
    let t = c.handshake(&mut cap, T0, 20 * MS);
    c.data(&mut cap, t + MS, Who::Client, 500);
    c.data(&mut cap, t + 2 * MS, Who::Server, 500);
    c.ack(&mut cap, t + 12 * MS, Who::Client);
    // The server resets (RST/ACK) 2 s later while the client starts an upload: the
    // client's segment crosses the RST and draws a second, bare RST with the same seq
    // and ID 0 (Linux answers segments for a closed socket).
    c.socket_rst(&mut cap, t + 2 * S, Who::Server);
    c.data(&mut cap, t + 2 * S + 3 * MS, Who::Client, 1000);
    let mac = c.s.mac;
    c.kernel_rst(&mut cap, t + 2 * S + 3 * MS + 40, Who::Server, 64, mac);
    let r = rsts(&cap.run(None));
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].seq, r[1].seq);
    for ev in &r {
        assert!(!ev.suspect, "{ev:?}");
        assert!(!ev.flags.contains(RstFlag::IpidMismatch), "{:?}", ev.flags);
    }
    assert_eq!(r[0].cause, Cause::UnreadDataClose, "{}", r[0].cause_detail);
    assert!(
        r[0].cause_detail.contains("crossed"),
        "{}",
        r[0].cause_detail
    );
}

// ---- 13. abort ----------------------------------------------------------------------

#[test]
fn abort_linger_zero_after_everything_was_acknowledged() {
    let mut cap = Cap::default();
    let mut c = Conv::web(49_000, 443);
    let t = c.handshake(&mut cap, T0, 20 * MS);
    c.data(&mut cap, t + MS, Who::Client, 300);
    c.data(&mut cap, t + 3 * MS, Who::Server, 900);
    c.ack(&mut cap, t + 13 * MS, Who::Client);
    c.socket_rst(&mut cap, t + 3 * S, Who::Client);
    let ev = only_rst(&cap.run(None));
    assert_eq!(
        (ev.class, ev.cause),
        (RstClass::Abort, Cause::Abort),
        "{}",
        ev.cause_detail
    );
    assert!(!ev.flags.contains(RstFlag::TtlMismatch));
}

// ---- 14. unknown and the class of one-sided flows ------------------------------------

#[test]
fn unknown_for_an_rst_with_no_state() {
    let mut cap = Cap::default();
    let w = Wire::tcp(
        "203.0.113.10".parse().unwrap(),
        443,
        "198.51.100.9".parse().unwrap(),
        50_000,
        RST,
        1,
        0,
    );
    cap.push(T0, &w);
    let ev = only_rst(&cap.run(None));
    assert_eq!(
        (ev.class, ev.cause),
        (RstClass::Unsolicited, Cause::Unknown)
    );
}

#[test]
fn one_sided_flow_with_more_than_syns_is_unsolicited_only_syns_is_handshake_abort() {
    let run = |with_data: bool| {
        let mut cap = Cap::default();
        let mut c = Conv::web(50_000, 443);
        c.seg(&mut cap, T0, Who::Client, SYN, &[]);
        if with_data {
            c.c.rcv = 777; // the SYN-ACK went another way (asymmetric routing)
            c.ack(&mut cap, T0 + 20 * MS, Who::Client);
            c.data(&mut cap, T0 + 21 * MS, Who::Client, 100);
        }
        c.socket_rst(&mut cap, T0 + S, Who::Client);
        only_rst(&cap.run(None))
    };
    let one_sided = run(true);
    assert_eq!(one_sided.class, RstClass::Unsolicited);
    assert_eq!(
        (one_sided.dir, one_sided.cause),
        (Dir::Unknown, Cause::Unknown)
    );
    let syn_only = run(false);
    assert_eq!(syn_only.class, RstClass::HandshakeAbort);
    assert_eq!(syn_only.cause, Cause::Unknown);
}

#[test]
fn a_bare_rst_with_ip_id_zero_is_no_ipid_mismatch() {
    let mut cap = Cap::default();
    let mut c = Conv::web(51_000, 80);
    let t = c.handshake(&mut cap, T0, 20 * MS);
    c.data(&mut cap, t + MS, Who::Client, 100);
    c.data(&mut cap, t + 3 * MS, Who::Server, 100);
    c.fin(&mut cap, t + 4 * MS, Who::Server);
    c.ack(&mut cap, t + 14 * MS, Who::Client);
    c.data(&mut cap, t + 2 * S, Who::Client, 100); // to a closed socket
    let mac = c.s.mac;
    c.kernel_rst(&mut cap, t + 2 * S + 40, Who::Server, 64, mac);
    let ev = only_rst(&cap.run(None));
    assert_eq!(ev.ip_id, 0);
    assert!(!ev.flags.contains(RstFlag::IpidMismatch), "{:?}", ev.flags);
    assert!(ev.flags.contains(RstFlag::AfterFin));
    assert_eq!(ev.cause, Cause::WriteAfterClose, "{}", ev.cause_detail);
}

// ---- what the flow remembers ----------------------------------------------------------

#[test]
fn rst_count_stays_exact_past_its_one_byte() {
    let mut cap = Cap::default();
    let mut c = Conv::web(52_000, 179);
    let t = c.handshake(&mut cap, T0, 20 * MS);
    // A blind attacker walks the window: 300 RSTs on one flow.
    for k in 0..300u32 {
        let w = Wire {
            ttl: 200,
            ..Wire::tcp(
                c.c.ip,
                c.c.port,
                c.s.ip,
                179,
                RST,
                c.c.nxt.wrapping_add(k * 65_535),
                0,
            )
        };
        cap.push(t + S + i64::from(k) * 100, &w);
    }
    let out = cap.run(None);
    let flow = out
        .iter()
        .find_map(|r| match r {
            Record::Flow(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(flow.rst_count, 300);
    assert_eq!(rsts(&out).len(), 300);
}

#[test]
fn established_flows_evicted_before_their_idle_memory_are_counted() {
    let mut cap = Cap::default();
    for i in 0..3u8 {
        let mut c = Conv::web(53_000 + u16::from(i), 443);
        c.handshake(&mut cap, T0 + i64::from(i) * S, 20 * MS);
    }
    let mut frames = cap.frames;
    frames.sort_by_key(|f| f.0);
    let cfg = EngineConfig {
        flow_capacity: 2,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(&cfg);
    let mut out: Vec<Record> = vec![];
    for (t, f) in &frames {
        e.process(*t, crate::gen::LINK_TYPE, f, &mut out);
    }
    let forgotten = e
        .counters()
        .into_iter()
        .find(|(n, _)| *n == "flows_forgotten_early")
        .unwrap()
        .1;
    assert_eq!(forgotten, 1);
}

#[test]
fn an_rst_at_the_senders_unacknowledged_fin_is_not_seq_behind() {
    let mut cap = Cap::default();
    let mut c = Conv::web(54_000, 80);
    let t = c.handshake(&mut cap, T0, 20 * MS);
    c.data(&mut cap, t + MS, Who::Client, 100);
    c.data(&mut cap, t + 3 * MS, Who::Server, 700);
    c.ack(&mut cap, t + 13 * MS, Who::Client);
    c.fin(&mut cap, t + 2 * S, Who::Server);
    // The client's request crossed the FIN: it acknowledges the data, not the FIN; the
    // closed socket's kernel answers with seq = that ack (the FIN's own seq).
    let fin_seq = c.s.nxt.wrapping_sub(1);
    c.c.rcv = fin_seq;
    c.data(&mut cap, t + 2 * S + MS, Who::Client, 90);
    let w = Wire {
        src_mac: c.s.mac,
        ip_id: 0,
        window: 0,
        ..Wire::tcp(c.s.ip, 80, c.c.ip, 54_000, RST, fin_seq, 0)
    };
    cap.push(t + 2 * S + MS + 40, &w);
    let ev = only_rst(&cap.run(None));
    assert!(!ev.flags.contains(RstFlag::SeqBehind), "{:?}", ev.flags);
    assert!(!ev.suspect);
    assert_eq!(ev.cause, Cause::WriteAfterClose, "{}", ev.cause_detail);
}
