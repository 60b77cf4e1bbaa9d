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
