//! Model of `EX_RUNDOWN_REF`: a reference count (shifted left by one) and an
//! "active" bit set once run-down has begun.

use super::rule::{violation, Rule};
use super::thread::with_thread;
use crate::atomic::{AtomicUsize, Ordering};
use ndis_sys::APC_LEVEL;

const ACTIVE: usize = 1;
const ONE_REF: usize = 2;

/// The model's `EX_RUNDOWN_REF`.
#[derive(Debug)]
pub(crate) struct HostRundown {
    count: AtomicUsize,
    /// The address `ExInitializeRundownProtection` was called on.
    home: usize,
}

impl HostRundown {
    /// `ExInitializeRundownProtection` on `slot`, which becomes the
    /// reference's address.
    ///
    /// # Safety
    /// `slot` is valid for writes.
    #[track_caller]
    pub(crate) unsafe fn init_at(slot: *mut Self) {
        Self::require_at_most_apc(Rule::RundownInitAboveApc, "ExInitializeRundownProtection");
        // SAFETY: the caller guarantees `slot` is valid for writes.
        unsafe { slot.write(Self { count: AtomicUsize::new(0), home: slot as usize }) }
    }

    /// Checks that `this` is where the reference was initialised (rule
    /// `LockMoved`).
    ///
    /// # Safety
    /// `this` points to a live reference.
    #[track_caller]
    unsafe fn check_home(this: *const Self) -> usize {
        // SAFETY: the caller guarantees `this` is live.
        let home = unsafe { (*this).home };
        let addr = this as usize;
        if addr != home && !std::thread::panicking() {
            violation(
                Rule::LockMoved,
                format_args!(
                    "rundown reference initialised at {home:#x} (ExInitializeRundownProtection) used at {addr:#x}"
                ),
            )
        }
        addr
    }

    #[track_caller]
    fn addr(&self) -> usize {
        // SAFETY: `self` is live.
        unsafe { Self::check_home(self) }
    }

    /// `ExAcquireRundownProtection`.
    #[track_caller]
    pub(crate) fn acquire(&self) -> bool {
        with_thread(|t| t.require_at_most_dispatch("ExAcquireRundownProtection"));
        let mut current = self.count.load(Ordering::Relaxed);
        loop {
            if current & ACTIVE != 0 {
                return false;
            }
            match self.count.compare_exchange_weak(current, current + ONE_REF, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        with_thread(|t| t.rundown_refs.push(self.addr()));
        true
    }

    /// `ExReleaseRundownProtection`.
    /// `ExReleaseRundownProtection`. Takes a raw pointer: the decrement is
    /// the last access, after which the owner may free the reference (the
    /// pattern the driver's CLEANUP relies on), so no `&Self` may outlive it.
    ///
    /// # Safety
    /// `this` points to a live reference until the decrement.
    #[track_caller]
    pub(crate) unsafe fn release(this: *const Self) {
        with_thread(|t| {
            const F: &str = "ExReleaseRundownProtection";
            t.require_at_most_dispatch(F);
            // SAFETY: the caller guarantees `this` is live until the decrement.
            let addr = unsafe { Self::check_home(this) };
            let Some(index) = t.rundown_refs.iter().rposition(|&r| r == addr) else {
                violation(
                    Rule::RundownReleaseNotAcquired,
                    format_args!("{F} without a matching acquire on this thread"),
                )
            };
            t.rundown_refs.swap_remove(index);
        });
        // SAFETY: the caller guarantees `this` is live until this decrement;
        // nothing touches it afterwards.
        unsafe { (*this).count.fetch_sub(ONE_REF, Ordering::Release) };
    }

    #[track_caller]
    fn require_at_most_apc(rule: Rule, function: &str) {
        let irql = with_thread(|t| t.irql);
        if irql > APC_LEVEL {
            violation(rule, format_args!("{function} requires IRQL <= APC_LEVEL, IRQL is {irql}"))
        }
    }

    /// `ExWaitForRundownProtectionRelease` followed by `ExRundownCompleted`.
    #[track_caller]
    pub(crate) fn wait(&self) {
        const F: &str = "ExWaitForRundownProtectionRelease";
        Self::require_at_most_apc(Rule::RundownWaitAboveApc, F);
        if with_thread(|t| t.rundown_refs.contains(&self.addr())) {
            violation(
                Rule::RundownWaitWhileHolding,
                format_args!("{F} while this thread holds protection on it: deadlock"),
            )
        }
        if self.count.fetch_or(ACTIVE, Ordering::AcqRel) & ACTIVE != 0 {
            violation(
                Rule::RundownConcurrentWait,
                format_args!("{F} on a reference already run down or being run down"),
            )
        }
        while self.count.load(Ordering::Acquire) != ACTIVE {
            super::spin_wait();
        }
    }

    /// `ExReInitializeRundownProtection`.
    #[track_caller]
    pub(crate) fn reinitialize(&self) {
        const F: &str = "ExReInitializeRundownProtection";
        self.addr();
        Self::require_at_most_apc(Rule::RundownWaitAboveApc, F);
        if self.count.load(Ordering::Acquire) != ACTIVE {
            violation(Rule::RundownReinitializeNotRunDown, format_args!("{F} before the run-down completed"))
        }
        self.count.store(0, Ordering::Release);
    }

    /// The end of the reference's storage.
    #[track_caller]
    pub(crate) fn free(&self) {
        self.addr();
        let refs = self.count.load(Ordering::Acquire) / ONE_REF;
        // While unwinding, a second panic would abort the test process.
        if refs != 0 && !std::thread::panicking() {
            violation(
                Rule::RundownFreedWithReferences,
                format_args!("rundown reference freed with {refs} protection(s) outstanding"),
            )
        }
    }
}
