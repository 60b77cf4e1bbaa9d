//! `NET_BUFFER_LIST` and `NET_BUFFER` (ndis.h, NDIS 6.30 on x64) and the
//! send / receive / return flags of the data path.
//!
//! NDIS allocates every NBL a filter sees, and `NET_BUFFER_LIST` grows with
//! Windows versions (its `NetBufferListInfo` array has 24 entries in the
//! NDIS 6.30 header, 26 or 29 on newer builds). Never rely on
//! `size_of::<NET_BUFFER_LIST>()`: do not copy NBLs by value, do not index
//! `NetBufferListInfo` past the 6.30 entries, only touch NBLs through the
//! pointers NDIS passes. The header offsets asserted below are stable.
//!
//! The C structs start with anonymous unions; the arm drivers read is
//! flattened into named fields here, and the other arms are documented.
//!
//! Layouts: public WDK 10 km/ndis.h (copy of MuAlphaOmegaEpsilon/wdk-10)
//! compiled with clang --target=x86_64-pc-windows-msvc -fms-extensions
//! -DNDIS630=1 -DNDIS_WDM=1 -D_AMD64_, sizeof/offsetof/alignof; the field
//! offsets also match public x64 PDB type dumps of `_NET_BUFFER_LIST`
//! (NblFlags 0x80, Status 0x8c, NetBufferListInfo 0x90) and `_NET_BUFFER`
//! (Size 0xb0, DataLength 0x18, DataOffset 0x28).

use core::ffi::c_void;

use crate::kernel::{MDL, NDIS_HANDLE, NDIS_STATUS};
use windows_sys::Win32::System::Kernel::SLIST_HEADER;

/// `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` on x64: a field aligned to
/// 16 bytes, as ndis.h declares the reserved areas of NBLs and NBs.
#[repr(C, align(16))]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Align16<T>(pub T);

/// `MEMORY_ALLOCATION_ALIGNMENT` on x64.
pub const MEMORY_ALLOCATION_ALIGNMENT: usize = 16;

/// `MaxNetBufferListInfo` of the NDIS 6.30 x64 header: the number of
/// `NetBufferListInfo` entries every NDIS 6.30+ NBL has at least.
pub const MAX_NET_BUFFER_LIST_INFO_NDIS630: usize = 24;

/// `NET_BUFFER_LIST_CONTEXT`: opaque here (reached only via `Context`).
#[repr(C)]
pub struct NET_BUFFER_LIST_CONTEXT {
    _opaque: [u8; 0],
}

/// `NET_BUFFER_DATA_LENGTH`: `ULONG DataLength` overlaid on `SIZE_T stDataLength`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union NET_BUFFER_DATA_LENGTH {
    /// The data length NDIS and drivers read and write.
    pub DataLength: u32,
    /// The same storage as a `SIZE_T`.
    pub stDataLength: usize,
}

impl NET_BUFFER_DATA_LENGTH {
    /// `NET_BUFFER_DATA_LENGTH(nb)`: the `ULONG` arm.
    pub const fn get(self) -> u32 {
        // SAFETY: both arms are plain integers starting at offset 0 and a
        // value of this union can only be made by writing one of them, which
        // initialises at least the low 4 bytes the `u32` arm reads (x64 is
        // little-endian: the ULONG arm is the low half of stDataLength).
        unsafe { self.DataLength }
    }
}

impl core::fmt::Debug for NET_BUFFER_DATA_LENGTH {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("NET_BUFFER_DATA_LENGTH").field(&self.get()).finish()
    }
}

/// `NET_BUFFER_DATA`: the data-describing head of a `NET_BUFFER`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NET_BUFFER_DATA {
    /// Next NET_BUFFER of the same NBL.
    pub Next: *mut NET_BUFFER,
    /// The MDL holding the first byte of used data space.
    pub CurrentMdl: *mut MDL,
    /// Offset of the used data space in `CurrentMdl`.
    pub CurrentMdlOffset: u32,
    /// Bytes of used data space.
    pub NbDataLength: NET_BUFFER_DATA_LENGTH,
    /// The MDL chain.
    pub MdlChain: *mut MDL,
    /// Offset of the used data space from the start of `MdlChain`.
    pub DataOffset: u32,
}

/// `NET_BUFFER_HEADER`: `NET_BUFFER_DATA` overlaid on an `SLIST_HEADER`.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub union NET_BUFFER_HEADER {
    /// The data description.
    pub NetBufferData: NET_BUFFER_DATA,
    /// Free-list link used by NDIS pools.
    pub Link: Align16<SLIST_HEADER>,
}

/// `NET_BUFFER`: one packet's data, described by an MDL chain.
///
/// The first 48 bytes are `NET_BUFFER_HEADER` in C (an anonymous union of
/// the fields `Next` .. `DataOffset`, an `SLIST_HEADER Link` and a duplicate
/// `NET_BUFFER_HEADER NetBufferHeader`); the data arm is flattened here,
/// followed by the union's tail padding (`HeaderPadding`).
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy)]
pub struct NET_BUFFER {
    /// `NET_BUFFER_NEXT_NB`: the next NET_BUFFER of the same NBL, or NULL.
    pub Next: *mut NET_BUFFER,
    /// `NET_BUFFER_CURRENT_MDL`.
    pub CurrentMdl: *mut MDL,
    /// `NET_BUFFER_CURRENT_MDL_OFFSET`.
    pub CurrentMdlOffset: u32,
    /// `NET_BUFFER_DATA_LENGTH`: bytes of packet data (see
    /// [`NET_BUFFER_DATA_LENGTH::get`]).
    pub DataLength: NET_BUFFER_DATA_LENGTH,
    /// `NET_BUFFER_FIRST_MDL`.
    pub MdlChain: *mut MDL,
    /// `NET_BUFFER_DATA_OFFSET`.
    pub DataOffset: u32,
    /// Tail padding of the 48-byte header union (its `SLIST_HEADER` arm is
    /// 16-byte aligned). Not a C field.
    pub HeaderPadding: u32,
    /// `NET_BUFFER_CHECKSUM_BIAS`.
    pub ChecksumBias: u16,
    /// Reserved.
    pub Reserved: u16,
    /// Pool the NB was allocated from.
    pub NdisPoolHandle: NDIS_HANDLE,
    /// Reserved for NDIS.
    pub NdisReserved: Align16<[*mut c_void; 2]>,
    /// For the current protocol / filter owner.
    pub ProtocolReserved: Align16<[*mut c_void; 6]>,
    /// For the current miniport owner.
    pub MiniportReserved: Align16<[*mut c_void; 4]>,
    /// `NET_BUFFER_DATA_PHYSICAL_ADDRESS`.
    pub DataPhysicalAddress: i64,
    /// `SharedMemoryInfo` / `ScatterGatherList` (a union in C).
    pub SharedMemoryInfo: *mut c_void,
}

/// `NET_BUFFER_LIST` (header part, NDIS 6.30): a list of NET_BUFFERs sharing
/// out-of-band data, chained to other NBLs through `Next`.
///
/// The first 16 bytes are an anonymous union in C of `Next` /
/// `FirstNetBuffer`, an `SLIST_HEADER Link` and a duplicate
/// `NET_BUFFER_LIST_HEADER`; the `Next` / `FirstNetBuffer` arm is flattened
/// here. See the module docs: never rely on the size of this struct.
#[repr(C, align(16))]
#[derive(Debug, Clone, Copy)]
pub struct NET_BUFFER_LIST {
    /// `NET_BUFFER_LIST_NEXT_NBL`: next NBL of the chain, or NULL.
    pub Next: *mut NET_BUFFER_LIST,
    /// `NET_BUFFER_LIST_FIRST_NB`: first NET_BUFFER of this NBL.
    pub FirstNetBuffer: *mut NET_BUFFER,
    /// Context area stack.
    pub Context: *mut NET_BUFFER_LIST_CONTEXT,
    /// Parent NBL of a clone or fragment, else NULL.
    pub ParentNetBufferList: *mut NET_BUFFER_LIST,
    /// Pool the NBL was allocated from.
    pub NdisPoolHandle: NDIS_HANDLE,
    /// Reserved for NDIS.
    pub NdisReserved: Align16<[*mut c_void; 2]>,
    /// `NET_BUFFER_LIST_PROTOCOL_RESERVED`: for the current protocol / filter owner.
    pub ProtocolReserved: Align16<[*mut c_void; 4]>,
    /// `NET_BUFFER_LIST_MINIPORT_RESERVED`: for the current miniport owner.
    pub MiniportReserved: Align16<[*mut c_void; 2]>,
    /// For the NBL's owner.
    pub Scratch: *mut c_void,
    /// Handle of the module that originated the NBL; NDIS uses it to route
    /// the completion. A filter never changes a foreign one.
    pub SourceHandle: NDIS_HANDLE,
    /// `NET_BUFFER_LIST_NBL_FLAGS`: the public `NDIS_NBL_FLAGS_*`.
    pub NblFlags: u32,
    /// Outstanding child NBLs.
    pub ChildRefCount: i32,
    /// `NET_BUFFER_LIST_FLAGS`: private flags of NDIS and drivers.
    pub Flags: u32,
    /// `NET_BUFFER_LIST_STATUS`: completion status of a send (union with
    /// `ULONG NdisReserved2` in C).
    pub Status: NDIS_STATUS,
    /// `NET_BUFFER_LIST_INFO`: out-of-band data, indexed by
    /// `NDIS_NET_BUFFER_LIST_INFO`; longer on newer Windows (module docs).
    pub NetBufferListInfo: [*mut c_void; MAX_NET_BUFFER_LIST_INFO_NDIS630],
}

/// `NDIS_SEND_FLAGS_DISPATCH_LEVEL`: the caller is at DISPATCH_LEVEL (clear
/// means "unknown", not PASSIVE).
pub const NDIS_SEND_FLAGS_DISPATCH_LEVEL: u32 = 0x1;
/// `NDIS_SEND_FLAGS_CHECK_FOR_LOOPBACK`: NDIS should loop back matching packets.
pub const NDIS_SEND_FLAGS_CHECK_FOR_LOOPBACK: u32 = 0x2;
/// `NDIS_SEND_FLAGS_SINGLE_QUEUE`: all NBLs belong to one queue.
pub const NDIS_SEND_FLAGS_SINGLE_QUEUE: u32 = 0x4;
/// `NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL`: the caller is at DISPATCH_LEVEL.
pub const NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL: u32 = 0x1;
/// `NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL`: the caller is at DISPATCH_LEVEL.
pub const NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL: u32 = 0x1;
/// `NDIS_RECEIVE_FLAGS_RESOURCES`: the NBLs revert to the indicator when the
/// receive handler returns; the filter must not return them.
pub const NDIS_RECEIVE_FLAGS_RESOURCES: u32 = 0x2;
/// `NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE`.
pub const NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE: u32 = 0x100;
/// `NDIS_RECEIVE_FLAGS_MORE_NBLS`.
pub const NDIS_RECEIVE_FLAGS_MORE_NBLS: u32 = 0x2000;
/// `NDIS_RETURN_FLAGS_DISPATCH_LEVEL`: the caller is at DISPATCH_LEVEL.
pub const NDIS_RETURN_FLAGS_DISPATCH_LEVEL: u32 = 0x1;

/// `NDIS_NBL_FLAGS_SEND_READ_ONLY`.
pub const NDIS_NBL_FLAGS_SEND_READ_ONLY: u32 = 0x1;
/// `NDIS_NBL_FLAGS_RECV_READ_ONLY`.
pub const NDIS_NBL_FLAGS_RECV_READ_ONLY: u32 = 0x2;
/// `NDIS_NBL_FLAGS_IS_IPV4`: an IPv4 packet (a hint, when set).
pub const NDIS_NBL_FLAGS_IS_IPV4: u32 = 0x200;
/// `NDIS_NBL_FLAGS_IS_IPV6`: an IPv6 packet (a hint, when set).
pub const NDIS_NBL_FLAGS_IS_IPV6: u32 = 0x400;
/// `NDIS_NBL_FLAGS_IS_TCP`: a TCP packet (a hint, when set).
pub const NDIS_NBL_FLAGS_IS_TCP: u32 = 0x800;
/// `NDIS_NBL_FLAGS_IS_UDP`: a UDP packet (a hint, when set).
pub const NDIS_NBL_FLAGS_IS_UDP: u32 = 0x1000;
/// `NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET`: a looped-back copy of a send.
pub const NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET: u32 = 0x8000;

// Layouts, x64. Source: public WDK 10 km/ndis.h (public copy), clang
// --target=x86_64-pc-windows-msvc -DNDIS630=1 -DNDIS_WDM=1, sizeof/offsetof/
// alignof. NET_BUFFER_LIST's size is that of the NDIS 6.30 header only.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};

    assert!(size_of::<NET_BUFFER_DATA_LENGTH>() == 8);

    assert!(size_of::<NET_BUFFER_DATA>() == 48);
    assert!(offset_of!(NET_BUFFER_DATA, Next) == 0);
    assert!(offset_of!(NET_BUFFER_DATA, CurrentMdl) == 8);
    assert!(offset_of!(NET_BUFFER_DATA, CurrentMdlOffset) == 16);
    assert!(offset_of!(NET_BUFFER_DATA, NbDataLength) == 24);
    assert!(offset_of!(NET_BUFFER_DATA, MdlChain) == 32);
    assert!(offset_of!(NET_BUFFER_DATA, DataOffset) == 40);

    assert!(size_of::<NET_BUFFER_HEADER>() == 48);
    assert!(align_of::<NET_BUFFER_HEADER>() == 16);

    assert!(size_of::<NET_BUFFER>() == 176);
    assert!(align_of::<NET_BUFFER>() == 16);
    assert!(offset_of!(NET_BUFFER, Next) == 0);
    assert!(offset_of!(NET_BUFFER, CurrentMdl) == 8);
    assert!(offset_of!(NET_BUFFER, CurrentMdlOffset) == 16);
    assert!(offset_of!(NET_BUFFER, DataLength) == 24);
    assert!(offset_of!(NET_BUFFER, MdlChain) == 32);
    assert!(offset_of!(NET_BUFFER, DataOffset) == 40);
    // The flattened data arm must end where the C header union does.
    assert!(offset_of!(NET_BUFFER, HeaderPadding) + 4 == size_of::<NET_BUFFER_HEADER>());
    assert!(offset_of!(NET_BUFFER, ChecksumBias) == 48);
    assert!(offset_of!(NET_BUFFER, Reserved) == 50);
    assert!(offset_of!(NET_BUFFER, NdisPoolHandle) == 56);
    assert!(offset_of!(NET_BUFFER, NdisReserved) == 64);
    assert!(offset_of!(NET_BUFFER, ProtocolReserved) == 80);
    assert!(offset_of!(NET_BUFFER, MiniportReserved) == 128);
    assert!(offset_of!(NET_BUFFER, DataPhysicalAddress) == 160);
    assert!(offset_of!(NET_BUFFER, SharedMemoryInfo) == 168);

    assert!(size_of::<NET_BUFFER_LIST>() == 336);
    assert!(align_of::<NET_BUFFER_LIST>() == 16);
    assert!(offset_of!(NET_BUFFER_LIST, Next) == 0);
    assert!(offset_of!(NET_BUFFER_LIST, FirstNetBuffer) == 8);
    assert!(offset_of!(NET_BUFFER_LIST, Context) == 16);
    assert!(offset_of!(NET_BUFFER_LIST, ParentNetBufferList) == 24);
    assert!(offset_of!(NET_BUFFER_LIST, NdisPoolHandle) == 32);
    assert!(offset_of!(NET_BUFFER_LIST, NdisReserved) == 48);
    assert!(offset_of!(NET_BUFFER_LIST, ProtocolReserved) == 64);
    assert!(offset_of!(NET_BUFFER_LIST, MiniportReserved) == 96);
    assert!(offset_of!(NET_BUFFER_LIST, Scratch) == 112);
    assert!(offset_of!(NET_BUFFER_LIST, SourceHandle) == 120);
    assert!(offset_of!(NET_BUFFER_LIST, NblFlags) == 128);
    assert!(offset_of!(NET_BUFFER_LIST, ChildRefCount) == 132);
    assert!(offset_of!(NET_BUFFER_LIST, Flags) == 136);
    assert!(offset_of!(NET_BUFFER_LIST, Status) == 140);
    assert!(offset_of!(NET_BUFFER_LIST, NetBufferListInfo) == 144);
};

#[cfg(test)]
mod tests {
    use super::NET_BUFFER_DATA_LENGTH;

    #[test]
    fn data_length_reads_the_ulong_arm() {
        let written_as_size_t = NET_BUFFER_DATA_LENGTH { stDataLength: 0x1234_5678_0000_05DC };
        assert_eq!(written_as_size_t.get(), 0x05DC);
        let written_as_ulong = NET_BUFFER_DATA_LENGTH { DataLength: 60 };
        assert_eq!(written_as_ulong.get(), 60);
    }
}
