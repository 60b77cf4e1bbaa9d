//! Shared helpers of the runtime tests: find, load and call the
//! verifier-fixture driver. Included by each `runtime_*` test file.

use std::path::PathBuf;

use portwatch_harness::loader::{self, LoadedImage};
use portwatch_harness::stack::call_driver_at;
use portwatch_harness::verifier::{Config, Session, Violation};
use portwatch_harness::{imports, irql};

/// The command that builds the fixture.
pub const BUILD: &str = "cargo build -p verifier-fixture --target x86_64-pc-windows-msvc --profile driver";

/// `$PORTWATCH_FIXTURE`, else the fixture under `$CARGO_TARGET_DIR`, else
/// under the workspace's `target/`. Panics (never skips) when it is missing.
pub fn fixture_path() -> PathBuf {
    let rel = "x86_64-pc-windows-msvc/driver/verifier_fixture.dll";
    let candidates: Vec<PathBuf> = [
        std::env::var_os("PORTWATCH_FIXTURE").map(PathBuf::from),
        std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join(rel)),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target").join(rel)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(explicit) = std::env::var_os("PORTWATCH_FIXTURE") {
        let p = PathBuf::from(explicit);
        assert!(p.is_file(), "PORTWATCH_FIXTURE={} does not exist; build it with `{BUILD}`", p.display());
        return p;
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("verifier_fixture.dll not found (looked in $PORTWATCH_FIXTURE, $CARGO_TARGET_DIR and target/); build it first with `{BUILD}`"))
}

/// A loaded fixture inside an exclusive verifier session; DriverEntry ran.
pub struct Fixture {
    /// The mapped image (dropped before the session ends).
    pub image: LoadedImage,
    _session: Session,
}

impl Fixture {
    /// Begins a session with `config`, loads the fixture and runs DriverEntry.
    pub fn start(config: Config) -> Self {
        let session = Session::begin(config);
        let image = loader::load(&fixture_path(), &imports::registry()).expect("load verifier_fixture.dll");
        let entry = image.entry();
        // SAFETY: DriverEntry has this signature; the fixture ignores both
        // arguments.
        let driver_entry: extern "win64" fn(usize, usize) -> i32 = unsafe { std::mem::transmute(entry) };
        let status = call_driver_at("DriverEntry", irql::PASSIVE, || driver_entry(0, 0)).expect("DriverEntry");
        assert_eq!(status, 0);
        Self { image, _session: session }
    }

    /// Calls export `name` (`extern "system" fn() -> u32`) at `level`.
    pub fn call(&self, name: &'static str, level: u8) -> Result<u32, Violation> {
        let addr = self.image.export(name).unwrap_or_else(|| panic!("fixture has no export {name}"));
        // SAFETY: every fixture_* export has this signature.
        let f: extern "win64" fn() -> u32 = unsafe { std::mem::transmute(addr) };
        call_driver_at(name, level, || f())
    }
}
