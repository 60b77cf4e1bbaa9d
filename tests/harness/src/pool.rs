//! Pool: the driver's allocations, tracked by tag, with Driver Verifier's
//! pool tracking, special pool and low-resources simulation.
//!
//! Binds `ExAllocatePool2`, `ExFreePoolWithTag`, `ExFreePool`,
//! `NdisAllocateMemoryWithTagPriority` and `NdisFreeMemory`. Every live
//! allocation is listed by [`outstanding`]; [`leak_check`] reports them at
//! unload (0xC4/0x62). With special pool each allocation sits at the end of
//! its own pages with an inaccessible guard page after it, and freed memory
//! is made inaccessible and never reused, so an overrun or a use after free
//! faults and is reported as 0xD6 or 0xD5. Low-resources simulation makes
//! chosen allocations fail ([`simulate_failure`] is shared with the rest of
//! the model, e.g. NdisAllocateRWLock).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::imports::Import;
use crate::irql;
use crate::stack::on_host;
use crate::verifier::{self, codes, LowResources, Violation};

const PAGE: usize = 4096;
/// `POOL_FLAG_UNINITIALIZED`: ExAllocatePool2 leaves the memory as is.
pub const POOL_FLAG_UNINITIALIZED: u64 = 0x2;
/// `POOL_FLAG_NON_PAGED`.
pub const POOL_FLAG_NON_PAGED: u64 = 0x40;
/// `POOL_FLAG_PAGED`.
pub const POOL_FLAG_PAGED: u64 = 0x100;
/// Byte uninitialised allocations are filled with.
const UNINIT_FILL: u8 = 0xBD;

/// One live allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Pool tag, as the four characters it is made of (little endian).
    pub tag: u32,
    /// Requested size in bytes.
    pub size: usize,
    /// Address handed to the driver.
    pub addr: usize,
    /// Special pool mapping `[lo, hi)` (guard page included), if any.
    special: Option<(usize, usize)>,
}

impl Allocation {
    /// The tag as text (`PwPw`).
    pub fn tag_str(&self) -> String {
        tag_str(self.tag)
    }
}

/// A tag as its four characters.
pub fn tag_str(tag: u32) -> String {
    tag.to_le_bytes().iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '.' }).collect()
}

#[derive(Default)]
struct Pool {
    live: HashMap<usize, Allocation>,
    freed: HashSet<usize>,
    /// Freed special-pool mappings, kept inaccessible: `(lo, hi, tag)`.
    freed_special: Vec<(usize, usize, u32)>,
    total: u64,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn pool() -> MutexGuard<'static, Option<Pool>> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Session reset: forgets every allocation (their memory is leaked on
/// purpose: a driver of the previous session may still point at it).
pub(crate) fn reset() {
    *pool() = Some(Pool::default());
    ALLOCATIONS.store(0, Ordering::SeqCst);
}

/// Every live allocation, ordered by address.
pub fn outstanding() -> Vec<Allocation> {
    let mut v: Vec<_> = pool().iter().flat_map(|p| p.live.values().cloned()).collect();
    v.sort_by_key(|a| a.addr);
    v
}

/// Number of allocations the driver made this session (successful or not).
pub fn allocation_count() -> u64 {
    ALLOCATIONS.load(Ordering::SeqCst)
}

/// Low-resources simulation: counts one allocation attempt and says whether
/// it must fail. Model functions that allocate on the driver's behalf call
/// it too.
pub fn simulate_failure() -> bool {
    let n = ALLOCATIONS.fetch_add(1, Ordering::SeqCst) + 1;
    match verifier::config().low_resources {
        LowResources::Off => false,
        LowResources::FailNth(k) => n == k,
        LowResources::Random { seed, per_mille } => {
            splitmix(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1000 < u64::from(per_mille)
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Allocates `size` bytes tagged `tag` for the driver (after the IRQL and
/// size checks of the caller), or returns null when low-resources
/// simulation fails it. `zeroed` as ExAllocatePool2 without
/// POOL_FLAG_UNINITIALIZED; otherwise the memory is filled with a pattern.
pub fn allocate(size: usize, tag: u32, zeroed: bool) -> *mut u8 {
    if simulate_failure() {
        return std::ptr::null_mut();
    }
    let special = verifier::config().special_pool;
    let (addr, mapping) = if special { map_special(size) } else { (heap_alloc(size), None) };
    // SAFETY: `addr` points to `size` writable bytes just allocated.
    unsafe { std::ptr::write_bytes(addr as *mut u8, if zeroed { 0 } else { UNINIT_FILL }, size) };
    let mut guard = pool();
    let p = guard.get_or_insert_with(Pool::default);
    p.freed.remove(&addr);
    p.total += 1;
    p.live.insert(addr, Allocation { tag, size, addr, special: mapping });
    addr as *mut u8
}

fn heap_alloc(size: usize) -> usize {
    let layout = std::alloc::Layout::from_size_align(size.max(1), 16).expect("pool layout");
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null(), "host out of memory");
    p as usize
}

/// Maps `size` bytes at the end of their own pages, a guard page after.
fn map_special(size: usize) -> (usize, Option<(usize, usize)>) {
    let body = size.max(1).next_multiple_of(PAGE);
    let total = body + PAGE;
    // SAFETY: anonymous private mapping; affects no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "special pool mmap failed");
    let lo = p as usize;
    // SAFETY: the guard page is inside the mapping just created.
    unsafe { libc::mprotect((lo + body) as *mut libc::c_void, PAGE, libc::PROT_NONE) };
    let addr = (lo + body - size.max(1)) & !15;
    (addr, Some((lo, lo + total)))
}

/// Frees a driver allocation: checks the IRQL, the address, the tag (when
/// `tag` is `Some`) and double frees.
pub fn free(addr: usize, tag: Option<u32>, function: &str) {
    let level = irql::current();
    if level > irql::DISPATCH {
        verifier::violation(Violation::c4(
            "pool freed above DISPATCH_LEVEL",
            codes::C4_FREE_ABOVE_DISPATCH,
            u64::from(level),
            0,
            addr as u64,
            format!("{function}({addr:#x}) at {}", irql::name(level)),
        ));
    }
    let taken = {
        let mut guard = pool();
        let p = guard.get_or_insert_with(Pool::default);
        match p.live.get(&addr) {
            Some(a) if tag.is_some_and(|t| t != a.tag) => Err((a.tag, true)),
            Some(_) => {
                let a = p.live.remove(&addr).expect("present");
                p.freed.insert(addr);
                if let Some((lo, hi)) = a.special {
                    p.freed_special.push((lo, hi, a.tag));
                }
                Ok(a)
            }
            None => Err((0, p.freed.contains(&addr))),
        }
    };
    let a = match taken {
        Ok(a) => a,
        Err((own, true)) if own != 0 => verifier::violation(Violation::new(
            "pool freed with the wrong tag",
            codes::BAD_POOL_CALLER,
            [codes::C2_WRONG_TAG, addr as u64, u64::from(own), u64::from(tag.unwrap_or(0))],
            format!("{function}({addr:#x}, '{}') but allocated with '{}'", tag_str(tag.unwrap_or(0)), tag_str(own)),
        )),
        Err((_, true)) => verifier::violation(Violation::c4(
            "pool freed twice",
            codes::C4_DOUBLE_FREE,
            0,
            addr as u64,
            0,
            format!("{function}({addr:#x}): already freed"),
        )),
        Err(_) => verifier::violation(Violation::c4(
            "free of an address not allocated",
            codes::C4_FREE_BAD_ADDRESS,
            addr as u64,
            0,
            0,
            format!("{function}({addr:#x}): not returned by an allocation"),
        )),
    };
    release_memory(&a);
}

fn release_memory(a: &Allocation) {
    match a.special {
        Some((lo, hi)) => {
            // SAFETY: the special-pool mapping of this allocation; it stays
            // mapped but inaccessible so later accesses fault.
            unsafe { libc::mprotect(lo as *mut libc::c_void, hi - lo, libc::PROT_NONE) };
        }
        None => {
            // SAFETY: poison the freed bytes, then return them to the heap
            // with the layout they were allocated with.
            unsafe {
                std::ptr::write_bytes(a.addr as *mut u8, 0xDF, a.size);
                let layout = std::alloc::Layout::from_size_align(a.size.max(1), 16).expect("pool layout");
                std::alloc::dealloc(a.addr as *mut u8, layout);
            }
        }
    }
}

/// Classifies a fault at `addr` against special pool: a freed allocation
/// (0xD5) or the guard page after a live one (0xD6).
pub(crate) fn classify_fault(addr: usize, write: bool, rip: usize) -> Option<Violation> {
    let guard = pool();
    let p = guard.as_ref()?;
    if let Some(&(_, _, tag)) = p.freed_special.iter().find(|(lo, hi, _)| addr >= *lo && addr < *hi) {
        return Some(Violation::new(
            "use after free (special pool)",
            codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL,
            [addr as u64, u64::from(write), rip as u64, 0],
            format!(
                "{} of freed '{}' pool at {addr:#x} (rip {rip:#x})",
                if write { "write" } else { "read" },
                tag_str(tag)
            ),
        ));
    }
    let overrun = p.live.values().find(|a| a.special.is_some_and(|(_, hi)| addr >= hi - PAGE && addr < hi))?;
    Some(Violation::new(
        "access beyond the end of an allocation (special pool)",
        codes::DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION,
        [addr as u64, u64::from(write), rip as u64, 0],
        format!("{addr:#x} past '{}' allocation {:#x}+{}", overrun.tag_str(), overrun.addr, overrun.size),
    ))
}

/// Leak check at unload: records 0xC4/0x62 listing every live allocation
/// and returns it, or `Ok` when nothing is outstanding.
pub fn leak_check(driver: &str) -> Result<(), Violation> {
    let live = outstanding();
    if live.is_empty() {
        return Ok(());
    }
    let list: Vec<String> =
        live.iter().map(|a| format!("'{}' {} bytes at {:#x}", a.tag_str(), a.size, a.addr)).collect();
    let mut v = Violation::c4(
        "pool leaked at unload",
        codes::C4_POOL_LEAK_AT_UNLOAD,
        0,
        0,
        live.len() as u64,
        format!("{} allocation(s) outstanding: {}", live.len(), list.join(", ")),
    );
    v.function = driver.to_owned();
    verifier::record(v.clone());
    Err(v)
}

fn check_alloc(function: &str, flags: u64, size: usize) {
    let level = irql::current();
    let paged = flags & POOL_FLAG_PAGED != 0;
    let (max, sub, rule) = if paged {
        (irql::APC, codes::C4_PAGED_ALLOC_ABOVE_APC, "paged pool allocated above APC_LEVEL")
    } else {
        (irql::DISPATCH, codes::C4_NONPAGED_ALLOC_ABOVE_DISPATCH, "nonpaged pool allocated above DISPATCH_LEVEL")
    };
    if level > max {
        verifier::violation(Violation::c4(
            rule,
            sub,
            u64::from(level),
            flags,
            size as u64,
            format!("{function}(size {size}) at {}", irql::name(level)),
        ));
    }
    if size == 0 {
        verifier::violation(Violation::c4(
            "zero-byte pool allocation",
            codes::C4_ZERO_BYTE_ALLOCATION,
            u64::from(level),
            flags,
            0,
            format!("{function}(size 0)"),
        ));
    }
}

/// `ExAllocatePool2(Flags, NumberOfBytes, Tag)`.
extern "win64" fn ex_allocate_pool2(flags: u64, size: usize, tag: u32) -> *mut u8 {
    on_host(|| {
        check_alloc("ExAllocatePool2", flags, size);
        allocate(size, tag, flags & POOL_FLAG_UNINITIALIZED == 0)
    })
}

/// `ExFreePoolWithTag(P, Tag)`.
extern "win64" fn ex_free_pool_with_tag(p: *mut u8, tag: u32) {
    on_host(|| free(p as usize, Some(tag), "ExFreePoolWithTag"))
}

/// `ExFreePool(P)`.
extern "win64" fn ex_free_pool(p: *mut u8) {
    on_host(|| free(p as usize, None, "ExFreePool"))
}

/// `NdisAllocateMemoryWithTagPriority(NdisHandle, Length, Tag, Priority)`:
/// nonpaged, not zeroed.
extern "win64" fn ndis_allocate_memory_with_tag_priority(
    _handle: usize,
    length: u32,
    tag: u32,
    _priority: u32,
) -> *mut u8 {
    on_host(|| {
        check_alloc("NdisAllocateMemoryWithTagPriority", POOL_FLAG_NON_PAGED, length as usize);
        allocate(length as usize, tag, false)
    })
}

/// `NdisFreeMemory(VirtualAddress, Length, MemoryFlags)`.
extern "win64" fn ndis_free_memory(p: *mut u8, _length: u32, _flags: u32) {
    on_host(|| free(p as usize, None, "NdisFreeMemory"))
}

/// The pool functions the model binds.
pub(crate) fn imports() -> Vec<Import> {
    vec![
        Import::ntoskrnl("ExAllocatePool2", ex_allocate_pool2 as *const () as usize),
        Import::ntoskrnl("ExFreePoolWithTag", ex_free_pool_with_tag as *const () as usize),
        Import::ntoskrnl("ExFreePool", ex_free_pool as *const () as usize),
        Import::ndis("NdisAllocateMemoryWithTagPriority", ndis_allocate_memory_with_tag_priority as *const () as usize),
        Import::ndis("NdisFreeMemory", ndis_free_memory as *const () as usize),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::call_driver;
    use crate::verifier::{Config, Session};

    const TAG: u32 = u32::from_le_bytes(*b"Test");

    #[test]
    fn tracks_and_frees() {
        let _s = Session::begin(Config::default());
        let p = ex_allocate_pool2(POOL_FLAG_NON_PAGED, 24, TAG);
        assert!(!p.is_null());
        // SAFETY: 24 zeroed bytes were just allocated.
        assert!(unsafe { std::slice::from_raw_parts(p, 24) }.iter().all(|&b| b == 0));
        assert_eq!(outstanding()[0].tag_str(), "Test");
        assert!(leak_check("t").is_err());
        ex_free_pool_with_tag(p, TAG);
        assert!(outstanding().is_empty());
    }

    #[test]
    fn fail_nth_fails_only_that_one() {
        let _s = Session::begin(Config { low_resources: LowResources::FailNth(2), ..Config::default() });
        let a = allocate(8, TAG, true);
        let b = allocate(8, TAG, true);
        let c = allocate(8, TAG, true);
        assert!(!a.is_null() && b.is_null() && !c.is_null());
    }

    #[test]
    fn random_failures_are_seeded() {
        let run = || {
            let _s = Session::begin(Config {
                low_resources: LowResources::Random { seed: 7, per_mille: 500 },
                ..Config::default()
            });
            (0..64).map(|_| simulate_failure()).collect::<Vec<_>>()
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        assert!(a.iter().any(|&f| f) && a.iter().any(|&f| !f));
    }

    #[test]
    fn wrong_tag_and_double_free_are_caught() {
        let _s = Session::begin(Config::default());
        let p = allocate(8, TAG, true) as usize;
        let e =
            call_driver("wrong tag", || free(p, Some(u32::from_le_bytes(*b"Oops")), "ExFreePoolWithTag")).unwrap_err();
        assert_eq!((e.bugcheck, e.params[0]), (codes::BAD_POOL_CALLER, codes::C2_WRONG_TAG));
        free(p, Some(TAG), "ExFreePoolWithTag");
        let e = call_driver("double", || free(p, None, "ExFreePool")).unwrap_err();
        assert_eq!(e.params[0], codes::C4_DOUBLE_FREE);
    }

    #[test]
    fn special_pool_catches_overrun_and_use_after_free() {
        let _s = Session::begin(Config { special_pool: true, ..Config::default() });
        let p = allocate(10, TAG, true) as usize;
        // SAFETY: deliberately writes past the end; the harness catches it.
        let e = call_driver("overrun", || unsafe { std::ptr::write_volatile((p + 16) as *mut u8, 1) }).unwrap_err();
        assert_eq!(e.bugcheck, codes::DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION);
        free(p, None, "ExFreePool");
        // SAFETY: deliberately reads freed memory; the harness catches it.
        let e = call_driver("uaf", || unsafe { std::ptr::read_volatile(p as *const u8) }).unwrap_err();
        assert_eq!(e.bugcheck, codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL);
    }
}
