//! [`Rundown`]: a `T` guarded by an `EX_RUNDOWN_REF`, shaped like
//! Rust-for-Linux's `Revocable`.

use crate::atomic::{AtomicU8, Ordering};
use crate::backend::{Active, Backend};
use crate::irql::NotSendSync;
use crate::Passive;
use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ops::Deref;

type RawRundown = <Active as Backend>::Rundown;

/// The value is present and `try_acquire` may succeed.
const LIVE: u8 = 0;
/// A `run_down` call owns the value and is waiting or taking it.
const RUNNING_DOWN: u8 = 1;
/// The value has been taken; the reference is run down.
const RUN_DOWN: u8 = 2;

/// A `T` that other threads use under rundown protection, and that one
/// owner can take away once every user has left.
///
/// Store it in non-paged memory: protection is acquired at up to
/// `DISPATCH_LEVEL`.
///
/// # Why it is not pinned
///
/// An idle `EX_RUNDOWN_REF` is a count with no reference to its own
/// address. `ExWaitForRundownProtectionRelease` links a wait block on its
/// caller's stack into it, but only while [`run_down`](Self::run_down) runs,
/// which borrows `&self`, and `ExRundownCompleted` unlinks it before
/// `run_down` returns. Guards borrow `&self` too, so the borrow checker
/// allows a move only when nothing refers to the reference.
///
/// ```
/// use ndis_sync::{Passive, Rundown};
///
/// let module = Rundown::new(String::from("adapter 1"));
/// if let Some(name) = module.try_acquire() {
///     assert_eq!(name.as_str(), "adapter 1");
/// }
/// // SAFETY: a test thread runs at PASSIVE_LEVEL.
/// let passive = unsafe { Passive::new_unchecked() };
/// assert_eq!(module.run_down(&passive).as_deref(), Some("adapter 1"));
/// assert!(module.try_acquire().is_none());
/// ```
pub struct Rundown<T> {
    raw: UnsafeCell<RawRundown>,
    phase: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value moves with the wrapper; the reference is plain data
// while nothing refers to it, which owning the wrapper guarantees.
unsafe impl<T: Send> Send for Rundown<T> {}
// SAFETY: guards on several threads share `&T` (needs `T: Sync`), and the
// thread that wins `run_down` takes the `T` out (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for Rundown<T> {}

impl<T> Rundown<T> {
    /// Wraps `value` (`ExInitializeRundownProtection`).
    ///
    /// ```
    /// let endpoint = ndis_sync::Rundown::new(42);
    /// assert!(!endpoint.is_run_down());
    /// ```
    pub fn new(value: T) -> Self {
        Self {
            raw: UnsafeCell::new(Active::rundown_new()),
            phase: AtomicU8::new(LIVE),
            value: UnsafeCell::new(MaybeUninit::new(value)),
        }
    }

    /// Acquires rundown protection (`ExAcquireRundownProtection`, IRQL <=
    /// DISPATCH); `None` once run-down has begun. The value stays until the
    /// guard is dropped (`ExReleaseRundownProtection`).
    ///
    /// ```
    /// let endpoint = ndis_sync::Rundown::new(42);
    /// let guard = endpoint.try_acquire().expect("not run down");
    /// assert_eq!(*guard, 42);
    /// ```
    #[track_caller]
    pub fn try_acquire(&self) -> Option<RundownGuard<'_, T>> {
        if self.phase.load(Ordering::Acquire) != LIVE {
            return None;
        }
        // SAFETY: the reference was initialized by `new` (or re-armed by
        // `reinitialize`) and lives as long as `self`.
        let acquired = unsafe { Active::rundown_acquire(self.raw.get()) };
        // `then`, not `then_some`: a guard built eagerly would be dropped,
        // releasing protection that was never acquired.
        acquired.then(|| RundownGuard { rundown: self, _not_send_sync: PhantomData })
    }

    /// Blocks new protection, waits until every guard is dropped
    /// (`ExWaitForRundownProtectionRelease`, IRQL <= APC), and takes the
    /// value out.
    ///
    /// Exactly one call gets `Some(value)`, even when several threads run it
    /// down at once; the others return `None` at once. After any call has
    /// returned, every `try_acquire` fails.
    ///
    /// ```
    /// use ndis_sync::{Passive, Rundown};
    /// let endpoint = Rundown::new(vec![1, 2]);
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { Passive::new_unchecked() };
    /// assert_eq!(endpoint.run_down(&passive), Some(vec![1, 2]));
    /// assert_eq!(endpoint.run_down(&passive), None);
    /// ```
    #[track_caller]
    pub fn run_down(&self, irql: &impl crate::AtMostApc) -> Option<T> {
        let _ = irql;
        let won = self.phase.compare_exchange(LIVE, RUNNING_DOWN, Ordering::AcqRel, Ordering::Acquire);
        if won.is_err() {
            return None;
        }
        // SAFETY: winning the phase makes this the only waiter; the token
        // proves PASSIVE_LEVEL (<= APC).
        unsafe { Active::rundown_wait(self.raw.get()) };
        // SAFETY: the wait returned, so no guard exists and none can be
        // created; the phase makes this the only taker of the initialized value.
        let value = unsafe { (*self.value.get()).assume_init_read() };
        self.phase.store(RUN_DOWN, Ordering::Release);
        Some(value)
    }

    /// `true` once a [`run_down`](Self::run_down) has begun.
    ///
    /// ```
    /// use ndis_sync::{Passive, Rundown};
    /// let endpoint = Rundown::new(());
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// endpoint.run_down(&unsafe { Passive::new_unchecked() });
    /// assert!(endpoint.is_run_down());
    /// ```
    pub fn is_run_down(&self) -> bool {
        self.phase.load(Ordering::Acquire) != LIVE
    }

    /// Re-arms a run-down reference for a new value
    /// (`ExReInitializeRundownProtection`, IRQL <= APC). Only after a
    /// completed run-down; otherwise the value is handed back in `Err`.
    ///
    /// ```
    /// use ndis_sync::{Passive, Rundown};
    /// let mut endpoint = Rundown::new(1);
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { Passive::new_unchecked() };
    /// assert_eq!(endpoint.reinitialize(&passive, 2), Err(2));
    /// endpoint.run_down(&passive);
    /// assert_eq!(endpoint.reinitialize(&passive, 3), Ok(()));
    /// assert_eq!(*endpoint.try_acquire().unwrap(), 3);
    /// ```
    #[track_caller]
    pub fn reinitialize(&mut self, irql: &Passive, value: T) -> Result<(), T> {
        let _ = irql;
        if self.phase.load(Ordering::Acquire) != RUN_DOWN {
            return Err(value);
        }
        // SAFETY: run-down completed and `&mut self` excludes every other user.
        unsafe { Active::rundown_reinitialize(self.raw.get()) };
        self.value = UnsafeCell::new(MaybeUninit::new(value));
        self.phase.store(LIVE, Ordering::Release);
        Ok(())
    }

    /// The value, through exclusive access; `None` once run down.
    ///
    /// ```
    /// let mut endpoint = ndis_sync::Rundown::new(1);
    /// *endpoint.get_mut().unwrap() = 2;
    /// assert_eq!(*endpoint.try_acquire().unwrap(), 2);
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut T> {
        let live = self.phase.load(Ordering::Acquire) == LIVE;
        // SAFETY: LIVE means the value is initialized; `&mut self` is exclusive.
        live.then(|| unsafe { self.value.get_mut().assume_init_mut() })
    }
}

impl<T> Drop for Rundown<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no guard or waiter refers to the reference.
        unsafe { Active::rundown_free(self.raw.get()) };
        if self.phase.load(Ordering::Acquire) == LIVE {
            // SAFETY: never run down, so the value is initialized and still ours.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

impl<T> fmt::Debug for Rundown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rundown").field("run_down", &self.is_run_down()).finish_non_exhaustive()
    }
}

/// Rundown protection on a [`Rundown`]'s value: shared access until dropped
/// (`ExReleaseRundownProtection`).
#[must_use = "protection is released as soon as the guard is dropped"]
pub struct RundownGuard<'a, T> {
    rundown: &'a Rundown<T>,
    _not_send_sync: NotSendSync,
}

impl<T> Deref for RundownGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: protection is held, so `run_down` has not taken the value
        // and cannot until this guard is dropped.
        unsafe { (*self.rundown.value.get()).assume_init_ref() }
    }
}

impl<T> Drop for RundownGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard is one successful acquire.
        unsafe { Active::rundown_release(self.rundown.raw.get()) }
    }
}

impl<T: fmt::Debug> fmt::Debug for RundownGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
