//! Locks: NDIS spin locks, NDIS read/write locks, executive spin locks at
//! DPC level and rundown protection, with real synchronisation between
//! threads and Driver Verifier's lock checks.
//!
//! * NDIS_SPIN_LOCK: the `SpinLock` word in the driver's memory is the lock
//!   (it holds the owner's thread id); `NdisAcquireSpinLock` raises to
//!   DISPATCH_LEVEL and saves the old IRQL in `OldIrql`, and
//!   `NdisReleaseSpinLock` restores exactly that value, as NDIS does: an
//!   out-of-order release therefore leaves the thread at the wrong IRQL,
//!   caught at the next release (0xC4/0x32) or when the callback returns.
//! * NDIS_RW_LOCK_EX: allocated by the model (counted as a pool allocation,
//!   so low-resources simulation can fail it). Read recursion and write
//!   recursion on one thread are allowed, as NDIS documents; a write
//!   acquire while the thread holds the lock for read would deadlock.
//!   LOCK_STATE_EX is tracked by address.
//! * Deadlock detection: lock order edges A -> B are recorded whenever B is
//!   acquired while A is held; an acquisition closing a cycle is 0xC4/0x1001.
//! * Rundown: the EX_RUNDOWN_REF word uses Windows' encoding (bit 0 =
//!   rundown active, count in steps of 2).
//!
//! Waiting never blocks a Linux thread for good: it yields and checks the
//! watchdog. Every per-thread "held" list is what
//! [`crate::stack::call_driver`] checks at return.

use std::collections::{BTreeMap, BTreeSet};

// The tables are looked up on every lock acquire and release: a fast hash
// (the keys are addresses and thread ids, not attacker-chosen).
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use ndis_sys::{EX_RUNDOWN_REF, LOCK_STATE_EX, NDIS_RWL_AT_DISPATCH_LEVEL, NDIS_SPIN_LOCK};

use crate::imports::Import;
use crate::irql::{self, APC, DISPATCH, PASSIVE};
use crate::stack::{on_host, spin_wait};
use crate::verifier::{self, codes, SessionLocal, Violation};

const RW_LOCK_TAG: u32 = u32::from_le_bytes(*b"NdRw");
const RW_LOCK_SIZE: usize = 64;
const RUNDOWN_ACTIVE: u64 = 1;
const RUNDOWN_INC: u64 = 2;

/// What the thread holds: (lock address, kind of acquisition).
type Holds = Vec<(usize, &'static str)>;

thread_local! {
    static HELD: SessionLocal<Holds> = const { SessionLocal::new(Vec::new()) };
}

#[inline(always)]
fn held<R>(f: impl FnOnce(&mut Holds) -> R) -> R {
    HELD.with(|h| h.with(f))
}

/// Kind of an NDIS spin lock held through NdisAcquireSpinLock.
const SPIN_RAISED: &str = "NDIS spin lock";
/// Kind of an NDIS spin lock held through NdisDprAcquireSpinLock.
const SPIN_AT_DPC: &str = "NDIS spin lock (Dpr)";

/// Number of locks the calling thread holds (an RW lock held recursively
/// counts once per acquisition).
#[inline]
pub fn held_count() -> usize {
    HELD.with(|h| h.read(Vec::len)).unwrap_or(0)
}

/// The lock the calling thread acquired last and still holds.
pub fn innermost_held() -> Option<(usize, &'static str)> {
    held(|h| h.last().copied())
}

/// Forgets this thread's holds beyond the first `n` (after a driver call
/// was abandoned; the locks themselves stay held: the session is tainted).
pub(crate) fn forget_held_since(n: usize) {
    held(|h| h.truncate(n));
}

/// Records that this thread holds `addr` (for the lock-held-at-return rule).
pub(crate) fn push_held(addr: usize, kind: &'static str) {
    held(|h| h.push((addr, kind)));
}

/// Forgets the innermost hold of `addr` (most often the last one: locks
/// are mostly released in the reverse order of acquisition).
pub(crate) fn pop_held(addr: usize) {
    held(|h| match h.last() {
        Some(&(a, _)) if a == addr => {
            h.pop();
        }
        _ => {
            if let Some(i) = h.iter().rposition(|&(a, _)| a == addr) {
                h.remove(i);
            }
        }
    });
}

/// Position of the innermost hold of `addr` on this thread's lock list.
pub(crate) fn held_index(addr: usize) -> Option<usize> {
    held(|h| h.iter().rposition(|&(a, _)| a == addr))
}

/// How this thread holds `addr` (innermost acquisition), if it does.
fn held_kind(addr: usize) -> Option<&'static str> {
    held(|h| h.iter().rev().find(|&&(a, _)| a == addr).map(|&(_, k)| k))
}

/// The LOCK_STATE_EX of every live RW lock acquisition: (its address,
/// (the lock, for write, the acquiring thread)). There are as many as
/// acquisitions held at once, a handful: a short list searched in order
/// costs less than a tree (one insert and one remove per acquisition).
#[derive(Default)]
struct LiveStates(Vec<(usize, (usize, bool, u64))>);

impl LiveStates {
    fn get(&self, state: usize) -> Option<(usize, bool, u64)> {
        self.0.iter().find(|(a, _)| *a == state).map(|&(_, v)| v)
    }

    fn insert(&mut self, state: usize, v: (usize, bool, u64)) {
        debug_assert!(self.get(state).is_none(), "checked before");
        self.0.push((state, v));
    }

    /// Where the entry of `state` is, for [`Self::remove_at`]: one search
    /// for a release's check and removal.
    #[inline]
    fn position(&self, state: usize) -> Option<usize> {
        self.0.iter().position(|(a, _)| *a == state)
    }

    #[inline]
    fn at(&self, i: usize) -> (usize, bool, u64) {
        self.0[i].1
    }

    #[inline]
    fn remove_at(&mut self, i: usize) {
        self.0.swap_remove(i);
    }

    /// The live state with the lowest address in `range` (a freed block).
    fn lowest_in(&self, range: std::ops::Range<usize>) -> Option<(usize, (usize, bool, u64))> {
        self.0.iter().filter(|(a, _)| range.contains(a)).min_by_key(|(a, _)| *a).copied()
    }
}

#[derive(Default)]
struct Tables {
    /// Known NDIS spin locks, by address (ordered: a pool free looks up
    /// the locks inside the freed range).
    spin: BTreeSet<usize>,
    rw: RwLocks,
    lock_states: LiveStates,
    rundown: BTreeMap<usize, Rundown>,
    order: HashMap<usize, HashSet<usize>>,
    /// The latest initialisations (`NdisAllocateSpinLock`,
    /// `ExInitializeRundownProtection`), oldest first: the likely source of
    /// a lock later used or freed at an address nothing was initialised at.
    inits: std::collections::VecDeque<Init>,
}

/// Where and by whom a lock was initialised.
#[derive(Clone)]
struct Init {
    function: &'static str,
    addr: usize,
    thread: u64,
    memory: String,
}

/// How many initialisations [`Tables::inits`] keeps.
const INITS_KEPT: usize = 8;

/// Records an initialisation at `addr` (called with the tables held).
fn record_init(t: &mut Tables, function: &'static str, addr: usize) {
    if t.inits.len() == INITS_KEPT {
        t.inits.pop_front();
    }
    t.inits.push_back(Init { function, addr, thread: irql::thread_id(), memory: memory_at(addr) });
}

/// What memory `addr` is in: a pool allocation (tag, offset) or not pool
/// (a stack or a global of the driver).
fn memory_at(addr: usize) -> String {
    crate::pool::outstanding().into_iter().find(|a| (a.addr..a.addr + a.size.max(1)).contains(&addr)).map_or_else(
        || "not pool memory (a stack or a global)".to_string(),
        |a| format!("pool allocation '{}' at {:#x} + {:#x}", a.tag_str(), a.addr, addr - a.addr),
    )
}

/// Reports a lock used or freed at an address nothing was initialised at,
/// though its word is a valid idle lock: a copy of a lock initialised
/// elsewhere. Windows identifies a lock by the address it was initialised
/// at; the source (the latest initialisations) is in the report.
fn moved_lock(kind: &str, init_function: &str, function: &str, addr: usize) -> ! {
    let (memory, sources) = {
        let t = tables();
        let sources: Vec<String> = t
            .inits
            .iter()
            .rev()
            .filter(|i| i.function == init_function)
            .map(|i| format!("{:#x} ({}, thread {})", i.addr, i.memory, i.thread))
            .collect();
        (memory_at(addr), sources)
    };
    fail(Violation::c4(
        "lock used at an address other than where it was initialised",
        codes::C4_UNINITIALIZED_RESOURCE,
        addr as u64,
        0,
        0,
        format!(
            "{function}({addr:#x}) on a {kind} in {memory}, but {init_function} was never called at this address: \
             the lock was moved or copied after initialisation; latest {init_function} calls, newest first: {}",
            if sources.is_empty() { "none".to_string() } else { sources.join(", ") }
        ),
    ))
}

/// A known EX_RUNDOWN_REF.
#[derive(Clone, Copy)]
struct Rundown {
    state: RundownState,
    /// Some ExAcquireRundownProtection succeeded since it was initialised:
    /// it is published, so freeing it needs a completed rundown.
    acquired: bool,
}

impl Rundown {
    const LIVE: Self = Self { state: RundownState::Live, acquired: false };
}

/// The allocated RW locks, by address. A driver takes the same lock again
/// and again (per packet): the last one looked up is remembered, and
/// comparing its address costs less than hashing it. The states sit in
/// slots, reused after a free, so the remembered slot stays valid until
/// its lock is freed.
#[derive(Default)]
struct RwLocks {
    slots: Vec<RwState>,
    /// Slots of freed locks, for the next allocation: `slots` never holds
    /// more than the most locks allocated at once.
    free: Vec<usize>,
    by_addr: HashMap<usize, usize>,
    /// The last lock looked up: (its address, its slot).
    last: Option<(usize, usize)>,
}

impl RwLocks {
    fn insert(&mut self, addr: usize) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = RwState::default();
                slot
            }
            None => {
                self.slots.push(RwState::default());
                self.slots.len() - 1
            }
        };
        if let Some(old) = self.by_addr.insert(addr, slot) {
            // Allocated twice at one address without a free between (the
            // pool would not do it): the older state is dropped.
            self.free.push(old);
        }
        self.last = None;
    }

    fn get(&self, addr: usize) -> Option<&RwState> {
        self.by_addr.get(&addr).map(|&slot| &self.slots[slot])
    }

    #[inline]
    fn get_mut(&mut self, addr: usize) -> Option<&mut RwState> {
        let slot = match self.last {
            Some((a, slot)) if a == addr => slot,
            _ => self.look_up(addr)?,
        };
        self.slots.get_mut(slot)
    }

    /// The slot of `addr` through the map, remembered as the last one.
    #[inline(never)]
    fn look_up(&mut self, addr: usize) -> Option<usize> {
        let slot = *self.by_addr.get(&addr)?;
        self.last = Some((addr, slot));
        Some(slot)
    }

    fn remove(&mut self, addr: usize) {
        if let Some(slot) = self.by_addr.remove(&addr) {
            self.free.push(slot);
            if self.last.is_some_and(|(a, _)| a == addr) {
                self.last = None;
            }
        }
    }
}

#[derive(Default)]
struct RwState {
    writer: u64,
    write_depth: u32,
    readers: Readers,
}

/// The threads holding an RW lock for read, with how many times each: a
/// handful at most, so a short list (no entry with a count of 0).
#[derive(Default)]
struct Readers(Vec<(u64, u32)>);

impl Readers {
    /// How many read acquisitions `thread` holds.
    fn of(&self, thread: u64) -> u32 {
        self.0.iter().find(|(t, _)| *t == thread).map_or(0, |&(_, n)| n)
    }

    /// Whether a thread other than `thread` holds it for read.
    fn others_than(&self, thread: u64) -> bool {
        self.0.iter().any(|(t, _)| *t != thread)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn add(&mut self, thread: u64) {
        match self.0.iter_mut().find(|(t, _)| *t == thread) {
            Some((_, n)) => *n += 1,
            None => self.0.push((thread, 1)),
        }
    }

    /// One read acquisition of `thread` released.
    fn release(&mut self, thread: u64) {
        if let Some(i) = self.0.iter().position(|(t, _)| *t == thread) {
            self.0[i].1 -= 1;
            if self.0[i].1 == 0 {
                self.0.swap_remove(i);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RundownState {
    Live,
    Waiting,
    Completed,
}

static TABLES: LazyLock<Mutex<Tables>> = LazyLock::new(Mutex::default);

fn tables() -> MutexGuard<'static, Tables> {
    TABLES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Session reset.
pub(crate) fn reset() {
    *tables() = Tables::default();
}

fn fail(v: Violation) -> ! {
    verifier::violation(v)
}

/// [`fail`] with the tables locked by the caller: let go of first (the
/// violation leaves the driver call without unwinding).
fn fail_unlocked(t: MutexGuard<'_, Tables>, v: Violation) -> ! {
    drop(t);
    fail(v)
}

// ---------------------------------------------------------------------------
// Deadlock detection.

/// Records the order edges for acquiring `addr` while holding this thread's
/// locks; a new edge that closes a cycle is a deadlock.
pub(crate) fn check_order(addr: usize, function: &str) {
    let held: Vec<usize> = held(|h| h.iter().map(|&(a, _)| a).filter(|&a| a != addr).collect());
    if held.is_empty() {
        return;
    }
    let cycle = {
        let mut t = tables();
        let cycle = held.iter().copied().find(|&h| reachable(&t.order, addr, h));
        if cycle.is_none() {
            for h in &held {
                t.order.entry(*h).or_default().insert(addr);
            }
        }
        cycle
    };
    if let Some(h) = cycle {
        fail(Violation::c4(
            "deadlock: lock order violation",
            codes::C4_DEADLOCK,
            addr as u64,
            h as u64,
            0,
            format!(
                "{function}({addr:#x}) while holding {h:#x}, but {h:#x} was acquired while holding {addr:#x} before"
            ),
        ));
    }
}

fn reachable(order: &HashMap<usize, HashSet<usize>>, from: usize, to: usize) -> bool {
    let mut seen = HashSet::default();
    let mut todo = vec![from];
    while let Some(n) = todo.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n) {
            todo.extend(order.get(&n).into_iter().flatten().copied());
        }
    }
    false
}

fn forget_order(addr: usize) {
    forget_order_in(&mut tables(), addr, addr + 1);
}

// ---------------------------------------------------------------------------
// Pool freed under the locks it holds.

/// Called by the pool before the driver's memory `[lo, hi)` is freed: a
/// held lock or an unfinished rundown inside it is a violation now, at the
/// free, not a crash that only a lucky interleaving shows later; the locks
/// inside are forgotten, with their lock-order edges, so a new lock at a
/// reused address starts clean (no false deadlock report).
///
/// Rules (Windows has no dedicated code for either; the harness reports
/// 0xC4/0x100B, "a lock deleted while owned", the closest documented one):
/// * a spin lock held, or a LOCK_STATE_EX tracking a live acquisition;
/// * an EX_RUNDOWN_REF with references outstanding, or one that was
///   published (some acquire succeeded) and never run down: R35, whoever
///   tears an object down waits for ExWaitForRundownProtectionRelease
///   before freeing it ([R:ExWaitForRundownProtectionRelease]).
pub(crate) fn on_pool_free(lo: usize, hi: usize, function: &str) {
    let found = {
        let mut t = tables();
        let held_spin =
            t.spin.range(lo..hi).copied().find(|&a| spin_word(a as *mut NDIS_SPIN_LOCK).load(Ordering::Relaxed) != 0);
        let live_state = t.lock_states.lowest_in(lo..hi).map(|(a, (lock, ..))| (a, lock));
        let unfinished = t.rundown.range(lo..hi).find_map(|(&a, r)| {
            let refs = rundown_word(a as *mut EX_RUNDOWN_REF).load(Ordering::Relaxed) >> 1;
            let published_live = r.acquired && r.state != RundownState::Completed;
            (refs > 0 || published_live).then_some((a, refs))
        });
        let gone: Vec<usize> = t.spin.range(lo..hi).chain(t.rundown.range(lo..hi).map(|(a, _)| a)).copied().collect();
        for a in &gone {
            t.spin.remove(a);
            t.rundown.remove(a);
        }
        forget_order_in(&mut t, lo, hi);
        (held_spin, live_state, unfinished)
    };
    match found {
        (Some(a), ..) => fail(Violation::c4(
            "memory freed with a lock held inside",
            codes::C4_DELETED_LOCK_STILL_OWNED,
            a as u64,
            lo as u64,
            0,
            format!("{function}({lo:#x}) frees NDIS spin lock {a:#x}, which is held"),
        )),
        (_, Some((a, lock)), _) => fail(Violation::c4(
            "memory freed with a lock held inside",
            codes::C4_DELETED_LOCK_STILL_OWNED,
            lock as u64,
            lo as u64,
            a as u64,
            format!(
                "{function}({lo:#x}) frees LOCK_STATE_EX {a:#x}, which tracks a live acquisition of RW lock {lock:#x}"
            ),
        )),
        (_, _, Some((a, refs))) if refs > 0 => fail(Violation::c4(
            "memory freed with rundown references outstanding",
            codes::C4_DELETED_LOCK_STILL_OWNED,
            a as u64,
            lo as u64,
            refs,
            format!("{function}({lo:#x}) frees EX_RUNDOWN_REF {a:#x} while {refs} reference(s) are held"),
        )),
        (_, _, Some((a, _))) => fail(Violation::c4(
            "memory freed before its rundown completed",
            codes::C4_DELETED_LOCK_STILL_OWNED,
            a as u64,
            lo as u64,
            0,
            format!(
                "{function}({lo:#x}) frees EX_RUNDOWN_REF {a:#x}, which was acquired and never run down \
                 (ExWaitForRundownProtectionRelease)"
            ),
        )),
        _ => {}
    }
}

/// Removes every lock-order edge from or to an address in `[lo, hi)`.
fn forget_order_in(t: &mut Tables, lo: usize, hi: usize) {
    let inside = |a: &usize| (lo..hi).contains(a);
    t.order.retain(|a, _| !inside(a));
    for next in t.order.values_mut() {
        next.retain(|a| !inside(a));
    }
}

// ---------------------------------------------------------------------------
// NDIS spin locks.

fn spin_word(lock: *mut NDIS_SPIN_LOCK) -> &'static AtomicU64 {
    // SAFETY: the driver passes a pointer to an 8-byte aligned NDIS_SPIN_LOCK
    // it owns; its first field is the KSPIN_LOCK word the model uses as the
    // lock, only ever accessed atomically while the lock is in use.
    unsafe { AtomicU64::from_ptr(std::ptr::addr_of_mut!((*lock).SpinLock).cast()) }
}

fn spin_acquire(lock: *mut NDIS_SPIN_LOCK, function: &'static str, raise: bool) {
    let addr = lock as usize;
    check_acquire_irql(function, addr, !raise);
    // A lock is identified by the address NdisAllocateSpinLock was called
    // on. One first seen here is a copy of a lock initialised elsewhere when
    // its word is 0 (an idle lock), and uninitialized garbage otherwise,
    // which Windows would spin on forever.
    if !known_spin(addr) {
        if spin_word(lock).load(Ordering::Relaxed) == 0 {
            moved_lock("NDIS spin lock", "NdisAllocateSpinLock", function, addr);
        }
        fail(Violation::c4(
            "spin lock used before NdisAllocateSpinLock",
            codes::C4_UNINITIALIZED_RESOURCE,
            addr as u64,
            0,
            0,
            format!("{function}({addr:#x})"),
        ));
    }
    let me = irql::thread_id();
    let word = spin_word(lock);
    if word.load(Ordering::Relaxed) == me {
        fail(Violation::c4(
            "recursive spin lock acquire",
            codes::C4_SELF_DEADLOCK,
            addr as u64,
            0,
            0,
            format!("{function}({addr:#x}): this thread already holds it"),
        ));
    }
    check_order(addr, function);
    let old = if raise { irql::raise(DISPATCH) } else { DISPATCH };
    while word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
        spin_wait(function);
    }
    if raise {
        // SAFETY: the lock is now held by this thread; OldIrql is the
        // driver's field NdisReleaseSpinLock restores.
        unsafe { std::ptr::addr_of_mut!((*lock).OldIrql).write_volatile(old) };
    }
    push_held(addr, if raise { SPIN_RAISED } else { SPIN_AT_DPC });
}

fn spin_release(lock: *mut NDIS_SPIN_LOCK, function: &'static str, restore: bool) {
    let addr = lock as usize;
    let level = irql::current();
    if level != DISPATCH {
        fail(Violation::c4(
            "spin lock released at wrong IRQL",
            release_irql_subcode(level, !restore),
            u64::from(level),
            addr as u64,
            0,
            format!(
                "{function}({addr:#x}) at {} (an earlier release restored a lower IRQL while this lock was held?)",
                irql::name(level)
            ),
        ));
    }
    check_owner(spin_word(lock).load(Ordering::Relaxed), addr, function);
    check_release_form(addr, function, restore);
    let old = if restore {
        // SAFETY: the lock is held by this thread; read the IRQL saved at acquire.
        unsafe { std::ptr::addr_of!((*lock).OldIrql).read_volatile() }
    } else {
        DISPATCH
    };
    pop_held(addr);
    spin_word(lock).store(0, Ordering::Release);
    irql::lower(old);
}

/// NdisReleaseSpinLock pairs with NdisAcquireSpinLock and
/// NdisDprReleaseSpinLock with NdisDprAcquireSpinLock (R28; DDI compliance
/// rules SpinLockDpr and SpinLockDprRelease of NdisAllocateSpinLock's page).
/// Mixed, the IRQL is left raised (Dpr release of a raised acquire) or
/// lowered to a stale `OldIrql` (raising release of a Dpr acquire).
fn check_release_form(addr: usize, function: &str, restore: bool) {
    let expected = if restore { SPIN_RAISED } else { SPIN_AT_DPC };
    match held_kind(addr) {
        Some(kind) if kind != expected => fail(Violation::c4(
            "spin lock released with the other form",
            codes::C4_DDI_SPIN_LOCK_RULE,
            addr as u64,
            0,
            0,
            format!(
                "{function}({addr:#x}) but it was acquired with {}",
                if restore { "NdisDprAcquireSpinLock" } else { "NdisAcquireSpinLock" }
            ),
        )),
        _ => {}
    }
}

/// The IRQL rule of a spin lock acquire: `at_dpc` for the `*AtDpcLevel` /
/// `NdisDpr*` forms, which require DISPATCH_LEVEL, else the raising form,
/// which requires at most DISPATCH_LEVEL. The Ke functions have their own
/// 0xC4 subcodes; the rest falls to the generic IRQL rule.
fn check_acquire_irql(function: &str, addr: usize, at_dpc: bool) {
    let level = irql::current();
    let subcode = match at_dpc {
        true if level < DISPATCH => Some(codes::C4_ACQUIRE_AT_DPC_BELOW_DISPATCH),
        false if level > DISPATCH => Some(codes::C4_ACQUIRE_ABOVE_DISPATCH),
        _ => None,
    };
    if let Some(subcode) = subcode {
        fail(Violation::c4(
            "spin lock acquired at wrong IRQL",
            subcode,
            u64::from(level),
            addr as u64,
            0,
            format!("{function}({addr:#x}) at {}", irql::name(level)),
        ));
    }
    irql::require(function, if at_dpc { DISPATCH } else { PASSIVE }, DISPATCH);
}

/// The 0xC4 subcode of a spin lock released at `level` (not DISPATCH_LEVEL):
/// the `FromDpcLevel` / `NdisDpr*` form below DISPATCH_LEVEL has its own.
fn release_irql_subcode(level: u8, at_dpc: bool) -> u64 {
    if at_dpc && level < DISPATCH {
        codes::C4_RELEASE_FROM_DPC_BELOW_DISPATCH
    } else {
        codes::C4_SPIN_LOCK_RELEASE_WRONG_IRQL
    }
}

fn check_owner(owner: u64, addr: usize, function: &str) {
    let me = irql::thread_id();
    if owner == 0 {
        fail(Violation::c4(
            "release of a lock not held",
            codes::C4_UNACQUIRED_RESOURCE,
            addr as u64,
            0,
            0,
            format!("{function}({addr:#x}): not acquired"),
        ));
    }
    if owner != me {
        fail(Violation::c4(
            "release of a lock held by another thread",
            codes::C4_UNEXPECTED_THREAD,
            addr as u64,
            owner,
            me,
            format!("{function}({addr:#x}): held by thread {owner}, released by thread {me}"),
        ));
    }
}

extern "win64" fn ndis_allocate_spin_lock(lock: *mut NDIS_SPIN_LOCK) {
    on_host(|| {
        let addr = lock as usize;
        let known = tables().spin.contains(&addr);
        if known && spin_word(lock).load(Ordering::Relaxed) != 0 {
            fail(Violation::c4(
                "held spin lock initialised again",
                codes::C4_MULTIPLE_INITIALIZATION,
                addr as u64,
                0,
                0,
                format!("NdisAllocateSpinLock({addr:#x}) while it is held"),
            ));
        }
        // SAFETY: the driver passes writable NDIS_SPIN_LOCK storage.
        unsafe { lock.write(NDIS_SPIN_LOCK::default()) };
        let mut t = tables();
        t.spin.insert(addr);
        record_init(&mut t, "NdisAllocateSpinLock", addr);
    })
}

extern "win64" fn ndis_free_spin_lock(lock: *mut NDIS_SPIN_LOCK) {
    on_host(|| {
        let addr = lock as usize;
        if !known_spin(addr) {
            moved_lock("NDIS spin lock", "NdisAllocateSpinLock", "NdisFreeSpinLock", addr);
        }
        if spin_word(lock).load(Ordering::Relaxed) != 0 {
            fail(Violation::c4(
                "freeing a held lock",
                codes::C4_DELETED_LOCK_STILL_OWNED,
                addr as u64,
                0,
                0,
                format!("NdisFreeSpinLock({addr:#x}) while it is held"),
            ));
        }
        tables().spin.remove(&addr);
        forget_order(addr);
    })
}

extern "win64" fn ndis_acquire_spin_lock(lock: *mut NDIS_SPIN_LOCK) {
    on_host(|| spin_acquire(lock, "NdisAcquireSpinLock", true))
}

extern "win64" fn ndis_release_spin_lock(lock: *mut NDIS_SPIN_LOCK) {
    on_host(|| spin_release(lock, "NdisReleaseSpinLock", true))
}

extern "win64" fn ndis_dpr_acquire_spin_lock(lock: *mut NDIS_SPIN_LOCK) {
    on_host(|| spin_acquire(lock, "NdisDprAcquireSpinLock", false))
}

extern "win64" fn ndis_dpr_release_spin_lock(lock: *mut NDIS_SPIN_LOCK) {
    on_host(|| spin_release(lock, "NdisDprReleaseSpinLock", false))
}

// ---------------------------------------------------------------------------
// Executive spin locks at DPC level.

fn kspin_word(lock: *mut usize) -> &'static AtomicU64 {
    // SAFETY: the driver passes an 8-byte aligned KSPIN_LOCK it owns.
    unsafe { AtomicU64::from_ptr(lock.cast()) }
}

extern "win64" fn ke_try_to_acquire_spin_lock_at_dpc_level(lock: *mut usize) -> u8 {
    on_host(|| {
        let addr = lock as usize;
        check_acquire_irql("KeTryToAcquireSpinLockAtDpcLevel", addr, true);
        let me = irql::thread_id();
        if kspin_word(lock).load(Ordering::Relaxed) == me {
            fail(Violation::c4(
                "recursive spin lock acquire",
                codes::C4_SELF_DEADLOCK,
                addr as u64,
                0,
                0,
                format!("KeTryToAcquireSpinLockAtDpcLevel({addr:#x})"),
            ));
        }
        let ok = kspin_word(lock).compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok();
        if ok {
            push_held(addr, "executive spin lock");
        }
        u8::from(ok)
    })
}

extern "win64" fn ke_acquire_spin_lock_at_dpc_level(lock: *mut usize) {
    on_host(|| {
        let addr = lock as usize;
        check_acquire_irql("KeAcquireSpinLockAtDpcLevel", addr, true);
        let me = irql::thread_id();
        if kspin_word(lock).load(Ordering::Relaxed) == me {
            fail(Violation::c4(
                "recursive spin lock acquire",
                codes::C4_SELF_DEADLOCK,
                addr as u64,
                0,
                0,
                format!("KeAcquireSpinLockAtDpcLevel({addr:#x})"),
            ));
        }
        check_order(addr, "KeAcquireSpinLockAtDpcLevel");
        while kspin_word(lock).compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spin_wait("KeAcquireSpinLockAtDpcLevel");
        }
        push_held(addr, "executive spin lock");
    })
}

extern "win64" fn ke_release_spin_lock_from_dpc_level(lock: *mut usize) {
    on_host(|| {
        let addr = lock as usize;
        let level = irql::current();
        if level != DISPATCH {
            fail(Violation::c4(
                "spin lock released at wrong IRQL",
                release_irql_subcode(level, true),
                u64::from(level),
                addr as u64,
                0,
                format!("KeReleaseSpinLockFromDpcLevel({addr:#x}) at {}", irql::name(level)),
            ));
        }
        check_owner(kspin_word(lock).load(Ordering::Relaxed), addr, "KeReleaseSpinLockFromDpcLevel");
        pop_held(addr);
        kspin_word(lock).store(0, Ordering::Release);
    })
}

// ---------------------------------------------------------------------------
// NDIS read/write locks.

extern "win64" fn ndis_allocate_rw_lock(_handle: usize) -> usize {
    on_host(|| {
        irql::require("NdisAllocateRWLock", PASSIVE, DISPATCH);
        let p = crate::pool::allocate(RW_LOCK_SIZE, RW_LOCK_TAG, true) as usize;
        if p != 0 {
            tables().rw.insert(p);
        }
        p
    })
}

extern "win64" fn ndis_free_rw_lock(lock: usize) {
    on_host(|| {
        irql::require("NdisFreeRWLock", PASSIVE, DISPATCH);
        let held = tables().rw.get(lock).map(|s| s.write_depth > 0 || !s.readers.is_empty());
        match held {
            None => fail(Violation::c4(
                "free of an RW lock not allocated",
                codes::C4_FREE_BAD_ADDRESS,
                lock as u64,
                0,
                0,
                format!("NdisFreeRWLock({lock:#x})"),
            )),
            Some(true) => fail(Violation::c4(
                "freeing a held lock",
                codes::C4_DELETED_LOCK_STILL_OWNED,
                lock as u64,
                0,
                0,
                format!("NdisFreeRWLock({lock:#x}) while it is held"),
            )),
            Some(false) => {}
        }
        tables().rw.remove(lock);
        forget_order(lock);
        crate::pool::free(lock, Some(RW_LOCK_TAG), "NdisFreeRWLock");
    })
}

fn rw_acquire(lock: usize, state: *mut LOCK_STATE_EX, flags: u32, write: bool) {
    let function = if write { "NdisAcquireRWLockWrite" } else { "NdisAcquireRWLockRead" };
    if flags & NDIS_RWL_AT_DISPATCH_LEVEL != 0 {
        irql::require(function, DISPATCH, DISPATCH);
    } else {
        irql::require(function, PASSIVE, DISPATCH);
    }
    let me = irql::thread_id();
    // Another lock held: the order check first, which takes the tables'
    // lock itself (the common acquisition, holding nothing else, checks
    // and is granted under one lock).
    let others_held = held(|h| h.iter().any(|&(a, _)| a != lock));
    let old = irql::raise(DISPATCH);
    let mut t = tables();
    // Checked, and granted in the same step when nothing else is held.
    let granted = match check_and_try_grant(&mut t, lock, state, write, me, function, !others_held) {
        Ok(granted) => granted,
        Err(v) => fail_unlocked(t, v),
    };
    if !granted {
        if others_held {
            drop(t);
            check_order(lock, function);
            t = tables();
        }
        while !try_grant_rw(&mut t, lock, state, write, me) {
            drop(t);
            spin_wait(function);
            t = tables();
        }
    }
    drop(t);
    let st = LOCK_STATE_EX { OldIrql: old, LockState: if write { 2 } else { 1 }, Flags: flags as u8 };
    // SAFETY: the driver passes writable LOCK_STATE_EX storage.
    unsafe { state.write(st) };
    push_held(lock, if write { "NDIS RW lock (write)" } else { "NDIS RW lock (read)" });
}

/// The rules an RW lock acquisition must meet before it may wait (the
/// tables locked); with `grant`, the lock is then granted if it is free for
/// `me` (one lookup of the lock for both). Whether it was granted.
#[inline]
fn check_and_try_grant(
    t: &mut Tables,
    lock: usize,
    state: *mut LOCK_STATE_EX,
    write: bool,
    me: u64,
    function: &str,
    grant: bool,
) -> Result<bool, Violation> {
    let Tables { rw, lock_states, .. } = t;
    let Some(s) = rw.get_mut(lock) else {
        return Err(Violation::c4(
            "RW lock used before NdisAllocateRWLock",
            codes::C4_UNINITIALIZED_RESOURCE,
            lock as u64,
            0,
            0,
            format!("{function}({lock:#x})"),
        ));
    };
    if write && s.readers.of(me) > 0 {
        return Err(Violation::c4(
            "RW lock write acquire while holding it for read",
            codes::C4_SELF_DEADLOCK,
            lock as u64,
            0,
            0,
            format!("{function}({lock:#x}): this thread holds it for read (no upgrade exists; this deadlocks)"),
        ));
    }
    if lock_states.get(state as usize).is_some() {
        return Err(Violation::c4(
            "LOCK_STATE_EX reused while in use",
            codes::C4_MULTIPLE_INITIALIZATION,
            lock as u64,
            state as u64,
            0,
            format!("{function}({lock:#x}, state {:#x}): that LOCK_STATE_EX tracks a live acquisition", state as usize),
        ));
    }
    Ok(grant && grant_if_free(s, lock_states, lock, state, write, me))
}

/// Grants `me` the RW lock if it is free for it (the tables locked).
fn try_grant_rw(t: &mut Tables, lock: usize, state: *mut LOCK_STATE_EX, write: bool, me: u64) -> bool {
    let Tables { rw, lock_states, .. } = t;
    let s = rw.get_mut(lock).expect("checked before");
    grant_if_free(s, lock_states, lock, state, write, me)
}

#[inline]
fn grant_if_free(
    s: &mut RwState,
    lock_states: &mut LiveStates,
    lock: usize,
    state: *mut LOCK_STATE_EX,
    write: bool,
    me: u64,
) -> bool {
    let mine_w = s.writer == me;
    let free_w = s.writer == 0;
    let granted = if write { mine_w || (free_w && !s.readers.others_than(me)) } else { free_w || mine_w };
    if granted {
        if write {
            s.writer = me;
            s.write_depth += 1;
        } else {
            s.readers.add(me);
        }
        lock_states.insert(state as usize, (lock, write, me));
    }
    granted
}

extern "win64" fn ndis_acquire_rw_lock_read(lock: usize, state: *mut LOCK_STATE_EX, flags: u32) {
    on_host(|| rw_acquire(lock, state, flags, false))
}

extern "win64" fn ndis_acquire_rw_lock_write(lock: usize, state: *mut LOCK_STATE_EX, flags: u32) {
    on_host(|| rw_acquire(lock, state, flags, true))
}

extern "win64" fn ndis_release_rw_lock(lock: usize, state: *mut LOCK_STATE_EX) {
    on_host(|| {
        let level = irql::current();
        let me = irql::thread_id();
        if level != DISPATCH {
            fail(Violation::c4(
                "spin lock released at wrong IRQL",
                codes::C4_SPIN_LOCK_RELEASE_WRONG_IRQL,
                u64::from(level),
                lock as u64,
                0,
                format!("NdisReleaseRWLock({lock:#x}) at {}", irql::name(level)),
            ));
        }
        let mut t = tables();
        let at = t.lock_states.position(state as usize);
        let entry = at.map(|i| t.lock_states.at(i));
        let write = match entry {
            Some((l, w, owner)) if l == lock && owner == me => w,
            // Let go of the tables first: a violation leaves the driver
            // call at once.
            Some((_, _, owner)) if owner != me => fail_unlocked(
                t,
                Violation::c4(
                    "release of a lock held by another thread",
                    codes::C4_UNEXPECTED_THREAD,
                    lock as u64,
                    owner,
                    me,
                    format!("NdisReleaseRWLock({lock:#x}): acquired by thread {owner}"),
                ),
            ),
            _ => fail_unlocked(
                t,
                Violation::c4(
                    "release of a lock not held",
                    codes::C4_UNACQUIRED_RESOURCE,
                    lock as u64,
                    state as u64,
                    0,
                    format!(
                        "NdisReleaseRWLock({lock:#x}, state {:#x}): no acquisition with that LOCK_STATE_EX",
                        state as usize
                    ),
                ),
            ),
        };
        if let Some(i) = at {
            t.lock_states.remove_at(i);
        }
        let s = t.rw.get_mut(lock).expect("acquired lock exists");
        if write {
            s.write_depth -= 1;
            if s.write_depth == 0 {
                s.writer = 0;
            }
        } else {
            s.readers.release(me);
        }
        drop(t);
        pop_held(lock);
        // SAFETY: the LOCK_STATE_EX the driver passed at acquisition.
        let old = unsafe { std::ptr::addr_of!((*state).OldIrql).read_volatile() };
        irql::lower(old);
    })
}

// ---------------------------------------------------------------------------
// Rundown protection.

fn rundown_word(r: *mut EX_RUNDOWN_REF) -> &'static AtomicU64 {
    // SAFETY: EX_RUNDOWN_REF is an 8-byte aligned word the driver owns.
    unsafe { AtomicU64::from_ptr(r.cast()) }
}

/// Whether an NDIS spin lock was initialised at `addr`.
fn known_spin(addr: usize) -> bool {
    tables().spin.contains(&addr)
}

fn rundown_state(r: *mut EX_RUNDOWN_REF, function: &str) -> RundownState {
    let addr = r as usize;
    let s = tables().rundown.get(&addr).map(|r| r.state);
    s.unwrap_or_else(|| {
        // Identified by the address ExInitializeRundownProtection was called
        // on: a zero word here is a copy of a reference initialised elsewhere.
        if rundown_word(r).load(Ordering::Relaxed) == 0 {
            moved_lock("EX_RUNDOWN_REF", "ExInitializeRundownProtection", function, addr);
        }
        fail(Violation::c4(
            "rundown protection used before ExInitializeRundownProtection",
            codes::C4_UNINITIALIZED_RESOURCE,
            r as u64,
            0,
            0,
            format!("{function}({:#x})", r as usize),
        ))
    })
}

fn set_rundown_state(r: *mut EX_RUNDOWN_REF, state: RundownState) {
    tables().rundown.entry(r as usize).or_insert(Rundown::LIVE).state = state;
}

extern "win64" fn ex_initialize_rundown_protection(r: *mut EX_RUNDOWN_REF) {
    on_host(|| {
        irql::require("ExInitializeRundownProtection", PASSIVE, APC);
        rundown_word(r).store(0, Ordering::Release);
        let mut t = tables();
        t.rundown.insert(r as usize, Rundown::LIVE);
        record_init(&mut t, "ExInitializeRundownProtection", r as usize);
    })
}

extern "win64" fn ex_re_initialize_rundown_protection(r: *mut EX_RUNDOWN_REF) {
    on_host(|| {
        irql::require("ExReInitializeRundownProtection", PASSIVE, APC);
        if rundown_state(r, "ExReInitializeRundownProtection") != RundownState::Completed {
            fail(Violation::c4(
                "rundown reinitialised before the rundown completed",
                codes::C4_MULTIPLE_INITIALIZATION,
                r as u64,
                rundown_word(r).load(Ordering::Relaxed),
                0,
                format!(
                    "ExReInitializeRundownProtection({:#x}) without a completed ExWaitForRundownProtectionRelease",
                    r as usize
                ),
            ));
        }
        rundown_word(r).store(0, Ordering::Release);
        tables().rundown.insert(r as usize, Rundown::LIVE);
    })
}

fn rundown_acquire(r: *mut EX_RUNDOWN_REF, n: u32, function: &str) -> u8 {
    irql::require(function, PASSIVE, DISPATCH);
    rundown_state(r, function);
    let word = rundown_word(r);
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        if cur & RUNDOWN_ACTIVE != 0 {
            return 0;
        }
        match word.compare_exchange_weak(cur, cur + RUNDOWN_INC * u64::from(n), Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => {
                if let Some(known) = tables().rundown.get_mut(&(r as usize)) {
                    known.acquired = true;
                }
                return 1;
            }
            Err(now) => cur = now,
        }
    }
}

fn rundown_release(r: *mut EX_RUNDOWN_REF, n: u32, function: &str) {
    irql::require(function, PASSIVE, DISPATCH);
    rundown_state(r, function);
    let word = rundown_word(r);
    let dec = RUNDOWN_INC * u64::from(n);
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        if cur & !RUNDOWN_ACTIVE < dec {
            fail(Violation::c4(
                "rundown released without acquire",
                codes::C4_UNACQUIRED_RESOURCE,
                r as u64,
                cur,
                u64::from(n),
                format!("{function}({:#x}): {} reference(s) held, releasing {n}", r as usize, cur >> 1),
            ));
        }
        match word.compare_exchange_weak(cur, cur - dec, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

extern "win64" fn ex_acquire_rundown_protection(r: *mut EX_RUNDOWN_REF) -> u8 {
    on_host(|| rundown_acquire(r, 1, "ExAcquireRundownProtection"))
}

extern "win64" fn ex_acquire_rundown_protection_ex(r: *mut EX_RUNDOWN_REF, n: u32) -> u8 {
    on_host(|| rundown_acquire(r, n, "ExAcquireRundownProtectionEx"))
}

extern "win64" fn ex_release_rundown_protection(r: *mut EX_RUNDOWN_REF) {
    on_host(|| rundown_release(r, 1, "ExReleaseRundownProtection"))
}

extern "win64" fn ex_release_rundown_protection_ex(r: *mut EX_RUNDOWN_REF, n: u32) {
    on_host(|| rundown_release(r, n, "ExReleaseRundownProtectionEx"))
}

extern "win64" fn ex_wait_for_rundown_protection_release(r: *mut EX_RUNDOWN_REF) {
    on_host(|| {
        const F: &str = "ExWaitForRundownProtectionRelease";
        irql::require(F, PASSIVE, APC);
        rundown_state(r, F);
        set_rundown_state(r, RundownState::Waiting);
        let word = rundown_word(r);
        word.fetch_or(RUNDOWN_ACTIVE, Ordering::AcqRel);
        while word.load(Ordering::Acquire) != RUNDOWN_ACTIVE {
            spin_wait(F);
        }
        set_rundown_state(r, RundownState::Completed);
    })
}

extern "win64" fn ex_rundown_completed(r: *mut EX_RUNDOWN_REF) {
    on_host(|| {
        irql::require("ExRundownCompleted", PASSIVE, APC);
        rundown_word(r).store(RUNDOWN_ACTIVE, Ordering::Release);
        set_rundown_state(r, RundownState::Completed);
    })
}

/// The lock and rundown functions the model binds.
pub(crate) fn imports() -> Vec<Import> {
    vec![
        Import::ndis("NdisAllocateSpinLock", ndis_allocate_spin_lock as *const () as usize),
        Import::ndis("NdisFreeSpinLock", ndis_free_spin_lock as *const () as usize),
        Import::ndis("NdisAcquireSpinLock", ndis_acquire_spin_lock as *const () as usize),
        Import::ndis("NdisReleaseSpinLock", ndis_release_spin_lock as *const () as usize),
        Import::ndis("NdisDprAcquireSpinLock", ndis_dpr_acquire_spin_lock as *const () as usize),
        Import::ndis("NdisDprReleaseSpinLock", ndis_dpr_release_spin_lock as *const () as usize),
        Import::ndis("NdisAllocateRWLock", ndis_allocate_rw_lock as *const () as usize),
        Import::ndis("NdisFreeRWLock", ndis_free_rw_lock as *const () as usize),
        Import::ndis("NdisAcquireRWLockRead", ndis_acquire_rw_lock_read as *const () as usize),
        Import::ndis("NdisAcquireRWLockWrite", ndis_acquire_rw_lock_write as *const () as usize),
        Import::ndis("NdisReleaseRWLock", ndis_release_rw_lock as *const () as usize),
        Import::ntoskrnl(
            "KeTryToAcquireSpinLockAtDpcLevel",
            ke_try_to_acquire_spin_lock_at_dpc_level as *const () as usize,
        ),
        Import::ntoskrnl("KeAcquireSpinLockAtDpcLevel", ke_acquire_spin_lock_at_dpc_level as *const () as usize),
        Import::ntoskrnl("KeReleaseSpinLockFromDpcLevel", ke_release_spin_lock_from_dpc_level as *const () as usize),
        Import::ntoskrnl("ExInitializeRundownProtection", ex_initialize_rundown_protection as *const () as usize),
        Import::ntoskrnl("ExReInitializeRundownProtection", ex_re_initialize_rundown_protection as *const () as usize),
        Import::ntoskrnl("ExAcquireRundownProtection", ex_acquire_rundown_protection as *const () as usize),
        Import::ntoskrnl("ExAcquireRundownProtectionEx", ex_acquire_rundown_protection_ex as *const () as usize),
        Import::ntoskrnl("ExReleaseRundownProtection", ex_release_rundown_protection as *const () as usize),
        Import::ntoskrnl("ExReleaseRundownProtectionEx", ex_release_rundown_protection_ex as *const () as usize),
        Import::ntoskrnl(
            "ExWaitForRundownProtectionRelease",
            ex_wait_for_rundown_protection_release as *const () as usize,
        ),
        Import::ntoskrnl("ExRundownCompleted", ex_rundown_completed as *const () as usize),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool;
    use crate::stack::call_driver_at;
    use crate::verifier::{Config, Session};

    const TAG: u32 = u32::from_le_bytes(*b"Lcks");

    /// An object in pool with two spin locks and a rundown reference.
    struct Object(usize);

    impl Object {
        fn new() -> Self {
            let p = pool::allocate(64, TAG, true) as usize;
            ndis_allocate_spin_lock(Self::lock(p, 0));
            ndis_allocate_spin_lock(Self::lock(p, 1));
            ex_initialize_rundown_protection(Self::run_ref(p));
            Object(p)
        }

        fn lock(p: usize, i: usize) -> *mut NDIS_SPIN_LOCK {
            (p + 16 * i) as *mut NDIS_SPIN_LOCK
        }

        fn a(&self) -> *mut NDIS_SPIN_LOCK {
            Self::lock(self.0, 0)
        }

        fn b(&self) -> *mut NDIS_SPIN_LOCK {
            Self::lock(self.0, 1)
        }

        fn run_ref(p: usize) -> *mut EX_RUNDOWN_REF {
            (p + 32) as *mut EX_RUNDOWN_REF
        }

        fn rundown(&self) -> *mut EX_RUNDOWN_REF {
            Self::run_ref(self.0)
        }

        fn free(&self) {
            pool::free(self.0, Some(TAG), "ExFreePoolWithTag");
        }
    }

    /// Runs `f` as a driver call at PASSIVE_LEVEL; the rule it ended with.
    fn rule_of(f: impl FnOnce()) -> Option<&'static str> {
        call_driver_at("driver", PASSIVE, f).err().map(|v| v.rule)
    }

    #[test]
    fn a_free_with_a_held_spin_lock_inside_is_caught() {
        let _s = Session::begin(Config::default());
        let o = Object::new();
        let rule = rule_of(|| {
            ndis_acquire_spin_lock(o.a());
            o.free();
        });
        assert_eq!(rule, Some("memory freed with a lock held inside"));
    }

    #[test]
    fn a_free_before_the_rundown_completed_is_caught() {
        {
            let _s = Session::begin(Config::default());
            let o = Object::new();
            let rule = rule_of(|| {
                assert_eq!(ex_acquire_rundown_protection(o.rundown()), 1);
                o.free();
            });
            assert_eq!(rule, Some("memory freed with rundown references outstanding"));
        }
        {
            let _s = Session::begin(Config::default());
            let o = Object::new();
            let rule = rule_of(|| {
                assert_eq!(ex_acquire_rundown_protection(o.rundown()), 1);
                ex_release_rundown_protection(o.rundown());
                o.free();
            });
            assert_eq!(rule, Some("memory freed before its rundown completed"));
        }
        let _s = Session::begin(Config::default());
        // Run down first: clean. Never published (no acquire): clean too.
        let (run_down, unpublished) = (Object::new(), Object::new());
        let rule = rule_of(|| {
            assert_eq!(ex_acquire_rundown_protection(run_down.rundown()), 1);
            ex_release_rundown_protection(run_down.rundown());
            ex_wait_for_rundown_protection_release(run_down.rundown());
            run_down.free();
            unpublished.free();
        });
        assert_eq!(rule, None);
    }

    #[test]
    fn locks_at_a_reused_address_start_without_order_edges() {
        let _s = Session::begin(Config::default());
        let first = Object::new();
        let (a, b) = (first.a(), first.b());
        let ordered = |outer: *mut NDIS_SPIN_LOCK, inner: *mut NDIS_SPIN_LOCK| {
            rule_of(|| {
                ndis_acquire_spin_lock(outer);
                ndis_dpr_acquire_spin_lock(inner);
                ndis_dpr_release_spin_lock(inner);
                ndis_release_spin_lock(outer);
            })
        };
        assert_eq!(ordered(a, b), None, "A then B");
        // The object dies; new locks are made at the same addresses (as
        // pool reuses memory) and taken in the other order: no deadlock.
        on_pool_free(first.0, first.0 + 64, "ExFreePoolWithTag");
        ndis_allocate_spin_lock(a);
        ndis_allocate_spin_lock(b);
        assert_eq!(ordered(b, a), None, "B then A, new locks");
        // The same two locks in the other order again: a real inversion.
        assert_eq!(ordered(a, b), Some("deadlock: lock order violation"));
    }

    #[test]
    fn mixed_acquire_and_release_forms_are_caught_at_the_release() {
        {
            let _s = Session::begin(Config::default());
            let o = Object::new();
            let rule = rule_of(|| {
                ndis_acquire_spin_lock(o.a());
                ndis_dpr_release_spin_lock(o.a());
            });
            assert_eq!(rule, Some("spin lock released with the other form"));
        }
        let _s = Session::begin(Config::default());
        let o = Object::new();
        let rule = call_driver_at("driver", DISPATCH, || {
            ndis_dpr_acquire_spin_lock(o.a());
            ndis_release_spin_lock(o.a());
        })
        .err()
        .map(|v| v.rule);
        assert_eq!(rule, Some("spin lock released with the other form"));
    }

    /// Runs `f` as a driver call at PASSIVE_LEVEL; its rule, once the
    /// tables are checked free again (a violation leaves the call without
    /// unwinding, so a table lock still held then would never be let go).
    fn rule_and_tables_free(f: impl FnOnce()) -> Option<&'static str> {
        let rule = rule_of(f);
        assert!(TABLES.try_lock().is_ok(), "the lock tables stay locked after {rule:?}");
        rule
    }

    #[test]
    fn rw_lock_misuse_is_caught_with_the_tables_let_go() {
        let mut s1 = LOCK_STATE_EX::default();
        let mut s2 = LOCK_STATE_EX::default();
        let (p1, p2) = (&mut s1 as *mut LOCK_STATE_EX, &mut s2 as *mut LOCK_STATE_EX);
        {
            let _s = Session::begin(Config::default());
            let never_allocated = pool::allocate(64, TAG, true) as usize;
            let rule = rule_and_tables_free(|| ndis_acquire_rw_lock_read(never_allocated, p1, 0));
            assert_eq!(rule, Some("RW lock used before NdisAllocateRWLock"));
        }
        let misuse: [(&str, &dyn Fn(usize)); 3] = [
            ("LOCK_STATE_EX reused while in use", &|lock| {
                ndis_acquire_rw_lock_read(lock, p1, 0);
                ndis_acquire_rw_lock_read(lock, p1, NDIS_RWL_AT_DISPATCH_LEVEL);
            }),
            ("RW lock write acquire while holding it for read", &|lock| {
                ndis_acquire_rw_lock_read(lock, p1, 0);
                ndis_acquire_rw_lock_write(lock, p2, NDIS_RWL_AT_DISPATCH_LEVEL);
            }),
            ("release of a lock not held", &|lock| {
                ndis_acquire_rw_lock_read(lock, p1, 0);
                ndis_release_rw_lock(lock, p2);
            }),
        ];
        for (expected, f) in misuse {
            let _s = Session::begin(Config::default());
            let lock = ndis_allocate_rw_lock(0);
            assert_eq!(rule_and_tables_free(|| f(lock)), Some(expected));
        }
        let _s = Session::begin(Config::default());
        let lock = ndis_allocate_rw_lock(0);
        // Acquired on another thread (outside a driver call there, so that
        // its keeping the lock is no violation of its own), released on
        // this one.
        let addr = p1 as usize;
        std::thread::spawn(move || ndis_acquire_rw_lock_read(lock, addr as *mut LOCK_STATE_EX, 0))
            .join()
            .expect("acquiring thread");
        let rule = call_driver_at("driver", DISPATCH, || ndis_release_rw_lock(lock, p1)).err().map(|v| v.rule);
        assert!(TABLES.try_lock().is_ok(), "the lock tables stay locked");
        assert_eq!(rule, Some("release of a lock held by another thread"));
    }

    #[test]
    fn a_free_with_a_live_lock_state_inside_names_the_lowest() {
        let _s = Session::begin(Config::default());
        let lock = ndis_allocate_rw_lock(0);
        let block = pool::allocate(128, TAG, true) as usize;
        let (low, high) = ((block + 16) as *mut LOCK_STATE_EX, (block + 64) as *mut LOCK_STATE_EX);
        let v = call_driver_at("driver", PASSIVE, || {
            // Acquired in this order: the list is not sorted by address.
            ndis_acquire_rw_lock_read(lock, high, 0);
            ndis_acquire_rw_lock_read(lock, low, 0);
            pool::free(block, Some(TAG), "ExFreePoolWithTag");
        })
        .unwrap_err();
        assert_eq!(v.rule, "memory freed with a lock held inside");
        assert!(v.detail.contains(&format!("frees LOCK_STATE_EX {:#x}", low as usize)), "{v}");
    }

    #[test]
    fn readers_count_each_threads_acquisitions() {
        let mut r = Readers::default();
        r.add(1);
        r.add(1);
        r.add(2);
        assert_eq!((r.of(1), r.of(2), r.of(3)), (2, 1, 0));
        assert!(r.others_than(1) && r.others_than(3));
        r.release(2);
        assert!(!r.others_than(1), "thread 2 released its only acquisition");
        r.release(1);
        assert!(!r.is_empty());
        r.release(1);
        assert!(r.is_empty(), "no entry is left with a count of 0");
    }

    #[test]
    fn a_freed_rw_lock_is_unknown_though_it_was_the_last_looked_up() {
        let mut st = LOCK_STATE_EX::default();
        let p = &mut st as *mut LOCK_STATE_EX;
        let _s = Session::begin(Config::default());
        let lock = ndis_allocate_rw_lock(0);
        let rule = rule_of(|| {
            ndis_acquire_rw_lock_read(lock, p, 0);
            ndis_release_rw_lock(lock, p);
            ndis_free_rw_lock(lock);
            ndis_acquire_rw_lock_read(lock, p, 0);
        });
        assert_eq!(rule, Some("RW lock used before NdisAllocateRWLock"));
    }

    #[test]
    fn rw_lock_slots_are_reused_and_start_free() {
        let mut locks = RwLocks::default();
        locks.insert(0x1000);
        locks.get_mut(0x1000).expect("allocated").readers.add(7);
        locks.remove(0x1000);
        assert!(locks.get_mut(0x1000).is_none(), "freed");
        locks.insert(0x2000);
        let s = locks.get_mut(0x2000).expect("allocated");
        assert!(s.readers.is_empty() && s.writer == 0 && s.write_depth == 0, "a reused slot starts free");
        assert_eq!(locks.slots.len(), 1, "the freed slot is reused");
        assert!(locks.get_mut(0x1000).is_none(), "still freed");
    }
}
