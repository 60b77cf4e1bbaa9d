//! Controls for the guard-overhead check: raw sequences that add something
//! a guard must not add. Each must be rejected, or the check proves nothing.
#![allow(clippy::missing_safety_doc)] // exports: the contract is each function's doc

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use ndis_sys::*;

use crate::raw::RawSpin;

/// An RW lock, its value, a re-entry flag and a holder count.
#[repr(C)]
pub struct CheckedRw {
    lock: *mut NDIS_RW_LOCK_EX,
    value: u64,
    writing: AtomicBool,
    holders: AtomicU32,
}

/// `raw_spin` plus an overflow check that can panic: an added call on a
/// spin lock, which has no allowance for one.
///
/// # Safety
/// As `raw_spin`.
#[no_mangle]
pub unsafe extern "system" fn control_spin_checked(s: *mut RawSpin) {
    // SAFETY: the caller's contract; the lock stays put while held.
    unsafe {
        NdisAcquireSpinLock(&raw mut (*s).lock);
        (*s).value = (*s).value.checked_add(1).expect("counter overflow");
        NdisReleaseSpinLock(&raw mut (*s).lock);
    }
}

/// `raw_rw_read` plus the re-entry check and a holder count: every reader
/// writes the count (two locked updates), which the allowance forbids.
///
/// # Safety
/// `s` points to a `CheckedRw` with a live lock; IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn control_rw_read_counted(s: *const CheckedRw) -> u64 {
    let mut state = LOCK_STATE_EX::default();
    // SAFETY: the caller's contract; `state` stays at one address.
    unsafe {
        NdisAcquireRWLockRead((*s).lock, &mut state, 0);
        if (*s).writing.load(Ordering::Relaxed) {
            panic!("re-entered");
        }
        (*s).holders.fetch_add(1, Ordering::Relaxed);
        let value = (*s).value;
        (*s).holders.fetch_sub(1, Ordering::Relaxed);
        NdisReleaseRWLock((*s).lock, &mut state);
        value
    }
}

/// `raw_rw_read` with the re-entry check made twice (before and after the
/// read): a second panic branch, which the allowance forbids.
///
/// # Safety
/// As `control_rw_read_counted`.
#[no_mangle]
pub unsafe extern "system" fn control_rw_read_checked_twice(s: *const CheckedRw) -> u64 {
    let mut state = LOCK_STATE_EX::default();
    // SAFETY: the caller's contract; `state` stays at one address.
    unsafe {
        NdisAcquireRWLockRead((*s).lock, &mut state, 0);
        if (*s).writing.load(Ordering::Acquire) {
            panic!("re-entered");
        }
        let value = core::ptr::read_volatile(&raw const (*s).value);
        if (*s).writing.load(Ordering::Acquire) {
            panic!("re-entered after the read");
        }
        NdisReleaseRWLock((*s).lock, &mut state);
        value
    }
}
