//! Where the built driver images are.
//!
//! They are built for the kernel target, never by this crate:
//! `cargo build -p portwatch -p bench-fixture -p passthrough-fixture --target x86_64-pc-windows-msvc --profile driver`.

use std::path::PathBuf;

/// The command that builds the images.
pub const BUILD: &str =
    "cargo build -p portwatch -p bench-fixture -p passthrough-fixture --target x86_64-pc-windows-msvc --profile driver";

/// A built image the benchmarks need.
#[derive(Debug, Clone, Copy)]
pub enum Artifact {
    /// `portwatch.sys` (the linker writes it as `portwatch.dll`).
    Driver,
    /// The raw-FFI / guard fixture.
    Fixture,
    /// The pass-through filter (the data-path baseline).
    Passthrough,
}

impl Artifact {
    fn env_var(self) -> &'static str {
        match self {
            Artifact::Driver => "PORTWATCH_SYS",
            Artifact::Fixture => "PORTWATCH_BENCH_FIXTURE",
            Artifact::Passthrough => "PORTWATCH_PASSTHROUGH",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Artifact::Driver => "portwatch.dll",
            Artifact::Fixture => "bench_fixture.dll",
            Artifact::Passthrough => "passthrough_fixture.dll",
        }
    }

    /// `$PORTWATCH_SYS` / `$PORTWATCH_BENCH_FIXTURE`, else the image under
    /// `$CARGO_TARGET_DIR`, else under the workspace's `target/`. Panics
    /// (tests never skip) when it is missing.
    pub fn path(self) -> PathBuf {
        if let Some(explicit) = std::env::var_os(self.env_var()) {
            let p = PathBuf::from(explicit);
            assert!(p.is_file(), "{}={} does not exist; build it with `{BUILD}`", self.env_var(), p.display());
            return p;
        }
        let rel = PathBuf::from("x86_64-pc-windows-msvc/driver").join(self.file_name());
        let candidates = [
            std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join(&rel)),
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target").join(&rel)),
        ];
        candidates.into_iter().flatten().find(|p| p.is_file()).unwrap_or_else(|| {
            panic!(
                "{} not found (looked in ${}, $CARGO_TARGET_DIR and target/); build it first with `{BUILD}`",
                self.file_name(),
                self.env_var()
            )
        })
    }
}
