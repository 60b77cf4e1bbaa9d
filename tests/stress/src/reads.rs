//! `watch`'s pool of pending IOCTL_READ_EVENTS reads, independent of how a
//! read is issued: [`ReadQueue`] is the thin layer (overlapped I/O on
//! Windows, `src/win.rs`; one thread per read over any
//! [`Target`], [`ThreadReads`]), [`run`] the scheduling: N slots kept
//! pending, each re-issued as soon as it completes, batches handed on in the
//! order the driver fills reads, and a shutdown that cancels and waits for
//! every read before returning (no buffer is reused or freed while the
//! kernel may still write it).
//!
//! Order: the driver queues pending reads oldest first and gives each event
//! to the oldest pending read (docs/events.md, "Memory and locks"), and a
//! read that finds events queued takes them in ring order. Reads are issued
//! from one thread, so issue order is queue order, and the batches' order
//! is the order the reads were issued, whatever order their completions are
//! noticed in. [`run`] numbers every issued read and hands batches on in
//! that numbering, holding a batch back until every earlier read came back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use portwatch_proto as proto;
use portwatch_scenarios::client::{self, status};
use portwatch_scenarios::target::{Handle, TargetError};
use portwatch_scenarios::Target;

/// A completed read: its batch, or why it has none (STATUS_CANCELLED for a
/// cancelled read).
pub type Batch = Result<(proto::EventBatchHeader, Vec<proto::EventRecord>), TargetError>;

/// Records one read asks for.
pub const READ_ROOM: usize = 64;

/// What consumes batches: the header and records of one batch; whether
/// it wants more, or why it failed.
pub type Consumer<'a> = dyn FnMut(&proto::EventBatchHeader, &[proto::EventRecord]) -> Result<Flow, String> + 'a;

/// How long a wait for completions lasts before the stop condition is
/// looked at again (the latency of Ctrl+C and `--duration`).
const POLL: Duration = Duration::from_millis(50);

/// How long the shutdown waits for cancelled reads to come back (short in
/// unit tests, which show a read that never comes back).
pub const DRAIN_LIMIT: Duration = Duration::from_millis(if cfg!(test) { 300 } else { 10_000 });

/// Reads on one handle, in numbered slots, each with its own buffer.
pub trait ReadQueue {
    /// Issues a read in `slot`, which has no read pending. An error means
    /// no read is pending in it.
    fn start(&mut self, slot: usize) -> Result<(), TargetError>;
    /// Waits up to `timeout` for a pending read to complete: its slot and
    /// batch, or `None` when none completed in time. After it returns a
    /// slot, that slot has no read pending.
    fn wait(&mut self, timeout: Duration) -> Result<Option<(usize, Batch)>, TargetError>;
    /// Asks every pending read of the handle to complete now (CancelIoEx).
    fn cancel(&mut self) -> Result<(), TargetError>;
}

/// What the consumer of batches wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// More batches.
    More,
    /// Enough: shut down.
    Stop,
}

/// Why [`run`] returned an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// A read failed (not a cancellation) or could not be issued.
    Read(TargetError),
    /// Waiting for completions failed.
    Wait(TargetError),
    /// The consumer failed (its message).
    Consumer(String),
    /// This many reads were still pending [`DRAIN_LIMIT`] after the
    /// cancel; their slots must not be reused or freed.
    Stuck(usize),
}

/// What [`run`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Reads issued.
    pub issued: u64,
    /// Batches handed to the consumer.
    pub batches: u64,
    /// Reads that came back cancelled.
    pub cancelled: u64,
    /// Most reads pending at once.
    pub most_pending: usize,
}

struct Pool<'q> {
    queue: &'q mut dyn ReadQueue,
    /// The number of the read pending in each slot.
    slot_seq: Vec<Option<u64>>,
    next_seq: u64,
    /// The next read number whose batch goes to the consumer.
    next_out: u64,
    /// Completed reads waiting for an earlier one: at most one per slot.
    held: BTreeMap<u64, Batch>,
    /// Slots whose read came back and that are not re-issued yet.
    idle: Vec<usize>,
    stats: PoolStats,
}

impl Pool<'_> {
    fn pending(&self) -> usize {
        self.slot_seq.iter().filter(|s| s.is_some()).count()
    }

    fn issue(&mut self, slot: usize) -> Result<(), PoolError> {
        self.queue.start(slot).map_err(PoolError::Read)?;
        self.slot_seq[slot] = Some(self.next_seq);
        self.next_seq += 1;
        self.stats.issued += 1;
        self.stats.most_pending = self.stats.most_pending.max(self.pending());
        Ok(())
    }

    /// Re-issues the idle slots, unless as many batches as there are
    /// slots wait for an earlier read: then only the earlier reads stay
    /// pending until they come back. This bounds the batches held, and a
    /// wait that keeps reporting the same busy slots cannot starve the
    /// oldest read.
    fn reissue(&mut self) -> Result<(), PoolError> {
        while self.held.len() < self.slot_seq.len() {
            let Some(slot) = self.idle.pop() else { break };
            self.issue(slot)?;
        }
        Ok(())
    }

    /// Records `slot`'s completion; hands on every batch now in order.
    fn complete(
        &mut self,
        slot: usize,
        batch: Batch,
        consumer: &mut Consumer<'_>,
        flow: &mut Flow,
    ) -> Result<(), PoolError> {
        let seq = self.slot_seq.get_mut(slot).and_then(Option::take);
        let seq = seq.ok_or_else(|| PoolError::Wait(TargetError::Os(format!("slot {slot} completed twice"))))?;
        self.held.insert(seq, batch);
        while let Some(batch) = self.held.remove(&self.next_out) {
            self.next_out += 1;
            match batch {
                Ok((header, records)) => {
                    self.stats.batches += 1;
                    if *flow == Flow::More {
                        *flow = consumer(&header, &records).map_err(PoolError::Consumer)?;
                    }
                }
                Err(TargetError::Status(status::CANCELLED)) => self.stats.cancelled += 1,
                Err(e) => return Err(PoolError::Read(e)),
            }
        }
        Ok(())
    }

    /// Cancels and waits for every pending read; batches that still come
    /// back are handed on while the consumer wants them.
    fn drain(&mut self, consumer: &mut Consumer<'_>, flow: &mut Flow) -> Result<(), PoolError> {
        let deadline = Instant::now() + DRAIN_LIMIT;
        let mut first_error = None;
        while self.pending() > 0 {
            // Again on every round: a read being issued by another thread
            // (ThreadReads) may reach the driver after an earlier cancel.
            let _ = self.queue.cancel();
            if Instant::now() >= deadline {
                return Err(PoolError::Stuck(self.pending()));
            }
            match self.queue.wait(POLL) {
                Ok(Some((slot, batch))) => {
                    if let Err(e) = self.complete(slot, batch, consumer, flow) {
                        // Keep draining: the slots must all come back.
                        first_error.get_or_insert(e);
                        *flow = Flow::Stop;
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(PoolError::Wait(e)),
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Keeps `slots` reads pending on `queue`, hands every batch to `consumer`
/// in the driver's order until it says [`Flow::Stop`], `stop()` is true or
/// a read fails; then cancels the reads and waits for all of them (at most
/// [`DRAIN_LIMIT`]).
pub fn run(
    queue: &mut dyn ReadQueue,
    slots: usize,
    stop: &dyn Fn() -> bool,
    consumer: &mut Consumer<'_>,
) -> Result<PoolStats, PoolError> {
    let mut pool = Pool {
        queue,
        slot_seq: vec![None; slots],
        next_seq: 0,
        next_out: 0,
        held: BTreeMap::new(),
        idle: Vec::new(),
        stats: PoolStats::default(),
    };
    let mut flow = Flow::More;
    let mut result = (0..slots).try_for_each(|slot| pool.issue(slot));
    while result.is_ok() && flow == Flow::More && !stop() {
        result = match pool.queue.wait(POLL) {
            Ok(Some((slot, batch))) => {
                pool.idle.push(slot);
                pool.complete(slot, batch, consumer, &mut flow).and_then(|()| match flow {
                    Flow::More => pool.reissue(),
                    Flow::Stop => Ok(()),
                })
            }
            Ok(None) => Ok(()),
            Err(e) => Err(PoolError::Wait(e)),
        };
    }
    if result.is_err() {
        flow = Flow::Stop;
    }
    let drained = pool.drain(consumer, &mut flow);
    result.and(drained).map(|()| pool.stats)
}

/// [`ReadQueue`] over any [`Target`]: one thread per slot, each issuing
/// its read as a blocking IOCTL (the harness, tests). Dropping it ends the
/// threads once their reads are back.
pub struct ThreadReads<'e> {
    target: &'e dyn Target,
    handle: Handle,
    go: Vec<std::sync::mpsc::Sender<()>>,
    done: std::sync::mpsc::Receiver<(usize, Batch)>,
}

impl<'e> ThreadReads<'e> {
    /// `slots` reader threads in `scope` on `handle` of `target`.
    pub fn new<'s>(
        scope: &'s std::thread::Scope<'s, 'e>,
        target: &'e dyn Target,
        handle: Handle,
        slots: usize,
    ) -> Self {
        let (done_tx, done) = std::sync::mpsc::channel();
        let go = (0..slots)
            .map(|slot| {
                let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
                let done_tx = done_tx.clone();
                scope.spawn(move || {
                    while go_rx.recv().is_ok() {
                        if done_tx.send((slot, client::read_events(target, handle, READ_ROOM))).is_err() {
                            return;
                        }
                    }
                });
                go_tx
            })
            .collect();
        ThreadReads { target, handle, go, done }
    }
}

impl ReadQueue for ThreadReads<'_> {
    fn start(&mut self, slot: usize) -> Result<(), TargetError> {
        let go = self.go.get(slot).ok_or_else(|| TargetError::Os(format!("no slot {slot}")))?;
        go.send(()).map_err(|_| TargetError::Os(format!("reader {slot} is gone")))
    }

    fn wait(&mut self, timeout: Duration) -> Result<Option<(usize, Batch)>, TargetError> {
        match self.done.recv_timeout(timeout) {
            Ok(done) => Ok(Some(done)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(TargetError::Os("every reader is gone".into())),
        }
    }

    fn cancel(&mut self) -> Result<(), TargetError> {
        self.target.cancel_io(self.handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records per batch in the fake.
    const PER_READ: u64 = 2;

    /// A driver that fills reads oldest first (as docs/events.md says) but
    /// reports their completions newest first, the worst order for the
    /// pool; it panics on a read started in a busy slot.
    #[derive(Default)]
    struct Fake {
        /// The issue number of the read pending in each slot.
        pending: Vec<Option<u64>>,
        issued: u64,
        /// Batches already given to reads, by issue number.
        filled: BTreeMap<u64, Batch>,
        next_record: u64,
        cancelled: bool,
        /// On cancel, the oldest read gets data instead (cancel racing a completion).
        race_on_cancel: bool,
        /// The read with this issue number fails with this status.
        fail: Option<(u64, i32)>,
        /// Starting the read with this issue number fails.
        refuse_start: Option<u64>,
        /// Cancel does nothing.
        ignore_cancel: bool,
        /// A read got data from the cancel race.
        race_happened: bool,
    }

    impl Fake {
        fn new(slots: usize) -> Self {
            Fake { pending: vec![None; slots], ..Fake::default() }
        }

        fn batch(&mut self) -> Batch {
            let header = proto::EventBatchHeader {
                version: proto::PROTOCOL_VERSION,
                record_size: 64,
                count: PER_READ as u32,
                reserved: 0,
                dropped: 0,
                timestamp_frequency: 1,
            };
            let records = (0..PER_READ)
                .map(|_| {
                    self.next_record += 1;
                    proto::EventRecord { timestamp: self.next_record, ..Default::default() }
                })
                .collect();
            Ok((header, records))
        }

        /// Events arrive: every pending read is filled, oldest first.
        fn fill(&mut self) {
            let mut waiting: Vec<u64> =
                self.pending.iter().flatten().copied().filter(|n| !self.filled.contains_key(n)).collect();
            waiting.sort_unstable();
            for n in waiting {
                let b = match self.fail {
                    Some((at, s)) if at == n => Err(TargetError::Status(s)),
                    _ => self.batch(),
                };
                self.filled.insert(n, b);
            }
        }
    }

    impl ReadQueue for Fake {
        fn start(&mut self, slot: usize) -> Result<(), TargetError> {
            assert!(self.pending[slot].is_none(), "slot {slot} reused while its read is pending");
            if self.refuse_start == Some(self.issued) {
                self.refuse_start = None;
                return Err(TargetError::Status(status::QUOTA_EXCEEDED));
            }
            self.pending[slot] = Some(self.issued);
            self.issued += 1;
            Ok(())
        }

        fn wait(&mut self, _: Duration) -> Result<Option<(usize, Batch)>, TargetError> {
            if !self.cancelled {
                self.fill();
            }
            // The newest filled read is reported first.
            let newest = (0..self.pending.len())
                .filter_map(|slot| self.pending[slot].filter(|n| self.filled.contains_key(n)).map(|n| (n, slot)))
                .max();
            Ok(newest.map(|(n, slot)| {
                self.pending[slot] = None;
                (slot, self.filled.remove(&n).expect("filled"))
            }))
        }

        fn cancel(&mut self) -> Result<(), TargetError> {
            if self.ignore_cancel || self.cancelled {
                return Ok(());
            }
            self.cancelled = true;
            let mut waiting: Vec<u64> =
                self.pending.iter().flatten().copied().filter(|n| !self.filled.contains_key(n)).collect();
            waiting.sort_unstable();
            for (i, n) in waiting.into_iter().enumerate() {
                let b = if i == 0 && self.race_on_cancel {
                    self.race_happened = true;
                    self.batch()
                } else {
                    Err(TargetError::Status(status::CANCELLED))
                };
                self.filled.insert(n, b);
            }
            Ok(())
        }
    }

    /// Runs the pool on `fake` until `count` records; the timestamps seen.
    fn collect(
        fake: &mut Fake,
        slots: usize,
        count: usize,
        stop: &dyn Fn() -> bool,
    ) -> (Result<PoolStats, PoolError>, Vec<u64>) {
        let mut seen = Vec::new();
        let r = run(fake, slots, stop, &mut |_, records| {
            seen.extend(records.iter().map(|r| r.timestamp));
            Ok(if seen.len() >= count { Flow::Stop } else { Flow::More })
        });
        (r, seen)
    }

    #[test]
    fn batches_completed_out_of_order_are_handed_on_in_driver_order() {
        let mut fake = Fake::new(4);
        let (r, seen) = collect(&mut fake, 4, 40, &|| false);
        let stats = r.unwrap();
        assert_eq!(seen, (1..=40).collect::<Vec<_>>());
        assert_eq!(stats.most_pending, 4);
        assert!(fake.pending.iter().all(Option::is_none), "a read left pending");
        // Every read came back once, with a batch or cancelled; those still
        // pending at the 20th batch were cancelled (or raced it).
        assert!(stats.batches >= 20, "{stats:?}");
        assert_eq!(stats.batches + stats.cancelled, stats.issued, "{stats:?}");
        assert_eq!(stats.issued, fake.issued);
    }

    #[test]
    fn stop_cancels_every_read_and_hands_on_a_batch_that_raced_the_cancel() {
        let mut fake = Fake::new(3);
        fake.race_on_cancel = true;
        let polls = std::cell::Cell::new(0);
        let (r, seen) = collect(&mut fake, 3, usize::MAX, &|| {
            polls.set(polls.get() + 1);
            polls.get() > 5
        });
        let stats = r.unwrap();
        assert!(fake.pending.iter().all(Option::is_none));
        assert!(stats.cancelled >= 1, "{stats:?}");
        assert_eq!(stats.batches + stats.cancelled, stats.issued, "{stats:?}");
        // The batch that won the race with the cancel was handed on too.
        assert_eq!(seen, (1..=stats.batches * PER_READ).collect::<Vec<_>>());
        assert!(fake.race_happened, "the fake raced no read");
    }

    #[test]
    fn a_failed_read_ends_the_run_after_the_batches_before_it() {
        let mut fake = Fake::new(4);
        fake.fail = Some((9, status::DELETE_PENDING));
        let (r, seen) = collect(&mut fake, 4, usize::MAX, &|| false);
        assert_eq!(r.unwrap_err(), PoolError::Read(TargetError::Status(status::DELETE_PENDING)));
        assert_eq!(seen, (1..=18).collect::<Vec<_>>(), "reads 0 to 8, in order");
        assert!(fake.pending.iter().all(Option::is_none));
    }

    #[test]
    fn a_refused_start_drains_the_reads_already_pending() {
        let mut fake = Fake::new(4);
        fake.refuse_start = Some(2);
        let (r, seen) = collect(&mut fake, 4, usize::MAX, &|| false);
        assert_eq!(r.unwrap_err(), PoolError::Read(TargetError::Status(status::QUOTA_EXCEEDED)));
        assert!(seen.is_empty());
        assert!(fake.pending.iter().all(Option::is_none));
        assert_eq!(fake.issued, 2);
    }

    #[test]
    fn reads_that_never_come_back_are_reported_not_reused() {
        let mut fake = Fake::new(2);
        fake.ignore_cancel = true;
        fake.cancelled = true; // no more events either
        let (r, _) = collect(&mut fake, 2, usize::MAX, &|| true);
        assert_eq!(r.unwrap_err(), PoolError::Stuck(2));
        assert_eq!(fake.pending.iter().flatten().count(), 2);
    }
}
