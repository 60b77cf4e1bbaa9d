//! PassiveMutex (KMUTEX) on the host model: behaviour and rule checks.
#![cfg(not(loom))]

mod common;

use common::{passive, ROUNDS};
use ndis_sync::host::{self, at_irql};
use ndis_sync::{Mutex, PassiveMutex, Rundown, Semaphore, SpinLock, APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

fn mutex<T>(value: T) -> Pin<Box<PassiveMutex<T>>> {
    common::pinned_mutex(value)
}

#[test]
fn lock_keeps_passive_and_disables_normal_kernel_apcs() {
    let m = mutex(0);
    let mut p = passive();
    let guard = m.lock(&mut p);
    assert_eq!(host::current_irql(), PASSIVE_LEVEL);
    assert_eq!(host::kernel_apcs_disabled(), 1);
    drop(guard);
    assert_eq!(host::current_irql(), PASSIVE_LEVEL);
    assert_eq!(host::kernel_apcs_disabled(), 0);
}

#[test]
fn spin_lock_fast_mutex_semaphore_and_run_down_nest_inside() {
    let m = mutex(1);
    ndis_sync::stack_pin_init!(let spin = SpinLock::new(2));
    ndis_sync::stack_pin_init!(let fast = Mutex::in_place(3));
    ndis_sync::stack_pin_init!(let sem = Semaphore::in_place(1));
    let mut p = passive();
    ndis_sync::stack_pin_init!(let module = Rundown::new(&p, 4));
    let mut guard = m.lock(&mut p);
    let (data, critical) = guard.split();
    {
        let inner = spin.lock(critical);
        assert_eq!(host::current_irql(), DISPATCH_LEVEL);
        *data += *inner;
    }
    assert_eq!(host::current_irql(), PASSIVE_LEVEL);
    {
        let inner = fast.lock(critical);
        assert_eq!(host::current_irql(), APC_LEVEL);
        *data += *inner;
    }
    assert_eq!(host::current_irql(), PASSIVE_LEVEL);
    let permit = sem.acquire(critical, Duration::from_millis(10)).expect("a permit is free");
    drop(permit);
    assert_eq!(module.run_down(critical), Some(4));
    drop(guard);
    assert_eq!(*m.lock(&mut p), 6);
}

#[test]
fn excludes_other_threads() {
    let m = Arc::new(mutex((0u64, 0u64)));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                let mut p = passive();
                for _ in 0..ROUNDS {
                    let mut g = m.lock(&mut p);
                    // Two fields updated apart: a second holder would see them differ.
                    assert_eq!(g.0, g.1);
                    g.0 += 1;
                    std::hint::spin_loop();
                    g.1 += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(&mut passive()), (4 * ROUNDS as u64, 4 * ROUNDS as u64));
}

#[test]
#[should_panic(expected = "MutexObjectRecursion")]
fn recursion_through_a_forged_token_is_reported() {
    let m = mutex(0);
    let mut p = passive();
    let _outer = m.lock(&mut p);
    // The types forbid this: only a second, forged Passive token reaches it.
    let mut forged = passive();
    let _inner = m.lock(&mut forged);
}

#[test]
#[should_panic(expected = "MutexObjectReleaseNotOwner")]
fn release_by_a_non_owner_is_reported() {
    let m = Arc::new(mutex(0));
    let held = Arc::clone(&m);
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let owner = std::thread::spawn(move || {
        let mut p = passive();
        let _g = held.lock(&mut p);
        tx.send(()).unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(5));
    });
    rx.recv().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.release_unpaired()));
    drop(done_tx);
    owner.join().unwrap();
    std::panic::resume_unwind(result.expect_err("the release must be refused"));
}

#[test]
#[should_panic(expected = "MutexObjectReleaseNotOwner")]
fn release_of_a_free_mutex_is_reported() {
    mutex(()).release_unpaired();
}

#[test]
#[should_panic(expected = "MutexObjectAcquireAboveApc")]
fn acquire_at_dispatch_is_reported() {
    let m = mutex(0);
    // The types forbid this (lock needs Passive); a forged token shows the model's check.
    let mut forged = passive();
    at_irql(DISPATCH_LEVEL, || drop(m.lock(&mut forged)));
}

#[test]
#[should_panic(expected = "MutexObjectHeldAtUserReturn")]
fn returning_to_user_mode_holding_it_is_reported() {
    let m = mutex(0);
    let mut p = passive();
    let guard = m.lock(&mut p);
    std::mem::forget(guard); // a leaked guard: the thread goes back holding it
    host::return_to_user_mode();
}

#[test]
fn returning_to_user_mode_after_release_is_fine() {
    let m = mutex(0);
    let mut p = passive();
    drop(m.lock(&mut p));
    host::return_to_user_mode();
}

#[test]
#[should_panic(expected = "PassiveMutex locked before PassiveMutex::init")]
fn lock_before_init_panics() {
    let m = Box::pin(PassiveMutex::new(0));
    let _ = m.lock(&mut passive());
}
