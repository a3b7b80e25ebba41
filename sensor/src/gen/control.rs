//! Frames that are not TCP, for the scenarios that need them: what keepalived puts on
//! the wire when a VRRP backup takes a virtual address over (gratuitous ARP, unsolicited
//! IPv6 neighbour advertisements, VRRP advertisements). The sensor counts them as
//! rejected (`not_ip`, `not_tcp`) and must not stumble over them.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::packet::{finish, sum};

const ETH_ARP: u16 = 0x0806;
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const PROTO_VRRP: u8 = 112;
const PROTO_ICMPV6: u8 = 58;
const BROADCAST: [u8; 6] = [0xff; 6];
/// Ethernet multicast for ff02::1 (all nodes).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Frames shorter than this are padded, as on the wire.
const MIN_FRAME: usize = 60;

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, cap: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(cap.max(MIN_FRAME));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn pad(mut f: Vec<u8>) -> Vec<u8> {
    if f.len() < MIN_FRAME {
        f.resize(MIN_FRAME, 0);
    }
    f
}

/// A gratuitous ARP for `ip` at `mac`, as keepalived sends it on becoming master: a
/// broadcast request whose sender and target address are both the virtual address.
pub(crate) fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = eth(BROADCAST, mac, ETH_ARP, 42);
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&ip.octets());
    pad(f)
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) for `ip` at `mac` to all
/// nodes: override flag set, target link-layer address option.
pub(crate) fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    let c = v6_checksum(ip, ALL_NODES, PROTO_ICMPV6, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = eth(ALL_NODES_MAC, mac, ETH_IPV6, 14 + 40 + icmp.len());
    push_v6_header(&mut f, ip, ALL_NODES, PROTO_ICMPV6, icmp.len());
    f.extend_from_slice(&icmp);
    pad(f)
}

/// One VRRP router's advertisements, sent unicast to its peer node (keepalived
/// `unicast_peer`), with TTL / hop limit 255 as RFC 5798 requires.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VrrpNode<A> {
    pub mac: [u8; 6],
    pub addr: A,
    pub peer_mac: [u8; 6],
    pub peer_addr: A,
    pub vrid: u8,
    pub priority: u8,
}

/// A VRRPv2 advertisement (RFC 3768) of `vip` over IPv4; `ip_id` is the sender's IP ID.
pub(crate) fn vrrp_v2(n: &VrrpNode<Ipv4Addr>, vip: Ipv4Addr, ip_id: u16) -> Vec<u8> {
    // version 2, type 1; VRID; priority; one address; no authentication; 1 s interval.
    let mut m = vec![0x21, n.vrid, n.priority, 1, 0, 1, 0, 0];
    m.extend_from_slice(&vip.octets());
    m.extend_from_slice(&[0; 8]);
    let c = finish(sum(&m, 0));
    m[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = eth(n.peer_mac, n.mac, ETH_IPV4, 14 + 20 + m.len());
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0xc0]);
    f.extend_from_slice(&((20 + m.len()) as u16).to_be_bytes());
    f.extend_from_slice(&ip_id.to_be_bytes());
    f.extend_from_slice(&[0, 0, 255, PROTO_VRRP, 0, 0]);
    f.extend_from_slice(&n.addr.octets());
    f.extend_from_slice(&n.peer_addr.octets());
    let c = finish(sum(&f[ip_start..ip_start + 20], 0));
    f[ip_start + 10..ip_start + 12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&m);
    pad(f)
}

/// A VRRPv3 advertisement (RFC 5798) of `vip` over IPv6, 1 s interval.
pub(crate) fn vrrp_v3(n: &VrrpNode<Ipv6Addr>, vip: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![0x31, n.vrid, n.priority, 1, 0, 100, 0, 0];
    m.extend_from_slice(&vip.octets());
    let c = v6_checksum(n.addr, n.peer_addr, PROTO_VRRP, &m);
    m[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = eth(n.peer_mac, n.mac, ETH_IPV6, 14 + 40 + m.len());
    push_v6_header(&mut f, n.addr, n.peer_addr, PROTO_VRRP, m.len());
    f.extend_from_slice(&m);
    pad(f)
}

fn push_v6_header(f: &mut Vec<u8>, src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) {
    f.extend_from_slice(&0x6000_0000u32.to_be_bytes());
    f.extend_from_slice(&(len as u16).to_be_bytes());
    f.push(next);
    f.push(255);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
}

/// The upper-layer checksum over the IPv6 pseudo-header and `body` (checksum field 0).
fn v6_checksum(src: Ipv6Addr, dst: Ipv6Addr, next: u8, body: &[u8]) -> u16 {
    let mut s = sum(&src.octets(), 0);
    s = sum(&dst.octets(), s);
    s += body.len() as u64 + u64::from(next);
    finish(sum(body, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_and_frames_are_padded() {
        let arp = gratuitous_arp([2, 0, 0, 0, 0, 2], Ipv4Addr::new(203, 0, 113, 80));
        assert_eq!(arp.len(), 60);
        assert_eq!(&arp[12..14], &[0x08, 0x06]);
        let vip6: Ipv6Addr = "2001:db8:a::80".parse().unwrap();
        let na = unsolicited_na([2, 0, 0, 0, 0, 2], vip6);
        assert_eq!(v6_checksum(vip6, ALL_NODES, PROTO_ICMPV6, &na[54..]), 0);
        let node = VrrpNode {
            mac: [2, 0, 0, 0, 0, 1],
            addr: Ipv4Addr::new(203, 0, 113, 81),
            peer_mac: [2, 0, 0, 0, 0, 2],
            peer_addr: Ipv4Addr::new(203, 0, 113, 82),
            vrid: 51,
            priority: 150,
        };
        let v = vrrp_v2(&node, Ipv4Addr::new(203, 0, 113, 80), 7);
        assert_eq!(finish(sum(&v[14..34], 0)), 0);
        assert_eq!(finish(sum(&v[34..54], 0)), 0);
        let node6 = VrrpNode {
            mac: node.mac,
            addr: "2001:db8:a::81".parse().unwrap(),
            peer_mac: node.peer_mac,
            peer_addr: "2001:db8:a::82".parse().unwrap(),
            vrid: 52,
            priority: 150,
        };
        let v = vrrp_v3(&node6, vip6);
        assert_eq!(
            v6_checksum(node6.addr, node6.peer_addr, PROTO_VRRP, &v[54..]),
            0
        );
    }
}
