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
//! Retired objects stay inaccessible in a bounded quarantine once their
//! owner lets go of them. One-page objects come from slabs of [`SLAB`]
//! pages mapped together: a slab hands out each page once; when its owners
//! have let go of every page, the slab waits, its retired pages still
//! inaccessible, until the slabs let go of after it hold [`QUARANTINE`]
//! retired pages (so every retired page stays inaccessible at least until
//! that many have been let go of after it), and then one `mprotect` makes
//! the whole slab accessible again for the next objects (zeroed where each
//! lies); at most [`SPARE`] such slabs are kept, the rest unmapped. So a
//! packet makes one system call for its NBL (the retirement, which must
//! fault at once) instead of two, and letting go of it is a count. Larger
//! objects wait in a quarantine of [`QUARANTINE`] objects, then are
//! unmapped. An operation's NBLs lie on consecutive pages
//! ([`LentPage::zeroed_run`]), so a chain back with its creator at once is
//! retired with one system call ([`retire_many`]).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::marker::PhantomData;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::verifier::{codes, Violation};

const PAGE: usize = 4096;
/// Completed IRPs' pages kept inaccessible before they are unmapped.
pub const QUARANTINE: usize = 256;
/// Pages per slab of one-page objects.
pub const SLAB: usize = 64;
/// Slabs with every page back kept for reuse (accessible, handing out
/// none yet).
pub const SPARE: usize = 2;
/// Records of slabs reused kept for the next slabs (a slab starts once
/// per [`SLAB`] objects: it allocates none).
const SPARE_RECORDS: usize = SPARE + 2;

struct Pages {
    /// Every lent object of more than one page not yet unmapped, by its
    /// first page's address: retired (completed) or not, and what it held.
    pages: FxHashMap<usize, Page>,
    /// The first page of an object, by each of its further pages.
    tails: FxHashMap<usize, usize>,
    /// Retired objects of more than one page let go of, oldest first.
    quarantine: Quarantine,
    /// The slab one-page objects come from now, with pages left to hand
    /// out: held apart, so that lending a page (once per packet) and
    /// retiring or letting go of a page lent from it look nothing up.
    current: Option<Box<Slab>>,
    /// The other slabs with pages lent or in quarantine, by address:
    /// one-page objects are found from their address by arithmetic (slab,
    /// then page index); a slab is listed from when it has handed out its
    /// last page until it is reused.
    slabs: FxHashMap<usize, Box<Slab>>,
    /// Listed slabs whose pages are all let go of, holding retired pages:
    /// address and retired pages, oldest first.
    held: VecDeque<(usize, usize)>,
    /// Retired pages in the slabs of `held`.
    held_retired: usize,
    /// Slabs with every page back, accessible again.
    spare: Vec<usize>,
    /// Records of slabs reused, for the next slabs (boxed: a record goes
    /// back and forth between here and `current` or `slabs` unmoved).
    #[allow(clippy::vec_box)]
    spare_records: Vec<Box<Slab>>,
}

/// The one-page objects of a slab that has handed out pages, as bits:
/// lending, retiring and letting go of one sets or clears a bit, or
/// counts.
struct Slab {
    /// The slab's first page.
    addr: usize,
    /// Pages handed out so far: page `used` is the next.
    used: usize,
    /// Bit i: page i is an object: handed out and not let go of, or
    /// retired (described until the slab is reused).
    lent: u64,
    /// Bit i: page i is retired (inaccessible).
    retired: u64,
    /// How many pages are let go of by their owners, or skipped never
    /// lent.
    let_go: usize,
    /// The slab's entry in [`BITS`], if it got one.
    bits: Option<&'static SlabBits>,
    /// What page i holds while it is lent (the next object lent there
    /// overwrites it).
    held: [Held; SLAB],
}

/// What a one-page object is, for fault reports.
struct Held {
    kind: Lent,
    what: Cow<'static, str>,
}

impl Slab {
    /// A record for the slab at `addr`, reusing `old` if given.
    fn start(old: Option<Box<Slab>>, addr: usize) -> Box<Slab> {
        let fresh = || {
            Box::new(Slab {
                addr: 0,
                used: 0,
                lent: 0,
                retired: 0,
                let_go: 0,
                bits: None,
                held: [const { Held { kind: Lent::Nbl, what: Cow::Borrowed("") } }; SLAB],
            })
        };
        let mut slab = old.unwrap_or_else(fresh);
        slab.addr = addr;
        slab.used = 0;
        slab.lent = 0;
        slab.retired = 0;
        slab.let_go = 0;
        slab.bits = claim_bits(addr);
        slab
    }

    /// Copies the retired bits where [`is_retired`] reads them without
    /// the table's lock (with the table locked).
    fn publish_retired(&self) {
        if let Some(b) = self.bits {
            b.retired.store(self.retired, Ordering::Release);
        }
    }
}

/// The bit of the one-page object at `page` in its slab's masks.
fn bit_of(page: usize) -> u64 {
    1 << ((page - slab_of(page)) / PAGE)
}

/// The slab holding a one-page object at `page`.
fn slab_of(page: usize) -> usize {
    page & !(SLAB * PAGE - 1)
}

/// Which pages of a slab are retired, readable without the table's lock:
/// [`is_retired`] runs on every NBL of every chain the driver hands the
/// model. Written under the table's lock only, a copy of the slab
/// record's `retired`.
struct SlabBits {
    /// The slab this entry describes (0: none).
    slab: AtomicUsize,
    /// Bit i: the slab's page i is retired.
    retired: AtomicU64,
}

/// Entries of [`BITS`], found by slab number (direct-mapped: a slab whose
/// entry is taken by another is looked up under the lock instead).
const BIT_SLOTS: usize = 64;
static BITS: [SlabBits; BIT_SLOTS] =
    [const { SlabBits { slab: AtomicUsize::new(0), retired: AtomicU64::new(0) } }; BIT_SLOTS];

/// The entry describing `slab`, if it has one.
fn bits_of(slab: usize) -> Option<&'static SlabBits> {
    let b = &BITS[(slab / (SLAB * PAGE)) % BIT_SLOTS];
    (b.slab.load(Ordering::Acquire) == slab).then_some(b)
}

/// Gives `slab` its entry if that is free (with the table locked).
fn claim_bits(slab: usize) -> Option<&'static SlabBits> {
    let b = &BITS[(slab / (SLAB * PAGE)) % BIT_SLOTS];
    if b.slab.load(Ordering::Relaxed) != 0 {
        return None;
    }
    b.retired.store(0, Ordering::Relaxed);
    b.slab.store(slab, Ordering::Release);
    Some(b)
}

/// As [`Pages::listed`], to change it (a function of the table's field,
/// so that the caller may hold the current slab's record meanwhile).
#[inline(never)]
fn listed_mut(slabs: &mut FxHashMap<usize, Box<Slab>>, slab: usize) -> Option<&mut Slab> {
    slabs.get_mut(&slab).map(|s| &mut **s)
}

/// Retired objects of more than one page let go of: a ring of at most
/// [`QUARANTINE`], the oldest out when one comes in to a full one.
struct Quarantine {
    objects: Vec<usize>,
    /// Index of the oldest object once the ring is full.
    oldest: usize,
}

impl Quarantine {
    /// Puts `object` in; the oldest one out when it was full.
    fn push(&mut self, object: usize) -> Option<usize> {
        if self.objects.len() < QUARANTINE {
            self.objects.push(object);
            return None;
        }
        let old = std::mem::replace(&mut self.objects[self.oldest], object);
        self.oldest = (self.oldest + 1) % QUARANTINE;
        Some(old)
    }
}

/// A lent object as fault reports and [`is_retired`] see it.
struct Object<'a> {
    /// Its first page.
    lo: usize,
    retired: bool,
    kind: Lent,
    what: &'a str,
}

/// What is left to do once the table's lock is let go, rarely more than
/// nothing.
type Gones = SmallVec<[Gone; 2]>;

impl Pages {
    /// An empty table (a constant: taking its lock checks no
    /// initialisation).
    const fn new() -> Self {
        Pages {
            pages: FxHashMap::with_hasher(rustc_hash::FxBuildHasher),
            tails: FxHashMap::with_hasher(rustc_hash::FxBuildHasher),
            quarantine: Quarantine { objects: Vec::new(), oldest: 0 },
            current: None,
            slabs: FxHashMap::with_hasher(rustc_hash::FxBuildHasher),
            held: VecDeque::new(),
            held_retired: 0,
            spare: Vec::new(),
            spare_records: Vec::new(),
        }
    }

    /// The record of `slab` (the current one, or a listed one).
    #[inline]
    fn slab(&self, slab: usize) -> Option<&Slab> {
        match &self.current {
            Some(c) if c.addr == slab => Some(c),
            _ => self.listed(slab),
        }
    }

    /// The record of `slab`, to change it.
    #[inline]
    fn slab_mut(&mut self, slab: usize) -> Option<&mut Slab> {
        match &mut self.current {
            Some(c) if c.addr == slab => Some(c),
            _ => listed_mut(&mut self.slabs, slab),
        }
    }

    /// The record of the listed `slab` (a hashed look-up, kept out of the
    /// callers' common path).
    #[inline(never)]
    fn listed(&self, slab: usize) -> Option<&Slab> {
        self.slabs.get(&slab).map(|s| &**s)
    }

    /// Lends the next `n` pages (1 to [`SLAB`]) of one slab, consecutive:
    /// when the current slab has fewer than `n` left, they are counted as
    /// let go of unlent (never handed out, so accessible; the slab still
    /// comes back when its lent pages do) and a fresh slab starts. Returns
    /// the first page; what is left to do once the lock is let go goes to
    /// `gone`.
    #[inline(always)]
    fn lend_run(&mut self, n: usize, kind: Lent, what: Cow<'static, str>, gone: &mut Gones) -> usize {
        debug_assert!((1..=SLAB).contains(&n));
        let mut slab = match self.current.take() {
            Some(s) if s.used + n <= SLAB => s,
            Some(mut skipped) => {
                skipped.let_go += SLAB - skipped.used;
                skipped.used = SLAB;
                self.list(skipped, gone);
                self.start_slab()
            }
            None => self.start_slab(),
        };
        let first = slab.used;
        slab.used += n;
        let mask = if n == SLAB { u64::MAX } else { ((1u64 << n) - 1) << first };
        slab.lent |= mask;
        for held in &mut slab.held[first + 1..first + n] {
            *held = Held { kind, what: what.clone() };
        }
        slab.held[first] = Held { kind, what };
        let page = slab.addr + first * PAGE;
        if slab.used == SLAB {
            self.list(slab, gone);
        } else {
            self.current = Some(slab);
        }
        page
    }

    /// A fresh slab to lend from: a spare one, or newly mapped. Mapped
    /// under the lock (once per SLAB objects) so that no other thread
    /// starts a slab meanwhile (its pages would never all be handed out,
    /// nor come back).
    fn start_slab(&mut self) -> Box<Slab> {
        let addr = self.spare.pop().unwrap_or_else(|| map(SLAB * PAGE, SLAB));
        Slab::start(self.spare_records.pop(), addr)
    }

    /// A slab that hands out no more pages: listed until it is reused
    /// (at once if every page is let go of already, none retired).
    fn list(&mut self, slab: Box<Slab>, gone: &mut Gones) {
        let (addr, done) = (slab.addr, slab.let_go == SLAB);
        self.slabs.insert(addr, slab);
        if done {
            self.all_let_go(addr, gone);
        }
    }

    /// Every page of the listed slab at `addr` is let go of (or skipped):
    /// reused at once if none is retired, else it waits in quarantine,
    /// inaccessible where retired, until the slabs let go of after it hold
    /// [`QUARANTINE`] retired pages; those slabs that have waited long
    /// enough are reused.
    fn all_let_go(&mut self, addr: usize, gone: &mut Gones) {
        let retired = self.slabs[&addr].retired.count_ones() as usize;
        if retired == 0 {
            self.reuse_listed(addr, gone);
            return;
        }
        self.held.push_back((addr, retired));
        self.held_retired += retired;
        while let Some(&(old, n)) = self.held.front() {
            if self.held_retired - n < QUARANTINE {
                break;
            }
            self.held.pop_front();
            self.held_retired -= n;
            self.reuse_listed(old, gone);
        }
    }

    /// The listed slab at `addr` has waited enough: its record and
    /// [`BITS`] entry are freed, and the slab is reused once the lock is
    /// let go.
    fn reuse_listed(&mut self, addr: usize, gone: &mut Gones) {
        let slab = self.slabs.remove(&addr).expect("listed");
        if let Some(b) = slab.bits {
            b.slab.store(0, Ordering::Release);
        }
        if self.spare_records.len() < SPARE_RECORDS {
            self.spare_records.push(slab);
        }
        gone.push(Gone::Reuse(addr));
    }

    /// Records an object of more than one page.
    fn add_pages(&mut self, base: usize, page: Page) {
        for p in (base + PAGE..base + page.len).step_by(PAGE) {
            self.tails.insert(p, base);
        }
        self.pages.insert(base, page);
    }

    /// Takes the object of more than one page at `base` out of the table:
    /// unmapped once the lock is let go.
    fn forget_pages(&mut self, base: usize, gone: &mut Gones) {
        let Some(page) = self.pages.remove(&base) else { return };
        for p in (base + PAGE..base + page.len).step_by(PAGE) {
            self.tails.remove(&p);
        }
        gone.push(Gone::Unmap(base, page.len));
    }

    /// The lent object holding `addr`.
    fn object_at(&self, addr: usize) -> Option<Object<'_>> {
        let page = addr & !(PAGE - 1);
        if let Some(slab) = self.slab(slab_of(page)) {
            let bit = bit_of(page);
            if slab.lent & bit == 0 {
                return None;
            }
            let held = &slab.held[(page - slab.addr) / PAGE];
            return Some(Object { lo: page, retired: slab.retired & bit != 0, kind: held.kind, what: &held.what });
        }
        let lo = if self.pages.contains_key(&page) { page } else { *self.tails.get(&page)? };
        let p = &self.pages[&lo];
        Some(Object { lo, retired: p.retired, kind: p.kind, what: &p.what })
    }
}

/// An object of more than one page.
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

static PAGES: Mutex<Pages> = Mutex::new(Pages::new());

fn pages() -> MutexGuard<'static, Pages> {
    PAGES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A zeroed `T` (an IRP with its stack locations, an NBL) in pages of its
/// own.
pub struct LentPage<T> {
    /// The object; its length is in the table.
    ptr: *mut T,
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
        if len == PAGE {
            let mut gone = Gones::new();
            let p = pages().lend_run(1, kind, what.into(), &mut gone);
            carry_out(gone);
            // SAFETY: an accessible slab page handed out to this value only;
            // zeroed where `T` lies (the rest is never lent).
            unsafe { std::ptr::write_bytes(p as *mut T, 0, 1) };
            return LentPage { ptr: p as *mut T };
        }
        let p = map(len, 1);
        pages().add_pages(p, Page { len, retired: false, kind, what: what.into() });
        LentPage { ptr: p as *mut T }
    }

    /// `n` zeroed one-page `T`s on consecutive pages, [`SLAB`] at a time
    /// from one slab (a fresh slab when the current one has fewer left),
    /// each batch taken under one lock: an operation's NBLs, so that
    /// [`retire_many`] makes a chain back with its creator inaccessible
    /// with one system call, and another thread's objects never fall
    /// between them. Each is zeroed as the iterator hands it out; those
    /// it never hands out are let go of when it is dropped.
    pub fn zeroed_run(n: usize, kind: Lent, what: &'static str) -> Run<T> {
        assert!(core::mem::align_of::<T>() <= PAGE && core::mem::size_of::<T>() <= PAGE);
        let mut run = Run { next: 0, end: 0, more: n, kind, what, _objects: PhantomData };
        run.take_batch();
        run
    }

    /// As [`LentPage::zeroed_run`], a run of one page (an operation of one
    /// NBL, the common case) taken from `ahead`, without the table's lock.
    pub fn zeroed_run_ahead(n: usize, kind: Lent, what: &'static str, ahead: &mut Ahead) -> Run<T> {
        if n != 1 {
            return Self::zeroed_run(n, kind, what);
        }
        assert!(core::mem::align_of::<T>() <= PAGE && core::mem::size_of::<T>() <= PAGE);
        let page = ahead.page(kind, what);
        Run { next: page, end: page + PAGE, more: 0, kind, what, _objects: PhantomData }
    }

    /// The object's address.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr
    }
}

/// One-page objects a thread takes from the table ahead of its runs of
/// one page, [`AHEAD_PAGES`] at a time under one lock: lent (described,
/// their slab waiting for them) but not handed out yet, so accessible and
/// never retired, as a slab's pages not handed out are. Those left are let
/// go of when the value is dropped (its thread's cache with it), or when a
/// run of another kind or description takes pages ahead instead; so it
/// holds at most [`AHEAD_PAGES`] - 1, and their slab back.
pub struct Ahead {
    /// The next page to hand out.
    next: usize,
    /// The end of the pages taken.
    end: usize,
    /// What they are described as in the table.
    kind: Lent,
    what: &'static str,
}

/// Pages taken ahead at a time (a divisor of [`SLAB`]: no slab skips pages
/// for them).
const AHEAD_PAGES: usize = 8;
const _: () = assert!(SLAB % AHEAD_PAGES == 0);

impl Default for Ahead {
    fn default() -> Self {
        Ahead::new()
    }
}

impl Ahead {
    /// None taken yet.
    pub const fn new() -> Self {
        Ahead { next: 0, end: 0, kind: Lent::Nbl, what: "" }
    }

    /// The next page taken ahead, `kind` described as `what`: first taken
    /// from the table when none is left, or those left are another
    /// description's.
    #[inline]
    fn page(&mut self, kind: Lent, what: &'static str) -> usize {
        if self.next == self.end || self.kind != kind || !std::ptr::eq(self.what, what) {
            self.take(kind, what);
        }
        let page = self.next;
        self.next += PAGE;
        page
    }

    /// Lets go of the pages left and takes [`AHEAD_PAGES`] more, under one
    /// lock.
    #[cold]
    fn take(&mut self, kind: Lent, what: &'static str) {
        let mut gone = Gones::new();
        {
            let mut st = pages();
            self.let_go_left(&mut st, &mut gone);
            let first = st.lend_run(AHEAD_PAGES, kind, Cow::Borrowed(what), &mut gone);
            (self.next, self.end) = (first, first + AHEAD_PAGES * PAGE);
        }
        carry_out(gone);
        (self.kind, self.what) = (kind, what);
    }

    /// Lets go of the pages not handed out (the table locked).
    fn let_go_left(&mut self, st: &mut Pages, gone: &mut Gones) {
        for p in (self.next..self.end).step_by(PAGE) {
            st.let_go(p, gone);
        }
        self.next = self.end;
    }
}

impl Drop for Ahead {
    /// The pages left are let go of (never handed out: back to their
    /// slab).
    fn drop(&mut self) {
        if self.next == self.end {
            return;
        }
        let mut gone = Gones::new();
        self.let_go_left(&mut pages(), &mut gone);
        carry_out(gone);
    }
}

/// The pages of [`LentPage::zeroed_run`], handed out in order.
pub struct Run<T> {
    /// The next page to hand out.
    next: usize,
    /// The end of the batch taken.
    end: usize,
    /// Pages still to take after this batch.
    more: usize,
    kind: Lent,
    what: &'static str,
    _objects: PhantomData<*mut T>,
}

impl<T> Run<T> {
    /// Takes the next batch (up to [`SLAB`] pages) from the table.
    fn take_batch(&mut self) {
        let n = self.more.min(SLAB);
        if n == 0 {
            return;
        }
        let mut gone = Gones::new();
        let first = pages().lend_run(n, self.kind, Cow::Borrowed(self.what), &mut gone);
        carry_out(gone);
        (self.next, self.end, self.more) = (first, first + n * PAGE, self.more - n);
    }
}

impl<T> Iterator for Run<T> {
    type Item = LentPage<T>;

    fn next(&mut self) -> Option<LentPage<T>> {
        if self.next == self.end {
            self.take_batch();
            if self.next == self.end {
                return None;
            }
        }
        let ptr = self.next as *mut T;
        self.next += PAGE;
        // SAFETY: an accessible slab page lent to this run and handed out
        // to the value made here only, page-aligned, `T` no larger than it.
        unsafe { zero_in_page(ptr) };
        Some(LentPage { ptr })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end - self.next) / PAGE + self.more;
        (n, Some(n))
    }
}

impl<T> ExactSizeIterator for Run<T> {}

/// Zeroes the one-page `T` at `ptr`, and the bytes after it up to the next
/// 16 (the rest of its page is never lent), with 16-byte stores made here:
/// the `memset` call `write_bytes` makes for an NBL's 400 bytes runs about
/// twice the instructions (its size dispatch), on every packet.
///
/// # Safety
/// `ptr` is page-aligned and its page writable; `T` fits in a page.
#[inline(always)]
unsafe fn zero_in_page<T>(ptr: *mut T) {
    use core::arch::x86_64::{__m128i, _mm_setzero_si128};
    const { assert!(core::mem::size_of::<T>() <= PAGE) };
    let words = ptr.cast::<__m128i>();
    for i in 0..core::mem::size_of::<T>().div_ceil(16) {
        // Volatile: plain stores would be merged back into a memset call.
        // SAFETY: inside the page at `ptr` (per the contract), 16-byte
        // aligned (it is page-aligned).
        unsafe { words.add(i).write_volatile(_mm_setzero_si128()) };
    }
}

impl<T> Drop for Run<T> {
    /// Pages taken and never handed out are let go of (never retired:
    /// back to their slab).
    #[inline]
    fn drop(&mut self) {
        if self.next != self.end {
            self.let_go_rest();
        }
    }
}

impl<T> Run<T> {
    #[cold]
    fn let_go_rest(&mut self) {
        let mut gone = Gones::new();
        {
            let mut st = pages();
            for p in (self.next..self.end).step_by(PAGE) {
                st.let_go(p, &mut gone);
            }
        }
        carry_out(gone);
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
    /// Into the quarantine when retired (still inaccessible); back (or
    /// unmapped) when never completed (the driver lost it, nothing can be
    /// checked). The system calls are made outside the table's lock, so
    /// that other threads' packets do not wait for them.
    fn drop(&mut self) {
        let mut gone = Gones::new();
        pages().let_go(self.ptr as usize, &mut gone);
        carry_out(gone);
    }
}

/// Lets go of every object of `objects` as dropping each would, under one
/// lock: an operation's NBLs, freed together, take the table's lock once.
/// The iterator runs under that lock, so whatever it drops must not take
/// it (an NBL's NET_BUFFERs, MDLs and data buffers do not).
pub fn release_all<T>(objects: impl IntoIterator<Item = LentPage<T>>) {
    let mut gone = Gones::new();
    {
        let mut st = pages();
        for object in objects {
            let addr = object.ptr as usize;
            // Its table entry is let go here instead of in its Drop.
            std::mem::forget(object);
            st.let_go(addr, &mut gone);
        }
    }
    carry_out(gone);
}

impl Pages {
    /// An object let go of by its owner (the table locked). A one-page
    /// object is counted let go of in its slab: a retired one stays
    /// described (and inaccessible) until the slab is reused, another is
    /// back at once. A larger retired object goes into the quarantine (the
    /// oldest one out when it is full), another out of the table. What is
    /// left to do once the lock is let go goes to `gone`.
    #[inline]
    fn let_go(&mut self, addr: usize, gone: &mut Gones) {
        let Some(slab) = self.slab_mut(slab_of(addr)) else { return self.let_go_pages(addr, gone) };
        let bit = bit_of(addr);
        if slab.lent & bit == 0 {
            return;
        }
        if slab.retired & bit == 0 {
            slab.lent &= !bit;
        }
        slab.let_go += 1;
        if slab.let_go == SLAB {
            // The current slab has pages not handed out: this one is
            // listed.
            let addr = slab.addr;
            self.all_let_go(addr, gone);
        }
    }

    /// [`Pages::let_go`] for an object of more than one page.
    fn let_go_pages(&mut self, addr: usize, gone: &mut Gones) {
        if !self.pages.get(&addr).is_some_and(|p| p.retired) {
            return self.forget_pages(addr, gone);
        }
        if let Some(old) = self.quarantine.push(addr) {
            self.forget_pages(old, gone);
        }
    }
}

/// Carries out what objects' ends left to do (outside the table's lock).
#[inline]
fn carry_out(gone: Gones) {
    if !gone.is_empty() {
        carry_out_now(gone);
    }
}

#[cold]
fn carry_out_now(gone: Gones) {
    for g in gone {
        match g {
            // SAFETY: a mapping made by `zeroed` and listed nowhere any more.
            Gone::Unmap(old, len) => unsafe {
                libc::munmap(old as *mut libc::c_void, len);
            },
            Gone::Reuse(slab) => reuse(slab),
        }
    }
}

/// What is left to do with an object's memory once it is out of the table
/// (done outside the table's lock).
enum Gone {
    /// A mapping of its own (address, length): unmapped.
    Unmap(usize, usize),
    /// A slab out of quarantine: reused.
    Reuse(usize),
}

/// Maps `len` accessible bytes aligned to `align` pages (a slab's pages
/// are found from their address).
fn map(len: usize, align: usize) -> usize {
    let extra = (align - 1) * PAGE;
    // SAFETY: anonymous private mapping (zero-filled); no existing memory
    // is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len + extra,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "lent page mmap failed: {}", std::io::Error::last_os_error());
    let lo = p as usize;
    let aligned = (lo + align * PAGE - 1) & !(align * PAGE - 1);
    // SAFETY: the unaligned head and tail of the mapping just made,
    // handed to nobody.
    unsafe {
        if aligned > lo {
            libc::munmap(p, aligned - lo);
        }
        if lo + extra > aligned {
            libc::munmap((aligned + len) as *mut libc::c_void, lo + extra - aligned);
        }
    }
    aligned
}

/// A slab whose pages are all back: made accessible again (one system
/// call, outside the table's lock) and kept for the next objects if fewer
/// than [`SPARE`] are kept, else unmapped.
fn reuse(slab: usize) {
    // SAFETY: a slab made by `map` whose pages are all back: listed
    // nowhere any more; only its protection changes.
    let rc = unsafe { libc::mprotect(slab as *mut libc::c_void, SLAB * PAGE, libc::PROT_READ | libc::PROT_WRITE) };
    assert_eq!(rc, 0, "lent slab mprotect: {}", std::io::Error::last_os_error());
    let kept = {
        let mut guard = pages();
        let spare = &mut guard.spare;
        let kept = spare.len() < SPARE;
        if kept {
            spare.push(slab);
        }
        kept
    };
    if !kept {
        // SAFETY: as above, and not kept.
        unsafe { libc::munmap(slab as *mut libc::c_void, SLAB * PAGE) };
    }
}

/// The page holding `addr` becomes inaccessible (IofCompleteRequest's end;
/// an NBL back with its creator). Call it with everything the model needs
/// from the object already read. An address outside every lent page is
/// left alone.
pub(crate) fn retire(addr: usize) {
    let Some((lo, hi)) = pages().mark_retired(addr) else { return };
    // The system call outside the lock (other threads' packets need it).
    // SAFETY: a live mapping made by `zeroed`; only its protection changes.
    let rc = unsafe { libc::mprotect(lo as *mut libc::c_void, hi - lo, libc::PROT_NONE) };
    assert_eq!(rc, 0, "lent page mprotect: {}", std::io::Error::last_os_error());
}

impl Pages {
    /// Marks the object holding `addr` retired (the table locked): its
    /// pages `[lo, hi)` to make inaccessible; None when `addr` is in no
    /// lent object or that one is retired already.
    #[inline(always)]
    fn mark_retired(&mut self, addr: usize) -> Option<(usize, usize)> {
        let page = addr & !(PAGE - 1);
        let Some(slab) = self.slab_mut(slab_of(page)) else { return self.mark_pages_retired(addr) };
        // A one-page object (an NBL, on every packet): two bits.
        let bit = bit_of(page);
        if slab.lent & bit == 0 || slab.retired & bit != 0 {
            return None;
        }
        slab.retired |= bit;
        slab.publish_retired();
        Some((page, page + PAGE))
    }

    /// [`Pages::mark_retired`] for an object of more than one page.
    fn mark_pages_retired(&mut self, addr: usize) -> Option<(usize, usize)> {
        let page = addr & !(PAGE - 1);
        let lo = if self.pages.contains_key(&page) { page } else { *self.tails.get(&page)? };
        let object = self.pages.get_mut(&lo).expect("listed");
        if object.retired {
            return None;
        }
        object.retired = true;
        Some((lo, lo + object.len))
    }
}

/// The pages holding `addrs` become inaccessible, as [`retire`] does for
/// each, with one `mprotect` per maximal run of contiguous pages being
/// retired (a chain of NBLs back with its creator at once: their pages
/// are consecutive, see [`LentPage::zeroed_run`]). A page not being
/// retired is never inside a run, so a live object between two retired
/// ones stays accessible. Addresses outside every lent page, and objects
/// already retired, are left alone.
pub(crate) fn retire_many(addrs: &[usize]) {
    // The run growing as objects come (a chain comes in page order: one
    // run), and any finished before it.
    let (mut lo, mut hi) = (0, 0);
    let mut before: Vec<(usize, usize)> = Vec::new();
    {
        let mut st = pages();
        for &addr in addrs {
            let Some((a, b)) = st.mark_retired(addr) else { continue };
            if a != hi || lo == hi {
                if lo != hi {
                    before.push((lo, hi));
                }
                lo = a;
            }
            hi = b;
        }
    }
    // The system calls outside the lock (other threads' packets need it).
    if before.is_empty() {
        if lo != hi {
            protect_none(lo, hi);
        }
        return;
    }
    before.push((lo, hi));
    for (lo, hi) in maximal_runs(before) {
        protect_none(lo, hi);
    }
}

/// `runs` (disjoint page ranges) sorted, each joined to the next where
/// that starts where it ends: maximal runs.
fn maximal_runs(mut runs: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    runs.sort_unstable();
    let mut kept = 0;
    for i in 1..runs.len() {
        if runs[i].0 == runs[kept].1 {
            runs[kept].1 = runs[i].1;
        } else {
            kept += 1;
            runs[kept] = runs[i];
        }
    }
    runs.truncate(kept + 1);
    runs
}

/// Makes `[lo, hi)`, pages of objects just marked retired, inaccessible.
fn protect_none(lo: usize, hi: usize) {
    // SAFETY: live mappings made by `zeroed`/`zeroed_run`, each page of
    // [lo, hi) one of the objects just marked retired; only their
    // protection changes.
    let rc = unsafe { libc::mprotect(lo as *mut libc::c_void, hi - lo, libc::PROT_NONE) };
    assert_eq!(rc, 0, "lent pages mprotect: {}", std::io::Error::last_os_error());
}

/// Whether `addr` lies in a retired page (model code must not read it).
#[inline]
pub fn is_retired(addr: usize) -> bool {
    let page = addr & !(PAGE - 1);
    if let Some(b) = bits_of(slab_of(page)) {
        // A page of a slab: one-page objects only, described by its bit.
        return b.retired.load(Ordering::Acquire) & bit_of(page) != 0;
    }
    is_retired_locked(addr)
}

/// [`is_retired`] for an address whose slab has no [`BITS`] entry.
fn is_retired_locked(addr: usize) -> bool {
    pages().object_at(addr).is_some_and(|o| o.retired)
}

/// A fault at `addr` in a retired page: the driver touched an IRP after
/// completing it, or an NBL after it went back to its creator.
pub(crate) fn classify_fault(addr: usize, write: bool, rip: usize) -> Option<Violation> {
    let st = pages();
    let object = st.object_at(addr)?;
    if !object.retired {
        return None;
    }
    Some(Violation::new(
        object.kind.rule(),
        codes::DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL,
        [addr as u64, u64::from(write), rip as u64, 0],
        format!(
            "{} of {addr:#x}, {:#x} bytes into {} {}; rip {rip:#x})",
            if write { "write" } else { "read" },
            addr - object.lo,
            object.what,
            object.kind.when()
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
    fn a_retired_page_let_go_of_stays_inaccessible_while_fewer_than_a_quarantine_follow() {
        let _s = Session::begin(Config::default());
        let first = LentPage::<u64>::zeroed(Lent::Irp, "the first object");
        let addr = first.as_ptr() as usize;
        retire(addr);
        drop(first);
        // One short of a quarantine of retired pages let go of after it,
        // in runs as an operation's NBLs are.
        for _ in 0..(QUARANTINE - 1) / 3 {
            let run: Vec<_> = LentPage::<u64>::zeroed_run(3, Lent::Nbl, "an NBL").collect();
            retire_many(&run.iter().map(|p| p.as_ptr() as usize).collect::<Vec<_>>());
        }
        // SAFETY: deliberately reads the retired page; the harness catches
        // the fault.
        let v = call_driver("late", || unsafe { std::ptr::read_volatile(addr as *const u64) }).unwrap_err();
        assert_eq!(v.rule, "IRP used after completion", "{v}");
        assert!(v.detail.contains("0x0 bytes into the first object"), "reused too early: {v}");
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
    fn a_retired_run_faults_on_every_page_and_spares_a_live_page_between() {
        let run: Vec<_> = LentPage::<[u64; 8]>::zeroed_run(5, Lent::Nbl, "an NBL").collect();
        let addrs: Vec<usize> = run.iter().map(|p| p.as_ptr() as usize).collect();
        for w in addrs.windows(2) {
            assert_eq!(w[1], w[0] + PAGE, "a run's pages are consecutive: {addrs:x?}");
        }
        // Pages 0, 1, 3 and 4, out of order: two runs of two around a live
        // page.
        retire_many(&[addrs[4], addrs[1], addrs[0], addrs[3]]);
        // A session per touch: a bug check ends the session it stops.
        let read = |a: usize| {
            let _s = Session::begin(Config::default());
            // SAFETY: a lent page; when retired the harness catches the
            // fault.
            call_driver("late", || unsafe { std::ptr::read_volatile((a + 8) as *const u64) })
        };
        for i in [0, 1, 3, 4] {
            let v = read(addrs[i]).unwrap_err();
            assert_eq!(v.rule, "NBL used after it went back to its creator", "page {i}: {v}");
            assert!(is_retired(addrs[i]));
        }
        assert!(!is_retired(addrs[2]));
        let s = Session::begin(Config::default());
        // SAFETY: the live page of the run, lent to this test.
        let live = call_driver("live", || unsafe {
            std::ptr::write_volatile((addrs[2] + 8) as *mut u64, 5);
            std::ptr::read_volatile((addrs[2] + 8) as *const u64)
        });
        assert_eq!(live.expect("a live page between retired ones stays accessible"), 5);
        drop(s);
        retire_many(&[addrs[2]]);
        assert_eq!(read(addrs[2]).unwrap_err().rule, "NBL used after it went back to its creator");
    }

    #[test]
    fn a_run_that_does_not_fit_starts_a_fresh_slab_and_the_skipped_one_comes_back() {
        let _s = Session::begin(Config::default());
        let maps = || std::fs::read_to_string("/proc/self/maps").expect("maps").lines().count();
        let before = maps();
        let mut slabs = std::collections::HashSet::new();
        for _ in 0..4 * SLAB {
            let one = LentPage::<u64>::zeroed(Lent::Nbl, "an NBL");
            let run: Vec<_> = LentPage::<u64>::zeroed_run(SLAB / 2 + 1, Lent::Nbl, "an NBL").collect();
            let (first, last) = (run[0].as_ptr() as usize, run[SLAB / 2].as_ptr() as usize);
            assert_eq!(last - first, SLAB / 2 * PAGE, "one run, consecutive pages");
            assert_eq!(slab_of(first), slab_of(last), "one run, one slab");
            slabs.insert(slab_of(first));
            drop(one);
            // Every other run leaves the rest of a slab unlent; it comes
            // back with its lent pages and is reused or unmapped.
            drop(run);
        }
        assert!(maps() < before + SPARE + 16, "mappings grew from {before} to {}", maps());
        // A slab that never came back stays mapped: the next is a new one.
        assert!(slabs.len() <= 2 * SPARE + 4, "{} slabs used: skipped slabs not reused", slabs.len());
    }

    #[test]
    fn pages_taken_ahead_are_handed_out_in_turn_and_let_go_of_with_their_holder() {
        let _s = Session::begin(Config::default());
        let mut ahead = Ahead::new();
        let mut one = || LentPage::<u64>::zeroed_run_ahead(1, Lent::Nbl, "an NBL", &mut ahead).collect::<Vec<_>>();
        let (first, second) = (one(), one());
        let (a, b) = (first[0].as_ptr() as usize, second[0].as_ptr() as usize);
        assert_eq!(b, a + PAGE, "taken ahead together, handed out in turn");
        // The next page is lent, not handed out; its slab cannot come back
        // (and lend it again) while `first` and `second` are held.
        let left = b + PAGE;
        assert!(pages().object_at(left).is_some_and(|o| !o.retired), "taken ahead: lent");
        drop(ahead);
        assert!(pages().object_at(left).is_none(), "let go of with its holder");
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
