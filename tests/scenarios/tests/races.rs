//! Scenario 4 at CI size, under special pool, and proof that a torn value
//! is caught.

mod common;

use common::forward::{Forward, Hooks};
use portwatch_scenarios::target::{Reply, TargetError};
use portwatch_scenarios::Scenario;

#[test]
fn readers_only_see_whole_values() {
    let t = common::target();
    let s = Scenario::Races.run(&t, &common::params(5));
    common::assert_clean(&s, common::OPS);
}

/// Local-address replies lose their last byte (header adjusted), as a torn
/// read would.
struct Tears;

impl Hooks for Tears {
    fn ioctl(&self, code: u32, _input: &[u8], reply: Result<Reply, TargetError>) -> Result<Reply, TargetError> {
        let mut r = reply?;
        if code == portwatch_proto::IOCTL_GET_LOCAL_ADDRESS && r.status == 0 && r.output.len() > 14 {
            r.output.pop();
            let n = r.output.len() as u32;
            r.output[4..8].copy_from_slice(&n.to_le_bytes());
            r.output[8..12].copy_from_slice(&(n - 12).to_le_bytes());
        }
        Ok(r)
    }
}

#[test]
fn a_torn_address_is_caught() {
    let t = Forward { inner: common::target(), hooks: Tears };
    // Enough operations that the reader meets a long address even when one
    // thread runs far ahead of the other.
    let s = Scenario::Races.run(&t, &portwatch_scenarios::Params::ops(2, 4_000, 6));
    assert!(s.failures.iter().any(|f| f.contains("torn local address")), "{s}");
}
