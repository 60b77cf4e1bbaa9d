//! A target that forwards to the harness and records what a scenario did,
//! so that tests can check a scenario exercises a path.

use std::sync::Mutex;

use portwatch_scenarios::harness_target::HarnessTarget;
use portwatch_scenarios::target::{Direction, NblResult, NblSpec, Reply, TargetError};

use super::forward::{Forward, Hooks};

/// One call the scenario made.
#[derive(Debug, Clone)]
pub enum Event {
    /// An IOCTL: code, input, its status (`None` when the call failed).
    Ioctl(u32, Vec<u8>, Option<i32>),
    /// An injection: direction and the NBLs.
    Inject(Direction, Vec<NblSpec>),
}

/// Every IOCTL and injection, in order.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Hooks for Recorder {
    fn ioctl(&self, code: u32, input: &[u8], reply: Result<Reply, TargetError>) -> Result<Reply, TargetError> {
        let status = reply.as_ref().ok().map(|r| r.status);
        self.events.lock().unwrap().push(Event::Ioctl(code, input.to_vec(), status));
        reply
    }

    fn inject(
        &self,
        direction: Direction,
        nbls: &[NblSpec],
        results: Result<Vec<NblResult>, TargetError>,
    ) -> Result<Vec<NblResult>, TargetError> {
        self.events.lock().unwrap().push(Event::Inject(direction, nbls.to_vec()));
        results
    }
}

/// The harness, recording every IOCTL and injection in order.
pub type Recording = Forward<Recorder>;

impl Recording {
    /// Records calls to `inner`.
    pub fn new(inner: HarnessTarget) -> Self {
        Forward { inner, hooks: Recorder::default() }
    }

    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.hooks.events.lock().unwrap().clone()
    }
}
