//! Model of a kernel mutex object (`KMUTEX`) as [`PassiveMutex`](crate::PassiveMutex)
//! uses it, with the checks Driver Verifier and the kernel make.
//!
//! Acquiring keeps the IRQL and disables normal kernel APCs (counted per
//! thread: [`kernel_apcs_disabled`]); [`return_to_user_mode`] is where the
//! kernel checks that count on the way out of a system call.

use super::rule::{violation, Rule};
use super::thread::with_thread;
use super::wait::{thread_id, InitialisedAt};
use crate::atomic::{AtomicUsize, Ordering};
use ndis_sys::APC_LEVEL;
use std::cell::Cell;

#[cfg(loom)]
use loom::thread_local;
#[cfg(not(loom))]
use std::thread_local;

thread_local! {
    // loom's thread_local! takes no `const { }` initialiser.
    #[allow(clippy::missing_const_for_thread_local)]
    static KERNEL_APC_DISABLE: Cell<usize> = Cell::new(0);
}

/// How many mutex objects this thread holds: each disables normal kernel
/// APCs once (the thread's `KernelApcDisable` count).
///
/// ```
/// assert_eq!(ndis_sync::host::kernel_apcs_disabled(), 0);
/// ```
pub fn kernel_apcs_disabled() -> usize {
    KERNEL_APC_DISABLE.with(Cell::get)
}

/// What the kernel checks when a system call returns to user mode: panics
/// with [`Rule::MutexObjectHeldAtUserReturn`] if this thread still holds a
/// mutex object (Windows: bug check 0x1, APC_INDEX_MISMATCH, the thread's
/// `KernelApcDisable` count not back to zero).
///
/// ```
/// ndis_sync::host::return_to_user_mode(); // nothing held: fine
/// ```
#[track_caller]
pub fn return_to_user_mode() {
    let held = kernel_apcs_disabled();
    if held != 0 {
        violation(
            Rule::MutexObjectHeldAtUserReturn,
            format_args!("returning to user mode holding {held} mutex object(s): APC_INDEX_MISMATCH"),
        )
    }
}

/// The model's `KMUTEX`.
#[derive(Debug)]
pub(crate) struct HostMutexObject {
    /// Owning thread, 0 when free (signalled).
    owner: AtomicUsize,
    /// Where `KeInitializeMutex` ran.
    initialised_at: InitialisedAt,
}

impl HostMutexObject {
    pub(crate) fn new() -> Self {
        Self { owner: AtomicUsize::new(0), initialised_at: InitialisedAt::new() }
    }

    pub(crate) fn init(&self) {
        self.owner.store(0, Ordering::Relaxed);
        self.initialised_at.set(self);
    }

    #[track_caller]
    fn check_initialised(&self, function: &str) {
        self.initialised_at.check(self, function, "mutex object");
    }

    #[track_caller]
    pub(crate) fn acquire(&self) {
        const F: &str = "KeWaitForSingleObject";
        self.check_initialised(F);
        let me = thread_id();
        with_thread(|t| {
            if t.irql > APC_LEVEL {
                violation(Rule::MutexObjectAcquireAboveApc, format_args!("{F} on a mutex object at IRQL {}", t.irql))
            }
        });
        if self.owner.load(Ordering::Relaxed) == me {
            violation(
                Rule::MutexObjectRecursion,
                format_args!("{F} on a mutex object this thread owns: a second guard would alias `&mut T`"),
            )
        }
        while self.owner.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
            super::spin_wait();
        }
        KERNEL_APC_DISABLE.with(|n| n.set(n.get() + 1));
    }

    #[track_caller]
    pub(crate) fn release(&self) {
        const F: &str = "KeReleaseMutex";
        self.check_initialised(F);
        if self.owner.load(Ordering::Relaxed) != thread_id() {
            violation(
                Rule::MutexObjectReleaseNotOwner,
                format_args!("{F} by a thread that does not own the mutex (STATUS_MUTANT_NOT_OWNED)"),
            )
        }
        KERNEL_APC_DISABLE.with(|n| n.set(n.get() - 1));
        self.owner.store(0, Ordering::Release);
    }
}
