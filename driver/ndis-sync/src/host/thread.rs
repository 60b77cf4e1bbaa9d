//! The per-thread half of the model: each test thread plays one processor,
//! with its own IRQL, the locks it holds and the rundown protection it has
//! acquired.

use super::rule::{violation, Rule};
use ndis_sys::{DISPATCH_LEVEL, KIRQL, PASSIVE_LEVEL};
use std::cell::RefCell;
use std::vec::Vec;

#[cfg(loom)]
use loom::thread_local;
#[cfg(not(loom))]
use std::thread_local;

/// How a held lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeldKind {
    /// `NdisAcquireSpinLock`.
    Spin,
    /// `NdisDprAcquireSpinLock`.
    SpinDpr,
    /// `KeTryToAcquireSpinLockAtDpcLevel`.
    SpinTry,
    /// `NdisAcquireRWLockRead`; `nested` when granted under this thread's write.
    RwRead { nested: bool },
    /// `NdisAcquireRWLockWrite`; `nested` when recursive.
    RwWrite { nested: bool },
}

/// One lock this thread holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held {
    /// Address of the lock.
    pub(crate) lock: usize,
    /// Address of the `LOCK_STATE_EX` (RW locks), else 0.
    pub(crate) state: usize,
    /// How it was acquired.
    pub(crate) kind: HeldKind,
}

/// Everything the model knows about one thread ("processor").
#[derive(Debug, Default)]
pub(crate) struct ThreadState {
    /// The modelled IRQL.
    pub(crate) irql: KIRQL,
    /// Locks held, oldest first.
    pub(crate) held: Vec<Held>,
    /// Rundown references with protection acquired, one entry per acquire.
    pub(crate) rundown_refs: Vec<usize>,
    /// RW lock allocations still to fail (fault injection).
    pub(crate) failing_rw_allocations: usize,
}

thread_local! {
    static THREAD: RefCell<ThreadState> = RefCell::new(ThreadState {
        irql: PASSIVE_LEVEL,
        ..ThreadState::default()
    });
}

/// Runs `f` on this thread's state.
pub(crate) fn with_thread<R>(f: impl FnOnce(&mut ThreadState) -> R) -> R {
    THREAD.with(|state| f(&mut state.borrow_mut()))
}

impl ThreadState {
    /// Index of the most recent hold of `lock` (with `state`, if nonzero).
    pub(crate) fn find_held(&self, lock: usize, state: usize) -> Option<usize> {
        self.held.iter().rposition(|h| h.lock == lock && (state == 0 || h.state == state))
    }

    /// `true` if this thread holds `lock` in a way `matches` accepts.
    pub(crate) fn holds(&self, lock: usize, matches: impl Fn(HeldKind) -> bool) -> bool {
        self.held.iter().any(|h| h.lock == lock && matches(h.kind))
    }

    /// Removes and returns the hold of `lock`/`state` that `function` releases.
    #[track_caller]
    pub(crate) fn take_held(&mut self, lock: usize, state: usize, function: &str) -> Held {
        let Some(index) = self.find_held(lock, state) else {
            violation(Rule::ReleaseNotHeld, format_args!("{function} on a lock this thread does not hold ({lock:#x})"))
        };
        self.held.remove(index)
    }

    /// Checks the IRQL is exactly DISPATCH, as `function` requires.
    #[track_caller]
    pub(crate) fn require_dispatch(&self, rule: Rule, function: &str) {
        if self.irql != DISPATCH_LEVEL {
            violation(rule, format_args!("{function} requires DISPATCH_LEVEL, IRQL is {}", self.irql))
        }
    }

    /// Checks the IRQL is at most DISPATCH, as `function` requires.
    #[track_caller]
    pub(crate) fn require_at_most_dispatch(&self, function: &str) {
        if self.irql > DISPATCH_LEVEL {
            violation(
                Rule::IrqlAboveDispatch,
                format_args!("{function} requires IRQL <= DISPATCH_LEVEL, IRQL is {}", self.irql),
            )
        }
    }

    /// Restores `old` after releasing a lock, checking that no other lock
    /// is still held if that lowers the IRQL below DISPATCH.
    #[track_caller]
    pub(crate) fn restore_irql(&mut self, old: KIRQL, function: &str) {
        if old < DISPATCH_LEVEL && !self.held.is_empty() {
            violation(
                Rule::OutOfOrderRelease,
                format_args!(
                    "{function} restores IRQL {old} while this thread still holds {} lock(s): \
                     release locks in the reverse order of acquisition",
                    self.held.len()
                ),
            )
        }
        self.irql = old;
    }
}
