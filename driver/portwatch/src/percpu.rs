//! Per-processor data: one slot per processor, each written only by its own
//! processor at DISPATCH_LEVEL, summed by readers.
//!
//! The data path writes no memory that another processor writes (apart
//! from NDIS's own RW lock): its counters live in [`PerCpu`] blocks, and a packet updates the slot of the
//! processor it runs on with a plain load and store (no locked
//! instruction). That is exact because
//!
//! * a processor's slot is only written from that processor, and only at
//!   DISPATCH_LEVEL (the data path updates slots only inside the port
//!   table's read lock, which runs its closure at DISPATCH_LEVEL whatever
//!   IRQL the handler was called at, a send at PASSIVE_LEVEL included), so
//!   nothing on the same processor can interrupt a read-modify-write of the
//!   slot with another one;
//! * the processor number is taken at DISPATCH_LEVEL, where the thread
//!   cannot move to another processor, and a [`Cpu`] cannot outlive the
//!   [`Dispatch`] token it was made with;
//! * readers (the statistics IOCTLs, the pause) load each slot with an
//!   atomic (relaxed) load: aligned 8-byte loads never tear on x64.
//!
//! Pool blocks are only 16-byte aligned (the allocator refuses larger
//! alignments), so instead of aligning each slot to a cache line, each
//! value is followed by a full line of padding: two slots' values are then
//! never on one 64-byte line, wherever the block starts.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::marker::PhantomData;

use ndis_sync::Dispatch;

use crate::pool::NoMemory;

/// Bytes of a cache line.
const CACHE_LINE: usize = 64;

/// The current processor's index, valid while the [`Dispatch`] token it
/// was made from is borrowed (the thread cannot move until then).
#[derive(Debug, Clone, Copy)]
pub struct Cpu<'a> {
    index: usize,
    _at_dispatch: PhantomData<&'a Dispatch>,
}

impl<'a> Cpu<'a> {
    /// The processor this code runs on (`KeGetCurrentProcessorNumberEx`, a
    /// system-wide index below `KeQueryMaximumProcessorCountEx`).
    pub fn current(_irql: &'a Dispatch) -> Self {
        Cpu { index: current_index(), _at_dispatch: PhantomData }
    }

    /// A given index (host tests: several processors from one thread).
    #[cfg(test)]
    pub fn for_test(index: usize) -> Cpu<'static> {
        Cpu { index, _at_dispatch: PhantomData }
    }
}

#[cfg(target_os = "windows")]
fn current_index() -> usize {
    // SAFETY: callable at any IRQL; NULL asks for the index only.
    (unsafe { ndis_sys::KeGetCurrentProcessorNumberEx(core::ptr::null_mut()) }) as usize
}

/// The number of slots a [`PerCpu`] needs: every processor the system can
/// ever have (hot-added ones included), so that every index
/// `KeGetCurrentProcessorNumberEx` returns has its slot.
#[cfg(target_os = "windows")]
pub fn processor_count() -> usize {
    // SAFETY: callable at any IRQL.
    let n = unsafe { ndis_sys::KeQueryMaximumProcessorCountEx(ndis_sys::ALL_PROCESSOR_GROUPS) };
    (n as usize).max(1)
}

/// Host tests: a few processors; each thread is one of them.
#[cfg(not(target_os = "windows"))]
pub fn processor_count() -> usize {
    4
}

#[cfg(not(target_os = "windows"))]
fn current_index() -> usize {
    use core::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local!(static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % processor_count());
    INDEX.with(|i| *i)
}

/// A value followed by a cache line of padding (see the module docs).
#[repr(C)]
struct Padded<T> {
    value: T,
    _gap: [u8; CACHE_LINE],
}

/// A processor index past a [`PerCpu`] block (see [`PerCpu::get`]).
#[derive(Debug)]
pub struct NoSlot;

impl NoSlot {
    /// Bug-checks (through the panic handler). Out of line and cold, and
    /// typed as returning `R`, so that the data path's call-free counting
    /// loop reaches it through a tail jump and needs no stack frame for it.
    #[cold]
    #[inline(never)]
    pub fn bug_check<R>(self) -> R {
        panic!("processor index past its per-processor block")
    }
}

/// One `T` per processor.
pub struct PerCpu<T> {
    slots: Box<[Padded<T>]>,
}

impl<T: Default> PerCpu<T> {
    /// A block with one default slot per processor ([`processor_count`]).
    /// PASSIVE_LEVEL or DISPATCH_LEVEL: non-paged pool.
    pub fn try_new() -> Result<Self, NoMemory> {
        Self::try_with_slots(processor_count())
    }

    /// A block of `n` slots.
    pub fn try_with_slots(n: usize) -> Result<Self, NoMemory> {
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| NoMemory)?;
        v.resize_with(n, || Padded { value: T::default(), _gap: [0; CACHE_LINE] });
        Ok(PerCpu { slots: v.into_boxed_slice() })
    }
}

impl<T> PerCpu<T> {
    /// The slot of `cpu`. The block has a slot for every processor the
    /// system can have, so the index is always in range (the DDI's
    /// contract); an index past it would be a broken system, and the caller
    /// bug-checks ([`NoSlot::bug_check`]) rather than let two processors
    /// share a slot.
    pub fn get(&self, cpu: Cpu<'_>) -> Result<&T, NoSlot> {
        self.slots.get(cpu.index).map(|slot| &slot.value).ok_or(NoSlot)
    }

    /// Every slot, for summing.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|s| &s.value)
    }
}

/// Adds `v` to a counter only this processor writes, at DISPATCH_LEVEL: a
/// plain load and store (no locked instruction; see the module docs for
/// why no update is lost). Readers on other processors see either value.
pub fn add_local(counter: &core::sync::atomic::AtomicU64, v: u64) {
    use core::sync::atomic::Ordering::Relaxed;
    counter.store(counter.load(Relaxed).wrapping_add(v), Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn the_padding_is_a_full_line() {
        // Values of size s at stride >= s + 63 never share a 64-byte line,
        // whatever the block's alignment.
        assert!(core::mem::size_of::<Padded<[AtomicU64; 4]>>() >= 32 + CACHE_LINE - 1);
        assert!(core::mem::size_of::<Padded<AtomicU64>>() >= 8 + CACHE_LINE - 1);
    }

    #[test]
    fn slots_never_share_a_cache_line() {
        let block = PerCpu::<[AtomicU64; 4]>::try_with_slots(8).unwrap();
        let addrs: Vec<usize> = block.iter().map(|s| s as *const _ as usize).collect();
        for w in addrs.windows(2) {
            let (end_of_first, start_of_next) = (w[0] + 32 - 1, w[1]);
            assert!(end_of_first / CACHE_LINE < start_of_next / CACHE_LINE, "{:#x} {:#x}", w[0], w[1]);
        }
    }

    #[test]
    fn each_processor_counts_into_its_own_slot() {
        let block = PerCpu::<AtomicU64>::try_with_slots(4).unwrap();
        add_local(block.get(Cpu::for_test(1)).unwrap(), 5);
        add_local(block.get(Cpu::for_test(3)).unwrap(), 2);
        add_local(block.get(Cpu::for_test(3)).unwrap(), 2);
        assert!(block.get(Cpu::for_test(4)).is_err(), "no slot past the block");
        let v: Vec<u64> = block.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(v, [0, 5, 0, 4]);
    }
}
