//! [`Semaphore`]: a kernel semaphore (`KSEMAPHORE`) bounding how many
//! holders of a resource there are at once.

use crate::mutex::AtMostApc;
use crate::wait::{ActiveWait, WaitBackend};
use crate::AtMostDispatch;
use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomPinned;
use core::pin::Pin;
use core::time::Duration;

type RawSemaphore = <ActiveWait as WaitBackend>::Semaphore;

/// A bound on simultaneous holders: `limit` [`Permit`]s, each returned when
/// dropped.
///
/// [`acquire`](Self::acquire) waits for a permit at most as long as asked
/// (`KeWaitForSingleObject` with a relative timeout, IRQL <= `APC_LEVEL`),
/// and returns [`TimedOut`] instead of a permit when the time is up;
/// [`try_acquire`](Self::try_acquire) does not wait (a zero timeout, which
/// `DISPATCH_LEVEL` allows). A permit is released with `KeReleaseSemaphore`
/// by whichever thread drops it.
///
/// # Pinned, initialised in place
///
/// Waiters are linked to the semaphore's dispatcher header: create it with
/// [`new`](Self::new) where it will live, pin it, call
/// [`init`](Self::init) through the pin (`KeInitializeSemaphore`).
///
/// # What the types guarantee, what is checked at run time
///
/// * Waiting needs an [`AtMostApc`] token, so a semaphore cannot be waited
///   on (with a timeout) inside a spin lock; at `DISPATCH_LEVEL` only
///   [`try_acquire`](Self::try_acquire) is available.
/// * Every permit comes from a successful wait and is released once, so the
///   safe API never releases past the limit
///   (`STATUS_SEMAPHORE_LIMIT_EXCEEDED`); the host model and the harness
///   report such a release by raw calls (`SemaphoreLimitExceeded`).
///
/// ```
/// use core::time::Duration;
/// use ndis_sync::{Passive, Semaphore};
///
/// let mut replies = Box::pin(Semaphore::new(1));
/// replies.as_mut().init();
/// // SAFETY: a test thread runs at PASSIVE_LEVEL.
/// let passive = unsafe { Passive::new_unchecked() };
/// let permit = replies.acquire(&passive, Duration::from_millis(10)).expect("free");
/// assert!(replies.acquire(&passive, Duration::from_millis(1)).is_err()); // timed out
/// drop(permit);
/// assert!(replies.acquire(&passive, Duration::from_millis(1)).is_ok());
/// ```
pub struct Semaphore {
    raw: UnsafeCell<RawSemaphore>,
    limit: i32,
    initialised: bool,
    _pinned: PhantomPinned,
}

// SAFETY: the KSEMAPHORE is a dispatcher object made for concurrent use;
// every access goes through the kernel's (or the model's) functions.
unsafe impl Sync for Semaphore {}
// SAFETY: a semaphore has no thread affinity; a pinned one never moves.
unsafe impl Send for Semaphore {}

/// A wait for a [`Semaphore`] permit ran out of time (`STATUS_TIMEOUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for a semaphore permit")
    }
}

impl Semaphore {
    /// A semaphore with `limit` permits, all available once
    /// [`init`](Self::init) has run.
    ///
    /// # Panics
    ///
    /// If `limit` is 0 or above `i32::MAX`.
    ///
    /// ```
    /// assert_eq!(ndis_sync::Semaphore::new(4).limit(), 4);
    /// ```
    pub fn new(limit: u32) -> Self {
        let limit = i32::try_from(limit).ok().filter(|&l| l > 0).expect("semaphore limit in 1..=i32::MAX");
        Self {
            raw: UnsafeCell::new(ActiveWait::semaphore_storage()),
            limit,
            initialised: false,
            _pinned: PhantomPinned,
        }
    }

    /// The number of permits.
    ///
    /// ```
    /// assert_eq!(ndis_sync::Semaphore::new(2).limit(), 2);
    /// ```
    pub fn limit(&self) -> u32 {
        self.limit.unsigned_abs()
    }

    /// An initialiser ([`PinInit`](crate::PinInit)) of an initialised
    /// semaphore with `limit` permits: [`new`](Self::new) and
    /// [`init`](Self::init) in one step, at the final address, like
    /// [`SpinLock::new`](crate::SpinLock::new).
    ///
    /// # Panics
    ///
    /// As [`new`](Self::new), when the initialiser runs.
    ///
    /// ```
    /// ndis_sync::stack_pin_init!(let semaphore = ndis_sync::Semaphore::in_place(2));
    /// assert!(semaphore.is_initialised());
    /// assert_eq!(semaphore.available(), 2);
    /// ```
    pub fn in_place(limit: u32) -> impl crate::PinInit<Self> {
        crate::init::new_then_init(move || Self::new(limit), Self::init)
    }

    /// Initialises the semaphore where it now is, for good, with every
    /// permit available (`KeInitializeSemaphore(count = limit, limit)`).
    ///
    /// ```
    /// let mut semaphore = Box::pin(ndis_sync::Semaphore::new(2));
    /// semaphore.as_mut().init();
    /// assert!(semaphore.is_initialised());
    /// ```
    pub fn init(self: Pin<&mut Self>) {
        // SAFETY: only the flag and the raw semaphore are written; nothing moves.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `&mut` means no permit or waiter exists; the pin keeps
        // the storage at this address until it is dropped.
        unsafe { ActiveWait::semaphore_init(this.raw.get(), this.limit, this.limit) };
        this.initialised = true;
    }

    /// `true` once [`init`](Self::init) has run.
    ///
    /// ```
    /// assert!(!ndis_sync::Semaphore::new(1).is_initialised());
    /// ```
    pub fn is_initialised(&self) -> bool {
        self.initialised
    }

    #[track_caller]
    fn raw(&self) -> *mut RawSemaphore {
        assert!(self.initialised, "ndis_sync::Semaphore used before Semaphore::init");
        self.raw.get()
    }

    /// Waits at most `timeout` for a permit (`KeWaitForSingleObject`, IRQL
    /// <= `APC_LEVEL`); [`TimedOut`] when none came in time.
    ///
    /// # Panics
    ///
    /// If [`init`](Self::init) has not run.
    ///
    /// ```
    /// use core::time::Duration;
    /// let mut semaphore = Box::pin(ndis_sync::Semaphore::new(1));
    /// semaphore.as_mut().init();
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
    /// let permit = semaphore.acquire(&passive, Duration::from_secs(1));
    /// assert!(permit.is_ok());
    /// ```
    #[track_caller]
    pub fn acquire(&self, irql: &impl AtMostApc, timeout: Duration) -> Result<Permit<'_>, TimedOut> {
        let _ = irql;
        // 100 ns units, rounded up so that a short timeout still waits.
        let units = timeout.as_nanos().div_ceil(100);
        let units = u64::try_from(units).unwrap_or(u64::MAX);
        // SAFETY: initialised (pinned for good); the token proves IRQL <= APC.
        let taken = unsafe { ActiveWait::semaphore_wait(self.raw(), Some(units)) };
        if taken {
            Ok(Permit { semaphore: self })
        } else {
            Err(TimedOut)
        }
    }

    /// Takes a permit if one is available now, without waiting
    /// (`KeWaitForSingleObject` with a zero timeout; IRQL <= `DISPATCH_LEVEL`).
    ///
    /// ```
    /// let mut semaphore = Box::pin(ndis_sync::Semaphore::new(1));
    /// semaphore.as_mut().init();
    /// ndis_sync::host::at_dispatch(|dispatch| {
    ///     let first = semaphore.try_acquire(dispatch);
    ///     assert!(first.is_some());
    ///     assert!(semaphore.try_acquire(dispatch).is_none());
    /// });
    /// ```
    #[track_caller]
    pub fn try_acquire(&self, irql: &impl AtMostDispatch) -> Option<Permit<'_>> {
        let _ = irql;
        // SAFETY: initialised; a zero timeout is allowed at IRQL <= DISPATCH.
        let taken = unsafe { ActiveWait::semaphore_wait(self.raw(), Some(0)) };
        taken.then(|| Permit { semaphore: self })
    }

    /// Permits available now (host model only).
    ///
    /// ```
    /// let mut semaphore = Box::pin(ndis_sync::Semaphore::new(3));
    /// semaphore.as_mut().init();
    /// assert_eq!(semaphore.available(), 3);
    /// ```
    #[cfg(not(target_os = "windows"))]
    pub fn available(&self) -> u32 {
        // SAFETY: initialised, valid for `self`'s life.
        unsafe { &*self.raw() }.count().unsigned_abs()
    }

    /// Calls `KeReleaseSemaphore` with `adjustment` and no permit to give
    /// back, as a buggy driver would (host model only: tests of the
    /// `SemaphoreLimitExceeded` rule).
    ///
    /// ```should_panic
    /// let mut semaphore = Box::pin(ndis_sync::Semaphore::new(1));
    /// semaphore.as_mut().init();
    /// semaphore.release_unpaired(1);
    /// ```
    #[cfg(not(target_os = "windows"))]
    #[track_caller]
    pub fn release_unpaired(&self, adjustment: i32) {
        // SAFETY: initialised, valid for `self`'s life.
        unsafe { &*self.raw() }.release_raw(adjustment);
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("limit", &self.limit).field("initialised", &self.initialised).finish()
    }
}

/// One permit of a [`Semaphore`]; released (`KeReleaseSemaphore`) when
/// dropped, by whichever thread drops it (IRQL <= `DISPATCH_LEVEL`).
#[must_use = "the permit is released as soon as it is dropped"]
#[derive(Debug)]
pub struct Permit<'a> {
    semaphore: &'a Semaphore,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // SAFETY: this permit came from a successful wait on an initialised
        // semaphore and is released once, so the count stays within the limit.
        unsafe { ActiveWait::semaphore_release(self.semaphore.raw.get()) }
    }
}
