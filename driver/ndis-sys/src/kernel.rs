//! Kernel base types re-exported from `windows-sys`.

pub use windows_sys::Wdk::Foundation::{DEVICE_OBJECT, DRIVER_OBJECT, FILE_OBJECT, IO_STACK_LOCATION, IRP, MDL};
pub use windows_sys::Wdk::System::SystemServices::EX_RUNDOWN_REF;
pub use windows_sys::Win32::Foundation::{NTSTATUS, UNICODE_STRING};

/// `KIRQL`: an interrupt request level.
pub type KIRQL = u8;
/// `KSPIN_LOCK`: an executive spin lock (`ULONG_PTR`).
pub type KSPIN_LOCK = usize;
/// `NDIS_HANDLE`: an opaque handle NDIS hands out or takes.
pub type NDIS_HANDLE = *mut core::ffi::c_void;
/// `NDIS_STATUS`: NDIS's status code (an NTSTATUS on NDIS 6).
pub type NDIS_STATUS = i32;

/// `PASSIVE_LEVEL`.
pub const PASSIVE_LEVEL: KIRQL = 0;
/// `APC_LEVEL`.
pub const APC_LEVEL: KIRQL = 1;
/// `DISPATCH_LEVEL`.
pub const DISPATCH_LEVEL: KIRQL = 2;
