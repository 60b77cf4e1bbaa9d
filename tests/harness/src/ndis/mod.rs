//! The NDIS model: filter driver registration, simulated adapters with
//! their filter stacks, the filter module state machine, the send and
//! receive paths, status indications and the control device, with the
//! checks NDIS and Driver Verifier make.
//!
//! All bookkeeping lives in one process-global [`Model`] behind a mutex
//! (sessions are serialised by [`crate::verifier::Session`]). The mutex is
//! never held while the driver runs, nor across a call that may raise a
//! violation (a violation abandons the frames it leaves).

mod data;
mod device;
mod filter;
mod module;

use std::collections::BTreeMap;
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard, PoisonError};

use crate::imports::Import;
use crate::verifier::{self, Violation};

pub use data::{At, Completion, NblOutcome, Outcomes};
pub use filter::FilterInfo;
pub use module::{AdapterId, AdapterSpec, ModuleState};

pub(crate) use data::{indicate_status, oid_request, outstanding as outstanding_nbls, receive, send};
pub(crate) use device::{call_unload_checks, control_device};
pub(crate) use filter::{call_driver_entry_checks, registered_filter};
pub(crate) use module::{add_adapter, attach, detach, modules_of, pause, restart};

/// Reinterprets a callback the driver registered as the `extern "win64"`
/// function pointer type `T` the model calls it through.
///
/// ndis-sys declares callbacks `extern "system"`, which is the Windows x64
/// convention when the driver is built but SysV on this Linux host, while
/// the code behind the pointer is the driver's Windows x64 code.
///
/// # Safety
/// `T` is the `extern "win64"` twin of the callback's documented signature
/// (same parameters and result as `F`).
pub(crate) unsafe fn win64<F: Copy, T: Copy>(callback: F) -> T {
    assert_eq!(core::mem::size_of::<T>(), core::mem::size_of::<F>());
    // SAFETY: both are function pointers of the same size; the caller
    // guarantees the signature, and the ABI is the one the code has.
    unsafe { core::mem::transmute_copy(&callback) }
}

/// Sets how completions are delivered and how long a pending pause or
/// restart may take.
pub(crate) fn configure(completion: Completion, pause_timeout: std::time::Duration) {
    data::set_completion(completion);
    module::set_pause_timeout(pause_timeout);
}

/// Counters of what went through the model in a session.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Filter callbacks called, by name.
    pub callbacks: BTreeMap<&'static str, u64>,
    /// NBLs created by the model (sends from above and receives from below).
    pub nbls_allocated: u64,
    /// NBLs that came back to their creator (send completed up, receive
    /// returned to the miniport).
    pub nbls_finished: u64,
    /// NET_BUFFERs that reached the miniport.
    pub nbs_to_miniport: u64,
    /// NET_BUFFERs that reached the protocol above.
    pub nbs_to_protocol: u64,
    /// Send NBLs completed up with NDIS_STATUS_PAUSED.
    pub sends_completed_paused: u64,
    /// FilterPause calls that returned NDIS_STATUS_PENDING.
    pub pauses_pended: u64,
    /// FilterPause calls made while NBLs the module had forwarded were still
    /// outstanding beyond it (the overlap the model allows; see
    /// `Config::pause_waits_for_forwarded`).
    pub pauses_with_nbls_out: u64,
    /// Status indications that went around a filter without a FilterStatus.
    pub status_bypassed: u64,
    /// Status indications that reached the protocol through a filter.
    pub status_forwarded: u64,
    /// OID requests that went around a filter without a FilterOidRequest.
    pub oids_bypassed: u64,
    /// Model NBLs whose frames reached the far end changed.
    pub frames_modified: u64,
}

/// The model's state.
#[derive(Default)]
pub(crate) struct Model {
    filter: Option<filter::FilterRec>,
    adapters: Vec<module::AdapterRec>,
    /// Looked up on every hop of a packet, never walked in order: hashed.
    modules: rustc_hash::FxHashMap<usize, module::ModuleRec>,
    /// Looked up several times per packet: hashed (an ordered map moves
    /// its large records on every insert and remove).
    nbls: rustc_hash::FxHashMap<usize, data::NblRec>,
    /// How many of `nbls` were indicated with NDIS_RECEIVE_FLAGS_RESOURCES:
    /// a chain indicated without the flag is searched for one only while
    /// some are tracked.
    resources_nbls: usize,
    device: Option<device::DeviceRec>,
    stats: Stats,
    /// Callback counts (counted on every hop), merged by name into
    /// `Stats::callbacks` when read.
    calls: CallCounts,
    next_handle: usize,
    /// Handles once valid, for a precise message when one is reused.
    retired: BTreeMap<usize, &'static str>,
    /// The NBLs of operations that ended in a violation: the driver may
    /// still hold them, so they live until the session ends.
    abandoned: Vec<Vec<crate::nbl::NblAlloc>>,
}

impl Model {
    /// A fresh opaque handle: a kernel-looking address nothing is mapped
    /// at, so a driver that dereferences it faults.
    fn new_handle(&mut self) -> usize {
        self.next_handle += 1;
        0xFFFF_D000_0000_0000 + self.next_handle * 0x1000
    }

    #[inline]
    fn count(&mut self, callback: &'static str) {
        self.calls.count(callback);
    }
}

/// Slots of the callback count table: twice the distinct names it holds
/// (an open-addressed table stays short that way); more names go to
/// [`CallCounts::more`].
const CALL_SLOTS: usize = 64;

/// Callback counts, found by the name's address and length: the names are
/// constants (`&'static str`, never freed, so no other text takes their
/// address) and a hop costs one multiplication and a comparison, no
/// hashing or comparison of the names' bytes.
struct CallCounts {
    slots: [(Option<&'static str>, u64); CALL_SLOTS],
    used: usize,
    /// Counts of names that found the table half full, by name.
    more: BTreeMap<&'static str, u64>,
}

impl Default for CallCounts {
    fn default() -> Self {
        Self { slots: [(None, 0); CALL_SLOTS], used: 0, more: BTreeMap::new() }
    }
}

impl CallCounts {
    #[inline]
    fn count(&mut self, name: &'static str) {
        // Fibonacci hashing: the top bits of the address times 2^64/phi.
        let mut i =
            (name.as_ptr() as usize).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - CALL_SLOTS.trailing_zeros());
        loop {
            match &mut self.slots[i] {
                (Some(n), calls) if std::ptr::eq(*n, name) => {
                    *calls += 1;
                    return;
                }
                (Some(_), _) => i = (i + 1) % CALL_SLOTS,
                (None, _) => return self.add(i, name),
            }
        }
    }

    /// A name's first count: into the free slot `i`, or into `more` when
    /// the table is half full.
    #[cold]
    fn add(&mut self, i: usize, name: &'static str) {
        if self.used == CALL_SLOTS / 2 {
            *self.more.entry(name).or_default() += 1;
        } else {
            self.used += 1;
            self.slots[i] = (Some(name), 1);
        }
    }

    /// Every count, by name (a name may appear more than once: the same
    /// text at two addresses).
    fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let slots = self.slots.iter().filter_map(|&(name, calls)| Some((name?, calls)));
        slots.chain(self.more.iter().map(|(&name, &calls)| (name, calls)))
    }
}

static MODEL: LazyLock<Mutex<Model>> = LazyLock::new(Mutex::default);
/// Signalled whenever a pause or restart completes asynchronously.
static CHANGED: Condvar = Condvar::new();

/// The model state (created on first use).
pub(crate) fn model() -> ModelGuard {
    ModelGuard(MODEL.lock().unwrap_or_else(PoisonError::into_inner))
}

/// A locked model.
pub(crate) struct ModelGuard(MutexGuard<'static, Model>);

impl std::ops::Deref for ModelGuard {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.0
    }
}

impl std::ops::DerefMut for ModelGuard {
    fn deref_mut(&mut self) -> &mut Model {
        &mut self.0
    }
}

impl ModelGuard {
    /// Waits on the change condition variable, at most `timeout`.
    fn wait(self, timeout: std::time::Duration) -> Self {
        let (g, _) = CHANGED.wait_timeout(self.0, timeout).unwrap_or_else(PoisonError::into_inner);
        ModelGuard(g)
    }
}

/// Wakes every waiter for a pause/restart completion.
fn notify() {
    CHANGED.notify_all();
}

/// Forgets everything (a new session).
pub fn reset() {
    *MODEL.lock().unwrap_or_else(PoisonError::into_inner) = Model::default();
}

/// What went through the model so far.
pub fn stats() -> Stats {
    let m = model();
    let mut stats = m.stats.clone();
    for (name, n) in m.calls.iter() {
        *stats.callbacks.entry(name).or_default() += n;
    }
    stats
}

/// A violation of an NDIS rule: 0xC4 with the NDIS verifier's subcode
/// when there is one.
fn ndis_violation(rule: &'static str, subcode: u64, p2: u64, p3: u64, detail: String) -> Violation {
    Violation::c4(rule, subcode, p2, p3, 0, detail)
}

/// Raises `v` from a model function the driver called: leaves the driver.
fn raise(v: Violation) -> ! {
    verifier::violation(v)
}

/// Bug check subcodes of the NDIS/WIFI verification (0xC4) and the model's
/// own subcodes for the NDIS rules Windows enforces without a documented
/// code (kept in the 0x92xxx range, after the documented ones).
///
/// 0x92010-0x92012 are Windows' own (devtest/ndis-wifi-verification.md and
/// the ndisfiltertimed*.md rule pages). Windows documents no 0xC4 subcode
/// for the others, which the NDIS/WIFI verifier reports as rule failures
/// without a fixed number: 0x92100 and up are the harness's own numbering.
pub mod subcodes {
    /// FilterPause did not complete in time, failed, or completed twice.
    pub const PAUSE_COMPLETE: u64 = 0x92010;
    /// A filter held a send NBL too long (never completed).
    pub const SEND_NBL_HELD: u64 = 0x92011;
    /// A filter held a receive NBL too long (never returned).
    pub const RECEIVE_NBL_HELD: u64 = 0x92012;
    /// An NBL completed or returned twice, or not owned by the caller.
    pub const NBL_NOT_OWNED: u64 = 0x92100;
    /// Data path used in a module state that forbids it.
    pub const WRONG_STATE: u64 = 0x92101;
    /// An NBL indicated with NDIS_RECEIVE_FLAGS_RESOURCES returned by the filter.
    pub const RESOURCES_RETURNED: u64 = 0x92102;
    /// Unknown or stale NDIS handle.
    pub const BAD_HANDLE: u64 = 0x92103;
    /// A `*_DISPATCH_LEVEL` flag set below DISPATCH_LEVEL.
    pub const FLAG_IRQL: u64 = 0x92104;
    /// NumberOfNetBufferLists does not match the chain.
    pub const NBL_COUNT: u64 = 0x92105;
    /// A filter module detached with NBLs it originated outstanding.
    pub const DETACH_WITH_NBLS: u64 = 0x92106;
    /// An invalid state transition requested of NDIS (pause/restart complete).
    pub const BAD_TRANSITION: u64 = 0x92107;
    /// A send completed while not Running without NDIS_STATUS_PAUSED.
    pub const NOT_PAUSED_STATUS: u64 = 0x92108;
    /// The filter driver or its device still registered at unload.
    pub const NOT_DEREGISTERED: u64 = 0x92109;
    /// A filter module's pause completed (FilterPause returned
    /// NDIS_STATUS_SUCCESS or NdisFPauseComplete) while an NBL it forwarded
    /// was still outstanding ("Pausing a Filter Module", "Pausing a Driver
    /// Stack").
    pub const PAUSE_WITH_NBLS: u64 = 0x9210A;
    /// NdisFSendNetBufferLists or NdisFIndicateReceiveNetBufferLists from a
    /// module whose pause completed ("Filter Module States and Operations":
    /// a Paused filter performs no send or receive operations).
    pub const FORWARDED_AFTER_PAUSE: u64 = 0x9210B;
}

/// Model functions this module binds.
pub(crate) fn imports() -> Vec<Import> {
    let mut all = filter::imports();
    all.extend(module::imports());
    all.extend(data::imports());
    all.extend(device::imports());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every count of `counts`, merged by name.
    fn by_name(counts: &CallCounts) -> BTreeMap<&'static str, u64> {
        let mut all = BTreeMap::new();
        for (name, n) in counts.iter() {
            *all.entry(name).or_default() += n;
        }
        all
    }

    #[test]
    fn names_sharing_an_address_are_counted_apart() {
        const LONG: &str = "FilterPauseX";
        let short = &LONG[..11];
        let mut counts = CallCounts::default();
        for _ in 0..3 {
            counts.count(LONG);
        }
        counts.count(short);
        let all = by_name(&counts);
        assert_eq!((all["FilterPauseX"], all["FilterPause"]), (3, 1), "{all:?}");
    }

    #[test]
    fn names_past_a_half_full_table_are_still_counted() {
        let names: Vec<&'static str> = (0..CALL_SLOTS + 5).map(|i| &*format!("callback-{i}").leak()).collect();
        let mut counts = CallCounts::default();
        for (i, name) in names.iter().enumerate() {
            for _ in 0..=i % 3 {
                counts.count(name);
            }
        }
        let all = by_name(&counts);
        assert_eq!(all.len(), names.len());
        for (i, name) in names.iter().enumerate() {
            assert_eq!(all[name], (i % 3 + 1) as u64, "{name}");
        }
    }
}
