//! NDIS spin locks, NDIS read/write locks and executive rundown protection.

#[cfg(target_os = "windows")]
use crate::kernel::NDIS_HANDLE;
use crate::kernel::{EX_RUNDOWN_REF, KIRQL, KSPIN_LOCK};

/// `NDIS_SPIN_LOCK`: a `KSPIN_LOCK` plus the IRQL saved by `NdisAcquireSpinLock`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct NDIS_SPIN_LOCK {
    /// The executive spin lock.
    pub SpinLock: KSPIN_LOCK,
    /// IRQL to restore when the lock is released with `NdisReleaseSpinLock`.
    pub OldIrql: KIRQL,
}

/// `LOCK_STATE_EX`: per-acquisition state of an `NDIS_RW_LOCK_EX`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct LOCK_STATE_EX {
    /// IRQL to restore at release.
    pub OldIrql: KIRQL,
    /// How the lock is held (read or write).
    pub LockState: KIRQL,
    /// The flags passed at acquisition.
    pub Flags: KIRQL,
}

/// `NDIS_RW_LOCK_EX`: opaque; allocated by `NdisAllocateRWLock`, only ever
/// handled through a pointer.
#[repr(C)]
pub struct NDIS_RW_LOCK_EX {
    _opaque: [u8; 0],
}

/// `NDIS_RWL_AT_DISPATCH_LEVEL`: the caller is already at DISPATCH_LEVEL.
pub const NDIS_RWL_AT_DISPATCH_LEVEL: u32 = 0x1;

// Layouts, x64. Source: public WDK 10 headers (km/ndis.h) compiled with clang
// --target=x86_64-pc-windows-msvc -DNDIS630=1 -DNDIS_WDM=1, sizeof/offsetof.
const _: () = {
    assert!(core::mem::size_of::<NDIS_SPIN_LOCK>() == 16);
    assert!(core::mem::offset_of!(NDIS_SPIN_LOCK, SpinLock) == 0);
    assert!(core::mem::offset_of!(NDIS_SPIN_LOCK, OldIrql) == 8);
    assert!(core::mem::size_of::<LOCK_STATE_EX>() == 3);
    assert!(core::mem::offset_of!(LOCK_STATE_EX, OldIrql) == 0);
    assert!(core::mem::offset_of!(LOCK_STATE_EX, LockState) == 1);
    assert!(core::mem::offset_of!(LOCK_STATE_EX, Flags) == 2);
    assert!(core::mem::size_of::<EX_RUNDOWN_REF>() == 8);
};

#[cfg(target_os = "windows")]
#[link(name = "ndis.sys", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" {
    /// Initializes an NDIS_SPIN_LOCK (any IRQL).
    pub fn NdisAllocateSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
    /// Releases resources of an NDIS_SPIN_LOCK (any IRQL).
    pub fn NdisFreeSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
    /// Raises to DISPATCH_LEVEL, saves the old IRQL in the lock, acquires (<= DISPATCH).
    pub fn NdisAcquireSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
    /// Releases and restores the IRQL saved in the lock (DISPATCH).
    pub fn NdisReleaseSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
    /// Acquires without changing IRQL (DISPATCH only).
    pub fn NdisDprAcquireSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
    /// Releases without changing IRQL (DISPATCH only).
    pub fn NdisDprReleaseSpinLock(SpinLock: *mut NDIS_SPIN_LOCK);
    /// Allocates an NDIS_RW_LOCK_EX; NULL on failure (<= DISPATCH).
    pub fn NdisAllocateRWLock(NdisHandle: NDIS_HANDLE) -> *mut NDIS_RW_LOCK_EX;
    /// Frees an unheld NDIS_RW_LOCK_EX (<= DISPATCH).
    pub fn NdisFreeRWLock(Lock: *mut NDIS_RW_LOCK_EX);
    /// Acquires for reading, raising to DISPATCH (<= DISPATCH).
    pub fn NdisAcquireRWLockRead(Lock: *mut NDIS_RW_LOCK_EX, LockState: *mut LOCK_STATE_EX, Flags: u32);
    /// Acquires for writing, raising to DISPATCH (<= DISPATCH).
    pub fn NdisAcquireRWLockWrite(Lock: *mut NDIS_RW_LOCK_EX, LockState: *mut LOCK_STATE_EX, Flags: u32);
    /// Releases a read or write acquisition, restoring LockState.OldIrql (DISPATCH).
    pub fn NdisReleaseRWLock(Lock: *mut NDIS_RW_LOCK_EX, LockState: *mut LOCK_STATE_EX);
}

#[cfg(target_os = "windows")]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" {
    /// Initializes a rundown reference (<= APC).
    pub fn ExInitializeRundownProtection(RunRef: *mut EX_RUNDOWN_REF);
    /// Re-arms a rundown reference after a completed rundown (<= APC).
    pub fn ExReInitializeRundownProtection(RunRef: *mut EX_RUNDOWN_REF);
    /// Acquires rundown protection; FALSE (0) once rundown has begun (<= DISPATCH).
    pub fn ExAcquireRundownProtection(RunRef: *mut EX_RUNDOWN_REF) -> u8;
    /// Acquires `Count` references at once (<= DISPATCH).
    pub fn ExAcquireRundownProtectionEx(RunRef: *mut EX_RUNDOWN_REF, Count: u32) -> u8;
    /// Releases one reference (<= DISPATCH).
    pub fn ExReleaseRundownProtection(RunRef: *mut EX_RUNDOWN_REF);
    /// Releases `Count` references at once (<= DISPATCH).
    pub fn ExReleaseRundownProtectionEx(RunRef: *mut EX_RUNDOWN_REF, Count: u32);
    /// Blocks new acquisitions and waits for every holder to release (<= APC).
    pub fn ExWaitForRundownProtectionRelease(RunRef: *mut EX_RUNDOWN_REF);
    /// Marks a rundown as completed (<= APC).
    pub fn ExRundownCompleted(RunRef: *mut EX_RUNDOWN_REF);
    /// Tries to acquire a KSPIN_LOCK at DISPATCH; nonzero on success.
    pub fn KeTryToAcquireSpinLockAtDpcLevel(SpinLock: *mut KSPIN_LOCK) -> u8;
    /// Releases a KSPIN_LOCK at DISPATCH.
    pub fn KeReleaseSpinLockFromDpcLevel(SpinLock: *mut KSPIN_LOCK);
}
