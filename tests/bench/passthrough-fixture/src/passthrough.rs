//! The pass-through filter: registers like PortWatch and forwards every NBL
//! untouched (completing sends and returning receives while paused, as NDIS
//! requires). Its per-packet cost is the baseline PortWatch is measured
//! against. One module at a time (the benchmarks attach one adapter).
#![allow(clippy::missing_safety_doc)] // NDIS callbacks: NDIS's contracts

use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use ndis_sys::*;

/// NTSTATUS of success.
const STATUS_SUCCESS: NTSTATUS = 0;

static FILTER_DRIVER: AtomicPtr<core::ffi::c_void> = AtomicPtr::new(null_mut());

/// The one module: NDIS's handle for it and whether it is running.
struct Module {
    handle: AtomicPtr<core::ffi::c_void>,
    running: AtomicBool,
    attached: AtomicBool,
}

static MODULE: Module =
    Module { handle: AtomicPtr::new(null_mut()), running: AtomicBool::new(false), attached: AtomicBool::new(false) };

static FRIENDLY_NAME: [u16; 24] = ascii_utf16(b"Bench pass-through LWF\0\0");
static UNIQUE_NAME: [u16; 39] = ascii_utf16(b"{5E0B3C2A-7D14-4F6B-9A80-3C6E1F2D4B97}\0");
static SERVICE_NAME: [u16; 10] = ascii_utf16(b"PortWatch\0");

/// Widens an ASCII byte string (NUL-terminated by the caller) to UTF-16.
const fn ascii_utf16<const N: usize>(s: &[u8; N]) -> [u16; N] {
    let mut w = [0u16; N];
    let mut i = 0;
    while i < N {
        w[i] = s[i] as u16;
        i += 1;
    }
    w
}

/// A counted string over a static NUL-terminated UTF-16 array.
fn unicode(s: &'static [u16]) -> UNICODE_STRING {
    let chars = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    let bytes = (chars * 2) as u16;
    // NDIS only reads these strings.
    UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: s.as_ptr().cast_mut() }
}

fn characteristics() -> NDIS_FILTER_DRIVER_CHARACTERISTICS {
    NDIS_FILTER_DRIVER_CHARACTERISTICS {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS,
            Revision: NDIS_FILTER_CHARACTERISTICS_REVISION_2,
            Size: NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2,
        },
        MajorNdisVersion: NDIS_FILTER_MAJOR_VERSION,
        MinorNdisVersion: NDIS_FILTER_MINOR_VERSION,
        MajorDriverVersion: 1,
        MinorDriverVersion: 0,
        Flags: 0,
        FriendlyName: unicode(&FRIENDLY_NAME),
        UniqueName: unicode(&UNIQUE_NAME),
        ServiceName: unicode(&SERVICE_NAME),
        SetOptionsHandler: None,
        SetFilterModuleOptionsHandler: None,
        AttachHandler: Some(attach),
        DetachHandler: Some(detach),
        RestartHandler: Some(restart),
        PauseHandler: Some(pause),
        SendNetBufferListsHandler: Some(send),
        SendNetBufferListsCompleteHandler: Some(send_complete),
        CancelSendNetBufferListsHandler: None,
        ReceiveNetBufferListsHandler: Some(receive),
        ReturnNetBufferListsHandler: Some(return_nbls),
        OidRequestHandler: None,
        OidRequestCompleteHandler: None,
        CancelOidRequestHandler: None,
        DevicePnPEventNotifyHandler: None,
        NetPnPEventHandler: None,
        StatusHandler: Some(status),
        DirectOidRequestHandler: None,
        DirectOidRequestCompleteHandler: None,
        CancelDirectOidRequestHandler: None,
    }
}

/// Registers the pass-through filter (PASSIVE_LEVEL).
///
/// # Safety
/// Called once by the I/O manager with its driver object.
#[no_mangle]
pub unsafe extern "system" fn DriverEntry(driver: *mut DRIVER_OBJECT, _registry: *mut UNICODE_STRING) -> NTSTATUS {
    let characteristics = characteristics();
    let mut handle: NDIS_HANDLE = null_mut();
    // SAFETY: our driver object, valid characteristics and out pointer.
    let status = unsafe { NdisFRegisterFilterDriver(driver, driver.cast(), &characteristics, &mut handle) };
    if status != NDIS_STATUS_SUCCESS {
        return status;
    }
    FILTER_DRIVER.store(handle, Ordering::Release);
    // SAFETY: DriverEntry may set its driver object's unload routine.
    unsafe { (*driver).DriverUnload = Some(driver_unload) };
    STATUS_SUCCESS
}

/// DriverUnload (PASSIVE_LEVEL): deregisters the filter.
unsafe extern "system" fn driver_unload(_driver: *const DRIVER_OBJECT) {
    // SAFETY: the handle NdisFRegisterFilterDriver returned, deregistered once.
    unsafe { NdisFDeregisterFilterDriver(FILTER_DRIVER.swap(null_mut(), Ordering::AcqRel)) };
}

/// FilterAttach: takes the one module slot; the module starts paused.
unsafe extern "system" fn attach(
    filter_handle: NDIS_HANDLE,
    _driver_context: NDIS_HANDLE,
    _params: *mut NDIS_FILTER_ATTACH_PARAMETERS,
) -> NDIS_STATUS {
    if MODULE.attached.swap(true, Ordering::AcqRel) {
        return NDIS_STATUS_RESOURCES;
    }
    MODULE.handle.store(filter_handle, Ordering::Release);
    let attributes = NDIS_FILTER_ATTRIBUTES {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES,
            Revision: NDIS_FILTER_ATTRIBUTES_REVISION_1,
            Size: NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1,
        },
        Flags: 0,
    };
    let context = (&raw const MODULE).cast_mut().cast();
    // SAFETY: NDIS's handle for this attach; a static context; valid attributes.
    let status = unsafe { NdisFSetAttributes(filter_handle, context, &attributes) };
    if status != NDIS_STATUS_SUCCESS {
        MODULE.attached.store(false, Ordering::Release);
    }
    status
}

unsafe extern "system" fn detach(_context: NDIS_HANDLE) {
    MODULE.attached.store(false, Ordering::Release);
}

unsafe extern "system" fn restart(_context: NDIS_HANDLE, _params: *mut NDIS_FILTER_RESTART_PARAMETERS) -> NDIS_STATUS {
    MODULE.running.store(true, Ordering::Release);
    NDIS_STATUS_SUCCESS
}

unsafe extern "system" fn pause(_context: NDIS_HANDLE, _params: *mut NDIS_FILTER_PAUSE_PARAMETERS) -> NDIS_STATUS {
    MODULE.running.store(false, Ordering::Release);
    NDIS_STATUS_SUCCESS
}

fn handle() -> NDIS_HANDLE {
    MODULE.handle.load(Ordering::Relaxed)
}

unsafe extern "system" fn send(_context: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, port: NDIS_PORT_NUMBER, flags: u32) {
    if !MODULE.running.load(Ordering::Acquire) {
        let mut nbl = nbls;
        while !nbl.is_null() {
            // SAFETY: NDIS hands us the chain until we complete it.
            unsafe {
                (*nbl).Status = NDIS_STATUS_PAUSED;
                nbl = (*nbl).Next;
            }
        }
        let complete =
            if flags & NDIS_SEND_FLAGS_DISPATCH_LEVEL != 0 { NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL } else { 0 };
        // SAFETY: completing the NBLs we were given, once.
        unsafe { NdisFSendNetBufferListsComplete(handle(), nbls, complete) };
        return;
    }
    // SAFETY: passing the chain down unchanged.
    unsafe { NdisFSendNetBufferLists(handle(), nbls, port, flags) };
}

unsafe extern "system" fn send_complete(_context: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, flags: u32) {
    // SAFETY: completing up NBLs sent through us.
    unsafe { NdisFSendNetBufferListsComplete(handle(), nbls, flags) };
}

unsafe extern "system" fn receive(
    _context: NDIS_HANDLE,
    nbls: *mut NET_BUFFER_LIST,
    port: NDIS_PORT_NUMBER,
    count: u32,
    flags: u32,
) {
    if !MODULE.running.load(Ordering::Acquire) {
        if flags & NDIS_RECEIVE_FLAGS_RESOURCES == 0 {
            let back =
                if flags & NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL != 0 { NDIS_RETURN_FLAGS_DISPATCH_LEVEL } else { 0 };
            // SAFETY: returning NBLs we own, once.
            unsafe { NdisFReturnNetBufferLists(handle(), nbls, back) };
        }
        return;
    }
    // SAFETY: indicating the chain up unchanged.
    unsafe { NdisFIndicateReceiveNetBufferLists(handle(), nbls, port, count, flags) };
}

unsafe extern "system" fn return_nbls(_context: NDIS_HANDLE, nbls: *mut NET_BUFFER_LIST, flags: u32) {
    // SAFETY: returning NBLs indicated through us.
    unsafe { NdisFReturnNetBufferLists(handle(), nbls, flags) };
}

unsafe extern "system" fn status(_context: NDIS_HANDLE, indication: *mut NDIS_STATUS_INDICATION) {
    // SAFETY: forwarding the indication unchanged.
    unsafe { NdisFIndicateStatus(handle(), indication) };
}
