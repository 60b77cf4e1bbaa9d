//! `NDIS_OBJECT_HEADER` and the type / revision / size values of the NDIS
//! objects a filter builds or receives.
//!
//! Values: public WDK 10 km/ndis.h (NDIS630) and mingw-w64 ntddndis.h (the
//! `NDIS_OBJECT_TYPE_*` codes live in ntddndis.h, absent from the WDK copy),
//! evaluated by clang `--target=x86_64-pc-windows-msvc`.

/// `NDIS_OBJECT_HEADER`: type, revision and size of an NDIS structure.
///
/// `Size` is the `NDIS_SIZEOF_*_REVISION_n` of the revision being used
/// (the size through the last field of that revision).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NDIS_OBJECT_HEADER {
    /// One of the `NDIS_OBJECT_TYPE_*` codes.
    pub Type: u8,
    /// The structure's revision.
    pub Revision: u8,
    /// Size of the structure for that revision, in bytes.
    pub Size: u16,
}

impl NDIS_OBJECT_HEADER {
    /// A header with the given type, revision and size.
    ///
    /// ```
    /// use ndis_sys::*;
    /// let attributes = NDIS_FILTER_ATTRIBUTES {
    ///     Header: NDIS_OBJECT_HEADER::new(
    ///         NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES,
    ///         NDIS_FILTER_ATTRIBUTES_REVISION_1,
    ///         NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1,
    ///     ),
    ///     Flags: 0,
    /// };
    /// assert_eq!(usize::from(attributes.Header.Size), core::mem::size_of_val(&attributes));
    /// ```
    pub const fn new(Type: u8, Revision: u8, Size: u16) -> Self {
        Self { Type, Revision, Size }
    }
}

/// `NDIS_OBJECT_TYPE_DEFAULT`.
pub const NDIS_OBJECT_TYPE_DEFAULT: u8 = 0x80;
/// `NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES` (`NDIS_DEVICE_OBJECT_ATTRIBUTES`).
pub const NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES: u8 = 0x85;
/// `NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS`.
pub const NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS: u8 = 0x8B;
/// `NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES` (`NDIS_FILTER_ATTRIBUTES`).
pub const NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES: u8 = 0x8D;
/// `NDIS_OBJECT_TYPE_STATUS_INDICATION` (`NDIS_STATUS_INDICATION`).
pub const NDIS_OBJECT_TYPE_STATUS_INDICATION: u8 = 0x98;
/// `NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS`.
pub const NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS: u8 = 0x99;
/// `NDIS_OBJECT_TYPE_FILTER_PAUSE_PARAMETERS`.
pub const NDIS_OBJECT_TYPE_FILTER_PAUSE_PARAMETERS: u8 = 0x9A;
/// `NDIS_OBJECT_TYPE_FILTER_RESTART_PARAMETERS`.
pub const NDIS_OBJECT_TYPE_FILTER_RESTART_PARAMETERS: u8 = 0x9B;

/// `NDIS_FILTER_CHARACTERISTICS_REVISION_1` (NDIS 6.0).
pub const NDIS_FILTER_CHARACTERISTICS_REVISION_1: u8 = 1;
/// `NDIS_FILTER_CHARACTERISTICS_REVISION_2` (NDIS 6.1 up to 6.30: adds the
/// direct OID handlers).
pub const NDIS_FILTER_CHARACTERISTICS_REVISION_2: u8 = 2;
/// `NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_1` (through `StatusHandler`).
pub const NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_1: u16 = 200;
/// `NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2` (through
/// `CancelDirectOidRequestHandler`).
pub const NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2: u16 = 224;

/// `NDIS_FILTER_ATTRIBUTES_REVISION_1`.
pub const NDIS_FILTER_ATTRIBUTES_REVISION_1: u8 = 1;
/// `NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1`.
pub const NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1: u16 = 8;

/// `NDIS_FILTER_ATTACH_PARAMETERS_REVISION_4` (what NDIS 6.30 passes).
pub const NDIS_FILTER_ATTACH_PARAMETERS_REVISION_4: u8 = 4;
/// `NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4` (through `NicSwitchArray`).
pub const NDIS_SIZEOF_FILTER_ATTACH_PARAMETERS_REVISION_4: u16 = 224;

/// `NDIS_FILTER_RESTART_PARAMETERS_REVISION_1`.
pub const NDIS_FILTER_RESTART_PARAMETERS_REVISION_1: u8 = 1;
/// `NDIS_SIZEOF__FILTER_RESTART_PARAMETERS_REVISION_1` (through `Flags`;
/// ndis.h spells it with a double underscore).
pub const NDIS_SIZEOF_FILTER_RESTART_PARAMETERS_REVISION_1: u16 = 44;

/// `NDIS_FILTER_PAUSE_PARAMETERS_REVISION_1`.
pub const NDIS_FILTER_PAUSE_PARAMETERS_REVISION_1: u8 = 1;
/// `NDIS_SIZEOF_FILTER_PAUSE_PARAMETERS_REVISION_1`.
pub const NDIS_SIZEOF_FILTER_PAUSE_PARAMETERS_REVISION_1: u16 = 12;

/// `NDIS_STATUS_INDICATION_REVISION_1`.
pub const NDIS_STATUS_INDICATION_REVISION_1: u8 = 1;
/// `NDIS_SIZEOF_STATUS_INDICATION_REVISION_1`.
pub const NDIS_SIZEOF_STATUS_INDICATION_REVISION_1: u16 = 112;

/// `NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1`.
pub const NDIS_DEVICE_OBJECT_ATTRIBUTES_REVISION_1: u8 = 1;
/// `NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1`.
pub const NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1: u16 = 56;

// Layout, x64. Source: mingw-w64 ntddndis.h (NDIS_OBJECT_HEADER is defined
// in ntddndis.h, which the public WDK copy lacks) compiled with clang
// --target=x86_64-pc-windows-msvc, sizeof/offsetof; matches the public x64
// type dumps of ndis.h ("struct _NDIS_OBJECT_HEADER Header; Size=0x4").
const _: () = {
    assert!(core::mem::size_of::<NDIS_OBJECT_HEADER>() == 4);
    assert!(core::mem::offset_of!(NDIS_OBJECT_HEADER, Type) == 0);
    assert!(core::mem::offset_of!(NDIS_OBJECT_HEADER, Revision) == 1);
    assert!(core::mem::offset_of!(NDIS_OBJECT_HEADER, Size) == 2);
};
