//! Rundown on the host model: behaviour and rule checks.
#![cfg(not(loom))]

mod common;

use ndis_sync::stack_pin_init;

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
    stack_pin_init!(let rundown = Rundown::new(&passive(), 3));
    let (a, b) = (rundown.try_acquire().unwrap(), rundown.try_acquire().unwrap());
    assert_eq!(*a + *b, 6);
    assert_eq!(host::rundown_protection_count(), 2);
    drop((a, b));
    assert_eq!(host::rundown_protection_count(), 0);
    assert_eq!(format!("{rundown:?}"), "Rundown { run_down: false, .. }");
}

#[test]
fn try_acquire_works_at_dispatch() {
    stack_pin_init!(let rundown = Rundown::new(&passive(), 3));
    assert_eq!(at_dispatch(|_| rundown.try_acquire().map(|g| *g)), Some(3));
}

#[test]
fn run_down_waits_for_the_last_guard() {
    stack_pin_init!(let rundown = Rundown::new(&passive(), 7));
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
    let winners = AtomicUsize::new(0);
    {
        stack_pin_init!(let rundown = Rundown::new(&passive(), DropCounter(&drops)));
        let start = Barrier::new(3);
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
    } // the Rundown is dropped here, in place
    assert_eq!(winners.load(Ordering::SeqCst), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn dropping_without_run_down_drops_the_value() {
    let drops = AtomicUsize::new(0);
    drop(ndis_sync::try_pin_box(Rundown::new(&passive(), DropCounter(&drops))).unwrap());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn run_down_is_allowed_at_apc() {
    stack_pin_init!(let rundown = Rundown::new(&passive(), 1));
    let p = passive();
    assert_eq!(at_irql(APC_LEVEL, || rundown.run_down(&p)), Some(1));
}

#[test]
fn reinitialize_only_after_run_down() {
    stack_pin_init!(let rundown = Rundown::new(&passive(), 1));
    let p = passive();
    assert_eq!(rundown.as_mut().reinitialize(&p, 2), Err(2));
    assert_eq!(rundown.run_down(&p), Some(1));
    assert!(rundown.as_mut().value_mut().is_none());
    assert_eq!(rundown.as_mut().reinitialize(&p, 3), Ok(()));
    assert!(!rundown.is_run_down());
    assert_eq!(rundown.as_mut().value_mut().map(|v| *v), Some(3));
    assert_eq!(rundown.run_down(&p), Some(3));
}

#[test]
#[should_panic(expected = "RundownWaitAboveApc")]
fn run_down_at_dispatch_is_reported() {
    stack_pin_init!(let rundown = Rundown::new(&passive(), 1));
    let p = passive();
    at_dispatch(|_| rundown.run_down(&p));
}

#[test]
#[should_panic(expected = "RundownWaitWhileHolding")]
fn run_down_while_holding_protection_is_reported() {
    stack_pin_init!(let rundown = Rundown::new(&passive(), 1));
    let _guard = rundown.try_acquire();
    rundown.run_down(&passive());
}

#[test]
#[should_panic(expected = "RundownFreedWithReferences")]
fn dropping_with_a_leaked_guard_is_reported() {
    stack_pin_init!(let rundown = Rundown::new(&passive(), 1));
    core::mem::forget(rundown.try_acquire());
} // dropped here, in place

/// The driver's CLEANUP pattern: the owner frees the `Rundown`'s storage as
/// soon as `run_down` returns, while the last guard may still be inside its
/// `drop` on another thread, just after `ExReleaseRundownProtection`. Run
/// under Miri with both aliasing models and many seeds (scripts/test.sh):
/// the guard must touch nothing after the release.
/// The pointer to a pool-allocated `Rundown` that both threads reach.
struct Storage(*mut Rundown<Vec<u8>>);
// SAFETY: `Rundown<Vec<u8>>` is `Sync`; the test orders the free after every use.
unsafe impl Sync for Storage {}

impl Storage {
    /// # Safety
    /// The storage has not been freed, and is not while the reference is used.
    unsafe fn get(&self) -> &Rundown<Vec<u8>> {
        // SAFETY: the caller guarantees the pointee is live.
        unsafe { &*self.0 }
    }
}

#[test]
fn owner_frees_the_storage_right_after_run_down() {
    for _ in 0..if cfg!(miri) { 4 } else { 200 } {
        let pinned = ndis_sync::try_pin_box(Rundown::new(&passive(), vec![1, 2, 3])).unwrap();
        // SAFETY: the box is freed below through `Box::from_raw`, in place.
        let storage = Storage(Box::into_raw(unsafe { std::pin::Pin::into_inner_unchecked(pinned) }));
        let acquired = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: the owner frees `storage` only after `run_down`
                // returns, which waits for this guard's release.
                let rundown = unsafe { storage.get() };
                let guard = rundown.try_acquire().unwrap();
                acquired.wait();
                assert_eq!(guard.len(), 3);
                drop(guard);
            });
            acquired.wait();
            {
                // SAFETY: `storage` is live until freed below.
                let rundown = unsafe { storage.get() };
                assert_eq!(rundown.run_down(&passive()), Some(vec![1, 2, 3]));
            }
            // SAFETY: from Box::into_raw; run_down has returned, so no guard
            // holds protection and no reference to it is used again.
            drop(unsafe { Box::from_raw(storage.0) });
        });
    }
}
