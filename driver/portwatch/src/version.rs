//! The driver's version: Cargo's package version, read at compile time.
//!
//! It is the one version of PortWatch: `IOCTL_GET_VERSION` reports it
//! ([`DRIVER_VERSION`]), the NDIS filter registration carries its major and
//! minor ([`NDIS_MAJOR`], [`NDIS_MINOR`]), and the package's INF is stamped
//! with it (`DriverVer = <date>,<major>.<minor>.<patch>.0`, scripts/package.sh
//! and the cargo-make recipe). tests/package and the harness check that they
//! agree.

/// A decimal version component, parsed at compile time.
const fn parse(text: &str) -> u32 {
    let bytes = text.as_bytes();
    assert!(!bytes.is_empty(), "empty version component");
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit(), "version component is not a number");
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

/// Cargo's major version.
pub const MAJOR: u32 = parse(env!("CARGO_PKG_VERSION_MAJOR"));
/// Cargo's minor version.
pub const MINOR: u32 = parse(env!("CARGO_PKG_VERSION_MINOR"));
/// Cargo's patch version.
pub const PATCH: u32 = parse(env!("CARGO_PKG_VERSION_PATCH"));

/// A component as a byte: the NDIS registration holds major and minor in a
/// byte each, and `VersionInfo::driver_version` packs all three in bytes.
/// A larger component fails the build.
const fn byte(component: u32) -> u8 {
    assert!(component <= 0xFF, "a version component does not fit in a byte");
    component as u8
}

const _: u8 = byte(PATCH);

/// `MajorDriverVersion` of the NDIS filter registration.
pub const NDIS_MAJOR: u8 = byte(MAJOR);
/// `MinorDriverVersion` of the NDIS filter registration.
pub const NDIS_MINOR: u8 = byte(MINOR);
/// [`portwatch_proto::VersionInfo::driver_version`]: `major << 16 | minor << 8 | patch`.
pub const DRIVER_VERSION: u32 = (MAJOR << 16) | (MINOR << 8) | PATCH;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_cargos() {
        assert_eq!(format!("{MAJOR}.{MINOR}.{PATCH}"), env!("CARGO_PKG_VERSION"));
        assert_eq!(DRIVER_VERSION >> 16, MAJOR);
        assert_eq!((DRIVER_VERSION >> 8) & 0xFF, MINOR);
        assert_eq!(DRIVER_VERSION & 0xFF, PATCH);
    }

    #[test]
    fn parse_reads_decimal() {
        assert_eq!(parse("0"), 0);
        assert_eq!(parse("255"), 255);
    }
}
