//! A target that forwards to the harness and lets a test see, or change,
//! what passes: a recording, or a driver with one planted bug whose check
//! must then fail.

use portwatch_scenarios::harness_target::HarnessTarget;
use portwatch_scenarios::target::{
    Adapter, AdapterOp, Direction, Handle, Health, Level, NblResult, NblSpec, Reply, Target, TargetError,
};

/// What a [`Forward`] does besides forwarding: each hook sees the harness's
/// answer and returns the one the scenario gets (by default, the same).
pub trait Hooks: Sync {
    /// An IOCTL's `code`, `input` and reply.
    fn ioctl(&self, code: u32, input: &[u8], reply: Result<Reply, TargetError>) -> Result<Reply, TargetError> {
        let _ = (code, input);
        reply
    }

    /// An injection's direction, NBLs and results.
    fn inject(
        &self,
        direction: Direction,
        nbls: &[NblSpec],
        results: Result<Vec<NblResult>, TargetError>,
    ) -> Result<Vec<NblResult>, TargetError> {
        let _ = (direction, nbls);
        results
    }
}

/// The harness seen through `hooks`. Status indications, the NDIS version
/// and the registry hooks keep [`Target`]'s defaults (unsupported): the
/// tests using it look at IOCTLs and traffic only.
pub struct Forward<H> {
    /// The driver in the harness.
    pub inner: HarnessTarget,
    /// What the test adds.
    pub hooks: H,
}

impl<H: Hooks> Target for Forward<H> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn open(&self) -> Result<Handle, TargetError> {
        self.inner.open()
    }
    fn ioctl(&self, h: Handle, code: u32, input: &[u8], out_len: u32) -> Result<Reply, TargetError> {
        self.hooks.ioctl(code, input, self.inner.ioctl(h, code, input, out_len))
    }
    fn close(&self, h: Handle) -> Result<(), TargetError> {
        self.inner.close(h)
    }
    fn cancel_io(&self, h: Handle) -> Result<(), TargetError> {
        self.inner.cancel_io(h)
    }
    fn adapter_count(&self) -> usize {
        self.inner.adapter_count()
    }
    fn supports(&self, op: AdapterOp) -> bool {
        self.inner.supports(op)
    }
    fn adapter_op(&self, a: Adapter, op: AdapterOp) -> Result<(), TargetError> {
        self.inner.adapter_op(a, op)
    }
    fn inject(
        &self,
        a: Adapter,
        d: Direction,
        nbls: &[NblSpec],
        l: Level,
        r: bool,
    ) -> Result<Vec<NblResult>, TargetError> {
        self.hooks.inject(d, nbls, self.inner.inject(a, d, nbls, l, r))
    }
    fn exact_traffic(&self) -> bool {
        true
    }
    fn reload(&self) -> Result<Health, TargetError> {
        self.inner.reload()
    }
    fn unload(&self) -> Result<Health, TargetError> {
        self.inner.unload()
    }
}
