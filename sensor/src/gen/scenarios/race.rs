//! `connect-race`: clients that open parallel connections and reset the losers (cause
//! `connect_race`).

use rstwatch_schema::{Cause, Dir, RstClass, RstFlag};

use super::{local6_like4, MS, S};
use crate::gen::packet::{ACK, RST, SYN};
use crate::gen::world::{local4, v4, v6, Conn, Host, Os, Pkt, Verdict, Who, World};

const LATE_SYNACK: Verdict<'static> = Verdict {
    class: RstClass::HandshakeAbort,
    dir: Dir::Orig,
    flags: &[RstFlag::SeqExact],
    suspect: false,
    cause: Cause::ConnectRace,
};

const ESTABLISHED_LOSER: Verdict<'static> = Verdict {
    class: RstClass::Abort,
    ..LATE_SYNACK
};

/// The file server both SMB clients connect to (Samba, Linux).
const SMB_SERVER: u8 = 90;

/// `connect-race`, four races of each kind, 3 s apart:
///
/// - Samba's smbclient (Linux, 192.0.2.150) connects to 445 and, 5 ms later, to 139.
///   445 completes first; smbclient closes the 139 socket still in SYN-SENT (which
///   sends nothing), and its kernel answers 139's SYN-ACK with a bare RST (seq = ISN+1,
///   IP ID 0): `handshake_abort`.
/// - Windows (192.0.2.151) connects to both 445 and 139 within a millisecond; both
///   complete and the client resets 139 with RST/ACK right after (`abort`).
/// - Happy Eyeballs (curl, RFC 8305 with a 200 ms attempt delay) on a local dual-stack
///   host (203.0.113.160, 2001:db8:a::160, one MAC) to a remote dual-stack server:
///   IPv6 first, IPv4 200 ms later; the winner is established, then the loser's late
///   SYN-ACK draws the client kernel's bare RST. Twice IPv4 wins, twice IPv6.
pub(crate) fn connect_race(w: &mut World, t0: i64) {
    let mut t = t0 + 100 * MS;
    for _ in 0..2 {
        smbclient(w, t);
        windows_smb(w, t + 3 * S);
        happy_eyeballs(w, t + 6 * S, false);
        happy_eyeballs(w, t + 9 * S, true);
        t += 12 * S;
    }
}

/// Opens `c` at `t`: SYN, and the local server's SYN-ACK; returns the SYN-ACK's time.
fn syn_synack(w: &mut World, c: &mut Conn, t: i64) -> i64 {
    w.send(c, Who::O, t, Pkt::new(SYN));
    let t1 = t + w.react(c, Who::R);
    w.send(c, Who::R, t1, Pkt::new(SYN | ACK));
    t1
}

/// The winner's life after the race: one exchange, closed by the client.
fn use_winner(w: &mut World, c: &mut Conn, t: i64) {
    let (req, resp) = (w.rng.urange(100, 400), w.rng.urange(200, 2000));
    let think = w.rng.range(MS, 3 * MS);
    let tt = w.exchange(c, t + 300, req, resp, think);
    let gap = w.rng.range(10 * MS, S);
    w.close(c, Who::O, tt + gap);
}

fn smbclient(w: &mut World, t: i64) {
    let cl = Host::remote(v4(192, 0, 2, 150), Os::Linux, 57);
    let server = Host::local(local4(SMB_SERVER));
    let mut c445 = w.conn(cl, server, 445);
    let mut c139 = w.conn(cl, server, 139);
    c139.rtt = c445.rtt;
    let s445 = syn_synack(w, &mut c445, t);
    let s139 = syn_synack(w, &mut c139, t + 5 * MS);
    let est = s445 + c445.rtt;
    w.send(&mut c445, Who::O, est, Pkt::new(ACK));
    let tr = s139 + c139.rtt + w.rng.range(0, 200);
    let seq = c139.o.nxt;
    w.send_rst(
        &mut c139,
        Who::O,
        tr,
        Pkt::stateless_rst(RST, seq, 0),
        LATE_SYNACK,
    );
    use_winner(w, &mut c445, est);
}

fn windows_smb(w: &mut World, t: i64) {
    let cl = Host::remote(v4(192, 0, 2, 151), Os::Windows, 121);
    let server = Host::local(local4(SMB_SERVER));
    let mut c445 = w.conn(cl, server, 445);
    let mut c139 = w.conn(cl, server, 139);
    c139.rtt = c445.rtt;
    let s445 = syn_synack(w, &mut c445, t);
    let apart = w.rng.range(100, 900);
    let s139 = syn_synack(w, &mut c139, t + apart);
    let est = s445 + c445.rtt;
    w.send(&mut c445, Who::O, est, Pkt::new(ACK));
    let est139 = (s139 + c139.rtt).max(est + 1);
    w.send(&mut c139, Who::O, est139, Pkt::new(ACK));
    let tr = est139 + w.rng.range(200, 2 * MS);
    w.send_rst(
        &mut c139,
        Who::O,
        tr,
        Pkt::new(RST | ACK),
        ESTABLISHED_LOSER,
    );
    use_winner(w, &mut c445, est);
}

/// The Happy Eyeballs client's MAC: one host, two addresses.
const HE_CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0x00, 0x01, 0x60];
/// curl's `CURLOPT_HAPPY_EYEBALLS_TIMEOUT_MS` default.
const ATTEMPT_DELAY: i64 = 200 * MS;

fn happy_eyeballs(w: &mut World, t: i64, v6_wins: bool) {
    let client = |ip| Host {
        mac: HE_CLIENT_MAC,
        ..Host::local(ip)
    };
    let server4 = Host::remote(v4(192, 0, 2, 170), Os::Linux, 54);
    let server6 = Host::remote(v6([0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 0x170]), Os::Linux, 54);
    let mut c6 = w.conn(client(local6_like4(160)), server6, 443);
    let mut c4 = w.conn(client(local4(160)), server4, 443);
    let rtt4 = w.rng.range(40 * MS, 80 * MS);
    w.send(&mut c6, Who::O, t, Pkt::new(SYN));
    let t4 = t + ATTEMPT_DELAY + w.rng.range(0, 300);
    w.send(&mut c4, Who::O, t4, Pkt::new(SYN));
    let synack4 = t4 + rtt4;
    // The IPv6 path is slow: its SYN-ACK comes after the IPv4 SYN left, and either
    // before the IPv4 SYN-ACK (IPv6 wins) or 20-80 ms after IPv4 was established.
    let synack6 = if v6_wins {
        t4 + rtt4 * w.rng.range(20, 70) / 100
    } else {
        synack4 + w.rng.range(20 * MS, 80 * MS)
    };
    // The exchanges after the race see the same round trips as the handshakes.
    c4.rtt = rtt4;
    c6.rtt = synack6 - t;
    let (mut winner, mut loser, t_win, t_lose) = if v6_wins {
        (c6, c4, synack6, synack4)
    } else {
        (c4, c6, synack4, synack6)
    };
    w.send(&mut winner, Who::R, t_win, Pkt::new(SYN | ACK));
    let est = t_win + w.react(&winner, Who::O);
    w.send(&mut winner, Who::O, est, Pkt::new(ACK));
    w.send(&mut loser, Who::R, t_lose, Pkt::new(SYN | ACK));
    let tr = t_lose + w.react(&loser, Who::O);
    let seq = loser.o.nxt;
    w.send_rst(
        &mut loser,
        Who::O,
        tr,
        Pkt::stateless_rst(RST, seq, 0),
        LATE_SYNACK,
    );
    use_winner(w, &mut winner, est);
}
