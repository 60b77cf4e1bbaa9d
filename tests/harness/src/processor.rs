//! Processors: which simulated processor a harness thread runs on, and the
//! processor-number DDIs (`KeGetCurrentProcessorNumberEx`,
//! `KeQueryMaximumProcessorCountEx`, `KeQueryActiveProcessorCountEx`).
//!
//! The model has [`PROCESSORS`] processors in one group. Each thread that
//! asks is given a processor no other live thread holds (the lowest free
//! one; [`pin`] chooses it), so two threads never run driver code on one
//! processor at once, as on Windows a processor runs one thread at
//! DISPATCH_LEVEL. More live threads than processors share them (round
//! robin) and are then not exact; tests that count per processor stay at
//! or below [`PROCESSORS`] threads.
//!
//! The documented contract
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-kegetcurrentprocessornumberex>):
//! callable at any IRQL; the number is stable only while the caller runs at
//! DISPATCH_LEVEL or above (below it the thread may be moved to another
//! processor at any time). The model makes that visible: an unpinned thread
//! that asks below DISPATCH_LEVEL is moved to another processor right after
//! the call, so a driver that indexes per-processor data with a number it
//! got at PASSIVE_LEVEL shares a slot with another thread, and its counts
//! come out wrong.

use std::sync::{Mutex, PoisonError};

use crate::imports::Import;
use crate::irql;
use crate::static_tls::{seat, set_seat};

/// Processors the model has (one group).
pub const PROCESSORS: u32 = 16;

/// `ALL_PROCESSOR_GROUPS` (ntddk.h / wdm.h).
pub const ALL_PROCESSOR_GROUPS: u16 = 0xFFFF;

/// Which processors live threads hold.
static HELD: Mutex<[bool; PROCESSORS as usize]> = Mutex::new([false; PROCESSORS as usize]);

// The calling thread's seat (`static_tls::seat`, read without a System V
// call so that KeGetCurrentProcessorNumberEx answers without one): 0 while
// it has no processor, else its processor's number + 1, with [`PINNED`]
// set once it is pinned; [`SeatReturn`] gives the processor back when the
// thread ends.

/// The seat's flag: the thread is pinned to its processor.
const PINNED: u32 = 1 << 31;

/// The processor of seat word `seat`, if it has one.
#[inline(always)]
fn number_of(seat: u32) -> Option<u32> {
    (seat & !PINNED).checked_sub(1)
}

/// The seat word of processor `n`.
fn seat_of(n: u32, pinned: bool) -> u32 {
    (n + 1) | if pinned { PINNED } else { 0 }
}

/// Gives the thread's processor back when the thread ends; registered when
/// the thread first takes one.
struct SeatReturn;

impl Drop for SeatReturn {
    fn drop(&mut self) {
        let old = seat();
        set_seat(0);
        if let Some(n) = number_of(old) {
            release(n);
        }
    }
}

thread_local! {
    static SEAT_RETURN: SeatReturn = const { SeatReturn };
}

/// Makes sure the thread's processor is given back when it ends.
fn return_seat_at_exit() {
    SEAT_RETURN.with(|_| ());
}

fn held() -> std::sync::MutexGuard<'static, [bool; PROCESSORS as usize]> {
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

fn release(n: u32) {
    held()[n as usize] = false;
}

/// The lowest free processor after `after` (wrapping), taken; when all are
/// held, the next one round robin (shared).
fn take(after: Option<u32>) -> u32 {
    let mut held = held();
    let start = after.map_or(0, |a| a + 1);
    let free = (0..PROCESSORS).map(|i| (start + i) % PROCESSORS).find(|&n| !held[n as usize]);
    let n = free.unwrap_or(start % PROCESSORS);
    held[n as usize] = true;
    n
}

/// The calling thread's processor (given one on first use).
pub fn current() -> u32 {
    match number_of(seat()) {
        Some(n) => n,
        None => {
            return_seat_at_exit();
            let n = take(None);
            set_seat(seat_of(n, false));
            n
        }
    }
}

/// Runs the calling thread on processor `n` from now on (its affinity): it
/// is not moved below DISPATCH_LEVEL. Panics if `n` is out of range or held
/// by another live thread.
pub fn pin(n: u32) {
    assert!(n < PROCESSORS, "processor {n}: the model has {PROCESSORS}");
    let old = number_of(seat());
    if old != Some(n) {
        return_seat_at_exit();
        let mut held = held();
        assert!(!held[n as usize], "processor {n} is held by another thread");
        held[n as usize] = true;
        if let Some(old) = old {
            held[old as usize] = false;
        }
    }
    set_seat(seat_of(n, true));
}

/// Below DISPATCH_LEVEL an unpinned thread may be moved: the model moves
/// it to the next free processor.
fn maybe_migrate() {
    if irql::current() >= irql::DISPATCH || seat() & PINNED != 0 {
        return;
    }
    let old = number_of(seat());
    let new = take(old);
    set_seat(seat_of(new, false));
    if let Some(old) = old.filter(|&o| o != new) {
        release(old);
    }
}

/// `PROCESSOR_NUMBER` (ntdef.h): USHORT Group; UCHAR Number; UCHAR Reserved.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessorNumber {
    /// The group (always 0 here).
    pub group: u16,
    /// The processor within the group.
    pub number: u8,
    /// Reserved, 0.
    pub reserved: u8,
}

/// `KeGetCurrentProcessorNumberEx(ProcNumber)`: any IRQL; the
/// system-wide index; fills `ProcNumber` when it is not NULL.
///
/// The common call, from a thread that has its processor and may not be
/// moved (at DISPATCH_LEVEL or pinned), is answered here without calling
/// any System V function: such a call would make this function save the
/// ten registers (xmm6-15) Windows' convention keeps, on every call. Every
/// other call goes to [`processor_number_slow`], itself a Windows-convention
/// function, which saves them only when it runs.
extern "win64" fn ke_get_current_processor_number_ex(out: *mut ProcessorNumber) -> u32 {
    let seat = seat();
    let settled = number_of(seat).filter(|_| seat & PINNED != 0 || irql::current() >= irql::DISPATCH);
    match settled {
        Some(n) => {
            write_processor_number(out, n);
            n
        }
        _ => processor_number_slow(out),
    }
}

/// [`ke_get_current_processor_number_ex`] for a thread without a processor
/// yet or one that may be moved after the call.
#[cold]
#[inline(never)]
extern "win64" fn processor_number_slow(out: *mut ProcessorNumber) -> u32 {
    let n = current();
    write_processor_number(out, n);
    maybe_migrate();
    n
}

/// Fills the driver's PROCESSOR_NUMBER, when it passed one.
#[inline(always)]
fn write_processor_number(out: *mut ProcessorNumber, n: u32) {
    if !out.is_null() {
        // SAFETY: the driver passes NULL or a writable PROCESSOR_NUMBER.
        unsafe { out.write(ProcessorNumber { group: 0, number: n as u8, reserved: 0 }) };
    }
}

/// Processors in `group` (0 or ALL_PROCESSOR_GROUPS); 0 for a group that
/// does not exist, as Windows returns.
fn count_in(group: u16) -> u32 {
    if group == 0 || group == ALL_PROCESSOR_GROUPS {
        PROCESSORS
    } else {
        0
    }
}

/// `KeQueryMaximumProcessorCountEx(GroupNumber)`: any IRQL.
extern "win64" fn ke_query_maximum_processor_count_ex(group: u16) -> u32 {
    count_in(group)
}

/// `KeQueryActiveProcessorCountEx(GroupNumber)`: any IRQL; every modelled
/// processor is active.
extern "win64" fn ke_query_active_processor_count_ex(group: u16) -> u32 {
    count_in(group)
}

/// The processor DDIs.
pub fn imports() -> Vec<Import> {
    vec![
        Import::ntoskrnl("KeGetCurrentProcessorNumberEx", ke_get_current_processor_number_ex as *const () as usize),
        Import::ntoskrnl("KeQueryMaximumProcessorCountEx", ke_query_maximum_processor_count_ex as *const () as usize),
        Import::ntoskrnl("KeQueryActiveProcessorCountEx", ke_query_active_processor_count_ex as *const () as usize),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_threads_get_distinct_processors_and_pins_hold() {
        let barrier = std::sync::Barrier::new(4);
        let numbers: Vec<u32> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let n = current();
                        barrier.wait();
                        n
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 4, "{numbers:?}");
        std::thread::spawn(|| {
            pin(PROCESSORS - 1);
            assert_eq!(ke_get_current_processor_number_ex(std::ptr::null_mut()), PROCESSORS - 1);
            assert_eq!(ke_get_current_processor_number_ex(std::ptr::null_mut()), PROCESSORS - 1, "pinned: stays");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn unpinned_threads_move_below_dispatch_only() {
        std::thread::spawn(|| {
            let mut out = ProcessorNumber::default();
            let a = ke_get_current_processor_number_ex(&mut out);
            assert_eq!(u32::from(out.number), a);
            let b = ke_get_current_processor_number_ex(std::ptr::null_mut());
            assert_ne!(a, b, "moved after a call at PASSIVE_LEVEL");
            let old = irql::raise(irql::DISPATCH);
            let c = ke_get_current_processor_number_ex(std::ptr::null_mut());
            let d = ke_get_current_processor_number_ex(std::ptr::null_mut());
            irql::lower(old);
            assert_eq!(c, d, "stable at DISPATCH_LEVEL");
        })
        .join()
        .unwrap();
        assert_eq!(ke_query_maximum_processor_count_ex(ALL_PROCESSOR_GROUPS), PROCESSORS);
        assert_eq!(ke_query_active_processor_count_ex(7), 0);
    }

    #[test]
    fn a_processor_is_given_back_when_its_thread_ends() {
        // The second pin finds the processor free only if the first
        // thread's end gave it back.
        for _ in 0..2 {
            std::thread::spawn(|| pin(PROCESSORS - 2)).join().expect("the processor is free");
        }
    }
}
