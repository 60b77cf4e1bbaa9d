//! [`Lock`]: the one implementation behind [`Mutex`](crate::Mutex) and
//! [`PassiveMutex`](crate::PassiveMutex), in the shape of Rust-for-Linux's
//! `kernel::sync::lock`: a pinned, in-place initialised lock generic over a
//! small [`MutexBackend`] that names the kernel object behind it and the
//! IRQL token a held lock lends.
//!
//! What differs between the two lives next to each backend: the token the
//! caller must show to lock (any [`AtMostApc`](crate::AtMostApc) token for a
//! fast mutex, only `&mut Passive` for a mutex object), so `lock` itself is
//! written once per backend, in `mutex.rs` and `passive_mutex.rs`, on top
//! of [`Lock::acquire`].

use crate::wait::{ActiveWait, WaitBackend};
use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomPinned;
use core::ops::{Deref, DerefMut};
use core::pin::Pin;

/// A kernel object that can back a [`Lock`]: [`FastMutex`] or
/// [`MutexObject`]. Sealed.
pub trait MutexBackend: sealed::RawMutex {
    /// The IRQL token a held lock lends for what nests inside it.
    type Token;
}

/// The raw operations behind a [`MutexBackend`], out of reach of other
/// crates: only this crate creates tokens.
pub(crate) mod sealed {
    use crate::wait::{ActiveWait, WaitBackend};

    /// A `FAST_MUTEX` (or its model), in a type the public trait may name.
    #[repr(transparent)]
    pub struct FastMutexRaw(pub(crate) <ActiveWait as WaitBackend>::FastMutex);

    /// A `KMUTEX` (or its model), in a type the public trait may name.
    #[repr(transparent)]
    pub struct MutexObjectRaw(pub(crate) <ActiveWait as WaitBackend>::MutexObject);

    /// One function per real function, like [`WaitBackend`](crate::wait::WaitBackend).
    pub trait RawMutex {
        /// The kernel object (or its model).
        type Raw;
        /// The wrapper's public name, for `Debug` and panic messages.
        const NAME: &'static str;

        /// Uninitialised storage (all zero).
        fn storage() -> Self::Raw;
        /// Initialises the object where it is.
        ///
        /// # Safety
        /// `raw` is valid, not in use, and never moves again.
        unsafe fn init(raw: *mut Self::Raw);
        /// Acquires the object (waiting) and returns the token the hold proves.
        ///
        /// # Safety
        /// `raw` was initialised at this address; the caller's IRQL is one
        /// the backend's acquire allows; and if this thread already holds
        /// it, the acquire does not return (a fast mutex is not recursive:
        /// it deadlocks; a mutex object is, so its caller must prove the
        /// thread holds none).
        unsafe fn acquire(raw: *mut Self::Raw) -> <Self as super::MutexBackend>::Token
        where
            Self: super::MutexBackend;
        /// Releases the object.
        ///
        /// # Safety
        /// This thread holds `raw` (pairs with `acquire`), and every token
        /// borrowed from the hold is gone.
        unsafe fn release(raw: *mut Self::Raw);
    }
}

/// The executive fast mutex (`FAST_MUTEX`) behind [`Mutex`](crate::Mutex).
#[derive(Debug)]
pub struct FastMutex(());

/// The kernel mutex object (`KMUTEX`) behind [`PassiveMutex`](crate::PassiveMutex).
#[derive(Debug)]
pub struct MutexObject(());

/// A `T` protected by a kernel lock of kind `B`; use it through its names
/// [`Mutex`](crate::Mutex) and [`PassiveMutex`](crate::PassiveMutex), whose
/// docs say what each guarantees.
///
/// Pinned and initialised in place: the kernel links waiters to the object,
/// so it must be initialised at its final address and never move. Create it
/// with [`in_place`](Self::in_place), or [`new`](Self::new) then
/// [`init`](Self::init) through the pin. It is `!Unpin`; locking one that
/// was never initialised panics (a bug check in the driver).
pub struct Lock<T, B: MutexBackend> {
    raw: UnsafeCell<B::Raw>,
    initialised: bool,
    data: UnsafeCell<T>,
    _pinned: PhantomPinned,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time, possibly on
// another thread, so sharing it requires only `T: Send`.
unsafe impl<T: Send, B: MutexBackend> Sync for Lock<T, B> {}
// SAFETY: moving the lock moves the `T`; an uninitialised or unheld fast
// mutex or mutex object has no thread affinity (and a pinned one never
// moves).
unsafe impl<T: Send, B: MutexBackend> Send for Lock<T, B> {}

impl<T, B: MutexBackend> Lock<T, B> {
    /// Wraps `value`; the lock is usable once [`init`](Self::init) has run
    /// at its final address.
    ///
    /// ```
    /// let mutex = ndis_sync::Mutex::new(0u32);
    /// assert_eq!(mutex.into_inner(), 0);
    /// let mutex = ndis_sync::PassiveMutex::new(0u32);
    /// assert_eq!(mutex.into_inner(), 0);
    /// ```
    pub fn new(value: T) -> Self {
        Self {
            raw: UnsafeCell::new(B::storage()),
            initialised: false,
            data: UnsafeCell::new(value),
            _pinned: PhantomPinned,
        }
    }

    /// An initialiser ([`PinInit`](crate::PinInit)) of an initialised lock
    /// holding `value`: [`new`](Self::new) and [`init`](Self::init) in one
    /// step, at the final address, like [`SpinLock::new`](crate::SpinLock::new).
    ///
    /// ```
    /// ndis_sync::stack_pin_init!(let mutex = ndis_sync::Mutex::in_place(1));
    /// assert!(mutex.is_initialised());
    /// ndis_sync::stack_pin_init!(let mutex = ndis_sync::PassiveMutex::in_place(1));
    /// assert!(mutex.is_initialised());
    /// ```
    pub fn in_place(value: T) -> impl crate::PinInit<Self> {
        crate::init::new_then_init(move || Self::new(value), Self::init)
    }

    /// Initialises the kernel object where it now is, for good
    /// (`ExInitializeFastMutex` or `KeInitializeMutex`, both IRQL <=
    /// `DISPATCH_LEVEL`). Calling it again re-initialises the (necessarily
    /// unheld) lock.
    ///
    /// ```
    /// let mut mutex = Box::pin(ndis_sync::Mutex::new(1));
    /// mutex.as_mut().init();
    /// assert!(mutex.is_initialised());
    /// ```
    pub fn init(self: Pin<&mut Self>) {
        // SAFETY: only a flag and the raw object are written; neither is
        // structurally pinned data handed out elsewhere, and nothing moves.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `&mut` means no guard exists; the pin keeps the storage at
        // this address until it is dropped.
        unsafe { B::init(this.raw.get()) };
        this.initialised = true;
    }

    /// `true` once [`init`](Self::init) has run.
    ///
    /// ```
    /// assert!(!ndis_sync::Mutex::new(()).is_initialised());
    /// assert!(!ndis_sync::PassiveMutex::new(()).is_initialised());
    /// ```
    pub fn is_initialised(&self) -> bool {
        self.initialised
    }

    /// Acquires the lock for the backend's `lock`, which checks the
    /// caller's token.
    ///
    /// # Safety
    ///
    /// The caller's IRQL is one `B`'s acquire allows (what the token that
    /// `lock` borrows for the guard's life proves), and a second guard on
    /// this thread is impossible: either this thread does not hold the
    /// lock, or `B`'s acquire never returns to a thread that holds it.
    ///
    /// # Panics
    ///
    /// If [`init`](Self::init) has not run.
    #[track_caller]
    pub(crate) unsafe fn acquire(&self) -> Guard<'_, T, B> {
        if !self.initialised {
            not_initialised(B::NAME, "locked")
        }
        // SAFETY: initialised, so pinned at this address for good; the
        // caller guarantees the IRQL and that no second guard can result.
        let token = unsafe { B::acquire(self.raw.get()) };
        // INVARIANT: the lock is held by this thread until the guard drops.
        Guard { lock: self, token, _not_send: core::marker::PhantomData }
    }

    /// The data, through exclusive access (no locking needed).
    ///
    /// ```
    /// let mut mutex = ndis_sync::Mutex::new(1);
    /// *mutex.get_mut() += 1;
    /// assert_eq!(mutex.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Releases the kernel object without a guard, as a buggy driver would
    /// (host model only: tests of the `MutexReleaseNotOwner` and
    /// `MutexObjectReleaseNotOwner` rules).
    ///
    /// ```should_panic
    /// ndis_sync::stack_pin_init!(let mutex = ndis_sync::PassiveMutex::in_place(()));
    /// mutex.release_unpaired(); // nobody owns it
    /// ```
    #[cfg(not(target_os = "windows"))]
    #[track_caller]
    pub fn release_unpaired(&self) {
        if !self.initialised {
            not_initialised(B::NAME, "released")
        }
        // SAFETY: initialised, valid for `self`'s life; the model checks
        // ownership and reports the release instead of performing it.
        unsafe { B::release(self.raw.get()) }
    }

    /// Unwraps the data (neither kernel object needs freeing).
    ///
    /// ```
    /// assert_eq!(ndis_sync::Mutex::new(5).into_inner(), 5);
    /// assert_eq!(ndis_sync::PassiveMutex::new(5).into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

/// The panic of a lock used before `init`: out of line, so the acquire path
/// stays two calls and a test.
#[cold]
#[track_caller]
fn not_initialised(name: &str, what: &str) -> ! {
    panic!("ndis_sync::{name} {what} before {name}::init")
}

impl<T: Default, B: MutexBackend> Default for Lock<T, B> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T, B: MutexBackend> fmt::Debug for Lock<T, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(B::NAME).field("initialised", &self.initialised).finish_non_exhaustive()
    }
}

/// Exclusive access to the data of a held [`Lock`]; releases on drop.
///
/// Holds the token the lock lends ([`MutexGuard::apc`](crate::MutexGuard),
/// [`PassiveMutexGuard::critical`](crate::PassiveMutexGuard)) for what may
/// nest inside. `!Send`: the owning thread must release it.
#[must_use = "the mutex is released as soon as the guard is dropped"]
pub struct Guard<'a, T, B: MutexBackend> {
    lock: &'a Lock<T, B>,
    token: B::Token,
    /// The thread that acquired the lock must release it, whatever `B::Token` is.
    _not_send: crate::irql::NotSendSync,
}

impl<T, B: MutexBackend> Guard<'_, T, B> {
    /// The guard's token, for what nests inside the lock.
    pub(crate) fn token(&mut self) -> &mut B::Token {
        &mut self.token
    }

    /// The data and the guard's token at once.
    ///
    /// ```
    /// use ndis_sync::{Mutex, Passive, PassiveMutex};
    /// ndis_sync::stack_pin_init!(let outer = PassiveMutex::in_place(1));
    /// ndis_sync::stack_pin_init!(let middle = Mutex::in_place(2));
    /// ndis_sync::stack_pin_init!(let inner = Mutex::in_place(3));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// let mut a = outer.lock(&mut passive);
    /// let (a_data, critical) = a.split();
    /// let mut b = middle.lock(critical); // a fast mutex nests inside
    /// let (b_data, apc) = b.split();
    /// *a_data += *b_data + *inner.lock(apc); // another one nests at APC_LEVEL
    /// drop(b);
    /// assert_eq!(*a, 6);
    /// ```
    pub fn split(&mut self) -> (&mut T, &mut B::Token) {
        // SAFETY: the held lock gives this guard exclusive access.
        (unsafe { &mut *self.lock.data.get() }, &mut self.token)
    }
}

impl<T, B: MutexBackend> Deref for Guard<'_, T, B> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the held lock gives this guard exclusive access.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T, B: MutexBackend> DerefMut for Guard<'_, T, B> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the held lock gives this guard exclusive access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T, B: MutexBackend> Drop for Guard<'_, T, B> {
    fn drop(&mut self) {
        // SAFETY: this guard's thread acquired the lock (the guard is
        // !Send), and every token borrowed from this guard, so every
        // nested guard, is gone (for a fast mutex: the IRQL is back at
        // APC_LEVEL).
        unsafe { B::release(self.lock.raw.get()) }
    }
}

impl<T: fmt::Debug, B: MutexBackend> fmt::Debug for Guard<'_, T, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl sealed::RawMutex for FastMutex {
    type Raw = sealed::FastMutexRaw;
    const NAME: &'static str = "Mutex";

    fn storage() -> Self::Raw {
        sealed::FastMutexRaw(ActiveWait::mutex_storage())
    }

    unsafe fn init(raw: *mut Self::Raw) {
        // SAFETY: the caller's contract is `mutex_init`'s; the cast is
        // sound, `FastMutexRaw` being a transparent wrapper.
        unsafe { ActiveWait::mutex_init(raw.cast()) }
    }

    unsafe fn acquire(raw: *mut Self::Raw) -> crate::Apc {
        // SAFETY: initialised at this address, IRQL <= APC (the caller's
        // contract, which a fast mutex's `lock` meets with an `AtMostApc`
        // token).
        unsafe { ActiveWait::mutex_acquire(raw.cast()) };
        // SAFETY: ExAcquireFastMutex raised the IRQL to APC_LEVEL until the
        // guard releases it.
        unsafe { crate::Apc::new_unchecked() }
    }

    unsafe fn release(raw: *mut Self::Raw) {
        // SAFETY: this thread owns the mutex, at APC_LEVEL (the caller's contract).
        unsafe { ActiveWait::mutex_release(raw.cast()) }
    }
}

impl MutexBackend for FastMutex {
    type Token = crate::Apc;
}

impl sealed::RawMutex for MutexObject {
    type Raw = sealed::MutexObjectRaw;
    const NAME: &'static str = "PassiveMutex";

    fn storage() -> Self::Raw {
        sealed::MutexObjectRaw(ActiveWait::mutex_object_storage())
    }

    unsafe fn init(raw: *mut Self::Raw) {
        // SAFETY: the caller's contract is `mutex_object_init`'s; the cast
        // is sound, `MutexObjectRaw` being a transparent wrapper.
        unsafe { ActiveWait::mutex_object_init(raw.cast()) }
    }

    unsafe fn acquire(raw: *mut Self::Raw) -> crate::PassiveCritical {
        // SAFETY: initialised at this address, PASSIVE_LEVEL, not held by
        // this thread (the caller's contract, which `PassiveMutex::lock`
        // meets with `&mut Passive`, borrowed by every guard of every
        // PassiveMutex).
        unsafe { ActiveWait::mutex_object_acquire(raw.cast()) };
        // SAFETY: the IRQL is still PASSIVE_LEVEL and the acquire disabled
        // normal kernel APCs until the guard releases.
        unsafe { crate::PassiveCritical::new_unchecked() }
    }

    unsafe fn release(raw: *mut Self::Raw) {
        // SAFETY: this thread owns the mutex (the caller's contract).
        unsafe { ActiveWait::mutex_object_release(raw.cast()) }
    }
}

impl MutexBackend for MutexObject {
    type Token = crate::PassiveCritical;
}
