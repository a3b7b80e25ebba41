//! Parallel connection attempts of one client (the `connect_race` cause).
//!
//! Clients open several connections at once and drop the losers: Windows SMB clients
//! connect to 139 and 445 together (Samba's note: the second starts ~5 ms after the
//! first) and reset whichever loses; Happy Eyeballs (RFC 8305) starts an IPv6 and an
//! IPv4 attempt 250 ms apart and closes the slower one. The loser's RST looks like an
//! abort, but nothing is wrong.
//!
//! When a connection becomes established, the book records it under its client's
//! address, and under the client's source MAC where the capture has one. At an RST from
//! a client, [`RaceBook::find`] looks for another connection of the same client whose
//! SYN was within `race_window_ms` of this one's and that became established at most
//! `race_reset_ms` before the RST, to the same server address or to the same port over
//! the other address family. The MAC is what ties a dual-stack client's IPv4 and IPv6
//! addresses together; a MAC seen with more than [`SHARED_MAC_ADDRS`] addresses is a
//! router's (every remote client behind it has it) and is not used.
//!
//! Bounded: [`MAX_CLIENTS`] clients, [`PER_CLIENT`] recent connections each (the oldest
//! is overwritten); a client that does not fit is counted (`race_book_full`).
//!
//! Several workers: flows are spread by their four-tuple, so the two connections of a
//! race usually land on different workers and neither sees the other; the race is then
//! missed (the RST falls to a later rule, usually `abort`). See the README.

use hashbrown::HashMap;
use rstwatch_schema::IpBytes;

/// Clients tracked at most; more are counted in `full`.
pub const MAX_CLIENTS: usize = 65_536;
/// Recent connections kept per client.
pub const PER_CLIENT: usize = 4;
/// A MAC with more addresses than this behind it is shared (a router's).
pub const SHARED_MAC_ADDRS: usize = 4;

/// One established connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Established {
    /// Client address.
    pub client: IpBytes,
    /// Server address.
    pub server: IpBytes,
    /// Server port.
    pub server_port: u16,
    /// Client port.
    pub client_port: u16,
    /// Time of its SYN.
    pub syn_us: i64,
    /// Time the handshake completed.
    pub est_us: i64,
}

/// Under what a connection is recorded: its client's address, and its client's MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    Mac(u64),
    Addr(IpBytes),
}

#[derive(Default)]
struct Client {
    /// Addresses seen behind this key: the first `addr_count` (at most
    /// SHARED_MAC_ADDRS + 1, which marks the key as shared). In place rather than in a
    /// `Vec` allocated for every new client, since clients are recorded at every
    /// handshake (RESULTS.md, "Reading or mapping": 0.85 % fewer instructions in
    /// `replay`).
    addrs: [IpBytes; SHARED_MAC_ADDRS + 1],
    addr_count: usize,
    recent: [Option<Established>; PER_CLIENT],
    next: usize,
}

impl Client {
    /// Notes `addr` behind this key, up to one past the shared bound.
    fn note_addr(&mut self, addr: IpBytes) {
        let n = self.addr_count;
        if n < self.addrs.len() && !self.addrs[..n].contains(&addr) {
            self.addrs[n] = addr;
            self.addr_count = n + 1;
        }
    }

    /// Whether more addresses than [`SHARED_MAC_ADDRS`] were seen behind this key.
    fn is_shared(&self) -> bool {
        self.addr_count > SHARED_MAC_ADDRS
    }
}

/// What the RST is checked against.
#[derive(Debug, Clone, Copy)]
pub struct RaceQuery {
    /// Client address.
    pub client: IpBytes,
    /// Client source MAC (as a number).
    pub client_mac: u64,
    /// Client port.
    pub client_port: u16,
    /// Server address.
    pub server: IpBytes,
    /// Server port.
    pub server_port: u16,
    /// This flow's SYN.
    pub syn_us: i64,
    /// Time of the RST.
    pub rst_us: i64,
    /// `race_window_ms`, µs: SYNs at most this far apart are parallel.
    pub window_us: i64,
    /// `race_reset_ms`, µs: the loser is reset at most this long after the winner's establishment.
    pub reset_us: i64,
}

/// The parallel connection that won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaceWinner {
    /// The winner's server address.
    pub server: IpBytes,
    /// The winner's server port.
    pub server_port: u16,
    /// |this SYN − winner's SYN|.
    pub syn_gap_us: i64,
    /// RST time − winner's establishment.
    pub after_est_us: i64,
}

/// Recent established connections per client, bounded: which parallel attempt won.
#[derive(Default)]
pub struct RaceBook {
    clients: HashMap<ClientKey, Client>,
    /// Clients not tracked because the book was full.
    pub full: u64,
}

impl RaceBook {
    /// Records an established connection whose completing ACK came from `client_mac`.
    pub fn established(&mut self, e: Established, client_mac: u64) {
        self.record(ClientKey::Addr(e.client), e);
        if client_mac != 0 {
            self.record(ClientKey::Mac(client_mac), e);
        }
    }

    fn record(&mut self, key: ClientKey, e: Established) {
        // The length first: below the bound (nearly always) this costs no second lookup.
        if self.clients.len() >= MAX_CLIENTS && !self.clients.contains_key(&key) {
            // Make room from entries too old to matter, once, before giving up.
            let horizon = e.est_us - 60_000_000;
            self.clients
                .retain(|_, c| c.recent.iter().flatten().any(|r| r.est_us > horizon));
            if self.clients.len() >= MAX_CLIENTS {
                self.full += 1;
                return;
            }
        }
        let c = self.clients.entry(key).or_default();
        c.note_addr(e.client);
        c.recent[c.next] = Some(e);
        c.next = (c.next + 1) % PER_CLIENT;
    }

    /// The parallel connection this RST's flow lost to, if any.
    pub fn find(&self, q: &RaceQuery) -> Option<RaceWinner> {
        let by_addr = self.clients.get(&ClientKey::Addr(q.client));
        let by_mac = (q.client_mac != 0)
            .then(|| self.clients.get(&ClientKey::Mac(q.client_mac)))
            .flatten()
            .filter(|c| !c.is_shared());
        by_addr
            .into_iter()
            .chain(by_mac)
            .flat_map(|c| c.recent.iter().flatten())
            .filter(|e| {
                let same_flow = e.client == q.client
                    && e.client_port == q.client_port
                    && e.server == q.server
                    && e.server_port == q.server_port;
                let parallel = e.server == q.server
                    || (e.server_port == q.server_port && e.server.is_v4() != q.server.is_v4());
                !same_flow
                    && parallel
                    && (e.syn_us - q.syn_us).abs() <= q.window_us
                    && q.rst_us >= e.est_us
                    && q.rst_us - e.est_us <= q.reset_us
            })
            .map(|e| RaceWinner {
                server: e.server,
                server_port: e.server_port,
                syn_gap_us: (e.syn_us - q.syn_us).abs(),
                after_est_us: q.rst_us - e.est_us,
            })
            .min_by_key(|w| w.after_est_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpBytes {
        s.parse().unwrap()
    }

    fn est(client: &str, port: u16, server: &str, sport: u16, syn: i64, est: i64) -> Established {
        Established {
            client: ip(client),
            client_port: port,
            server: ip(server),
            server_port: sport,
            syn_us: syn,
            est_us: est,
        }
    }

    fn query(client: &str, server: &str, sport: u16, syn: i64, rst: i64) -> RaceQuery {
        RaceQuery {
            client: ip(client),
            client_mac: 0x0200_0000_0001,
            client_port: 50_000,
            server: ip(server),
            server_port: sport,
            syn_us: syn,
            rst_us: rst,
            window_us: 250_000,
            reset_us: 100_000,
        }
    }

    #[test]
    fn smb_139_loses_to_445_on_the_same_server() {
        let mut b = RaceBook::default();
        b.established(
            est("198.51.100.7", 50_001, "203.0.113.5", 445, 0, 20_000),
            0x0200_0000_0001,
        );
        let w = b
            .find(&query("198.51.100.7", "203.0.113.5", 139, 5_000, 30_000))
            .unwrap();
        assert_eq!(
            (w.server_port, w.syn_gap_us, w.after_est_us),
            (445, 5_000, 10_000)
        );
    }

    #[test]
    fn happy_eyeballs_matches_the_other_family_by_mac_and_port() {
        let mut b = RaceBook::default();
        b.established(
            est("2001:db8:c::7", 50_001, "2001:db8:a::5", 443, 0, 40_000),
            0x0200_0000_0001,
        );
        assert!(b
            .find(&query("198.51.100.7", "203.0.113.5", 443, 250_000, 120_000))
            .is_some());
        // Same family, other server: not parallel.
        assert!(b
            .find(&query(
                "198.51.100.7",
                "2001:db8:a::6",
                443,
                250_000,
                120_000
            ))
            .is_none());
    }

    #[test]
    fn too_late_or_too_far_apart_is_no_race() {
        let mut b = RaceBook::default();
        b.established(
            est("198.51.100.7", 50_001, "203.0.113.5", 445, 0, 20_000),
            0x0200_0000_0001,
        );
        assert!(b
            .find(&query("198.51.100.7", "203.0.113.5", 139, 5_000, 200_000))
            .is_none());
        assert!(b
            .find(&query("198.51.100.7", "203.0.113.5", 139, 300_000, 30_000))
            .is_none());
    }

    #[test]
    fn a_routers_mac_only_matches_the_same_client_address() {
        let mut b = RaceBook::default();
        let mac = 0x0200_0000_00ff;
        for i in 0..=SHARED_MAC_ADDRS as u8 {
            let c = format!("198.51.100.{}", 10 + i);
            b.established(est(&c, 50_001, "203.0.113.9", 80, 0, 1_000), mac);
        }
        b.established(
            est("198.51.100.20", 50_001, "203.0.113.5", 445, 0, 20_000),
            mac,
        );
        let mut q = query("198.51.100.21", "203.0.113.5", 139, 5_000, 30_000);
        q.client_mac = mac;
        assert!(b.find(&q).is_none());
        q.client = ip("198.51.100.20");
        assert!(b.find(&q).is_some());
    }
}
