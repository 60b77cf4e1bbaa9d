//! What each IOCTL does, and endpoint cleanup.
//!
//! Lock order, everywhere: the port table's RW lock, then an endpoint's spin
//! lock (taken with the RW lock's DISPATCH_LEVEL token, so the nested guard
//! cannot outlive the outer hold). The module list's spin lock and the port
//! name's RW lock are never held together with anything else.

use alloc::vec::Vec;

use ndis_sync::Passive;
use portwatch_proto::{self as proto, Counters};

use crate::endpoint::Endpoint;
use crate::globals::Globals;
use crate::ioctl::{self, Error, Reply, Request};
use crate::ports::{PortKey, TableError, Traffic};

impl From<TableError> for Error {
    fn from(e: TableError) -> Self {
        match e {
            TableError::AlreadyBound => Error::AlreadyBound,
            TableError::NotBound => Error::NotBound,
            TableError::NoMemory => Error::NoMemory,
        }
    }
}

/// Executes a decoded request for `endpoint`, writing the reply into `output`
/// (the system buffer's OutputBufferLength bytes; the input is no longer
/// needed). A request that fails changes nothing.
pub fn execute(globals: &Globals, endpoint: &Endpoint, request: Request, output: &mut [u8], irql: &mut Passive) -> Result<Reply, Error> {
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
            globals.ports.write(irql, |table, dispatch| {
                let mut state = live.lock_at_dispatch(dispatch);
                if state.bound.contains(&key) {
                    return Err(Error::AlreadyBound);
                }
                if !state.has_room() {
                    return Err(Error::TooManyBindings);
                }
                table.bind(key, endpoint.id)?;
                state.bound.push(key); // within the capacity reserved at creation
                Ok(Reply::Done(0))
            })
        }
        Request::UnbindPort(key) => globals.ports.write(irql, |table, dispatch| {
            let mut state = live.lock_at_dispatch(dispatch);
            let at = state.bound.iter().position(|k| *k == key).ok_or(Error::NotBound)?;
            let traffic = table.unbind(key, endpoint.id)?;
            state.bound.swap_remove(at);
            state.retired.accumulate(&traffic);
            Ok(Reply::Done(0))
        }),
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
            let stats = proto::PortStats { version: proto::PROTOCOL_VERSION, endpoints, rx: traffic.rx, tx: traffic.tx };
            Ok(ioctl::write_fixed(&stats, output))
        }
        Request::SetPortName(new) => {
            let old = globals.port_name.write(irql, |name, _| core::mem::replace(name, new));
            drop(old); // freed after the RW lock is released
            Ok(Reply::Done(0))
        }
        Request::GetPortName => Ok(globals.port_name.read(irql, |name, _| {
            ioctl::write_variable(output, name.len(), 2, |body| {
                for (c, slot) in name.iter().zip(body.chunks_exact_mut(2)) {
                    slot.copy_from_slice(&c.to_le_bytes());
                }
            })
        })),
        Request::EnumFilterModules => globals.modules.enumerate(irql, output),
    }
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
    let Some(state) = endpoint.live.run_down(irql) else { return };
    let state = state.into_inner();
    globals.ports.write(irql, |table, _| {
        for key in &state.bound {
            // Every key in `bound` is in the table: they change together.
            let unbound = table.unbind(*key, endpoint.id);
            debug_assert!(unbound.is_ok());
        }
    });
    drop(state); // local address and binding list freed outside any lock
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

/// Bindings of an endpoint, for tests and diagnostics.
pub fn bound_ports(endpoint: &Endpoint, irql: &mut Passive) -> Option<Vec<PortKey>> {
    let live = endpoint.live.try_acquire()?;
    let state = live.lock(irql);
    let mut v = Vec::new();
    v.try_reserve_exact(state.bound.len()).ok()?;
    v.extend_from_slice(&state.bound);
    Some(v)
}
