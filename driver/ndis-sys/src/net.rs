//! Network interface types used in filter parameters (ifdef.h / ntddndis.h).
//!
//! Values: public WDK 10 km/ndis.h (NDIS630) and mingw-w64 ifdef.h /
//! ipifcons.h / ntddndis.h, evaluated by clang
//! `--target=x86_64-pc-windows-msvc`.

/// `NET_IFINDEX`: an interface index (`ULONG`).
pub type NET_IFINDEX = u32;
/// `NDIS_PORT_NUMBER`: an NDIS port of a miniport (`ULONG`).
pub type NDIS_PORT_NUMBER = u32;
/// `NDIS_MEDIUM`: the medium a miniport presents (an enum, `int`).
pub type NDIS_MEDIUM = i32;
/// `NDIS_PHYSICAL_MEDIUM`: the physical medium under it (an enum, `int`).
pub type NDIS_PHYSICAL_MEDIUM = i32;
/// `NDIS_MEDIA_CONNECT_STATE` (`NET_IF_MEDIA_CONNECT_STATE`, an enum, `int`).
pub type NDIS_MEDIA_CONNECT_STATE = i32;
/// `NET_IF_MEDIA_DUPLEX_STATE` (an enum, `int`).
pub type NET_IF_MEDIA_DUPLEX_STATE = i32;
/// `NDIS_PHYSICAL_ADDRESS` (`PHYSICAL_ADDRESS`, a `LARGE_INTEGER`).
pub type NDIS_PHYSICAL_ADDRESS = i64;

/// `NdisMedium802_3`: Ethernet.
pub const NdisMedium802_3: NDIS_MEDIUM = 0;
/// `NdisPhysicalMedium802_3`: Ethernet cabling.
pub const NdisPhysicalMedium802_3: NDIS_PHYSICAL_MEDIUM = 14;
/// `MediaConnectStateConnected`.
pub const MediaConnectStateConnected: NDIS_MEDIA_CONNECT_STATE = 1;
/// `MediaDuplexStateFull`.
pub const MediaDuplexStateFull: NET_IF_MEDIA_DUPLEX_STATE = 2;
/// `IF_TYPE_ETHERNET_CSMACD` (ipifcons.h): the `IfType` of an Ethernet
/// interface's [`NET_LUID`].
pub const IF_TYPE_ETHERNET_CSMACD: u16 = 6;
/// `NDIS_DEFAULT_PORT_NUMBER`: the default port of every miniport.
pub const NDIS_DEFAULT_PORT_NUMBER: NDIS_PORT_NUMBER = 0;
/// `NDIS_MAX_PHYS_ADDRESS_LENGTH` (`IF_MAX_PHYS_ADDRESS_LENGTH`): bytes of
/// `CurrentMacAddress` in the attach parameters.
pub const NDIS_MAX_PHYS_ADDRESS_LENGTH: usize = 32;

/// `NET_LUID` (`NET_LUID_LH`): a locally unique interface identifier.
///
/// In C a union of `ULONG64 Value` and the bit fields `Reserved:24`,
/// `NetLuidIndex:24`, `IfType:16` (low to high); only `Value` is bound.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NET_LUID {
    /// The 64-bit value.
    pub Value: u64,
}

impl NET_LUID {
    /// `NetLuidIndex`: bits 24..48 of the value.
    pub const fn net_luid_index(self) -> u32 {
        ((self.Value >> 24) & 0xFF_FFFF) as u32
    }

    /// `IfType`: bits 48..64 of the value (an `IF_TYPE_*` code).
    pub const fn if_type(self) -> u16 {
        (self.Value >> 48) as u16
    }
}

// Layout, x64. Source: mingw-w64 ifdef.h (NET_LUID_LH) compiled with clang
// --target=x86_64-pc-windows-msvc, sizeof/alignof; the enums and ULONGs above
// were measured the same way (4 bytes each).
const _: () = {
    assert!(core::mem::size_of::<NET_LUID>() == 8);
    assert!(core::mem::align_of::<NET_LUID>() == 8);
    assert!(core::mem::size_of::<NET_IFINDEX>() == 4);
    assert!(core::mem::size_of::<NDIS_PORT_NUMBER>() == 4);
    assert!(core::mem::size_of::<NDIS_MEDIUM>() == 4);
    assert!(core::mem::size_of::<NDIS_PHYSICAL_MEDIUM>() == 4);
    assert!(core::mem::size_of::<NDIS_MEDIA_CONNECT_STATE>() == 4);
    assert!(core::mem::size_of::<NET_IF_MEDIA_DUPLEX_STATE>() == 4);
    assert!(core::mem::size_of::<NDIS_PHYSICAL_ADDRESS>() == 8);
};

#[cfg(test)]
mod tests {
    use super::NET_LUID;

    #[test]
    fn luid_fields_are_the_documented_bit_ranges() {
        // IfType 6 (ethernetCsmacd), NetLuidIndex 0x123456, Reserved 0xABCDEF.
        let luid = NET_LUID { Value: (6 << 48) | (0x12_3456 << 24) | 0xAB_CDEF };
        assert_eq!(luid.if_type(), 6);
        assert_eq!(luid.net_luid_index(), 0x12_3456);
    }
}
