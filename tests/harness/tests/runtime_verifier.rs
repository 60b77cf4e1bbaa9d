//! Negative tests of the built-in Driver Verifier: the fixture driver
//! commits each violation class on purpose and each must be caught with the
//! exact rule and bug check code; `fixture_ok_all` must raise nothing.

mod runtime_common;

use std::time::Duration;

use portwatch_harness::irql::{DISPATCH, PASSIVE};
use portwatch_harness::verifier::{self, codes, Config, LowResources, Violation};
use portwatch_harness::{kernel, pool, stack};
use runtime_common::Fixture;

fn expect(v: Result<u32, Violation>, rule: &str, bugcheck: u32, p1: Option<u64>) -> Violation {
    let v = v.expect_err("the violation was not caught");
    assert_eq!(v.rule, rule, "{v}");
    assert_eq!(v.bugcheck, bugcheck, "{v}");
    if let Some(p1) = p1 {
        assert_eq!(v.params[0], p1, "{v}");
    }
    assert_eq!(verifier::first_violation().as_ref(), Some(&v), "recorded as the session's bug check");
    v
}

const C4: u32 = codes::DRIVER_VERIFIER_DETECTED_VIOLATION;

#[test]
fn ok_all_raises_nothing() {
    let fx = Fixture::start(Config::default());
    assert_eq!(fx.call("fixture_ok_all", PASSIVE).unwrap(), 0);
    assert!(verifier::violations().is_empty(), "{:?}", verifier::violations());
    assert!(pool::outstanding().is_empty());
    assert!(pool::leak_check("verifier-fixture").is_ok());
    let out = kernel::debug_output();
    assert_eq!(
        out,
        vec!["verifier-fixture loaded (ok)\n".to_string(), "ok_all -1 7 beef 0000000000000010 done\n".to_string()]
    );
    let peak = stack::peak_usage().into_iter().find(|(n, _)| n == "fixture_ok_all").unwrap().1;
    assert!(peak > 0 && peak < 8 * 1024, "peak {peak}");
}

#[test]
fn ok_all_raises_nothing_under_special_pool() {
    let fx = Fixture::start(Config { special_pool: true, ..Config::default() });
    assert_eq!(fx.call("fixture_ok_all", PASSIVE).unwrap(), 0);
    assert!(verifier::violations().is_empty());
}

#[test]
fn concurrent_balanced_locking_raises_nothing() {
    let fx = Fixture::start(Config::default());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    assert_eq!(fx.call("fixture_deadlock_ab", PASSIVE).unwrap(), 0);
                }
            });
        }
    });
    assert!(verifier::violations().is_empty());
}

#[test]
fn wrong_release_order() {
    let fx = Fixture::start(Config::default());
    let v = expect(fx.call("fixture_wrong_release_order", PASSIVE), "spin lock released at wrong IRQL", C4, Some(0x32));
    assert_eq!(v.params[1], u64::from(PASSIVE));
    assert_eq!(v.function, "fixture_wrong_release_order");
}

#[test]
fn dpr_at_passive() {
    let fx = Fixture::start(Config::default());
    let v = expect(
        fx.call("fixture_dpr_at_passive", PASSIVE),
        "spin lock acquired at wrong IRQL",
        C4,
        Some(codes::C4_ACQUIRE_AT_DPC_BELOW_DISPATCH),
    );
    assert_eq!(v.params[1], u64::from(PASSIVE), "parameter 2 is the current IRQL");
}

#[test]
fn leak_is_reported_at_unload() {
    let fx = Fixture::start(Config::default());
    assert_eq!(fx.call("fixture_leak", PASSIVE).unwrap(), 0);
    let v = pool::leak_check("verifier-fixture").unwrap_err();
    assert_eq!((v.rule, v.bugcheck, v.params[0], v.params[3]), ("pool leaked at unload", C4, 0x62, 1));
    assert!(v.detail.contains("'VfFx' 48 bytes"), "{v}");
}

#[test]
fn double_release() {
    let fx = Fixture::start(Config::default());
    expect(fx.call("fixture_double_release", DISPATCH), "release of a lock not held", C4, Some(0x1007));
}

#[test]
fn rundown_release_unacquired() {
    let fx = Fixture::start(Config::default());
    expect(
        fx.call("fixture_rundown_release_unacquired", PASSIVE),
        "rundown released without acquire",
        C4,
        Some(0x1007),
    );
}

#[test]
fn rundown_wait_at_dispatch() {
    let fx = Fixture::start(Config::default());
    let v = expect(
        fx.call("fixture_rundown_wait_at_dispatch", PASSIVE),
        "function called above its maximum IRQL",
        C4,
        Some(codes::C4_KERNEL_API_WRONG_IRQL),
    );
    assert_eq!(v.params[1], u64::from(DISPATCH), "parameter 2 is the current IRQL");
    assert!(v.detail.contains("ExWaitForRundownProtectionRelease"), "{v}");
}

#[test]
fn rundown_reinitialised_while_live() {
    let fx = Fixture::start(Config::default());
    expect(
        fx.call("fixture_rundown_reinit_live", PASSIVE),
        "rundown reinitialised before the rundown completed",
        C4,
        Some(0x1005),
    );
}

#[test]
fn write_while_read() {
    let fx = Fixture::start(Config::default());
    expect(
        fx.call("fixture_write_while_read", PASSIVE),
        "RW lock write acquire while holding it for read",
        C4,
        Some(0x1000),
    );
}

#[test]
fn rw_lock_allocation_counts_for_low_resources() {
    let fx = Fixture::start(Config { low_resources: LowResources::FailNth(1), ..Config::default() });
    assert_eq!(fx.call("fixture_rw_alloc_may_fail", PASSIVE).unwrap(), 7, "first allocation must fail");
    assert_eq!(fx.call("fixture_rw_alloc_may_fail", PASSIVE).unwrap(), 0, "second must succeed");
    assert!(verifier::violations().is_empty());
    assert!(pool::outstanding().is_empty());
}

#[test]
fn free_held_rw_lock() {
    let fx = Fixture::start(Config::default());
    expect(fx.call("fixture_free_held_rw_lock", PASSIVE), "freeing a held lock", C4, Some(0x100B));
}

#[test]
fn recursive_spin_lock() {
    let fx = Fixture::start(Config::default());
    expect(fx.call("fixture_recursive_spin", PASSIVE), "recursive spin lock acquire", C4, Some(0x1000));
}

#[test]
fn uninitialized_spin_lock() {
    let fx = Fixture::start(Config::default());
    expect(
        fx.call("fixture_uninitialized_spin", PASSIVE),
        "spin lock used before NdisAllocateSpinLock",
        C4,
        Some(0x1002),
    );
}

/// A lock is identified by the address it was initialised at: using or
/// freeing a copy is reported, with where the original was initialised.
#[test]
fn spin_lock_used_where_it_was_not_initialised() {
    let fx = Fixture::start(Config::default());
    let v = expect(
        fx.call("fixture_spin_lock_used_where_not_initialised", PASSIVE),
        "lock used at an address other than where it was initialised",
        C4,
        Some(0x1002),
    );
    assert!(v.detail.contains("NdisAcquireSpinLock("), "{}", v.detail);
    assert!(v.detail.contains("latest NdisAllocateSpinLock calls, newest first: 0x"), "source named: {}", v.detail);
}

#[test]
fn spin_lock_freed_where_it_was_not_initialised() {
    let fx = Fixture::start(Config::default());
    let v = expect(
        fx.call("fixture_spin_lock_freed_where_not_initialised", PASSIVE),
        "lock used at an address other than where it was initialised",
        C4,
        Some(0x1002),
    );
    assert!(v.detail.starts_with("NdisFreeSpinLock("), "{}", v.detail);
}

#[test]
fn rundown_used_where_it_was_not_initialised() {
    let fx = Fixture::start(Config::default());
    let v = expect(
        fx.call("fixture_rundown_used_where_not_initialised", PASSIVE),
        "lock used at an address other than where it was initialised",
        C4,
        Some(0x1002),
    );
    assert!(v.detail.contains("ExInitializeRundownProtection calls, newest first: 0x"), "{}", v.detail);
}

#[test]
fn free_held_spin_lock() {
    let fx = Fixture::start(Config::default());
    expect(fx.call("fixture_free_held_lock", PASSIVE), "freeing a held lock", C4, Some(0x100B));
}

#[test]
fn lock_held_when_callback_returns() {
    let fx = Fixture::start(Config::default());
    expect(fx.call("fixture_return_holding_lock", PASSIVE), "lock held when callback returns", C4, Some(0x4_0009));
    assert_eq!(portwatch_harness::irql::current(), PASSIVE, "the harness restores the caller's IRQL");
}

#[test]
fn lock_order_inversion_is_a_deadlock() {
    let fx = Fixture::start(Config::default());
    assert_eq!(fx.call("fixture_deadlock_ab", PASSIVE).unwrap(), 0);
    expect(fx.call("fixture_deadlock_ba", PASSIVE), "deadlock: lock order violation", C4, Some(0x1001));
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    let fx = Fixture::start(Config::default());
    expect(
        fx.call("fixture_stack_overflow", PASSIVE),
        "kernel stack overflow",
        codes::UNEXPECTED_KERNEL_MODE_TRAP,
        Some(8),
    );
}

#[test]
fn stack_budget_is_configurable() {
    let fx = Fixture::start(Config { stack_budget: 96 * 1024, ..Config::default() });
    assert_eq!(fx.call("fixture_stack_overflow", PASSIVE).unwrap(), 0);
    let peak = stack::peak_usage().into_iter().find(|(n, _)| n == "fixture_stack_overflow").unwrap().1;
    assert!(peak >= 64 * 1024, "peak {peak}");
}

#[test]
fn use_after_free_under_special_pool() {
    let fx = Fixture::start(Config { special_pool: true, ..Config::default() });
    let v = expect(
        fx.call("fixture_use_after_free", PASSIVE),
        "use after free (special pool)",
        codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL,
        None,
    );
    assert_eq!(v.params[1], 0, "a read");
}

#[test]
fn driver_bug_check() {
    let fx = Fixture::start(Config::default());
    let v = expect(fx.call("fixture_bugcheck", PASSIVE), "KeBugCheckEx called by the driver", 0xDEAD, None);
    assert_eq!(v.params, [1, 2, 3, 4]);
}

#[test]
fn after_a_bug_check_nothing_runs() {
    let fx = Fixture::start(Config { watchdog: Duration::from_secs(30), ..Config::default() });
    // Leaves spin lock A held: the session's bug check.
    let first = fx.call("fixture_return_holding_lock", PASSIVE).unwrap_err();
    assert_eq!(first.rule, "lock held when callback returns");
    // Another thread would spin on A until the watchdog; it is stopped at
    // once instead, with the bug check it ran into.
    let started = std::time::Instant::now();
    let other = std::thread::scope(|s| s.spawn(|| fx.call("fixture_deadlock_ab", PASSIVE)).join().unwrap());
    let v = other.unwrap_err();
    assert_eq!(v.rule, portwatch_harness::verifier::STOPPED, "{v}");
    assert!(v.detail.contains(first.rule), "{v}");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped in {:?}", started.elapsed());
    assert_eq!(portwatch_harness::verifier::violations(), vec![first], "the stop is not a violation of its own");
}
