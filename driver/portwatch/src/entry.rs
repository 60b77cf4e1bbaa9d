//! DriverEntry and DriverUnload, and the driver-wide state they own.
//!
//! Order matters (NDIS-RULES R3, R4, R5): the global state exists before
//! NdisFRegisterFilterDriver, because NDIS calls FilterSetOptions inside
//! that call and may call FilterAttach before it returns. Every failure
//! unwinds what was done; unload undoes it in reverse.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

use ndis_sync::Passive;
use ndis_sys::*;
use windows_sys::Win32::Foundation::{STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS};

use crate::device;
use crate::filter;
use crate::globals::Globals;
use crate::registry::ParametersKey;
use crate::trace::trace;

static GLOBALS: AtomicPtr<Globals> = AtomicPtr::new(null_mut());
static FILTER_DRIVER: AtomicPtr<core::ffi::c_void> = AtomicPtr::new(null_mut());
static DEVICE: AtomicPtr<core::ffi::c_void> = AtomicPtr::new(null_mut());

/// The driver-wide state.
pub fn globals() -> &'static Globals {
    let globals = GLOBALS.load(Ordering::Acquire);
    assert!(!globals.is_null(), "driver state used outside DriverEntry..DriverUnload");
    // SAFETY: published in DriverEntry before NDIS or the I/O manager can
    // call any entry point that uses it, and freed in DriverUnload only
    // after NdisDeregisterDeviceEx and NdisFDeregisterFilterDriver returned,
    // after which neither calls into the driver again.
    unsafe { &*globals }
}

/// Encodes an ASCII string literal as a NUL-terminated UTF-16 array.
macro_rules! utf16 {
    ($s:expr) => {{
        const S: &str = $s;
        const N: usize = S.len() + 1;
        const W: [u16; N] = {
            let bytes = S.as_bytes();
            let mut w = [0u16; N];
            let mut i = 0;
            while i < bytes.len() {
                assert!(bytes[i] < 0x80, "ASCII only");
                w[i] = bytes[i] as u16;
                i += 1;
            }
            w
        };
        &W
    }};
}

static FRIENDLY_NAME: &[u16] = utf16!(portwatch_proto::FILTER_FRIENDLY_NAME);
static UNIQUE_NAME: &[u16] = utf16!(portwatch_proto::FILTER_UNIQUE_NAME);
static SERVICE_NAME: &[u16] = utf16!(portwatch_proto::SERVICE_NAME);
static DEVICE_NAME: &[u16] = utf16!(portwatch_proto::DEVICE_NAME);
static LINK_NAME: &[u16] = utf16!(portwatch_proto::SYMBOLIC_LINK_NAME);
/// SDDL_DEVOBJ_SYS_ALL_ADM_ALL: SYSTEM and Administrators only.
static DEVICE_SDDL: &[u16] = utf16!("D:P(A;;GA;;;SY)(A;;GA;;;BA)");

/// A counted string over a static NUL-terminated UTF-16 array.
fn unicode(s: &'static [u16]) -> UNICODE_STRING {
    let bytes = ((s.len() - 1) * 2) as u16;
    // NDIS and the I/O manager only read these strings.
    UNICODE_STRING { Length: bytes, MaximumLength: bytes + 2, Buffer: s.as_ptr().cast_mut() }
}

/// The names the filter registers with.
pub struct Names {
    /// INF-independent display name.
    pub friendly: UNICODE_STRING,
    /// `{GUID}`: the INF's NetCfgInstanceId.
    pub unique: UNICODE_STRING,
    /// The service name: the INF's AddService name.
    pub service: UNICODE_STRING,
}

/// The driver's entry point (PASSIVE_LEVEL, system thread).
///
/// # Safety
///
/// Called once by the I/O manager with its driver object.
#[no_mangle]
pub unsafe extern "system" fn DriverEntry(driver: *mut DRIVER_OBJECT, registry_path: *mut UNICODE_STRING) -> NTSTATUS {
    // SAFETY: DriverEntry runs at PASSIVE_LEVEL (R1).
    let mut irql = unsafe { Passive::new_unchecked() };
    // SAFETY: the I/O manager passes the service key's path, valid until
    // DriverEntry returns: it is copied here.
    let store = match unsafe { parameters_key(registry_path) } {
        Ok(store) => store,
        Err(status) => return status,
    };
    let port_name = saved_port_name(&store, &irql);
    let Ok(globals) = Globals::try_new(store, port_name) else { return STATUS_INSUFFICIENT_RESOURCES };
    let Some(globals) = crate::pool::try_pin_box(globals) else { return STATUS_INSUFFICIENT_RESOURCES };
    // SAFETY: the globals stay pinned: DriverUnload turns the pointer back
    // into the box, which frees them in place.
    GLOBALS.store(Box::into_raw(unsafe { core::pin::Pin::into_inner_unchecked(globals) }), Ordering::Release);

    // SAFETY: `driver` is our driver object (function contract).
    let status = unsafe { register_filter(driver) };
    if status != NDIS_STATUS_SUCCESS {
        trace!(DPFLTR_ERROR_LEVEL, "NdisFRegisterFilterDriver failed: %08x", status);
        free_globals(&mut irql);
        return status;
    }
    let status = register_device();
    if status != NDIS_STATUS_SUCCESS {
        trace!(DPFLTR_ERROR_LEVEL, "NdisRegisterDeviceEx failed: %08x", status);
        // SAFETY: registered above; NDIS detaches any module before returning.
        unsafe { NdisFDeregisterFilterDriver(FILTER_DRIVER.swap(null_mut(), Ordering::AcqRel)) };
        free_globals(&mut irql);
        return status;
    }
    // SAFETY: DriverEntry may set the unload routine of its driver object.
    unsafe { (*driver).DriverUnload = Some(driver_unload) };
    trace!(DPFLTR_INFO_LEVEL, "loaded, protocol version %u", portwatch_proto::PROTOCOL_VERSION);
    STATUS_SUCCESS
}

/// Copies the service key's path (`RegistryPath`) into the `Parameters`
/// key the port name persists under.
///
/// # Safety
///
/// `registry_path` is DriverEntry's argument: a valid `UNICODE_STRING`.
unsafe fn parameters_key(registry_path: *const UNICODE_STRING) -> Result<ParametersKey, NTSTATUS> {
    // SAFETY: the caller guarantees a valid counted string; Length is in bytes.
    let path = unsafe {
        let path = &*registry_path;
        core::slice::from_raw_parts(path.Buffer, usize::from(path.Length / 2))
    };
    ParametersKey::try_new(path)
}

/// The port name saved by IOCTL_SET_PORT_NAME before the last unload or
/// reboot; none (or one the driver cannot read back) starts it empty.
fn saved_port_name(store: &ParametersKey, irql: &Passive) -> Vec<u16> {
    match store.read_port_name(irql) {
        Ok(name) => name.unwrap_or_default(),
        Err(status) => {
            trace!(DPFLTR_ERROR_LEVEL, "PortName in Parameters ignored: %08x", status);
            Vec::new()
        }
    }
}

/// NdisFRegisterFilterDriver.
///
/// # Safety
///
/// `driver` must be our driver object, in DriverEntry.
unsafe fn register_filter(driver: *mut DRIVER_OBJECT) -> NDIS_STATUS {
    let names =
        Names { friendly: unicode(FRIENDLY_NAME), unique: unicode(UNIQUE_NAME), service: unicode(SERVICE_NAME) };
    let characteristics = filter::characteristics(&names);
    let mut handle: NDIS_HANDLE = null_mut();
    // SAFETY: valid driver object, characteristics and out pointer; the
    // driver object doubles as FilterDriverContext (unused).
    let status = unsafe { NdisFRegisterFilterDriver(driver, driver.cast(), &characteristics, &mut handle) };
    if status == NDIS_STATUS_SUCCESS {
        FILTER_DRIVER.store(handle, Ordering::Release);
    }
    status
}

/// NdisRegisterDeviceEx for `\Device\PortWatch`, SYSTEM/Administrators only.
fn register_device() -> NDIS_STATUS {
    let mut device_name = unicode(DEVICE_NAME);
    let mut link_name = unicode(LINK_NAME);
    let sddl = unicode(DEVICE_SDDL);
    // Only these four: no IRP_MJ_PNP or IRP_MJ_POWER entries (R36).
    let mut dispatch: [DRIVER_DISPATCH; IRP_MJ_MAXIMUM_FUNCTION as usize + 1] =
        [None; IRP_MJ_MAXIMUM_FUNCTION as usize + 1];
    for major in [IRP_MJ_CREATE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_DEVICE_CONTROL] {
        dispatch[usize::from(major)] = Some(device::dispatch);
    }
    let attributes = NDIS_DEVICE_OBJECT_ATTRIBUTES {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES,
            Revision: NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1,
            Size: NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1,
        },
        DeviceName: &mut device_name,
        SymbolicName: &mut link_name,
        MajorFunctions: dispatch.as_mut_ptr(),
        ExtensionSize: 0,
        DefaultSDDLString: &sddl,
        DeviceClassGuid: core::ptr::null(),
    };
    let mut device_object: *mut DEVICE_OBJECT = null_mut();
    let mut handle: NDIS_HANDLE = null_mut();
    // SAFETY: the filter driver handle is registered; the attributes and
    // everything they point to outlive the call (NDIS copies what it keeps).
    let status = unsafe {
        NdisRegisterDeviceEx(FILTER_DRIVER.load(Ordering::Acquire), &attributes, &mut device_object, &mut handle)
    };
    if status == NDIS_STATUS_SUCCESS {
        DEVICE.store(handle, Ordering::Release);
    }
    status
}

fn free_globals(irql: &mut Passive) {
    let globals = GLOBALS.swap(null_mut(), Ordering::AcqRel);
    if globals.is_null() {
        return;
    }
    // SAFETY: from Box::into_raw in DriverEntry; nothing can reach it any
    // more (NDIS and the I/O manager no longer call us).
    let globals = unsafe { Box::from_raw(globals) };
    debug_assert!(globals.modules.is_empty(irql), "NdisFDeregisterFilterDriver detaches every module");
    drop(globals);
}

/// DriverUnload (PASSIVE_LEVEL). The I/O manager calls it only once no
/// handle to the control device is open.
unsafe extern "system" fn driver_unload(_driver: *const DRIVER_OBJECT) {
    // SAFETY: DriverUnload runs at PASSIVE_LEVEL (R5).
    let mut irql = unsafe { Passive::new_unchecked() };
    let device = DEVICE.swap(null_mut(), Ordering::AcqRel);
    if !device.is_null() {
        // SAFETY: registered in DriverEntry, deregistered once.
        unsafe { NdisDeregisterDeviceEx(device) };
    }
    let filter = FILTER_DRIVER.swap(null_mut(), Ordering::AcqRel);
    if !filter.is_null() {
        // SAFETY: registered in DriverEntry, deregistered once; returns only
        // after every module has been paused and detached.
        unsafe { NdisFDeregisterFilterDriver(filter) };
    }
    free_globals(&mut irql);
    trace!(DPFLTR_INFO_LEVEL, "unloaded");
}
