//! In-place initialisation, the shape of Rust-for-Linux's `PinInit`.
//!
//! `NdisAllocateSpinLock` and `ExInitializeRundownProtection` identify a
//! lock by the address they were called on: the lock must be initialised
//! where it will live, used there, and freed there. So [`SpinLock::new`]
//! and [`Rundown::new`] do not return a lock; they return a [`PinInit`], an
//! initialiser that writes the lock into its final, pinned storage:
//!
//! * on the heap: [`try_pin_box`] (fallible, as pool allocations are);
//! * on the stack: [`stack_pin_init!`](crate::stack_pin_init);
//! * inside a larger structure: that structure's own initialiser, written
//!   with [`init_from_closure`], initialises each field in place.
//!
//! Once there, the lock is `!Unpin` and only reachable through `Pin`, so
//! safe code cannot move it, and it is dropped (freed) at the same address.
//!
//! [`SpinLock::new`]: crate::SpinLock::new
//! [`Rundown::new`]: crate::Rundown::new

use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::pin::Pin;

/// An initialiser that writes a `T` into storage that will never move.
///
/// Every `T` is an initialiser of itself (it is moved into place); the
/// locks' constructors return initialisers that run the NDIS or executive
/// initialisation at the final address.
///
/// # Safety
///
/// Implementations must fully initialise `*slot` when
/// [`__pinned_init`](Self::__pinned_init) returns.
pub unsafe trait PinInit<T>: Sized {
    /// Initialises `*slot` in place.
    ///
    /// # Safety
    ///
    /// `slot` is valid for writes and aligned, and the `T` written there is
    /// pinned: it is neither moved nor reused until it has been dropped in
    /// place.
    unsafe fn __pinned_init(self, slot: *mut T);
}

// SAFETY: writing the value initialises the slot.
unsafe impl<T> PinInit<T> for T {
    unsafe fn __pinned_init(self, slot: *mut T) {
        // SAFETY: the caller guarantees `slot` is valid for writes and aligned.
        unsafe { slot.write(self) }
    }
}

/// An initialiser made from a closure ([`init_from_closure`]).
pub struct InitClosure<F, T>(F, PhantomData<fn(*mut T)>);

// SAFETY: `init_from_closure`'s contract: the closure initialises the slot.
unsafe impl<T, F: FnOnce(*mut T)> PinInit<T> for InitClosure<F, T> {
    unsafe fn __pinned_init(self, slot: *mut T) {
        (self.0)(slot)
    }
}

/// Makes an initialiser from a closure that initialises a `T` in place,
/// typically field by field (`&raw mut (*slot).field`), handing each
/// pinned field's initialiser its final address.
///
/// # Safety
///
/// When `f` returns, every field of `*slot` must be initialised; `f` may
/// rely on the slot being pinned (see [`PinInit::__pinned_init`]).
///
/// ```
/// use ndis_sync::{init_from_closure, try_pin_box, PinInit, SpinLock};
///
/// struct Endpoint {
///     id: u64,
///     counters: SpinLock<u64>,
/// }
///
/// fn endpoint(id: u64) -> impl PinInit<Endpoint> {
///     // SAFETY: both fields are initialised, the lock in place.
///     unsafe {
///         init_from_closure(move |slot: *mut Endpoint| {
///             (&raw mut (*slot).id).write(id);
///             SpinLock::new(0).__pinned_init(&raw mut (*slot).counters);
///         })
///     }
/// }
///
/// let endpoint = try_pin_box(endpoint(7)).expect("allocated");
/// assert_eq!(endpoint.id, 7);
/// ```
pub unsafe fn init_from_closure<T, F: FnOnce(*mut T)>(f: F) -> InitClosure<F, T> {
    InitClosure(f, PhantomData)
}

/// An initialiser that writes `new()` into the slot and runs `init` on it
/// there: the `new` + `init(self: Pin<&mut Self>)` pair of the waiting
/// primitives as one [`PinInit`] (their `in_place`).
pub(crate) fn new_then_init<T>(new: impl FnOnce() -> T, init: fn(Pin<&mut T>)) -> impl PinInit<T> {
    let f = move |slot: *mut T| {
        // SAFETY: `slot` is valid for writes and pinned (the initialiser's
        // contract): the value is written there and initialised at that
        // address, which it keeps.
        unsafe {
            slot.write(new());
            init(Pin::new_unchecked(&mut *slot));
        }
    };
    // SAFETY: the closure writes a whole `T`.
    unsafe { init_from_closure(f) }
}

/// Allocates storage for a `T` and initialises it there; `None` when the
/// allocation fails. Host builds only: the kernel build has no allocator of
/// its own (a driver writes the same few lines against its pool, as
/// PortWatch's `pool::try_pin_box` does).
///
/// ```
/// use ndis_sync::{try_pin_box, SpinLock};
/// let lock = try_pin_box(SpinLock::new(5)).expect("allocated");
/// // SAFETY: a test thread runs at PASSIVE_LEVEL.
/// let mut passive = unsafe { ndis_sync::Passive::new_unchecked() };
/// assert_eq!(*lock.lock(&mut passive), 5);
/// ```
#[cfg(not(target_os = "windows"))]
pub fn try_pin_box<T>(init: impl PinInit<T>) -> Option<Pin<alloc::boxed::Box<T>>> {
    use alloc::alloc::{alloc, Layout};
    use alloc::boxed::Box;
    let layout = Layout::new::<T>();
    let slot: *mut T = if layout.size() == 0 {
        core::ptr::NonNull::dangling().as_ptr()
    } else {
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc(layout) }.cast::<T>();
        if ptr.is_null() {
            return None;
        }
        ptr
    };
    // SAFETY: `slot` is a fresh allocation of `Layout::new::<T>()` (or a
    // dangling, aligned pointer for a zero-sized `T`), valid for writes; the
    // box below owns it from here on and never moves its contents.
    unsafe {
        init.__pinned_init(slot);
        Some(Pin::new_unchecked(Box::from_raw(slot)))
    }
}

/// Stack storage for [`stack_pin_init!`](crate::stack_pin_init): drops what
/// it holds in place.
#[doc(hidden)]
pub struct StackSlot<T> {
    value: MaybeUninit<T>,
    initialised: bool,
}

impl<T> StackSlot<T> {
    /// Empty storage.
    #[doc(hidden)]
    pub fn uninit() -> Self {
        Self { value: MaybeUninit::uninit(), initialised: false }
    }

    /// Initialises the storage in place.
    ///
    /// # Safety
    ///
    /// The slot is never moved again (the macro shadows its name).
    #[doc(hidden)]
    pub unsafe fn init(&mut self, init: impl PinInit<T>) -> Pin<&mut T> {
        // SAFETY: the storage is valid for writes; the caller guarantees it
        // stays put, and `Drop` drops the value in place.
        unsafe {
            init.__pinned_init(self.value.as_mut_ptr());
            self.initialised = true;
            Pin::new_unchecked(self.value.assume_init_mut())
        }
    }
}

impl<T> Drop for StackSlot<T> {
    fn drop(&mut self) {
        if self.initialised {
            // SAFETY: initialised by `init`, dropped once, in place.
            unsafe { self.value.assume_init_drop() }
        }
    }
}

/// Initialises a value in place on the stack and binds `Pin<&mut T>` to it.
///
/// ```
/// use ndis_sync::{stack_pin_init, SpinLock};
/// stack_pin_init!(let lock = SpinLock::new(1));
/// // SAFETY: a test thread runs at PASSIVE_LEVEL.
/// let mut passive = unsafe { ndis_sync::Passive::new_unchecked() };
/// *lock.lock(&mut passive) += 1;
/// assert_eq!(*lock.lock(&mut passive), 2);
/// ```
#[macro_export]
macro_rules! stack_pin_init {
    (let $name:ident = $init:expr) => {
        let mut $name = $crate::__private::StackSlot::uninit();
        // `$init` is evaluated outside the `unsafe` block (its temporaries
        // live to the end of the `match`).
        #[allow(unused_mut)]
        let mut $name = match $init {
            // SAFETY: the slot's name is shadowed right here, so it cannot
            // be moved again.
            init => unsafe { $name.init(init) },
        };
    };
}
