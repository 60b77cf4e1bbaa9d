//! [`RwLock`]: data protected by an `NDIS_RW_LOCK_EX`.

use crate::atomic::{AtomicBool, Ordering};
use crate::backend::{Active, Backend};
use crate::{AtMostDispatch, Dispatch};
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use ndis_sys::{LOCK_STATE_EX, NDIS_HANDLE, NDIS_RWL_AT_DISPATCH_LEVEL};

type RawRwLock = <Active as Backend>::RwLock;

/// `NdisAllocateRWLock` returned NULL (low resources).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError;

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NdisAllocateRWLock failed")
    }
}

impl core::error::Error for AllocError {}

/// A `T` protected by an `NDIS_RW_LOCK_EX`: many readers or one writer.
///
/// Access is through closures (`read`, `write`, ...): the `LOCK_STATE_EX`
/// that NDIS takes by pointer at acquire and release lives in the frame of
/// that call, at one address for the whole hold, so whether NDIS keeps a
/// pointer to it in between does not matter. The lock is released when the
/// closure returns (and, on the host, when it panics).
///
/// **Unfair.** NDIS lets new readers in while a writer waits, so a steady
/// stream of readers can starve writers: keep both read and write sections
/// short (microseconds), and prefer it for read-mostly data.
///
/// **Recursion.** NDIS lets a processor take the read lock again while
/// holding it, and lets the processor that holds the write lock take the
/// lock again (read or write). The first is fine (`&T` twice); re-entering a
/// lock whose write closure holds `&mut T` would alias it, so a write closure
/// raises a `writing` flag for its duration, and an acquisition that finds
/// the flag raised panics (`RwLockReentered`; a bug check in a driver)
/// before the data is touched. No thread identity is needed: while the lock
/// is held, only the thread inside the write closure can be holding it at
/// all. The read path only *loads* the flag, so it writes nothing shared
/// besides NDIS's own lock state: one load and a branch. Taking the write
/// lock while holding the read lock on the same processor is forbidden by
/// NDIS (it never grants it); the host model reports it
/// (`RwWriteWhileReading`). There is no upgrade.
///
/// ```
/// use ndis_sync::{Passive, RwLock};
///
/// let ports = RwLock::new(vec![80u16]).expect("allocated");
/// // SAFETY: a test thread runs at PASSIVE_LEVEL.
/// let mut passive = unsafe { Passive::new_unchecked() };
/// ports.write(&mut passive, |ports, _| ports.push(443));
/// let count = ports.read(&mut passive, |ports, _| ports.len());
/// assert_eq!(count, 2);
/// ```
pub struct RwLock<T> {
    raw: NonNull<RawRwLock>,
    /// Raised while a write closure runs. Written only under the write lock;
    /// read under either lock.
    writing: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: moving the lock moves the `T` and a pointer to an NDIS-allocated
// lock that any processor may use.
unsafe impl<T: Send> Send for RwLock<T> {}
// SAFETY: readers on several threads share `&T` (needs `T: Sync`), a writer
// on any thread gets `&mut T` (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for RwLock<T> {}

/// How a closure holds the lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
}

impl<T> RwLock<T> {
    /// Allocates the lock without an NDIS handle (`NdisAllocateRWLock(NULL)`,
    /// IRQL <= DISPATCH).
    ///
    /// Where NULL is allowed: `NdisAllocateRWLock` takes the filter driver
    /// handle or a filter module's handle, and accepts NULL from Windows 8
    /// (NDIS 6.30) on for a driver-wide lock made in `DriverEntry`, before
    /// there is a handle. PortWatch's globals (the port table and the port
    /// name) are such locks. A lock made later, for something that has a
    /// handle (per filter module, in `FilterAttach`), must be made with
    /// [`with_handle`](Self::with_handle) and that handle.
    ///
    /// ```
    /// let lock = ndis_sync::RwLock::new(0u32).expect("allocated");
    /// # drop(lock);
    /// ```
    pub fn new(value: T) -> Result<Self, AllocError> {
        // SAFETY: a NULL handle is accepted from Windows 8 on, the minimum
        // this crate supports.
        unsafe { Self::with_handle(core::ptr::null_mut(), value) }
    }

    /// Allocates the lock for an NDIS handle (`NdisAllocateRWLock`, IRQL <=
    /// DISPATCH): the filter driver handle or a filter module's handle.
    ///
    /// # Safety
    ///
    /// `handle` is NULL or a live handle from `NdisFRegisterFilterDriver` or
    /// `FilterAttach` (or another one `NdisAllocateRWLock` accepts), and the
    /// lock is dropped before that handle goes away.
    ///
    /// ```
    /// // SAFETY: a NULL handle is always accepted (Windows 8 and later).
    /// let lock = unsafe { ndis_sync::RwLock::with_handle(core::ptr::null_mut(), 1) };
    /// assert!(lock.is_ok());
    /// ```
    pub unsafe fn with_handle(handle: NDIS_HANDLE, value: T) -> Result<Self, AllocError> {
        // SAFETY: the caller guarantees the handle is acceptable.
        let raw = NonNull::new(unsafe { Active::rw_allocate(handle) }).ok_or(AllocError)?;
        Ok(Self { raw, writing: AtomicBool::new(false), data: UnsafeCell::new(value) })
    }

    /// Runs `f` with shared access (`NdisAcquireRWLockRead` /
    /// `NdisReleaseRWLock`, IRQL <= DISPATCH; with a [`Dispatch`] token the
    /// `NDIS_RWL_AT_DISPATCH_LEVEL` flag is passed). `f` runs at
    /// `DISPATCH_LEVEL` and gets a token for nested locks.
    ///
    /// ```
    /// use ndis_sync::{MaybeDispatch, RwLock};
    /// let lock = RwLock::new(7).expect("allocated");
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL, which is <= DISPATCH_LEVEL.
    /// let mut irql = unsafe { MaybeDispatch::new_unchecked() };
    /// assert_eq!(lock.read(&mut irql, |value, _| *value), 7);
    /// ```
    #[track_caller]
    pub fn read<I: AtMostDispatch, R>(&self, irql: &mut I, f: impl FnOnce(&T, &mut Dispatch) -> R) -> R {
        let _ = irql;
        self.hold(Mode::Read, flags_for::<I>(), |data, dispatch| {
            // SAFETY: the read lock is held: no writer has `&mut T`.
            f(unsafe { &*data }, dispatch)
        })
    }

    /// Runs `f` with exclusive access (`NdisAcquireRWLockWrite` /
    /// `NdisReleaseRWLock`, IRQL <= DISPATCH; with a [`Dispatch`] token the
    /// `NDIS_RWL_AT_DISPATCH_LEVEL` flag is passed). `f` runs at
    /// `DISPATCH_LEVEL` and gets a token for nested locks.
    ///
    /// ```
    /// use ndis_sync::{Passive, RwLock};
    /// let lock = RwLock::new(7).expect("allocated");
    /// // SAFETY: a test thread runs at PASSIVE_LEVEL.
    /// let mut passive = unsafe { Passive::new_unchecked() };
    /// lock.write(&mut passive, |value, _| *value += 1);
    /// assert_eq!(lock.into_inner(), 8);
    /// ```
    #[track_caller]
    pub fn write<I: AtMostDispatch, R>(&self, irql: &mut I, f: impl FnOnce(&mut T, &mut Dispatch) -> R) -> R {
        let _ = irql;
        self.hold(Mode::Write, flags_for::<I>(), |data, dispatch| {
            // SAFETY: the write lock is held, so no other processor holds
            // the lock, and `enter` checked this thread is not inside a
            // closure of this lock that NDIS let it re-enter: `&mut T` is
            // unique.
            f(unsafe { &mut *data }, dispatch)
        })
    }

    /// [`read`](Self::read) at `DISPATCH_LEVEL` (`NDIS_RWL_AT_DISPATCH_LEVEL`).
    ///
    /// ```
    /// let lock = ndis_sync::RwLock::new(7).expect("allocated");
    /// let value = ndis_sync::host::at_dispatch(|d| lock.read_at_dispatch(d, |v, _| *v));
    /// assert_eq!(value, 7);
    /// ```
    #[track_caller]
    pub fn read_at_dispatch<R>(&self, irql: &mut Dispatch, f: impl FnOnce(&T, &mut Dispatch) -> R) -> R {
        self.read(irql, f)
    }

    /// [`write`](Self::write) at `DISPATCH_LEVEL` (`NDIS_RWL_AT_DISPATCH_LEVEL`).
    ///
    /// ```
    /// let lock = ndis_sync::RwLock::new(7).expect("allocated");
    /// ndis_sync::host::at_dispatch(|d| lock.write_at_dispatch(d, |v, _| *v = 9));
    /// assert_eq!(lock.into_inner(), 9);
    /// ```
    #[track_caller]
    pub fn write_at_dispatch<R>(&self, irql: &mut Dispatch, f: impl FnOnce(&mut T, &mut Dispatch) -> R) -> R {
        self.write(irql, f)
    }

    /// Acquires, records the holder, runs `f`, and undoes both on the way
    /// out (also when `f` unwinds).
    #[track_caller]
    fn hold<R>(&self, mode: Mode, flags: u32, f: impl FnOnce(*mut T, &mut Dispatch) -> R) -> R {
        let mut state = LOCK_STATE_EX::default();
        let lock = self.raw.as_ptr();
        // SAFETY: the lock is live for as long as `self`; `state` is a local
        // that stays at this address until `held` (below) releases it.
        unsafe {
            match mode {
                Mode::Read => Active::rw_acquire_read(lock, &mut state, flags),
                Mode::Write => Active::rw_acquire_write(lock, &mut state, flags),
            }
        }
        let mut held = Held { lock, state: &mut state, writing: &self.writing, wrote: false };
        held.enter(mode);
        // SAFETY: the lock is held, which raised (or found) the IRQL at
        // DISPATCH_LEVEL until `held` is dropped after `f` returns.
        let mut dispatch = unsafe { Dispatch::new_unchecked() };
        f(self.data.get(), &mut dispatch)
    }

    /// The data, through exclusive access to the lock (no locking needed).
    ///
    /// ```
    /// let mut lock = ndis_sync::RwLock::new(1).expect("allocated");
    /// *lock.get_mut() = 2;
    /// assert_eq!(lock.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Frees the lock (`NdisFreeRWLock`, IRQL <= DISPATCH) and returns the data.
    ///
    /// ```
    /// assert_eq!(ndis_sync::RwLock::new(5).expect("allocated").into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> T {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: owned, so no closure holds the lock; freed exactly once.
        unsafe { Active::rw_free(this.raw.as_ptr()) };
        // SAFETY: `this` is never used or dropped again: the counter is
        // dropped and the data moved out exactly once.
        unsafe {
            core::ptr::drop_in_place(&mut this.writing);
            core::ptr::read(this.data.get())
        }
    }
}

/// The acquire flags a token allows.
fn flags_for<I: AtMostDispatch>() -> u32 {
    if I::AT_DISPATCH {
        NDIS_RWL_AT_DISPATCH_LEVEL
    } else {
        0
    }
}

/// One acquisition of the RW lock, released on drop.
struct Held<'s> {
    lock: *mut RawRwLock,
    state: &'s mut LOCK_STATE_EX,
    writing: &'s AtomicBool,
    wrote: bool,
}

impl Held<'_> {
    /// Refuses an acquisition that NDIS granted inside a write closure of
    /// the same lock (recursion on the writer's processor, which would alias
    /// its `&mut T`), and raises the flag for a writer. Called with the lock
    /// held.
    #[track_caller]
    fn enter(&mut self, mode: Mode) {
        // With the lock held, a raised flag can only be this thread's own
        // write closure: any other writer has finished (and lowered it)
        // before NDIS let us in, and the lock's release/acquire orders that
        // store before this load, so Relaxed is enough.
        if self.writing.load(Ordering::Relaxed) {
            panic!("RwLockReentered: an RwLock was acquired again inside one of its write closures");
        }
        if mode == Mode::Write {
            self.writing.store(true, Ordering::Relaxed);
            self.wrote = true;
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.wrote {
            self.writing.store(false, Ordering::Relaxed);
        }
        // SAFETY: `state` is the one the acquire filled in, at the same address.
        unsafe { Active::rw_release(self.lock, self.state) }
    }
}

impl<T> Drop for RwLock<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self` means no closure holds the lock; freed once.
        unsafe { Active::rw_free(self.raw.as_ptr()) }
    }
}

impl<T> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock").finish_non_exhaustive()
    }
}
