//! What the harness-driven fuzz targets (`ioctl_sequence`, `ioctl_threads`)
//! share: reading an input, loading the driver with the options of the
//! input's header byte, each step's contract check, a model of each
//! endpoint (what one handle's owner alone decides, so it holds however
//! other threads interleave), the adapters' state machine, and the final
//! health check.
//!
//! An input starts with a header byte read only for options (see
//! `portwatch_scenarios::fuzz_options`); the program follows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use portwatch_proto::{self as proto, Wire};
use portwatch_scenarios::client::status;
use portwatch_scenarios::expect::{check_reply, expected};
use portwatch_scenarios::fuzz_options::{input_seed, FuzzOptions};
use portwatch_scenarios::harness_target::{driver_path, HarnessConfig, HarnessTarget};
use portwatch_scenarios::target::{
    Adapter, AdapterOp, Direction, Handle, Level, NblSpec, NtStatus, PacketSpec, Reply, Target, TargetError,
};

/// The driver image, found once per process.
pub fn driver() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(driver_path)
}

/// Whether `PORTWATCH_FUZZ_TRACE` is set: then every step is printed to
/// stderr (with its thread), to follow a reproduced crash.
pub fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PORTWATCH_FUZZ_TRACE").is_some())
}

/// Prints a step when [`tracing`].
macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!("[{:?}] {}", std::thread::current().id(), format_args!($($arg)*));
        }
    };
}

/// Reads an input front to back; every read past the end is `None`.
pub struct Program<'a> {
    data: &'a [u8],
}

impl<'a> Program<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Program { data }
    }

    /// The next byte.
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (take, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        take
    }

    /// Whatever is left.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Loads the driver with `options` and `adapters` adapters, detached (see
/// [`AdapterStates::bring_up`]). `None` when DriverEntry failed with
/// STATUS_INSUFFICIENT_RESOURCES under the low-resources option (the input
/// ends there); any other load failure is a crash.
pub fn load(options: &FuzzOptions, adapters: usize) -> Option<HarnessTarget> {
    let config = options.apply(HarnessConfig { start_adapters: false, ..HarnessConfig::new(driver(), adapters) });
    match HarnessTarget::load(config) {
        Ok(t) => Some(t),
        Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) if options.allocations_may_fail() => None,
        Err(TargetError::Violation(v)) => panic!("load: {v}"),
        Err(e) => panic!("cannot load {}: {e}", driver().display()),
    }
}

/// The header byte and the options of `data` (`None` when empty): those
/// `portwatch_scenarios::fuzz_options` gives. The harness's special pool
/// keeps a bounded quarantine of freed mappings and gives every mapping back
/// at the end of a session, so a process can run special-pool inputs for as
/// long as it runs.
pub fn options_of(data: &[u8]) -> Option<FuzzOptions> {
    Some(FuzzOptions::from_header(*data.first()?, input_seed(data)))
}

/// Unloads the driver: no violation, no leaked pool, every NBL returned,
/// every IRP completed, or a crash.
pub fn finish(t: HarnessTarget) {
    let health = t.unload().expect("unload");
    let problems = health.problems();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Whether a failure is allowed: only STATUS_INSUFFICIENT_RESOURCES
/// (= NDIS_STATUS_RESOURCES), only under the low-resources option.
fn resources_failure(options: &FuzzOptions, e: &TargetError) -> bool {
    options.allocations_may_fail() && *e == TargetError::Status(status::INSUFFICIENT_RESOURCES)
}

/// Opens a handle; `None` when the open failed for lack of memory (allowed
/// under the low-resources option).
pub fn open(t: &dyn Target, options: &FuzzOptions) -> Option<Endpoint> {
    let r = t.open();
    trace!("open: {r:?}");
    match r {
        Ok(h) => Some(Endpoint::new(h)),
        Err(e) if resources_failure(options, &e) => None,
        Err(e) => panic!("open: {e}"),
    }
}

/// Closes a handle (cleanup and close cannot fail).
pub fn close(t: &dyn Target, e: Endpoint) {
    trace!("close {:?}", e.handle);
    if let Err(err) = t.close(e.handle) {
        panic!("close: {err}");
    }
}

/// The IOCTL code for a selector: one of ours (10 in 11), else any code.
pub fn code_of(selector: u8, raw: u16) -> u32 {
    match proto::ALL_IOCTLS.get(usize::from(selector) % (proto::ALL_IOCTLS.len() + 1)) {
        Some(&code) => code,
        None => (u32::from(raw) << 8 | u32::from(selector)) & !3,
    }
}

/// The ports traffic and structured port requests use: 16 of each
/// protocol, so bindings, unbindings and counting meet.
pub fn port_of(b: u8) -> u16 {
    40_000 + u16::from(b % 16)
}

/// An IOCTL_BIND_PORT / UNBIND_PORT / GET_PORT_STATS input.
pub fn port_request(protocol: u8, port: u16) -> Vec<u8> {
    let mut b = vec![0u8; proto::PortRequest::SIZE];
    proto::PortRequest { version: proto::PROTOCOL_VERSION, protocol, reserved: 0, port }.write(&mut b);
    b
}

/// One open handle and what its owner alone decides: the ports it has
/// bound, its local address, and the counters it last read (which never go
/// down). Only the thread that owns the handle uses it, so these hold
/// whatever other threads do.
#[derive(Debug)]
pub struct Endpoint {
    /// The handle.
    pub handle: Handle,
    bound: BTreeSet<(u8, u16)>,
    local_address: Vec<u8>,
    last_stats: proto::EndpointStats,
}

impl Endpoint {
    fn new(handle: Handle) -> Self {
        Endpoint { handle, bound: BTreeSet::new(), local_address: Vec::new(), last_stats: Default::default() }
    }

    /// Sends one IOCTL and checks the reply against the documented
    /// contract (`portwatch_scenarios::expect`) and this endpoint's model.
    pub fn ioctl(&mut self, t: &dyn Target, options: &FuzzOptions, code: u32, input: &[u8], out_len: u32) {
        let reply = match t.ioctl(self.handle, code, input, out_len) {
            Ok(reply) => reply,
            Err(e) => panic!("IOCTL {code:#x}: {e}"),
        };
        let s = reply.status;
        trace!(
            "IOCTL {code:#x} on {:?} in={input:02x?} out={out_len}: {:#x} {:02x?}",
            self.handle,
            s as u32,
            reply.output
        );
        let contract = expected(code, input, out_len);
        assert!(
            contract.allows(s),
            "IOCTL {code:#x} in={input:02x?} out={out_len}: {:#x}, expected {contract:?}",
            s as u32
        );
        if let Some(bad) = check_reply(code, out_len, &reply) {
            panic!("IOCTL {code:#x} out={out_len}: {bad}");
        }
        if s == status::INSUFFICIENT_RESOURCES {
            assert!(options.allocations_may_fail(), "IOCTL {code:#x}: out of memory without low resources");
        }
        // The handle is never closed while its owner uses it.
        assert_ne!(s, status::DELETE_PENDING, "IOCTL {code:#x} on a handle nobody closes");
        self.model(code, input, &reply);
    }

    fn model(&mut self, code: u32, input: &[u8], reply: &Reply) {
        let s = reply.status;
        let port = proto::PortRequest::read(input).map(|r| (r.protocol, r.port));
        match code {
            proto::IOCTL_BIND_PORT if s != status::INVALID_PARAMETER && s != status::REVISION_MISMATCH => {
                let key = port.expect("a well-formed port request");
                // The contract does not order the checks: an allocation
                // may fail before the duplicate or quota check.
                let want: &[NtStatus] = match (self.bound.contains(&key), self.bound.len() as u32) {
                    (true, n) if n >= proto::MAX_BINDINGS_PER_ENDPOINT => {
                        &[status::DUPLICATE_OBJECTID, status::QUOTA_EXCEEDED, status::INSUFFICIENT_RESOURCES]
                    }
                    (true, _) => &[status::DUPLICATE_OBJECTID, status::INSUFFICIENT_RESOURCES],
                    (false, n) if n >= proto::MAX_BINDINGS_PER_ENDPOINT => {
                        &[status::QUOTA_EXCEEDED, status::INSUFFICIENT_RESOURCES]
                    }
                    (false, _) => &[status::SUCCESS, status::INSUFFICIENT_RESOURCES],
                };
                assert!(want.contains(&s), "bind {key:?} with {:?} bound: {:#x}", self.bound, s as u32);
                if s == status::SUCCESS {
                    self.bound.insert(key);
                }
            }
            proto::IOCTL_UNBIND_PORT if s != status::INVALID_PARAMETER && s != status::REVISION_MISMATCH => {
                let key = port.expect("a well-formed port request");
                let want = if self.bound.remove(&key) { status::SUCCESS } else { status::NOT_FOUND };
                assert_eq!(s, want, "unbind {key:?} with {:?} bound", self.bound);
            }
            proto::IOCTL_GET_PORT_STATS if s == status::SUCCESS => {
                let stats = proto::PortStats::read(&reply.output).expect("checked reply");
                let key = port.expect("a well-formed port request");
                if self.bound.contains(&key) {
                    assert!(stats.endpoints >= 1, "port {key:?} bound here but {stats:?}");
                }
            }
            proto::IOCTL_GET_ENDPOINT_STATS if s == status::SUCCESS => {
                let stats = proto::EndpointStats::read(&reply.output).expect("checked reply");
                assert_eq!(stats.bound_ports as usize, self.bound.len(), "{stats:?} with {:?} bound", self.bound);
                let last = self.last_stats;
                let grew = |a: proto::Counters, b: proto::Counters| a.packets >= b.packets && a.bytes >= b.bytes;
                assert!(
                    grew(stats.rx, last.rx) && grew(stats.tx, last.tx),
                    "counters went down: {last:?} -> {stats:?}"
                );
                self.last_stats = stats;
            }
            proto::IOCTL_SET_LOCAL_ADDRESS if s == status::SUCCESS => {
                self.local_address = input[proto::LocalAddressHeader::SIZE..].to_vec();
            }
            proto::IOCTL_GET_LOCAL_ADDRESS if s == status::SUCCESS => {
                let body = &reply.output[proto::VarHeader::SIZE..];
                assert_eq!(body, &self.local_address[..], "local address read back differs");
            }
            proto::IOCTL_GET_LOCAL_ADDRESS if s == status::BUFFER_OVERFLOW => {
                let h = proto::VarHeader::read(&reply.output).expect("checked reply");
                assert_eq!(h.needed as usize, proto::VarHeader::SIZE + self.local_address.len(), "{h:?}");
            }
            _ => {}
        }
    }
}

/// Reads an IOCTL step (selector, raw code, output length, input) and runs
/// it on one of `endpoints`.
pub fn ioctl_step(
    t: &dyn Target,
    options: &FuzzOptions,
    endpoints: &mut [Endpoint],
    p: &mut Program<'_>,
) -> Option<()> {
    let n = endpoints.len();
    let e = endpoints.get_mut(usize::from(p.byte()?) % n.max(1))?;
    let selector = p.byte()?;
    let raw = p.u16()?;
    let code = code_of(selector, raw);
    let mut out_len = u32::from(p.u16()?) % 2048;
    if code == proto::IOCTL_READ_EVENTS {
        // A valid read may pend until an event or a cancel: those go
        // through `read_step` on a thread of their own. Here only the
        // decoding (a too-small buffer) is exercised.
        out_len %= MIN_READ_BYTES;
    }
    let len = usize::from(p.byte()?);
    let input = p.bytes(len).to_vec();
    e.ioctl(t, options, code, &input, out_len);
    Some(())
}

/// Bytes of the smallest IOCTL_READ_EVENTS output: a header and a record.
pub const MIN_READ_BYTES: u32 = (proto::EventBatchHeader::SIZE + proto::EventRecord::SIZE) as u32;

/// Reads a well-formed IOCTL_ENABLE_EVENTS (ring of 1..=8 records) and runs
/// it on one of `endpoints`.
pub fn enable_step(
    t: &dyn Target,
    options: &FuzzOptions,
    endpoints: &mut [Endpoint],
    p: &mut Program<'_>,
) -> Option<()> {
    let n = endpoints.len();
    let e = endpoints.get_mut(usize::from(p.byte()?) % n.max(1))?;
    let ring_records = 1 + u32::from(p.byte()? % 8);
    let mut input = vec![0u8; proto::EnableEvents::SIZE];
    proto::EnableEvents { version: proto::PROTOCOL_VERSION, ring_records }.write(&mut input);
    e.ioctl(t, options, proto::IOCTL_ENABLE_EVENTS, &input, 0);
    Some(())
}

/// One IOCTL_READ_EVENTS with room for `room` records, on its own thread
/// (it may pend), checked against the contract when it completes: events,
/// or cancelled (CancelIoEx, the handle closed), or refused.
pub fn read_and_check(t: &dyn Target, handle: Handle, room: u32) {
    let out_len = MIN_READ_BYTES + (room.max(1) - 1) * proto::EventRecord::SIZE as u32;
    trace!("read events on {handle:?} ({out_len} bytes)");
    match t.ioctl(handle, proto::IOCTL_READ_EVENTS, &[], out_len) {
        Ok(reply) => {
            let contract = expected(proto::IOCTL_READ_EVENTS, &[], out_len);
            assert!(
                contract.allows(reply.status) || reply.status == status::CANCELLED,
                "IOCTL_READ_EVENTS: {:#x}, expected {contract:?} or STATUS_CANCELLED",
                reply.status as u32
            );
            if let Some(bad) = check_reply(proto::IOCTL_READ_EVENTS, out_len, &reply) {
                panic!("IOCTL_READ_EVENTS out={out_len}: {bad}");
            }
        }
        // Closed before the read reached the driver.
        Err(TargetError::Status(status::INVALID_HANDLE)) => {}
        Err(e) => panic!("IOCTL_READ_EVENTS: {e}"),
    }
}

/// CancelIoEx on one of `endpoints`.
pub fn cancel_step(t: &dyn Target, endpoints: &[Endpoint], p: &mut Program<'_>) -> Option<()> {
    let e = endpoints.get(usize::from(p.byte()?) % endpoints.len().max(1))?;
    trace!("cancel {:?}", e.handle);
    if let Err(err) = t.cancel_io(e.handle) {
        panic!("CancelIoEx: {err}");
    }
    Some(())
}

/// Reads a well-formed port request (bind, unbind or port stats on one of
/// the [`port_of`] ports) and runs it on one of `endpoints`.
pub fn port_step(t: &dyn Target, options: &FuzzOptions, endpoints: &mut [Endpoint], p: &mut Program<'_>) -> Option<()> {
    let n = endpoints.len();
    let e = endpoints.get_mut(usize::from(p.byte()?) % n.max(1))?;
    let b = p.byte()?;
    let protocol = if b & 0x10 == 0 { proto::PROTO_TCP } else { proto::PROTO_UDP };
    let (code, out_len) = match b >> 5 {
        0..=3 => (proto::IOCTL_BIND_PORT, 0),
        4..=5 => (proto::IOCTL_UNBIND_PORT, 0),
        6 => (proto::IOCTL_GET_PORT_STATS, proto::PortStats::SIZE as u32),
        _ => (proto::IOCTL_GET_ENDPOINT_STATS, proto::EndpointStats::SIZE as u32),
    };
    let input = if code == proto::IOCTL_GET_ENDPOINT_STATS { Vec::new() } else { port_request(protocol, port_of(b)) };
    e.ioctl(t, options, code, &input, out_len);
    Some(())
}

/// One injection, read from a program.
#[derive(Debug, Clone)]
pub struct Traffic {
    /// The NBL (one packet).
    pub nbl: NblSpec,
    /// Send or receive.
    pub direction: Direction,
    /// At which IRQL.
    pub level: Level,
    /// `NDIS_RECEIVE_FLAGS_RESOURCES`.
    pub resources: bool,
}

/// Reads a packet: flags, source port, destination port (one of
/// [`port_of`]), payload length.
pub fn read_traffic(p: &mut Program<'_>) -> Option<Traffic> {
    let flags = p.byte()?;
    let packet = PacketSpec {
        protocol: if flags & 1 == 0 { proto::PROTO_TCP } else { proto::PROTO_UDP },
        src_port: p.u16()?,
        dst_port: port_of(p.byte()?),
        ipv6: flags & 2 != 0,
        vlan: flags & 4 != 0,
        payload_len: u16::from(p.byte()?),
        truncate_to: None,
    };
    Some(Traffic {
        direction: if flags & 8 == 0 { Direction::Send } else { Direction::Receive },
        level: if flags & 16 == 0 { Level::Passive } else { Level::Dispatch },
        nbl: NblSpec { packets: vec![packet], loopback: flags & 32 != 0, fragmented: flags & 64 != 0 },
        resources: flags & 128 != 0,
    })
}

/// Injects `traffic` on `adapter`; whether it reached the far end.
pub fn inject(t: &dyn Target, adapter: usize, traffic: &Traffic) -> bool {
    let Traffic { nbl, direction, level, resources } = traffic;
    match t.inject(Adapter(adapter), *direction, std::slice::from_ref(nbl), *level, *resources) {
        Ok(results) => {
            assert_eq!(results.len(), 1, "one NBL injected, {} came back", results.len());
            results[0].delivered
        }
        Err(e) => panic!("inject: {e}"),
    }
}

/// Where a filter module stands, as NDIS drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No PortWatch module (before FilterAttach or after FilterDetach).
    Detached,
    /// Attached, paused.
    Paused,
    /// Attached, running.
    Running,
}

impl State {
    /// Whether an NBL passed through the adapter in this state reaches the
    /// far end: a running module passes everything on, a paused one
    /// completes sends (NDIS_STATUS_PAUSED) and returns receives, and
    /// without a module NDIS passes it on.
    pub fn delivers(self) -> bool {
        self != State::Paused
    }
}

/// The adapters' states, changed one step at a time per adapter the way
/// NDIS does (Running -> Paused -> Running or Detached -> Paused). Each
/// state has a version, odd while a change is under way, so that traffic
/// can tell whether the state held for the whole of an injection.
pub struct AdapterStates {
    adapters: Vec<AdapterState>,
    options: FuzzOptions,
}

struct AdapterState {
    /// Held for a whole change: changes of one adapter never overlap.
    change: Mutex<()>,
    /// The state and its version; held only to read or write them.
    state: Mutex<(State, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AdapterStates {
    /// Attaches and restarts every adapter of `t` (loaded with
    /// `start_adapters: false`); under low resources an attach or restart
    /// may fail and the adapter stays where it was.
    pub fn bring_up(t: &dyn Target, options: &FuzzOptions) -> Self {
        let s = AdapterStates {
            adapters: (0..t.adapter_count())
                .map(|_| AdapterState { change: Mutex::new(()), state: Mutex::new((State::Detached, 0)) })
                .collect(),
            options: *options,
        };
        for a in 0..t.adapter_count() {
            s.step(t, a, false);
            s.step(t, a, false);
        }
        s
    }

    /// How many adapters.
    pub fn len(&self) -> usize {
        self.adapters.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.adapters.is_empty()
    }

    /// The state of `a` and its version.
    pub fn snapshot(&self, a: usize) -> (State, u64) {
        *lock(&self.adapters[a].state)
    }

    /// Drives one valid transition of adapter `a` (`detach` chooses
    /// Paused -> Detached over Paused -> Running).
    pub fn step(&self, t: &dyn Target, a: usize, detach: bool) {
        let adapter = &self.adapters[a];
        let _change = lock(&adapter.change);
        let (from, version) = self.snapshot(a);
        let (op, to) = match from {
            State::Running => (AdapterOp::Pause, State::Paused),
            State::Paused if detach => (AdapterOp::Detach, State::Detached),
            State::Paused => (AdapterOp::Restart, State::Running),
            State::Detached => (AdapterOp::Attach, State::Paused),
        };
        *lock(&adapter.state) = (from, version + 1);
        let result = t.adapter_op(Adapter(a), op);
        trace!("adapter {a} {op:?} from {from:?}: {result:?}");
        let may_fail = matches!(op, AdapterOp::Attach | AdapterOp::Restart);
        let now = match result {
            Ok(()) => to,
            Err(e) if may_fail && resources_failure(&self.options, &e) => from,
            Err(e) => panic!("adapter {a} {op:?} from {from:?}: {e}"),
        };
        *lock(&adapter.state) = (now, version + 2);
    }

    /// Injects `traffic` on adapter `a` and, when the adapter's state held
    /// for the whole call, checks whether the NBL was delivered as that
    /// state requires.
    pub fn inject(&self, t: &dyn Target, a: usize, traffic: &Traffic) {
        let (before, v0) = self.snapshot(a);
        let delivered = inject(t, a, traffic);
        let (_, v1) = self.snapshot(a);
        trace!("{traffic:?} on adapter {a} ({before:?} v{v0}, v{v1}): delivered {delivered}");
        if v0 == v1 && v0 % 2 == 0 {
            assert_eq!(delivered, before.delivers(), "{traffic:?} on adapter {a} while {before:?}");
        }
    }
}

/// One program's handles and the reads it started, with the steps both
/// harness targets share: op 0 opens, 1 closes, 8 enables the event
/// stream, 9 starts a read on a thread of its own (it may pend), 10
/// cancels (CancelIoEx). Each target gives the other ops its own meaning.
pub struct Handles {
    /// The open handles, each with its owner's model.
    pub endpoints: Vec<Endpoint>,
    reads: usize,
    max_handles: usize,
    max_reads: usize,
}

impl Handles {
    /// No handle open yet; at most `max_handles` open at once and
    /// `max_reads` reads started in all.
    pub fn new(max_handles: usize, max_reads: usize) -> Self {
        Handles { endpoints: Vec::new(), reads: 0, max_handles, max_reads }
    }

    /// Runs `op` (already reduced modulo 11) if it is a shared step that
    /// applies now: `Some(step)`, where a `None` step means the program
    /// ran out. `None` when the target decides what `op` does.
    pub fn shared_step<'s>(
        &mut self,
        op: u8,
        t: &'s dyn Target,
        options: &FuzzOptions,
        p: &mut Program<'_>,
        scope: &'s std::thread::Scope<'s, '_>,
    ) -> Option<Option<()>> {
        let any_open = !self.endpoints.is_empty();
        Some(match op {
            8 if any_open => enable_step(t, options, &mut self.endpoints, p),
            9 if any_open && self.reads < self.max_reads => p.byte().map(|b| {
                let handle = self.endpoints[usize::from(b) % self.endpoints.len()].handle;
                self.reads += 1;
                scope.spawn(move || read_and_check(t, handle, u32::from(b % 4) + 1));
            }),
            10 if any_open => cancel_step(t, &self.endpoints, p),
            0 if self.endpoints.len() < self.max_handles => {
                self.endpoints.extend(open(t, options));
                Some(())
            }
            1 if any_open => p.byte().map(|i| {
                let at = usize::from(i) % self.endpoints.len();
                close(t, self.endpoints.swap_remove(at));
            }),
            _ => return None,
        })
    }

    /// Closes every handle still open (completing the reads pending on it).
    pub fn close_all(self, t: &dyn Target) {
        for e in self.endpoints {
            close(t, e);
        }
    }
}
