//! Models of `FAST_MUTEX` and `KSEMAPHORE`, with the checks Driver Verifier
//! makes on them.

use super::rule::{violation, Rule};
use super::thread::with_thread;
use crate::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};
use crate::wait::WaitBackend;
use ndis_sys::{APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL};
use std::cell::Cell;

#[cfg(loom)]
use loom::thread_local;
#[cfg(not(loom))]
use std::thread_local;

/// Hands out thread identities (never 0, which means "no owner").
static NEXT_THREAD_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

thread_local! {
    // loom's thread_local! takes no `const { }` initialiser.
    #[allow(clippy::missing_const_for_thread_local)]
    static THREAD_ID: Cell<usize> = Cell::new(0);
    #[allow(clippy::missing_const_for_thread_local)]
    static MUTEXES_HELD: Cell<usize> = Cell::new(0);
}

/// This thread's identity for mutex ownership.
pub(crate) fn thread_id() -> usize {
    THREAD_ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT_THREAD_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        }
        id.get()
    })
}

/// Where a model dispatcher object was initialised (0: not yet), so that a
/// use before its `*Initialize*` call, or away from where that ran, is
/// reported (`LockNotInitialisedHere`).
#[derive(Debug)]
pub(crate) struct InitialisedAt(AtomicUsize);

impl InitialisedAt {
    pub(crate) fn new() -> Self {
        Self(AtomicUsize::new(0))
    }

    /// Records `object` as initialised where it now is.
    pub(crate) fn set<T>(&self, object: &T) {
        self.0.store(address(object), Ordering::Relaxed);
    }

    /// Reports `function` called on `object` (a `kind`) anywhere but where
    /// it was initialised.
    #[track_caller]
    pub(crate) fn check<T>(&self, object: &T, function: &str, kind: &str) {
        let (here, at) = (address(object), self.0.load(Ordering::Relaxed));
        if at != here {
            violation(
                Rule::LockNotInitialisedHere,
                format_args!("{function} on a {kind} at {here:#x}, initialised at {at:#x}"),
            )
        }
    }
}

fn address<T>(object: &T) -> usize {
    object as *const T as usize
}

/// Number of fast mutexes ([`Mutex`](crate::Mutex)es) this thread owns.
///
/// ```
/// assert_eq!(ndis_sync::host::held_mutex_count(), 0);
/// ```
pub fn held_mutex_count() -> usize {
    MUTEXES_HELD.with(Cell::get)
}

/// The model's `FAST_MUTEX`.
#[derive(Debug)]
pub(crate) struct HostFastMutex {
    /// Owning thread, 0 when free.
    owner: AtomicUsize,
    /// IRQL to restore at release (`OldIrql`).
    old_irql: AtomicU8,
    /// Where `ExInitializeFastMutex` ran.
    initialised_at: InitialisedAt,
}

impl HostFastMutex {
    #[track_caller]
    fn check_initialised(&self, function: &str) {
        self.initialised_at.check(self, function, "fast mutex");
    }

    #[track_caller]
    fn acquire(&self) {
        const F: &str = "ExAcquireFastMutex";
        self.check_initialised(F);
        let me = thread_id();
        let old = with_thread(|t| {
            if t.irql > APC_LEVEL {
                violation(Rule::MutexAcquireAboveApc, format_args!("{F} at IRQL {}", t.irql))
            }
            if self.owner.load(Ordering::Relaxed) == me {
                violation(Rule::MutexRecursion, format_args!("{F} on a fast mutex this thread owns: deadlock"))
            }
            core::mem::replace(&mut t.irql, APC_LEVEL)
        });
        while self.owner.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
            super::spin_wait();
        }
        self.old_irql.store(old, Ordering::Relaxed);
        MUTEXES_HELD.with(|n| n.set(n.get() + 1));
    }

    #[track_caller]
    fn release(&self) {
        const F: &str = "ExReleaseFastMutex";
        self.check_initialised(F);
        if self.owner.load(Ordering::Relaxed) != thread_id() {
            violation(Rule::MutexReleaseNotOwner, format_args!("{F} by a thread that does not own the mutex"))
        }
        let old = self.old_irql.load(Ordering::Relaxed);
        with_thread(|t| {
            if t.irql != APC_LEVEL {
                violation(Rule::MutexReleaseNotAtApc, format_args!("{F} at IRQL {}", t.irql))
            }
            t.irql = old;
        });
        MUTEXES_HELD.with(|n| n.set(n.get() - 1));
        self.owner.store(0, Ordering::Release);
    }
}

/// The model's `KSEMAPHORE`.
#[derive(Debug)]
pub(crate) struct HostSemaphore {
    count: AtomicI32,
    limit: AtomicI32,
    initialised_at: InitialisedAt,
}

impl HostSemaphore {
    #[track_caller]
    fn check_initialised(&self, function: &str) {
        self.initialised_at.check(self, function, "semaphore");
    }

    fn try_take(&self) -> bool {
        let mut seen = self.count.load(Ordering::Relaxed);
        while seen > 0 {
            match self.count.compare_exchange(seen, seen - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => seen = now,
            }
        }
        false
    }

    #[track_caller]
    fn wait(&self, timeout_100ns: Option<u64>) -> bool {
        const F: &str = "KeWaitForSingleObject";
        self.check_initialised(F);
        with_thread(|t| {
            if t.irql > DISPATCH_LEVEL {
                violation(Rule::IrqlAboveDispatch, format_args!("{F} at IRQL {}", t.irql))
            }
            if t.irql == DISPATCH_LEVEL && timeout_100ns != Some(0) {
                violation(
                    Rule::WaitAtDispatch,
                    format_args!("{F} at DISPATCH_LEVEL with a timeout of {timeout_100ns:?} (only zero is allowed)"),
                )
            }
        });
        if self.try_take() {
            return true;
        }
        match timeout_100ns {
            Some(0) => false,
            None => {
                while !self.try_take() {
                    super::spin_wait();
                }
                true
            }
            Some(t) => self.wait_until(t),
        }
    }

    #[cfg(not(loom))]
    fn wait_until(&self, timeout_100ns: u64) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_nanos(timeout_100ns.saturating_mul(100));
        loop {
            if self.try_take() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            super::spin_wait();
        }
    }

    /// Under loom there is no clock: the timeout expires after one more try.
    #[cfg(loom)]
    fn wait_until(&self, _timeout_100ns: u64) -> bool {
        super::spin_wait();
        self.try_take()
    }

    #[track_caller]
    fn release(&self, adjustment: i32) {
        const F: &str = "KeReleaseSemaphore";
        self.check_initialised(F);
        with_thread(|t| {
            if t.irql > DISPATCH_LEVEL {
                violation(Rule::IrqlAboveDispatch, format_args!("{F} at IRQL {}", t.irql))
            }
        });
        let limit = self.limit.load(Ordering::Relaxed);
        let before = self.count.fetch_add(adjustment, Ordering::Release);
        if before + adjustment > limit {
            self.count.fetch_sub(adjustment, Ordering::Relaxed);
            violation(
                Rule::SemaphoreLimitExceeded,
                format_args!(
                    "{F} of {adjustment} on a count of {before} with limit {limit} (STATUS_SEMAPHORE_LIMIT_EXCEEDED)"
                ),
            )
        }
    }

    /// Permits currently available.
    pub(crate) fn count(&self) -> i32 {
        self.count.load(Ordering::Relaxed)
    }

    /// `KeReleaseSemaphore` with any adjustment, for tests of the rule.
    #[track_caller]
    pub(crate) fn release_raw(&self, adjustment: i32) {
        self.release(adjustment);
    }
}

impl WaitBackend for super::Host {
    type FastMutex = HostFastMutex;
    type Semaphore = HostSemaphore;
    type MutexObject = super::mutex_object::HostMutexObject;

    fn mutex_storage() -> HostFastMutex {
        HostFastMutex {
            owner: AtomicUsize::new(0),
            old_irql: AtomicU8::new(PASSIVE_LEVEL),
            initialised_at: InitialisedAt::new(),
        }
    }

    unsafe fn mutex_init(mutex: *mut HostFastMutex) {
        // SAFETY: the caller guarantees `mutex` is valid and unused.
        let mutex = unsafe { &*mutex };
        mutex.owner.store(0, Ordering::Relaxed);
        mutex.initialised_at.set(mutex);
    }

    unsafe fn mutex_acquire(mutex: *mut HostFastMutex) {
        // SAFETY: the caller guarantees `mutex` is valid.
        unsafe { &*mutex }.acquire();
    }

    unsafe fn mutex_release(mutex: *mut HostFastMutex) {
        // SAFETY: the caller guarantees `mutex` is valid.
        unsafe { &*mutex }.release();
    }

    fn mutex_object_storage() -> Self::MutexObject {
        Self::MutexObject::new()
    }

    unsafe fn mutex_object_init(mutex: *mut Self::MutexObject) {
        // SAFETY: the caller guarantees `mutex` is valid and unused.
        unsafe { &*mutex }.init();
    }

    unsafe fn mutex_object_acquire(mutex: *mut Self::MutexObject) {
        // SAFETY: the caller guarantees `mutex` is valid.
        unsafe { &*mutex }.acquire();
    }

    unsafe fn mutex_object_release(mutex: *mut Self::MutexObject) {
        // SAFETY: the caller guarantees `mutex` is valid.
        unsafe { &*mutex }.release();
    }

    fn semaphore_storage() -> HostSemaphore {
        HostSemaphore { count: AtomicI32::new(0), limit: AtomicI32::new(0), initialised_at: InitialisedAt::new() }
    }

    unsafe fn semaphore_init(semaphore: *mut HostSemaphore, count: i32, limit: i32) {
        // SAFETY: the caller guarantees `semaphore` is valid and unused.
        let semaphore = unsafe { &*semaphore };
        semaphore.count.store(count, Ordering::Relaxed);
        semaphore.limit.store(limit, Ordering::Relaxed);
        semaphore.initialised_at.set(semaphore);
    }

    unsafe fn semaphore_wait(semaphore: *mut HostSemaphore, timeout_100ns: Option<u64>) -> bool {
        // SAFETY: the caller guarantees `semaphore` is valid.
        unsafe { &*semaphore }.wait(timeout_100ns)
    }

    unsafe fn semaphore_release(semaphore: *mut HostSemaphore) {
        // SAFETY: the caller guarantees `semaphore` is valid.
        unsafe { &*semaphore }.release(1);
    }
}
