//! Filter driver registration: NdisFRegisterFilterDriver (which calls
//! FilterSetOptions before it returns) and NdisFDeregisterFilterDriver
//! (which pauses and detaches every module before it returns).

use core::ffi::c_void;

use ndis_sys::{
    DRIVER_OBJECT, NDIS_FILTER_CHARACTERISTICS_REVISION_1, NDIS_FILTER_CHARACTERISTICS_REVISION_2,
    NDIS_FILTER_DRIVER_CHARACTERISTICS, NDIS_FILTER_MAJOR_VERSION, NDIS_HANDLE,
    NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS, NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_1,
    NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2, NDIS_STATUS, NDIS_STATUS_BAD_CHARACTERISTICS,
    NDIS_STATUS_BAD_VERSION, NDIS_STATUS_FAILURE, NDIS_STATUS_INVALID_PARAMETER, NDIS_STATUS_SUCCESS, UNICODE_STRING,
};

use super::{model, ndis_violation, raise, subcodes, win64};
use crate::imports::Import;
use crate::verifier::Violation;
use crate::{irql, stack};

/// A registered filter driver.
pub(crate) struct FilterRec {
    pub handle: usize,
    pub driver_object: usize,
    pub context: usize,
    pub chars: NDIS_FILTER_DRIVER_CHARACTERISTICS,
    pub info: FilterInfo,
}

// SAFETY: the copied characteristics hold pointers into the driver image
// (handlers, name buffers), valid while it is loaded; the model only reads
// them under its mutex.
unsafe impl Send for FilterRec {}

/// What a driver registered, as the session reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterInfo {
    /// NDIS version it asked for (major, minor).
    pub ndis_version: (u8, u8),
    /// The driver's own version (MajorDriverVersion, MinorDriverVersion).
    pub driver_version: (u8, u8),
    /// FriendlyName.
    pub friendly_name: String,
    /// UniqueName ("{GUID}").
    pub unique_name: String,
    /// ServiceName.
    pub service_name: String,
    /// Names of the handlers it left NULL.
    pub null_handlers: Vec<&'static str>,
}

/// Reads a UNICODE_STRING the driver passed.
///
/// # Safety
/// `s` is a readable UNICODE_STRING whose Buffer holds Length bytes.
pub(crate) unsafe fn read_unicode(s: &UNICODE_STRING) -> String {
    if s.Buffer.is_null() || s.Length == 0 {
        return String::new();
    }
    // SAFETY: per the contract.
    let units = unsafe { std::slice::from_raw_parts(s.Buffer, usize::from(s.Length) / 2) };
    String::from_utf16_lossy(units)
}

fn null_handlers(c: &NDIS_FILTER_DRIVER_CHARACTERISTICS) -> Vec<&'static str> {
    let all: [(&'static str, bool); 20] = [
        ("FilterSetOptions", c.SetOptionsHandler.is_none()),
        ("FilterSetModuleOptions", c.SetFilterModuleOptionsHandler.is_none()),
        ("FilterAttach", c.AttachHandler.is_none()),
        ("FilterDetach", c.DetachHandler.is_none()),
        ("FilterRestart", c.RestartHandler.is_none()),
        ("FilterPause", c.PauseHandler.is_none()),
        ("FilterSendNetBufferLists", c.SendNetBufferListsHandler.is_none()),
        ("FilterSendNetBufferListsComplete", c.SendNetBufferListsCompleteHandler.is_none()),
        ("FilterCancelSendNetBufferLists", c.CancelSendNetBufferListsHandler.is_none()),
        ("FilterReceiveNetBufferLists", c.ReceiveNetBufferListsHandler.is_none()),
        ("FilterReturnNetBufferLists", c.ReturnNetBufferListsHandler.is_none()),
        ("FilterOidRequest", c.OidRequestHandler.is_none()),
        ("FilterOidRequestComplete", c.OidRequestCompleteHandler.is_none()),
        ("FilterCancelOidRequest", c.CancelOidRequestHandler.is_none()),
        ("FilterDevicePnPEventNotify", c.DevicePnPEventNotifyHandler.is_none()),
        ("FilterNetPnPEvent", c.NetPnPEventHandler.is_none()),
        ("FilterStatus", c.StatusHandler.is_none()),
        ("FilterDirectOidRequest", c.DirectOidRequestHandler.is_none()),
        ("FilterDirectOidRequestComplete", c.DirectOidRequestCompleteHandler.is_none()),
        ("FilterCancelDirectOidRequest", c.CancelDirectOidRequestHandler.is_none()),
    ];
    all.iter().filter(|(_, null)| *null).map(|(n, _)| *n).collect()
}

/// Why NDIS refuses a characteristics structure, if it does: header,
/// version, mandatory handlers and the pairs that must come together.
fn validate(c: &NDIS_FILTER_DRIVER_CHARACTERISTICS) -> Result<(), (NDIS_STATUS, String)> {
    let h = c.Header;
    let min_size = match h.Revision {
        NDIS_FILTER_CHARACTERISTICS_REVISION_1 => NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_1,
        NDIS_FILTER_CHARACTERISTICS_REVISION_2 => NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2,
        r => return Err((NDIS_STATUS_BAD_CHARACTERISTICS, format!("unknown revision {r}"))),
    };
    if h.Type != NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS || h.Size < min_size {
        return Err((NDIS_STATUS_BAD_CHARACTERISTICS, format!("bad header {h:?}")));
    }
    if c.MajorNdisVersion != NDIS_FILTER_MAJOR_VERSION || ![0, 1, 20, 30].contains(&c.MinorNdisVersion) {
        let v = (c.MajorNdisVersion, c.MinorNdisVersion);
        return Err((NDIS_STATUS_BAD_VERSION, format!("NDIS version {v:?} is not one NDIS 6.30 accepts")));
    }
    let mandatory =
        [c.AttachHandler.is_none(), c.DetachHandler.is_none(), c.RestartHandler.is_none(), c.PauseHandler.is_none()];
    if mandatory.contains(&true) {
        return Err((NDIS_STATUS_BAD_CHARACTERISTICS, "Attach, Detach, Restart and Pause are mandatory".into()));
    }
    let pairs = [
        ("OidRequest", c.OidRequestHandler.is_some(), c.OidRequestCompleteHandler.is_some()),
        (
            "ReceiveNetBufferLists/ReturnNetBufferLists",
            c.ReceiveNetBufferListsHandler.is_some(),
            c.ReturnNetBufferListsHandler.is_some(),
        ),
        (
            "SendNetBufferLists/SendNetBufferListsComplete",
            c.SendNetBufferListsHandler.is_some(),
            c.SendNetBufferListsCompleteHandler.is_some(),
        ),
    ];
    if let Some((name, ..)) = pairs.iter().find(|(_, a, b)| a != b) {
        return Err((NDIS_STATUS_BAD_CHARACTERISTICS, format!("{name} handlers must come together")));
    }
    Ok(())
}

type SetOptionsFn = unsafe extern "win64" fn(NDIS_HANDLE, NDIS_HANDLE) -> NDIS_STATUS;

/// `NdisFRegisterFilterDriver`.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisFRegisterFilterDriver(
    driver_object: *mut DRIVER_OBJECT,
    context: NDIS_HANDLE,
    chars: *const NDIS_FILTER_DRIVER_CHARACTERISTICS,
    out: *mut NDIS_HANDLE,
) -> NDIS_STATUS {
    irql::require("NdisFRegisterFilterDriver", irql::PASSIVE, irql::PASSIVE);
    let registered = stack::on_host(|| {
        if driver_object.is_null() || chars.is_null() || out.is_null() {
            return Err((NDIS_STATUS_INVALID_PARAMETER, "NULL argument".to_string()));
        }
        // SAFETY: non-NULL; the driver passes its characteristics, which
        // are at least revision 1 in size (checked against Header.Size
        // before any field past it is trusted).
        let c = unsafe { read_chars(chars) };
        validate(&c)?;
        let mut m = model();
        if m.filter.is_some() {
            return Err((NDIS_STATUS_FAILURE, "a filter driver is already registered".into()));
        }
        let handle = m.new_handle();
        // SAFETY: the names are UNICODE_STRINGs inside the structure.
        let info = unsafe {
            FilterInfo {
                ndis_version: (c.MajorNdisVersion, c.MinorNdisVersion),
                driver_version: (c.MajorDriverVersion, c.MinorDriverVersion),
                friendly_name: read_unicode(&c.FriendlyName),
                unique_name: read_unicode(&c.UniqueName),
                service_name: read_unicode(&c.ServiceName),
                null_handlers: null_handlers(&c),
            }
        };
        m.filter = Some(FilterRec {
            handle,
            driver_object: driver_object as usize,
            context: context as usize,
            chars: c,
            info,
        });
        Ok((handle, c.SetOptionsHandler))
    });
    let (handle, set_options) = match registered {
        Ok(r) => r,
        Err((status, _why)) => return status,
    };
    // SAFETY: `out` is the driver's handle variable (checked non-NULL).
    unsafe { *out = handle as NDIS_HANDLE };
    let Some(set_options) = set_options else {
        return NDIS_STATUS_SUCCESS;
    };
    // SAFETY: the driver registered this as its FilterSetOptions.
    let f: SetOptionsFn = unsafe { win64(set_options) };
    model().count("FilterSetOptions");
    // Nested driver calls start from the host stack, never from the
    // caller's small driver stack.
    let called = stack::on_host(|| {
        // SAFETY: calling the driver's handler with the arguments NDIS passes.
        stack::call_driver_at("FilterSetOptions", irql::PASSIVE, || unsafe { f(handle as NDIS_HANDLE, context) })
    });
    let status = match called {
        Ok(s) => s,
        Err(v) => crate::stack::leave_driver_call(v),
    };
    if status != NDIS_STATUS_SUCCESS {
        model().filter = None;
    }
    status
}

/// Copies the characteristics, zero-extending a revision-1 structure.
///
/// # Safety
/// `chars` points to at least `Header.Size` readable bytes (and at least
/// the header).
unsafe fn read_chars(chars: *const NDIS_FILTER_DRIVER_CHARACTERISTICS) -> NDIS_FILTER_DRIVER_CHARACTERISTICS {
    // SAFETY: NDIS_FILTER_DRIVER_CHARACTERISTICS is plain data (NULL
    // handlers are valid).
    let mut c: NDIS_FILTER_DRIVER_CHARACTERISTICS = unsafe { core::mem::zeroed() };
    // SAFETY: the header is readable per the contract.
    let size = usize::from(unsafe { (*chars).Header.Size }).min(core::mem::size_of_val(&c));
    // SAFETY: `size` bytes are readable per the contract; `c` is large enough.
    unsafe {
        core::ptr::copy_nonoverlapping(
            chars.cast::<u8>(),
            (&mut c as *mut NDIS_FILTER_DRIVER_CHARACTERISTICS).cast::<u8>(),
            size,
        )
    };
    c
}

/// `NdisFDeregisterFilterDriver`: pauses and detaches every module first.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisFDeregisterFilterDriver(handle: NDIS_HANDLE) {
    irql::require("NdisFDeregisterFilterDriver", irql::PASSIVE, irql::PASSIVE);
    let known = stack::on_host(|| model().filter.as_ref().map(|f| f.handle) == Some(handle as usize));
    if !known {
        raise(bad_handle("NdisFDeregisterFilterDriver", handle));
    }
    if let Err(v) = stack::on_host(super::module::tear_down_all) {
        crate::stack::leave_driver_call(v);
    }
    stack::on_host(|| {
        let mut m = model();
        m.filter = None;
        m.retired.insert(handle as usize, "filter driver handle");
    });
}

/// A violation for an unknown or stale handle passed to `function`.
pub(crate) fn bad_handle(function: &str, handle: NDIS_HANDLE) -> Violation {
    let what = model().retired.get(&(handle as usize)).copied();
    let detail = match what {
        Some(kind) => format!("{function}: {handle:p} is a {kind} that is no longer valid"),
        None => format!("{function}: {handle:p} is not a handle NDIS gave out"),
    };
    ndis_violation("invalid NDIS handle", subcodes::BAD_HANDLE, handle as u64, 0, detail)
}

/// What the driver registered, if anything.
pub(crate) fn registered_filter() -> Option<FilterInfo> {
    model().filter.as_ref().map(|f| f.info.clone())
}

/// The characteristics, driver context and handle of the registered filter.
pub(crate) fn filter_snapshot() -> Option<(NDIS_FILTER_DRIVER_CHARACTERISTICS, usize, usize)> {
    model().filter.as_ref().map(|f| (f.chars, f.context, f.handle))
}

/// The filter driver handle, if `handle` is it.
pub(crate) fn is_filter_handle(handle: *mut c_void) -> bool {
    model().filter.as_ref().is_some_and(|f| f.handle == handle as usize)
}

/// Checks made right after DriverEntry returned success: it registered a
/// filter driver.
pub(crate) fn call_driver_entry_checks() -> Result<FilterInfo, String> {
    registered_filter().ok_or_else(|| "DriverEntry returned success without registering a filter driver".into())
}

pub(super) fn imports() -> Vec<Import> {
    vec![
        Import::ndis("NdisFRegisterFilterDriver", NdisFRegisterFilterDriver as *const () as usize),
        Import::ndis("NdisFDeregisterFilterDriver", NdisFDeregisterFilterDriver as *const () as usize),
    ]
}
