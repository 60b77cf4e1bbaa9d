//! Walking NET_BUFFER_LIST chains on the data path.
//!
//! All raw NBL access of the driver is here. The chains are NDIS's: valid
//! for the duration of the handler that received them, until the driver
//! passes them on (after which it must not touch them, not even `Next`).

use core::mem::MaybeUninit;

use ndis_sys::{
    NdisGetDataBuffer, MDL_MAPPED_TO_SYSTEM_VA, MDL_SOURCE_IS_NONPAGED_POOL, NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET,
    NDIS_STATUS, NET_BUFFER, NET_BUFFER_LIST,
};

use ndis_sync::Dispatch;

use crate::datapath;
use crate::parse::{HEADER_BYTES, PLAIN_IPV4};
use crate::percpu::Cpu;
use crate::ports::{Direction, NoEvents, PortTable, Watch};

/// An NBL chain owned by the current handler.
#[derive(Clone, Copy)]
pub struct Chain(*mut NET_BUFFER_LIST);

impl Chain {
    /// Wraps the chain a filter handler received.
    ///
    /// # Safety
    ///
    /// `head` must be NULL or the first of a NULL-terminated chain of valid
    /// NBLs (each with a NULL-terminated list of valid NET_BUFFERs) that the
    /// caller owns until it passes the chain on, and the returned `Chain`
    /// must not be used after that.
    pub unsafe fn new(head: *mut NET_BUFFER_LIST) -> Self {
        Chain(head)
    }

    /// The raw head, to pass the chain on.
    pub fn raw(self) -> *mut NET_BUFFER_LIST {
        self.0
    }

    #[inline(always)]
    fn for_each_nbl(self, mut f: impl FnMut(&mut NET_BUFFER_LIST)) {
        let mut nbl = self.0;
        while !nbl.is_null() {
            // SAFETY: `new`'s contract: every NBL of the chain is valid and
            // ours until the chain is passed on.
            let current = unsafe { &mut *nbl };
            nbl = current.Next;
            f(current);
        }
    }

    /// Sets every NBL's completion status (NET_BUFFER_LIST_STATUS).
    pub fn set_status(self, status: NDIS_STATUS) {
        self.for_each_nbl(|nbl| nbl.Status = status);
    }

    /// Counts every NET_BUFFER of every NBL in `table`, skipping NBLs that
    /// NDIS looped back (their send was already counted).
    /// `cpu` is the current processor (the caller holds the table's read
    /// lock, at DISPATCH_LEVEL). Returns whether a packet of the chain is
    /// watched (always false with [`NoEvents`](crate::ports::NoEvents),
    /// which only counts): the caller then calls [`Chain::record_events`].
    #[inline(always)]
    pub fn count<W: Watch>(self, table: &PortTable, direction: Direction, cpu: Cpu<'_>) -> bool {
        match direction {
            Direction::Tx => self.count_in::<true, W>(table, cpu),
            Direction::Rx => self.count_in::<false, W>(table, cpu),
        }
    }

    /// [`Chain::count`] with the direction a constant (`TX`: sent): one
    /// out-of-line copy per direction, its arguments in registers (a
    /// closure's captures would be read through memory for every NBL), and
    /// per kind of [`Watch`].
    ///
    /// The loop counts the common packet only (plain IPv4 whose first
    /// [`PLAIN_IPV4`] bytes are in place) and makes no call but the
    /// bug-check of a missing per-processor slot, which does not return: no
    /// value it holds must survive a call, so it needs fewer callee-saved
    /// registers, and the slot offset is computed once per chain. The first
    /// packet it cannot count that way hands that packet and the rest of
    /// the chain to [`Chain::count_rest`], out of line (a tail call).
    #[inline(never)]
    fn count_in<const TX: bool, W: Watch>(self, table: &PortTable, cpu: Cpu<'_>) -> bool {
        let direction = if TX { Direction::Tx } else { Direction::Rx };
        // Set only for a watched packet (no value merged per packet).
        let watched = W::default();
        let mut nbl = self.0;
        while !nbl.is_null() {
            // SAFETY: `new`'s contract: every NBL of the chain is valid and
            // ours until the chain is passed on.
            let current = unsafe { &*nbl };
            nbl = current.Next;
            if current.NblFlags & NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET != 0 {
                continue;
            }
            let mut nb = current.FirstNetBuffer;
            while !nb.is_null() {
                // SAFETY: `new`'s contract covers the NBL's NET_BUFFER list.
                let this = unsafe { &*nb };
                let counted = match plain_header(this) {
                    Some(header) => {
                        let bytes = u64::from(this.DataLength.get());
                        datapath::count_plain_ipv4(table, header, bytes, direction, cpu, &watched)
                    }
                    None => Ok(false),
                };
                match counted {
                    Ok(true) => {}
                    Ok(false) => {
                        // `nbl` is already the next NBL: the rest of the
                        // chain. Both calls are tail calls: once a packet
                        // was watched, the rest only counts.
                        let rest = Chain(nbl);
                        return if watched.watched() {
                            rest.count_rest_watched::<TX>(nb, table, cpu)
                        } else {
                            rest.count_rest::<TX, W>(nb, table, cpu)
                        };
                    }
                    Err(no_slot) => return no_slot.bug_check(),
                }
                nb = this.Next;
            }
        }
        watched.watched()
    }

    /// The rest of [`Chain::count_in`]'s work, from a packet its loop could
    /// not count: the NET_BUFFERs from `nb` on (the rest of an NBL whose
    /// NBL was not looped back), then the NBLs of `self` (the NBLs after
    /// that one), every packet through the general path (in place or copied
    /// header, any frame [`crate::parse::classify`] accepts). Cold: a chain
    /// of common packets never comes here.
    #[cold]
    #[inline(never)]
    fn count_rest<const TX: bool, W: Watch>(self, mut nb: *mut NET_BUFFER, table: &PortTable, cpu: Cpu<'_>) -> bool {
        let direction = if TX { Direction::Tx } else { Direction::Rx };
        let watched = W::default();
        let mut nbl = self.0;
        // One walk (one copy of the general path): the NET_BUFFERs left in
        // the current NBL, then those of each later NBL not looped back.
        loop {
            while !nb.is_null() {
                // SAFETY: `new`'s contract covers the NBL's NET_BUFFER list.
                let current = unsafe { &*nb };
                count_net_buffer(table, current, direction, cpu, &watched);
                nb = current.Next;
            }
            loop {
                if nbl.is_null() {
                    return watched.watched();
                }
                // SAFETY: `new`'s contract: every NBL of the chain is valid
                // and ours until the chain is passed on.
                let current = unsafe { &*nbl };
                nbl = current.Next;
                if current.NblFlags & NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET == 0 {
                    nb = current.FirstNetBuffer;
                    break;
                }
            }
        }
    }

    /// [`Chain::count_rest`] of a chain already known to hold a watched
    /// packet: counting only (the copy without events), and the chain is
    /// watched whatever the rest holds.
    #[cold]
    #[inline(never)]
    fn count_rest_watched<const TX: bool>(self, nb: *mut NET_BUFFER, table: &PortTable, cpu: Cpu<'_>) -> bool {
        self.count_rest::<TX, NoEvents>(nb, table, cpu);
        true
    }

    /// Records the events of the chain's watched packets (those
    /// [`Chain::count`] found on a port whose endpoint enabled events), in
    /// the chain's order, after the whole chain was counted and under the
    /// same hold of the port table's read lock. Out of line: the counting
    /// code keeps nothing of the event stream alive, and a chain with no
    /// watched packet never comes here. `if_index` is the module's.
    #[cold]
    #[inline(never)]
    pub fn record_events(self, table: &PortTable, direction: Direction, if_index: u32, dispatch: &mut Dispatch) {
        self.for_each_nbl(|nbl| {
            if nbl.NblFlags & NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET != 0 {
                return;
            }
            let mut nb = nbl.FirstNetBuffer;
            while !nb.is_null() {
                // SAFETY: `new`'s contract covers the NBL's NET_BUFFER list.
                let current = unsafe { &*nb };
                record_net_buffer(table, current, direction, if_index, dispatch);
                nb = current.Next;
            }
        });
    }
}

/// Records one packet's events: reads its first bytes again (in place, or
/// through NdisGetDataBuffer) rather than have the counting code keep them.
fn record_net_buffer(table: &PortTable, nb: &NET_BUFFER, direction: Direction, if_index: u32, dispatch: &mut Dispatch) {
    let length = nb.DataLength.get();
    let wanted = (length as usize).min(HEADER_BYTES);
    let mut storage = MaybeUninit::<[u8; HEADER_BYTES]>::uninit();
    let Some(prefix) = mapped_header(nb, wanted).or_else(|| copied_header(nb, wanted, &mut storage)) else {
        return;
    };
    datapath::record_packet(table, prefix, u64::from(length), direction, if_index, dispatch);
}

/// Counts one packet: finds its first bytes and classifies them.
#[inline(always)]
fn count_net_buffer<W: Watch>(table: &PortTable, nb: &NET_BUFFER, direction: Direction, cpu: Cpu<'_>, watched: &W) {
    let length = nb.DataLength.get();
    let wanted = (length as usize).min(HEADER_BYTES);
    match mapped_header(nb, wanted) {
        Some(prefix) => count_prefix(table, prefix, length, direction, cpu, watched),
        // The flag's address stays in the counting function (a register
        // there): the out-of-line fallback returns its own.
        None => {
            if count_copied::<W>(table, nb, wanted, direction, cpu) {
                watched.mark();
            }
        }
    }
}

/// Counts one packet of `length` bytes from its first bytes, `prefix`.
#[inline(always)]
fn count_prefix<W: Watch>(
    table: &PortTable,
    prefix: &[u8],
    length: u32,
    direction: Direction,
    cpu: Cpu<'_>,
    watched: &W,
) {
    if let Err(no_slot) = datapath::count_packet(table, prefix, u64::from(length), direction, cpu, watched) {
        no_slot.bug_check()
    }
}

/// Counts a packet whose first `wanted` bytes are not in place in a mapped
/// MDL: through NdisGetDataBuffer, which copies them into a local buffer
/// when they straddle MDLs. Out of line, so that the common path carries
/// neither the 160-byte buffer nor the import's address.
#[cold]
#[inline(never)]
fn count_copied<W: Watch>(
    table: &PortTable,
    nb: &NET_BUFFER,
    wanted: usize,
    direction: Direction,
    cpu: Cpu<'_>,
) -> bool {
    // Not zeroed: NdisGetDataBuffer writes what it returns, and zeroing 160
    // bytes per packet would cost more than parsing them.
    let mut storage = MaybeUninit::<[u8; HEADER_BYTES]>::uninit();
    let Some(prefix) = copied_header(nb, wanted, &mut storage) else {
        return false; // R22: no data, no count
    };
    let watched = W::default();
    count_prefix(table, prefix, nb.DataLength.get(), direction, cpu, &watched);
    watched.watched()
}

/// The packet's first `wanted` bytes (at most its data length) through
/// NdisGetDataBuffer: in the MDL, or copied into `storage`. Never inlined:
/// in a loop the compiler would keep the import's address in a register
/// and call through it, which the data-path analysis cannot follow.
#[inline(never)]
fn copied_header<'a>(
    nb: &'a NET_BUFFER,
    wanted: usize,
    storage: &'a mut MaybeUninit<[u8; HEADER_BYTES]>,
) -> Option<&'a [u8]> {
    // SAFETY: `nb` is a valid NET_BUFFER we own for the call; `storage` has
    // room for `wanted` bytes; alignment 1 asks for no alignment. NDIS
    // returns a pointer to `wanted` contiguous, initialized bytes (in the
    // MDL, or copied into `storage`), or NULL when the data is not there.
    let data = unsafe {
        NdisGetDataBuffer(core::ptr::from_ref(nb).cast_mut(), wanted as u32, storage.as_mut_ptr().cast(), 1, 0)
    };
    if data.is_null() {
        return None;
    }
    // SAFETY: NdisGetDataBuffer's contract above: `wanted` readable bytes
    // that stay valid while we own the NET_BUFFER.
    Some(unsafe { core::slice::from_raw_parts(data.cast::<u8>(), wanted) })
}

/// The first [`PLAIN_IPV4`] bytes of `nb` in place (see [`mapped_header`]),
/// when its data has that many: all that the common frame's parse reads.
#[inline(always)]
fn plain_header(nb: &NET_BUFFER) -> Option<&[u8; PLAIN_IPV4]> {
    if (nb.DataLength.get() as usize) < PLAIN_IPV4 {
        return None;
    }
    mapped_header(nb, PLAIN_IPV4)?.try_into().ok()
}

/// The first `wanted` bytes of `nb` in place, when its current MDL is
/// mapped in system space (`MmGetSystemAddressForMdlSafe` would return
/// `MappedSystemVa` without mapping anything: nonpaged pool, or already
/// mapped, as NDIS's own MDLs are) and holds all of them after
/// `CurrentMdlOffset`. `None` sends the caller to NdisGetDataBuffer.
fn mapped_header(nb: &NET_BUFFER, wanted: usize) -> Option<&[u8]> {
    // SAFETY: a NET_BUFFER we own has a NULL or valid current MDL.
    let mdl = unsafe { nb.CurrentMdl.as_ref() }?;
    if mdl.MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) == 0 {
        return None;
    }
    let offset = nb.CurrentMdlOffset as usize;
    // No overflow: both are 32-bit values widened, `wanted` at most 160.
    if (mdl.ByteCount as usize) < offset + wanted || mdl.MappedSystemVa.is_null() {
        return None;
    }
    // SAFETY: the MDL is mapped at `MappedSystemVa` for `ByteCount` bytes
    // (the flags checked above), and `offset + wanted <= ByteCount`; the
    // NET_BUFFER's data starts `offset` bytes in and has at least `wanted`
    // bytes (`wanted <= DataLength`); it stays valid while we own the
    // NET_BUFFER.
    Some(unsafe { core::slice::from_raw_parts(mdl.MappedSystemVa.cast::<u8>().add(offset), wanted) })
}
