//! How a mirrored frame reached the sensor: the encapsulation of remote mirroring
//! (issue 11). A local SPAN/TAP port delivers plain Ethernet (`""`); a remote mirror
//! wraps the frame in ERSPAN, GRE, VXLAN or Geneve, and carrier links add MPLS or PPPoE.
//! Records carry it with the tunnel identity (`tunnel_id`: VXLAN/Geneve VNI, ERSPAN
//! session ID), so an analyst knows which mirror session a reset came through.

use crate::str_enum::str_enum;

str_enum! {
    /// The innermost encapsulation the sensor removed to reach the mirrored frame.
    #[derive(Default)]
    pub enum Encap {
        /// Plain Ethernet (or another link type): no tunnel.
        #[default]
        None = 0 => "",
        /// GRE carrying Ethernet (0x6558), IPv4, IPv6 or MPLS.
        Gre = 1 => "gre",
        /// ERSPAN type I: GRE 0x88BE without the sequence field, no ERSPAN header.
        Erspan1 = 2 => "erspan1",
        /// ERSPAN type II: GRE 0x88BE with sequence, 8-byte header (session ID).
        Erspan2 = 3 => "erspan2",
        /// ERSPAN type III: GRE 0x22EB, 12-byte header (+ 8-byte platform sub-header).
        Erspan3 = 4 => "erspan3",
        /// VXLAN (UDP, default port 4789): AWS VPC Traffic Mirroring.
        Vxlan = 5 => "vxlan",
        /// Geneve (UDP, default port 6081): AWS Gateway Load Balancer.
        Geneve = 6 => "geneve",
        /// An MPLS label stack (0x8847/0x8848) with IP or an Ethernet pseudowire inside.
        Mpls = 7 => "mpls",
        /// A PPPoE session (0x8864) carrying PPP IPv4/IPv6.
        Pppoe = 8 => "pppoe",
    }
}

impl Encap {
    /// Whether this encapsulation carries a tunnel identity (VNI or session ID).
    pub const fn has_id(self) -> bool {
        matches!(
            self,
            Encap::Erspan2 | Encap::Erspan3 | Encap::Vxlan | Encap::Geneve
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_none_is_empty() {
        assert_eq!(Encap::None.as_str(), "");
        for e in Encap::ALL {
            assert_eq!(e.as_str().parse::<Encap>().unwrap(), *e);
        }
    }
}
