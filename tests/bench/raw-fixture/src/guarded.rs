//! The same sequences as `raw.rs`, through the `ndis-sync` guards.
//!
//! Tokens are forged here because an export has no caller that proves its
//! IRQL; each function's contract states the IRQL instead.
#![allow(clippy::missing_safety_doc)] // exports: the contract is each function's doc

use ndis_sync::{Dispatch, MaybeDispatch, Rundown, RwLock, SpinLock};

/// Lock, increment, unlock (`NdisAcquireSpinLock` / `NdisReleaseSpinLock`).
///
/// # Safety
/// IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn guard_spin(s: &SpinLock<u64>) {
    // SAFETY: the caller's contract.
    let mut irql = unsafe { MaybeDispatch::new_unchecked() };
    *s.lock(&mut irql) += 1;
}

/// Lock at DISPATCH, increment, unlock (`NdisDpr*SpinLock`).
///
/// # Safety
/// IRQL == DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn guard_spin_dpr(s: &SpinLock<u64>) {
    // SAFETY: the caller's contract.
    let mut irql = unsafe { Dispatch::new_unchecked() };
    *s.lock_at_dispatch(&mut irql) += 1;
}

/// Outer lock, inner lock with the outer guard's token, add, release inner
/// then outer.
///
/// # Safety
/// IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn guard_spin_nested(outer: &SpinLock<u64>, inner: &SpinLock<u64>) {
    // SAFETY: the caller's contract.
    let mut irql = unsafe { MaybeDispatch::new_unchecked() };
    let mut a = outer.lock(&mut irql);
    let (a_value, dispatch) = a.split();
    let b = inner.lock_at_dispatch(dispatch);
    *a_value += *b;
}

/// Read under the read lock (flags 0).
///
/// # Safety
/// IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn guard_rw_read(s: &RwLock<u64>) -> u64 {
    // SAFETY: the caller's contract.
    let mut irql = unsafe { MaybeDispatch::new_unchecked() };
    s.read(&mut irql, |value, _| *value)
}

/// Read under the read lock at DISPATCH (`NDIS_RWL_AT_DISPATCH_LEVEL`).
///
/// # Safety
/// IRQL == DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn guard_rw_read_dispatch(s: &RwLock<u64>) -> u64 {
    // SAFETY: the caller's contract.
    let mut irql = unsafe { Dispatch::new_unchecked() };
    s.read_at_dispatch(&mut irql, |value, _| *value)
}

/// Increment under the write lock (flags 0).
///
/// # Safety
/// IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn guard_rw_write(s: &RwLock<u64>) {
    // SAFETY: the caller's contract.
    let mut irql = unsafe { MaybeDispatch::new_unchecked() };
    s.write(&mut irql, |value, _| *value += 1);
}

/// Read under rundown protection; 0 once run down.
///
/// # Safety
/// IRQL <= DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn guard_rundown(s: &Rundown<u64>) -> u64 {
    s.try_acquire().map_or(0, |value| *value)
}
