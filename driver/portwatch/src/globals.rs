//! Driver-wide state, created in DriverEntry before NDIS can call us.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::pin::Pin;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use ndis_sync::{AllocError, RwLock, Semaphore};

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
    /// Admission control for replies that allocate in proportion to the
    /// driver's state (IOCTL_ENUM_FILTER_MODULES): at most
    /// [`SNAPSHOT_REPLIES`] build at once; the others wait up to
    /// [`SNAPSHOT_WAIT`], then fail with STATUS_DEVICE_BUSY. Keeps pool use
    /// bounded under an IOCTL storm.
    pub snapshot_replies: Semaphore,
    /// Requests refused by [`snapshot_replies`](Self::snapshot_replies)
    /// after waiting [`SNAPSHOT_WAIT`].
    pub snapshot_busy: AtomicU64,
    next_endpoint: AtomicU64,
}

/// Snapshot replies built at once (see [`Globals::snapshot_replies`]).
pub const SNAPSHOT_REPLIES: u32 = 2;
/// How long a snapshot reply waits for its turn before STATUS_DEVICE_BUSY.
pub const SNAPSHOT_WAIT: Duration = Duration::from_millis(50);

impl Globals {
    /// Allocates the locks and the port table's index, places everything
    /// in pool and initialises the semaphore there, at its final address.
    pub fn try_new() -> Result<Pin<Box<Self>>, AllocError> {
        let globals = Globals {
            ports: RwLock::new(PortTable::try_new().map_err(|_| AllocError)?)?,
            port_name: RwLock::new(Vec::new())?,
            modules: ModuleList::new(),
            snapshot_replies: Semaphore::new(SNAPSHOT_REPLIES),
            snapshot_busy: AtomicU64::new(0),
            next_endpoint: AtomicU64::new(1),
        };
        let mut globals = Box::into_pin(crate::pool::try_box(globals).map_err(|_| AllocError)?);
        // SAFETY: a projection to a field that is never moved out of the
        // pinned `Globals` (no method hands out `&mut Semaphore`).
        unsafe { globals.as_mut().map_unchecked_mut(|g| &mut g.snapshot_replies) }.init();
        Ok(globals)
    }

    /// A fresh endpoint identity (never reused: 2^64 opens do not happen).
    pub fn next_endpoint_id(&self) -> EndpointId {
        EndpointId(self.next_endpoint.fetch_add(1, Ordering::Relaxed))
    }
}
