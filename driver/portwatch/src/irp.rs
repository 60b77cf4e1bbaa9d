//! A thin, owning view of an IRP in a dispatch routine.
//!
//! All raw IRP access of the driver is here. An [`Irp`] is consumed by
//! [`Irp::complete`], so no code can touch an IRP after completing it.

use core::ffi::c_void;
use core::pin::Pin;
use core::ptr::NonNull;

use ndis_sys::{
    IoGetCurrentIrpStackLocation, IoMarkIrpPending, IoReleaseCancelSpinLock, IoSetCancelRoutine,
    IoStackDeviceIoControl, IofCompleteRequest, DEVICE_OBJECT, FILE_OBJECT, IO_NO_INCREMENT, IO_STACK_LOCATION, IRP,
    NTSTATUS,
};

use crate::endpoint::Endpoint;
use crate::events::Delivery;
use windows_sys::Win32::Foundation::{
    STATUS_CANCELLED, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

/// What an IRP_MJ_DEVICE_CONTROL request carries (METHOD_BUFFERED).
pub struct DeviceControl<'a> {
    /// The endpoint of the handle.
    pub endpoint: &'a Endpoint,
    /// The system buffer: max(input, output) bytes, input copied in.
    pub buffer: &'a mut [u8],
    /// IoControlCode.
    pub code: u32,
    /// InputBufferLength.
    pub input_len: usize,
    /// OutputBufferLength.
    pub output_len: usize,
}

/// An IRP this dispatch routine owns until it completes it.
pub struct Irp {
    raw: *mut IRP,
}

impl Irp {
    /// Takes ownership of the IRP passed to a dispatch routine.
    ///
    /// # Safety
    ///
    /// `raw` must be the IRP the I/O manager passed to this dispatch routine,
    /// not yet completed, with a valid current stack location.
    pub unsafe fn from_raw(raw: *mut IRP) -> Self {
        Irp { raw }
    }

    fn stack(&self) -> &IO_STACK_LOCATION {
        // SAFETY: `from_raw`'s contract: the IRP and its current stack
        // location are valid while we own the IRP.
        unsafe { &*IoGetCurrentIrpStackLocation(self.raw) }
    }

    /// IRP_MJ_xxx of the current stack location.
    pub fn major_function(&self) -> u8 {
        self.stack().MajorFunction
    }

    fn file_object(&self) -> *mut FILE_OBJECT {
        self.stack().FileObject
    }

    /// Whether the open names something under the device (`\Device\PortWatch\x`).
    pub fn opens_a_file_name(&self) -> bool {
        let fo = self.file_object();
        // SAFETY: for IRP_MJ_CREATE the file object is valid while we own the
        // IRP; it is only read here.
        !fo.is_null() && unsafe { (*fo).FileName.Length } != 0
    }

    /// The endpoint of the file object (`FsContext`), if there is one.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        let fo = self.file_object();
        if fo.is_null() {
            return None;
        }
        // SAFETY: the file object is valid while we own the IRP. FsContext is
        // only ever NULL or an `Endpoint` leaked by `set_endpoint`, freed by
        // `take_endpoint` in IRP_MJ_CLOSE, after which the I/O manager sends
        // no more IRPs for the file object.
        unsafe { (*fo).FsContext.cast::<Endpoint>().as_ref() }
    }

    /// Stores a new endpoint in `FsContext` (IRP_MJ_CREATE).
    pub fn set_endpoint(&mut self, endpoint: Pin<alloc::boxed::Box<Endpoint>>) {
        let fo = self.file_object();
        debug_assert!(!fo.is_null());
        // SAFETY: as in `endpoint`; IRP_MJ_CREATE is the first IRP of the
        // file object, so nothing else reads FsContext yet. The endpoint
        // stays pinned: only `take_endpoint` turns the pointer back into the
        // pinned box, which frees it in place.
        unsafe {
            let raw = alloc::boxed::Box::into_raw(Pin::into_inner_unchecked(endpoint));
            (*fo).FsContext = raw.cast::<c_void>();
        }
    }

    /// Takes the endpoint out of `FsContext` (IRP_MJ_CLOSE).
    pub fn take_endpoint(&mut self) -> Option<Pin<alloc::boxed::Box<Endpoint>>> {
        let fo = self.file_object();
        if fo.is_null() {
            return None;
        }
        // SAFETY: IRP_MJ_CLOSE is the last IRP of the file object and every
        // other IRP on it has completed, so no one else uses FsContext; it
        // holds NULL or a pointer from `Box::into_raw` in `set_endpoint`.
        unsafe {
            let raw = core::mem::replace(&mut (*fo).FsContext, core::ptr::null_mut()).cast::<Endpoint>();
            (!raw.is_null()).then(|| Pin::new_unchecked(alloc::boxed::Box::from_raw(raw)))
        }
    }

    /// The parts of an IRP_MJ_DEVICE_CONTROL request, or the status to fail
    /// it with: the code is not one of ours (only then is the buffer's shape
    /// unknown: every PortWatch code is METHOD_BUFFERED), the file object has
    /// no endpoint, or a non-empty request has no buffer.
    pub fn device_control_parts(&mut self) -> Result<DeviceControl<'_>, NTSTATUS> {
        let endpoint = self.endpoint().ok_or(STATUS_INVALID_PARAMETER)? as *const Endpoint;
        // SAFETY: the caller checked this is IRP_MJ_DEVICE_CONTROL, whose
        // Parameters member is DeviceIoControl; the stack location is valid
        // while we own the IRP. (windows-sys's own union arm has the wrong
        // x64 offsets, so ndis-sys's checked view is used.)
        let p = unsafe { &*IoStackDeviceIoControl(IoGetCurrentIrpStackLocation(self.raw)) };
        let (input_len, output_len) = (p.InputBufferLength.0 as usize, p.OutputBufferLength as usize);
        let code = p.IoControlCode.0;
        // Other methods lay the buffers out differently (the output of a
        // direct-I/O code is an MDL): check the whole code before any slice
        // is made over SystemBuffer.
        if !portwatch_proto::ALL_IOCTLS.contains(&code) {
            return Err(STATUS_INVALID_DEVICE_REQUEST);
        }
        let len = input_len.max(output_len);
        // SAFETY: we own the IRP; AssociatedIrp.SystemBuffer is NULL (allowed
        // only when both lengths are 0) or a non-paged buffer of
        // max(InputBufferLength, OutputBufferLength) bytes that only this
        // dispatch routine uses until completion.
        let buffer: &mut [u8] = unsafe {
            let buf = (*self.raw).AssociatedIrp.SystemBuffer.cast::<u8>();
            match (buf.is_null(), len) {
                (_, 0) => &mut [],
                (true, _) => return Err(STATUS_INVALID_PARAMETER),
                (false, _) => core::slice::from_raw_parts_mut(buf, len),
            }
        };
        // SAFETY: `endpoint` came from FsContext above (see `endpoint`); it
        // stays allocated until IRP_MJ_CLOSE, which cannot run while this IRP
        // is outstanding, and the borrow of `self` keeps the IRP uncompleted.
        let endpoint = unsafe { &*endpoint };
        Ok(DeviceControl { endpoint, buffer, code, input_len, output_len })
    }

    /// The IRP as a read of the event stream, to be queued (the dispatch
    /// routine then returns STATUS_PENDING for it, or what `complete`
    /// returned when it completes it itself).
    pub fn as_read(&self) -> ReadIrp {
        ReadIrp(NonNull::new(self.raw).expect("an IRP"))
    }

    /// The system buffer's first OutputBufferLength bytes of an
    /// IRP_MJ_DEVICE_CONTROL (`device_control_parts` checked the code).
    pub fn output(&mut self) -> &mut [u8] {
        match self.device_control_parts() {
            Ok(parts) => {
                let n = parts.output_len.min(parts.buffer.len());
                &mut parts.buffer[..n]
            }
            Err(_) => &mut [],
        }
    }

    /// Completes the IRP and returns the status for the dispatch routine to
    /// return. The IRP is gone afterwards.
    pub fn complete(self, status: NTSTATUS, information: usize) -> NTSTATUS {
        // SAFETY: we own the IRP and complete it exactly once (self is
        // consumed); no spin lock is held (guards cannot outlive the calls
        // that took them), so IofCompleteRequest's IRQL rule holds.
        unsafe {
            (*self.raw).IoStatus.Anonymous.Status = status;
            (*self.raw).IoStatus.Information = information;
            IofCompleteRequest(self.raw, IO_NO_INCREMENT);
        }
        status
    }
}

/// A pending IOCTL_READ_EVENTS IRP, as the endpoint's event queue holds it.
///
/// Ownership (docs/events.md): while queued, the IRP belongs to the queue
/// and has [`read_cancel`] as its cancel routine. Whoever takes it out must
/// *claim* it ([`ReadIrp::claim`]: exchange the cancel routine with NULL);
/// a non-NULL result makes the claimer the owner, who completes it once. A
/// NULL result means IoCancelIrp got there first and the cancel routine
/// owns and completes it. Claims happen under the endpoint's event lock or
/// after the IRP left the queue under it; the cancel routine removes the
/// IRP from the queue under that lock (if it is still there) before it
/// completes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadIrp(NonNull<IRP>);

// SAFETY: an IRP may be completed on any thread; the claim protocol above
// gives each ReadIrp one owner at a time.
unsafe impl Send for ReadIrp {}

impl ReadIrp {
    /// IoMarkIrpPending and the cancel routine, at queueing (dispatch
    /// routine, under the event lock). Returns `false` when the IRP was
    /// cancelled before the routine was set and the routine was taken back:
    /// the caller removes it from the queue and completes it as cancelled.
    pub fn arm(self) -> bool {
        let irp = self.0.as_ptr();
        // SAFETY: the dispatch routine owns the IRP (not completed): mark it
        // pending (it returns STATUS_PENDING on every path from here), then
        // set the cancel routine; read Cancel after, as IoCancelIrp sets it
        // before it exchanges the routine.
        unsafe {
            IoMarkIrpPending(irp);
            IoSetCancelRoutine(irp, Some(read_cancel));
            if core::ptr::read_volatile(&raw const (*irp).Cancel) && IoSetCancelRoutine(irp, None).is_some() {
                return false;
            }
        }
        true
    }

    /// Takes the IRP from its cancel routine: `true` when this caller owns
    /// it now (it must complete it), `false` when the cancel routine does.
    pub fn claim(self) -> bool {
        // SAFETY: a queued or just-dequeued IRP is not completed: only its
        // owner completes it, and ownership is what this exchange decides.
        unsafe { IoSetCancelRoutine(self.0.as_ptr(), None).is_some() }
    }

    /// Writes a one-record batch and completes the IRP with success. The
    /// caller claimed it.
    pub fn deliver(self, delivery: &Delivery<ReadIrp>) {
        // SAFETY: claimed: ours until completed, which happens here.
        let mut irp = unsafe { Irp::from_raw(self.0.as_ptr()) };
        let written = delivery.write(irp.output());
        irp.complete(STATUS_SUCCESS, written);
    }

    /// Completes the claimed IRP with STATUS_CANCELLED.
    pub fn cancel(self) {
        // SAFETY: claimed (or taken back in `arm`): ours until completed.
        let irp = unsafe { Irp::from_raw(self.0.as_ptr()) };
        irp.complete(STATUS_CANCELLED, 0);
    }
}

/// The cancel routine of a queued read: called by IoCancelIrp at
/// DISPATCH_LEVEL holding the cancel spin lock. Releases it first (the
/// endpoint's event lock is never taken under it, so the two are never
/// ordered), removes the IRP from its endpoint's queue if a completer has
/// not already taken it out, and completes it as cancelled: a completer
/// that took it out found the cancel routine gone and left it to us.
///
/// # Safety
///
/// Called by the I/O manager for an IRP queued by [`ReadIrp::arm`].
unsafe extern "system" fn read_cancel(_device: *mut DEVICE_OBJECT, irp: *mut IRP) {
    // SAFETY: IoCancelIrp holds the cancel spin lock and set CancelIrql.
    unsafe { IoReleaseCancelSpinLock((*irp).CancelIrql) };
    // SAFETY: the IRP is not completed (we own it now): its file object is
    // valid, and IRP_MJ_CLOSE (which frees the endpoint) waits for it.
    let read = ReadIrp(unsafe { NonNull::new_unchecked(irp) });
    // SAFETY: as above; the IRP is only read.
    let irp_view = unsafe { Irp::from_raw(irp) };
    if let Some(endpoint) = irp_view.endpoint() {
        // SAFETY: IoReleaseCancelSpinLock lowered to CancelIrql, at most
        // DISPATCH_LEVEL.
        let mut irql = unsafe { ndis_sync::MaybeDispatch::new_unchecked() };
        endpoint.events.queue.lock(&mut irql).remove_read(read);
    }
    read.cancel();
}
