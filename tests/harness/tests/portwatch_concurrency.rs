//! portwatch.sys from many threads: pause / restart / detach with traffic
//! in flight, handles closed while IOCTLs on them are in flight, unload
//! after everything.

mod pw;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ndis_sys::NDIS_STATUS_PAUSED;
use portwatch_harness::frames::FrameSpec;
use portwatch_harness::io::{IoError, STATUS_INVALID_HANDLE};
use portwatch_harness::nbl::NblSpec;
use portwatch_harness::ndis::{AdapterSpec, At, Completion};
use portwatch_harness::session::Options;
use portwatch_proto::*;

#[test]
fn pause_restart_detach_with_traffic_in_flight() {
    let s = pw::load(Options { completion: Completion::OtherThread, ..Options::default() });
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    let h = pw::open(&s);
    pw::bind(&s, h, PROTO_UDP, 53);
    let frame = FrameSpec::ipv4(PROTO_UDP, 40000, 53).build();
    let stop = AtomicBool::new(false);
    let (delivered, paused) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        for t in 0..3 {
            let (s, frame, stop, delivered, paused) = (&s, &frame, &stop, &delivered, &paused);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let at = if t == 0 { At::Passive } else { At::Dispatch };
                    for o in s.send(a, vec![NblSpec::of(vec![frame.clone(), frame.clone()])], at).unwrap() {
                        if o.delivered {
                            delivered.fetch_add(2, Ordering::Relaxed);
                        } else {
                            assert_eq!(o.status, NDIS_STATUS_PAUSED, "a send refused while paused says so");
                            paused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    s.receive(a, vec![NblSpec::of(vec![frame.clone()])], At::Dispatch, t == 2).unwrap();
                }
            });
        }
        for _ in 0..15 {
            s.pause(a).unwrap();
            std::thread::yield_now();
            s.restart(a).unwrap();
        }
        s.pause(a).unwrap();
        stop.store(true, Ordering::Relaxed);
    });
    assert!(paused.load(Ordering::Relaxed) > 0 || delivered.load(Ordering::Relaxed) > 0);
    let stats = pw::endpoint_stats(&s, h);
    assert_eq!(stats.tx.packets, delivered.load(Ordering::Relaxed), "every delivered send was counted once");
    s.detach(a).unwrap();
    s.close(h).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
}

/// Threads issuing IOCTLs on the handle being closed.
const IOCTL_THREADS: u16 = 4;

#[test]
fn close_with_ioctls_in_flight() {
    let s = pw::load(Options::default());
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    for round in 0..20u16 {
        let h = pw::open(&s);
        std::thread::scope(|scope| {
            for t in 0..IOCTL_THREADS {
                let s = &s;
                scope.spawn(move || {
                    // 4 x 16 = MAX_BINDINGS_PER_ENDPOINT: every bind that gets
                    // in before cleanup succeeds.
                    for i in 0..16u16 {
                        let p = 1 + t * 100 + i;
                        match s.ioctl(h, IOCTL_BIND_PORT, &pw::port(PROTO_TCP, p), 0) {
                            Ok(r) => {
                                assert!(r.status == 0 || r.status == 0xC000_0056_u32 as i32, "bind: {:#x}", r.status)
                            }
                            Err(IoError::Status(st)) => assert_eq!(st, STATUS_INVALID_HANDLE),
                            Err(e) => panic!("{e:?}"),
                        }
                        let _ = s.ioctl(h, IOCTL_GET_ENDPOINT_STATS, &[], EndpointStats::SIZE as u32);
                    }
                });
            }
            let s = &s;
            scope.spawn(move || {
                for _ in 0..(round % 5) {
                    std::thread::yield_now();
                }
                s.close(h).unwrap();
            });
        });
        let h2 = pw::open(&s);
        assert_eq!(pw::port_stats(&s, h2, PROTO_TCP, 1).endpoints, 0, "a closed endpoint keeps no binding");
        s.close(h2).unwrap();
    }
    let report = s.report();
    assert_eq!(report.io.irps["IRP_MJ_CLEANUP"], 40);
    assert_eq!(report.io.irps["IRP_MJ_CLOSE"], 40);
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
}
