//! Shared by the scenario tests: the CI-size parameters and the target.

#![allow(dead_code)]

pub mod forward;
pub mod recording;

use portwatch_scenarios::harness_target::{driver_path, HarnessConfig, HarnessTarget};
use portwatch_scenarios::{Params, Summary};

/// Worker threads of every CI run.
pub const THREADS: usize = 4;
/// Operations of every CI run: a few seconds each on two cores (debug build).
pub const OPS: u64 = 20_000;

/// CI-size parameters with `seed`.
pub fn params(seed: u64) -> Params {
    Params::ops(THREADS, OPS, seed)
}

/// The driver in the harness, two adapters, special pool on.
pub fn target() -> HarnessTarget {
    HarnessTarget::load(HarnessConfig::new(&driver_path(), 2)).expect("load portwatch.sys")
}

/// Asserts the run was clean and did real work.
pub fn assert_clean(s: &Summary, min_ops: u64) {
    assert!(s.is_clean(), "{s}");
    assert!(s.operations >= min_ops, "only {} operations\n{s}", s.operations);
    eprintln!("{s}");
}
