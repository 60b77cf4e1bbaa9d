//! Mutex (FAST_MUTEX) on the host model: behaviour and rule checks.
#![cfg(not(loom))]

mod common;

use common::{passive, ROUNDS};
use ndis_sync::host::{self, at_dispatch, at_irql};
use ndis_sync::{Apc, Mutex, Rundown, SpinLock, APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL};
use std::pin::Pin;
use std::sync::Arc;

fn mutex<T>(value: T) -> Pin<Box<Mutex<T>>> {
    common::pinned_mutex(value)
}

#[test]
fn lock_raises_to_apc_and_release_restores_passive() {
    let m = mutex(0);
    let mut p = passive();
    let guard = m.lock(&mut p);
    assert_eq!(host::current_irql(), APC_LEVEL);
    assert_eq!(host::held_mutex_count(), 1);
    drop(guard);
    assert_eq!(host::current_irql(), PASSIVE_LEVEL);
    assert_eq!(host::held_mutex_count(), 0);
}

#[test]
fn spin_lock_inside_the_mutex_restores_apc() {
    let m = mutex(1);
    ndis_sync::stack_pin_init!(let spin = SpinLock::new(2));
    let mut p = passive();
    let mut guard = m.lock(&mut p);
    let (data, apc) = guard.split();
    let inner = spin.lock(apc);
    assert_eq!(host::current_irql(), DISPATCH_LEVEL);
    *data += *inner;
    drop(inner);
    assert_eq!(host::current_irql(), APC_LEVEL);
    drop(guard);
    assert_eq!(*m.lock(&mut p), 3);
}

#[test]
fn run_down_is_allowed_inside_the_mutex() {
    let m = mutex(());
    let mut p = passive();
    ndis_sync::stack_pin_init!(let module = Rundown::new(&p, 7));
    let mut guard = m.lock(&mut p);
    assert_eq!(module.run_down(guard.apc()), Some(7));
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
                    let seen = g.0;
                    std::thread::yield_now();
                    g.0 = seen + 1;
                    g.1 += 1;
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let mut p = passive();
    assert_eq!(*m.lock(&mut p), (4 * ROUNDS as u64, 4 * ROUNDS as u64));
}

#[test]
#[should_panic(expected = "locked before Mutex::init")]
fn locking_an_uninitialised_mutex_panics() {
    let m = Mutex::new(0);
    let mut p = passive();
    drop(m.lock(&mut p));
}

#[test]
#[should_panic(expected = "MutexRecursion")]
fn recursive_acquire_is_reported() {
    let m = mutex(0);
    let mut p = passive();
    let mut guard = m.lock(&mut p);
    // Compiles (the guard's own APC token is AtMostApc) and would deadlock.
    drop(m.lock(guard.apc()));
}

#[test]
#[should_panic(expected = "MutexAcquireAboveApc")]
fn acquire_at_dispatch_is_reported() {
    let m = mutex(0);
    at_irql(DISPATCH_LEVEL, || {
        // SAFETY: deliberately wrong: the model must report the acquire.
        let mut apc = unsafe { Apc::new_unchecked() };
        drop(m.lock(&mut apc));
    });
}

#[test]
#[should_panic(expected = "MutexReleaseNotOwner")]
fn release_by_another_thread_is_reported() {
    let m = Arc::new(mutex(0));
    let mut p = passive();
    let guard = m.lock(&mut p);
    std::mem::forget(guard); // the owner keeps it
    let other = Arc::clone(&m);
    let result = std::thread::spawn(move || other.release_unpaired()).join();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
#[should_panic(expected = "MutexReleaseNotOwner")]
fn release_of_a_free_mutex_is_reported() {
    mutex(0).release_unpaired();
}

#[test]
#[should_panic(expected = "LockNotInitialisedHere")]
fn a_moved_mutex_is_reported() {
    let mut m = Box::pin(Mutex::new(0));
    m.as_mut().init();
    // SAFETY: deliberately wrong: a bitwise copy of a pinned, initialised
    // mutex (of plain data, so both copies may drop).
    let moved: Mutex<i32> = unsafe { std::ptr::read(&*m) };
    let moved = Box::pin(moved);
    let mut p = passive();
    drop(moved.lock(&mut p));
}

#[test]
fn dispatch_level_tokens_cannot_lock_but_at_dispatch_restores() {
    // The types refuse a Dispatch token (see tests/ui); the IRQL model is
    // unaffected by a spin lock taken at DISPATCH.
    at_dispatch(|_| assert_eq!(host::held_mutex_count(), 0));
}
