//! Plumbing of the in-process test drivers of the `model_*` tests: Rust
//! `extern "win64"` functions that reach the model through the import
//! registry, as a loaded image's import table would.

use core::ffi::c_void;
use core::ptr::null_mut;

use ndis_sys::{
    DEVICE_OBJECT, DRIVER_DISPATCH, DRIVER_OBJECT, NDIS_DEVICE_OBJECT_ATTRIBUTES, NDIS_FILTER_ATTRIBUTES,
    NDIS_FILTER_DRIVER_CHARACTERISTICS, NDIS_HANDLE, NDIS_OBJECT_HEADER, NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES,
    NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES, NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS,
    NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1, NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2, NDIS_STATUS,
    UNICODE_STRING,
};
use portwatch_harness::io::IRP_MJ_COUNT;
use portwatch_harness::verifier::Violation;

/// The address of the model function `name`, as the loader would bind it.
/// Panics when no DLL, or more than one, exports the name.
pub fn import(name: &str) -> usize {
    let all = portwatch_harness::imports::registry();
    let mut found = all.iter().filter(|i| i.name == name);
    let first = found.next().unwrap_or_else(|| panic!("{name} not modelled"));
    assert!(found.next().is_none(), "{name} is exported by more than one DLL");
    first.addr
}

/// Calls the model function `$name` with the signature given, as a driver
/// calls an import.
macro_rules! call {
    ($name:literal as fn($($t:ty),* $(,)?) $(-> $r:ty)?, $($arg:expr),* $(,)?) => {{
        let addr = $crate::common::driver::import($name);
        // SAFETY: the model function's documented signature.
        let f: unsafe extern "win64" fn($($t),*) $(-> $r)? = unsafe { core::mem::transmute(addr) };
        // SAFETY: arguments as the DDI documents them (or wrong on purpose).
        unsafe { f($($arg),*) }
    }};
}
// Not every test that includes `common` calls a model function.
#[allow(unused_imports)]
pub(crate) use call;

/// The handler at `f` as the callback field type `T` (the harness calls it
/// with the Windows x64 convention, the one of the `win64` functions of the
/// tests).
pub fn h<T: Copy>(f: usize) -> Option<T> {
    assert_eq!(core::mem::size_of::<T>(), core::mem::size_of::<usize>());
    // SAFETY: every handler of the tests is an `unsafe extern "win64" fn`
    // with the parameters of the field it is stored in; T is a function
    // pointer.
    Some(unsafe { core::mem::transmute_copy::<usize, T>(&f) })
}

/// `s` as a `UNICODE_STRING` over a leaked buffer.
pub fn wide(s: &str) -> UNICODE_STRING {
    let buf: &'static mut [u16] = Box::leak(s.encode_utf16().collect::<Vec<_>>().into_boxed_slice());
    UNICODE_STRING { Length: (buf.len() * 2) as u16, MaximumLength: (buf.len() * 2) as u16, Buffer: buf.as_mut_ptr() }
}

/// Leaked storage, so other threads may use it for the whole test.
pub fn leak<T: Default>() -> *mut T {
    Box::into_raw(Box::default())
}

/// The violation a buggy call must have raised.
pub fn violation_of(r: Result<(), Violation>) -> Violation {
    r.expect_err("the model let the bug through")
}

/// Stores `unload` (an `unsafe extern "win64" fn(*mut DRIVER_OBJECT)`) as
/// the driver's unload routine.
pub fn set_unload(driver: *mut DRIVER_OBJECT, unload: usize) {
    // SAFETY: the model's driver object, passed to DriverEntry.
    unsafe { (*driver).DriverUnload = h(unload) };
}

/// NDIS 6.30 filter characteristics named `unique` and `service`, every
/// handler NULL.
pub fn filter_characteristics(unique: &str, service: &str) -> NDIS_FILTER_DRIVER_CHARACTERISTICS {
    // SAFETY: plain data, NULL handlers.
    let mut c: NDIS_FILTER_DRIVER_CHARACTERISTICS = unsafe { core::mem::zeroed() };
    c.Header = NDIS_OBJECT_HEADER {
        Type: NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS,
        Revision: 2,
        Size: NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2,
    };
    (c.MajorNdisVersion, c.MinorNdisVersion) = (6, 30);
    c.UniqueName = wide(unique);
    c.ServiceName = wide(service);
    c
}

/// `NdisFRegisterFilterDriver`: its status and the filter handle.
pub fn register_filter(
    driver: *mut DRIVER_OBJECT,
    c: &NDIS_FILTER_DRIVER_CHARACTERISTICS,
) -> (NDIS_STATUS, NDIS_HANDLE) {
    let mut handle: NDIS_HANDLE = null_mut();
    let st = call!(
        "NdisFRegisterFilterDriver"
            as fn(
                *mut DRIVER_OBJECT,
                NDIS_HANDLE,
                *const NDIS_FILTER_DRIVER_CHARACTERISTICS,
                *mut NDIS_HANDLE,
            ) -> NDIS_STATUS,
        driver,
        null_mut(),
        c,
        &mut handle
    );
    (st, handle)
}

/// `NdisFSetAttributes` of a module attached with `handle`, its context
/// `context`.
pub fn set_attributes(handle: NDIS_HANDLE, context: *mut c_void) -> NDIS_STATUS {
    let attrs = NDIS_FILTER_ATTRIBUTES {
        Header: NDIS_OBJECT_HEADER { Type: NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES, Revision: 1, Size: 8 },
        Flags: 0,
    };
    call!(
        "NdisFSetAttributes" as fn(NDIS_HANDLE, NDIS_HANDLE, *const NDIS_FILTER_ATTRIBUTES) -> NDIS_STATUS,
        handle,
        context,
        &attrs
    )
}

/// `NdisRegisterDeviceEx` of `\Device\<name>` (`\DosDevices\<name>`) with
/// `dispatch` handling create, close, device control and cleanup, and the
/// `extra` major functions: its status and the device handle.
pub fn register_device(
    filter: NDIS_HANDLE,
    name: &str,
    dispatch: usize,
    extra: &[usize],
) -> (NDIS_STATUS, NDIS_HANDLE) {
    let mut table: [DRIVER_DISPATCH; IRP_MJ_COUNT] = [None; IRP_MJ_COUNT];
    for &mj in [0usize, 2, 0x0E, 0x12].iter().chain(extra) {
        table[mj] = h(dispatch);
    }
    let (mut device, mut link) = (wide(&format!("\\Device\\{name}")), wide(&format!("\\DosDevices\\{name}")));
    let attrs = NDIS_DEVICE_OBJECT_ATTRIBUTES {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES,
            Revision: 1,
            Size: NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1,
        },
        DeviceName: &mut device,
        SymbolicName: &mut link,
        MajorFunctions: table.as_mut_ptr(),
        ExtensionSize: 0,
        DefaultSDDLString: core::ptr::null(),
        DeviceClassGuid: core::ptr::null(),
    };
    let (mut dev, mut dh): (*mut DEVICE_OBJECT, NDIS_HANDLE) = (null_mut(), null_mut());
    let st = call!(
        "NdisRegisterDeviceEx"
            as fn(
                NDIS_HANDLE,
                *const NDIS_DEVICE_OBJECT_ATTRIBUTES,
                *mut *mut DEVICE_OBJECT,
                *mut NDIS_HANDLE,
            ) -> NDIS_STATUS,
        filter,
        &attrs,
        &mut dev,
        &mut dh
    );
    (st, dh)
}
