//! The lock sequences with raw FFI: what the guards must compile down to.
//!
//! Each export takes a pointer to a `#[repr(C)]` pair of a primitive and the
//! `u64` it protects, and does one acquire, one access, one release.
#![allow(clippy::missing_safety_doc)] // exports: the contract is each function's doc

use ndis_sys::*;

/// An `NDIS_SPIN_LOCK` and the value it protects.
#[repr(C)]
pub struct RawSpin {
    pub(crate) lock: NDIS_SPIN_LOCK,
    pub(crate) value: u64,
}

/// An `NDIS_RW_LOCK_EX` (from `NdisAllocateRWLock`) and the value it protects.
#[repr(C)]
pub struct RawRw {
    lock: *mut NDIS_RW_LOCK_EX,
    value: u64,
}

/// An `EX_RUNDOWN_REF` and the value it protects.
#[repr(C)]
pub struct RawRundown {
    rundown: EX_RUNDOWN_REF,
    value: u64,
}

/// `NdisAcquireSpinLock`, increment, `NdisReleaseSpinLock`.
///
/// # Safety
/// `s` points to an initialized `RawSpin`; IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn raw_spin(s: *mut RawSpin) {
    // SAFETY: the caller's contract; the lock stays put while held.
    unsafe {
        NdisAcquireSpinLock(&raw mut (*s).lock);
        (*s).value += 1;
        NdisReleaseSpinLock(&raw mut (*s).lock);
    }
}

/// `NdisDprAcquireSpinLock`, increment, `NdisDprReleaseSpinLock`.
///
/// # Safety
/// `s` points to an initialized `RawSpin`; IRQL == DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn raw_spin_dpr(s: *mut RawSpin) {
    // SAFETY: the caller's contract.
    unsafe {
        NdisDprAcquireSpinLock(&raw mut (*s).lock);
        (*s).value += 1;
        NdisDprReleaseSpinLock(&raw mut (*s).lock);
    }
}

/// Outer `NdisAcquireSpinLock`, inner `NdisDprAcquireSpinLock`, add the
/// inner value to the outer one, release inner then outer.
///
/// # Safety
/// Both point to initialized, distinct `RawSpin`s; IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn raw_spin_nested(outer: *mut RawSpin, inner: *mut RawSpin) {
    // SAFETY: the caller's contract; release order is the reverse.
    unsafe {
        NdisAcquireSpinLock(&raw mut (*outer).lock);
        NdisDprAcquireSpinLock(&raw mut (*inner).lock);
        (*outer).value += (*inner).value;
        NdisDprReleaseSpinLock(&raw mut (*inner).lock);
        NdisReleaseSpinLock(&raw mut (*outer).lock);
    }
}

/// `NdisAcquireRWLockRead` (flags 0), read, `NdisReleaseRWLock`.
///
/// # Safety
/// `s` points to a `RawRw` with a live lock; IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn raw_rw_read(s: *const RawRw) -> u64 {
    let mut state = LOCK_STATE_EX::default();
    // SAFETY: the caller's contract; `state` stays at one address.
    unsafe {
        NdisAcquireRWLockRead((*s).lock, &mut state, 0);
        let value = (*s).value;
        NdisReleaseRWLock((*s).lock, &mut state);
        value
    }
}

/// `NdisAcquireRWLockRead` (`NDIS_RWL_AT_DISPATCH_LEVEL`), read, release.
///
/// # Safety
/// `s` points to a `RawRw` with a live lock; IRQL == DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn raw_rw_read_dispatch(s: *const RawRw) -> u64 {
    let mut state = LOCK_STATE_EX::default();
    // SAFETY: the caller's contract; `state` stays at one address.
    unsafe {
        NdisAcquireRWLockRead((*s).lock, &mut state, NDIS_RWL_AT_DISPATCH_LEVEL);
        let value = (*s).value;
        NdisReleaseRWLock((*s).lock, &mut state);
        value
    }
}

/// `NdisAcquireRWLockWrite` (flags 0), increment, `NdisReleaseRWLock`.
///
/// # Safety
/// `s` points to a `RawRw` with a live lock; IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn raw_rw_write(s: *mut RawRw) {
    let mut state = LOCK_STATE_EX::default();
    // SAFETY: the caller's contract; `state` stays at one address.
    unsafe {
        NdisAcquireRWLockWrite((*s).lock, &mut state, 0);
        (*s).value += 1;
        NdisReleaseRWLock((*s).lock, &mut state);
    }
}

/// `ExAcquireRundownProtection`; if granted, read and
/// `ExReleaseRundownProtection`. Returns the value or 0.
///
/// # Safety
/// `s` points to an initialized `RawRundown`; IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn raw_rundown(s: *mut RawRundown) -> u64 {
    // SAFETY: the caller's contract.
    unsafe {
        if ExAcquireRundownProtection(&raw mut (*s).rundown) == 0 {
            return 0;
        }
        let value = (*s).value;
        ExReleaseRundownProtection(&raw mut (*s).rundown);
        value
    }
}
