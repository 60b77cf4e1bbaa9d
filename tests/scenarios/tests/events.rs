//! Scenario 6 at CI size, under special pool, and proof that a lost event
//! fails its accounting.

mod common;

use portwatch_scenarios::harness_target::HarnessTarget;
use portwatch_scenarios::target::{
    Adapter, AdapterOp, Direction, Handle, Health, Level, NblResult, NblSpec, Reply, Target, TargetError,
};
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

/// The harness, except that a batch of more than one record loses its last
/// record (header adjusted), as a driver that lost an event would.
struct LosesEvents(HarnessTarget);

impl Target for LosesEvents {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn open(&self) -> Result<Handle, TargetError> {
        self.0.open()
    }
    fn ioctl(&self, h: Handle, code: u32, input: &[u8], out_len: u32) -> Result<Reply, TargetError> {
        let mut r = self.0.ioctl(h, code, input, out_len)?;
        if code == portwatch_proto::IOCTL_READ_EVENTS && r.status == 0 && r.output.len() >= 32 + 2 * 64 {
            r.output.truncate(r.output.len() - 64);
            let count = u32::from_le_bytes(r.output[8..12].try_into().unwrap()) - 1;
            r.output[8..12].copy_from_slice(&count.to_le_bytes());
        }
        Ok(r)
    }
    fn close(&self, h: Handle) -> Result<(), TargetError> {
        self.0.close(h)
    }
    fn cancel_io(&self, h: Handle) -> Result<(), TargetError> {
        self.0.cancel_io(h)
    }
    fn adapter_count(&self) -> usize {
        self.0.adapter_count()
    }
    fn supports(&self, op: AdapterOp) -> bool {
        self.0.supports(op)
    }
    fn adapter_op(&self, a: Adapter, op: AdapterOp) -> Result<(), TargetError> {
        self.0.adapter_op(a, op)
    }
    fn inject(
        &self,
        a: Adapter,
        d: Direction,
        n: &[NblSpec],
        l: Level,
        r: bool,
    ) -> Result<Vec<NblResult>, TargetError> {
        self.0.inject(a, d, n, l, r)
    }
    fn exact_traffic(&self) -> bool {
        true
    }
    fn reload(&self) -> Result<Health, TargetError> {
        self.0.reload()
    }
    fn unload(&self) -> Result<Health, TargetError> {
        self.0.unload()
    }
}

#[test]
fn a_lost_event_is_caught() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = LosesEvents(common::target());
    let s = Scenario::Events.run(&t, &portwatch_scenarios::Params::ops(2, 2000, 12));
    assert!(s.failures.iter().any(|f| f.contains("delivered") && f.contains("generated")), "{s}");
}
