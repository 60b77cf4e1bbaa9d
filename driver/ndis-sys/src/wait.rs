//! Executive fast mutexes, kernel mutex objects and kernel semaphores (dispatcher objects a thread
//! waits on, as opposed to the spin locks of [`crate::sync`]).
//!
//! The types come from `windows-sys` (generated from Microsoft's metadata);
//! the functions are declared here against `ntoskrnl.exe`, which exports them
//! on x64 (`ExAcquireFastMutex` lives in `hal.dll` only on x86).
//! `ExInitializeFastMutex` is a `FORCEINLINE` function in `wdm.h`, not an
//! export: [`ExInitializeFastMutex`] below does what it does.

use crate::kernel::NTSTATUS;
pub use windows_sys::Wdk::Foundation::{DISPATCHER_HEADER, FAST_MUTEX, KEVENT, KMUTANT};
pub use windows_sys::Wdk::System::SystemServices::KSEMAPHORE;

/// `KMUTEX` (wdm.h: another name of `KMUTANT`): a kernel mutex object.
pub type KMUTEX = KMUTANT;
/// `STATUS_MUTANT_NOT_OWNED` (ntstatus.h): raised as an exception by
/// `KeReleaseMutex` called by a thread that does not own the mutex.
pub const STATUS_MUTANT_NOT_OWNED: NTSTATUS = 0xC000_0046_u32 as i32;

/// `FM_LOCK_BIT` (wdm.h): set in `FAST_MUTEX::Count` while the mutex is free.
pub const FM_LOCK_BIT: i32 = 0x1;
/// `SynchronizationEvent` (`EVENT_TYPE`, wdm.h).
pub const SynchronizationEvent: i32 = 1;
/// `Executive` (`KWAIT_REASON`, wdm.h): the wait reason drivers pass.
pub const Executive: i32 = 0;
/// `SEMAPHORE_INCREMENT` (wdm.h): priority boost for `KeReleaseSemaphore`.
pub const SEMAPHORE_INCREMENT: i32 = 1;
/// `STATUS_TIMEOUT` (ntstatus.h): a wait ended by its timeout.
pub const STATUS_TIMEOUT: NTSTATUS = 0x0000_0102;
/// `STATUS_SEMAPHORE_LIMIT_EXCEEDED` (ntstatus.h): raised as an exception by
/// `KeReleaseSemaphore` when the release would pass the limit.
pub const STATUS_SEMAPHORE_LIMIT_EXCEEDED: NTSTATUS = 0xC000_0047_u32 as i32;

// Layouts, x64. Source: the field lists of wdm.h as Microsoft documents them
// (FAST_MUTEX { LONG Count; PVOID Owner; ULONG Contention; KEVENT Event;
// ULONG OldIrql; }, KEVENT { DISPATCHER_HEADER Header; }, KSEMAPHORE {
// DISPATCHER_HEADER Header; LONG Limit; }, DISPATCHER_HEADER 24 bytes) laid
// out with the x64 MSVC alignment rules (natural alignment: LONG 4, PVOID 8;
// DISPATCHER_HEADER is 24 bytes on x64). The types asserted are windows-sys's,
// generated from Microsoft's metadata, so the two sources must agree.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<DISPATCHER_HEADER>() == 24);
    assert!(size_of::<KEVENT>() == 24);
    assert!(size_of::<FAST_MUTEX>() == 56);
    assert!(offset_of!(FAST_MUTEX, Count) == 0);
    assert!(offset_of!(FAST_MUTEX, Owner) == 8);
    assert!(offset_of!(FAST_MUTEX, Contention) == 16);
    assert!(offset_of!(FAST_MUTEX, Event) == 24);
    assert!(offset_of!(FAST_MUTEX, OldIrql) == 48);
    // KMUTANT { DISPATCHER_HEADER Header; LIST_ENTRY MutantListEntry;
    // struct _KTHREAD *OwnerThread; union { UCHAR MutantFlags; ... };
    // UCHAR ApcDisable; } (wdm.h), same rules: 24 + 16 + 8 + 1 + 1, padded
    // to 8.
    assert!(size_of::<KMUTEX>() == 56);
    assert!(offset_of!(KMUTEX, Header) == 0);
    assert!(offset_of!(KMUTEX, MutantListEntry) == 24);
    assert!(offset_of!(KMUTEX, OwnerThread) == 40);
    assert!(offset_of!(KMUTEX, ApcDisable) == 49);
    assert!(size_of::<KSEMAPHORE>() == 32);
    assert!(offset_of!(KSEMAPHORE, Header) == 0);
    assert!(offset_of!(KSEMAPHORE, Limit) == 24);
};

/// `ExInitializeFastMutex` (an inline function in wdm.h, not an export):
/// marks the mutex free and initialises its event (<= DISPATCH).
///
/// # Safety
///
/// `FastMutex` is valid, writable, not in use, and stays at this address for
/// as long as it is used: the kernel links waiters to its event.
#[cfg(target_os = "windows")]
pub unsafe fn ExInitializeFastMutex(FastMutex: *mut FAST_MUTEX) {
    // SAFETY: the caller guarantees a valid, unused FAST_MUTEX.
    unsafe {
        (&raw mut (*FastMutex).Count).write_volatile(FM_LOCK_BIT);
        (*FastMutex).Owner = core::ptr::null_mut();
        (*FastMutex).Contention = 0;
        KeInitializeEvent(&raw mut (*FastMutex).Event, SynchronizationEvent, 0);
    }
}

#[cfg(target_os = "windows")]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" {
    /// Initialises an event object (<= DISPATCH).
    pub fn KeInitializeEvent(Event: *mut KEVENT, Type: i32, State: u8);
    /// Raises to APC_LEVEL and acquires the fast mutex, waiting if needed;
    /// not recursive (<= APC).
    pub fn ExAcquireFastMutex(FastMutex: *mut FAST_MUTEX);
    /// Releases a fast mutex this thread owns, restoring the saved IRQL (APC).
    pub fn ExReleaseFastMutex(FastMutex: *mut FAST_MUTEX);
    /// Initialises a mutex object, signalled (free); `Level` must be 0
    /// (<= DISPATCH).
    pub fn KeInitializeMutex(Mutex: *mut KMUTEX, Level: u32);
    /// Releases a mutex object this thread owns (acquired with
    /// `KeWaitForSingleObject`), re-enabling normal kernel APCs; returns the
    /// previous state. Raises `STATUS_MUTANT_NOT_OWNED` for a thread that does
    /// not own it (<= DISPATCH).
    pub fn KeReleaseMutex(Mutex: *mut KMUTEX, Wait: u8) -> i32;
    /// Initialises a semaphore with a count and a limit (any IRQL).
    pub fn KeInitializeSemaphore(Semaphore: *mut KSEMAPHORE, Count: i32, Limit: i32);
    /// Releases `Adjustment` permits; returns the previous count; raises
    /// `STATUS_SEMAPHORE_LIMIT_EXCEEDED` past the limit (<= DISPATCH).
    pub fn KeReleaseSemaphore(Semaphore: *mut KSEMAPHORE, Increment: i32, Adjustment: i32, Wait: u8) -> i32;
    /// Waits for a dispatcher object: `Timeout` NULL waits forever, a
    /// negative value is relative in 100 ns units; `STATUS_TIMEOUT` when it
    /// expires. <= APC, or DISPATCH with a zero timeout.
    pub fn KeWaitForSingleObject(
        Object: *mut core::ffi::c_void,
        WaitReason: i32,
        WaitMode: i8,
        Alertable: u8,
        Timeout: *mut i64,
    ) -> NTSTATUS;
}
