//! Rules of the model that the safe API cannot reach: exercised on the raw
//! primitives, the way a buggy C driver would call them.

use super::rundown::HostRundown;
use super::rw::HostRwLock;
use super::spin::HostSpinLock;
use super::thread::{with_thread, HeldKind};
use super::{at_irql, current_irql, held_lock_count};
use ndis_sys::{DISPATCH_LEVEL, LOCK_STATE_EX, PASSIVE_LEVEL};

/// A model spin lock initialised where it stays (a box).
fn spin_lock() -> Box<HostSpinLock> {
    let mut slot = Box::<HostSpinLock>::new_uninit();
    // SAFETY: the box's storage is writable and does not move.
    unsafe {
        HostSpinLock::init_at(slot.as_mut_ptr());
        slot.assume_init()
    }
}

/// A model rundown reference initialised where it stays (a box).
fn rundown_ref() -> Box<HostRundown> {
    let mut slot = Box::<HostRundown>::new_uninit();
    // SAFETY: the box's storage is writable and does not move.
    unsafe {
        HostRundown::init_at(slot.as_mut_ptr());
        slot.assume_init()
    }
}

/// A spin lock initialised at one address and used at another: what the
/// driver's constructors did (initialise on the stack, copy into pool).
#[test]
#[should_panic(expected = "LockMoved")]
fn spin_lock_used_away_from_where_it_was_initialised_is_reported() {
    let initialised = spin_lock();
    let moved: HostSpinLock = *initialised;
    moved.acquire();
}

/// Freed at another address than its initialisation (copied back at free).
#[test]
#[should_panic(expected = "LockMoved")]
fn spin_lock_freed_away_from_where_it_was_initialised_is_reported() {
    let moved: HostSpinLock = *spin_lock();
    moved.free();
}

#[test]
#[should_panic(expected = "RundownInitAboveApc")]
fn rundown_initialised_at_dispatch_is_reported() {
    at_irql(DISPATCH_LEVEL, || drop(rundown_ref()));
}

#[test]
#[should_panic(expected = "LockMoved")]
fn rundown_used_away_from_where_it_was_initialised_is_reported() {
    let moved: HostRundown = *rundown_ref();
    moved.acquire();
}

#[test]
#[should_panic(expected = "ReleaseNotHeld")]
fn spin_release_without_acquire_is_reported() {
    let lock = spin_lock();
    at_irql(DISPATCH_LEVEL, || lock.release());
}

#[test]
#[should_panic(expected = "ReleaseNotHeld")]
fn spin_release_by_another_thread_is_reported() {
    let lock = spin_lock();
    lock.acquire();
    std::thread::scope(|s| {
        s.spawn(|| at_irql(DISPATCH_LEVEL, || lock.release())).join().map_err(std::panic::resume_unwind)
    })
    .unwrap();
}

#[test]
#[should_panic(expected = "ReleaseMismatched")]
fn spin_acquire_released_with_dpr_release_is_reported() {
    let lock = spin_lock();
    lock.acquire();
    lock.release_at_dispatch(HeldKind::SpinDpr);
}

#[test]
#[should_panic(expected = "ReleaseBelowDispatch")]
fn spin_release_below_dispatch_is_reported() {
    let lock = spin_lock();
    lock.acquire();
    with_thread(|t| t.irql = PASSIVE_LEVEL);
    lock.release();
}

#[test]
#[should_panic(expected = "DprBelowDispatch")]
fn dpr_release_below_dispatch_is_reported() {
    let lock = spin_lock();
    with_thread(|t| t.irql = DISPATCH_LEVEL);
    lock.acquire_dpr();
    with_thread(|t| t.irql = PASSIVE_LEVEL);
    lock.release_at_dispatch(HeldKind::SpinDpr);
}

#[test]
fn spin_acquire_and_release_restore_irql() {
    let lock = spin_lock();
    lock.acquire();
    assert_eq!(current_irql(), DISPATCH_LEVEL);
    assert_eq!(held_lock_count(), 1);
    lock.release();
    assert_eq!(current_irql(), PASSIVE_LEVEL);
    assert_eq!(held_lock_count(), 0);
}

#[test]
#[should_panic(expected = "ReleaseNotHeld")]
fn rw_release_with_wrong_lock_state_is_reported() {
    // SAFETY: a live allocation; the Box frees it (without the model's
    // checks) when the expected panic unwinds.
    let lock = unsafe { Box::from_raw(HostRwLock::allocate()) };
    let (mut state, mut other) = (LOCK_STATE_EX::default(), LOCK_STATE_EX::default());
    lock.acquire_read(&mut state, 0);
    lock.release(&mut other);
}

#[test]
#[should_panic(expected = "FreeHeldLock")]
fn rw_free_while_held_is_reported() {
    let lock = HostRwLock::allocate();
    let mut state = LOCK_STATE_EX::default();
    // SAFETY: `lock` is a live allocation.
    unsafe { &*lock }.acquire_write(&mut state, 0);
    // SAFETY: `lock` came from allocate and is not used afterwards.
    unsafe { HostRwLock::free(lock) };
}

#[test]
fn rw_lock_state_records_old_irql_and_flags() {
    let lock = HostRwLock::allocate();
    let mut state = LOCK_STATE_EX::default();
    // SAFETY: `lock` is a live allocation until the free below.
    let raw = unsafe { &*lock };
    at_irql(DISPATCH_LEVEL, || {
        raw.acquire_read(&mut state, ndis_sys::NDIS_RWL_AT_DISPATCH_LEVEL);
        assert_eq!(state.OldIrql, DISPATCH_LEVEL);
        assert_eq!(u32::from(state.Flags), ndis_sys::NDIS_RWL_AT_DISPATCH_LEVEL);
        raw.release(&mut state);
    });
    // SAFETY: unheld, from allocate, not used again.
    unsafe { HostRwLock::free(lock) };
}

#[test]
#[should_panic(expected = "RundownReleaseNotAcquired")]
fn rundown_release_without_acquire_is_reported() {
    let rundown = rundown_ref();
    // SAFETY: `rundown` is live.
    unsafe { HostRundown::release(&*rundown) };
}

#[test]
#[should_panic(expected = "RundownReinitializeNotRunDown")]
fn rundown_reinitialize_before_run_down_is_reported() {
    rundown_ref().reinitialize();
}

#[test]
#[should_panic(expected = "RundownConcurrentWait")]
fn second_rundown_wait_is_reported() {
    let rundown = rundown_ref();
    rundown.wait();
    rundown.wait();
}

#[test]
fn rundown_acquire_fails_after_wait_and_succeeds_after_reinitialize() {
    let rundown = rundown_ref();
    assert!(rundown.acquire());
    // SAFETY: `rundown` is live.
    unsafe { HostRundown::release(&*rundown) };
    rundown.wait();
    assert!(!rundown.acquire());
    rundown.reinitialize();
    assert!(rundown.acquire());
    // SAFETY: `rundown` is live.
    unsafe { HostRundown::release(&*rundown) };
    rundown.free();
}
