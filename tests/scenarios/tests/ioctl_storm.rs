//! Scenario 1 at CI size, under special pool.

mod common;

use portwatch_scenarios::Scenario;

#[test]
fn ioctl_storm_is_clean() {
    let t = common::target();
    let s = Scenario::IoctlStorm.run(&t, &common::params(1));
    common::assert_clean(&s, common::OPS);
    assert!(s.allocations > 100, "the storm should allocate (endpoints, addresses, names): {s}");
}

#[test]
fn ioctl_storm_survives_random_allocation_failures() {
    use portwatch_scenarios::harness_target::{driver_path, HarnessConfig, HarnessTarget, LowResources};
    use portwatch_scenarios::target::TargetError;

    // 5% of allocations fail. A seed whose failures hit DriverEntry or
    // FilterAttach fails the load (cleanly, which the harness checks): take
    // the next seed.
    let target = (1..50u64)
        .find_map(|seed| {
            let low_resources = LowResources::Random { seed, per_mille: 50 };
            match HarnessTarget::load(HarnessConfig { low_resources, ..HarnessConfig::new(&driver_path(), 2) }) {
                Ok(t) => Some(t),
                Err(TargetError::Status(_)) => None,
                Err(e) => panic!("load under low resources: {e}"),
            }
        })
        .expect("some seed loads");
    let s = Scenario::IoctlStorm.run(&target, &common::params(7));
    common::assert_clean(&s, common::OPS / 2);
}
