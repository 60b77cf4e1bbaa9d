//! [`SpinLock`]: data protected by an `NDIS_SPIN_LOCK`.

use crate::backend::{Active, Backend};
use crate::init::{init_from_closure, PinInit};
use crate::{AtMostDispatch, Dispatch};
use core::cell::UnsafeCell;
use core::fmt;
use core::marker::{PhantomData, PhantomPinned};
use core::ops::{Deref, DerefMut};
use core::pin::Pin;
use core::ptr::NonNull;

type RawSpinLock = <Active as Backend>::SpinLock;

/// A `T` protected by an `NDIS_SPIN_LOCK`.
///
/// Store it in non-paged memory (kernel pool, a global, the stack of a
/// non-pageable function): it is touched at `DISPATCH_LEVEL`.
///
/// # Pinned: initialised, used and freed at one address
///
/// `NdisAllocateSpinLock` identifies the lock by the address it was called
/// on, so [`SpinLock::new`] returns an initialiser ([`PinInit`]) that runs
/// it in the lock's final storage ([`try_pin_box`](crate::try_pin_box),
/// [`stack_pin_init!`](crate::stack_pin_init), or a containing structure's
/// initialiser). The lock is `!Unpin`: once there, safe code cannot move it,
/// and `NdisFreeSpinLock` runs at the same address when it is dropped in
/// place. The host model reports a lock used or freed anywhere else
/// (`LockMoved`).
///
/// ```
/// use ndis_sync::{stack_pin_init, Passive, SpinLock};
///
/// ndis_sync::stack_pin_init!(let counter = SpinLock::new(0u64));
/// // SAFETY: a test thread runs at PASSIVE_LEVEL.
/// let mut passive = unsafe { Passive::new_unchecked() };
/// *counter.lock(&mut passive) += 1;
/// assert_eq!(*counter.as_mut().data_mut(), 1);
/// ```
pub struct SpinLock<T> {
    raw: UnsafeCell<RawSpinLock>,
    data: UnsafeCell<T>,
    _pin: PhantomPinned,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time, possibly on
// another thread, so sharing the lock requires only `T: Send`, like a mutex.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: the `T` may be dropped (with the lock) on another thread; the
// NDIS_SPIN_LOCK has no thread affinity while unheld, and dropping needs it
// unheld.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An initialiser of the lock: `NdisAllocateSpinLock` (any IRQL) at the
    /// lock's final address.
    ///
    /// ```
    /// let lock = ndis_sync::try_pin_box(ndis_sync::SpinLock::new([0u8; 4])).expect("allocated");
    /// # drop(lock);
    /// ```
    pub fn new(value: T) -> impl PinInit<Self> {
        let init = move |slot: *mut Self| {
            // SAFETY: `slot` is valid for writes and pinned (the
            // initialiser's contract); `&raw mut` makes no reference to
            // the uninitialised memory.
            unsafe {
                Active::spin_init(UnsafeCell::raw_get(&raw const (*slot).raw));
                (&raw mut (*slot).data).write(UnsafeCell::new(value));
            }
        };
        // SAFETY: the closure initialises both fields (`_pin` is zero-sized),
        // the raw lock at its final address.
        unsafe { init_from_closure(init) }
    }

    /// Acquires the lock with the caller's IRQL token (`NdisAcquireSpinLock`,
    /// IRQL <= DISPATCH; with a [`Dispatch`] token, `NdisDprAcquireSpinLock`).
    ///
    /// The guard keeps `irql` exclusively borrowed until it is dropped, so
    /// the caller cannot take another lock with it meanwhile: a nested lock
    /// must be taken with the guard's own token ([`SpinLockGuard::dispatch`]),
    /// which makes releasing in the wrong order a compile error.
    ///
    /// ```
    /// use ndis_sync::{MaybeDispatch, SpinLock};
    ///
    /// ndis_sync::stack_pin_init!(let lock = SpinLock::new(Vec::<u8>::new()));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL, which is <= DISPATCH_LEVEL.
    /// let mut irql = unsafe { MaybeDispatch::new_unchecked() };
    /// lock.lock(&mut irql).push(1);
    /// assert_eq!(lock.lock(&mut irql).len(), 1);
    /// ```
    #[track_caller]
    pub fn lock<'a, I: AtMostDispatch>(&'a self, irql: &'a mut I) -> SpinLockGuard<'a, T> {
        let _ = irql;
        if I::AT_DISPATCH {
            // SAFETY: the token proves DISPATCH_LEVEL; the lock is valid and,
            // being borrowed by the guard, cannot move before the release.
            unsafe { Active::spin_acquire_dpr(self.raw.get()) };
            self.guard(Release::Dpr)
        } else {
            // SAFETY: the token proves IRQL <= DISPATCH; the lock is valid and,
            // being borrowed by the guard, cannot move before the release.
            unsafe { Active::spin_acquire(self.raw.get()) };
            self.guard(Release::RestoreIrql)
        }
    }

    /// Acquires the lock at `DISPATCH_LEVEL` (`NdisDprAcquireSpinLock`).
    ///
    /// ```
    /// ndis_sync::stack_pin_init!(let lock = ndis_sync::SpinLock::new(1));
    /// ndis_sync::host::at_dispatch(|dispatch| {
    ///     assert_eq!(*lock.lock_at_dispatch(dispatch), 1);
    /// });
    /// ```
    #[track_caller]
    pub fn lock_at_dispatch<'a>(&'a self, irql: &'a mut Dispatch) -> SpinLockGuard<'a, T> {
        self.lock(irql)
    }

    fn guard(&self, release: Release) -> SpinLockGuard<'_, T> {
        SpinLockGuard { hold: Hold::new(&self.raw, release), data: &self.data }
    }

    /// The data, through exclusive access to the lock (no locking needed).
    /// The data is not pinned: only the lock is.
    ///
    /// ```
    /// ndis_sync::stack_pin_init!(let lock = ndis_sync::SpinLock::new(1));
    /// *lock.as_mut().data_mut() = 2;
    /// assert_eq!(*lock.data_mut(), 2);
    /// ```
    pub fn data_mut(self: Pin<&mut Self>) -> &mut T {
        // SAFETY: `data` is not structurally pinned (guards hand out
        // `&mut T`), and nothing here moves the lock.
        unsafe { self.get_unchecked_mut() }.data.get_mut()
    }
}

impl<T> Drop for SpinLock<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self` means no guard exists; the lock is freed once,
        // in place: it is pinned, so this is the address it was initialised at.
        unsafe { Active::spin_free(self.raw.get()) }
    }
}

impl<T> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinLock").finish_non_exhaustive()
    }
}

/// Which function releases a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Release {
    /// `NdisReleaseSpinLock` (restores the saved IRQL).
    RestoreIrql,
    /// `NdisDprReleaseSpinLock`.
    Dpr,
}

/// One acquisition of a spin lock; releasing it is its drop.
struct Hold<'a> {
    raw: &'a UnsafeCell<RawSpinLock>,
    release: Release,
    dispatch: Dispatch,
}

impl<'a> Hold<'a> {
    fn new(raw: &'a UnsafeCell<RawSpinLock>, release: Release) -> Self {
        Self {
            raw,
            release,
            // SAFETY: the lock was just acquired, which raised (or found)
            // the IRQL at DISPATCH_LEVEL until this hold is released.
            dispatch: unsafe { Dispatch::new_unchecked() },
        }
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let raw = self.raw.get();
        // SAFETY: this hold is the acquisition being undone, with the
        // function that pairs with the one that acquired it.
        unsafe {
            match self.release {
                Release::RestoreIrql => Active::spin_release(raw),
                Release::Dpr => Active::spin_release_dpr(raw),
            }
        }
    }
}

/// Exclusive access to the data of a held [`SpinLock`]; releases on drop.
///
/// Also proof of `DISPATCH_LEVEL`: [`dispatch`](Self::dispatch) lends a token
/// for nested locks, which therefore cannot outlive this guard.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SpinLockGuard<'a, T> {
    hold: Hold<'a>,
    data: &'a UnsafeCell<T>,
}

impl<'a, T> SpinLockGuard<'a, T> {
    /// The guard's `DISPATCH_LEVEL` token, for locks nested inside this one.
    ///
    /// ```
    /// use ndis_sync::{Passive, SpinLock};
    /// ndis_sync::stack_pin_init!(let outer = SpinLock::new(1));
    /// ndis_sync::stack_pin_init!(let inner = SpinLock::new(2));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// let mut a = outer.lock(&mut passive);
    /// let b = inner.lock_at_dispatch(a.dispatch());
    /// assert_eq!(*b, 2);
    /// drop(b);
    /// drop(a);
    /// ```
    pub fn dispatch(&mut self) -> &mut Dispatch {
        &mut self.hold.dispatch
    }

    /// The data and the guard's token at once, so the outer data stays
    /// usable while a nested lock is held.
    ///
    /// ```
    /// use ndis_sync::{Passive, SpinLock};
    /// ndis_sync::stack_pin_init!(let outer = SpinLock::new(1));
    /// ndis_sync::stack_pin_init!(let inner = SpinLock::new(2));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// let mut a = outer.lock(&mut passive);
    /// let (a_data, dispatch) = a.split();
    /// let b = inner.lock_at_dispatch(dispatch);
    /// *a_data += *b;
    /// drop(b);
    /// assert_eq!(*a, 3);
    /// ```
    pub fn split(&mut self) -> (&mut T, &mut Dispatch) {
        // SAFETY: the held lock gives this guard exclusive access to the data.
        (unsafe { &mut *self.data.get() }, &mut self.hold.dispatch)
    }

    /// Narrows the guard to a part of the data; the lock stays held until
    /// the returned guard drops. If `f` panics the lock is released.
    ///
    /// ```
    /// use ndis_sync::{Passive, SpinLock, SpinLockGuard};
    /// ndis_sync::stack_pin_init!(let lock = SpinLock::new((1, 2)));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// let mut second = SpinLockGuard::map(lock.lock(&mut passive), |pair| &mut pair.1);
    /// *second = 5;
    /// drop(second);
    /// assert_eq!(*lock.as_mut().data_mut(), (1, 5));
    /// ```
    pub fn map<U: ?Sized>(this: Self, f: impl FnOnce(&mut T) -> &mut U) -> MappedSpinLockGuard<'a, U> {
        let SpinLockGuard { hold, data } = this;
        // SAFETY: `hold` keeps the lock held for 'a: exclusive access.
        let data = NonNull::from(f(unsafe { &mut *data.get() }));
        MappedSpinLockGuard { hold, data, _data: PhantomData }
    }
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the held lock gives this guard exclusive access to the data.
        unsafe { &*self.data.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the held lock gives this guard exclusive access to the data.
        unsafe { &mut *self.data.get() }
    }
}

impl<T: fmt::Debug> fmt::Debug for SpinLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A [`SpinLockGuard`] narrowed by [`SpinLockGuard::map`] to part of the data.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MappedSpinLockGuard<'a, U: ?Sized> {
    hold: Hold<'a>,
    data: NonNull<U>,
    _data: PhantomData<&'a mut U>,
}

impl<'a, U: ?Sized> MappedSpinLockGuard<'a, U> {
    /// The guard's `DISPATCH_LEVEL` token, for locks nested inside this one.
    ///
    /// ```
    /// use ndis_sync::{Passive, SpinLock, SpinLockGuard};
    /// ndis_sync::stack_pin_init!(let outer = SpinLock::new((0, 1)));
    /// ndis_sync::stack_pin_init!(let inner = SpinLock::new(2));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// let mut a = SpinLockGuard::map(outer.lock(&mut passive), |p| &mut p.1);
    /// assert_eq!(*inner.lock_at_dispatch(a.dispatch()), 2);
    /// ```
    pub fn dispatch(&mut self) -> &mut Dispatch {
        &mut self.hold.dispatch
    }

    /// The data and the guard's token at once.
    ///
    /// ```
    /// use ndis_sync::{Passive, SpinLock, SpinLockGuard};
    /// ndis_sync::stack_pin_init!(let outer = SpinLock::new((0, 1)));
    /// ndis_sync::stack_pin_init!(let inner = SpinLock::new(2));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// let mut a = SpinLockGuard::map(outer.lock(&mut passive), |p| &mut p.1);
    /// let (one, dispatch) = a.split();
    /// *one += *inner.lock_at_dispatch(dispatch);
    /// assert_eq!(*a, 3);
    /// ```
    pub fn split(&mut self) -> (&mut U, &mut Dispatch) {
        // SAFETY: the held lock gives this guard exclusive access to the data.
        (unsafe { self.data.as_mut() }, &mut self.hold.dispatch)
    }

    /// Narrows the guard further.
    ///
    /// ```
    /// use ndis_sync::{MappedSpinLockGuard, Passive, SpinLock, SpinLockGuard};
    /// ndis_sync::stack_pin_init!(let lock = SpinLock::new(((1, 2), 3)));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// let pair = SpinLockGuard::map(lock.lock(&mut passive), |p| &mut p.0);
    /// let mut two = MappedSpinLockGuard::map(pair, |p| &mut p.1);
    /// *two = 20;
    /// drop(two);
    /// assert_eq!(*lock.as_mut().data_mut(), ((1, 20), 3));
    /// ```
    pub fn map<V: ?Sized>(this: Self, f: impl FnOnce(&mut U) -> &mut V) -> MappedSpinLockGuard<'a, V> {
        let MappedSpinLockGuard { hold, mut data, .. } = this;
        // SAFETY: `hold` keeps the lock held for 'a: exclusive access.
        let data = NonNull::from(f(unsafe { data.as_mut() }));
        MappedSpinLockGuard { hold, data, _data: PhantomData }
    }
}

impl<U: ?Sized> Deref for MappedSpinLockGuard<'_, U> {
    type Target = U;

    fn deref(&self) -> &U {
        // SAFETY: the held lock gives this guard exclusive access to the data.
        unsafe { self.data.as_ref() }
    }
}

impl<U: ?Sized> DerefMut for MappedSpinLockGuard<'_, U> {
    fn deref_mut(&mut self) -> &mut U {
        // SAFETY: the held lock gives this guard exclusive access to the data.
        unsafe { self.data.as_mut() }
    }
}

impl<U: ?Sized + fmt::Debug> fmt::Debug for MappedSpinLockGuard<'_, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
