//! [`Rundown`]: a `T` guarded by an `EX_RUNDOWN_REF`, shaped like
//! Rust-for-Linux's `Revocable`.

use crate::atomic::{AtomicU8, Ordering};
use crate::backend::{Active, Backend};
use crate::init::{init_from_closure, PinInit};
use crate::irql::NotSendSync;
use crate::{AtMostApc, Passive};
use core::cell::UnsafeCell;
use core::fmt;
use core::marker::{PhantomData, PhantomPinned};
use core::mem::MaybeUninit;
use core::ops::Deref;
use core::pin::Pin;
use core::ptr::NonNull;

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
/// # Pinned: initialised, used and freed at one address
///
/// `ExInitializeRundownProtection` identifies the reference by the address
/// it was called on, and the value may itself be pinned (a [`SpinLock`]),
/// so [`Rundown::new`] returns an initialiser ([`PinInit`]) that runs in the
/// final storage ([`try_pin_box`](crate::try_pin_box),
/// [`stack_pin_init!`](crate::stack_pin_init), or a containing structure's
/// initialiser). The `Rundown` is `!Unpin` and dropped in place; the host
/// model reports a reference used anywhere else (`LockMoved`).
///
/// ```
/// use ndis_sync::{stack_pin_init, Passive, Rundown};
///
/// // SAFETY: a test thread runs at PASSIVE_LEVEL.
/// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
/// ndis_sync::stack_pin_init!(let module = Rundown::new(&passive, String::from("adapter 1")));
/// if let Some(name) = module.try_acquire() {
///     assert_eq!(name.as_str(), "adapter 1");
/// }
/// assert_eq!(module.run_down(&passive).as_deref(), Some("adapter 1"));
/// assert!(module.try_acquire().is_none());
/// ```
///
/// [`SpinLock`]: crate::SpinLock
pub struct Rundown<T> {
    raw: UnsafeCell<RawRundown>,
    phase: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
    _pin: PhantomPinned,
}

// SAFETY: the value may be dropped (with the wrapper) on another thread;
// the reference has no thread affinity.
unsafe impl<T: Send> Send for Rundown<T> {}
// SAFETY: guards on several threads share `&T` (needs `T: Sync`), and the
// thread that wins `run_down` takes the `T` out (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for Rundown<T> {}

impl<T> Rundown<T> {
    /// An initialiser of the wrapper: `ExInitializeRundownProtection` at
    /// its final address, and `value` initialised in place next to it.
    ///
    /// `ExInitializeRundownProtection` is callable at IRQL <= APC_LEVEL, so
    /// the initialiser borrows a [`Passive`] token: it runs where the token
    /// is valid, and cannot be sent elsewhere or kept past it.
    ///
    /// ```
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
    /// ndis_sync::stack_pin_init!(let endpoint = ndis_sync::Rundown::new(&passive, 42));
    /// assert!(!endpoint.is_run_down());
    /// ```
    pub fn new<'a, I: PinInit<T> + 'a>(irql: &'a Passive, value: I) -> impl PinInit<Self> + 'a
    where
        T: 'a,
    {
        let init = move |slot: *mut Self| {
            let _ = irql;
            // SAFETY: `slot` is valid for writes and pinned (the
            // initialiser's contract); `&raw mut` makes no reference to
            // the uninitialised memory. `MaybeUninit<T>` and
            // `UnsafeCell<_>` have the layout of `T`.
            unsafe {
                Active::rundown_init(UnsafeCell::raw_get(&raw const (*slot).raw));
                (&raw mut (*slot).phase).write(AtomicU8::new(LIVE));
                value.__pinned_init(UnsafeCell::raw_get(&raw const (*slot).value).cast::<T>());
            }
        };
        // SAFETY: the closure initialises every field (`_pin` is zero-sized),
        // the reference and the value in place.
        unsafe { init_from_closure(init) }
    }

    /// Acquires rundown protection (`ExAcquireRundownProtection`, IRQL <=
    /// DISPATCH); `None` once run-down has begun. The value stays until the
    /// guard is dropped (`ExReleaseRundownProtection`).
    ///
    /// ```
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
    /// ndis_sync::stack_pin_init!(let endpoint = ndis_sync::Rundown::new(&passive, 42));
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
        // INVARIANT: the acquire succeeded and `self` outlives the guard's `'a`.
        acquired.then(|| RundownGuard {
            rundown: NonNull::from(self),
            _rundown: PhantomData,
            _not_send_sync: PhantomData,
        })
    }

    /// Blocks new protection, waits until every guard is dropped
    /// (`ExWaitForRundownProtectionRelease`, IRQL <= APC: the token is
    /// [`Passive`] or a mutex guard's [`Apc`](crate::Apc)), and takes the
    /// value out (for a value that may move: `T: Unpin`; otherwise see
    /// [`run_down_with`](Self::run_down_with)).
    ///
    /// Exactly one call gets `Some(value)`, even when several threads run it
    /// down at once; the others return `None` at once. After any call has
    /// returned, every `try_acquire` fails.
    ///
    /// ```
    /// use ndis_sync::{Passive, Rundown};
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
    /// ndis_sync::stack_pin_init!(let endpoint = Rundown::new(&passive, vec![1, 2]));
    /// assert_eq!(endpoint.run_down(&passive), Some(vec![1, 2]));
    /// assert_eq!(endpoint.run_down(&passive), None);
    /// ```
    #[track_caller]
    pub fn run_down(&self, irql: &impl AtMostApc) -> Option<T>
    where
        T: Unpin,
    {
        self.wait_and_take(irql, |value| {
            // SAFETY: `T: Unpin`, so moving the value out of its place is
            // allowed; it is read exactly once (the phase).
            unsafe { value.read() }
        })
    }

    /// As [`run_down`](Self::run_down), for a value that must not move (a
    /// [`SpinLock`](crate::SpinLock)): `f` gets it pinned where it lives,
    /// then it is dropped there.
    ///
    /// ```
    /// use ndis_sync::{Passive, Rundown, SpinLock};
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
    /// ndis_sync::stack_pin_init!(let endpoint = Rundown::new(&passive, SpinLock::new(vec![1, 2])));
    /// let taken = endpoint.run_down_with(&passive, |state| core::mem::take(state.data_mut()));
    /// assert_eq!(taken, Some(vec![1, 2]));
    /// ```
    #[track_caller]
    pub fn run_down_with<R>(&self, irql: &impl AtMostApc, f: impl FnOnce(Pin<&mut T>) -> R) -> Option<R> {
        self.wait_and_take(irql, |value| {
            struct DropInPlace<T>(*mut T);
            impl<T> Drop for DropInPlace<T> {
                fn drop(&mut self) {
                    // SAFETY: the value is initialised and owned by this
                    // call (the phase); dropped once, where it lives.
                    unsafe { self.0.drop_in_place() }
                }
            }
            let value = DropInPlace(value);
            // SAFETY: the value stays at its address until dropped in place
            // right after `f` (also if `f` panics).
            f(unsafe { Pin::new_unchecked(&mut *value.0) })
        })
    }

    #[track_caller]
    fn wait_and_take<R>(&self, irql: &impl AtMostApc, take: impl FnOnce(*mut T) -> R) -> Option<R> {
        let _ = irql;
        let won = self.phase.compare_exchange(LIVE, RUNNING_DOWN, Ordering::AcqRel, Ordering::Acquire);
        if won.is_err() {
            return None;
        }
        // SAFETY: winning the phase makes this the only waiter; the token
        // proves PASSIVE_LEVEL (<= APC).
        unsafe { Active::rundown_wait(self.raw.get()) };
        // The wait returned, so no guard exists and none can be created;
        // the phase makes this the only taker of the initialized value.
        let taken = take(self.value.get().cast::<T>());
        self.phase.store(RUN_DOWN, Ordering::Release);
        Some(taken)
    }

    /// `true` once a [`run_down`](Self::run_down) has begun.
    ///
    /// ```
    /// use ndis_sync::{Passive, Rundown};
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
    /// ndis_sync::stack_pin_init!(let endpoint = Rundown::new(&passive, ()));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// endpoint.run_down(&unsafe { Passive::new_unchecked() });
    /// assert!(endpoint.is_run_down());
    /// ```
    pub fn is_run_down(&self) -> bool {
        self.phase.load(Ordering::Acquire) != LIVE
    }

    /// Re-arms a run-down reference for a new value
    /// (`ExReInitializeRundownProtection`, IRQL <= APC), initialised in
    /// place. Only after a completed run-down; otherwise the initialiser is
    /// handed back in `Err`.
    ///
    /// ```
    /// use ndis_sync::{Passive, Rundown};
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
    /// ndis_sync::stack_pin_init!(let endpoint = Rundown::new(&passive, 1));
    /// assert_eq!(endpoint.as_mut().reinitialize(&passive, 2), Err(2));
    /// endpoint.run_down(&passive);
    /// assert_eq!(endpoint.as_mut().reinitialize(&passive, 3), Ok(()));
    /// assert_eq!(*endpoint.try_acquire().unwrap(), 3);
    /// ```
    #[track_caller]
    pub fn reinitialize<I: PinInit<T>>(self: Pin<&mut Self>, irql: &Passive, value: I) -> Result<(), I> {
        let _ = irql;
        if self.phase.load(Ordering::Acquire) != RUN_DOWN {
            return Err(value);
        }
        // SAFETY: run-down completed and `&mut self` excludes every other
        // user; the reference is re-armed where it lives.
        unsafe { Active::rundown_reinitialize(self.raw.get()) };
        // SAFETY: the old value was taken by the run-down, so the slot is
        // uninitialised storage that stays pinned with `self`.
        unsafe { value.__pinned_init(self.value.get().cast::<T>()) };
        self.phase.store(LIVE, Ordering::Release);
        Ok(())
    }

    /// The value, through exclusive access, pinned where it lives; `None`
    /// once run down.
    ///
    /// ```
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
    /// ndis_sync::stack_pin_init!(let endpoint = ndis_sync::Rundown::new(&passive, 1));
    /// *endpoint.as_mut().value_mut().unwrap() = 2;
    /// assert_eq!(*endpoint.try_acquire().unwrap(), 2);
    /// ```
    pub fn value_mut(self: Pin<&mut Self>) -> Option<Pin<&mut T>> {
        let live = self.phase.load(Ordering::Acquire) == LIVE;
        // SAFETY: LIVE means the value is initialized; the exclusive pinned
        // borrow of `self` is one of its structurally pinned value.
        live.then(|| unsafe { Pin::new_unchecked((*self.value.get()).assume_init_mut()) })
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
///
/// Like Rust-for-Linux's `RevocableGuard`, the guard holds a raw pointer and
/// a `PhantomData` lifetime rather than a `&'a Rundown<T>`: the owner of the
/// [`Rundown`] may free its storage as soon as [`Rundown::run_down`]
/// returns, which can be while this guard's `drop` is still running on
/// another processor, just after its release. No reference to the
/// `Rundown` is alive at that point, and nothing is read through the
/// pointer after the release.
#[must_use = "protection is released as soon as the guard is dropped"]
pub struct RundownGuard<'a, T> {
    // INVARIANT: `rundown` points to a `Rundown<T>` on which this guard holds
    // one successful `ExAcquireRundownProtection`. Until `drop` calls
    // `ExReleaseRundownProtection` that protection keeps `run_down` from
    // returning, so the pointee (and its value) is live; after that call the
    // guard touches nothing, because the owner may free it at once.
    rundown: NonNull<Rundown<T>>,
    _rundown: PhantomData<&'a Rundown<T>>,
    _not_send_sync: NotSendSync,
}

impl<T> Deref for RundownGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: by the invariant the `Rundown` is live and protection is
        // held for as long as `self` is borrowed, so `run_down` has not taken
        // the value and cannot until this guard is dropped.
        unsafe { (*(*self.rundown.as_ptr()).value.get()).assume_init_ref() }
    }
}

impl<T> Drop for RundownGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: by the invariant the `Rundown` is live here; `&raw const`
        // makes no reference to it, only a pointer to its `EX_RUNDOWN_REF`.
        let raw = UnsafeCell::raw_get(unsafe { &raw const (*self.rundown.as_ptr()).raw });
        // SAFETY: this guard is one successful acquire on `raw`. This is the
        // guard's last use of the pointer: once the release is done, the
        // owner may free the `Rundown`.
        unsafe { Active::rundown_release(raw) }
    }
}

impl<T: fmt::Debug> fmt::Debug for RundownGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
