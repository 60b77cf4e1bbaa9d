//! Scenario 1, the IOCTL storm: worker threads send a random mix of every
//! IOCTL, well formed and malformed, on a few shared handles while churner
//! threads close those handles (often with IOCTLs in flight on them) and
//! open new ones. Every completion is checked against the contract in
//! [`crate::expect`].

use std::sync::atomic::{AtomicU64, Ordering};

use portwatch_proto::{self as proto, Wire};

use crate::client::{self, status};
use crate::expect;
use crate::rng::Rng;
use crate::run::Run;
use crate::target::{Handle, Target, TargetError};

/// Handles shared by the storm's workers; 0 is "no handle in this slot".
pub struct Slots {
    slots: Vec<AtomicU64>,
}

impl Slots {
    /// Opens `n` handles.
    pub fn open(t: &dyn Target, n: usize, run: &Run) -> Self {
        let slots = (0..n.max(1))
            .map(|_| match t.open() {
                Ok(h) => AtomicU64::new(h.0),
                // Under low-resources simulation the slot starts empty.
                Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) => AtomicU64::new(0),
                Err(e) => {
                    run.error("open", &e);
                    AtomicU64::new(0)
                }
            })
            .collect();
        Slots { slots }
    }

    /// The handle in a random slot, if that slot has one now.
    pub fn any(&self, rng: &mut Rng) -> Option<Handle> {
        let h = self.slots[rng.below(self.slots.len() as u64) as usize].load(Ordering::Acquire);
        (h != 0).then_some(Handle(h))
    }

    /// Closes the handle of a random slot (IOCTLs may be in flight on it)
    /// and puts a new one there.
    pub fn churn(&self, t: &dyn Target, rng: &mut Rng, run: &Run) {
        let slot = &self.slots[rng.below(self.slots.len() as u64) as usize];
        let old = slot.swap(0, Ordering::AcqRel);
        if old != 0 {
            if let Err(e) = t.close(Handle(old)) {
                run.error("close", &e);
            }
        }
        match t.open() {
            Ok(h) => {
                if slot.compare_exchange(0, h.0, Ordering::AcqRel, Ordering::Acquire).is_err() {
                    if let Err(e) = t.close(h) {
                        run.error("close", &e);
                    }
                }
            }
            Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) => {}
            Err(e) => run.error("open", &e),
        }
    }

    /// Closes every handle.
    pub fn close_all(&self, t: &dyn Target, run: &Run) {
        for slot in &self.slots {
            let h = slot.swap(0, Ordering::AcqRel);
            if h != 0 {
                if let Err(e) = t.close(Handle(h)) {
                    run.error("close", &e);
                }
            }
        }
    }
}

fn valid_port_request(rng: &mut Rng) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    let protocol = *rng.pick(&[proto::PROTO_TCP, proto::PROTO_UDP]);
    // A small port range, so binds and unbinds meet each other.
    let port = rng.range(40_000, 40_015) as u16;
    proto::PortRequest { version: proto::PROTOCOL_VERSION, protocol, reserved: 0, port }.write(&mut b);
    b
}

fn valid_input(code: u32, rng: &mut Rng) -> Vec<u8> {
    match code {
        proto::IOCTL_SET_LOCAL_ADDRESS => {
            let len = rng.below(u64::from(proto::MAX_LOCAL_ADDRESS) + 1) as usize;
            client::local_address_input(&vec![len as u8; len])
        }
        proto::IOCTL_SET_PORT_NAME => {
            let len = rng.below(u64::from(proto::MAX_PORT_NAME_CHARS) + 1) as usize;
            client::port_name_input(&vec![len as u16; len])
        }
        proto::IOCTL_BIND_PORT | proto::IOCTL_UNBIND_PORT | proto::IOCTL_GET_PORT_STATS => valid_port_request(rng),
        proto::IOCTL_ENABLE_EVENTS => {
            let mut b = vec![0; proto::EnableEvents::SIZE];
            let ring_records = rng.range(1, 65) as u32;
            proto::EnableEvents { version: proto::PROTOCOL_VERSION, ring_records }.write(&mut b);
            b
        }
        _ => Vec::new(),
    }
}

/// Breaks a valid input in one of the ways the status table lists.
fn mutate(mut input: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 if !input.is_empty() => {
            let cut = rng.below(input.len() as u64) as usize;
            input.truncate(cut);
        }
        1 => input.extend((0..rng.range(1, 9)).map(|_| rng.next_u64() as u8)),
        2 if input.len() >= 4 => input[0] = input[0].wrapping_add(rng.range(1, 255) as u8),
        3 if input.len() >= 8 => {
            let field = rng.range(4, input.len() as u64 - 1) as usize;
            input[field] = rng.next_u64() as u8;
        }
        4 if input.len() >= 8 => input[4..8].copy_from_slice(&(rng.next_u64() as u32).to_le_bytes()),
        _ => input = (0..rng.below(40)).map(|_| rng.next_u64() as u8).collect(),
    }
    input
}

fn output_len(code: u32, rng: &mut Rng) -> u32 {
    let right = match code {
        proto::IOCTL_GET_VERSION => proto::VersionInfo::SIZE,
        proto::IOCTL_GET_ENDPOINT_STATS => proto::EndpointStats::SIZE,
        proto::IOCTL_GET_PORT_STATS => proto::PortStats::SIZE,
        proto::IOCTL_GET_LOCAL_ADDRESS => proto::VarHeader::SIZE + proto::MAX_LOCAL_ADDRESS as usize,
        proto::IOCTL_GET_PORT_NAME => proto::VarHeader::SIZE + 2 * proto::MAX_PORT_NAME_CHARS as usize,
        proto::IOCTL_ENUM_FILTER_MODULES => proto::VarHeader::SIZE + 8 * proto::ModuleInfo::SIZE,
        // Never a valid read: with events enabled and no traffic it would
        // pend until the handle closes. Valid reads are scenario 6's.
        proto::IOCTL_READ_EVENTS => {
            return rng.below((proto::EventBatchHeader::SIZE + proto::EventRecord::SIZE) as u64) as u32
        }
        _ => 0,
    };
    if rng.chance(75) {
        right as u32
    } else {
        rng.below(right as u64 + 64) as u32
    }
}

/// A random request: a known code 90% of the time, a valid input 70% of
/// the time, the right output size 75% of the time.
pub fn random_request(rng: &mut Rng) -> (u32, Vec<u8>, u32) {
    let code = if rng.chance(90) { *rng.pick(&proto::ALL_IOCTLS) } else { (rng.next_u64() as u32) & !3 };
    let input = valid_input(code, rng);
    let input = if rng.chance(70) { input } else { mutate(input, rng) };
    let out_len = output_len(code, rng);
    (code, input, out_len)
}

/// Sends one request on `h` and checks its completion.
pub fn checked_ioctl(t: &dyn Target, h: Handle, code: u32, input: &[u8], out_len: u32, run: &Run) {
    match t.ioctl(h, code, input, out_len) {
        Ok(reply) => check_completion(code, input, out_len, &reply, run),
        // The handle was closed by a churner between our pick and the call.
        Err(TargetError::Status(status::INVALID_HANDLE)) => {}
        Err(e) => run.error("ioctl", &e),
    }
}

/// Checks one completion against the contract.
fn check_completion(code: u32, input: &[u8], out_len: u32, reply: &crate::target::Reply, run: &Run) {
    let allowed = expect::expected(code, input, out_len);
    if !allowed.allows(reply.status) {
        run.fail(format!(
            "IOCTL {code:#x} in={input:02x?} out={out_len}: status {:#x}, expected {allowed:?}",
            reply.status as u32
        ));
    }
    if let Some(bad) = expect::check_reply(code, out_len, reply) {
        run.fail(format!("IOCTL {code:#x}: {bad}"));
    }
}

/// One storm worker: churners open and close, the others send IOCTLs.
pub fn worker(t: &dyn Target, slots: &Slots, run: &Run, mut rng: Rng, churner: bool) {
    while run.next_op() {
        if churner {
            slots.churn(t, &mut rng, run);
        } else if let Some(h) = slots.any(&mut rng) {
            let (code, input, out_len) = random_request(&mut rng);
            checked_ioctl(t, h, code, &input, out_len, run);
        }
        run.done_op();
    }
}

/// After the storm: a fresh handle still gets well-formed answers.
pub fn check_still_serves(t: &dyn Target, run: &Run) {
    let h = match t.open() {
        Ok(h) => h,
        Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) => return,
        Err(e) => return run.error("open after storm", &e),
    };
    match client::version(t, h) {
        Ok(v) if v.version == proto::PROTOCOL_VERSION => {}
        other => run.fail(format!("version after storm: {other:?}")),
    }
    match client::endpoint_stats(t, h) {
        Ok(s) if s.bound_ports == 0 && s.rx.packets == 0 && s.tx.packets == 0 => {}
        other => run.fail(format!("a fresh endpoint is not empty: {other:?}")),
    }
    if let Err(e) = t.close(h) {
        run.error("close", &e);
    }
}

/// First port of the binding-limit check (a range no other scenario uses).
const LIMIT_BASE: u16 = 50_000;

/// After the storm: an endpoint binds [`proto::MAX_BINDINGS_PER_ENDPOINT`]
/// ports; one more is refused with `STATUS_QUOTA_EXCEEDED` and, as every
/// failed request, changes nothing (the refused port has no endpoint);
/// closing the handle leaves no port bound.
pub fn check_binding_limit(t: &dyn Target, run: &Run) {
    if run.stopped() {
        return;
    }
    let h = match t.open() {
        Ok(h) => h,
        Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) => return,
        Err(e) => return run.error("open for the binding limit", &e),
    };
    let max = proto::MAX_BINDINGS_PER_ENDPOINT as u16;
    let ports = LIMIT_BASE..=LIMIT_BASE + max;
    let endpoints_on = |port: u16| match client::port_stats(t, h, proto::PROTO_UDP, port) {
        Ok(s) => Some(s.endpoints),
        Err(e) => {
            run.error("port stats", &e);
            None
        }
    };
    let mut complete = true;
    for port in ports.clone() {
        let want = if port < LIMIT_BASE + max { status::SUCCESS } else { status::QUOTA_EXCEEDED };
        let got = match client::bind(t, h, proto::PROTO_UDP, port) {
            Ok(()) => status::SUCCESS,
            Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) => {
                complete = false; // low-resources simulation: the limit is not reached
                break;
            }
            Err(TargetError::Status(s)) => s,
            Err(e) => return run.error("bind", &e),
        };
        if got != want {
            run.fail(format!(
                "bind {} of {max}: status {:#x}, expected {:#x}",
                port - LIMIT_BASE + 1,
                got as u32,
                want as u32
            ));
        }
    }
    if complete {
        if let Some(n @ 1..) = endpoints_on(LIMIT_BASE + max) {
            run.fail(format!("the bind refused with STATUS_QUOTA_EXCEEDED left its port with {n} endpoint(s)"));
        }
    }
    if let Err(e) = t.close(h) {
        return run.error("close", &e);
    }
    let Ok(probe) = t.open() else { return };
    for port in ports {
        match client::port_stats(t, probe, proto::PROTO_UDP, port) {
            Ok(s) if s.endpoints == 0 => {}
            Ok(s) => {
                run.fail(format!("UDP port {port} has {} endpoint(s) after its only endpoint closed", s.endpoints));
                break;
            }
            Err(e) => {
                run.error("port stats", &e);
                break;
            }
        }
    }
    if let Err(e) = t.close(probe) {
        run.error("close", &e);
    }
}

/// Runs the storm on `threads` threads (a quarter of them, at least one
/// when there are two or more, churn handles).
pub fn storm(t: &dyn Target, run: &Run, threads: usize, seed: u64) {
    let slots = Slots::open(t, threads.clamp(2, 8), run);
    let churners = if threads >= 2 { (threads / 4).max(1) } else { 0 };
    std::thread::scope(|s| {
        for i in 0..threads {
            let (slots, rng) = (&slots, Rng::new(seed, 100 + i as u64));
            s.spawn(move || worker(t, slots, run, rng, i < churners));
        }
    });
    slots.close_all(t, run);
    enumeration_burst(t, run, threads.max(2) * 2, 20);
    check_enumeration_served(t, run);
    check_still_serves(t, run);
    check_binding_limit(t, run);
}

/// Snapshot replies the driver builds at once before refusing with
/// STATUS_DEVICE_BUSY (portwatch's `SNAPSHOT_REPLIES`): a burst of more
/// concurrent IOCTL_ENUM_FILTER_MODULES than this meets its admission limit.
pub const SNAPSHOT_REPLIES: usize = 2;

/// After the storm: `threads` threads (more than [`SNAPSHOT_REPLIES`]) each
/// send `rounds` module enumerations at once, so that the driver's admission
/// limit is reached and waiters queue on it (and, when a turn takes longer
/// than the driver's wait, are refused with STATUS_DEVICE_BUSY). Every
/// completion is checked against the contract. Returns how many of the
/// burst's enumerations were refused busy.
pub fn enumeration_burst(t: &dyn Target, run: &Run, threads: usize, rounds: usize) -> u64 {
    if run.stopped() {
        return 0;
    }
    let busy = AtomicU64::new(0);
    let h = match t.open() {
        Ok(h) => h,
        Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) => return 0,
        Err(e) => {
            run.error("open for the enumeration burst", &e);
            return 0;
        }
    };
    let out_len = (proto::VarHeader::SIZE + 8 * proto::ModuleInfo::SIZE) as u32;
    let barrier = std::sync::Barrier::new(threads.max(SNAPSHOT_REPLIES + 1));
    std::thread::scope(|s| {
        for _ in 0..threads.max(SNAPSHOT_REPLIES + 1) {
            let (barrier, busy) = (&barrier, &busy);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..rounds {
                    match t.ioctl(h, proto::IOCTL_ENUM_FILTER_MODULES, &[], out_len) {
                        Ok(reply) => {
                            if reply.status == status::DEVICE_BUSY {
                                busy.fetch_add(1, Ordering::Relaxed);
                            }
                            check_completion(proto::IOCTL_ENUM_FILTER_MODULES, &[], out_len, &reply, run);
                        }
                        Err(e) => run.error("enumeration", &e),
                    }
                }
            });
        }
    });
    if let Err(e) = t.close(h) {
        run.error("close", &e);
    }
    busy.into_inner()
}

/// After a burst: an enumeration alone is served at once (every permit the
/// burst took came back).
pub fn check_enumeration_served(t: &dyn Target, run: &Run) {
    if run.stopped() {
        return;
    }
    let h = match t.open() {
        Ok(h) => h,
        Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) => return,
        Err(e) => return run.error("open after the burst", &e),
    };
    match client::modules(t, h, 8) {
        Ok(_) | Err(TargetError::Status(status::INSUFFICIENT_RESOURCES)) => {}
        Err(e) => run.error("enumeration after the burst", &e),
    }
    if let Err(e) = t.close(h) {
        run.error("close", &e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_valid_and_invalid_requests_of_every_code() {
        let mut rng = Rng::new(3, 0);
        let mut valid = std::collections::HashSet::new();
        let mut invalid = 0;
        for _ in 0..5000 {
            let (code, input, out) = random_request(&mut rng);
            match expect::expected(code, &input, out) {
                expect::Expected::OneOf(_) => {
                    valid.insert(code);
                }
                expect::Expected::Exactly(_) => invalid += 1,
            }
        }
        // Every code but IOCTL_READ_EVENTS, whose valid requests pend (scenario 6).
        assert_eq!(valid.len(), proto::ALL_IOCTLS.len() - 1);
        assert!(!valid.contains(&proto::IOCTL_READ_EVENTS));
        assert!(invalid > 500, "{invalid}");
    }
}
