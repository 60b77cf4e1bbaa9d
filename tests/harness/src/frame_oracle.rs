//! An independent reference for the driver's frame classifier
//! (`driver/portwatch/src/parse.rs`): what the `etherparse` decoder says a
//! frame's transport protocol and ports are, with the driver's deliberate
//! policy differences applied on top.
//!
//! The driver's classifier is checked against [`reference`] on every raw
//! input of the `frame_classify` fuzz target and on a seeded corpus in
//! `tests/frame_oracle.rs`. Where the two could disagree by design, the
//! reason is one of these, each decided here from etherparse's own view of
//! the frame, never from the driver's:
//!
//! 1. **One 802.1Q tag at most.** The driver reads an untagged frame or one
//!    tag with TPID 0x8100; 802.1ad (0x88A8), stacked tags and MACsec are
//!    not counted.
//! 2. **IP length fields are not read.** The driver classifies the header
//!    bytes present (it sees only a copy of the first
//!    `parse::HEADER_BYTES`); the reference decodes a copy of the frame whose
//!    IPv4 total length / IPv6 payload length say "the rest of the frame".
//! 3. **First fragments count, later ones do not.** A fragment with offset 0
//!    carries the transport header; etherparse does not decode the transport
//!    layer of any fragment, so the reference reads the ports from the first
//!    four bytes of the fragment's payload.
//! 4. **Only the four port bytes are needed.** A TCP or UDP header cut short
//!    (or with a bad data offset or length) still counts by its ports;
//!    etherparse rejects it, so the reference reads the ports from the first
//!    four bytes of the IP payload.
//! 5. **IPsec AH is not walked** (IPv4 or IPv6): the frame is not counted,
//!    although etherparse decodes the transport header behind it.
//! 6. **IPv6 hop-by-hop options after the first header** are skipped by the
//!    driver like the other option headers; etherparse stops there
//!    (RFC 8200 puts it first), and the reference walks on from there with
//!    etherparse's per-header decoders.
//! 7. **The EtherType names the IP version.** An IPv6 header under EtherType
//!    0x0800 (or IPv4 under 0x86DD) is not counted; etherparse picks its
//!    decoder by the header's version nibble instead.

use etherparse::{
    err::packet::SliceError, err::Layer, ip_number, IpAuthHeaderSlice, IpNumber, Ipv6FragmentHeaderSlice,
    Ipv6RawExtHeaderSlice, LaxLinkExtSlice, LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice,
};

/// Transport identity: (IP protocol number, source port, destination port).
pub type FlowKey = (u8, u16, u16);

const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETH_HEADER: usize = 14;
const VLAN_TAG: usize = 4;

/// What the driver's classifier must return for `frame`: `Some` for a
/// counted TCP/UDP frame, `None` for a frame that is not counted.
pub fn reference(frame: &[u8]) -> Option<FlowKey> {
    let normalized = with_lengths_of_the_frame(frame);
    let packet = LaxSlicedPacket::from_ethernet(&normalized).ok()?;
    if !single_8021q_at_most(&packet) || !ip_version_matches_ethertype(&packet) {
        return None;
    }
    transport_of(&packet)
}

/// Difference 1: nothing, or exactly one VLAN tag whose TPID is 0x8100.
fn single_8021q_at_most(packet: &LaxSlicedPacket<'_>) -> bool {
    let outer = match &packet.link {
        Some(LinkSlice::Ethernet2(eth)) => Some(eth.ether_type().0),
        _ => None,
    };
    match packet.link_exts.as_slice() {
        [] => true,
        [LaxLinkExtSlice::Vlan(_)] => outer == Some(ETHERTYPE_VLAN),
        _ => false,
    }
}

/// Difference 7: etherparse picks the IP decoder by the version nibble; the
/// EtherType says which version the frame carries (0x0800 IPv4, 0x86DD
/// IPv6), and the driver takes it at its word.
fn ip_version_matches_ethertype(packet: &LaxSlicedPacket<'_>) -> bool {
    let ethertype = match (packet.link_exts.last(), &packet.link) {
        (Some(LaxLinkExtSlice::Vlan(tag)), _) => tag.ether_type().0,
        (Some(LaxLinkExtSlice::Macsec(_)), _) => return false,
        (None, Some(LinkSlice::Ethernet2(eth))) => eth.ether_type().0,
        (None, _) => return false,
    };
    match &packet.net {
        Some(LaxNetSlice::Ipv4(_)) => ethertype == ETHERTYPE_IPV4,
        Some(LaxNetSlice::Ipv6(_)) => ethertype == ETHERTYPE_IPV6,
        _ => true,
    }
}

/// Difference 2: a copy of `frame` whose IP length field covers exactly the
/// bytes after the IP header's start (clamped to what the field can hold).
fn with_lengths_of_the_frame(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    let be16 = |f: &[u8], at: usize| f.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let mut ip = ETH_HEADER;
    let mut ethertype = be16(&f, 12);
    if ethertype == Some(ETHERTYPE_VLAN) {
        ethertype = be16(&f, 16);
        ip += VLAN_TAG;
    }
    let rest = f.len().saturating_sub(ip);
    let (field, value) = match ethertype {
        Some(ETHERTYPE_IPV4) => (ip + 2, rest),
        Some(ETHERTYPE_IPV6) => (ip + 4, rest.saturating_sub(40)),
        _ => return f,
    };
    if let Some(b) = f.get_mut(field..field + 2) {
        b.copy_from_slice(&u16::try_from(value).unwrap_or(u16::MAX).to_be_bytes());
    }
    f
}

/// Difference 6: etherparse stopped at a hop-by-hop header that was not
/// the first of the chain.
fn stopped_at_late_hop_by_hop(packet: &LaxSlicedPacket<'_>) -> bool {
    matches!(
        packet.stop_err,
        Some((SliceError::Ipv6Exts(etherparse::err::ipv6_exts::HeaderError::HopByHopNotAtStart), _))
    )
}

/// The transport header's protocol and bytes as the driver reads them, with
/// what the IP layer says about them.
struct Chain<'a> {
    /// An IPsec AH header was on the way (difference 5).
    auth: bool,
    /// Every fragment header (or the IPv4 header) has offset 0 (difference 3).
    offsets_zero: bool,
    /// The protocol after the IP header and its option headers.
    next: IpNumber,
    /// The bytes after them.
    rest: &'a [u8],
}

/// The counted flow, from etherparse's decode and differences 3–6.
fn transport_of(packet: &LaxSlicedPacket<'_>) -> Option<FlowKey> {
    let mut transport = packet.transport.as_ref();
    let chain = match packet.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => Chain {
            auth: v4.extensions().auth.is_some(),
            offsets_zero: v4.header().fragments_offset().value() == 0,
            next: v4.payload().ip_number,
            rest: v4.payload().payload,
        },
        LaxNetSlice::Ipv6(v6) => {
            let exts = v6.extensions();
            let known = walk_ipv6_options(exts.first_header(), exts.slice(), Until::End)?;
            let payload = v6.payload();
            if stopped_at_late_hop_by_hop(packet) {
                transport = None;
                let more = walk_ipv6_options(Some(payload.ip_number), payload.payload, Until::Transport)?;
                Chain { auth: known.auth || more.auth, offsets_zero: known.offsets_zero && more.offsets_zero, ..more }
            } else {
                if stopped_before_transport(packet) {
                    return None;
                }
                Chain { next: payload.ip_number, rest: payload.payload, ..known }
            }
        }
        LaxNetSlice::Arp(_) => return None,
    };
    if chain.auth || !chain.offsets_zero || (chain.next != ip_number::TCP && chain.next != ip_number::UDP) {
        return None;
    }
    let protocol = chain.next.0;
    match transport {
        Some(TransportSlice::Tcp(tcp)) => Some((protocol, tcp.source_port(), tcp.destination_port())),
        Some(TransportSlice::Udp(udp)) => Some((protocol, udp.source_port(), udp.destination_port())),
        // Differences 3 and 4: a fragment, or a header etherparse rejects.
        _ => ports_at_start(protocol, chain.rest),
    }
}

/// How far [`walk_ipv6_options`] goes.
#[derive(PartialEq)]
enum Until {
    /// To the end of a chain etherparse already validated.
    End,
    /// While the next header is an option header etherparse knows.
    Transport,
}

/// Walks IPv6 option headers starting with `first` over `bytes` with
/// etherparse's checked per-header decoders (its `Ipv6ExtensionSliceIter`
/// reads past the validated headers when a lax parse stopped inside the
/// chain, so it is not used). `None` when a header is cut short.
fn walk_ipv6_options(first: Option<IpNumber>, bytes: &[u8], until: Until) -> Option<Chain<'_>> {
    let mut chain =
        Chain { auth: false, offsets_zero: true, next: first.unwrap_or(ip_number::IPV6_NO_NEXT_HEADER), rest: bytes };
    let option_header = |n: IpNumber| {
        [
            ip_number::IPV6_HOP_BY_HOP,
            ip_number::IPV6_ROUTE,
            ip_number::IPV6_DEST_OPTIONS,
            ip_number::IPV6_FRAG,
            ip_number::AUTH,
        ]
        .contains(&n)
    };
    while first.is_some()
        && match until {
            Until::End => !chain.rest.is_empty(),
            Until::Transport => option_header(chain.next),
        }
    {
        let (len, next) = if chain.next == ip_number::IPV6_FRAG {
            let frag = Ipv6FragmentHeaderSlice::from_slice(chain.rest).ok()?;
            chain.offsets_zero &= frag.fragment_offset().value() == 0;
            (frag.slice().len(), frag.next_header())
        } else if chain.next == ip_number::AUTH {
            chain.auth = true;
            let ah = IpAuthHeaderSlice::from_slice(chain.rest).ok()?;
            (ah.slice().len(), ah.next_header())
        } else {
            let raw = Ipv6RawExtHeaderSlice::from_slice(chain.rest).ok()?;
            (raw.slice().len(), raw.next_header())
        };
        chain.rest = &chain.rest[len..];
        chain.next = next;
    }
    Some(chain)
}

/// Whether etherparse stopped at the IP layer or its extension headers (a
/// truncated or malformed IPv4/IPv6 header or option header): the payload
/// it reports then is not a transport header.
fn stopped_before_transport(packet: &LaxSlicedPacket<'_>) -> bool {
    matches!(
        packet.stop_err,
        Some((
            _,
            Layer::Ipv4Header
                | Layer::Ipv6Header
                | Layer::IpAuthHeader
                | Layer::Ipv6ExtHeader
                | Layer::Ipv6FragHeader
                | Layer::Ipv6HopByHopHeader
                | Layer::Ipv6DestOptionsHeader
                | Layer::Ipv6RouteHeader
        ))
    )
}

fn ports_at_start(protocol: u8, payload: &[u8]) -> Option<FlowKey> {
    let p = payload.get(..4)?;
    Some((protocol, u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
}
