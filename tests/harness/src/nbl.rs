//! NET_BUFFER_LISTs, NET_BUFFERs and MDLs built by the model from its own
//! memory, carrying real frames.
//!
//! Each NET_BUFFER's data may start `data_offset` bytes into its MDL chain
//! (headroom, optionally in an MDL of its own) and the frame may be cut into
//! several MDLs at arbitrary offsets, so a header can straddle two MDLs.

use smallvec::SmallVec;

use crate::guarded::GuardedBuf;
use crate::lent::{Ahead, Lent, LentPage};
use core::ffi::c_void;

use crate::frames::Frame;
use ndis_sys::{
    MAX_NET_BUFFER_LIST_INFO_NDIS630, MDL, NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET, NET_BUFFER, NET_BUFFER_DATA_LENGTH,
    NET_BUFFER_LIST,
};

/// `MDL_SOURCE_IS_NONPAGED_POOL`: `MmGetSystemAddressForMdlSafe` then reads
/// `MappedSystemVa` directly, as for NDIS-allocated MDLs.
pub const MDL_SOURCE_IS_NONPAGED_POOL: i16 = 0x0004;

/// How the bytes of each NET_BUFFER are laid out in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// `DataOffset`: unused bytes before the frame in the MDL chain.
    pub data_offset: u32,
    /// Put the headroom in an MDL of its own (so `CurrentMdl != MdlChain`).
    pub headroom_mdl: bool,
    /// Offsets into the frame where a new MDL starts.
    pub cuts: Vec<usize>,
}

impl Layout {
    /// Frame cut every `n` bytes (n > 0), no headroom.
    pub fn every(n: usize, frame_len: usize) -> Self {
        Layout { cuts: (n..frame_len).step_by(n).collect(), ..Layout::default() }
    }
}

/// What one NET_BUFFER_LIST carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NblSpec {
    /// One frame per NET_BUFFER, in order.
    pub frames: Vec<Frame>,
    /// Memory layout of every NET_BUFFER.
    pub layout: Layout,
    /// Set `NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET`.
    pub loopback: bool,
}

impl NblSpec {
    /// One NET_BUFFER per frame, contiguous, not looped back.
    pub fn of(frames: Vec<Frame>) -> Self {
        NblSpec { frames, layout: Layout::default(), loopback: false }
    }
}

/// `NetBufferListInfo` entries of a model NBL: more than any Windows
/// version's `MaxNetBufferListInfo`, so a driver indexing past the NDIS 6.30
/// entries reads zeroes instead of someone else's memory.
pub const MODEL_NBL_INFO_ENTRIES: usize = 32;

/// A NET_BUFFER_LIST followed by the rest of its `NetBufferListInfo` array
/// (`NET_BUFFER_LIST` holds the NDIS 6.30 entries only).
#[repr(C)]
struct NblBlock {
    nbl: NET_BUFFER_LIST,
    _more_info: [*mut c_void; MODEL_NBL_INFO_ENTRIES - MAX_NET_BUFFER_LIST_INFO_NDIS630],
}

// The extra entries continue the array with no gap.
const _: () = assert!(
    core::mem::offset_of!(NblBlock, _more_info)
        == core::mem::offset_of!(NET_BUFFER_LIST, NetBufferListInfo)
            + MAX_NET_BUFFER_LIST_INFO_NDIS630 * core::mem::size_of::<*mut c_void>()
);

/// An MDL with room for the page frame numbers that follow it.
#[repr(C)]
struct MdlBlock {
    mdl: MDL,
    pfns: [u64; 4],
}

/// One NET_BUFFER_LIST and everything it points to, owned by the model.
/// The vectors are allocated at their final size before anything points
/// into them and never grow, so every address stays put while the value
/// moves (the NBL, NET_BUFFERs and MDLs point at each other).
pub struct NblAlloc {
    /// In a page of its own, inaccessible once back with its creator.
    nbl: LentPage<NblBlock>,
    /// What the NBL points into (reached through those pointers only),
    /// and the spec when it owns it. Boxed: an NBL is moved into its
    /// operation's vector and out again, and stays small.
    parts: Box<Parts>,
    /// What the NBL was built from: the caller's spec, borrowed for the
    /// operation that built it (no copy per packet), or `parts.spec`.
    /// INVARIANT: the spec outlives this NblAlloc: it is in `parts`, or
    /// the caller's, which [`own_specs`] copies into `parts` before the
    /// operation that built it returns if the NBL is to outlive it (see
    /// [`build_all_borrowed`]).
    spec: core::ptr::NonNull<NblSpec>,
}

/// The NET_BUFFERs, MDLs and data buffers of one NBL, and its spec when
/// it owns one.
#[derive(Default)]
struct Parts {
    nbs: Vec<NET_BUFFER>,
    mdls: Vec<MdlBlock>,
    /// The NBL's data buffers (the first `live`), then idle ones of an
    /// earlier NBL kept to be filled again in place (at most
    /// [`KEPT_BUFFERS`] kept): the next NBL built with these parts takes
    /// no buffer from the guarded-buffer table, nor moves one.
    buffers: Vec<GuardedBuf>,
    /// How many of `buffers` hold this NBL's data.
    live: usize,
    /// A spec of its own, boxed and held as a pointer (freed on drop):
    /// [`NblAlloc::spec`] points to it while the parts move.
    spec: Option<core::ptr::NonNull<NblSpec>>,
}

impl Drop for Parts {
    fn drop(&mut self) {
        self.drop_spec();
    }
}

impl Parts {
    /// Room for `nbs` NET_BUFFERs and `mdls` MDLs and buffers, reserved
    /// before anything points into them.
    fn reserve(&mut self, nbs: usize, mdls: usize) {
        self.nbs.reserve_exact(nbs);
        self.mdls.reserve_exact(mdls);
        self.buffers.reserve_exact(mdls.saturating_sub(self.buffers.len()));
    }

    /// Keeps `spec` (in place of any it had); where it lies.
    fn own(&mut self, spec: NblSpec) -> core::ptr::NonNull<NblSpec> {
        self.drop_spec();
        *self.spec.insert(core::ptr::NonNull::from(Box::leak(Box::new(spec))))
    }

    /// Frees the spec of its own, if any.
    fn drop_spec(&mut self) {
        if let Some(spec) = self.spec.take() {
            // SAFETY: made by `Box::leak` in `own`, freed only here (taken
            // out first).
            drop(unsafe { Box::from_raw(spec.as_ptr()) });
        }
    }
}

/// Emptied [`Parts`] kept per thread.
const SPARE_PARTS: usize = 16;
/// Idle data buffers kept by one [`Parts`].
const KEPT_BUFFERS: usize = 4;
/// Emptied vectors of NBLs kept per thread, and the largest capacity kept.
const SPARE_VECS: usize = 4;
const SPARE_VEC_CAPACITY: usize = 64;

/// What an operation's NBLs are built from, kept per thread: the vector
/// they are built into and each one's [`Parts`], emptied and kept when the
/// operation is over ([`free_all`]), so that a packet allocates none.
#[derive(Default)]
struct Spare {
    vecs: Vec<Vec<NblAlloc>>,
    // Boxed on purpose: a box goes back and forth between this cache and
    // an NBL without its `Parts` being moved or allocated again.
    #[allow(clippy::vec_box)]
    parts: Vec<Box<Parts>>,
    /// NBL pages taken ahead from the lent-page table.
    ahead: Ahead,
}

impl Spare {
    /// An emptied vector of NBLs, or a new one.
    fn vec(&mut self) -> Vec<NblAlloc> {
        self.vecs.pop().unwrap_or_default()
    }

    /// Emptied parts, or new ones.
    fn parts(&mut self) -> Box<Parts> {
        self.parts.pop().unwrap_or_default()
    }

    /// Keeps `parts`, emptied (up to [`KEPT_BUFFERS`] data buffers kept
    /// idle in them, the others back to their own cache), if fewer than
    /// [`SPARE_PARTS`] are kept.
    #[inline(always)]
    fn keep_parts(&mut self, mut parts: Box<Parts>) {
        if self.parts.len() < SPARE_PARTS {
            let Parts { buffers, live, .. } = &mut *parts;
            buffers.truncate(KEPT_BUFFERS);
            for b in &buffers[..(*live).min(KEPT_BUFFERS)] {
                b.set_idle();
            }
            *live = 0;
            parts.mdls.clear();
            parts.nbs.clear();
            parts.drop_spec();
            self.parts.push(parts);
        }
    }

    /// Keeps `v` (emptied) if it is small and fewer than [`SPARE_VECS`]
    /// are kept.
    fn keep_vec(&mut self, v: Vec<NblAlloc>) {
        debug_assert!(v.is_empty());
        if v.capacity() <= SPARE_VEC_CAPACITY && self.vecs.len() < SPARE_VECS {
            self.vecs.push(v);
        }
    }
}

thread_local! {
    static SPARE: std::cell::RefCell<Spare> =
        const { std::cell::RefCell::new(Spare { vecs: Vec::new(), parts: Vec::new(), ahead: Ahead::new() }) };
}

/// Runs `f` with this thread's [`Spare`] (taken once per operation), or
/// with an empty one when that is out of reach (the thread is exiting).
fn with_spare<R>(f: impl FnOnce(&mut Spare) -> R) -> R {
    let mut f = Some(f);
    let done = SPARE.try_with(|s| s.try_borrow_mut().ok().map(|mut s| f.take().expect("run once")(&mut s)));
    match done {
        Ok(Some(r)) => r,
        _ => f.take().expect("not run")(&mut Spare::default()),
    }
}

/// The NBLs of one operation, one per spec, in a vector kept from an
/// earlier operation on this thread when there is one.
pub fn build_all(specs: Vec<NblSpec>) -> Vec<NblAlloc> {
    with_spare(|spare| {
        let mut v = spare.vec();
        // On consecutive pages: a chain back with its creator at once is
        // retired with one system call.
        let blocks = LentPage::zeroed_run_ahead(specs.len(), Lent::Nbl, "an NBL", &mut spare.ahead);
        v.extend(specs.into_iter().zip(blocks).map(|(spec, block)| {
            let mut parts = spare.parts();
            let spec = parts.own(spec);
            // SAFETY: the spec is boxed in the parts the NBL keeps.
            unsafe { NblAlloc::build(spec, block, parts) }
        }));
        v
    })
}

/// Like [`build_all`], borrowing the specs instead of taking them: a caller
/// sending the same frames again copies nothing but their bytes into the
/// NBLs' buffers.
///
/// # Safety
/// Every spec outlives the returned NBLs, unless [`own_specs`] is called on
/// them first (an operation that ends in a violation keeps its NBLs until
/// the session ends: it makes their specs owned before it returns).
pub unsafe fn build_all_borrowed(specs: &[NblSpec]) -> Vec<NblAlloc> {
    with_spare(|spare| {
        let mut v = spare.vec();
        let blocks = LentPage::zeroed_run_ahead(specs.len(), Lent::Nbl, "an NBL", &mut spare.ahead);
        v.extend(specs.iter().zip(blocks).map(|(spec, block)| {
            // SAFETY: the caller's promise: the spec outlives the NBL, or
            // is copied into its parts first.
            unsafe { NblAlloc::build(spec.into(), block, spare.parts()) }
        }));
        v
    })
}

/// Makes every borrowed spec of `allocs` owned (a copy), so that they may
/// outlive the caller's specs.
pub fn own_specs(allocs: &mut [NblAlloc]) {
    for a in allocs {
        if a.parts.spec.is_none() {
            a.spec = a.parts.own(a.spec().clone());
        }
    }
}

/// Frees an operation's NBLs (their pages let go of under one lock) and
/// keeps their vector and parts for the next one.
pub fn free_all(mut allocs: Vec<NblAlloc>) {
    with_spare(|spare| {
        // Each NBL's other parts are emptied as its page is let go of.
        crate::lent::release_all(std::iter::from_fn(|| {
            let a = allocs.pop()?;
            spare.keep_parts(a.parts);
            Some(a.nbl)
        }));
        spare.keep_vec(allocs);
    });
}

// SAFETY: the raw pointers inside point only into the boxes this value owns
// and, for a borrowed spec, to plain data that is only read (NblSpec is
// Sync); which thread may touch the NBL is governed by the NBL ownership
// protocol the model tracks, not by the thread that allocated it.
unsafe impl Send for NblAlloc {}

impl std::fmt::Debug for NblAlloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NblAlloc").field("nbl", &self.as_ptr()).field("frames", &self.spec().frames.len()).finish()
    }
}

impl NblAlloc {
    /// Builds the NBL, its NET_BUFFERs, MDLs and data buffers.
    pub fn new(spec: NblSpec) -> Self {
        // NET_BUFFER_LIST and the extra info entries are plain data for
        // which all-zero is valid (null pointers, zero counters).
        let block = LentPage::zeroed(Lent::Nbl, "an NBL");
        with_spare(|spare| {
            let mut parts = spare.parts();
            let spec = parts.own(spec);
            // SAFETY: the spec is boxed in the parts the NBL keeps.
            unsafe { Self::build(spec, block, parts) }
        })
    }

    /// Builds the NBL of `spec_at` in `block` (zeroed), with its
    /// NET_BUFFERs, MDLs and data buffers in `parts` (empty, or holding
    /// only that spec).
    ///
    /// # Safety
    /// The spec outlives the value (the invariant of `spec`).
    unsafe fn build(
        spec_at: core::ptr::NonNull<NblSpec>,
        mut block: LentPage<NblBlock>,
        mut parts: Box<Parts>,
    ) -> Self {
        // SAFETY: per the contract, the spec outlives this call.
        let spec = unsafe { spec_at.as_ref() };
        assert!(!spec.frames.is_empty(), "an NBL has at least one NET_BUFFER");
        // Sized up front: one MDL per frame unless the layout cuts it.
        let mdl_count = spec.frames.len() * (1 + spec.layout.cuts.len() + usize::from(spec.layout.headroom_mdl));
        parts.reserve(spec.frames.len(), mdl_count);
        let Parts { nbs, mdls, buffers, live, .. } = &mut *parts;
        let mut data = DataBuffers { buffers, live };
        for frame in &spec.frames {
            build_nb(&frame.bytes, &spec.layout, push_zeroed(nbs), mdls, &mut data);
        }
        for i in 1..nbs.len() {
            let next: *mut NET_BUFFER = &mut nbs[i];
            nbs[i - 1].Next = next;
        }
        let nbl = &mut block.nbl;
        nbl.FirstNetBuffer = &mut nbs[0];
        if spec.loopback {
            nbl.NblFlags |= NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET;
        }
        NblAlloc { nbl: block, parts, spec: spec_at }
    }

    /// The NET_BUFFER_LIST handed to the driver.
    pub fn as_ptr(&self) -> *mut NET_BUFFER_LIST {
        self.nbl.as_ptr().cast()
    }

    /// What the NBL was built from.
    pub fn spec(&self) -> &NblSpec {
        // SAFETY: the spec outlives this value (the invariant of `spec`).
        unsafe { self.spec.as_ref() }
    }
}

/// Plain data for which all zero is a valid value.
///
/// # Safety
/// All-zero bytes are a valid `Self`.
unsafe trait Zeroable: Sized {}
// SAFETY: plain C data: integers and pointers; all zero is the empty state.
unsafe impl Zeroable for NET_BUFFER {}
// SAFETY: as above.
unsafe impl Zeroable for MdlBlock {}

/// Appends an all-zero element to `v`, whose capacity must hold it
/// (element addresses must stay put, see NblAlloc), built in place.
fn push_zeroed<T: Zeroable>(v: &mut Vec<T>) -> &mut T {
    assert!(v.len() < v.capacity(), "NET_BUFFERs and MDLs counted up front");
    // SAFETY: `T` is valid all zero (`Zeroable`).
    v.push(unsafe { core::mem::zeroed() });
    v.last_mut().expect("just pushed")
}

/// Fills `nb` (zeroed) with one frame and its MDLs, pushed onto `mdls`,
/// whose capacity must hold them (element addresses must stay put, see
/// NblAlloc).
fn build_nb(frame: &[u8], layout: &Layout, nb: &mut NET_BUFFER, mdls: &mut Vec<MdlBlock>, data: &mut DataBuffers<'_>) {
    nb.DataLength = NET_BUFFER_DATA_LENGTH { stDataLength: frame.len() };
    if layout.data_offset == 0 && layout.cuts.is_empty() {
        // The common layout: the frame in one MDL, built without the
        // general case's list of cuts.
        let mdl = push_mdl(frame, mdls, data);
        nb.CurrentMdl = mdl;
        nb.MdlChain = mdl;
        return;
    }
    let offset = layout.data_offset as usize;
    // The headroom's bytes, then the frame (no copy when there is none).
    let stream: std::borrow::Cow<'_, [u8]> = if offset == 0 {
        frame.into()
    } else {
        let mut s = vec![0xEE; offset];
        s.extend_from_slice(frame);
        s.into()
    };
    let mut cuts: Vec<usize> = layout.cuts.iter().map(|c| c + offset).filter(|&c| c > 0 && c < stream.len()).collect();
    if layout.headroom_mdl && offset > 0 {
        cuts.push(offset);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let first_mdl = mdls.len();
    let mut start = 0;
    for end in cuts.into_iter().chain(std::iter::once(stream.len())) {
        let mdl = push_mdl(&stream[start..end], mdls, data);
        if start <= offset && offset < end {
            nb.CurrentMdl = mdl;
            nb.CurrentMdlOffset = (offset - start) as u32;
        }
        start = end;
    }
    for i in first_mdl + 1..mdls.len() {
        let next: *mut MDL = &mut mdls[i].mdl;
        mdls[i - 1].mdl.Next = next;
    }
    nb.MdlChain = &mut mdls[first_mdl].mdl;
    nb.DataOffset = layout.data_offset;
}

/// How a fault report names an MDL's data.
const MDL_DATA: &str = "the data of an MDL of a NET_BUFFER";

/// The data buffers of an NBL being built: the first `live` of `buffers`
/// are its own, the others idle ones of an earlier NBL to fill again.
struct DataBuffers<'a> {
    buffers: &'a mut Vec<GuardedBuf>,
    live: &'a mut usize,
}

impl DataBuffers<'_> {
    /// The NBL's next buffer, holding a copy of `bytes`: the next idle one
    /// filled again in place when it fits (else it is replaced by a new
    /// one, the idle one back to its table), or a new one.
    fn holding(&mut self, bytes: &[u8]) -> &GuardedBuf {
        let i = *self.live;
        *self.live += 1;
        match self.buffers.get_mut(i) {
            Some(b) => {
                if !b.refill(bytes) {
                    *b = GuardedBuf::new(bytes, MDL_DATA);
                }
            }
            None => self.buffers.push(GuardedBuf::new(bytes, MDL_DATA)),
        }
        &self.buffers[i]
    }
}

/// An MDL describing a copy of `bytes`, pushed onto `mdls` (capacity
/// reserved), its buffer onto the NBL's buffers. The bytes end right before a
/// guard page: a parse that runs past the data (or past one MDL of a
/// split header) faults.
fn push_mdl(bytes: &[u8], mdls: &mut Vec<MdlBlock>, data: &mut DataBuffers<'_>) -> *mut MDL {
    let buffer = data.holding(bytes);
    let (va, len) = (buffer.as_mut_ptr() as usize, buffer.len());
    let pages = ((va & 0xfff) + len).div_ceil(0x1000).max(1);
    let mdl = &mut push_zeroed(mdls).mdl;
    mdl.Size = (core::mem::size_of::<MDL>() + 8 * pages) as i16;
    mdl.MdlFlags = MDL_SOURCE_IS_NONPAGED_POOL;
    mdl.StartVa = (va & !0xfff) as *mut _;
    mdl.ByteOffset = (va & 0xfff) as u32;
    mdl.ByteCount = len as u32;
    mdl.MappedSystemVa = va as *mut _;
    mdl
}

/// Links the NBLs at the addresses `nbls` into one chain through `Next`
/// (the last one's `Next` is NULL) and returns its head.
pub fn link(nbls: &[usize]) -> *mut NET_BUFFER_LIST {
    for (i, &nbl) in nbls.iter().enumerate() {
        let next = nbls.get(i + 1).map_or(core::ptr::null_mut(), |&n| n as *mut NET_BUFFER_LIST);
        // SAFETY: every address is a live model-owned NBL (callers pass only
        // `NblAlloc::as_ptr` values they currently own).
        unsafe { (*(nbl as *mut NET_BUFFER_LIST)).Next = next };
    }
    nbls.first().map_or(core::ptr::null_mut(), |&n| n as *mut NET_BUFFER_LIST)
}

/// The addresses of the NBLs of the chain starting at `head`, at most
/// `limit` (a cycle guard).
///
/// # Safety
/// `head` is NULL or a readable NET_BUFFER_LIST chain.
#[inline]
pub unsafe fn walk(head: *mut NET_BUFFER_LIST, limit: usize) -> SmallVec<[usize; 4]> {
    let mut out = SmallVec::new();
    let mut cur = head;
    while !cur.is_null() && out.len() < limit {
        out.push(cur as usize);
        if crate::lent::is_retired(cur as usize) {
            // Back with its creator already: its link is not the driver's
            // (whoever checks the chain reports the NBL itself).
            break;
        }
        // SAFETY: per the contract, every element of the chain is readable.
        cur = unsafe { (*cur).Next };
    }
    out
}

/// The NET_BUFFERs of `nbl`.
///
/// # Safety
/// `nbl` points to a readable NET_BUFFER_LIST whose NET_BUFFER list is
/// readable.
#[inline]
pub unsafe fn net_buffers(nbl: *const NET_BUFFER_LIST) -> SmallVec<[*mut NET_BUFFER; 4]> {
    // Read on every hop to the far end: no allocation for short lists.
    let mut out = SmallVec::new();
    // SAFETY: per the contract.
    let mut nb = unsafe { (*nbl).FirstNetBuffer };
    while !nb.is_null() && out.len() < 4096 {
        out.push(nb);
        // SAFETY: per the contract.
        nb = unsafe { (*nb).Next };
    }
    out
}

/// Copies `len` data bytes of `nb`, starting `skip` bytes after the current
/// data start (`CurrentMdl` + `CurrentMdlOffset`), into `out`; returns
/// false when the MDL chain holds fewer bytes.
///
/// # Safety
/// `nb` points to a readable NET_BUFFER whose MDL chain maps readable memory.
pub unsafe fn copy_data(nb: *const NET_BUFFER, skip: usize, out: &mut [u8]) -> bool {
    let mut done = 0;
    // SAFETY: per the contract.
    unsafe {
        for_each_chunk(nb, skip, out.len(), |chunk| {
            out[done..done + chunk.len()].copy_from_slice(chunk);
            done += chunk.len();
            true
        })
    }
}

/// Whether the data of `nb`, from the current data start, begins with
/// `bytes` (compared in place in each MDL: no copy).
///
/// # Safety
/// As for [`copy_data`].
pub unsafe fn data_starts_with(nb: *const NET_BUFFER, bytes: &[u8]) -> bool {
    let mut done = 0;
    // SAFETY: per the contract.
    unsafe {
        for_each_chunk(nb, 0, bytes.len(), |chunk| {
            let same = chunk == &bytes[done..done + chunk.len()];
            done += chunk.len();
            same
        })
    }
}

/// Hands `f` the `len` data bytes of `nb` that start `skip` bytes after
/// the current data start, one MDL's part at a time, while it returns
/// true; false when the MDL chain holds fewer bytes or `f` returned false.
///
/// # Safety
/// As for [`copy_data`].
unsafe fn for_each_chunk(nb: *const NET_BUFFER, skip: usize, len: usize, mut f: impl FnMut(&[u8]) -> bool) -> bool {
    // SAFETY: per the contract.
    let (mut mdl, mut in_mdl) = unsafe { ((*nb).CurrentMdl, (*nb).CurrentMdlOffset as usize + skip) };
    let mut done = 0;
    while done < len {
        if mdl.is_null() {
            return false;
        }
        // SAFETY: per the contract, each MDL in the chain is readable and
        // maps ByteCount bytes at MappedSystemVa.
        let (va, count, next) = unsafe { ((*mdl).MappedSystemVa as *const u8, (*mdl).ByteCount as usize, (*mdl).Next) };
        if in_mdl >= count {
            in_mdl -= count;
            mdl = next;
            continue;
        }
        let n = (count - in_mdl).min(len - done);
        // SAFETY: `va + in_mdl .. + n` lies inside this MDL's mapping.
        if !f(unsafe { std::slice::from_raw_parts(va.add(in_mdl), n) }) {
            return false;
        }
        done += n;
        in_mdl = 0;
        mdl = next;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{FrameSpec, IPPROTO_TCP};

    fn frame() -> Frame {
        FrameSpec::ipv4(IPPROTO_TCP, 1000, 80).build()
    }

    #[test]
    fn borrowed_specs_are_read_in_place_and_copied_when_owned() {
        let specs = vec![NblSpec::of(vec![frame()]), NblSpec::of(vec![frame(), frame()])];
        // SAFETY: `specs` outlives the NBLs until `own_specs` below.
        let mut allocs = unsafe { build_all_borrowed(&specs) };
        for (a, s) in allocs.iter().zip(&specs) {
            assert!(std::ptr::eq(a.spec(), s), "a borrowed spec is the caller's, not a copy");
        }
        own_specs(&mut allocs);
        for (a, s) in allocs.iter().zip(&specs) {
            assert!(!std::ptr::eq(a.spec(), s) && a.spec() == s, "an owned spec is an equal copy");
        }
        let expected = specs.clone();
        drop(specs);
        for (a, s) in allocs.iter().zip(&expected) {
            assert_eq!(a.spec(), s, "the copy outlives the caller's spec");
        }
        free_all(allocs);
    }

    #[test]
    fn split_frame_reads_back_whole() {
        let f = frame();
        let layout = Layout { data_offset: 6, headroom_mdl: true, cuts: vec![3, 14, 15, 40] };
        let alloc = NblAlloc::new(NblSpec { frames: vec![f.clone(), f.clone()], layout, loopback: true });
        // SAFETY: the NBL and its buffers are owned by `alloc`, alive here.
        unsafe {
            let nbs = net_buffers(alloc.as_ptr());
            assert_eq!(nbs.len(), 2);
            let nb = nbs[1];
            assert_eq!((*nb).DataLength.get() as usize, f.bytes.len());
            assert_ne!((*nb).CurrentMdl, (*nb).MdlChain, "headroom is an MDL of its own");
            assert_eq!((*nb).CurrentMdlOffset, 0);
            let mut out = vec![0; f.bytes.len()];
            assert!(copy_data(nb, 0, &mut out));
            assert_eq!(out, f.bytes);
            let mut too_long = vec![0; f.bytes.len() + 1];
            assert!(!copy_data(nb, 0, &mut too_long));
            assert_ne!((*alloc.as_ptr()).NblFlags & NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET, 0);
        }
    }

    #[test]
    fn headroom_inside_first_mdl_sets_current_offset() {
        let f = frame();
        let alloc = NblAlloc::new(NblSpec {
            frames: vec![f.clone()],
            layout: Layout { data_offset: 10, ..Layout::default() },
            loopback: false,
        });
        // SAFETY: owned by `alloc`, alive here.
        unsafe {
            let nb = net_buffers(alloc.as_ptr())[0];
            assert_eq!((*nb).CurrentMdl, (*nb).MdlChain);
            assert_eq!((*nb).CurrentMdlOffset, 10);
            let mut out = vec![0; 4];
            assert!(copy_data(nb, 34, &mut out));
            assert_eq!(out, f.bytes[34..38]);
        }
    }

    #[test]
    fn data_compared_in_place_across_mdls() {
        let f = frame();
        let layout = Layout { data_offset: 6, headroom_mdl: true, cuts: vec![3, 14, 15, 40] };
        let alloc = NblAlloc::new(NblSpec { frames: vec![f.clone()], layout, loopback: false });
        // SAFETY: owned by `alloc`, alive here.
        unsafe {
            let nb = net_buffers(alloc.as_ptr())[0];
            assert!(data_starts_with(nb, &f.bytes));
            let mut changed = f.bytes.clone();
            changed[20] ^= 1;
            assert!(!data_starts_with(nb, &changed), "a changed byte in the third MDL");
            let mut longer = f.bytes.clone();
            longer.push(0);
            assert!(!data_starts_with(nb, &longer), "more bytes than the chain holds");
        }
    }

    #[test]
    fn link_and_walk() {
        let a = NblAlloc::new(NblSpec::of(vec![frame()]));
        let b = NblAlloc::new(NblSpec::of(vec![frame()]));
        let head = link(&[a.as_ptr() as usize, b.as_ptr() as usize]);
        // SAFETY: both NBLs are alive.
        let all = unsafe { walk(head, 10) };
        assert_eq!(all[..], [a.as_ptr() as usize, b.as_ptr() as usize]);
    }
}
