//! Filter driver registration, filter-module parameters and the `FILTER_*`
//! callback signatures (ndis.h, NDIS 6.30).
//!
//! Layouts: public WDK 10 km/ndis.h (copy of MuAlphaOmegaEpsilon/wdk-10)
//! compiled with clang --target=x86_64-pc-windows-msvc -fms-extensions
//! -DNDIS630=1 -DNDIS_WDM=1 -D_AMD64_, sizeof/offsetof. The attach parameters
//! also match the public x64 PDB type dumps of `_NDIS_FILTER_ATTACH_PARAMETERS`
//! (Size=0xe0, BaseMiniportIfIndex at 0x18, LowerIfIndex at 0x90).

use core::ffi::c_void;

use windows_sys::core::GUID;

use crate::kernel::{DEVICE_OBJECT, NDIS_HANDLE, NDIS_STATUS, NDIS_STRING};
use crate::nbl::NET_BUFFER_LIST;
use crate::net::{
    NDIS_MAX_PHYS_ADDRESS_LENGTH, NDIS_MEDIA_CONNECT_STATE, NDIS_MEDIUM, NDIS_PHYSICAL_MEDIUM, NDIS_PORT_NUMBER,
    NET_IFINDEX, NET_IF_MEDIA_DUPLEX_STATE, NET_LUID,
};
use crate::object::NDIS_OBJECT_HEADER;

/// `NDIS_FILTER_MAJOR_VERSION` for an NDIS 6.30 filter.
pub const NDIS_FILTER_MAJOR_VERSION: u8 = 6;
/// `NDIS_FILTER_MINOR_VERSION` for an NDIS 6.30 filter.
pub const NDIS_FILTER_MINOR_VERSION: u8 = 30;
/// `NDIS_PAUSE_NDIS_INTERNAL`: `PauseReason` bit of a pause NDIS makes for
/// its own reasons (a stack rebind, a filter added or removed).
pub const NDIS_PAUSE_NDIS_INTERNAL: u32 = 0x1;
/// `NDIS_FILTER_DRIVER_MANDATORY`: the filter is mandatory (binding waits
/// for it). PortWatch does not set it.
pub const NDIS_FILTER_DRIVER_MANDATORY: u32 = 0x1;

macro_rules! opaque {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        ///
        /// Opaque: only ever handled through a pointer NDIS supplies.
        #[repr(C)]
        pub struct $name {
            _opaque: [u8; 0],
        }
    )*};
}

opaque! {
    /// `NDIS_OID_REQUEST`. PortWatch leaves its OID handlers NULL, so NDIS
    /// passes OID requests around it and the layout is never needed.
    NDIS_OID_REQUEST;
    /// `NET_DEVICE_PNP_EVENT`.
    NET_DEVICE_PNP_EVENT;
    /// `NET_PNP_EVENT_NOTIFICATION`.
    NET_PNP_EVENT_NOTIFICATION;
    /// `NDIS_RESTART_ATTRIBUTES`.
    NDIS_RESTART_ATTRIBUTES;
    /// `NDIS_OFFLOAD`.
    NDIS_OFFLOAD;
    /// `NDIS_HD_SPLIT_CURRENT_CONFIG`.
    NDIS_HD_SPLIT_CURRENT_CONFIG;
    /// `NDIS_RECEIVE_FILTER_CAPABILITIES`.
    NDIS_RECEIVE_FILTER_CAPABILITIES;
    /// `NDIS_NIC_SWITCH_CAPABILITIES`.
    NDIS_NIC_SWITCH_CAPABILITIES;
    /// `NDIS_SRIOV_CAPABILITIES`.
    NDIS_SRIOV_CAPABILITIES;
    /// `NDIS_NIC_SWITCH_INFO_ARRAY`.
    NDIS_NIC_SWITCH_INFO_ARRAY;
}

/// `SET_OPTIONS`: `FilterSetOptions(NdisDriverHandle, DriverContext)`, PASSIVE,
/// called inside `NdisFRegisterFilterDriver`.
pub type SET_OPTIONS_HANDLER =
    Option<unsafe extern "system" fn(NdisDriverHandle: NDIS_HANDLE, DriverContext: NDIS_HANDLE) -> NDIS_STATUS>;
/// `FILTER_SET_MODULE_OPTIONS`: `FilterSetModuleOptions(FilterModuleContext)`, PASSIVE.
pub type FILTER_SET_FILTER_MODULE_OPTIONS_HANDLER =
    Option<unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE) -> NDIS_STATUS>;
/// `FILTER_ATTACH`: `FilterAttach(NdisFilterHandle, FilterDriverContext,
/// AttachParameters)`, PASSIVE.
pub type FILTER_ATTACH_HANDLER = Option<
    unsafe extern "system" fn(
        NdisFilterHandle: NDIS_HANDLE,
        FilterDriverContext: NDIS_HANDLE,
        AttachParameters: *mut NDIS_FILTER_ATTACH_PARAMETERS,
    ) -> NDIS_STATUS,
>;
/// `FILTER_DETACH`: `FilterDetach(FilterModuleContext)`, PASSIVE; cannot fail.
pub type FILTER_DETACH_HANDLER = Option<unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE)>;
/// `FILTER_RESTART`: `FilterRestart(FilterModuleContext, RestartParameters)`, PASSIVE.
pub type FILTER_RESTART_HANDLER = Option<
    unsafe extern "system" fn(
        FilterModuleContext: NDIS_HANDLE,
        RestartParameters: *mut NDIS_FILTER_RESTART_PARAMETERS,
    ) -> NDIS_STATUS,
>;
/// `FILTER_PAUSE`: `FilterPause(FilterModuleContext, PauseParameters)`, PASSIVE;
/// returns SUCCESS or PENDING (then `NdisFPauseComplete`).
pub type FILTER_PAUSE_HANDLER = Option<
    unsafe extern "system" fn(
        FilterModuleContext: NDIS_HANDLE,
        PauseParameters: *mut NDIS_FILTER_PAUSE_PARAMETERS,
    ) -> NDIS_STATUS,
>;
/// `FILTER_SEND_NET_BUFFER_LISTS`: `FilterSendNetBufferLists(FilterModuleContext,
/// NetBufferList, PortNumber, SendFlags)`, <= DISPATCH.
pub type FILTER_SEND_NET_BUFFER_LISTS_HANDLER = Option<
    unsafe extern "system" fn(
        FilterModuleContext: NDIS_HANDLE,
        NetBufferList: *mut NET_BUFFER_LIST,
        PortNumber: NDIS_PORT_NUMBER,
        SendFlags: u32,
    ),
>;
/// `FILTER_SEND_NET_BUFFER_LISTS_COMPLETE`:
/// `FilterSendNetBufferListsComplete(FilterModuleContext, NetBufferList,
/// SendCompleteFlags)`, <= DISPATCH.
pub type FILTER_SEND_NET_BUFFER_LISTS_COMPLETE_HANDLER = Option<
    unsafe extern "system" fn(
        FilterModuleContext: NDIS_HANDLE,
        NetBufferList: *mut NET_BUFFER_LIST,
        SendCompleteFlags: u32,
    ),
>;
/// `FILTER_CANCEL_SEND_NET_BUFFER_LISTS`: `FilterCancelSendNetBufferLists(
/// FilterModuleContext, CancelId)`, <= DISPATCH.
pub type FILTER_CANCEL_SEND_HANDLER =
    Option<unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, CancelId: *mut c_void)>;
/// `FILTER_RECEIVE_NET_BUFFER_LISTS`: `FilterReceiveNetBufferLists(
/// FilterModuleContext, NetBufferLists, PortNumber, NumberOfNetBufferLists,
/// ReceiveFlags)`, <= DISPATCH.
pub type FILTER_RECEIVE_NET_BUFFER_LISTS_HANDLER = Option<
    unsafe extern "system" fn(
        FilterModuleContext: NDIS_HANDLE,
        NetBufferLists: *mut NET_BUFFER_LIST,
        PortNumber: NDIS_PORT_NUMBER,
        NumberOfNetBufferLists: u32,
        ReceiveFlags: u32,
    ),
>;
/// `FILTER_RETURN_NET_BUFFER_LISTS`: `FilterReturnNetBufferLists(
/// FilterModuleContext, NetBufferLists, ReturnFlags)`, <= DISPATCH.
pub type FILTER_RETURN_NET_BUFFER_LISTS_HANDLER = Option<
    unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, NetBufferLists: *mut NET_BUFFER_LIST, ReturnFlags: u32),
>;
/// `FILTER_OID_REQUEST`: `FilterOidRequest(FilterModuleContext, OidRequest)`, <= DISPATCH.
pub type FILTER_OID_REQUEST_HANDLER = Option<
    unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, OidRequest: *mut NDIS_OID_REQUEST) -> NDIS_STATUS,
>;
/// `FILTER_OID_REQUEST_COMPLETE`: `FilterOidRequestComplete(FilterModuleContext,
/// OidRequest, Status)`, <= DISPATCH.
pub type FILTER_OID_REQUEST_COMPLETE_HANDLER = Option<
    unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, OidRequest: *mut NDIS_OID_REQUEST, Status: NDIS_STATUS),
>;
/// `FILTER_CANCEL_OID_REQUEST`: `FilterCancelOidRequest(FilterModuleContext,
/// RequestId)`, <= DISPATCH.
pub type FILTER_CANCEL_OID_REQUEST_HANDLER =
    Option<unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, RequestId: *mut c_void)>;
/// `FILTER_DEVICE_PNP_EVENT_NOTIFY`: `FilterDevicePnPEventNotify(
/// FilterModuleContext, NetDevicePnPEvent)`, PASSIVE.
pub type FILTER_DEVICE_PNP_EVENT_NOTIFY_HANDLER =
    Option<unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, NetDevicePnPEvent: *mut NET_DEVICE_PNP_EVENT)>;
/// `FILTER_NET_PNP_EVENT`: `FilterNetPnPEvent(FilterModuleContext,
/// NetPnPEventNotification)`, PASSIVE.
pub type FILTER_NET_PNP_EVENT_HANDLER = Option<
    unsafe extern "system" fn(
        FilterModuleContext: NDIS_HANDLE,
        NetPnPEventNotification: *mut NET_PNP_EVENT_NOTIFICATION,
    ) -> NDIS_STATUS,
>;
/// `FILTER_STATUS`: `FilterStatus(FilterModuleContext, StatusIndication)`, <= DISPATCH.
pub type FILTER_STATUS_HANDLER =
    Option<unsafe extern "system" fn(FilterModuleContext: NDIS_HANDLE, StatusIndication: *mut NDIS_STATUS_INDICATION)>;
/// `FILTER_DIRECT_OID_REQUEST`: `FilterDirectOidRequest(FilterModuleContext,
/// OidRequest)`, <= DISPATCH.
pub type FILTER_DIRECT_OID_REQUEST_HANDLER = FILTER_OID_REQUEST_HANDLER;
/// `FILTER_DIRECT_OID_REQUEST_COMPLETE`: `FilterDirectOidRequestComplete(
/// FilterModuleContext, OidRequest, Status)`, <= DISPATCH.
pub type FILTER_DIRECT_OID_REQUEST_COMPLETE_HANDLER = FILTER_OID_REQUEST_COMPLETE_HANDLER;
/// `FILTER_CANCEL_DIRECT_OID_REQUEST`: `FilterCancelDirectOidRequest(
/// FilterModuleContext, RequestId)`, <= DISPATCH.
pub type FILTER_CANCEL_DIRECT_OID_REQUEST_HANDLER = FILTER_CANCEL_OID_REQUEST_HANDLER;

/// `NDIS_FILTER_DRIVER_CHARACTERISTICS` (revision 2, NDIS 6.1 - 6.30), passed
/// to `NdisFRegisterFilterDriver`.
///
/// `Header`: `NDIS_OBJECT_TYPE_FILTER_DRIVER_CHARACTERISTICS`,
/// `NDIS_FILTER_CHARACTERISTICS_REVISION_2`,
/// `NDIS_SIZEOF_FILTER_DRIVER_CHARACTERISTICS_REVISION_2`. Attach, Detach,
/// Restart and Pause are mandatory; a NULL optional handler makes NDIS bypass
/// the filter for that operation.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct NDIS_FILTER_DRIVER_CHARACTERISTICS {
    /// Object header (see the type's docs).
    pub Header: NDIS_OBJECT_HEADER,
    /// NDIS major version the filter is written for ([`NDIS_FILTER_MAJOR_VERSION`]).
    pub MajorNdisVersion: u8,
    /// NDIS minor version ([`NDIS_FILTER_MINOR_VERSION`]).
    pub MinorNdisVersion: u8,
    /// The driver's own major version.
    pub MajorDriverVersion: u8,
    /// The driver's own minor version.
    pub MinorDriverVersion: u8,
    /// `NDIS_FILTER_DRIVER_*` flags.
    pub Flags: u32,
    /// Friendly name (the INF's filter description).
    pub FriendlyName: NDIS_STRING,
    /// Unique name: the INF's `NetCfgInstanceId` GUID, braces included.
    pub UniqueName: NDIS_STRING,
    /// Service name: the INF's `AddService` name.
    pub ServiceName: NDIS_STRING,
    /// `FilterSetOptions`.
    pub SetOptionsHandler: SET_OPTIONS_HANDLER,
    /// `FilterSetModuleOptions`.
    pub SetFilterModuleOptionsHandler: FILTER_SET_FILTER_MODULE_OPTIONS_HANDLER,
    /// `FilterAttach` (mandatory).
    pub AttachHandler: FILTER_ATTACH_HANDLER,
    /// `FilterDetach` (mandatory).
    pub DetachHandler: FILTER_DETACH_HANDLER,
    /// `FilterRestart` (mandatory).
    pub RestartHandler: FILTER_RESTART_HANDLER,
    /// `FilterPause` (mandatory).
    pub PauseHandler: FILTER_PAUSE_HANDLER,
    /// `FilterSendNetBufferLists`.
    pub SendNetBufferListsHandler: FILTER_SEND_NET_BUFFER_LISTS_HANDLER,
    /// `FilterSendNetBufferListsComplete`.
    pub SendNetBufferListsCompleteHandler: FILTER_SEND_NET_BUFFER_LISTS_COMPLETE_HANDLER,
    /// `FilterCancelSendNetBufferLists`.
    pub CancelSendNetBufferListsHandler: FILTER_CANCEL_SEND_HANDLER,
    /// `FilterReceiveNetBufferLists`.
    pub ReceiveNetBufferListsHandler: FILTER_RECEIVE_NET_BUFFER_LISTS_HANDLER,
    /// `FilterReturnNetBufferLists`.
    pub ReturnNetBufferListsHandler: FILTER_RETURN_NET_BUFFER_LISTS_HANDLER,
    /// `FilterOidRequest`.
    pub OidRequestHandler: FILTER_OID_REQUEST_HANDLER,
    /// `FilterOidRequestComplete`.
    pub OidRequestCompleteHandler: FILTER_OID_REQUEST_COMPLETE_HANDLER,
    /// `FilterCancelOidRequest`.
    pub CancelOidRequestHandler: FILTER_CANCEL_OID_REQUEST_HANDLER,
    /// `FilterDevicePnPEventNotify`.
    pub DevicePnPEventNotifyHandler: FILTER_DEVICE_PNP_EVENT_NOTIFY_HANDLER,
    /// `FilterNetPnPEvent`.
    pub NetPnPEventHandler: FILTER_NET_PNP_EVENT_HANDLER,
    /// `FilterStatus`.
    pub StatusHandler: FILTER_STATUS_HANDLER,
    /// `FilterDirectOidRequest` (revision 2).
    pub DirectOidRequestHandler: FILTER_DIRECT_OID_REQUEST_HANDLER,
    /// `FilterDirectOidRequestComplete` (revision 2).
    pub DirectOidRequestCompleteHandler: FILTER_DIRECT_OID_REQUEST_COMPLETE_HANDLER,
    /// `FilterCancelDirectOidRequest` (revision 2).
    pub CancelDirectOidRequestHandler: FILTER_CANCEL_DIRECT_OID_REQUEST_HANDLER,
}

/// `NDIS_FILTER_ATTACH_PARAMETERS` (revision 4, NDIS 6.30): what NDIS tells
/// `FilterAttach` about the filter module and the miniport below it.
///
/// NDIS owns it; a filter reads it during `FilterAttach` only.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_FILTER_ATTACH_PARAMETERS {
    /// `NDIS_OBJECT_TYPE_FILTER_ATTACH_PARAMETERS`, revision 1-4.
    pub Header: NDIS_OBJECT_HEADER,
    /// Interface index of this filter module.
    pub IfIndex: NET_IFINDEX,
    /// LUID of this filter module.
    pub NetLuid: NET_LUID,
    /// The filter module's GUID name.
    pub FilterModuleGuidName: *mut NDIS_STRING,
    /// Interface index of the miniport at the bottom of the stack.
    pub BaseMiniportIfIndex: NET_IFINDEX,
    /// The miniport's instance name (friendly).
    pub BaseMiniportInstanceName: *mut NDIS_STRING,
    /// The miniport's device name.
    pub BaseMiniportName: *mut NDIS_STRING,
    /// Media connect state.
    pub MediaConnectState: NDIS_MEDIA_CONNECT_STATE,
    /// Duplex state.
    pub MediaDuplexState: NET_IF_MEDIA_DUPLEX_STATE,
    /// Transmit link speed, bits per second.
    pub XmitLinkSpeed: u64,
    /// Receive link speed, bits per second.
    pub RcvLinkSpeed: u64,
    /// Medium of the layer below (in/out: a filter may change it).
    pub MiniportMediaType: NDIS_MEDIUM,
    /// Physical medium of the layer below (in/out).
    pub MiniportPhysicalMediaType: NDIS_PHYSICAL_MEDIUM,
    /// Media-specific attributes.
    pub MiniportMediaSpecificAttributes: NDIS_HANDLE,
    /// Default offload configuration.
    pub DefaultOffloadConfiguration: *mut NDIS_OFFLOAD,
    /// Bytes used in `CurrentMacAddress`.
    pub MacAddressLength: u16,
    /// Current MAC address.
    pub CurrentMacAddress: [u8; NDIS_MAX_PHYS_ADDRESS_LENGTH],
    /// LUID of the miniport at the bottom of the stack.
    pub BaseMiniportNetLuid: NET_LUID,
    /// Interface index of the layer directly below this module.
    pub LowerIfIndex: NET_IFINDEX,
    /// LUID of the layer directly below.
    pub LowerIfNetLuid: NET_LUID,
    /// Attach flags (in/out).
    pub Flags: u32,
    /// Header-data split configuration (revision 2).
    pub HDSplitCurrentConfig: *mut NDIS_HD_SPLIT_CURRENT_CONFIG,
    /// Receive filter capabilities (revision 3).
    pub ReceiveFilterCapabilities: *mut NDIS_RECEIVE_FILTER_CAPABILITIES,
    /// The miniport's physical device object (revision 3).
    pub MiniportPhysicalDeviceObject: *mut DEVICE_OBJECT,
    /// NIC switch capabilities (revision 3).
    pub NicSwitchCapabilities: *mut NDIS_NIC_SWITCH_CAPABILITIES,
    /// Whether the miniport has a connector (`BOOLEAN`, revision 4).
    pub BaseMiniportIfConnectorPresent: u8,
    /// SR-IOV capabilities (revision 4).
    pub SriovCapabilities: *mut NDIS_SRIOV_CAPABILITIES,
    /// NIC switch array (revision 4).
    pub NicSwitchArray: *mut NDIS_NIC_SWITCH_INFO_ARRAY,
}

/// `NDIS_FILTER_ATTRIBUTES`: passed to `NdisFSetAttributes` from `FilterAttach`.
///
/// `Header`: `NDIS_OBJECT_TYPE_FILTER_ATTRIBUTES`,
/// `NDIS_FILTER_ATTRIBUTES_REVISION_1`, `NDIS_SIZEOF_FILTER_ATTRIBUTES_REVISION_1`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NDIS_FILTER_ATTRIBUTES {
    /// Object header (see the type's docs).
    pub Header: NDIS_OBJECT_HEADER,
    /// Reserved: zero.
    pub Flags: u32,
}

/// `NDIS_FILTER_RESTART_PARAMETERS`: what NDIS passes to `FilterRestart`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_FILTER_RESTART_PARAMETERS {
    /// `NDIS_OBJECT_TYPE_FILTER_RESTART_PARAMETERS`, revision 1.
    pub Header: NDIS_OBJECT_HEADER,
    /// Medium of the layer below.
    pub MiniportMediaType: NDIS_MEDIUM,
    /// Physical medium of the layer below.
    pub MiniportPhysicalMediaType: NDIS_PHYSICAL_MEDIUM,
    /// Restart attributes list (a filter may modify or append).
    pub RestartAttributes: *mut NDIS_RESTART_ATTRIBUTES,
    /// Interface index of the layer below.
    pub LowerIfIndex: NET_IFINDEX,
    /// LUID of the layer below.
    pub LowerIfNetLuid: NET_LUID,
    /// Reserved.
    pub Flags: u32,
}

/// `NDIS_FILTER_PAUSE_PARAMETERS`: what NDIS passes to `FilterPause`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NDIS_FILTER_PAUSE_PARAMETERS {
    /// `NDIS_OBJECT_TYPE_FILTER_PAUSE_PARAMETERS`, revision 1.
    pub Header: NDIS_OBJECT_HEADER,
    /// Reserved.
    pub Flags: u32,
    /// `NDIS_PAUSE_*` reason bits.
    pub PauseReason: u32,
}

/// `NDIS_STATUS_INDICATION`: a status indication (`FilterStatus`,
/// `NdisFIndicateStatus`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NDIS_STATUS_INDICATION {
    /// `NDIS_OBJECT_TYPE_STATUS_INDICATION`, `NDIS_STATUS_INDICATION_REVISION_1`.
    pub Header: NDIS_OBJECT_HEADER,
    /// Handle of the indicating module (a filter sets its NdisFilterHandle).
    pub SourceHandle: NDIS_HANDLE,
    /// Port the status applies to.
    pub PortNumber: NDIS_PORT_NUMBER,
    /// The `NDIS_STATUS_*` indication code.
    pub StatusCode: NDIS_STATUS,
    /// `NDIS_STATUS_INDICATION_FLAGS_*`.
    pub Flags: u32,
    /// Destination handle, for indications aimed at one binding.
    pub DestinationHandle: NDIS_HANDLE,
    /// Request the indication answers, if any.
    pub RequestId: *mut c_void,
    /// Indication payload.
    pub StatusBuffer: *mut c_void,
    /// Bytes in `StatusBuffer`.
    pub StatusBufferSize: u32,
    /// GUID, for `NDIS_STATUS_MEDIA_SPECIFIC_INDICATION` only.
    pub Guid: GUID,
    /// Reserved for NDIS.
    pub NdisReserved: [*mut c_void; 4],
}

macro_rules! zeroed_default {
    ($($name:ident),*) => {$(
        impl Default for $name {
            /// All fields zero / NULL.
            fn default() -> Self {
                // SAFETY: every field is an integer, an integer array, a
                // GUID, a raw pointer or an NDIS_OBJECT_HEADER, for all of
                // which the all-zero bit pattern is a valid value.
                unsafe { core::mem::zeroed() }
            }
        }
    )*};
}

zeroed_default!(NDIS_FILTER_ATTACH_PARAMETERS, NDIS_FILTER_RESTART_PARAMETERS, NDIS_STATUS_INDICATION);

// Layouts, x64. Source: public WDK 10 km/ndis.h (public copy), clang
// --target=x86_64-pc-windows-msvc -DNDIS630=1 -DNDIS_WDM=1, sizeof/offsetof.
const _: () = {
    use core::mem::{offset_of, size_of};

    type C = NDIS_FILTER_DRIVER_CHARACTERISTICS;
    assert!(size_of::<C>() == 224);
    assert!(offset_of!(C, Header) == 0);
    assert!(offset_of!(C, MajorNdisVersion) == 4);
    assert!(offset_of!(C, MinorNdisVersion) == 5);
    assert!(offset_of!(C, MajorDriverVersion) == 6);
    assert!(offset_of!(C, MinorDriverVersion) == 7);
    assert!(offset_of!(C, Flags) == 8);
    assert!(offset_of!(C, FriendlyName) == 16);
    assert!(offset_of!(C, UniqueName) == 32);
    assert!(offset_of!(C, ServiceName) == 48);
    assert!(offset_of!(C, SetOptionsHandler) == 64);
    assert!(offset_of!(C, SetFilterModuleOptionsHandler) == 72);
    assert!(offset_of!(C, AttachHandler) == 80);
    assert!(offset_of!(C, DetachHandler) == 88);
    assert!(offset_of!(C, RestartHandler) == 96);
    assert!(offset_of!(C, PauseHandler) == 104);
    assert!(offset_of!(C, SendNetBufferListsHandler) == 112);
    assert!(offset_of!(C, SendNetBufferListsCompleteHandler) == 120);
    assert!(offset_of!(C, CancelSendNetBufferListsHandler) == 128);
    assert!(offset_of!(C, ReceiveNetBufferListsHandler) == 136);
    assert!(offset_of!(C, ReturnNetBufferListsHandler) == 144);
    assert!(offset_of!(C, OidRequestHandler) == 152);
    assert!(offset_of!(C, OidRequestCompleteHandler) == 160);
    assert!(offset_of!(C, CancelOidRequestHandler) == 168);
    assert!(offset_of!(C, DevicePnPEventNotifyHandler) == 176);
    assert!(offset_of!(C, NetPnPEventHandler) == 184);
    assert!(offset_of!(C, StatusHandler) == 192);
    assert!(offset_of!(C, DirectOidRequestHandler) == 200);
    assert!(offset_of!(C, DirectOidRequestCompleteHandler) == 208);
    assert!(offset_of!(C, CancelDirectOidRequestHandler) == 216);

    type A = NDIS_FILTER_ATTACH_PARAMETERS;
    assert!(size_of::<A>() == 224);
    assert!(offset_of!(A, Header) == 0);
    assert!(offset_of!(A, IfIndex) == 4);
    assert!(offset_of!(A, NetLuid) == 8);
    assert!(offset_of!(A, FilterModuleGuidName) == 16);
    assert!(offset_of!(A, BaseMiniportIfIndex) == 24);
    assert!(offset_of!(A, BaseMiniportInstanceName) == 32);
    assert!(offset_of!(A, BaseMiniportName) == 40);
    assert!(offset_of!(A, MediaConnectState) == 48);
    assert!(offset_of!(A, MediaDuplexState) == 52);
    assert!(offset_of!(A, XmitLinkSpeed) == 56);
    assert!(offset_of!(A, RcvLinkSpeed) == 64);
    assert!(offset_of!(A, MiniportMediaType) == 72);
    assert!(offset_of!(A, MiniportPhysicalMediaType) == 76);
    assert!(offset_of!(A, MiniportMediaSpecificAttributes) == 80);
    assert!(offset_of!(A, DefaultOffloadConfiguration) == 88);
    assert!(offset_of!(A, MacAddressLength) == 96);
    assert!(offset_of!(A, CurrentMacAddress) == 98);
    assert!(offset_of!(A, BaseMiniportNetLuid) == 136);
    assert!(offset_of!(A, LowerIfIndex) == 144);
    assert!(offset_of!(A, LowerIfNetLuid) == 152);
    assert!(offset_of!(A, Flags) == 160);
    assert!(offset_of!(A, HDSplitCurrentConfig) == 168);
    assert!(offset_of!(A, ReceiveFilterCapabilities) == 176);
    assert!(offset_of!(A, MiniportPhysicalDeviceObject) == 184);
    assert!(offset_of!(A, NicSwitchCapabilities) == 192);
    assert!(offset_of!(A, BaseMiniportIfConnectorPresent) == 200);
    assert!(offset_of!(A, SriovCapabilities) == 208);
    assert!(offset_of!(A, NicSwitchArray) == 216);

    assert!(size_of::<NDIS_FILTER_ATTRIBUTES>() == 8);
    assert!(offset_of!(NDIS_FILTER_ATTRIBUTES, Header) == 0);
    assert!(offset_of!(NDIS_FILTER_ATTRIBUTES, Flags) == 4);

    type R = NDIS_FILTER_RESTART_PARAMETERS;
    assert!(size_of::<R>() == 48);
    assert!(offset_of!(R, Header) == 0);
    assert!(offset_of!(R, MiniportMediaType) == 4);
    assert!(offset_of!(R, MiniportPhysicalMediaType) == 8);
    assert!(offset_of!(R, RestartAttributes) == 16);
    assert!(offset_of!(R, LowerIfIndex) == 24);
    assert!(offset_of!(R, LowerIfNetLuid) == 32);
    assert!(offset_of!(R, Flags) == 40);

    type P = NDIS_FILTER_PAUSE_PARAMETERS;
    assert!(size_of::<P>() == 12);
    assert!(offset_of!(P, Header) == 0);
    assert!(offset_of!(P, Flags) == 4);
    assert!(offset_of!(P, PauseReason) == 8);

    type S = NDIS_STATUS_INDICATION;
    assert!(size_of::<S>() == 112);
    assert!(offset_of!(S, Header) == 0);
    assert!(offset_of!(S, SourceHandle) == 8);
    assert!(offset_of!(S, PortNumber) == 16);
    assert!(offset_of!(S, StatusCode) == 20);
    assert!(offset_of!(S, Flags) == 24);
    assert!(offset_of!(S, DestinationHandle) == 32);
    assert!(offset_of!(S, RequestId) == 40);
    assert!(offset_of!(S, StatusBuffer) == 48);
    assert!(offset_of!(S, StatusBufferSize) == 56);
    assert!(offset_of!(S, Guid) == 60);
    assert!(offset_of!(S, NdisReserved) == 80);
};
