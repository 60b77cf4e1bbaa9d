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
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::verifier::{codes, Violation};

const PAGE: usize = 4096;
/// Reusable one-page mappings kept (each is two VMAs).
const CACHE: usize = 512;

/// The live buffers and the idle mappings, under one lock (taken once
/// when a buffer is made and once when it goes).
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
    /// A buffer is using the mapping (false: idle or unmapped).
    live: bool,
    /// The mapping's first page.
    lo: usize,
    addr: usize,
    len: usize,
    what: Cow<'static, str>,
}

impl Table {
    /// Records a new mapping's buffer; its index.
    fn add(&mut self, guard: usize, d: Described) -> usize {
        let index = match self.unused.pop() {
            Some(i) => {
                self.records[i] = d;
                i
            }
            None => {
                self.records.push(d);
                self.records.len() - 1
            }
        };
        self.by_guard.insert(guard, index);
        index
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
        let (lo, addr, index) = match idle {
            Some(index) => {
                let d = &mut t.records[index];
                let addr = d.lo + PAGE - len;
                (d.live, d.addr, d.len, d.what) = (true, addr, len, what);
                (d.lo, addr, index)
            }
            None => {
                // The system calls outside the lock.
                drop(t);
                let lo = map(data_pages);
                let guard = lo + data_pages * PAGE;
                let addr = guard - len;
                t = table();
                (lo, addr, t.add(guard, Described { live: true, lo, addr, len, what }))
            }
        };
        drop(t);
        // SAFETY: [addr, addr + len) lies in the mapping's read/write
        // pages, handed to this value only.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, len) };
        Self { lo, data_pages, addr, len, index }
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
        let mut t = table();
        if self.data_pages == 1 && t.idle.len() < CACHE {
            t.records[self.index].live = false;
            t.idle.push(self.index);
        } else {
            let guard = self.lo + self.data_pages * PAGE;
            t.by_guard.remove(&guard);
            let d = &mut t.records[self.index];
            (d.live, d.what) = (false, Cow::Borrowed(""));
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
    let d = t.by_guard.get(&(addr & !(PAGE - 1))).map(|&i| &t.records[i]).filter(|d| d.live)?;
    let past = addr - (d.addr + d.len) + 1;
    Some(Violation::new(
        "access beyond the end of a buffer the driver was given",
        codes::DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION,
        [addr as u64, u64::from(write), rip as u64, 1],
        format!(
            "{} of {addr:#x}, {past} byte(s) past the end of {} ({} bytes at {:#x}; rip {rip:#x})",
            if write { "write" } else { "read" },
            d.what,
            d.len,
            d.addr
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
