//! What every scenario shares: its parameters, the shared operation budget,
//! the failure log, progress on stderr and the final [`Summary`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::target::{Health, TargetError};

/// How much work a scenario does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// This many operations in all (shared by the worker threads).
    Ops(u64),
    /// Operations until this much time has passed.
    Duration(Duration),
}

/// The parameters every scenario takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Worker threads (at least 1).
    pub threads: usize,
    /// How much work.
    pub budget: Budget,
    /// Seed of every random choice.
    pub seed: u64,
    /// Print progress to stderr about once a second.
    pub progress: bool,
}

impl Params {
    /// `threads` workers doing `ops` operations from `seed`, quietly.
    pub fn ops(threads: usize, ops: u64, seed: u64) -> Self {
        Params { threads: threads.max(1), budget: Budget::Ops(ops), seed, progress: false }
    }
}

/// The shared state of one scenario run: budget, counters, failures.
pub struct Run {
    budget: Budget,
    started: Instant,
    claimed: AtomicU64,
    /// Operations completed.
    pub ops: AtomicU64,
    /// Packets injected.
    pub packets: AtomicU64,
    stop: AtomicBool,
    failures: Mutex<Vec<String>>,
    violations: Mutex<Vec<String>>,
    notes: Mutex<Vec<(&'static str, u64)>>,
}

const MAX_FAILURES: usize = 50;

impl Run {
    /// A run with `params`' budget, starting now.
    pub fn new(params: &Params) -> Self {
        Run {
            budget: params.budget,
            started: Instant::now(),
            claimed: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            failures: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
        }
    }

    /// Claims one operation of the budget; `false` when it is spent or the
    /// run was stopped.
    pub fn next_op(&self) -> bool {
        if self.stopped() {
            return false;
        }
        match self.budget {
            Budget::Ops(n) => self.claimed.fetch_add(1, Ordering::Relaxed) < n,
            Budget::Duration(d) => self.started.elapsed() < d,
        }
    }

    /// Gives back an operation claimed with [`Run::next_op`] that did not
    /// do what the budget counts (a flood batch that met a detached
    /// adapter): another one is done in its place.
    pub fn refund(&self) {
        if matches!(self.budget, Budget::Ops(_)) {
            self.claimed.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether the budget is spent (without claiming anything).
    pub fn spent(&self) -> bool {
        self.stopped()
            || match self.budget {
                Budget::Ops(n) => self.claimed.load(Ordering::Relaxed) >= n,
                Budget::Duration(d) => self.started.elapsed() >= d,
            }
    }

    /// How far through its budget the run is, from 0 to 1 (operations
    /// claimed, or time passed).
    pub fn fraction(&self) -> f64 {
        match self.budget {
            Budget::Ops(n) => self.claimed.load(Ordering::Relaxed) as f64 / n.max(1) as f64,
            Budget::Duration(d) => self.started.elapsed().as_secs_f64() / d.as_secs_f64().max(1e-9),
        }
        .min(1.0)
    }

    /// Records a figure the summary lists with the model's (by name).
    pub fn note(&self, name: &'static str, value: u64) {
        self.notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((name, value));
    }

    /// Counts one completed operation.
    pub fn done_op(&self) {
        self.ops.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` injected packets.
    pub fn add_packets(&self, n: u64) {
        self.packets.fetch_add(n, Ordering::Relaxed);
    }

    /// Stops every worker at its next operation.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether [`Run::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Records a broken invariant (the run goes on, to find more).
    pub fn fail(&self, what: impl Into<String>) {
        let mut f = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if f.len() < MAX_FAILURES {
            f.push(what.into());
        }
    }

    /// Records an unexpected target error; a verifier stop ends the run.
    pub fn error(&self, context: &str, e: &TargetError) {
        match e {
            TargetError::Violation(v) => {
                self.violations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(v.clone());
                self.stop();
            }
            other => self.fail(format!("{context}: {other}")),
        }
    }

    /// The broken invariants so far.
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs `body` while a thread prints progress to stderr every second
    /// (when `progress`); returns what `body` returned.
    pub fn with_progress<R>(&self, name: &str, progress: bool, body: impl FnOnce() -> R) -> R {
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            if progress {
                s.spawn(|| self.print_progress(name, &done));
            }
            let r = body();
            done.store(true, Ordering::SeqCst);
            r
        })
    }

    fn print_progress(&self, name: &str, done: &AtomicBool) {
        let mut last = Instant::now();
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                eprintln!(
                    "[{name}] {:>6.1}s  {} ops  {} packets  {} failures",
                    self.elapsed().as_secs_f64(),
                    self.ops.load(Ordering::Relaxed),
                    self.packets.load(Ordering::Relaxed),
                    self.failures().len()
                );
            }
        }
    }

    /// The summary of the run, with the target's health at the end.
    pub fn summary(&self, scenario: &str, health: Health) -> Summary {
        let mut violations = self.violations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for v in &health.violations {
            if !violations.contains(v) {
                violations.push(v.clone());
            }
        }
        let mut failures = self.failures();
        failures
            .extend(health.problems().into_iter().filter(|p| !p.starts_with("violation") && !p.starts_with("leaked")));
        let mut model = health.model.clone();
        model.extend(self.notes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().copied());
        Summary {
            scenario: scenario.to_owned(),
            operations: self.ops.load(Ordering::Relaxed),
            packets: self.packets.load(Ordering::Relaxed),
            violations,
            leaks: health.leaks.clone(),
            failures,
            elapsed: self.elapsed(),
            allocations: health.allocations,
            peak_stack: health.peak_stack,
            unobservable: health.unobservable,
            model,
        }
    }
}

/// What a scenario did and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Operations completed (IOCTLs, opens, closes, injections, state changes).
    pub operations: u64,
    /// Packets injected.
    pub packets: u64,
    /// Verifier violations.
    pub violations: Vec<String>,
    /// Pool leaked at unload.
    pub leaks: Vec<String>,
    /// Broken invariants (wrong counters, torn values, unexpected statuses,
    /// NBLs or IRPs not balanced).
    pub failures: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// Pool allocations the driver attempted (last instance loaded).
    pub allocations: u64,
    /// Deepest driver stack use seen, in bytes.
    pub peak_stack: usize,
    /// The target cannot observe violations and leaks (real machine).
    pub unobservable: bool,
    /// What the simulated NDIS saw, by name (harness only).
    pub model: Vec<(&'static str, u64)>,
}

impl Summary {
    /// No violation, no leak, no broken invariant.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.leaks.is_empty() && self.failures.is_empty()
    }

    /// Operations per second of wall time.
    pub fn ops_per_sec(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds the counts of `other` (a later phase of the same scenario).
    pub fn absorb(&mut self, other: Summary) {
        self.operations += other.operations;
        self.packets += other.packets;
        self.violations.extend(other.violations);
        self.leaks.extend(other.leaks);
        self.failures.extend(other.failures);
        self.elapsed += other.elapsed;
        self.allocations = self.allocations.max(other.allocations);
        self.peak_stack = self.peak_stack.max(other.peak_stack);
        self.unobservable |= other.unobservable;
        for (name, n) in other.model {
            match self.model.iter_mut().find(|m| m.0 == name) {
                Some(m) => m.1 += n,
                None => self.model.push((name, n)),
            }
        }
    }

    /// The model counter `name` (0 when the target does not report it).
    pub fn model_count(&self, name: &str) -> u64 {
        self.model.iter().find(|m| m.0 == name).map_or(0, |m| m.1)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario:    {}", self.scenario)?;
        writeln!(f, "operations:  {}", self.operations)?;
        writeln!(f, "packets:     {}", self.packets)?;
        if self.unobservable {
            writeln!(f, "violations:  not observable here (Driver Verifier bug-checks the machine instead)")?;
        } else {
            writeln!(f, "violations:  {}", self.violations.len())?;
            writeln!(f, "leaks:       {}", self.leaks.len())?;
            writeln!(f, "allocations: {}", self.allocations)?;
            writeln!(f, "peak stack:  {} bytes", self.peak_stack)?;
        }
        for (name, n) in &self.model {
            writeln!(f, "  {name}: {n}")?;
        }
        writeln!(f, "failures:    {}", self.failures.len())?;
        writeln!(f, "elapsed:     {:.2} s", self.elapsed.as_secs_f64())?;
        writeln!(f, "ops/s:       {:.0}", self.ops_per_sec())?;
        for v in &self.violations {
            writeln!(f, "  violation: {v}")?;
        }
        for l in &self.leaks {
            writeln!(f, "  leak: {l}")?;
        }
        for x in &self.failures {
            writeln!(f, "  failure: {x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_budget_is_shared_and_exact() {
        let run = Run::new(&Params::ops(4, 100, 0));
        let claimed = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    while run.next_op() {
                        claimed.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(claimed.load(Ordering::Relaxed), 100);
        assert!(run.spent());
    }

    #[test]
    fn a_violation_stops_the_run_and_is_reported() {
        let run = Run::new(&Params::ops(1, 10, 0));
        run.error("x", &TargetError::Violation("bug check".into()));
        assert!(!run.next_op());
        let s = run.summary("t", Health::default());
        assert_eq!(s.violations, vec!["bug check".to_string()]);
        assert!(!s.is_clean());
    }

    #[test]
    fn unbalanced_health_is_a_failure() {
        let run = Run::new(&Params::ops(1, 1, 0));
        let s = run.summary("t", Health { irps_sent: 3, irps_completed: 2, ..Health::default() });
        assert_eq!(s.failures.len(), 1, "{s}");
    }
}
