//! The same sequences as `wait_raw.rs`, through `ndis-sync`'s `Mutex`,
//! `PassiveMutex` and `Semaphore`.
#![allow(clippy::missing_safety_doc)] // exports: the contract is each function's doc

use core::time::Duration;
use ndis_sync::{Mutex, Passive, PassiveMutex, Semaphore};

/// Lock, increment, unlock (`ExAcquireFastMutex` / `ExReleaseFastMutex`).
///
/// # Safety
/// `s` was initialised in place; IRQL == PASSIVE_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn guard_mutex(s: &Mutex<u64>) {
    // SAFETY: the caller's contract.
    let mut irql = unsafe { Passive::new_unchecked() };
    *s.lock(&mut irql) += 1;
}

/// A permit with a 1 ms timeout; on success read `value`, then release.
///
/// # Safety
/// `s` was initialised in place; IRQL == PASSIVE_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn guard_semaphore(s: &Semaphore, value: &u64) -> u64 {
    // SAFETY: the caller's contract.
    let irql = unsafe { Passive::new_unchecked() };
    s.acquire(&irql, Duration::from_millis(1)).map_or(0, |_permit| *value)
}

/// Lock, increment, unlock (`KeWaitForSingleObject` / `KeReleaseMutex`).
///
/// # Safety
/// `s` was initialised in place; IRQL == PASSIVE_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn guard_passive_mutex(s: &PassiveMutex<u64>) {
    // SAFETY: the caller's contract.
    let mut irql = unsafe { Passive::new_unchecked() };
    *s.lock(&mut irql) += 1;
}
