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
//! Addresses and MACs are kept in two maps, so an address's entry is only its recent
//! connections (248 bytes, against 376 for one map whose entries also held a MAC's
//! addresses): the book is written at every handshake, and between two handshakes of
//! one client the rest of the traffic has usually pushed its entry out of the cache
//! (RESULTS.md, "The race book").
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

/// The last [`PER_CLIENT`] connections recorded under one key, oldest overwritten.
#[derive(Default)]
struct Recent {
    /// Slots in use: they fill from the first (the rest are never read).
    len: u8,
    /// The slot the next connection goes to.
    next: u8,
    items: [Established; PER_CLIENT],
}

impl Recent {
    fn push(&mut self, e: Established) {
        self.items[usize::from(self.next)] = e;
        self.next = (self.next + 1) % PER_CLIENT as u8;
        self.len = (self.len + 1).min(PER_CLIENT as u8);
    }

    /// The connections recorded, in slot order.
    fn all(&self) -> &[Established] {
        &self.items[..usize::from(self.len)]
    }

    /// Whether one of them became established after `horizon_us`.
    fn any_after(&self, horizon_us: i64) -> bool {
        self.all().iter().any(|e| e.est_us > horizon_us)
    }
}

/// What the book keeps under a MAC: its recent connections and the addresses seen
/// behind it.
#[derive(Default)]
struct MacClient {
    /// Addresses seen behind this MAC: the first `addr_count` (at most
    /// SHARED_MAC_ADDRS + 1, which marks it as shared).
    addrs: [IpBytes; SHARED_MAC_ADDRS + 1],
    addr_count: usize,
    recent: Recent,
}

impl MacClient {
    /// Notes `addr` behind this MAC, up to one past the shared bound.
    fn note_addr(&mut self, addr: IpBytes) {
        let n = self.addr_count;
        if n < self.addrs.len() && !self.addrs[..n].contains(&addr) {
            self.addrs[n] = addr;
            self.addr_count = n + 1;
        }
    }

    /// Whether more addresses than [`SHARED_MAC_ADDRS`] were seen behind this MAC.
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
    by_addr: HashMap<IpBytes, Recent>,
    by_mac: HashMap<u64, MacClient>,
    /// Clients not tracked because the book was full.
    pub full: u64,
}

impl RaceBook {
    /// Records an established connection whose completing ACK came from `client_mac`.
    pub fn established(&mut self, e: Established, client_mac: u64) {
        if self.fits(|b| b.by_addr.contains_key(&e.client), e.est_us) {
            self.by_addr.entry(e.client).or_default().push(e);
        }
        if client_mac != 0 && self.fits(|b| b.by_mac.contains_key(&client_mac), e.est_us) {
            let c = self.by_mac.entry(client_mac).or_default();
            c.note_addr(e.client);
            c.recent.push(e);
        }
    }

    /// Whether the client that `known` looks for may be written: below the bound
    /// (nearly always, and then without looking), if it is known already, or after the
    /// clients with no connection in the last minute before `now_us` are dropped, once.
    /// Counts one in `full` if not.
    fn fits(&mut self, known: impl Fn(&RaceBook) -> bool, now_us: i64) -> bool {
        if self.clients() < MAX_CLIENTS || known(self) {
            return true;
        }
        let horizon = now_us - 60_000_000;
        self.by_addr.retain(|_, r| r.any_after(horizon));
        self.by_mac.retain(|_, c| c.recent.any_after(horizon));
        if self.clients() < MAX_CLIENTS {
            return true;
        }
        self.full += 1;
        false
    }

    /// Clients held, as [`MAX_CLIENTS`] counts them: addresses and MACs alike.
    fn clients(&self) -> usize {
        self.by_addr.len() + self.by_mac.len()
    }

    /// The parallel connection this RST's flow lost to, if any.
    pub fn find(&self, q: &RaceQuery) -> Option<RaceWinner> {
        let by_addr = self.by_addr.get(&q.client);
        let by_mac = (q.client_mac != 0)
            .then(|| self.by_mac.get(&q.client_mac))
            .flatten()
            .filter(|c| !c.is_shared())
            .map(|c| &c.recent);
        by_addr
            .into_iter()
            .chain(by_mac)
            .flat_map(|r| r.all())
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

    /// A client's last [`PER_CLIENT`] connections are kept, the oldest overwritten.
    #[test]
    fn a_client_keeps_its_last_connections() {
        let mut b = RaceBook::default();
        for port in 1..=6u16 {
            b.established(
                est("198.51.100.7", 50_000 + port, "203.0.113.5", port, 0, 1_000),
                0,
            );
        }
        let found = |sport| {
            b.find(&query("198.51.100.7", "203.0.113.6", sport, 0, 2_000))
                .is_some()
        };
        // A query to another server of the same family matches no one; one to the
        // same server matches its newest kept connection.
        assert!(!found(9));
        let w = b
            .find(&query("198.51.100.7", "203.0.113.5", 9, 0, 2_000))
            .unwrap();
        assert!((3..=6).contains(&w.server_port), "{}", w.server_port);
        let kept: Vec<u16> = b.by_addr[&ip("198.51.100.7")]
            .all()
            .iter()
            .map(|e| e.server_port)
            .collect();
        assert_eq!(kept, [5, 6, 3, 4]);
    }

    /// At the bound a new client is counted, not kept, while known ones still are;
    /// once the clients have been quiet for a minute they make room. A MAC counts as
    /// a client of its own.
    #[test]
    fn a_full_book_counts_new_clients_until_old_ones_age_out() {
        let mut b = RaceBook::default();
        let addr = |i: u32| {
            let [_, x, y, z] = i.to_be_bytes();
            IpBytes::from_v4([10, x, y, z])
        };
        let at = |client: IpBytes, est_us: i64| Established {
            client,
            client_port: 50_000,
            server: ip("203.0.113.5"),
            server_port: 445,
            syn_us: est_us - 100,
            est_us,
        };
        for i in 0..MAX_CLIENTS as u32 - 1 {
            b.established(at(addr(i), 1_000), 0);
        }
        // The last place goes to the address; its MAC does not fit.
        b.established(at(addr(70_000), 2_000), 0x0200_0000_0001);
        assert_eq!(b.full, 1);
        assert!(b.by_mac.is_empty());
        // A new address does not fit; a known one is still recorded.
        b.established(at(addr(70_001), 3_000), 0);
        assert_eq!(b.full, 2);
        assert!(!b.by_addr.contains_key(&addr(70_001)));
        b.established(at(addr(5), 4_000), 0);
        assert_eq!(b.full, 2);
        assert_eq!(b.by_addr[&addr(5)].all().len(), 2);
        // A minute after all of them, a new client makes room by dropping them.
        b.established(at(addr(70_002), 64_000_001), 0x0200_0000_0002);
        assert_eq!(b.full, 2);
        assert_eq!((b.by_addr.len(), b.by_mac.len()), (1, 1));
    }
}
