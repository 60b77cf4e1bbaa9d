//! Scenario 3 at CI size, under special pool: both storms while adapters
//! pause, restart, detach and attach, then load/unload cycles.

mod common;

use portwatch_scenarios::Scenario;

#[test]
fn lifecycle_storm_is_clean() {
    let t = common::target();
    let s = Scenario::Lifecycle.run(&t, &common::params(4));
    common::assert_clean(&s, common::OPS);
    assert!(s.packets > 0, "{s}");
}

/// The same with sends completed and receives returned late, from other
/// threads, so that pauses meet NBLs outstanding and IOCTL threads run
/// alongside traffic, pause/restart and detach/attach at once.
#[test]
fn lifecycle_storm_with_late_completions_is_clean() {
    use portwatch_scenarios::harness_target::{driver_path, Completion, HarnessConfig, HarnessTarget};
    let config = HarnessConfig {
        completion: Completion::Delayed(std::time::Duration::from_micros(200)),
        ..HarnessConfig::new(&driver_path(), 2)
    };
    let t = HarnessTarget::load(config).expect("load portwatch.sys");
    let s = Scenario::Lifecycle.run(&t, &common::params(7));
    common::assert_clean(&s, common::OPS);
    assert!(s.packets > 0, "{s}");
}
