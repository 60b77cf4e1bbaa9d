//! Kernel mutex objects (`KMUTEX`): `KeInitializeMutex`, a wait on one
//! through `KeWaitForSingleObject` (which [`crate::wait`] hands here), and
//! `KeReleaseMutex`, with the rules the kernel and Driver Verifier apply.
//! Every rule is raised here, once:
//!
//! | rule | bug check | source |
//! |---|---|---|
//! | wait on a mutex object above APC_LEVEL (non-zero timeout) | 0xC4 / 0xE5 | KeWaitForSingleObject remarks (as for every dispatcher object, in [`crate::wait`]) |
//! | wait on a mutex object never initialised | 0xC4 / 0x1002 | [C4] |
//! | `KeReleaseMutex` by a thread that does not own it | 0x1E (0xC0000046) | KeReleaseMutex remarks: raises STATUS_MUTANT_NOT_OWNED; unhandled in kernel mode that is KMODE_EXCEPTION_NOT_HANDLED |
//! | a driver call returns (to the I/O manager, ultimately user mode) holding one | 0x1 | "Introduction to Mutex Objects": the kernel never lets an owner return to user mode; [0x1] APC_INDEX_MISMATCH: `KernelApcDisable` not back to zero |
//!
//! Recursion is Windows' own behaviour and is modelled, not reported: the
//! owner's wait succeeds at once and it must release as often ("a
//! recursively acquired mutex object is not set to the Signaled state
//! until the thread releases its ownership completely"). `PassiveMutex`
//! never recurses (its types rule it out). The IRQL does not change;
//! normal kernel APCs are disabled per held mutex, which [`holds_any`]
//! lets the registry model see.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use ndis_sys::{KMUTEX, STATUS_MUTANT_NOT_OWNED};

use crate::imports::Import;
use crate::irql::{self, DISPATCH, PASSIVE};
use crate::stack::{on_host, spin_wait};
use crate::verifier::{self, Violation};
use crate::wait::KMODE_EXCEPTION_NOT_HANDLED;

/// APC_INDEX_MISMATCH: a thread returns from a system call with kernel
/// APCs still disabled. `[0x1]`
pub const APC_INDEX_MISMATCH: u32 = 0x1;

/// Mutex objects by address: (owner thread, 0 = free; recursion count).
static MUTEXES: LazyLock<Mutex<HashMap<usize, (u64, u32)>>> = LazyLock::new(Mutex::default);

/// How many mutex objects are owned now, by any thread: lets the check run
/// after every driver call skip the table when none is (the common case).
static OWNED: AtomicUsize = AtomicUsize::new(0);

fn mutexes() -> MutexGuard<'static, HashMap<usize, (u64, u32)>> {
    MUTEXES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Session reset.
pub(crate) fn reset() {
    mutexes().clear();
    OWNED.store(0, Ordering::Relaxed);
}

/// Whether `addr` is a mutex object the driver initialised.
pub(crate) fn is_mutex(addr: usize) -> bool {
    mutexes().contains_key(&addr)
}

/// Whether this thread holds a mutex object (normal kernel APCs disabled).
pub fn holds_any() -> bool {
    let me = irql::thread_id();
    mutexes().values().any(|&(owner, _)| owner == me)
}

extern "win64" fn ke_initialize_mutex(mutex: *mut KMUTEX, _level: u32) {
    on_host(|| {
        irql::require("KeInitializeMutex", PASSIVE, DISPATCH);
        mutexes().insert(mutex as usize, (0, 0));
    })
}

/// The wait part of `KeWaitForSingleObject` on a mutex object (the IRQL and
/// timeout were checked by the caller): acquires, waiting while another
/// thread owns it. Returns STATUS_SUCCESS.
pub(crate) fn wait(addr: usize) -> i32 {
    let me = irql::thread_id();
    loop {
        {
            let mut all = mutexes();
            let entry = all.entry(addr).or_insert((0, 0));
            if entry.0 == 0 || entry.0 == me {
                if entry.0 == 0 {
                    OWNED.fetch_add(1, Ordering::Relaxed);
                }
                *entry = (me, entry.1 + 1);
                return 0;
            }
        }
        spin_wait("KeWaitForSingleObject");
    }
}

extern "win64" fn ke_release_mutex(mutex: *mut KMUTEX, _wait: u8) -> i32 {
    on_host(|| {
        const F: &str = "KeReleaseMutex";
        let addr = mutex as usize;
        irql::require(F, PASSIVE, DISPATCH);
        let me = irql::thread_id();
        let mut all = mutexes();
        let owner = all.get(&addr).map(|&(owner, _)| owner);
        match owner {
            Some(owner) if owner == me => {
                let entry = all.get_mut(&addr).expect("owned above");
                entry.1 -= 1;
                if entry.1 == 0 {
                    entry.0 = 0;
                    OWNED.fetch_sub(1, Ordering::Relaxed);
                }
                0
            }
            _ => {
                drop(all);
                verifier::violation(Violation::new(
                    "mutex object released by a thread that does not own it",
                    KMODE_EXCEPTION_NOT_HANDLED,
                    [STATUS_MUTANT_NOT_OWNED as u32 as u64, addr as u64, owner.unwrap_or(0), me],
                    format!(
                        "{F}({addr:#x}) by thread {me}, owner {}: STATUS_MUTANT_NOT_OWNED raised",
                        owner.map_or("none (never initialised or free)".into(), |o| o.to_string())
                    ),
                ))
            }
        }
    })
}

/// Called by [`crate::stack`] when a driver call returns: a mutex object
/// this thread acquired and still owns returns it to its caller with
/// normal kernel APCs disabled.
#[inline]
pub(crate) fn check_return(owned_at_entry: usize) -> Result<(), Violation> {
    if owned_at_entry == 0 && OWNED.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    check_owned_at_return(owned_at_entry)
}

#[cold]
fn check_owned_at_return(owned_at_entry: usize) -> Result<(), Violation> {
    let me = irql::thread_id();
    let owned: Vec<usize> = mutexes().iter().filter(|&(_, &(o, _))| o == me).map(|(&a, _)| a).collect();
    if owned.len() > owned_at_entry {
        return Err(Violation::new(
            "driver call returned holding a mutex object",
            APC_INDEX_MISMATCH,
            [0, 0, u64::from((owned.len() as u16).wrapping_neg()), 0],
            format!("mutex object {:#x} still owned: the thread returns with normal kernel APCs disabled", owned[0]),
        ));
    }
    Ok(())
}

/// Mutex objects this thread owns (at a driver call's entry).
#[inline]
pub(crate) fn owned_count() -> usize {
    if OWNED.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    owned_here()
}

#[cold]
fn owned_here() -> usize {
    let me = irql::thread_id();
    mutexes().values().filter(|&&(o, _)| o == me).count()
}

pub(crate) fn imports() -> Vec<Import> {
    vec![
        Import::ntoskrnl("KeInitializeMutex", ke_initialize_mutex as *const () as usize),
        Import::ntoskrnl("KeReleaseMutex", ke_release_mutex as *const () as usize),
    ]
}
