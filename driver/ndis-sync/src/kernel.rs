//! The kernel backend: straight calls to the functions ndis.sys and
//! ntoskrnl.exe export (declared in `ndis-sys`).

use crate::backend::{Backend, TokenIrql};
use ndis_sys::{EX_RUNDOWN_REF, LOCK_STATE_EX, NDIS_HANDLE, NDIS_RW_LOCK_EX, NDIS_SPIN_LOCK};

/// The real NDIS and executive primitives.
pub(crate) struct Kernel;

impl Backend for Kernel {
    type SpinLock = NDIS_SPIN_LOCK;
    type RwLock = NDIS_RW_LOCK_EX;
    type Rundown = EX_RUNDOWN_REF;

    unsafe fn spin_init(slot: *mut NDIS_SPIN_LOCK) {
        // SAFETY: the caller guarantees `slot` is writable and is where the
        // lock stays until NdisFreeSpinLock: NdisAllocateSpinLock runs on
        // the lock's final address, which is what identifies it.
        unsafe {
            slot.write(NDIS_SPIN_LOCK::default());
            ndis_sys::NdisAllocateSpinLock(slot);
        }
    }

    unsafe fn spin_free(lock: *mut NDIS_SPIN_LOCK) {
        // SAFETY: the caller guarantees the lock is valid and unheld.
        unsafe { ndis_sys::NdisFreeSpinLock(lock) }
    }

    unsafe fn spin_acquire(lock: *mut NDIS_SPIN_LOCK) {
        // SAFETY: the caller guarantees validity and a fixed address until release.
        unsafe { ndis_sys::NdisAcquireSpinLock(lock) }
    }

    unsafe fn spin_release(lock: *mut NDIS_SPIN_LOCK) {
        // SAFETY: the caller pairs this with its NdisAcquireSpinLock.
        unsafe { ndis_sys::NdisReleaseSpinLock(lock) }
    }

    unsafe fn spin_acquire_dpr(lock: *mut NDIS_SPIN_LOCK) {
        // SAFETY: the caller guarantees validity and DISPATCH_LEVEL.
        unsafe { ndis_sys::NdisDprAcquireSpinLock(lock) }
    }

    unsafe fn spin_release_dpr(lock: *mut NDIS_SPIN_LOCK) {
        // SAFETY: the caller pairs this with its NdisDprAcquireSpinLock.
        unsafe { ndis_sys::NdisDprReleaseSpinLock(lock) }
    }

    unsafe fn rw_allocate(handle: NDIS_HANDLE) -> *mut NDIS_RW_LOCK_EX {
        // SAFETY: the caller guarantees the handle is acceptable to NDIS.
        unsafe { ndis_sys::NdisAllocateRWLock(handle) }
    }

    unsafe fn rw_free(lock: *mut NDIS_RW_LOCK_EX) {
        // SAFETY: the caller guarantees the lock is live and unheld.
        unsafe { ndis_sys::NdisFreeRWLock(lock) }
    }

    unsafe fn rw_acquire_read(lock: *mut NDIS_RW_LOCK_EX, state: *mut LOCK_STATE_EX, flags: u32) {
        // SAFETY: the caller guarantees a live lock and a state that stays put.
        unsafe { ndis_sys::NdisAcquireRWLockRead(lock, state, flags) }
    }

    unsafe fn rw_acquire_write(lock: *mut NDIS_RW_LOCK_EX, state: *mut LOCK_STATE_EX, flags: u32) {
        // SAFETY: the caller guarantees a live lock and a state that stays put.
        unsafe { ndis_sys::NdisAcquireRWLockWrite(lock, state, flags) }
    }

    unsafe fn rw_release(lock: *mut NDIS_RW_LOCK_EX, state: *mut LOCK_STATE_EX) {
        // SAFETY: the caller passes the state of the matching acquire.
        unsafe { ndis_sys::NdisReleaseRWLock(lock, state) }
    }

    unsafe fn rundown_init(slot: *mut EX_RUNDOWN_REF) {
        // SAFETY: the caller guarantees `slot` is writable and is where the
        // reference stays until it is dropped; ExInitializeRundownProtection
        // runs on that final address. All-zero is a valid EX_RUNDOWN_REF (a
        // union of integers and a pointer), written first so the slot holds
        // a valid value before the call.
        unsafe {
            slot.write(core::mem::zeroed());
            ndis_sys::ExInitializeRundownProtection(slot);
        }
    }

    unsafe fn rundown_acquire(rundown: *mut EX_RUNDOWN_REF) -> bool {
        // SAFETY: the caller guarantees an initialized reference.
        unsafe { ndis_sys::ExAcquireRundownProtection(rundown) != 0 }
    }

    unsafe fn rundown_release(rundown: *mut EX_RUNDOWN_REF) {
        // SAFETY: the caller pairs this with a successful acquire.
        unsafe { ndis_sys::ExReleaseRundownProtection(rundown) }
    }

    unsafe fn rundown_wait(rundown: *mut EX_RUNDOWN_REF) {
        // SAFETY: the caller guarantees a single waiter at IRQL <= APC. The
        // wait block lives on this stack frame and is only linked into the
        // reference until the wait returns; ExRundownCompleted then leaves
        // the reference holding no pointer to this stack frame.
        unsafe {
            ndis_sys::ExWaitForRundownProtectionRelease(rundown);
            ndis_sys::ExRundownCompleted(rundown);
        }
    }

    unsafe fn rundown_reinitialize(rundown: *mut EX_RUNDOWN_REF) {
        // SAFETY: the caller guarantees a completed run-down and exclusivity.
        unsafe { ndis_sys::ExReInitializeRundownProtection(rundown) }
    }

    unsafe fn rundown_free(_rundown: *mut EX_RUNDOWN_REF) {}

    fn check_token_irql(_token: TokenIrql) {}

    fn check_callback_entry() {}
}
