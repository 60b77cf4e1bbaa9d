//! Guarded buffers: memory the model lends the driver — an IRP's
//! `SystemBuffer`, every MDL's data — placed at the end of its own pages
//! with an inaccessible guard page right after it, the way special pool
//! places the driver's own allocations ([`crate::pool`]). A driver that
//! writes an IOCTL reply past the buffer, or parses a header past a
//! NET_BUFFER's data, faults on the guard page; the fault is reported by
//! name ([`classify_fault`]): which buffer, its length, how far past.
//!
//! Windows takes both from pool that Driver Verifier does not put in
//! special pool (they are the I/O manager's and the miniport's), so an
//! overrun there corrupts memory silently; the harness's choice is to
//! report it as the overrun it is, with 0xD6
//! (DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION).
//!
//! Mappings of one data page are reused (a bounded cache), so the data path
//! makes no system call per packet.

use std::borrow::Cow;

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::verifier::{codes, Violation};

const PAGE: usize = 4096;
/// Reusable one-page mappings kept (each is two VMAs).
const CACHE: usize = 512;

/// The live buffers and the idle mappings, under one lock (taken once
/// when a buffer is made and once when it goes; not at all when its owner
/// fills it again, see [`GuardedBuf::refill`]).
struct Table {
    /// What each mapping holds, by index: a buffer knows its own, so that
    /// making and dropping one (once per packet and MDL) looks nothing
    /// up. An idle mapping keeps its record, marked not live.
    records: Vec<Described>,
    /// The record of each mapping, by the address of its guard page
    /// (looked up only when the driver faults).
    by_guard: FxHashMap<usize, usize>,
    /// Idle one-page mappings (their guard page still in place), as
    /// indices into `records`.
    idle: Vec<usize>,
    /// Indices into `records` of unmapped mappings, for the next ones.
    unused: Vec<usize>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    records: Vec::new(),
    by_guard: FxHashMap::with_hasher(rustc_hash::FxBuildHasher),
    idle: Vec::new(),
    unused: Vec::new(),
});

struct Described {
    /// The mapping's first page.
    lo: usize,
    what: Cow<'static, str>,
    /// Whether a buffer is using the mapping, and its length: [`LIVE`] |
    /// length, or not live. One word that the buffer's owner writes
    /// without the lock (a buffer ends right before the guard page, so
    /// the length says where it starts); allocated once per record and
    /// never freed (records are reused, and bounded as the mappings are).
    state: &'static AtomicUsize,
}

/// The bit of [`Described::state`] saying a buffer is using the mapping.
const LIVE: usize = 1 << (usize::BITS - 1);

impl Table {
    /// Records a new mapping's buffer of `len` bytes; its index and state.
    fn add(&mut self, guard: usize, lo: usize, len: usize, what: Cow<'static, str>) -> (usize, &'static AtomicUsize) {
        let index = match self.unused.pop() {
            Some(i) => {
                let d = &mut self.records[i];
                (d.lo, d.what) = (lo, what);
                i
            }
            None => {
                let state = Box::leak(Box::new(AtomicUsize::new(0)));
                self.records.push(Described { lo, what, state });
                self.records.len() - 1
            }
        };
        self.by_guard.insert(guard, index);
        let state = self.records[index].state;
        state.store(LIVE | len, Ordering::Release);
        (index, state)
    }
}

fn table() -> MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `len` bytes ending right before an inaccessible page.
pub struct GuardedBuf {
    lo: usize,
    data_pages: usize,
    addr: usize,
    len: usize,
    /// Its record in the table.
    index: usize,
    /// Its record's state.
    state: &'static AtomicUsize,
}

// SAFETY: the buffer is plain memory owned by this value; which thread may
// touch it is governed by the IRP and NBL ownership the model tracks.
unsafe impl Send for GuardedBuf {}

impl GuardedBuf {
    /// A buffer holding `data`, described as `what` in fault reports.
    pub fn new(data: &[u8], what: impl Into<Cow<'static, str>>) -> Self {
        let len = data.len();
        let data_pages = len.max(1).div_ceil(PAGE);
        let what = what.into();
        let mut t = table();
        let idle = if data_pages == 1 { t.idle.pop() } else { None };
        let (lo, index, state) = match idle {
            Some(index) => {
                let d = &mut t.records[index];
                d.what = what;
                d.state.store(LIVE | len, Ordering::Release);
                (d.lo, index, d.state)
            }
            None => {
                // The system calls outside the lock.
                drop(t);
                let lo = map(data_pages);
                t = table();
                let (index, state) = t.add(lo + data_pages * PAGE, lo, len, what);
                (lo, index, state)
            }
        };
        drop(t);
        let addr = lo + data_pages * PAGE - len;
        // SAFETY: [addr, addr + len) lies in the mapping's read/write
        // pages, handed to this value only.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, len) };
        Self { lo, data_pages, addr, len, index, state }
    }

    /// Makes the buffer hold `data` instead, in the same mapping and with
    /// the same description, if it fits in one page (false, unchanged,
    /// otherwise): for an owner that keeps its buffers idle between uses
    /// ([`GuardedBuf::set_idle`]), without the table's lock.
    pub fn refill(&mut self, data: &[u8]) -> bool {
        let len = data.len();
        if self.data_pages != 1 || len > PAGE {
            return false;
        }
        let addr = self.lo + PAGE - len;
        // SAFETY: [addr, addr + len) lies in the mapping's read/write
        // page, owned by this value.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, len) };
        (self.addr, self.len) = (addr, len);
        self.state.store(LIVE | len, Ordering::Release);
        true
    }

    /// Marks the buffer unused while its owner keeps it for a later
    /// [`GuardedBuf::refill`]: a fault on its guard page is then not an
    /// overrun of it, as for an idle mapping.
    pub fn set_idle(&self) {
        self.state.store(0, Ordering::Release);
    }

    /// The first byte.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.addr as *mut u8
    }

    /// The contents now.
    pub fn to_vec(&self) -> Vec<u8> {
        // SAFETY: `len` readable bytes at `addr`, owned by this value.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }.to_vec()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for GuardedBuf {
    fn drop(&mut self) {
        self.set_idle();
        let mut t = table();
        if self.data_pages == 1 && t.idle.len() < CACHE {
            t.idle.push(self.index);
        } else {
            let guard = self.lo + self.data_pages * PAGE;
            t.by_guard.remove(&guard);
            t.records[self.index].what = Cow::Borrowed("");
            t.unused.push(self.index);
            drop(t);
            // SAFETY: the mapping made by `map` for this buffer, no longer
            // listed anywhere.
            unsafe { libc::munmap(self.lo as *mut libc::c_void, (self.data_pages + 1) * PAGE) };
        }
    }
}

/// Maps `data_pages` read/write pages and a guard page after them.
fn map(data_pages: usize) -> usize {
    let total = (data_pages + 1) * PAGE;
    // SAFETY: anonymous private mapping; no existing memory is affected.
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
    assert!(p != libc::MAP_FAILED, "guarded buffer mmap failed: {}", std::io::Error::last_os_error());
    let lo = p as usize;
    // SAFETY: the last page of the mapping just made.
    let rc = unsafe { libc::mprotect((lo + data_pages * PAGE) as *mut libc::c_void, PAGE, libc::PROT_NONE) };
    assert_eq!(rc, 0, "guarded buffer guard page: {}", std::io::Error::last_os_error());
    lo
}

/// A fault at `addr` in the guard page of a live buffer: the overrun,
/// named.
pub(crate) fn classify_fault(addr: usize, write: bool, rip: usize) -> Option<Violation> {
    let t = table();
    let guard = addr & !(PAGE - 1);
    let d = &t.records[*t.by_guard.get(&guard)?];
    let state = d.state.load(Ordering::Acquire);
    if state & LIVE == 0 {
        return None;
    }
    // The buffer ends right before its guard page.
    let len = state & !LIVE;
    let past = addr - guard + 1;
    Some(Violation::new(
        "access beyond the end of a buffer the driver was given",
        codes::DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION,
        [addr as u64, u64::from(write), rip as u64, 1],
        format!(
            "{} of {addr:#x}, {past} byte(s) past the end of {} ({} bytes at {:#x}; rip {rip:#x})",
            if write { "write" } else { "read" },
            d.what,
            len,
            guard - len
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::call_driver;
    use crate::verifier::{Config, Session};

    #[test]
    fn contents_round_trip_and_the_byte_after_faults_by_name() {
        let _s = Session::begin(Config::default());
        let b = GuardedBuf::new(&[1, 2, 3], "test buffer");
        assert_eq!(b.to_vec(), [1, 2, 3]);
        let end = b.as_mut_ptr() as usize + b.len();
        // SAFETY: deliberately writes one byte past the end; the harness
        // catches the fault.
        let v = call_driver("overrun", || unsafe { std::ptr::write_volatile(end as *mut u8, 9) }).unwrap_err();
        assert_eq!(v.rule, "access beyond the end of a buffer the driver was given", "{v}");
        assert!(v.detail.contains("1 byte(s) past the end of test buffer (3 bytes"), "{v}");
    }

    #[test]
    fn a_buffer_filled_again_faults_by_its_new_length_and_not_while_idle() {
        let _s = Session::begin(Config::default());
        let mut b = GuardedBuf::new(&[1; 100], "a refilled buffer");
        b.set_idle();
        let guard = b.as_mut_ptr() as usize + b.len();
        assert!(classify_fault(guard, false, 0).is_none(), "an idle buffer is not overrun");
        assert!(b.refill(&[2; 10]));
        assert_eq!(b.to_vec(), [2; 10]);
        assert_eq!(b.as_mut_ptr() as usize + b.len(), guard, "it still ends at the guard page");
        // SAFETY: deliberately writes past the end; the harness catches
        // the fault.
        let v = call_driver("overrun", || unsafe { std::ptr::write_volatile((guard + 1) as *mut u8, 9) }).unwrap_err();
        assert!(v.detail.contains("2 byte(s) past the end of a refilled buffer (10 bytes"), "{v}");
        assert!(!b.refill(&[0; PAGE + 1]), "more than a page does not fit");
    }

    #[test]
    fn many_buffers_stay_in_flat_mappings() {
        let maps = || std::fs::read_to_string("/proc/self/maps").expect("maps").lines().count();
        // Serialised with the other tests that map memory.
        let _s = Session::begin(Config::default());
        drop(GuardedBuf::new(&[0; 100], "warm-up"));
        let before = maps();
        for i in 0..20_000 {
            let b = GuardedBuf::new(&[0; 1500], format!("frame {i}"));
            assert_eq!(b.as_mut_ptr() as usize % PAGE, PAGE - 1500);
        }
        assert!(maps() < before + 64, "mappings grew from {before} to {}", maps());
    }
}
