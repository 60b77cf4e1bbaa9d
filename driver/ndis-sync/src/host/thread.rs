//! The per-thread half of the model: each test thread plays one processor,
//! with its own IRQL, the locks it holds and the rundown protection it has
//! acquired.

use super::rule::{violation, Rule};
use ndis_sys::{DISPATCH_LEVEL, KIRQL, PASSIVE_LEVEL};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::vec::Vec;

/// How a held lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeldKind {
    /// `NdisAcquireSpinLock`.
    Spin,
    /// `NdisDprAcquireSpinLock`.
    SpinDpr,
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

impl ThreadState {
    /// A processor at PASSIVE_LEVEL holding nothing.
    const IDLE: Self =
        Self { irql: PASSIVE_LEVEL, held: Vec::new(), rundown_refs: Vec::new(), failing_rw_allocations: 0 };
}

#[cfg(not(loom))]
std::thread_local! {
    static THREAD: RefCell<ThreadState> = const { RefCell::new(ThreadState::IDLE) };
}
#[cfg(loom)]
loom::thread_local! {
    static THREAD: RefCell<ThreadState> = RefCell::new(ThreadState::IDLE);
}

/// What the model knows across threads, for Driver Verifier's deadlock
/// detection: the lock order seen so far and the locks whose holder ended.
#[derive(Default)]
struct Global {
    /// `(a, b)`: some thread acquired `b` while holding `a`.
    order: HashSet<(usize, usize)>,
    /// Locks still held by a thread that has ended, with what it held them as.
    abandoned: HashMap<usize, HeldKind>,
}

fn global<R>(f: impl FnOnce(&mut Global) -> R) -> R {
    static GLOBAL: OnceLock<Mutex<Global>> = OnceLock::new();
    let mut global = GLOBAL.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    f(&mut global)
}

/// Records that this thread is about to wait for `lock` while holding
/// `held`, and reports an order that inverts one seen before (rule
/// `LockOrderInversion`), whether or not the two threads ever met: this is
/// also what turns an ABBA deadlock into a report instead of a hang, since
/// the second thread to reach its second lock sees the first one's order.
#[track_caller]
pub(crate) fn record_order(held: &[Held], lock: usize, function: &str) {
    let inverted = global(|g| {
        let mut inverted = None;
        for h in held.iter().filter(|h| h.lock != lock) {
            if g.order.contains(&(lock, h.lock)) {
                inverted = Some(h.lock);
            }
            g.order.insert((h.lock, lock));
        }
        inverted
    });
    if let Some(first) = inverted {
        violation(
            Rule::LockOrderInversion,
            format_args!(
                "{function} on {lock:#x} while holding {first:#x}, but {first:#x} was acquired \
                 while holding {lock:#x} before: two threads taking them this way deadlock"
            ),
        )
    }
}

/// Forgets what the model knows about a freed lock (its address may be reused).
pub(crate) fn forget_lock(lock: usize) {
    global(|g| {
        g.order.retain(|&(a, b)| a != lock && b != lock);
        g.abandoned.remove(&lock);
    });
}

/// Reports a wait on a lock that a thread which has ended still holds.
#[track_caller]
pub(crate) fn check_not_abandoned(lock: usize, function: &str) {
    if let Some(kind) = global(|g| g.abandoned.get(&lock).copied()) {
        violation(
            Rule::ThreadExitedHoldingLock,
            format_args!("{function} on {lock:#x}, held ({kind:?}) by a thread that has ended: it is never released"),
        )
    }
}

/// Spins until `try_take` succeeds, reporting (within a second) a lock that
/// will never be released: held by an ended thread, or a deadlock the order
/// check did not see (rule `Deadlock`).
#[track_caller]
pub(crate) fn spin_until(lock: usize, function: &str, mut try_take: impl FnMut() -> bool) {
    #[cfg(not(loom))]
    let mut started = None;
    while !try_take() {
        check_not_abandoned(lock, function);
        #[cfg(not(loom))]
        {
            let limit = std::time::Duration::from_secs(if cfg!(miri) { 30 } else { 1 });
            let start = *started.get_or_insert_with(std::time::Instant::now);
            if start.elapsed() > limit {
                violation(Rule::Deadlock, format_args!("{function} on {lock:#x} has spun for {limit:?}: deadlock"))
            }
        }
        super::spin_wait();
    }
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        if self.held.is_empty() {
            return;
        }
        // A panic here would abort the process: record the locks, so that
        // whoever waits for one gets a named report, and say it now.
        global(|g| g.abandoned.extend(self.held.iter().map(|h| (h.lock, h.kind))));
        #[cfg(not(loom))]
        std::eprintln!(
            "{}: a thread ended at IRQL {} holding {} lock(s): {:?}",
            Rule::ThreadExitedHoldingLock,
            self.irql,
            self.held.len(),
            self.held
        );
    }
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
