//! The simulation the scenarios are written in: hosts with their stack's habits, TCP
//! connections with real sequence arithmetic, and the frame and label output.
//!
//! The sensor is modelled on a mirror port next to the local servers: a local host's
//! reaction to a packet shows up tens to hundreds of microseconds after it, a remote
//! host's after a full round trip.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rstwatch_schema::{AnomalyKind, Cause, Dir, IpBytes, RstClass, RstFlag};

use super::packet::{self, OptLayout, Wire, ACK, FIN, PSH, RST, SYN};
use super::rng::{mix64, Rng};
use super::{Frame, Label};

/// The MAC of the router between the local segment and everything remote.
pub(crate) const ROUTER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];

/// Which stack a host runs: decides option layout, windows, timestamps, TTL baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Os {
    Linux,
    Windows,
    /// Raw-socket packets (nmap): MSS only, window 1024, no DF, random IP IDs.
    Scanner,
}

/// One host as the sensor sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Host {
    pub ip: IpAddr,
    pub mac: [u8; 6],
    /// TTL / hop limit as observed at the sensor (baseline minus hops).
    pub ttl: u8,
    pub os: Os,
    pub local: bool,
}

impl Host {
    /// A Linux host on the sensor's own segment: TTL 64 as sent.
    pub(crate) fn local(ip: IpAddr) -> Host {
        let b = IpBytes::from(ip).0;
        Host {
            ip,
            mac: [0x02, 0x00, 0x0a, b[13], b[14], b[15]],
            ttl: 64,
            os: Os::Linux,
            local: true,
        }
    }

    /// A remote host: frames from and to it carry the router's MAC.
    pub(crate) fn remote(ip: IpAddr, os: Os, ttl: u8) -> Host {
        Host {
            ip,
            mac: ROUTER_MAC,
            ttl,
            os,
            local: false,
        }
    }
}

pub(crate) fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

pub(crate) fn v6(segs: [u16; 8]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        segs[0], segs[1], segs[2], segs[3], segs[4], segs[5], segs[6], segs[7],
    ))
}

/// Local server addresses: 203.0.113.n and 2001:db8:a::n.
pub(crate) fn local4(n: u8) -> IpAddr {
    v4(203, 0, 113, n)
}

pub(crate) fn local6(n: u16) -> IpAddr {
    v6([0x2001, 0xdb8, 0xa, 0, 0, 0, 0, n])
}

/// Which end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// The originator (SYN sender).
    O,
    /// The responder.
    R,
}

impl Who {
    pub(crate) fn peer(self) -> Who {
        match self {
            Who::O => Who::R,
            Who::R => Who::O,
        }
    }

    pub(crate) fn dir(self) -> Dir {
        match self {
            Who::O => Dir::Orig,
            Who::R => Dir::Resp,
        }
    }
}

/// One end's TCP state.
#[derive(Debug, Clone)]
pub(crate) struct Side {
    pub h: Host,
    pub port: u16,
    pub isn: u32,
    /// SND.NXT: the next sequence number this side sends.
    pub nxt: u32,
    /// RCV.NXT: the next sequence number this side expects (what it acknowledges).
    pub rcv: u32,
    /// The per-connection IPv4 identification counter (Linux: `inet_id`, random start).
    pub ipid: u16,
    pub flow_label: u32,
    pub ts_base: u32,
    /// The last TSval received from the peer (echoed as TSecr).
    pub ts_recent: u32,
}

/// A TCP connection between an originator and a responder.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub o: Side,
    pub r: Side,
    /// Round-trip time between the sensor and the remote end, microseconds.
    pub rtt: i64,
    pub v6: bool,
    /// Timestamps negotiated (both ends Linux).
    pub ts_ok: bool,
    /// Window scaling negotiated (both ends offered it).
    pub ws_ok: bool,
}

impl Conn {
    pub(crate) fn side(&self, w: Who) -> &Side {
        match w {
            Who::O => &self.o,
            Who::R => &self.r,
        }
    }

    fn pair_mut(&mut self, w: Who) -> (&mut Side, &mut Side) {
        match w {
            Who::O => (&mut self.o, &mut self.r),
            Who::R => (&mut self.r, &mut self.o),
        }
    }

    fn wscale(os: Os) -> Option<u8> {
        match os {
            Os::Linux => Some(7),
            Os::Windows => Some(8),
            Os::Scanner => None,
        }
    }

    fn mss(&self, w: Who) -> u16 {
        match (self.side(w).h.os, self.v6) {
            (Os::Scanner, _) => 1460,
            (_, false) => 1460,
            (_, true) => 1440,
        }
    }

    /// The raw window field `w` writes after the handshake. Kept constant for the life
    /// of a connection so that "inside the receive window" has one meaning.
    pub(crate) fn wnd_raw(&self, w: Who) -> u16 {
        match (self.side(w).h.os, self.ws_ok) {
            (Os::Linux, true) => 502,
            (Os::Windows, true) => 513,
            (Os::Scanner, _) => 1024,
            (_, false) => 64240,
        }
    }

    /// `w`'s receive window in bytes (the raw field scaled).
    pub(crate) fn rcv_wnd(&self, w: Who) -> u32 {
        let shift = if self.ws_ok {
            Conn::wscale(self.side(w).h.os).unwrap_or(0)
        } else {
            0
        };
        u32::from(self.wnd_raw(w)) << shift
    }

    fn syn_window(&self, w: Who, synack: bool) -> u16 {
        match (self.side(w).h.os, self.v6, synack) {
            (Os::Scanner, _, _) => 1024,
            (Os::Linux, false, true) => 65160,
            (_, false, _) => 64240,
            (_, true, _) => 64800,
        }
    }

    /// Payload bytes per full-sized segment from `w`.
    pub(crate) fn seg_size(&self, w: Who) -> usize {
        let mss = self.mss(w).min(self.mss(w.peer()));
        usize::from(mss) - if self.ts_ok { 12 } else { 0 }
    }

    /// 4-tuple of a packet sent by `w`.
    pub(crate) fn tuple(&self, w: Who) -> (IpBytes, u16, IpBytes, u16) {
        let (a, b) = (self.side(w), self.side(w.peer()));
        (a.h.ip.into(), a.port, b.h.ip.into(), b.port)
    }
}

/// One packet to send on a connection. Unset fields take the sender's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pkt<'a> {
    pub flags: u8,
    pub payload: &'a [u8],
    /// Explicit sequence number: the packet is out of band (a forged or stateless
    /// packet) and does not advance the sender's state.
    pub seq: Option<u32>,
    pub ack: Option<u32>,
    pub ttl: Option<u8>,
    pub ipid: Option<u16>,
    pub window: Option<u16>,
    /// IPv4 don't-fragment bit; unset: set unless the sender is a raw-socket scanner.
    pub df: Option<bool>,
    /// Leave the TCP options off (stateless replies, forged packets).
    pub bare: bool,
}

impl<'a> Pkt<'a> {
    pub(crate) fn new(flags: u8) -> Pkt<'a> {
        Pkt {
            flags,
            payload: &[],
            seq: None,
            ack: None,
            ttl: None,
            ipid: None,
            window: None,
            df: None,
            bare: false,
        }
    }

    pub(crate) fn data(payload: &'a [u8]) -> Pkt<'a> {
        Pkt {
            payload,
            ..Pkt::new(ACK | PSH)
        }
    }

    /// A reset generated without a socket (Linux `tcp_v4_send_reset`): no options, window
    /// 0, IPv4 ID 0 with DF.
    pub(crate) fn stateless_rst(flags: u8, seq: u32, ack: u32) -> Pkt<'a> {
        Pkt {
            seq: Some(seq),
            ack: Some(ack),
            ipid: Some(0),
            window: Some(0),
            df: Some(true),
            bare: true,
            ..Pkt::new(flags)
        }
    }
}

/// What a frame that is not a TCP segment is, as the sensor's parser rejects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonTcp {
    /// Not IP at all (ARP).
    NotIp,
    /// IP, another protocol (VRRP, ICMPv6).
    NotTcp,
}

/// Everything a scenario produced.
pub(crate) struct Output {
    pub frames: Vec<Frame>,
    pub labels: Vec<Label>,
    pub anomalies: Vec<AnomalyKind>,
    pub flows: usize,
    pub not_ip: usize,
    pub not_tcp: usize,
}

/// What the classifier must say about one RST (see [`Label`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verdict<'a> {
    pub class: RstClass,
    pub dir: Dir,
    pub flags: &'a [RstFlag],
    pub suspect: bool,
    pub cause: Cause,
}

impl<'a> Verdict<'a> {
    /// A genuine (not suspect) RST.
    pub(crate) fn genuine(class: RstClass, dir: Dir, flags: &'a [RstFlag], cause: Cause) -> Self {
        Verdict {
            class,
            dir,
            flags,
            suspect: false,
            cause,
        }
    }

    /// A forged RST the classifier must call `suspect` (cause `injection`).
    pub(crate) fn forged(dir: Dir, flags: &'a [RstFlag]) -> Self {
        Verdict {
            class: RstClass::Abort,
            dir,
            flags,
            suspect: true,
            cause: Cause::Injection,
        }
    }
}

/// The generator's state: output, randomness, address allocation.
pub(crate) struct World {
    pub rng: Rng,
    frames: Vec<Frame>,
    labels: Vec<Label>,
    anomalies: Vec<AnomalyKind>,
    /// Connections (distinct 4-tuples) generated.
    pub flows: usize,
    not_ip: usize,
    not_tcp: usize,
    /// Next ephemeral port per client address.
    ports: HashMap<IpAddr, u16>,
    scratch: Vec<u8>,
}

pub(crate) const EPHEMERAL_LO: u16 = 32768;
pub(crate) const EPHEMERAL_HI: u16 = 60999;

impl World {
    pub(crate) fn new(rng: Rng) -> World {
        World {
            rng,
            frames: Vec::new(),
            labels: Vec::new(),
            anomalies: Vec::new(),
            flows: 0,
            not_ip: 0,
            not_tcp: 0,
            ports: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    pub(crate) fn into_parts(self) -> Output {
        Output {
            frames: self.frames,
            labels: self.labels,
            anomalies: self.anomalies,
            flows: self.flows,
            not_ip: self.not_ip,
            not_tcp: self.not_tcp,
        }
    }

    /// Adds a frame that is not a TCP segment (built by `gen::control`).
    pub(crate) fn push_non_tcp(&mut self, ts_us: i64, data: Vec<u8>, kind: NonTcp) {
        match kind {
            NonTcp::NotIp => self.not_ip += 1,
            NonTcp::NotTcp => self.not_tcp += 1,
        }
        self.frames.push(Frame { ts_us, data });
    }

    /// Runs `f` with its own random stream (so each part of `mixed` is the same whatever
    /// else is generated around it), then restores the world's stream.
    pub(crate) fn with_rng(&mut self, rng: Rng, f: impl FnOnce(&mut World)) {
        let saved = std::mem::replace(&mut self.rng, rng);
        f(self);
        self.rng = saved;
    }

    pub(crate) fn expect_anomaly(&mut self, k: AnomalyKind) {
        if !self.anomalies.contains(&k) {
            self.anomalies.push(k);
        }
    }

    /// A remote host whose stack and hop count follow from its address: a third are
    /// Windows (TTL baseline 128), the rest Linux (64), 4 to 19 hops away.
    pub(crate) fn remote_host(&self, ip: IpAddr) -> Host {
        let b = IpBytes::from(ip).0;
        let h = mix64(
            u64::from_be_bytes(b[..8].try_into().unwrap())
                ^ u64::from_be_bytes(b[8..].try_into().unwrap()).rotate_left(17),
        );
        let hops = 4 + (h >> 8) as u8 % 16;
        match h % 3 {
            0 => Host::remote(ip, Os::Windows, 128 - hops),
            _ => Host::remote(ip, Os::Linux, 64 - hops),
        }
    }

    /// A random background client: 198.51.100.1-254 or (with probability `p6`) one of
    /// 4096 addresses in 2001:db8:c::/64.
    pub(crate) fn client(&mut self, p6: f64) -> Host {
        let ip = if self.rng.chance(p6) {
            let n = self.rng.below(4096) as u16;
            v6([0x2001, 0xdb8, 0xc, 0, 0x1000 | (n >> 8), 0, 0, 0x100 + n])
        } else {
            v4(198, 51, 100, 1 + self.rng.below(254) as u8)
        };
        self.remote_host(ip)
    }

    /// The next ephemeral port of `ip`: a random start, then +1 per connection, as a
    /// Linux client does for one destination (never reusing a 4-tuple within a capture
    /// below 28k connections per client address).
    pub(crate) fn ephemeral(&mut self, ip: IpAddr) -> u16 {
        let start = EPHEMERAL_LO + self.rng.below(u64::from(EPHEMERAL_HI - EPHEMERAL_LO)) as u16;
        let p = self.ports.entry(ip).or_insert(start);
        let port = *p;
        *p = if *p >= EPHEMERAL_HI {
            EPHEMERAL_LO
        } else {
            *p + 1
        };
        port
    }

    /// A new connection from `client` (ephemeral port) to `server:dport`.
    pub(crate) fn conn(&mut self, client: Host, server: Host, dport: u16) -> Conn {
        let sport = self.ephemeral(client.ip);
        self.conn_ports(client, sport, server, dport)
    }

    pub(crate) fn conn_ports(
        &mut self,
        client: Host,
        sport: u16,
        server: Host,
        dport: u16,
    ) -> Conn {
        assert_eq!(client.ip.is_ipv6(), server.ip.is_ipv6());
        self.flows += 1;
        let remote_rtt = 10_000 + self.rng.below(140_000) as i64;
        let rtt = if client.local && server.local {
            200 + self.rng.below(300) as i64
        } else {
            remote_rtt
        };
        let side = |h: Host, port: u16, rng: &mut Rng| {
            let isn = rng.u32();
            Side {
                h,
                port,
                isn,
                nxt: isn,
                rcv: 0,
                ipid: rng.u16(),
                flow_label: rng.u32() & 0x000f_ffff,
                ts_base: rng.u32(),
                ts_recent: 0,
            }
        };
        let o = side(client, sport, &mut self.rng);
        let r = side(server, dport, &mut self.rng);
        let ts_ok = client.os == Os::Linux && server.os == Os::Linux;
        let ws_ok = client.os != Os::Scanner && server.os != Os::Scanner;
        Conn {
            o,
            r,
            rtt,
            v6: client.ip.is_ipv6(),
            ts_ok,
            ws_ok,
        }
    }

    /// How long after the sensor saw a packet towards `who` it sees `who`'s reaction.
    pub(crate) fn react(&mut self, c: &Conn, who: Who) -> i64 {
        if c.side(who).h.local {
            30 + self.rng.below(250) as i64
        } else {
            c.rtt + self.rng.below(c.rtt as u64 / 10 + 1) as i64
        }
    }

    /// Gap between back-to-back segments from `who` as seen at the sensor.
    fn seg_gap(&mut self, c: &Conn, who: Who) -> i64 {
        if c.side(who).h.local {
            12 + self.rng.below(20) as i64
        } else {
            80 + self.rng.below(200) as i64
        }
    }

    /// Sends one packet from `who` at `t`; returns its sequence number.
    pub(crate) fn send(&mut self, c: &mut Conn, who: Who, t: i64, p: Pkt<'_>) -> u32 {
        let v6 = c.v6;
        let ts_ok = c.ts_ok;
        let ws_ok = c.ws_ok;
        let syn = p.flags & SYN != 0;
        let synack = syn && p.flags & ACK != 0;
        let window = p.window.unwrap_or_else(|| {
            if syn {
                c.syn_window(who, synack)
            } else {
                c.wnd_raw(who)
            }
        });
        let mss = c.mss(who);
        let peer_os = c.side(who.peer()).h.os;
        let (me, peer) = c.pair_mut(who);
        let seq = p.seq.unwrap_or(me.nxt);
        let ack = match p.ack {
            Some(a) => a,
            None if p.flags & ACK != 0 => me.rcv,
            None => 0,
        };
        let tsval = me.ts_base.wrapping_add((t / 1000) as u32);
        self.scratch.clear();
        if !p.bare {
            if syn {
                let layout = match me.h.os {
                    Os::Linux => OptLayout::Linux,
                    Os::Windows => OptLayout::Windows,
                    Os::Scanner => OptLayout::MssOnly,
                };
                // A SYN offers what the stack does; a SYN-ACK only what both do.
                let offer_ts = me.h.os == Os::Linux && (!synack || ts_ok);
                let offer_ws = me.h.os != Os::Scanner && (!synack || ws_ok);
                let sack = me.h.os != Os::Scanner && (!synack || peer_os != Os::Scanner);
                let ts = offer_ts.then_some((tsval, if synack { me.ts_recent } else { 0 }));
                let ws = if offer_ws {
                    Conn::wscale(me.h.os)
                } else {
                    None
                };
                let o = packet::syn_options(layout, mss, sack, ts, ws);
                self.scratch.extend_from_slice(&o);
            } else if ts_ok {
                self.scratch
                    .extend_from_slice(&packet::ts_option(tsval, me.ts_recent));
            }
            if me.h.os == Os::Linux {
                peer.ts_recent = tsval;
            }
        }
        let ip_id = next_ip_id(&mut self.rng, me, &p);
        let frame = packet::build(&Wire {
            src_mac: me.h.mac,
            dst_mac: peer.h.mac,
            src: me.h.ip,
            dst: peer.h.ip,
            ttl: p.ttl.unwrap_or(me.h.ttl),
            ip_id: if v6 { 0 } else { ip_id },
            df: p.df.unwrap_or(me.h.os != Os::Scanner),
            flow_label: me.flow_label,
            sport: me.port,
            dport: peer.port,
            seq,
            ack,
            flags: p.flags,
            window,
            options: &self.scratch,
            payload: p.payload,
        });
        if p.seq.is_none() {
            advance(me, peer, &p, seq);
        }
        self.frames.push(Frame {
            ts_us: t,
            data: frame,
        });
        seq
    }

    /// Records the label of an RST that `who` (or someone pretending to be `who`) sent
    /// at `t` with sequence number `seq`.
    fn label(&mut self, t: i64, c: &Conn, who: Who, seq: u32, v: Verdict<'_>) {
        let (src, sport, dst, dport) = c.tuple(who);
        self.labels.push(Label {
            ts_us: t,
            src,
            sport,
            dst,
            dport,
            seq,
            class: v.class,
            dir: v.dir,
            flags: v.flags.to_vec(),
            suspect: v.suspect,
            cause: v.cause,
        });
    }

    /// Sends RST `p` from `who` at `t` and labels it with `v`; returns its seq.
    pub(crate) fn send_rst(
        &mut self,
        c: &mut Conn,
        who: Who,
        t: i64,
        p: Pkt<'_>,
        v: Verdict<'_>,
    ) -> u32 {
        debug_assert!(p.flags & RST != 0);
        let seq = self.send(c, who, t, p);
        self.label(t, c, who, seq, v);
        seq
    }

    // ---- conversation building blocks ----

    /// SYN, SYN-ACK, ACK starting at `t`; returns the time of the final ACK.
    pub(crate) fn handshake(&mut self, c: &mut Conn, t: i64) -> i64 {
        self.send(c, Who::O, t, Pkt::new(SYN));
        let t1 = t + self.react(c, Who::R);
        self.send(c, Who::R, t1, Pkt::new(SYN | ACK));
        let t2 = t1 + self.react(c, Who::O);
        self.send(c, Who::O, t2, Pkt::new(ACK));
        t2
    }

    /// Sends `msg` from `who` in full-sized segments (bursts of a growing congestion
    /// window), the peer acknowledging every second segment and the last one. Returns
    /// the time of the last ACK: everything `who` sent is then acknowledged.
    pub(crate) fn transfer(&mut self, c: &mut Conn, who: Who, t: i64, msg: &[u8]) -> i64 {
        let mss = c.seg_size(who);
        let peer = who.peer();
        let mut t = t;
        let mut off = 0;
        let mut burst = 10;
        let mut last_ack_t = t;
        while off < msg.len() {
            let mut sent: Vec<(i64, u32)> = Vec::with_capacity(burst);
            let mut ts = t;
            for _ in 0..burst {
                if off >= msg.len() {
                    break;
                }
                let n = mss.min(msg.len() - off);
                let last = off + n == msg.len();
                let mut p = Pkt::data(&msg[off..off + n]);
                if !last {
                    p.flags = ACK;
                }
                self.send(c, who, ts, p);
                sent.push((ts, c.side(who).nxt));
                off += n;
                ts += self.seg_gap(c, who);
            }
            let lat = self.react(c, peer);
            for (i, &(st, end)) in sent.iter().enumerate() {
                if i % 2 == 1 || i + 1 == sent.len() {
                    let at = st + lat + i as i64;
                    let p = Pkt {
                        ack: Some(end),
                        ..Pkt::new(ACK)
                    };
                    self.send(c, peer, at, p);
                    last_ack_t = at;
                }
            }
            t = last_ack_t + self.react(c, who);
            burst *= 2;
        }
        last_ack_t
    }

    /// Request from the originator, response from the responder after `think` µs.
    /// Returns the time the response is fully acknowledged.
    pub(crate) fn exchange(
        &mut self,
        c: &mut Conn,
        t: i64,
        req_len: usize,
        resp_len: usize,
        think: i64,
    ) -> i64 {
        let port = c.r.port;
        let req = self.message(port, true, req_len);
        let t = self.transfer(c, Who::O, t, &req);
        let resp = self.message(port, false, resp_len);
        self.transfer(c, Who::R, t + think, &resp)
    }

    /// Orderly close: `first` sends FIN, the peer answers FIN-ACK, `first` ACKs.
    /// Returns the time of the last ACK.
    pub(crate) fn close(&mut self, c: &mut Conn, first: Who, t: i64) -> i64 {
        self.send(c, first, t, Pkt::new(FIN | ACK));
        let t1 = t + self.react(c, first.peer());
        self.send(c, first.peer(), t1, Pkt::new(FIN | ACK));
        let t2 = t1 + self.react(c, first);
        self.send(c, first, t2, Pkt::new(ACK));
        t2
    }

    /// Application bytes for a service port: HTTP text on 80/8080, TLS application
    /// data records on 443/8443, BGP keepalives on 179, opaque bytes elsewhere.
    pub(crate) fn message(&mut self, port: u16, request: bool, len: usize) -> Vec<u8> {
        let len = len.max(1);
        match port {
            80 | 8080 => http(request, len, &mut self.rng),
            443 | 8443 => tls(len, &mut self.rng),
            179 => {
                let mut m = Vec::with_capacity(len);
                while m.len() + 19 <= len.max(19) {
                    m.extend_from_slice(&BGP_KEEPALIVE);
                }
                m
            }
            _ => {
                let mut m = vec![0u8; len];
                self.rng.fill(&mut m);
                m
            }
        }
    }
}

pub(crate) const BGP_KEEPALIVE: [u8; 19] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0, 19, 4,
];

/// A BGP OPEN with no optional parameters (29 bytes).
pub(crate) fn bgp_open(asn: u16, id: [u8; 4]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&[0, 29, 1, 4]);
    m.extend_from_slice(&asn.to_be_bytes());
    m.extend_from_slice(&90u16.to_be_bytes());
    m.extend_from_slice(&id);
    m.push(0);
    m
}

/// An HTTP/1.1 request or response of exactly `len` bytes (at least the headers).
fn http(request: bool, len: usize, rng: &mut Rng) -> Vec<u8> {
    if request {
        let mut m = format!(
            "GET /item/{} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: rstwatch-gen/1\r\nAccept: */*\r\n",
            rng.below(1_000_000)
        )
        .into_bytes();
        let pad = len.saturating_sub(m.len() + 11);
        if pad > 0 {
            m.extend_from_slice(b"X-Pad: ");
            m.extend(std::iter::repeat_n(b'a', pad));
            m.extend_from_slice(b"\r\n");
        }
        m.extend_from_slice(b"\r\n");
        m
    } else {
        let head_len = |body: usize| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {body}\r\n\r\n"
            )
            .len()
        };
        // The header's length depends on the digits of the body's: iterate to the fixpoint.
        let mut body = len.saturating_sub(head_len(len));
        for _ in 0..3 {
            body = len.saturating_sub(head_len(body));
        }
        let mut m = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {body}\r\n\r\n"
        )
        .into_bytes();
        m.extend(std::iter::repeat_n(b'z', body));
        m
    }
}

/// TLS 1.2/1.3 application data records totalling `len` bytes (at least one record).
fn tls(len: usize, rng: &mut Rng) -> Vec<u8> {
    let mut m = Vec::with_capacity(len.max(6));
    let mut left = len.max(6);
    while left > 0 {
        // A record needs its 5-byte header and at least one byte of body.
        let body = (left - 5).min(16_384);
        let body = if left - 5 - body > 0 && left - 5 - body < 6 {
            body - 6
        } else {
            body
        };
        m.extend_from_slice(&[0x17, 0x03, 0x03]);
        m.extend_from_slice(&(body as u16).to_be_bytes());
        let at = m.len();
        m.resize(at + body, 0);
        rng.fill(&mut m[at..]);
        left -= 5 + body;
    }
    m
}

/// The IP ID of `me`'s next packet: as given, random for a scanner, else its counter.
fn next_ip_id(rng: &mut Rng, me: &mut Side, p: &Pkt<'_>) -> u16 {
    match p.ipid {
        Some(id) => id,
        None if me.h.os == Os::Scanner => rng.u16(),
        None => {
            let id = me.ipid;
            me.ipid = me.ipid.wrapping_add(1);
            id
        }
    }
}

/// Moves `me`'s next sequence number past what `p` consumed (`p` sent at `seq`), and
/// the peer's receive point with it unless `p` was an RST.
fn advance(me: &mut Side, peer: &mut Side, p: &Pkt<'_>, seq: u32) {
    let len =
        p.payload.len() as u32 + u32::from(p.flags & SYN != 0) + u32::from(p.flags & FIN != 0);
    me.nxt = seq.wrapping_add(len);
    if len > 0 && p.flags & RST == 0 {
        peer.rcv = me.nxt;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_and_http_messages_have_the_asked_length() {
        let mut rng = Rng::derive(1, 1);
        for len in [6, 7, 20, 1000, 16389, 16390, 16394, 16395, 40000] {
            let m = tls(len, &mut rng);
            assert_eq!(m.len(), len, "tls {len}");
            // Walk the records.
            let mut at = 0;
            while at < m.len() {
                assert_eq!(m[at], 0x17);
                let n = usize::from(u16::from_be_bytes([m[at + 3], m[at + 4]]));
                assert!(n >= 1);
                at += 5 + n;
            }
            assert_eq!(at, m.len());
        }
        for len in [200, 500, 1448, 30000] {
            assert_eq!(http(false, len, &mut rng).len(), len, "http resp {len}");
            assert_eq!(http(true, len, &mut rng).len(), len, "http req {len}");
        }
    }
}
