//! [`Mutex`]: data protected by an executive fast mutex (`FAST_MUTEX`), for
//! code that must block while it holds the lock; and the [`Apc`] token a
//! held mutex lends.

use crate::lock::{FastMutex, Guard, Lock};
use crate::{AtMostDispatch, Passive};
use core::marker::PhantomData;

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
pub type Mutex<T> = Lock<T, FastMutex>;

/// Exclusive access to the data of a held [`Mutex`]; releases on drop
/// (`ExReleaseFastMutex`, restoring the IRQL the acquire saved).
///
/// Proof of `APC_LEVEL`: [`apc`](Guard::apc) lends a token for what may
/// nest inside. `!Send`: the owning thread must release it.
pub type MutexGuard<'a, T> = Guard<'a, T, FastMutex>;

impl<T> Mutex<T> {
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
        // SAFETY: the token proves IRQL <= APC. Taking the mutex again on
        // this thread (with the guard's own token) never returns: a fast
        // mutex is not recursive (a deadlock; `MutexRecursion` in the model).
        unsafe { self.acquire() }
    }
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
        self.token()
    }
}
