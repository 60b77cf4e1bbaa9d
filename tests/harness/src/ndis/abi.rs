//! The x64 layouts of the NDIS 6.30 structures the model builds or reads.
//!
//! The model writes these at the offsets Windows uses, so that a wrong
//! binding in the driver shows up as a wrong value in a test, not as a pass.
//! Offsets: public WDK 10 `km/ndis.h` (NDIS630, x64: pointers 8 bytes,
//! `MEMORY_ALLOCATION_ALIGNMENT` 16); object type numbers from `objectheader.h`.
#![allow(non_camel_case_types, non_snake_case, clippy::upper_case_acronyms, missing_docs)]

use core::ffi::c_void;
use ndis_sys::{MDL, NDIS_HANDLE, NDIS_STATUS, UNICODE_STRING};

/// `NDIS_OBJECT_HEADER`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NDIS_OBJECT_HEADER {
    pub Type: u8,
    pub Revision: u8,
    pub Size: u16,
}

pub const NDIS_OBJECT_TYPE_DEFAULT: u8 = 0x80;
pub const NDIS_OBJECT_TYPE_DEVICE_OBJECT_ATTRIBUTES: u8 = 0x85;
pub const NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS: u8 = 0x8B;
pub const NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES: u8 = 0x8D;
pub const NDIS_OBJECT_TYPE_STATUS_INDICATION: u8 = 0x98;
pub const NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS: u8 = 0x99;
pub const NDIS_OBJECT_TYPE_FILTER_PAUSE_PARAMETERS: u8 = 0x9A;
pub const NDIS_OBJECT_TYPE_FILTER_RESTART_PARAMETERS: u8 = 0x9B;

pub const NDIS_FILTER_CHARACTERISTICS_REVISION_1: u8 = 1;
pub const NDIS_FILTER_CHARACTERISTICS_REVISION_2: u8 = 2;
/// `NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_1` (through StatusHandler).
pub const NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_1: u16 = 0xC8;
/// `NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2` (through CancelDirectOidRequestHandler).
pub const NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2: u16 = 0xE0;
pub const NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1: u16 = 8;
pub const NDIS_SIZEOF_DEVICE_OBJECT_ATTRIBUTES_REVISION_1: u16 = 0x38;

pub const NDIS_STATUS_SUCCESS: NDIS_STATUS = 0;
pub const NDIS_STATUS_PENDING: NDIS_STATUS = 0x0000_0103;
pub const NDIS_STATUS_FAILURE: NDIS_STATUS = 0xC000_0001_u32 as i32;
pub const NDIS_STATUS_INVALID_PARAMETER: NDIS_STATUS = 0xC000_000D_u32 as i32;
pub const NDIS_STATUS_RESOURCES: NDIS_STATUS = 0xC000_009A_u32 as i32;
pub const NDIS_STATUS_PAUSED: NDIS_STATUS = 0xC023_002A_u32 as i32;
pub const NDIS_STATUS_MEDIA_CONNECT: NDIS_STATUS = 0x4001_000B;

pub const NDIS_SEND_FLAGS_DISPATCH_LEVEL: u32 = 0x1;
pub const NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL: u32 = 0x1;
pub const NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL: u32 = 0x1;
pub const NDIS_RECEIVE_FLAGS_RESOURCES: u32 = 0x2;
pub const NDIS_RETURN_FLAGS_DISPATCH_LEVEL: u32 = 0x1;
pub const NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET: u32 = 0x0000_8000;

/// `IRP_MJ_PNP` and `IRP_MJ_POWER`: entries NDIS refuses in a control
/// device's MajorFunctions table.
pub const IRP_MJ_POWER: usize = 0x16;
pub const IRP_MJ_PNP: usize = 0x1B;
/// `IRP_MJ_MAXIMUM_FUNCTION + 1`.
pub const IRP_MJ_COUNT: usize = 28;

/// Any filter callback, stored untyped; it is transmuted to its real
/// signature at the single place it is called.
pub type Handler = Option<unsafe extern "win64" fn()>;

/// `NDIS_FILTER_DRIVER_CHARACTERISTICS` through revision 2.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_FILTER_DRIVER_CHARACTERISTICS {
    pub Header: NDIS_OBJECT_HEADER,
    pub MajorNdisVersion: u8,
    pub MinorNdisVersion: u8,
    pub MajorDriverVersion: u8,
    pub MinorDriverVersion: u8,
    pub Flags: u32,
    pub FriendlyName: UNICODE_STRING,
    pub UniqueName: UNICODE_STRING,
    pub ServiceName: UNICODE_STRING,
    pub SetOptionsHandler: Handler,
    pub SetFilterModuleOptionsHandler: Handler,
    pub AttachHandler: Handler,
    pub DetachHandler: Handler,
    pub RestartHandler: Handler,
    pub PauseHandler: Handler,
    pub SendNetBufferListsHandler: Handler,
    pub SendNetBufferListsCompleteHandler: Handler,
    pub CancelSendNetBufferListsHandler: Handler,
    pub ReceiveNetBufferListsHandler: Handler,
    pub ReturnNetBufferListsHandler: Handler,
    pub OidRequestHandler: Handler,
    pub OidRequestCompleteHandler: Handler,
    pub CancelOidRequestHandler: Handler,
    pub DevicePnPEventNotifyHandler: Handler,
    pub NetPnPEventHandler: Handler,
    pub StatusHandler: Handler,
    pub DirectOidRequestHandler: Handler,
    pub DirectOidRequestCompleteHandler: Handler,
    pub CancelDirectOidRequestHandler: Handler,
}

/// `NDIS_FILTER_ATTRIBUTES`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_FILTER_ATTRIBUTES {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: u32,
}

/// `NDIS_FILTER_ATTACH_PARAMETERS` revision 4 (NDIS 6.30).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_FILTER_ATTACH_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub IfIndex: u32,
    pub NetLuid: u64,
    pub FilterModuleGuidName: *mut UNICODE_STRING,
    pub BaseMiniportIfIndex: u32,
    pub BaseMiniportInstanceName: *mut UNICODE_STRING,
    pub BaseMiniportName: *mut UNICODE_STRING,
    pub MediaConnectState: u32,
    pub MediaDuplexState: u32,
    pub XmitLinkSpeed: u64,
    pub RcvLinkSpeed: u64,
    pub MiniportMediaType: u32,
    pub MiniportPhysicalMediaType: u32,
    pub MiniportMediaSpecificAttributes: NDIS_HANDLE,
    pub DefaultOffloadConfiguration: *mut c_void,
    pub MacAddressLength: u16,
    pub CurrentMacAddress: [u8; 32],
    pub BaseMiniportNetLuid: u64,
    pub LowerIfIndex: u32,
    pub LowerIfNetLuid: u64,
    pub Flags: u32,
    pub HDSplitCurrentConfig: *mut c_void,
    pub ReceiveFilterCapabilities: *mut c_void,
    pub MiniportPhysicalDeviceObject: *mut c_void,
    pub NicSwitchCapabilities: *mut c_void,
    pub BaseMiniportIfConnectorPresent: u8,
    pub SriovCapabilities: *mut c_void,
    pub NicSwitchArray: *mut c_void,
}
pub const NDIS_FILTER_ATTACH_PARAMETERS_REVISION_4: u8 = 4;

/// `NDIS_FILTER_RESTART_PARAMETERS`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_FILTER_RESTART_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub MiniportMediaType: u32,
    pub MiniportPhysicalMediaType: u32,
    pub RestartAttributes: *mut c_void,
    pub LowerIfIndex: u32,
    pub LowerIfNetLuid: u64,
    pub Flags: u32,
}

/// `NDIS_FILTER_PAUSE_PARAMETERS`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct NDIS_FILTER_PAUSE_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: u32,
    pub PauseReason: u32,
}
/// `NDIS_PAUSE_NDIS_INTERNAL`: the reason the model gives for a pause.
pub const NDIS_PAUSE_NDIS_INTERNAL: u32 = 0x1;

/// `NDIS_DEVICE_OBJECT_ATTRIBUTES` revision 1.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_DEVICE_OBJECT_ATTRIBUTES {
    pub Header: NDIS_OBJECT_HEADER,
    pub DeviceName: *mut UNICODE_STRING,
    pub SymbolicName: *mut UNICODE_STRING,
    pub MajorFunctions: *mut Handler,
    pub ExtensionSize: u32,
    pub DefaultSDDLString: *const UNICODE_STRING,
    pub DeviceClassGuid: *const c_void,
}

/// `NDIS_STATUS_INDICATION`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_STATUS_INDICATION {
    pub Header: NDIS_OBJECT_HEADER,
    pub SourceHandle: NDIS_HANDLE,
    pub PortNumber: u32,
    pub StatusCode: NDIS_STATUS,
    pub Flags: u32,
    pub DestinationHandle: NDIS_HANDLE,
    pub RequestId: *mut c_void,
    pub StatusBuffer: *mut c_void,
    pub StatusBufferSize: u32,
    pub Guid: [u8; 16],
    pub NdisReserved: [*mut c_void; 4],
}

/// `NET_BUFFER` (NDIS 6.30).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct NET_BUFFER {
    pub Next: *mut NET_BUFFER,
    pub CurrentMdl: *mut MDL,
    pub CurrentMdlOffset: u32,
    pub DataLength: usize,
    pub MdlChain: *mut MDL,
    pub DataOffset: u32,
    /// Padding: the union above is as large as its 16-byte-aligned SLIST_HEADER arm rounds it.
    pub _Pad: u32,
    pub ChecksumBias: u16,
    pub Reserved: u16,
    pub NdisPoolHandle: NDIS_HANDLE,
    pub NdisReserved: [*mut c_void; 2],
    pub ProtocolReserved: [*mut c_void; 6],
    pub MiniportReserved: [*mut c_void; 4],
    pub DataPhysicalAddress: u64,
    pub SharedMemoryInfo: *mut c_void,
}

/// Entries of `NetBufferListInfo` the model allocates (larger than any
/// Windows version's `MaxNetBufferListInfo`, which NDIS owns).
pub const NBL_INFO_ENTRIES: usize = 32;

/// `NET_BUFFER_LIST` (NDIS 6.30) with a fixed-size info array.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct NET_BUFFER_LIST {
    pub Next: *mut NET_BUFFER_LIST,
    pub FirstNetBuffer: *mut NET_BUFFER,
    pub Context: *mut c_void,
    pub ParentNetBufferList: *mut NET_BUFFER_LIST,
    pub NdisPoolHandle: NDIS_HANDLE,
    /// Padding: NdisReserved is DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT).
    pub _Pad: usize,
    pub NdisReserved: [*mut c_void; 2],
    pub ProtocolReserved: [*mut c_void; 4],
    pub MiniportReserved: [*mut c_void; 2],
    pub Scratch: *mut c_void,
    pub SourceHandle: NDIS_HANDLE,
    pub NblFlags: u32,
    pub ChildRefCount: i32,
    pub Flags: u32,
    pub Status: NDIS_STATUS,
    pub NetBufferListInfo: [*mut c_void; NBL_INFO_ENTRIES],
}

macro_rules! at {
    ($t:ty, $f:ident, $o:expr) => {
        assert!(core::mem::offset_of!($t, $f) == $o);
    };
}

// Offsets and sizes from km/ndis.h (x64), see the module docs.
const _: () = {
    at!(NDIS_FILTER_DRIVER_CHARACTERISTICS, Flags, 0x08);
    at!(NDIS_FILTER_DRIVER_CHARACTERISTICS, FriendlyName, 0x10);
    at!(NDIS_FILTER_DRIVER_CHARACTERISTICS, ServiceName, 0x30);
    at!(NDIS_FILTER_DRIVER_CHARACTERISTICS, SetOptionsHandler, 0x40);
    at!(NDIS_FILTER_DRIVER_CHARACTERISTICS, AttachHandler, 0x50);
    at!(NDIS_FILTER_DRIVER_CHARACTERISTICS, SendNetBufferListsHandler, 0x70);
    at!(NDIS_FILTER_DRIVER_CHARACTERISTICS, ReceiveNetBufferListsHandler, 0x88);
    at!(NDIS_FILTER_DRIVER_CHARACTERISTICS, StatusHandler, 0xC0);
    assert!(core::mem::size_of::<NDIS_FILTER_DRIVER_CHARACTERISTICS>() == 0xE0);
    at!(NDIS_FILTER_ATTACH_PARAMETERS, FilterModuleGuidName, 0x10);
    at!(NDIS_FILTER_ATTACH_PARAMETERS, BaseMiniportInstanceName, 0x20);
    at!(NDIS_FILTER_ATTACH_PARAMETERS, XmitLinkSpeed, 0x38);
    at!(NDIS_FILTER_ATTACH_PARAMETERS, MacAddressLength, 0x60);
    at!(NDIS_FILTER_ATTACH_PARAMETERS, BaseMiniportNetLuid, 0x88);
    at!(NDIS_FILTER_ATTACH_PARAMETERS, Flags, 0xA0);
    at!(NDIS_FILTER_ATTACH_PARAMETERS, BaseMiniportIfConnectorPresent, 0xC8);
    assert!(core::mem::size_of::<NDIS_FILTER_ATTACH_PARAMETERS>() == 0xE0);
    assert!(core::mem::size_of::<NDIS_FILTER_RESTART_PARAMETERS>() == 0x30);
    assert!(core::mem::size_of::<NDIS_FILTER_PAUSE_PARAMETERS>() == 0x0C);
    at!(NDIS_DEVICE_OBJECT_ATTRIBUTES, MajorFunctions, 0x18);
    at!(NDIS_DEVICE_OBJECT_ATTRIBUTES, ExtensionSize, 0x20);
    assert!(core::mem::size_of::<NDIS_DEVICE_OBJECT_ATTRIBUTES>() == 0x38);
    at!(NDIS_STATUS_INDICATION, StatusCode, 0x14);
    at!(NDIS_STATUS_INDICATION, StatusBuffer, 0x30);
    at!(NDIS_STATUS_INDICATION, Guid, 0x3C);
    assert!(core::mem::size_of::<NDIS_STATUS_INDICATION>() == 0x70);
    at!(NET_BUFFER, CurrentMdlOffset, 0x10);
    at!(NET_BUFFER, DataLength, 0x18);
    at!(NET_BUFFER, MdlChain, 0x20);
    at!(NET_BUFFER, DataOffset, 0x28);
    at!(NET_BUFFER, ChecksumBias, 0x30);
    at!(NET_BUFFER, NdisReserved, 0x40);
    at!(NET_BUFFER, MiniportReserved, 0x80);
    at!(NET_BUFFER, DataPhysicalAddress, 0xA0);
    assert!(core::mem::size_of::<NET_BUFFER>() == 0xB0);
    at!(NET_BUFFER_LIST, NdisReserved, 0x30);
    at!(NET_BUFFER_LIST, ProtocolReserved, 0x40);
    at!(NET_BUFFER_LIST, MiniportReserved, 0x60);
    at!(NET_BUFFER_LIST, SourceHandle, 0x78);
    at!(NET_BUFFER_LIST, NblFlags, 0x80);
    at!(NET_BUFFER_LIST, Flags, 0x88);
    at!(NET_BUFFER_LIST, Status, 0x8C);
    at!(NET_BUFFER_LIST, NetBufferListInfo, 0x90);
    assert!(core::mem::size_of::<MDL>() == 0x30);
};
