//! The driver-facing subcommands (`status`, `bind`, `unbind`, `port-name`,
//! `local-address`, `watch`) over any [`Target`]: the installed driver on
//! Windows, the harness in tests. Results go to `out`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use portwatch_proto::{self as proto, ModuleState};
use portwatch_scenarios::client::{self, status};
use portwatch_scenarios::target::{Handle, TargetError};
use portwatch_scenarios::Target;

use crate::cli::PortSpec;
use crate::exit::Failure;
use crate::reads::{self, ReadQueue};

/// Most filter modules `status` asks for.
const MODULE_ROOM: usize = 64;

/// The NTSTATUS name of the statuses the driver documents.
pub fn status_name(s: i32) -> &'static str {
    match s {
        status::SUCCESS => "STATUS_SUCCESS",
        status::BUFFER_OVERFLOW => "STATUS_BUFFER_OVERFLOW",
        status::INVALID_HANDLE => "STATUS_INVALID_HANDLE",
        status::INVALID_PARAMETER => "STATUS_INVALID_PARAMETER",
        status::INVALID_DEVICE_REQUEST => "STATUS_INVALID_DEVICE_REQUEST",
        status::BUFFER_TOO_SMALL => "STATUS_BUFFER_TOO_SMALL",
        status::QUOTA_EXCEEDED => "STATUS_QUOTA_EXCEEDED",
        status::DELETE_PENDING => "STATUS_DELETE_PENDING",
        status::REVISION_MISMATCH => "STATUS_REVISION_MISMATCH",
        status::INSUFFICIENT_RESOURCES => "STATUS_INSUFFICIENT_RESOURCES",
        status::DUPLICATE_OBJECTID => "STATUS_DUPLICATE_OBJECTID",
        status::NOT_FOUND => "STATUS_NOT_FOUND",
        _ => "an undocumented status",
    }
}

fn ioctl_failure(what: &str, e: TargetError) -> Failure {
    match e {
        TargetError::Status(s) => Failure::failed(format!("{what}: {} ({:#010x})", status_name(s), s as u32)),
        other => Failure::failed(format!("{what}: {other}")),
    }
}

fn io_failure(e: std::io::Error) -> Failure {
    Failure::failed(format!("writing the output: {e}"))
}

/// An endpoint: one open handle, closed when dropped.
struct Endpoint<'t> {
    target: &'t dyn Target,
    handle: Handle,
}

impl<'t> Endpoint<'t> {
    fn open(target: &'t dyn Target) -> Result<Self, Failure> {
        let handle = target.open().map_err(|e| ioctl_failure("opening \\\\.\\PortWatch", e))?;
        Ok(Endpoint { target, handle })
    }
}

impl Drop for Endpoint<'_> {
    fn drop(&mut self) {
        let _ = self.target.close(self.handle);
    }
}

/// `major.minor.patch` of [`proto::VersionInfo::driver_version`].
pub fn driver_version(v: u32) -> String {
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xFF, v & 0xFF)
}

fn module_state(state: u32) -> String {
    ModuleState::from_u32(state).map_or_else(|| format!("unknown state {state}"), |s| format!("{s:?}"))
}

fn utf16_name(units: &[u16]) -> String {
    let end = units.iter().position(|&c| c == 0).unwrap_or(units.len());
    String::from_utf16_lossy(&units[..end])
}

fn port_line(spec: PortSpec, s: &proto::PortStats) -> String {
    format!(
        "{spec:<10} endpoints {:>3}  rx {:>10} packets {:>14} bytes  tx {:>10} packets {:>14} bytes",
        s.endpoints, s.rx.packets, s.rx.bytes, s.tx.packets, s.tx.bytes
    )
}

/// `status`: version, filter modules, port name, and the counters of
/// `ports`.
pub fn status(t: &dyn Target, ports: &[PortSpec], out: &mut dyn Write) -> Result<(), Failure> {
    let ep = Endpoint::open(t)?;
    let v = client::version(t, ep.handle).map_err(|e| ioctl_failure("IOCTL_GET_VERSION", e))?;
    let modules =
        client::modules(t, ep.handle, MODULE_ROOM).map_err(|e| ioctl_failure("IOCTL_ENUM_FILTER_MODULES", e))?;
    let name = client::port_name(t, ep.handle).map_err(|e| ioctl_failure("IOCTL_GET_PORT_NAME", e))?;
    let w = &mut *out;
    (|| -> std::io::Result<()> {
        writeln!(w, "PortWatch driver {} (protocol {})", driver_version(v.driver_version), v.version)?;
        writeln!(
            w,
            "limits: local address {} bytes, port name {} characters, {} ports per endpoint",
            v.max_local_address, v.max_port_name_chars, v.max_bindings
        )?;
        writeln!(w, "filter modules: {}", modules.len())?;
        for m in &modules {
            writeln!(w, "  ifIndex {:>4}  {:<10} {}", m.if_index, module_state(m.state), utf16_name(&m.name))?;
        }
        writeln!(w, "port name: {:?}", String::from_utf16_lossy(&name))?;
        Ok(())
    })()
    .map_err(io_failure)?;
    if ports.is_empty() {
        writeln!(out, "ports: the driver keeps no global list; name ports with --port udp:5000").map_err(io_failure)?;
    }
    for &p in ports {
        let s = client::port_stats(t, ep.handle, p.protocol, p.port)
            .map_err(|e| ioctl_failure("IOCTL_GET_PORT_STATS", e))?;
        writeln!(out, "{}", port_line(p, &s)).map_err(io_failure)?;
    }
    Ok(())
}

fn endpoint_line(s: &proto::EndpointStats) -> String {
    format!(
        "endpoint: {} ports bound  rx {} packets {} bytes  tx {} packets {} bytes",
        s.bound_ports, s.rx.packets, s.rx.bytes, s.tx.packets, s.tx.bytes
    )
}

/// `bind`: a new endpoint bound to `ports`, its counters printed every
/// second for `hold` seconds (once when `hold` is 0).
pub fn bind(t: &dyn Target, ports: &[PortSpec], hold: u64, out: &mut dyn Write) -> Result<(), Failure> {
    let ep = Endpoint::open(t)?;
    for &p in ports {
        client::bind(t, ep.handle, p.protocol, p.port).map_err(|e| ioctl_failure(&format!("binding {p}"), e))?;
        writeln!(out, "bound {p}").map_err(io_failure)?;
    }
    for second in 0..=hold {
        if second > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let s = client::endpoint_stats(t, ep.handle).map_err(|e| ioctl_failure("IOCTL_GET_ENDPOINT_STATS", e))?;
        writeln!(out, "{}", endpoint_line(&s)).map_err(io_failure)?;
    }
    if hold == 0 {
        writeln!(out, "(the endpoint closes now and its bindings go with it: use --hold SECONDS to keep it)")
            .map_err(io_failure)?;
    }
    Ok(())
}

/// `unbind`: a new endpoint binds `ports`, then unbinds them; a second
/// unbind must answer STATUS_NOT_FOUND.
pub fn unbind(t: &dyn Target, ports: &[PortSpec], out: &mut dyn Write) -> Result<(), Failure> {
    let ep = Endpoint::open(t)?;
    for &p in ports {
        client::bind(t, ep.handle, p.protocol, p.port).map_err(|e| ioctl_failure(&format!("binding {p}"), e))?;
        client::unbind(t, ep.handle, p.protocol, p.port).map_err(|e| ioctl_failure(&format!("unbinding {p}"), e))?;
        match client::unbind(t, ep.handle, p.protocol, p.port) {
            Err(TargetError::Status(status::NOT_FOUND)) => {}
            Ok(()) => {
                return Err(Failure::failed(format!("unbinding {p} twice succeeded (expected STATUS_NOT_FOUND)")))
            }
            Err(e) => return Err(ioctl_failure(&format!("unbinding {p} again"), e)),
        }
        writeln!(out, "bound and unbound {p}; a second unbind answered STATUS_NOT_FOUND").map_err(io_failure)?;
    }
    Ok(())
}

/// `port-name`: shows the global port name, after setting it to `name`
/// when given.
pub fn port_name(t: &dyn Target, name: Option<&str>, out: &mut dyn Write) -> Result<(), Failure> {
    let ep = Endpoint::open(t)?;
    if let Some(n) = name {
        let units: Vec<u16> = n.encode_utf16().collect();
        client::set_port_name(t, ep.handle, &units).map_err(|e| ioctl_failure("IOCTL_SET_PORT_NAME", e))?;
    }
    let now = client::port_name(t, ep.handle).map_err(|e| ioctl_failure("IOCTL_GET_PORT_NAME", e))?;
    writeln!(out, "port name: {:?}", String::from_utf16_lossy(&now)).map_err(io_failure)
}

/// `AF_INET` on Windows.
pub const AF_INET: u16 = 2;
/// `AF_INET6` on Windows.
pub const AF_INET6: u16 = 23;

/// `address` as a Windows `SOCKADDR_IN` (16 bytes) or `SOCKADDR_IN6` (28
/// bytes): family little-endian, port and address in network order.
pub fn sockaddr_bytes(address: SocketAddr) -> Vec<u8> {
    let mut b = Vec::with_capacity(28);
    match address {
        SocketAddr::V4(a) => {
            b.extend(AF_INET.to_le_bytes());
            b.extend(a.port().to_be_bytes());
            b.extend(a.ip().octets());
            b.extend([0u8; 8]);
        }
        SocketAddr::V6(a) => {
            b.extend(AF_INET6.to_le_bytes());
            b.extend(a.port().to_be_bytes());
            b.extend(a.flowinfo().to_be_bytes());
            b.extend(a.ip().octets());
            b.extend(a.scope_id().to_le_bytes());
        }
    }
    b
}

/// The socket address in `bytes` (the inverse of [`sockaddr_bytes`]), or
/// `None` for anything else.
pub fn sockaddr_from_bytes(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]);
    let port = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]);
    match (family, bytes.len()) {
        (AF_INET, 16) => {
            let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        (AF_INET6, 28) => {
            let flow = u32::from_be_bytes(bytes[4..8].try_into().ok()?);
            let ip: [u8; 16] = bytes[8..24].try_into().ok()?;
            let scope = u32::from_le_bytes(bytes[24..28].try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope)))
        }
        _ => None,
    }
}

/// `local-address`: a new endpoint sets `address` and reads it back.
pub fn local_address(t: &dyn Target, address: SocketAddr, out: &mut dyn Write) -> Result<(), Failure> {
    let ep = Endpoint::open(t)?;
    client::set_local_address(t, ep.handle, &sockaddr_bytes(address))
        .map_err(|e| ioctl_failure("IOCTL_SET_LOCAL_ADDRESS", e))?;
    let back = client::local_address(t, ep.handle).map_err(|e| ioctl_failure("IOCTL_GET_LOCAL_ADDRESS", e))?;
    match sockaddr_from_bytes(&back) {
        Some(a) if a == address => writeln!(out, "local address: {a} (read back)").map_err(io_failure),
        Some(a) => Err(Failure::failed(format!("set {address} but read back {a}"))),
        None => Err(Failure::failed(format!("set {address} but read back {} other bytes", back.len()))),
    }
}

/// How `watch` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Reads kept pending at once.
    pub pending: usize,
    /// The ring's size in records.
    pub ring: u32,
    /// Stop after this many events.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// JSON lines instead of text.
    pub json: bool,
}

/// `watch` over any [`Target`], each read issued by its own thread
/// ([`reads::ThreadReads`]); `stop()` ends it early (Ctrl+C). See
/// [`watch_with`].
pub fn watch(
    t: &dyn Target,
    ports: &[PortSpec],
    options: &WatchOptions,
    stop: &dyn Fn() -> bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    watch_with(t, ports, options, stop, out, &mut |handle, run| {
        std::thread::scope(|s| run(&mut reads::ThreadReads::new(s, t, handle, options.pending)))
    })
}

/// The body of [`watch_with`] once the endpoint is ready: the pool over a
/// [`ReadQueue`].
pub type WatchBody<'a> = dyn FnMut(&mut dyn ReadQueue) -> Result<(), Failure> + 'a;

/// `watch`: enables events on a new endpoint, binds `ports`, then has
/// `with_reads` build the [`ReadQueue`] on the endpoint's handle (the
/// overlapped one on Windows) and run the body on it: `options.pending`
/// reads kept pending ([`reads::run`]), one line per event printed in the
/// driver's order ([`event_line`]) until `options.count` events,
/// `options.duration` or `stop()`; then every read is cancelled and waited
/// for, and the handle closed.
pub fn watch_with(
    t: &dyn Target,
    ports: &[PortSpec],
    options: &WatchOptions,
    stop: &dyn Fn() -> bool,
    out: &mut dyn Write,
    with_reads: &mut dyn FnMut(Handle, &mut WatchBody<'_>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let ep = Endpoint::open(t)?;
    client::enable_events(t, ep.handle, options.ring).map_err(|e| ioctl_failure("IOCTL_ENABLE_EVENTS", e))?;
    for &p in ports {
        client::bind(t, ep.handle, p.protocol, p.port).map_err(|e| ioctl_failure(&format!("binding {p}"), e))?;
    }
    let deadline = options.duration.map(|d| std::time::Instant::now() + d);
    let stop = || stop() || deadline.is_some_and(|d| std::time::Instant::now() >= d);
    with_reads(ep.handle, &mut |queue| {
        let mut printed = 0u64;
        let mut print = |header: &proto::EventBatchHeader, records: &[proto::EventRecord]| {
            for r in records {
                if options.count.is_some_and(|c| printed >= c) {
                    break;
                }
                writeln!(out, "{}", event_line(header, r, options.json)).map_err(|e| e.to_string())?;
                printed += 1;
            }
            out.flush().map_err(|e| e.to_string())?;
            Ok(if options.count.is_some_and(|c| printed >= c) { reads::Flow::Stop } else { reads::Flow::More })
        };
        reads::run(queue, options.pending, &stop, &mut print).map(drop).map_err(|e| match e {
            reads::PoolError::Read(e) => ioctl_failure("IOCTL_READ_EVENTS", e),
            reads::PoolError::Wait(e) => Failure::failed(format!("waiting for IOCTL_READ_EVENTS: {e}")),
            reads::PoolError::Consumer(e) => Failure::failed(format!("writing the output: {e}")),
            reads::PoolError::Stuck(n) => Failure::failed(format!(
                "{n} IOCTL_READ_EVENTS still pending {} s after CancelIoEx; their buffers are left allocated",
                reads::DRAIN_LIMIT.as_secs()
            )),
        })
    })
}

fn address(ip_version: u8, bytes: &[u8; 16], port: u16) -> String {
    if ip_version == 6 {
        SocketAddrV6::new(Ipv6Addr::from(*bytes), port, 0, 0).to_string()
    } else {
        SocketAddrV4::new(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]), port).to_string()
    }
}

/// One event as `watch` prints it: the time (seconds on the driver's
/// performance counter), then for a packet its direction, interface,
/// protocol, source and destination, length and the watched port, for a
/// control event what happened to which interface's module; then the
/// batch's drop count. With `json`, the same as one JSON object.
pub fn event_line(header: &proto::EventBatchHeader, r: &proto::EventRecord, json: bool) -> String {
    let seconds = r.timestamp as f64 / header.timestamp_frequency.max(1) as f64;
    let kind = proto::EventKind::from_u8(r.kind);
    let what = match kind {
        Some(proto::EventKind::Packet) => None,
        Some(proto::EventKind::ModuleAttached) => Some("attached"),
        Some(proto::EventKind::ModuleDetached) => Some("detached"),
        Some(proto::EventKind::ModulePaused) => Some("paused"),
        Some(proto::EventKind::ModuleRestarted) => Some("restarted"),
        None => Some("unknown"),
    };
    let dropped = header.dropped;
    if let Some(what) = what {
        return if json {
            format!(
                "{{\"time\":{seconds:.6},\"kind\":\"module\",\"event\":\"{what}\",\"if_index\":{},\"dropped\":{dropped}}}",
                r.if_index
            )
        } else {
            format!("{seconds:>14.6}  module {what:<9} if {:<4} dropped {dropped}", r.if_index)
        };
    }
    let direction = if r.direction == proto::DIRECTION_TX { "tx" } else { "rx" };
    let protocol = match r.protocol {
        proto::PROTO_TCP => "tcp",
        proto::PROTO_UDP => "udp",
        _ => "ip",
    };
    let (src, dst) = (address(r.ip_version, &r.src_addr, r.src_port), address(r.ip_version, &r.dst_addr, r.dst_port));
    if json {
        format!(
            "{{\"time\":{seconds:.6},\"kind\":\"packet\",\"direction\":\"{direction}\",\"if_index\":{},\
             \"protocol\":\"{protocol}\",\"src\":\"{src}\",\"dst\":\"{dst}\",\"length\":{},\"port\":{},\
             \"dropped\":{dropped}}}",
            r.if_index, r.frame_length, r.matched_port
        )
    } else {
        format!(
            "{seconds:>14.6}  {direction} if {:<4} {protocol} {src} -> {dst}  len {}  port {}  dropped {dropped}",
            r.if_index, r.frame_length, r.matched_port
        )
    }
}

/// Whether `ip` is a usable unicast peer.
pub fn usable_peer(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || v4.is_loopback()),
        IpAddr::V6(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dropped: u64) -> proto::EventBatchHeader {
        proto::EventBatchHeader {
            version: proto::PROTOCOL_VERSION,
            record_size: 64,
            count: 1,
            reserved: 0,
            dropped,
            timestamp_frequency: 10_000_000,
        }
    }

    #[test]
    fn packet_events_print_the_five_tuple() {
        let mut r = proto::EventRecord {
            kind: proto::EventKind::Packet as u8,
            direction: proto::DIRECTION_TX,
            ip_version: 4,
            protocol: proto::PROTO_UDP,
            if_index: 7,
            timestamp: 12_345_678,
            frame_length: 74,
            matched_port: 5000,
            src_port: 9,
            dst_port: 5000,
            ..Default::default()
        };
        r.src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        r.dst_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        assert_eq!(
            event_line(&header(3), &r, false),
            "      1.234568  tx if 7    udp 10.0.0.1:9 -> 10.0.0.2:5000  len 74  port 5000  dropped 3"
        );
        assert_eq!(
            event_line(&header(3), &r, true),
            "{\"time\":1.234568,\"kind\":\"packet\",\"direction\":\"tx\",\"if_index\":7,\"protocol\":\"udp\",\
             \"src\":\"10.0.0.1:9\",\"dst\":\"10.0.0.2:5000\",\"length\":74,\"port\":5000,\"dropped\":3}"
        );
        r.ip_version = 6;
        r.direction = proto::DIRECTION_RX;
        r.protocol = proto::PROTO_TCP;
        r.src_addr = [0; 16];
        r.src_addr[0] = 0xfd;
        r.src_addr[15] = 1;
        r.dst_addr = [0; 16];
        r.dst_addr[15] = 1;
        let line = event_line(&header(0), &r, false);
        assert!(line.contains("rx if 7    tcp [fd00::1]:9 -> [::1]:5000"), "{line}");
    }

    #[test]
    fn control_events_name_the_module_change() {
        let r = proto::EventRecord {
            kind: proto::EventKind::ModulePaused as u8,
            if_index: 12,
            timestamp: 20_000_000,
            ..Default::default()
        };
        assert_eq!(event_line(&header(0), &r, false), "      2.000000  module paused    if 12   dropped 0");
        assert_eq!(
            event_line(&header(1), &r, true),
            "{\"time\":2.000000,\"kind\":\"module\",\"event\":\"paused\",\"if_index\":12,\"dropped\":1}"
        );
    }

    #[test]
    fn socket_addresses_round_trip() {
        for a in ["192.168.1.10:5000", "[fe80::1%7]:443", "0.0.0.0:1"] {
            let a: SocketAddr = a.parse().unwrap();
            let b = sockaddr_bytes(a);
            assert_eq!(b.len(), if a.is_ipv4() { 16 } else { 28 });
            assert_eq!(sockaddr_from_bytes(&b), Some(a));
        }
        let v4 = sockaddr_bytes("10.0.0.2:258".parse().unwrap());
        assert_eq!(&v4[..8], &[2, 0, 1, 2, 10, 0, 0, 2]);
        assert_eq!(sockaddr_from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn versions_and_names_print() {
        assert_eq!(driver_version(0x0001_0203), "1.2.3");
        assert_eq!(status_name(status::NOT_FOUND), "STATUS_NOT_FOUND");
        assert_eq!(utf16_name(&[0x45, 0x74, 0, 0x41]), "Et");
        assert_eq!(module_state(4), "Running");
        assert!(usable_peer("10.0.0.1".parse().unwrap()));
        assert!(!usable_peer("0.0.0.0".parse().unwrap()));
    }
}
