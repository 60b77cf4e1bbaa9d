//! Driver-wide state, created in DriverEntry before NDIS can call us.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use ndis_sync::{init_from_closure, AllocError, PassiveMutex, PinInit, RwLock, Semaphore, SpinLock};

use crate::events::Registry;
use crate::modules::ModuleList;
use crate::ports::{EndpointId, PortTable};
use crate::registry::ParametersKey;

/// Everything the driver shares between its callbacks and IOCTLs.
pub struct Globals {
    /// (protocol, port) -> bound endpoints. Read on every packet.
    pub ports: RwLock<PortTable>,
    /// Seed 000's global `LpcPortName`, done right: replaced under the write
    /// lock (allocation and free outside it), read under the read lock.
    pub port_name: RwLock<Vec<u16>>,
    /// Serialises the writers of the port name, which write the registry
    /// (`ZwSetValueKey`, PASSIVE_LEVEL, so not under the RW lock) and then
    /// swap [`port_name`](Self::port_name) under the write lock, both while
    /// holding this mutex: the registry's value and the memory copy change
    /// in the same order and end equal.
    pub port_name_store: PassiveMutex<ParametersKey>,
    /// The attached filter modules.
    pub modules: ModuleList,
    /// The endpoints with events enabled, which get control events (module
    /// attached, detached, paused, restarted). Lock order: this, then an
    /// endpoint's event lock.
    pub event_endpoints: SpinLock<Registry>,
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
    /// Allocates the RW locks and the port table's index, and returns the
    /// initialiser that puts them, and the module list's spin lock and the
    /// snapshot semaphore and the port name's mutex (identified by their address), where the
    /// globals will live.
    ///
    /// `store` is where the port name persists; `port_name` is the name
    /// read back from it (empty if none).
    pub fn try_new(store: ParametersKey, port_name: Vec<u16>) -> Result<impl PinInit<Self>, AllocError> {
        let ports = RwLock::new(PortTable::try_new().map_err(|_| AllocError)?)?;
        let port_name = RwLock::new(port_name)?;
        let registry = Registry::try_new().ok_or(AllocError)?;
        let init = move |slot: *mut Self| {
            // SAFETY: `slot` is valid for writes and pinned (the initialiser's
            // contract); each field is written once, the module list and the
            // semaphore in place.
            unsafe {
                (&raw mut (*slot).ports).write(ports);
                (&raw mut (*slot).port_name).write(port_name);
                PassiveMutex::in_place(store).__pinned_init(&raw mut (*slot).port_name_store);
                ModuleList::new().__pinned_init(&raw mut (*slot).modules);
                SpinLock::new(registry).__pinned_init(&raw mut (*slot).event_endpoints);
                Semaphore::in_place(SNAPSHOT_REPLIES).__pinned_init(&raw mut (*slot).snapshot_replies);
                (&raw mut (*slot).snapshot_busy).write(AtomicU64::new(0));
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
