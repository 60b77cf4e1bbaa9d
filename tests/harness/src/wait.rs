//! Dispatcher objects a driver waits on: executive fast mutexes
//! (`FAST_MUTEX`) and kernel semaphores (`KSEMAPHORE`; mutex objects are
//! [`crate::kmutex`], reached through `KeWaitForSingleObject` here), with Driver
//! Verifier's rules for them. Every rule is raised here, once:
//!
//! | rule | bug check | source |
//! |---|---|---|
//! | `ExAcquireFastMutex` above APC_LEVEL | 0xC4 / 0x20005 | DDI rule IrqlExApcLte1 |
//! | `ExAcquireFastMutex` by the thread that owns it (recursion) | 0xC4 / 0x1000 | [C4] self-deadlock; ExAcquireFastMutex: "not recursive" |
//! | `ExReleaseFastMutex` by a thread that does not own it | 0xC4 / 0x1004 | [C4] |
//! | `ExReleaseFastMutex` of a mutex nobody holds | 0xC4 / 0x1007 | [C4] |
//! | fast mutex or semaphore used before its initialisation | 0xC4 / 0x1002 | [C4] |
//! | a driver call returns (to the I/O manager, NDIS, user mode) holding a fast mutex | 0x4A | [0x4A] IRQL_GT_ZERO_AT_SYSTEM_SERVICE: the thread returns at APC_LEVEL |
//! | `KeWaitForSingleObject` at DISPATCH_LEVEL with a timeout that is not zero (or none) | 0xC4 / 0xE5 | KeWaitForSingleObject remarks |
//! | `KeReleaseSemaphore` past the limit | 0x1E (0xC0000047) | KeReleaseSemaphore: raises STATUS_SEMAPHORE_LIMIT_EXCEEDED; unhandled in kernel mode that is KMODE_EXCEPTION_NOT_HANDLED |
//!
//! `ExInitializeFastMutex` is inline in wdm.h: the driver stores `Count`,
//! `Owner`, `Contention` and calls `KeInitializeEvent` on the embedded
//! event, which is what the model sees (a fast mutex is known once the event
//! at its `Event` offset was initialised). A fast mutex is held on the
//! thread's lock list ([`crate::locks`]), so lock-order checks span fast
//! mutexes and spin locks.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ndis_sys::{FAST_MUTEX, KEVENT, KSEMAPHORE, NTSTATUS, STATUS_SEMAPHORE_LIMIT_EXCEEDED, STATUS_TIMEOUT};

use crate::imports::Import;
use crate::irql::{self, APC, DISPATCH, PASSIVE};
use crate::stack::{on_host, spin_wait};
use crate::verifier::{self, codes, Violation};

/// 0xC4/0x20005: DDI compliance rule IrqlExApcLte1, `ExAcquireFastMutex` or
/// `ExTryToAcquireFastMutex` above APC_LEVEL (the rule's page).
pub const C4_IRQL_EX_APC_LTE1: u64 = 0x0002_0005;
/// IRQL_GT_ZERO_AT_SYSTEM_SERVICE: a thread returns from a system call at
/// an IRQL above PASSIVE_LEVEL. `[0x4A]`
pub const IRQL_GT_ZERO_AT_SYSTEM_SERVICE: u32 = 0x4A;
/// KMODE_EXCEPTION_NOT_HANDLED: a kernel-mode exception nobody caught. `[0x1E]`
pub const KMODE_EXCEPTION_NOT_HANDLED: u32 = 0x1E;

/// Kind of a fast mutex on the thread's lock list.
const FAST_MUTEX_HELD: &str = "fast mutex";

#[derive(Default)]
struct Tables {
    /// Initialised events (KeInitializeEvent), by address.
    events: HashSet<usize>,
    /// Fast mutexes: owner thread (0 = free) and the IRQL to restore.
    mutexes: HashMap<usize, (u64, u8)>,
    /// Semaphores: (count, limit).
    semaphores: HashMap<usize, (i32, i32)>,
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

fn uninitialised(what: &str, function: &str, addr: usize) -> ! {
    fail(Violation::c4(
        "lock used before its initialisation",
        codes::C4_UNINITIALIZED_RESOURCE,
        addr as u64,
        0,
        0,
        format!("{function}({addr:#x}): no {what} was initialised there"),
    ))
}

// ---------------------------------------------------------------------------
// Events (only as the inside of a fast mutex).

extern "win64" fn ke_initialize_event(event: *mut KEVENT, _kind: i32, _state: u8) {
    on_host(|| {
        irql::require("KeInitializeEvent", PASSIVE, DISPATCH);
        tables().events.insert(event as usize);
    })
}

// ---------------------------------------------------------------------------
// Fast mutexes.

fn event_of(mutex: *mut FAST_MUTEX) -> usize {
    mutex as usize + std::mem::offset_of!(FAST_MUTEX, Event)
}

extern "win64" fn ex_acquire_fast_mutex(mutex: *mut FAST_MUTEX) {
    on_host(|| {
        const F: &str = "ExAcquireFastMutex";
        let addr = mutex as usize;
        let level = irql::current();
        if level > APC {
            fail(Violation::c4(
                "fast mutex acquired above APC_LEVEL",
                C4_IRQL_EX_APC_LTE1,
                u64::from(level),
                addr as u64,
                0,
                format!("{F}({addr:#x}) at {}", irql::name(level)),
            ));
        }
        let me = irql::thread_id();
        {
            let t = tables();
            if !t.events.contains(&event_of(mutex)) {
                drop(t);
                uninitialised("fast mutex (ExInitializeFastMutex)", F, addr);
            }
            if t.mutexes.get(&addr).is_some_and(|&(owner, _)| owner == me) {
                drop(t);
                fail(Violation::c4(
                    "recursive fast mutex acquire",
                    codes::C4_SELF_DEADLOCK,
                    addr as u64,
                    0,
                    0,
                    format!("{F}({addr:#x}): this thread already owns it (fast mutexes are not recursive)"),
                ));
            }
        }
        crate::locks::check_order(addr, F);
        let old = irql::raise(APC);
        loop {
            {
                let mut t = tables();
                let entry = t.mutexes.entry(addr).or_insert((0, PASSIVE));
                if entry.0 == 0 {
                    *entry = (me, old);
                    break;
                }
            }
            spin_wait(F);
        }
        // SAFETY: the driver's FAST_MUTEX; the model mirrors ownership in it.
        unsafe { std::ptr::addr_of_mut!((*mutex).Owner).write_volatile(me as usize as *mut _) };
        crate::locks::push_held(addr, FAST_MUTEX_HELD);
    })
}

extern "win64" fn ex_release_fast_mutex(mutex: *mut FAST_MUTEX) {
    on_host(|| {
        const F: &str = "ExReleaseFastMutex";
        let addr = mutex as usize;
        let me = irql::thread_id();
        let owner = tables().mutexes.get(&addr).map_or(0, |&(owner, _)| owner);
        if owner == 0 {
            fail(Violation::c4(
                "fast mutex released but not held",
                codes::C4_UNACQUIRED_RESOURCE,
                addr as u64,
                0,
                0,
                format!("{F}({addr:#x}): nobody holds it"),
            ));
        }
        if owner != me {
            fail(Violation::c4(
                "fast mutex released by a thread that does not own it",
                codes::C4_UNEXPECTED_THREAD,
                addr as u64,
                owner,
                me,
                format!("{F}({addr:#x}) by thread {me}, owned by thread {owner}"),
            ));
        }
        irql::require(F, APC, APC);
        let old = {
            let mut t = tables();
            let entry = t.mutexes.get_mut(&addr).expect("owned above");
            let old = entry.1;
            *entry = (0, PASSIVE);
            old
        };
        // SAFETY: the driver's FAST_MUTEX, owned by this thread until now.
        unsafe { std::ptr::addr_of_mut!((*mutex).Owner).write_volatile(std::ptr::null_mut()) };
        crate::locks::pop_held(addr);
        irql::lower(old);
    })
}

/// Called by [`crate::stack`] when a driver call returns: a fast mutex
/// acquired inside the call and still held returns the thread to its caller
/// (ultimately user mode) at APC_LEVEL: 0x4A.
pub(crate) fn check_return(entry_locks: usize) -> Result<(), Violation> {
    let me = irql::thread_id();
    let held: Vec<usize> =
        tables().mutexes.iter().filter(|&(_, &(owner, _))| owner == me).map(|(&addr, _)| addr).collect();
    let acquired_inside =
        held.iter().copied().find(|&addr| crate::locks::held_index(addr).is_some_and(|i| i >= entry_locks));
    match acquired_inside {
        Some(addr) => Err(Violation::new(
            "driver call returned holding a fast mutex",
            IRQL_GT_ZERO_AT_SYSTEM_SERVICE,
            [0, u64::from(irql::current()), addr as u64, 0],
            format!("fast mutex {addr:#x} still held: the thread returns at {}", irql::name(irql::current())),
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Semaphores.

extern "win64" fn ke_initialize_semaphore(semaphore: *mut KSEMAPHORE, count: i32, limit: i32) {
    on_host(|| {
        tables().semaphores.insert(semaphore as usize, (count, limit));
    })
}

fn try_take(addr: usize) -> bool {
    let mut t = tables();
    let Some(entry) = t.semaphores.get_mut(&addr) else { return false };
    if entry.0 > 0 {
        entry.0 -= 1;
        true
    } else {
        false
    }
}

extern "win64" fn ke_wait_for_single_object(
    object: *mut core::ffi::c_void,
    _reason: i32,
    _mode: i8,
    _alertable: u8,
    timeout: *mut i64,
) -> NTSTATUS {
    on_host(|| {
        const F: &str = "KeWaitForSingleObject";
        let addr = object as usize;
        // SAFETY: the driver passes NULL or a pointer to its LARGE_INTEGER.
        let timeout = (!timeout.is_null()).then(|| unsafe { timeout.read() });
        let level = irql::current();
        if level == DISPATCH && timeout != Some(0) {
            fail(Violation::c4(
                "wait at DISPATCH_LEVEL with a non-zero timeout",
                codes::C4_KERNEL_API_WRONG_IRQL,
                u64::from(level),
                addr as u64,
                timeout.map_or(u64::MAX, |t| t as u64),
                format!(
                    "{F}({addr:#x}) at DISPATCH_LEVEL with timeout {}: only a zero timeout is allowed there",
                    timeout.map_or("NULL (infinite)".into(), |t| t.to_string())
                ),
            ));
        }
        irql::require(F, PASSIVE, DISPATCH);
        if crate::kmutex::is_mutex(addr) {
            // The driver waits on its mutex objects without a timeout.
            return crate::kmutex::wait(addr);
        }
        if !tables().semaphores.contains_key(&addr) {
            uninitialised("semaphore (KeInitializeSemaphore)", F, addr);
        }
        // Relative timeouts only (negative, 100 ns units); absolute ones
        // are not modelled and wait as long as their value says from now.
        let deadline = timeout.map(|t| Instant::now() + Duration::from_nanos(t.unsigned_abs().saturating_mul(100)));
        loop {
            if try_take(addr) {
                return 0;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return STATUS_TIMEOUT;
            }
            spin_wait(F);
        }
    })
}

extern "win64" fn ke_release_semaphore(semaphore: *mut KSEMAPHORE, _increment: i32, adjustment: i32, _wait: u8) -> i32 {
    on_host(|| {
        const F: &str = "KeReleaseSemaphore";
        let addr = semaphore as usize;
        irql::require(F, PASSIVE, DISPATCH);
        let mut t = tables();
        let Some(entry) = t.semaphores.get_mut(&addr) else {
            drop(t);
            uninitialised("semaphore (KeInitializeSemaphore)", F, addr);
        };
        let (count, limit) = *entry;
        if adjustment < 1 || count.checked_add(adjustment).is_none_or(|n| n > limit) {
            drop(t);
            fail(Violation::new(
                "semaphore released past its limit",
                KMODE_EXCEPTION_NOT_HANDLED,
                [STATUS_SEMAPHORE_LIMIT_EXCEEDED as u32 as u64, addr as u64, count as u64, limit as u64],
                format!(
                    "{F}({addr:#x}, adjustment {adjustment}) on a count of {count} with limit {limit}: \
                     STATUS_SEMAPHORE_LIMIT_EXCEEDED raised"
                ),
            ));
        }
        entry.0 = count + adjustment;
        count
    })
}

/// Every semaphore the driver initialised: (address, count, limit).
pub fn semaphores() -> Vec<(usize, i32, i32)> {
    let mut all: Vec<_> = tables().semaphores.iter().map(|(&a, &(count, limit))| (a, count, limit)).collect();
    all.sort_unstable();
    all
}

/// Permits taken from the driver's semaphores by [`hold_all_permits`],
/// given back when dropped.
#[must_use = "the permits are given back when this is dropped"]
pub struct HeldPermits(Vec<(usize, i32)>);

/// Takes every available permit of every semaphore, as holders the driver
/// does not see would (other requests in flight on a real machine): its
/// waiters then wait their full timeout. Tests of admission control.
pub fn hold_all_permits() -> HeldPermits {
    let mut t = tables();
    HeldPermits(
        t.semaphores
            .iter_mut()
            .map(|(&addr, entry)| {
                let taken = entry.0;
                entry.0 = 0;
                (addr, taken)
            })
            .collect(),
    )
}

impl Drop for HeldPermits {
    fn drop(&mut self) {
        let mut t = tables();
        for &(addr, taken) in &self.0 {
            if let Some(entry) = t.semaphores.get_mut(&addr) {
                entry.0 += taken;
            }
        }
    }
}

/// Permits available in the semaphore at `addr` (tests).
pub fn semaphore_count(addr: usize) -> Option<i32> {
    tables().semaphores.get(&addr).map(|&(count, _)| count)
}

pub(crate) fn imports() -> Vec<Import> {
    vec![
        Import::ntoskrnl("KeInitializeEvent", ke_initialize_event as *const () as usize),
        Import::ntoskrnl("ExAcquireFastMutex", ex_acquire_fast_mutex as *const () as usize),
        Import::ntoskrnl("ExReleaseFastMutex", ex_release_fast_mutex as *const () as usize),
        Import::ntoskrnl("KeInitializeSemaphore", ke_initialize_semaphore as *const () as usize),
        Import::ntoskrnl("KeWaitForSingleObject", ke_wait_for_single_object as *const () as usize),
        Import::ntoskrnl("KeReleaseSemaphore", ke_release_semaphore as *const () as usize),
    ]
}
