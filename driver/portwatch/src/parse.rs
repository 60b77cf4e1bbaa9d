//! Frame classification: which (protocol, source port, destination port) a
//! frame belongs to.
//!
//! Runs per packet at up to DISPATCH_LEVEL on a copy of the frame's first
//! bytes (see [`HEADER_BYTES`]), so it is a pure function over a byte slice:
//! no allocation, no panics, unaligned big-endian reads only.

/// Bytes of a frame the data path copies out to classify it: Ethernet with
/// one 802.1Q tag (18) + IPv6 (40) + extension headers + the 4 port bytes.
/// A frame whose TCP/UDP ports lie beyond this is not counted.
pub const HEADER_BYTES: usize = 160;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETH_HEADER: usize = 14;
const VLAN_TAG: usize = 4;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// The transport identity of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub protocol: u8,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Classifies an Ethernet II frame (optionally 802.1Q tagged) carrying
/// IPv4 or IPv6 and TCP or UDP. Returns `None` for anything else, for
/// truncated headers, and for non-first IP fragments (they carry no ports).
pub fn classify(frame: &[u8]) -> Option<Flow> {
    classify_plain_ipv4(frame).or_else(|| classify_general(frame))
}

/// [`classify`] without its fast path: the same answer for every frame
/// (the fast path only answers sooner).
#[inline(never)]
pub fn classify_general(frame: &[u8]) -> Option<Flow> {
    let mut at = ETH_HEADER;
    let mut ethertype = be16(frame, 12)?;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(frame, 16)?;
        at += VLAN_TAG;
    }
    let l3 = frame.get(at..)?;
    let (protocol, l4_offset) = match ethertype {
        ETHERTYPE_IPV4 => ipv4_transport(l3)?,
        ETHERTYPE_IPV6 => ipv6_transport(l3)?,
        _ => return None,
    };
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return None;
    }
    let l4 = l3.get(l4_offset..)?;
    Some(Flow { protocol, src_port: be16(l4, 0)?, dst_port: be16(l4, 2)? })
}

/// The IP version and the source and destination addresses of a frame
/// [`classify`] accepted; an IPv4 address fills the first 4 bytes. Only
/// called for packets on a watched port, so [`classify`] stays as cheap as
/// it was for all the others.
pub fn addresses(frame: &[u8]) -> Option<(u8, [u8; 16], [u8; 16])> {
    let mut at = ETH_HEADER;
    let mut ethertype = be16(frame, 12)?;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(frame, 16)?;
        at += VLAN_TAG;
    }
    let (version, src, len) = match ethertype {
        ETHERTYPE_IPV4 => (4, at + 12, 4),
        ETHERTYPE_IPV6 => (6, at + 8, 16),
        _ => return None,
    };
    let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
    s[..len].copy_from_slice(frame.get(src..src + len)?);
    d[..len].copy_from_slice(frame.get(src + len..src + 2 * len)?);
    Some((version, s, d))
}

/// Bytes of an untagged Ethernet + option-less IPv4 header + the ports.
pub const PLAIN_IPV4: usize = ETH_HEADER + 20 + 4;

/// The common frame in one step: untagged Ethernet, IPv4 without options
/// (first byte 0x45), TCP or UDP, not a later fragment. Fixed offsets in a
/// fixed-size prefix: no bounds check per field. `None` sends the frame to
/// the general parse, which gives the same answer for every frame this
/// accepts (see the tests).
#[inline(always)]
pub fn classify_plain_ipv4(frame: &[u8]) -> Option<Flow> {
    let flow = plain_ipv4_unchecked_protocol(frame)?;
    (flow.protocol == IPPROTO_TCP || flow.protocol == IPPROTO_UDP).then_some(flow)
}

/// [`classify_plain_ipv4`] without its protocol test: any protocol number,
/// the "ports" being the first four bytes after the IPv4 header. For a
/// caller that checks the protocol itself (the data path's
/// `ports::Protocol::of`, which refuses all but TCP and UDP), so that the
/// common frame's protocol is tested once.
#[inline(always)]
pub fn plain_ipv4_unchecked_protocol(frame: &[u8]) -> Option<Flow> {
    let h: &[u8; PLAIN_IPV4] = frame.get(..PLAIN_IPV4)?.try_into().ok()?;
    let ethertype = u16::from_be_bytes([h[12], h[13]]);
    let fragment_offset = u16::from_be_bytes([h[20], h[21]]) & 0x1FFF;
    if ethertype != ETHERTYPE_IPV4 || h[14] != 0x45 || fragment_offset != 0 {
        return None;
    }
    let (src_port, dst_port) = (u16::from_be_bytes([h[34], h[35]]), u16::from_be_bytes([h[36], h[37]]));
    Some(Flow { protocol: h[23], src_port, dst_port })
}

/// IPv4: returns (protocol, offset of the transport header).
fn ipv4_transport(ip: &[u8]) -> Option<(u8, usize)> {
    let first = *ip.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0F) * 4;
    if header_len < 20 || ip.len() < header_len {
        return None;
    }
    let fragment_offset = be16(ip, 6)? & 0x1FFF;
    if fragment_offset != 0 {
        return None;
    }
    Some((ip[9], header_len))
}

/// IPv6: walks the extension headers that may precede TCP/UDP.
fn ipv6_transport(ip: &[u8]) -> Option<(u8, usize)> {
    if *ip.first()? >> 4 != 6 || ip.len() < 40 {
        return None;
    }
    let mut next = ip[6];
    let mut at = 40;
    loop {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                next = *ip.get(at)?;
                at += (usize::from(*ip.get(at + 1)?) + 1) * 8;
            }
            IPPROTO_FRAGMENT => {
                let offset = be16(ip, at + 2)? >> 3;
                if offset != 0 {
                    return None;
                }
                next = *ip.get(at)?;
                at += 8;
            }
            _ => return Some((next, at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, vlan: bool) -> Vec<u8> {
        let mut f = vec![0xAA; 12];
        if vlan {
            f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            f.extend_from_slice(&[0x00, 0x05]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn ipv4(protocol: u8, options: usize, frag: u16) -> Vec<u8> {
        let ihl = 5 + options / 4;
        let mut h = vec![0x40 | ihl as u8, 0, 0, 0, 0, 0];
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        h.extend(std::iter::repeat_n(1u8, options));
        h
    }

    fn ports(src: u16, dst: u16) -> Vec<u8> {
        let mut p = src.to_be_bytes().to_vec();
        p.extend_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    #[test]
    fn ipv4_tcp_and_udp() {
        for proto in [IPPROTO_TCP, IPPROTO_UDP] {
            let f = [eth(ETHERTYPE_IPV4, false), ipv4(proto, 0, 0), ports(1234, 80)].concat();
            assert_eq!(classify(&f), Some(Flow { protocol: proto, src_port: 1234, dst_port: 80 }));
        }
    }

    #[test]
    fn addresses_of_ipv4_vlan_and_ipv6() {
        let f = [eth(ETHERTYPE_IPV4, true), ipv4(IPPROTO_UDP, 0, 0), ports(1, 2)].concat();
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(addresses(&f), Some((4, src, dst)));
        let mut v6 = ipv6(IPPROTO_TCP);
        v6[8..24].copy_from_slice(&[0xA; 16]);
        v6[24..40].copy_from_slice(&[0xB; 16]);
        let f = [eth(ETHERTYPE_IPV6, false), v6, ports(1, 2)].concat();
        assert_eq!(addresses(&f), Some((6, [0xA; 16], [0xB; 16])));
        assert_eq!(addresses(&f[..14 + 39]), None, "truncated");
        assert_eq!(addresses(&eth(0x0806, false)), None);
    }

    #[test]
    fn ipv4_options_and_vlan() {
        let f = [eth(ETHERTYPE_IPV4, true), ipv4(IPPROTO_UDP, 12, 0), ports(53, 5353)].concat();
        assert_eq!(classify(&f), Some(Flow { protocol: IPPROTO_UDP, src_port: 53, dst_port: 5353 }));
    }

    #[test]
    fn ipv4_first_fragment_counts_later_ones_do_not() {
        let more_fragments = 0x2000;
        let first = [eth(ETHERTYPE_IPV4, false), ipv4(IPPROTO_UDP, 0, more_fragments), ports(1, 2)].concat();
        assert!(classify(&first).is_some());
        let later = [eth(ETHERTYPE_IPV4, false), ipv4(IPPROTO_UDP, 0, 185), ports(1, 2)].concat();
        assert_eq!(classify(&later), None);
    }

    fn ipv6(next: u8) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        h.extend_from_slice(&[0x11; 32]);
        h
    }

    #[test]
    fn ipv6_with_extension_headers() {
        let hop = [IPPROTO_ROUTING, 0, 0, 0, 0, 0, 0, 0];
        let routing = [IPPROTO_FRAGMENT, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let fragment = [IPPROTO_TCP, 0, 0, 1, 0, 0, 0, 7]; // offset 0, M=1
        let f = [
            eth(ETHERTYPE_IPV6, false),
            ipv6(IPPROTO_HOPOPTS),
            hop.to_vec(),
            routing.to_vec(),
            fragment.to_vec(),
            ports(443, 50000),
        ]
        .concat();
        assert_eq!(classify(&f), Some(Flow { protocol: IPPROTO_TCP, src_port: 443, dst_port: 50000 }));
        let later = [IPPROTO_TCP, 0, 0x00, 0x08, 0, 0, 0, 7]; // offset 1
        let f = [eth(ETHERTYPE_IPV6, false), ipv6(IPPROTO_FRAGMENT), later.to_vec(), ports(443, 50000)].concat();
        assert_eq!(classify(&f), None);
    }

    #[test]
    fn rejects_other_and_truncated() {
        assert_eq!(classify(&[]), None);
        assert_eq!(classify(&eth(0x0806, false)), None); // ARP
        let icmp = [eth(ETHERTYPE_IPV4, false), ipv4(1, 0, 0), ports(1, 2)].concat();
        assert_eq!(classify(&icmp), None);
        let full = [eth(ETHERTYPE_IPV4, false), ipv4(IPPROTO_TCP, 0, 0), ports(1, 2)].concat();
        for cut in 0..(14 + 20 + 4) {
            assert_eq!(classify(&full[..cut]), None, "cut at {cut}");
        }
        assert!(classify(&full[..14 + 20 + 4]).is_some());
        let mut bad_ihl = full.clone();
        bad_ihl[14] = 0x44;
        assert_eq!(classify(&bad_ihl), None);
        let mut bad_version = full;
        bad_version[14] = 0x65;
        assert_eq!(classify(&bad_version), None);
    }

    #[test]
    fn fast_path_agrees_with_the_general_parse() {
        let mut seed = 0x9E37_79B9_u32;
        let mut taken = 0;
        for _ in 0..20_000 {
            let proto = [IPPROTO_TCP, IPPROTO_UDP, 1, 0][(seed % 4) as usize];
            let frag = [0u16, 0x2000, 0x4000, 185, 0x2001][(seed / 4 % 5) as usize];
            let mut f = [eth(ETHERTYPE_IPV4, false), ipv4(proto, 0, frag), ports(1, 2)].concat();
            for b in f.iter_mut().skip(12) {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                if seed % 9 == 0 {
                    *b = seed as u8; // sometimes a random byte
                }
            }
            let cut = (seed as usize >> 8) % (f.len() + 1);
            let f = &f[..cut.max(f.len() - 3)];
            taken += usize::from(classify_plain_ipv4(f).is_some());
            assert_eq!(classify(f), classify_general(f), "{f:x?}");
        }
        assert!(taken > 1000, "the fast path was taken {taken} times");
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..200 {
            let mut f = vec![0u8; len];
            for b in &mut f {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *b = seed as u8;
            }
            if len > 14 {
                f[12] = 0x86;
                f[13] = 0xDD;
                f[14] = 0x60 | (f[14] & 0xF);
            }
            let _ = classify(&f);
        }
    }
}
