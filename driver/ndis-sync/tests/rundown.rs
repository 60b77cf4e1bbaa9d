//! Rundown on the host model: behaviour and rule checks.
#![cfg(not(loom))]

mod common;

use common::passive;
use ndis_sync::host::{self, at_dispatch, at_irql};
use ndis_sync::{Rundown, APC_LEVEL};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;

/// Counts its drops.
struct DropCounter<'a>(&'a AtomicUsize);

impl Drop for DropCounter<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn guards_share_the_value_and_release_on_drop() {
    let rundown = Rundown::new(3);
    let (a, b) = (rundown.try_acquire().unwrap(), rundown.try_acquire().unwrap());
    assert_eq!(*a + *b, 6);
    assert_eq!(host::rundown_protection_count(), 2);
    drop((a, b));
    assert_eq!(host::rundown_protection_count(), 0);
    assert_eq!(format!("{rundown:?}"), "Rundown { run_down: false, .. }");
}

#[test]
fn try_acquire_works_at_dispatch() {
    let rundown = Rundown::new(3);
    assert_eq!(at_dispatch(|_| rundown.try_acquire().map(|g| *g)), Some(3));
}

#[test]
fn run_down_waits_for_the_last_guard() {
    let rundown = Rundown::new(7);
    let released = AtomicBool::new(false);
    let acquired = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            let guard = rundown.try_acquire().unwrap();
            acquired.wait();
            std::thread::sleep(std::time::Duration::from_millis(if cfg!(miri) { 1 } else { 50 }));
            assert_eq!(*guard, 7);
            released.store(true, Ordering::SeqCst);
            drop(guard);
        });
        acquired.wait();
        assert_eq!(rundown.run_down(&passive()), Some(7));
        assert!(released.load(Ordering::SeqCst));
    });
    assert!(rundown.try_acquire().is_none());
    assert!(rundown.is_run_down());
}

#[test]
fn racing_run_downs_take_the_value_exactly_once() {
    let drops = AtomicUsize::new(0);
    let rundown = Rundown::new(DropCounter(&drops));
    let start = Barrier::new(3);
    let winners = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                start.wait();
                if let Some(value) = rundown.run_down(&passive()) {
                    winners.fetch_add(1, Ordering::SeqCst);
                    drop(value);
                }
                assert!(rundown.try_acquire().is_none());
            });
        }
    });
    drop(rundown);
    assert_eq!(winners.load(Ordering::SeqCst), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn dropping_without_run_down_drops_the_value() {
    let drops = AtomicUsize::new(0);
    drop(Rundown::new(DropCounter(&drops)));
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn run_down_is_allowed_at_apc() {
    let rundown = Rundown::new(1);
    let p = passive();
    assert_eq!(at_irql(APC_LEVEL, || rundown.run_down(&p)), Some(1));
}

#[test]
fn reinitialize_only_after_run_down() {
    let mut rundown = Rundown::new(1);
    let p = passive();
    assert_eq!(rundown.reinitialize(&p, 2), Err(2));
    assert_eq!(rundown.run_down(&p), Some(1));
    assert!(rundown.get_mut().is_none());
    assert_eq!(rundown.reinitialize(&p, 3), Ok(()));
    assert!(!rundown.is_run_down());
    assert_eq!(rundown.get_mut().copied(), Some(3));
    assert_eq!(rundown.run_down(&p), Some(3));
}

#[test]
#[should_panic(expected = "RundownWaitAboveApc")]
fn run_down_at_dispatch_is_reported() {
    let rundown = Rundown::new(1);
    let p = passive();
    at_dispatch(|_| rundown.run_down(&p));
}

#[test]
#[should_panic(expected = "RundownWaitWhileHolding")]
fn run_down_while_holding_protection_is_reported() {
    let rundown = Rundown::new(1);
    let _guard = rundown.try_acquire();
    rundown.run_down(&passive());
}

#[test]
#[should_panic(expected = "RundownFreedWithReferences")]
fn dropping_with_a_leaked_guard_is_reported() {
    let rundown = Rundown::new(1);
    core::mem::forget(rundown.try_acquire());
    drop(rundown);
}
