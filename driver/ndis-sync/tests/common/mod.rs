//! Helpers shared by the host tests (included with `mod common;`).
#![allow(dead_code)]

use std::pin::Pin;

use ndis_sync::{Dispatch, Lock, MaybeDispatch, MutexBackend, Passive};

/// A PASSIVE_LEVEL token for a test thread.
pub fn passive() -> Passive {
    // SAFETY: test threads start, and stay outside `host::at_irql`, at PASSIVE_LEVEL.
    unsafe { Passive::new_unchecked() }
}

/// An "at most DISPATCH" token, valid at the current IRQL.
pub fn maybe_dispatch() -> MaybeDispatch {
    // SAFETY: the host model never runs a test thread above DISPATCH_LEVEL
    // unless a test asks for it, and then the model reports the forgery.
    unsafe { MaybeDispatch::new_unchecked() }
}

/// A DISPATCH token forged inside `at_dispatch` and smuggled out, to show
/// what the model does with a token used at the wrong IRQL.
pub fn stale_dispatch() -> Dispatch {
    // SAFETY: deliberately wrong once returned: the tests using it expect
    // the model to report the misuse.
    ndis_sync::host::at_dispatch(|_| unsafe { Dispatch::new_unchecked() })
}

/// Iterations for contention tests: Miri is slow.
pub const ROUNDS: usize = if cfg!(miri) { 20 } else { 2_000 };

/// A mutex of either kind ([`ndis_sync::Mutex`], [`ndis_sync::PassiveMutex`])
/// holding `value`, pinned on the heap and initialised there.
pub fn pinned_mutex<T, B: MutexBackend>(value: T) -> Pin<Box<Lock<T, B>>> {
    let mut m = Box::pin(Lock::new(value));
    m.as_mut().init();
    m
}
