//! What each IOCTL does, and endpoint cleanup.
//!
//! Lock order, everywhere: the port table's RW lock, then an endpoint's spin
//! lock (taken with the RW lock's DISPATCH_LEVEL token, so the nested guard
//! cannot outlive the outer hold). The module list's spin lock is never held
//! together with anything else; the port name's RW lock only inside the port
//! name's mutex (a `PassiveMutex`, whose token the write lock borrows).

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use ndis_sync::Passive;
use portwatch_proto::{self as proto, Counters};

use crate::endpoint::Endpoint;
use crate::events::{self, ReadIrp, SinkRef};
use crate::globals::{Globals, SNAPSHOT_WAIT};
use crate::ioctl::{self, Error, Reply, Request};
use crate::ports::{BindMemory, TableError, Traffic, Unbound};

impl From<TableError> for Error {
    fn from(e: TableError) -> Self {
        match e {
            TableError::NotBound => Error::NotBound,
            TableError::NoMemory => Error::NoMemory,
        }
    }
}

/// Executes a decoded request for `endpoint`, writing the reply into `output`
/// (the system buffer's OutputBufferLength bytes; the input is no longer
/// needed). A request that fails changes nothing.
pub fn execute(
    globals: &Globals,
    endpoint: &Endpoint,
    request: Request,
    output: &mut [u8],
    irql: &mut Passive,
) -> Result<Reply, Error> {
    // Rundown protection for the whole request: cleanup waits for it.
    let live = endpoint.live.try_acquire().ok_or(Error::Closing)?;
    match request {
        Request::GetVersion => Ok(ioctl::write_fixed(&ioctl::version_info(), output)),
        Request::SetLocalAddress(new) => {
            let old = core::mem::replace(&mut live.lock(irql).local_address, new);
            drop(old); // freed after the spin lock is released
            Ok(Reply::Done(0))
        }
        Request::GetLocalAddress => {
            let mut copy = [0u8; proto::MAX_LOCAL_ADDRESS as usize];
            let len = {
                let state = live.lock(irql);
                let len = state.local_address.len();
                copy[..len].copy_from_slice(&state.local_address);
                len
            };
            Ok(ioctl::write_variable(output, len, 1, |body| body.copy_from_slice(&copy[..len])))
        }
        Request::BindPort(key) => {
            // Allocate before any lock: the write lock holds up every
            // processor's data path, so under it a bind only moves pointers.
            let needs_leaf = globals.ports.read(irql, |table, _| table.needs_leaf(key));
            // SAFETY: the endpoint is pinned until IRP_MJ_CLOSE frees it, and
            // its bindings leave the table at unbind or cleanup, before.
            let sink = unsafe { SinkRef::new(&endpoint.events) };
            let mut memory = BindMemory::try_new(endpoint.id, Some(sink), needs_leaf)?;
            let result = globals.ports.write(irql, |table, dispatch| {
                let mut state = live.lock_at_dispatch(dispatch);
                if state.bound.contains(&key) {
                    return Err(Error::AlreadyBound);
                }
                if !state.has_room() {
                    return Err(Error::TooManyBindings);
                }
                table.bind(key, &mut memory)?;
                state.bound.push(key); // within the capacity reserved at creation
                Ok(Reply::Done(0))
            });
            drop(memory); // what the bind did not use, freed after the locks
            result
        }
        Request::UnbindPort(key) => {
            let (reply, unbound) = globals.ports.write(irql, |table, dispatch| -> Result<_, Error> {
                let mut state = live.lock_at_dispatch(dispatch);
                let at = state.bound.iter().position(|k| *k == key).ok_or(Error::NotBound)?;
                let (traffic, unbound) = table.unbind(key, endpoint.id)?;
                state.bound.swap_remove(at);
                state.retired.accumulate(&traffic);
                Ok((Reply::Done(0), unbound))
            })?;
            drop(unbound); // freed after the locks
            Ok(reply)
        }
        Request::GetEndpointStats => {
            let stats = globals.ports.read(irql, |table, dispatch| {
                let state = live.lock_at_dispatch(dispatch);
                let mut total = state.retired;
                for key in &state.bound {
                    if let Some(t) = table.binding_traffic(*key, endpoint.id) {
                        total.accumulate(&t);
                    }
                }
                endpoint_stats(state.bound.len(), &total)
            });
            Ok(ioctl::write_fixed(&stats, output))
        }
        Request::GetPortStats(key) => {
            let (endpoints, traffic) = globals.ports.read(irql, |table, _| table.port_traffic(key));
            let stats =
                proto::PortStats { version: proto::PROTOCOL_VERSION, endpoints, rx: traffic.rx, tx: traffic.tx };
            Ok(ioctl::write_fixed(&stats, output))
        }
        Request::SetPortName(new) => set_port_name(globals, new, irql),
        Request::GetPortName => Ok(globals.port_name.read(irql, |name, _| {
            ioctl::write_variable(output, name.len(), 2, |body| {
                for (c, slot) in name.iter().zip(body.chunks_exact_mut(2)) {
                    slot.copy_from_slice(&c.to_le_bytes());
                }
            })
        })),
        Request::EnumFilterModules => {
            // Admission control: the reply allocates per module.
            let Ok(_permit) = globals.snapshot_replies.acquire(&*irql, SNAPSHOT_WAIT) else {
                globals.snapshot_busy.fetch_add(1, Ordering::Relaxed);
                return Err(Error::Busy);
            };
            globals.modules.enumerate(irql, output)
        }
        Request::EnableEvents(records) => enable_events(globals, endpoint, records, irql),
        // The dispatch routine handles reads itself (it owns the IRP).
        Request::ReadEvents => Err(Error::InvalidParameter),
    }
}

/// IOCTL_ENABLE_EVENTS: the ring is allocated here, at PASSIVE_LEVEL
/// outside every lock; the endpoint is listed for control events first (so
/// a second enable, or one past the list's size, changes nothing), then the
/// ring installed. Called under the endpoint's rundown protection, so
/// cleanup cannot run in between.
fn enable_events(globals: &Globals, endpoint: &Endpoint, records: u32, irql: &mut Passive) -> Result<Reply, Error> {
    let ring = events::try_ring(records as usize).ok_or(Error::NoMemory)?;
    let frequency = events::timestamp().1;
    // SAFETY: the endpoint is pinned until IRP_MJ_CLOSE; cleanup removes it
    // from the list before.
    let sink = unsafe { SinkRef::new(&endpoint.events) };
    globals.event_endpoints.lock(irql).add_once(sink)?;
    let refused = endpoint.events.queue.lock(irql).enable(ring, frequency).err();
    if let Some(ring) = refused {
        // Not reached: listing the endpoint is what serialises enables, and
        // cleanup (which closes the queue) waits for this request.
        globals.event_endpoints.lock(irql).remove(sink);
        drop(ring);
        return Err(Error::EventsState);
    }
    // Flag and count together, under the write lock (see
    // `PortTable::enable_events`).
    globals.ports.write(irql, |table, _| table.enable_events(&endpoint.events));
    Ok(Reply::Done(0))
}

/// The start of IOCTL_READ_EVENTS, under the endpoint's rundown protection
/// (so cleanup, which drains the pending reads, waits for it): fills
/// `output` from the ring, or queues the read. `pend` runs under the
/// event lock when the read is queued: the caller marks the IRP pending
/// and sets its cancel routine there (see docs/events.md).
pub fn start_read(
    endpoint: &Endpoint,
    read: ReadIrp,
    output: &mut [u8],
    pend: impl FnOnce(&mut events::EventQueue<ReadIrp>),
    irql: &mut Passive,
) -> Result<events::ReadStart, Error> {
    let _live = endpoint.live.try_acquire().ok_or(Error::Closing)?;
    let mut queue = endpoint.events.queue.lock(irql);
    let started = queue.start_read(read, output).map_err(|e| match e {
        events::ReadError::NotEnabled => Error::EventsState,
        events::ReadError::TooMany => Error::EventQuota,
        events::ReadError::Closed => Error::Closing,
    })?;
    if started == events::ReadStart::Pending {
        pend(&mut queue);
    }
    Ok(started)
}

/// Records a control event (module attached, detached, paused, restarted)
/// for every endpoint with events enabled. PASSIVE_LEVEL (the filter's
/// state handlers).
pub fn broadcast(globals: &Globals, kind: proto::EventKind, if_index: u32, irql: &mut Passive) {
    let record = events::control_record(kind, if_index);
    let mut list = globals.event_endpoints.lock(irql);
    let (list, dispatch) = list.split();
    for sink in list.iter() {
        events::record(sink, dispatch, record);
    }
}

/// IOCTL_SET_PORT_NAME: the registry first, then memory, both under the
/// port name's mutex, so concurrent writers leave the two equal; if the
/// registry write fails, nothing changes and its status is returned.
fn set_port_name(globals: &Globals, mut new: Vec<u16>, irql: &mut Passive) -> Result<Reply, Error> {
    debug_assert!(!new.contains(&0), "decode refuses a NUL inside the name");
    // REG_SZ data is the name and its NUL: room for it is made here, before
    // any lock, and the NUL is popped off again for the memory copy.
    new.try_reserve_exact(1).map_err(|_| Error::NoMemory)?;
    new.push(0);
    let mut guard = globals.port_name_store.lock(irql);
    let (store, critical) = guard.split();
    // ZwCreateKey/ZwSetValueKey at PASSIVE_LEVEL: the mutex keeps it there.
    store.write_port_name(critical, &new).map_err(Error::Registry)?;
    new.pop();
    let old = globals.port_name.write(critical, |name, _| core::mem::replace(name, new));
    drop(guard);
    drop(old); // freed after both locks are released
    Ok(Reply::Done(0))
}

fn endpoint_stats(bound: usize, total: &Traffic) -> proto::EndpointStats {
    proto::EndpointStats {
        version: proto::PROTOCOL_VERSION,
        bound_ports: u32::try_from(bound).unwrap_or(u32::MAX),
        rx: Counters { ..total.rx },
        tx: Counters { ..total.tx },
    }
}

/// IRP_MJ_CLEANUP: waits for the endpoint's IOCTLs in flight, refuses new
/// ones, and unbinds all its ports. Runs once; later calls do nothing.
pub fn cleanup(globals: &Globals, endpoint: &Endpoint, irql: &mut Passive) {
    // The state is moved out of its spin lock, which is then freed where it
    // was initialised; the endpoint's storage is freed at IRP_MJ_CLOSE.
    let taken = endpoint.live.run_down_with(irql, |state| core::mem::take(state.data_mut()));
    let Some(state) = taken else { return };
    // No read can start now (they hold rundown protection): close the
    // event queue and cancel the reads it held.
    globals.ports.write(irql, |table, _| table.disable_events(&endpoint.events));
    // SAFETY: a comparison key only: the list holds this endpoint's sink.
    globals.event_endpoints.lock(irql).remove(unsafe { SinkRef::new(&endpoint.events) });
    let drained = endpoint.events.queue.lock(irql).close();
    for read in drained.iter() {
        // A read whose cancel routine already started is that routine's.
        if read.claim() {
            read.cancel();
        }
    }
    let unbound = globals.ports.write(irql, |table, _| {
        let mut all = Unbound::default();
        for key in &state.bound {
            // Every key in `bound` is in the table: they change together.
            let removed = table.unbind(*key, endpoint.id);
            debug_assert!(removed.is_ok());
            if let Ok((_, binding)) = removed {
                all.append(binding);
            }
        }
        all
    });
    // Bindings, local address and binding list freed outside any lock.
    drop(unbound);
    drop(state);
}

/// Decodes and executes one IOCTL; `buffer` is the whole system buffer of
/// max(input, output) bytes. Returns the reply or the error to complete with.
pub fn device_control(
    globals: &Globals,
    endpoint: &Endpoint,
    code: u32,
    buffer: &mut [u8],
    input_len: usize,
    output_len: usize,
    irql: &mut Passive,
) -> Result<Reply, Error> {
    let input = buffer.get(..input_len).ok_or(Error::InvalidParameter)?;
    // `decode` copies what it needs: the input slice is dead before the
    // output slice is made, so the two never alias.
    let request = ioctl::decode(code, input, output_len)?;
    let output = buffer.get_mut(..output_len).ok_or(Error::InvalidParameter)?;
    execute(globals, endpoint, request, output, irql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::try_pin_box;
    use crate::ports::{EndpointId, PortKey};
    use crate::registry::ParametersKey;
    use core::pin::Pin;
    use proto::Wire;
    use std::boxed::Box;
    use std::sync::Arc;

    fn passive() -> Passive {
        // SAFETY: host tests run at the modelled PASSIVE_LEVEL.
        unsafe { Passive::new_unchecked() }
    }

    fn globals() -> Pin<Box<Globals>> {
        let path: Vec<u16> =
            "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Services\\PortWatch".encode_utf16().collect();
        try_pin_box(Globals::try_new(ParametersKey::try_new(&path).unwrap(), Vec::new()).unwrap()).unwrap()
    }

    /// The name in the registry (via the store) and in memory.
    fn both_names(g: &Globals) -> (Option<Vec<u16>>, Vec<u16>) {
        let mut p = passive();
        let stored = g.port_name_store.lock(&mut p).read_port_name(&passive()).unwrap();
        (stored, g.port_name.read(&mut p, |name, _| name.clone()))
    }

    fn setup() -> (Pin<Box<Globals>>, Pin<Box<Endpoint>>) {
        let g = globals();
        let ep = try_pin_box(Endpoint::try_new(&passive(), g.next_endpoint_id()).unwrap()).unwrap();
        (g, ep)
    }

    /// Runs one IOCTL the way the device does: one buffer of max(in, out).
    fn ioctl(g: &Globals, ep: &Endpoint, code: u32, input: &[u8], out_len: usize) -> (Result<Reply, Error>, Vec<u8>) {
        let mut buffer = vec![0xCC; input.len().max(out_len)];
        buffer[..input.len()].copy_from_slice(input);
        let r = device_control(g, ep, code, &mut buffer, input.len(), out_len, &mut passive());
        (r, buffer)
    }

    fn port(protocol: u8, port: u16) -> Vec<u8> {
        let mut b = vec![0; 8];
        proto::PortRequest { version: 1, protocol, reserved: 0, port }.write(&mut b);
        b
    }

    fn var(count: u32, body: &[u8]) -> Vec<u8> {
        [&1u32.to_le_bytes()[..], &count.to_le_bytes(), body].concat()
    }

    fn endpoint_stats(g: &Globals, ep: &Endpoint) -> proto::EndpointStats {
        let (r, out) = ioctl(g, ep, proto::IOCTL_GET_ENDPOINT_STATS, &[], 40);
        assert_eq!(r, Ok(Reply::Done(40)));
        proto::EndpointStats::read(&out[..40]).unwrap()
    }

    fn count(g: &Globals, src_port: u16, dst_port: u16, bytes: u64) {
        g.ports.read(&mut passive(), |t, d| {
            let flow = crate::parse::Flow { protocol: 6, src_port, dst_port };
            let cpu = crate::percpu::Cpu::current(d);
            if crate::datapath::count_flow(t, flow, bytes, crate::ports::Direction::Rx, cpu) {
                // No packet bytes here: addresses stay zero.
                crate::datapath::record_packet(t, &frame(src_port, dst_port), bytes, crate::ports::Direction::Rx, 3, d);
            }
        });
    }

    /// An Ethernet/IPv4/TCP frame's first bytes with these ports.
    fn frame(src_port: u16, dst_port: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 4];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[34..36].copy_from_slice(&src_port.to_be_bytes());
        f[36..38].copy_from_slice(&dst_port.to_be_bytes());
        f
    }

    fn enable(g: &Globals, ep: &Endpoint, version: u32, records: u32) -> Result<Reply, Error> {
        let mut b = vec![0; 8];
        proto::EnableEvents { version, ring_records: records }.write(&mut b);
        ioctl(g, ep, proto::IOCTL_ENABLE_EVENTS, &b, 0).0
    }

    #[test]
    fn events_are_queued_per_matching_binding_and_dropped_when_full() {
        let (g, ep) = setup();
        let other = try_pin_box(Endpoint::try_new(&passive(), EndpointId(99)).unwrap()).unwrap();
        ioctl(&g, &ep, proto::IOCTL_BIND_PORT, &port(6, 80), 0).0.unwrap();
        ioctl(&g, &other, proto::IOCTL_BIND_PORT, &port(6, 80), 0).0.unwrap();
        count(&g, 999, 80, 60); // before enabling: not recorded
        assert_eq!(enable(&g, &ep, 2, 3), Ok(Reply::Done(0)));
        assert_eq!(enable(&g, &ep, 2, 3), Err(Error::EventsState), "once per handle");
        for _ in 0..5 {
            count(&g, 999, 80, 60);
        }
        count(&g, 80, 80, 60); // one event: the same port on both sides
        count(&g, 999, 81, 60); // not bound
        assert_eq!(ep.events.queue.lock(&mut passive()).counts(), (0, 3, 3), "3 queued, 3 dropped");
        assert_eq!(other.events.queue.lock(&mut passive()).counts(), (0, 0, 0), "never enabled");
        // A control event goes to every enabled endpoint.
        let mut third = try_pin_box(Endpoint::try_new(&passive(), EndpointId(100)).unwrap()).unwrap();
        assert_eq!(enable(&g, &third, 2, 1), Ok(Reply::Done(0)));
        broadcast(&g, proto::EventKind::ModulePaused, 4, &mut passive());
        assert_eq!(third.events.queue.lock(&mut passive()).counts(), (0, 0, 1));
        assert_eq!(ep.events.queue.lock(&mut passive()).counts(), (0, 4, 3));
        cleanup(&g, &third, &mut passive());
        broadcast(&g, proto::EventKind::ModuleRestarted, 4, &mut passive());
        assert_eq!(third.events.queue.lock(&mut passive()).counts(), (0, 0, 1), "unlisted at cleanup");
        let _ = &mut third;
        cleanup(&g, &ep, &mut passive());
        cleanup(&g, &other, &mut passive());
    }

    /// The data path takes the counting-only loop while no endpoint has
    /// events enabled: the table's count follows enables and cleanups, once
    /// per endpoint, whatever the endpoint bound.
    #[test]
    fn the_table_counts_endpoints_with_events_enabled() {
        let (g, ep) = setup();
        let other = try_pin_box(Endpoint::try_new(&passive(), EndpointId(99)).unwrap()).unwrap();
        let any = |g: &Globals| g.ports.read(&mut passive(), |t, _| t.any_events());
        ioctl(&g, &ep, proto::IOCTL_BIND_PORT, &port(6, 80), 0).0.unwrap();
        assert!(!any(&g), "bound, events not enabled");
        assert_eq!(enable(&g, &ep, 2, 4), Ok(Reply::Done(0)));
        assert_eq!(enable(&g, &other, 2, 4), Ok(Reply::Done(0)));
        assert_eq!(enable(&g, &ep, 2, 4), Err(Error::EventsState));
        cleanup(&g, &ep, &mut passive());
        cleanup(&g, &ep, &mut passive());
        assert!(any(&g), "the other endpoint still has events enabled");
        count(&g, 999, 80, 60);
        cleanup(&g, &other, &mut passive());
        assert!(!any(&g), "counted once per endpoint");
    }

    #[test]
    fn enable_validates_and_is_bounded() {
        let (g, ep) = setup();
        assert_eq!(enable(&g, &ep, 1, 8), Err(Error::RevisionMismatch));
        assert_eq!(enable(&g, &ep, 2, 0), Err(Error::InvalidParameter));
        assert_eq!(enable(&g, &ep, 2, proto::MAX_EVENT_RING_RECORDS + 1), Err(Error::InvalidParameter));
        let many: Vec<_> = (0..crate::events::MAX_EVENT_ENDPOINTS as u64)
            .map(|i| try_pin_box(Endpoint::try_new(&passive(), EndpointId(1000 + i)).unwrap()).unwrap())
            .collect();
        for e in &many {
            assert_eq!(enable(&g, e, 2, 1), Ok(Reply::Done(0)));
        }
        assert_eq!(enable(&g, &ep, 2, 1), Err(Error::EventQuota), "list full");
        cleanup(&g, &many[0], &mut passive());
        assert_eq!(enable(&g, &ep, 2, 1), Ok(Reply::Done(0)), "a slot came free");
        for e in &many {
            cleanup(&g, e, &mut passive());
        }
        cleanup(&g, &ep, &mut passive());
    }

    #[test]
    fn bind_count_and_stats() {
        let (g, ep) = setup();
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_BIND_PORT, &port(6, 80), 0).0, Ok(Reply::Done(0)));
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_BIND_PORT, &port(6, 80), 0).0, Err(Error::AlreadyBound));
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_UNBIND_PORT, &port(17, 80), 0).0, Err(Error::NotBound));
        count(&g, 999, 80, 60);
        let s = endpoint_stats(&g, &ep);
        assert_eq!((s.bound_ports, s.rx.packets, s.rx.bytes, s.tx.packets), (1, 1, 60, 0));
        let (r, out) = ioctl(&g, &ep, proto::IOCTL_GET_PORT_STATS, &port(6, 80), 40);
        assert_eq!(r, Ok(Reply::Done(40)));
        let p = proto::PortStats::read(&out[..40]).unwrap();
        assert_eq!((p.endpoints, p.rx.packets), (1, 1));
        // Unbinding keeps what the binding counted in the endpoint's totals.
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_UNBIND_PORT, &port(6, 80), 0).0, Ok(Reply::Done(0)));
        let s = endpoint_stats(&g, &ep);
        assert_eq!((s.bound_ports, s.rx.packets), (0, 1));
    }

    #[test]
    fn binding_limit_is_enforced_without_partial_change() {
        let (g, ep) = setup();
        for p in 1..=proto::MAX_BINDINGS_PER_ENDPOINT as u16 {
            assert_eq!(ioctl(&g, &ep, proto::IOCTL_BIND_PORT, &port(17, p), 0).0, Ok(Reply::Done(0)));
        }
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_BIND_PORT, &port(17, 1000), 0).0, Err(Error::TooManyBindings));
        assert_eq!(g.ports.read(&mut passive(), |t, _| t.bound_keys()), proto::MAX_BINDINGS_PER_ENDPOINT as usize);
    }

    #[test]
    fn local_address_round_trip_and_overflow() {
        let (g, ep) = setup();
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_SET_LOCAL_ADDRESS, &var(5, b"abcde"), 0).0, Ok(Reply::Done(0)));
        let (r, out) = ioctl(&g, &ep, proto::IOCTL_GET_LOCAL_ADDRESS, &[], 64);
        assert_eq!(r, Ok(Reply::Done(17)));
        assert_eq!(&out[12..17], b"abcde");
        let (r, out) = ioctl(&g, &ep, proto::IOCTL_GET_LOCAL_ADDRESS, &[], 16);
        assert_eq!(r, Ok(Reply::Overflow));
        assert_eq!(proto::VarHeader::read(&out[..12]).unwrap().needed, 17);
    }

    #[test]
    fn port_name_round_trip() {
        let (g, ep) = setup();
        let name: Vec<u8> = "pw".encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_SET_PORT_NAME, &var(2, &name), 0).0, Ok(Reply::Done(0)));
        let (r, out) = ioctl(&g, &ep, proto::IOCTL_GET_PORT_NAME, &[], 64);
        assert_eq!(r, Ok(Reply::Done(16)));
        assert_eq!(&out[12..16], &name[..]);
    }

    #[test]
    fn cleanup_unbinds_everything_and_refuses_later_requests() {
        let (g, ep) = setup();
        let other = try_pin_box(Endpoint::try_new(&passive(), EndpointId(99)).unwrap()).unwrap();
        ioctl(&g, &ep, proto::IOCTL_BIND_PORT, &port(6, 1), 0).0.unwrap();
        ioctl(&g, &ep, proto::IOCTL_BIND_PORT, &port(6, 2), 0).0.unwrap();
        ioctl(&g, &other, proto::IOCTL_BIND_PORT, &port(6, 2), 0).0.unwrap();
        cleanup(&g, &ep, &mut passive());
        cleanup(&g, &ep, &mut passive()); // idempotent
        assert_eq!(
            g.ports.read(&mut passive(), |t, _| (t.bound_keys(), t.port_traffic(PortKey { protocol: 6, port: 2 }).0)),
            (1, 1)
        );
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_GET_VERSION, &[], 20).0, Err(Error::Closing));
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_BIND_PORT, &port(6, 3), 0).0, Err(Error::Closing));
        cleanup(&g, &other, &mut passive());
        assert_eq!(g.ports.read(&mut passive(), |t, _| t.bound_keys()), 0);
    }

    #[test]
    fn port_name_is_written_to_the_registry_then_to_memory() {
        let (g, ep) = setup();
        assert_eq!(both_names(&g), (None, vec![]));
        let name: Vec<u8> = "pw".encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_SET_PORT_NAME, &var(2, &name), 0).0, Ok(Reply::Done(0)));
        let expected: Vec<u16> = "pw".encode_utf16().collect();
        assert_eq!(both_names(&g), (Some(expected.clone()), expected));
    }

    #[test]
    fn a_failed_registry_write_returns_its_status_and_changes_nothing() {
        use windows_sys::Win32::Foundation::STATUS_ACCESS_DENIED;
        let (g, ep) = setup();
        let first: Vec<u8> = "a".encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
        ioctl(&g, &ep, proto::IOCTL_SET_PORT_NAME, &var(1, &first), 0).0.unwrap();
        g.port_name_store.lock(&mut passive()).fail_next_write(STATUS_ACCESS_DENIED);
        let second: Vec<u8> = "bc".encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
        let r = ioctl(&g, &ep, proto::IOCTL_SET_PORT_NAME, &var(2, &second), 0).0;
        assert_eq!(r.map_err(Error::ntstatus), Err(STATUS_ACCESS_DENIED));
        let a: Vec<u16> = "a".encode_utf16().collect();
        assert_eq!(both_names(&g), (Some(a.clone()), a));
    }

    #[test]
    fn a_name_with_a_nul_inside_is_refused() {
        let (g, ep) = setup();
        let r = ioctl(&g, &ep, proto::IOCTL_SET_PORT_NAME, &var(2, &[0x41, 0, 0, 0]), 0).0;
        assert_eq!(r, Err(Error::InvalidParameter));
        assert_eq!(both_names(&g), (None, vec![]));
    }

    /// Writers race: each writes the registry then memory under the mutex,
    /// so whichever wrote last wrote both.
    #[test]
    fn concurrent_writers_leave_registry_and_memory_equal() {
        let (g, ep) = setup();
        let (g, ep) = (Arc::new(g), Arc::new(ep));
        let threads: Vec<_> = (1..=4u16)
            .map(|t| {
                let (g, ep) = (Arc::clone(&g), Arc::clone(&ep));
                std::thread::spawn(move || {
                    for i in 0..200u16 {
                        let c = t * 1000 + i;
                        let name: Vec<u8> = (0..t).flat_map(|_| c.to_le_bytes()).collect();
                        ioctl(&g, &ep, proto::IOCTL_SET_PORT_NAME, &var(u32::from(t), &name), 0).0.unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (stored, memory) = both_names(&g);
        assert_eq!(stored.as_ref(), Some(&memory));
        assert!(!memory.is_empty());
    }

    #[test]
    fn failed_decoding_changes_nothing() {
        let (g, ep) = setup();
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_SET_LOCAL_ADDRESS, &var(3, b"ab"), 0).0, Err(Error::InvalidParameter));
        let (r, _) = ioctl(&g, &ep, proto::IOCTL_GET_LOCAL_ADDRESS, &[], 12);
        assert_eq!(r, Ok(Reply::Done(12)), "still empty");
        assert_eq!(ioctl(&g, &ep, 0xDEAD_BEEF, &[], 0).0, Err(Error::UnknownCode));
    }

    /// Seed 000's races on purpose: writers replace one endpoint's address
    /// and the global port name with random lengths while readers read them;
    /// every value read must be one some writer wrote, whole.
    #[test]
    fn seed_000_races_never_tear() {
        let g = Arc::new(globals());
        let ep = Arc::new(try_pin_box(Endpoint::try_new(&passive(), g.next_endpoint_id()).unwrap()).unwrap());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let (g, ep) = (Arc::clone(&g), Arc::clone(&ep));
                std::thread::spawn(move || {
                    for i in 0..300u32 {
                        if t % 2 == 0 {
                            // A value is `len` copies of the byte `len`.
                            let len = ((i * 37 + u32::from(t)) % proto::MAX_LOCAL_ADDRESS) as u8;
                            let body = vec![len; usize::from(len)];
                            ioctl(&g, &ep, proto::IOCTL_SET_LOCAL_ADDRESS, &var(u32::from(len), &body), 0).0.unwrap();
                            let chars = (i % 50) as u16;
                            let name: Vec<u8> = (0..chars).flat_map(|_| chars.to_le_bytes()).collect();
                            ioctl(&g, &ep, proto::IOCTL_SET_PORT_NAME, &var(u32::from(chars), &name), 0).0.unwrap();
                        } else {
                            let (r, out) = ioctl(&g, &ep, proto::IOCTL_GET_LOCAL_ADDRESS, &[], 12 + 128);
                            let Ok(Reply::Done(n)) = r else { panic!("{r:?}") };
                            let body = &out[12..n];
                            assert!(body.iter().all(|b| usize::from(*b) == body.len()), "torn address {body:?}");
                            let (r, out) = ioctl(&g, &ep, proto::IOCTL_GET_PORT_NAME, &[], 12 + 512);
                            let Ok(Reply::Done(n)) = r else { panic!("{r:?}") };
                            let chars: Vec<u16> =
                                out[12..n].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                            assert!(chars.iter().all(|c| usize::from(*c) == chars.len()), "torn name {chars:?}");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn snapshot_replies_are_admitted_then_refused_busy_after_the_wait() {
        let (g, ep) = setup();
        let p = passive();
        // Every permit taken, as by SNAPSHOT_REPLIES enumerations in flight.
        let held: Vec<_> = (0..crate::globals::SNAPSHOT_REPLIES)
            .map(|_| g.snapshot_replies.acquire(&p, SNAPSHOT_WAIT).unwrap())
            .collect();
        let start = std::time::Instant::now();
        assert_eq!(ioctl(&g, &ep, proto::IOCTL_ENUM_FILTER_MODULES, &[], 64).0, Err(Error::Busy));
        assert!(start.elapsed() >= SNAPSHOT_WAIT);
        assert_eq!(g.snapshot_busy.load(Ordering::Relaxed), 1);
        drop(held);
        assert!(ioctl(&g, &ep, proto::IOCTL_ENUM_FILTER_MODULES, &[], 64).0.is_ok());
        assert_eq!(g.snapshot_replies.available(), crate::globals::SNAPSHOT_REPLIES);
    }
}
