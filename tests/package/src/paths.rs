//! Locations of the sources and of the built driver package.

use std::path::PathBuf;

/// Environment variable that overrides the path of the `.sys` under test.
pub const SYS_OVERRIDE_VAR: &str = "PORTWATCH_SYS";
/// Environment variable that overrides the package folder (the Windows
/// build's package is `target/x86_64-pc-windows-msvc/driver/portwatch_package`).
pub const PACKAGE_DIR_OVERRIDE_VAR: &str = "PORTWATCH_PACKAGE_DIR";
/// Environment variable that overrides the test certificate's path.
pub const TEST_CER_OVERRIDE_VAR: &str = "PORTWATCH_TEST_CER";

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace root exists")
}

/// The driver package folder: `$PORTWATCH_PACKAGE_DIR`, else the one
/// `scripts/package.sh` writes.
pub fn package_dir() -> PathBuf {
    std::env::var_os(PACKAGE_DIR_OVERRIDE_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/package/portwatch"))
}

/// The test certificate (DER) that signed the driver: `$PORTWATCH_TEST_CER`,
/// else the package's `portwatch-test.cer`.
pub fn test_certificate() -> PathBuf {
    std::env::var_os(TEST_CER_OVERRIDE_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| package_dir().join("portwatch-test.cer"))
}

/// The signed driver under test: `$PORTWATCH_SYS`, else the package's
/// `portwatch.sys`.
pub fn driver_sys() -> PathBuf {
    std::env::var_os(SYS_OVERRIDE_VAR).map(PathBuf::from).unwrap_or_else(|| package_dir().join("portwatch.sys"))
}

/// The INF source, `inf/portwatch.inx`.
pub fn inx_source() -> PathBuf {
    workspace_root().join("inf/portwatch.inx")
}

/// Reads a package file, failing with the command that creates it.
pub fn read_package_file(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| {
        panic!("cannot read {} ({err}): build the driver package first with scripts/package.sh", path.display())
    })
}
