//! Fallible heap allocation.
//!
//! The driver's global allocator is non-paged pool, and pool allocations fail
//! under memory pressure (and under Driver Verifier's low-resources
//! simulation). `Box::new` would turn that into a bug check, so every
//! allocation in the driver goes through a fallible API: `Vec::try_reserve*`
//! or [`try_box`].

use alloc::alloc::{alloc, Layout};
use alloc::boxed::Box;

/// Pool allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoMemory;

/// Moves `value` into a new heap allocation, or gives it back with an error.
pub fn try_box<T>(value: T) -> Result<Box<T>, (NoMemory, T)> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        return Ok(Box::new(value));
    }
    // SAFETY: `layout` has a non-zero size, as `alloc` requires.
    let ptr = unsafe { alloc(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err((NoMemory, value));
    }
    // SAFETY: `ptr` is a fresh, non-null allocation of `Layout::new::<T>()`
    // from the global allocator: valid for a write of `T`, and exactly what
    // `Box::from_raw` expects to own and later free.
    unsafe {
        ptr.write(value);
        Ok(Box::from_raw(ptr))
    }
}

/// Allocates storage for a `T` and initialises it there with `init` (a
/// lock is initialised at the address it will be used and freed at); `None`
/// when the allocation fails. The box frees it in place.
pub fn try_pin_box<T>(init: impl ndis_sync::PinInit<T>) -> Option<core::pin::Pin<Box<T>>> {
    let layout = Layout::new::<T>();
    let slot: *mut T = if layout.size() == 0 {
        core::ptr::NonNull::dangling().as_ptr()
    } else {
        // SAFETY: `layout` has a non-zero size, as `alloc` requires.
        let ptr = unsafe { alloc(layout) }.cast::<T>();
        if ptr.is_null() {
            return None;
        }
        ptr
    };
    // SAFETY: `slot` is a fresh allocation of `Layout::new::<T>()` from the
    // global allocator (or dangling and aligned for a zero-sized `T`): valid
    // for writes and never moved, since the pinned box owns it from here on
    // and frees it in place.
    unsafe {
        init.__pinned_init(slot);
        Some(core::pin::Pin::new_unchecked(Box::from_raw(slot)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_values_and_zsts() {
        let b = try_box([7u64; 32]).unwrap_or_else(|_| panic!("allocation failed"));
        assert_eq!(b[31], 7);
        let z = try_box(()).unwrap_or_else(|_| panic!("zst"));
        assert_eq!(*z, ());
    }
}
