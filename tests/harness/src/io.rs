//! The I/O manager model: driver, device and file objects, IRPs with one
//! stack location, the CreateFile / DeviceIoControl / CloseHandle
//! equivalents, and IofCompleteRequest, with Driver Verifier's I/O checks.
//!
//! Semantics modelled (R37-R44):
//! * IRP_MJ_CREATE on open; a failed create sends nothing else.
//! * IRP_MJ_DEVICE_CONTROL, METHOD_BUFFERED: one SystemBuffer of
//!   max(in, out) bytes (NULL when both are 0), input copied in; on
//!   completion `Information` bytes are copied back for success and warning
//!   statuses, nothing for errors.
//! * IRP_MJ_CLEANUP when the last handle of a file object closes, even while
//!   IRPs on it are still in flight on other threads; IRP_MJ_CLOSE once they
//!   have all completed.
//! * Dispatch routines run at PASSIVE_LEVEL on the caller's thread.
//!
//! Layouts: every kernel type comes from ndis-sys, which asserts its x64
//! offsets; the IO_STACK_LOCATION parameters are written through ndis-sys's
//! wdm.h-layout views (`IoStackCreate`, `IoStackDeviceIoControl`), and
//! device objects get the full wdm.h size (`SIZEOF_DEVICE_OBJECT_WDM`).

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use core::ffi::c_void;
use ndis_sys::{
    IoStackCreate, IoStackDeviceIoControl, UserMode, DEVICE_OBJECT, DRIVER_DISPATCH, DRIVER_OBJECT,
    FILE_DEVICE_NETWORK, FILE_OBJECT, IO_SECURITY_CONTEXT, IO_STACK_LOCATION, IO_TYPE_DEVICE, IO_TYPE_DRIVER,
    IO_TYPE_FILE, IO_TYPE_IRP, IRP, IRP_MJ_MAXIMUM_FUNCTION, NTSTATUS, NT_SUCCESS, NT_WARNING,
    SIZEOF_DEVICE_OBJECT_WDM, SL_PENDING_RETURNED, UNICODE_STRING,
};

use crate::guarded::GuardedBuf;
use crate::imports::Import;
use crate::lent::{Lent, LentPage};
use crate::ndis::win64;
use crate::verifier::{self, codes, Violation};
use crate::{irql, stack};

pub use ndis_sys::{
    IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_HANDLE, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_PENDING, STATUS_SUCCESS,
};

/// Entries of a `MajorFunction` table: `IRP_MJ_MAXIMUM_FUNCTION + 1`.
pub const IRP_MJ_COUNT: usize = IRP_MJ_MAXIMUM_FUNCTION as usize + 1;

/// `MULTIPLE_IRP_COMPLETE_REQUESTS`: what a second IoCompleteRequest causes.
pub const MULTIPLE_IRP_COMPLETE_REQUESTS: u32 = 0x44;

/// 0xC9 parameter 1 values: documented ones, then the model's own for
/// checks Windows makes without a documented code (0x1000 and up).
pub mod c9 {
    /// IRQL changed across a dispatch routine.
    pub const IRQL_CHANGED: u64 = 0x05;
    /// IoCompleteRequest with STATUS_PENDING.
    pub const COMPLETE_PENDING: u64 = 0x06;
    /// IoCompleteRequest with a cancel routine still set.
    pub const CANCEL_ROUTINE_SET: u64 = 0x07;
    /// IoCompleteRequest above DISPATCH_LEVEL.
    pub const COMPLETE_ABOVE_DISPATCH: u64 = 0x0E;
    // I/O Verification error codes, from the "I/O Error Code" tables of
    // windows-driver-docs debugger/bug-check-0xc9--driver-verifier-iomanager-violation.md.
    /// Information larger than the output section of the system buffer (0x312).
    pub const INFORMATION_TOO_LARGE: u64 = 0x312;
    /// A dispatch routine returned without passing down or completing the
    /// IRP, or forgot to return STATUS_PENDING (0x226).
    pub const NOT_COMPLETED: u64 = 0x226;
    /// STATUS_PENDING returned without IoMarkIrpPending (0x23D).
    pub const PENDING_NOT_MARKED: u64 = 0x23D;
    /// IoMarkIrpPending without returning STATUS_PENDING (0x23E).
    pub const MARKED_NOT_PENDING: u64 = 0x23E;
    /// A dispatch routine returned a status inconsistent with the IRP's
    /// IoStatus.Status (0x224).
    pub const STATUS_MISMATCH: u64 = 0x224;
    // Harness choices: Windows documents no code for these.
    /// A pending IRP was never completed (within the watchdog): the I/O
    /// Verification page lists "IRPs that take a long time to complete and
    /// cancel" among its checks without a code. Also what an IRP still
    /// pending when its file object's IRP_MJ_CLOSE is due (all handles
    /// closed, CLEANUP done) reports: CLOSE cannot be sent and the driver
    /// cannot be unloaded (R37).
    pub const NEVER_COMPLETED: u64 = 0x1005;
    /// A dispatch routine was called other than at PASSIVE_LEVEL.
    pub const DISPATCH_NOT_PASSIVE: u64 = 0x1006;
    /// METHOD_BUFFERED output written past OutputBufferLength, inside a
    /// system buffer made longer by the input (R39: the output section is
    /// OutputBufferLength bytes; a write past it beyond the buffer faults
    /// on the guard page instead, see `crate::guarded`).
    pub const OUTPUT_PAST_LENGTH: u64 = 0x1007;
}

/// A `DEVICE_OBJECT` with wdm.h's size and alignment (windows-sys's struct
/// lacks the `DECLSPEC_ALIGN(16)` tail padding).
#[repr(C, align(16))]
struct DeviceObjectWdm {
    object: DEVICE_OBJECT,
    _tail: [u8; SIZEOF_DEVICE_OBJECT_WDM - core::mem::size_of::<DEVICE_OBJECT>()],
}

const _: () = assert!(core::mem::size_of::<DeviceObjectWdm>() == SIZEOF_DEVICE_OBJECT_WDM);

/// An IRP with its single stack location, as IoAllocateIrp lays it out.
#[repr(C, align(16))]
struct IrpBlock {
    irp: IRP,
    location: IO_STACK_LOCATION,
}

/// Counters of the I/O manager model.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IoStats {
    /// IRPs sent, by major function name.
    pub irps: BTreeMap<&'static str, u64>,
    /// IRPs whose dispatch routine returned STATUS_PENDING.
    pub pended: u64,
    /// IRPs completed through IofCompleteRequest.
    pub completed: u64,
    /// CLEANUPs sent while IRPs on the file object were still in flight.
    pub cleanups_with_irps_in_flight: u64,
    /// IRPs CancelIoEx asked to cancel.
    pub cancelled: u64,
}

struct DeviceRec {
    object: Box<DeviceObjectWdm>,
    _extension: Box<[u64]>,
    name: String,
    symlink: String,
    major: [DRIVER_DISPATCH; IRP_MJ_COUNT],
    deleted: bool,
}

// SAFETY: the raw pointers inside a DEVICE_OBJECT point to model objects
// that live as long as the session; access is serialised by the IO mutex or
// follows the I/O manager's rules for the driver.
unsafe impl Send for DeviceRec {}

struct FileRec {
    object: Box<FILE_OBJECT>,
    _name: Box<[u16]>,
    device: usize,
    handles: usize,
    in_flight: usize,
}

// SAFETY: as for DeviceRec: the FILE_OBJECT's pointers point into boxes
// this record owns or to session-long model objects.
unsafe impl Send for FileRec {}

struct IrpRec {
    completed: bool,
    /// SL_PENDING_RETURNED as it was at completion (the IRP is gone after).
    marked: bool,
    status: NTSTATUS,
    information: usize,
    out_len: u32,
    major: u8,
    /// The file object (its id) the IRP was sent for.
    file: u64,
    /// Cancels in progress (CancelIoEx): the IRP is not freed before they
    /// are over, as the I/O manager keeps a reference while it cancels.
    cancel_refs: u32,
    /// The dispatch routine returned STATUS_PENDING (the IRP is queued, not
    /// merely being dispatched).
    pended: bool,
    /// The dispatch routine had returned STATUS_PENDING when its file
    /// object's IRP_MJ_CLEANUP was sent: CLEANUP had it to cancel.
    pending_at_cleanup: bool,
}

#[derive(Default)]
struct IoState {
    devices: Vec<DeviceRec>,
    files: BTreeMap<u64, FileRec>,
    handles: BTreeMap<u64, u64>,
    irps: BTreeMap<usize, IrpRec>,
    next_id: u64,
    stats: IoStats,
}

static IO: Mutex<Option<IoState>> = Mutex::new(None);
static CHANGED: Condvar = Condvar::new();

struct Guard(MutexGuard<'static, Option<IoState>>);

impl std::ops::Deref for Guard {
    type Target = IoState;
    fn deref(&self) -> &IoState {
        self.0.as_ref().expect("initialised in io()")
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut IoState {
        self.0.as_mut().expect("initialised in io()")
    }
}

fn io() -> Guard {
    let mut g = IO.lock().unwrap_or_else(PoisonError::into_inner);
    g.get_or_insert_with(IoState::default);
    Guard(g)
}

/// Forgets every object (a new session).
pub fn reset() {
    *IO.lock().unwrap_or_else(PoisonError::into_inner) = Some(IoState::default());
}

/// What the I/O manager did so far.
pub fn stats() -> IoStats {
    io().stats.clone()
}

/// Handles still open.
pub fn open_handles() -> usize {
    io().handles.len()
}

/// A user-mode handle to a file object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(pub u64);

/// Why an I/O request did not reach the driver, or what the driver said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoError {
    /// The driver (or the I/O manager) failed the request with this status.
    Status(NTSTATUS),
    /// The verifier stopped the request.
    Violation(Violation),
}

impl From<Violation> for IoError {
    fn from(v: Violation) -> Self {
        IoError::Violation(v)
    }
}

/// Result of a DeviceIoControl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoctlResult {
    /// The final status.
    pub status: NTSTATUS,
    /// `IoStatus.Information` as the caller sees it (0 for errors).
    pub information: usize,
    /// The bytes copied back to the caller's output buffer.
    pub output: Vec<u8>,
}

/// The DRIVER_OBJECT of a loaded driver, with the strings it points to.
pub struct DriverObject {
    object: Box<DRIVER_OBJECT>,
    _name: Box<[u16]>,
    registry_path: Box<[u16]>,
    registry_string: Box<UNICODE_STRING>,
}

// SAFETY: the raw pointers inside point into the boxes this value owns.
unsafe impl Send for DriverObject {}

impl DriverObject {
    /// A driver object named `\Driver\<service>` for an image at
    /// `[start, start + size)`.
    pub fn new(service: &str, start: usize, size: usize) -> Self {
        // SAFETY: DRIVER_OBJECT is plain data; all-zero is valid (no handlers).
        let mut object: Box<DRIVER_OBJECT> = Box::new(unsafe { core::mem::zeroed() });
        let mut name: Box<[u16]> = format!("\\Driver\\{service}").encode_utf16().collect();
        let mut registry_path: Box<[u16]> =
            format!("\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\{service}").encode_utf16().collect();
        object.Type = IO_TYPE_DRIVER;
        object.Size = core::mem::size_of::<DRIVER_OBJECT>() as i16;
        object.DriverStart = start as *mut c_void;
        object.DriverSize = size as u32;
        object.DriverName = unicode(&mut name);
        let registry_string = Box::new(unicode(&mut registry_path));
        DriverObject { object, _name: name, registry_path, registry_string }
    }

    /// The object handed to DriverEntry and DriverUnload.
    pub fn as_ptr(&mut self) -> *mut DRIVER_OBJECT {
        &mut *self.object
    }

    /// The RegistryPath argument of DriverEntry.
    pub fn registry_path(&mut self) -> *mut UNICODE_STRING {
        let _ = &self.registry_path;
        &mut *self.registry_string
    }

    /// The DriverUnload routine the driver set, if any.
    pub fn unload_routine(&self) -> Option<usize> {
        self.object.DriverUnload.map(|f| f as usize)
    }
}

fn unicode(buf: &mut [u16]) -> UNICODE_STRING {
    let bytes = (buf.len() * 2) as u16;
    UNICODE_STRING { Length: bytes, MaximumLength: bytes, Buffer: buf.as_mut_ptr() }
}

/// Creates a device object named `name` (with `symlink` as its symbolic
/// link when not empty) whose IRPs go to `major`; None if the name is taken.
pub(crate) fn create_device(
    driver: *mut DRIVER_OBJECT,
    name: &str,
    symlink: &str,
    extension_size: usize,
    major: [DRIVER_DISPATCH; IRP_MJ_COUNT],
) -> Option<*mut DEVICE_OBJECT> {
    let mut st = io();
    if st.devices.iter().any(|d| {
        !d.deleted
            && (d.name.eq_ignore_ascii_case(name) || (!symlink.is_empty() && d.symlink.eq_ignore_ascii_case(symlink)))
    }) {
        return None;
    }
    let mut extension: Box<[u64]> = vec![0u64; extension_size.div_ceil(8).max(1)].into_boxed_slice();
    // SAFETY: DEVICE_OBJECT and its padding are plain data; all-zero is valid.
    let mut block: Box<DeviceObjectWdm> = Box::new(unsafe { core::mem::zeroed() });
    let object = &mut block.object;
    object.Type = IO_TYPE_DEVICE;
    object.Size = (SIZEOF_DEVICE_OBJECT_WDM + extension_size) as u16;
    object.ReferenceCount = 0;
    object.DriverObject = driver;
    object.DeviceExtension = extension.as_mut_ptr().cast();
    object.DeviceType = FILE_DEVICE_NETWORK;
    object.StackSize = 1;
    let ptr: *mut DEVICE_OBJECT = object;
    if !driver.is_null() {
        // SAFETY: the session's live driver object.
        unsafe {
            object.NextDevice = (*driver).DeviceObject;
            (*driver).DeviceObject = ptr;
        }
    }
    st.devices.push(DeviceRec {
        object: block,
        _extension: extension,
        name: name.to_owned(),
        symlink: symlink.to_owned(),
        major,
        deleted: false,
    });
    Some(ptr)
}

/// Deletes a device object (kept mapped until the session ends, so a late
/// reference reads stale data rather than freed memory).
pub(crate) fn delete_device(device: *mut DEVICE_OBJECT) {
    let mut st = io();
    if let Some(d) = st.devices.iter_mut().find(|d| std::ptr::eq(&d.object.object, device)) {
        d.deleted = true;
        let driver = d.object.object.DriverObject;
        if !driver.is_null() {
            // SAFETY: the session's live driver object; unlink the device.
            unsafe {
                if (*driver).DeviceObject == device {
                    (*driver).DeviceObject = d.object.object.NextDevice;
                }
            }
        }
    }
}

/// Resolves a user-mode or NT path to (device object, remaining file name).
fn resolve(st: &IoState, path: &str) -> Option<(usize, String)> {
    let (link_form, rest) = if let Some(r) = path.strip_prefix("\\\\.\\") {
        (true, r)
    } else if let Some(r) = path.strip_prefix("\\??\\").or_else(|| path.strip_prefix("\\DosDevices\\")) {
        (true, r)
    } else {
        (false, path)
    };
    st.devices.iter().filter(|d| !d.deleted).find_map(|d| {
        let target = if link_form { d.symlink.rsplit('\\').next().unwrap_or("") } else { d.name.as_str() };
        if target.is_empty() || rest.len() < target.len() || !rest[..target.len()].eq_ignore_ascii_case(target) {
            return None;
        }
        let tail = &rest[target.len()..];
        (tail.is_empty() || tail.starts_with('\\'))
            .then(|| (&d.object.object as *const DEVICE_OBJECT as usize, tail.to_owned()))
    })
}

/// Opens `path` (`\\.\Name`, `\DosDevices\Name` or `\Device\Name`, with an
/// optional file name after it): sends IRP_MJ_CREATE.
pub fn open(path: &str) -> Result<Handle, IoError> {
    let (device, file_id, file) = {
        let mut st = io();
        let Some((device, tail)) = resolve(&st, path) else {
            return Err(IoError::Status(STATUS_OBJECT_NAME_NOT_FOUND));
        };
        let mut name: Box<[u16]> = tail.encode_utf16().collect();
        // SAFETY: FILE_OBJECT is plain data; all-zero is valid.
        let mut object: Box<FILE_OBJECT> = Box::new(unsafe { core::mem::zeroed() });
        object.Type = IO_TYPE_FILE;
        object.Size = core::mem::size_of::<FILE_OBJECT>() as i16;
        object.DeviceObject = device as *mut DEVICE_OBJECT;
        object.FileName = unicode(&mut name);
        object.ReadAccess = true;
        object.WriteAccess = true;
        let file: *mut FILE_OBJECT = &mut *object;
        st.next_id += 1;
        let id = st.next_id;
        st.files.insert(id, FileRec { object, _name: name, device, handles: 0, in_flight: 1 });
        (device, id, file)
    };
    let mut security = IO_SECURITY_CONTEXT {
        SecurityQos: core::ptr::null_mut(),
        AccessState: core::ptr::null_mut(),
        DesiredAccess: 0x0012_019F,
        FullCreateOptions: 0,
    };
    let result = send_irp(
        device,
        file,
        file_id,
        IRP_MJ_CREATE,
        |loc| {
            // SAFETY: the live stack location of the IRP_MJ_CREATE being built.
            let create = unsafe { &mut *IoStackCreate(loc) };
            create.SecurityContext = &mut security;
            create.ShareAccess = 0;
        },
        None,
    );
    let mut st = io();
    match result {
        Ok(r) if NT_SUCCESS(r.status) => {
            let f = st.files.get_mut(&file_id).expect("file");
            f.in_flight -= 1;
            f.handles = 1;
            st.next_id += 1;
            let h = st.next_id;
            st.handles.insert(h, file_id);
            Ok(Handle(h))
        }
        Ok(r) => {
            st.files.remove(&file_id);
            Err(IoError::Status(r.status))
        }
        Err(v) => Err(IoError::Violation(v)),
    }
}

/// Another handle to the same file object (DuplicateHandle).
pub fn duplicate(handle: Handle) -> Result<Handle, IoError> {
    let mut st = io();
    let Some(&file_id) = st.handles.get(&handle.0) else { return Err(IoError::Status(STATUS_INVALID_HANDLE)) };
    st.files.get_mut(&file_id).expect("file").handles += 1;
    st.next_id += 1;
    let h = st.next_id;
    st.handles.insert(h, file_id);
    Ok(Handle(h))
}

/// Sends a METHOD_BUFFERED IRP_MJ_DEVICE_CONTROL with `input`, for
/// `out_len` output bytes; waits for it to complete.
pub fn ioctl(handle: Handle, code: u32, input: &[u8], out_len: u32) -> Result<IoctlResult, IoError> {
    assert_eq!(code & 3, 0, "only METHOD_BUFFERED IOCTLs are modelled");
    let (device, file, file_id) = {
        let mut st = io();
        let Some(&file_id) = st.handles.get(&handle.0) else { return Err(IoError::Status(STATUS_INVALID_HANDLE)) };
        let f = st.files.get_mut(&file_id).expect("file");
        f.in_flight += 1;
        (f.device, &mut *f.object as *mut FILE_OBJECT, file_id)
    };
    let size = input.len().max(out_len as usize);
    // max(in, out) bytes, the input first, the rest uninitialised (R39),
    // right before a guard page.
    let system_buffer: Option<GuardedBuf> = (size > 0).then(|| {
        let mut b = vec![0xCD_u8; size];
        b[..input.len()].copy_from_slice(input);
        GuardedBuf::new(
            &b,
            format!(
                "the SystemBuffer of IOCTL {code:#x} (InputBufferLength {}, OutputBufferLength {out_len})",
                input.len()
            ),
        )
    });
    let sb_ptr = system_buffer.as_ref().map_or(core::ptr::null_mut(), GuardedBuf::as_mut_ptr);
    let result = send_irp(
        device,
        file,
        file_id,
        IRP_MJ_DEVICE_CONTROL,
        |loc| {
            // SAFETY: the live stack location of the IRP_MJ_DEVICE_CONTROL being built.
            let control = unsafe { &mut *IoStackDeviceIoControl(loc) };
            control.OutputBufferLength = out_len;
            control.InputBufferLength.0 = input.len() as u32;
            control.IoControlCode.0 = code;
        },
        Some((sb_ptr, out_len)),
    );
    finish_irp_on(file_id);
    let r = result?;
    let contents = system_buffer.as_ref().map_or(Vec::new(), GuardedBuf::to_vec);
    check_output_section(code, input, out_len, &contents)?;
    if NT_SUCCESS(r.status) || NT_WARNING(r.status) {
        let n = r.information.min(out_len as usize);
        let output = contents[..n.min(contents.len())].to_vec();
        Ok(IoctlResult { status: r.status, information: r.information, output })
    } else {
        Ok(IoctlResult { status: r.status, information: 0, output: Vec::new() })
    }
}

/// One IRP on `file_id` is over: wake a closer waiting for it.
fn finish_irp_on(file_id: u64) {
    let mut st = io();
    if let Some(f) = st.files.get_mut(&file_id) {
        f.in_flight -= 1;
    }
    drop(st);
    CHANGED.notify_all();
}

/// IRPs sent on `handle`'s file object that are not complete yet (being
/// dispatched or pending).
pub fn pending_irps(handle: Handle) -> usize {
    irps_of(handle, |_| true)
}

/// IRPs on `handle`'s file object whose dispatch routine returned
/// STATUS_PENDING and that are not complete yet: the ones the driver has
/// queued. Unlike [`pending_irps`], an IRP still inside its dispatch
/// routine does not count (the driver may not have queued it yet).
pub fn pended_irps(handle: Handle) -> usize {
    irps_of(handle, |r| r.pended)
}

fn irps_of(handle: Handle, which: impl Fn(&IrpRec) -> bool) -> usize {
    let st = io();
    let Some(&file_id) = st.handles.get(&handle.0) else { return 0 };
    st.irps.values().filter(|r| r.file == file_id && !r.completed && which(r)).count()
}

/// `CancelIoEx(handle, NULL)`: IoCancelIrp on every IRP of the handle's file
/// object that is not complete yet, each as a call of its own into the
/// driver (the cancel routine runs at DISPATCH_LEVEL holding the cancel spin
/// lock, see `crate::cancel`). Returns how many had a cancel routine to call
/// (the others are marked `Irp->Cancel` only, as on Windows); 0 where
/// Windows would fail with ERROR_NOT_FOUND.
///
/// Thread-exit cancellation (IoCancelThreadIo) is not modelled: the model's
/// clients are host threads that block in [`ioctl`] until the IRP
/// completes, so they cannot exit with I/O pending.
pub fn cancel_io(handle: Handle) -> Result<usize, IoError> {
    let targets: Vec<usize> = {
        let mut st = io();
        let Some(&file_id) = st.handles.get(&handle.0) else { return Err(IoError::Status(STATUS_INVALID_HANDLE)) };
        let mut v = Vec::new();
        for (&irp, r) in st.irps.iter_mut() {
            if r.file == file_id && !r.completed {
                r.cancel_refs += 1;
                v.push(irp);
            }
        }
        v
    };
    let mut called = 0;
    let mut failed = None;
    for &irp in &targets {
        if failed.is_none() {
            match stack::call_driver("IoCancelIrp (CancelIoEx)", || crate::cancel::cancel_irp(irp as *mut IRP)) {
                Ok(true) => called += 1,
                Ok(false) => {}
                Err(v) => failed = Some(v),
            }
        }
        if let Some(r) = io().irps.get_mut(&irp) {
            r.cancel_refs -= 1;
            if r.cancel_refs == 0 && r.completed {
                crate::lent::retire(irp);
            }
        }
        CHANGED.notify_all();
    }
    io().stats.cancelled += targets.len() as u64;
    failed.map_or(Ok(called), |v| Err(IoError::Violation(v)))
}

/// Closes `handle`. The last handle of a file object sends IRP_MJ_CLEANUP
/// at once, then IRP_MJ_CLOSE after every IRP in flight on the file object
/// completed.
pub fn close(handle: Handle) -> Result<(), IoError> {
    let (file_id, device, file, in_flight) = {
        let mut st = io();
        let Some(file_id) = st.handles.remove(&handle.0) else { return Err(IoError::Status(STATUS_INVALID_HANDLE)) };
        let f = st.files.get_mut(&file_id).expect("file");
        f.handles -= 1;
        if f.handles > 0 {
            return Ok(());
        }
        let r = (file_id, f.device, &mut *f.object as *mut FILE_OBJECT, f.in_flight);
        if in_flight_nonzero(r.3) {
            st.stats.cleanups_with_irps_in_flight += 1;
        }
        // Which IRPs CLEANUP has to cancel: those already pended. The others
        // are still in their dispatch routine and may reach the driver's
        // queue only after CLEANUP looked at it (R37: IRPs may still arrive).
        for rec in st.irps.values_mut().filter(|rec| rec.file == file_id && !rec.completed) {
            rec.pending_at_cleanup = rec.pended;
        }
        r
    };
    let _ = in_flight;
    send_irp(device, file, file_id, IRP_MJ_CLEANUP, |_| {}, None)?;
    wait_idle(file_id)?;
    send_irp(device, file, file_id, IRP_MJ_CLOSE, |_| {}, None)?;
    io().files.remove(&file_id);
    Ok(())
}

fn in_flight_nonzero(n: usize) -> bool {
    n > 0
}

fn wait_idle(file_id: u64) -> Result<(), Violation> {
    let limit = verifier::config().watchdog;
    let deadline = Instant::now() + limit;
    let mut st = io();
    while st.files.get(&file_id).is_some_and(|f| f.in_flight > 0) {
        let now = Instant::now();
        if now >= deadline {
            let v = close_blocked(&st, file_id, limit);
            drop(st);
            return Err(recorded(v));
        }
        let (g, _) = CHANGED.wait_timeout(st.0, deadline - now).unwrap_or_else(PoisonError::into_inner);
        st = Guard(g);
    }
    Ok(())
}

/// Why CLOSE cannot be sent: which IRP of `file_id` is left, and who left
/// it. An IRP that was pending when CLEANUP was sent is CLEANUP's to cancel;
/// one that was still in its dispatch routine then (or arrived later) and
/// pended after is the dispatch routine's: after CLEANUP it must complete
/// new IRPs of the file object rather than queue them (R37).
fn close_blocked(st: &IoState, file_id: u64, limit: Duration) -> Violation {
    let left: Vec<(usize, &IrpRec)> =
        st.irps.iter().filter(|(_, r)| r.file == file_id && !r.completed).map(|(&i, r)| (i, r)).collect();
    let closed = |irp: usize| {
        format!(
            "the last handle was closed and IRP_MJ_CLEANUP returned, but IRP {irp:#x} on the file object is still \
             not complete after {limit:?}: IRP_MJ_CLOSE cannot be sent and the driver cannot unload"
        )
    };
    if let Some(&(irp, _)) = left.iter().find(|(_, r)| r.pending_at_cleanup) {
        return c9_violation(
            "IRP pending at CLOSE of its file object",
            c9::NEVER_COMPLETED,
            file_id,
            irp as u64,
            format!(
                "{}; it was pending when CLEANUP was sent (CLEANUP must complete or cancel the file object's \
                 pending IRPs, R37)",
                closed(irp)
            ),
        );
    }
    if let Some(&(irp, _)) = left.iter().find(|(_, r)| r.pended) {
        return c9_violation(
            "IRP pended after CLEANUP of its file object",
            c9::NEVER_COMPLETED,
            file_id,
            irp as u64,
            format!(
                "{}; its dispatch routine was still running when CLEANUP was sent and returned STATUS_PENDING \
                 after: the driver queued it while or after CLEANUP ran, and an IRP that reaches the driver after \
                 its file object's CLEANUP must be completed, not queued (R37: IRPs may still arrive after \
                 CLEANUP)",
                closed(irp)
            ),
        );
    }
    let irp = left.first().map_or(0, |&(i, _)| i);
    c9_violation(
        "IRP pending at CLOSE of its file object",
        c9::NEVER_COMPLETED,
        file_id,
        irp as u64,
        format!("{}; its dispatch routine has not returned (R37)", closed(irp)),
    )
}

fn c9_violation(rule: &'static str, p1: u64, p2: u64, p3: u64, detail: String) -> Violation {
    Violation::new(rule, codes::DRIVER_VERIFIER_IOMANAGER_VIOLATION, [p1, p2, p3, 0], detail)
}

/// The driver may write only the first OutputBufferLength bytes of the
/// system buffer (R39); past them, where the input made the buffer longer,
/// the input bytes must be as they were.
fn check_output_section(code: u32, input: &[u8], out_len: u32, contents: &[u8]) -> Result<(), IoError> {
    let out = out_len as usize;
    if input.len() <= out {
        return Ok(());
    }
    let Some(i) = (out..input.len()).find(|&i| contents[i] != input[i]) else { return Ok(()) };
    Err(IoError::Violation(recorded(c9_violation(
        "IOCTL output written past OutputBufferLength",
        c9::OUTPUT_PAST_LENGTH,
        u64::from(code),
        i as u64,
        format!(
            "IOCTL {code:#x}: byte {i} of the SystemBuffer changed, OutputBufferLength is {out} \
             (InputBufferLength {})",
            input.len()
        ),
    ))))
}

fn recorded(v: Violation) -> Violation {
    verifier::record(v.clone());
    v
}

fn major_name(major: u8) -> &'static str {
    match major {
        IRP_MJ_CREATE => "IRP_MJ_CREATE",
        IRP_MJ_CLOSE => "IRP_MJ_CLOSE",
        IRP_MJ_DEVICE_CONTROL => "IRP_MJ_DEVICE_CONTROL",
        IRP_MJ_CLEANUP => "IRP_MJ_CLEANUP",
        _ => "IRP_MJ_OTHER",
    }
}

/// Builds an IRP for `major` on `file`, lets `fill` write the parameters,
/// calls the dispatch routine and waits for completion.
fn send_irp(
    device: usize,
    file: *mut FILE_OBJECT,
    file_id: u64,
    major: u8,
    fill: impl FnOnce(*mut IO_STACK_LOCATION),
    buffered: Option<(*mut u8, u32)>,
) -> Result<IrpOutcome, Violation> {
    // IrpBlock is plain data; all-zero is valid. Inaccessible once completed.
    let mut block: LentPage<IrpBlock> = LentPage::zeroed(Lent::Irp, format!("the {} IRP", major_name(major)));
    let irp: *mut IRP = &mut block.irp;
    let location: *mut IO_STACK_LOCATION = &mut block.location;
    block.irp.Type = IO_TYPE_IRP;
    block.irp.Size = core::mem::size_of::<IrpBlock>() as u16;
    block.irp.StackCount = 1;
    block.irp.CurrentLocation = 1;
    block.irp.RequestorMode = UserMode;
    let (system_buffer, out_len) = buffered.unwrap_or((core::ptr::null_mut(), 0));
    block.irp.AssociatedIrp.SystemBuffer = system_buffer.cast();
    block.irp.Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation = location;
    block.irp.Tail.Overlay.OriginalFileObject = file;
    block.location.MajorFunction = major;
    block.location.DeviceObject = device as *mut DEVICE_OBJECT;
    block.location.FileObject = file;
    fill(location);
    let handler = {
        let mut st = io();
        *st.stats.irps.entry(major_name(major)).or_default() += 1;
        st.irps.insert(
            irp as usize,
            IrpRec {
                completed: false,
                marked: false,
                status: 0,
                information: 0,
                out_len,
                major,
                file: file_id,
                cancel_refs: 0,
                pended: false,
                pending_at_cleanup: false,
            },
        );
        st.devices
            .iter()
            .find(|d| &d.object.object as *const DEVICE_OBJECT as usize == device)
            .and_then(|d| d.major[usize::from(major)])
    };
    let outcome = dispatch(device, irp, major, handler);
    // A cancel in progress still uses the IRP: wait for it (it is bounded by
    // the watchdog of its own driver call). Then the record is forgotten
    // before the memory goes: a new IRP at the same address (on another
    // thread) must not lose its record to this removal.
    let mut st = io();
    while st.irps.get(&(irp as usize)).is_some_and(|r| r.cancel_refs > 0) {
        let (g, _) = CHANGED.wait_timeout(st.0, Duration::from_millis(100)).unwrap_or_else(PoisonError::into_inner);
        st = Guard(g);
    }
    st.irps.remove(&(irp as usize));
    drop(st);
    // The IRP is freed only once complete; a stopped IRP is leaked on purpose
    // (the driver may still reference it).
    match &outcome {
        Ok(_) => drop(block),
        Err(_) => std::mem::forget(block),
    }
    outcome
}

struct IrpOutcome {
    status: NTSTATUS,
    information: usize,
}

type DispatchFn = unsafe extern "win64" fn(*mut DEVICE_OBJECT, *mut IRP) -> NTSTATUS;

fn dispatch(device: usize, irp: *mut IRP, major: u8, handler: DRIVER_DISPATCH) -> Result<IrpOutcome, Violation> {
    let Some(handler) = handler else {
        // No dispatch routine: NDIS completes create/cleanup/close with
        // success and anything else as an invalid request.
        let status = if matches!(major, IRP_MJ_CREATE | IRP_MJ_CLEANUP | IRP_MJ_CLOSE) {
            STATUS_SUCCESS
        } else {
            STATUS_INVALID_DEVICE_REQUEST
        };
        return Ok(IrpOutcome { status, information: 0 });
    };
    if irql::current() != irql::PASSIVE {
        return Err(recorded(c9_violation(
            "dispatch routine called above PASSIVE_LEVEL",
            c9::DISPATCH_NOT_PASSIVE,
            device as u64,
            u64::from(irql::current()),
            "the model sends IRPs from PASSIVE_LEVEL only".into(),
        )));
    }
    // SAFETY: a dispatch routine from the driver's MajorFunctions table.
    let f: DispatchFn = unsafe { win64(handler) };
    let name = major_name(major);
    // SAFETY: the arguments the I/O manager passes; the IRP lives until it
    // completes.
    let returned = stack::call_driver_at(name, irql::PASSIVE, || unsafe { f(device as *mut DEVICE_OBJECT, irp) })?;
    let marked = {
        let st = io();
        let r = &st.irps[&(irp as usize)];
        // SAFETY: not completed yet, so not retired: the IRP is still
        // accessible (completion, which retires it, takes the IO lock).
        r.marked || (!r.completed && unsafe { pending_returned(irp) })
    };
    if returned == STATUS_PENDING {
        let mut st = io();
        st.stats.pended += 1;
        st.irps.get_mut(&(irp as usize)).expect("outstanding").pended = true;
        drop(st);
        if !marked {
            return Err(recorded(c9_violation(
                "STATUS_PENDING returned without IoMarkIrpPending",
                c9::PENDING_NOT_MARKED,
                irp as u64,
                0,
                format!("{name} returned STATUS_PENDING; the IRP was not marked pending (R42)"),
            )));
        }
        return wait_complete(irp, name);
    }
    let (completed, status, information) = {
        let st = io();
        let r = &st.irps[&(irp as usize)];
        (r.completed, r.status, r.information)
    };
    if !completed {
        return Err(recorded(c9_violation(
            "IRP neither completed nor pending",
            c9::NOT_COMPLETED,
            irp as u64,
            returned as u32 as u64,
            format!("{name} returned {returned:#x} without completing the IRP or returning STATUS_PENDING (R41)"),
        )));
    }
    if marked {
        return Err(recorded(c9_violation(
            "IoMarkIrpPending without STATUS_PENDING",
            c9::MARKED_NOT_PENDING,
            irp as u64,
            returned as u32 as u64,
            format!("{name} marked the IRP pending but returned {returned:#x}"),
        )));
    }
    if returned != status {
        return Err(recorded(c9_violation(
            "dispatch status differs from completion status",
            c9::STATUS_MISMATCH,
            irp as u64,
            returned as u32 as u64,
            format!("{name} completed with {status:#x} but returned {returned:#x} (R41)"),
        )));
    }
    Ok(IrpOutcome { status, information })
}

/// How many watchdog periods a cancelable pending IRP (cancel routine set,
/// no cancel requested) may wait: such an IRP legitimately waits for an
/// event (a read of an event stream), but a test must not hang forever on
/// one either.
const CANCELABLE_WAIT_WATCHDOGS: u32 = 3;

/// Waits for a pended IRP to complete. Harness choice (the I/O
/// Verification page checks "IRPs that take a long time to complete and
/// cancel" without naming a code, reported as 0xC9/0x1005): an IRP that
/// cannot be cancelled (no cancel routine) must complete within the
/// watchdog; a cancelable one may wait [`CANCELABLE_WAIT_WATCHDOGS`] times
/// as long; once a cancel was requested (`Irp->Cancel`), it must complete
/// within the watchdog from then on. The wait also ends at once when the
/// session bug-checks on another thread.
fn wait_complete(irp: *mut IRP, name: &str) -> Result<IrpOutcome, Violation> {
    let limit = verifier::config().watchdog;
    let start = Instant::now();
    let mut cancel_seen: Option<Instant> = None;
    let mut st = io();
    loop {
        let r = &st.irps[&(irp as usize)];
        if r.completed {
            return Ok(IrpOutcome { status: r.status, information: r.information });
        }
        if verifier::is_tainted() {
            if let Some(v) = verifier::stopped() {
                return Err(v);
            }
        }
        // SAFETY: the IRP is still allocated (send_irp frees it after this);
        // the fields are read as the driver writes them (atomically, or a
        // BOOLEAN store).
        let (cancelable, cancelled) =
            unsafe { (crate::cancel::cancel_routine_of(irp) != 0, std::ptr::addr_of!((*irp).Cancel).read_volatile()) };
        let now = Instant::now();
        if cancelled && cancel_seen.is_none() {
            cancel_seen = Some(now);
        }
        let (deadline, what) = match (cancel_seen, cancelable) {
            (Some(t), _) => (t + limit, "was cancelled and did not complete"),
            (None, true) => (start + limit * CANCELABLE_WAIT_WATCHDOGS, "is cancelable and was not completed"),
            (None, false) => (start + limit, "was not completed"),
        };
        if now >= deadline {
            drop(st);
            return Err(recorded(c9_violation(
                "IRP never completed",
                c9::NEVER_COMPLETED,
                irp as u64,
                0,
                format!("{name} pended the IRP, which {what} within {:?}", deadline - cancel_seen.unwrap_or(start)),
            )));
        }
        let wait = (deadline - now).min(Duration::from_millis(100));
        let (g, _) = CHANGED.wait_timeout(st.0, wait).unwrap_or_else(PoisonError::into_inner);
        st = Guard(g);
    }
}

/// `IofCompleteRequest` (what the IoCompleteRequest macro calls).
#[allow(non_snake_case)]
unsafe extern "win64" fn IofCompleteRequest(irp: *mut IRP, _boost: i8) {
    let verdict = stack::on_host(|| complete(irp));
    match verdict {
        Ok(()) => CHANGED.notify_all(),
        Err(v) => verifier::violation(v),
    }
}

fn complete(irp: *mut IRP) -> Result<(), Violation> {
    let level = irql::current();
    if level > irql::DISPATCH {
        return Err(c9_violation(
            "IoCompleteRequest above DISPATCH_LEVEL",
            c9::COMPLETE_ABOVE_DISPATCH,
            u64::from(level),
            irp as u64,
            String::new(),
        ));
    }
    let mut st = io();
    let Some(rec) = st.irps.get(&(irp as usize)) else {
        return Err(Violation::new(
            "IRP completed twice or unknown",
            MULTIPLE_IRP_COMPLETE_REQUESTS,
            [irp as u64, 0, 0, 0],
            format!("IRP {irp:p} is not outstanding"),
        ));
    };
    if rec.completed {
        return Err(Violation::new(
            "IRP completed twice or unknown",
            MULTIPLE_IRP_COMPLETE_REQUESTS,
            [irp as u64, 0, 0, 0],
            format!("IRP {irp:p} was already completed (R41)"),
        ));
    }
    // SAFETY: an outstanding IRP of the model.
    let (status, information, cancel) =
        unsafe { ((*irp).IoStatus.Anonymous.Status, (*irp).IoStatus.Information, (*irp).CancelRoutine) };
    if status == STATUS_PENDING || status == -1 {
        return Err(c9_violation(
            "IRP completed with STATUS_PENDING",
            c9::COMPLETE_PENDING,
            status as u32 as u64,
            irp as u64,
            "(R42)".into(),
        ));
    }
    if let Some(routine) = cancel {
        return Err(c9_violation(
            "IRP completed with a cancel routine set",
            c9::CANCEL_ROUTINE_SET,
            routine as usize as u64,
            irp as u64,
            String::new(),
        ));
    }
    let copies_back = rec.major == IRP_MJ_DEVICE_CONTROL && (NT_SUCCESS(status) || NT_WARNING(status));
    if copies_back && information > rec.out_len as usize {
        let detail = format!("Information {information} exceeds OutputBufferLength {} (R39)", rec.out_len);
        return Err(c9_violation(
            "Information larger than the output buffer",
            c9::INFORMATION_TOO_LARGE,
            irp as u64,
            information as u64,
            detail,
        ));
    }
    let rec = st.irps.get_mut(&(irp as usize)).expect("checked");
    rec.completed = true;
    rec.status = status;
    rec.information = information;
    // SAFETY: the outstanding IRP, read before it is retired.
    rec.marked = unsafe { pending_returned(irp) };
    let cancelling = rec.cancel_refs > 0;
    st.stats.completed += 1;
    // The IRP is the I/O manager's again: any later touch faults (R41). While
    // a CancelIoEx is using it, the I/O manager's reference keeps it valid
    // (as on Windows): the last cancel to finish retires it.
    if !cancelling {
        crate::lent::retire(irp as usize);
    }
    Ok(())
}

/// SL_PENDING_RETURNED in the IRP's current stack location.
///
/// # Safety
///
/// `irp` must be a model IRP not yet retired.
unsafe fn pending_returned(irp: *mut IRP) -> bool {
    // SAFETY: the function's contract.
    unsafe { (*(*irp).Tail.Overlay.Anonymous2.Anonymous.CurrentStackLocation).Control & SL_PENDING_RETURNED != 0 }
}

/// Model functions this module binds.
pub(crate) fn imports() -> Vec<Import> {
    vec![Import::ntoskrnl("IofCompleteRequest", IofCompleteRequest as *const () as usize)]
}
