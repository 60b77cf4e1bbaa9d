//! Safe RAII guards over NDIS spin locks, NDIS read/write locks and
//! executive rundown protection, with IRQL tokens that turn the classic
//! NDIS locking bugs into compile errors.
//!
//! * [`SpinLock<T>`] over `NDIS_SPIN_LOCK`,
//! * [`RwLock<T>`] over `NDIS_RW_LOCK_EX`,
//! * [`Rundown<T>`] over `EX_RUNDOWN_REF`,
//! * [`Mutex<T>`] over an executive `FAST_MUTEX` (blocking holders, lends an
//!   [`Apc`] token), [`Semaphore`] over `KSEMAPHORE` (bounded holders,
//!   [`Permit`]s, waits with a timeout),
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
//! let (a_lock, b_lock) = (SpinLock::new(1), SpinLock::new(2));
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
//! let (a_lock, b_lock) = (SpinLock::new(1), SpinLock::new(2));
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
//! # What the types cannot see
//!
//! The guarantees above hold for code that lets guards drop. Leaking a
//! guard (`core::mem::forget`, a reference cycle) is safe Rust: it ends the
//! borrow of the caller's token while the lock stays held and the IRQL
//! stays at DISPATCH_LEVEL, after which the token compiles into calls it
//! must not make. That is a hang or a bug check, not memory unsafety; don't
//! leak guards. Two deadlocks are also left to run time (the host model and
//! Driver Verifier report them): running down a [`Rundown`] while this
//! thread holds one of its guards, and taking an [`RwLock`] for writing
//! inside one of its own read closures. Likewise taking a [`Mutex`] again
//! with its own guard's [`Apc`] token (a fast mutex is not recursive:
//! `MutexRecursion` in the host model, 0xC4/0x1000 in the harness).
//!
//! # Mutex and semaphore: waiting primitives
//!
//! [`Mutex`] and [`Semaphore`] wait instead of spinning, so they need an
//! [`AtMostApc`] token ([`Passive`], or the [`Apc`] token a held mutex
//! lends): neither can be waited on inside a spin lock or an RW lock, which
//! lend only [`Dispatch`]. Both are pinned and initialised in place
//! (`init(self: Pin<&mut Self>)`); using one before `init` panics. A held
//! mutex runs its holder at `APC_LEVEL`: functions that need
//! `PASSIVE_LEVEL` (most `Zw*` calls) cannot be called under it, because
//! the caller's [`Passive`] token is borrowed by the guard.
//!
//! ```
//! use core::time::Duration;
//! use ndis_sync::{Mutex, Passive, Semaphore, SpinLock};
//!
//! let mut config = Box::pin(Mutex::new(0u32));
//! config.as_mut().init();
//! let mut replies = Box::pin(Semaphore::new(2));
//! replies.as_mut().init();
//! let counters = SpinLock::new(0u32);
//! // SAFETY: a test thread runs at PASSIVE_LEVEL.
//! let mut passive = unsafe { Passive::new_unchecked() };
//! if let Ok(_permit) = replies.acquire(&passive, Duration::from_millis(50)) {
//!     let mut guard = config.lock(&mut passive);
//!     let (value, apc) = guard.split();
//!     *value += 1;
//!     *counters.lock(apc) += 1;
//! }
//! assert_eq!(counters.into_inner(), 1);
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
//! let endpoint = SpinLock::new(Counters::default());
//! // NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL was clear.
//! // SAFETY: the flag comes from NDIS; a test thread runs at PASSIVE_LEVEL.
//! let mut irql = unsafe { CallbackIrql::from_dispatch_flag(false) };
//! count(&endpoint, &mut irql, 60);
//! count(&endpoint, &mut irql, 40);
//! let counters = endpoint.into_inner();
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
//! let module = Rundown::new(String::from("filter module"));
//! // An IOCTL enumerating modules:
//! if let Some(m) = module.try_acquire() {
//!     assert_eq!(m.len(), 13);
//! } // protection released here
//! // FilterDetach (PASSIVE_LEVEL): wait for every user, then free.
//! // SAFETY: a test thread runs at PASSIVE_LEVEL.
//! let passive = unsafe { Passive::new_unchecked() };
//! let taken = module.run_down(&passive);
//! assert!(taken.is_some());
//! assert!(module.try_acquire().is_none());
//! ```
//!
//! # Functions and IRQL
//!
//! | Method | NDIS / executive function | Callable at |
//! |---|---|---|
//! | [`SpinLock::new`] | `NdisAllocateSpinLock` | any IRQL |
//! | drop, [`SpinLock::into_inner`] | `NdisFreeSpinLock` | any IRQL |
//! | [`SpinLock::lock`] (`Passive`/`MaybeDispatch`) | `NdisAcquireSpinLock` / `NdisReleaseSpinLock` | <= DISPATCH |
//! | [`SpinLock::lock`] (`Dispatch`), [`SpinLock::lock_at_dispatch`] | `NdisDprAcquireSpinLock` / `NdisDprReleaseSpinLock` | DISPATCH |
//! | [`SpinLock::try_lock_at_dispatch`] | `KeTryToAcquireSpinLockAtDpcLevel` / `KeReleaseSpinLockFromDpcLevel` | DISPATCH |
//! | [`RwLock::new`], [`RwLock::with_handle`] | `NdisAllocateRWLock` | <= DISPATCH |
//! | drop, [`RwLock::into_inner`] | `NdisFreeRWLock` | <= DISPATCH |
//! | [`RwLock::read`], [`RwLock::write`] | `NdisAcquireRWLockRead` / `NdisAcquireRWLockWrite` / `NdisReleaseRWLock` (flags 0, or `NDIS_RWL_AT_DISPATCH_LEVEL` with a `Dispatch` token) | <= DISPATCH |
//! | [`RwLock::read_at_dispatch`], [`RwLock::write_at_dispatch`] | the same with `NDIS_RWL_AT_DISPATCH_LEVEL` | DISPATCH |
//! | [`Rundown::new`] | `ExInitializeRundownProtection` | <= APC |
//! | [`Rundown::try_acquire`], guard drop | `ExAcquireRundownProtection` / `ExReleaseRundownProtection` | <= DISPATCH |
//! | [`Rundown::run_down`] | `ExWaitForRundownProtectionRelease`, `ExRundownCompleted` | <= APC (takes `&Passive`) |
//! | [`Mutex::init`] | `ExInitializeFastMutex` (inline in wdm.h: `KeInitializeEvent`) | <= DISPATCH |
//! | [`Mutex::lock`], guard drop | `ExAcquireFastMutex` / `ExReleaseFastMutex` | <= APC (takes an [`AtMostApc`] token) |
//! | [`Semaphore::init`] | `KeInitializeSemaphore` | any IRQL |
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

mod atomic;
mod backend;
mod irql;
mod mutex;
mod rundown;
mod rw_lock;
mod semaphore;
mod spin_lock;
mod wait;

#[cfg(not(target_os = "windows"))]
pub mod host;
#[cfg(target_os = "windows")]
mod kernel;

pub use irql::{AtMostDispatch, CallbackIrql, Dispatch, MaybeDispatch, Passive};
pub use mutex::{Apc, AtMostApc, Mutex, MutexGuard};
pub use ndis_sys::{APC_LEVEL, DISPATCH_LEVEL, KIRQL, PASSIVE_LEVEL};
pub use rundown::{Rundown, RundownGuard};
pub use rw_lock::{AllocError, RwLock};
pub use semaphore::{Permit, Semaphore, TimedOut};
pub use spin_lock::{MappedSpinLockGuard, SpinLock, SpinLockGuard};
