//! The port table: (protocol, port) -> the endpoints bound to it, with the
//! per-binding traffic counters the data path updates.
//!
//! The table lives under the global NDIS RW lock: the data path reads it on
//! every packet (read lock, DISPATCH_LEVEL), bind/unbind write it. Under the
//! read lock a packet writes nothing but the atomic counters of the bindings
//! of its own ports: the table has no global counter, so packets on different
//! ports never write the same cache line.
//!
//! Lookups go through a two-level direct index: (protocol, high byte of
//! the port) selects a 256-slot leaf, the low byte a slot holding the
//! entry's position. Two loads, no hashing, no probing, no search: the cost
//! per packet is the same for 1 bound port and for 10,000. Leaves (1 KiB)
//! are allocated when a port in their range is first bound.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use portwatch_proto::{Counters, PROTO_TCP, PROTO_UDP};

use crate::pool::try_box;

/// Identifies an endpoint (one open handle) for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointId(pub u64);

/// A (protocol, port) pair, ordered by protocol then port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortKey {
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub protocol: u8,
    /// The port.
    pub port: u16,
}

/// Which way a packet went through the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Indicated up (FilterReceiveNetBufferLists).
    Rx,
    /// Passed down (FilterSendNetBufferLists).
    Tx,
}

/// Why a table change failed. A failed change leaves the table as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// The endpoint has already bound this port.
    AlreadyBound,
    /// The endpoint has not bound this port.
    NotBound,
    /// Pool allocation failed.
    NoMemory,
}

#[derive(Default)]
struct AtomicCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl AtomicCounters {
    fn add(&self, bytes: u64) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Counters {
        Counters { packets: self.packets.load(Ordering::Relaxed), bytes: self.bytes.load(Ordering::Relaxed) }
    }
}

/// Traffic one binding has counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Received.
    pub rx: Counters,
    /// Sent.
    pub tx: Counters,
}

impl Traffic {
    /// Adds `other` to `self`, saturating.
    pub fn accumulate(&mut self, other: &Traffic) {
        fn add(a: &mut Counters, b: &Counters) {
            a.packets = a.packets.saturating_add(b.packets);
            a.bytes = a.bytes.saturating_add(b.bytes);
        }
        add(&mut self.rx, &other.rx);
        add(&mut self.tx, &other.tx);
    }
}

struct Binding {
    endpoint: EndpointId,
    rx: AtomicCounters,
    tx: AtomicCounters,
}

impl Binding {
    fn traffic(&self) -> Traffic {
        Traffic { rx: self.rx.snapshot(), tx: self.tx.snapshot() }
    }
}

struct PortEntry {
    key: PortKey,
    bindings: Vec<Binding>,
}

/// Slots of one leaf: the low byte of a port.
const LEAF_SLOTS: usize = 256;
/// Leaves: two protocols times the high byte of a port.
const LEAVES: usize = 2 * 256;

/// Entry positions + 1 (0: no entry) for 256 consecutive ports.
type Leaf = [u32; LEAF_SLOTS];

/// The table. See the module docs.
#[derive(Default)]
pub struct PortTable {
    /// Keys with at least one binding, in no particular order.
    entries: Vec<PortEntry>,
    /// `LEAVES` leaf pointers once the first port is bound (empty before,
    /// so an unused table allocates nothing).
    index: Vec<Option<Box<Leaf>>>,
}

/// (leaf, slot) of a key, or `None` for a protocol the table never holds.
fn position(key: PortKey) -> Option<(usize, usize)> {
    let protocol = match key.protocol {
        PROTO_TCP => 0,
        PROTO_UDP => 1,
        _ => return None,
    };
    Some((protocol * 256 + usize::from(key.port >> 8), usize::from(key.port & 0xFF)))
}

impl PortTable {
    /// An empty table (allocates nothing).
    pub const fn new() -> Self {
        PortTable { entries: Vec::new(), index: Vec::new() }
    }

    /// The entry of `key`, if any: two loads.
    fn find(&self, key: PortKey) -> Option<usize> {
        let (leaf, slot) = position(key)?;
        let stored = self.index.get(leaf)?.as_ref()?[slot];
        stored.checked_sub(1).map(|i| i as usize)
    }

    /// The index slot of `key`, allocating its leaf (and the top level) if
    /// needed.
    fn slot_mut(&mut self, key: PortKey) -> Result<&mut u32, TableError> {
        let (leaf, slot) = position(key).ok_or(TableError::NoMemory)?;
        if self.index.is_empty() {
            self.index.try_reserve_exact(LEAVES).map_err(|_| TableError::NoMemory)?;
            self.index.resize_with(LEAVES, || None);
        }
        let leaf = &mut self.index[leaf];
        if leaf.is_none() {
            *leaf = Some(try_box([0u32; LEAF_SLOTS]).map_err(|_| TableError::NoMemory)?);
        }
        match leaf {
            Some(leaf) => Ok(&mut leaf[slot]),
            None => Err(TableError::NoMemory), // unreachable: allocated above
        }
    }

    /// Points `key`'s slot at entry `i` (or clears it with `None`). The
    /// slot's leaf exists: the key was inserted before.
    fn set_slot(&mut self, key: PortKey, i: Option<usize>) {
        if let Some((leaf, slot)) = position(key) {
            if let Some(Some(leaf)) = self.index.get_mut(leaf) {
                // Entry counts stay far below u32::MAX (2 * 65536 keys).
                leaf[slot] = i.map_or(0, |i| i as u32 + 1);
            }
        }
    }

    /// Binds `endpoint` to `key`.
    pub fn bind(&mut self, key: PortKey, endpoint: EndpointId) -> Result<(), TableError> {
        let binding = Binding { endpoint, rx: AtomicCounters::default(), tx: AtomicCounters::default() };
        if let Some(i) = self.find(key) {
            let bindings = &mut self.entries[i].bindings;
            if bindings.iter().any(|b| b.endpoint == endpoint) {
                return Err(TableError::AlreadyBound);
            }
            bindings.try_reserve(1).map_err(|_| TableError::NoMemory)?;
            bindings.push(binding);
            return Ok(());
        }
        // Every allocation first, so a failure leaves the table unchanged.
        let mut bindings = Vec::new();
        bindings.try_reserve_exact(1).map_err(|_| TableError::NoMemory)?;
        self.entries.try_reserve(1).map_err(|_| TableError::NoMemory)?;
        let position = self.entries.len();
        *self.slot_mut(key)? = position as u32 + 1;
        bindings.push(binding);
        self.entries.push(PortEntry { key, bindings });
        Ok(())
    }

    /// Unbinds `endpoint` from `key`, returning what the binding counted.
    pub fn unbind(&mut self, key: PortKey, endpoint: EndpointId) -> Result<Traffic, TableError> {
        let i = self.find(key).ok_or(TableError::NotBound)?;
        let bindings = &mut self.entries[i].bindings;
        let at = bindings.iter().position(|b| b.endpoint == endpoint).ok_or(TableError::NotBound)?;
        let traffic = bindings.swap_remove(at).traffic();
        if bindings.is_empty() {
            self.entries.swap_remove(i);
            self.set_slot(key, None);
            if let Some(moved) = self.entries.get(i).map(|e| e.key) {
                self.set_slot(moved, Some(i));
            }
        }
        Ok(traffic)
    }

    /// Counts one packet of `bytes` on `key` for every endpoint bound to it.
    /// Called under the read lock: only atomic counters are written.
    pub fn count(&self, key: PortKey, direction: Direction, bytes: u64) {
        let Some(i) = self.find(key) else { return };
        for binding in &self.entries[i].bindings {
            match direction {
                Direction::Rx => binding.rx.add(bytes),
                Direction::Tx => binding.tx.add(bytes),
            }
        }
    }

    /// What `endpoint`'s binding of `key` has counted, if it exists.
    pub fn binding_traffic(&self, key: PortKey, endpoint: EndpointId) -> Option<Traffic> {
        let i = self.find(key)?;
        self.entries[i].bindings.iter().find(|b| b.endpoint == endpoint).map(Binding::traffic)
    }

    /// Endpoints bound to `key` and the sum of what their bindings counted.
    pub fn port_traffic(&self, key: PortKey) -> (u32, Traffic) {
        let mut total = Traffic::default();
        let Some(i) = self.find(key) else { return (0, total) };
        let bindings = &self.entries[i].bindings;
        for b in bindings {
            total.accumulate(&b.traffic());
        }
        (u32::try_from(bindings.len()).unwrap_or(u32::MAX), total)
    }

    /// Number of distinct (protocol, port) keys with at least one binding.
    pub fn bound_keys(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: EndpointId = EndpointId(1);
    const B: EndpointId = EndpointId(2);
    fn tcp(port: u16) -> PortKey {
        PortKey { protocol: 6, port }
    }
    fn udp(port: u16) -> PortKey {
        PortKey { protocol: 17, port }
    }

    #[test]
    fn bind_count_unbind() {
        let mut t = PortTable::new();
        t.bind(tcp(80), A).unwrap();
        t.bind(tcp(80), B).unwrap();
        t.bind(udp(80), A).unwrap();
        t.count(tcp(80), Direction::Rx, 100);
        t.count(tcp(80), Direction::Tx, 60);
        t.count(udp(80), Direction::Rx, 7);
        t.count(tcp(81), Direction::Rx, 1000);
        let a = t.binding_traffic(tcp(80), A).unwrap();
        assert_eq!(a.rx, Counters { packets: 1, bytes: 100 });
        assert_eq!(a.tx, Counters { packets: 1, bytes: 60 });
        assert_eq!(t.port_traffic(tcp(80)).0, 2);
        assert_eq!(t.port_traffic(tcp(80)).1.rx, Counters { packets: 2, bytes: 200 });
        assert_eq!(t.port_traffic(udp(80)).1.rx, Counters { packets: 1, bytes: 7 });
        assert_eq!(t.port_traffic(tcp(81)), (0, Traffic::default()));
        assert_eq!(t.unbind(tcp(80), A).unwrap(), a);
        assert_eq!(t.binding_traffic(tcp(80), A), None);
        assert_eq!(t.bound_keys(), 2);
        t.unbind(tcp(80), B).unwrap();
        t.unbind(udp(80), A).unwrap();
        assert_eq!(t.bound_keys(), 0);
    }

    #[test]
    fn duplicate_and_unknown_are_errors_that_change_nothing() {
        let mut t = PortTable::new();
        t.bind(udp(53), A).unwrap();
        assert_eq!(t.bind(udp(53), A), Err(TableError::AlreadyBound));
        assert_eq!(t.unbind(udp(54), A), Err(TableError::NotBound));
        assert_eq!(t.unbind(udp(53), B), Err(TableError::NotBound));
        assert_eq!(t.port_traffic(udp(53)).0, 1);
        assert_eq!(t.bound_keys(), 1);
    }

    #[test]
    fn keys_stay_findable_at_scale_and_after_removals() {
        let mut t = PortTable::new();
        // Insert in a scrambled order, over both protocols and every leaf.
        let port = |i: u32| ((i * 7919) % 65_535) as u16 + 1;
        for i in 0..10_000u32 {
            t.bind(tcp(port(i)), A).unwrap();
            t.bind(udp(port(i)), B).unwrap();
        }
        for i in 0..10_000u32 {
            t.count(tcp(port(i)), Direction::Tx, u64::from(port(i)));
            assert_eq!(t.binding_traffic(tcp(port(i)), A).unwrap().tx.bytes, u64::from(port(i)));
            assert_eq!(t.binding_traffic(udp(port(i)), B).unwrap().tx.packets, 0);
        }
        // Remove every other key: the moved entries must stay reachable.
        for i in (0..10_000u32).step_by(2) {
            t.unbind(tcp(port(i)), A).unwrap();
        }
        for i in 0..10_000u32 {
            assert_eq!(t.binding_traffic(tcp(port(i)), A).is_some(), i % 2 == 1, "port {}", port(i));
        }
        assert_eq!(t.bound_keys(), 15_000);
        for i in (1..10_000u32).step_by(2) {
            t.unbind(tcp(port(i)), A).unwrap();
            t.unbind(udp(port(i - 1)), B).unwrap();
            t.unbind(udp(port(i)), B).unwrap();
        }
        assert_eq!(t.bound_keys(), 0);
        assert!(t.index.iter().flatten().all(|leaf| leaf.iter().all(|slot| *slot == 0)));
    }

    #[test]
    fn other_protocols_are_never_found() {
        let mut t = PortTable::new();
        t.bind(tcp(80), A).unwrap();
        assert_eq!(t.binding_traffic(PortKey { protocol: 1, port: 80 }, A), None);
        t.count(PortKey { protocol: 1, port: 80 }, Direction::Rx, 1);
        assert_eq!(t.port_traffic(tcp(80)).1.rx.packets, 0);
    }

    #[test]
    fn accumulate_saturates() {
        let mut a = Traffic { rx: Counters { packets: u64::MAX, bytes: 1 }, ..Traffic::default() };
        a.accumulate(&Traffic { rx: Counters { packets: 5, bytes: 2 }, ..Traffic::default() });
        assert_eq!(a.rx, Counters { packets: u64::MAX, bytes: 3 });
    }
}
