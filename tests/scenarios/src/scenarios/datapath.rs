//! Scenario 2, the data path storm: traffic both ways on every adapter at
//! PASSIVE and DISPATCH_LEVEL while churn endpoints bind and unbind ports.
//!
//! The check is exact. *Stable* endpoints bind their ports before the
//! traffic starts and keep them to the end (neighbouring endpoints share
//! one port, so a packet is counted for several endpoints); each traffic
//! worker tallies what it injected per (direction, protocol, port) with the
//! oracle of [`super::traffic`]; at the end every stable endpoint's
//! counters, and every stable port's counters, must equal the tallies
//! exactly. *Churn* endpoints use ports of their own: during the storm
//! their bound-port count must match what their (single) churner did, at
//! the end their counters may not exceed the traffic on their ports, and a
//! final quiescent round — known packets on a port bound just for it — must
//! move their counters by exactly that traffic. Ports nobody binds must
//! show nothing.

use std::collections::BTreeSet;
use std::sync::Mutex;

use portwatch_proto::{EndpointStats, PROTO_TCP, PROTO_UDP};

use super::traffic::{self, Adapters, PortPool, Tally};
use crate::client::{self, status};
use crate::rng::Rng;
use crate::run::Run;
use crate::target::{Direction, Handle, Level, NblSpec, PacketSpec, Target, TargetError};

const STABLE_BASE: u16 = 10_000;
const CHURN_BASE: u16 = 20_000;
const NOISE_BASE: u16 = 30_000;
const CHURN_PORTS: u16 = 4;

/// An endpoint that keeps its ports for the whole run.
pub struct Stable {
    /// Its handle.
    pub handle: Handle,
    /// Its (protocol, port) keys.
    pub keys: Vec<(u8, u16)>,
}

/// An endpoint whose ports come and go.
pub struct Churn {
    /// Its handle.
    pub handle: Handle,
    /// Every key it may bind.
    pub keys: Vec<(u8, u16)>,
    /// Keys bound now (only its churner changes them).
    pub bound: Mutex<BTreeSet<(u8, u16)>>,
    /// The key of the final quiescent round.
    pub probe: (u8, u16),
}

/// The endpoints of one storm.
pub struct Endpoints {
    /// Stable endpoints.
    pub stable: Vec<Stable>,
    /// Churn endpoints.
    pub churn: Vec<Churn>,
    /// Where traffic goes.
    pub pool: PortPool,
}

fn stable_keys(i: usize, n: usize) -> Vec<(u8, u16)> {
    let port = |j: usize, k: u16| STABLE_BASE + 10 * j as u16 + k;
    let mut keys =
        vec![(PROTO_TCP, port(i, 0)), (PROTO_TCP, port(i, 1)), (PROTO_UDP, port(i, 0)), (PROTO_UDP, port(i, 2))];
    let shared = (PROTO_TCP, port((i + 1) % n, 0));
    if !keys.contains(&shared) {
        keys.push(shared);
    }
    keys
}

fn churn_keys(j: usize) -> Vec<(u8, u16)> {
    let base = CHURN_BASE + 100 * j as u16;
    (0..CHURN_PORTS).flat_map(|k| [(PROTO_TCP, base + k), (PROTO_UDP, base + k)]).collect()
}

impl Endpoints {
    /// Opens `stable` + `churn` endpoints and binds the stable ones.
    pub fn open(t: &dyn Target, stable: usize, churn: usize) -> Result<Self, TargetError> {
        let mut s = Vec::new();
        for i in 0..stable {
            let handle = t.open()?;
            let keys = stable_keys(i, stable);
            for &(p, port) in &keys {
                client::bind(t, handle, p, port)?;
            }
            s.push(Stable { handle, keys });
        }
        let mut c = Vec::new();
        for j in 0..churn {
            let probe = (PROTO_UDP, CHURN_BASE + 100 * j as u16 + 50);
            c.push(Churn { handle: t.open()?, keys: churn_keys(j), bound: Mutex::new(BTreeSet::new()), probe });
        }
        let mut stable_ports: Vec<u16> = s.iter().flat_map(|e| e.keys.iter().map(|k| k.1)).collect();
        stable_ports.sort_unstable();
        stable_ports.dedup();
        let mut churn_ports: Vec<u16> = c.iter().flat_map(|e| e.keys.iter().map(|k| k.1)).collect();
        churn_ports.dedup();
        if churn_ports.is_empty() {
            churn_ports.push(CHURN_BASE + 99);
        }
        if stable_ports.is_empty() {
            stable_ports.push(STABLE_BASE + 9);
        }
        let noise = (NOISE_BASE..NOISE_BASE + 8).collect();
        Ok(Endpoints { stable: s, churn: c, pool: PortPool { stable: stable_ports, churn: churn_ports, noise } })
    }

    /// Closes every endpoint.
    pub fn close(&self, t: &dyn Target, run: &Run) {
        for h in self.stable.iter().map(|e| e.handle).chain(self.churn.iter().map(|e| e.handle)) {
            if let Err(e) = t.close(h) {
                run.error("close", &e);
            }
        }
    }
}

fn expect_status(run: &Run, what: &str, got: Result<(), TargetError>, want: i32) {
    let got_status = match &got {
        Ok(()) => status::SUCCESS,
        Err(TargetError::Status(s)) => *s,
        Err(e) => return run.error(what, e),
    };
    if got_status != want {
        run.fail(format!("{what}: status {:#x}, expected {:#x}", got_status as u32, want as u32));
    }
}

/// One churner: binds and unbinds its endpoint's ports, now and then on
/// purpose the wrong way round, checking every status and the bound count.
pub fn churner(t: &dyn Target, e: &Churn, run: &Run, mut rng: Rng) {
    while run.next_op() {
        let key = *rng.pick(&e.keys);
        let mut bound = e.bound.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let is_bound = bound.contains(&key);
        let wrong_way = rng.chance(10);
        if is_bound != wrong_way {
            let want = if is_bound { status::SUCCESS } else { status::NOT_FOUND };
            expect_status(run, "unbind", client::unbind(t, e.handle, key.0, key.1), want);
            bound.remove(&key);
        } else {
            let want = if is_bound { status::DUPLICATE_OBJECTID } else { status::SUCCESS };
            expect_status(run, "bind", client::bind(t, e.handle, key.0, key.1), want);
            bound.insert(key);
        }
        if rng.chance(10) {
            match client::endpoint_stats(t, e.handle) {
                Ok(s) if s.bound_ports as usize == bound.len() => {}
                Ok(s) => run.fail(format!("churn endpoint reports {} bound ports, has {}", s.bound_ports, bound.len())),
                Err(err) => run.error("endpoint stats", &err),
            }
        }
        run.done_op();
    }
}

fn stats_of(t: &dyn Target, h: Handle, run: &Run) -> Option<EndpointStats> {
    client::endpoint_stats(t, h).map_err(|e| run.error("endpoint stats", &e)).ok()
}

fn compare(run: &Run, exact: bool, what: &str, got: (u64, u64), want: (u64, u64)) {
    let ok = if exact { got == want } else { got.0 >= want.0 && got.1 >= want.1 };
    if !ok {
        run.fail(format!("{what}: counted (packets, bytes) {got:?}, injected {want:?}"));
    }
}

/// The exact checks on stable endpoints, stable ports and noise ports.
pub fn check_stable(t: &dyn Target, eps: &Endpoints, tally: &Tally, run: &Run) {
    let exact = t.exact_traffic();
    for (i, e) in eps.stable.iter().enumerate() {
        let Some(s) = stats_of(t, e.handle, run) else { return };
        if s.bound_ports as usize != e.keys.len() {
            run.fail(format!("stable endpoint {i}: {} bound ports, expected {}", s.bound_ports, e.keys.len()));
        }
        compare(
            run,
            exact,
            &format!("stable endpoint {i} rx"),
            (s.rx.packets, s.rx.bytes),
            tally.sum(Direction::Receive, &e.keys),
        );
        compare(
            run,
            exact,
            &format!("stable endpoint {i} tx"),
            (s.tx.packets, s.tx.bytes),
            tally.sum(Direction::Send, &e.keys),
        );
    }
    let Some(first) = eps.stable.first() else { return };
    let mut keys: Vec<(u8, u16)> = eps.stable.iter().flat_map(|e| e.keys.iter().copied()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let binders = eps.stable.iter().filter(|e| e.keys.contains(&key)).count() as u64;
        match client::port_stats(t, first.handle, key.0, key.1) {
            Ok(p) => {
                if u64::from(p.endpoints) != binders {
                    run.fail(format!("port {key:?}: {} endpoints, expected {binders}", p.endpoints));
                }
                for (dir, got) in [(Direction::Receive, p.rx), (Direction::Send, p.tx)] {
                    let (pk, by) = tally.get((dir, key.0, key.1));
                    compare(
                        run,
                        exact,
                        &format!("port {key:?} {dir:?}"),
                        (got.packets, got.bytes),
                        (pk * binders, by * binders),
                    );
                }
            }
            Err(e) => run.error("port stats", &e),
        }
    }
    for &port in &eps.pool.noise {
        match client::port_stats(t, first.handle, PROTO_TCP, port) {
            Ok(p) if p.endpoints == 0 && p.rx.packets == 0 && p.tx.packets == 0 => {}
            other => run.fail(format!("unbound port {port} shows {other:?}")),
        }
    }
}

/// Churn endpoints: bounded during the storm, exact in a quiescent round.
pub fn check_churn(t: &dyn Target, eps: &Endpoints, adapters: &Adapters, tally: &Tally, run: &Run) {
    for (j, e) in eps.churn.iter().enumerate() {
        let Some(before) = stats_of(t, e.handle, run) else { return };
        let bound = e.bound.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        if before.bound_ports as usize != bound {
            run.fail(format!("churn endpoint {j}: {} bound ports, has {bound}", before.bound_ports));
        }
        let (rx_max, tx_max) = (tally.sum(Direction::Receive, &e.keys), tally.sum(Direction::Send, &e.keys));
        if t.exact_traffic() && (before.rx.packets > rx_max.0 || before.tx.packets > tx_max.0) {
            run.fail(format!(
                "churn endpoint {j} counted {before:?}, more than the traffic on its ports ({rx_max:?}, {tx_max:?})"
            ));
        }
        quiescent_round(t, e, adapters, before, run);
    }
}

fn quiescent_round(t: &dyn Target, e: &Churn, adapters: &Adapters, before: EndpointStats, run: &Run) {
    let (p, port) = e.probe;
    if let Err(err) = client::bind(t, e.handle, p, port) {
        if err != TargetError::Status(status::QUOTA_EXCEEDED) {
            run.error("probe bind", &err);
        }
        return;
    }
    let packet = PacketSpec {
        protocol: p,
        src_port: NOISE_BASE,
        dst_port: port,
        ipv6: false,
        vlan: false,
        payload_len: 10,
        truncate_to: None,
    };
    let nbls = vec![NblSpec { packets: vec![packet; 2], loopback: false, fragmented: false }];
    let mut tally = Tally::default();
    for a in 0..adapters.len() {
        for (dir, level) in [(Direction::Send, Level::Dispatch), (Direction::Receive, Level::Passive)] {
            let nbls = if dir == Direction::Receive {
                vec![NblSpec { packets: vec![packet], ..nbls[0].clone() }]
            } else {
                nbls.clone()
            };
            match traffic::inject_counted(t, adapters, a, (dir, level, false), &nbls, &mut tally) {
                Ok(n) => run.add_packets(n),
                Err(TargetError::Unsupported(_)) => {}
                Err(err) => run.error("probe inject", &err),
            }
        }
    }
    if let Some(after) = stats_of(t, e.handle, run) {
        let exact = t.exact_traffic();
        let rx = (after.rx.packets - before.rx.packets, after.rx.bytes - before.rx.bytes);
        let tx = (after.tx.packets - before.tx.packets, after.tx.bytes - before.tx.bytes);
        compare(run, exact, "quiescent rx", rx, tally.sum(Direction::Receive, &[e.probe]));
        compare(run, exact, "quiescent tx", tx, tally.sum(Direction::Send, &[e.probe]));
        if exact && tally.sum(Direction::Send, &[e.probe]).0 == 0 {
            run.fail("quiescent round: no packet reached a running module");
        }
    }
    if let Err(err) = client::unbind(t, e.handle, p, port) {
        run.error("probe unbind", &err);
    }
}

/// With everything quiet: the driver lists one Running module per adapter.
pub fn check_modules(t: &dyn Target, h: Handle, run: &Run) {
    if !t.exact_traffic() {
        return;
    }
    match client::modules(t, h, t.adapter_count() + 4) {
        Ok(m)
            if m.len() == t.adapter_count()
                && m.iter().all(|i| i.state == portwatch_proto::ModuleState::Running as u32) => {}
        other => run.fail(format!("modules after the storm: {other:?}, expected {} Running", t.adapter_count())),
    }
}

/// How many threads of `threads` churn (the rest send traffic).
pub fn churners(threads: usize) -> usize {
    (threads / 3).min(2)
}

/// Before any endpoint binds a port: traffic both ways on every adapter at
/// every IRQL, whole frames and runts cut inside their headers (a parser
/// must stop at the NET_BUFFER's DataLength). With nothing bound nothing is
/// counted, but every NBL must still be passed on and come back (a running
/// filter forwards what it does not count; the target reports an NBL that
/// never returns).
pub fn unbound_round(t: &dyn Target, adapters: &Adapters, run: &Run) {
    let whole = |protocol, ipv6, vlan| PacketSpec {
        protocol,
        src_port: NOISE_BASE,
        dst_port: NOISE_BASE + 1,
        ipv6,
        vlan,
        payload_len: 0,
        truncate_to: None,
    };
    let mut packets = Vec::new();
    for (protocol, ipv6, vlan) in
        [(PROTO_TCP, false, false), (PROTO_UDP, true, false), (PROTO_TCP, true, true), (PROTO_UDP, false, true)]
    {
        let p = whole(protocol, ipv6, vlan);
        packets.push(p);
        // Cut in the Ethernet header, the IP header and the ports.
        for n in [6, 16, p.ports_end() as u16 - 12, p.ports_end() as u16 - 1] {
            packets.push(PacketSpec { truncate_to: Some(n), ..p });
        }
    }
    for a in 0..adapters.len() {
        for direction in [Direction::Send, Direction::Receive] {
            for level in [Level::Passive, Level::Dispatch, Level::DispatchUnflagged] {
                let nbls: Vec<NblSpec> =
                    packets.iter().map(|p| NblSpec { packets: vec![*p], loopback: false, fragmented: false }).collect();
                let mut ignored = Tally::default();
                match traffic::inject_counted(t, adapters, a, (direction, level, false), &nbls, &mut ignored) {
                    Ok(n) => run.add_packets(n),
                    Err(TargetError::Unsupported(_)) => {}
                    Err(e) => return run.error("inject with nothing bound", &e),
                }
            }
        }
    }
}

/// Runs the storm: `threads` workers (traffic and churners), plus, with
/// `lifecycle`, one thread per adapter changing its module's state.
pub fn storm(t: &dyn Target, run: &Run, threads: usize, seed: u64, adapters: &Adapters, lifecycle: bool) {
    if !lifecycle {
        unbound_round(t, adapters, run);
    }
    let eps = match Endpoints::open(t, 3, churners(threads)) {
        Ok(e) => e,
        Err(e) => return run.error("open endpoints", &e),
    };
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for (j, e) in eps.churn.iter().enumerate() {
            let rng = Rng::new(seed, 200 + j as u64);
            s.spawn(move || churner(t, e, run, rng));
        }
        for i in 0..threads - eps.churn.len() {
            let (pool, tally, rng) = (&eps.pool, &tally, Rng::new(seed, 300 + i as u64));
            s.spawn(move || traffic::worker(t, adapters, pool, run, rng, tally));
        }
        if lifecycle {
            for a in 0..adapters.len() {
                let rng = Rng::new(seed, 400 + a as u64);
                s.spawn(move || super::lifecycle::adapter_worker(t, adapters, a, run, rng));
            }
        }
    });
    let tally = tally.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    check_stable(t, &eps, &tally, run);
    check_churn(t, &eps, adapters, &tally, run);
    if let Some(e) = eps.stable.first() {
        check_modules(t, e.handle, run);
    }
    eps.close(t, run);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_endpoints_share_exactly_one_port_with_a_neighbour() {
        let all: Vec<Vec<(u8, u16)>> = (0..3).map(|i| stable_keys(i, 3)).collect();
        for i in 0..3 {
            let shared = all[i].iter().filter(|k| all[(i + 1) % 3].contains(k)).count();
            assert_eq!(shared, 1, "{all:?}");
        }
        assert_eq!(stable_keys(0, 1).len(), 4, "a lone endpoint binds no duplicate");
        let churn: Vec<_> = churn_keys(0).into_iter().chain(churn_keys(1)).collect();
        assert!(churn.iter().all(|k| all.iter().all(|s| !s.contains(k))));
    }
}
