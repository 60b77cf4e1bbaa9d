//! Atomics for the wrappers and the host model: loom's under `--cfg loom`
//! (so loom can explore every interleaving), core's otherwise.

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicUsize, Ordering};
