//! The host backend: a user-mode model of the NDIS and executive primitives,
//! with Driver Verifier-style checks. **Host builds only** (every target but
//! Windows); it is what unit tests, doc tests, loom and Miri run against.
//!
//! Each test thread plays one processor. Its IRQL starts at `PASSIVE_LEVEL`;
//! acquiring a lock raises it to `DISPATCH_LEVEL` and releasing restores the
//! saved level, as the real functions do. Breaking a rule of the real
//! primitives panics with a message that starts with the [`Rule`]'s name.
//!
//! The functions here let tests put a thread at a given IRQL and look at
//! what the model sees:
//!
//! ```
//! use ndis_sync::{host, SpinLock, DISPATCH_LEVEL, PASSIVE_LEVEL};
//!
//! ndis_sync::stack_pin_init!(let lock = SpinLock::new(0u32));
//! host::at_dispatch(|dispatch| {
//!     let mut guard = lock.lock_at_dispatch(dispatch);
//!     *guard += 1;
//!     assert_eq!(host::held_lock_count(), 1);
//! });
//! assert_eq!(host::current_irql(), PASSIVE_LEVEL);
//! assert_eq!(host::held_lock_count(), 0);
//! # let _ = DISPATCH_LEVEL;
//! ```

mod mutex_object;
mod rule;
mod rundown;
mod rw;
mod spin;
mod thread;
pub(crate) mod wait;

pub use mutex_object::{kernel_apcs_disabled, return_to_user_mode};
pub use rule::Rule;
pub use wait::held_mutex_count;

use crate::backend::{Backend, TokenIrql};
use crate::Dispatch;
use ndis_sys::{KIRQL, LOCK_STATE_EX, NDIS_HANDLE};
use rule::violation;
use rundown::HostRundown;
use rw::HostRwLock;
use spin::HostSpinLock;
use thread::{with_thread, HeldKind};

/// The IRQL the model says this thread runs at.
///
/// ```
/// assert_eq!(ndis_sync::host::current_irql(), ndis_sync::PASSIVE_LEVEL);
/// ```
pub fn current_irql() -> KIRQL {
    with_thread(|t| t.irql)
}

/// Runs `f` with this thread raised to `irql` (like `KeRaiseIrql` /
/// `KeLowerIrql` around it), restoring the previous IRQL afterwards, also
/// when `f` panics.
///
/// Panics with [`Rule::IrqlNotRaised`] if `irql` is below the current IRQL,
/// and with [`Rule::IrqlLoweredWhileHolding`] if `f` returns still holding
/// a lock and the restored IRQL is below `DISPATCH_LEVEL`.
///
/// ```
/// use ndis_sync::{host, APC_LEVEL};
/// host::at_irql(APC_LEVEL, || assert_eq!(host::current_irql(), APC_LEVEL));
/// ```
#[track_caller]
pub fn at_irql<R>(irql: KIRQL, f: impl FnOnce() -> R) -> R {
    let old = with_thread(|t| {
        if irql < t.irql {
            violation(Rule::IrqlNotRaised, format_args!("at_irql({irql}) at IRQL {}", t.irql))
        }
        core::mem::replace(&mut t.irql, irql)
    });
    let restore = RestoreIrql(old);
    let result = f();
    drop(restore);
    result
}

/// Lowers the IRQL back when dropped.
struct RestoreIrql(KIRQL);

impl Drop for RestoreIrql {
    fn drop(&mut self) {
        with_thread(|t| {
            let holding = !t.held.is_empty();
            if holding && self.0 < ndis_sys::DISPATCH_LEVEL && !std::thread::panicking() {
                violation(
                    Rule::IrqlLoweredWhileHolding,
                    format_args!("IRQL lowered to {} with {} lock(s) held", self.0, t.held.len()),
                )
            }
            t.irql = self.0;
        });
    }
}

/// Runs `f` at `DISPATCH_LEVEL` with a [`Dispatch`] token, as a DPC or an
/// NDIS callback with its `*_DISPATCH_LEVEL` flag set would run.
///
/// ```
/// let irql = ndis_sync::host::at_dispatch(|_dispatch| ndis_sync::host::current_irql());
/// assert_eq!(irql, ndis_sync::DISPATCH_LEVEL);
/// ```
#[track_caller]
pub fn at_dispatch<R>(f: impl FnOnce(&mut Dispatch) -> R) -> R {
    at_irql(ndis_sys::DISPATCH_LEVEL, || {
        // SAFETY: at_irql has raised this thread to DISPATCH_LEVEL for the closure.
        let mut dispatch = unsafe { Dispatch::new_unchecked() };
        f(&mut dispatch)
    })
}

/// Number of spin locks and RW locks this thread holds.
///
/// ```
/// assert_eq!(ndis_sync::host::held_lock_count(), 0);
/// ```
pub fn held_lock_count() -> usize {
    with_thread(|t| t.held.len())
}

/// Number of rundown protections this thread holds.
///
/// ```
/// // SAFETY: a test thread runs at PASSIVE_LEVEL.
/// let passive = unsafe { ndis_sync::Passive::new_unchecked() };
/// ndis_sync::stack_pin_init!(let rundown = ndis_sync::Rundown::new(&passive, ()));
/// let guard = rundown.try_acquire();
/// assert_eq!(ndis_sync::host::rundown_protection_count(), 1);
/// drop(guard);
/// assert_eq!(ndis_sync::host::rundown_protection_count(), 0);
/// ```
pub fn rundown_protection_count() -> usize {
    with_thread(|t| t.rundown_refs.len())
}

/// Makes the next `count` RW lock allocations on this thread fail, as
/// `NdisAllocateRWLock` does under low resources.
///
/// ```
/// ndis_sync::host::fail_next_rw_lock_allocations(1);
/// assert!(ndis_sync::RwLock::new(0).is_err());
/// assert!(ndis_sync::RwLock::new(0).is_ok());
/// ```
pub fn fail_next_rw_lock_allocations(count: usize) {
    with_thread(|t| t.failing_rw_allocations = count);
}

/// Gives other threads a chance while spinning.
fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// The host model as a [`Backend`].
pub(crate) struct Host;

impl Backend for Host {
    type SpinLock = HostSpinLock;
    type RwLock = HostRwLock;
    type Rundown = HostRundown;

    unsafe fn spin_init(slot: *mut HostSpinLock) {
        // SAFETY: the caller guarantees `slot` is writable and final.
        unsafe { HostSpinLock::init_at(slot) }
    }

    unsafe fn spin_free(lock: *mut HostSpinLock) {
        // SAFETY: the caller guarantees `lock` is valid.
        unsafe { &*lock }.free();
    }

    unsafe fn spin_acquire(lock: *mut HostSpinLock) {
        // SAFETY: the caller guarantees `lock` is valid.
        unsafe { &*lock }.acquire();
    }

    unsafe fn spin_release(lock: *mut HostSpinLock) {
        // SAFETY: the caller guarantees `lock` is valid.
        unsafe { &*lock }.release();
    }

    unsafe fn spin_acquire_dpr(lock: *mut HostSpinLock) {
        // SAFETY: the caller guarantees `lock` is valid.
        unsafe { &*lock }.acquire_dpr();
    }

    unsafe fn spin_release_dpr(lock: *mut HostSpinLock) {
        // SAFETY: the caller guarantees `lock` is valid.
        unsafe { &*lock }.release_at_dispatch(HeldKind::SpinDpr);
    }

    unsafe fn rw_allocate(_handle: NDIS_HANDLE) -> *mut HostRwLock {
        HostRwLock::allocate()
    }

    unsafe fn rw_free(lock: *mut HostRwLock) {
        // SAFETY: the caller guarantees `lock` came from rw_allocate and is unused after.
        unsafe { HostRwLock::free(lock) }
    }

    unsafe fn rw_acquire_read(lock: *mut HostRwLock, state: *mut LOCK_STATE_EX, flags: u32) {
        // SAFETY: the caller guarantees both pointers are valid and unaliased.
        unsafe { (*lock).acquire_read(&mut *state, flags) }
    }

    unsafe fn rw_acquire_write(lock: *mut HostRwLock, state: *mut LOCK_STATE_EX, flags: u32) {
        // SAFETY: the caller guarantees both pointers are valid and unaliased.
        unsafe { (*lock).acquire_write(&mut *state, flags) }
    }

    unsafe fn rw_release(lock: *mut HostRwLock, state: *mut LOCK_STATE_EX) {
        // SAFETY: the caller guarantees both pointers are valid and unaliased.
        unsafe { (*lock).release(&mut *state) }
    }

    unsafe fn rundown_init(slot: *mut HostRundown) {
        // SAFETY: the caller guarantees `slot` is writable and final.
        unsafe { HostRundown::init_at(slot) }
    }

    unsafe fn rundown_acquire(rundown: *mut HostRundown) -> bool {
        // SAFETY: the caller guarantees `rundown` is valid.
        unsafe { &*rundown }.acquire()
    }

    unsafe fn rundown_release(rundown: *mut HostRundown) {
        // SAFETY: the caller guarantees `rundown` is valid until the release.
        unsafe { HostRundown::release(rundown) };
    }

    unsafe fn rundown_wait(rundown: *mut HostRundown) {
        // SAFETY: the caller guarantees `rundown` is valid.
        unsafe { &*rundown }.wait();
    }

    unsafe fn rundown_reinitialize(rundown: *mut HostRundown) {
        // SAFETY: the caller guarantees `rundown` is valid.
        unsafe { &*rundown }.reinitialize();
    }

    unsafe fn rundown_free(rundown: *mut HostRundown) {
        // SAFETY: the caller guarantees `rundown` is valid.
        unsafe { &*rundown }.free();
    }

    #[track_caller]
    fn check_callback_entry() {
        let held = held_lock_count();
        if held != 0 {
            violation(
                Rule::CallbackTokenInsideLock,
                format_args!("CallbackIrql::with with {held} lock(s) held: a second token for the same IRQL"),
            )
        }
    }

    #[track_caller]
    fn check_token_irql(token: TokenIrql) {
        let irql = current_irql();
        let (ok, rule) = match token {
            TokenIrql::Passive => (irql == ndis_sys::PASSIVE_LEVEL, Rule::PassiveTokenNotAtPassive),
            TokenIrql::Dispatch => (irql == ndis_sys::DISPATCH_LEVEL, Rule::DispatchTokenNotAtDispatch),
            TokenIrql::AtMostDispatch => (irql <= ndis_sys::DISPATCH_LEVEL, Rule::MaybeDispatchTokenAboveDispatch),
        };
        if !ok {
            violation(rule, format_args!("{token:?} token forged at IRQL {irql}"))
        }
    }
}

#[cfg(test)]
mod tests;
