//! Driver-wide state, created in DriverEntry before NDIS can call us.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use ndis_sync::{AllocError, RwLock};

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
    /// Allocates the locks and the port table's index.
    pub fn try_new() -> Result<Self, AllocError> {
        Ok(Globals {
            ports: RwLock::new(PortTable::try_new().map_err(|_| AllocError)?)?,
            port_name: RwLock::new(Vec::new())?,
            modules: ModuleList::new(),
            next_endpoint: AtomicU64::new(1),
        })
    }

    /// A fresh endpoint identity (never reused: 2^64 opens do not happen).
    pub fn next_endpoint_id(&self) -> EndpointId {
        EndpointId(self.next_endpoint.fetch_add(1, Ordering::Relaxed))
    }
}
