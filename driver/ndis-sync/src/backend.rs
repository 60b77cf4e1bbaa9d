//! The one internal seam between the safe wrappers and the primitives.
//!
//! [`Backend`] lists the raw NDIS/Ex operations the wrappers need, one
//! function per real function. Two implementations exist: `kernel` (FFI
//! through `ndis-sys`, selected for `target_os = "windows"`) and `host` (a
//! user-mode model with verifier-style checks, selected everywhere else).
//! The wrappers in `spin_lock`, `rw_lock` and `rundown` are written once
//! against [`Active`].

use ndis_sys::LOCK_STATE_EX;

/// The raw operations behind the guards.
///
/// Every function takes a raw pointer to state that lives inside an
/// `UnsafeCell` of a wrapper (or, for the RW lock, is allocated by
/// `rw_allocate`); the wrappers uphold the call-order contracts stated on
/// each function.
pub(crate) trait Backend {
    /// `NDIS_SPIN_LOCK` or its model.
    type SpinLock;
    /// `NDIS_RW_LOCK_EX` or its model (always behind a pointer).
    type RwLock;
    /// `EX_RUNDOWN_REF` or its model.
    type Rundown;

    /// `NdisAllocateSpinLock` at the lock's final address.
    ///
    /// # Safety
    /// `slot` is valid for writes, and the lock stays at that address until
    /// `spin_free`.
    unsafe fn spin_init(slot: *mut Self::SpinLock);
    /// `NdisFreeSpinLock`.
    ///
    /// # Safety
    /// `lock` is valid; nobody holds it or will use it again.
    unsafe fn spin_free(lock: *mut Self::SpinLock);
    /// `NdisAcquireSpinLock`: raise to DISPATCH, save the old IRQL, acquire.
    ///
    /// # Safety
    /// `lock` is valid and stays at its address until the matching release.
    unsafe fn spin_acquire(lock: *mut Self::SpinLock);
    /// `NdisReleaseSpinLock`: release, restore the saved IRQL.
    ///
    /// # Safety
    /// Pairs with a `spin_acquire` by this processor.
    unsafe fn spin_release(lock: *mut Self::SpinLock);
    /// `NdisDprAcquireSpinLock`: acquire at DISPATCH.
    ///
    /// # Safety
    /// As `spin_acquire`; the IRQL is DISPATCH.
    unsafe fn spin_acquire_dpr(lock: *mut Self::SpinLock);
    /// `NdisDprReleaseSpinLock`.
    ///
    /// # Safety
    /// Pairs with a `spin_acquire_dpr` by this processor.
    unsafe fn spin_release_dpr(lock: *mut Self::SpinLock);

    /// `NdisAllocateRWLock`; null on failure.
    ///
    /// # Safety
    /// `handle` is null (Windows 8 and later) or a handle NDIS accepts.
    unsafe fn rw_allocate(handle: ndis_sys::NDIS_HANDLE) -> *mut Self::RwLock;
    /// `NdisFreeRWLock`.
    ///
    /// # Safety
    /// `lock` came from `rw_allocate`, nobody holds it, nobody uses it again.
    unsafe fn rw_free(lock: *mut Self::RwLock);
    /// `NdisAcquireRWLockRead`.
    ///
    /// # Safety
    /// `lock` is live; `state` stays at its address until `rw_release`.
    unsafe fn rw_acquire_read(lock: *mut Self::RwLock, state: *mut LOCK_STATE_EX, flags: u32);
    /// `NdisAcquireRWLockWrite`.
    ///
    /// # Safety
    /// As `rw_acquire_read`.
    unsafe fn rw_acquire_write(lock: *mut Self::RwLock, state: *mut LOCK_STATE_EX, flags: u32);
    /// `NdisReleaseRWLock`.
    ///
    /// # Safety
    /// `state` is the one passed to the matching acquire, on this processor.
    unsafe fn rw_release(lock: *mut Self::RwLock, state: *mut LOCK_STATE_EX);

    /// `ExInitializeRundownProtection` at the reference's final address.
    ///
    /// # Safety
    /// `slot` is valid for writes, and the reference stays at that address
    /// until `rundown_free`.
    unsafe fn rundown_init(slot: *mut Self::Rundown);
    /// `ExAcquireRundownProtection`.
    ///
    /// # Safety
    /// `rundown` is valid and initialized.
    unsafe fn rundown_acquire(rundown: *mut Self::Rundown) -> bool;
    /// `ExReleaseRundownProtection`.
    ///
    /// # Safety
    /// Pairs with a successful `rundown_acquire`.
    unsafe fn rundown_release(rundown: *mut Self::Rundown);
    /// `ExWaitForRundownProtectionRelease` then `ExRundownCompleted`.
    ///
    /// # Safety
    /// `rundown` is valid; only one caller at a time; IRQL <= APC.
    unsafe fn rundown_wait(rundown: *mut Self::Rundown);
    /// `ExReInitializeRundownProtection`.
    ///
    /// # Safety
    /// A `rundown_wait` has completed and nobody else uses `rundown`.
    unsafe fn rundown_reinitialize(rundown: *mut Self::Rundown);
    /// Called when the wrapper is dropped (nothing to call in the kernel).
    ///
    /// # Safety
    /// `rundown` is valid and never used again.
    unsafe fn rundown_free(rundown: *mut Self::Rundown);

    /// Checks the IRQL a token is forged at (host model only).
    fn check_token_irql(token: TokenIrql);
    /// Checks that a callback's token is made with no lock held (host model only).
    fn check_callback_entry();
}

/// Which token is being forged, for [`Backend::check_token_irql`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum TokenIrql {
    /// `Passive::new_unchecked`.
    Passive,
    /// `Dispatch::new_unchecked`.
    Dispatch,
    /// `MaybeDispatch::new_unchecked`.
    AtMostDispatch,
}

/// The backend this build uses.
#[cfg(target_os = "windows")]
pub(crate) type Active = crate::kernel::Kernel;
/// The backend this build uses.
#[cfg(not(target_os = "windows"))]
pub(crate) type Active = crate::host::Host;

/// Shorthand for the active backend's callback-entry check.
#[track_caller]
pub(crate) fn check_callback_entry() {
    <Active as Backend>::check_callback_entry();
}

/// Shorthand for the active backend's token check.
pub(crate) fn check_token_irql(token: TokenIrql) {
    <Active as Backend>::check_token_irql(token);
}
