//! Scenario 2 at CI size, under special pool, and proof that its exact
//! check catches a single miscounted packet.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::forward::{Forward, Hooks};
use portwatch_scenarios::target::{Direction, NblResult, NblSpec, TargetError};
use portwatch_scenarios::Scenario;

#[test]
fn datapath_storm_counts_exactly() {
    let t = common::target();
    let s = Scenario::DataPath.run(&t, &common::params(2));
    common::assert_clean(&s, common::OPS);
    assert!(s.packets > common::OPS, "{s}");
}

/// Claims one delivered NBL was not delivered: the counters then disagree
/// with the tally by exactly that NBL.
struct HidesOneDelivery {
    hidden: AtomicBool,
}

impl Hooks for HidesOneDelivery {
    fn inject(
        &self,
        _direction: Direction,
        nbls: &[NblSpec],
        results: Result<Vec<NblResult>, TargetError>,
    ) -> Result<Vec<NblResult>, TargetError> {
        let mut results = results?;
        // TCP port 10000 is bound by stable endpoints 0 and 2 for the whole run.
        let on_a_stable_port =
            |n: &NblSpec| n.packets.iter().any(|p| p.keys().contains(&(portwatch_proto::PROTO_TCP, 10_000)));
        for (nbl, result) in nbls.iter().zip(&mut results) {
            if result.delivered && !nbl.loopback && on_a_stable_port(nbl) && !self.hidden.swap(true, Ordering::SeqCst) {
                result.delivered = false;
            }
        }
        Ok(results)
    }
}

#[test]
fn one_miscounted_packet_fails_the_check() {
    let t = Forward { inner: common::target(), hooks: HidesOneDelivery { hidden: AtomicBool::new(false) } };
    let s = Scenario::DataPath.run(&t, &portwatch_scenarios::Params::ops(2, 300, 3));
    assert!(t.hooks.hidden.load(Ordering::SeqCst), "no NBL was hidden");
    assert!(s.violations.is_empty() && s.leaks.is_empty(), "{s}");
    assert!(s.failures.iter().any(|f| f.contains("stable endpoint")), "the exact check missed it:\n{s}");
}

/// The storm sends traffic both ways before any port is bound (the path
/// that forwards what it does not count), and runts cut inside their
/// headers (a parser must stop at the NET_BUFFER's DataLength).
#[test]
fn traffic_flows_before_any_bind_and_includes_runts() {
    let t = common::recording::Recording::new(common::target());
    let s = Scenario::DataPath.run(&t, &portwatch_scenarios::Params::ops(2, 300, 3));
    common::assert_clean(&s, 300);
    let events = t.events();
    let first_bind = events
        .iter()
        .position(|e| matches!(e, common::recording::Event::Ioctl(portwatch_proto::IOCTL_BIND_PORT, ..)))
        .expect("the storm binds ports");
    for d in [Direction::Send, Direction::Receive] {
        assert!(
            events[..first_bind].iter().any(|e| matches!(e, common::recording::Event::Inject(x, _) if *x == d)),
            "no {d:?} before the first bind"
        );
    }
    let runts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            common::recording::Event::Inject(_, nbls) => Some(nbls),
            _ => None,
        })
        .flatten()
        .flat_map(|n| &n.packets)
        .filter(|p| p.truncate_to.is_some_and(|n| usize::from(n) < p.ports_end()))
        .collect();
    assert!(runts.iter().any(|p| p.truncate_to == Some(p.ports_end() as u16 - 1)), "no runt cut in its ports");
    assert!(runts.iter().any(|p| p.truncate_to < Some(14)), "no runt cut in its Ethernet header");
}
