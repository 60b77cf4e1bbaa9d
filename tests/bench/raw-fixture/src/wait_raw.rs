//! The fast-mutex, mutex-object and semaphore sequences with raw FFI: what
//! `Mutex`, `PassiveMutex` and `Semaphore` must compile down to.
#![allow(clippy::missing_safety_doc)] // exports: the contract is each function's doc

use ndis_sys::*;

/// A `FAST_MUTEX` and the value it protects.
#[repr(C)]
pub struct RawMutex {
    mutex: FAST_MUTEX,
    value: u64,
}

/// `ExAcquireFastMutex`, increment, `ExReleaseFastMutex`.
///
/// # Safety
/// `s` points to an initialised `RawMutex`; IRQL <= APC_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn raw_mutex(s: *mut RawMutex) {
    // SAFETY: the caller's contract; the mutex stays put.
    unsafe {
        ExAcquireFastMutex(&raw mut (*s).mutex);
        (*s).value += 1;
        ExReleaseFastMutex(&raw mut (*s).mutex);
    }
}

/// `KeWaitForSingleObject` with a 1 ms relative timeout; on success read
/// `value`, then `KeReleaseSemaphore`; 0 on `STATUS_TIMEOUT`.
///
/// # Safety
/// `s` points to an initialised `KSEMAPHORE`, `value` to a `u64`; IRQL <=
/// APC_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn raw_semaphore(s: *mut KSEMAPHORE, value: *const u64) -> u64 {
    let mut timeout: i64 = -10_000;
    // SAFETY: the caller's contract; `timeout` lives on this frame.
    unsafe {
        if KeWaitForSingleObject(s.cast(), Executive, KernelMode, 0, &mut timeout) == STATUS_TIMEOUT {
            return 0;
        }
        let v = *value;
        KeReleaseSemaphore(s, SEMAPHORE_INCREMENT, 1, 0);
        v
    }
}

/// A `KMUTEX` and the value it protects.
#[repr(C)]
pub struct RawMutexObject {
    mutex: KMUTEX,
    value: u64,
}

/// `KeWaitForSingleObject` (no timeout), increment, `KeReleaseMutex`.
///
/// # Safety
/// `s` points to an initialised `RawMutexObject`; IRQL == PASSIVE_LEVEL.
#[no_mangle]
pub unsafe extern "system" fn raw_passive_mutex(s: *mut RawMutexObject) {
    // SAFETY: the caller's contract; the mutex stays put.
    unsafe {
        KeWaitForSingleObject((&raw mut (*s).mutex).cast(), Executive, KernelMode, 0, core::ptr::null_mut());
        (*s).value += 1;
        KeReleaseMutex(&raw mut (*s).mutex, 0);
    }
}
