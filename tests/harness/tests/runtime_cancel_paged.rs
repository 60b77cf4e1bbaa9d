//! IRP cancellation and paged pool through a real cross-compiled driver:
//! the verifier-fixture imports the cancel spin lock, IoCancelIrp and the
//! IoCsq* library from ntoskrnl.exe (bound by the loader like any other
//! import) and touches paged pool at PASSIVE_LEVEL and under a spin lock.

mod runtime_common;

use portwatch_harness::irql::{DISPATCH, PASSIVE};
use portwatch_harness::pool;
use portwatch_harness::verifier::{self, codes, Config};
use runtime_common::Fixture;

#[test]
fn cancel_imports_bind_and_the_cancel_safe_queue_works() {
    let fx = Fixture::start(Config::default());
    let bound: Vec<&str> = fx.image.bound_imports().iter().map(|(_, name)| name.as_str()).collect();
    for name in [
        "IoAcquireCancelSpinLock",
        "IoReleaseCancelSpinLock",
        "IoCancelIrp",
        "IoCsqInitialize",
        "IoCsqInsertIrp",
        "IoCsqRemoveIrp",
        "IoCsqRemoveNextIrp",
    ] {
        assert!(bound.contains(&name), "{name} not bound: {bound:?}");
    }
    assert_eq!(fx.call("fixture_cancel_ok", PASSIVE).unwrap(), 0);
    assert!(verifier::violations().is_empty(), "{:?}", verifier::violations());
}

#[test]
fn cancel_spin_lock_released_unheld_is_caught() {
    let fx = Fixture::start(Config::default());
    let v = fx.call("fixture_cancel_release_unheld", PASSIVE).unwrap_err();
    assert_eq!(
        (v.rule, v.bugcheck, v.params[0]),
        (
            "IoReleaseCancelSpinLock without holding it",
            codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
            codes::C4_UNACQUIRED_RESOURCE
        ),
        "{v}"
    );
}

#[test]
fn paged_pool_at_passive_is_clean() {
    let fx = Fixture::start(Config::default());
    assert_eq!(fx.call("fixture_paged_ok", PASSIVE).unwrap(), 0);
    assert!(verifier::violations().is_empty(), "{:?}", verifier::violations());
    assert!(pool::outstanding().is_empty());
}

#[test]
fn paged_pool_touched_under_a_spin_lock_is_caught() {
    let fx = Fixture::start(Config::default());
    let v = fx.call("fixture_paged_under_spin_lock", PASSIVE).unwrap_err();
    assert_eq!(
        (v.rule, v.bugcheck),
        ("pageable memory touched at DISPATCH_LEVEL", codes::DRIVER_IRQL_NOT_LESS_OR_EQUAL),
        "{v}"
    );
    assert_eq!(v.params[1], u64::from(DISPATCH), "{v}");
    assert!(fx.image.contains(v.params[3] as usize), "the faulting instruction is the driver's: {v}");
}
