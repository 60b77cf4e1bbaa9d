//! Scenario 6 at CI size, under special pool, and proof that a lost event
//! fails its accounting.

mod common;

use common::forward::{Forward, Hooks};
use portwatch_scenarios::target::{Reply, TargetError};
use portwatch_scenarios::Scenario;

/// The I/O statistics read below are the process's: the other test's
/// session must not start (and reset them) before they are read.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_event_is_delivered_or_dropped_and_no_read_stays_pending() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = common::target();
    let s = Scenario::Events.run(&t, &common::params(11));
    common::assert_clean(&s, common::OPS);
    let io = portwatch_harness::io::stats();
    eprintln!(
        "IRPs: {} sent, {} pended, {} cancel requests (CancelIoEx), {} completed",
        io.irps.values().sum::<u64>(),
        io.pended,
        io.cancelled,
        io.completed
    );
    assert_eq!(io.completed, io.irps.values().sum::<u64>(), "every IRP completed once");
}

/// Loses the last record of a batch of more than one (header adjusted), as
/// a driver that lost an event would.
struct LosesEvents;

impl Hooks for LosesEvents {
    fn ioctl(&self, code: u32, _input: &[u8], reply: Result<Reply, TargetError>) -> Result<Reply, TargetError> {
        let mut r = reply?;
        if code == portwatch_proto::IOCTL_READ_EVENTS && r.status == 0 && r.output.len() >= 32 + 2 * 64 {
            r.output.truncate(r.output.len() - 64);
            let count = u32::from_le_bytes(r.output[8..12].try_into().unwrap()) - 1;
            r.output[8..12].copy_from_slice(&count.to_le_bytes());
        }
        Ok(r)
    }
}

#[test]
fn a_lost_event_is_caught() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = Forward { inner: common::target(), hooks: LosesEvents };
    let s = Scenario::Events.run(&t, &portwatch_scenarios::Params::ops(2, 2000, 12));
    assert!(s.failures.iter().any(|f| f.contains("delivered") && f.contains("generated")), "{s}");
}
