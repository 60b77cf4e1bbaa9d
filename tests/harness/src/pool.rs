//! Pool: the driver's allocations, tracked by tag, with Driver Verifier's
//! pool tracking, special pool and low-resources simulation.
//!
//! Binds `ExAllocatePool2`, `ExFreePoolWithTag`, `ExFreePool`,
//! `NdisAllocateMemoryWithTagPriority` and `NdisFreeMemory`. Every live
//! allocation is listed by [`outstanding`]; [`leak_check`] reports them at
//! unload (0xC4/0x62). With special pool each allocation sits on its own
//! pages, as Driver Verifier places it ([V:special-pool]): "verify end"
//! (the default) puts it at the end of its page(s) with an inaccessible
//! guard page after it, "verify start" ([`Config::special_pool_underruns`])
//! at the start with the guard page before it. The rest of its pages (the
//! alignment slack after it, the head before it) is filled with a pattern
//! checked at free, so a write there is 0xC1 at the free, as on Windows.
//! Freed memory is made inaccessible and kept in a bounded quarantine (the
//! oldest mappings are unmapped when it is full), so an overrun or a use
//! after free faults and is reported as 0xD6 or 0xD5, and a long run stays
//! in flat memory. A free also tells the lock model, which checks and
//! forgets the locks inside the freed memory. Low-resources simulation makes
//! chosen allocations fail ([`simulate_failure`] is shared with the rest of
//! the model, e.g. NdisAllocateRWLock).
//!
//! # Paged pool
//! `ExAllocatePool2(POOL_FLAG_PAGED)` and the paged `POOL_TYPE`s of
//! `ExAllocatePoolWithTag` / `ExAllocatePool` (the odd values: PagedPool,
//! PagedPoolCacheAligned, PagedPoolSession, ...) allocate from a region of
//! its own, reserved once per process ([`PAGED_REGION_BYTES`]), each
//! allocation at the end of its pages with an inaccessible guard page after
//! it. The model is Driver Verifier's Force IRQL checking ([V:force-irql-
//! checking], R46, R52): whenever a thread raises its IRQL to
//! DISPATCH_LEVEL or above, all pageable memory is trimmed (the whole
//! region made `PROT_NONE`, one `mprotect`), and a page is paged in again
//! on demand, by the fault handler, when a thread below DISPATCH_LEVEL
//! touches it. A touch at DISPATCH_LEVEL or above faults and is reported as
//! 0xD1 DRIVER_IRQL_NOT_LESS_OR_EQUAL ([0xD1]: a driver referenced pageable
//! memory at DISPATCH_LEVEL or above; 0xA is the same fault in Windows'
//! own code). Freeing paged pool above APC_LEVEL is 0xC4/0x11.
//!
//! What it catches and what it cannot: protection is per process, not per
//! thread, so it is exactly Windows' behaviour under Force IRQL checking,
//! with the same blind spot. A thread's raise trims everything, so its
//! first touch of paged memory at DISPATCH_LEVEL faults unless another
//! thread, below DISPATCH_LEVEL, paged that very page in between the raise
//! and the touch (a miss, never a false report: a fault below
//! DISPATCH_LEVEL only pages in). A touch that is not preceded by a raise
//! in the same process (a callback NDIS enters at DISPATCH_LEVEL counts:
//! entering it sets the IRQL, which trims) cannot be missed that way.
//! Also caught: an overrun into the guard page (0xD6) and a touch of a
//! freed paged allocation whose pages were not reused (0xD5).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::imports::Import;
use crate::irql;
use crate::stack::on_host;
use crate::verifier::{self, codes, Config, LowResources, Violation};

const PAGE: usize = 4096;
/// Freed special-pool mappings kept inaccessible (each one or two VMAs of
/// the process's `vm.max_map_count`, 65,530 by default): a use after free
/// of any of the last this many frees faults.
pub const QUARANTINE_MAPPINGS: usize = 4096;
/// Freed addresses remembered for the double-free check.
const FREED_REMEMBERED: usize = 65_536;
/// Pattern in the unused part of a special-pool allocation's pages.
const SLACK_FILL: u8 = 0xA5;
/// x64 pool alignment.
const POOL_ALIGN: usize = 16;
/// `POOL_FLAG_UNINITIALIZED`: ExAllocatePool2 leaves the memory as is.
pub const POOL_FLAG_UNINITIALIZED: u64 = 0x2;
/// `POOL_FLAG_NON_PAGED`.
pub const POOL_FLAG_NON_PAGED: u64 = 0x40;
/// `POOL_FLAG_PAGED`.
pub const POOL_FLAG_PAGED: u64 = 0x100;
/// 0xC4/0x11: paged pool freed above APC_LEVEL. `[C4]`
pub const C4_PAGED_FREE_ABOVE_APC: u64 = 0x11;
/// Size of the paged-pool region (reserved once, never grown): 64 MiB. An
/// allocation that does not fit returns NULL, as pool exhaustion does.
pub const PAGED_REGION_BYTES: usize = 64 << 20;
const PAGED_PAGES: usize = PAGED_REGION_BYTES / PAGE;
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
    /// Its special-pool pages, if any.
    special: Option<Special>,
    /// Its paged-pool pages `(first page index, pages)` in the paged
    /// region, the guard page included, if it is paged.
    paged: Option<(usize, usize)>,
}

/// A special-pool mapping: `[lo, hi)`, the guard page `[guard, guard +
/// PAGE)` at one end, the allocation on the rest, the pattern around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Special {
    lo: usize,
    hi: usize,
    guard: usize,
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
    freed: FreedLog,
    /// Freed special-pool mappings, kept inaccessible, oldest first:
    /// `(lo, hi, tag)`; at most [`QUARANTINE_MAPPINGS`].
    quarantine: VecDeque<(usize, usize, u32)>,
    total: u64,
    /// Free page runs of the paged region: first page -> pages.
    paged_free: BTreeMap<usize, usize>,
}

/// The last [`FREED_REMEMBERED`] freed addresses (double-free check).
#[derive(Default)]
struct FreedLog {
    set: HashSet<usize>,
    order: VecDeque<usize>,
}

impl FreedLog {
    fn insert(&mut self, addr: usize) {
        if self.set.insert(addr) {
            self.order.push_back(addr);
        }
        while self.order.len() > FREED_REMEMBERED {
            let old = self.order.pop_front().expect("non-empty");
            self.set.remove(&old);
        }
    }

    fn remove(&mut self, addr: usize) {
        // The order entry stays; it is dropped (or re-added) in turn.
        self.set.remove(&addr);
    }

    fn contains(&self, addr: usize) -> bool {
        self.set.contains(&addr)
    }
}

impl Pool {
    fn quarantine(&mut self, special: Special, tag: u32) {
        self.quarantine.push_back((special.lo, special.hi, tag));
        while self.quarantine.len() > QUARANTINE_MAPPINGS {
            let (lo, hi, _) = self.quarantine.pop_front().expect("non-empty");
            unmap(lo, hi);
        }
    }
}

impl Drop for Pool {
    /// Gives back every mapping and heap block (session end: the driver
    /// of the session is unloaded or abandoned, nothing refers to them).
    fn drop(&mut self) {
        for (lo, hi, _) in self.quarantine.drain(..) {
            unmap(lo, hi);
        }
        for a in self.live.values() {
            match (a.special, a.paged) {
                (Some(sp), _) => unmap(sp.lo, sp.hi),
                // The whole paged region is given back by `reset`.
                (None, Some(_)) => {}
                (None, None) => heap_free(a.addr, a.size),
            }
        }
    }
}

fn unmap(lo: usize, hi: usize) {
    // SAFETY: a special-pool mapping this pool created and no longer lists.
    unsafe { libc::munmap(lo as *mut libc::c_void, hi - lo) };
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn pool() -> MutexGuard<'static, Option<Pool>> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Session reset: gives back every allocation and quarantined mapping of
/// the previous session (its driver is gone) and starts empty.
pub(crate) fn reset() {
    let old = pool().replace(Pool::default());
    drop(old);
    paged_reset();
    ALLOCATIONS.store(0, Ordering::SeqCst);
}

/// Special-pool mappings this session holds (live and quarantined): what a
/// long run must keep bounded.
pub fn special_mappings() -> usize {
    pool().as_ref().map_or(0, |p| p.quarantine.len() + p.live.values().filter(|a| a.special.is_some()).count())
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
    let config = verifier::config();
    let (addr, mapping) = if config.special_pool { map_special(size, &config) } else { (heap_alloc(size), None) };
    // SAFETY: `addr` points to `size` writable bytes just allocated.
    unsafe { std::ptr::write_bytes(addr as *mut u8, if zeroed { 0 } else { UNINIT_FILL }, size) };
    let mut guard = pool();
    let p = guard.get_or_insert_with(Pool::default);
    p.freed.remove(addr);
    p.total += 1;
    p.live.insert(addr, Allocation { tag, size, addr, special: mapping, paged: None });
    addr as *mut u8
}

// ---------------------------------------------------------------------------
// Paged pool.

/// Base of the paged region (0 until first used).
static PAGED_BASE: AtomicUsize = AtomicUsize::new(0);
/// One bit per page of the region: a data page of a live paged allocation,
/// which a fault below DISPATCH_LEVEL may page in.
static PAGED_LIVE: [AtomicU64; PAGED_PAGES / 64] = [const { AtomicU64::new(0) }; PAGED_PAGES / 64];
/// Whether some page of the region may be accessible (not trimmed).
static PAGED_RESIDENT: AtomicBool = AtomicBool::new(false);

fn paged_base() -> usize {
    let base = PAGED_BASE.load(Ordering::Acquire);
    if base != 0 {
        return base;
    }
    // SAFETY: an anonymous, inaccessible reservation; affects no existing
    // memory. Pages are committed only when touched.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGED_REGION_BYTES,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "paged pool reservation failed: {}", std::io::Error::last_os_error());
    match PAGED_BASE.compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => p as usize,
        Err(other) => {
            // SAFETY: our own reservation, lost the race; nobody uses it.
            unsafe { libc::munmap(p, PAGED_REGION_BYTES) };
            other
        }
    }
}

fn set_live(first: usize, pages: usize, live: bool) {
    for page in first..first + pages {
        let (word, bit) = (page / 64, 1u64 << (page % 64));
        if live {
            PAGED_LIVE[word].fetch_or(bit, Ordering::AcqRel);
        } else {
            PAGED_LIVE[word].fetch_and(!bit, Ordering::AcqRel);
        }
    }
}

fn is_live(page: usize) -> bool {
    PAGED_LIVE[page / 64].load(Ordering::Acquire) & (1u64 << (page % 64)) != 0
}

/// The page index of `addr` in the paged region, if it lies there.
fn paged_page(addr: usize) -> Option<usize> {
    let base = PAGED_BASE.load(Ordering::Acquire);
    (base != 0 && addr >= base && addr < base + PAGED_REGION_BYTES).then(|| (addr - base) / PAGE)
}

/// Session reset: every paged allocation is gone; the region is trimmed and
/// its pages given back (the reservation stays: no growth across sessions).
fn paged_reset() {
    let base = PAGED_BASE.load(Ordering::Acquire);
    for w in &PAGED_LIVE {
        w.store(0, Ordering::Release);
    }
    if base != 0 {
        // SAFETY: the paged region this module reserved; nothing of the
        // previous session may use it any more.
        unsafe {
            libc::mprotect(base as *mut libc::c_void, PAGED_REGION_BYTES, libc::PROT_NONE);
            libc::madvise(base as *mut libc::c_void, PAGED_REGION_BYTES, libc::MADV_DONTNEED);
        }
    }
    PAGED_RESIDENT.store(false, Ordering::Release);
}

/// Force IRQL checking's trim: called when a thread raises its IRQL to
/// DISPATCH_LEVEL or above; makes every paged page inaccessible.
pub(crate) fn trim_paged() {
    if PAGED_RESIDENT.load(Ordering::Acquire) && PAGED_RESIDENT.swap(false, Ordering::AcqRel) {
        let base = PAGED_BASE.load(Ordering::Acquire);
        // SAFETY: the paged region this module reserved.
        unsafe { libc::mprotect(base as *mut libc::c_void, PAGED_REGION_BYTES, libc::PROT_NONE) };
    }
}

/// The fault handler's page-in: a fault at `addr` on a data page of a live
/// paged allocation, by a thread below DISPATCH_LEVEL, makes the page
/// accessible and returns true (the instruction is retried). Async-signal
/// safe: atomics, a thread-local `Cell` read and one `mprotect`.
pub(crate) fn page_in(addr: usize) -> bool {
    let Some(page) = paged_page(addr) else { return false };
    if !is_live(page) || irql::current() >= irql::DISPATCH {
        return false;
    }
    PAGED_RESIDENT.store(true, Ordering::Release);
    let at = PAGED_BASE.load(Ordering::Acquire) + page * PAGE;
    // SAFETY: a data page of a live allocation in the paged region.
    unsafe { libc::mprotect(at as *mut libc::c_void, PAGE, libc::PROT_READ | libc::PROT_WRITE) == 0 }
}

/// Allocates `size` bytes of paged pool at the end of their pages, a guard
/// page after them; null on simulated failure or when the region is full.
pub fn allocate_paged(size: usize, tag: u32, zeroed: bool) -> *mut u8 {
    if simulate_failure() {
        return std::ptr::null_mut();
    }
    let base = paged_base();
    let data_pages = size.max(1).div_ceil(PAGE);
    let pages = data_pages + 1;
    let mut guard = pool();
    let p = guard.get_or_insert_with(Pool::default);
    if p.paged_free.is_empty() && p.live.values().all(|a| a.paged.is_none()) {
        p.paged_free.insert(0, PAGED_PAGES);
    }
    let Some((&first, &len)) = p.paged_free.iter().find(|&(_, &len)| len >= pages) else {
        return std::ptr::null_mut();
    };
    p.paged_free.remove(&first);
    if len > pages {
        p.paged_free.insert(first + pages, len - pages);
    }
    let lo = base + first * PAGE;
    let addr = (lo + data_pages * PAGE - size.max(1)) & !(POOL_ALIGN - 1);
    set_live(first, data_pages, true);
    PAGED_RESIDENT.store(true, Ordering::Release);
    // SAFETY: the data pages just taken from the region's free runs.
    unsafe {
        libc::mprotect(lo as *mut libc::c_void, data_pages * PAGE, libc::PROT_READ | libc::PROT_WRITE);
        std::ptr::write_bytes(addr as *mut u8, if zeroed { 0 } else { UNINIT_FILL }, size);
    }
    p.freed.remove(addr);
    p.total += 1;
    p.live.insert(addr, Allocation { tag, size, addr, special: None, paged: Some((first, pages)) });
    addr as *mut u8
}

/// Gives the pages of a freed paged allocation back: inaccessible, their
/// memory released, the run free again (merged with its neighbours).
fn release_paged(first: usize, pages: usize) {
    set_live(first, pages, false);
    let lo = PAGED_BASE.load(Ordering::Acquire) + first * PAGE;
    // SAFETY: the allocation's pages in the paged region; nobody may use
    // them after the free.
    unsafe {
        libc::mprotect(lo as *mut libc::c_void, pages * PAGE, libc::PROT_NONE);
        libc::madvise(lo as *mut libc::c_void, pages * PAGE, libc::MADV_DONTNEED);
    }
    let mut guard = pool();
    let p = guard.get_or_insert_with(Pool::default);
    let (mut start, mut len) = (first, pages);
    if let Some((&prev, &plen)) = p.paged_free.range(..start).next_back() {
        if prev + plen == start {
            p.paged_free.remove(&prev);
            (start, len) = (prev, len + plen);
        }
    }
    if let Some(next) = p.paged_free.remove(&(start + len)) {
        len += next;
    }
    p.paged_free.insert(start, len);
}

/// Classifies a fault in the paged region: a live data page touched at
/// DISPATCH_LEVEL or above (0xD1), a guard page (0xD6), freed pages (0xD5).
fn classify_paged(p: &Pool, addr: usize, page: usize, write: bool, rip: usize) -> Violation {
    let access = if write { "write" } else { "read" };
    let owner = p.live.values().find(|a| a.paged.is_some_and(|(first, pages)| page >= first && page < first + pages));
    match owner {
        Some(a) if is_live(page) => {
            let level = irql::current();
            Violation::new(
                "pageable memory touched at DISPATCH_LEVEL",
                codes::DRIVER_IRQL_NOT_LESS_OR_EQUAL,
                [addr as u64, u64::from(level), u64::from(write), rip as u64],
                format!(
                    "{access} of {addr:#x} in '{}' paged pool ({:#x}+{}) at {} (rip {rip:#x}): Force IRQL checking \
                     trimmed it at the raise (R46)",
                    a.tag_str(),
                    a.addr,
                    a.size,
                    irql::name(level)
                ),
            )
        }
        Some(a) => Violation::new(
            "access beyond the end of an allocation (paged pool)",
            codes::DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION,
            [addr as u64, u64::from(write), rip as u64, 0],
            format!(
                "{access} of {addr:#x} past '{}' paged allocation {:#x}+{} (rip {rip:#x})",
                a.tag_str(),
                a.addr,
                a.size
            ),
        ),
        None => Violation::new(
            "use after free (paged pool)",
            codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL,
            [addr as u64, u64::from(write), rip as u64, 0],
            format!("{access} of {addr:#x}, freed paged pool (rip {rip:#x})"),
        ),
    }
}

fn heap_alloc(size: usize) -> usize {
    let layout = std::alloc::Layout::from_size_align(size.max(1), 16).expect("pool layout");
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null(), "host out of memory");
    p as usize
}

fn heap_free(addr: usize, size: usize) {
    let layout = std::alloc::Layout::from_size_align(size.max(1), 16).expect("pool layout");
    // SAFETY: allocated by `heap_alloc` with this layout, freed once.
    unsafe { std::alloc::dealloc(addr as *mut u8, layout) };
}

/// Maps `size` bytes on their own pages with a guard page after them
/// (verify end, aligned to 16 bytes as pool is, so up to 15 bytes of slack
/// follow) or before them (verify start), the rest filled with
/// [`SLACK_FILL`].
fn map_special(size: usize, config: &Config) -> (usize, Option<Special>) {
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
    assert!(p != libc::MAP_FAILED, "special pool mmap failed: {}", std::io::Error::last_os_error());
    let lo = p as usize;
    let (guard, addr) = if config.special_pool_underruns {
        (lo, lo + PAGE)
    } else {
        (lo + body, (lo + body - size.max(1)) & !(POOL_ALIGN - 1))
    };
    // SAFETY: the guard page is inside the mapping just created.
    let rc = unsafe { libc::mprotect(guard as *mut libc::c_void, PAGE, libc::PROT_NONE) };
    assert_eq!(rc, 0, "special pool guard page: {}", std::io::Error::last_os_error());
    let special = Special { lo, hi: lo + total, guard };
    let (data_lo, data_hi) = special.data_pages();
    // SAFETY: [data_lo, data_hi) is the mapping's read/write part.
    unsafe { std::ptr::write_bytes(data_lo as *mut u8, SLACK_FILL, data_hi - data_lo) };
    (addr, Some(special))
}

impl Special {
    /// The read/write pages: the mapping less its guard page.
    fn data_pages(&self) -> (usize, usize) {
        if self.guard == self.lo {
            (self.lo + PAGE, self.hi)
        } else {
            (self.lo, self.guard)
        }
    }
}

/// Checks the pattern around a special-pool allocation at its free:
/// 0xC1/0x23 for a byte written before it, 0xC1/0x24 after it
/// ([0xC1]: "bytes within the same page have been corrupted", "bytes
/// occurring after the end of the allocation have been overwritten").
fn check_slack(a: &Allocation, special: Special, function: &str) -> Option<Violation> {
    let (data_lo, data_hi) = special.data_pages();
    let end = a.addr + a.size.max(1);
    // SAFETY: both ranges lie in the allocation's read/write pages.
    let corrupted = |lo: usize, hi: usize| unsafe {
        std::slice::from_raw_parts(lo as *const u8, hi - lo).iter().position(|&b| b != SLACK_FILL).map(|i| lo + i)
    };
    let (at, subclass, place) = if let Some(at) = corrupted(end, data_hi) {
        (at, codes::C1_AFTER_END, "after its end")
    } else {
        (corrupted(data_lo, a.addr)?, codes::C1_SAME_PAGE, "before its start")
    };
    Some(Violation::new(
        "special pool corrupted around an allocation",
        codes::SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION,
        [a.addr as u64, at as u64, 0, subclass],
        format!(
            "{function}({:#x}): '{}' allocation of {} bytes, byte {at:#x} {place} was written ({} byte(s) {place})",
            a.addr,
            a.tag_str(),
            a.size,
            if at >= end { at - end + 1 } else { a.addr - at }
        ),
    ))
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
                Ok(a)
            }
            None => Err((0, p.freed.contains(addr))),
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
    check_paged_free(&a, level, function);
    let slack = a.special.and_then(|sp| check_slack(&a, sp, function));
    // What the lock model finds inside goes first: it names the cause.
    crate::locks::on_pool_free(a.addr, a.addr + a.size.max(1), function);
    release_memory(&a);
    if let Some(v) = slack {
        verifier::violation(v);
    }
}

/// Paged pool may be freed at APC_LEVEL at most (0xC4/0x11). A function of
/// its own: `free` may run on a driver's stack, whose frames must stay small.
#[inline(never)]
fn check_paged_free(a: &Allocation, level: u8, function: &str) {
    if a.paged.is_some() && level > irql::APC {
        verifier::violation(Violation::c4(
            "paged pool freed above APC_LEVEL",
            C4_PAGED_FREE_ABOVE_APC,
            u64::from(level),
            POOL_FLAG_PAGED,
            a.addr as u64,
            format!("{function}({:#x}) of '{}' paged pool at {}", a.addr, a.tag_str(), irql::name(level)),
        ));
    }
}

fn release_memory(a: &Allocation) {
    if let Some((first, pages)) = a.paged {
        release_paged(first, pages);
        return;
    }
    match a.special {
        Some(sp) => {
            // SAFETY: the special-pool mapping of this allocation; it stays
            // mapped but inaccessible (and its pages are given back) so
            // later accesses fault until the quarantine unmaps it.
            unsafe {
                libc::madvise(sp.lo as *mut libc::c_void, sp.hi - sp.lo, libc::MADV_DONTNEED);
                libc::mprotect(sp.lo as *mut libc::c_void, sp.hi - sp.lo, libc::PROT_NONE);
            }
            pool().get_or_insert_with(Pool::default).quarantine(sp, a.tag);
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
    if let Some(page) = paged_page(addr) {
        return Some(classify_paged(p, addr, page, write, rip));
    }
    if let Some(&(_, _, tag)) = p.quarantine.iter().find(|(lo, hi, _)| addr >= *lo && addr < *hi) {
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
    let a = p.live.values().find(|a| a.special.is_some_and(|sp| addr >= sp.guard && addr < sp.guard + PAGE))?;
    let (rule, place) = if addr < a.addr {
        ("access before the start of an allocation (special pool)", "before")
    } else {
        ("access beyond the end of an allocation (special pool)", "past")
    };
    Some(Violation::new(
        rule,
        codes::DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION,
        [addr as u64, u64::from(write), rip as u64, 0],
        format!(
            "{} of {addr:#x} {place} '{}' allocation {:#x}+{} (rip {rip:#x})",
            if write { "write" } else { "read" },
            a.tag_str(),
            a.addr,
            a.size
        ),
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
        let zeroed = flags & POOL_FLAG_UNINITIALIZED == 0;
        if flags & POOL_FLAG_PAGED != 0 {
            allocate_paged(size, tag, zeroed)
        } else {
            allocate(size, tag, zeroed)
        }
    })
}

/// Whether a `POOL_TYPE` is paged: PagedPool (1), PagedPoolCacheAligned
/// (5), PagedPoolSession (33), ... are the odd values (wdm.h).
fn pool_type_is_paged(pool_type: u32) -> bool {
    pool_type & 1 != 0
}

/// `ExAllocatePoolWithTag(PoolType, NumberOfBytes, Tag)` (deprecated, not
/// zeroed).
extern "win64" fn ex_allocate_pool_with_tag(pool_type: u32, size: usize, tag: u32) -> *mut u8 {
    on_host(|| {
        let paged = pool_type_is_paged(pool_type);
        let flags = if paged { POOL_FLAG_PAGED } else { POOL_FLAG_NON_PAGED };
        check_alloc("ExAllocatePoolWithTag", flags, size);
        if paged {
            allocate_paged(size, tag, false)
        } else {
            allocate(size, tag, false)
        }
    })
}

/// `ExAllocatePool(PoolType, NumberOfBytes)` (deprecated): tag `None`.
extern "win64" fn ex_allocate_pool(pool_type: u32, size: usize) -> *mut u8 {
    ex_allocate_pool_with_tag(pool_type, size, u32::from_le_bytes(*b"None"))
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
        Import::ntoskrnl("ExAllocatePoolWithTag", ex_allocate_pool_with_tag as *const () as usize),
        Import::ntoskrnl("ExAllocatePool", ex_allocate_pool as *const () as usize),
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
        {
            let _s = Session::begin(Config::default());
            let p = allocate(8, TAG, true) as usize;
            let e = call_driver("wrong tag", || free(p, Some(u32::from_le_bytes(*b"Oops")), "ExFreePoolWithTag"))
                .unwrap_err();
            assert_eq!((e.bugcheck, e.params[0]), (codes::BAD_POOL_CALLER, codes::C2_WRONG_TAG));
        }
        let _s = Session::begin(Config::default());
        let p = allocate(8, TAG, true) as usize;
        free(p, Some(TAG), "ExFreePoolWithTag");
        let e = call_driver("double", || free(p, None, "ExFreePool")).unwrap_err();
        assert_eq!(e.params[0], codes::C4_DOUBLE_FREE);
    }

    fn special(underruns: bool) -> Session {
        Session::begin(Config { special_pool: true, special_pool_underruns: underruns, ..Config::default() })
    }

    /// Runs `f` as a driver call that must end in a violation.
    fn violation_of(f: impl FnOnce()) -> Violation {
        call_driver("driver", f).expect_err("no violation")
    }

    fn write(addr: usize) {
        // SAFETY: deliberately writes wherever the test says; the harness
        // catches the faulting cases.
        unsafe { std::ptr::write_volatile(addr as *mut u8, 1) }
    }

    #[test]
    fn special_pool_catches_overrun_and_use_after_free() {
        {
            let _s = special(false);
            let p = allocate(10, TAG, true) as usize;
            let e = violation_of(|| write(p + 16));
            assert_eq!(e.bugcheck, codes::DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION);
        }
        let _s = special(false);
        let p = allocate(10, TAG, true) as usize;
        free(p, None, "ExFreePool");
        // SAFETY: deliberately reads freed memory; the harness catches it.
        let e = violation_of(|| unsafe {
            std::hint::black_box(std::ptr::read_volatile(p as *const u8));
        });
        assert_eq!(e.bugcheck, codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL);
    }

    #[test]
    fn overrun_into_the_alignment_slack_is_caught_at_free() {
        let _s = special(false);
        // 10 bytes, 16-byte aligned at the end of the page: 6 bytes of slack
        // before the guard page, which no fault can see.
        let p = allocate(10, TAG, true) as usize;
        write(p + 15);
        let e = violation_of(|| free(p, Some(TAG), "ExFreePoolWithTag"));
        assert_eq!(
            (e.rule, e.bugcheck, e.params[0], e.params[1], e.params[3]),
            (
                "special pool corrupted around an allocation",
                codes::SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION,
                p as u64,
                (p + 15) as u64,
                codes::C1_AFTER_END
            ),
            "{e}"
        );
    }

    #[test]
    fn one_byte_underrun_is_caught_at_free_or_by_the_guard_page() {
        {
            // Verify end: the byte before lies in the page's head.
            let _s = special(false);
            let p = allocate(24, TAG, true) as usize;
            write(p - 1);
            let e = violation_of(|| free(p, Some(TAG), "ExFreePoolWithTag"));
            assert_eq!((e.bugcheck, e.params[1], e.params[3]), (0xC1, (p - 1) as u64, codes::C1_SAME_PAGE), "{e}");
        }
        {
            // Verify start: the byte before is the guard page.
            let _s = special(true);
            let p = allocate(24, TAG, true) as usize;
            assert_eq!(p % PAGE, 0, "at the start of its page");
            let e = violation_of(|| write(p - 1));
            assert_eq!(
                (e.rule, e.bugcheck),
                (
                    "access before the start of an allocation (special pool)",
                    codes::DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION
                ),
                "{e}"
            );
        }
        // And its tail is checked at free like the slack.
        let _s = special(true);
        let q = allocate(24, TAG, true) as usize;
        write(q + 24);
        let e = violation_of(|| free(q, Some(TAG), "ExFreePoolWithTag"));
        assert_eq!(e.params[3], codes::C1_AFTER_END, "{e}");
    }

    #[test]
    fn a_clean_free_passes_the_pattern_check() {
        for underruns in [false, true] {
            let _s = special(underruns);
            for size in [1, 10, 16, 4095, 4096, 5000] {
                let p = allocate(size, TAG, false) as usize;
                // SAFETY: the allocation's own bytes.
                unsafe { std::ptr::write_bytes(p as *mut u8, 0x11, size) };
                assert!(call_driver("free", || free(p, Some(TAG), "ExFreePoolWithTag")).is_ok());
            }
        }
    }

    #[test]
    fn quarantine_is_bounded_and_reset_gives_everything_back() {
        let maps = || std::fs::read_to_string("/proc/self/maps").expect("maps").lines().count();
        let _s = special(false);
        for _ in 0..QUARANTINE_MAPPINGS * 3 {
            let p = allocate(64, TAG, true) as usize;
            free(p, Some(TAG), "ExFreePoolWithTag");
        }
        assert_eq!(special_mappings(), QUARANTINE_MAPPINGS);
        // The newest freed allocation still faults.
        let p = allocate(64, TAG, true) as usize;
        free(p, Some(TAG), "ExFreePoolWithTag");
        assert_eq!(violation_of(|| write(p)).bugcheck, codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL);
        drop(_s);
        let before = maps();
        let _s = special(false);
        assert_eq!(special_mappings(), 0);
        assert!(maps() + QUARANTINE_MAPPINGS / 2 < before, "reset unmapped the quarantine: {} -> {}", before, maps());
    }

    /// `NdisAcquireSpinLock` / `NdisReleaseSpinLock` as the driver binds them.
    fn ndis_lock() -> (extern "win64" fn(*mut u8), extern "win64" fn(*mut u8), Box<[u64; 2]>) {
        let find = |name: &str| {
            let addr = crate::imports::registry().iter().find(|i| i.name == name).expect("modelled").addr;
            // SAFETY: the model's NdisAcquireSpinLock/NdisReleaseSpinLock(PNDIS_SPIN_LOCK).
            unsafe { std::mem::transmute::<usize, extern "win64" fn(*mut u8)>(addr) }
        };
        let mut lock = Box::new([0u64; 2]);
        // A lock is identified by where NdisAllocateSpinLock was called on
        // it: initialise it in its box, where the tests use it.
        find("NdisAllocateSpinLock")(lock.as_mut_ptr().cast::<u8>());
        (find("NdisAcquireSpinLock"), find("NdisReleaseSpinLock"), lock)
    }

    fn read(addr: usize) -> u8 {
        // SAFETY: deliberately reads wherever the test says; the harness
        // catches the faulting cases.
        unsafe { std::ptr::read_volatile(addr as *const u8) }
    }

    #[test]
    fn paged_pool_touched_under_a_spin_lock_is_caught() {
        let _s = Session::begin(Config::default());
        let p = ex_allocate_pool2(POOL_FLAG_PAGED, 100, TAG) as usize;
        assert_ne!(p, 0);
        let (acquire, release, mut lock) = ndis_lock();
        let lock = lock.as_mut_ptr().cast::<u8>();
        let e = violation_of(|| {
            acquire(lock);
            write(p + 10);
            release(lock);
        });
        assert_eq!(
            (e.rule, e.bugcheck, e.params[0], e.params[1], e.params[2]),
            (
                "pageable memory touched at DISPATCH_LEVEL",
                codes::DRIVER_IRQL_NOT_LESS_OR_EQUAL,
                (p + 10) as u64,
                u64::from(irql::DISPATCH),
                1
            ),
            "{e}"
        );
    }

    #[test]
    fn paged_pool_at_passive_is_clean_before_and_after_a_raise() {
        let _s = Session::begin(Config::default());
        let p = ex_allocate_pool2(POOL_FLAG_PAGED, 5000, TAG) as usize;
        let (acquire, release, mut lock) = ndis_lock();
        let lock = lock.as_mut_ptr().cast::<u8>();
        let r = call_driver("driver", || {
            write(p);
            write(p + 4999);
            // Trimmed at the raise; nonpaged work under the lock is fine.
            acquire(lock);
            release(lock);
            // Paged in again at PASSIVE_LEVEL, contents kept.
            (read(p), read(p + 4999), read(p + 1))
        });
        assert_eq!(r, Ok((1, 1, 0)));
        // The host (the harness itself) reads it too, and frees it.
        assert_eq!(read(p + 4999), 1);
        assert!(call_driver("free", || ex_free_pool_with_tag(p as *mut u8, TAG)).is_ok());
        assert!(verifier::violations().is_empty());
    }

    #[test]
    fn paged_pool_is_per_thread_irql_exact() {
        let _s = Session::begin(Config::default());
        let p = ex_allocate_pool2(POOL_FLAG_PAGED, 64, TAG) as usize;
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            // Another thread raising and lowering all the time trims the
            // region; this thread at PASSIVE_LEVEL keeps paging it in.
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let old = irql::raise(irql::DISPATCH);
                    irql::lower(old);
                }
            });
            let r = call_driver("passive reader", || {
                for i in 0..20_000u32 {
                    write(p + (i % 64) as usize);
                }
            });
            stop.store(true, Ordering::Relaxed);
            assert!(r.is_ok(), "{r:?}");
        });
    }

    #[test]
    fn paged_pool_free_overrun_and_use_after_free_are_caught() {
        {
            let _s = Session::begin(Config::default());
            let p = ex_allocate_pool2(POOL_FLAG_PAGED, 10, TAG) as usize;
            let e = violation_of(|| {
                let old = irql::raise(irql::DISPATCH);
                ex_free_pool_with_tag(p as *mut u8, TAG);
                irql::lower(old);
            });
            assert_eq!((e.rule, e.params[0]), ("paged pool freed above APC_LEVEL", C4_PAGED_FREE_ABOVE_APC), "{e}");
        }
        {
            let _s = Session::begin(Config::default());
            let p = ex_allocate_pool2(POOL_FLAG_PAGED, 10, TAG) as usize;
            let e = violation_of(|| write(p + 16));
            assert_eq!(e.bugcheck, codes::DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION, "{e}");
        }
        let _s = Session::begin(Config::default());
        let p = ex_allocate_pool2(POOL_FLAG_PAGED, 10, TAG) as usize;
        ex_free_pool_with_tag(p as *mut u8, TAG);
        let e = violation_of(|| {
            read(p);
        });
        assert_eq!(
            (e.rule, e.bugcheck),
            ("use after free (paged pool)", codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL)
        );
    }

    #[test]
    fn old_paged_pool_types_are_paged() {
        for (ty, paged) in [(0u32, false), (1, true), (5, true), (33, true), (512, false)] {
            let _s = Session::begin(Config::default());
            let p = ex_allocate_pool_with_tag(ty, 32, TAG) as usize;
            let r = call_driver("touch at DISPATCH", || {
                let old = irql::raise(irql::DISPATCH);
                write(p);
                irql::lower(old);
            });
            assert_eq!(r.is_err(), paged, "pool type {ty}: {r:?}");
        }
    }

    #[test]
    fn paged_pool_is_bounded_across_sessions() {
        let maps = || std::fs::read_to_string("/proc/self/maps").expect("maps").lines().count();
        let mut first = None;
        for round in 0..50 {
            let _s = Session::begin(Config::default());
            // Fill the region (64 KiB each: 16 pages + a guard page), free
            // half, fill again: runs are reused and merged.
            let mut v: Vec<usize> =
                (0..200).map(|_| ex_allocate_pool2(POOL_FLAG_PAGED, 64 << 10, TAG) as usize).collect();
            assert!(v.iter().all(|&p| p != 0));
            for p in v.drain(..100) {
                ex_free_pool_with_tag(p as *mut u8, TAG);
            }
            v.extend((0..100).map(|_| ex_allocate_pool2(POOL_FLAG_PAGED, 64 << 10, TAG) as usize));
            assert!(v.iter().all(|&p| p != 0));
            // Left allocated: the session reset gives it all back.
            if round == 0 {
                first = Some(maps());
            }
        }
        let _s = Session::begin(Config::default());
        assert!(maps() <= first.unwrap() + 8, "mappings grew: {} -> {}", first.unwrap(), maps());
        // The whole region is free again.
        let big = ex_allocate_pool2(POOL_FLAG_PAGED, PAGED_REGION_BYTES - PAGE, TAG) as usize;
        assert_ne!(big, 0);
    }
}
