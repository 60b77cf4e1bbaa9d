//! The driver's frame classifier (its own `parse.rs`, compiled for the
//! host) against an independent decoder (`frame_oracle`, on etherparse):
//! frames built by etherparse's packet builder, the harness's frame
//! builder, and seeded mutations of both (bytes changed, frames cut short).
//! The `frame_classify` fuzz target runs the same comparison on every raw
//! input it generates.

#[allow(dead_code)]
#[path = "../../../driver/portwatch/src/parse.rs"]
mod parse;

use etherparse::{IpNumber, Ipv4Header, PacketBuilder};
use portwatch_harness::frame_oracle::{reference, FlowKey};
use portwatch_harness::frames::{FrameSpec, Network};

fn classify(frame: &[u8]) -> Option<FlowKey> {
    parse::classify(frame).map(|f| (f.protocol, f.src_port, f.dst_port))
}

fn agree(frame: &[u8]) {
    assert_eq!(classify(frame), reference(frame), "frame {frame:02x?}");
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, good enough to pick mutations.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn etherparse_frame(rng: &mut Rng) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let (src, dst) = (rng.next() as u16, rng.next() as u16);
    let payload = vec![0x5A; rng.below(40)];
    let mut out = Vec::new();
    let v6 = rng.below(2) == 0;
    let tagged = rng.below(3) == 0;
    macro_rules! finish {
        ($ip:expr) => {
            match rng.below(3) {
                0 => $ip.tcp(src, dst, 1, 1024).write(&mut out, &payload).unwrap(),
                1 => $ip.udp(src, dst).write(&mut out, &payload).unwrap(),
                _ => $ip.icmpv4_echo_request(1, 2).write(&mut out, &payload).unwrap(),
            }
        };
    }
    match (tagged, v6) {
        (false, false) => finish!(eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)),
        (false, true) => finish!(eth.ipv6([0xfd; 16], [0xfe; 16], 64)),
        (true, false) => finish!(eth.single_vlan(vlan(7)).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)),
        (true, true) => finish!(eth.single_vlan(vlan(7)).ipv6([0xfd; 16], [0xfe; 16], 64)),
    }
    out
}

fn harness_frame(rng: &mut Rng) -> Vec<u8> {
    let protocol = [6, 17, 1, 58][rng.below(4)];
    let (src, dst) = (rng.next() as u16, rng.next() as u16);
    let mut spec =
        if rng.below(2) == 0 { FrameSpec::ipv4(protocol, src, dst) } else { FrameSpec::ipv6(protocol, src, dst) };
    spec.vlan = (rng.below(3) == 0).then_some(5);
    spec.payload_len = rng.below(64);
    match &mut spec.network {
        Network::V4 { options, fragment_offset, .. } => {
            options.resize(rng.below(11) * 4, 1);
            *fragment_offset = if rng.below(4) == 0 { rng.next() as u16 & 0x1fff } else { 0 };
        }
        Network::V6 { extensions, .. } => {
            let n = rng.below(4);
            extensions.extend((0..n).map(|_| [0, 43, 60, 44][rng.below(4)]));
        }
        Network::Arp => {}
    }
    spec.build().bytes
}

fn mutate(rng: &mut Rng, mut frame: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(3) {
        match rng.below(4) {
            0 if !frame.is_empty() => {
                let at = rng.below(frame.len().min(100));
                frame[at] = rng.next() as u8;
            }
            1 => frame.truncate(rng.below(frame.len() + 1)),
            2 if frame.len() > 24 => {
                // A next-header / protocol byte from the interesting set.
                let at = 14 + rng.below(frame.len().min(100) - 14);
                frame[at] = [0, 6, 17, 43, 44, 51, 59, 60][rng.below(8)];
            }
            _ => {}
        }
    }
    frame
}

#[test]
fn the_classifier_agrees_with_an_independent_decoder() {
    let mut rng = Rng(0x5EED_F00D);
    let frames = 200_000;
    let mut counted = 0u32;
    for i in 0..frames {
        let built = if i % 2 == 0 { etherparse_frame(&mut rng) } else { harness_frame(&mut rng) };
        let frame = if i % 4 < 2 { built } else { mutate(&mut rng, built) };
        agree(&frame);
        counted += u32::from(classify(&frame).is_some());
    }
    // The corpus must exercise both outcomes.
    assert!(counted > 50_000 && frames - counted > 50_000, "{counted} of {frames} counted");
}

#[test]
fn each_documented_difference_is_decided_as_the_driver_does() {
    // 1. Two VLAN tags: not counted, although etherparse finds UDP behind them.
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2; 6], [3; 6])
        .double_vlan(vlan(1), vlan(2))
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
        .udp(53, 5353)
        .write(&mut out, &[0; 8])
        .unwrap();
    assert_eq!(reference(&out), (None));
    agree(&out);

    // 2. IPv4 total length shorter than the frame's bytes: the driver does
    // not read it.
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
        .tcp(80, 8080, 1, 1)
        .write(&mut out, &[])
        .unwrap();
    out[16..18].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(reference(&out), (Some((6, 80, 8080))));
    agree(&out);

    // 3. A first fragment counts, a later one does not.
    let mut header = Ipv4Header::new(12, 9, IpNumber::UDP, [1, 1, 1, 1], [2, 2, 2, 2]).unwrap();
    header.more_fragments = true;
    let mut first = vec![2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 0x08, 0x00];
    header.write(&mut first).unwrap();
    first.extend_from_slice(&[0, 53, 0x14, 0xe9, 0, 12, 0, 0, 1, 2, 3, 4]);
    assert_eq!(reference(&first), (Some((17, 53, 5353))));
    agree(&first);
    let mut later = first.clone();
    later[20..22].copy_from_slice(&0x2001u16.to_be_bytes());
    assert_eq!(reference(&later), (None));
    agree(&later);

    // 4. A TCP header cut to its ports still counts.
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv6([1; 16], [2; 16], 9)
        .tcp(443, 50000, 1, 1)
        .write(&mut out, &[])
        .unwrap();
    out.truncate(14 + 40 + 4);
    assert_eq!(reference(&out), (Some((6, 443, 50000))));
    agree(&out);

    // 5. Behind IPsec AH: not counted.
    let mut out = vec![2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 0x86, 0xDD];
    out.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 51, 64]);
    out.extend_from_slice(&[1; 32]);
    out.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]); // AH, 12 bytes
    out.extend_from_slice(&[0, 53, 0x14, 0xe9, 0, 8, 0, 0]);
    assert_eq!(reference(&out), None);
    agree(&out);

    // 6. Hop-by-hop options after a destination-options header: walked on.
    let mut out = vec![2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 0x86, 0xDD];
    out.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 60, 64]);
    out.extend_from_slice(&[1; 32]);
    out.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]); // dest options -> hop-by-hop
    out.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop -> UDP
    out.extend_from_slice(&[0, 53, 0x14, 0xe9, 0, 8, 0, 0]);
    assert_eq!(reference(&out), Some((17, 53, 5353)));
    agree(&out);

    // 7. An IPv6 header under EtherType 0x0800: not counted.
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2; 6], [3; 6]).ipv6([1; 16], [2; 16], 9).udp(53, 5353).write(&mut out, &[]).unwrap();
    out[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    assert_eq!(reference(&out), None);
    agree(&out);
}

fn vlan(id: u16) -> etherparse::VlanId {
    etherparse::VlanId::try_new(id).unwrap()
}
