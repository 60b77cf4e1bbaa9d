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

/// The storm ends by filling one endpoint to MAX_BINDINGS_PER_ENDPOINT:
/// the bind past it is refused with STATUS_QUOTA_EXCEEDED, and the
/// refused port is then asked for (a refused bind must change nothing).
#[test]
fn the_binding_limit_is_reached_and_its_refusal_checked() {
    use common::recording::{Event, Recording};
    use portwatch_proto::{PortRequest, Wire};

    let t = Recording::new(common::target());
    let s = Scenario::IoctlStorm.run(&t, &portwatch_scenarios::Params::ops(2, 200, 1));
    common::assert_clean(&s, 200);
    let events = t.events();
    let quota_exceeded = 0xC000_0044_u32 as i32;
    let refused = events
        .iter()
        .position(|e| matches!(e, Event::Ioctl(portwatch_proto::IOCTL_BIND_PORT, _, Some(st)) if *st == quota_exceeded))
        .expect("a bind refused with STATUS_QUOTA_EXCEEDED");
    let Event::Ioctl(_, input, _) = &events[refused] else { unreachable!() };
    let port = PortRequest::read(input).map(|r| r.port);
    assert!(
        events[refused..].iter().any(|e| matches!(e,
            Event::Ioctl(portwatch_proto::IOCTL_GET_PORT_STATS, i, Some(0)) if PortRequest::read(i).map(|r| r.port) == port)),
        "the refused port's stats were not checked"
    );
}
