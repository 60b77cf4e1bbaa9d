//! Traffic generation and the counting oracle of the data path storm.
//!
//! A packet is counted by the driver exactly when it passed through a
//! Running PortWatch module: it then reaches the far end (a paused module
//! completes sends with NDIS_STATUS_PAUSED and returns receives), unless
//! the adapter has no PortWatch module at all (detached), or the NBL is
//! looped back (never counted). The generator therefore tallies a packet
//! under each of its (protocol, port) keys when its NBL was delivered, was
//! not looped back, and the adapter was attached for the whole call — which
//! the adapter gate guarantees: attach and detach take it exclusively.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use portwatch_proto::{PROTO_TCP, PROTO_UDP};

use crate::rng::Rng;
use crate::run::Run;
use crate::target::{Adapter, Direction, Level, NblSpec, PacketSpec, Target, TargetError};

/// IP protocol number of ICMP (never counted).
pub const PROTO_ICMP: u8 = 1;

/// (direction, protocol, port).
pub type Key = (Direction, u8, u16);

/// Packets and bytes per key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    counts: HashMap<Key, (u64, u64)>,
}

impl Tally {
    /// Counts one packet of `bytes` under `key`.
    pub fn add(&mut self, key: Key, bytes: u64) {
        let e = self.counts.entry(key).or_default();
        e.0 += 1;
        e.1 += bytes;
    }

    /// Adds everything in `other`.
    pub fn merge(&mut self, other: &Tally) {
        for (k, (p, b)) in &other.counts {
            let e = self.counts.entry(*k).or_default();
            e.0 += p;
            e.1 += b;
        }
    }

    /// (packets, bytes) counted under `key`.
    pub fn get(&self, key: Key) -> (u64, u64) {
        self.counts.get(&key).copied().unwrap_or_default()
    }

    /// Sum of (packets, bytes) in `direction` over `keys`.
    pub fn sum(&self, direction: Direction, keys: &[(u8, u16)]) -> (u64, u64) {
        keys.iter().map(|&(p, port)| self.get((direction, p, port))).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}

/// Whether each adapter has a PortWatch module, behind a gate: traffic holds
/// it shared for a whole injection, attach and detach exclusively.
pub struct Adapters {
    gates: Vec<RwLock<bool>>,
}

impl Adapters {
    /// `n` adapters, all attached.
    pub fn attached(n: usize) -> Self {
        Adapters { gates: (0..n).map(|_| RwLock::new(true)).collect() }
    }

    /// Number of adapters.
    pub fn len(&self) -> usize {
        self.gates.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }

    /// The gate of adapter `a`.
    pub fn gate(&self, a: usize) -> &RwLock<bool> {
        &self.gates[a]
    }
}

/// The ports traffic is drawn from.
#[derive(Debug, Clone)]
pub struct PortPool {
    /// Ports some endpoint binds for the whole run.
    pub stable: Vec<u16>,
    /// Ports endpoints bind and unbind during the run.
    pub churn: Vec<u16>,
    /// Ports nobody ever binds.
    pub noise: Vec<u16>,
}

impl PortPool {
    fn pick(&self, rng: &mut Rng) -> u16 {
        let set = match rng.below(10) {
            0..=3 => &self.stable,
            4..=6 => &self.churn,
            _ => &self.noise,
        };
        *rng.pick(set)
    }

    /// A random packet: TCP or UDP (ICMP now and then), IPv4 or IPv6,
    /// sometimes VLAN-tagged.
    pub fn packet(&self, rng: &mut Rng) -> PacketSpec {
        let protocol = match rng.below(20) {
            0 => PROTO_ICMP,
            1..=10 => PROTO_TCP,
            _ => PROTO_UDP,
        };
        PacketSpec {
            protocol,
            src_port: self.pick(rng),
            dst_port: self.pick(rng),
            ipv6: rng.chance(50),
            vlan: rng.chance(20),
            payload_len: rng.below(200) as u16,
            truncate_to: None,
        }
    }
}

fn random_level(rng: &mut Rng) -> Level {
    *rng.pick(&[Level::Passive, Level::Dispatch, Level::DispatchUnflagged])
}

/// Tallies what `results` of `nbls` mean for the counters (see the module docs).
pub fn tally_results(tally: &mut Tally, direction: Direction, nbls: &[NblSpec], results: &[crate::target::NblResult]) {
    for (nbl, result) in nbls.iter().zip(results) {
        if !result.delivered || nbl.loopback {
            continue;
        }
        for (packet, &bytes) in nbl.packets.iter().zip(&result.frame_bytes) {
            for (protocol, port) in packet.keys() {
                tally.add((direction, protocol, port), bytes);
            }
        }
    }
}

/// Injects `nbls` on adapter `a` under its gate and tallies them; returns
/// `Err` only for errors other than "unsupported".
pub fn inject_counted(
    t: &dyn Target,
    adapters: &Adapters,
    a: usize,
    (direction, level, resources): (Direction, Level, bool),
    nbls: &[NblSpec],
    tally: &mut Tally,
) -> Result<u64, TargetError> {
    let gate = adapters.gate(a).read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let results = t.inject(Adapter(a), direction, nbls, level, resources)?;
    if results.len() != nbls.len() {
        return Err(TargetError::Os(format!("{} NBLs injected, {} came back", nbls.len(), results.len())));
    }
    if *gate {
        tally_results(tally, direction, nbls, &results);
    }
    Ok(nbls.iter().map(|n| n.packets.len() as u64).sum())
}

/// One traffic worker: random batches both ways at every IRQL.
pub fn worker(t: &dyn Target, adapters: &Adapters, pool: &PortPool, run: &Run, mut rng: Rng, out: &Mutex<Tally>) {
    let mut tally = Tally::default();
    let mut receives = true;
    while run.next_op() {
        let a = rng.below(adapters.len() as u64) as usize;
        let direction = if receives && rng.chance(50) { Direction::Receive } else { Direction::Send };
        let per_nbl = if direction == Direction::Send { rng.range(1, 3) } else { 1 };
        let nbls: Vec<NblSpec> = (0..rng.range(1, 3))
            .map(|_| NblSpec {
                packets: (0..per_nbl).map(|_| pool.packet(&mut rng)).collect(),
                loopback: rng.chance(10),
                fragmented: rng.chance(25),
            })
            .collect();
        let resources = direction == Direction::Receive && rng.chance(30);
        match inject_counted(t, adapters, a, (direction, random_level(&mut rng), resources), &nbls, &mut tally) {
            Ok(n) => run.add_packets(n),
            Err(TargetError::Unsupported(_)) if direction == Direction::Receive => receives = false,
            Err(e) => run.error("inject", &e),
        }
        run.done_op();
    }
    out.lock().unwrap_or_else(std::sync::PoisonError::into_inner).merge(&tally);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::NblResult;

    #[test]
    fn only_delivered_non_loopback_packets_are_tallied_under_each_key() {
        let p = PacketSpec {
            protocol: PROTO_TCP,
            src_port: 1,
            dst_port: 2,
            ipv6: false,
            vlan: false,
            payload_len: 0,
            truncate_to: None,
        };
        let same = PacketSpec { src_port: 3, dst_port: 3, ..p };
        let icmp = PacketSpec { protocol: PROTO_ICMP, ..p };
        let nbls = vec![
            NblSpec { packets: vec![p, same, icmp], loopback: false, fragmented: false },
            NblSpec { packets: vec![p], loopback: true, fragmented: false },
            NblSpec { packets: vec![p], loopback: false, fragmented: false },
        ];
        let results = vec![
            NblResult { delivered: true, frame_bytes: vec![60, 70, 80] },
            NblResult { delivered: true, frame_bytes: vec![60] },
            NblResult { delivered: false, frame_bytes: vec![60] },
        ];
        let mut t = Tally::default();
        tally_results(&mut t, Direction::Send, &nbls, &results);
        assert_eq!(t.get((Direction::Send, PROTO_TCP, 1)), (1, 60));
        assert_eq!(t.get((Direction::Send, PROTO_TCP, 2)), (1, 60));
        assert_eq!(t.get((Direction::Send, PROTO_TCP, 3)), (1, 70));
        assert_eq!(t.get((Direction::Receive, PROTO_TCP, 1)), (0, 0));
        assert_eq!(t.counts.len(), 3);
    }
}
