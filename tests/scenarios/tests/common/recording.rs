//! A target that forwards to the harness and records what a scenario did,
//! so that tests can check a scenario exercises a path.

use std::sync::Mutex;

use portwatch_scenarios::harness_target::HarnessTarget;
use portwatch_scenarios::target::{
    Adapter, AdapterOp, Direction, Handle, Health, Level, NblResult, NblSpec, Reply, Target, TargetError,
};

/// One call the scenario made.
#[derive(Debug, Clone)]
pub enum Event {
    /// An IOCTL: code, input, its status (`None` when the call failed).
    Ioctl(u32, Vec<u8>, Option<i32>),
    /// An injection: direction and the NBLs.
    Inject(Direction, Vec<NblSpec>),
}

/// The harness, recording every IOCTL and injection in order.
pub struct Recording {
    inner: HarnessTarget,
    /// What happened, in order.
    pub events: Mutex<Vec<Event>>,
}

impl Recording {
    /// Records calls to `inner`.
    pub fn new(inner: HarnessTarget) -> Self {
        Recording { inner, events: Mutex::new(Vec::new()) }
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl Target for Recording {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn open(&self) -> Result<Handle, TargetError> {
        self.inner.open()
    }
    fn ioctl(&self, h: Handle, code: u32, input: &[u8], out_len: u32) -> Result<Reply, TargetError> {
        let r = self.inner.ioctl(h, code, input, out_len);
        let status = r.as_ref().ok().map(|r| r.status);
        self.events.lock().unwrap().push(Event::Ioctl(code, input.to_vec(), status));
        r
    }
    fn close(&self, h: Handle) -> Result<(), TargetError> {
        self.inner.close(h)
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
        self.events.lock().unwrap().push(Event::Inject(d, nbls.to_vec()));
        self.inner.inject(a, d, nbls, l, r)
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
