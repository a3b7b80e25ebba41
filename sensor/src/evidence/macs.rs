//! Which MAC each server address answered handshakes from (the `failover` anomaly's
//! "old → new MAC" detail).
//!
//! A flow keeps only an 8-bit tag of its responder's MAC; to name the MACs when a VIP
//! moves, this remembers the full MAC per server address from its SYN-ACKs (one per
//! connection, so cheap). Bounded by [`MAX_ADDRS`]; an address that does not fit is
//! counted and its failover detail says "unknown MAC".

use hashbrown::HashMap;
use rstwatch_schema::IpBytes;

pub const MAX_ADDRS: usize = 65_536;

#[derive(Default)]
pub struct ServerMacs {
    by_addr: HashMap<IpBytes, u64>,
    pub full: u64,
}

impl ServerMacs {
    /// `server` sent a SYN-ACK from `mac`.
    pub fn handshake(&mut self, server: IpBytes, mac: u64) {
        if mac == 0 {
            return;
        }
        if let Some(m) = self.by_addr.get_mut(&server) {
            *m = mac;
        } else if self.by_addr.len() < MAX_ADDRS {
            self.by_addr.insert(server, mac);
        } else {
            self.full += 1;
        }
    }

    /// The MAC `server` answered handshakes from, if known.
    pub fn get(&self, server: &IpBytes) -> Option<u64> {
        self.by_addr.get(server).copied()
    }
}

/// `aa:bb:cc:dd:ee:ff`, or `unknown` for 0.
pub struct Mac(pub u64);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 {
            return f.write_str("unknown MAC");
        }
        let b = self.0.to_be_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[2], b[3], b[4], b[5], b[6], b[7]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_latest_handshake_mac() {
        let mut m = ServerMacs::default();
        let a: IpBytes = "203.0.113.80".parse().unwrap();
        m.handshake(a, 0x0200_0000_000a);
        assert_eq!(Mac(m.get(&a).unwrap()).to_string(), "02:00:00:00:00:0a");
        m.handshake(a, 0x0200_0000_000b);
        assert_eq!(m.get(&a), Some(0x0200_0000_000b));
        assert_eq!(Mac(0).to_string(), "unknown MAC");
    }
}
