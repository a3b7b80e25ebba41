//! Who the server of a reset flow is, and which network its client sits in.
//!
//! A report groups RSTs by service (server address and port) and by client network,
//! whichever side sent the RST. The server is the responder (Zeek's orientation, as
//! the engine decided it in `dir`); when the engine had no flow state (`dir` unknown)
//! the likely-server-port rule the engine itself uses picks the side, and failing
//! that the lower port (ephemeral ports are high).

use crate::track::is_likely_server_port;
use rstwatch_schema::{Dir, IpBytes, RstEvent};
use std::fmt;

/// A server address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Service {
    pub addr: IpBytes,
    pub port: u16,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::output::endpoint(self.addr, self.port))
    }
}

/// A client network: the /24 of an IPv4 address, the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClientNet {
    /// The address with the host bits cleared.
    pub prefix: IpBytes,
}

impl ClientNet {
    pub(crate) fn of(addr: IpBytes) -> ClientNet {
        let mut b = addr.0;
        let keep = if addr.is_v4() { 15 } else { 8 };
        b[keep..].fill(0);
        ClientNet { prefix: IpBytes(b) }
    }

    pub(crate) fn prefix_len(&self) -> u8 {
        if self.prefix.is_v4() {
            24
        } else {
            64
        }
    }
}

impl fmt::Display for ClientNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.prefix, self.prefix_len())
    }
}

/// The two ends of an RST's flow as a report sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ends {
    pub service: Service,
    pub client: IpBytes,
}

/// The service and the client of the flow `ev` reset.
pub(crate) fn ends_of(ev: &RstEvent) -> Ends {
    let sender = Service {
        addr: ev.src,
        port: ev.sport,
    };
    let receiver = Service {
        addr: ev.dst,
        port: ev.dport,
    };
    let sender_is_server = match ev.dir {
        Dir::Resp => true,
        Dir::Orig => false,
        Dir::Unknown => sender_looks_like_server(ev.sport, ev.dport),
    };
    let (service, client) = if sender_is_server {
        (sender, receiver.addr)
    } else {
        (receiver, sender.addr)
    };
    Ends { service, client }
}

/// For an RST without flow state: is its sender the server?
fn sender_looks_like_server(sport: u16, dport: u16) -> bool {
    match (is_likely_server_port(sport), is_likely_server_port(dport)) {
        (true, false) => true,
        (false, true) => false,
        // Both or neither well known: the lower port is the service; on a tie the
        // sender, since an RST without state usually answers a probe of that port.
        _ => sport <= dport,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::testing::rst;

    #[test]
    fn server_is_the_responder_whichever_side_sent_the_rst() {
        let mut ev = rst("192.0.2.10", 40000, "203.0.113.5", 443);
        ev.dir = Dir::Orig;
        assert_eq!(ends_of(&ev).service.to_string(), "203.0.113.5:443");
        assert_eq!(ends_of(&ev).client.to_string(), "192.0.2.10");
        let mut ev = rst("203.0.113.5", 443, "192.0.2.10", 40000);
        ev.dir = Dir::Resp;
        assert_eq!(ends_of(&ev).service.to_string(), "203.0.113.5:443");
        assert_eq!(ends_of(&ev).client.to_string(), "192.0.2.10");
    }

    #[test]
    fn unknown_direction_uses_the_likely_server_port_then_the_lower_port() {
        // 8080 is a likely server port, 1000 is not: 8080's side is the service
        // although its port is higher.
        let mut ev = rst("192.0.2.10", 1000, "203.0.113.5", 8080);
        ev.dir = Dir::Unknown;
        assert_eq!(ends_of(&ev).service.to_string(), "203.0.113.5:8080");
        let mut ev = rst("192.0.2.10", 50001, "203.0.113.5", 50000);
        ev.dir = Dir::Unknown;
        assert_eq!(ends_of(&ev).service.to_string(), "203.0.113.5:50000");
    }

    #[test]
    fn client_networks_are_slash_24_and_slash_64() {
        let v4 = ClientNet::of("192.0.2.77".parse().unwrap());
        assert_eq!(v4.to_string(), "192.0.2.0/24");
        let v6 = ClientNet::of("2001:db8:1:2:3:4:5:6".parse().unwrap());
        assert_eq!(v6.to_string(), "2001:db8:1:2::/64");
    }
}
