//! Coverage-guided fuzzing of the driver's IOCTL decoder (its host build,
//! compiled from the driver's own source files), checked against the
//! contract in `portwatch_scenarios::expect` (written from the protocol's
//! status table): a malformed request gets exactly the documented status, a
//! well-formed one decodes to what its input says, and encoding a
//! variable-length reply never writes past the output buffer.
//!
//! Input: code selector (1 byte), output length (2 bytes), then the input.
#![no_main]

extern crate alloc;

#[allow(dead_code)]
#[path = "../../driver/portwatch/src/pool.rs"]
mod pool;

#[allow(dead_code)]
#[path = "../../driver/portwatch/src/ports.rs"]
mod ports;

#[allow(dead_code)]
#[path = "../../driver/portwatch/src/ioctl.rs"]
mod ioctl;

// The port table's per-processor counters.
#[allow(dead_code)]
#[path = "../../driver/portwatch/src/percpu.rs"]
mod percpu;

// The event stream's modules, which the port table and the decoder name.
#[allow(dead_code)]
#[path = "../../driver/portwatch/src/events.rs"]
mod events;

#[allow(dead_code)]
#[path = "../../driver/portwatch/src/datapath.rs"]
mod datapath;

#[allow(dead_code)]
#[path = "../../driver/portwatch/src/parse.rs"]
mod parse;

// `ioctl.rs` reports the driver's version from here (this crate's version
// stands in for the driver's; the decoder does not depend on it).
#[allow(dead_code)]
#[path = "../../driver/portwatch/src/version.rs"]
mod version;

use libfuzzer_sys::fuzz_target;
use portwatch_proto::{self as proto, Wire};
use portwatch_scenarios::expect::{expected, Expected};

use ioctl::{decode, Request};

fn code_of(selector: u8, raw: &[u8]) -> u32 {
    match proto::ALL_IOCTLS.get(usize::from(selector) % 14) {
        Some(&code) => code,
        // Two in fourteen: any code at all, from the input's first bytes.
        None => raw.iter().take(4).fold(u32::from(selector), |acc, &b| acc.rotate_left(8) ^ u32::from(b)),
    }
}

fn check_request(code: u32, input: &[u8], request: &Request) {
    match request {
        Request::SetLocalAddress(a) => assert_eq!(a.as_slice(), &input[8..]),
        Request::SetPortName(n) => {
            let units: Vec<u16> = input[8..].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            assert_eq!(n, &units);
        }
        Request::BindPort(k) | Request::UnbindPort(k) | Request::GetPortStats(k) => {
            let req = proto::PortRequest::read(input).expect("decoded from a port request");
            assert_eq!((k.protocol, k.port), (req.protocol, req.port));
        }
        Request::EnableEvents(n) => {
            let req = proto::EnableEvents::read(input).expect("decoded from an enable request");
            assert_eq!(*n, req.ring_records);
        }
        _ => assert!(input.is_empty(), "{code:#x} decoded with input"),
    }
}

fn check_variable_reply(out_len: usize, count: usize) {
    let mut out = vec![0xEEu8; out_len.max(proto::VarHeader::SIZE) + 8];
    let (room, guard) = out.split_at_mut(out_len.max(proto::VarHeader::SIZE));
    let reply = ioctl::write_variable(room, count, 2, |body| body.fill(7));
    assert!(guard.iter().all(|&b| b == 0xEE), "wrote past the output buffer");
    let header = proto::VarHeader::read(&room[..proto::VarHeader::SIZE]).expect("header");
    assert_eq!(header.needed as usize, proto::VarHeader::SIZE + 2 * count);
    match reply {
        ioctl::Reply::Done(n) => assert_eq!((n, header.count as usize), (header.needed as usize, count)),
        ioctl::Reply::Overflow => assert_eq!(header.count, 0),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Some((len, input)) = rest.split_first_chunk::<2>() else { return };
    let out_len = u16::from_le_bytes(*len);
    let code = code_of(selector, input) & !3;
    let contract = expected(code, input, u32::from(out_len));
    match decode(code, input, usize::from(out_len)) {
        Err(e) => {
            assert_eq!(contract, Expected::Exactly(e.ntstatus()), "code {code:#x} input {input:02x?} out {out_len}")
        }
        Ok(request) => {
            assert!(matches!(contract, Expected::OneOf(_)), "decoded {request:?}, contract says {contract:?}");
            check_request(code, input, &request);
        }
    }
    check_variable_reply(usize::from(out_len) % 600, input.len() % 300);
});
