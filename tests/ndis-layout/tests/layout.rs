//! ndis-sys's hand-written types against bindgen's bindings of the WDK's
//! ndis.h (NDIS 6.30, WDM, x64): the size and alignment of each type, and
//! the offset, size and alignment of every field ndis-sys declares.
//!
//! Only with the `wdk-headers` feature (see the crate docs); without it this
//! file is empty. Types ndis-sys keeps opaque (`NDIS_RW_LOCK_EX`,
//! `NET_BUFFER_LIST_CONTEXT`, `NDIS_OID_REQUEST`, ...) have no layout to
//! compare.
#![cfg(feature = "wdk-headers")]

use portwatch_ndis_layout::compare_layout;
use portwatch_ndis_layout::layout::{Compared, Comparison, Layout};
use portwatch_ndis_layout::ndis as c;

#[test]
fn ndis_object_header() {
    compare_layout!(struct ndis_sys::NDIS_OBJECT_HEADER as c::NDIS_OBJECT_HEADER {
        Type => Type,
        Revision => Revision,
        Size => Size,
    })
    .assert_matches();
}

#[test]
fn ndis_device_object_attributes() {
    compare_layout!(struct ndis_sys::NDIS_DEVICE_OBJECT_ATTRIBUTES as c::NDIS_DEVICE_OBJECT_ATTRIBUTES {
        Header => Header,
        DeviceName => DeviceName,
        SymbolicName => SymbolicName,
        MajorFunctions => MajorFunctions,
        ExtensionSize => ExtensionSize,
        DefaultSDDLString => DefaultSDDLString,
        DeviceClassGuid => DeviceClassGuid,
    })
    .assert_matches();
}

#[test]
fn ndis_filter_driver_characteristics() {
    compare_layout!(struct ndis_sys::NDIS_FILTER_DRIVER_CHARACTERISTICS as c::NDIS_FILTER_DRIVER_CHARACTERISTICS {
        Header => Header,
        MajorNdisVersion => MajorNdisVersion,
        MinorNdisVersion => MinorNdisVersion,
        MajorDriverVersion => MajorDriverVersion,
        MinorDriverVersion => MinorDriverVersion,
        Flags => Flags,
        FriendlyName => FriendlyName,
        UniqueName => UniqueName,
        ServiceName => ServiceName,
        SetOptionsHandler => SetOptionsHandler,
        SetFilterModuleOptionsHandler => SetFilterModuleOptionsHandler,
        AttachHandler => AttachHandler,
        DetachHandler => DetachHandler,
        RestartHandler => RestartHandler,
        PauseHandler => PauseHandler,
        SendNetBufferListsHandler => SendNetBufferListsHandler,
        SendNetBufferListsCompleteHandler => SendNetBufferListsCompleteHandler,
        CancelSendNetBufferListsHandler => CancelSendNetBufferListsHandler,
        ReceiveNetBufferListsHandler => ReceiveNetBufferListsHandler,
        ReturnNetBufferListsHandler => ReturnNetBufferListsHandler,
        OidRequestHandler => OidRequestHandler,
        OidRequestCompleteHandler => OidRequestCompleteHandler,
        CancelOidRequestHandler => CancelOidRequestHandler,
        DevicePnPEventNotifyHandler => DevicePnPEventNotifyHandler,
        NetPnPEventHandler => NetPnPEventHandler,
        StatusHandler => StatusHandler,
        DirectOidRequestHandler => DirectOidRequestHandler,
        DirectOidRequestCompleteHandler => DirectOidRequestCompleteHandler,
        CancelDirectOidRequestHandler => CancelDirectOidRequestHandler,
    })
    .assert_matches();
}

#[test]
fn ndis_filter_attach_parameters() {
    compare_layout!(struct ndis_sys::NDIS_FILTER_ATTACH_PARAMETERS as c::NDIS_FILTER_ATTACH_PARAMETERS {
        Header => Header,
        IfIndex => IfIndex,
        NetLuid => NetLuid,
        FilterModuleGuidName => FilterModuleGuidName,
        BaseMiniportIfIndex => BaseMiniportIfIndex,
        BaseMiniportInstanceName => BaseMiniportInstanceName,
        BaseMiniportName => BaseMiniportName,
        MediaConnectState => MediaConnectState,
        MediaDuplexState => MediaDuplexState,
        XmitLinkSpeed => XmitLinkSpeed,
        RcvLinkSpeed => RcvLinkSpeed,
        MiniportMediaType => MiniportMediaType,
        MiniportPhysicalMediaType => MiniportPhysicalMediaType,
        MiniportMediaSpecificAttributes => MiniportMediaSpecificAttributes,
        DefaultOffloadConfiguration => DefaultOffloadConfiguration,
        MacAddressLength => MacAddressLength,
        CurrentMacAddress => CurrentMacAddress,
        BaseMiniportNetLuid => BaseMiniportNetLuid,
        LowerIfIndex => LowerIfIndex,
        LowerIfNetLuid => LowerIfNetLuid,
        Flags => Flags,
        HDSplitCurrentConfig => HDSplitCurrentConfig,
        ReceiveFilterCapabilities => ReceiveFilterCapabilities,
        MiniportPhysicalDeviceObject => MiniportPhysicalDeviceObject,
        NicSwitchCapabilities => NicSwitchCapabilities,
        BaseMiniportIfConnectorPresent => BaseMiniportIfConnectorPresent,
        SriovCapabilities => SriovCapabilities,
        NicSwitchArray => NicSwitchArray,
    })
    .assert_matches();
}

#[test]
fn ndis_filter_attributes() {
    compare_layout!(struct ndis_sys::NDIS_FILTER_ATTRIBUTES as c::NDIS_FILTER_ATTRIBUTES {
        Header => Header,
        Flags => Flags,
    })
    .assert_matches();
}

#[test]
fn ndis_filter_restart_parameters() {
    compare_layout!(struct ndis_sys::NDIS_FILTER_RESTART_PARAMETERS as c::NDIS_FILTER_RESTART_PARAMETERS {
        Header => Header,
        MiniportMediaType => MiniportMediaType,
        MiniportPhysicalMediaType => MiniportPhysicalMediaType,
        RestartAttributes => RestartAttributes,
        LowerIfIndex => LowerIfIndex,
        LowerIfNetLuid => LowerIfNetLuid,
        Flags => Flags,
    })
    .assert_matches();
}

#[test]
fn ndis_filter_pause_parameters() {
    compare_layout!(struct ndis_sys::NDIS_FILTER_PAUSE_PARAMETERS as c::NDIS_FILTER_PAUSE_PARAMETERS {
        Header => Header,
        Flags => Flags,
        PauseReason => PauseReason,
    })
    .assert_matches();
}

#[test]
fn ndis_status_indication() {
    compare_layout!(struct ndis_sys::NDIS_STATUS_INDICATION as c::NDIS_STATUS_INDICATION {
        Header => Header,
        SourceHandle => SourceHandle,
        PortNumber => PortNumber,
        StatusCode => StatusCode,
        Flags => Flags,
        DestinationHandle => DestinationHandle,
        RequestId => RequestId,
        StatusBuffer => StatusBuffer,
        StatusBufferSize => StatusBufferSize,
        Guid => Guid,
        NdisReserved => NdisReserved,
    })
    .assert_matches();
}

#[test]
fn net_buffer_data_length() {
    compare_layout!(union ndis_sys::NET_BUFFER_DATA_LENGTH as c::NET_BUFFER_DATA_LENGTH {
        DataLength => DataLength,
        stDataLength => stDataLength,
    })
    .assert_matches();
}

#[test]
fn net_buffer_data() {
    compare_layout!(struct ndis_sys::NET_BUFFER_DATA as c::NET_BUFFER_DATA {
        Next => Next,
        CurrentMdl => CurrentMdl,
        CurrentMdlOffset => CurrentMdlOffset,
        NbDataLength => NbDataLength,
        MdlChain => MdlChain,
        DataOffset => DataOffset,
    })
    .assert_matches();
}

#[test]
fn net_buffer_header() {
    compare_layout!(union ndis_sys::NET_BUFFER_HEADER as c::NET_BUFFER_HEADER {
        NetBufferData => NetBufferData,
        Link => Link,
    })
    .assert_matches();
}

/// ndis-sys flattens the data arm of NET_BUFFER's leading anonymous union
/// (bindgen: `__bindgen_anon_1.__bindgen_anon_1`) and the first arm of the
/// trailing one.
#[test]
fn net_buffer() {
    compare_layout!(struct ndis_sys::NET_BUFFER as c::NET_BUFFER {
        Next => __bindgen_anon_1.__bindgen_anon_1.Next,
        CurrentMdl => __bindgen_anon_1.__bindgen_anon_1.CurrentMdl,
        CurrentMdlOffset => __bindgen_anon_1.__bindgen_anon_1.CurrentMdlOffset,
        DataLength => __bindgen_anon_1.__bindgen_anon_1.__bindgen_anon_1,
        MdlChain => __bindgen_anon_1.__bindgen_anon_1.MdlChain,
        DataOffset => __bindgen_anon_1.__bindgen_anon_1.DataOffset,
        ChecksumBias => ChecksumBias,
        Reserved => Reserved,
        NdisPoolHandle => NdisPoolHandle,
        NdisReserved.0 => NdisReserved,
        ProtocolReserved.0 => ProtocolReserved,
        MiniportReserved.0 => MiniportReserved,
        DataPhysicalAddress => DataPhysicalAddress,
        SharedMemoryInfo => __bindgen_anon_2.SharedMemoryInfo,
    } not_in_c { HeaderPadding })
    .assert_matches();
}

/// The header union's arm is flattened, as for NET_BUFFER; the
/// `Status` / `NdisReserved2` union is bound as its `Status` arm.
#[test]
fn net_buffer_list() {
    compare_layout!(struct ndis_sys::NET_BUFFER_LIST as c::NET_BUFFER_LIST {
        Next => __bindgen_anon_1.__bindgen_anon_1.Next,
        FirstNetBuffer => __bindgen_anon_1.__bindgen_anon_1.FirstNetBuffer,
        Context => Context,
        ParentNetBufferList => ParentNetBufferList,
        NdisPoolHandle => NdisPoolHandle,
        NdisReserved.0 => NdisReserved,
        ProtocolReserved.0 => ProtocolReserved,
        MiniportReserved.0 => MiniportReserved,
        Scratch => Scratch,
        SourceHandle => SourceHandle,
        NblFlags => NblFlags,
        ChildRefCount => ChildRefCount,
        Flags => Flags,
        Status => __bindgen_anon_2.Status,
        NetBufferListInfo => NetBufferListInfo,
    })
    .assert_matches();
}

/// ndis-sys binds only the `Value` arm of the `NET_LUID_LH` union.
#[test]
fn net_luid() {
    compare_layout!(struct ndis_sys::NET_LUID as c::NET_LUID {
        Value => Value,
    })
    .assert_matches();
}

#[test]
fn ndis_spin_lock() {
    compare_layout!(struct ndis_sys::NDIS_SPIN_LOCK as c::NDIS_SPIN_LOCK {
        SpinLock => SpinLock,
        OldIrql => OldIrql,
    })
    .assert_matches();
}

#[test]
fn lock_state_ex() {
    compare_layout!(struct ndis_sys::LOCK_STATE_EX as c::LOCK_STATE_EX {
        OldIrql => OldIrql,
        LockState => LockState,
        Flags => Flags,
    })
    .assert_matches();
}

/// ndis-sys's view of `IO_STACK_LOCATION.Parameters.DeviceIoControl`
/// (wdm.h's POINTER_ALIGNMENT fields wrapped in `PointerAligned`).
#[test]
fn io_stack_location_device_io_control() {
    compare_layout!(struct ndis_sys::IO_STACK_LOCATION_DEVICE_IO_CONTROL
        as c::IO_STACK_LOCATION[Parameters.DeviceIoControl] {
        OutputBufferLength => Parameters.DeviceIoControl.OutputBufferLength,
        InputBufferLength.0 => Parameters.DeviceIoControl.InputBufferLength,
        IoControlCode.0 => Parameters.DeviceIoControl.IoControlCode,
        Type3InputBuffer => Parameters.DeviceIoControl.Type3InputBuffer,
    })
    .assert_matches();
}

/// ndis-sys's view of `IO_STACK_LOCATION.Parameters.Create`.
#[test]
fn io_stack_location_create() {
    compare_layout!(struct ndis_sys::IO_STACK_LOCATION_CREATE as c::IO_STACK_LOCATION[Parameters.Create] {
        SecurityContext => Parameters.Create.SecurityContext,
        Options => Parameters.Create.Options,
        FileAttributes => Parameters.Create.FileAttributes,
        ShareAccess => Parameters.Create.ShareAccess,
        EaLength.0 => Parameters.Create.EaLength,
    } not_in_c { OptionsPadding })
    .assert_matches();
}

/// Size and alignment of a scalar typedef in ndis-sys and in the headers.
macro_rules! scalar {
    ($name:ident) => {
        Compared {
            ours: concat!("ndis_sys::", stringify!($name)).into(),
            theirs: concat!("c::", stringify!($name)).into(),
            ours_layout: Layout::of_type::<ndis_sys::$name>(),
            c_layout: Layout::of_type::<c::$name>(),
        }
    };
}

/// The scalar typedefs the structs' fields and the kernel calls use.
#[test]
fn scalar_typedefs() {
    Comparison {
        items: vec![
            scalar!(NET_IFINDEX),
            scalar!(NDIS_PORT_NUMBER),
            scalar!(NDIS_MEDIUM),
            scalar!(NDIS_PHYSICAL_MEDIUM),
            scalar!(NDIS_MEDIA_CONNECT_STATE),
            scalar!(NET_IF_MEDIA_DUPLEX_STATE),
            scalar!(NDIS_PHYSICAL_ADDRESS),
            scalar!(NDIS_HANDLE),
            scalar!(NDIS_STATUS),
            scalar!(KIRQL),
            scalar!(KSPIN_LOCK),
            scalar!(KPROCESSOR_MODE),
            scalar!(EX_POOL_PRIORITY),
        ],
    }
    .assert_matches();
}
