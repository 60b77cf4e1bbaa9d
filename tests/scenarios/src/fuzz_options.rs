//! The verifier options of a fuzz input (the harness-driven targets in
//! `fuzz/`): chosen by a header byte that the input's program never reads,
//! so how often each option is on does not depend on what the program does
//! first.
//!
//! * special pool: `header % 8 == 0` (bits 0-2), one input in eight. The
//!   harness keeps every special-pool mapping of a session inaccessible for
//!   good, so with it on for every input a run exhausts the process's
//!   mappings after some 20,000 inputs.
//! * low resources: `(header >> 3) % 8 == 0` (bits 3-5), one input in
//!   eight, independent of special pool; bits 6-7 pick the failure rate.
//!   The failures come from a generator seeded by the caller (a hash of the
//!   input), so a single-threaded input fails the same allocations each run.

use crate::harness_target::{HarnessConfig, LowResources};

/// Failure rates (per mille) of the low-resources option, by header bits 6-7.
pub const LOW_RESOURCES_PER_MILLE: [u16; 4] = [10, 50, 100, 250];

/// What a fuzz input's header byte turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuzzOptions {
    /// Driver Verifier's special pool.
    pub special_pool: bool,
    /// Simulated allocation failures.
    pub low_resources: LowResources,
}

/// Whether `header` turns special pool on (one value in eight).
pub fn special_pool(header: u8) -> bool {
    header % 8 == 0
}

/// The low-resources option `header` selects (on for one value in eight),
/// its failures seeded with `seed`.
pub fn low_resources(header: u8, seed: u64) -> LowResources {
    if (header >> 3) % 8 == 0 {
        LowResources::Random { seed, per_mille: LOW_RESOURCES_PER_MILLE[usize::from(header >> 6)] }
    } else {
        LowResources::Off
    }
}

impl FuzzOptions {
    /// The options of an input with header byte `header`; `seed` seeds the
    /// simulated allocation failures.
    pub fn from_header(header: u8, seed: u64) -> Self {
        FuzzOptions { special_pool: special_pool(header), low_resources: low_resources(header, seed) }
    }

    /// Whether allocations may fail.
    pub fn allocations_may_fail(&self) -> bool {
        self.low_resources != LowResources::Off
    }

    /// `config` with these options.
    pub fn apply(&self, config: HarnessConfig) -> HarnessConfig {
        HarnessConfig { special_pool: self.special_pool, low_resources: self.low_resources, ..config }
    }
}

/// FNV-1a of `data`: a stable per-input seed for the low-resources generator.
pub fn input_seed(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_option_is_on_for_exactly_one_header_in_eight() {
        let all: Vec<FuzzOptions> = (0..=255u8).map(|h| FuzzOptions::from_header(h, 7)).collect();
        assert_eq!(all.iter().filter(|o| o.special_pool).count(), 256 / 8);
        assert_eq!(all.iter().filter(|o| o.allocations_may_fail()).count(), 256 / 8);
        // Independent: each is on for one in eight of the other's values.
        assert_eq!(all.iter().filter(|o| o.special_pool && o.allocations_may_fail()).count(), 256 / 64);
        // Every failure rate is used by the same number of headers.
        for rate in LOW_RESOURCES_PER_MILLE {
            let n = all
                .iter()
                .filter(|o| matches!(o.low_resources, LowResources::Random { per_mille, seed: 7 } if per_mille == rate))
                .count();
            assert_eq!(n, 256 / 8 / LOW_RESOURCES_PER_MILLE.len(), "{rate}");
        }
    }

    #[test]
    fn examples() {
        assert!(special_pool(0x00) && !special_pool(0x01) && !special_pool(0x09));
        assert_eq!(low_resources(0x09, 1), LowResources::Off);
        assert_eq!(low_resources(0x41, 1), LowResources::Random { seed: 1, per_mille: 50 });
    }

    #[test]
    fn input_seed_is_stable() {
        assert_eq!(input_seed(&[]), 0xcbf2_9ce4_8422_2325);
        assert_ne!(input_seed(&[1]), input_seed(&[2]));
    }
}
