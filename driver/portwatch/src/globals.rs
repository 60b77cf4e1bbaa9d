//! Driver-wide state, created in DriverEntry before NDIS can call us.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use ndis_sync::{init_from_closure, AllocError, PinInit, RwLock};

use crate::modules::ModuleList;
use crate::ports::{EndpointId, PortTable};

/// Everything the driver shares between its callbacks and IOCTLs.
pub struct Globals {
    /// (protocol, port) -> bound endpoints. Read on every packet.
    pub ports: RwLock<PortTable>,
    /// Seed 000's global `LpcPortName`, done right: replaced under the write
    /// lock (allocation and free outside it), read under the read lock.
    pub port_name: RwLock<Vec<u16>>,
    /// The attached filter modules.
    pub modules: ModuleList,
    next_endpoint: AtomicU64,
}

impl Globals {
    /// Allocates the RW locks and the port table's index, and returns the
    /// initialiser that puts them, and the module list's spin lock (which
    /// is identified by its address), where the globals will live.
    pub fn try_new() -> Result<impl PinInit<Self>, AllocError> {
        let ports = RwLock::new(PortTable::try_new().map_err(|_| AllocError)?)?;
        let port_name = RwLock::new(Vec::new())?;
        let init = move |slot: *mut Self| {
            // SAFETY: `slot` is valid for writes and pinned (the initialiser's
            // contract); each field is written once, the module list in place.
            unsafe {
                (&raw mut (*slot).ports).write(ports);
                (&raw mut (*slot).port_name).write(port_name);
                ModuleList::new().__pinned_init(&raw mut (*slot).modules);
                (&raw mut (*slot).next_endpoint).write(AtomicU64::new(1));
            }
        };
        // SAFETY: the closure initialises every field.
        Ok(unsafe { init_from_closure(init) })
    }

    /// A fresh endpoint identity (never reused: 2^64 opens do not happen).
    pub fn next_endpoint_id(&self) -> EndpointId {
        EndpointId(self.next_endpoint.fetch_add(1, Ordering::Relaxed))
    }
}
