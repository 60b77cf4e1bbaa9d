//! The control device: NdisRegisterDeviceEx, NdisDeregisterDeviceEx and
//! NdisGetDeviceReservedExtension, over the I/O manager model.

use core::ffi::c_void;

use ndis_sys::{
    DEVICE_OBJECT, DRIVER_DISPATCH, IRP_MJ_PNP, IRP_MJ_POWER, NDIS_DEVICE_OBJECT_ATTRIBUTES,
    NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1, NDIS_HANDLE, NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES,
    NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1, NDIS_STATUS, NDIS_STATUS_INVALID_PARAMETER, NDIS_STATUS_SUCCESS,
};

use super::filter::{bad_handle, is_filter_handle, read_unicode};
use super::{model, raise};
use crate::imports::Import;
use crate::io::IRP_MJ_COUNT;
use crate::{io, irql, stack};

/// Bytes NDIS keeps for itself at the start of a device extension; the
/// driver's part (NdisGetDeviceReservedExtension) follows.
const NDIS_RESERVED: usize = 64;

pub(crate) struct DeviceRec {
    handle: usize,
    device: usize,
    name: String,
    symlink: String,
}

/// The registered control device: (device name, symbolic link name).
pub(crate) fn control_device() -> Option<(String, String)> {
    model().device.as_ref().map(|d| (d.name.clone(), d.symlink.clone()))
}

/// What is still registered when unload returned: the filter driver and/or
/// the control device (R5).
pub(crate) fn call_unload_checks() -> Vec<String> {
    let m = model();
    let mut left = Vec::new();
    if m.filter.is_some() {
        left.push("the filter driver is still registered (NdisFDeregisterFilterDriver not called)".to_string());
    }
    if let Some(d) = &m.device {
        left.push(format!("the control device {} is still registered (NdisDeregisterDeviceEx not called)", d.name));
    }
    left
}

/// Why NDIS refuses these attributes, if it does.
///
/// # Safety
/// `attrs` is NULL or points to readable attributes whose MajorFunctions
/// (when non-NULL) holds IRP_MJ_MAXIMUM_FUNCTION + 1 entries.
unsafe fn validate(
    attrs: *const NDIS_DEVICE_OBJECT_ATTRIBUTES,
) -> Result<(NDIS_DEVICE_OBJECT_ATTRIBUTES, [DRIVER_DISPATCH; IRP_MJ_COUNT]), &'static str> {
    if attrs.is_null() {
        return Err("NULL attributes");
    }
    // SAFETY: per the contract.
    let a = unsafe { *attrs };
    let h = a.Header;
    if h.Type != NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES
        || h.Revision != NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1
        || h.Size < NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1
    {
        return Err("bad NDIS_DEVICE_OBJECT_ATTRIBUTES header");
    }
    if a.DeviceName.is_null() || a.MajorFunctions.is_null() {
        return Err("DeviceName and MajorFunctions are required");
    }
    // SAFETY: per the contract, the table has IRP_MJ_COUNT entries.
    let table: [DRIVER_DISPATCH; IRP_MJ_COUNT] = unsafe { *a.MajorFunctions.cast::<[DRIVER_DISPATCH; IRP_MJ_COUNT]>() };
    if table[usize::from(IRP_MJ_PNP)].is_some() || table[usize::from(IRP_MJ_POWER)].is_some() {
        return Err("IRP_MJ_PNP and IRP_MJ_POWER belong to NDIS (R36)");
    }
    Ok((a, table))
}

/// `NdisRegisterDeviceEx`.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisRegisterDeviceEx(
    owner: NDIS_HANDLE,
    attrs: *const NDIS_DEVICE_OBJECT_ATTRIBUTES,
    out_device: *mut *mut DEVICE_OBJECT,
    out_handle: *mut NDIS_HANDLE,
) -> NDIS_STATUS {
    irql::require("NdisRegisterDeviceEx", irql::PASSIVE, irql::PASSIVE);
    let r = stack::on_host(|| {
        if !is_filter_handle(owner) {
            return Err(Some(bad_handle("NdisRegisterDeviceEx", owner)));
        }
        if out_device.is_null() || out_handle.is_null() {
            return Err(None);
        }
        // SAFETY: the driver's attributes.
        let (a, table) = unsafe { validate(attrs) }.map_err(|_| None)?;
        // SAFETY: validated non-NULL names.
        let name = unsafe { read_unicode(&*a.DeviceName) };
        // SAFETY: as above; SymbolicName is optional.
        let symlink = if a.SymbolicName.is_null() { String::new() } else { unsafe { read_unicode(&*a.SymbolicName) } };
        let driver_object = model().filter.as_ref().map(|f| f.driver_object).unwrap_or(0);
        if model().device.is_some() {
            return Err(None);
        }
        let ext = NDIS_RESERVED + a.ExtensionSize as usize;
        let Some(device) = io::create_device(driver_object as *mut _, &name, &symlink, ext, table) else {
            return Err(None);
        };
        let mut m = model();
        let handle = m.new_handle();
        m.device = Some(DeviceRec { handle, device: device as usize, name, symlink });
        Ok((device, handle))
    });
    match r {
        Ok((device, handle)) => {
            // SAFETY: checked non-NULL output pointers of the driver.
            unsafe {
                *out_device = device;
                *out_handle = handle as NDIS_HANDLE;
            }
            NDIS_STATUS_SUCCESS
        }
        Err(Some(v)) => raise(v),
        Err(None) => NDIS_STATUS_INVALID_PARAMETER,
    }
}

/// `NdisDeregisterDeviceEx`.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisDeregisterDeviceEx(handle: NDIS_HANDLE) {
    irql::require("NdisDeregisterDeviceEx", irql::PASSIVE, irql::PASSIVE);
    let r = stack::on_host(|| {
        let mut m = model();
        match m.device.take() {
            Some(d) if d.handle == handle as usize => {
                m.retired.insert(d.handle, "device handle");
                drop(m);
                io::delete_device(d.device as *mut DEVICE_OBJECT);
                Ok(())
            }
            other => {
                m.device = other;
                drop(m);
                Err(bad_handle("NdisDeregisterDeviceEx", handle))
            }
        }
    });
    if let Err(v) = r {
        raise(v)
    }
}

/// `NdisGetDeviceReservedExtension` (any IRQL).
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisGetDeviceReservedExtension(device: *mut DEVICE_OBJECT) -> *mut c_void {
    stack::on_host(|| {
        let known = model().device.as_ref().is_some_and(|d| d.device == device as usize);
        if !known || device.is_null() {
            return core::ptr::null_mut();
        }
        // SAFETY: a live device object the model created.
        let ext = unsafe { (*device).DeviceExtension };
        // SAFETY: the extension holds NDIS_RESERVED bytes before the driver's part.
        unsafe { ext.cast::<u8>().add(NDIS_RESERVED).cast() }
    })
}

pub(super) fn imports() -> Vec<Import> {
    vec![
        Import::ndis("NdisRegisterDeviceEx", NdisRegisterDeviceEx as *const () as usize),
        Import::ndis("NdisDeregisterDeviceEx", NdisDeregisterDeviceEx as *const () as usize),
        Import::ndis("NdisGetDeviceReservedExtension", NdisGetDeviceReservedExtension as *const () as usize),
    ]
}
