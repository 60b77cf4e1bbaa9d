//! Ethernet / IPv4 / IPv6 / TCP / UDP frame builder and the counting oracle.
//!
//! Every [`Frame`] carries, next to its bytes, the (protocol, port) keys a
//! per-port counter must count it under. The keys come from the *spec* the
//! frame was built from, never from parsing the bytes, so the oracle is
//! independent of any parser under test.

/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ICMP (never counted).
pub const IPPROTO_ICMP: u8 = 1;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_VLAN: u16 = 0x8100;

/// The network layer of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// IPv4 with `options` (padded to a multiple of 4 bytes) and, when
    /// `fragment_offset` is nonzero, a non-first fragment (carries no ports).
    V4 {
        /// Source address.
        src: [u8; 4],
        /// Destination address.
        dst: [u8; 4],
        /// Raw option bytes (at most 40).
        options: Vec<u8>,
        /// Fragment offset in 8-byte units; nonzero means no L4 header.
        fragment_offset: u16,
    },
    /// IPv6 with a chain of extension headers (each given by its next-header
    /// number: 0 hop-by-hop, 43 routing, 60 destination options, 44 fragment).
    V6 {
        /// Source address.
        src: [u8; 16],
        /// Destination address.
        dst: [u8; 16],
        /// Extension headers, outermost first.
        extensions: Vec<u8>,
    },
    /// An ARP frame (no IP, never counted).
    Arp,
}

/// What a frame is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec {
    /// Optional 802.1Q VLAN id.
    pub vlan: Option<u16>,
    /// The network layer.
    pub network: Network,
    /// IP protocol of the transport layer (TCP, UDP or something uncounted).
    pub protocol: u8,
    /// Transport source port.
    pub src_port: u16,
    /// Transport destination port.
    pub dst_port: u16,
    /// Payload bytes after the transport header.
    pub payload_len: usize,
}

/// A built frame and the keys it must be counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame bytes, starting at the Ethernet destination address.
    pub bytes: Vec<u8>,
    /// (protocol, port) keys: destination and source port, deduplicated;
    /// empty when the frame carries no TCP/UDP ports.
    pub keys: Vec<(u8, u16)>,
}

impl FrameSpec {
    /// A plain IPv4 frame of `protocol` from `src_port` to `dst_port`.
    pub fn ipv4(protocol: u8, src_port: u16, dst_port: u16) -> Self {
        FrameSpec {
            vlan: None,
            network: Network::V4 { src: [10, 0, 0, 1], dst: [10, 0, 0, 2], options: Vec::new(), fragment_offset: 0 },
            protocol,
            src_port,
            dst_port,
            payload_len: 32,
        }
    }

    /// A plain IPv6 frame of `protocol` from `src_port` to `dst_port`.
    pub fn ipv6(protocol: u8, src_port: u16, dst_port: u16) -> Self {
        let mut src = [0u8; 16];
        src[0] = 0xfd;
        src[15] = 1;
        let mut dst = src;
        dst[15] = 2;
        FrameSpec {
            vlan: None,
            network: Network::V6 { src, dst, extensions: Vec::new() },
            protocol,
            src_port,
            dst_port,
            payload_len: 32,
        }
    }

    /// The keys a frame built from this spec must be counted under.
    pub fn keys(&self) -> Vec<(u8, u16)> {
        let has_ports = match &self.network {
            Network::Arp => false,
            Network::V4 { fragment_offset, .. } => *fragment_offset == 0,
            Network::V6 { extensions, .. } => !extensions.contains(&44),
        } && (self.protocol == IPPROTO_TCP || self.protocol == IPPROTO_UDP);
        if !has_ports {
            return Vec::new();
        }
        let mut keys = vec![(self.protocol, self.dst_port)];
        if self.src_port != self.dst_port {
            keys.push((self.protocol, self.src_port));
        }
        keys
    }

    /// Builds the frame.
    pub fn build(&self) -> Frame {
        let mut bytes = Vec::with_capacity(128 + self.payload_len);
        bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // destination MAC
        bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // source MAC
        if let Some(vlan) = self.vlan {
            bytes.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            bytes.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
        }
        let l4 = self.transport();
        match &self.network {
            Network::Arp => {
                bytes.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
                bytes.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                bytes.extend_from_slice(&[0u8; 20]);
            }
            Network::V4 { src, dst, options, fragment_offset } => {
                bytes.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                push_ipv4(&mut bytes, src, dst, options, *fragment_offset, self.protocol, &l4);
            }
            Network::V6 { src, dst, extensions } => {
                bytes.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
                push_ipv6(&mut bytes, src, dst, extensions, self.protocol, &l4);
            }
        }
        Frame { bytes, keys: self.keys() }
    }

    /// The transport header and payload.
    fn transport(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.src_port.to_be_bytes());
        l4.extend_from_slice(&self.dst_port.to_be_bytes());
        match self.protocol {
            IPPROTO_TCP => {
                l4.extend_from_slice(&1u32.to_be_bytes()); // sequence
                l4.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
                l4.extend_from_slice(&[0x50, 0x18]); // 20-byte header, PSH|ACK
                l4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
            }
            IPPROTO_UDP => {
                let len = (8 + self.payload_len) as u16;
                l4.extend_from_slice(&len.to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
            }
            _ => {}
        }
        l4.extend((0..self.payload_len).map(|i| (i & 0xff) as u8));
        l4
    }
}

fn push_ipv4(out: &mut Vec<u8>, src: &[u8; 4], dst: &[u8; 4], options: &[u8], frag: u16, proto: u8, l4: &[u8]) {
    let mut opts = options.to_vec();
    while opts.len() % 4 != 0 {
        opts.push(0); // end-of-options padding
    }
    assert!(opts.len() <= 40, "IPv4 options are at most 40 bytes");
    let ihl = 5 + opts.len() / 4;
    let total = (ihl * 4 + l4.len()) as u16;
    let start = out.len();
    out.push(0x40 | ihl as u8);
    out.push(0);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0x12, 0x34]);
    out.extend_from_slice(&(frag & 0x1fff).to_be_bytes());
    out.push(64);
    out.push(proto);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(src);
    out.extend_from_slice(dst);
    out.extend_from_slice(&opts);
    let sum = checksum(&out[start..]);
    out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(l4);
}

fn push_ipv6(out: &mut Vec<u8>, src: &[u8; 16], dst: &[u8; 16], ext: &[u8], proto: u8, l4: &[u8]) {
    let first = ext.first().copied().unwrap_or(proto);
    let payload = (ext.len() * 8 + l4.len()) as u16;
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&payload.to_be_bytes());
    out.push(first);
    out.push(64);
    out.extend_from_slice(src);
    out.extend_from_slice(dst);
    for (i, _) in ext.iter().enumerate() {
        let next = ext.get(i + 1).copied().unwrap_or(proto);
        // Every extension header here is 8 bytes: next header, length 0 (in
        // 8-byte units beyond the first 8), then 6 bytes of padding / fields.
        out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    out.extend_from_slice(l4);
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A varied set of frames covering every shape the builder makes: VLAN,
/// IPv4 options, IPv6 extension headers, fragments, ARP, ICMP; `ports` are
/// used as destination ports in turn, and `peer` as the source port.
pub fn mixed(ports: &[(u8, u16)], peer: u16) -> Vec<FrameSpec> {
    let mut specs = Vec::new();
    for (i, &(proto, port)) in ports.iter().enumerate() {
        let mut v4 = FrameSpec::ipv4(proto, peer, port);
        let mut v6 = FrameSpec::ipv6(proto, port, peer);
        if i % 2 == 1 {
            v4.vlan = Some(7);
            v4.network = Network::V4 {
                src: [10, 0, 0, 3],
                dst: [10, 0, 0, 4],
                options: vec![1, 1, 7, 3, 0],
                fragment_offset: 0,
            };
            v6.network = Network::V6 { src: [0xfd; 16], dst: [0xfe; 16], extensions: vec![0, 60] };
        }
        specs.push(v4);
        specs.push(v6);
    }
    let mut frag = FrameSpec::ipv4(IPPROTO_UDP, peer, ports.first().map_or(1, |p| p.1));
    frag.network = Network::V4 { src: [10, 0, 0, 1], dst: [10, 0, 0, 2], options: Vec::new(), fragment_offset: 185 };
    specs.push(frag);
    specs.push(FrameSpec { network: Network::Arp, ..FrameSpec::ipv4(0, 0, 0) });
    specs.push(FrameSpec::ipv4(IPPROTO_ICMP, 0, 0));
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_tcp_layout_and_keys() {
        let f = FrameSpec::ipv4(IPPROTO_TCP, 1234, 80).build();
        assert_eq!(&f.bytes[12..14], &[0x08, 0x00]);
        assert_eq!(f.bytes[14], 0x45);
        assert_eq!(f.bytes[23], IPPROTO_TCP);
        assert_eq!(&f.bytes[34..38], &[0x04, 0xd2, 0x00, 0x50]);
        assert_eq!(checksum(&f.bytes[14..34]), 0, "header checksum verifies");
        assert_eq!(f.keys, vec![(IPPROTO_TCP, 80), (IPPROTO_TCP, 1234)]);
        assert_eq!(f.bytes.len(), 14 + 20 + 20 + 32);
    }

    #[test]
    fn vlan_options_and_extensions_move_the_ports() {
        let mut s = FrameSpec::ipv4(IPPROTO_UDP, 5, 53);
        s.vlan = Some(9);
        s.network = Network::V4 { src: [1; 4], dst: [2; 4], options: vec![1, 1, 1], fragment_offset: 0 };
        let f = s.build();
        assert_eq!(&f.bytes[12..14], &[0x81, 0x00]);
        assert_eq!(f.bytes[18], 0x46, "IHL 6 with 4 option bytes");
        assert_eq!(&f.bytes[18 + 24..18 + 28], &[0, 5, 0, 53]);
        let mut s6 = FrameSpec::ipv6(IPPROTO_TCP, 443, 443);
        s6.network = Network::V6 { src: [1; 16], dst: [2; 16], extensions: vec![0, 43] };
        let f6 = s6.build();
        assert_eq!(f6.bytes[20], 0, "first next-header is hop-by-hop");
        assert_eq!(f6.bytes[54], 43);
        assert_eq!(f6.bytes[62], IPPROTO_TCP);
        assert_eq!(&f6.bytes[70..74], &[1, 187, 1, 187]);
        assert_eq!(f6.keys, vec![(IPPROTO_TCP, 443)], "equal ports count once");
    }

    #[test]
    fn uncountable_frames_have_no_keys() {
        for spec in mixed(&[(IPPROTO_UDP, 9)], 10).iter().rev().take(3) {
            assert!(spec.build().keys.is_empty(), "{spec:?}");
        }
    }
}
