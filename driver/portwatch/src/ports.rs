//! The port table: (protocol, port) -> the endpoints bound to it, with the
//! per-binding traffic counters the data path updates.
//!
//! The table lives under the global NDIS RW lock: the data path reads it on
//! every packet (read lock, DISPATCH_LEVEL), bind/unbind write it. Under the
//! read lock a packet writes nothing but the atomic counters of the bindings
//! of its own ports, in its own processor's slot (see [`crate::percpu`]):
//! the table has no global counter, and packets on different processors
//! never write the same cache line.
//!
//! Lookups go through a two-level direct index: (protocol, high byte of
//! the port) selects a 256-slot leaf, the low byte a slot holding the list
//! of the port's bindings. Two loads, no hashing, no probing, no search: the
//! cost per packet is the same for 1 bound port and for 10,000.
//!
//! Nothing is allocated or freed under the write lock: a bind allocates its
//! binding (and the leaf, if its range has none yet) before the lock is
//! taken ([`BindMemory`]), and an unbind hands the binding back
//! ([`Unbound`]) to be freed after the lock is released. Under the lock a
//! bind or unbind only moves pointers, so the writer keeps readers (the data
//! path on every processor) waiting for a few dozen instructions.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

use portwatch_proto::{Counters, PROTO_TCP, PROTO_UDP};

use crate::events::{EventSink, SinkRef};
use crate::percpu::{add_local, Cpu, NoSlot, PerCpu};
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
    /// The endpoint has not bound this port.
    NotBound,
    /// Pool allocation failed.
    NoMemory,
}

/// What one processor counted for one binding (see [`crate::percpu`]):
/// written only by that processor, at DISPATCH_LEVEL.
#[derive(Default)]
struct CpuTraffic {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
}

impl CpuTraffic {
    fn add(&self, direction: Direction, bytes: u64) {
        let (packets, total) = match direction {
            Direction::Rx => (&self.rx_packets, &self.rx_bytes),
            Direction::Tx => (&self.tx_packets, &self.tx_bytes),
        };
        add_local(packets, 1);
        add_local(total, bytes);
    }

    fn snapshot(&self) -> Traffic {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Traffic {
            rx: Counters { packets: load(&self.rx_packets), bytes: load(&self.rx_bytes) },
            tx: Counters { packets: load(&self.tx_packets), bytes: load(&self.tx_bytes) },
        }
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

/// One endpoint bound to one port: a node of the port's binding list.
pub struct Binding {
    endpoint: EndpointId,
    /// Per processor, so that packets on different processors never write
    /// one cache line.
    counters: PerCpu<CpuTraffic>,
    /// The endpoint's event sink; valid while the binding is in the table
    /// (see [`SinkRef`]).
    sink: Option<SinkRef>,
    next: Option<Box<Binding>>,
}

impl Binding {
    /// The sum over processors.
    fn traffic(&self) -> Traffic {
        let mut total = Traffic::default();
        for cpu in self.counters.iter() {
            total.accumulate(&cpu.snapshot());
        }
        total
    }

    /// Whether the endpoint enabled events (one relaxed load).
    #[inline(always)]
    fn is_watched(&self) -> bool {
        self.sink.as_ref().is_some_and(|s| s.is_enabled())
    }

    fn iter(&self) -> impl Iterator<Item = &Binding> {
        core::iter::successors(Some(self), |b| b.next.as_deref())
    }
}

impl Drop for Binding {
    // Iterative, so that a long list cannot recurse through the small
    // kernel stack.
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(mut node) = next {
            next = node.next.take();
        }
    }
}

/// What the counting loop does with each matching binding after counting
/// it. Two kinds, so that the loop is compiled twice: with [`NoEvents`]
/// (no endpoint has events enabled: the loop only counts, as it did before
/// the event stream) and with `Cell<bool>` (notes whether the packet is
/// watched). The caller picks one per chain from
/// [`PortTable::any_events`].
pub trait Watch: Default {
    /// Called for each binding the packet was counted for.
    fn see(&self, binding: &Binding);
    /// Marks the packet watched (a watched packet found elsewhere).
    fn mark(&self);
    /// Whether a packet seen was watched.
    fn watched(&self) -> bool;
}

/// Counting only: no endpoint has events enabled.
#[derive(Default)]
pub struct NoEvents;

impl Watch for NoEvents {
    #[inline(always)]
    fn see(&self, _: &Binding) {}
    #[inline(always)]
    fn mark(&self) {}
    #[inline(always)]
    fn watched(&self) -> bool {
        false
    }
}

/// Counting and noting watched packets: a cell in the caller's frame,
/// written only for a watched packet, so that a packet on no watched port
/// carries no flag through the lookups.
impl Watch for Cell<bool> {
    #[inline(always)]
    fn see(&self, binding: &Binding) {
        if binding.is_watched() {
            self.set(true);
        }
    }
    #[inline(always)]
    fn mark(&self) {
        self.set(true);
    }
    #[inline(always)]
    fn watched(&self) -> bool {
        self.get()
    }
}

/// The bindings of a port, for the event stream's second look.
pub struct Bound<'a>(&'a Binding);

impl<'a> Bound<'a> {
    /// The event sinks of those bindings whose endpoint enabled events.
    pub fn sinks(&self) -> impl Iterator<Item = &'a SinkRef> {
        self.0.iter().filter(|b| b.is_watched()).filter_map(|b| b.sink.as_ref())
    }
}

/// A slot of a leaf: the bindings of one port, newest first.
type Slot = Option<Box<Binding>>;

/// Slots of one leaf: the low byte of a port.
const LEAF_SLOTS: usize = 256;
/// Leaves: two protocols times the high byte of a port.
const LEAVES: usize = 2 * 256;

/// The slots of one leaf. Fixed-size arrays, so that an index that is a
/// byte (or a protocol bit and a byte) needs no bounds check.
type Leaf = [Slot; LEAF_SLOTS];

/// A fixed-size boxed array, allocated without passing through the stack.
fn try_array<T, const N: usize>(empty: impl FnMut() -> T) -> Result<Box<[T; N]>, TableError> {
    try_slots(N, empty)?.into_boxed_slice().try_into().map_err(|_| TableError::NoMemory)
}

/// The first leaf of a protocol's ports, or `None` for a protocol the
/// table never holds.
#[derive(Clone, Copy)]
pub struct Protocol(usize);

impl Protocol {
    /// `PROTO_TCP` or `PROTO_UDP`; `None` for any other.
    pub fn of(protocol: u8) -> Option<Protocol> {
        match protocol {
            PROTO_TCP => Some(Protocol(0)),
            PROTO_UDP => Some(Protocol(256)),
            _ => None,
        }
    }

    /// (leaf, slot) of a port of this protocol.
    fn position(self, port: u16) -> (usize, usize) {
        (self.0 + usize::from(port >> 8), usize::from(port & 0xFF))
    }
}

/// (leaf, slot) of a key, or `None` for a protocol the table never holds.
fn position(key: PortKey) -> Option<(usize, usize)> {
    Some(Protocol::of(key.protocol)?.position(key.port))
}

fn try_slots<T>(n: usize, empty: impl FnMut() -> T) -> Result<Vec<T>, TableError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| TableError::NoMemory)?;
    v.resize_with(n, empty);
    Ok(v)
}

/// The memory one bind needs, allocated before the write lock is taken.
pub struct BindMemory {
    binding: Option<Box<Binding>>,
    leaf: Option<Box<Leaf>>,
}

impl BindMemory {
    /// Allocates a binding for `endpoint` (whose event sink is `sink`), and
    /// a leaf when `with_leaf` (what [`PortTable::needs_leaf`] said under
    /// the read lock).
    pub fn try_new(endpoint: EndpointId, sink: Option<SinkRef>, with_leaf: bool) -> Result<Self, TableError> {
        let counters = PerCpu::try_new().map_err(|_| TableError::NoMemory)?;
        let binding = Binding { endpoint, counters, sink, next: None };
        let binding = try_box(binding).map_err(|_| TableError::NoMemory)?;
        let leaf = if with_leaf { Some(try_array(|| None)?) } else { None };
        Ok(BindMemory { binding: Some(binding), leaf })
    }
}

/// Bindings taken out of the table, to be freed after its lock is released.
#[derive(Default)]
pub struct Unbound {
    list: Slot,
}

impl Unbound {
    /// Adds `other`'s bindings to this batch (no allocation: they are
    /// linked through their own nodes).
    pub fn append(&mut self, mut other: Unbound) {
        while let Some(mut node) = other.list.take() {
            other.list = node.next.take();
            node.next = self.list.take();
            self.list = Some(node);
        }
    }
}

/// The table. See the module docs.
pub struct PortTable {
    /// `LEAVES` leaf pointers; a leaf, once allocated, lives as long as the
    /// table (so "this key's leaf exists" never becomes false).
    leaves: Box<[Option<Box<Leaf>>; LEAVES]>,
    /// Keys with at least one binding.
    keys: usize,
    /// Endpoints whose events are enabled: the data path takes the
    /// counting-only loop ([`NoEvents`]) while it is zero. Changed with
    /// the sinks' flags, under the write lock ([`PortTable::enable_events`]).
    event_endpoints: usize,
}

impl PortTable {
    /// An empty table: allocates the 4 KiB of leaf pointers.
    pub fn try_new() -> Result<Self, TableError> {
        Ok(PortTable { leaves: try_array(|| None)?, keys: 0, event_endpoints: 0 })
    }

    /// The bindings of `key`, newest first: two loads, no bounds check
    /// (the indexes fit the arrays by construction).
    fn head(&self, key: PortKey) -> Option<&Binding> {
        let (leaf, slot) = position(key)?;
        self.leaves[leaf].as_ref()?[slot].as_deref()
    }

    /// Whether binding `key` needs a new leaf. Once false it stays false.
    pub fn needs_leaf(&self, key: PortKey) -> bool {
        position(key).is_some_and(|(leaf, _)| self.leaves[leaf].is_none())
    }

    /// Binds `memory`'s endpoint to `key`, taking what it needs from
    /// `memory` (whatever is left is freed by the caller, after the lock).
    /// Allocates nothing and walks nothing: the caller has checked, in its
    /// own short list of bound ports, that the endpoint has not bound `key`
    /// (checked again here in debug builds only).
    pub fn bind(&mut self, key: PortKey, memory: &mut BindMemory) -> Result<(), TableError> {
        let (leaf, slot) = position(key).ok_or(TableError::NoMemory)?;
        debug_assert!(
            !self.head(key).is_some_and(|head| {
                let endpoint = memory.binding.as_ref().map(|b| b.endpoint);
                head.iter().any(|b| Some(b.endpoint) == endpoint)
            }),
            "endpoint bound twice to one port"
        );
        let leaf = match &mut self.leaves[leaf] {
            Some(leaf) => leaf,
            // needs_leaf was true when the caller looked, and no one has
            // created it since: use the one the caller allocated.
            empty => empty.insert(memory.leaf.take().ok_or(TableError::NoMemory)?),
        };
        let mut binding = memory.binding.take().ok_or(TableError::NoMemory)?;
        let slot = &mut leaf[slot];
        if slot.is_none() {
            self.keys += 1;
        }
        binding.next = slot.take();
        *slot = Some(binding);
        Ok(())
    }

    /// Unbinds `endpoint` from `key`: what the binding counted, and the
    /// binding itself, to be freed after the lock is released.
    pub fn unbind(&mut self, key: PortKey, endpoint: EndpointId) -> Result<(Traffic, Unbound), TableError> {
        let (leaf, slot) = position(key).ok_or(TableError::NotBound)?;
        let leaf = self.leaves[leaf].as_mut().ok_or(TableError::NotBound)?;
        // Walk the links until the one that points at the endpoint's node.
        let mut link = &mut leaf[slot];
        loop {
            match link {
                None => return Err(TableError::NotBound),
                Some(node) if node.endpoint == endpoint => break,
                Some(node) => link = &mut node.next,
            }
        }
        let mut node = link.take().ok_or(TableError::NotBound)?;
        *link = node.next.take();
        if leaf[slot].is_none() {
            self.keys -= 1;
        }
        Ok((node.traffic(), Unbound { list: Some(node) }))
    }

    /// Sets `sink`'s flag (events enabled) and counts its endpoint, once:
    /// under the write lock, so that a reader that saw no endpoint with
    /// events enabled ([`PortTable::any_events`]) counts its whole chain
    /// before any flag is set.
    pub fn enable_events(&mut self, sink: &EventSink) {
        if !sink.enabled.swap(true, Ordering::Relaxed) {
            self.event_endpoints += 1;
        }
    }

    /// Clears `sink`'s flag and uncounts its endpoint, if it was set.
    pub fn disable_events(&mut self, sink: &EventSink) {
        if sink.enabled.swap(false, Ordering::Relaxed) {
            self.event_endpoints -= 1;
        }
    }

    /// Whether any endpoint has events enabled: read once per chain, under
    /// the read lock, to pick the counting loop.
    #[inline(always)]
    pub fn any_events(&self) -> bool {
        self.event_endpoints != 0
    }

    /// Counts one packet of `bytes` on `key` for every endpoint bound to it,
    /// in `cpu`'s slot. Called under the read lock (at DISPATCH_LEVEL, where
    /// `cpu` is the current processor): only this processor's counters are
    /// written. Returns whether the packet is watched (see
    /// [`PortTable::count_port`]).
    pub fn count(&self, key: PortKey, direction: Direction, bytes: u64, cpu: Cpu<'_>) -> bool {
        let watched = Cell::new(false);
        if let Some(protocol) = Protocol::of(key.protocol) {
            if let Err(no_slot) = self.count_port(protocol, key.port, direction, bytes, cpu, &watched) {
                return no_slot.bug_check();
            }
        }
        watched.get()
    }

    /// Counts one packet with ports `src` and `dst`: on each of the two
    /// ports, once only when they are equal (one lookup then). The protocol
    /// is resolved once for both; see [`PortTable::count`]. Sets `watched`
    /// when the packet is watched ([`PortTable::count_port`]). [`NoSlot`]:
    /// `cpu` has no slot (the caller bug-checks).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn count_flow<W: Watch>(
        &self,
        protocol: Protocol,
        src: u16,
        dst: u16,
        direction: Direction,
        bytes: u64,
        cpu: Cpu<'_>,
        watched: &W,
    ) -> Result<(), NoSlot> {
        self.count_port(protocol, dst, direction, bytes, cpu, watched)?;
        if src != dst {
            self.count_port(protocol, src, direction, bytes, cpu, watched)?;
        }
        Ok(())
    }

    /// The one place a packet is counted, for each matching binding (what
    /// [`PortTable::count`] and [`PortTable::count_flow`] both run).
    /// `watched` sees each matching binding ([`Watch`]): with `Cell<bool>`
    /// it notes a binding whose endpoint enabled events; the packet is then
    /// "watched", and the caller records its events after counting, out of
    /// line, under the same hold of the read lock ([`PortTable::bound`]).
    /// With [`NoEvents`] the loop only counts. A packet on an unbound port
    /// returns at the lookup. [`NoSlot`]: `cpu` has no slot; the count
    /// stops there and the caller bug-checks.
    #[inline(always)]
    fn count_port<W: Watch>(
        &self,
        protocol: Protocol,
        port: u16,
        direction: Direction,
        bytes: u64,
        cpu: Cpu<'_>,
        watched: &W,
    ) -> Result<(), NoSlot> {
        let (leaf, slot) = protocol.position(port);
        let Some(head) = self.leaves[leaf].as_ref().and_then(|leaf| leaf[slot].as_deref()) else { return Ok(()) };
        for binding in head.iter() {
            binding.counters.get(cpu)?.add(direction, bytes);
            watched.see(binding);
        }
        Ok(())
    }

    /// The bindings of `key`, if any (the event stream's second look).
    pub fn bound(&self, key: PortKey) -> Option<Bound<'_>> {
        self.head(key).map(Bound)
    }

    /// What `endpoint`'s binding of `key` has counted, if it exists.
    pub fn binding_traffic(&self, key: PortKey, endpoint: EndpointId) -> Option<Traffic> {
        self.head(key)?.iter().find(|b| b.endpoint == endpoint).map(Binding::traffic)
    }

    /// Endpoints bound to `key` and the sum of what their bindings counted.
    pub fn port_traffic(&self, key: PortKey) -> (u32, Traffic) {
        let mut total = Traffic::default();
        let mut endpoints = 0u32;
        for b in self.head(key).into_iter().flat_map(Binding::iter) {
            total.accumulate(&b.traffic());
            endpoints = endpoints.saturating_add(1);
        }
        (endpoints, total)
    }

    /// Number of distinct (protocol, port) keys with at least one binding.
    pub fn bound_keys(&self) -> usize {
        self.keys
    }

    /// Allocates and binds in one step (tests and benchmarks).
    #[cfg(test)]
    pub fn bind_now(&mut self, key: PortKey, endpoint: EndpointId) -> Result<(), TableError> {
        let mut memory = BindMemory::try_new(endpoint, None, self.needs_leaf(key))?;
        self.bind(key, &mut memory)
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
        let mut t = PortTable::try_new().unwrap();
        t.bind_now(tcp(80), A).unwrap();
        t.bind_now(tcp(80), B).unwrap();
        t.bind_now(udp(80), A).unwrap();
        t.count(tcp(80), Direction::Rx, 100, Cpu::for_test(0));
        t.count(tcp(80), Direction::Tx, 60, Cpu::for_test(1));
        t.count(udp(80), Direction::Rx, 7, Cpu::for_test(2));
        t.count(tcp(81), Direction::Rx, 1000, Cpu::for_test(3));
        let a = t.binding_traffic(tcp(80), A).unwrap();
        assert_eq!(a.rx, Counters { packets: 1, bytes: 100 });
        assert_eq!(a.tx, Counters { packets: 1, bytes: 60 });
        assert_eq!(t.port_traffic(tcp(80)).0, 2);
        assert_eq!(t.port_traffic(tcp(80)).1.rx, Counters { packets: 2, bytes: 200 });
        assert_eq!(t.port_traffic(udp(80)).1.rx, Counters { packets: 1, bytes: 7 });
        assert_eq!(t.port_traffic(tcp(81)), (0, Traffic::default()));
        assert_eq!(t.unbind(tcp(80), A).unwrap().0, a);
        assert_eq!(t.binding_traffic(tcp(80), A), None);
        assert_eq!(t.bound_keys(), 2);
        t.unbind(tcp(80), B).unwrap();
        t.unbind(udp(80), A).unwrap();
        assert_eq!(t.bound_keys(), 0);
    }

    #[test]
    fn counts_from_every_processor_are_summed() {
        let mut t = PortTable::try_new().unwrap();
        t.bind_now(udp(53), A).unwrap();
        for i in 0..40 {
            t.count(udp(53), Direction::Rx, 10, Cpu::for_test(i % 4));
        }
        t.count(udp(53), Direction::Tx, 3, Cpu::for_test(2));
        let traffic = t.binding_traffic(udp(53), A).unwrap();
        assert_eq!(traffic.rx, Counters { packets: 40, bytes: 400 });
        assert_eq!(traffic.tx, Counters { packets: 1, bytes: 3 });
        assert_eq!(t.unbind(udp(53), A).unwrap().0, traffic, "an unbind hands back the sum");
    }

    #[test]
    fn unknown_unbinds_are_errors_that_change_nothing() {
        let mut t = PortTable::try_new().unwrap();
        t.bind_now(udp(53), A).unwrap();
        assert_eq!(t.unbind(udp(54), A).err(), Some(TableError::NotBound));
        assert_eq!(t.unbind(udp(53), B).err(), Some(TableError::NotBound));
        assert_eq!(t.port_traffic(udp(53)).0, 1);
        assert_eq!(t.bound_keys(), 1);
    }

    #[test]
    fn keys_stay_findable_at_scale_and_after_removals() {
        let mut t = PortTable::try_new().unwrap();
        // Insert in a scrambled order, over both protocols and every leaf.
        let port = |i: u32| ((i * 7919) % 65_535) as u16 + 1;
        for i in 0..10_000u32 {
            t.bind_now(tcp(port(i)), A).unwrap();
            t.bind_now(udp(port(i)), B).unwrap();
        }
        for i in 0..10_000u32 {
            t.count(tcp(port(i)), Direction::Tx, u64::from(port(i)), Cpu::for_test(i as usize % 4));
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
        assert!(t.leaves.iter().flatten().all(|leaf| leaf.iter().all(Option::is_none)));
    }

    #[test]
    fn bind_uses_only_memory_allocated_before() {
        let mut t = PortTable::try_new().unwrap();
        assert!(t.needs_leaf(tcp(80)));
        // A caller that did not allocate the leaf it needed gets an error
        // and the table does not change.
        let mut without_leaf = BindMemory::try_new(A, None, false).unwrap();
        assert_eq!(t.bind(tcp(80), &mut without_leaf), Err(TableError::NoMemory));
        assert_eq!(t.bound_keys(), 0);
        let mut memory = BindMemory::try_new(A, None, true).unwrap();
        t.bind(tcp(80), &mut memory).unwrap();
        assert!(memory.binding.is_none() && memory.leaf.is_none(), "both used");
        assert!(!t.needs_leaf(tcp(81)), "same leaf");
    }

    #[test]
    fn unbound_batches_and_long_lists_drop_without_recursion() {
        let mut t = PortTable::try_new().unwrap();
        for e in 0..5_000 {
            let mut memory = BindMemory::try_new(EndpointId(e), None, t.needs_leaf(udp(9))).unwrap();
            t.bind(udp(9), &mut memory).unwrap();
        }
        assert_eq!(t.port_traffic(udp(9)).0, 5_000);
        let mut batch = Unbound::default();
        // Newest first: these are near the head of the list.
        for e in (4_900..5_000).step_by(10) {
            let (_, one) = t.unbind(udp(9), EndpointId(e)).unwrap();
            batch.append(one);
        }
        assert_eq!(t.port_traffic(udp(9)).0, 4_990);
        drop(batch);
        drop(t); // a 4,990-node list
    }

    #[test]
    fn other_protocols_are_never_found() {
        let mut t = PortTable::try_new().unwrap();
        t.bind_now(tcp(80), A).unwrap();
        assert_eq!(t.binding_traffic(PortKey { protocol: 1, port: 80 }, A), None);
        t.count(PortKey { protocol: 1, port: 80 }, Direction::Rx, 1, Cpu::for_test(0));
        assert_eq!(t.port_traffic(tcp(80)).1.rx.packets, 0);
    }

    #[test]
    fn events_are_counted_once_per_sink() {
        let sink = crate::pool::try_pin_box(EventSink::new()).unwrap();
        let mut t = PortTable::try_new().unwrap();
        assert!(!t.any_events());
        t.enable_events(&sink);
        t.enable_events(&sink);
        assert!(t.any_events() && sink.is_enabled());
        t.disable_events(&sink);
        assert!(!t.any_events() && !sink.is_enabled());
        t.disable_events(&sink);
        assert_eq!(t.event_endpoints, 0, "a second disable changes nothing");
    }

    #[test]
    fn accumulate_saturates() {
        let mut a = Traffic { rx: Counters { packets: u64::MAX, bytes: 1 }, ..Traffic::default() };
        a.accumulate(&Traffic { rx: Counters { packets: 5, bytes: 2 }, ..Traffic::default() });
        assert_eq!(a.rx, Counters { packets: u64::MAX, bytes: 3 });
    }
}
