//! The registry functions a driver uses to keep a setting across reboots
//! (`ZwCreateKey`, `ZwOpenKey`, `ZwSetValueKey`, `ZwQueryValueKey`,
//! `ZwClose`), with the structures and constants they take.
//!
//! The structures come from `windows-sys` (Microsoft's metadata); the
//! constants are the values wdm.h and winnt.h define, as the functions'
//! pages document them. All five functions are PASSIVE_LEVEL only (their
//! pages' requirements, and the DDI compliance rule IrqlZwPassive).

#[cfg(target_os = "windows")]
use crate::kernel::{NTSTATUS, UNICODE_STRING};
pub use windows_sys::Wdk::Foundation::OBJECT_ATTRIBUTES;
pub use windows_sys::Wdk::System::SystemServices::KEY_VALUE_PARTIAL_INFORMATION;
pub use windows_sys::Win32::Foundation::HANDLE;

/// `OBJ_CASE_INSENSITIVE` (`InitializeObjectAttributes`): names compare
/// without case, as registry names do.
pub const OBJ_CASE_INSENSITIVE: u32 = 0x0000_0040;
/// `OBJ_KERNEL_HANDLE`: the handle belongs to the kernel, not to the
/// process whose thread the driver runs in (required for handles a driver
/// opens in an arbitrary thread).
pub const OBJ_KERNEL_HANDLE: u32 = 0x0000_0200;
/// `KEY_QUERY_VALUE` (winnt.h): `ZwQueryValueKey` on the handle.
pub const KEY_QUERY_VALUE: u32 = 0x0001;
/// `KEY_SET_VALUE` (winnt.h): `ZwSetValueKey` on the handle.
pub const KEY_SET_VALUE: u32 = 0x0002;
/// `REG_OPTION_NON_VOLATILE` (winnt.h): the key survives a reboot.
pub const REG_OPTION_NON_VOLATILE: u32 = 0;
/// `REG_CREATED_NEW_KEY` (winnt.h): `ZwCreateKey`'s disposition for a new key.
pub const REG_CREATED_NEW_KEY: u32 = 1;
/// `REG_OPENED_EXISTING_KEY` (winnt.h): `ZwCreateKey`'s disposition for an
/// existing key.
pub const REG_OPENED_EXISTING_KEY: u32 = 2;
/// `REG_SZ` (winnt.h): a NUL-terminated UTF-16 string.
pub const REG_SZ: u32 = 1;
/// `KeyValuePartialInformation` (`KEY_VALUE_INFORMATION_CLASS`, wdm.h):
/// `ZwQueryValueKey` fills a [`KEY_VALUE_PARTIAL_INFORMATION`].
pub const KeyValuePartialInformation: i32 = 2;

// Layouts, x64. Source: the structures' pages (OBJECT_ATTRIBUTES { ULONG
// Length; HANDLE RootDirectory; PUNICODE_STRING ObjectName; ULONG
// Attributes; PVOID SecurityDescriptor; PVOID SecurityQualityOfService; },
// KEY_VALUE_PARTIAL_INFORMATION { ULONG TitleIndex; ULONG Type; ULONG
// DataLength; UCHAR Data[1]; }) with the x64 MSVC alignment rules.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<OBJECT_ATTRIBUTES>() == 48);
    assert!(offset_of!(OBJECT_ATTRIBUTES, Length) == 0);
    assert!(offset_of!(OBJECT_ATTRIBUTES, RootDirectory) == 8);
    assert!(offset_of!(OBJECT_ATTRIBUTES, ObjectName) == 16);
    assert!(offset_of!(OBJECT_ATTRIBUTES, Attributes) == 24);
    assert!(offset_of!(OBJECT_ATTRIBUTES, SecurityDescriptor) == 32);
    assert!(offset_of!(OBJECT_ATTRIBUTES, SecurityQualityOfService) == 40);
    assert!(size_of::<KEY_VALUE_PARTIAL_INFORMATION>() == 16);
    assert!(offset_of!(KEY_VALUE_PARTIAL_INFORMATION, TitleIndex) == 0);
    assert!(offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Type) == 4);
    assert!(offset_of!(KEY_VALUE_PARTIAL_INFORMATION, DataLength) == 8);
    assert!(offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data) == 12);
};

#[cfg(target_os = "windows")]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" {
    /// Opens or creates a key (PASSIVE_LEVEL).
    pub fn ZwCreateKey(
        KeyHandle: *mut HANDLE,
        DesiredAccess: u32,
        ObjectAttributes: *const OBJECT_ATTRIBUTES,
        TitleIndex: u32,
        Class: *const UNICODE_STRING,
        CreateOptions: u32,
        Disposition: *mut u32,
    ) -> NTSTATUS;
    /// Opens an existing key (PASSIVE_LEVEL).
    pub fn ZwOpenKey(
        KeyHandle: *mut HANDLE,
        DesiredAccess: u32,
        ObjectAttributes: *const OBJECT_ATTRIBUTES,
    ) -> NTSTATUS;
    /// Creates or replaces a value of an open key (PASSIVE_LEVEL).
    pub fn ZwSetValueKey(
        KeyHandle: HANDLE,
        ValueName: *const UNICODE_STRING,
        TitleIndex: u32,
        Type: u32,
        Data: *const core::ffi::c_void,
        DataSize: u32,
    ) -> NTSTATUS;
    /// Reads a value of an open key into `KeyValueInformation`
    /// (PASSIVE_LEVEL).
    pub fn ZwQueryValueKey(
        KeyHandle: HANDLE,
        ValueName: *const UNICODE_STRING,
        KeyValueInformationClass: i32,
        KeyValueInformation: *mut core::ffi::c_void,
        Length: u32,
        ResultLength: *mut u32,
    ) -> NTSTATUS;
    /// Closes a handle (PASSIVE_LEVEL).
    pub fn ZwClose(Handle: HANDLE) -> NTSTATUS;
}
