//! The seam between [`Mutex`](crate::Mutex) / [`PassiveMutex`](crate::PassiveMutex) / [`Semaphore`](crate::Semaphore)
//! and the primitives: one function per real function, like
//! [`Backend`](crate::backend) for the spin and RW locks. `Kernel` calls the
//! exports of ntoskrnl.exe; the host model is `host::wait`.

/// The raw fast-mutex, mutex-object and semaphore operations.
///
/// Every function takes a raw pointer to state inside an `UnsafeCell` of a
/// pinned wrapper; the wrappers uphold the contracts stated here.
pub(crate) trait WaitBackend {
    /// `FAST_MUTEX` or its model.
    type FastMutex;
    /// `KSEMAPHORE` or its model.
    type Semaphore;
    /// `KMUTEX` or its model.
    type MutexObject;

    /// Uninitialised storage for a fast mutex (all zero).
    fn mutex_storage() -> Self::FastMutex;
    /// `ExInitializeFastMutex`.
    ///
    /// # Safety
    /// `mutex` is valid, not in use, and never moves again.
    unsafe fn mutex_init(mutex: *mut Self::FastMutex);
    /// `ExAcquireFastMutex`: raise to APC_LEVEL, acquire (waiting).
    ///
    /// # Safety
    /// `mutex` was initialised at this address; IRQL <= APC.
    unsafe fn mutex_acquire(mutex: *mut Self::FastMutex);
    /// `ExReleaseFastMutex`: release, restore the saved IRQL.
    ///
    /// # Safety
    /// This thread owns `mutex` (pairs with `mutex_acquire`), at APC_LEVEL.
    unsafe fn mutex_release(mutex: *mut Self::FastMutex);

    /// Uninitialised storage for a mutex object (all zero).
    fn mutex_object_storage() -> Self::MutexObject;
    /// `KeInitializeMutex(mutex, 0)`.
    ///
    /// # Safety
    /// `mutex` is valid, not in use, and never moves again.
    unsafe fn mutex_object_init(mutex: *mut Self::MutexObject);
    /// `KeWaitForSingleObject(mutex, Executive, KernelMode, FALSE, NULL)`:
    /// acquire (waiting), disabling normal kernel APCs; the IRQL stays.
    ///
    /// # Safety
    /// `mutex` was initialised at this address; PASSIVE_LEVEL; this thread
    /// does not own it already.
    unsafe fn mutex_object_acquire(mutex: *mut Self::MutexObject);
    /// `KeReleaseMutex(mutex, FALSE)`: release, re-enabling normal kernel APCs.
    ///
    /// # Safety
    /// This thread owns `mutex` (pairs with `mutex_object_acquire`).
    unsafe fn mutex_object_release(mutex: *mut Self::MutexObject);

    /// Uninitialised storage for a semaphore (all zero).
    fn semaphore_storage() -> Self::Semaphore;
    /// `KeInitializeSemaphore(semaphore, count, limit)`.
    ///
    /// # Safety
    /// `semaphore` is valid, nobody waits on it, and it never moves again.
    unsafe fn semaphore_init(semaphore: *mut Self::Semaphore, count: i32, limit: i32);
    /// `KeWaitForSingleObject(semaphore, Executive, KernelMode, FALSE,
    /// timeout)`: `None` waits forever, `Some(t)` waits at most `t` 100 ns
    /// units (`Some(0)` does not wait). `true` when a permit was taken,
    /// `false` on `STATUS_TIMEOUT`.
    ///
    /// # Safety
    /// `semaphore` was initialised at this address; IRQL <= APC, or
    /// DISPATCH with `Some(0)`.
    unsafe fn semaphore_wait(semaphore: *mut Self::Semaphore, timeout_100ns: Option<u64>) -> bool;
    /// `KeReleaseSemaphore(semaphore, SEMAPHORE_INCREMENT, 1, FALSE)`.
    ///
    /// # Safety
    /// `semaphore` was initialised at this address; pairs with a successful
    /// `semaphore_wait` (so the limit cannot be passed); IRQL <= DISPATCH.
    unsafe fn semaphore_release(semaphore: *mut Self::Semaphore);
}

/// The backend this build uses.
#[cfg(target_os = "windows")]
pub(crate) type ActiveWait = Kernel;
/// The backend this build uses.
#[cfg(not(target_os = "windows"))]
pub(crate) type ActiveWait = crate::host::Host;

/// The real executive and kernel primitives.
#[cfg(target_os = "windows")]
pub(crate) struct Kernel;

#[cfg(target_os = "windows")]
impl WaitBackend for Kernel {
    type FastMutex = ndis_sys::FAST_MUTEX;
    type Semaphore = ndis_sys::KSEMAPHORE;
    type MutexObject = ndis_sys::KMUTEX;

    fn mutex_storage() -> ndis_sys::FAST_MUTEX {
        ndis_sys::FAST_MUTEX::default()
    }

    unsafe fn mutex_init(mutex: *mut ndis_sys::FAST_MUTEX) {
        // SAFETY: the caller guarantees valid, unused storage at its final address.
        unsafe { ndis_sys::ExInitializeFastMutex(mutex) }
    }

    unsafe fn mutex_acquire(mutex: *mut ndis_sys::FAST_MUTEX) {
        // SAFETY: the caller guarantees an initialised mutex and IRQL <= APC.
        unsafe { ndis_sys::ExAcquireFastMutex(mutex) }
    }

    unsafe fn mutex_release(mutex: *mut ndis_sys::FAST_MUTEX) {
        // SAFETY: the caller guarantees this thread owns the mutex.
        unsafe { ndis_sys::ExReleaseFastMutex(mutex) }
    }

    fn mutex_object_storage() -> ndis_sys::KMUTEX {
        ndis_sys::KMUTEX::default()
    }

    unsafe fn mutex_object_init(mutex: *mut ndis_sys::KMUTEX) {
        // SAFETY: the caller guarantees valid, unused storage at its final address.
        unsafe { ndis_sys::KeInitializeMutex(mutex, 0) }
    }

    unsafe fn mutex_object_acquire(mutex: *mut ndis_sys::KMUTEX) {
        // SAFETY: the caller guarantees an initialised mutex at PASSIVE_LEVEL.
        // No timeout, not alertable, kernel mode: the only status is
        // STATUS_SUCCESS (STATUS_ABANDONED is for a mutex whose owner
        // ended holding it, which the guard's borrow rules out).
        unsafe {
            ndis_sys::KeWaitForSingleObject(
                mutex.cast(),
                ndis_sys::Executive,
                ndis_sys::KernelMode,
                0,
                core::ptr::null_mut(),
            )
        };
    }

    unsafe fn mutex_object_release(mutex: *mut ndis_sys::KMUTEX) {
        // SAFETY: the caller guarantees this thread owns the mutex.
        unsafe { ndis_sys::KeReleaseMutex(mutex, 0) };
    }

    fn semaphore_storage() -> ndis_sys::KSEMAPHORE {
        ndis_sys::KSEMAPHORE::default()
    }

    unsafe fn semaphore_init(semaphore: *mut ndis_sys::KSEMAPHORE, count: i32, limit: i32) {
        // SAFETY: the caller guarantees valid, unused storage at its final address.
        unsafe { ndis_sys::KeInitializeSemaphore(semaphore, count, limit) }
    }

    unsafe fn semaphore_wait(semaphore: *mut ndis_sys::KSEMAPHORE, timeout_100ns: Option<u64>) -> bool {
        // Negative: relative to now, in 100 ns units. A plain i64 (not an
        // Option) in memory: only the value's address goes to the kernel.
        let mut relative: i64 = -(timeout_100ns.unwrap_or(0).min(i64::MAX as u64) as i64);
        let timeout = if timeout_100ns.is_some() { &raw mut relative } else { core::ptr::null_mut() };
        // SAFETY: the caller guarantees an initialised semaphore and an IRQL
        // the wait allows; `timeout` is null or points to this frame.
        let status = unsafe {
            ndis_sys::KeWaitForSingleObject(semaphore.cast(), ndis_sys::Executive, ndis_sys::KernelMode, 0, timeout)
        };
        status != ndis_sys::STATUS_TIMEOUT
    }

    unsafe fn semaphore_release(semaphore: *mut ndis_sys::KSEMAPHORE) {
        // SAFETY: the caller guarantees an initialised semaphore with a
        // permit out, so the release cannot pass the limit.
        unsafe { ndis_sys::KeReleaseSemaphore(semaphore, ndis_sys::SEMAPHORE_INCREMENT, 1, 0) };
    }
}
