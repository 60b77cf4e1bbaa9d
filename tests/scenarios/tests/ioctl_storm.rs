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

/// The driver's admission control for snapshot replies (a semaphore of
/// SNAPSHOT_REPLIES permits): with every permit held by others, a burst of
/// enumerations waits out the driver's timeout and is refused with
/// STATUS_DEVICE_BUSY (nothing copied back); once the permits are back the
/// same burst is served, and every permit the driver took came back.
#[test]
fn an_enumeration_burst_meets_the_admission_limit_and_its_timeout() {
    use portwatch_harness::wait;
    use portwatch_scenarios::run::Run;
    use portwatch_scenarios::scenarios::ioctl_storm::{check_enumeration_served, enumeration_burst, SNAPSHOT_REPLIES};
    use portwatch_scenarios::{Params, Target};

    let t = common::target();
    let params = Params::ops(2, 1_000, 3);
    let run = Run::new(&params);
    let semaphores = wait::semaphores();
    assert_eq!(semaphores.len(), 1, "the driver's one semaphore: {semaphores:?}");
    let (addr, count, limit) = semaphores[0];
    assert_eq!((count, limit), (SNAPSHOT_REPLIES as i32, SNAPSHOT_REPLIES as i32));

    let start = std::time::Instant::now();
    let held = wait::hold_all_permits();
    let busy = enumeration_burst(&t, &run, 4, 2);
    drop(held);
    assert_eq!(busy, 8, "every enumeration of the burst refused busy");
    assert!(start.elapsed() >= std::time::Duration::from_millis(2 * 50), "each waited the driver's timeout");

    let busy = enumeration_burst(&t, &run, 8, 25);
    assert_eq!(wait::semaphore_count(addr), Some(limit), "every permit came back");
    check_enumeration_served(&t, &run);
    eprintln!("unheld burst: {busy} of 200 refused busy");
    let health = t.unload().expect("unload");
    let s = run.summary("enumeration-burst", health);
    assert!(s.is_clean(), "{s}");
}
