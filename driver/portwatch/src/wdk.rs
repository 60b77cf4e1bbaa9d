//! The windows-drivers-rs runtime of the Windows build (`wdk` feature).
//!
//! Only the allocator and the panic handler differ from the Linux build; all
//! driver logic is shared. wdk-alloc allocates from non-paged pool with
//! `ExAllocatePool2`, and wdk-panic's handler bug-checks with `KeBugCheckEx`,
//! as the Linux build's own runtime does.
//!
//! [`layout`] checks, at compile time, that the WDM types the driver takes
//! from `windows-sys` through `ndis-sys` have the layout of wdk-sys's
//! bindgen output of the WDK's own headers. (This module is compiled only
//! on Windows with the WDK; the Linux build never compiles it.)

/// Kernel allocator of the Windows build: non-paged pool.
#[global_allocator]
static GLOBAL: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

// Linked only for its `#[panic_handler]`.
use wdk_panic as _;

/// Compile-time checks: ndis-sys's WDM types against wdk-sys's bindings of
/// the WDK headers (size, alignment and the fields the driver uses). A
/// mismatch fails the Windows build.
mod layout {
    use core::mem::{align_of, offset_of, size_of};

    /// Same size and alignment.
    macro_rules! same_layout {
        ($ours:ty, $wdk:ty) => {
            const _: () = assert!(
                size_of::<$ours>() == size_of::<$wdk>() && align_of::<$ours>() == align_of::<$wdk>(),
                concat!(stringify!($ours), " differs from wdk-sys")
            );
        };
    }

    /// Same offset of a field.
    macro_rules! same_offset {
        ($ours:ty, $wdk:ty, $field:ident) => {
            const _: () = assert!(
                offset_of!($ours, $field) == offset_of!($wdk, $field),
                concat!(stringify!($ours), ".", stringify!($field), " differs from wdk-sys")
            );
        };
    }

    same_layout!(ndis_sys::IRP, wdk_sys::IRP);
    same_offset!(ndis_sys::IRP, wdk_sys::IRP, IoStatus);
    same_offset!(ndis_sys::IRP, wdk_sys::IRP, AssociatedIrp);
    same_offset!(ndis_sys::IRP, wdk_sys::IRP, Tail);
    same_layout!(ndis_sys::IO_STACK_LOCATION, wdk_sys::IO_STACK_LOCATION);
    same_offset!(ndis_sys::IO_STACK_LOCATION, wdk_sys::IO_STACK_LOCATION, Parameters);
    same_offset!(ndis_sys::IO_STACK_LOCATION, wdk_sys::IO_STACK_LOCATION, FileObject);
    same_layout!(ndis_sys::DEVICE_OBJECT, wdk_sys::DEVICE_OBJECT);
    same_offset!(ndis_sys::DEVICE_OBJECT, wdk_sys::DEVICE_OBJECT, DeviceExtension);
    same_layout!(ndis_sys::DRIVER_OBJECT, wdk_sys::DRIVER_OBJECT);
    same_offset!(ndis_sys::DRIVER_OBJECT, wdk_sys::DRIVER_OBJECT, MajorFunction);
    same_offset!(ndis_sys::DRIVER_OBJECT, wdk_sys::DRIVER_OBJECT, DriverUnload);
    same_layout!(ndis_sys::FILE_OBJECT, wdk_sys::FILE_OBJECT);
    same_offset!(ndis_sys::FILE_OBJECT, wdk_sys::FILE_OBJECT, FsContext);
    same_layout!(ndis_sys::EX_RUNDOWN_REF, wdk_sys::EX_RUNDOWN_REF);
    same_layout!(ndis_sys::IO_STATUS_BLOCK, wdk_sys::IO_STATUS_BLOCK);
    same_layout!(ndis_sys::UNICODE_STRING, wdk_sys::UNICODE_STRING);
    same_layout!(ndis_sys::KSPIN_LOCK, wdk_sys::KSPIN_LOCK);
    same_layout!(ndis_sys::KIRQL, wdk_sys::KIRQL);

    /// `NDIS_SPIN_LOCK` as ndis.h declares it, from wdk-sys's members
    /// (wdk-sys has no ndis.h).
    #[repr(C)]
    #[allow(dead_code, non_snake_case)]
    struct WdkNdisSpinLock {
        SpinLock: wdk_sys::KSPIN_LOCK,
        OldIrql: wdk_sys::KIRQL,
    }
    same_layout!(ndis_sys::NDIS_SPIN_LOCK, WdkNdisSpinLock);
    same_offset!(ndis_sys::NDIS_SPIN_LOCK, WdkNdisSpinLock, OldIrql);
}
