//! Model of `NDIS_RW_LOCK_EX`: reader count plus a writer bit. Unfair, as
//! NDIS's is: new readers enter while a writer waits.

use super::rule::{violation, Rule};
use super::thread::{forget_lock, record_order, spin_until, with_thread, Held, HeldKind, ThreadState};
use crate::atomic::{AtomicUsize, Ordering};
use ndis_sys::{LOCK_STATE_EX, NDIS_RWL_AT_DISPATCH_LEVEL};

const WRITER: usize = 1 << (usize::BITS - 1);
const LOCK_STATE_READ: u8 = 1;
const LOCK_STATE_WRITE: u8 = 2;

/// The model's `NDIS_RW_LOCK_EX`.
#[derive(Debug)]
pub(crate) struct HostRwLock {
    /// Number of (non-nested) readers, or `WRITER`.
    state: AtomicUsize,
}

impl HostRwLock {
    /// `NdisAllocateRWLock`: null when fault injection says so.
    pub(crate) fn allocate() -> *mut Self {
        let fail = with_thread(|t| {
            t.require_at_most_dispatch("NdisAllocateRWLock");
            let fail = t.failing_rw_allocations > 0;
            t.failing_rw_allocations = t.failing_rw_allocations.saturating_sub(1);
            fail
        });
        if fail {
            return core::ptr::null_mut();
        }
        let lock = std::boxed::Box::into_raw(std::boxed::Box::new(Self { state: AtomicUsize::new(0) }));
        // A lock allocated here is a new lock, whatever was here before.
        forget_lock(lock as usize);
        lock
    }

    /// `NdisFreeRWLock`.
    ///
    /// # Safety
    /// `lock` came from [`HostRwLock::allocate`] and is not used again.
    #[track_caller]
    pub(crate) unsafe fn free(lock: *mut Self) {
        // SAFETY: the caller guarantees `lock` is a live allocation from
        // `allocate` that nobody uses again; owning it frees it even when a
        // check below panics.
        let lock = unsafe { std::boxed::Box::from_raw(lock) };
        let held = lock.state.load(Ordering::Acquire) != 0;
        // While unwinding, a second panic would abort the test process.
        if held && !std::thread::panicking() {
            violation(Rule::FreeHeldLock, format_args!("NdisFreeRWLock on a held lock"))
        }
        forget_lock(lock.addr());
        with_thread(|t| t.require_at_most_dispatch("NdisFreeRWLock"));
    }

    fn addr(&self) -> usize {
        self as *const Self as usize
    }

    /// `NdisAcquireRWLockRead`.
    #[track_caller]
    pub(crate) fn acquire_read(&self, state: &mut LOCK_STATE_EX, flags: u32) {
        let (old, nested) = with_thread(|t| {
            check_acquire_irql(t, flags, "NdisAcquireRWLockRead");
            let nested = t.holds(self.addr(), |k| matches!(k, HeldKind::RwWrite { .. }));
            (raise(t), nested)
        });
        if !nested {
            self.spin_until("NdisAcquireRWLockRead", |s| (s & WRITER == 0).then_some(s + 1));
        }
        self.record(state, old, flags, HeldKind::RwRead { nested });
    }

    /// `NdisAcquireRWLockWrite`.
    #[track_caller]
    pub(crate) fn acquire_write(&self, state: &mut LOCK_STATE_EX, flags: u32) {
        let (old, nested) = with_thread(|t| {
            const F: &str = "NdisAcquireRWLockWrite";
            check_acquire_irql(t, flags, F);
            let writing = t.holds(self.addr(), |k| matches!(k, HeldKind::RwWrite { .. }));
            let reading = t.holds(self.addr(), |k| matches!(k, HeldKind::RwRead { .. }));
            if reading && !writing {
                violation(Rule::RwWriteWhileReading, format_args!("{F} while this thread holds the same lock for read"))
            }
            (raise(t), writing)
        });
        if !nested {
            self.spin_until("NdisAcquireRWLockWrite", |s| (s == 0).then_some(WRITER));
        }
        self.record(state, old, flags, HeldKind::RwWrite { nested });
    }

    #[track_caller]
    fn spin_until(&self, function: &str, next: impl Fn(usize) -> Option<usize>) {
        with_thread(|t| record_order(&t.held, self.addr(), function));
        spin_until(self.addr(), function, || {
            let current = self.state.load(Ordering::Relaxed);
            next(current).is_some_and(|new| {
                self.state.compare_exchange(current, new, Ordering::Acquire, Ordering::Relaxed).is_ok()
            })
        });
    }

    fn record(&self, state: &mut LOCK_STATE_EX, old: u8, flags: u32, kind: HeldKind) {
        state.OldIrql = old;
        state.LockState = match kind {
            HeldKind::RwWrite { .. } => LOCK_STATE_WRITE,
            _ => LOCK_STATE_READ,
        };
        state.Flags = flags as u8;
        let held = Held { lock: self.addr(), state: state as *mut LOCK_STATE_EX as usize, kind };
        with_thread(|t| t.held.push(held));
    }

    /// `NdisReleaseRWLock`.
    #[track_caller]
    pub(crate) fn release(&self, state: &mut LOCK_STATE_EX) {
        const F: &str = "NdisReleaseRWLock";
        with_thread(|t| {
            t.require_dispatch(Rule::ReleaseBelowDispatch, F);
            let held = t.take_held(self.addr(), state as *mut LOCK_STATE_EX as usize, F);
            match held.kind {
                HeldKind::RwRead { nested: false } => {
                    self.state.fetch_sub(1, Ordering::Release);
                }
                HeldKind::RwWrite { nested: false } => {
                    self.state.fetch_and(!WRITER, Ordering::Release);
                }
                _ => {}
            }
            t.restore_irql(state.OldIrql, F);
        });
    }
}

#[track_caller]
fn check_acquire_irql(t: &ThreadState, flags: u32, function: &str) {
    if flags & NDIS_RWL_AT_DISPATCH_LEVEL != 0 {
        t.require_dispatch(Rule::RwlAtDispatchFlagWrong, function);
    }
    t.require_at_most_dispatch(function);
}

fn raise(t: &mut ThreadState) -> u8 {
    core::mem::replace(&mut t.irql, ndis_sys::DISPATCH_LEVEL)
}
