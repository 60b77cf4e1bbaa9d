//! Coverage-guided fuzzing of the driver's frame classifier (its host
//! build, compiled from the driver's own `parse.rs`).
//!
//! Two inputs in one: the bytes themselves are classified (never a panic;
//! the same result as an independent decoder, `frame_oracle` on etherparse,
//! with the driver's documented policy differences; trailing bytes never
//! change a result that was found), and the bytes also describe a frame that
//! the harness's frame builder builds, whose classification must match the
//! builder's keys exactly (and what the data path copies — the first
//! `HEADER_BYTES` — gives the same result when the ports lie within it).
#![no_main]

#[allow(dead_code)]
#[path = "../../driver/portwatch/src/parse.rs"]
mod parse;

use libfuzzer_sys::fuzz_target;
use portwatch_harness::frame_oracle::reference;
use portwatch_harness::frames::{FrameSpec, Network, IPPROTO_TCP, IPPROTO_UDP};

fn check_raw(data: &[u8]) {
    let flow = parse::classify(data);
    let key = flow.map(|f| (f.protocol, f.src_port, f.dst_port));
    assert_eq!(key, reference(data), "the classifier and the reference decoder disagree");
    if let Some(f) = flow {
        assert!(f.protocol == IPPROTO_TCP || f.protocol == IPPROTO_UDP);
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0xA5; 7]);
        assert_eq!(parse::classify(&longer), flow, "trailing bytes changed the result");
    }
}

fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

fn spec_from(data: &[u8]) -> FrameSpec {
    let u16_at = |i| u16::from_be_bytes([byte(data, i), byte(data, i + 1)]);
    let protocol = match byte(data, 0) % 4 {
        0 => IPPROTO_TCP,
        1 => IPPROTO_UDP,
        2 => 1,
        // An IPv6 extension header number as "transport" would make the
        // bytes say something else than the spec: use No Next Header.
        _ => match byte(data, 1) {
            0 | 43 | 44 | 60 => 59,
            p => p,
        },
    };
    let mut spec = if byte(data, 2) & 1 == 0 {
        FrameSpec::ipv4(protocol, u16_at(3), u16_at(5))
    } else {
        FrameSpec::ipv6(protocol, u16_at(3), u16_at(5))
    };
    spec.vlan = (byte(data, 2) & 2 != 0).then(|| u16_at(7) & 0x0fff);
    spec.payload_len = usize::from(byte(data, 9));
    match &mut spec.network {
        Network::V4 { options, fragment_offset, .. } => {
            options.resize(usize::from(byte(data, 10) % 11) * 4, 1);
            *fragment_offset = if byte(data, 11) % 4 == 0 { u16_at(12) & 0x1fff } else { 0 };
        }
        Network::V6 { extensions, .. } => {
            let n = usize::from(byte(data, 10) % 4);
            extensions.extend((0..n).map(|i| [0, 43, 60, 44][usize::from(byte(data, 11 + i) % 4)]));
        }
        Network::Arp => {}
    }
    if byte(data, 2) & 4 != 0 && byte(data, 15) == 0xAA {
        spec.network = Network::Arp;
    }
    spec
}

fn check_built(data: &[u8]) {
    let spec = spec_from(data);
    let frame = spec.build();
    let flow = parse::classify(&frame.bytes);
    let got: Vec<(u8, u16)> = match flow {
        None => Vec::new(),
        Some(f) if f.src_port == f.dst_port => vec![(f.protocol, f.dst_port)],
        Some(f) => vec![(f.protocol, f.dst_port), (f.protocol, f.src_port)],
    };
    assert_eq!(got, frame.keys, "spec {spec:?}");
    let copied = &frame.bytes[..frame.bytes.len().min(parse::HEADER_BYTES)];
    if !frame.keys.is_empty() && frame.bytes.len() - spec.payload_len <= parse::HEADER_BYTES {
        assert_eq!(parse::classify(copied), flow, "the copied header prefix classifies differently");
    }
}

fuzz_target!(|data: &[u8]| {
    check_raw(data);
    check_built(data);
});
