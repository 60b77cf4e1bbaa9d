//! Shared helpers of the portwatch.sys tests: loading, IOCTL wrappers.
#![allow(dead_code)]

use portwatch_harness::io::Handle;
use std::path::{Path, PathBuf};

use portwatch_harness::session::{Options, Session};
use portwatch_proto::*;

/// The driver under test: `$PORTWATCH_SYS`, or the shipped package's
/// test-signed `portwatch.sys` (byte for byte what users install).
pub fn driver_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PORTWATCH_SYS") {
        return PathBuf::from(p);
    }
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/package/portwatch/portwatch.sys");
    assert!(packaged.is_file(), "{} not found: build the package with `scripts/package.sh`", packaged.display());
    packaged
}

/// Loads portwatch.sys with `options`.
pub fn load(options: Options) -> Session {
    let path = driver_path();
    Session::load(&path, options).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// Opens an endpoint.
pub fn open(s: &Session) -> Handle {
    s.open(USER_DEVICE_PATH).expect("open \\\\.\\PortWatch")
}

/// Sends an IOCTL; returns (status, output).
pub fn ioctl(s: &Session, h: Handle, code: u32, input: &[u8], out_len: u32) -> (i32, Vec<u8>) {
    let r = s.ioctl(h, code, input, out_len).unwrap_or_else(|e| panic!("IOCTL {code:#x}: {e:?}"));
    (r.status, r.output)
}

/// Encodes a wire struct.
pub fn bytes<T: Wire>(v: &T) -> Vec<u8> {
    let mut out = vec![0u8; T::SIZE];
    assert!(v.write(&mut out));
    out
}

/// A port request for `protocol`/`port`.
pub fn port(protocol: u8, port: u16) -> Vec<u8> {
    bytes(&PortRequest { version: PROTOCOL_VERSION, protocol, reserved: 0, port })
}

/// Binds `h` to `protocol`/`port`, expecting success.
pub fn bind(s: &Session, h: Handle, protocol: u8, p: u16) {
    let (status, _) = ioctl(s, h, IOCTL_BIND_PORT, &port(protocol, p), 0);
    assert_eq!(status, 0, "bind {protocol}/{p}");
}

/// The endpoint's stats.
pub fn endpoint_stats(s: &Session, h: Handle) -> EndpointStats {
    let (status, out) = ioctl(s, h, IOCTL_GET_ENDPOINT_STATS, &[], EndpointStats::SIZE as u32);
    assert_eq!(status, 0, "endpoint stats");
    EndpointStats::read(&out).expect("EndpointStats")
}

/// A port's stats.
pub fn port_stats(s: &Session, h: Handle, protocol: u8, p: u16) -> PortStats {
    let (status, out) = ioctl(s, h, IOCTL_GET_PORT_STATS, &port(protocol, p), PortStats::SIZE as u32);
    assert_eq!(status, 0, "port stats");
    PortStats::read(&out).expect("PortStats")
}
