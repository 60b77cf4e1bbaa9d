//! Semaphore (KSEMAPHORE) on the host model: behaviour and rule checks.
#![cfg(not(loom))]

mod common;

use common::{maybe_dispatch, passive};
use ndis_sync::host::{at_dispatch, at_irql};
use ndis_sync::{Apc, Mutex, Semaphore, TimedOut, APC_LEVEL};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn semaphore(limit: u32) -> Pin<Box<Semaphore>> {
    let mut s = Box::pin(Semaphore::new(limit));
    s.as_mut().init();
    s
}

#[test]
fn permits_are_bounded_and_returned_on_drop() {
    let s = semaphore(2);
    let p = passive();
    let a = s.acquire(&p, Duration::from_millis(1)).unwrap();
    let b = s.acquire(&p, Duration::from_millis(1)).unwrap();
    assert_eq!(s.available(), 0);
    assert_eq!(s.acquire(&p, Duration::from_millis(1)).unwrap_err(), TimedOut);
    drop(a);
    assert_eq!(s.available(), 1);
    drop(b);
    assert_eq!(s.available(), 2);
}

#[test]
fn the_timeout_is_waited() {
    let s = semaphore(1);
    let p = passive();
    let _held = s.acquire(&p, Duration::ZERO).unwrap();
    let start = Instant::now();
    assert!(s.acquire(&p, Duration::from_millis(30)).is_err());
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn a_waiter_gets_a_permit_released_by_another_thread() {
    let s = Arc::new(semaphore(1));
    let p = passive();
    let permit = s.acquire(&p, Duration::ZERO).unwrap();
    let waiter = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || s.acquire(&passive(), Duration::from_secs(10)).is_ok())
    };
    std::thread::sleep(Duration::from_millis(10));
    drop(permit);
    assert!(waiter.join().unwrap());
}

#[test]
fn never_more_holders_than_permits() {
    let s = Arc::new(semaphore(3));
    let inside = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (s, inside) = (Arc::clone(&s), Arc::clone(&inside));
            std::thread::spawn(move || {
                let p = passive();
                for _ in 0..common::ROUNDS / 10 {
                    let _permit = s.acquire(&p, Duration::from_secs(10)).unwrap();
                    assert!(inside.fetch_add(1, Ordering::SeqCst) < 3, "more holders than permits");
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(s.available(), 3);
}

#[test]
fn try_acquire_works_at_dispatch() {
    let s = semaphore(1);
    at_dispatch(|d| {
        let permit = s.try_acquire(d).expect("free");
        assert!(s.try_acquire(d).is_none());
        drop(permit); // KeReleaseSemaphore at DISPATCH_LEVEL
    });
    assert!(s.try_acquire(&maybe_dispatch()).is_some());
}

#[test]
fn acquire_inside_a_mutex_at_apc() {
    let s = semaphore(1);
    let mut m = Box::pin(Mutex::new(()));
    m.as_mut().init();
    let mut p = passive();
    let mut guard = m.lock(&mut p);
    assert!(s.acquire(guard.apc(), Duration::from_millis(1)).is_ok());
}

#[test]
#[should_panic(expected = "WaitAtDispatch")]
fn a_wait_with_a_timeout_at_dispatch_is_reported() {
    let s = semaphore(1);
    at_irql(ndis_sync::DISPATCH_LEVEL, || {
        // SAFETY: deliberately wrong: the model must report the wait.
        let apc = unsafe { Apc::new_unchecked() };
        drop(s.acquire(&apc, Duration::from_millis(1)));
    });
}

#[test]
#[should_panic(expected = "SemaphoreLimitExceeded")]
fn a_release_past_the_limit_is_reported() {
    let s = semaphore(2);
    let permit = s.acquire(&passive(), Duration::ZERO).unwrap();
    s.release_unpaired(2); // one permit out, two released
    drop(permit);
}

#[test]
#[should_panic(expected = "used before Semaphore::init")]
fn an_uninitialised_semaphore_panics() {
    let s = Semaphore::new(1);
    drop(s.acquire(&passive(), Duration::ZERO));
}

#[test]
fn apc_level_is_a_legal_wait() {
    let s = semaphore(1);
    at_irql(APC_LEVEL, || {
        // SAFETY: at_irql raised this thread to APC_LEVEL.
        let apc = unsafe { Apc::new_unchecked() };
        assert!(s.acquire(&apc, Duration::from_millis(1)).is_ok());
    });
}
