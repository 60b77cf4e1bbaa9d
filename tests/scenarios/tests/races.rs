//! Scenario 4 at CI size, under special pool, and proof that a torn value
//! is caught.

mod common;

use portwatch_scenarios::harness_target::HarnessTarget;
use portwatch_scenarios::target::{
    Adapter, AdapterOp, Direction, Handle, Health, Level, NblResult, NblSpec, Reply, Target, TargetError,
};
use portwatch_scenarios::Scenario;

#[test]
fn readers_only_see_whole_values() {
    let t = common::target();
    let s = Scenario::Races.run(&t, &common::params(5));
    common::assert_clean(&s, common::OPS);
}

/// The harness, except that local-address replies lose their last byte
/// (header adjusted), as a torn read would.
struct Tears(HarnessTarget);

impl Target for Tears {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn open(&self) -> Result<Handle, TargetError> {
        self.0.open()
    }
    fn ioctl(&self, h: Handle, code: u32, input: &[u8], out_len: u32) -> Result<Reply, TargetError> {
        let mut r = self.0.ioctl(h, code, input, out_len)?;
        if code == portwatch_proto::IOCTL_GET_LOCAL_ADDRESS && r.status == 0 && r.output.len() > 14 {
            r.output.pop();
            let n = r.output.len() as u32;
            r.output[4..8].copy_from_slice(&n.to_le_bytes());
            r.output[8..12].copy_from_slice(&(n - 12).to_le_bytes());
        }
        Ok(r)
    }
    fn close(&self, h: Handle) -> Result<(), TargetError> {
        self.0.close(h)
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
fn a_torn_address_is_caught() {
    let t = Tears(common::target());
    // Enough operations that the reader meets a long address even when one
    // thread runs far ahead of the other.
    let s = Scenario::Races.run(&t, &portwatch_scenarios::Params::ops(2, 4_000, 6));
    assert!(s.failures.iter().any(|f| f.contains("torn local address")), "{s}");
}
