//! The harness-driven commands (Linux x86-64 only).

use std::time::Duration;

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::run::{throughput, udp_packet, Bench, Way, BASE_PORT};
use portwatch_bench::valgrind;

/// Port-table sizes measured.
const PORT_COUNTS: [u16; 3] = [1, 100, 10_000];

/// Each configuration: warm up, zero callgrind's counters, pass `packets`
/// packets, dump the counters with a label the summary parses.
pub fn datapath(args: &[String]) {
    let packets: u32 = args.first().map_or(2000, |a| a.parse().expect("packets: a number"));
    for (driver, artifact, device) in
        [("passthrough", Artifact::Passthrough, false), ("portwatch", Artifact::Driver, true)]
    {
        for ports in PORT_COUNTS {
            let bench = Bench::start(&artifact.path(), device, ports);
            // The middle bound port: a binary search's typical depth.
            let dst = BASE_PORT + ports / 2;
            for way in [Way::Send, Way::Receive] {
                for _ in 0..100 {
                    bench.packet(way, udp_packet(dst));
                }
                let nbls: Vec<_> = (0..packets).map(|_| udp_packet(dst)).collect();
                valgrind::zero_stats();
                for nbl in nbls {
                    bench.packet(way, nbl);
                }
                valgrind::dump_stats_at(&format!("bench {driver} {} ports={ports} packets={packets}", way.name()));
            }
            bench.finish();
            println!("{driver}: {ports} ports done");
        }
    }
}

/// The event stream's cost: with 100 ports bound, packets to a port no
/// endpoint bound (`*-nomatch`), to a bound port (`send`, `receive`), and to
/// a bound port whose endpoint enabled events (`*-events`: each packet
/// appends a record to the endpoint's ring, which is large enough for all
/// of them). With `$PORTWATCH_BASELINE_SYS` set, the same configurations
/// but the events one run on that image too (labelled `baseline`), for a
/// side-by-side comparison in one run.
pub fn datapath_events(args: &[String]) {
    let packets: u32 = args.first().map_or(1000, |a| a.parse().expect("packets: a number"));
    assert!(packets <= 1900, "the ring holds 4096 records: at most 1900 packets per way");
    let mut drivers = vec![("portwatch", Artifact::Driver.path())];
    if let Some(base) = std::env::var_os("PORTWATCH_BASELINE_SYS") {
        drivers.push(("baseline", base.into()));
    }
    let ports = 100;
    let bound = BASE_PORT + ports / 2;
    let unbound = 40_000;
    for (driver, path) in drivers {
        let bench = Bench::start(&path, true, ports);
        let mut configs = vec![
            (Way::Send, "send-nomatch", unbound),
            (Way::Receive, "receive-nomatch", unbound),
            (Way::Send, "send", bound),
            (Way::Receive, "receive", bound),
        ];
        if driver == "portwatch" {
            configs.extend([(Way::Send, "send-events", bound), (Way::Receive, "receive-events", bound)]);
        }
        for (way, label, dst) in configs {
            if label == "send-events" {
                bench.enable_events(bound, 4096);
            }
            for _ in 0..100 {
                bench.packet(way, udp_packet(dst));
            }
            let nbls: Vec<_> = (0..packets).map(|_| udp_packet(dst)).collect();
            valgrind::zero_stats();
            for nbl in nbls {
                bench.packet(way, nbl);
            }
            valgrind::dump_stats_at(&format!("bench {driver} {label} ports={ports} packets={packets}"));
        }
        bench.finish();
        println!("{driver}: done");
    }
}

/// Whole-process instructions per packet: like [`datapath`] with 100
/// ports bound, but the summary (`portwatch-bench overhead-summary`) counts
/// every object, so that the harness's own cost per packet (the total minus
/// the driver's code) can be read and checked.
pub fn overhead(args: &[String]) {
    let packets: u32 = args.first().map_or(2000, |a| a.parse().expect("packets: a number"));
    for (driver, artifact, device, ports) in
        [("passthrough", Artifact::Passthrough, false, 0), ("portwatch", Artifact::Driver, true, 100)]
    {
        let bench = Bench::start(&artifact.path(), device, ports);
        let spec = udp_packet(BASE_PORT);
        for way in [Way::Send, Way::Receive] {
            for _ in 0..100 {
                bench.packet(way, spec.clone());
            }
            valgrind::zero_stats();
            for _ in 0..packets {
                bench.packet(way, spec.clone());
            }
            valgrind::dump_stats_at(&format!("overhead {driver} {} packets={packets}", way.name()));
        }
        bench.finish();
    }
}

/// Packets/s with 1, 2, 4, ... up to `max` threads, and the ratio to 1,
/// through `portwatch` (default) or the `passthrough` baseline.
pub fn scaling(args: &[String]) {
    let max: usize = args.first().map_or(2, |a| a.parse().expect("max_threads: a number"));
    let seconds: f64 = args.get(1).map_or(2.0, |a| a.parse().expect("seconds: a number"));
    let driver = args.get(2).map_or("portwatch", String::as_str);
    let (bench, setup) = match driver {
        "portwatch" => (Bench::start(&Artifact::Driver.path(), true, 100), "send, 100 ports bound"),
        "passthrough" => (Bench::start(&Artifact::Passthrough.path(), false, 0), "send"),
        other => panic!("unknown driver {other}: portwatch or passthrough"),
    };
    let mut threads = 1;
    let mut base = None;
    println!("| threads | packets/s ({driver}, {setup}) | ratio to 1 thread |\n|---|---|---|");
    while threads <= max {
        let rate = throughput(&bench, Way::Send, threads, Duration::from_secs_f64(seconds));
        let one = *base.get_or_insert(rate);
        println!("| {threads} | {rate:.0} | {:.2} |", rate / one);
        threads = if threads == 1 {
            2
        } else if threads < max && threads * 2 > max {
            max
        } else {
            threads * 2
        };
    }
    bench.finish();
}
