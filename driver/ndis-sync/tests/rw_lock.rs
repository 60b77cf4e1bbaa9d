//! RwLock on the host model: behaviour and rule checks.
#![cfg(not(loom))]

mod common;

use ndis_sync::stack_pin_init;

use common::{maybe_dispatch, passive, stale_dispatch, ROUNDS};
use ndis_sync::host::{self, at_dispatch, at_irql};
use ndis_sync::{AllocError, RwLock, SpinLock, APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL};
use std::sync::Barrier;

#[test]
fn read_and_write_run_at_dispatch_and_restore() {
    let lock = RwLock::new(1).unwrap();
    let mut p = passive();
    let irql = lock.read(&mut p, |_, _| host::current_irql());
    assert_eq!(irql, DISPATCH_LEVEL);
    lock.write(&mut p, |v, _| *v = 2);
    assert_eq!((host::current_irql(), host::held_lock_count()), (PASSIVE_LEVEL, 0));
    at_irql(APC_LEVEL, || {
        let mut m = maybe_dispatch();
        lock.read(&mut m, |_, _| ());
        assert_eq!(host::current_irql(), APC_LEVEL);
    });
    assert_eq!(lock.into_inner(), 2);
}

#[test]
fn at_dispatch_forms_work_at_dispatch() {
    let lock = RwLock::new(1).unwrap();
    at_dispatch(|d| {
        lock.write_at_dispatch(d, |v, _| *v += 1);
        lock.write(d, |v, _| *v += 1);
        assert_eq!(lock.read_at_dispatch(d, |v, _| *v), 3);
        assert_eq!(lock.read(d, |v, _| *v), 3);
        assert_eq!(host::current_irql(), DISPATCH_LEVEL);
    });
}

#[test]
fn readers_share_the_lock() {
    let lock = RwLock::new(5).unwrap();
    let both_inside = Barrier::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut p = passive();
                lock.read(&mut p, |v, _| {
                    both_inside.wait();
                    assert_eq!(*v, 5);
                });
            });
        }
    });
}

#[test]
fn writers_exclude_each_other_and_readers() {
    let lock = RwLock::new((0usize, 0usize)).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut irql = maybe_dispatch();
                for _ in 0..ROUNDS {
                    lock.write(&mut irql, |(a, b), _| {
                        *a += 1;
                        std::thread::yield_now();
                        *b += 1;
                    });
                }
            });
        }
        s.spawn(|| {
            let mut irql = maybe_dispatch();
            for _ in 0..ROUNDS {
                lock.read(&mut irql, |(a, b), _| assert_eq!(a, b));
            }
        });
    });
    assert_eq!(lock.into_inner(), (2 * ROUNDS, 2 * ROUNDS));
}

#[test]
fn read_may_recurse_on_one_thread() {
    let lock = RwLock::new(4).unwrap();
    let mut p = passive();
    let sum = lock.read(&mut p, |outer, d| lock.read_at_dispatch(d, |inner, _| outer + inner));
    assert_eq!(sum, 8);
    assert_eq!(host::held_lock_count(), 0);
}

#[test]
fn nested_spin_lock_inside_a_read() {
    let table = RwLock::new(1).unwrap();
    stack_pin_init!(let endpoint = SpinLock::new(0));
    let mut p = passive();
    table.read(&mut p, |bound, d| *endpoint.lock_at_dispatch(d) += *bound);
    assert_eq!(*endpoint.as_mut().data_mut(), 1);
}

#[test]
fn a_panicking_closure_releases_the_lock() {
    let lock = RwLock::new(0).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut p = passive();
        lock.write(&mut p, |_, _| panic!("inside write"));
    }));
    assert!(result.is_err());
    assert_eq!((host::held_lock_count(), host::current_irql()), (0, PASSIVE_LEVEL));
    let mut p = passive();
    lock.write(&mut p, |v, _| *v = 1);
    assert_eq!(lock.into_inner(), 1);
}

#[test]
fn allocation_failure_is_an_error() {
    host::fail_next_rw_lock_allocations(1);
    assert_eq!(RwLock::new(0).err(), Some(AllocError));
    assert_eq!(AllocError.to_string(), "NdisAllocateRWLock failed");
    // SAFETY: a NULL handle is always accepted.
    assert!(unsafe { RwLock::with_handle(core::ptr::null_mut(), 0) }.is_ok());
}

#[test]
fn get_mut_and_debug() {
    let mut lock = RwLock::new(1).unwrap();
    *lock.get_mut() += 1;
    assert_eq!(format!("{lock:?}"), "RwLock { .. }");
    assert_eq!(lock.into_inner(), 2);
}

#[test]
#[should_panic(expected = "RwWriteWhileReading")]
fn write_while_reading_on_one_thread_is_reported() {
    let lock = RwLock::new(0).unwrap();
    let mut p = passive();
    lock.read(&mut p, |_, d| lock.write_at_dispatch(d, |_, _| ()));
}

#[test]
#[should_panic(expected = "RwLockReentered")]
fn read_inside_write_is_refused() {
    let lock = RwLock::new(0).unwrap();
    let mut p = passive();
    lock.write(&mut p, |_, d| lock.read_at_dispatch(d, |_, _| ()));
}

#[test]
#[should_panic(expected = "RwLockReentered")]
fn write_inside_write_is_refused() {
    let lock = RwLock::new(0).unwrap();
    let mut p = passive();
    lock.write(&mut p, |_, d| lock.write_at_dispatch(d, |_, _| ()));
}

#[test]
#[should_panic(expected = "RwlAtDispatchFlagWrong")]
fn at_dispatch_flag_below_dispatch_is_reported() {
    let lock = RwLock::new(0).unwrap();
    let mut stale = stale_dispatch();
    lock.read_at_dispatch(&mut stale, |_, _| ());
}

#[test]
#[should_panic(expected = "OutOfOrderRelease")]
fn rw_release_out_of_order_is_reported() {
    let rw = RwLock::new(0).unwrap();
    stack_pin_init!(let spin = SpinLock::new(0));
    let mut p = passive();
    let mut forged = maybe_dispatch();
    let mut leaked = None;
    rw.read(&mut p, |_, _| leaked = Some(spin.lock(&mut forged)));
    drop(leaked);
}

/// RW locks take part in the lock-order check too: read A then write B, and
/// later read B then write A, is an inversion.
#[test]
#[should_panic(expected = "LockOrderInversion")]
fn rw_lock_order_inversion_is_reported() {
    let (a, b) = (RwLock::new(0).unwrap(), RwLock::new(0).unwrap());
    let mut p = passive();
    a.read(&mut p, |_, d| b.write_at_dispatch(d, |_, _| ()));
    b.read(&mut p, |_, d| a.write_at_dispatch(d, |_, _| ()));
}
