//! Shared helpers of the model tests: the fixture driver and its IOCTLs;
//! [`driver`], the plumbing of the in-process test drivers.
#![allow(dead_code)]

pub mod driver;

use portwatch_harness::session::{find_driver, Options, Session};

/// `IOCTL_LWF_COUNTERS` of the fixture.
pub const IOCTL_LWF_COUNTERS: u32 = 0x0012_2000;
/// `IOCTL_LWF_ECHO` of the fixture.
pub const IOCTL_LWF_ECHO: u32 = 0x0012_2004;
/// The fixture's control device, as user mode opens it.
pub const DEVICE: &str = "\\\\.\\LwfFixture";

/// Loads the fixture driver with `options`.
pub fn load(options: Options) -> Session {
    let path = find_driver(
        "PORTWATCH_LWF_FIXTURE",
        "lwf_fixture.dll",
        "cargo build -p lwf-fixture --target x86_64-pc-windows-msvc --profile driver",
    );
    Session::load(&path, options).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// The fixture's counters: (sends, receives, IPv4 frames, IPv6 frames,
/// IOCTLs on this handle).
pub fn counters(s: &Session) -> [u64; 5] {
    let h = s.open(DEVICE).expect("open");
    let r = s.ioctl(h, IOCTL_LWF_COUNTERS, &[], 40).expect("ioctl");
    s.close(h).expect("close");
    assert_eq!(r.status, 0, "counters IOCTL failed");
    let mut out = [0u64; 5];
    for (i, v) in out.iter_mut().enumerate() {
        *v = u64::from_le_bytes(r.output[i * 8..i * 8 + 8].try_into().unwrap());
    }
    out
}
