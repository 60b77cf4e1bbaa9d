//! The control device: `NDIS_DEVICE_OBJECT_ATTRIBUTES` for
//! `NdisRegisterDeviceEx`, IRP major function codes, the I/O object type
//! codes and the stack-location accessors of wdm.h.

use windows_sys::core::GUID;

use crate::kernel::{DRIVER_DISPATCH, IO_SECURITY_CONTEXT, IO_STACK_LOCATION, IRP, NDIS_STRING, UNICODE_STRING};
use crate::object::NDIS_OBJECT_HEADER;

/// `NDIS_DEVICE_OBJECT_ATTRIBUTES` (revision 1): what `NdisRegisterDeviceEx`
/// creates.
///
/// `Header`: `NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES`,
/// `NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1`,
/// `NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_DEVICE_OBJECT_ATTRIBUTES {
    /// Object header (see the type's docs).
    pub Header: NDIS_OBJECT_HEADER,
    /// `\Device\...` name.
    pub DeviceName: *mut NDIS_STRING,
    /// `\DosDevices\...` symbolic link name.
    pub SymbolicName: *mut NDIS_STRING,
    /// `IRP_MJ_MAXIMUM_FUNCTION + 1` dispatch routines (no PnP / power ones).
    pub MajorFunctions: *mut DRIVER_DISPATCH,
    /// Bytes of the extension returned by `NdisGetDeviceReservedExtension`.
    pub ExtensionSize: u32,
    /// SDDL string of the device's default security descriptor.
    pub DefaultSDDLString: *const UNICODE_STRING,
    /// Device class GUID, or NULL.
    pub DeviceClassGuid: *const GUID,
}

impl Default for NDIS_DEVICE_OBJECT_ATTRIBUTES {
    /// All fields zero / NULL.
    fn default() -> Self {
        // SAFETY: every field is an integer, a raw pointer or an
        // NDIS_OBJECT_HEADER (integers): all-zero is a valid value of each.
        unsafe { core::mem::zeroed() }
    }
}

/// `IRP_MJ_CREATE`.
pub const IRP_MJ_CREATE: u8 = 0x00;
/// `IRP_MJ_CLOSE`: the last reference to a file object is gone.
pub const IRP_MJ_CLOSE: u8 = 0x02;
/// `IRP_MJ_READ`.
pub const IRP_MJ_READ: u8 = 0x03;
/// `IRP_MJ_WRITE`.
pub const IRP_MJ_WRITE: u8 = 0x04;
/// `IRP_MJ_DEVICE_CONTROL`.
pub const IRP_MJ_DEVICE_CONTROL: u8 = 0x0E;
/// `IRP_MJ_INTERNAL_DEVICE_CONTROL`.
pub const IRP_MJ_INTERNAL_DEVICE_CONTROL: u8 = 0x0F;
/// `IRP_MJ_CLEANUP`: the last handle to a file object was closed.
pub const IRP_MJ_CLEANUP: u8 = 0x12;
/// `IRP_MJ_POWER`.
pub const IRP_MJ_POWER: u8 = 0x16;
/// `IRP_MJ_PNP`.
pub const IRP_MJ_PNP: u8 = 0x1B;
/// `IRP_MJ_MAXIMUM_FUNCTION`: the highest major function code.
pub const IRP_MJ_MAXIMUM_FUNCTION: u8 = 0x1B;
/// `IO_NO_INCREMENT`: the priority boost for `IofCompleteRequest`.
pub const IO_NO_INCREMENT: i8 = 0;
/// `FILE_DEVICE_SECURE_OPEN`: apply the device's ACL to opens of names
/// under the device too.
pub const FILE_DEVICE_SECURE_OPEN: u32 = 0x100;
/// `FILE_DEVICE_NETWORK`: the `DeviceType` of NDIS control devices.
pub const FILE_DEVICE_NETWORK: u32 = 0x12;
/// `SL_PENDING_RETURNED`: `IO_STACK_LOCATION.Control` bit set by
/// `IoMarkIrpPending`.
pub const SL_PENDING_RETURNED: u8 = 0x01;

/// `IO_TYPE_DEVICE`: `DEVICE_OBJECT.Type`.
pub const IO_TYPE_DEVICE: i16 = 3;
/// `IO_TYPE_DRIVER`: `DRIVER_OBJECT.Type`.
pub const IO_TYPE_DRIVER: i16 = 4;
/// `IO_TYPE_FILE`: `FILE_OBJECT.Type`.
pub const IO_TYPE_FILE: i16 = 5;
/// `IO_TYPE_IRP`: `IRP.Type`.
pub const IO_TYPE_IRP: i16 = 6;

/// `KPROCESSOR_MODE`: the mode a request came from (`IRP.RequestorMode`).
pub type KPROCESSOR_MODE = i8;
/// `KernelMode`.
pub const KernelMode: KPROCESSOR_MODE = 0;
/// `UserMode`.
pub const UserMode: KPROCESSOR_MODE = 1;

/// `POINTER_ALIGNMENT` of wdm.h on x64 (`DECLSPEC_ALIGN(8)`): a field
/// aligned to 8 bytes although its type is smaller.
#[repr(C, align(8))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PointerAligned<T>(pub T);

/// `IO_STACK_LOCATION.Parameters.DeviceIoControl`, with the x64 layout of
/// wdm.h.
///
/// Use this instead of windows-sys's `Parameters.DeviceIoControl`: that
/// generated struct drops wdm.h's `POINTER_ALIGNMENT` and puts
/// `InputBufferLength` at 12 and `IoControlCode` at 16 instead of 16 and 24.
/// The other `Parameters` arms with `POINTER_ALIGNMENT` fields (Create,
/// Read, Write, ...) have the same defect.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_STACK_LOCATION_DEVICE_IO_CONTROL {
    /// Output buffer length, bytes.
    pub OutputBufferLength: u32,
    /// Input buffer length, bytes.
    pub InputBufferLength: PointerAligned<u32>,
    /// The IOCTL code (compare all 32 bits).
    pub IoControlCode: PointerAligned<u32>,
    /// Input buffer of METHOD_NEITHER requests (unused for METHOD_BUFFERED).
    pub Type3InputBuffer: *mut core::ffi::c_void,
}

/// `IO_STACK_LOCATION.Parameters.Create`, with the x64 layout of wdm.h.
///
/// Use this instead of windows-sys's `Parameters.Create`, which has the
/// `POINTER_ALIGNMENT` defect described at
/// [`IO_STACK_LOCATION_DEVICE_IO_CONTROL`] (`ShareAccess` at 14 instead of 18).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IO_STACK_LOCATION_CREATE {
    /// The access state and requested access of the open.
    pub SecurityContext: *mut IO_SECURITY_CONTEXT,
    /// Create disposition (high byte) and `FILE_*` create options.
    pub Options: u32,
    /// Padding before the pointer-aligned `FileAttributes` (a
    /// `PointerAligned<u16>` would also pad `ShareAccess` away). Not a C field.
    pub OptionsPadding: u32,
    /// `FILE_ATTRIBUTE_*` of a file being created (`POINTER_ALIGNMENT`).
    pub FileAttributes: u16,
    /// `FILE_SHARE_*` access the caller allows others.
    pub ShareAccess: u16,
    /// Bytes of extended attributes (zero for device opens).
    pub EaLength: PointerAligned<u32>,
}

/// `&IrpSp->Parameters.Create` with the correct x64 layout.
///
/// # Safety
///
/// `stack` must point to a valid IO_STACK_LOCATION of an IRP_MJ_CREATE
/// request owned by the caller.
pub unsafe fn IoStackCreate(stack: *mut IO_STACK_LOCATION) -> *mut IO_STACK_LOCATION_CREATE {
    // SAFETY: the caller guarantees `stack` is valid; `Parameters` is a
    // union whose Create arm has the layout of the struct returned (checked
    // below against wdm.h), so the cast only reinterprets the arm.
    unsafe { (&raw mut (*stack).Parameters).cast() }
}

/// `&IrpSp->Parameters.DeviceIoControl` with the correct x64 layout.
///
/// # Safety
///
/// `stack` must point to a valid IO_STACK_LOCATION of an IRP_MJ_DEVICE_CONTROL
/// (or internal device control) request owned by the caller.
pub unsafe fn IoStackDeviceIoControl(stack: *mut IO_STACK_LOCATION) -> *mut IO_STACK_LOCATION_DEVICE_IO_CONTROL {
    // SAFETY: the caller guarantees `stack` is valid; `Parameters` is a
    // union whose DeviceIoControl arm has the layout of the struct returned
    // (checked below against wdm.h), so the cast only reinterprets the arm.
    unsafe { (&raw mut (*stack).Parameters).cast() }
}

/// `IoGetCurrentIrpStackLocation` (an inline function in wdm.h, not an
/// export): `Irp->Tail.Overlay.CurrentStackLocation`.
///
/// # Safety
///
/// `irp` must point to a valid IRP that the caller currently owns (it was
/// passed to a dispatch routine and not yet completed).
pub unsafe fn IoGetCurrentIrpStackLocation(irp: *mut IRP) -> *mut IO_STACK_LOCATION {
    // SAFETY: the caller guarantees `irp` is a valid, owned IRP; for an IRP
    // being dispatched this union arm holds the current stack location.
    unsafe { (*irp).Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation }
}

/// `IoSetCancelRoutine` (an inline function in wdm.h, not an export): an
/// `InterlockedExchangePointer` on `Irp->CancelRoutine`; returns the
/// previous routine.
///
/// # Safety
///
/// `irp` must point to a valid IRP the caller owns or has queued (not
/// completed).
pub unsafe fn IoSetCancelRoutine(irp: *mut IRP, routine: crate::kernel::DRIVER_CANCEL) -> crate::kernel::DRIVER_CANCEL {
    use core::sync::atomic::{AtomicPtr, Ordering};
    let new = routine.map_or(core::ptr::null_mut(), |f| f as *mut core::ffi::c_void);
    // SAFETY: the caller guarantees the IRP is valid; `CancelRoutine` is an
    // aligned pointer-sized field that wdm.h also exchanges atomically.
    let old = unsafe { AtomicPtr::from_ptr((&raw mut (*irp).CancelRoutine).cast()).swap(new, Ordering::SeqCst) };
    // SAFETY: the field only ever holds NULL or a DRIVER_CANCEL function
    // pointer, and `Option<fn>` has the same representation.
    unsafe { core::mem::transmute::<*mut core::ffi::c_void, crate::kernel::DRIVER_CANCEL>(old) }
}

/// `IoMarkIrpPending` (an inline function in wdm.h, not an export): sets
/// `SL_PENDING_RETURNED` in the current stack location's `Control`.
///
/// # Safety
///
/// `irp` must point to a valid IRP the caller owns (in its dispatch routine).
pub unsafe fn IoMarkIrpPending(irp: *mut IRP) {
    // SAFETY: the caller's contract: the current stack location is valid.
    unsafe { (*IoGetCurrentIrpStackLocation(irp)).Control |= SL_PENDING_RETURNED };
}

// Layout, x64. Source: public WDK 10 km/ndis.h (public copy), clang
// --target=x86_64-pc-windows-msvc -DNDIS630=1 -DNDIS_WDM=1, sizeof/offsetof.
const _: () = {
    use core::mem::{offset_of, size_of};

    type D = NDIS_DEVICE_OBJECT_ATTRIBUTES;
    assert!(size_of::<D>() == 56);
    assert!(offset_of!(D, Header) == 0);
    assert!(offset_of!(D, DeviceName) == 8);
    assert!(offset_of!(D, SymbolicName) == 16);
    assert!(offset_of!(D, MajorFunctions) == 24);
    assert!(offset_of!(D, ExtensionSize) == 32);
    assert!(offset_of!(D, DefaultSDDLString) == 40);
    assert!(offset_of!(D, DeviceClassGuid) == 48);
};

// Layout, x64. Source: public WDK 10 km/wdm.h (public copy), clang
// --target=x86_64-pc-windows-msvc, offsetof(IO_STACK_LOCATION,
// Parameters.DeviceIoControl.*) minus offsetof(.., Parameters) (8); public
// x64 type dumps of _IO_STACK_LOCATION agree (0x8, 0x10, 0x18, 0x20).
const _: () = {
    use core::mem::{offset_of, size_of};

    type P = IO_STACK_LOCATION_DEVICE_IO_CONTROL;
    assert!(size_of::<P>() == 32);
    assert!(offset_of!(P, OutputBufferLength) == 0);
    assert!(offset_of!(P, InputBufferLength) == 8);
    assert!(offset_of!(P, IoControlCode) == 16);
    assert!(offset_of!(P, Type3InputBuffer) == 24);
    assert!(offset_of!(IO_STACK_LOCATION, Parameters) == 8);
    assert!(size_of::<P>() <= offset_of!(IO_STACK_LOCATION, DeviceObject) - offset_of!(IO_STACK_LOCATION, Parameters));
};

// Layout, x64. Source: public WDK 10 km/wdm.h (public copy), clang
// --target=x86_64-pc-windows-msvc -DNDIS630=1 -DNDIS_WDM=1 -D_AMD64_,
// offsetof(IO_STACK_LOCATION, Parameters.Create.*) = 8, 16, 24, 26, 32,
// minus offsetof(.., Parameters) (8).
const _: () = {
    use core::mem::{offset_of, size_of};

    type C = IO_STACK_LOCATION_CREATE;
    assert!(size_of::<C>() == 32);
    assert!(offset_of!(C, SecurityContext) == 0);
    assert!(offset_of!(C, Options) == 8);
    assert!(offset_of!(C, OptionsPadding) + 4 == offset_of!(C, FileAttributes));
    assert!(offset_of!(C, FileAttributes) == 16);
    assert!(offset_of!(C, ShareAccess) == 18);
    assert!(offset_of!(C, EaLength) == 24);
    assert!(size_of::<C>() <= offset_of!(IO_STACK_LOCATION, DeviceObject) - offset_of!(IO_STACK_LOCATION, Parameters));
};

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Wdk::System::SystemServices as wdk;

    /// The hand-written `u8` codes agree with the (u32) values Microsoft's
    /// metadata gives windows-sys: two independent sources.
    #[test]
    fn irp_major_codes_match_windows_sys() {
        let pairs = [
            (IRP_MJ_CREATE, wdk::IRP_MJ_CREATE),
            (IRP_MJ_CLOSE, wdk::IRP_MJ_CLOSE),
            (IRP_MJ_READ, wdk::IRP_MJ_READ),
            (IRP_MJ_WRITE, wdk::IRP_MJ_WRITE),
            (IRP_MJ_DEVICE_CONTROL, wdk::IRP_MJ_DEVICE_CONTROL),
            (IRP_MJ_INTERNAL_DEVICE_CONTROL, wdk::IRP_MJ_INTERNAL_DEVICE_CONTROL),
            (IRP_MJ_CLEANUP, wdk::IRP_MJ_CLEANUP),
            (IRP_MJ_POWER, wdk::IRP_MJ_POWER),
            (IRP_MJ_PNP, wdk::IRP_MJ_PNP),
            (IRP_MJ_MAXIMUM_FUNCTION, wdk::IRP_MJ_MAXIMUM_FUNCTION),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(u32::from(ours), theirs);
        }
        assert_eq!(FILE_DEVICE_SECURE_OPEN, wdk::FILE_DEVICE_SECURE_OPEN);
    }

    /// The I/O object type codes, pending bit and processor modes agree
    /// with windows-sys's (u32 / i32) values.
    #[test]
    fn io_codes_match_windows_sys() {
        let types = [
            (IO_TYPE_DEVICE, wdk::IO_TYPE_DEVICE),
            (IO_TYPE_DRIVER, wdk::IO_TYPE_DRIVER),
            (IO_TYPE_FILE, wdk::IO_TYPE_FILE),
            (IO_TYPE_IRP, wdk::IO_TYPE_IRP),
        ];
        for (ours, theirs) in types {
            assert_eq!(u32::try_from(ours), Ok(theirs));
        }
        assert_eq!(u32::from(SL_PENDING_RETURNED), wdk::SL_PENDING_RETURNED);
        assert_eq!(i32::from(UserMode), wdk::UserMode);
        assert_eq!(i32::from(KernelMode), wdk::KernelMode);
    }

    #[test]
    fn create_parameters_sit_at_the_wdm_offsets() {
        // SAFETY: IO_STACK_LOCATION is plain data; all zeroes is valid.
        let mut stack: IO_STACK_LOCATION = unsafe { core::mem::zeroed() };
        let base = (&raw mut stack).cast::<u8>();
        // SAFETY: offsets 8, 16 (+4), 26 (+2) lie inside the 72-byte struct;
        // the writes are unaligned-safe.
        unsafe {
            base.add(8).cast::<usize>().write_unaligned(0x1234_5678);
            base.add(16).cast::<u32>().write_unaligned(0x0100_0040);
            base.add(26).cast::<u16>().write_unaligned(0x0003);
        }
        // SAFETY: `stack` is a valid stack location owned by this test.
        let p = unsafe { *IoStackCreate(&mut stack) };
        assert_eq!(p.SecurityContext as usize, 0x1234_5678);
        assert_eq!(p.Options, 0x0100_0040);
        assert_eq!(p.ShareAccess, 0x0003);
        assert_eq!(p.FileAttributes, 0);
    }

    #[test]
    fn device_io_control_parameters_sit_at_the_wdm_offsets() {
        // SAFETY: IO_STACK_LOCATION is plain data; all zeroes is valid.
        let mut stack: IO_STACK_LOCATION = unsafe { core::mem::zeroed() };
        let base = (&raw mut stack).cast::<u8>();
        // SAFETY: offsets 8, 16, 24 (+4) lie inside the 72-byte struct, and
        // the writes are unaligned-safe.
        unsafe {
            base.add(8).cast::<u32>().write_unaligned(0x11);
            base.add(16).cast::<u32>().write_unaligned(0x22);
            base.add(24).cast::<u32>().write_unaligned(0x0022_2004);
        }
        // SAFETY: `stack` is a valid stack location owned by this test.
        let p = unsafe { *IoStackDeviceIoControl(&mut stack) };
        assert_eq!(p.OutputBufferLength, 0x11);
        assert_eq!(p.InputBufferLength.0, 0x22);
        assert_eq!(p.IoControlCode.0, 0x0022_2004);
    }

    #[test]
    fn current_stack_location_is_read_from_the_irp_tail() {
        // SAFETY: IRP is plain data (integers, pointers, unions of them); all
        // zeroes is a valid value.
        let mut irp: IRP = unsafe { core::mem::zeroed() };
        // SAFETY: as above for IO_STACK_LOCATION.
        let mut stack: IO_STACK_LOCATION = unsafe { core::mem::zeroed() };
        irp.Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation = &mut stack;
        // SAFETY: `irp` is a valid IRP owned by this test.
        let got = unsafe { IoGetCurrentIrpStackLocation(&mut irp) };
        assert_eq!(got, &raw mut stack);
    }
}
