//! The image's entry point (the linker requires one).

/// Succeeds without registering anything.
#[no_mangle]
pub extern "system" fn DriverEntry(_driver: *mut core::ffi::c_void, _registry: *mut core::ffi::c_void) -> i32 {
    0 // STATUS_SUCCESS
}
