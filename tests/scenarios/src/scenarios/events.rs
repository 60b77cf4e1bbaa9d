//! Scenario 6: the event stream. Endpoints with events enabled (rings of
//! 1, 8 and 64 records: some overflow) keep several IOCTL_READ_EVENTS
//! pending while packets arrive at DISPATCH_LEVEL on their ports, adapters
//! pause and restart (control events), and CancelIoEx cancels their reads
//! at random, racing the data path's completions. At the end every
//! endpoint's reads are cancelled once its ring is empty and, where traffic
//! is exact, delivered + dropped = generated is checked per endpoint; then
//! reads are left pending on every handle and the handles closed under
//! them: each must complete (cancelled), never stay pending.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use portwatch_proto::{self as proto, PROTO_UDP};

use crate::client::{self, status};
use crate::rng::Rng;
use crate::run::Run;
use crate::target::{Adapter, AdapterOp, Direction, Handle, Level, NblSpec, PacketSpec, Target, TargetError};

/// The first endpoint's own port; endpoint `i` binds `OWN_BASE + i`.
const OWN_BASE: u16 = 7300;
/// A port every endpoint binds.
const SHARED: u16 = 7399;
/// The peer port of every packet (never bound).
const PEER: u16 = 9;
/// Ring sizes, by endpoint.
const RINGS: [u32; 4] = [1, 8, 64, 64];
/// Reads each endpoint keeps going.
const READERS: usize = 3;

struct Endpoint {
    handle: Handle,
    /// Events recorded for it: its packets and the control events.
    generated: AtomicU64,
    /// Records its reads received.
    delivered: AtomicU64,
    /// The largest `dropped` a batch carried.
    dropped: AtomicU64,
    cancelled: AtomicU64,
}

fn packet(dst_port: u16) -> NblSpec {
    let p = PacketSpec {
        protocol: PROTO_UDP,
        src_port: PEER,
        dst_port,
        ipv6: dst_port % 2 == 0,
        vlan: false,
        payload_len: 16,
        truncate_to: None,
    };
    NblSpec { packets: vec![p], loopback: false, fragmented: false }
}

/// A reader: reads until a read issued after `stop` was set is cancelled
/// (or the handle is gone), counting records and keeping the largest drop
/// count.
///
/// Only a read issued after `stop` ends it: a read cancelled earlier (by
/// the canceller, while traffic still flowed) may be seen after `stop`,
/// and events queued meanwhile would then never be read.
fn reader(t: &dyn Target, e: &Endpoint, stop: &AtomicBool, run: &Run, mut rng: Rng) {
    loop {
        let issued_after_stop = stop.load(Ordering::Acquire);
        match client::read_events(t, e.handle, 1 + rng.below(4) as usize) {
            Ok((header, records)) => {
                if header.version != proto::PROTOCOL_VERSION || header.record_size != 64 {
                    run.fail(format!("batch header {header:?}"));
                }
                e.delivered.fetch_add(records.len() as u64, Ordering::Relaxed);
                e.dropped.fetch_max(header.dropped, Ordering::Relaxed);
                if let Some(r) = records.iter().find(|r| proto::EventKind::from_u8(r.kind).is_none()) {
                    run.fail(format!("record of unknown kind {r:?}"));
                }
            }
            Err(TargetError::Status(status::CANCELLED)) => {
                e.cancelled.fetch_add(1, Ordering::Relaxed);
                if issued_after_stop {
                    return;
                }
            }
            Err(TargetError::Status(status::INVALID_HANDLE | status::DELETE_PENDING)) => return,
            Err(err) => return run.error("read events", &err),
        }
    }
}

/// Sends packets to the endpoints' ports and, now and then, pauses and
/// restarts an adapter; counts what each endpoint must have been given.
fn sender(t: &dyn Target, endpoints: &[Endpoint], run: &Run, mut rng: Rng) {
    let adapters = t.adapter_count();
    let cycle = t.supports(AdapterOp::Pause) && t.supports(AdapterOp::Restart);
    while run.next_op() {
        if cycle && rng.chance(2) {
            let a = Adapter(rng.below(adapters as u64) as usize);
            for op in [AdapterOp::Pause, AdapterOp::Restart] {
                if let Err(err) = t.adapter_op(a, op) {
                    return run.error("pause/restart", &err);
                }
                // One module per adapter: one control event per endpoint.
                endpoints.iter().for_each(|e| _ = e.generated.fetch_add(1, Ordering::Relaxed));
            }
        } else {
            let which = rng.below(endpoints.len() as u64 + 1) as usize;
            let port = if which == endpoints.len() { SHARED } else { OWN_BASE + which as u16 };
            let a = Adapter(rng.below(adapters as u64) as usize);
            let (dir, level) =
                if rng.chance(50) { (Direction::Send, Level::Dispatch) } else { (Direction::Receive, Level::Dispatch) };
            match t.inject(a, dir, &[packet(port)], level, false) {
                Ok(r) if r.iter().all(|n| n.delivered) => {
                    run.add_packets(1);
                    for (i, e) in endpoints.iter().enumerate() {
                        if port == SHARED || i == which {
                            e.generated.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(r) => run.fail(format!("a packet was dropped: {r:?}")),
                Err(TargetError::Unsupported(_)) => {}
                Err(err) => return run.error("inject", &err),
            }
        }
        run.done_op();
    }
}

/// Cancels every endpoint's reads at random while the run lasts.
fn canceller(t: &dyn Target, endpoints: &[Endpoint], done: &AtomicBool, run: &Run, mut rng: Rng) {
    while !done.load(Ordering::Acquire) {
        let e = &endpoints[rng.below(endpoints.len() as u64) as usize];
        if let Err(err) = t.cancel_io(e.handle) {
            return run.error("CancelIoEx", &err);
        }
        std::thread::sleep(Duration::from_micros(rng.below(300)));
    }
}

/// Runs the scenario (`threads` is not used: the thread set is fixed).
pub fn storm(t: &dyn Target, run: &Run, _threads: usize, seed: u64) {
    let mut endpoints = Vec::new();
    for (i, &ring) in RINGS.iter().enumerate() {
        let handle = match t.open() {
            Ok(h) => h,
            Err(e) => return run.error("open", &e),
        };
        let setup = client::enable_events(t, handle, ring)
            .and_then(|()| client::bind(t, handle, PROTO_UDP, OWN_BASE + i as u16))
            .and_then(|()| client::bind(t, handle, PROTO_UDP, SHARED));
        if let Err(e) = setup {
            return run.error("enable and bind", &e);
        }
        let zero = || AtomicU64::new(0);
        endpoints.push(Endpoint { handle, generated: zero(), delivered: zero(), dropped: zero(), cancelled: zero() });
    }
    let stop = AtomicBool::new(false);
    let sending_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (endpoints, stop, sending_done) = (&endpoints, &stop, &sending_done);
        let readers: Vec<_> = (0..endpoints.len() * READERS)
            .map(|r| {
                let rng = Rng::new(seed, 900 + r as u64);
                s.spawn(move || reader(t, &endpoints[r / READERS], stop, run, rng))
            })
            .collect();
        s.spawn(move || canceller(t, endpoints, sending_done, run, Rng::new(seed, 990)));
        sender(t, endpoints, run, Rng::new(seed, 991));
        sending_done.store(true, Ordering::Release);
        // Nothing new arrives now: readers drain the rings, then pend; a
        // read that pends finds its ring empty, so once every reader got
        // a read issued after `stop` cancelled, every event was read or
        // dropped.
        stop.store(true, Ordering::Release);
        while readers.iter().any(|r| !r.is_finished()) && !run.stopped() {
            for e in endpoints {
                if let Err(err) = t.cancel_io(e.handle) {
                    run.error("CancelIoEx", &err);
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    if t.exact_traffic() {
        for (i, e) in endpoints.iter().enumerate() {
            let (g, d, x) = (
                e.generated.load(Ordering::Relaxed),
                e.delivered.load(Ordering::Relaxed),
                e.dropped.load(Ordering::Relaxed),
            );
            let c = e.cancelled.load(Ordering::Relaxed);
            eprintln!(
                "events: endpoint {i} (ring {}): generated {g}, delivered {d}, dropped {x}, reads cancelled {c}",
                RINGS[i]
            );
            if d + x != g {
                run.fail(format!("endpoint {i} (ring {}): delivered {d} + dropped {x} != generated {g}", RINGS[i]));
            }
        }
    }
    // Reads pending while the handles close, with CancelIoEx racing the
    // close's cleanup: each read completes once, cancelled.
    let closing = AtomicBool::new(false);
    std::thread::scope(|s| {
        let pending: Vec<_> = endpoints
            .iter()
            .flat_map(|e| (0..READERS).map(move |_| e.handle))
            .map(|h| s.spawn(move || client::read_events(t, h, 1)))
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        let (endpoints, closing) = (&endpoints, &closing);
        s.spawn(move || {
            while !closing.load(Ordering::Acquire) {
                for e in endpoints {
                    // The handle may be closed already.
                    let _ = t.cancel_io(e.handle);
                }
            }
        });
        for e in endpoints {
            if let Err(err) = t.close(e.handle) {
                run.error("close", &err);
            }
        }
        closing.store(true, Ordering::Release);
        for r in pending {
            match r.join() {
                Ok(Err(TargetError::Status(status::CANCELLED | status::INVALID_HANDLE | status::DELETE_PENDING))) => {}
                Ok(other) => run.fail(format!("a read pending at close: {other:?}")),
                Err(_) => run.fail("a reader panicked"),
            }
        }
    });
}
