//! Kernel base types re-exported from `windows-sys`, with x64 layout checks.

pub use windows_sys::Wdk::Foundation::{
    DEVICE_OBJECT, DRIVER_CANCEL, DRIVER_DISPATCH, DRIVER_OBJECT, DRIVER_UNLOAD, FILE_OBJECT, IO_SECURITY_CONTEXT,
    IO_STACK_LOCATION, IRP, MDL,
};
pub use windows_sys::Wdk::System::SystemServices::EX_RUNDOWN_REF;
pub use windows_sys::Win32::Foundation::{NTSTATUS, UNICODE_STRING};
pub use windows_sys::Win32::System::IO::IO_STATUS_BLOCK;

/// `MDL_MAPPED_TO_SYSTEM_VA` (wdm.h): `MappedSystemVa` maps the MDL's pages.
pub const MDL_MAPPED_TO_SYSTEM_VA: i16 = 0x0001;
/// `MDL_SOURCE_IS_NONPAGED_POOL` (wdm.h): the MDL describes nonpaged pool,
/// which `MappedSystemVa` addresses.
pub const MDL_SOURCE_IS_NONPAGED_POOL: i16 = 0x0004;

/// `ALL_PROCESSOR_GROUPS` (wdm.h): every processor group.
pub const ALL_PROCESSOR_GROUPS: u16 = 0xFFFF;

/// `PROCESSOR_NUMBER` (ntdef.h): a processor as (group, number in group).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PROCESSOR_NUMBER {
    /// The processor group.
    pub Group: u16,
    /// The processor within its group.
    pub Number: u8,
    /// Reserved.
    pub Reserved: u8,
}

/// `KIRQL`: an interrupt request level.
pub type KIRQL = u8;
/// `KSPIN_LOCK`: an executive spin lock (`ULONG_PTR`).
pub type KSPIN_LOCK = usize;
/// `NDIS_HANDLE`: an opaque handle NDIS hands out or takes.
pub type NDIS_HANDLE = *mut core::ffi::c_void;
/// `NDIS_STATUS`: NDIS's status code (an NTSTATUS on NDIS 6).
pub type NDIS_STATUS = i32;
/// `NDIS_STRING`: NDIS's name for a counted UTF-16 string.
pub type NDIS_STRING = UNICODE_STRING;
/// `POOL_FLAGS`: the `ULONG64` flags of `ExAllocatePool2`.
pub type POOL_FLAGS = u64;

/// `PASSIVE_LEVEL`.
pub const PASSIVE_LEVEL: KIRQL = 0;
/// `APC_LEVEL`.
pub const APC_LEVEL: KIRQL = 1;
/// `DISPATCH_LEVEL`.
pub const DISPATCH_LEVEL: KIRQL = 2;

/// `POOL_FLAG_NON_PAGED` (0x40): non-paged, non-executable pool.
///
/// Value from Microsoft's `POOL_FLAGS` documentation (wdm.h of WDK 10 2004
/// and later; the public WDK copy used for the layout checks predates it).
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0000_0000_0040;
/// `POOL_FLAG_UNINITIALIZED` (0x2): do not zero the allocation (documented
/// alongside [`POOL_FLAG_NON_PAGED`]). Without it `ExAllocatePool2` zeroes.
pub const POOL_FLAG_UNINITIALIZED: POOL_FLAGS = 0x0000_0000_0000_0002;

/// `DPFLTR_IHVNETWORK_ID`: the `DbgPrintEx` component for network drivers.
pub const DPFLTR_IHVNETWORK_ID: u32 = 80;
/// `DPFLTR_ERROR_LEVEL`: always shown by the debugger's default filter.
pub const DPFLTR_ERROR_LEVEL: u32 = 0;
/// `DPFLTR_WARNING_LEVEL`.
pub const DPFLTR_WARNING_LEVEL: u32 = 1;
/// `DPFLTR_TRACE_LEVEL`.
pub const DPFLTR_TRACE_LEVEL: u32 = 2;
/// `DPFLTR_INFO_LEVEL`.
pub const DPFLTR_INFO_LEVEL: u32 = 3;

/// `sizeof(DEVICE_OBJECT)` in wdm.h on x64 (windows-sys's struct is 8 bytes
/// shorter, see the layout checks): what an allocator of device objects
/// must provide, 16-byte aligned.
pub const SIZEOF_DEVICE_OBJECT_WDM: usize = 336;

// The windows-sys kernel types are generated, not hand-written, but the
// driver and the harness both rely on these offsets, so they are checked too.
// Source: public WDK 10 km/wdm.h (copy of MuAlphaOmegaEpsilon/wdk-10),
// clang --target=x86_64-pc-windows-msvc -DNDIS630=1 -DNDIS_WDM=1 -D_AMD64_,
// sizeof/offsetof (nested offsetof for union members).
const _: () = {
    use core::mem::{offset_of, size_of};

    assert!(size_of::<UNICODE_STRING>() == 16);
    assert!(offset_of!(UNICODE_STRING, Length) == 0);
    assert!(offset_of!(UNICODE_STRING, MaximumLength) == 2);
    assert!(offset_of!(UNICODE_STRING, Buffer) == 8);

    assert!(size_of::<EX_RUNDOWN_REF>() == 8);
    assert!(core::mem::align_of::<EX_RUNDOWN_REF>() == 8);

    assert!(size_of::<PROCESSOR_NUMBER>() == 4);
    assert!(offset_of!(PROCESSOR_NUMBER, Number) == 2);

    assert!(size_of::<MDL>() == 48);
    assert!(offset_of!(MDL, Next) == 0);
    assert!(offset_of!(MDL, Size) == 8);
    assert!(offset_of!(MDL, MdlFlags) == 10);
    assert!(offset_of!(MDL, Process) == 16);
    assert!(offset_of!(MDL, MappedSystemVa) == 24);
    assert!(offset_of!(MDL, StartVa) == 32);
    assert!(offset_of!(MDL, ByteCount) == 40);
    assert!(offset_of!(MDL, ByteOffset) == 44);

    assert!(size_of::<IO_STATUS_BLOCK>() == 16);
    assert!(offset_of!(IO_STATUS_BLOCK, Anonymous.Status) == 0);
    assert!(offset_of!(IO_STATUS_BLOCK, Information) == 8);

    assert!(size_of::<IRP>() == 208);
    assert!(offset_of!(IRP, MdlAddress) == 8);
    assert!(offset_of!(IRP, AssociatedIrp.SystemBuffer) == 24);
    assert!(offset_of!(IRP, IoStatus) == 48);
    assert!(offset_of!(IRP, IoStatus.Anonymous.Status) == 48);
    assert!(offset_of!(IRP, IoStatus.Information) == 56);
    assert!(offset_of!(IRP, RequestorMode) == 64);
    assert!(offset_of!(IRP, PendingReturned) == 65);
    assert!(offset_of!(IRP, StackCount) == 66);
    assert!(offset_of!(IRP, CurrentLocation) == 67);
    assert!(offset_of!(IRP, Cancel) == 68);
    assert!(offset_of!(IRP, CancelIrql) == 69);
    assert!(offset_of!(IRP, CancelRoutine) == 104);
    assert!(offset_of!(IRP, UserBuffer) == 112);
    assert!(offset_of!(IRP, Tail) == 120);
    assert!(offset_of!(IRP, Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation) == 184);
    assert!(offset_of!(IRP, Tail.Overlay.OriginalFileObject) == 192);

    assert!(size_of::<IO_STACK_LOCATION>() == 72);
    assert!(offset_of!(IRP, Type) == 0);
    assert!(offset_of!(IRP, Size) == 2);

    assert!(size_of::<IO_SECURITY_CONTEXT>() == 24);
    assert!(offset_of!(IO_SECURITY_CONTEXT, SecurityQos) == 0);
    assert!(offset_of!(IO_SECURITY_CONTEXT, AccessState) == 8);
    assert!(offset_of!(IO_SECURITY_CONTEXT, DesiredAccess) == 16);
    assert!(offset_of!(IO_SECURITY_CONTEXT, FullCreateOptions) == 20);

    assert!(offset_of!(IO_STACK_LOCATION, MajorFunction) == 0);
    assert!(offset_of!(IO_STACK_LOCATION, MinorFunction) == 1);
    assert!(offset_of!(IO_STACK_LOCATION, Flags) == 2);
    assert!(offset_of!(IO_STACK_LOCATION, Control) == 3);
    assert!(offset_of!(IO_STACK_LOCATION, Parameters) == 8);
    // Parameters.DeviceIoControl is NOT usable from windows-sys (it lacks
    // wdm.h's POINTER_ALIGNMENT): see device::IO_STACK_LOCATION_DEVICE_IO_CONTROL,
    // whose offsets are asserted in device.rs. The defect, pinned so that a
    // fixed windows-sys is noticed:
    assert!(offset_of!(IO_STACK_LOCATION, Parameters.DeviceIoControl.InputBufferLength) == 12);
    assert!(offset_of!(IO_STACK_LOCATION, DeviceObject) == 40);
    assert!(offset_of!(IO_STACK_LOCATION, FileObject) == 48);
    assert!(offset_of!(IO_STACK_LOCATION, CompletionRoutine) == 56);
    assert!(offset_of!(IO_STACK_LOCATION, Context) == 64);

    assert!(size_of::<FILE_OBJECT>() == 216);
    assert!(offset_of!(FILE_OBJECT, Type) == 0);
    assert!(offset_of!(FILE_OBJECT, Size) == 2);
    assert!(offset_of!(FILE_OBJECT, DeviceObject) == 8);
    assert!(offset_of!(FILE_OBJECT, FsContext) == 24);
    assert!(offset_of!(FILE_OBJECT, FsContext2) == 32);
    assert!(offset_of!(FILE_OBJECT, RelatedFileObject) == 64);
    assert!(offset_of!(FILE_OBJECT, ReadAccess) == 74);
    assert!(offset_of!(FILE_OBJECT, WriteAccess) == 75);
    assert!(offset_of!(FILE_OBJECT, FileName) == 88);

    // wdm.h declares DEVICE_OBJECT DECLSPEC_ALIGN(16): 336 bytes, align 16.
    // windows-sys drops the alignment (328, align 8). The fields up to and
    // including DeviceObjectExtension are at the wdm.h offsets; only the
    // 8 bytes of tail padding are missing. Whoever allocates one (the
    // harness) must allocate 336 bytes, 16-aligned. Pinned so that a change
    // is noticed:
    assert!(size_of::<DEVICE_OBJECT>() == 328);
    assert!(core::mem::align_of::<DEVICE_OBJECT>() == 8);
    assert!(offset_of!(DEVICE_OBJECT, Type) == 0);
    assert!(offset_of!(DEVICE_OBJECT, Size) == 2);
    assert!(offset_of!(DEVICE_OBJECT, ReferenceCount) == 4);
    assert!(offset_of!(DEVICE_OBJECT, DriverObject) == 8);
    assert!(offset_of!(DEVICE_OBJECT, NextDevice) == 16);
    assert!(offset_of!(DEVICE_OBJECT, Flags) == 48);
    assert!(offset_of!(DEVICE_OBJECT, DeviceExtension) == 64);
    assert!(offset_of!(DEVICE_OBJECT, DeviceType) == 72);
    assert!(offset_of!(DEVICE_OBJECT, StackSize) == 76);
    assert!(offset_of!(DEVICE_OBJECT, DeviceObjectExtension) == 312);
    assert!(SIZEOF_DEVICE_OBJECT_WDM == 336);

    assert!(size_of::<DRIVER_OBJECT>() == 336);
    assert!(offset_of!(DRIVER_OBJECT, DeviceObject) == 8);
    assert!(offset_of!(DRIVER_OBJECT, DriverStart) == 24);
    assert!(offset_of!(DRIVER_OBJECT, DriverSize) == 32);
    assert!(offset_of!(DRIVER_OBJECT, DriverName) == 56);
    assert!(offset_of!(DRIVER_OBJECT, DriverUnload) == 104);
    assert!(offset_of!(DRIVER_OBJECT, MajorFunction) == 112);
    // IRP_MJ_MAXIMUM_FUNCTION + 1 dispatch slots.
    assert!(size_of::<[DRIVER_DISPATCH; 28]>() == 336 - 112);
};
