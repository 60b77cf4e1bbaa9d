//! Endpoints: the per-handle state behind `FileObject->FsContext`.
//!
//! Seed 000's `Endpoint->LocalAddress` race, done right: the address buffer
//! is only read or replaced under the endpoint's NDIS spin lock, and the new
//! buffer is allocated (and the old one freed) outside it.
//!
//! The state sits inside a [`Rundown`]: every IOCTL holds rundown protection
//! while it works on the endpoint, and IRP_MJ_CLEANUP runs the endpoint down
//! — waiting for IOCTLs still in flight on other threads, refusing new ones
//! with `STATUS_DELETE_PENDING` — before it unbinds the endpoint's ports. So
//! no bind can slip in after cleanup and leave the port table pointing at an
//! endpoint that IRP_MJ_CLOSE is about to free.

use alloc::vec::Vec;

use ndis_sync::{init_from_closure, Passive, PinInit, Rundown, SpinLock};
use portwatch_proto::MAX_BINDINGS_PER_ENDPOINT;

use crate::events::EventSink;
use crate::ports::{EndpointId, PortKey, Traffic};

/// The mutable state of an endpoint, under its spin lock.
#[derive(Default)]
pub struct EndpointState {
    /// The local address last set by IOCTL_SET_LOCAL_ADDRESS.
    pub local_address: Vec<u8>,
    /// Ports bound now. Capacity for [`MAX_BINDINGS_PER_ENDPOINT`] is
    /// reserved at creation, so recording a binding never allocates (the
    /// port table's own memory is allocated before its lock is taken).
    pub bound: Vec<PortKey>,
    /// What bindings that were since removed had counted.
    pub retired: Traffic,
}

impl EndpointState {
    /// Whether another port may be bound.
    pub fn has_room(&self) -> bool {
        self.bound.len() < MAX_BINDINGS_PER_ENDPOINT as usize
    }
}

/// One open handle on the control device.
pub struct Endpoint {
    /// Identity used by the port table.
    pub id: EndpointId,
    /// The state, live until cleanup runs it down.
    pub live: Rundown<SpinLock<EndpointState>>,
    /// The event stream: outside the rundown, because pending reads are
    /// cancelled (their cancel routines take this lock) until IRP_MJ_CLOSE,
    /// after cleanup ran the state down.
    pub events: EventSink,
}

impl Endpoint {
    /// An initialiser of a new endpoint, which puts its spin lock and rundown
    /// reference where they will live (they are identified by the address
    /// they were initialised at); `None` when the binding list cannot be
    /// allocated.
    pub fn try_new(irql: &Passive, id: EndpointId) -> Option<impl PinInit<Self> + '_> {
        let mut bound = Vec::new();
        bound.try_reserve_exact(MAX_BINDINGS_PER_ENDPOINT as usize).ok()?;
        let state = EndpointState { local_address: Vec::new(), bound, retired: Traffic::default() };
        let init = move |slot: *mut Self| {
            // SAFETY: `slot` is valid for writes and pinned (the initialiser's
            // contract); each field is written once, the rundown in place.
            unsafe {
                (&raw mut (*slot).id).write(id);
                Rundown::new(irql, SpinLock::new(state)).__pinned_init(&raw mut (*slot).live);
                EventSink::new().__pinned_init(&raw mut (*slot).events);
            }
        };
        // SAFETY: the closure initialises every field.
        Some(unsafe { init_from_closure(init) })
    }
}
