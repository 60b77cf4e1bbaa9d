//! Walking NET_BUFFER_LIST chains on the data path.
//!
//! All raw NBL access of the driver is here. The chains are NDIS's: valid
//! for the duration of the handler that received them, until the driver
//! passes them on (after which it must not touch them, not even `Next`).

use core::mem::MaybeUninit;

use ndis_sys::{NdisGetDataBuffer, NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET, NDIS_STATUS, NET_BUFFER, NET_BUFFER_LIST};

use ndis_sync::Dispatch;

use crate::datapath;
use crate::parse::HEADER_BYTES;
use crate::ports::{Direction, PortTable};

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

    /// Number of NBLs in the chain.
    pub fn nbl_count(self) -> usize {
        let mut n = 0;
        self.for_each_nbl(|_| n += 1);
        n
    }

    /// Sets every NBL's completion status (NET_BUFFER_LIST_STATUS).
    pub fn set_status(self, status: NDIS_STATUS) {
        self.for_each_nbl(|nbl| nbl.Status = status);
    }

    /// Counts every NET_BUFFER of every NBL in `table`, skipping NBLs that
    /// NDIS looped back (their send was already counted); `if_index` is the
    /// module's, for events.
    pub fn count(self, table: &PortTable, direction: Direction, if_index: u32, dispatch: &mut Dispatch) {
        self.for_each_nbl(|nbl| {
            if nbl.NblFlags & NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET != 0 {
                return;
            }
            let mut nb = nbl.FirstNetBuffer;
            while !nb.is_null() {
                // SAFETY: `new`'s contract covers the NBL's NET_BUFFER list.
                let current = unsafe { &mut *nb };
                count_net_buffer(table, current, direction, if_index, dispatch);
                nb = current.Next;
            }
        });
    }
}

/// Counts one packet: copies (or maps) its first bytes and classifies them.
fn count_net_buffer(
    table: &PortTable,
    nb: &mut NET_BUFFER,
    direction: Direction,
    if_index: u32,
    dispatch: &mut Dispatch,
) {
    let length = nb.DataLength.get();
    let wanted = (length as usize).min(HEADER_BYTES);
    // Not zeroed: NDIS writes what it returns a pointer to, and zeroing 160
    // bytes per packet would cost more than parsing them.
    let mut storage = MaybeUninit::<[u8; HEADER_BYTES]>::uninit();
    // SAFETY: `nb` is a valid NET_BUFFER we own for the call; `storage` has
    // room for `wanted` bytes; alignment 1 asks for no alignment. NDIS
    // returns a pointer to `wanted` contiguous, initialized bytes (in the
    // MDL, or copied into `storage`), or NULL when the data is not there.
    let data = unsafe { NdisGetDataBuffer(nb, wanted as u32, storage.as_mut_ptr().cast(), 1, 0) };
    if data.is_null() {
        return; // R22: no data, no count
    }
    // SAFETY: NdisGetDataBuffer's contract above: `wanted` readable bytes
    // that stay valid while we own the NET_BUFFER.
    let prefix = unsafe { core::slice::from_raw_parts(data.cast::<u8>(), wanted) };
    if datapath::count_packet(table, prefix, u64::from(length), direction) {
        record_events(table, nb, direction, if_index, dispatch);
    }
}

/// The events of a watched packet, out of line: it maps the packet's first
/// bytes again rather than have the counting code keep them alive (see
/// `datapath::count_packet`).
#[cold]
#[inline(never)]
fn record_events(table: &PortTable, nb: &mut NET_BUFFER, direction: Direction, if_index: u32, dispatch: &mut Dispatch) {
    let length = nb.DataLength.get();
    let wanted = (length as usize).min(HEADER_BYTES);
    let mut storage = MaybeUninit::<[u8; HEADER_BYTES]>::uninit();
    // SAFETY: as in `count_net_buffer`: the same NET_BUFFER, still ours.
    let data = unsafe { NdisGetDataBuffer(nb, wanted as u32, storage.as_mut_ptr().cast(), 1, 0) };
    if data.is_null() {
        return;
    }
    // SAFETY: as in `count_net_buffer`.
    let prefix = unsafe { core::slice::from_raw_parts(data.cast::<u8>(), wanted) };
    datapath::record_packet(table, prefix, u64::from(length), direction, if_index, dispatch);
}
