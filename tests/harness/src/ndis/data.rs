//! The data path: NBL chains sent from the protocol above through the
//! driver's module(s) to the miniport and completed back, receives indicated
//! by the miniport up to the protocol and returned back, NdisGetDataBuffer,
//! and status indications. Every NBL's owner is tracked, so a second
//! completion or return, an NBL held at pause, a RESOURCES NBL returned or
//! an indication from a paused module is caught where it happens.

use std::cell::Cell;
use std::collections::hash_map::Entry;

use smallvec::SmallVec;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::PoisonError;
use std::time::Duration;

use core::ffi::c_void;
use ndis_sys::{
    NDIS_FILTER_DRIVER_CHARACTERISTICS, NDIS_HANDLE, NDIS_OBJECT_HEADER, NDIS_OBJECT_TYPE_STATUS_INDICATION,
    NDIS_RECEIVE_FLAGS_RESOURCES, NDIS_RETURN_FLAGS_DISPATCH_LEVEL, NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL,
    NDIS_SIZEOF_STATUS_INDICATION_REVISION_1, NDIS_STATUS, NDIS_STATUS_INDICATION, NDIS_STATUS_INDICATION_REVISION_1,
    NDIS_STATUS_PAUSED, NDIS_STATUS_SUCCESS, NET_BUFFER, NET_BUFFER_LIST,
};

use super::filter::bad_handle;
use super::filter::filter_snapshot;
use super::module::{module_for, record, state_of, AdapterId, ModuleState};
use super::{model, ndis_violation, raise, subcodes, win64, ModelGuard};
use crate::imports::Import;
use crate::nbl::{self, NblAlloc};
use crate::verifier::{SessionLocal, Violation};
use crate::{irql, stack};

/// The IRQL a send, receive or status indication enters the driver at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// PASSIVE_LEVEL, `*_DISPATCH_LEVEL` flag clear.
    Passive,
    /// DISPATCH_LEVEL with the `*_DISPATCH_LEVEL` flag set.
    Dispatch,
    /// DISPATCH_LEVEL with the flag clear (allowed: clear means "unknown").
    DispatchUnflagged,
}

impl At {
    fn irql(self) -> u8 {
        match self {
            At::Passive => irql::PASSIVE,
            At::Dispatch | At::DispatchUnflagged => irql::DISPATCH,
        }
    }

    fn flag(self) -> u32 {
        u32::from(self == At::Dispatch)
    }
}

/// When the miniport completes sends and the protocol returns receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Inside NdisFSendNetBufferLists / NdisFIndicateReceiveNetBufferLists
    /// (a nested call back into the driver).
    Inline,
    /// After the driver's send/receive handler returned, on the same thread
    /// at DISPATCH_LEVEL.
    Deferred,
    /// From another thread at DISPATCH_LEVEL, before the operation returns.
    OtherThread,
    /// From another thread at DISPATCH_LEVEL after a delay of between half
    /// and all of the given time, as a miniport completes sends and a
    /// protocol returns receives when it is done with them. Meanwhile the
    /// NBLs are outstanding below (sends) or above (receives) the filter,
    /// and a pause or restart of the adapter runs concurrently: NDIS calls
    /// FilterPause with sends the filter forwarded still outstanding
    /// ("Pausing a Driver Stack": the module enters Paused once they are
    /// complete).
    Delayed(Duration),
}

static COMPLETION: AtomicU8 = AtomicU8::new(0);
/// The longest delay of [`Completion::Delayed`], in microseconds.
static DELAY_US: AtomicU64 = AtomicU64::new(0);

/// Sets how completions and returns are delivered.
pub(crate) fn set_completion(c: Completion) {
    let (code, delay) = match c {
        Completion::Inline => (0, 0),
        Completion::Deferred => (1, 0),
        Completion::OtherThread => (2, 0),
        Completion::Delayed(d) => (3, d.as_micros().min(u128::from(u32::MAX)) as u64),
    };
    DELAY_US.store(delay, Ordering::Relaxed);
    COMPLETION.store(code, Ordering::Relaxed);
}

fn completion() -> Completion {
    match COMPLETION.load(Ordering::Relaxed) {
        0 => Completion::Inline,
        1 => Completion::Deferred,
        2 => Completion::OtherThread,
        _ => Completion::Delayed(Duration::from_micros(DELAY_US.load(Ordering::Relaxed))),
    }
}

/// A delay between half and all of `max`, from a per-thread xorshift
/// generator (the schedule needs variety, not quality).
fn jitter(max: Duration) -> Duration {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    let x = STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            x = 0x9E37_79B9_7F4A_7C15 ^ (s as *const Cell<u64> as u64);
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    let max_us = max.as_micros() as u64;
    Duration::from_micros(max_us / 2 + x % (max_us / 2 + 1))
}

/// How each NBL of an operation ended, in order (inline for short chains:
/// no allocation per packet).
pub type Outcomes = SmallVec<[NblOutcome; 8]>;

/// How one model NBL ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NblOutcome {
    /// NET_BUFFER_LIST_STATUS when it came back.
    pub status: NDIS_STATUS,
    /// It reached the far end (the miniport for sends, the protocol for
    /// receives).
    pub delivered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Send,
    Receive,
}

impl Dir {
    /// The filter callback that hands NBLs of this direction back the way
    /// they came (send completion up, receive return down).
    fn back_callback(self) -> &'static str {
        match self {
            Dir::Send => "FilterSendNetBufferListsComplete",
            Dir::Receive => "FilterReturnNetBufferLists",
        }
    }

    /// That callback's handler, as the driver registered it.
    fn back_handler(self, c: &NDIS_FILTER_DRIVER_CHARACTERISTICS) -> BackFn {
        let f = match self {
            Dir::Send => c.SendNetBufferListsCompleteHandler.expect("paired with the send handler"),
            Dir::Receive => c.ReturnNetBufferListsHandler.expect("paired with the receive handler"),
        };
        // SAFETY: FilterSendNetBufferListsComplete and
        // FilterReturnNetBufferLists share this documented signature.
        unsafe { win64(f) }
    }

    /// The `*_DISPATCH_LEVEL` flag of that callback.
    fn back_dispatch_flag(self) -> u32 {
        match self {
            Dir::Send => NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL,
            Dir::Receive => NDIS_RETURN_FLAGS_DISPATCH_LEVEL,
        }
    }
}

/// NBL addresses or module handles: a chain or a path is short, so the
/// first few live inline (no allocation per packet).
type Addrs = SmallVec<[usize; 4]>;

/// The model, when a step leaves it locked for the thread's next step
/// (which then takes no lock of its own); None when it was let go.
type Held = Option<ModelGuard>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Module(usize),
    /// The miniport (sends) or the protocol (receives) has it.
    FarEnd,
    /// Back with its creator.
    Done,
}

/// A model NBL, which stays where the operation that created it keeps it
/// (its `Vec<NblAlloc>`, or [`super::Model::abandoned`] once the operation
/// ended in a violation): the table holds records, not NBLs, so that
/// tracking one moves no NBL.
#[derive(Clone, Copy)]
struct AllocRef(core::ptr::NonNull<NblAlloc>);

// SAFETY: a shared reference to an NblAlloc, which is Send and is only read
// through this (its spec); the allocation outlives every record naming it
// (see above).
unsafe impl Send for AllocRef {}

impl AllocRef {
    fn get(&self) -> &NblAlloc {
        // SAFETY: the NblAlloc stays in its operation's vector, or in the
        // model's abandoned ones, for as long as a record names it.
        unsafe { self.0.as_ref() }
    }
}

pub(crate) struct NblRec {
    alloc: Option<AllocRef>,
    dir: Dir,
    /// None: created by the model; Some(h): originated by module h.
    origin: Option<usize>,
    adapter: usize,
    holder: Holder,
    /// Modules it went through and must come back through, in order.
    path: Addrs,
    /// Modules that passed it on (sends) rather than completing it.
    passed_on_by: Addrs,
    resources: bool,
    /// Driver callbacks now running with this NBL.
    in_call: u32,
    delivered: bool,
    status: NDIS_STATUS,
}

/// NBLs whose send completion or receive return is deferred.
#[derive(Debug)]
struct Pending {
    dir: Dir,
    nbls: Addrs,
}

thread_local! {
    /// Completions and returns deferred by the operation running on this
    /// thread: each operation delivers its own before it reports, so
    /// concurrent operations never wait for each other's.
    /// They belong to the session: a violation abandons the operation
    /// before it drains them, and the next session must not see them.
    static PENDING: SessionLocal<Vec<Pending>> = const { SessionLocal::new(Vec::new()) };
}

fn pending<R>(f: impl FnOnce(&mut Vec<Pending>) -> R) -> R {
    PENDING.with(|q| q.with(f))
}

fn defer(p: Pending) {
    pending(|q| q.push(p));
}

type SendFn = unsafe extern "win64" fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32, u32);
/// FilterSendNetBufferListsComplete and FilterReturnNetBufferLists.
type BackFn = unsafe extern "win64" fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32);
type ReceiveFn = unsafe extern "win64" fn(NDIS_HANDLE, *mut NET_BUFFER_LIST, u32, u32, u32);
type StatusFn = unsafe extern "win64" fn(NDIS_HANDLE, *mut NDIS_STATUS_INDICATION);

fn handlers() -> NDIS_FILTER_DRIVER_CHARACTERISTICS {
    filter_snapshot().expect("no filter driver registered").0
}

/// The filter driver's characteristics (the model is locked).
fn chars(m: &super::Model) -> &NDIS_FILTER_DRIVER_CHARACTERISTICS {
    &m.filter.as_ref().expect("no filter driver registered").chars
}

/// Whether a module in `state` is part of the data path at all.
fn in_data_path(state: ModuleState) -> bool {
    !matches!(state, ModuleState::Attaching | ModuleState::Detached)
}

/// The driver modules of `adapter` (lowest first) with their contexts.
fn stack_of(adapter: usize) -> SmallVec<[(usize, usize); 4]> {
    stack_in(&model(), adapter)
}

fn stack_in(m: &super::Model, adapter: usize) -> SmallVec<[(usize, usize); 4]> {
    data_path(m, adapter).collect()
}

/// The driver modules of `adapter` in the data path (lowest first) with
/// their contexts, read in place (each hop looks at them under the lock
/// it takes anyway).
fn data_path(m: &super::Model, adapter: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    m.adapters[adapter].modules.iter().filter_map(|h| {
        let rec = &m.modules[h];
        in_data_path(rec.state).then_some((*h, rec.context))
    })
}

/// The data-path module next below module `from` on `adapter` (None: below
/// the protocol, the highest one), with its context; None: the miniport.
/// `from` is a module of the data path.
fn next_below(m: &super::Model, adapter: usize, from: Option<usize>) -> Option<(usize, usize)> {
    let modules = &m.adapters[adapter].modules;
    let end = from.map_or(modules.len(), |h| index_in(modules, h));
    modules[..end].iter().rev().find_map(|h| in_path(m, *h))
}

/// The data-path module next above module `from` on `adapter` (None: above
/// the miniport, the lowest one), with its context; None: the protocol.
/// `from` is a module of the data path.
fn next_above(m: &super::Model, adapter: usize, from: Option<usize>) -> Option<(usize, usize)> {
    let modules = &m.adapters[adapter].modules;
    let start = from.map_or(0, |h| index_in(modules, h) + 1);
    modules[start..].iter().find_map(|h| in_path(m, *h))
}

/// Where module `h` is in an adapter's stack, which holds it.
fn index_in(modules: &[usize], h: usize) -> usize {
    let i = modules.iter().position(|x| *x == h);
    i.expect("attached module")
}

/// Module `h` with its context, if it is in the data path.
fn in_path(m: &super::Model, h: usize) -> Option<(usize, usize)> {
    let rec = &m.modules[&h];
    in_data_path(rec.state).then_some((h, rec.context))
}

/// The data-path module `handle` (adapter, state, context), with the model
/// locked; a bad handle is reported once the lock is let go.
fn module_in(m: &super::Model, handle: NDIS_HANDLE) -> Option<(usize, ModuleState, usize)> {
    match m.modules.get(&(handle as usize)) {
        Some(r) if r.state != ModuleState::Detached => Some((r.adapter, r.state, r.context)),
        _ => None,
    }
}

fn chain(nbls: &[usize]) -> *mut NET_BUFFER_LIST {
    nbl::link(nbls)
}

fn walk(head: *mut NET_BUFFER_LIST) -> Addrs {
    // SAFETY: the driver passes a chain of NBLs it owns; a cycle is cut at
    // 100000 entries.
    unsafe { nbl::walk(head, 100_000) }
}

fn count_callback(name: &'static str) {
    model().count(name);
}

// ---------------------------------------------------------------------------
// Send path.

/// Sends model NBLs built from `specs` from the protocol above `adapter` at
/// `at`; returns how each ended, in order, once all are back.
pub(crate) fn send(adapter: AdapterId, allocs: Vec<NblAlloc>, at: At) -> Result<Outcomes, Violation> {
    let m = model();
    let gate = Gate::of(&m, adapter.0, Dir::Send);
    let (_in_flight, mut m) = gate.enter(m);
    let addrs = register(&mut m, adapter.0, &allocs, Dir::Send, false);
    let saved = irql::current();
    irql::set(at.irql());
    let result = send_down(m, adapter.0, None, addrs, at.flag());
    irql::set(saved);
    let outcome = result.and_then(drain_pending).and_then(|held| collect(&allocs, held));
    keep_if_failed(allocs, outcome)
}

/// An adapter's send or receive gate (see `AdapterRec::send_gate`), which
/// an operation holds for reading from before its NBLs are tracked until
/// they are all back.
struct Gate(std::sync::Arc<std::sync::RwLock<()>>);

impl Gate {
    /// The gate of `adapter` for operations going `dir` (the model locked).
    fn of(m: &super::Model, adapter: usize, dir: Dir) -> Self {
        let a = &m.adapters[adapter];
        Gate(match dir {
            Dir::Send => a.send_gate.clone(),
            Dir::Receive => a.receive_gate.clone(),
        })
    }

    /// Holds the gate for reading, with the model `m` locked, and returns
    /// both: taken with the model's lock when free (one lock for both),
    /// else waited for with the model let go (pause, restart, attach and
    /// detach hold the gate for writing while they take the model's lock).
    fn enter(&self, m: ModelGuard) -> (std::sync::RwLockReadGuard<'_, ()>, ModelGuard) {
        match self.0.try_read() {
            Ok(held) => (held, m),
            Err(std::sync::TryLockError::Poisoned(e)) => (e.into_inner(), m),
            Err(std::sync::TryLockError::WouldBlock) => {
                drop(m);
                let held = self.0.read().unwrap_or_else(PoisonError::into_inner);
                (held, model())
            }
        }
    }
}

/// After a violation the driver may still hold the operation's NBLs: they
/// stay allocated (and tracked) until the session ends, with their own copy
/// of any spec the caller lent.
fn keep_if_failed<T>(mut allocs: Vec<NblAlloc>, outcome: Result<T, Violation>) -> Result<T, Violation> {
    if outcome.is_err() {
        nbl::own_specs(&mut allocs);
        model().abandoned.push(allocs);
    } else {
        nbl::free_all(allocs);
    }
    outcome
}

/// Tracks the model's new NBLs (the model locked by the caller, who keeps
/// it locked for the first hop); returns their addresses.
fn register(m: &mut super::Model, adapter: usize, allocs: &[NblAlloc], dir: Dir, resources: bool) -> Addrs {
    let mut addrs = Addrs::new();
    for a in allocs {
        let addr = a.as_ptr() as usize;
        addrs.push(addr);
        m.stats.nbls_allocated += 1;
        m.resources_nbls += usize::from(resources);
        m.nbls.insert(
            addr,
            NblRec {
                alloc: Some(AllocRef(a.into())),
                dir,
                origin: None,
                adapter,
                holder: Holder::FarEnd,
                path: Addrs::new(),
                passed_on_by: Addrs::new(),
                resources,
                in_call: 0,
                delivered: false,
                status: 0,
            },
        );
    }
    addrs
}

/// Removes finished model NBLs and reports how they ended, with the model
/// `held` locked by the caller's last step (else locked here). (The NBLs
/// themselves are freed by the caller, after the model's lock is let go:
/// their pages go back to the lent-page and guarded-buffer tables.)
fn collect(allocs: &[NblAlloc], held: Held) -> Result<Outcomes, Violation> {
    let mut m = held.unwrap_or_else(model);
    let Some((last, before)) = allocs.split_last() else { return Ok(Outcomes::new()) };
    for a in before {
        let a = a.as_ptr() as usize;
        let r = &m.nbls[&a];
        if r.holder != Holder::Done {
            let dir = r.dir;
            drop(m);
            return Err(never_back(dir, a));
        }
    }
    // The last one is checked and removed with one look-up: nothing is
    // removed unless every one is back.
    let a = last.as_ptr() as usize;
    let last = match m.nbls.entry(a) {
        Entry::Occupied(e) if e.get().holder == Holder::Done => e.remove(),
        Entry::Occupied(e) => {
            let dir = e.get().dir;
            drop(m);
            return Err(never_back(dir, a));
        }
        Entry::Vacant(_) => panic!("model NBL {a:#x} not tracked"),
    };
    m.resources_nbls -= usize::from(last.resources);
    let mut out = Outcomes::new();
    for a in before {
        let r = m.nbls.remove(&(a.as_ptr() as usize)).expect("model NBL tracked");
        m.resources_nbls -= usize::from(r.resources);
        out.push(NblOutcome { status: r.status, delivered: r.delivered });
    }
    out.push(NblOutcome { status: last.status, delivered: last.delivered });
    Ok(out)
}

/// Model NBL `a` (going `dir`) is not back after its operation.
#[cold]
fn never_back(dir: Dir, a: usize) -> Violation {
    let (rule, sub) = match dir {
        Dir::Send => ("send NBL never completed", subcodes::SEND_NBL_HELD),
        Dir::Receive => ("receive NBL never returned", subcodes::RECEIVE_NBL_HELD),
    };
    record(ndis_violation(rule, sub, a as u64, 0, format!("NBL {a:#x} is still outstanding after the operation")))
}

/// Passes `nbls` to the data-path module next below module `from` (None:
/// from the protocol), or the miniport.
/// `m` is the model, locked by the caller for this hop; it comes back
/// locked, if it still is, for the thread's next step.
fn send_down(m: ModelGuard, adapter: usize, from: Option<usize>, nbls: Addrs, flags: u32) -> Result<Held, Violation> {
    let handler = chars(&m).SendNetBufferListsHandler;
    let target = next_below(&m, adapter, from);
    match (target, handler) {
        (Some((h, ctx)), Some(f)) => {
            // SAFETY: documented FilterSendNetBufferLists signature.
            let f: SendFn = unsafe { win64(f) };
            // SAFETY: the arguments NDIS passes.
            pass_to_module(m, h, &nbls, "FilterSendNetBufferLists", false, |head| unsafe {
                f(ctx as NDIS_HANDLE, head, 0, flags)
            })
        }
        _ => to_far_end(m, Dir::Send, nbls, flags),
    }
}

/// Gives `nbls` to module `h` (on their way down or up) and calls its
/// `callback` with them chained; they stay in the module's hands unless it
/// passes them on, completes or returns them meanwhile.
///
/// With `resources` (a receive indicated with NDIS_RECEIVE_FLAGS_RESOURCES)
/// they revert to the layer below when the callback returns, in the same
/// step as the callback's end is recorded, so that no check in between sees
/// them held by a module that is no longer in a callback with them.
///
/// The model, locked again for that step, stays locked for the thread's
/// next one.
fn pass_to_module(
    mut m: ModelGuard,
    h: usize,
    nbls: &[usize],
    callback: &'static str,
    resources: bool,
    call: impl FnOnce(*mut NET_BUFFER_LIST),
) -> Result<Held, Violation> {
    for a in nbls {
        let r = m.nbls.get_mut(a).expect("tracked");
        r.holder = Holder::Module(h);
        r.path.push(h);
        r.in_call += 1;
    }
    m.count(callback);
    drop(m);
    let head = chain(nbls);
    let r = stack::call_driver(callback, || call(head));
    let mut m = model();
    for a in nbls {
        if let Some(r) = m.nbls.get_mut(a) {
            r.in_call = r.in_call.saturating_sub(1);
            if resources {
                revert(r, h);
            }
        }
    }
    r.map(|()| Some(m))
}

/// `nbls` reached the miniport (sends) or the protocol (receives): counted,
/// checked unmodified, then completed or returned (inline or deferred)
/// unless they were indicated with NDIS_RECEIVE_FLAGS_RESOURCES. The model
/// comes back locked, if it still is, for the thread's next step.
fn to_far_end(mut m: ModelGuard, dir: Dir, nbls: Addrs, flags: u32) -> Result<Held, Violation> {
    for a in &nbls {
        // SAFETY: a live NBL the model tracks, at the far end now.
        let nbs = unsafe { nbl::net_buffers(*a as *const NET_BUFFER_LIST) };
        let r = m.nbls.get_mut(a).expect("tracked");
        r.holder = Holder::FarEnd;
        r.delivered = true;
        // SAFETY: `nbs` are the live NET_BUFFERs of this model NBL.
        let modified = r.alloc.is_some_and(|alloc| !unsafe { same_frames(&nbs, &alloc.get().spec().frames) });
        if dir == Dir::Send {
            // SAFETY: a live NBL; the miniport owns it now.
            unsafe { (*(*a as *mut NET_BUFFER_LIST)).Status = NDIS_STATUS_SUCCESS };
        }
        let stats = &mut m.stats;
        match dir {
            Dir::Send => stats.nbs_to_miniport += nbs.len() as u64,
            Dir::Receive => stats.nbs_to_protocol += nbs.len() as u64,
        }
        stats.frames_modified += u64::from(modified);
    }
    if dir == Dir::Receive && flags & NDIS_RECEIVE_FLAGS_RESOURCES != 0 {
        return Ok(Some(m)); // the protocol copied what it needs
    }
    match completion() {
        Completion::Inline => {
            let flags = u32::from(irql::current() == irql::DISPATCH);
            back_through(m, dir, nbls, flags)
        }
        _ => {
            defer(Pending { dir, nbls });
            Ok(Some(m))
        }
    }
}

/// Whether the NET_BUFFERs `nbs` of a model NBL that reached the far end
/// still hold the frames it was built with (a pass-through filter must not
/// modify them: counted in `Stats::frames_modified`).
///
/// # Safety
/// Every element of `nbs` is a live NET_BUFFER of a model NBL.
unsafe fn same_frames(nbs: &[*mut NET_BUFFER], frames: &[crate::frames::Frame]) -> bool {
    nbs.len() == frames.len()
        && nbs.iter().zip(frames).all(|(nb, f)| {
            // SAFETY: the caller's contract.
            unsafe { (**nb).DataLength.get() as usize == f.bytes.len() && same_data(*nb, &f.bytes) }
        })
}

/// Whether the data of `nb` equals `bytes` (its length checked by the
/// caller), compared in place (no copy, no allocation per frame).
///
/// # Safety
/// `nb` is a live NET_BUFFER of a model NBL.
unsafe fn same_data(nb: *const NET_BUFFER, bytes: &[u8]) -> bool {
    // SAFETY: the caller's contract.
    unsafe { nbl::data_starts_with(nb, bytes) }
}

/// NBLs handed back by the far end (sends completed by the layer below,
/// receives returned by the layer above) go to the module that passed them
/// on (the last on their path), or finish when none is left. `m` is the
/// model, locked by the caller for the first step; it comes back locked
/// when the last step left it so (after a driver callback), for the
/// thread's next step.
fn back_through(mut m: ModelGuard, dir: Dir, nbls: Addrs, flags: u32) -> Result<Held, Violation> {
    let runs = runs_by_dest(&m, &nbls);
    let mut rest: &[usize] = &nbls;
    // NBLs back with their creator, made inaccessible before the driver
    // runs again and once the model's lock is let go.
    let mut done = Addrs::new();
    for (i, (dest, len)) in runs.iter().enumerate() {
        let (group, tail) = rest.split_at(*len);
        rest = tail;
        match *dest {
            Some((h, ctx)) => {
                let f = dir.back_handler(chars(&m));
                let mut own = Addrs::new();
                for a in group {
                    let r = m.nbls.get_mut(a).expect("tracked");
                    if r.origin == Some(h) {
                        own.push(*a);
                    } else {
                        r.holder = Holder::Module(h);
                        r.in_call += 1;
                    }
                }
                for a in &own {
                    if let Some(r) = m.nbls.remove(a) {
                        m.resources_nbls -= usize::from(r.resources);
                    }
                }
                m.count(dir.back_callback());
                drop(m);
                retire_all(&mut done);
                let head = chain(group);
                let callback = dir.back_callback();
                // SAFETY: the arguments NDIS passes.
                let r = stack::call_driver(callback, || unsafe { f(ctx as NDIS_HANDLE, head, flags) });
                m = model();
                for a in group.iter().filter(|a| !own.contains(a)) {
                    if let Some(r) = m.nbls.get_mut(a) {
                        r.in_call = r.in_call.saturating_sub(1);
                    }
                }
                if r.is_err() || i + 1 == runs.len() {
                    return r.map(|()| Some(m));
                }
            }
            None => finish(&mut m, group, &mut done),
        }
    }
    drop(m);
    retire_all(&mut done);
    Ok(None)
}

/// NBLs back with their creator: made inaccessible now (one system call
/// per run of consecutive pages, made outside the model's lock).
fn retire_all(done: &mut Addrs) {
    if done.is_empty() {
        return;
    }
    // The creator may free them now: the driver must not touch them again.
    crate::lent::retire_many(done);
    done.clear();
}

/// Marks `group` back with its creator; their pages are retired (listed in
/// `done`) before the driver runs again.
fn finish(m: &mut super::Model, group: &[usize], done: &mut Addrs) {
    for a in group {
        // SAFETY: a live model NBL back with its creator.
        let status = unsafe { (*(*a as *const NET_BUFFER_LIST)).Status };
        let r = m.nbls.get_mut(a).expect("tracked");
        r.holder = Holder::Done;
        r.status = status;
        done.push(*a);
        let send = r.dir == Dir::Send;
        m.stats.nbls_finished += 1;
        if send && status == NDIS_STATUS_PAUSED {
            m.stats.sends_completed_paused += 1;
        }
    }
}

/// Where a run of NBLs goes next: a module (handle, context) or its creator.
type Dest = Option<(usize, usize)>;

/// Splits `nbls` into runs with the same next destination: the last module
/// on their path (with its context) or None (their creator); each run as
/// its destination and length.
fn runs_by_dest(m: &super::Model, nbls: &[usize]) -> SmallVec<[(Dest, usize); 2]> {
    let mut runs: SmallVec<[(Dest, usize); 2]> = SmallVec::new();
    for a in nbls {
        let dest = m.nbls[a].path.last().map(|h| (*h, m.modules[h].context));
        match runs.last_mut() {
            Some((d, n)) if *d == dest => *n += 1,
            _ => runs.push((dest, 1)),
        }
    }
    runs
}

/// Delivers deferred send completions and receive returns, on this thread
/// or another one, at DISPATCH_LEVEL. `held`: the model if the caller's
/// last step left it locked; it is let go before any wait, and comes back
/// locked, if it still is, for the thread's next step.
pub(crate) fn drain_pending(held: Held) -> Result<Held, Violation> {
    match completion() {
        Completion::Inline => Ok(held),
        Completion::Deferred => drain_here(held),
        Completion::OtherThread => {
            drop(held);
            drain_elsewhere(Duration::ZERO).map(|()| None)
        }
        Completion::Delayed(max) => {
            drop(held);
            drain_elsewhere(jitter(max)).map(|()| None)
        }
    }
}

/// Hands this thread's deferred completions to a new thread, which delivers
/// them after `delay`; waits for it. The thread is bounded by the delay
/// and the driver calls it makes (each under the watchdog).
fn drain_elsewhere(delay: Duration) -> Result<(), Violation> {
    let mine: Vec<Pending> = pending(std::mem::take);
    if mine.is_empty() {
        return Ok(());
    }
    std::thread::spawn(move || {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        pending(|q| *q = mine);
        drain_here(None).map(drop)
    })
    .join()
    .expect("completion thread panicked")
}

/// Delivers this thread's deferred completions and returns; `held` and
/// the result as [`drain_pending`]'s.
fn drain_here(mut held: Held) -> Result<Held, Violation> {
    loop {
        let next = pending(|q| q.pop());
        let Some(item) = next else { return Ok(held) };
        let saved = irql::current();
        irql::set(irql::DISPATCH);
        let m = held.take().unwrap_or_else(model);
        let r = back_through(m, item.dir, item.nbls, item.dir.back_dispatch_flag());
        irql::set(saved);
        held = r?;
    }
}

/// A `*_DISPATCH_LEVEL` flag (bit 0 of every data-path flags word) must be
/// set only at DISPATCH_LEVEL.
#[inline]
fn check_flag(function: &str, flags: u32) -> Result<(), Violation> {
    if flags & 1 != 0 && irql::current() != irql::DISPATCH {
        return Err(flag_below_dispatch(function, flags));
    }
    Ok(())
}

#[cold]
fn flag_below_dispatch(function: &str, flags: u32) -> Violation {
    ndis_violation(
        "DISPATCH_LEVEL flag set below DISPATCH_LEVEL",
        subcodes::FLAG_IRQL,
        u64::from(flags),
        u64::from(irql::current()),
        format!("{function} with the *_DISPATCH_LEVEL flag at {}", irql::name(irql::current())),
    )
}

fn position(adapter: usize, h: usize) -> usize {
    data_path(&model(), adapter).position(|(x, _)| x == h).expect("attached module")
}

/// Takes ownership of `nbls` away from module `h`, which passes them on;
/// NBLs the model does not know are `h`'s own.
fn take_from(
    m: &mut super::Model,
    function: &str,
    h: usize,
    adapter: usize,
    nbls: &[usize],
    dir: Dir,
    resources: bool,
) -> Result<(), Violation> {
    // The last NBL is marked passed on where it is checked (one look-up):
    // no check follows it, so nothing changes unless every one passes.
    let last = nbls.len().wrapping_sub(1);
    for (i, a) in nbls.iter().enumerate() {
        match m.nbls.get_mut(a) {
            Some(r) if r.holder == Holder::Module(h) && r.dir == dir => {
                if i == last {
                    r.passed_on_by.push(h);
                }
            }
            Some(r) => {
                let detail = format!("{function}: NBL {a:#x} is not owned by this module (held by {:?})", r.holder);
                return Err(ndis_violation(
                    "NBL not owned by the filter",
                    subcodes::NBL_NOT_OWNED,
                    *a as u64,
                    h as u64,
                    detail,
                ));
            }
            None => {
                m.resources_nbls += usize::from(resources);
                m.nbls.insert(
                    *a,
                    NblRec {
                        alloc: None,
                        dir,
                        origin: Some(h),
                        adapter,
                        holder: Holder::Module(h),
                        path: smallvec::smallvec![h],
                        passed_on_by: if i == last { smallvec::smallvec![h] } else { Addrs::new() },
                        resources,
                        in_call: 0,
                        delivered: false,
                        status: 0,
                    },
                );
            }
        }
    }
    for a in &nbls[..last.min(nbls.len())] {
        m.nbls.get_mut(a).expect("tracked").passed_on_by.push(h);
    }
    Ok(())
}

fn wrong_state(function: &str, h: usize, state: ModuleState, what: &str) -> Violation {
    ndis_violation(
        "data path used in the wrong module state",
        subcodes::WRONG_STATE,
        h as u64,
        state as u64,
        format!("{function} {what} while the module is {state:?}"),
    )
}

/// A module whose pause has completed passes traffic on ("Filter Module
/// States and Operations": in the Paused state a filter performs no send
/// or receive operations; "Pausing a Filter Module").
fn forwarded_after_pause(function: &str, h: usize, nbls: &[usize], what: &str) -> Violation {
    let first = nbls.first().copied().unwrap_or(0);
    ndis_violation(
        "NBL forwarded after the filter's pause completed",
        subcodes::FORWARDED_AFTER_PAUSE,
        first as u64,
        h as u64,
        format!("{function} {what}: module {h:#x} completed its pause and is Paused, NBL {first:#x}"),
    )
}

fn is_own(m: &super::Model, h: usize, nbls: &[usize]) -> bool {
    nbls.iter().any(|a| m.nbls.get(a).is_none_or(|r| r.origin == Some(h)))
}

/// `NdisFSendNetBufferLists`.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisFSendNetBufferLists(
    handle: NDIS_HANDLE,
    head: *mut NET_BUFFER_LIST,
    _port: u32,
    flags: u32,
) {
    irql::require("NdisFSendNetBufferLists", irql::PASSIVE, irql::DISPATCH);
    model_call(|| send_from_module(handle, head, flags));
}

/// Runs `f`, a model function the driver called, on the host stack, and
/// raises the violation it returns. The error crosses the stack switch
/// boxed: a word instead of the whole violation each way.
fn model_call(f: impl FnOnce() -> Result<(), Violation>) {
    if let Err(v) = stack::on_host(|| f().map_err(Box::new)) {
        raise_or_leave(*v)
    }
}

/// NdisFSendNetBufferLists's model: module `handle` passes the chain at
/// `head` down.
fn send_from_module(handle: NDIS_HANDLE, head: *mut NET_BUFFER_LIST, flags: u32) -> Result<(), Violation> {
    check_flag("NdisFSendNetBufferLists", flags)?;
    let nbls = walk(head);
    let mut m = model();
    let Some((adapter, state, _)) = module_in(&m, handle) else {
        drop(m);
        return Err(bad_handle("NdisFSendNetBufferLists", handle));
    };
    let h = handle as usize;
    match state {
        ModuleState::Paused => {
            return Err(forwarded_after_pause(
                "NdisFSendNetBufferLists",
                h,
                &nbls,
                "sends (a paused filter completes sends with NDIS_STATUS_PAUSED, R14)",
            ))
        }
        ModuleState::Pausing | ModuleState::Restarting if is_own(&m, h, &nbls) => {
            return Err(wrong_state("NdisFSendNetBufferLists", h, state, "originates a send"))
        }
        // Not in the data path before FilterAttach returns ("Filter
        // Module States and Operations"): it can hold no NBL but its own.
        ModuleState::Attaching => {
            return Err(wrong_state("NdisFSendNetBufferLists", h, state, "sends before FilterAttach returned"))
        }
        _ => {}
    }
    take_from(&mut m, "NdisFSendNetBufferLists", h, adapter, &nbls, Dir::Send, false)?;
    send_down(m, adapter, Some(h), nbls, flags).map(drop)
}

/// Raises `v` found by this model function, or passes on a violation a
/// nested driver call already recorded.
fn raise_or_leave(v: Violation) -> ! {
    if v.function.is_empty() {
        raise(v)
    }
    crate::stack::leave_driver_call(v)
}

/// `NdisFSendNetBufferListsComplete`.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisFSendNetBufferListsComplete(handle: NDIS_HANDLE, head: *mut NET_BUFFER_LIST, flags: u32) {
    irql::require("NdisFSendNetBufferListsComplete", irql::PASSIVE, irql::DISPATCH);
    model_call(|| hand_back(&SEND_COMPLETE, handle, head, flags));
}

/// How a filter hands NBLs back the way they came: send completions up
/// (NdisFSendNetBufferListsComplete), receive returns down
/// (NdisFReturnNetBufferLists), with what the violations say.
struct HandBack {
    dir: Dir,
    function: &'static str,
    /// Rule of an NBL the module does not hold.
    not_owned: &'static str,
    /// Detail of an NBL the model does not track (any more).
    never_given: &'static str,
    /// Rule and detail of an NBL the module originated itself.
    own: (&'static str, &'static str),
}

const SEND_COMPLETE: HandBack = HandBack {
    dir: Dir::Send,
    function: "NdisFSendNetBufferListsComplete",
    not_owned: "send NBL completed twice or not owned",
    never_given: "was never given to this filter (or was already completed)",
    own: (
        "own NBL completed up",
        "was originated by this filter: its completion ends in FilterSendNetBufferListsComplete (R12)",
    ),
};

const RETURN: HandBack = HandBack {
    dir: Dir::Receive,
    function: "NdisFReturnNetBufferLists",
    not_owned: "receive NBL returned twice or not owned",
    never_given: "was never indicated to this filter (or was already returned)",
    own: (
        "own NBL returned down",
        "was indicated by this filter: it comes back through FilterReturnNetBufferLists (R20)",
    ),
};

/// Module `handle` hands the chain at `head` back: every NBL must be one it
/// holds and may hand back; then they continue towards their creator.
fn hand_back(how: &HandBack, handle: NDIS_HANDLE, head: *mut NET_BUFFER_LIST, flags: u32) -> Result<(), Violation> {
    check_flag(how.function, flags)?;
    let nbls = walk(head);
    let mut m = model();
    let Some((_, state, _)) = module_in(&m, handle) else {
        drop(m);
        return Err(bad_handle(how.function, handle));
    };
    let h = handle as usize;
    for a in &nbls {
        check_handed_back(how, &m, h, state, *a)?;
    }
    for a in &nbls {
        let r = m.nbls.get_mut(a).expect("checked");
        r.path.pop();
        r.holder = Holder::FarEnd;
    }
    back_through(m, how.dir, nbls, flags).map(drop)
}

/// Whether module `h` (in `state`) may hand NBL `a` back as `how` says.
fn check_handed_back(
    how: &HandBack,
    m: &super::Model,
    h: usize,
    state: ModuleState,
    a: usize,
) -> Result<(), Violation> {
    let violation = |rule, sub, detail| ndis_violation(rule, sub, a as u64, h as u64, detail);
    let Some(r) = m.nbls.get(&a) else {
        return Err(violation(how.not_owned, subcodes::NBL_NOT_OWNED, format!("NBL {a:#x} {}", how.never_given)));
    };
    if how.dir == Dir::Receive && r.resources {
        let detail = format!("NBL {a:#x} was indicated with NDIS_RECEIVE_FLAGS_RESOURCES: it reverts to NDIS when FilterReceiveNetBufferLists returns (R18)");
        return Err(violation("RESOURCES NBL returned by the filter", subcodes::RESOURCES_RETURNED, detail));
    }
    if r.origin == Some(h) {
        return Err(violation(how.own.0, subcodes::NBL_NOT_OWNED, format!("NBL {a:#x} {}", how.own.1)));
    }
    if r.holder != Holder::Module(h) || r.dir != how.dir {
        let detail = format!("NBL {a:#x} is held by {:?}, not by this module", r.holder);
        return Err(violation(how.not_owned, subcodes::NBL_NOT_OWNED, detail));
    }
    if how.dir == Dir::Send {
        check_paused_status(r, h, state, a)?;
    }
    Ok(())
}

/// A send a module completes without having passed it on, while not
/// Running, must carry NDIS_STATUS_PAUSED (R14).
fn check_paused_status(r: &NblRec, h: usize, state: ModuleState, a: usize) -> Result<(), Violation> {
    // SAFETY: a live NBL owned by the caller.
    let status = unsafe { (*(a as *const NET_BUFFER_LIST)).Status };
    let never_sent = !r.passed_on_by.contains(&h);
    if never_sent && state != ModuleState::Running && status != NDIS_STATUS_PAUSED {
        let detail = format!(
            "module {state:?} completed NBL {a:#x} with status {status:#x} instead of NDIS_STATUS_PAUSED (R14)"
        );
        return Err(ndis_violation(
            "send completed while paused without NDIS_STATUS_PAUSED",
            subcodes::NOT_PAUSED_STATUS,
            a as u64,
            status as u32 as u64,
            detail,
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Receive path.

/// Indicates model NBLs from the miniport of `adapter` at `at`, with
/// NDIS_RECEIVE_FLAGS_RESOURCES when `resources`; returns how each ended.
pub(crate) fn receive(
    adapter: AdapterId,
    allocs: Vec<NblAlloc>,
    at: At,
    resources: bool,
) -> Result<Outcomes, Violation> {
    let m = model();
    let gate = Gate::of(&m, adapter.0, Dir::Receive);
    let (_in_flight, mut m) = gate.enter(m);
    let addrs = register(&mut m, adapter.0, &allocs, Dir::Receive, resources);
    let flags = at.flag() | if resources { NDIS_RECEIVE_FLAGS_RESOURCES } else { 0 };
    let saved = irql::current();
    irql::set(at.irql());
    let result = indicate_up(m, adapter.0, None, addrs, flags);
    irql::set(saved);
    let outcome = result
        .map(|held| {
            if !resources {
                return held;
            }
            // The NBLs reverted to the miniport when the indication
            // returned.
            let addrs: Addrs = allocs.iter().map(|a| a.as_ptr() as usize).collect();
            let mut done = Addrs::new();
            finish(&mut held.unwrap_or_else(model), &addrs, &mut done);
            retire_all(&mut done);
            None
        })
        .and_then(drain_pending)
        .and_then(|held| collect(&allocs, held));
    keep_if_failed(allocs, outcome)
}

/// Indicates `nbls` to the data-path module next above module `from`
/// (None: from the miniport), or to the protocol.
/// `m` is the model, locked by the caller for this hop; it comes back
/// locked, if it still is, for the thread's next step.
fn indicate_up(m: ModelGuard, adapter: usize, from: Option<usize>, nbls: Addrs, flags: u32) -> Result<Held, Violation> {
    let handler = chars(&m).ReceiveNetBufferListsHandler;
    let target = next_above(&m, adapter, from);
    match (target, handler) {
        (Some((h, ctx)), Some(f)) => {
            // SAFETY: documented FilterReceiveNetBufferLists signature.
            let f: ReceiveFn = unsafe { win64(f) };
            let count = nbls.len() as u32;
            let resources = flags & NDIS_RECEIVE_FLAGS_RESOURCES != 0;
            // SAFETY: the arguments NDIS passes.
            pass_to_module(m, h, &nbls, "FilterReceiveNetBufferLists", resources, |head| unsafe {
                f(ctx as NDIS_HANDLE, head, 0, count, flags)
            })
        }
        _ => to_far_end(m, Dir::Receive, nbls, flags),
    }
}

/// RESOURCES NBLs revert to the layer below when the indication returns.
fn revert(r: &mut NblRec, h: usize) {
    if r.path.last() == Some(&h) {
        r.path.pop();
    }
    r.holder = r.path.last().map_or(Holder::FarEnd, |x| Holder::Module(*x));
}

/// `NdisFIndicateReceiveNetBufferLists`.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisFIndicateReceiveNetBufferLists(
    handle: NDIS_HANDLE,
    head: *mut NET_BUFFER_LIST,
    _port: u32,
    count: u32,
    flags: u32,
) {
    irql::require("NdisFIndicateReceiveNetBufferLists", irql::PASSIVE, irql::DISPATCH);
    model_call(|| indicate_from_module(handle, head, count, flags));
}

/// NdisFIndicateReceiveNetBufferLists's model: module `handle` indicates
/// the chain at `head` (`count` NBLs) up.
fn indicate_from_module(
    handle: NDIS_HANDLE,
    head: *mut NET_BUFFER_LIST,
    count: u32,
    flags: u32,
) -> Result<(), Violation> {
    check_flag("NdisFIndicateReceiveNetBufferLists", flags)?;
    let nbls = walk(head);
    let mut m = model();
    let Some((adapter, state, _)) = module_in(&m, handle) else {
        drop(m);
        return Err(bad_handle("NdisFIndicateReceiveNetBufferLists", handle));
    };
    let h = handle as usize;
    if nbls.len() != count as usize {
        let detail = format!("NumberOfNetBufferLists is {count}, the chain holds {} (R16)", nbls.len());
        return Err(ndis_violation(
            "receive NBL count mismatch",
            subcodes::NBL_COUNT,
            u64::from(count),
            nbls.len() as u64,
            detail,
        ));
    }
    if state == ModuleState::Paused {
        return Err(forwarded_after_pause(
            "NdisFIndicateReceiveNetBufferLists",
            h,
            &nbls,
            "indicates receives (a paused filter returns them at once)",
        ));
    }
    if state != ModuleState::Running && is_own(&m, h, &nbls) {
        return Err(wrong_state(
            "NdisFIndicateReceiveNetBufferLists",
            h,
            state,
            "originates a receive indication (R9)",
        ));
    }
    let resources = flags & NDIS_RECEIVE_FLAGS_RESOURCES != 0;
    // A RESOURCES NBL passed up without the flag (searched for only while
    // some NBL is tracked with it).
    let dropped = if resources || m.resources_nbls == 0 {
        None
    } else {
        nbls.iter().find(|a| m.nbls.get(*a).is_some_and(|r| r.resources))
    };
    if let Some(a) = dropped {
        let detail =
            format!("NBL {a:#x} was indicated with NDIS_RECEIVE_FLAGS_RESOURCES; passing it up without the flag (R18)");
        return Err(ndis_violation(
            "RESOURCES flag dropped",
            subcodes::RESOURCES_RETURNED,
            *a as u64,
            h as u64,
            detail,
        ));
    }
    take_from(&mut m, "NdisFIndicateReceiveNetBufferLists", h, adapter, &nbls, Dir::Receive, resources)?;
    if !resources {
        return indicate_up(m, adapter, Some(h), nbls, flags).map(drop);
    }
    let held = indicate_up(m, adapter, Some(h), nbls.clone(), flags)?;
    // They revert to this module when the indication returns (R18).
    let mut m = held.unwrap_or_else(model);
    for a in &nbls {
        if let Some(r) = m.nbls.get_mut(a) {
            r.holder = Holder::Module(h);
        }
    }
    Ok(())
}

/// `NdisFReturnNetBufferLists`.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisFReturnNetBufferLists(handle: NDIS_HANDLE, head: *mut NET_BUFFER_LIST, flags: u32) {
    irql::require("NdisFReturnNetBufferLists", irql::PASSIVE, irql::DISPATCH);
    model_call(|| hand_back(&RETURN, handle, head, flags));
}

// ---------------------------------------------------------------------------
// Pause and detach checks.

/// Whether an NBL module `h` passed on (a send down, a receive up) is still
/// outstanding beyond it.
pub(crate) fn forwarded_outstanding(m: &super::Model, h: usize) -> bool {
    m.nbls.values().any(|r| r.holder != Holder::Done && r.holder != Holder::Module(h) && r.path.contains(&h))
}

/// When module `h`'s pause completes (FilterPause returned
/// NDIS_STATUS_SUCCESS, or the filter called NdisFPauseComplete) every NBL
/// it forwarded must have come back to it and it may hold none: sends it
/// passed down completed (FilterSendNetBufferListsComplete), receives it
/// indicated up returned (FilterReturnNetBufferLists), queued ones handed
/// back, its own ones back ("Pausing a Filter Module"; "Pausing a Driver
/// Stack"; R6, R8). An NBL in one of `h`'s callbacks right now is not
/// counted: the filter has it in hand, and passing it on later is caught
/// as a forward after the pause.
///
/// Called with the model locked, so that the check and the move to Paused
/// are one step.
pub(crate) fn check_pause_complete(m: &super::Model, h: usize, how: &str) -> Result<(), Violation> {
    let forwarded_too = crate::verifier::config().pause_waits_for_forwarded;
    // The lowest address first, so that a report names the same NBL
    // whatever the table's order.
    let outstanding = m
        .nbls
        .iter()
        .filter(|(_, r)| {
            if r.holder == Holder::Done {
                return false;
            }
            if r.holder == Holder::Module(h) {
                return r.in_call == 0; // queued by the filter
            }
            r.origin == Some(h) || (forwarded_too && r.path.contains(&h))
        })
        .min_by_key(|(a, _)| **a);
    let Some((a, r)) = outstanding else { return Ok(()) };
    let (what, sub) = match (r.dir, r.holder == Holder::Module(h)) {
        (Dir::Send, true) => ("a send NBL it holds (queued, never passed on or completed)", subcodes::SEND_NBL_HELD),
        (Dir::Receive, true) => ("a receive NBL it holds (queued, never returned)", subcodes::RECEIVE_NBL_HELD),
        (Dir::Send, false) => ("a send NBL it passed down, not yet completed back to it", subcodes::PAUSE_WITH_NBLS),
        (Dir::Receive, false) => ("a receive NBL it indicated up, not yet returned to it", subcodes::PAUSE_WITH_NBLS),
    };
    let detail = format!("module {h:#x} completed its pause ({how}) with {what}: NBL {a:#x}, held by {:?}", r.holder);
    Err(ndis_violation("pause completed with NBLs outstanding", sub, *a as u64, h as u64, detail))
}

/// At detach, no NBL module `h` originated may be outstanding.
pub(crate) fn check_originated_on_detach(h: usize) -> Result<(), Violation> {
    let m = model();
    if let Some((a, _)) = m.nbls.iter().filter(|(_, r)| r.origin == Some(h)).min_by_key(|(a, _)| **a) {
        let v = ndis_violation(
            "filter detached with its NBLs outstanding",
            subcodes::DETACH_WITH_NBLS,
            *a as u64,
            h as u64,
            format!("NBL {a:#x}"),
        );
        drop(m);
        return Err(record(v));
    }
    Ok(())
}

/// Model NBLs not back with their creator (at unload).
pub(crate) fn outstanding() -> Vec<usize> {
    let m = model();
    let mut out: Vec<usize> = m.nbls.iter().filter(|(_, r)| r.holder != Holder::Done).map(|(a, _)| *a).collect();
    out.sort_unstable();
    out
}

/// Adapter of every tracked NBL (keeps the field read).
#[allow(dead_code)]
fn adapter_of(a: usize) -> Option<usize> {
    model().nbls.get(&a).map(|r| r.adapter)
}

// ---------------------------------------------------------------------------
// NdisGetDataBuffer.

/// `NdisGetDataBuffer`: a pointer into contiguous data, or the data copied
/// into `storage`, or NULL when the NET_BUFFER has fewer bytes (or they are
/// not contiguous and there is no storage).
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisGetDataBuffer(
    nb: *mut NET_BUFFER,
    needed: u32,
    storage: *mut c_void,
    align_multiple: u32,
    align_offset: u32,
) -> *mut c_void {
    irql::require("NdisGetDataBuffer", irql::PASSIVE, irql::DISPATCH);
    stack::on_host(|| {
        // SAFETY: the driver passes a NET_BUFFER it owns.
        let (data_len, mdl, offset) =
            unsafe { ((*nb).DataLength.get() as usize, (*nb).CurrentMdl, (*nb).CurrentMdlOffset as usize) };
        let needed = needed as usize;
        if needed == 0 || needed > data_len || mdl.is_null() {
            return core::ptr::null_mut();
        }
        // SAFETY: CurrentMdl of a live NET_BUFFER.
        let (va, count) = unsafe { ((*mdl).MappedSystemVa as usize, (*mdl).ByteCount as usize) };
        let ptr = va + offset;
        let aligned = align_multiple <= 1 || ptr.wrapping_sub(align_offset as usize) % align_multiple as usize == 0;
        if count >= offset + needed && aligned {
            return ptr as *mut c_void;
        }
        if storage.is_null() {
            return core::ptr::null_mut();
        }
        // SAFETY: `storage` holds at least `needed` bytes (the caller's
        // contract); the MDL chain is the NET_BUFFER's.
        let out = unsafe { std::slice::from_raw_parts_mut(storage.cast::<u8>(), needed) };
        // SAFETY: as above.
        if unsafe { nbl::copy_data(nb, 0, out) } {
            storage
        } else {
            core::ptr::null_mut()
        }
    })
}

// ---------------------------------------------------------------------------
// Status indications.

/// Indicates `status` from the miniport of `adapter` at `at`: through each
/// module that has a FilterStatus, around those that do not.
///
/// Holds the adapter's receive gate for reading: NDIS indicates nothing to
/// a module being attached or detached.
pub(crate) fn indicate_status(adapter: AdapterId, status: NDIS_STATUS, at: At) -> Result<(), Violation> {
    let gate = model().adapters[adapter.0].receive_gate.clone();
    let _in_flight = gate.read().unwrap_or_else(PoisonError::into_inner);
    let saved = irql::current();
    irql::set(at.irql());
    let r = status_up(adapter.0, None, status);
    irql::set(saved);
    r
}

fn status_up(adapter: usize, above: Option<usize>, status: NDIS_STATUS) -> Result<(), Violation> {
    let stack = stack_of(adapter);
    let start = above.map_or(0, |i| i + 1);
    let Some(&(_, ctx)) = stack.get(start) else {
        model().stats.status_forwarded += 1;
        return Ok(());
    };
    let Some(f) = handlers().StatusHandler else {
        model().stats.status_bypassed += 1;
        return status_up(adapter, Some(start), status);
    };
    let mut ind = NDIS_STATUS_INDICATION {
        Header: NDIS_OBJECT_HEADER::new(
            NDIS_OBJECT_TYPE_STATUS_INDICATION,
            NDIS_STATUS_INDICATION_REVISION_1,
            NDIS_SIZEOF_STATUS_INDICATION_REVISION_1,
        ),
        StatusCode: status,
        ..Default::default()
    };
    // SAFETY: documented FilterStatus signature.
    let f: StatusFn = unsafe { win64(f) };
    count_callback("FilterStatus");
    // SAFETY: the arguments NDIS passes; `ind` outlives the call.
    stack::call_driver("FilterStatus", || unsafe { f(ctx as NDIS_HANDLE, &mut ind) })
}

/// `NdisFIndicateStatus`.
#[allow(non_snake_case)]
unsafe extern "win64" fn NdisFIndicateStatus(handle: NDIS_HANDLE, _ind: *mut NDIS_STATUS_INDICATION) {
    irql::require("NdisFIndicateStatus", irql::PASSIVE, irql::DISPATCH);
    let r = stack::on_host(|| -> Result<(), Violation> {
        let (adapter, state, _) = module_for("NdisFIndicateStatus", handle)?;
        if state == ModuleState::Attaching {
            // An Attaching module indicates nothing ("Filter Module States
            // and Operations"): it is not in the stack yet.
            return Err(wrong_state("NdisFIndicateStatus", handle as usize, state, "indicates a status"));
        }
        status_up(adapter, Some(position(adapter, handle as usize)), 0)
    });
    if let Err(v) = r {
        raise_or_leave(v)
    }
}

/// Sends an OID request down `adapter`: every module that leaves
/// FilterOidRequest NULL is bypassed. A driver with OID handlers is not
/// modelled (the request is refused).
pub(crate) fn oid_request(adapter: AdapterId) -> Result<(), String> {
    if handlers().OidRequestHandler.is_some() {
        return Err("OID requests through a filter's FilterOidRequest are not modelled".into());
    }
    let n = stack_of(adapter.0).len() as u64;
    model().stats.oids_bypassed += n;
    Ok(())
}

/// Which module states hold a module handle valid for the data path.
#[allow(dead_code)]
fn valid(h: usize) -> bool {
    state_of(h).is_some_and(in_data_path)
}

pub(super) fn imports() -> Vec<Import> {
    vec![
        Import::ndis("NdisFSendNetBufferLists", NdisFSendNetBufferLists as *const () as usize),
        Import::ndis("NdisFSendNetBufferListsComplete", NdisFSendNetBufferListsComplete as *const () as usize),
        Import::ndis("NdisFIndicateReceiveNetBufferLists", NdisFIndicateReceiveNetBufferLists as *const () as usize),
        Import::ndis("NdisFReturnNetBufferLists", NdisFReturnNetBufferLists as *const () as usize),
        Import::ndis("NdisGetDataBuffer", NdisGetDataBuffer as *const () as usize),
        Import::ndis("NdisFIndicateStatus", NdisFIndicateStatus as *const () as usize),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verifier::{Config, Session};

    /// A violation leaves the operation before it drains what it deferred;
    /// the next session on the same thread must not deliver it.
    #[test]
    fn deferred_completions_do_not_outlive_their_session() {
        {
            let _s = Session::begin(Config::default());
            defer(Pending { dir: Dir::Send, nbls: smallvec::smallvec![0xdead_0000] });
            assert_eq!(pending(|q| q.len()), 1);
        }
        let _s = Session::begin(Config::default());
        assert_eq!(pending(|q| q.len()), 0, "the last session's queue is gone");
        assert!(drain_here(None).is_ok());
    }
}
