//! The harness-driven commands (Linux x86-64 only).

use std::path::PathBuf;
use std::time::Duration;

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::run::{throughput, udp_packet, Bench, Way, BASE_PORT};
use portwatch_bench::valgrind;
use portwatch_proto::MAX_BINDINGS_PER_ENDPOINT;

/// Port-table sizes measured.
const PORT_COUNTS: [u16; 3] = [1, 100, 10_000];
/// NBLs per chain measured (with 100 ports bound).
const CHAINS: [usize; 3] = [1, 8, 64];
/// The table size the chain lengths are measured with.
const CHAIN_PORTS: u16 = 100;

/// `datapath [packets] [--before IMAGE] [--ports N,N,..]`: each configuration warms up,
/// zeroes callgrind's counters, passes `packets` packets (NBLs) and dumps
/// the counters with a label the summary parses. One NBL per call for
/// each table size; then chains of 1, 8 and 64 NBLs with
/// [`CHAIN_PORTS`] ports; then the event stream's configurations (see
/// [`events`]). With `--before`, that image is measured too (labelled
/// `portwatch-before`), in the same run.
pub fn datapath(args: &[String]) {
    let mut packets: usize = 2000;
    let mut drivers =
        vec![("passthrough", Artifact::Passthrough.path(), false), ("portwatch", Artifact::Driver.path(), true)];
    let mut port_counts = PORT_COUNTS.to_vec();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ports" => {
                let list = args.next().expect("--ports N,N,..");
                port_counts = list.split(',').map(|n| n.parse().expect("--ports: numbers")).collect();
            }
            "--before" => {
                let path = args.next().expect("--before IMAGE");
                drivers.push(("portwatch-before", PathBuf::from(path), true));
            }
            n => packets = n.parse().expect("packets: a number"),
        }
    }
    let chain_runs = CHAINS.iter().filter(|&&c| c > 1).map(|&c| (CHAIN_PORTS, c));
    let runs: Vec<(u16, usize)> = port_counts.iter().map(|&p| (p, 1)).chain(chain_runs).collect();
    for (driver, path, device) in &drivers {
        for &(ports, chain) in &runs {
            let bench = Bench::start(path, *device, ports);
            // The middle bound port.
            let dst = BASE_PORT + ports / 2;
            for way in [Way::Send, Way::Receive] {
                measure(&bench, driver, way, way.name(), (ports, chain), dst, packets);
            }
            bench.finish();
            println!("{driver}: {ports} ports, chains of {chain} done");
        }
        events(driver, path, *device, packets);
    }
}

/// The event stream's configurations, one NBL per call with
/// [`CHAIN_PORTS`] ports bound: packets to a port nobody bound
/// (`*-nomatch`), and, on the image under test only, packets to a bound
/// port whose endpoint enabled events with a ring of 4096 records
/// (`*-events`: each packet appends one record; no read is pending, so no
/// IRP is completed), then to a bound port of another handle, which did not
/// enable events, while that endpoint has (`*-others-events`). The plain
/// `send`/`receive` rows above are the bound port with no endpoint's
/// events enabled.
fn events(driver: &str, path: &std::path::Path, device: bool, packets: usize) {
    let bench = Bench::start(path, device, CHAIN_PORTS);
    let bound = BASE_PORT + CHAIN_PORTS / 2;
    for (way, label) in [(Way::Send, "send-nomatch"), (Way::Receive, "receive-nomatch")] {
        measure(&bench, driver, way, label, (CHAIN_PORTS, 1), UNBOUND_PORT, packets);
    }
    if driver == "portwatch" {
        bench.enable_events(bound, EVENT_RING);
        // The ring holds every record of the warm-up and the measured
        // packets of both ways, so that none is dropped.
        let packets = packets.min((EVENT_RING as usize - 2 * WARM_UP) / 2);
        for (way, label) in [(Way::Send, "send-events"), (Way::Receive, "receive-events")] {
            measure(&bench, driver, way, label, (CHAIN_PORTS, 1), bound, packets);
        }
        // A port of another handle, which did not enable events: counted
        // by the event-aware loop, since an endpoint has events enabled.
        let other = BASE_PORT + MAX_BINDINGS_PER_ENDPOINT as u16;
        for (way, label) in [(Way::Send, "send-others-events"), (Way::Receive, "receive-others-events")] {
            measure(&bench, driver, way, label, (CHAIN_PORTS, 1), other, packets);
        }
    }
    bench.finish();
    println!("{driver}: event stream configurations done");
}

/// A port no endpoint binds.
const UNBOUND_PORT: u16 = 40_000;
/// Records in the ring of the `*-events` configurations.
const EVENT_RING: u32 = 4096;
/// Chains passed before the counters are zeroed.
const WARM_UP: usize = 100;

/// One configuration: warms up, zeroes callgrind's counters, passes about
/// `packets` packets to `dst` in chains of `chain` NBLs, dumps the counters.
fn measure(bench: &Bench, driver: &str, way: Way, label: &str, (ports, chain): (u16, usize), dst: u16, packets: usize) {
    let (base, size) = bench.session.image_range().unwrap_or((0, 0));
    let calls = packets.div_ceil(chain);
    for _ in 0..WARM_UP {
        bench.chain(way, &(0..chain).map(|_| udp_packet(dst)).collect::<Vec<_>>());
    }
    let chains: Vec<Vec<_>> = (0..calls).map(|_| (0..chain).map(|_| udp_packet(dst)).collect()).collect();
    valgrind::zero_stats();
    for nbls in &chains {
        bench.chain(way, nbls);
    }
    valgrind::dump_stats_at(&format!(
        "bench {driver} {label} ports={ports} chain={chain} packets={} base={base:#x} size={size:#x}",
        calls * chain
    ));
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
                bench.packet(way, &spec);
            }
            valgrind::zero_stats();
            for _ in 0..packets {
                bench.packet(way, &spec);
            }
            valgrind::dump_stats_at(&format!("overhead {driver} {} packets={packets}", way.name()));
        }
        bench.finish();
    }
}

/// Packets/s with 1, 2, 4, ... up to `max` threads, and the ratio to 1,
/// through `portwatch` (default) or the `passthrough` baseline; each send
/// a chain of `--chain N` NBLs (default 1).
pub fn scaling(args: &[String]) {
    let (args, chain) = match args.iter().position(|a| a == "--chain") {
        Some(i) => {
            let n: usize = args.get(i + 1).and_then(|a| a.parse().ok()).expect("--chain N: a number");
            assert!(n > 0, "--chain N: at least 1");
            ([&args[..i], &args[(i + 2).min(args.len())..]].concat(), n)
        }
        None => (args.to_vec(), 1),
    };
    let max: usize = args.first().map_or(2, |a| a.parse().expect("max_threads: a number"));
    let seconds: f64 = args.get(1).map_or(2.0, |a| a.parse().expect("seconds: a number"));
    let driver = args.get(2).map_or("portwatch", String::as_str);
    let (bench, setup) = match driver {
        "portwatch" => (Bench::start(&Artifact::Driver.path(), true, 100), "send, 100 ports bound"),
        "passthrough" => (Bench::start(&Artifact::Passthrough.path(), false, 0), "send"),
        other => panic!("unknown driver {other}: portwatch or passthrough"),
    };
    let setup = if chain == 1 { setup.to_string() } else { format!("{setup}, chains of {chain}") };
    let mut threads = 1;
    let mut base = None;
    println!("| threads | packets/s ({driver}, {setup}) | ratio to 1 thread |\n|---|---|---|");
    while threads <= max {
        let rate = throughput(&bench, Way::Send, threads, chain, Duration::from_secs_f64(seconds));
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
