//! Kernel functions the driver imports (besides the lock and rundown ones in
//! [`crate::sync`]), declared against the module that exports them on x64.
//!
//! Only compiled for Windows targets: on the host the harness provides the
//! same entry points itself. Signatures follow ndis.h / wdm.h; pointers to
//! structures NDIS only reads are `*const` (same ABI as C's non-const
//! pointers). `tests/imports.rs` checks every name declared here against the
//! x64 import libraries of ndis.sys and ntoskrnl.exe.

#[cfg(target_os = "windows")]
use core::ffi::c_void;

#[cfg(target_os = "windows")]
use crate::{
    device::NDIS_DEVICE_OBJECT_ATTRIBUTES,
    filter::{NDIS_FILTER_ATTRIBUTES, NDIS_FILTER_DRIVER_CHARACTERISTICS, NDIS_STATUS_INDICATION},
    kernel::{DEVICE_OBJECT, DRIVER_OBJECT, IRP, NDIS_HANDLE, NDIS_STATUS, POOL_FLAGS, PROCESSOR_NUMBER},
    nbl::{NET_BUFFER, NET_BUFFER_LIST},
    net::NDIS_PORT_NUMBER,
};

/// `EX_POOL_PRIORITY` for `NdisAllocateMemoryWithTagPriority`.
pub type EX_POOL_PRIORITY = i32;
/// `NormalPoolPriority`.
pub const NormalPoolPriority: EX_POOL_PRIORITY = 16;

#[cfg(target_os = "windows")]
#[link(name = "ndis.sys", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" {
    /// Registers the filter driver; NDIS calls `FilterSetOptions` (and may
    /// start attaching) before this returns (PASSIVE).
    pub fn NdisFRegisterFilterDriver(
        DriverObject: *mut DRIVER_OBJECT,
        FilterDriverContext: NDIS_HANDLE,
        FilterDriverCharacteristics: *const NDIS_FILTER_DRIVER_CHARACTERISTICS,
        NdisFilterDriverHandle: *mut NDIS_HANDLE,
    ) -> NDIS_STATUS;
    /// Detaches every module, then deregisters the filter driver (PASSIVE).
    pub fn NdisFDeregisterFilterDriver(NdisFilterDriverHandle: NDIS_HANDLE);
    /// Sets the module context, from `FilterAttach` only (PASSIVE).
    pub fn NdisFSetAttributes(
        NdisFilterHandle: NDIS_HANDLE,
        FilterModuleContext: NDIS_HANDLE,
        FilterAttributes: *const NDIS_FILTER_ATTRIBUTES,
    ) -> NDIS_STATUS;
    /// Passes a chain of NBLs down; the chain is NDIS's until
    /// `FilterSendNetBufferListsComplete` (<= DISPATCH).
    pub fn NdisFSendNetBufferLists(
        NdisFilterHandle: NDIS_HANDLE,
        NetBufferList: *mut NET_BUFFER_LIST,
        PortNumber: NDIS_PORT_NUMBER,
        SendFlags: u32,
    );
    /// Completes sends that came from above back up (<= DISPATCH).
    pub fn NdisFSendNetBufferListsComplete(
        NdisFilterHandle: NDIS_HANDLE,
        NetBufferList: *mut NET_BUFFER_LIST,
        SendCompleteFlags: u32,
    );
    /// Indicates received NBLs up (<= DISPATCH).
    pub fn NdisFIndicateReceiveNetBufferLists(
        NdisFilterHandle: NDIS_HANDLE,
        NetBufferLists: *mut NET_BUFFER_LIST,
        PortNumber: NDIS_PORT_NUMBER,
        NumberOfNetBufferLists: u32,
        ReceiveFlags: u32,
    );
    /// Returns received NBLs down to their indicator (<= DISPATCH).
    pub fn NdisFReturnNetBufferLists(
        NdisFilterHandle: NDIS_HANDLE,
        NetBufferLists: *mut NET_BUFFER_LIST,
        ReturnFlags: u32,
    );
    /// Indicates a status up (<= DISPATCH).
    pub fn NdisFIndicateStatus(NdisFilterHandle: NDIS_HANDLE, StatusIndication: *const NDIS_STATUS_INDICATION);
    /// Completes a pause that `FilterPause` returned PENDING for (<= DISPATCH).
    pub fn NdisFPauseComplete(NdisFilterHandle: NDIS_HANDLE);
    /// Completes a restart that `FilterRestart` returned PENDING for (PASSIVE).
    pub fn NdisFRestartComplete(NdisFilterHandle: NDIS_HANDLE, Status: NDIS_STATUS);
    /// A pointer to `BytesNeeded` contiguous bytes at the NB's data start:
    /// into the MDL if contiguous there, else copied into `Storage` (if not
    /// NULL); NULL if neither (<= DISPATCH).
    pub fn NdisGetDataBuffer(
        NetBuffer: *mut NET_BUFFER,
        BytesNeeded: u32,
        Storage: *mut c_void,
        AlignMultiple: u32,
        AlignOffset: u32,
    ) -> *mut c_void;
    /// Creates a control device and its symbolic link (PASSIVE).
    pub fn NdisRegisterDeviceEx(
        NdisHandle: NDIS_HANDLE,
        DeviceObjectAttributes: *const NDIS_DEVICE_OBJECT_ATTRIBUTES,
        pDeviceObject: *mut *mut DEVICE_OBJECT,
        NdisDeviceHandle: *mut NDIS_HANDLE,
    ) -> NDIS_STATUS;
    /// Deletes a device made by `NdisRegisterDeviceEx` (PASSIVE).
    pub fn NdisDeregisterDeviceEx(NdisDeviceHandle: NDIS_HANDLE);
    /// The `ExtensionSize` bytes reserved for the driver in an NDIS device
    /// (any IRQL). Never use `DeviceObject->DeviceExtension` instead.
    pub fn NdisGetDeviceReservedExtension(DeviceObject: *mut DEVICE_OBJECT) -> *mut c_void;
    /// Allocates non-paged memory with a tag; NULL on failure (<= DISPATCH).
    pub fn NdisAllocateMemoryWithTagPriority(
        NdisHandle: NDIS_HANDLE,
        Length: u32,
        Tag: u32,
        Priority: EX_POOL_PRIORITY,
    ) -> *mut c_void;
    /// Frees memory from `NdisAllocateMemoryWithTagPriority` (Length and
    /// MemoryFlags 0) (<= DISPATCH).
    pub fn NdisFreeMemory(VirtualAddress: *mut c_void, Length: u32, MemoryFlags: u32);
}

#[cfg(target_os = "windows")]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" {
    /// Allocates pool memory (zeroed unless `POOL_FLAG_UNINITIALIZED`); NULL on
    /// failure (<= DISPATCH for non-paged). Windows 10 2004 and later.
    pub fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: usize, Tag: u32) -> *mut c_void;
    /// Frees pool memory allocated with the same tag (<= DISPATCH).
    pub fn ExFreePoolWithTag(P: *mut c_void, Tag: u32);
    /// `IoCompleteRequest`: completes an IRP (<= DISPATCH). The IRP must not
    /// be touched afterwards.
    pub fn IofCompleteRequest(Irp: *mut IRP, PriorityBoost: i8);
    /// Releases the cancel spin lock, lowering to `Irql`; a cancel routine
    /// calls it with `Irp->CancelIrql` (DISPATCH_LEVEL).
    pub fn IoReleaseCancelSpinLock(Irql: u8);
    /// The current processor's system-wide index (any IRQL; stable only at
    /// DISPATCH_LEVEL and above); fills `ProcNumber` (group, number) unless
    /// it is NULL.
    pub fn KeGetCurrentProcessorNumberEx(ProcNumber: *mut PROCESSOR_NUMBER) -> u32;
    /// The most processors `GroupNumber` (or, with `ALL_PROCESSOR_GROUPS`,
    /// the system) can ever have, hot-added ones included (any IRQL).
    pub fn KeQueryMaximumProcessorCountEx(GroupNumber: u16) -> u32;
    /// Stops the system with a bug check; never returns.
    pub fn KeBugCheckEx(
        BugCheckCode: u32,
        BugCheckParameter1: usize,
        BugCheckParameter2: usize,
        BugCheckParameter3: usize,
        BugCheckParameter4: usize,
    ) -> !;
}

#[cfg(target_os = "windows")]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "C" {
    /// Prints to the kernel debugger if `ComponentId` / `Level` pass the
    /// debug filter. Variadic `cdecl` (on x64 the one calling convention).
    /// `%` directives must match the arguments; avoid `%C`/`%S`/`%wZ`/`%ws`
    /// above PASSIVE (they may page).
    pub fn DbgPrintEx(ComponentId: u32, Level: u32, Format: *const u8, ...) -> u32;
}

// KeQueryPerformanceCounter is a HAL routine: its reference page
// (learn.microsoft.com, wdm.h, KeQueryPerformanceCounter) names Hal.lib and
// Hal.dll, and mingw-w64's import libraries list it in hal, not ntoskrnl.
#[cfg(target_os = "windows")]
#[link(name = "hal.dll", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" {
    /// The performance counter (any IRQL); writes its frequency (ticks per
    /// second) to `PerformanceFrequency` when not NULL.
    pub fn KeQueryPerformanceCounter(PerformanceFrequency: *mut i64) -> i64;
}
