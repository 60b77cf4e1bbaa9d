//! [`PassiveMutex`]: data protected by a kernel mutex object (`KMUTEX`), for
//! writers that must block *and* call functions that need `PASSIVE_LEVEL`
//! (the `Zw*` registry functions) while they hold the lock; and the
//! [`PassiveCritical`] token a held one lends.
//!
//! # Why a mutex object, not a fast or a guarded mutex
//!
//! Microsoft's documentation settles it:
//!
//! * `ZwCreateKey`, `ZwOpenKey`, `ZwSetValueKey`, `ZwQueryValueKey` and
//!   `ZwClose` require `PASSIVE_LEVEL` (each function's page; Driver
//!   Verifier's DDI rule IrqlZwPassive checks it). `ExAcquireFastMutex`
//!   raises to `APC_LEVEL`: the IrqlZwPassive page's own example of the
//!   violation is `ZwClose` under a fast mutex. So [`Mutex`](crate::Mutex)
//!   cannot hold a registry write.
//! * `KeAcquireGuardedMutex` keeps the IRQL but "implicitly enters a guarded
//!   region, where all APCs are disabled", special kernel APCs included
//!   ("Critical Regions and Guarded Regions"). "Disabling APCs" says some
//!   routines "must be called with particular kinds of APCs enabled", e.g.
//!   any routine relying on an I/O completion routine needs special kernel
//!   APCs; the registry functions' pages make no promise either way, so a
//!   guarded region is not a place to call them.
//! * A mutex object ("Introduction to Mutex Objects"): acquiring it "prevents
//!   the delivery of normal kernel-mode APCs", but special kernel APCs (the
//!   I/O manager's completion APC) still run, and the IRQL stays
//!   `PASSIVE_LEVEL`. That is the state of a critical region, where drivers
//!   routinely call the registry (an `ERESOURCE` needs one too; a mutex
//!   object is that, built in, with one object to initialise and nothing to
//!   delete).
//!
//! # Recursion
//!
//! A mutex object *is* recursive: the owner may wait on it again and must
//! then release it as often. This wrapper does not permit it: a second
//! guard on the same mutex would hand out a second `&mut T`. It is ruled out
//! by the types: [`PassiveMutex::lock`] takes the caller's `&mut Passive`
//! for the guard's life, and the guard lends a [`PassiveCritical`] token,
//! which `lock` does not accept. So no `PassiveMutex` nests in another one,
//! the same one included (the host model still reports a forged second
//! `Passive` as `MutexObjectRecursion`).

use crate::irql::Passive;
use crate::lock::{Guard, Lock, MutexObject};
use crate::{AtMostApc, AtMostDispatch};
use core::marker::PhantomData;

/// Proof that the current IRQL is `PASSIVE_LEVEL` with normal kernel APCs
/// disabled and special kernel APCs enabled (a held [`PassiveMutex`], a
/// critical region).
///
/// A held [`PassiveMutex`] lends one ([`PassiveMutexGuard::critical`]). It
/// allows the `PASSIVE_LEVEL` functions ([`AtPassive`]: `Zw*` registry
/// calls), waits ([`AtMostApc`]: a semaphore, a run-down, a fast mutex) and
/// spin or RW locks ([`AtMostDispatch`]). It does not allow taking another
/// [`PassiveMutex`] (that needs `&mut Passive`), and, borrowed from a guard,
/// it cannot outlive the hold: the thread cannot return to user mode with
/// the mutex held (APC_INDEX_MISMATCH, bug check 0x1).
#[derive(Debug)]
pub struct PassiveCritical {
    _not_send_sync: crate::irql::NotSendSync,
}

impl PassiveCritical {
    /// Creates the token.
    ///
    /// # Safety
    ///
    /// The current IRQL must be `PASSIVE_LEVEL` with normal kernel APCs
    /// disabled (inside a critical region or holding a mutex object), and
    /// stay so while the token (or a borrow of it) is used.
    ///
    /// ```
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL (the host model does
    /// // not track APC delivery).
    /// let critical = unsafe { ndis_sync::PassiveCritical::new_unchecked() };
    /// # let _ = critical;
    /// ```
    pub unsafe fn new_unchecked() -> Self {
        crate::backend::check_token_irql(crate::backend::TokenIrql::Passive);
        Self { _not_send_sync: PhantomData }
    }
}

impl AtMostDispatch for PassiveCritical {
    const AT_DISPATCH: bool = false;
}

impl AtMostApc for PassiveCritical {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Passive {}
    impl Sealed for super::PassiveCritical {}
}

/// A token proving the IRQL is `PASSIVE_LEVEL` with special kernel APCs
/// enabled: [`Passive`] or [`PassiveCritical`]. Sealed. What the `Zw*`
/// registry functions need (IrqlZwPassive).
pub trait AtPassive: sealed::Sealed {}

impl AtPassive for Passive {}
impl AtPassive for PassiveCritical {}

/// A `T` protected by a kernel mutex object, held at `PASSIVE_LEVEL`.
///
/// Like a [`Mutex`](crate::Mutex) a holder may block and waiters sleep;
/// unlike it, holding one keeps the IRQL at `PASSIVE_LEVEL` (only normal
/// kernel APCs are disabled), so the holder may call the `Zw*` functions.
/// The price: a mutex object is a dispatcher object, slower than a fast
/// mutex; use it where the holder needs `PASSIVE_LEVEL`.
///
/// # Pinned, initialised in place
///
/// The kernel links waiters to the mutex's dispatcher header: create it
/// with [`in_place`](Self::in_place) (or [`new`](Self::new) then
/// [`init`](Self::init) through the pin). Locking a mutex that was never
/// initialised panics (a bug check in the driver).
///
/// # What the types guarantee, what is checked at run time
///
/// * [`lock`](Self::lock) takes `&mut Passive` for the guard's life: never
///   inside a spin lock, an RW lock or a fast mutex (their tokens are not
///   [`Passive`]), never recursively (the guard's token is not `Passive`).
/// * The guard is `!Send`: only the owning thread releases (`KeReleaseMutex`
///   raises `STATUS_MUTANT_NOT_OWNED` otherwise).
/// * The guard lends a [`PassiveCritical`] token: `Zw*` calls, waits and
///   spin locks nest inside, and cannot outlive the guard.
///
/// ```
/// use ndis_sync::{Passive, PassiveMutex};
///
/// ndis_sync::stack_pin_init!(let name = PassiveMutex::in_place(String::from("old")));
/// // SAFETY: a test thread runs at PASSIVE_LEVEL.
/// let mut passive = unsafe { Passive::new_unchecked() };
/// name.lock(&mut passive).replace_range(.., "new");
/// assert_eq!(*name.lock(&mut passive), "new");
/// ```
pub type PassiveMutex<T> = Lock<T, MutexObject>;

/// Exclusive access to the data of a held [`PassiveMutex`]; releases on
/// drop (`KeReleaseMutex`, re-enabling normal kernel APCs).
///
/// [`critical`](Guard::critical) lends a [`PassiveCritical`] token for what
/// may nest inside. `!Send`: the owning thread must release it.
pub type PassiveMutexGuard<'a, T> = Guard<'a, T, MutexObject>;

impl<T> PassiveMutex<T> {
    /// Acquires the mutex (`KeWaitForSingleObject` on the mutex object:
    /// waits while another thread holds it; the IRQL stays
    /// `PASSIVE_LEVEL`, normal kernel APCs are disabled until the guard
    /// drops).
    ///
    /// # Panics
    ///
    /// If [`init`](Self::init) has not run.
    ///
    /// ```
    /// use ndis_sync::{AtPassive, Passive, PassiveMutex, SpinLock};
    ///
    /// /// Stands for a `Zw*` call: PASSIVE_LEVEL, special kernel APCs on.
    /// fn persist(_irql: &impl AtPassive, value: u32) -> u32 { value }
    ///
    /// ndis_sync::stack_pin_init!(let setting = PassiveMutex::in_place(0u32));
    /// ndis_sync::stack_pin_init!(let copy = SpinLock::new(0u32));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// let mut guard = setting.lock(&mut passive);
    /// let (value, critical) = guard.split();
    /// *value = persist(critical, 7); // allowed while held
    /// *copy.lock(critical) = *value; // a spin lock inside is fine
    /// drop(guard);
    /// assert_eq!(*setting.lock(&mut passive), 7);
    /// ```
    #[track_caller]
    pub fn lock<'a>(&'a self, irql: &'a mut Passive) -> PassiveMutexGuard<'a, T> {
        let _ = irql;
        // SAFETY: the token proves PASSIVE_LEVEL, and being borrowed by
        // every guard of every PassiveMutex, that this thread holds none.
        unsafe { self.acquire() }
    }
}

impl<T> PassiveMutexGuard<'_, T> {
    /// The guard's token, for what nests inside the mutex.
    ///
    /// ```
    /// use ndis_sync::{Passive, PassiveMutex, Rundown};
    /// ndis_sync::stack_pin_init!(let mutex = PassiveMutex::in_place(()));
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// ndis_sync::stack_pin_init!(let module = Rundown::new(&passive, 1));
    /// let mut guard = mutex.lock(&mut passive);
    /// assert_eq!(module.run_down(guard.critical()), Some(1)); // a wait is allowed
    /// ```
    pub fn critical(&mut self) -> &mut PassiveCritical {
        self.token()
    }
}
