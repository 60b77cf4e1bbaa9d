//! The control device `\Device\PortWatch`: IRP dispatch.
//!
//! Each open handle is an endpoint (`FsContext`), made at IRP_MJ_CREATE,
//! run down at IRP_MJ_CLEANUP (the last handle closed; IRPs on the file
//! object may still be running on other threads) and freed at IRP_MJ_CLOSE
//! (every IRP on the file object has completed).

use ndis_sync::Passive;
use ndis_sys::{DEVICE_OBJECT, IRP, IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, NTSTATUS};
use portwatch_proto::{VarHeader, Wire};
use windows_sys::Win32::Foundation::{
    STATUS_BUFFER_OVERFLOW, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_REQUEST, STATUS_OBJECT_NAME_NOT_FOUND,
    STATUS_PENDING, STATUS_SUCCESS,
};

use crate::control;
use crate::endpoint::Endpoint;
use crate::entry::globals;
use crate::events::ReadStart;
use crate::ioctl::{self, Error, Reply, Request};
use crate::irp::Irp;
use crate::pool::try_pin_box;

/// The dispatch routine for IRP_MJ_CREATE, CLEANUP, CLOSE and DEVICE_CONTROL.
///
/// # Safety
///
/// Called by the I/O manager (through NDIS) with a valid IRP for our
/// control device, at PASSIVE_LEVEL in the caller's thread.
pub unsafe extern "system" fn dispatch(_device: *const DEVICE_OBJECT, irp: *mut IRP) -> NTSTATUS {
    // SAFETY: the I/O manager hands us the IRP (function contract).
    let irp = unsafe { Irp::from_raw(irp) };
    // SAFETY: these major functions are dispatched at PASSIVE_LEVEL in the
    // requesting thread (IRP_MJ_CLOSE too: see NDIS-RULES IRQL table).
    let mut irql = unsafe { Passive::new_unchecked() };
    match irp.major_function() {
        IRP_MJ_CREATE => create(irp, &mut irql),
        IRP_MJ_CLEANUP => cleanup(irp, &mut irql),
        IRP_MJ_CLOSE => close(irp, &mut irql),
        IRP_MJ_DEVICE_CONTROL => device_control(irp, &mut irql),
        _ => irp.complete(STATUS_INVALID_DEVICE_REQUEST, 0),
    }
}

fn create(mut irp: Irp, irql: &mut Passive) -> NTSTATUS {
    // The device has no namespace: `\\.\PortWatch\anything` is not ours.
    if irp.opens_a_file_name() {
        return irp.complete(STATUS_OBJECT_NAME_NOT_FOUND, 0);
    }
    let Some(endpoint) = Endpoint::try_new(irql, globals().next_endpoint_id()) else {
        return irp.complete(STATUS_INSUFFICIENT_RESOURCES, 0);
    };
    match try_pin_box(endpoint) {
        Some(endpoint) => {
            irp.set_endpoint(endpoint);
            irp.complete(STATUS_SUCCESS, 0)
        }
        None => irp.complete(STATUS_INSUFFICIENT_RESOURCES, 0),
    }
}

fn cleanup(irp: Irp, irql: &mut Passive) -> NTSTATUS {
    if let Some(endpoint) = irp.endpoint() {
        control::cleanup(globals(), endpoint, irql);
    }
    irp.complete(STATUS_SUCCESS, 0)
}

fn close(mut irp: Irp, irql: &mut Passive) -> NTSTATUS {
    if let Some(endpoint) = irp.take_endpoint() {
        // Cleanup always came first; running it again is a no-op, and makes
        // sure no binding can outlive the endpoint even if it did not.
        control::cleanup(globals(), &endpoint, irql);
        drop(endpoint);
    }
    irp.complete(STATUS_SUCCESS, 0)
}

fn device_control(mut irp: Irp, irql: &mut Passive) -> NTSTATUS {
    let result = match irp.device_control_parts() {
        Ok(r) if r.code == portwatch_proto::IOCTL_READ_EVENTS => return read_events(irp, irql),
        Ok(r) => control::device_control(globals(), r.endpoint, r.code, r.buffer, r.input_len, r.output_len, irql),
        Err(status) => return irp.complete(status, 0),
    };
    match result {
        Ok(Reply::Done(written)) => irp.complete(STATUS_SUCCESS, written),
        Ok(Reply::Overflow) => irp.complete(STATUS_BUFFER_OVERFLOW, VarHeader::SIZE),
        Err(e) => irp.complete(e.ntstatus(), 0),
    }
}

/// IOCTL_READ_EVENTS: completes at once with the queued events, or pends
/// the IRP in the endpoint's event queue with a cancel routine (see
/// `irp::ReadIrp` and docs/events.md). After STATUS_PENDING is decided the
/// IRP is not touched here again: another processor may complete it
/// before this routine returns.
fn read_events(mut irp: Irp, irql: &mut Passive) -> NTSTATUS {
    let read = irp.as_read();
    let mut cancelled_at_queueing = false;
    let started = match irp.device_control_parts() {
        Ok(r) => (|| {
            let input = r.buffer.get(..r.input_len).ok_or(Error::InvalidParameter)?;
            match ioctl::decode(r.code, input, r.output_len)? {
                Request::ReadEvents => {}
                _ => return Err(Error::UnknownCode),
            }
            let output = r.buffer.get_mut(..r.output_len).ok_or(Error::InvalidParameter)?;
            let arm = |queue: &mut crate::events::EventQueue<_>| {
                if !read.arm() {
                    // Cancelled before the cancel routine was set: ours to
                    // complete as cancelled, once out of the queue.
                    queue.remove_read(read);
                    cancelled_at_queueing = true;
                }
            };
            control::start_read(r.endpoint, read, output, arm, irql)
        })(),
        Err(status) => return irp.complete(status, 0),
    };
    match started {
        Ok(ReadStart::Filled(written)) => irp.complete(STATUS_SUCCESS, written),
        Ok(ReadStart::Pending) if cancelled_at_queueing => {
            read.cancel();
            STATUS_PENDING
        }
        Ok(ReadStart::Pending) => STATUS_PENDING,
        Err(e) => irp.complete(e.ntstatus(), 0),
    }
}
