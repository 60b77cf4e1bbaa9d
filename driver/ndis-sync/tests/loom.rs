//! Loom models of the host backend: every interleaving (up to a preemption
//! bound) of the lock and rundown protocols. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p ndis-sync --test loom --release`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;
use ndis_sync::{MaybeDispatch, Passive, Rundown, RwLock, SpinLock};

fn model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    builder.check(f);
}

fn maybe_dispatch() -> MaybeDispatch {
    // SAFETY: loom threads start at PASSIVE_LEVEL in the host model.
    unsafe { MaybeDispatch::new_unchecked() }
}

fn passive() -> Passive {
    // SAFETY: loom threads start at PASSIVE_LEVEL in the host model.
    unsafe { Passive::new_unchecked() }
}

/// A counter updated with a separate load and store: two holders at once
/// would lose an update in some interleaving.
#[derive(Default)]
struct Counter {
    inside: AtomicUsize,
    value: AtomicUsize,
}

impl Counter {
    fn increment(&self) {
        assert_eq!(self.inside.fetch_add(1, SeqCst), 0, "two holders at once");
        let seen = self.value.load(SeqCst);
        self.value.store(seen + 1, SeqCst);
        self.inside.fetch_sub(1, SeqCst);
    }
}

#[test]
fn spin_lock_is_mutually_exclusive() {
    model(|| {
        let lock = Arc::new(ndis_sync::try_pin_box(SpinLock::new(Counter::default())).unwrap());
        let other = {
            let lock = lock.clone();
            thread::spawn(move || lock.lock(&mut maybe_dispatch()).increment())
        };
        lock.lock(&mut passive()).increment();
        other.join().unwrap();
        assert_eq!(lock.lock(&mut passive()).value.load(SeqCst), 2);
    });
}

#[test]
fn rw_lock_writers_are_mutually_exclusive() {
    model(|| {
        let lock = Arc::new(RwLock::new(Counter::default()).unwrap());
        let other = {
            let lock = lock.clone();
            thread::spawn(move || lock.write(&mut maybe_dispatch(), |c, _| c.increment()))
        };
        lock.write(&mut passive(), |c, _| c.increment());
        other.join().unwrap();
        assert_eq!(lock.read(&mut passive(), |c, _| c.value.load(SeqCst)), 2);
    });
}

/// Two fields a writer updates one after the other.
#[derive(Default)]
struct Pair {
    first: AtomicUsize,
    second: AtomicUsize,
}

#[test]
fn rw_lock_readers_never_see_a_partial_update() {
    model(|| {
        let lock = Arc::new(RwLock::new(Pair::default()).unwrap());
        let writer = {
            let lock = lock.clone();
            thread::spawn(move || {
                lock.write(&mut maybe_dispatch(), |pair, _| {
                    pair.first.store(1, SeqCst);
                    pair.second.store(1, SeqCst);
                })
            })
        };
        let (first, second) = lock.read(&mut passive(), |pair, _| (pair.first.load(SeqCst), pair.second.load(SeqCst)));
        assert_eq!(first, second, "reader saw half a write");
        writer.join().unwrap();
    });
}

/// What a rundown protects: whether a guard is using it, whether it is gone.
#[derive(Default)]
struct Probe {
    users: AtomicUsize,
    freed: AtomicBool,
}

#[test]
fn run_down_returns_after_the_last_guard_and_blocks_new_ones() {
    model(|| {
        let rundown = Arc::new(ndis_sync::try_pin_box(Rundown::new(&passive(), Arc::new(Probe::default()))).unwrap());
        let user = {
            let rundown = rundown.clone();
            thread::spawn(move || {
                if let Some(probe) = rundown.try_acquire() {
                    probe.users.fetch_add(1, SeqCst);
                    assert!(!probe.freed.load(SeqCst), "used after run-down");
                    probe.users.fetch_sub(1, SeqCst);
                }
            })
        };
        let probe = rundown.run_down(&passive()).expect("only run-down");
        assert_eq!(probe.users.load(SeqCst), 0, "run-down returned with a guard alive");
        probe.freed.store(true, SeqCst);
        assert!(rundown.try_acquire().is_none());
        user.join().unwrap();
        assert!(rundown.try_acquire().is_none());
    });
}

#[test]
fn racing_run_downs_take_the_value_once() {
    model(|| {
        let rundown = Arc::new(ndis_sync::try_pin_box(Rundown::new(&passive(), 7)).unwrap());
        let other = {
            let rundown = rundown.clone();
            thread::spawn(move || {
                let taken = rundown.run_down(&passive());
                assert!(rundown.try_acquire().is_none());
                taken
            })
        };
        let mine = rundown.run_down(&passive());
        assert!(rundown.try_acquire().is_none());
        let theirs = other.join().unwrap();
        assert_eq!(mine.xor(theirs), Some(7), "exactly one run_down takes the value");
    });
}
