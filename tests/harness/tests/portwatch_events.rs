//! portwatch.sys: the event stream (IOCTL_ENABLE_EVENTS, IOCTL_READ_EVENTS)
//! under the verifier model with special pool: record contents, pending
//! reads completed from the data path, CancelIoEx racing that completion,
//! reads pending while the handle closes, exact drop accounting, control
//! events while modules pause, restart and detach, and unload after all
//! that. Every test ends with 0 violations and 0 leaked allocations, and
//! the I/O manager's count of completed IRPs equal to those it sent.

mod pw;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portwatch_harness::frames::{Frame, FrameSpec, Network};
use portwatch_harness::io::{self, Handle};
use portwatch_harness::nbl::NblSpec;
use portwatch_harness::ndis::{AdapterId, AdapterSpec, At};
use portwatch_harness::session::{Options, Session};
use portwatch_harness::verifier::Config;
use portwatch_proto::*;

const STATUS_CANCELLED: i32 = 0xC000_0120_u32 as i32;
const STATUS_BUFFER_TOO_SMALL: i32 = 0xC000_0023_u32 as i32;
const STATUS_INVALID_DEVICE_STATE: i32 = 0xC000_0184_u32 as i32;
const STATUS_QUOTA_EXCEEDED: i32 = 0xC000_0044_u32 as i32;
const STATUS_REVISION_MISMATCH: i32 = 0xC000_0059_u32 as i32;
const STATUS_INVALID_PARAMETER: i32 = 0xC000_000D_u32 as i32;

/// One record's worth of output, and room for `n`.
fn room(n: usize) -> u32 {
    (EventBatchHeader::SIZE + n * EventRecord::SIZE) as u32
}

fn load() -> Session {
    pw::load(Options { verifier: Config { special_pool: true, ..Config::default() }, ..Options::default() })
}

fn adapter(s: &Session, name: &str) -> AdapterId {
    let a = s.add_adapter(AdapterSpec::named(name));
    s.start(a).unwrap();
    a
}

fn enable(s: &Session, h: Handle, records: u32) -> i32 {
    pw::ioctl(
        s,
        h,
        IOCTL_ENABLE_EVENTS,
        &pw::bytes(&EnableEvents { version: PROTOCOL_VERSION, ring_records: records }),
        0,
    )
    .0
}

/// A completed read: its status and, for success, the batch.
fn read(s: &Session, h: Handle, records: usize) -> (i32, Option<(EventBatchHeader, Vec<EventRecord>)>) {
    let r = match s.ioctl(h, IOCTL_READ_EVENTS, &[], room(records)) {
        Ok(r) => r,
        Err(io::IoError::Status(status)) => return (status, None),
        Err(e) => panic!("read: {e:?}"),
    };
    if r.status != 0 {
        assert_eq!(r.information, 0);
        return (r.status, None);
    }
    let header = EventBatchHeader::read(&r.output[..EventBatchHeader::SIZE]).unwrap();
    assert_eq!(r.output.len(), EventBatchHeader::SIZE + header.count as usize * EventRecord::SIZE, "Information");
    assert!(header.count >= 1, "a completed read carries at least one record");
    let records =
        r.output[EventBatchHeader::SIZE..].chunks_exact(EventRecord::SIZE).map(|c| EventRecord::read(c).unwrap());
    (r.status, Some((header, records.collect())))
}

fn udp_frame(src_port: u16, dst_port: u16) -> Frame {
    FrameSpec::ipv4(PROTO_UDP, src_port, dst_port).build()
}

fn send(s: &Session, a: AdapterId, frames: Vec<Frame>) {
    let nbls = frames.into_iter().map(|f| NblSpec::of(vec![f])).collect();
    for o in s.send(a, nbls, At::Dispatch).unwrap() {
        assert!(o.delivered);
    }
}

/// Waits until `n` reads on `h` are queued in the driver: their dispatch
/// routine returned STATUS_PENDING (`io::pending_irps` also counts a read
/// still being dispatched, which a close may overtake).
fn wait_pending(h: Handle, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while io::pended_irps(h) < n {
        assert!(Instant::now() < deadline, "{n} reads never pended");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Unloads and checks the report: no violation, no leak, every IRP sent
/// completed exactly once (a second completion is itself a violation).
fn finish(s: Session) -> io::IoStats {
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
    let sent: u64 = report.io.irps.values().sum();
    let create = report.io.irps.get("IRP_MJ_CREATE").copied().unwrap_or(0);
    // CREATE, CLEANUP and CLOSE complete in their dispatch routines; IRPs
    // completed == IRPs sent, whatever pended.
    assert_eq!(report.io.completed, sent, "every IRP completed once ({create} creates)");
    println!(
        "IRPs: {sent} sent, {} pended, {} cancel requests, {} completed",
        report.io.pended, report.io.cancelled, report.io.completed
    );
    report.io
}

#[test]
fn records_carry_the_packet_and_control_events() {
    let s = load();
    let h = pw::open(&s);
    // Validation first: nothing enabled yet.
    assert_eq!(pw::ioctl(&s, h, IOCTL_READ_EVENTS, &[], room(1)).0, STATUS_INVALID_DEVICE_STATE);
    assert_eq!(pw::ioctl(&s, h, IOCTL_READ_EVENTS, &[], room(1) - 1).0, STATUS_BUFFER_TOO_SMALL);
    assert_eq!(pw::ioctl(&s, h, IOCTL_READ_EVENTS, &[0], room(1)).0, STATUS_INVALID_PARAMETER);
    let v1 = pw::bytes(&EnableEvents { version: 1, ring_records: 8 });
    assert_eq!(pw::ioctl(&s, h, IOCTL_ENABLE_EVENTS, &v1, 0).0, STATUS_REVISION_MISMATCH);
    assert_eq!(enable(&s, h, MAX_EVENT_RING_RECORDS + 1), STATUS_INVALID_PARAMETER);
    assert_eq!(enable(&s, h, 64), 0);
    assert_eq!(enable(&s, h, 64), STATUS_INVALID_DEVICE_STATE, "once per handle");

    let a = adapter(&s, "eth-events"); // attach + restart: two control events
    pw::bind(&s, h, PROTO_UDP, 5000);
    pw::bind(&s, h, PROTO_TCP, 443);
    let t0 = std::time::Instant::now();
    send(&s, a, vec![udp_frame(9, 5000), udp_frame(9, 5001)]);
    let mut v6 = FrameSpec::ipv6(PROTO_TCP, 443, 50000);
    v6.payload_len = 100;
    let v6 = v6.build();
    let v6_len = v6.bytes.len() as u32;
    let nbls = vec![NblSpec::of(vec![v6])];
    s.receive(a, nbls, At::Passive, false).unwrap();

    let (status, batch) = read(&s, h, 16);
    assert_eq!(status, 0);
    let (header, records) = batch.unwrap();
    assert_eq!((header.version, header.record_size, header.dropped), (PROTOCOL_VERSION, 64, 0));
    assert_eq!(header.timestamp_frequency, 10_000_000);
    let kinds: Vec<_> = records.iter().map(|r| EventKind::from_u8(r.kind).unwrap()).collect();
    assert_eq!(kinds, [EventKind::ModuleAttached, EventKind::ModuleRestarted, EventKind::Packet, EventKind::Packet]);
    let if_index = records[0].if_index;
    assert!(records.iter().all(|r| r.if_index == if_index) && if_index != 0);
    assert!(records.windows(2).all(|w| w[0].timestamp <= w[1].timestamp), "timestamps in order");
    let tx = &records[2];
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[10, 0, 0, 1]);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&[10, 0, 0, 2]);
    assert_eq!(
        (tx.direction, tx.ip_version, tx.protocol, tx.src_port, tx.dst_port, tx.matched_port),
        (DIRECTION_TX, 4, PROTO_UDP, 9, 5000, 5000)
    );
    assert_eq!((tx.src_addr, tx.dst_addr, tx.frame_length), (src, dst, udp_frame(9, 5000).bytes.len() as u32));
    let rx = &records[3];
    let Network::V6 { src: s6, dst: d6, .. } = FrameSpec::ipv6(PROTO_TCP, 443, 50000).network else { unreachable!() };
    assert_eq!(
        (rx.direction, rx.ip_version, rx.protocol, rx.src_port, rx.dst_port, rx.matched_port, rx.frame_length),
        (DIRECTION_RX, 6, PROTO_TCP, 443, 50000, 443, v6_len)
    );
    assert_eq!((rx.src_addr, rx.dst_addr), (s6, d6));
    // The timestamps are the modelled KeQueryPerformanceCounter (10 MHz
    // since the process's first query): the packets' fall within this test.
    let elapsed_ticks = t0.elapsed().as_nanos() as u64 / 100 + 1;
    assert!(rx.timestamp - tx.timestamp <= elapsed_ticks);

    // Quota of pending reads: MAX_PENDING_READS pend, the next is refused.
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..MAX_PENDING_READS).map(|_| scope.spawn(|| read(&s, h, 1).0)).collect();
        wait_pending(h, MAX_PENDING_READS as usize);
        assert_eq!(pw::ioctl(&s, h, IOCTL_READ_EVENTS, &[], room(1)).0, STATUS_QUOTA_EXCEEDED);
        assert_eq!(io::cancel_io(h).unwrap(), MAX_PENDING_READS as usize, "each had a cancel routine");
        for r in readers {
            assert_eq!(r.join().unwrap(), STATUS_CANCELLED);
        }
    });
    s.close(h).unwrap();
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    finish(s);
}

#[test]
fn pending_read_is_completed_by_the_data_path() {
    let s = load();
    let a = adapter(&s, "eth-pend");
    let h = pw::open(&s);
    assert_eq!(enable(&s, h, 8), 0);
    pw::bind(&s, h, PROTO_UDP, 7000);
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| read(&s, h, 4));
        wait_pending(h, 1);
        send(&s, a, vec![udp_frame(7000, 9)]);
        let (status, batch) = reader.join().unwrap();
        assert_eq!(status, 0);
        let (header, records) = batch.unwrap();
        assert_eq!((header.count, records[0].src_port, records[0].matched_port), (1, 7000, 7000));
    });
    s.close(h).unwrap();
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    let st = finish(s);
    assert!(st.pended >= 1);
}

#[test]
fn reads_pending_while_the_handle_closes_are_cancelled() {
    let s = load();
    let a = adapter(&s, "eth-close");
    let h = pw::open(&s);
    assert_eq!(enable(&s, h, 8), 0);
    pw::bind(&s, h, PROTO_UDP, 7001);
    let h2 = s.duplicate(h).unwrap();
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4).map(|_| scope.spawn(|| read(&s, h, 1).0)).collect();
        wait_pending(h, 4);
        s.close(h2).unwrap(); // not the last handle: nothing happens
        assert_eq!(io::pending_irps(h), 4);
        s.close(h).unwrap(); // CLEANUP cancels all four, then CLOSE
        for r in readers {
            assert_eq!(r.join().unwrap(), STATUS_CANCELLED);
        }
    });
    // Traffic on the port after the close reaches no freed endpoint.
    send(&s, a, vec![udp_frame(9, 7001)]);
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    let st = finish(s);
    assert_eq!(st.pended, 4);
    assert_eq!(st.cleanups_with_irps_in_flight, 1);
}

/// CancelIoEx on one thread races the data path completing the same reads
/// on another, many times: each read completes exactly once (a second
/// completion or a completion with the cancel routine set stops the run),
/// and per endpoint every generated event is delivered, dropped or still
/// queued.
#[test]
fn cancel_races_completion_from_the_data_path() {
    let s = load();
    let a = adapter(&s, "eth-race");
    let handles: Vec<Handle> = (0..2).map(|_| pw::open(&s)).collect();
    for (i, &h) in handles.iter().enumerate() {
        assert_eq!(enable(&s, h, 4 + i as u32 * 60), 0);
        pw::bind(&s, h, PROTO_UDP, 7100);
    }
    let sent = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let counts: Vec<(AtomicU64, AtomicU64)> = (0..2).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect();
    let last_dropped: Vec<AtomicU64> = (0..2).map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|scope| {
        for (i, &h) in handles.iter().enumerate() {
            for _ in 0..3 {
                let (stop, counts, last_dropped) = (&stop, &counts, &last_dropped);
                let s = &s;
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) && !portwatch_harness::verifier::is_tainted() {
                        match read(s, h, 2) {
                            (0, Some((header, records))) => {
                                counts[i].0.fetch_add(records.len() as u64, Ordering::Relaxed);
                                last_dropped[i].fetch_max(header.dropped, Ordering::Relaxed);
                            }
                            (STATUS_CANCELLED, None) => {
                                counts[i].1.fetch_add(1, Ordering::Relaxed);
                            }
                            other => panic!("read: {other:?}"),
                        }
                    }
                });
            }
        }
        let (stop, sent, s) = (&stop, &sent, &s);
        scope.spawn(move || {
            // Stop the others however this thread ends (a violation panics).
            struct StopOnDrop<'a>(&'a AtomicBool);
            impl Drop for StopOnDrop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _stop = StopOnDrop(stop);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                send(s, a, vec![udp_frame(9, 7100), udp_frame(9, 7100)]);
                sent.fetch_add(2, Ordering::Relaxed);
            }
        });
        let handles = &handles;
        scope.spawn(move || {
            while !stop.load(Ordering::Relaxed) && !portwatch_harness::verifier::is_tainted() {
                for &h in handles {
                    let _ = io::cancel_io(h);
                }
                std::thread::yield_now();
            }
        });
        // Readers still pending when the sender stops: cancel them.
        while !stop.load(Ordering::Relaxed) && !portwatch_harness::verifier::is_tainted() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while handles.iter().any(|&h| io::pending_irps(h) > 0) || Instant::now() < deadline {
            if portwatch_harness::verifier::is_tainted() {
                break; // the session stopped at a bug check: the readers return with it
            }
            for &h in handles {
                let _ = io::cancel_io(h);
            }
            if handles.iter().all(|&h| io::pending_irps(h) == 0) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let sent = sent.load(Ordering::Relaxed);
    let mut totals = Vec::new();
    for (i, &h) in handles.iter().enumerate() {
        // Drain what is still queued (a read that finds events never pends).
        let mut delivered = counts[i].0.load(Ordering::Relaxed);
        let mut dropped = last_dropped[i].load(Ordering::Relaxed);
        loop {
            std::thread::scope(|scope| {
                let r = scope.spawn(|| read(&s, h, 64));
                std::thread::sleep(Duration::from_millis(20));
                if io::pending_irps(h) > 0 {
                    io::cancel_io(h).unwrap();
                }
                match r.join().unwrap() {
                    (0, Some((header, records))) => {
                        delivered += records.len() as u64;
                        dropped = dropped.max(header.dropped);
                    }
                    (STATUS_CANCELLED, None) => dropped = u64::MAX,
                    other => panic!("{other:?}"),
                }
            });
            if dropped == u64::MAX {
                break;
            }
        }
        totals.push((delivered, dropped));
    }
    // One more event for both: its batch carries the final drop count.
    send(&s, a, vec![udp_frame(9, 7100)]);
    for (i, &h) in handles.iter().enumerate() {
        let (status, batch) = read(&s, h, 1);
        assert_eq!(status, 0);
        let (header, _) = batch.unwrap();
        let delivered = totals[i].0 + 1;
        let generated = sent + 1;
        println!(
            "endpoint {i}: generated {generated}, delivered {delivered}, dropped {}, reads cancelled {}",
            header.dropped,
            counts[i].1.load(Ordering::Relaxed)
        );
        assert_eq!(delivered + header.dropped, generated, "endpoint {i}: delivered + dropped = generated");
        assert!(counts[i].1.load(Ordering::Relaxed) > 0, "some cancels won");
    }
    for h in handles {
        s.close(h).unwrap();
    }
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    let st = finish(s);
    assert!(st.cancelled > 0 && st.pended > 0);
}

#[test]
fn ring_overflow_accounts_for_every_event() {
    let s = load();
    let a = adapter(&s, "eth-overflow");
    let sizes = [1u32, 5, 64, 300];
    let handles: Vec<Handle> = sizes.iter().map(|_| pw::open(&s)).collect();
    for (&h, &n) in handles.iter().zip(&sizes) {
        assert_eq!(enable(&s, h, n), 0);
        pw::bind(&s, h, PROTO_UDP, 7200);
    }
    // 200 events per endpoint, none read meanwhile.
    for _ in 0..100 {
        send(&s, a, vec![udp_frame(9, 7200), udp_frame(7200, 7200)]);
    }
    for (&h, &n) in handles.iter().zip(&sizes) {
        let mut delivered = 0u64;
        let mut dropped = 0;
        let mut seen_ports = Vec::new();
        while delivered < u64::from(n.min(200)) {
            let (status, batch) = read(&s, h, 7);
            assert_eq!(status, 0);
            let (header, records) = batch.unwrap();
            delivered += records.len() as u64;
            dropped = header.dropped;
            seen_ports.extend(records.iter().map(|r| r.src_port));
        }
        println!("ring of {n}: generated 200, delivered {delivered}, dropped {dropped}");
        assert_eq!(delivered + dropped, 200, "ring of {n}");
        assert_eq!(dropped, 200u64.saturating_sub(u64::from(n)));
        // The oldest events are kept: alternating source ports 9, 7200, ...
        assert!(seen_ports.iter().enumerate().all(|(i, &p)| p == if i % 2 == 0 { 9 } else { 7200 }));
        s.close(h).unwrap();
    }
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    finish(s);
}

/// Many endpoints, each with several reads pending, while modules pause,
/// restart and detach: the control events complete pending reads; then
/// every handle closes with reads still pending and the driver unloads.
/// Nothing may be left pending (CLOSE would never come, and the harness
/// refuses to unload with a handle open) and nothing leaks.
#[test]
fn many_endpoints_with_pending_reads_through_pause_restart_detach_and_unload() {
    let s = load();
    let adapters: Vec<_> = (0..3).map(|i| adapter(&s, &format!("eth-many-{i}"))).collect();
    let handles: Vec<Handle> = (0..12).map(|_| pw::open(&s)).collect();
    for &h in &handles {
        assert_eq!(enable(&s, h, 16), 0);
    }
    let completed = AtomicU64::new(0);
    let cancelled = AtomicU64::new(0);
    let events = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for &h in &handles {
            for _ in 0..4 {
                let (s, completed, cancelled, events) = (&s, &completed, &cancelled, &events);
                scope.spawn(move || loop {
                    match read(s, h, 3) {
                        (0, Some((_, records))) => {
                            completed.fetch_add(1, Ordering::Relaxed);
                            events.fetch_add(records.len() as u64, Ordering::Relaxed);
                        }
                        (STATUS_CANCELLED, None) => {
                            cancelled.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        // The handle closed between two reads.
                        (st, None) if st == pw_status::INVALID_HANDLE || st == pw_status::DELETE_PENDING => return,
                        other => panic!("read: {other:?}"),
                    }
                });
            }
        }
        for &h in &handles {
            wait_pending(h, 4);
        }
        for round in 0..3 {
            for &a in &adapters {
                s.pause(a).unwrap();
                s.restart(a).unwrap();
            }
            let _ = round;
        }
        s.pause(adapters[2]).unwrap();
        s.detach(adapters[2]).unwrap();
        // Every reader drains what is queued, then pends again.
        for &h in &handles {
            wait_pending(h, 4);
        }
        for &h in &handles {
            s.close(h).unwrap();
        }
    });
    // 3 adapters x 3 rounds x (paused + restarted) + 1 pause + 1 detach =
    // 20 control events per endpoint, each delivered or queued (ring of 16: some may
    // have been dropped while every reader was busy).
    let events = events.load(Ordering::Relaxed);
    println!(
        "12 endpoints x 4 readers: {} reads completed with {events} events, {} cancelled at close",
        completed.load(Ordering::Relaxed),
        cancelled.load(Ordering::Relaxed)
    );
    assert!(events > 0 && events <= 12 * 20);
    assert_eq!(cancelled.load(Ordering::Relaxed), 12 * 4, "every reader's last read was cancelled by the close");
    for &a in &adapters[..2] {
        s.pause(a).unwrap();
        s.detach(a).unwrap();
    }
    let st = finish(s);
    assert!(st.pended >= 48);
}

/// Status values of reads issued on a handle that is closing.
mod pw_status {
    pub const INVALID_HANDLE: i32 = 0xC000_0008_u32 as i32;
    pub const DELETE_PENDING: i32 = 0xC000_0056_u32 as i32;
}
