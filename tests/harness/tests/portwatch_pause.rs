//! portwatch.sys with sends and receives overlapping FilterPause and
//! FilterRestart as on Windows: the miniport completes sends (and the
//! protocol returns receives) late, from other threads, while NDIS pauses
//! the module; new sends and receives keep arriving while it is Pausing,
//! Paused and Restarting. The driver, a pass-through filter that queues
//! nothing, may complete each pause at once (the documented rule:
//! "Pausing a Filter Module"); it must forward nothing once paused, complete
//! sends with NDIS_STATUS_PAUSED until restarted, and lose or double
//! nothing while completions of what it forwarded arrive after its pause.

mod pw;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ndis_sys::NDIS_STATUS_PAUSED;
use portwatch_harness::frames::FrameSpec;
use portwatch_harness::nbl::NblSpec;
use portwatch_harness::ndis::{AdapterSpec, At, Completion};
use portwatch_harness::session::Options;
use portwatch_harness::verifier::Config;
use portwatch_proto::*;

fn overlapping(special_pool: bool, iterations: usize) {
    let verifier = Config { special_pool, ..Config::default() };
    let s = pw::load(Options {
        completion: Completion::Delayed(Duration::from_micros(300)),
        verifier,
        ..Options::default()
    });
    let adapters = [s.add_adapter(AdapterSpec::named("eth0")), s.add_adapter(AdapterSpec::named("eth1"))];
    for a in adapters {
        s.start(a).unwrap();
    }
    let h = pw::open(&s);
    pw::bind(&s, h, PROTO_UDP, 53);
    let frame = FrameSpec::ipv4(PROTO_UDP, 40000, 53).build();
    let stop = AtomicBool::new(false);
    let (delivered, bounced) = (AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (s, frame, stop, delivered, bounced) = (&s, &frame, &stop, &delivered, &bounced);
            scope.spawn(move || {
                let a = adapters[t % 2];
                let at = if t == 0 { At::Passive } else { At::Dispatch };
                while !stop.load(Ordering::Relaxed) {
                    for o in s.send(a, vec![NblSpec::of(vec![frame.clone(), frame.clone()])], at).unwrap() {
                        if o.delivered {
                            delivered.fetch_add(2, Ordering::Relaxed);
                        } else {
                            assert_eq!(o.status, NDIS_STATUS_PAUSED, "a send refused while paused says so");
                            bounced.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    s.receive(a, vec![NblSpec::of(vec![frame.clone()])], At::Dispatch, t >= 2).unwrap();
                }
            });
        }
        let pausers: Vec<_> = adapters
            .into_iter()
            .map(|a| {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..iterations {
                        s.pause(a).unwrap();
                        if i % 64 == 0 {
                            // Stays paused a while now and then, so that
                            // sends meet a paused module however the
                            // threads are scheduled (back to back, the
                            // restart may always win the adapter's gate).
                            std::thread::sleep(Duration::from_micros(500));
                        }
                        s.restart(a).unwrap();
                    }
                })
            })
            .collect();
        for p in pausers {
            p.join().expect("pause/restart thread");
        }
        stop.store(true, Ordering::Relaxed);
    });
    let took = started.elapsed();
    let stats = pw::endpoint_stats(&s, h);
    assert_eq!(stats.tx.packets, delivered.load(Ordering::Relaxed), "every delivered send was counted once");
    let report = s.report();
    eprintln!(
        "{iterations} pause/restart cycles x 2 adapters in {took:?}: {} pauses begun with NBLs outstanding, {} sends bounced",
        report.ndis.pauses_with_nbls_out,
        bounced.load(Ordering::Relaxed)
    );
    assert!(report.ndis.pauses_with_nbls_out > 0, "no pause overlapped outstanding NBLs: {report}");
    assert!(bounced.load(Ordering::Relaxed) > 0, "no send met a paused module: {report}");
    // A pause waits only for NBLs the filter originated or queued (none):
    // FilterPause completes at once, even with forwarded NBLs outstanding.
    assert_eq!(report.ndis.pauses_pended, 0, "a pause pended: {report}");
    s.close(h).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty(), "{report}");
    assert!(report.leaked.is_empty(), "{report}");
    assert_eq!(report.ndis.nbls_allocated, report.ndis.nbls_finished, "{report}");
}

#[test]
fn pause_and_restart_overlap_traffic_on_two_adapters() {
    overlapping(false, 2000);
}

#[test]
fn pause_and_restart_overlap_traffic_with_special_pool() {
    overlapping(true, 1000);
}
