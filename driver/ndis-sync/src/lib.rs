//! Safe RAII guards over NDIS spin locks, NDIS read/write locks and
//! executive rundown protection, with IRQL tokens that turn the classic
//! NDIS locking bugs into compile errors.
//!
//! * [`SpinLock<T>`] over `NDIS_SPIN_LOCK`,
//! * [`RwLock<T>`] over `NDIS_RW_LOCK_EX`,
//! * [`Rundown<T>`] over `EX_RUNDOWN_REF`,
//! * [`Mutex<T>`] over an executive `FAST_MUTEX` (blocking holders, lends an
//!   [`Apc`] token), [`PassiveMutex<T>`] over a kernel mutex object
//!   (`KMUTEX`: blocking holders that stay at PASSIVE_LEVEL, for `Zw*`
//!   calls; lends a [`PassiveCritical`] token), [`Semaphore`] over
//!   `KSEMAPHORE` (bounded holders, [`Permit`]s, waits with a timeout),
//! * IRQL tokens [`Passive`], [`Dispatch`], [`MaybeDispatch`] (and
//!   [`CallbackIrql`] to get one from an NDIS `*_DISPATCH_LEVEL` flag).
//!
//! # IRQL tokens
//!
//! A token is a zero-sized, `!Send`, `!Sync` proof of the current IRQL,
//! `unsafe` to forge. Locks take the caller's token by `&mut` for their
//! whole hold and lend out a `&mut Dispatch` of their own. So while a lock
//! is held the caller can neither take a second lock with its own token
//! (the nested lock must use the guard's token and so cannot outlive the
//! guard) nor call anything that needs `&Passive`. The IRQL bug described in
//! `NdisAllocateSpinLock`'s remarks does not compile:
//!
//! ```compile_fail,E0499
//! use ndis_sync::{Passive, SpinLock};
//! ndis_sync::stack_pin_init!(let a_lock = SpinLock::new(1));
//! ndis_sync::stack_pin_init!(let b_lock = SpinLock::new(2));
//! // SAFETY: a test thread runs at PASSIVE_LEVEL.
//! let mut passive = unsafe { Passive::new_unchecked() };
//! let a = a_lock.lock(&mut passive);
//! let b = b_lock.lock(&mut passive); // error: `passive` is already borrowed by `a`
//! drop(a); // releasing A first would restore PASSIVE_LEVEL while B is held
//! drop(b);
//! ```
//!
//! The right way nests B under A's token:
//!
//! ```
//! use ndis_sync::{Passive, SpinLock};
//! ndis_sync::stack_pin_init!(let a_lock = SpinLock::new(1));
//! ndis_sync::stack_pin_init!(let b_lock = SpinLock::new(2));
//! // SAFETY: a test thread runs at PASSIVE_LEVEL.
//! let mut passive = unsafe { Passive::new_unchecked() };
//! let mut a = a_lock.lock(&mut passive);
//! let (a_data, dispatch) = a.split();
//! let b = b_lock.lock_at_dispatch(dispatch);
//! *a_data += *b;
//! drop(b);
//! drop(a);
//! ```
//!
//! # What the types guarantee, and what is checked at run time
//!
//! | Primitive | Guaranteed by the types (misuse does not compile) | Checked at run time (host model; in the kernel, Driver Verifier) |
//! |---|---|---|
//! | IRQL tokens | forged only in `unsafe` code; `!Send`, `!Sync`; a callback's token ([`CallbackIrql::with`]) is borrowed for the callback and cannot be kept, moved out or used again while a lock taken with it is held | a token forged at the wrong IRQL; [`CallbackIrql::with`] called with a lock held (`CallbackTokenInsideLock`) |
//! | [`SpinLock`] | initialised, used and freed at one address (an in-place initialiser, `!Unpin`, reached only through `Pin`); data only through a guard; guard `!Send`; nested locks only through the outer guard's token, so they cannot outlive it (release order); nothing needing `&Passive` while held | recursion on the same lock (`SpinLockRecursion`); lock-order inversion and ABBA deadlock (`LockOrderInversion`); a lock left held by an ended thread (`ThreadExitedHoldingLock`); freeing a held lock; any spin over a second (`Deadlock`); a lock used or freed elsewhere than where it was initialised (`LockMoved`) |
//! | [`RwLock`] | `&T` to readers, `&mut T` to the writer, only inside the closure; the closure's token cannot escape; no upgrade | write inside one's own read (`RwWriteWhileReading`); any acquire inside one's own write (`RwLockReentered`, also in the kernel build: it would alias `&mut T`); lock-order inversion; freeing a held lock; wrong `NDIS_RWL_AT_DISPATCH_LEVEL` flag |
//! | [`Rundown`] | initialised in place at <= APC (`Rundown::new` borrows `&Passive`), pinned, and a pinned value is consumed in place (`run_down` moves it out only if `T: Unpin`); value only through a guard, shared; `run_down` needs `&Passive` or `&Apc` (an [`AtMostApc`] token), so never under a spin or RW lock; exactly one `run_down` gets the value; the guard holds no reference across its release | `run_down` while this thread holds one of its guards (`RundownWaitWhileHolding`); release without acquire; freeing with protection outstanding; initialised above APC_LEVEL; used elsewhere than where it was initialised (`LockMoved`) |
//! | [`Mutex`] | pinned (`!Unpin`), initialised in place ([`Mutex::in_place`], or `new` + `init`); data only through a guard, guard `!Send`; taken only with an [`AtMostApc`] token, so never inside a spin or RW lock; the guard borrows the caller's token and lends an [`Apc`] one, so nothing needing `&Passive` while held and nested locks cannot outlive it | recursion (`MutexRecursion`); acquire above APC_LEVEL (`MutexAcquireAboveApc`); release by another thread or not at APC_LEVEL (`MutexReleaseNotOwner`, `MutexReleaseNotAtApc`); used before `init` or away from where it was initialised (`LockNotInitialisedHere`) |
//! | [`PassiveMutex`] | pinned (`!Unpin`), initialised in place ([`PassiveMutex::in_place`], or `new` + `init`); data only through a guard, guard `!Send`; taken only with `&mut Passive`, so never inside a spin lock, an RW lock or a fast mutex, and never recursively (the guard lends a [`PassiveCritical`] token, which `lock` does not take); `Zw*` calls ([`AtPassive`]), waits and spin locks nest inside and cannot outlive it | recursion through a forged second `Passive` (`MutexObjectRecursion`: Windows allows it, the guard would alias `&mut T`); acquire above APC_LEVEL (`MutexObjectAcquireAboveApc`); release by a thread that does not own it (`MutexObjectReleaseNotOwner`); a thread returning to user mode holding one ([`host::return_to_user_mode`]: `MutexObjectHeldAtUserReturn`, Windows' APC_INDEX_MISMATCH); used before `init` or away from where it was initialised (`LockNotInitialisedHere`) |
//! | [`Semaphore`] | pinned (`!Unpin`), initialised in place ([`Semaphore::in_place`], or `new` + `init`); a timed wait ([`Semaphore::acquire`]) only with an [`AtMostApc`] token, a zero-timeout one ([`Semaphore::try_acquire`]) up to DISPATCH; a [`Permit`] releases once, on drop | a non-zero wait at DISPATCH_LEVEL (`WaitAtDispatch`); a release past the limit (`SemaphoreLimitExceeded`); used before `init` or away from where it was initialised (`LockNotInitialisedHere`) |
//!
//! # What the types cannot see
//!
//! The guarantees above hold for code that lets guards drop. Leaking a
//! guard (`core::mem::forget`, a reference cycle) is safe Rust: it ends the
//! borrow of the caller's token while the lock stays held and the IRQL
//! stays at DISPATCH_LEVEL, after which the token compiles into calls it
//! must not make. That is a hang or a bug check, not memory unsafety; don't
//! leak guards (the host model reports a thread that ends holding one).
//!
//! **Self-deadlock.** Taking a lock again while this processor holds it is
//! a deadlock the types cannot rule out: locks are reached through shared
//! references (the port table from every packet, an endpoint through its
//! file object), so nothing in a `&SpinLock` or `&RwLock` says which locks
//! the caller already holds, and a held guard lends a plain `&mut Dispatch`
//! that is valid for any other lock. The cases are:
//!
//! * a spin lock taken again inside its own guard, through the guard's
//!   `&mut Dispatch` (NDIS spin locks are not recursive);
//! * an RW lock taken for writing inside one of its own read closures
//!   (NDIS has no upgrade; seed 003);
//! * [`Rundown::run_down`] inside one of its own guards (it waits for the
//!   guard this thread holds); the types only forbid it under a lock;
//! * a [`Mutex`] taken again with its own guard's [`Apc`] token (a fast
//!   mutex is not recursive: `MutexRecursion` in the host model, 0xC4/0x1000
//!   in the harness).
//!
//! Each is a named failure, never a silent hang, wherever it can be
//! checked: the host model (unit tests, loom, Miri) reports all three by
//! rule name at the acquire (`SpinLockRecursion`, `RwWriteWhileReading`,
//! `RundownWaitWhileHolding`), and PortWatch's harness reports the first
//! two in the real driver binary. In the kernel build the
//! guards add no instruction for it: the check would need the owning
//! processor (`KeGetCurrentProcessorNumberEx`, an imported call per
//! acquire, over the 2-instruction budget the guards keep over the raw
//! calls) and would still not see a write inside a read, since NDIS keeps
//! readers per processor inside the opaque lock. On a test machine Driver
//! Verifier's deadlock detection (flag 0x20) bugchecks a recursive spin lock
//! acquire with 0xC4 and reports lock-order inversions; its coverage of
//! `NDIS_RW_LOCK_EX` is not documented, so for a write inside a read the
//! host model and the harness are the check, and in the field it hangs.
//!
//! # Mutex and semaphore: waiting primitives
//!
//! [`Mutex`] and [`Semaphore`] wait instead of spinning, so they need an
//! [`AtMostApc`] token ([`Passive`], or the [`Apc`] token a held mutex
//! lends): neither can be waited on inside a spin lock or an RW lock, which
//! lend only [`Dispatch`]. Both are pinned and initialised in place, in
//! either of two styles: [`Mutex::in_place`] and [`Semaphore::in_place`]
//! return a [`PinInit`] like [`SpinLock::new`] (for [`stack_pin_init!`],
//! [`try_pin_box`] or a containing structure's initialiser), and `new`
//! followed by `init(self: Pin<&mut Self>)` at the final address does the
//! same in two steps; using one before it is initialised panics. A held
//! mutex runs its holder at `APC_LEVEL`: functions that need
//! `PASSIVE_LEVEL` (most `Zw*` calls) cannot be called under it, because
//! the caller's [`Passive`] token is borrowed by the guard. [`Rundown::run_down`]
//! takes either token, so a rundown can be waited for under a mutex.
//!
//! A writer that must call `ZwSetValueKey` (or any `Zw*` function: PASSIVE
//! only, Driver Verifier's IrqlZwPassive) while it holds the lock uses a
//! [`PassiveMutex`]: a kernel mutex object keeps the IRQL at PASSIVE_LEVEL
//! and disables only normal kernel APCs, so its guard lends a
//! [`PassiveCritical`] token, which the [`AtPassive`] functions accept. A
//! guarded mutex would keep PASSIVE_LEVEL too, but disables special kernel
//! APCs, which I/O completion needs (the module docs of [`PassiveMutex`]
//! cite the pages). PortWatch persists its port name that way: the registry
//! write under the `PassiveMutex`, then the in-memory copy swapped under an
//! RW lock's write closure inside it (readers keep taking the RW lock at
//! DISPATCH_LEVEL).
//!
//! ```
//! use core::time::Duration;
//! use ndis_sync::{Mutex, Passive, Semaphore, SpinLock};
//!
//! let mut config = Box::pin(Mutex::new(0u32));
//! config.as_mut().init();
//! ndis_sync::stack_pin_init!(let replies = Semaphore::in_place(2));
//! ndis_sync::stack_pin_init!(let counters = SpinLock::new(0u32));
//! // SAFETY: a test thread runs at PASSIVE_LEVEL.
//! let mut passive = unsafe { Passive::new_unchecked() };
//! if let Ok(_permit) = replies.acquire(&passive, Duration::from_millis(50)) {
//!     let mut guard = config.lock(&mut passive);
//!     let (value, apc) = guard.split();
//!     *value += 1;
//!     *counters.lock(apc) += 1;
//! }
//! assert_eq!(*counters.as_mut().data_mut(), 1);
//! ```
//!
//! # Spin lock: per-endpoint state
//!
//! ```
//! use ndis_sync::{CallbackIrql, SpinLock};
//!
//! #[derive(Default)]
//! struct Counters {
//!     packets: u64,
//!     bytes: u64,
//! }
//!
//! /// Called from a receive handler with the IRQL its flags describe.
//! fn count(endpoint: &SpinLock<Counters>, irql: &mut CallbackIrql, len: u64) {
//!     let mut counters = match irql {
//!         CallbackIrql::Dispatch(dispatch) => endpoint.lock(dispatch),
//!         CallbackIrql::Unknown(maybe) => endpoint.lock(maybe),
//!     };
//!     counters.packets += 1;
//!     counters.bytes += len;
//! }
//!
//! ndis_sync::stack_pin_init!(let endpoint = SpinLock::new(Counters::default()));
//! // NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL was clear.
//! // SAFETY: the flag comes from NDIS; a test thread runs at PASSIVE_LEVEL.
//! unsafe {
//!     CallbackIrql::with(false, |irql| {
//!         count(&endpoint, irql, 60);
//!         count(&endpoint, irql, 40);
//!     })
//! };
//! let counters = endpoint.as_mut().data_mut();
//! assert_eq!((counters.packets, counters.bytes), (2, 100));
//! ```
//!
//! # RW lock: the port table, read on the data path
//!
//! ```
//! use ndis_sync::{host, Passive, RwLock};
//!
//! let ports = RwLock::new([0u32; 4]).expect("NdisAllocateRWLock");
//! // SAFETY: a test thread runs at PASSIVE_LEVEL.
//! let mut passive = unsafe { Passive::new_unchecked() };
//! ports.write(&mut passive, |table, _| table[1] = 7); // bind IOCTL
//! // Data path at DISPATCH_LEVEL:
//! let bound = host::at_dispatch(|dispatch| {
//!     ports.read_at_dispatch(dispatch, |table, _| table[1])
//! });
//! assert_eq!(bound, 7);
//! ```
//!
//! # Rundown: objects other threads reach
//!
//! ```
//! use ndis_sync::{Passive, Rundown};
//!
//! // SAFETY: a test thread runs at PASSIVE_LEVEL.
//! let passive = unsafe { ndis_sync::Passive::new_unchecked() };
//! ndis_sync::stack_pin_init!(let module = Rundown::new(&passive, String::from("filter module")));
//! // An IOCTL enumerating modules:
//! if let Some(m) = module.try_acquire() {
//!     assert_eq!(m.len(), 13);
//! } // protection released here
//! // FilterDetach (PASSIVE_LEVEL): wait for every user, then free.
//! let taken = module.run_down(&passive);
//! assert!(taken.is_some());
//! assert!(module.try_acquire().is_none());
//! ```
//!
//! # Functions and IRQL
//!
//! | Method | NDIS / executive function | Callable at |
//! |---|---|---|
//! | [`SpinLock::new`] (in place) | `NdisAllocateSpinLock` | any IRQL |
//! | drop (in place) | `NdisFreeSpinLock` | any IRQL |
//! | [`SpinLock::lock`] (`Passive`/`MaybeDispatch`) | `NdisAcquireSpinLock` / `NdisReleaseSpinLock` | <= DISPATCH |
//! | [`SpinLock::lock`] (`Dispatch`), [`SpinLock::lock_at_dispatch`] | `NdisDprAcquireSpinLock` / `NdisDprReleaseSpinLock` | DISPATCH |
//! | [`RwLock::new`], [`RwLock::with_handle`] | `NdisAllocateRWLock` | <= DISPATCH |
//! | drop, [`RwLock::into_inner`] | `NdisFreeRWLock` | <= DISPATCH |
//! | [`RwLock::read`], [`RwLock::write`] | `NdisAcquireRWLockRead` / `NdisAcquireRWLockWrite` / `NdisReleaseRWLock` (flags 0, or `NDIS_RWL_AT_DISPATCH_LEVEL` with a `Dispatch` token) | <= DISPATCH |
//! | [`RwLock::read_at_dispatch`], [`RwLock::write_at_dispatch`] | the same with `NDIS_RWL_AT_DISPATCH_LEVEL` | DISPATCH |
//! | [`Rundown::new`] (in place; takes `&Passive`) | `ExInitializeRundownProtection` | <= APC |
//! | [`Rundown::try_acquire`], guard drop | `ExAcquireRundownProtection` / `ExReleaseRundownProtection` | <= DISPATCH |
//! | [`Rundown::run_down`], [`Rundown::run_down_with`] | `ExWaitForRundownProtectionRelease`, `ExRundownCompleted` | <= APC (takes an [`AtMostApc`] token: `&Passive` or `&Apc`) |
//! | drop of a [`Rundown`] | nothing (the reference needs no free) | any |
//! | [`Mutex::init`], [`Mutex::in_place`] | `ExInitializeFastMutex` (inline in wdm.h: `KeInitializeEvent`) | <= DISPATCH |
//! | [`Mutex::lock`], guard drop | `ExAcquireFastMutex` / `ExReleaseFastMutex` | <= APC (takes an [`AtMostApc`] token) |
//! | [`PassiveMutex::init`], [`PassiveMutex::in_place`] | `KeInitializeMutex` | <= DISPATCH |
//! | [`PassiveMutex::lock`], guard drop | `KeWaitForSingleObject` (no timeout) / `KeReleaseMutex` | PASSIVE (takes `&mut Passive`); the IRQL stays PASSIVE, normal kernel APCs are disabled while held |
//! | [`Semaphore::init`], [`Semaphore::in_place`] | `KeInitializeSemaphore` | any IRQL |
//! | [`Semaphore::acquire`] | `KeWaitForSingleObject` (relative timeout) | <= APC (takes an [`AtMostApc`] token) |
//! | [`Semaphore::try_acquire`] | `KeWaitForSingleObject` (zero timeout) | <= DISPATCH |
//! | permit drop | `KeReleaseSemaphore` | <= DISPATCH |
//! | [`Rundown::reinitialize`] | `ExReInitializeRundownProtection` | <= APC (takes `&Passive`) |
//!
//! Every function is imported from `ndis.sys` or `ntoskrnl.exe`, which
//! export them on x64 even where `ndis.h` turns them into macros.
//!
//! # Backends
//!
//! Built for `target_os = "windows"` the crate is `no_std` and calls the
//! real functions (through `ndis-sys`). Everywhere else it runs on `host`
//! (see [`host`]), a user-mode model that behaves like the primitives and
//! checks their rules the way Driver Verifier does; unit tests, doc tests,
//! loom models (`--cfg loom`) and Miri run against it.
//!
//! No poisoning: in a driver a panic is a bug check.
#![cfg_attr(target_os = "windows", no_std)]

#[cfg(not(target_os = "windows"))]
extern crate alloc;

mod atomic;
mod backend;
mod init;
mod irql;
mod lock;
mod mutex;
mod passive_mutex;
mod rundown;
mod rw_lock;
mod semaphore;
mod spin_lock;
mod wait;

#[cfg(not(target_os = "windows"))]
pub mod host;
#[cfg(target_os = "windows")]
mod kernel;

#[cfg(not(target_os = "windows"))]
pub use init::try_pin_box;
pub use init::{init_from_closure, InitClosure, PinInit};
pub use irql::{AtMostDispatch, CallbackIrql, Dispatch, MaybeDispatch, Passive};
pub use lock::{FastMutex, Guard, Lock, MutexBackend, MutexObject};
pub use mutex::{Apc, AtMostApc, Mutex, MutexGuard};
pub use ndis_sys::{APC_LEVEL, DISPATCH_LEVEL, KIRQL, PASSIVE_LEVEL};
pub use passive_mutex::{AtPassive, PassiveCritical, PassiveMutex, PassiveMutexGuard};
pub use rundown::{Rundown, RundownGuard};
pub use rw_lock::{AllocError, RwLock};
pub use semaphore::{Permit, Semaphore, TimedOut};
pub use spin_lock::{MappedSpinLockGuard, SpinLock, SpinLockGuard};

#[doc(hidden)]
pub mod __private {
    pub use crate::init::StackSlot;
}
