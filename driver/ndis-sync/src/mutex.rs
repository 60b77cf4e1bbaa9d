//! [`Mutex`]: data protected by an executive fast mutex (`FAST_MUTEX`), for
//! code that must block while it holds the lock; and the [`Apc`] token a
//! held mutex lends.

use crate::wait::{ActiveWait, WaitBackend};
use crate::{AtMostDispatch, Passive};
use core::cell::UnsafeCell;
use core::fmt;
use core::marker::{PhantomData, PhantomPinned};
use core::ops::{Deref, DerefMut};
use core::pin::Pin;

type RawMutex = <ActiveWait as WaitBackend>::FastMutex;

/// Proof that the current IRQL is exactly `APC_LEVEL`.
///
/// A held [`Mutex`] lends one ([`MutexGuard::apc`]). It allows what is legal
/// at `APC_LEVEL`: taking a spin lock or an RW lock (it is an
/// [`AtMostDispatch`] token), taking another mutex, waiting for run-down
/// ([`Rundown::run_down`](crate::Rundown::run_down) accepts any
/// [`AtMostApc`] token). It does not allow what needs [`Passive`] (most
/// `Zw*` functions, for instance).
#[derive(Debug)]
pub struct Apc {
    _not_send_sync: crate::irql::NotSendSync,
}

impl Apc {
    /// Creates an `APC_LEVEL` token.
    ///
    /// # Safety
    ///
    /// The current IRQL must be `APC_LEVEL`, and must stay so for as long as
    /// the token (or a borrow of it) is used.
    ///
    /// ```
    /// # #[cfg(not(target_os = "windows"))]
    /// ndis_sync::host::at_irql(ndis_sync::APC_LEVEL, || {
    ///     // SAFETY: at_irql raised this thread to APC_LEVEL.
    ///     let apc = unsafe { ndis_sync::Apc::new_unchecked() };
    ///     # let _ = apc;
    /// });
    /// ```
    pub unsafe fn new_unchecked() -> Self {
        Self { _not_send_sync: PhantomData }
    }
}

impl AtMostDispatch for Apc {
    const AT_DISPATCH: bool = false;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Passive {}
    impl Sealed for super::Apc {}
    impl Sealed for crate::PassiveCritical {}
}

/// A token proving the IRQL is at most `APC_LEVEL`: [`Passive`], [`Apc`] or
/// [`PassiveCritical`](crate::PassiveCritical).
/// Sealed. What waiting functions (fast mutex, semaphore, run-down) need.
pub trait AtMostApc: sealed::Sealed {}

impl AtMostApc for Passive {}
impl AtMostApc for Apc {}

/// A `T` protected by an executive fast mutex.
///
/// Unlike a [`SpinLock`](crate::SpinLock), a holder may block (page
/// faults, waits), and waiters sleep instead of spinning. Acquiring raises
/// the IRQL to `APC_LEVEL` (`ExAcquireFastMutex`, callable at IRQL <=
/// `APC_LEVEL`); the mutex is not recursive.
///
/// # Pinned, initialised in place
///
/// The kernel links waiters to the event inside the `FAST_MUTEX`, so the
/// mutex must be initialised at its final address and never move: create it
/// with [`new`](Self::new) inside the structure that owns it, pin that
/// structure, then call [`init`](Self::init) through the pin. `Mutex` is
/// `!Unpin`, so once pinned it stays where it is until dropped. Locking a
/// mutex that was never initialised panics (a bug check in the driver).
///
/// # What the types guarantee, what is checked at run time
///
/// * [`lock`](Self::lock) takes the caller's [`AtMostApc`] token by `&mut`
///   for the guard's life, and the guard lends an [`Apc`] token: a mutex
///   cannot be taken inside a spin lock (a [`Dispatch`](crate::Dispatch)
///   token is not [`AtMostApc`]), nothing that needs [`Passive`] runs while
///   it is held, and a nested mutex cannot outlive the outer one.
/// * The guard is `!Send`: only the owning thread releases (`ExReleaseFastMutex`).
/// * Taking the same mutex again through the guard's own [`Apc`] token
///   compiles and deadlocks; the host model and the PortWatch harness report
///   it (`MutexRecursion`).
///
/// ```
/// use core::pin::pin;
/// use ndis_sync::{Mutex, Passive};
///
/// let mut name = pin!(Mutex::new(String::from("old")));
/// name.as_mut().init();
/// // SAFETY: a test thread runs at PASSIVE_LEVEL.
/// let mut passive = unsafe { Passive::new_unchecked() };
/// name.lock(&mut passive).replace_range(.., "new");
/// assert_eq!(*name.lock(&mut passive), "new");
/// ```
pub struct Mutex<T> {
    raw: UnsafeCell<RawMutex>,
    initialised: bool,
    data: UnsafeCell<T>,
    _pinned: PhantomPinned,
}

// SAFETY: the mutex hands out `&mut T` to one holder at a time, possibly on
// another thread, so sharing it requires only `T: Send`.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: moving the mutex moves the `T`; an uninitialised or unheld
// FAST_MUTEX has no thread affinity (and a pinned one never moves).
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// Wraps `value`; the mutex is usable once [`init`](Self::init) has
    /// run at its final address.
    ///
    /// ```
    /// let mutex = ndis_sync::Mutex::new(0u32);
    /// assert_eq!(mutex.into_inner(), 0);
    /// ```
    pub fn new(value: T) -> Self {
        Self {
            raw: UnsafeCell::new(ActiveWait::mutex_storage()),
            initialised: false,
            data: UnsafeCell::new(value),
            _pinned: PhantomPinned,
        }
    }

    /// An initialiser ([`PinInit`](crate::PinInit)) of an initialised mutex
    /// holding `value`: [`new`](Self::new) and [`init`](Self::init) in one
    /// step, at the final address, like [`SpinLock::new`](crate::SpinLock::new).
    ///
    /// ```
    /// ndis_sync::stack_pin_init!(let mutex = ndis_sync::Mutex::in_place(1));
    /// assert!(mutex.is_initialised());
    /// ```
    pub fn in_place(value: T) -> impl crate::PinInit<Self> {
        let init = move |slot: *mut Self| {
            // SAFETY: `slot` is valid for writes and pinned (the
            // initialiser's contract): the mutex is written there and
            // initialised at that address, which it keeps.
            unsafe {
                slot.write(Self::new(value));
                Pin::new_unchecked(&mut *slot).init();
            }
        };
        // SAFETY: the closure initialises the whole mutex.
        unsafe { crate::init_from_closure(init) }
    }

    /// Initialises the fast mutex where it now is, for good
    /// (`ExInitializeFastMutex`, IRQL <= `DISPATCH_LEVEL`). Calling it again
    /// re-initialises the (necessarily unheld) mutex.
    ///
    /// ```
    /// let mut mutex = Box::pin(ndis_sync::Mutex::new(1));
    /// mutex.as_mut().init();
    /// assert!(mutex.is_initialised());
    /// ```
    pub fn init(self: Pin<&mut Self>) {
        // SAFETY: only a flag and the raw mutex are written; neither is
        // structurally pinned data handed out elsewhere, and nothing moves.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `&mut` means no guard exists; the pin keeps the storage at
        // this address until it is dropped.
        unsafe { ActiveWait::mutex_init(this.raw.get()) };
        this.initialised = true;
    }

    /// `true` once [`init`](Self::init) has run.
    ///
    /// ```
    /// assert!(!ndis_sync::Mutex::new(()).is_initialised());
    /// ```
    pub fn is_initialised(&self) -> bool {
        self.initialised
    }

    /// Acquires the mutex (`ExAcquireFastMutex`: IRQL <= `APC_LEVEL`, raises
    /// to `APC_LEVEL`, waits while another thread holds it).
    ///
    /// # Panics
    ///
    /// If [`init`](Self::init) has not run.
    ///
    /// ```
    /// use ndis_sync::{Mutex, Passive, SpinLock};
    /// let mut writers = Box::pin(Mutex::new(0u32));
    /// writers.as_mut().init();
    /// ndis_sync::stack_pin_init!(let counters = SpinLock::new(0u32));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// let mut guard = writers.lock(&mut passive);
    /// let (value, apc) = guard.split();
    /// *value += 1;
    /// *counters.lock(apc) += 1; // a spin lock inside the mutex is fine
    /// drop(guard);
    /// assert_eq!(*writers.lock(&mut passive), 1);
    /// ```
    #[track_caller]
    pub fn lock<'a, I: AtMostApc>(&'a self, irql: &'a mut I) -> MutexGuard<'a, T> {
        let _ = irql;
        assert!(self.initialised, "ndis_sync::Mutex locked before Mutex::init");
        // SAFETY: initialised (so pinned at this address for good); the
        // token proves IRQL <= APC.
        unsafe { ActiveWait::mutex_acquire(self.raw.get()) };
        MutexGuard {
            mutex: self,
            // SAFETY: ExAcquireFastMutex raised the IRQL to APC_LEVEL until
            // the guard releases it.
            apc: unsafe { Apc::new_unchecked() },
        }
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

    /// Calls `ExReleaseFastMutex` without a guard, as a buggy driver would
    /// (host model only: tests of the `MutexReleaseNotOwner` rule).
    ///
    /// ```should_panic
    /// let mut mutex = Box::pin(ndis_sync::Mutex::new(()));
    /// mutex.as_mut().init();
    /// mutex.release_unpaired(); // nobody owns it
    /// ```
    #[cfg(not(target_os = "windows"))]
    #[track_caller]
    pub fn release_unpaired(&self) {
        assert!(self.initialised, "ndis_sync::Mutex released before Mutex::init");
        // SAFETY: initialised, valid for `self`'s life; the model checks
        // ownership and reports the release instead of performing it.
        unsafe { ActiveWait::mutex_release(self.raw.get()) }
    }

    /// Unwraps the data (a fast mutex needs no freeing).
    ///
    /// ```
    /// assert_eq!(ndis_sync::Mutex::new(5).into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex").field("initialised", &self.initialised).finish_non_exhaustive()
    }
}

/// Exclusive access to the data of a held [`Mutex`]; releases on drop
/// (`ExReleaseFastMutex`, restoring the IRQL the acquire saved).
///
/// Proof of `APC_LEVEL`: [`apc`](Self::apc) lends a token for what may
/// nest inside. `!Send`: the owning thread must release it.
#[must_use = "the mutex is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
    apc: Apc,
}

impl<T> MutexGuard<'_, T> {
    /// The guard's `APC_LEVEL` token, for what nests inside the mutex.
    ///
    /// ```
    /// use ndis_sync::{Mutex, Passive, Rundown};
    /// let mut mutex = Box::pin(Mutex::new(()));
    /// mutex.as_mut().init();
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// ndis_sync::stack_pin_init!(let module = Rundown::new(&passive, 1));
    /// let mut guard = mutex.lock(&mut passive);
    /// // Waiting for run-down is allowed at APC_LEVEL.
    /// assert_eq!(module.run_down(guard.apc()), Some(1));
    /// ```
    pub fn apc(&mut self) -> &mut Apc {
        &mut self.apc
    }

    /// The data and the guard's token at once.
    ///
    /// ```
    /// use ndis_sync::{Mutex, Passive};
    /// let (mut outer, mut inner) = (Box::pin(Mutex::new(1)), Box::pin(Mutex::new(2)));
    /// outer.as_mut().init();
    /// inner.as_mut().init();
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// let mut a = outer.lock(&mut passive);
    /// let (a_data, apc) = a.split();
    /// *a_data += *inner.lock(apc); // another mutex nests at APC_LEVEL
    /// assert_eq!(*a, 3);
    /// ```
    pub fn split(&mut self) -> (&mut T, &mut Apc) {
        // SAFETY: the held mutex gives this guard exclusive access.
        (unsafe { &mut *self.mutex.data.get() }, &mut self.apc)
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the held mutex gives this guard exclusive access.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the held mutex gives this guard exclusive access.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard's thread acquired the mutex (the guard is
        // !Send) and the IRQL is back at APC_LEVEL (every nested guard
        // borrowed this guard's token and is gone).
        unsafe { ActiveWait::mutex_release(self.mutex.raw.get()) }
    }
}

impl<T: fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
