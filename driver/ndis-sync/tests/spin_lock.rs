//! SpinLock on the host model: behaviour and rule checks.
#![cfg(not(loom))]

mod common;

use ndis_sync::stack_pin_init;

use common::{maybe_dispatch, passive, stale_dispatch, ROUNDS};
use ndis_sync::host::{self, at_dispatch, at_irql};
use ndis_sync::{MappedSpinLockGuard, SpinLock, SpinLockGuard, APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL};
use std::sync::Barrier;

#[test]
fn lock_raises_to_dispatch_and_release_restores_passive() {
    stack_pin_init!(let lock = SpinLock::new(0));
    let mut p = passive();
    let guard = lock.lock(&mut p);
    assert_eq!(host::current_irql(), DISPATCH_LEVEL);
    assert_eq!(host::held_lock_count(), 1);
    drop(guard);
    assert_eq!(host::current_irql(), PASSIVE_LEVEL);
    assert_eq!(host::held_lock_count(), 0);
}

#[test]
fn lock_restores_the_irql_it_was_taken_at() {
    stack_pin_init!(let lock = SpinLock::new(0));
    at_irql(APC_LEVEL, || {
        let mut irql = maybe_dispatch();
        drop(lock.lock(&mut irql));
        assert_eq!(host::current_irql(), APC_LEVEL);
    });
}

#[test]
fn lock_with_a_dispatch_token_stays_at_dispatch() {
    stack_pin_init!(let lock = SpinLock::new(0));
    at_dispatch(|d| {
        *lock.lock(d) += 1;
        assert_eq!(host::current_irql(), DISPATCH_LEVEL);
        *lock.lock_at_dispatch(d) += 1;
    });
    assert_eq!(*lock.as_mut().data_mut(), 2);
}

#[test]
fn lock_excludes_other_threads() {
    stack_pin_init!(let lock = SpinLock::new(0usize));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut irql = maybe_dispatch();
                for _ in 0..ROUNDS {
                    let mut guard = lock.lock(&mut irql);
                    let seen = *guard;
                    std::thread::yield_now();
                    *guard = seen + 1;
                }
            });
        }
    });
    assert_eq!(*lock.as_mut().data_mut(), 4 * ROUNDS);
}

#[test]
fn nested_lock_through_split_and_dispatch() {
    stack_pin_init!(let outer = SpinLock::new(1));
    stack_pin_init!(let inner = SpinLock::new(10));
    let mut p = passive();
    let mut a = outer.lock(&mut p);
    {
        let (a_data, d) = a.split();
        let mut b = inner.lock_at_dispatch(d);
        *b += *a_data;
        *a_data += 1;
        assert_eq!(host::held_lock_count(), 2);
    }
    let b = inner.lock_at_dispatch(a.dispatch());
    assert_eq!(*b, 11);
    drop(b);
    drop(a);
    assert_eq!((*outer.as_mut().data_mut(), host::current_irql()), (2, PASSIVE_LEVEL));
}

#[test]
fn map_narrows_and_keeps_the_lock_held() {
    stack_pin_init!(let lock = SpinLock::new((1u8, [0u8; 3])));
    let mut p = passive();
    let array = SpinLockGuard::map(lock.lock(&mut p), |v| &mut v.1);
    let mut middle = MappedSpinLockGuard::map(array, |a| &mut a[1]);
    *middle = 9;
    assert_eq!(host::held_lock_count(), 1);
    drop(middle);
    assert_eq!(host::held_lock_count(), 0);
    assert_eq!(*lock.as_mut().data_mut(), (1, [0, 9, 0]));
}

#[test]
fn map_releases_the_lock_when_the_closure_panics() {
    stack_pin_init!(let lock = SpinLock::new(0));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut p = passive();
        let _ = SpinLockGuard::map(lock.lock(&mut p), |_| -> &mut u8 { panic!("in map") });
    }));
    assert!(result.is_err());
    assert_eq!((host::held_lock_count(), host::current_irql()), (0, PASSIVE_LEVEL));
}

#[test]
fn data_mut_and_debug() {
    stack_pin_init!(let lock = SpinLock::new(0u32));
    *lock.as_mut().data_mut() += 3;
    assert_eq!(format!("{lock:?}"), "SpinLock { .. }");
    let mut p = passive();
    assert_eq!(format!("{:?}", lock.lock(&mut p)), "3");
}

#[test]
fn dropping_the_lock_drops_the_data_once() {
    let data = std::rc::Rc::new(());
    {
        stack_pin_init!(let lock = SpinLock::new(data.clone()));
        assert_eq!(std::rc::Rc::strong_count(&data), 2);
        let _ = lock;
    } // dropped in place here
    assert_eq!(std::rc::Rc::strong_count(&data), 1);
}

#[test]
#[should_panic(expected = "SpinLockRecursion")]
fn recursive_acquire_on_one_thread_is_reported() {
    stack_pin_init!(let lock = SpinLock::new(0));
    let mut p = passive();
    let mut guard = lock.lock(&mut p);
    let _again = lock.lock_at_dispatch(guard.dispatch());
}

#[test]
#[should_panic(expected = "DprBelowDispatch")]
fn dpr_acquire_below_dispatch_is_reported() {
    stack_pin_init!(let lock = SpinLock::new(0));
    let mut stale = stale_dispatch();
    let _guard = lock.lock_at_dispatch(&mut stale);
}

#[test]
#[should_panic(expected = "OutOfOrderRelease")]
fn releasing_the_outer_lock_first_is_reported() {
    // Seed 002's bug, written with two forged tokens (the safe API rejects it).
    stack_pin_init!(let a_lock = SpinLock::new(0));
    stack_pin_init!(let b_lock = SpinLock::new(0));
    let mut p = passive();
    let a = a_lock.lock(&mut p);
    let mut forged = maybe_dispatch();
    let b = b_lock.lock(&mut forged);
    drop(a);
    drop(b);
}

#[test]
#[should_panic(expected = "FreeHeldLock")]
fn freeing_a_held_lock_is_reported() {
    stack_pin_init!(let lock = SpinLock::new(0));
    let mut p = passive();
    core::mem::forget(lock.lock(&mut p));
} // freed here, in place

#[test]
#[should_panic(expected = "IrqlLoweredWhileHolding")]
fn leaving_at_irql_with_a_leaked_guard_is_reported() {
    stack_pin_init!(let lock = SpinLock::new(0));
    let mut irql = maybe_dispatch();
    at_irql(APC_LEVEL, || core::mem::forget(lock.lock(&mut irql)));
}

/// Each thread holds one lock and waits for the other's: the model names
/// the deadlock (the second thread sees the first's order) instead of hanging.
#[test]
#[should_panic(expected = "LockOrderInversion")]
fn abba_deadlock_between_two_threads_is_reported() {
    stack_pin_init!(let a = SpinLock::new(0));
    stack_pin_init!(let b = SpinLock::new(0));
    let both_hold_one = Barrier::new(2);
    let start = std::time::Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        let t1 = s.spawn(|| {
            let mut p = passive();
            let mut ga = a.lock(&mut p);
            both_hold_one.wait();
            let _gb = b.lock_at_dispatch(ga.dispatch());
        });
        let t2 = s.spawn(|| {
            let mut p = passive();
            let mut gb = b.lock(&mut p);
            both_hold_one.wait();
            let _ga = a.lock_at_dispatch(gb.dispatch());
        });
        [t1.join(), t2.join()].into_iter().filter_map(Result::err).collect()
    });
    assert!(start.elapsed() < std::time::Duration::from_secs(1), "reported within a second");
    std::panic::resume_unwind(results.into_iter().next().expect("a violation"));
}

/// A then B on one thread, later B then A on another: no deadlock happened,
/// but Driver Verifier's deadlock detection reports the inverted order, and
/// so does the model.
#[test]
#[should_panic(expected = "LockOrderInversion")]
fn lock_order_inversion_at_different_times_is_reported() {
    stack_pin_init!(let a = SpinLock::new(0));
    stack_pin_init!(let b = SpinLock::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut p = passive();
            let mut ga = a.lock(&mut p);
            let _gb = b.lock_at_dispatch(ga.dispatch());
        })
        .join()
        .unwrap();
        s.spawn(|| {
            let mut p = passive();
            let mut gb = b.lock(&mut p);
            let _ga = a.lock_at_dispatch(gb.dispatch());
        })
        .join()
        .map_err(std::panic::resume_unwind)
        .unwrap();
    });
}

/// A thread ends at DISPATCH_LEVEL holding a spin lock (its guard leaked):
/// the next thread to wait for the lock gets a named report, not a hang.
#[test]
#[should_panic(expected = "ThreadExitedHoldingLock")]
fn thread_ending_with_a_held_spin_lock_is_reported() {
    let lock = std::sync::Arc::new(ndis_sync::try_pin_box(SpinLock::new(0)).unwrap());
    let leaked = std::sync::Arc::clone(&lock);
    std::thread::spawn(move || {
        let mut p = passive();
        std::mem::forget(leaked.lock(&mut p));
        assert_eq!(host::current_irql(), DISPATCH_LEVEL);
    })
    .join()
    .unwrap();
    let mut p = passive();
    let _guard = lock.lock(&mut p);
}
