//! The per-processor counters of portwatch.sys stay exact: N threads, each
//! pinned to its own simulated processor, send and receive K packets each
//! to one bound port at once; the statistics IOCTLs (which sum the
//! processors' slots) report exactly N×K each way. A pause with traffic in
//! flight from every processor completes only when the last NBL is back.

mod pw;

use portwatch_harness::frames::{FrameSpec, IPPROTO_UDP};
use portwatch_harness::nbl::NblSpec;
use portwatch_harness::ndis::{AdapterSpec, At};
use portwatch_harness::processor;
use portwatch_harness::session::Options;

const THREADS: u32 = 8;
const PACKETS: u64 = 500;

fn packet() -> Vec<NblSpec> {
    vec![NblSpec::of(vec![FrameSpec::ipv4(IPPROTO_UDP, 40_000, 5353).build()])]
}

#[test]
fn pinned_threads_on_distinct_processors_count_exactly() {
    let s = pw::load(Options::default());
    let a = s.add_adapter(AdapterSpec::named("eth0"));
    s.start(a).unwrap();
    let h = pw::open(&s);
    pw::bind(&s, h, IPPROTO_UDP, 5353);
    let start = std::sync::Barrier::new(THREADS as usize);
    std::thread::scope(|scope| {
        for cpu in 0..THREADS {
            let (s, start) = (&s, &start);
            scope.spawn(move || {
                processor::pin(cpu);
                start.wait();
                for i in 0..PACKETS {
                    // Both IRQLs: a send at PASSIVE_LEVEL counts under the
                    // read lock, at DISPATCH_LEVEL too.
                    let at = if i % 2 == 0 { At::Dispatch } else { At::Passive };
                    assert!(s.send(a, packet(), at).unwrap().iter().all(|o| o.delivered));
                    assert!(s.receive(a, packet(), at, i % 3 == 0).unwrap().iter().all(|o| o.delivered));
                }
            });
        }
    });
    let stats = pw::endpoint_stats(&s, h);
    let total = u64::from(THREADS) * PACKETS;
    assert_eq!((stats.tx.packets, stats.rx.packets), (total, total), "N×K each way");
    let frame_len = FrameSpec::ipv4(IPPROTO_UDP, 40_000, 5353).build().bytes.len() as u64;
    assert_eq!((stats.tx.bytes, stats.rx.bytes), (total * frame_len, total * frame_len));
    let port = pw::port_stats(&s, h, IPPROTO_UDP, 5353);
    assert_eq!((port.tx.packets, port.rx.packets), (total, total));
    s.close(h).unwrap();
    s.pause(a).unwrap();
    s.detach(a).unwrap();
    let report = s.unload();
    assert!(report.violations.is_empty() && report.leaked.is_empty(), "{report}");
}
