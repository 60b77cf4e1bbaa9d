//! Scenario 7, the packet flood: the data path at volume. Traffic workers
//! inject chains of multi-packet NBLs both ways on every adapter, at every
//! IRQL, to several endpoints whose ports stay bound; one thread per
//! adapter pauses, restarts, detaches and re-attaches its module now and
//! then; an IOCTL thread reads every endpoint's and port's counters all
//! along (they may never go back).
//!
//! The check is exact, as in [`super::datapath`]: each worker tallies per
//! (direction, protocol, port) what was delivered through a Running module
//! ([`super::traffic`]'s oracle), and at the end every endpoint's and every
//! port's counters must equal the tallies. The summary's `packets` counts
//! the packets injected while the adapter had a PortWatch module (each went
//! through FilterSendNetBufferLists or FilterReceiveNetBufferLists, counted
//! there or passed on by a paused module); a batch that met a detached
//! adapter does not count against an operation budget.

use std::sync::Mutex;
use std::time::Duration;

use portwatch_proto::{EndpointStats, PROTO_TCP, PROTO_UDP};

use super::datapath::{self, Endpoints};
use super::lifecycle;
use super::traffic::{self, Adapters, Tally};
use crate::client;
use crate::rng::Rng;
use crate::run::Run;
use crate::target::{Direction, Level, NblSpec, PacketSpec, Target, TargetError};

/// Endpoints that bind ports for the whole flood.
pub const ENDPOINTS: usize = 4;
/// NBLs chained in one send call, and NET_BUFFERs in each.
pub const SEND_SHAPE: (usize, usize) = (4, 16);
/// NBLs chained in one receive indication, and NET_BUFFERs in each.
pub const RECEIVE_SHAPE: (usize, usize) = (8, 8);
/// Packets of one operation (one send or one receive indication).
pub const PACKETS_PER_OP: u64 = 64;
const _: () = assert!(
    (SEND_SHAPE.0 * SEND_SHAPE.1) as u64 == PACKETS_PER_OP
        && (RECEIVE_SHAPE.0 * RECEIVE_SHAPE.1) as u64 == PACKETS_PER_OP
);
/// NBLs and NET_BUFFERs of each of the bursts that open the flood: more
/// packets in one call than the steady flood ever has in flight, so that
/// whatever the target keeps for reuse reaches its size before the first
/// resource sample.
const BURST_SHAPE: (usize, usize) = (64, 16);
/// Distinct packets the workers draw from (built once each by the target).
const PALETTE: usize = 96;
/// How long an adapter stays Running between two state changes.
const RUNNING_HOLD: Duration = Duration::from_millis(40);

/// The packets of the flood: mostly to and from the endpoints' ports (TCP
/// and UDP, IPv4 and IPv6, some VLAN-tagged), some to ports nobody binds,
/// a few ICMP.
fn palette(eps: &Endpoints, rng: &mut Rng) -> Vec<PacketSpec> {
    (0..PALETTE)
        .map(|i| {
            let mut p = eps.pool.packet(rng);
            if i % 3 == 0 {
                // Ports of the endpoints on both sides: two keys counted.
                p.src_port = *rng.pick(&eps.pool.stable);
                p.dst_port = *rng.pick(&eps.pool.stable);
            }
            if p.protocol != PROTO_TCP && p.protocol != PROTO_UDP && i % 2 == 0 {
                p.protocol = PROTO_UDP;
            }
            p
        })
        .collect()
}

fn batch(palette: &[PacketSpec], (nbls, per_nbl): (usize, usize), rng: &mut Rng) -> Vec<NblSpec> {
    (0..nbls)
        .map(|_| NblSpec {
            packets: (0..per_nbl).map(|_| *rng.pick(palette)).collect(),
            loopback: rng.chance(5),
            fragmented: rng.chance(10),
        })
        .collect()
}

/// One flood worker: a batch of [`PACKETS_PER_OP`] packets per operation.
fn worker(t: &dyn Target, adapters: &Adapters, palette: &[PacketSpec], run: &Run, mut rng: Rng, out: &Mutex<Tally>) {
    let mut tally = Tally::default();
    let mut receives = true;
    while run.next_op() {
        let a = rng.below(adapters.len() as u64) as usize;
        let direction = if receives && rng.chance(50) { Direction::Receive } else { Direction::Send };
        let shape = if direction == Direction::Send { SEND_SHAPE } else { RECEIVE_SHAPE };
        let nbls = batch(palette, shape, &mut rng);
        let level = *rng.pick(&[Level::Passive, Level::Dispatch, Level::DispatchUnflagged]);
        let resources = direction == Direction::Receive && rng.chance(30);
        let gate = adapters.gate(a).read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match t.inject(crate::target::Adapter(a), direction, &nbls, level, resources) {
            Ok(results) if results.len() == nbls.len() => {
                if *gate {
                    traffic::tally_results(&mut tally, direction, &nbls, &results);
                    run.add_packets(PACKETS_PER_OP);
                } else {
                    // The packets went past no PortWatch module: done again.
                    run.refund();
                }
            }
            Ok(results) => run.fail(format!("{} NBLs injected, {} came back", nbls.len(), results.len())),
            Err(TargetError::Unsupported(_)) if direction == Direction::Receive => receives = false,
            Err(e) => run.error("flood inject", &e),
        }
        drop(gate);
        run.done_op();
    }
    out.lock().unwrap_or_else(std::sync::PoisonError::into_inner).merge(&tally);
}

/// One burst of [`BURST_SHAPE`] each way on every adapter, tallied.
fn bursts(t: &dyn Target, adapters: &Adapters, palette: &[PacketSpec], run: &Run, rng: &mut Rng, tally: &mut Tally) {
    for a in 0..adapters.len() {
        for direction in [Direction::Send, Direction::Receive] {
            let nbls = batch(palette, BURST_SHAPE, rng);
            match traffic::inject_counted(t, adapters, a, (direction, Level::Dispatch, false), &nbls, tally) {
                Ok(n) => run.add_packets(n),
                Err(TargetError::Unsupported(_)) => {}
                Err(e) => return run.error("flood burst", &e),
            }
        }
    }
}

/// Reads every endpoint's counters while the flood runs: none may go back,
/// and each endpoint keeps its ports bound.
fn reader(t: &dyn Target, eps: &Endpoints, run: &Run) {
    let mut last: Vec<Option<EndpointStats>> = vec![None; eps.stable.len()];
    let mut rounds = 0u64;
    while !run.spent() {
        for (i, e) in eps.stable.iter().enumerate() {
            let s = match client::endpoint_stats(t, e.handle) {
                Ok(s) => s,
                Err(err) => return run.error("flood stats", &err),
            };
            if let Some(prev) = &last[i] {
                let back = s.rx.packets < prev.rx.packets
                    || s.tx.packets < prev.tx.packets
                    || s.rx.bytes < prev.rx.bytes
                    || s.tx.bytes < prev.tx.bytes;
                if back {
                    run.fail(format!("endpoint {i}: counters went back from {prev:?} to {s:?}"));
                }
            }
            if s.bound_ports as usize != e.keys.len() {
                run.fail(format!("endpoint {i}: {} ports bound, expected {}", s.bound_ports, e.keys.len()));
            }
            last[i] = Some(s);
            let (p, port) = e.keys[rounds as usize % e.keys.len()];
            if let Err(err) = client::port_stats(t, e.handle, p, port) {
                run.error("flood port stats", &err);
            }
        }
        rounds += 1;
        run.done_op();
        std::thread::sleep(Duration::from_millis(1));
    }
    if rounds == 0 && !run.stopped() {
        run.fail("the counters were never read during the flood");
    }
}

/// Share of the budget spent before the first resource sample (the
/// model's caches and quarantines fill during it).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const WARM_UP: f64 = 0.1;

/// Share of the budget spent at the second resource sample.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const END: f64 = 0.95;

/// Samples this process's resources after the warm-up and again near the
/// end of the budget ([`END`], every worker still alive); growth past
/// [`crate::resources::Bounds::LONG_RUN`] is a failure (see
/// [`crate::resources::Sample::growth_beyond`]).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn sampler(run: &Run) {
    use crate::resources::{Bounds, Sample};
    let tick = Duration::from_millis(5);
    while run.fraction() < WARM_UP && !run.spent() {
        std::thread::sleep(tick);
    }
    let start = Sample::now();
    // The second sample while every worker still runs (their threads
    // count the same in both).
    while run.fraction() < END && !run.spent() {
        std::thread::sleep(tick);
    }
    let (start, end) = match (start, Sample::now()) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return run.fail(format!("resource sample: {e}")),
    };
    for (name, value) in [
        ("resident KiB after the warm-up", start.resident_kib),
        ("resident KiB near the end", end.resident_kib),
        ("mappings after the warm-up", start.mappings),
        ("mappings near the end", end.mappings),
        ("threads after the warm-up", start.threads),
        ("threads near the end", end.threads),
        ("file descriptors after the warm-up", start.fds),
        ("file descriptors near the end", end.fds),
        ("special pool mappings after the warm-up", start.special_pool),
        ("special pool mappings near the end", end.special_pool),
    ] {
        run.note(name, value);
    }
    for g in start.growth_beyond(&end, &Bounds::LONG_RUN) {
        run.fail(format!("flood: {g}"));
    }
}

/// One adapter's state changes, Running most of the time.
fn adapter_worker(t: &dyn Target, adapters: &Adapters, a: usize, run: &Run, mut rng: Rng) {
    while !run.spent() {
        std::thread::sleep(RUNNING_HOLD);
        if run.spent() {
            break;
        }
        lifecycle::excursion(t, adapters, a, run, &mut rng);
    }
}

/// Runs the flood with `threads` traffic workers.
pub fn storm(t: &dyn Target, run: &Run, threads: usize, seed: u64) {
    let adapters = Adapters::attached(t.adapter_count());
    let eps = match Endpoints::open(t, ENDPOINTS, 0) {
        Ok(e) => e,
        Err(e) => return run.error("open endpoints", &e),
    };
    let mut rng = Rng::new(seed, 700);
    let palette = palette(&eps, &mut rng);
    let mut first = Tally::default();
    bursts(t, &adapters, &palette, run, &mut rng, &mut first);
    let tally = Mutex::new(first);
    std::thread::scope(|s| {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        s.spawn(|| sampler(run));
        s.spawn(|| reader(t, &eps, run));
        for a in 0..adapters.len() {
            let (adapters, rng) = (&adapters, Rng::new(seed, 800 + a as u64));
            s.spawn(move || adapter_worker(t, adapters, a, run, rng));
        }
        for i in 0..threads {
            let (adapters, palette, tally, rng) = (&adapters, &palette, &tally, Rng::new(seed, 900 + i as u64));
            s.spawn(move || worker(t, adapters, palette, run, rng, tally));
        }
    });
    let tally = tally.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let packets = run.packets.load(std::sync::atomic::Ordering::Relaxed);
    run.note("packets/s", (packets as f64 / run.elapsed().as_secs_f64().max(1e-9)) as u64);
    datapath::check_stable(t, &eps, &tally, run);
    if let Some(e) = eps.stable.first() {
        datapath::check_modules(t, e.handle, run);
    }
    eps.close(t, run);
}
