//! The rules the host model enforces, and how a violation is reported.

use core::fmt;

/// A rule of the NDIS/executive primitives that the host model checks, the
/// way Driver Verifier does on Windows. A violation panics with a message
/// that starts with the rule's name, e.g. `SpinLockRecursion: ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// A lock or rundown function was called above `DISPATCH_LEVEL`.
    IrqlAboveDispatch,
    /// `NdisDprAcquireSpinLock`, `NdisDprReleaseSpinLock` or
    /// `KeTryToAcquireSpinLockAtDpcLevel` called below `DISPATCH_LEVEL`.
    DprBelowDispatch,
    /// `NDIS_RWL_AT_DISPATCH_LEVEL` passed while not at `DISPATCH_LEVEL`.
    RwlAtDispatchFlagWrong,
    /// `NdisReleaseSpinLock` or `NdisReleaseRWLock` called below `DISPATCH_LEVEL`.
    ReleaseBelowDispatch,
    /// A lock released that this thread does not hold.
    ReleaseNotHeld,
    /// A spin lock released with a function that does not pair with the
    /// acquiring one (Acquire/Release, DprAcquire/DprRelease).
    ReleaseMismatched,
    /// A spin lock acquired again by the thread that holds it: deadlock.
    SpinLockRecursion,
    /// A release would restore an IRQL below `DISPATCH_LEVEL` while this
    /// thread still holds another lock (locks released out of order).
    OutOfOrderRelease,
    /// The IRQL lowered below `DISPATCH_LEVEL` while a lock is held.
    IrqlLoweredWhileHolding,
    /// A spin lock or RW lock freed while held.
    FreeHeldLock,
    /// `NdisAcquireRWLockWrite` while this thread holds the same lock for read.
    RwWriteWhileReading,
    /// An `RwLock` entered again by the processor whose write closure holds
    /// `&mut T` (checked by the wrapper itself, in every backend).
    RwLockReentered,
    /// `ExWaitForRundownProtectionRelease` or `ExReInitializeRundownProtection`
    /// above `APC_LEVEL`.
    RundownWaitAboveApc,
    /// Waiting for run-down while this thread holds protection on it: deadlock.
    RundownWaitWhileHolding,
    /// Two waits for run-down on one reference at the same time.
    RundownConcurrentWait,
    /// `ExReleaseRundownProtection` without a matching acquire on this thread.
    RundownReleaseNotAcquired,
    /// `ExReInitializeRundownProtection` before a completed run-down.
    RundownReinitializeNotRunDown,
    /// A rundown reference freed while protection is outstanding.
    RundownFreedWithReferences,
    /// `Passive::new_unchecked` while the IRQL is not `PASSIVE_LEVEL`.
    PassiveTokenNotAtPassive,
    /// `Dispatch::new_unchecked` while the IRQL is not `DISPATCH_LEVEL`.
    DispatchTokenNotAtDispatch,
    /// `MaybeDispatch::new_unchecked` above `DISPATCH_LEVEL`.
    MaybeDispatchTokenAboveDispatch,
    /// `host::at_irql` asked to lower the IRQL (KeRaiseIrql only raises).
    IrqlNotRaised,
    /// `CallbackIrql::with` called while this thread holds a lock: a
    /// second token for an IRQL a held lock already proves.
    CallbackTokenInsideLock,
    /// Two locks acquired in opposite orders, by any threads, at any times
    /// (Driver Verifier's deadlock detection); also how an ABBA deadlock
    /// between two threads is reported instead of hanging.
    LockOrderInversion,
    /// A lock waited for that a thread which has ended still holds (a guard
    /// leaked with `mem::forget`); the ending itself is written to stderr.
    ThreadExitedHoldingLock,
    /// A spin or RW lock waited for longer than a second: a deadlock that
    /// no other rule named.
    Deadlock,
    /// A spin lock or rundown reference used or freed at an address other
    /// than the one it was initialised at (`NdisAllocateSpinLock`,
    /// `ExInitializeRundownProtection` identify it by that address).
    LockMoved,
    /// `ExInitializeRundownProtection` above `APC_LEVEL`.
    RundownInitAboveApc,
    /// `ExAcquireFastMutex` above `APC_LEVEL`.
    MutexAcquireAboveApc,
    /// `ExAcquireFastMutex` by the thread that owns the mutex: deadlock.
    MutexRecursion,
    /// `ExReleaseFastMutex` by a thread that does not own the mutex.
    MutexReleaseNotOwner,
    /// `ExReleaseFastMutex` while the IRQL is not `APC_LEVEL`.
    MutexReleaseNotAtApc,
    /// `KeWaitForSingleObject` on a mutex object above `APC_LEVEL`.
    MutexObjectAcquireAboveApc,
    /// A mutex object acquired again by its owner. Windows allows it (mutex
    /// objects are recursive); `PassiveMutex` does not, since a second guard
    /// would alias `&mut T` (its types rule it out; only a forged second
    /// `Passive` token reaches it).
    MutexObjectRecursion,
    /// `KeReleaseMutex` by a thread that does not own the mutex
    /// (`STATUS_MUTANT_NOT_OWNED`, raised as an exception).
    MutexObjectReleaseNotOwner,
    /// A thread returns to user mode holding a mutex object (Windows: bug
    /// check 0x1, APC_INDEX_MISMATCH).
    MutexObjectHeldAtUserReturn,
    /// A fast mutex, mutex object or semaphore used at an address other than the one it
    /// was initialised at (moved, or never initialised).
    LockNotInitialisedHere,
    /// `KeWaitForSingleObject` at `DISPATCH_LEVEL` with a timeout other than zero.
    WaitAtDispatch,
    /// `KeReleaseSemaphore` past the semaphore's limit
    /// (`STATUS_SEMAPHORE_LIMIT_EXCEEDED`, raised as an exception).
    SemaphoreLimitExceeded,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Reports a rule violation: panics with `"<Rule>: <detail>"`.
#[track_caller]
pub(crate) fn violation(rule: Rule, detail: fmt::Arguments<'_>) -> ! {
    panic!("{rule}: {detail}")
}
