//! Model of `NDIS_SPIN_LOCK`: a test-and-set lock plus the saved IRQL.

use super::rule::{violation, Rule};
use super::thread::{forget_lock, record_order, spin_until, with_thread, Held, HeldKind};
use crate::atomic::{AtomicBool, AtomicU8, Ordering};
use ndis_sys::{DISPATCH_LEVEL, PASSIVE_LEVEL};

/// The model's `NDIS_SPIN_LOCK`.
#[derive(Debug)]
pub(crate) struct HostSpinLock {
    /// The `KSPIN_LOCK`.
    locked: AtomicBool,
    /// `OldIrql`: written by the holder, read at release.
    old_irql: AtomicU8,
    /// The address `NdisAllocateSpinLock` was called on.
    home: usize,
}

impl HostSpinLock {
    /// `NdisAllocateSpinLock` on `slot`, which becomes the lock's address.
    ///
    /// # Safety
    /// `slot` is valid for writes.
    pub(crate) unsafe fn init_at(slot: *mut Self) {
        let lock = Self { locked: AtomicBool::new(false), old_irql: AtomicU8::new(PASSIVE_LEVEL), home: slot as usize };
        // A lock initialised here is a new lock, whatever was here before.
        forget_lock(slot as usize);
        // SAFETY: the caller guarantees `slot` is valid for writes.
        unsafe { slot.write(lock) }
    }

    /// The lock's address, after checking it is the one it was initialised
    /// at (rule `LockMoved`).
    #[track_caller]
    fn addr(&self) -> usize {
        let addr = self as *const Self as usize;
        if addr != self.home && !std::thread::panicking() {
            violation(
                Rule::LockMoved,
                format_args!("spin lock initialised at {:#x} (NdisAllocateSpinLock) used at {addr:#x}", self.home),
            )
        }
        addr
    }

    #[track_caller]
    fn spin_until_acquired(&self, function: &str) {
        with_thread(|t| record_order(&t.held, self.addr(), function));
        spin_until(self.addr(), function, || self.try_take());
    }

    fn try_take(&self) -> bool {
        self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    #[track_caller]
    fn check_not_recursive(&self, function: &str) {
        let is_spin = |k| matches!(k, HeldKind::Spin | HeldKind::SpinDpr);
        if with_thread(|t| t.holds(self.addr(), is_spin)) {
            violation(
                Rule::SpinLockRecursion,
                format_args!("{function} on a spin lock this thread already holds: deadlock"),
            )
        }
    }

    /// `NdisAcquireSpinLock`.
    #[track_caller]
    pub(crate) fn acquire(&self) {
        self.check_not_recursive("NdisAcquireSpinLock");
        let old = with_thread(|t| {
            t.require_at_most_dispatch("NdisAcquireSpinLock");
            core::mem::replace(&mut t.irql, DISPATCH_LEVEL)
        });
        self.spin_until_acquired("NdisAcquireSpinLock");
        self.old_irql.store(old, Ordering::Relaxed);
        self.push_held(HeldKind::Spin);
    }

    /// `NdisDprAcquireSpinLock`.
    #[track_caller]
    pub(crate) fn acquire_dpr(&self) {
        with_thread(|t| t.require_dispatch(Rule::DprBelowDispatch, "NdisDprAcquireSpinLock"));
        self.check_not_recursive("NdisDprAcquireSpinLock");
        self.spin_until_acquired("NdisDprAcquireSpinLock");
        self.push_held(HeldKind::SpinDpr);
    }

    fn push_held(&self, kind: HeldKind) {
        let held = Held { lock: self.addr(), state: 0, kind };
        with_thread(|t| t.held.push(held));
    }

    /// `NdisReleaseSpinLock`.
    #[track_caller]
    pub(crate) fn release(&self) {
        with_thread(|t| {
            const F: &str = "NdisReleaseSpinLock";
            t.require_dispatch(Rule::ReleaseBelowDispatch, F);
            self.take_expecting(t, HeldKind::Spin, F);
            let old = self.old_irql.load(Ordering::Relaxed);
            t.restore_irql(old, F);
            self.locked.store(false, Ordering::Release);
        });
    }

    /// `NdisDprReleaseSpinLock`.
    #[track_caller]
    pub(crate) fn release_at_dispatch(&self, kind: HeldKind) {
        with_thread(|t| {
            let function = "NdisDprReleaseSpinLock";
            t.require_dispatch(Rule::DprBelowDispatch, function);
            self.take_expecting(t, kind, function);
            self.locked.store(false, Ordering::Release);
        });
    }

    #[track_caller]
    fn take_expecting(&self, t: &mut super::thread::ThreadState, kind: HeldKind, function: &str) {
        let held = t.take_held(self.addr(), 0, function);
        if held.kind != kind {
            violation(Rule::ReleaseMismatched, format_args!("{function} on a spin lock acquired as {:?}", held.kind))
        }
    }

    /// `NdisFreeSpinLock`.
    #[track_caller]
    pub(crate) fn free(&self) {
        // While unwinding, a second panic would abort the test process.
        if self.locked.load(Ordering::Acquire) && !std::thread::panicking() {
            violation(Rule::FreeHeldLock, format_args!("NdisFreeSpinLock on a held spin lock"))
        }
        forget_lock(self.addr());
    }
}
