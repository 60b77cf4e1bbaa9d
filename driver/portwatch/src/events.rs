//! The per-endpoint event stream: a bounded ring of [`EventRecord`]s and the
//! queue of pending `IOCTL_READ_EVENTS` requests ("inverted call").
//!
//! Everything here runs under the endpoint's event spin lock
//! ([`EventSink::queue`]); nothing allocates: the ring is allocated at
//! PASSIVE_LEVEL by `IOCTL_ENABLE_EVENTS` before the lock is taken, and the
//! pending reads sit in a fixed array of [`MAX_PENDING_READS`] slots.
//!
//! Invariant: a read pends only while the ring is empty, and every event
//! recorded while a read is pending goes to the oldest pending read that
//! can still be claimed. So a pending read never waits while events are
//! queued, and events are delivered in the order they were recorded.
//!
//! The read handle type `R` is the IRP on Windows and a plain value in the
//! host tests; "claiming" a read (the caller's closure) is where the driver
//! clears the IRP's cancel routine: a read whose cancel routine already ran
//! belongs to that routine and is skipped (see docs/events.md).

use alloc::boxed::Box;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use ndis_sync::{init_from_closure, AtMostDispatch, PinInit, SpinLock};
use portwatch_proto::{self as proto, EventBatchHeader, EventKind, EventRecord, Wire, MAX_PENDING_READS};

#[cfg(target_os = "windows")]
pub use crate::irp::ReadIrp;
#[cfg(not(target_os = "windows"))]
pub use host::ReadIrp;

const SLOTS: usize = MAX_PENDING_READS as usize;

/// Bytes of the smallest acceptable read buffer: a header and one record.
pub const MIN_READ_BYTES: usize = EventBatchHeader::SIZE + EventRecord::SIZE;

/// Why a read could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// Events were never enabled on the handle.
    NotEnabled,
    /// [`MAX_PENDING_READS`] are pending already.
    TooMany,
    /// The handle is being cleaned up.
    Closed,
}

/// What happened to a read at dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStart {
    /// Events were queued: this many bytes were written (header and records).
    Filled(usize),
    /// Nothing queued: the read was queued as pending.
    Pending,
}

/// A pending read claimed to take one event, with the batch header's
/// values read under the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<R> {
    /// The read, claimed: its cancel routine will not run.
    pub read: R,
    /// The event.
    pub record: EventRecord,
    /// [`EventBatchHeader::dropped`] at the time.
    pub dropped: u64,
    /// [`EventBatchHeader::timestamp_frequency`].
    pub frequency: u64,
}

impl<R> Delivery<R> {
    /// Writes the one-record batch into `out` (at least [`MIN_READ_BYTES`]);
    /// returns the bytes written.
    pub fn write(&self, out: &mut [u8]) -> usize {
        let header = batch_header(1, self.dropped, self.frequency);
        header.write(out);
        self.record.write(&mut out[EventBatchHeader::SIZE..]);
        MIN_READ_BYTES
    }
}

fn batch_header(count: u32, dropped: u64, frequency: u64) -> EventBatchHeader {
    EventBatchHeader {
        version: proto::PROTOCOL_VERSION,
        record_size: EventRecord::SIZE as u32,
        count,
        reserved: 0,
        dropped,
        timestamp_frequency: frequency,
    }
}

/// The reads that were pending when the handle was cleaned up, to be
/// claimed and completed as cancelled after the lock is released.
pub struct Drained<R> {
    reads: [Option<R>; SLOTS],
}

impl<R: Copy> Drained<R> {
    /// The drained reads, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = R> + '_ {
        self.reads.iter().flatten().copied()
    }
}

/// The state under the event spin lock.
pub struct EventQueue<R> {
    /// The ring; empty until enabled.
    ring: Box<[EventRecord]>,
    head: usize,
    len: usize,
    /// Events dropped because the ring was full, since enabled.
    dropped: u64,
    /// Events delivered to reads, since enabled.
    delivered: u64,
    frequency: u64,
    /// Pending reads, oldest first, in `reads[..pending]`.
    reads: [Option<R>; SLOTS],
    pending: usize,
    closed: bool,
}

impl<R: Copy + PartialEq> Default for EventQueue<R> {
    fn default() -> Self {
        EventQueue {
            ring: Box::new([]),
            head: 0,
            len: 0,
            dropped: 0,
            delivered: 0,
            frequency: 0,
            reads: [None; SLOTS],
            pending: 0,
            closed: false,
        }
    }
}

impl<R: Copy + PartialEq> EventQueue<R> {
    /// Installs the ring (allocated by the caller before taking the lock).
    /// Gives it back when events are already enabled or the handle is
    /// closing; the caller frees it after releasing the lock.
    pub fn enable(&mut self, ring: Box<[EventRecord]>, frequency: u64) -> Result<(), Box<[EventRecord]>> {
        if self.closed || !self.ring.is_empty() || ring.is_empty() {
            return Err(ring);
        }
        self.ring = ring;
        self.frequency = frequency;
        Ok(())
    }

    /// Records an event: hands it to the oldest pending read that `claim`
    /// accepts (removing every read it looks at from the queue), else
    /// stores it in the ring, else counts it as dropped.
    pub fn record(&mut self, record: EventRecord, mut claim: impl FnMut(R) -> bool) -> Option<Delivery<R>> {
        if self.ring.is_empty() || self.closed {
            return None;
        }
        while let Some(read) = self.pop_oldest() {
            if claim(read) {
                self.delivered += 1;
                let (dropped, frequency) = (self.dropped, self.frequency);
                return Some(Delivery { read, record, dropped, frequency });
            }
        }
        if self.len == self.ring.len() {
            self.dropped += 1;
        } else {
            let at = (self.head + self.len) % self.ring.len();
            self.ring[at] = record;
            self.len += 1;
        }
        None
    }

    /// A read arrives with an output buffer of `out.len()` (at least
    /// [`MIN_READ_BYTES`], checked by the caller): fills it from the ring,
    /// or queues `read` as pending.
    pub fn start_read(&mut self, read: R, out: &mut [u8]) -> Result<ReadStart, ReadError> {
        if self.closed {
            return Err(ReadError::Closed);
        }
        if self.ring.is_empty() {
            return Err(ReadError::NotEnabled);
        }
        if self.len > 0 {
            return Ok(ReadStart::Filled(self.fill(out)));
        }
        if self.pending == SLOTS {
            return Err(ReadError::TooMany);
        }
        self.reads[self.pending] = Some(read);
        self.pending += 1;
        Ok(ReadStart::Pending)
    }

    /// Takes `read` out of the pending queue (its cancel routine, or a
    /// dispatch routine that found it cancelled); `false` when it was no
    /// longer queued (a completer claimed it first, or tried to and left
    /// it to the cancel routine).
    pub fn remove_read(&mut self, read: R) -> bool {
        let Some(at) = self.reads[..self.pending].iter().position(|r| *r == Some(read)) else { return false };
        self.reads.copy_within(at + 1..self.pending, at);
        self.pending -= 1;
        self.reads[self.pending] = None;
        true
    }

    /// IRP_MJ_CLEANUP: refuses further reads and events and hands back the
    /// pending reads.
    pub fn close(&mut self) -> Drained<R> {
        self.closed = true;
        let reads = core::mem::replace(&mut self.reads, [None; SLOTS]);
        self.pending = 0;
        Drained { reads }
    }

    /// Reads pending now.
    pub fn pending_reads(&self) -> usize {
        self.pending
    }

    /// (delivered, dropped, queued) since enabled.
    pub fn counts(&self) -> (u64, u64, usize) {
        (self.delivered, self.dropped, self.len)
    }

    fn pop_oldest(&mut self) -> Option<R> {
        let read = self.reads[..self.pending].first().copied().flatten()?;
        self.remove_read(read);
        Some(read)
    }

    /// Moves as many queued records as fit into `out`, with the header.
    fn fill(&mut self, out: &mut [u8]) -> usize {
        let room = (out.len() - EventBatchHeader::SIZE) / EventRecord::SIZE;
        let n = room.min(self.len);
        let (header, mut body) = out.split_at_mut(EventBatchHeader::SIZE);
        for _ in 0..n {
            self.ring[self.head].write(body);
            body = &mut body[EventRecord::SIZE..];
            self.head = (self.head + 1) % self.ring.len();
        }
        self.len -= n;
        self.delivered += n as u64;
        // n <= MAX_EVENT_RING_RECORDS: fits u32.
        batch_header(n as u32, self.dropped, self.frequency).write(header);
        EventBatchHeader::SIZE + n * EventRecord::SIZE
    }
}

/// Allocates a ring of `records` records, at PASSIVE_LEVEL outside any
/// lock; `None` when the pool allocation fails.
pub fn try_ring(records: usize) -> Option<Box<[EventRecord]>> {
    let mut v = alloc::vec::Vec::new();
    v.try_reserve_exact(records).ok()?;
    v.resize(records, EventRecord::default());
    Some(v.into_boxed_slice())
}

/// An endpoint's event sink: the queue under its spin lock, and a flag the
/// data path reads without the lock so that packets on ports of endpoints
/// that never enabled events cost one load.
pub struct EventSink<R = ReadIrp> {
    /// Set once the ring is installed; cleared at cleanup.
    pub enabled: AtomicBool,
    /// The queue.
    pub queue: SpinLock<EventQueue<R>>,
}

impl<R: Copy + PartialEq + Send> EventSink<R> {
    /// An initialiser of an empty, disabled sink (its spin lock is
    /// initialised where it will live).
    pub fn new() -> impl PinInit<Self> {
        let init = move |slot: *mut Self| {
            // SAFETY: `slot` is valid for writes and pinned (the initialiser's
            // contract); each field is written once, the lock in place.
            unsafe {
                (&raw mut (*slot).enabled).write(AtomicBool::new(false));
                SpinLock::new(EventQueue::default()).__pinned_init(&raw mut (*slot).queue);
            }
        };
        // SAFETY: the closure initialises every field.
        unsafe { init_from_closure(init) }
    }

    /// Whether events are recorded for this sink now (a hint: the queue
    /// decides under its lock).
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }
}

/// A reference to an endpoint's sink held by the port table's bindings and
/// the driver's list of event endpoints.
///
/// INVARIANT: points to the [`EventSink`] of an endpoint that stays
/// allocated while the reference is in the port table or the list: the
/// endpoint is freed at IRP_MJ_CLOSE, after IRP_MJ_CLEANUP removed its
/// bindings (under the port table's write lock) and its list entry (under
/// the list's lock), and both are only followed under those locks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SinkRef(NonNull<EventSink>);

// SAFETY: an `EventSink` is Sync (atomics and a spin lock over Send data),
// and the invariant keeps the pointee alive wherever a SinkRef is reachable.
unsafe impl Send for SinkRef {}
// SAFETY: as above; the reference only gives out `&EventSink`.
unsafe impl Sync for SinkRef {}

impl SinkRef {
    /// A reference to `sink`.
    ///
    /// # Safety
    ///
    /// The caller keeps the invariant: `sink` stays allocated (pinned, in
    /// its endpoint) for as long as the reference is in the port table or
    /// the list of event endpoints.
    pub unsafe fn new(sink: &EventSink) -> Self {
        SinkRef(NonNull::from(sink))
    }
}

impl core::ops::Deref for SinkRef {
    type Target = EventSink;
    fn deref(&self) -> &EventSink {
        // SAFETY: the type's invariant: reachable only while alive.
        unsafe { self.0.as_ref() }
    }
}

/// Records `record` for `sink`: hands it to a pending read (completed here,
/// after the sink's lock is released) or queues or drops it. Runs at
/// DISPATCH_LEVEL on the data path, at PASSIVE_LEVEL for control events;
/// allocates nothing.
pub fn record<I: AtMostDispatch>(sink: &EventSink, irql: &mut I, record: EventRecord) {
    let delivery = sink.queue.lock(irql).record(record, ReadIrp::claim);
    if let Some(d) = delivery {
        d.read.deliver(&d);
    }
}

/// Records a packet event for `sink` (see [`record`]): one of the
/// endpoint's bound ports, `matched`, is the packet's source or destination.
/// The addresses are parsed here, on the watched-port path only.
pub fn packet(
    sink: &EventSink,
    dispatch: &mut ndis_sync::Dispatch,
    tap: &crate::datapath::Tap,
    flow: crate::parse::Flow,
    bytes: u64,
    direction: crate::ports::Direction,
    matched: crate::ports::PortKey,
) {
    let (ip_version, src_addr, dst_addr) = crate::parse::addresses(tap.prefix).unwrap_or((0, [0; 16], [0; 16]));
    let event = EventRecord {
        kind: EventKind::Packet as u8,
        direction: match direction {
            crate::ports::Direction::Rx => proto::DIRECTION_RX,
            crate::ports::Direction::Tx => proto::DIRECTION_TX,
        },
        ip_version,
        protocol: flow.protocol,
        if_index: tap.if_index,
        timestamp: timestamp().0,
        frame_length: u32::try_from(bytes).unwrap_or(u32::MAX),
        matched_port: matched.port,
        src_port: flow.src_port,
        dst_port: flow.dst_port,
        reserved: [0; 3],
        src_addr,
        dst_addr,
    };
    record(sink, dispatch, event);
}

/// KeQueryPerformanceCounter now, and its frequency.
#[cfg(target_os = "windows")]
pub fn timestamp() -> (u64, u64) {
    let mut frequency = 0i64;
    // SAFETY: callable at any IRQL; writes the frequency to a valid i64.
    let now = unsafe { ndis_sys::KeQueryPerformanceCounter(&mut frequency) };
    (now as u64, frequency as u64)
}

/// Host builds: a monotonic 100 ns count.
#[cfg(not(target_os = "windows"))]
pub fn timestamp() -> (u64, u64) {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let ticks = START.get_or_init(std::time::Instant::now).elapsed().as_nanos() / 100;
    (u64::try_from(ticks).unwrap_or(u64::MAX), 10_000_000)
}

/// A control event's record.
pub fn control_record(kind: EventKind, if_index: u32) -> EventRecord {
    EventRecord { kind: kind as u8, if_index, timestamp: timestamp().0, ..EventRecord::default() }
}

/// The endpoints with events enabled: where control events go. A fixed
/// table of [`MAX_EVENT_ENDPOINTS`] slots, allocated with the globals.
pub struct Registry {
    slots: Box<[Option<SinkRef>]>,
}

/// Most handles with events enabled at once.
pub const MAX_EVENT_ENDPOINTS: usize = 256;

impl Registry {
    /// Allocates the table; `None` when the pool allocation fails.
    pub fn try_new() -> Option<Self> {
        let mut v = alloc::vec::Vec::new();
        v.try_reserve_exact(MAX_EVENT_ENDPOINTS).ok()?;
        v.resize(MAX_EVENT_ENDPOINTS, None);
        Some(Registry { slots: v.into_boxed_slice() })
    }

    /// Adds `sink`, unless listed already (events already enabled) or
    /// every slot is taken.
    pub fn add_once(&mut self, sink: SinkRef) -> Result<(), crate::ioctl::Error> {
        if self.slots.contains(&Some(sink)) {
            return Err(crate::ioctl::Error::EventsState);
        }
        let slot = self.slots.iter_mut().find(|s| s.is_none()).ok_or(crate::ioctl::Error::EventQuota)?;
        *slot = Some(sink);
        Ok(())
    }

    /// Removes `sink` if listed.
    pub fn remove(&mut self, sink: SinkRef) {
        if let Some(slot) = self.slots.iter_mut().find(|s| **s == Some(sink)) {
            *slot = None;
        }
    }

    /// The listed sinks.
    pub fn iter(&self) -> impl Iterator<Item = &SinkRef> {
        self.slots.iter().flatten()
    }
}

#[cfg(not(target_os = "windows"))]
mod host {
    use super::Delivery;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Never {}

    /// Host builds have no IRPs: this type has no values, so the code that
    /// claims and completes reads type-checks and cannot run.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ReadIrp(Never);

    impl ReadIrp {
        /// See the Windows `ReadIrp::claim`.
        pub fn claim(self) -> bool {
            match self.0 {}
        }

        /// See the Windows `ReadIrp::deliver`.
        pub fn deliver(self, _: &Delivery<ReadIrp>) {
            match self.0 {}
        }

        /// See the Windows `ReadIrp::cancel`.
        pub fn cancel(self) {
            match self.0 {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u16) -> EventRecord {
        EventRecord { kind: 1, src_port: n, ..Default::default() }
    }

    fn enabled(records: usize) -> EventQueue<u32> {
        let mut q = EventQueue::default();
        assert!(q.enable(try_ring(records).unwrap(), 10_000_000).is_ok());
        q
    }

    fn read_all(q: &mut EventQueue<u32>, records: usize) -> (EventBatchHeader, Vec<EventRecord>) {
        let mut out = vec![0u8; EventBatchHeader::SIZE + records * EventRecord::SIZE];
        let Ok(ReadStart::Filled(n)) = q.start_read(99, &mut out) else { panic!("nothing queued") };
        let h = EventBatchHeader::read(&out[..32]).unwrap();
        let body = out[32..n].chunks_exact(64).map(|c| EventRecord::read(c).unwrap()).collect();
        (h, body)
    }

    #[test]
    fn disabled_queue_records_nothing_and_refuses_reads() {
        let mut q = EventQueue::<u32>::default();
        assert_eq!(q.record(rec(1), |_| true), None);
        assert_eq!(q.start_read(1, &mut [0; 96]), Err(ReadError::NotEnabled));
        assert_eq!(q.counts(), (0, 0, 0));
        assert!(q.enable(try_ring(0).unwrap(), 1).is_err(), "empty ring refused");
    }

    #[test]
    fn ring_overflow_drops_and_counts_exactly() {
        let mut q = enabled(4);
        for i in 0..10 {
            assert_eq!(q.record(rec(i), |_| true), None);
        }
        assert_eq!(q.counts(), (0, 6, 4));
        let (h, body) = read_all(&mut q, 3);
        assert_eq!((h.count, h.dropped, h.record_size, h.version), (3, 6, 64, proto::PROTOCOL_VERSION));
        assert_eq!(body.iter().map(|r| r.src_port).collect::<Vec<_>>(), [0, 1, 2], "oldest first");
        q.record(rec(10), |_| true);
        let (h, body) = read_all(&mut q, 8);
        assert_eq!(body.iter().map(|r| r.src_port).collect::<Vec<_>>(), [3, 10], "wrapped");
        assert_eq!((h.count, h.dropped), (2, 6));
        let (delivered, dropped, queued) = q.counts();
        assert_eq!(delivered + dropped + queued as u64, 11, "delivered + dropped = generated");
    }

    #[test]
    fn pending_reads_take_events_in_order_and_skip_cancelled_ones() {
        let mut q = enabled(2);
        let mut out = [0u8; 96];
        for r in 1..=3 {
            assert_eq!(q.start_read(r, &mut out), Ok(ReadStart::Pending));
        }
        // Read 1 is being cancelled: its claim fails and it leaves the queue.
        let d = q.record(rec(7), |r| r != 1).unwrap();
        assert_eq!((d.read, d.record.src_port), (2, 7));
        assert_eq!(d.write(&mut out), 96);
        assert_eq!(EventBatchHeader::read(&out[..32]).unwrap().count, 1);
        assert_eq!(q.pending_reads(), 1);
        assert!(q.remove_read(3), "cancel routine finds it");
        assert!(!q.remove_read(3), "only once");
        assert!(!q.remove_read(1), "the claimer took it out");
        assert_eq!(q.record(rec(8), |_| true), None, "no read: queued");
        assert_eq!(q.counts(), (1, 0, 1));
    }

    #[test]
    fn pending_reads_are_bounded() {
        let mut q = enabled(2);
        for r in 0..MAX_PENDING_READS {
            assert_eq!(q.start_read(r, &mut [0; 96]), Ok(ReadStart::Pending));
        }
        assert_eq!(q.start_read(100, &mut [0; 96]), Err(ReadError::TooMany));
        let drained = q.close();
        assert_eq!(drained.iter().collect::<Vec<_>>(), (0..MAX_PENDING_READS).collect::<Vec<_>>());
        assert_eq!(q.start_read(101, &mut [0; 96]), Err(ReadError::Closed));
        assert_eq!(q.record(rec(1), |_| true), None, "closed: nothing recorded");
        assert!(q.enable(try_ring(2).unwrap(), 1).is_err());
    }

    #[test]
    fn second_enable_is_refused() {
        let mut q = enabled(2);
        assert!(q.enable(try_ring(8).unwrap(), 1).is_err());
    }
}
