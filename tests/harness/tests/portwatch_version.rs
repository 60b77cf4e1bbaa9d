//! portwatch.sys reports one version everywhere: the NDIS filter
//! registration's MajorDriverVersion/MinorDriverVersion and
//! IOCTL_GET_VERSION's driver_version are Cargo's version of the driver
//! (this crate and the driver both take the workspace's version;
//! tests/package checks that, and that the INF's DriverVer is the same).

mod pw;

use portwatch_harness::session::Options;
use portwatch_proto::{VersionInfo, Wire, IOCTL_GET_VERSION};

fn cargo_version() -> (u32, u32, u32) {
    let part = |s: &str| s.parse::<u32>().expect("a numeric version component");
    (
        part(env!("CARGO_PKG_VERSION_MAJOR")),
        part(env!("CARGO_PKG_VERSION_MINOR")),
        part(env!("CARGO_PKG_VERSION_PATCH")),
    )
}

#[test]
fn registration_and_get_version_carry_cargos_version() {
    let (major, minor, patch) = cargo_version();
    let s = pw::load(Options::default());
    let f = s.filter();
    assert_eq!(
        (u32::from(f.driver_version.0), u32::from(f.driver_version.1)),
        (major, minor),
        "NDIS registration's MajorDriverVersion.MinorDriverVersion"
    );
    let h = pw::open(&s);
    let (status, out) = pw::ioctl(&s, h, IOCTL_GET_VERSION, &[], VersionInfo::SIZE as u32);
    assert_eq!(status, 0);
    let v = VersionInfo::read(&out).expect("a VersionInfo");
    assert_eq!(
        (v.driver_version >> 16, (v.driver_version >> 8) & 0xFF, v.driver_version & 0xFF),
        (major, minor, patch),
        "IOCTL_GET_VERSION's driver_version {:#x}",
        v.driver_version
    );
    s.close(h).expect("close");
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
}
