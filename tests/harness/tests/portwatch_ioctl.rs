//! portwatch.sys: every IOCTL with good and bad input, through the I/O
//! manager model (METHOD_BUFFERED copy-back rules apply).

mod pw;

use portwatch_harness::ndis::AdapterSpec;
use portwatch_harness::session::{Options, Session};
use portwatch_proto::*;

const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;
const STATUS_REVISION_MISMATCH: i32 = 0xC000_0059_u32 as i32;
const STATUS_BUFFER_TOO_SMALL: i32 = 0xC000_0023_u32 as i32;
const STATUS_BUFFER_OVERFLOW: i32 = 0x8000_0005_u32 as i32;
const STATUS_INVALID_DEVICE_REQUEST: i32 = 0xC000_0010_u32 as i32;
const STATUS_DUPLICATE_OBJECTID: i32 = 0xC000_022A_u32 as i32;
const STATUS_NOT_FOUND: i32 = 0xC000_0225_u32 as i32;
const STATUS_QUOTA_EXCEEDED: i32 = 0xC000_0044_u32 as i32;

fn finish(s: Session) {
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
}

/// An error status with nothing copied back (NT_ERROR).
fn assert_error(s: &Session, h: portwatch_harness::io::Handle, code: u32, input: &[u8], out: u32, want: i32) {
    let r = s.ioctl(h, code, input, out).unwrap();
    assert_eq!((r.status, r.information, r.output.len()), (want, 0, 0), "IOCTL {code:#x} input {input:?} out {out}");
}

#[test]
fn version_and_unknown_codes() {
    let s = pw::load(Options::default());
    let h = pw::open(&s);
    let (status, out) = pw::ioctl(&s, h, IOCTL_GET_VERSION, &[], VersionInfo::SIZE as u32);
    assert_eq!(status, 0);
    let v = VersionInfo::read(&out).unwrap();
    assert_eq!(
        (v.version, v.max_local_address, v.max_bindings),
        (PROTOCOL_VERSION, MAX_LOCAL_ADDRESS, MAX_BINDINGS_PER_ENDPOINT)
    );
    assert_error(&s, h, IOCTL_GET_VERSION, &[], VersionInfo::SIZE as u32 - 1, STATUS_BUFFER_TOO_SMALL);
    assert_error(&s, h, IOCTL_GET_VERSION, &[1], VersionInfo::SIZE as u32, STATUS_INVALID_PARAMETER);
    for code in [pw_unknown(0x8FF), IOCTL_GET_VERSION ^ 0x4000, IOCTL_GET_VERSION | 3] {
        if code & 3 == 0 {
            assert_error(&s, h, code, &[], 64, STATUS_INVALID_DEVICE_REQUEST);
        }
    }
    s.close(h).unwrap();
    finish(s);
}

fn pw_unknown(function: u32) -> u32 {
    ctl_code(FILE_DEVICE_PORTWATCH, function, METHOD_BUFFERED, FILE_READ_ACCESS)
}

#[test]
fn local_address_round_trip_and_bad_input() {
    let s = pw::load(Options::default());
    let h = pw::open(&s);
    let addr: Vec<u8> = (1..=20).collect();
    let mut input = pw::bytes(&LocalAddressHeader { version: PROTOCOL_VERSION, length: addr.len() as u32 });
    input.extend_from_slice(&addr);
    assert_eq!(pw::ioctl(&s, h, IOCTL_SET_LOCAL_ADDRESS, &input, 0).0, 0);
    let (status, out) = pw::ioctl(&s, h, IOCTL_GET_LOCAL_ADDRESS, &[], 64);
    assert_eq!(status, 0);
    let hdr = VarHeader::read(&out[..VarHeader::SIZE]).unwrap();
    assert_eq!((hdr.count, hdr.needed as usize), (20, VarHeader::SIZE + 20));
    assert_eq!(&out[VarHeader::SIZE..], &addr[..], "Information covers header + address only");
    // Too small for the address: a warning, only the header copied back.
    let (status, out) = pw::ioctl(&s, h, IOCTL_GET_LOCAL_ADDRESS, &[], VarHeader::SIZE as u32 + 4);
    assert_eq!(status, STATUS_BUFFER_OVERFLOW);
    let hdr = VarHeader::read(&out[..VarHeader::SIZE]).unwrap();
    assert_eq!((hdr.count, hdr.needed as usize), (0, VarHeader::SIZE + 20));
    assert_error(&s, h, IOCTL_GET_LOCAL_ADDRESS, &[], VarHeader::SIZE as u32 - 1, STATUS_BUFFER_TOO_SMALL);
    // Bad input: length mismatch, over the maximum, wrong version, short header.
    assert_error(&s, h, IOCTL_SET_LOCAL_ADDRESS, &input[..input.len() - 1], 0, STATUS_INVALID_PARAMETER);
    let mut big = pw::bytes(&LocalAddressHeader { version: PROTOCOL_VERSION, length: MAX_LOCAL_ADDRESS + 1 });
    big.resize(big.len() + MAX_LOCAL_ADDRESS as usize + 1, 7);
    assert_error(&s, h, IOCTL_SET_LOCAL_ADDRESS, &big, 0, STATUS_INVALID_PARAMETER);
    let mut old = input.clone();
    old[0] = 99;
    assert_error(&s, h, IOCTL_SET_LOCAL_ADDRESS, &old, 0, STATUS_REVISION_MISMATCH);
    assert_error(&s, h, IOCTL_SET_LOCAL_ADDRESS, &input[..4], 0, STATUS_INVALID_PARAMETER);
    s.close(h).unwrap();
    finish(s);
}

#[test]
fn bind_unbind_and_port_stats() {
    let s = pw::load(Options::default());
    let h = pw::open(&s);
    pw::bind(&s, h, PROTO_TCP, 80);
    assert_error(&s, h, IOCTL_BIND_PORT, &pw::port(PROTO_TCP, 80), 0, STATUS_DUPLICATE_OBJECTID);
    assert_error(&s, h, IOCTL_BIND_PORT, &pw::port(1, 80), 0, STATUS_INVALID_PARAMETER);
    assert_error(&s, h, IOCTL_BIND_PORT, &pw::port(PROTO_UDP, 0), 0, STATUS_INVALID_PARAMETER);
    let mut reserved = pw::port(PROTO_UDP, 9);
    reserved[5] = 1;
    assert_error(&s, h, IOCTL_BIND_PORT, &reserved, 0, STATUS_INVALID_PARAMETER);
    assert_error(&s, h, IOCTL_BIND_PORT, &pw::port(PROTO_UDP, 9)[..7], 0, STATUS_INVALID_PARAMETER);
    assert_eq!(pw::port_stats(&s, h, PROTO_TCP, 80).endpoints, 1);
    assert_error(
        &s,
        h,
        IOCTL_GET_PORT_STATS,
        &pw::port(PROTO_TCP, 80),
        PortStats::SIZE as u32 - 1,
        STATUS_BUFFER_TOO_SMALL,
    );
    assert_eq!(pw::endpoint_stats(&s, h).bound_ports, 1);
    assert_error(&s, h, IOCTL_GET_ENDPOINT_STATS, &[], EndpointStats::SIZE as u32 - 1, STATUS_BUFFER_TOO_SMALL);
    assert_eq!(pw::ioctl(&s, h, IOCTL_UNBIND_PORT, &pw::port(PROTO_TCP, 80), 0).0, 0);
    assert_error(&s, h, IOCTL_UNBIND_PORT, &pw::port(PROTO_TCP, 80), 0, STATUS_NOT_FOUND);
    for p in 1..=MAX_BINDINGS_PER_ENDPOINT as u16 {
        pw::bind(&s, h, PROTO_UDP, p);
    }
    assert_error(&s, h, IOCTL_BIND_PORT, &pw::port(PROTO_TCP, 1), 0, STATUS_QUOTA_EXCEEDED);
    // Closing the handle unbinds everything and frees the endpoint.
    s.close(h).unwrap();
    let h2 = pw::open(&s);
    assert_eq!(pw::port_stats(&s, h2, PROTO_UDP, 1).endpoints, 0);
    s.close(h2).unwrap();
    finish(s);
}

#[test]
fn port_name_round_trip_and_bad_input() {
    let s = pw::load(Options::default());
    let h = pw::open(&s);
    let name: Vec<u16> = "web".encode_utf16().collect();
    let mut input = pw::bytes(&PortNameHeader { version: PROTOCOL_VERSION, chars: name.len() as u32 });
    input.extend(name.iter().flat_map(|c| c.to_le_bytes()));
    assert_eq!(pw::ioctl(&s, h, IOCTL_SET_PORT_NAME, &input, 0).0, 0);
    let (status, out) = pw::ioctl(&s, h, IOCTL_GET_PORT_NAME, &[], 64);
    assert_eq!(status, 0);
    let hdr = VarHeader::read(&out[..VarHeader::SIZE]).unwrap();
    assert_eq!(hdr.count, 3);
    assert_eq!(&out[VarHeader::SIZE..], &input[PortNameHeader::SIZE..]);
    assert_error(&s, h, IOCTL_SET_PORT_NAME, &input[..input.len() - 1], 0, STATUS_INVALID_PARAMETER);
    let mut big = pw::bytes(&PortNameHeader { version: PROTOCOL_VERSION, chars: MAX_PORT_NAME_CHARS + 1 });
    big.resize(big.len() + 2 * (MAX_PORT_NAME_CHARS as usize + 1), 0x41);
    assert_error(&s, h, IOCTL_SET_PORT_NAME, &big, 0, STATUS_INVALID_PARAMETER);
    assert_error(&s, h, IOCTL_GET_PORT_NAME, &[1, 2], 64, STATUS_INVALID_PARAMETER);
    s.close(h).unwrap();
    finish(s);
}

#[test]
fn enumerates_filter_modules() {
    let s = pw::load(Options::default());
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    let b = s.add_adapter(AdapterSpec::named("wlan7"));
    s.start(a).unwrap();
    s.attach(b).unwrap();
    let h = pw::open(&s);
    let (status, out) = pw::ioctl(&s, h, IOCTL_ENUM_FILTER_MODULES, &[], 4096);
    assert_eq!(status, 0);
    let hdr = VarHeader::read(&out[..VarHeader::SIZE]).unwrap();
    assert_eq!(hdr.count, 2);
    let mut seen: Vec<(String, u32)> = (0..2)
        .map(|i| {
            let at = VarHeader::SIZE + i * ModuleInfo::SIZE;
            let m = ModuleInfo::read(&out[at..at + ModuleInfo::SIZE]).unwrap();
            let name = String::from_utf16_lossy(&m.name).trim_end_matches('\0').to_string();
            (name, m.state)
        })
        .collect();
    seen.sort();
    assert_eq!(seen, vec![("eth0".into(), ModuleState::Running as u32), ("wlan7".into(), ModuleState::Paused as u32)]);
    let (status, out) = pw::ioctl(&s, h, IOCTL_ENUM_FILTER_MODULES, &[], VarHeader::SIZE as u32);
    assert_eq!(status, STATUS_BUFFER_OVERFLOW);
    assert_eq!(VarHeader::read(&out).unwrap().needed as usize, VarHeader::SIZE + 2 * ModuleInfo::SIZE);
    s.close(h).unwrap();
    finish(s);
}
