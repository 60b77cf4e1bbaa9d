//! Scenario 5, the LWF logo stress: what Microsoft's "NDISTest 6.5 – LWF –
//! Logo Test" does to a lightweight filter, reproduced on the [`Target`]
//! abstraction (the default scenario of `portwatch.exe stress`).
//!
//! The logo test binds the filter to a test miniport and
//!
//! 1. checks that the filter is an NDIS 6.30 filter and that it is bound to
//!    the test adapter;
//! 2. sends packets larger than the miniport's MTU (LSO-sized NET_BUFFERs);
//! 3. restricts the test miniport's receive descriptors, so that many
//!    receive indications carry `NDIS_RECEIVE_FLAGS_RESOURCES`;
//! 4. runs at once, from several threads: stress traffic in both
//!    directions, stop/start of the test miniport (pause and restart of the
//!    filter module), media disconnect/connect status indications and
//!    adapter resets (`NDIS_STATUS_RESET_START` / `NDIS_STATUS_RESET_END`);
//! 5. checks basic send/receive connectivity afterwards.
//!
//! Here every element runs concurrently, bounded by the run's budget, with
//! IOCTL threads alongside (each reply checked: statuses against the
//! driver's contract, the module list well formed, counters never going
//! back). The counting oracle of [`super::traffic`] makes the end check
//! exact on a target that sees only injected traffic: the stable
//! endpoints' counters equal what went through a running module, and the
//! connectivity round moves them by exactly one packet each way.
//!
//! On an installed driver (the device target) the elements a user-mode
//! tool cannot do are reported as skipped, not failed: the registration
//! check (NDIS version), receive indications and their RESOURCES flag,
//! status indications and resets need NDISTest's test miniport; pause and
//! restart become whole adapter restarts, which Windows does as pause,
//! detach, attach, restart.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use portwatch_proto::{ModuleState, PROTO_TCP, PROTO_UDP};

use super::datapath::{self, Endpoints};
use super::ioctl_storm;
use super::traffic::{self, Adapters, PortPool, Tally};
use crate::client;
use crate::rng::Rng;
use crate::run::Run;
use crate::target::{
    Adapter, AdapterOp, Direction, Handle, Level, NblSpec, PacketSpec, StatusIndication, Target, TargetError,
};

/// The test miniport's MTU (Ethernet).
pub const MTU: u16 = 1500;
/// The largest payload of an LSO-sized send: an IPv4 packet of at most
/// 64 KiB, as large sends hand the miniport.
pub const LSO_PAYLOAD: u16 = 62_000;
/// Percent of receive indications made with `NDIS_RECEIVE_FLAGS_RESOURCES`
/// (the miniport is short of receive descriptors).
pub const RESOURCES_PERCENT: u64 = 70;

/// A packet on the pool's ports, larger than the MTU a third of the time.
fn packet(pool: &PortPool, rng: &mut Rng, direction: Direction) -> PacketSpec {
    let mut p = pool.packet(rng);
    if direction == Direction::Send && rng.chance(33) {
        p.payload_len = rng.range(u64::from(MTU) + 1, u64::from(LSO_PAYLOAD)) as u16;
    }
    p
}

fn level(rng: &mut Rng) -> Level {
    *rng.pick(&[Level::Passive, Level::Dispatch, Level::DispatchUnflagged])
}

/// Step 1: NDIS 6.30, and bound (one Running module per adapter).
fn check_registration(t: &dyn Target, h: Handle, run: &Run) {
    match t.ndis_version() {
        Ok((6, 30)) => {}
        Ok(v) => run.fail(format!("the filter registered as NDIS {}.{}, the logo test requires 6.30", v.0, v.1)),
        Err(TargetError::Unsupported(why)) => eprintln!("lwf-logo: NDIS version check skipped: {why}"),
        Err(e) => run.error("NDIS version", &e),
    }
    match client::modules(t, h, t.adapter_count() + 4) {
        Ok(m) if t.exact_traffic() && m.len() != t.adapter_count() => {
            run.fail(format!("bound to {} adapters, expected {}: {m:?}", m.len(), t.adapter_count()))
        }
        Ok(m) if m.is_empty() || m.iter().any(|i| i.state != ModuleState::Running as u32) => {
            run.fail(format!("the filter is not bound and running: {m:?}"))
        }
        Ok(_) => {}
        Err(e) => run.error("enumerate modules", &e),
    }
}

/// Step 2 to 4, traffic: batches both ways, LSO-sized sends, most receives
/// with RESOURCES, every IRQL.
fn traffic_worker(t: &dyn Target, adapters: &Adapters, pool: &PortPool, run: &Run, mut rng: Rng, out: &Mutex<Tally>) {
    let mut tally = Tally::default();
    let mut receives = true;
    while run.next_op() {
        let a = rng.below(adapters.len() as u64) as usize;
        let direction = if receives && rng.chance(50) { Direction::Receive } else { Direction::Send };
        let per_nbl = if direction == Direction::Send { rng.range(1, 3) } else { 1 };
        let nbls: Vec<NblSpec> = (0..rng.range(1, 4))
            .map(|_| NblSpec {
                packets: (0..per_nbl).map(|_| packet(pool, &mut rng, direction)).collect(),
                loopback: rng.chance(5),
                fragmented: rng.chance(25),
            })
            .collect();
        let resources = direction == Direction::Receive && rng.chance(RESOURCES_PERCENT);
        let how = (direction, level(&mut rng), resources);
        match traffic::inject_counted(t, adapters, a, how, &nbls, &mut tally) {
            Ok(n) => run.add_packets(n),
            Err(TargetError::Unsupported(_)) if direction == Direction::Receive => receives = false,
            Err(e) => run.error("inject", &e),
        }
        run.done_op();
    }
    out.lock().unwrap_or_else(PoisonError::into_inner).merge(&tally);
}

/// Step 4, stop/start of the miniport: pause and restart the module (held
/// for up to 2 ms each so traffic meets every state), ending Running. A
/// target that can only restart whole adapters does that instead.
fn stop_start_worker(t: &dyn Target, adapters: &Adapters, a: usize, run: &Run, mut rng: Rng) {
    let adapter = Adapter(a);
    if !t.supports(AdapterOp::Pause) {
        if !t.supports(AdapterOp::Cycle) {
            return eprintln!("lwf-logo: adapter {a}: stop/start skipped (the target cannot restart adapters)");
        }
        while !run.spent() {
            let mut attached = adapters.gate(a).write().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = t.adapter_op(adapter, AdapterOp::Cycle) {
                run.error("adapter restart", &e);
            }
            *attached = true;
            drop(attached);
            run.done_op();
            std::thread::sleep(Duration::from_millis(500));
        }
        return;
    }
    while !run.spent() {
        if let Err(e) = t.adapter_op(adapter, AdapterOp::Pause) {
            return run.error(&format!("pause adapter {a}"), &e);
        }
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        if let Err(e) = t.adapter_op(adapter, AdapterOp::Restart) {
            return run.error(&format!("restart adapter {a}"), &e);
        }
        run.done_op();
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
    }
}

/// Step 4, status: media disconnect and connect, reset start and end, over
/// and over, at random IRQLs.
fn status_worker(t: &dyn Target, a: usize, run: &Run, mut rng: Rng) {
    while !run.spent() {
        for status in StatusIndication::ALL {
            match t.indicate_status(Adapter(a), status, level(&mut rng)) {
                Ok(()) => {}
                Err(TargetError::Unsupported(why)) => {
                    return eprintln!("lwf-logo: adapter {a}: status indications skipped: {why}");
                }
                Err(e) => return run.error(&format!("{status:?} on adapter {a}"), &e),
            }
            std::thread::sleep(Duration::from_micros(rng.below(500)));
        }
        run.done_op();
    }
}

/// IOCTLs alongside the data path: random requests on a handle of its own
/// (every reply checked against the contract), the module list (well
/// formed: at most one module per adapter, known states), and a stable
/// endpoint's counters (never going back).
fn ioctl_worker(t: &dyn Target, watched: Handle, run: &Run, mut rng: Rng) {
    let own = match t.open() {
        Ok(h) => h,
        Err(e) => return run.error("open", &e),
    };
    let mut last = (0u64, 0u64);
    while run.next_op() {
        match rng.below(4) {
            0 => match client::modules(t, own, t.adapter_count() + 4) {
                Ok(m) => {
                    let known =
                        [ModuleState::Paused, ModuleState::Restarting, ModuleState::Running, ModuleState::Pausing];
                    if (t.exact_traffic() && m.len() > t.adapter_count())
                        || m.iter().any(|i| !known.iter().any(|s| *s as u32 == i.state))
                    {
                        run.fail(format!("module list during the stress: {m:?}"));
                    }
                }
                Err(e) => run.error("enumerate modules", &e),
            },
            1 => match client::endpoint_stats(t, watched) {
                Ok(s) => {
                    if s.rx.packets < last.0 || s.tx.packets < last.1 {
                        run.fail(format!("endpoint counters went back: {last:?} then {s:?}"));
                    }
                    last = (s.rx.packets, s.tx.packets);
                }
                Err(e) => run.error("endpoint stats", &e),
            },
            _ => {
                let (code, input, out_len) = ioctl_storm::random_request(&mut rng);
                ioctl_storm::checked_ioctl(t, own, code, &input, out_len, run);
            }
        }
        run.done_op();
    }
    if let Err(e) = t.close(own) {
        run.error("close", &e);
    }
}

/// Step 5: one send and one receive per adapter on a port the first stable
/// endpoint binds; each must get through, and (exact targets) move the
/// endpoint's counters by exactly one packet each way.
fn check_connectivity(t: &dyn Target, eps: &Endpoints, run: &Run) {
    let Some(e) = eps.stable.first() else { return };
    let Some(&(protocol, port)) = e.keys.iter().find(|k| k.0 == PROTO_UDP || k.0 == PROTO_TCP) else { return };
    let Ok(before) = client::endpoint_stats(t, e.handle) else { return run.fail("endpoint stats before connectivity") };
    let packet = PacketSpec {
        protocol,
        src_port: 9,
        dst_port: port,
        ipv6: false,
        vlan: false,
        payload_len: 64,
        truncate_to: None,
    };
    let nbl = NblSpec { packets: vec![packet], loopback: false, fragmented: false };
    let (mut sent, mut received) = (0u64, 0u64);
    for a in 0..t.adapter_count().max(1) {
        for direction in [Direction::Send, Direction::Receive] {
            match t.inject(Adapter(a), direction, std::slice::from_ref(&nbl), Level::Dispatch, false) {
                Ok(r) if r.len() == 1 && r[0].delivered => match direction {
                    Direction::Send => sent += 1,
                    Direction::Receive => received += 1,
                },
                Ok(r) => run.fail(format!("connectivity: {direction:?} on adapter {a} did not get through: {r:?}")),
                Err(TargetError::Unsupported(why)) => eprintln!("lwf-logo: connectivity {direction:?} skipped: {why}"),
                Err(err) => run.error("connectivity", &err),
            }
        }
    }
    run.add_packets(sent + received);
    if !t.exact_traffic() {
        return;
    }
    match client::endpoint_stats(t, e.handle) {
        Ok(after)
            if after.tx.packets - before.tx.packets == sent && after.rx.packets - before.rx.packets == received => {}
        other => run.fail(format!(
            "connectivity: {sent} sent and {received} received, counters went from {before:?} to {other:?}"
        )),
    }
}

/// Runs the logo stress with `threads` workers: traffic, IOCTL and (one
/// per adapter) stop/start and status threads.
pub fn storm(t: &dyn Target, run: &Run, threads: usize, seed: u64) {
    let eps = match Endpoints::open(t, 3, 0) {
        Ok(e) => e,
        Err(e) => return run.error("open endpoints", &e),
    };
    let Some(first) = eps.stable.first().map(|e| e.handle) else { return };
    check_registration(t, first, run);
    // At least one gate: a device target given no adapter names still
    // sends (its injections do not depend on the adapter).
    let adapters = Adapters::attached(t.adapter_count().max(1));
    let ioctl_threads = (threads / 3).max(1);
    let traffic_threads = threads.saturating_sub(ioctl_threads).max(2);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for i in 0..traffic_threads {
            let (adapters, pool, tally, rng) = (&adapters, &eps.pool, &tally, Rng::new(seed, 600 + i as u64));
            s.spawn(move || traffic_worker(t, adapters, pool, run, rng, tally));
        }
        for i in 0..ioctl_threads {
            let rng = Rng::new(seed, 700 + i as u64);
            s.spawn(move || ioctl_worker(t, first, run, rng));
        }
        for a in 0..t.adapter_count() {
            let (adapters, rng) = (&adapters, Rng::new(seed, 800 + a as u64));
            s.spawn(move || stop_start_worker(t, adapters, a, run, rng));
            let rng = Rng::new(seed, 900 + a as u64);
            s.spawn(move || status_worker(t, a, run, rng));
        }
    });
    let tally = tally.into_inner().unwrap_or_else(PoisonError::into_inner);
    datapath::check_stable(t, &eps, &tally, run);
    datapath::check_modules(t, first, run);
    check_connectivity(t, &eps, run);
    ioctl_storm::check_still_serves(t, run);
    eps.close(t, run);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lso_sends_exceed_the_mtu_and_fit_an_ip_packet() {
        let pool = PortPool { stable: vec![1], churn: vec![2], noise: vec![3] };
        let mut rng = Rng::new(1, 0);
        let sizes: Vec<u16> = (0..300).map(|_| packet(&pool, &mut rng, Direction::Send).payload_len).collect();
        assert!(sizes.iter().any(|&s| s > MTU), "some sends are larger than the MTU");
        assert!(sizes.iter().all(|&s| usize::from(s) + 60 <= 65_535), "every one fits an IPv4 packet");
        assert!((0..300).all(|_| packet(&pool, &mut rng, Direction::Receive).payload_len <= MTU));
    }

    #[test]
    fn status_codes_are_ndis_h_values() {
        let codes: Vec<i32> = StatusIndication::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, vec![0x4001_000C, 0x4001_000B, 0x4001_0004, 0x4001_0005]);
    }
}
