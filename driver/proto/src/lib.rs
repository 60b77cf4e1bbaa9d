//! The PortWatch control interface: IOCTL codes and versioned wire structs,
//! shared by the driver (no_std) and user-mode clients.
//!
//! Every IOCTL is `METHOD_BUFFERED` on the control device `\\.\PortWatch`
//! (the event stream's reads too: a batch is small, and the copy out of the
//! system buffer happens in the reader's context, after completion).
//! Requests and replies are little-endian `#[repr(C)]` structs without
//! implicit padding; every struct begins with a `version` field that must be
//! [`PROTOCOL_VERSION`]. Variable-length replies begin with a [`VarHeader`]:
//! when the data does not fit the output buffer the driver returns
//! `STATUS_BUFFER_OVERFLOW` (a warning, so the I/O manager still copies the
//! header back) with [`VarHeader::needed`] set to the full size required.
//!
//! # Status codes
//!
//! | Situation | NTSTATUS |
//! |---|---|
//! | unknown IOCTL code | `STATUS_INVALID_DEVICE_REQUEST` |
//! | input length wrong for the code (short, long, overflowing) | `STATUS_INVALID_PARAMETER` |
//! | a field out of range, reserved bytes non-zero | `STATUS_INVALID_PARAMETER` |
//! | `version` is not [`PROTOCOL_VERSION`] | `STATUS_REVISION_MISMATCH` |
//! | fixed-size output buffer too small | `STATUS_BUFFER_TOO_SMALL` |
//! | variable-length output does not fit (header fits) | `STATUS_BUFFER_OVERFLOW` |
//! | port already bound by this endpoint | `STATUS_DUPLICATE_OBJECTID` |
//! | unbind of a port this endpoint has not bound | `STATUS_NOT_FOUND` |
//! | endpoint already has [`MAX_BINDINGS_PER_ENDPOINT`] ports | `STATUS_QUOTA_EXCEEDED` |
//! | pool allocation failed | `STATUS_INSUFFICIENT_RESOURCES` |
//! | handle being cleaned up | `STATUS_DELETE_PENDING` |
//! | [`IOCTL_READ_EVENTS`] output smaller than a header and one record | `STATUS_BUFFER_TOO_SMALL` |
//! | [`IOCTL_READ_EVENTS`] before [`IOCTL_ENABLE_EVENTS`], or a second enable | `STATUS_INVALID_DEVICE_STATE` |
//! | [`IOCTL_READ_EVENTS`] with [`MAX_PENDING_READS`] reads already pending on the handle | `STATUS_QUOTA_EXCEEDED` |
//! | a pending [`IOCTL_READ_EVENTS`] cancelled (CancelIoEx, handle closed) | `STATUS_CANCELLED` |
//! | [`IOCTL_ENUM_FILTER_MODULES`] while the driver already builds as many such replies as it admits at once, after waiting its turn (tens of milliseconds) | `STATUS_DEVICE_BUSY` (a warning: nothing is copied back) |
#![no_std]
#![deny(unsafe_code)]

/// Version of the wire format described by this crate.
///
/// Rules: every change to the wire format bumps it. A change that only adds
/// (new codes, new structs) keeps the older revisions' requests valid: the
/// driver accepts `version` in [`MIN_PROTOCOL_VERSION`]`..=PROTOCOL_VERSION`
/// in the structs those revisions had, and requires at least the revision
/// that introduced a struct in the new ones. Replies carry
/// [`PROTOCOL_VERSION`]. A change to an existing struct's layout or meaning
/// raises [`MIN_PROTOCOL_VERSION`] to the new version.
///
/// Revision 2 added the event stream ([`IOCTL_ENABLE_EVENTS`],
/// [`IOCTL_READ_EVENTS`], [`EnableEvents`], [`EventBatchHeader`],
/// [`EventRecord`]).
pub const PROTOCOL_VERSION: u32 = 2;
/// The oldest revision whose requests the driver still accepts.
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// The revision that introduced the event stream: [`EnableEvents`] must
/// carry at least this.
pub const EVENTS_PROTOCOL_VERSION: u32 = 2;

/// The driver's service name (INF `AddService`, NDIS `ServiceName`).
pub const SERVICE_NAME: &str = "PortWatch";
/// The filter's unique name: the INF `NetCfgInstanceId`.
pub const FILTER_UNIQUE_NAME: &str = "{6C1D5A3E-9F42-4B7E-8A61-2F0C9D4E7B15}";
/// The filter's friendly name.
pub const FILTER_FRIENDLY_NAME: &str = "PortWatch NDIS Filter";
/// The INF hardware id (`ComponentId`), used by `netcfg -i`.
pub const HARDWARE_ID: &str = "pw_portwatch";
/// File name of the driver binary.
pub const BINARY_NAME: &str = "portwatch.sys";
/// Kernel name of the control device.
pub const DEVICE_NAME: &str = "\\Device\\PortWatch";
/// Symbolic link of the control device (`\\.\PortWatch` from user mode).
pub const SYMBOLIC_LINK_NAME: &str = "\\DosDevices\\PortWatch";
/// Path user mode opens.
pub const USER_DEVICE_PATH: &str = "\\\\.\\PortWatch";

/// Most bytes a local address may have (a `SOCKADDR_STORAGE`).
pub const MAX_LOCAL_ADDRESS: u32 = 128;
/// Most UTF-16 code units in the global port name.
pub const MAX_PORT_NAME_CHARS: u32 = 256;
/// Most ports one endpoint may bind.
pub const MAX_BINDINGS_PER_ENDPOINT: u32 = 64;
/// Most records an endpoint's event ring may hold ([`EnableEvents::ring_records`]):
/// 4096 records of 64 bytes, 256 KiB of non-paged pool per handle.
pub const MAX_EVENT_RING_RECORDS: u32 = 4096;
/// Most [`IOCTL_READ_EVENTS`] requests pending at once on one handle.
pub const MAX_PENDING_READS: u32 = 16;
/// UTF-16 code units of a module's name carried in [`ModuleInfo`].
pub const MODULE_NAME_CHARS: usize = 64;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Device type of the control device (vendor range: >= 0x8000).
pub const FILE_DEVICE_PORTWATCH: u32 = 0x0000_9A57;
/// `METHOD_BUFFERED`.
pub const METHOD_BUFFERED: u32 = 0;
/// `FILE_READ_ACCESS`.
pub const FILE_READ_ACCESS: u32 = 0x0001;
/// `FILE_WRITE_ACCESS`.
pub const FILE_WRITE_ACCESS: u32 = 0x0002;

/// `CTL_CODE(DeviceType, Function, Method, Access)`.
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

const fn pw_code(function: u32, access: u32) -> u32 {
    ctl_code(FILE_DEVICE_PORTWATCH, function, METHOD_BUFFERED, access)
}

/// Reads [`VersionInfo`]. No input.
pub const IOCTL_GET_VERSION: u32 = pw_code(0x800, FILE_READ_ACCESS);
/// Replaces the endpoint's local address. Input: [`LocalAddressHeader`] + bytes.
pub const IOCTL_SET_LOCAL_ADDRESS: u32 = pw_code(0x801, FILE_WRITE_ACCESS);
/// Reads the endpoint's local address. No input; output [`VarHeader`] + bytes.
pub const IOCTL_GET_LOCAL_ADDRESS: u32 = pw_code(0x802, FILE_READ_ACCESS);
/// Binds the endpoint to a port. Input: [`PortRequest`].
pub const IOCTL_BIND_PORT: u32 = pw_code(0x803, FILE_WRITE_ACCESS);
/// Unbinds the endpoint from a port. Input: [`PortRequest`].
pub const IOCTL_UNBIND_PORT: u32 = pw_code(0x804, FILE_WRITE_ACCESS);
/// Reads [`EndpointStats`]. No input.
pub const IOCTL_GET_ENDPOINT_STATS: u32 = pw_code(0x805, FILE_READ_ACCESS);
/// Reads [`PortStats`]. Input: [`PortRequest`].
pub const IOCTL_GET_PORT_STATS: u32 = pw_code(0x806, FILE_READ_ACCESS);
/// Replaces the global port name. Input: [`PortNameHeader`] + UTF-16 code units,
/// none of them zero (`STATUS_INVALID_PARAMETER`). The name is saved in the
/// registry first; if that fails, its status is returned and nothing changes.
pub const IOCTL_SET_PORT_NAME: u32 = pw_code(0x807, FILE_WRITE_ACCESS);
/// Reads the global port name. No input; output [`VarHeader`] + UTF-16 code units.
pub const IOCTL_GET_PORT_NAME: u32 = pw_code(0x808, FILE_READ_ACCESS);
/// Lists the filter modules. No input; output [`VarHeader`] + [`ModuleInfo`]s.
pub const IOCTL_ENUM_FILTER_MODULES: u32 = pw_code(0x809, FILE_READ_ACCESS);

/// Allocates the handle's event ring and starts recording events for it.
/// Input: [`EnableEvents`]. Once per handle.
pub const IOCTL_ENABLE_EVENTS: u32 = pw_code(0x80A, FILE_READ_ACCESS);
/// Reads a batch of events: output [`EventBatchHeader`] + as many
/// [`EventRecord`]s as are queued and fit; stays pending until at least
/// one is queued. No input.
pub const IOCTL_READ_EVENTS: u32 = pw_code(0x80B, FILE_READ_ACCESS);

/// Every IOCTL code the driver implements.
pub const ALL_IOCTLS: [u32; 12] = [
    IOCTL_GET_VERSION,
    IOCTL_SET_LOCAL_ADDRESS,
    IOCTL_GET_LOCAL_ADDRESS,
    IOCTL_BIND_PORT,
    IOCTL_UNBIND_PORT,
    IOCTL_GET_ENDPOINT_STATS,
    IOCTL_GET_PORT_STATS,
    IOCTL_SET_PORT_NAME,
    IOCTL_GET_PORT_NAME,
    IOCTL_ENUM_FILTER_MODULES,
    IOCTL_ENABLE_EVENTS,
    IOCTL_READ_EVENTS,
];

/// Reply of [`IOCTL_GET_VERSION`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VersionInfo {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Driver version: `major << 16 | minor << 8 | patch`.
    pub driver_version: u32,
    /// [`MAX_LOCAL_ADDRESS`].
    pub max_local_address: u32,
    /// [`MAX_PORT_NAME_CHARS`].
    pub max_port_name_chars: u32,
    /// [`MAX_BINDINGS_PER_ENDPOINT`].
    pub max_bindings: u32,
}

/// Header of [`IOCTL_SET_LOCAL_ADDRESS`]'s input; `length` bytes follow.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalAddressHeader {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Bytes of address that follow, at most [`MAX_LOCAL_ADDRESS`]; the
    /// input length must be exactly `size_of::<LocalAddressHeader>() + length`.
    pub length: u32,
}

/// Header of [`IOCTL_SET_PORT_NAME`]'s input; `chars` UTF-16 code units follow.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortNameHeader {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// UTF-16 code units that follow, at most [`MAX_PORT_NAME_CHARS`]; the
    /// input length must be exactly `size_of::<PortNameHeader>() + 2 * chars`.
    pub chars: u32,
}

/// Header of every variable-length reply.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VarHeader {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Bytes the whole reply needs (header included).
    pub needed: u32,
    /// Items that follow: bytes for an address, code units for a name,
    /// [`ModuleInfo`]s for the module list. Zero when the reply overflowed.
    pub count: u32,
}

/// Input of [`IOCTL_BIND_PORT`], [`IOCTL_UNBIND_PORT`], [`IOCTL_GET_PORT_STATS`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortRequest {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub protocol: u8,
    /// Must be zero.
    pub reserved: u8,
    /// The port, host byte order, non-zero.
    pub port: u16,
}

/// Packet and byte counters of one direction.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Packets (NET_BUFFERs).
    pub packets: u64,
    /// Bytes (frame lengths, Ethernet header included).
    pub bytes: u64,
}

/// Reply of [`IOCTL_GET_ENDPOINT_STATS`]: traffic counted for this endpoint
/// since it was opened, over all ports it has bound.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointStats {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Ports currently bound.
    pub bound_ports: u32,
    /// Received (indicated up through the filter).
    pub rx: Counters,
    /// Sent (passed down through the filter).
    pub tx: Counters,
}

/// Reply of [`IOCTL_GET_PORT_STATS`]: traffic counted on one port by the
/// endpoints bound to it now, each since it bound.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Endpoints bound to the port now.
    pub endpoints: u32,
    /// Received.
    pub rx: Counters,
    /// Sent.
    pub tx: Counters,
}

/// One entry of [`IOCTL_ENUM_FILTER_MODULES`]'s reply.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo {
    /// `BaseMiniportIfIndex` of the adapter.
    pub if_index: u32,
    /// A [`ModuleState`] value.
    pub state: u32,
    /// The adapter's name (`BaseMiniportName`), UTF-16, zero-padded,
    /// truncated to [`MODULE_NAME_CHARS`].
    pub name: [u16; MODULE_NAME_CHARS],
}

impl Default for ModuleInfo {
    fn default() -> Self {
        ModuleInfo { if_index: 0, state: 0, name: [0; MODULE_NAME_CHARS] }
    }
}

/// A filter module's state as NDIS drives it.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleState {
    /// FilterAttach is running.
    Attaching = 1,
    /// Attached, no data flows.
    Paused = 2,
    /// FilterRestart is running.
    Restarting = 3,
    /// Data flows.
    Running = 4,
    /// FilterPause is running.
    Pausing = 5,
}

impl ModuleState {
    /// Decodes a wire value.
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Attaching),
            2 => Some(Self::Paused),
            3 => Some(Self::Restarting),
            4 => Some(Self::Running),
            5 => Some(Self::Pausing),
            _ => None,
        }
    }
}

/// Input of [`IOCTL_ENABLE_EVENTS`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EnableEvents {
    /// At least [`EVENTS_PROTOCOL_VERSION`].
    pub version: u32,
    /// Records the ring holds, 1..=[`MAX_EVENT_RING_RECORDS`]. When it is
    /// full, new events are dropped and counted.
    pub ring_records: u32,
}

/// Header of every [`IOCTL_READ_EVENTS`] reply; `count` [`EventRecord`]s
/// of `record_size` bytes each follow.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventBatchHeader {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Size of one record: `size_of::<EventRecord>()` (64).
    pub record_size: u32,
    /// Records that follow.
    pub count: u32,
    /// Zero.
    pub reserved: u32,
    /// Events dropped because the ring was full, since the ring was
    /// enabled (cumulative: delivered + dropped = generated).
    pub dropped: u64,
    /// Ticks per second of [`EventRecord::timestamp`]
    /// (KeQueryPerformanceCounter's frequency).
    pub timestamp_frequency: u64,
}

/// What an [`EventRecord`] reports.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A packet on a port the endpoint has bound.
    Packet = 1,
    /// A filter module attached (FilterAttach).
    ModuleAttached = 2,
    /// A filter module detached (FilterDetach).
    ModuleDetached = 3,
    /// A filter module paused (FilterPause).
    ModulePaused = 4,
    /// A filter module restarted (FilterRestart).
    ModuleRestarted = 5,
}

impl EventKind {
    /// Decodes a wire value.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Packet),
            2 => Some(Self::ModuleAttached),
            3 => Some(Self::ModuleDetached),
            4 => Some(Self::ModulePaused),
            5 => Some(Self::ModuleRestarted),
            _ => None,
        }
    }
}

/// [`EventRecord::direction`] of a received packet.
pub const DIRECTION_RX: u8 = 0;
/// [`EventRecord::direction`] of a sent packet.
pub const DIRECTION_TX: u8 = 1;

/// One event: 64 bytes, fixed. Control events (module attached, detached,
/// paused, restarted) carry only `kind`, `timestamp` and `if_index`; the
/// other fields are zero.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventRecord {
    /// An [`EventKind`] value.
    pub kind: u8,
    /// [`DIRECTION_RX`] or [`DIRECTION_TX`].
    pub direction: u8,
    /// 4 or 6 (0 for a control event).
    pub ip_version: u8,
    /// [`PROTO_TCP`] or [`PROTO_UDP`].
    pub protocol: u8,
    /// `BaseMiniportIfIndex` of the module the packet went through.
    pub if_index: u32,
    /// KeQueryPerformanceCounter when the event was recorded; ticks per
    /// second are [`EventBatchHeader::timestamp_frequency`].
    pub timestamp: u64,
    /// Frame length in bytes (NET_BUFFER DataLength, Ethernet header included).
    pub frame_length: u32,
    /// The bound port this event was recorded for (source or destination).
    pub matched_port: u16,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Zero.
    pub reserved: [u16; 3],
    /// Source address: IPv4 in the first 4 bytes (network order), the rest zero.
    pub src_addr: [u8; 16],
    /// Destination address, as `src_addr`.
    pub dst_addr: [u8; 16],
}

/// Plain-old-data wire structs: byte conversion without `unsafe`.
pub trait Wire: Sized + Copy {
    /// Size on the wire.
    const SIZE: usize = core::mem::size_of::<Self>();
    /// Decodes from exactly [`Self::SIZE`] little-endian bytes.
    fn read(bytes: &[u8]) -> Option<Self>;
    /// Encodes into the first [`Self::SIZE`] bytes of `out`; `false` if too short.
    fn write(&self, out: &mut [u8]) -> bool;
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}
fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

macro_rules! wire_u32s {
    ($t:ident { $($f:ident),* }) => {
        impl Wire for $t {
            fn read(b: &[u8]) -> Option<Self> {
                if b.len() != Self::SIZE { return None; }
                let mut at = 0;
                $( let $f = u32_at(b, at); at += 4; )*
                let _ = at;
                Some($t { $($f),* })
            }
            fn write(&self, out: &mut [u8]) -> bool {
                if out.len() < Self::SIZE { return false; }
                let mut at = 0;
                $( put(out, at, &self.$f.to_le_bytes()); at += 4; )*
                let _ = at;
                true
            }
        }
    };
}

wire_u32s!(VersionInfo { version, driver_version, max_local_address, max_port_name_chars, max_bindings });
wire_u32s!(LocalAddressHeader { version, length });
wire_u32s!(PortNameHeader { version, chars });
wire_u32s!(VarHeader { version, needed, count });
wire_u32s!(EnableEvents { version, ring_records });

impl Wire for EventBatchHeader {
    fn read(b: &[u8]) -> Option<Self> {
        if b.len() != Self::SIZE {
            return None;
        }
        Some(EventBatchHeader {
            version: u32_at(b, 0),
            record_size: u32_at(b, 4),
            count: u32_at(b, 8),
            reserved: u32_at(b, 12),
            dropped: u64_at(b, 16),
            timestamp_frequency: u64_at(b, 24),
        })
    }
    fn write(&self, out: &mut [u8]) -> bool {
        if out.len() < Self::SIZE {
            return false;
        }
        put(out, 0, &self.version.to_le_bytes());
        put(out, 4, &self.record_size.to_le_bytes());
        put(out, 8, &self.count.to_le_bytes());
        put(out, 12, &self.reserved.to_le_bytes());
        put(out, 16, &self.dropped.to_le_bytes());
        put(out, 24, &self.timestamp_frequency.to_le_bytes());
        true
    }
}

impl Wire for EventRecord {
    fn read(b: &[u8]) -> Option<Self> {
        if b.len() != Self::SIZE {
            return None;
        }
        let mut src_addr = [0u8; 16];
        let mut dst_addr = [0u8; 16];
        src_addr.copy_from_slice(&b[32..48]);
        dst_addr.copy_from_slice(&b[48..64]);
        Some(EventRecord {
            kind: b[0],
            direction: b[1],
            ip_version: b[2],
            protocol: b[3],
            if_index: u32_at(b, 4),
            timestamp: u64_at(b, 8),
            frame_length: u32_at(b, 16),
            matched_port: u16_at(b, 20),
            src_port: u16_at(b, 22),
            dst_port: u16_at(b, 24),
            reserved: [u16_at(b, 26), u16_at(b, 28), u16_at(b, 30)],
            src_addr,
            dst_addr,
        })
    }
    fn write(&self, out: &mut [u8]) -> bool {
        if out.len() < Self::SIZE {
            return false;
        }
        out[..4].copy_from_slice(&[self.kind, self.direction, self.ip_version, self.protocol]);
        put(out, 4, &self.if_index.to_le_bytes());
        put(out, 8, &self.timestamp.to_le_bytes());
        put(out, 16, &self.frame_length.to_le_bytes());
        put(out, 20, &self.matched_port.to_le_bytes());
        put(out, 22, &self.src_port.to_le_bytes());
        put(out, 24, &self.dst_port.to_le_bytes());
        for (i, r) in self.reserved.iter().enumerate() {
            put(out, 26 + 2 * i, &r.to_le_bytes());
        }
        put(out, 32, &self.src_addr);
        put(out, 48, &self.dst_addr);
        true
    }
}

impl Wire for PortRequest {
    fn read(b: &[u8]) -> Option<Self> {
        if b.len() != Self::SIZE {
            return None;
        }
        Some(PortRequest { version: u32_at(b, 0), protocol: b[4], reserved: b[5], port: u16_at(b, 6) })
    }
    fn write(&self, out: &mut [u8]) -> bool {
        if out.len() < Self::SIZE {
            return false;
        }
        put(out, 0, &self.version.to_le_bytes());
        out[4] = self.protocol;
        out[5] = self.reserved;
        put(out, 6, &self.port.to_le_bytes());
        true
    }
}

fn read_counters(b: &[u8], at: usize) -> Counters {
    Counters { packets: u64_at(b, at), bytes: u64_at(b, at + 8) }
}
fn write_counters(out: &mut [u8], at: usize, c: &Counters) {
    put(out, at, &c.packets.to_le_bytes());
    put(out, at + 8, &c.bytes.to_le_bytes());
}

macro_rules! wire_stats {
    ($t:ident, $count:ident) => {
        impl Wire for $t {
            fn read(b: &[u8]) -> Option<Self> {
                if b.len() != Self::SIZE {
                    return None;
                }
                Some($t {
                    version: u32_at(b, 0),
                    $count: u32_at(b, 4),
                    rx: read_counters(b, 8),
                    tx: read_counters(b, 24),
                })
            }
            fn write(&self, out: &mut [u8]) -> bool {
                if out.len() < Self::SIZE {
                    return false;
                }
                put(out, 0, &self.version.to_le_bytes());
                put(out, 4, &self.$count.to_le_bytes());
                write_counters(out, 8, &self.rx);
                write_counters(out, 24, &self.tx);
                true
            }
        }
    };
}

wire_stats!(EndpointStats, bound_ports);
wire_stats!(PortStats, endpoints);

impl Wire for ModuleInfo {
    fn read(b: &[u8]) -> Option<Self> {
        if b.len() != Self::SIZE {
            return None;
        }
        let mut name = [0u16; MODULE_NAME_CHARS];
        for (i, c) in name.iter_mut().enumerate() {
            *c = u16_at(b, 8 + 2 * i);
        }
        Some(ModuleInfo { if_index: u32_at(b, 0), state: u32_at(b, 4), name })
    }
    fn write(&self, out: &mut [u8]) -> bool {
        if out.len() < Self::SIZE {
            return false;
        }
        put(out, 0, &self.if_index.to_le_bytes());
        put(out, 4, &self.state.to_le_bytes());
        for (i, c) in self.name.iter().enumerate() {
            put(out, 8 + 2 * i, &c.to_le_bytes());
        }
        true
    }
}

// Wire sizes are part of the protocol: a change here breaks user mode.
const _: () = {
    assert!(core::mem::size_of::<VersionInfo>() == 20);
    assert!(core::mem::size_of::<LocalAddressHeader>() == 8);
    assert!(core::mem::size_of::<PortNameHeader>() == 8);
    assert!(core::mem::size_of::<VarHeader>() == 12);
    assert!(core::mem::size_of::<PortRequest>() == 8);
    assert!(core::mem::size_of::<Counters>() == 16);
    assert!(core::mem::size_of::<EndpointStats>() == 40);
    assert!(core::mem::size_of::<PortStats>() == 40);
    assert!(core::mem::size_of::<ModuleInfo>() == 8 + 2 * MODULE_NAME_CHARS);
    assert!(core::mem::size_of::<EnableEvents>() == 8);
    assert!(core::mem::size_of::<EventBatchHeader>() == 32);
    assert!(core::mem::size_of::<EventRecord>() == 64);
    assert!(core::mem::offset_of!(EventRecord, src_addr) == 32);
    assert!(core::mem::offset_of!(EventBatchHeader, dropped) == 16);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_vendor_buffered_with_explicit_access() {
        for code in ALL_IOCTLS {
            assert_eq!(code >> 16, FILE_DEVICE_PORTWATCH);
            assert_eq!(code & 3, METHOD_BUFFERED);
            assert!((code >> 2) & 0xFFF >= 0x800, "function below 0x800: {code:#x}");
            assert_ne!((code >> 14) & 3, 0, "FILE_ANY_ACCESS on {code:#x}");
        }
        let mut sorted = ALL_IOCTLS;
        sorted.sort_unstable();
        assert!(sorted.windows(2).all(|w| w[0] != w[1]), "duplicate codes");
    }

    #[test]
    fn state_changing_codes_need_write_access() {
        for code in [IOCTL_SET_LOCAL_ADDRESS, IOCTL_BIND_PORT, IOCTL_UNBIND_PORT, IOCTL_SET_PORT_NAME] {
            assert_eq!((code >> 14) & 3, FILE_WRITE_ACCESS);
        }
    }

    #[test]
    fn ctl_code_matches_the_wdk_macro() {
        // CTL_CODE(FILE_DEVICE_NETWORK=0x12, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS) = 0x00122000
        assert_eq!(ctl_code(0x12, 0x800, 0, 0), 0x0012_2000);
        // CTL_CODE(0x22, 0x801, METHOD_NEITHER=3, FILE_READ_ACCESS|FILE_WRITE_ACCESS) = 0x0022E007
        assert_eq!(ctl_code(0x22, 0x801, 3, 3), 0x0022_E007);
    }

    fn round_trip<T: Wire + PartialEq + core::fmt::Debug>(value: T) {
        let mut buf = [0u8; 256];
        assert!(value.write(&mut buf[..T::SIZE]));
        assert!(!value.write(&mut buf[..T::SIZE - 1]));
        assert_eq!(T::read(&buf[..T::SIZE]), Some(value));
        assert_eq!(T::read(&buf[..T::SIZE - 1]), None);
        assert_eq!(T::read(&buf[..T::SIZE + 1]), None);
    }

    #[test]
    fn wire_round_trips() {
        round_trip(VersionInfo {
            version: 1,
            driver_version: 0x10203,
            max_local_address: 128,
            max_port_name_chars: 256,
            max_bindings: 64,
        });
        round_trip(LocalAddressHeader { version: 1, length: 7 });
        round_trip(PortNameHeader { version: 1, chars: 9 });
        round_trip(VarHeader { version: 1, needed: 100, count: 3 });
        round_trip(PortRequest { version: 1, protocol: PROTO_UDP, reserved: 0, port: 0xBEEF });
        round_trip(EndpointStats {
            version: 1,
            bound_ports: 2,
            rx: Counters { packets: 3, bytes: u64::MAX },
            tx: Counters { packets: 5, bytes: 6 },
        });
        round_trip(PortStats {
            version: 1,
            endpoints: 2,
            rx: Counters { packets: 1, bytes: 2 },
            tx: Counters { packets: 3, bytes: 4 },
        });
        let mut info = ModuleInfo { if_index: 7, state: ModuleState::Running as u32, ..ModuleInfo::default() };
        info.name[0] = u16::from(b'e');
        info.name[MODULE_NAME_CHARS - 1] = 0xD800;
        round_trip(info);
        round_trip(EnableEvents { version: 2, ring_records: 4096 });
        round_trip(EventBatchHeader {
            version: 2,
            record_size: 64,
            count: 3,
            reserved: 0,
            dropped: u64::MAX - 1,
            timestamp_frequency: 10_000_000,
        });
        round_trip(EventRecord {
            kind: EventKind::Packet as u8,
            direction: DIRECTION_TX,
            ip_version: 6,
            protocol: PROTO_TCP,
            if_index: 7,
            timestamp: 0x0102_0304_0506_0708,
            frame_length: 1514,
            matched_port: 443,
            src_port: 50000,
            dst_port: 443,
            reserved: [0; 3],
            src_addr: [1; 16],
            dst_addr: core::array::from_fn(|i| i as u8),
        });
    }

    #[test]
    fn event_record_offsets() {
        let mut buf = [0u8; 64];
        let r =
            EventRecord { kind: 1, if_index: 0x0403_0201, src_port: 0xAABB, dst_addr: [9; 16], ..Default::default() };
        r.write(&mut buf);
        assert_eq!(buf[0], 1);
        assert_eq!(&buf[4..8], &[1, 2, 3, 4]);
        assert_eq!(&buf[22..24], &[0xBB, 0xAA]);
        assert_eq!(&buf[48..64], &[9; 16]);
        for k in 1..=5 {
            assert_eq!(EventKind::from_u8(k).map(|k| k as u8), Some(k));
        }
        assert_eq!(EventKind::from_u8(0), None);
        assert_eq!(EventKind::from_u8(6), None);
    }

    #[test]
    fn wire_layout_is_little_endian_at_declared_offsets() {
        let mut buf = [0u8; 8];
        PortRequest { version: 1, protocol: 6, reserved: 0, port: 0x1234 }.write(&mut buf);
        assert_eq!(buf, [1, 0, 0, 0, 6, 0, 0x34, 0x12]);
    }

    #[test]
    fn module_states_decode() {
        for s in [
            ModuleState::Attaching,
            ModuleState::Paused,
            ModuleState::Restarting,
            ModuleState::Running,
            ModuleState::Pausing,
        ] {
            assert_eq!(ModuleState::from_u32(s as u32), Some(s));
        }
        assert_eq!(ModuleState::from_u32(0), None);
        assert_eq!(ModuleState::from_u32(6), None);
    }
}
