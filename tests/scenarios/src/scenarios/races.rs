//! Scenario 4, seed 000's races on purpose: many threads replace one
//! endpoint's local address (random lengths) and the global port name
//! while others read them. Every value written encodes its own length in
//! every element (and, for the name, the writer), so a reader can tell a
//! complete value some writer wrote from a torn, stale-length or freed one.
//! Where the registry is observable (the harness), the name saved under
//! `Parameters\PortName` must equal the memory copy once the writers are
//! done, a write whose registry half fails must change nothing, and the
//! last name must survive a reload.

use portwatch_proto as proto;

use crate::client::{self, status};
use crate::rng::Rng;
use crate::run::Run;
use crate::target::{Handle, Target, TargetError};

/// The local address of length `len`: `len` bytes of value `len`.
pub fn address_of_len(len: usize) -> Vec<u8> {
    vec![len as u8; len]
}

/// The port name writer `writer` writes with `len` code units.
pub fn name_of_len(writer: u16, len: usize) -> Vec<u16> {
    vec![(writer << 9) | len as u16; len]
}

/// Whether `address` is one some writer wrote.
pub fn address_is_whole(address: &[u8]) -> bool {
    address.iter().all(|&b| usize::from(b) == address.len())
}

/// Whether `name` is one some of `writers` writers wrote.
pub fn name_is_whole(name: &[u16], writers: u16) -> bool {
    let Some(&first) = name.first() else { return true };
    usize::from(first & 0x1FF) == name.len() && first >> 9 < writers && name.iter().all(|&c| c == first)
}

fn writer(t: &dyn Target, shared: Handle, id: u16, run: &Run, mut rng: Rng) {
    while run.next_op() {
        let result = if rng.chance(50) {
            let len = rng.below(u64::from(proto::MAX_LOCAL_ADDRESS) + 1) as usize;
            client::set_local_address(t, shared, &address_of_len(len))
        } else {
            let len = rng.below(u64::from(proto::MAX_PORT_NAME_CHARS) + 1) as usize;
            client::set_port_name(t, shared, &name_of_len(id, len))
        };
        if let Err(e) = result {
            run.error("set", &e);
        }
        if rng.chance(5) {
            // Too long: refused, and must not disturb anything.
            let too_long = address_of_len(proto::MAX_LOCAL_ADDRESS as usize + 1);
            match client::set_local_address(t, shared, &too_long) {
                Err(TargetError::Status(status::INVALID_PARAMETER)) => {}
                other => run.fail(format!("over-long address: {other:?}")),
            }
        }
        run.done_op();
    }
}

fn reader(t: &dyn Target, handles: &[Handle], writers: u16, run: &Run, mut rng: Rng) {
    while run.next_op() {
        if rng.chance(50) {
            match client::local_address(t, handles[0]) {
                Ok(a) if address_is_whole(&a) => {}
                Ok(a) => run.fail(format!("torn local address ({} bytes): {a:?}", a.len())),
                Err(e) => run.error("get local address", &e),
            }
        } else {
            match client::port_name(t, *rng.pick(handles)) {
                Ok(n) if name_is_whole(&n, writers) => {}
                Ok(n) => run.fail(format!("torn port name ({} units): {n:04x?}", n.len())),
                Err(e) => run.error("get port name", &e),
            }
        }
        run.done_op();
    }
}

/// STATUS_ACCESS_DENIED: the registry failure injected (what
/// `ZwSetValueKey` returns when the key's ACL changed under the driver).
const INJECTED: i32 = 0xC000_0022_u32 as i32;

/// With every writer done: the registry holds what memory holds (the writes
/// were serialised); a write whose registry half fails returns that status
/// and changes neither. Skipped where the registry cannot be observed.
fn check_persisted(t: &dyn Target, handles: &[Handle], run: &Run) {
    let persisted = match t.persisted_port_name() {
        Ok(p) => p.unwrap_or_default(),
        Err(TargetError::Unsupported(_)) => return,
        Err(e) => return run.error("read the registry", &e),
    };
    let memory = match client::port_name(t, handles[0]) {
        Ok(n) => n,
        Err(e) => return run.error("get port name", &e),
    };
    if persisted != memory {
        return run.fail(format!("registry {persisted:04x?} and memory {memory:04x?} differ after the writers"));
    }
    match t.fail_next_registry_write(INJECTED) {
        Ok(()) => {}
        Err(TargetError::Unsupported(_)) => return,
        Err(e) => return run.error("inject a registry failure", &e),
    }
    match client::set_port_name(t, handles[0], &name_of_len(0, 5)) {
        Err(TargetError::Status(INJECTED)) => {}
        other => return run.fail(format!("set port name with the registry failing: {other:?}")),
    }
    match (client::port_name(t, handles[0]), t.persisted_port_name()) {
        (Ok(m), Ok(p)) if m == memory && p.as_deref().unwrap_or_default() == memory => {}
        other => run.fail(format!("a failed registry write changed the name: {other:?}, was {memory:04x?}")),
    }
}

/// The name set last is the name a reloaded driver starts with (it reads
/// the registry in DriverEntry). Only where the registry is observable.
fn check_survives_reload(t: &dyn Target, name: &[u16], run: &Run) {
    if matches!(t.persisted_port_name(), Err(TargetError::Unsupported(_))) {
        return;
    }
    if let Err(e) = t.reload() {
        return run.error("reload", &e);
    }
    let h = match t.open() {
        Ok(h) => h,
        Err(e) => return run.error("open after reload", &e),
    };
    match client::port_name(t, h) {
        Ok(n) if n == name => {}
        other => run.fail(format!("port name after reload: {other:?}, set {name:04x?}")),
    }
    if let Err(e) = t.close(h) {
        run.error("close", &e);
    }
}

/// With every writer done: what is set is what is read.
fn check_quiescent(t: &dyn Target, handles: &[Handle], run: &Run) {
    let address = address_of_len(7);
    let name = name_of_len(0, 9);
    let set =
        client::set_local_address(t, handles[0], &address).and_then(|()| client::set_port_name(t, handles[0], &name));
    if let Err(e) = set {
        return run.error("final set", &e);
    }
    match client::local_address(t, handles[0]) {
        Ok(a) if a == address => {}
        other => run.fail(format!("final local address {other:?}")),
    }
    for &h in handles {
        match client::port_name(t, h) {
            Ok(n) if n == name => {}
            other => run.fail(format!("final port name on {h:?}: {other:?}")),
        }
        // Another handle's local address is its own: still empty.
        if h != handles[0] {
            match client::local_address(t, h) {
                Ok(a) if a.is_empty() => {}
                other => run.fail(format!("local address leaked across endpoints: {other:?}")),
            }
        }
    }
}

/// Runs the races: half the threads write, half read (at least one each).
pub fn storm(t: &dyn Target, run: &Run, threads: usize, seed: u64) {
    let mut handles = Vec::new();
    for _ in 0..3 {
        match t.open() {
            Ok(h) => handles.push(h),
            Err(e) => return run.error("open", &e),
        }
    }
    let writers = (threads / 2).clamp(1, 127);
    let readers = threads.saturating_sub(writers).max(1);
    std::thread::scope(|s| {
        for w in 0..writers {
            let (shared, rng) = (handles[0], Rng::new(seed, 600 + w as u64));
            s.spawn(move || writer(t, shared, w as u16, run, rng));
        }
        for r in 0..readers {
            let (handles, rng) = (&handles, Rng::new(seed, 700 + r as u64));
            s.spawn(move || reader(t, handles, writers as u16, run, rng));
        }
    });
    check_persisted(t, &handles, run);
    check_quiescent(t, &handles, run);
    for h in handles {
        if let Err(e) = t.close(h) {
            run.error("close", &e);
        }
    }
    check_survives_reload(t, &name_of_len(0, 9), run);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_values_pass_and_torn_ones_do_not() {
        assert!(address_is_whole(&address_of_len(0)));
        assert!(address_is_whole(&address_of_len(128)));
        let mut torn = address_of_len(10);
        torn.truncate(9);
        assert!(!address_is_whole(&torn));
        let mut mixed = address_of_len(5);
        mixed[4] = 6;
        assert!(!address_is_whole(&mixed));
        assert!(name_is_whole(&name_of_len(3, 256), 4));
        assert!(!name_is_whole(&name_of_len(4, 2), 4), "unknown writer");
        let mut n = name_of_len(1, 3);
        n.push(n[0]);
        assert!(!name_is_whole(&n, 4), "length and content disagree");
        let mut two = name_of_len(1, 4);
        two[3] = name_of_len(2, 4)[0];
        assert!(!name_is_whole(&two, 4), "two writers interleaved");
    }
}
