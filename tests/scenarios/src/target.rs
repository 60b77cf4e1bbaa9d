//! The [`Target`] trait: what a scenario needs from a driver under test,
//! whether it runs in the harness or is installed on a Windows machine.

use std::fmt;

/// An NTSTATUS value.
pub type NtStatus = i32;

/// An open handle on the control device, as the target names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u64);

/// One adapter of the target, by position (`0..adapter_count()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Adapter(pub usize);

/// Why a target call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// The request completed with this (non-success) NTSTATUS.
    Status(NtStatus),
    /// The verifier stopped the driver: the run is over.
    Violation(String),
    /// The target cannot do this (e.g. inject receives on a real machine).
    Unsupported(String),
    /// The operating system refused (device target).
    Os(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Status(s) => write!(f, "NTSTATUS {:#010x}", *s as u32),
            TargetError::Violation(v) => write!(f, "verifier: {v}"),
            TargetError::Unsupported(s) => write!(f, "unsupported: {s}"),
            TargetError::Os(s) => write!(f, "OS: {s}"),
        }
    }
}

impl std::error::Error for TargetError {}

/// How an IOCTL completed (METHOD_BUFFERED: `output` holds the bytes the
/// I/O manager copied back: `Information` bytes for success and warning
/// statuses, nothing for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The IRP's final status.
    pub status: NtStatus,
    /// The bytes copied back.
    pub output: Vec<u8>,
}

/// A filter state change driven the way NDIS drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdapterOp {
    /// FilterPause (module Running -> Paused).
    Pause,
    /// FilterRestart (Paused -> Running).
    Restart,
    /// FilterDetach (Paused -> detached).
    Detach,
    /// FilterAttach (detached -> Paused).
    Attach,
    /// A whole cycle that ends Running again, as the operating system does
    /// it (on Windows: `Restart-NetAdapter`, which pauses, detaches,
    /// re-attaches and restarts every filter of the adapter).
    Cycle,
}

/// A status indication the miniport below the filter makes (the
/// `NDIS_STATUS_*` codes of ndis.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusIndication {
    /// `NDIS_STATUS_MEDIA_DISCONNECT` (cable pulled).
    MediaDisconnect,
    /// `NDIS_STATUS_MEDIA_CONNECT` (cable back).
    MediaConnect,
    /// `NDIS_STATUS_RESET_START` (an adapter reset begins).
    ResetStart,
    /// `NDIS_STATUS_RESET_END` (the reset is over).
    ResetEnd,
}

impl StatusIndication {
    /// Every indication, in the order a disconnect/connect and a reset
    /// cycle make them.
    pub const ALL: [StatusIndication; 4] = [
        StatusIndication::MediaDisconnect,
        StatusIndication::MediaConnect,
        StatusIndication::ResetStart,
        StatusIndication::ResetEnd,
    ];

    /// The `NDIS_STATUS` code (ndis.h).
    pub fn code(self) -> i32 {
        match self {
            StatusIndication::ResetStart => 0x4001_0004,
            StatusIndication::ResetEnd => 0x4001_0005,
            StatusIndication::MediaConnect => 0x4001_000B,
            StatusIndication::MediaDisconnect => 0x4001_000C,
        }
    }
}

/// The IRQL a data-path call is made at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// PASSIVE_LEVEL, `*_DISPATCH_LEVEL` flag clear.
    Passive,
    /// DISPATCH_LEVEL with the flag set.
    Dispatch,
    /// DISPATCH_LEVEL with the flag clear ("unknown", which NDIS allows).
    DispatchUnflagged,
}

/// Which way traffic goes through the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the protocol down to the miniport (FilterSendNetBufferLists).
    Send,
    /// From the miniport up to the protocol (FilterReceiveNetBufferLists).
    Receive,
}

/// One packet, described by what a counter must see in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketSpec {
    /// IP protocol: TCP (6), UDP (17) or anything else (never counted).
    pub protocol: u8,
    /// Transport source port.
    pub src_port: u16,
    /// Transport destination port.
    pub dst_port: u16,
    /// IPv6 instead of IPv4.
    pub ipv6: bool,
    /// With an 802.1Q tag.
    pub vlan: bool,
    /// Payload bytes after the transport header.
    pub payload_len: u16,
    /// A runt: only this many bytes of the frame arrive (a frame cut
    /// before its ports end is counted under no key). Harness only.
    pub truncate_to: Option<u16>,
}

impl PacketSpec {
    /// The (protocol, port) keys a per-port counter counts this packet
    /// under: destination, then source when it differs; none for protocols
    /// other than TCP and UDP.
    pub fn keys(&self) -> Vec<(u8, u16)> {
        if self.protocol != portwatch_proto::PROTO_TCP && self.protocol != portwatch_proto::PROTO_UDP {
            return Vec::new();
        }
        if self.truncate_to.is_some_and(|n| usize::from(n) < self.ports_end()) {
            return Vec::new();
        }
        let mut keys = vec![(self.protocol, self.dst_port)];
        if self.src_port != self.dst_port {
            keys.push((self.protocol, self.src_port));
        }
        keys
    }

    /// Bytes of the frame up to the end of its two port fields: Ethernet
    /// (and tag), the IP header without options, 4 bytes of TCP/UDP.
    pub fn ports_end(&self) -> usize {
        14 + if self.vlan { 4 } else { 0 } + if self.ipv6 { 40 } else { 20 } + 4
    }
}

/// One NET_BUFFER_LIST: its packets (one NET_BUFFER each) and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NblSpec {
    /// The packets, in order (at least one).
    pub packets: Vec<PacketSpec>,
    /// `NDIS_NBL_FLAGS_IS_LOOPBACK_PACKET`: the filter must not count it.
    pub loopback: bool,
    /// Spread each frame over several MDLs so headers straddle them.
    pub fragmented: bool,
}

/// How one injected NBL came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NblResult {
    /// It reached the far end (miniport for sends, protocol for receives).
    pub delivered: bool,
    /// Length in bytes of each of its frames, in order.
    pub frame_bytes: Vec<u64>,
}

/// What the verifier and the bookkeeping saw; all empty or balanced after
/// a clean run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Verifier violations ("bug checks"), in order.
    pub violations: Vec<String>,
    /// Pool allocations still live after unload.
    pub leaks: Vec<String>,
    /// Pool allocations the driver attempted.
    pub allocations: u64,
    /// NBLs created by the model that did not come back.
    pub nbls_outstanding: u64,
    /// IRPs sent to the driver.
    pub irps_sent: u64,
    /// IRPs the driver completed.
    pub irps_completed: u64,
    /// Deepest stack use of any driver entry point, in bytes.
    pub peak_stack: usize,
    /// The target cannot observe these (a real machine bug-checks instead).
    pub unobservable: bool,
    /// What the simulated NDIS saw, by name (empty where not observable):
    /// shows that a scenario's elements really happened.
    pub model: Vec<(&'static str, u64)>,
}

impl Health {
    /// Every check that must hold at the end of a scenario, as a list of
    /// failures (empty: healthy).
    pub fn problems(&self) -> Vec<String> {
        let mut p: Vec<String> = self.violations.iter().map(|v| format!("violation: {v}")).collect();
        p.extend(self.leaks.iter().map(|l| format!("leaked pool: {l}")));
        if self.nbls_outstanding != 0 {
            p.push(format!("{} NBLs never came back", self.nbls_outstanding));
        }
        if self.irps_sent != self.irps_completed {
            p.push(format!("{} IRPs sent but {} completed", self.irps_sent, self.irps_completed));
        }
        p
    }
}

/// A driver under test. Every method may be called from many threads at
/// once; the scenarios take care to call adapter operations only in the
/// order NDIS would (one state change at a time per adapter).
pub trait Target: Sync {
    /// A short description for reports.
    fn describe(&self) -> String;
    /// CreateFile on `\\.\PortWatch`.
    fn open(&self) -> Result<Handle, TargetError>;
    /// DeviceIoControl (METHOD_BUFFERED). An error status is a [`Reply`],
    /// not an `Err`: `Err` means the call itself could not be made.
    fn ioctl(&self, handle: Handle, code: u32, input: &[u8], out_len: u32) -> Result<Reply, TargetError>;
    /// CloseHandle (IRP_MJ_CLEANUP now, IRP_MJ_CLOSE once no IRP is in flight).
    fn close(&self, handle: Handle) -> Result<(), TargetError>;
    /// `CancelIoEx(handle, NULL)`: cancels every IRP pending on the handle.
    fn cancel_io(&self, handle: Handle) -> Result<(), TargetError> {
        let _ = handle;
        Err(TargetError::Unsupported("CancelIoEx".into()))
    }
    /// How many adapters the filter is attached to at the start.
    fn adapter_count(&self) -> usize;
    /// Whether `op` can be driven on this target.
    fn supports(&self, op: AdapterOp) -> bool;
    /// Drives one state change of the filter module(s) on `adapter`.
    fn adapter_op(&self, adapter: Adapter, op: AdapterOp) -> Result<(), TargetError>;
    /// Sends or indicates `nbls` (chained, in one call) through `adapter`
    /// at `level`; receives with `NDIS_RECEIVE_FLAGS_RESOURCES` when
    /// `resources`.
    fn inject(
        &self,
        adapter: Adapter,
        direction: Direction,
        nbls: &[NblSpec],
        level: Level,
        resources: bool,
    ) -> Result<Vec<NblResult>, TargetError>;
    /// Whether only injected traffic reaches the filter, so counters can be
    /// checked exactly (false on a real machine with other traffic).
    fn exact_traffic(&self) -> bool;
    /// The miniport of `adapter` indicates `status` up through the filter
    /// at `level`. Only a simulated miniport can (default: unsupported).
    fn indicate_status(&self, adapter: Adapter, status: StatusIndication, level: Level) -> Result<(), TargetError> {
        let _ = (adapter, level);
        Err(TargetError::Unsupported(format!("{status:?} needs a test miniport (NDISTest's)")))
    }
    /// The NDIS version (major, minor) the filter registered with
    /// (`NdisFRegisterFilterDriver`). Default: not observable.
    fn ndis_version(&self) -> Result<(u8, u8), TargetError> {
        Err(TargetError::Unsupported("the registration is not observable from user mode".into()))
    }
    /// The port name the driver saved in the registry
    /// (`Parameters\PortName`), `None` if none. Default: not observable.
    fn persisted_port_name(&self) -> Result<Option<Vec<u16>>, TargetError> {
        Err(TargetError::Unsupported("the registry of the test machine is not inspected".into()))
    }
    /// Makes the driver's next registry write (`ZwSetValueKey`) fail with
    /// `status`. Only a modelled registry can (default: unsupported).
    fn fail_next_registry_write(&self, status: i32) -> Result<(), TargetError> {
        let _ = status;
        Err(TargetError::Unsupported("registry faults need the modelled registry".into()))
    }
    /// Unloads the driver (every handle must be closed) and loads it again
    /// with the adapters attached and running; the health of the unloaded
    /// instance.
    fn reload(&self) -> Result<Health, TargetError>;
    /// Unloads the driver for good and reports its health. Later calls fail.
    fn unload(&self) -> Result<Health, TargetError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runt_cut_before_its_ports_has_no_keys() {
        let p = PacketSpec {
            protocol: portwatch_proto::PROTO_UDP,
            src_port: 1,
            dst_port: 2,
            ipv6: true,
            vlan: true,
            payload_len: 0,
            truncate_to: None,
        };
        assert_eq!(p.ports_end(), 14 + 4 + 40 + 4);
        assert_eq!(p.keys().len(), 2);
        assert!(PacketSpec { truncate_to: Some(61), ..p }.keys().is_empty());
        assert_eq!(PacketSpec { truncate_to: Some(62), ..p }.keys().len(), 2);
    }
}
