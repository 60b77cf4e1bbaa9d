//! Driver Verifier, built in: violations ("bug checks"), verifier options
//! and the per-process session state.
//!
//! A violation stops the run like a bug check would: [`violation`] records
//! it (the first one of a session is *the* bug check) and leaves the driver
//! call it was raised in, returning `Err` from [`crate::stack::call_driver`].
//! From then on nothing of the driver runs: every later driver call, and
//! every model wait in progress on another thread, ends at once with the
//! rule [`STOPPED`], so a session with a bug check fails fast instead of
//! waiting on a driver that can no longer answer.
//! The frames it leaves are abandoned without running destructors, so model
//! code must not hold a Rust lock guard across a call that may raise one; a
//! session is tainted afterwards (driver state may be half-updated).
//!
//! # Sessions
//! All state (this module, the pool, locks, stack statistics) is global to
//! the process. [`Session::begin`] takes a global mutex, so sessions of
//! tests that run on parallel test threads are serialised, and resets every
//! piece of state; the session ends when the guard drops.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Bug check codes and `DRIVER_VERIFIER_DETECTED_VIOLATION` (0xC4) subcodes
/// the model reports, as documented in the "Bug Check Code Reference".
///
/// Each constant names its source page, all under `windows-driver-docs-pr/`
/// of MicrosoftDocs/windows-driver-docs:
/// - `[C4]`: `debugger/bug-check-0xc4--driver-verifier-detected-violation.md`
///   (the parameter 1 table);
/// - `[0xNN]`: `debugger/bug-check-0xNN-...md`, the page of each other code;
/// - `[SpinLock]`: `devtest/wdm-spinlock.md` (a DDI compliance rule).
///
/// Where Windows has no code for a condition the model checks, the constant
/// says "harness choice": the closest documented code, and why.
pub mod codes {
    /// IRQL_NOT_DISPATCH_LEVEL. `[0x8]` (the page documents no cause or
    /// parameters; [`C4_KERNEL_API_WRONG_IRQL`] is what the model reports for
    /// a call below its minimum IRQL).
    pub const IRQL_NOT_DISPATCH_LEVEL: u32 = 0x8;
    /// IRQL_NOT_GREATER_OR_EQUAL. `[0x9]` (no cause or parameters
    /// documented; unused by the model for the same reason as 0x8).
    pub const IRQL_NOT_GREATER_OR_EQUAL: u32 = 0x9;
    /// IRQL_NOT_LESS_OR_EQUAL: pageable or invalid memory touched at a raised
    /// IRQL by Windows itself. `[0xA]` (a driver's own access is 0xD1).
    pub const IRQL_NOT_LESS_OR_EQUAL: u32 = 0xA;
    /// PAGE_FAULT_IN_NONPAGED_AREA: invalid address referenced. `[0x50]`
    pub const PAGE_FAULT_IN_NONPAGED_AREA: u32 = 0x50;
    /// UNEXPECTED_KERNEL_MODE_TRAP. `[0x7F]`
    pub const UNEXPECTED_KERNEL_MODE_TRAP: u32 = 0x7F;
    /// Parameter 1 of 0x7F for a double fault, whose first documented cause
    /// is a kernel stack overflow into the guard page. `[0x7F]`
    pub const TRAP_DOUBLE_FAULT: u64 = 0x8;
    /// BAD_POOL_CALLER. `[0xC2]`
    pub const BAD_POOL_CALLER: u32 = 0xC2;
    /// BAD_POOL_CALLER 0x0A: pool freed with a tag other than its own. `[0xC2]`
    pub const C2_WRONG_TAG: u64 = 0x0A;
    /// DRIVER_VERIFIER_DETECTED_VIOLATION. `[C4]`
    pub const DRIVER_VERIFIER_DETECTED_VIOLATION: u32 = 0xC4;
    /// IRQL_UNEXPECTED_VALUE: the IRQL is not what it should be; the page's
    /// cause is a routine that changed the IRQL and did not restore it.
    /// `[0xC8]` Harness choice for a callback that returns at another IRQL
    /// than it was called at: Windows has exact codes only for dispatch
    /// routines (0xC9/0x05), completion routines (0xC4/0xFA) and ISRs
    /// (0xC4/0x111), none for NDIS callbacks.
    pub const IRQL_UNEXPECTED_VALUE: u32 = 0xC8;
    /// DRIVER_VERIFIER_IOMANAGER_VIOLATION (I/O verification). `[0xC9]`
    pub const DRIVER_VERIFIER_IOMANAGER_VIOLATION: u32 = 0xC9;
    /// DRIVER_IRQL_NOT_LESS_OR_EQUAL: a driver referenced pageable or invalid
    /// memory at DISPATCH_LEVEL or above. `[0xD1]`
    pub const DRIVER_IRQL_NOT_LESS_OR_EQUAL: u32 = 0xD1;
    /// SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION: special pool found its
    /// pattern overwritten at a free. `[0xC1]`
    pub const SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION: u32 = 0xC1;
    /// 0xC1 parameter 4 0x23: bytes near the allocation, in its page,
    /// corrupted (an underrun into the page's head). `[0xC1]`
    pub const C1_SAME_PAGE: u64 = 0x23;
    /// 0xC1 parameter 4 0x24: bytes after the end of the allocation
    /// overwritten (an overrun into the alignment slack, which the guard
    /// page cannot see). `[0xC1]`
    pub const C1_AFTER_END: u64 = 0x24;
    /// DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL: use after free. `[0xD5]`
    pub const DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL: u32 = 0xD5;
    /// DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION: overrun. `[0xD6]`
    pub const DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION: u32 = 0xD6;
    /// MANUALLY_INITIATED_CRASH: a crash forced from the debugger or the
    /// keyboard. `[0xE2]` Harness choice for a driver call that hangs below
    /// DISPATCH_LEVEL: Windows raises no bug check there (the system just
    /// hangs), so the verdict is the crash an operator would force.
    pub const MANUALLY_INITIATED_CRASH: u32 = 0xE2;
    /// DPC_WATCHDOG_VIOLATION: too long at DISPATCH_LEVEL or above. `[0x133]`
    pub const DPC_WATCHDOG_VIOLATION: u32 = 0x133;

    /// 0xC4/0x00: zero-byte pool allocation. `[C4]`
    pub const C4_ZERO_BYTE_ALLOCATION: u64 = 0x00;
    /// 0xC4/0x01: paged pool allocated above APC_LEVEL. `[C4]`
    pub const C4_PAGED_ALLOC_ABOVE_APC: u64 = 0x01;
    /// 0xC4/0x02: nonpaged pool allocated above DISPATCH_LEVEL. `[C4]`
    pub const C4_NONPAGED_ALLOC_ABOVE_DISPATCH: u64 = 0x02;
    /// 0xC4/0x10: free of an address no allocation returned. `[C4]`
    pub const C4_FREE_BAD_ADDRESS: u64 = 0x10;
    /// 0xC4/0x12: nonpaged pool freed above DISPATCH_LEVEL. `[C4]`
    pub const C4_FREE_ABOVE_DISPATCH: u64 = 0x12;
    /// 0xC4/0x13: pool freed twice (Windows uses 0x13 or 0x14). `[C4]`
    pub const C4_DOUBLE_FREE: u64 = 0x13;
    /// 0xC4/0x30: KeRaiseIrql to a level below the current one. `[C4]`
    pub const C4_RAISE_IRQL_INVALID: u64 = 0x30;
    /// 0xC4/0x31: KeLowerIrql to a level above the current one. `[C4]`
    pub const C4_LOWER_IRQL_INVALID: u64 = 0x31;
    /// 0xC4/0x32: KeReleaseSpinLock at an IRQL other than DISPATCH_LEVEL.
    /// `[C4]` Also the harness's choice for NdisReleaseRWLock at the wrong
    /// IRQL, which Windows documents no code for (it releases a spin lock
    /// inside).
    pub const C4_SPIN_LOCK_RELEASE_WRONG_IRQL: u64 = 0x32;
    /// 0xC4/0x40: KeAcquireSpinLockAtDpcLevel (NdisDprAcquireSpinLock)
    /// below DISPATCH_LEVEL. `[C4]`
    pub const C4_ACQUIRE_AT_DPC_BELOW_DISPATCH: u64 = 0x40;
    /// 0xC4/0x41: KeReleaseSpinLockFromDpcLevel (NdisDprReleaseSpinLock)
    /// below DISPATCH_LEVEL. `[C4]`
    pub const C4_RELEASE_FROM_DPC_BELOW_DISPATCH: u64 = 0x41;
    /// 0xC4/0x42: KeAcquireSpinLock (NdisAcquireSpinLock) above
    /// DISPATCH_LEVEL. `[C4]`
    pub const C4_ACQUIRE_ABOVE_DISPATCH: u64 = 0x42;
    /// 0xC4/0x62: driver unloaded with pool allocations outstanding. `[C4]`
    pub const C4_POOL_LEAK_AT_UNLOAD: u64 = 0x62;
    /// 0xC4/0xE5: a kernel API called at an incorrect IRQL (above its
    /// maximum or below its minimum) with no more specific code. `[C4]`
    pub const C4_KERNEL_API_WRONG_IRQL: u64 = 0xE5;
    /// 0xC4/0x1000: self-deadlock, a thread acquires again a lock it holds
    /// (the page's case: exclusively, a lock it owns shared). `[C4]`
    pub const C4_SELF_DEADLOCK: u64 = 0x1000;
    /// 0xC4/0x1001: deadlock, lock hierarchy (order) violation. `[C4]`
    pub const C4_DEADLOCK: u64 = 0x1001;
    /// 0xC4/0x1002: a lock is acquired without having been initialised. `[C4]`
    pub const C4_UNINITIALIZED_RESOURCE: u64 = 0x1002;
    /// 0xC4/0x1004: a lock is released by a thread that does not own it. `[C4]`
    pub const C4_UNEXPECTED_THREAD: u64 = 0x1004;
    /// 0xC4/0x1005: a resource is initialised more than once. `[C4]` Also the
    /// harness's choice for ExReInitializeRundownProtection before the
    /// rundown completed and for a LOCK_STATE_EX reused while it tracks a
    /// live acquisition: both re-initialise state still in use, and Windows
    /// documents no code for either.
    pub const C4_MULTIPLE_INITIALIZATION: u64 = 0x1005;
    /// 0xC4/0x1007: a lock is released without having been acquired. `[C4]`
    pub const C4_UNACQUIRED_RESOURCE: u64 = 0x1007;
    /// 0xC4/0x100B: a lock is deleted (freed) while a thread owns it. `[C4]`
    pub const C4_DELETED_LOCK_STILL_OWNED: u64 = 0x100B;
    /// 0xC4/0x40009: DDI compliance rule SpinLock, which requires every spin
    /// lock to be released before the dispatch or cancel routine ends.
    /// `[C4]`, `[SpinLock]` Harness choice to apply it to every callback
    /// and every lock kind (NDIS spin and RW locks, executive spin locks):
    /// Windows documents no code for an NDIS callback that returns holding
    /// a lock.
    pub const C4_DDI_SPIN_LOCK_RULE: u64 = 0x0004_0009;
}

/// One verifier finding: the "bug check" the driver would have caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Short, stable rule name (tests assert on it).
    pub rule: &'static str,
    /// Bug check code Windows would use.
    pub bugcheck: u32,
    /// The four bug check parameters.
    pub params: [u64; 4],
    /// Human-readable detail: arguments, addresses, IRQLs.
    pub detail: String,
    /// The driver entry point (as named to `call_driver`) it happened in,
    /// filled in when the violation leaves that call.
    pub function: String,
}

impl Violation {
    /// A violation not yet attributed to an entry point.
    pub fn new(rule: &'static str, bugcheck: u32, params: [u64; 4], detail: String) -> Self {
        Self { rule, bugcheck, params, detail, function: String::new() }
    }

    /// 0xC4 with `subcode` as parameter 1.
    pub fn c4(rule: &'static str, subcode: u64, p2: u64, p3: u64, p4: u64, detail: String) -> Self {
        Self::new(rule, codes::DRIVER_VERIFIER_DETECTED_VIOLATION, [subcode, p2, p3, p4], detail)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [p1, p2, p3, p4] = self.params;
        write!(
            f,
            "bug check 0x{:X} ({:#x}, {:#x}, {:#x}, {:#x}) in {}: {}: {}",
            self.bugcheck, p1, p2, p3, p4, self.function, self.rule, self.detail
        )
    }
}

impl std::error::Error for Violation {}

/// Low-resources simulation: which allocations fail on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LowResources {
    /// No simulated failures.
    #[default]
    Off,
    /// Only the N-th allocation (1-based) of the session fails.
    FailNth(u64),
    /// Each allocation fails with probability `per_mille`/1000, from a
    /// deterministic generator seeded with `seed`.
    Random {
        /// Generator seed (same seed, same failures).
        seed: u64,
        /// Failure rate in thousandths.
        per_mille: u16,
    },
}

/// Verifier options of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Each pool allocation on its own pages, a guard page after it; freed
    /// memory is made inaccessible so a use after free faults.
    pub special_pool: bool,
    /// Special pool's "verify start" alignment: each allocation at the
    /// start of its page with the guard page before it, to catch underruns
    /// by a fault (the default, "verify end", catches overruns; an
    /// underrun there is caught at the free by the pattern check).
    pub special_pool_underruns: bool,
    /// Simulated allocation failures.
    pub low_resources: LowResources,
    /// Stack budget of one driver call, in bytes (the guard page lies below).
    pub stack_budget: usize,
    /// Longest a driver call may run before the watchdog stops it.
    pub watchdog: Duration,
    /// Echo DbgPrint output to stderr as well as recording it.
    pub echo_debug_output: bool,
    /// A filter's pause must also wait for the NBLs it forwarded (sends it
    /// passed down, receives it indicated up) to come back, not only for
    /// those it originated or queued. Stricter than "Pausing a Filter
    /// Module", which asks only for the latter because NDIS pauses the
    /// drivers above first (on Windows nothing a pass-through filter
    /// forwarded is outstanding then). Off by default: the documented rule.
    pub pause_waits_for_forwarded: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            special_pool: false,
            special_pool_underruns: false,
            low_resources: LowResources::Off,
            stack_budget: crate::stack::DEFAULT_STACK_BUDGET,
            watchdog: Duration::from_secs(10),
            echo_debug_output: std::env::var_os("PORTWATCH_DBGPRINT").is_some(),
            pause_waits_for_forwarded: false,
        }
    }
}

#[derive(Default)]
struct State {
    config: Option<Config>,
    violations: Vec<Violation>,
}

static STATE: Mutex<State> = Mutex::new(State { config: None, violations: Vec::new() });
static SESSION: Mutex<()> = Mutex::new(());

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bumped each time a session's options are stored (after they are).
static CONFIG_GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of the options and the generation it was read at:
    /// the options are read on every driver call, and a shared lock there
    /// would serialise every thread's calls.
    static CONFIG_CACHE: Cell<Option<(u64, Config)>> = const { Cell::new(None) };
}

/// The current session's options.
pub fn config() -> Config {
    let now = CONFIG_GENERATION.load(Ordering::Acquire);
    if let Some((generation, config)) = CONFIG_CACHE.with(Cell::get) {
        if generation == now {
            return config;
        }
    }
    let config = state().config.unwrap_or_default();
    CONFIG_CACHE.with(|c| c.set(Some((now, config))));
    config
}

/// Moves each time a session stores its options: a copy of (part of) them
/// taken at another value is stale.
#[inline]
pub(crate) fn config_generation() -> u64 {
    CONFIG_GENERATION.load(Ordering::Acquire)
}

/// Records `v` (the first of a session is its bug check) without leaving
/// the current call: for checks made by host code (leaks at unload, NBLs
/// never returned), outside any driver call.
pub fn record(v: Violation) {
    if v.rule == STOPPED {
        return;
    }
    if config().echo_debug_output {
        eprintln!("verifier: {v}");
    }
    state().violations.push(v);
    TAINTED.store(true, Ordering::Release);
}

/// Whether the session has bug-checked (one load: checked on every driver
/// call and in every model wait).
static TAINTED: AtomicBool = AtomicBool::new(false);

/// Records `v` and leaves the driver call it was raised in: control returns
/// to the innermost [`crate::stack::call_driver`] of this thread, which
/// returns `Err(v)`. Raised outside any driver call it panics with the
/// violation (a harness test then fails with it).
pub fn violation(v: Violation) -> ! {
    crate::stack::leave_driver_call(v)
}

/// The first violation of the session: its bug check.
pub fn first_violation() -> Option<Violation> {
    state().violations.first().cloned()
}

/// Every violation recorded in this session, in order.
pub fn violations() -> Vec<Violation> {
    state().violations.clone()
}

/// Whether the session saw a violation (driver state is then suspect).
pub fn is_tainted() -> bool {
    TAINTED.load(Ordering::Acquire)
}

/// Rule of the violation a driver call returns once the session has
/// bug-checked: nothing runs after a bug check.
pub const STOPPED: &str = "session stopped by an earlier bug check";

/// The error for a driver call made after the session's bug check: the
/// first violation under the rule [`STOPPED`] (not recorded again).
pub fn stopped() -> Option<Violation> {
    let mut v = first_violation()?;
    v.detail = format!("{}: {}", v.rule, v.detail);
    v.rule = STOPPED;
    Some(v)
}

/// Number of the current session; every reset starts a new one.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Per-thread model state that belongs to the current session: a thread
/// that touches it in a later session finds it reset to `T::default()`,
/// whatever the earlier session left behind (a violation abandons driver
/// calls half way, and worker threads outlive no session but the test
/// thread does).
pub(crate) struct SessionLocal<T> {
    generation: Cell<u64>,
    value: RefCell<T>,
}

impl<T: Default> SessionLocal<T> {
    /// Empty state (for `thread_local!`'s const initialiser).
    pub(crate) const fn new(value: T) -> Self {
        Self { generation: Cell::new(0), value: RefCell::new(value) }
    }

    /// Runs `f` on this thread's state of the current session.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let now = GENERATION.load(Ordering::Acquire);
        if self.generation.get() != now {
            self.renew(now);
        }
        f(&mut self.value.borrow_mut())
    }

    /// The thread's first use in session `now`: the state of an earlier
    /// one is dropped (out of line: once per thread and session).
    #[cold]
    #[inline(never)]
    fn renew(&self, now: u64) {
        *self.value.borrow_mut() = T::default();
        self.generation.set(now);
    }

    /// `f` of this thread's state of the current session, `None` where the
    /// thread has none in it yet (to [`Self::with`] it would be
    /// `T::default()`): a read that resets nothing.
    #[inline]
    pub(crate) fn read<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        (self.generation.get() == GENERATION.load(Ordering::Acquire)).then(|| f(&self.value.borrow()))
    }
}

/// Resets every piece of global state for a new session with `config`.
/// Prefer [`Session::begin`], which also serialises sessions.
pub fn reset_for_new_session(config: Config) {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    {
        let mut st = state();
        st.config = Some(config);
        st.violations.clear();
    }
    CONFIG_GENERATION.fetch_add(1, Ordering::AcqRel);
    TAINTED.store(false, Ordering::Release);
    crate::pool::reset();
    crate::locks::reset();
    crate::wait::reset();
    crate::kmutex::reset();
    crate::registry::reset_handles();
    crate::stack::reset();
    crate::kernel::reset();
    crate::irql::set(crate::irql::PASSIVE);
}

/// An exclusive verifier session; state is reset when it begins.
pub struct Session {
    _exclusive: MutexGuard<'static, ()>,
}

impl Session {
    /// Waits for any other session to end, then resets all state.
    pub fn begin(config: Config) -> Self {
        let guard = SESSION.lock().unwrap_or_else(PoisonError::into_inner);
        reset_for_new_session(config);
        Self { _exclusive: guard }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keeps_first_violation() {
        let _s = Session::begin(Config::default());
        record(Violation::c4("a", 1, 0, 0, 0, String::new()));
        record(Violation::c4("b", 2, 0, 0, 0, String::new()));
        assert_eq!(first_violation().unwrap().rule, "a");
        assert_eq!(violations().len(), 2);
        assert!(is_tainted());
    }

    #[test]
    fn begin_resets() {
        {
            let _s = Session::begin(Config::default());
            record(Violation::c4("a", 1, 0, 0, 0, String::new()));
        }
        let _s = Session::begin(Config::default());
        assert!(!is_tainted());
    }

    #[test]
    fn display_names_code_and_rule() {
        let mut v = Violation::c4("rule x", 0x62, 0, 0, 3, "d".into());
        v.function = "DriverUnload".into();
        let s = v.to_string();
        assert!(s.contains("0xC4") && s.contains("rule x") && s.contains("DriverUnload"), "{s}");
    }
}
