//! The drivers the benchmarks measure run in the harness: PortWatch
//! attaches and forwards with ports bound, and two threads passing packets
//! through one adapter at once get every NBL back (each operation completes
//! its own NBLs, whichever thread finishes first).
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use portwatch_bench::artifacts::Artifact;
use portwatch_bench::run::{udp_packet, Bench, Way, BASE_PORT};

/// Packets per thread and way in the concurrent test.
const PER_THREAD: u16 = 1000;

fn portwatch(ports: u16) -> Bench {
    Bench::start(&Artifact::Driver.path(), true, ports)
}

fn passthrough() -> Bench {
    Bench::start(&Artifact::Passthrough.path(), false, 0)
}

/// Two threads, each alternating sends and receives; `Bench::packet` fails
/// on any verifier violation (an NBL not back when its operation returns
/// included) and on a dropped packet.
fn two_threads(bench: &Bench, ports: u16) {
    std::thread::scope(|scope| {
        for t in 0..2u16 {
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let dst = BASE_PORT + (i + t) % ports.max(1);
                    bench.packet(Way::Send, &udp_packet(dst));
                    bench.packet(Way::Receive, &udp_packet(dst));
                }
            });
        }
    });
}

#[test]
fn portwatch_forwards_every_packet_with_ports_bound() {
    let bench = portwatch(100);
    for port in [BASE_PORT, BASE_PORT + 50, BASE_PORT + 99, BASE_PORT + 100] {
        bench.packet(Way::Send, &udp_packet(port));
        bench.packet(Way::Receive, &udp_packet(port));
    }
    bench.finish();
}

#[test]
fn two_threads_through_the_passthrough_filter_get_every_nbl_back() {
    let bench = passthrough();
    two_threads(&bench, 1);
    bench.finish();
}

#[test]
fn two_threads_through_portwatch_get_every_nbl_back() {
    let bench = portwatch(8);
    two_threads(&bench, 8);
    bench.finish();
}
