//! Memory the model lends the driver and takes back: IRPs at completion,
//! NET_BUFFER_LISTs when they are back with their creator.
//!
//! Once a driver calls IoCompleteRequest the IRP belongs to the I/O manager
//! again: it runs the completion, copies the results back and frees the
//! IRP, so the driver must never touch it afterwards (R41: "never touch IRP
//! after", from "How to complete an IRP in a dispatch routine"). Under
//! Driver Verifier's I/O verification IRPs come from special pool ("I/O
//! Verification", level 1), so a touch after the free faults with 0xD5
//! (DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL). In Windows the free may come
//! a little later than the IoCompleteRequest call (a completion APC, or
//! after the dispatch routine returns), so such a bug can hide; the
//! harness's choice is the strict one: each IRP lives in a page of its own
//! that is made inaccessible inside IofCompleteRequest, and any later
//! access by the driver faults and is reported by name
//! ([`classify_fault`]).
//!
//! The same holds for a NET_BUFFER_LIST: once it is back with its creator
//! (a send completed up to the protocol that sent it, a receive returned
//! down to the miniport that indicated it) the creator may free or reuse
//! it at once, and a filter that still reads it (say, counts a send after
//! NdisFSendNetBufferLists, which gives the chain away: R11, "no access
//! (even Next)") reads freed memory. The model puts each NBL in a page of
//! its own and retires it when it is back with its creator.
//!
//! Retired pages stay inaccessible in a bounded quarantine
//! ([`QUARANTINE`] pages); then a one-page mapping is made accessible
//! again and kept for the next object (zeroed where that object lies) (at most [`SPARE`] of them:
//! no mapping made or unmapped per packet), larger ones are unmapped.

use std::borrow::Cow;
use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::verifier::{codes, Violation};

const PAGE: usize = 4096;
/// Completed IRPs' pages kept inaccessible before they are unmapped.
pub const QUARANTINE: usize = 256;
/// One-page mappings out of quarantine kept for reuse.
pub const SPARE: usize = 64;

#[derive(Default)]
struct Pages {
    /// Every lent object not yet unmapped, by its first page's address:
    /// retired (completed) or not, and what it held (hashed: looked up
    /// several times per packet).
    pages: FxHashMap<usize, Page>,
    /// The first page of an object, by each of its further pages.
    tails: FxHashMap<usize, usize>,
    /// Retired pages whose owner has let go of them, oldest first.
    quarantine: VecDeque<usize>,
    /// One-page mappings out of quarantine, read/write.
    spare: Vec<usize>,
}

impl Pages {
    fn add(&mut self, base: usize, page: Page) {
        for p in (base + PAGE..base + page.len).step_by(PAGE) {
            self.tails.insert(p, base);
        }
        self.pages.insert(base, page);
    }

    fn forget(&mut self, base: usize) -> Option<Page> {
        let page = self.pages.remove(&base)?;
        for p in (base + PAGE..base + page.len).step_by(PAGE) {
            self.tails.remove(&p);
        }
        Some(page)
    }

    /// The object holding `addr`: its first page's address.
    fn base_of(&self, addr: usize) -> Option<usize> {
        let page = addr & !(PAGE - 1);
        if self.pages.contains_key(&page) {
            Some(page)
        } else {
            self.tails.get(&page).copied()
        }
    }
}

struct Page {
    len: usize,
    retired: bool,
    kind: Lent,
    what: Cow<'static, str>,
}

/// What a page holds, which says what a touch after its retirement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lent {
    /// An IRP, retired by IofCompleteRequest (R41).
    Irp,
    /// A NET_BUFFER_LIST, retired when back with its creator (R11, R12, R17).
    Nbl,
}

impl Lent {
    fn rule(self) -> &'static str {
        match self {
            Lent::Irp => "IRP used after completion",
            Lent::Nbl => "NBL used after it went back to its creator",
        }
    }

    fn when(self) -> &'static str {
        match self {
            Lent::Irp => "after IoCompleteRequest (R41",
            Lent::Nbl => "after it was completed or returned to its creator (R11, R12, R17",
        }
    }
}

static PAGES: Mutex<Option<Pages>> = Mutex::new(None);

fn pages() -> MutexGuard<'static, Option<Pages>> {
    PAGES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A zeroed `T` (an IRP with its stack locations, an NBL) in pages of its
/// own.
pub struct LentPage<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the memory is owned by this value; which thread may touch it is
// governed by the IRP ownership the I/O model tracks.
unsafe impl<T> Send for LentPage<T> {}

impl<T> LentPage<T> {
    /// A zeroed `T` at the start of fresh pages, a `kind` described as
    /// `what` in fault reports. `T` must be valid when all zero.
    pub fn zeroed(kind: Lent, what: impl Into<Cow<'static, str>>) -> Self {
        assert!(core::mem::align_of::<T>() <= PAGE);
        let len = core::mem::size_of::<T>().max(1).div_ceil(PAGE) * PAGE;
        let page = Page { len, retired: false, kind, what: what.into() };
        let mut guard = pages();
        let st = guard.get_or_insert_with(Pages::default);
        if len == PAGE {
            if let Some(p) = st.spare.pop() {
                st.add(p, page);
                drop(guard);
                // SAFETY: a spare read/write page of our own, now this
                // value's; zeroed where `T` lies (the rest is never lent).
                unsafe { std::ptr::write_bytes(p as *mut T, 0, 1) };
                return LentPage { ptr: p as *mut T, len };
            }
        }
        drop(guard);
        // SAFETY: anonymous private mapping (zero-filled); no existing
        // memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "lent page mmap failed: {}", std::io::Error::last_os_error());
        pages().get_or_insert_with(Pages::default).add(p as usize, page);
        LentPage { ptr: p.cast(), len }
    }

    /// The object's address.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr
    }
}

impl<T> Deref for LentPage<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: zero-filled pages of our own, valid for T (`zeroed`'s
        // contract) until retired; the model reads it only before
        // completion.
        unsafe { &*self.ptr }
    }
}

impl<T> DerefMut for LentPage<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`.
        unsafe { &mut *self.ptr }
    }
}

impl<T> Drop for LentPage<T> {
    /// Into the quarantine when retired (still inaccessible); unmapped
    /// when never completed (the driver lost it, nothing can be checked).
    /// The system calls are made outside the table's lock, so that other
    /// threads' packets do not wait for them.
    fn drop(&mut self) {
        let addr = self.ptr as usize;
        // (address, length, whether it may be reused: retired pages only)
        let mut evicted: smallvec::SmallVec<[(usize, usize, bool); 2]> = smallvec::SmallVec::new();
        {
            let mut guard = pages();
            let st = guard.get_or_insert_with(Pages::default);
            if st.pages.get(&addr).is_some_and(|p| p.retired) {
                st.quarantine.push_back(addr);
                while st.quarantine.len() > QUARANTINE {
                    let old = st.quarantine.pop_front().expect("non-empty");
                    evicted.push((old, st.forget(old).map_or(PAGE, |p| p.len), true));
                }
            } else {
                st.forget(addr);
                evicted.push((addr, self.len, false));
            }
        }
        for (old, len, reusable) in evicted {
            if reusable && len == PAGE && reuse(old) {
                continue;
            }
            // SAFETY: a mapping made by `zeroed` and listed nowhere any more.
            unsafe { libc::munmap(old as *mut libc::c_void, len) };
        }
    }
}

/// Keeps a one-page mapping out of quarantine for the next object, if
/// fewer than [`SPARE`] are kept (made accessible first, outside the lock).
fn reuse(page: usize) -> bool {
    // SAFETY: a retired mapping made by `zeroed`, listed nowhere any more:
    // made accessible for reuse (or unmapped by the caller).
    let rc = unsafe { libc::mprotect(page as *mut libc::c_void, PAGE, libc::PROT_READ | libc::PROT_WRITE) };
    assert_eq!(rc, 0, "lent page mprotect: {}", std::io::Error::last_os_error());
    let mut guard = pages();
    let spare = &mut guard.get_or_insert_with(Pages::default).spare;
    let kept = spare.len() < SPARE;
    if kept {
        spare.push(page);
    }
    kept
}

/// The page holding `addr` becomes inaccessible (IofCompleteRequest's end;
/// an NBL back with its creator). Call it with everything the model needs
/// from the object already read. An address outside every lent page is
/// left alone.
pub(crate) fn retire(addr: usize) {
    let mut guard = pages();
    let Some(st) = guard.as_mut() else { return };
    let Some(lo) = st.base_of(addr) else { return };
    let page = st.pages.get_mut(&lo).expect("listed");
    if page.retired {
        return;
    }
    page.retired = true;
    let len = page.len;
    // The system call outside the lock (other threads' packets need it).
    drop(guard);
    // SAFETY: a live mapping made by `zeroed`; only its protection changes.
    let rc = unsafe { libc::mprotect(lo as *mut libc::c_void, len, libc::PROT_NONE) };
    assert_eq!(rc, 0, "lent page mprotect: {}", std::io::Error::last_os_error());
}

/// Whether `addr` lies in a retired page (model code must not read it).
pub fn is_retired(addr: usize) -> bool {
    let guard = pages();
    let Some(st) = guard.as_ref() else { return false };
    st.base_of(addr).is_some_and(|lo| st.pages[&lo].retired)
}

/// A fault at `addr` in a retired page: the driver touched an IRP after
/// completing it, or an NBL after it went back to its creator.
pub(crate) fn classify_fault(addr: usize, write: bool, rip: usize) -> Option<Violation> {
    let guard = pages();
    let st = guard.as_ref()?;
    let lo = st.base_of(addr)?;
    let page = &st.pages[&lo];
    if !page.retired {
        return None;
    }
    Some(Violation::new(
        page.kind.rule(),
        codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL,
        [addr as u64, u64::from(write), rip as u64, 0],
        format!(
            "{} of {addr:#x}, {:#x} bytes into {} {}; rip {rip:#x})",
            if write { "write" } else { "read" },
            addr - lo,
            page.what,
            page.kind.when()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::call_driver;
    use crate::verifier::{Config, Session};

    #[test]
    fn a_retired_page_faults_by_name_and_is_unmapped_after_the_quarantine() {
        let _s = Session::begin(Config::default());
        let mut p = LentPage::<[u64; 8]>::zeroed(Lent::Irp, "the IRP of a test");
        p[1] = 7;
        let addr = p.as_ptr() as usize;
        retire(addr + 8);
        // SAFETY: deliberately reads the retired page; the harness catches
        // the fault.
        let v = call_driver("late", || unsafe { std::ptr::read_volatile((addr + 8) as *const u64) }).unwrap_err();
        assert_eq!(v.rule, "IRP used after completion", "{v}");
        assert_eq!(v.bugcheck, codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL);
        assert!(v.detail.contains("0x8 bytes into the IRP of a test"), "{v}");
        drop(p);
        let maps = || std::fs::read_to_string("/proc/self/maps").expect("maps").lines().count();
        let before = maps();
        for _ in 0..4 * QUARANTINE {
            let p = LentPage::<[u64; 8]>::zeroed(Lent::Nbl, "an NBL");
            retire(p.as_ptr() as usize);
        }
        assert!(maps() < before + QUARANTINE + SPARE + 16, "mappings grew from {before} to {}", maps());
    }

    #[test]
    fn a_page_out_of_quarantine_is_reused_zeroed_and_live() {
        let _s = Session::begin(Config::default());
        let mut seen = std::collections::HashSet::new();
        let mut reused = 0;
        for i in 0..2 * QUARANTINE as u64 {
            let mut p = LentPage::<[u64; 8]>::zeroed(Lent::Nbl, "an NBL");
            let addr = p.as_ptr() as usize;
            assert_eq!(*p, [0; 8], "a reused page starts zeroed");
            reused += usize::from(!seen.insert(addr));
            p[3] = i + 1;
            assert!(!is_retired(addr));
            retire(addr);
            assert!(is_retired(addr));
        }
        assert!(reused > 0, "no page came back out of quarantine");
    }

    #[test]
    fn a_page_never_completed_is_not_a_finding() {
        let _s = Session::begin(Config::default());
        let p = LentPage::<u64>::zeroed(Lent::Irp, "irp");
        let addr = p.as_ptr() as usize;
        assert!(classify_fault(addr, false, 0).is_none());
        drop(p);
        assert!(classify_fault(addr, false, 0).is_none());
    }
}
