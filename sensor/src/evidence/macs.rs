//! Which MAC each server address answered handshakes from (the `failover` anomaly's
//! "old → new MAC" detail).
//!
//! A flow keeps only an 8-bit tag of its responder's MAC; to name the MACs when a VIP
//! moves, this remembers the full MAC per server address from its SYN-ACKs (one per
//! connection, so cheap). Bounded by [`MAX_ADDRS`]; an address that does not fit is
//! counted and its failover detail says "unknown MAC".

use hashbrown::HashMap;
use rstwatch_schema::IpBytes;

/// Server addresses tracked at most; more are counted in `full`.
pub const MAX_ADDRS: usize = 65_536;

/// The source MACs each server address was seen with (the failover rule).
#[derive(Default)]
pub struct ServerMacs {
    /// Address → (current MAC, the one before it).
    by_addr: HashMap<IpBytes, (u64, u64)>,
    /// Addresses not tracked because the map was full.
    pub full: u64,
}

impl ServerMacs {
    /// `server` sent a SYN-ACK from `mac`.
    pub fn handshake(&mut self, server: IpBytes, mac: u64) {
        if mac == 0 {
            return;
        }
        if let Some(m) = self.by_addr.get_mut(&server) {
            if m.0 != mac {
                *m = (mac, m.0);
            }
        } else if self.by_addr.len() < MAX_ADDRS {
            self.by_addr.insert(server, (mac, 0));
        } else {
            self.full += 1;
        }
    }

    /// The MAC `server` answered handshakes from before it used `now` (clients that
    /// reconnect after a failover already get SYN-ACKs from the new MAC), if known.
    pub fn before(&self, server: &IpBytes, now: u64) -> Option<u64> {
        let &(cur, prev) = self.by_addr.get(server)?;
        let old = if cur != now { cur } else { prev };
        (old != 0).then_some(old)
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
    fn remembers_the_mac_before_the_new_one() {
        let mut m = ServerMacs::default();
        let a: IpBytes = "203.0.113.80".parse().unwrap();
        m.handshake(a, 0x0200_0000_000a);
        assert_eq!(
            Mac(m.before(&a, 0x0200_0000_000b).unwrap()).to_string(),
            "02:00:00:00:00:0a"
        );
        // Reconnecting clients already reached the new MAC: the old one is still known.
        m.handshake(a, 0x0200_0000_000b);
        assert_eq!(m.before(&a, 0x0200_0000_000b), Some(0x0200_0000_000a));
        assert_eq!(m.before(&"203.0.113.81".parse().unwrap(), 1), None);
        assert_eq!(Mac(0).to_string(), "unknown MAC");
    }
}
