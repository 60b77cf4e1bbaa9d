//! Loom models of the fast mutex, the mutex object and the semaphore on the host backend.
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p ndis-sync --test loom_wait --release`.
#![cfg(loom)]

use core::time::Duration;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;
use ndis_sync::{Mutex, Passive, PassiveMutex, Semaphore};
use std::pin::Pin;

fn model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    builder.check(f);
}

fn passive() -> Passive {
    // SAFETY: loom threads start at PASSIVE_LEVEL in the host model.
    unsafe { Passive::new_unchecked() }
}

/// Two threads increment through the mutex with a separate load and store:
/// an update is lost in some interleaving unless the mutex excludes.
#[test]
fn mutex_excludes() {
    model(|| {
        let mut m = Box::pin(Mutex::new(0usize));
        m.as_mut().init();
        let m: Arc<Pin<Box<Mutex<usize>>>> = Arc::new(m);
        let other = {
            let m = Arc::clone(&m);
            thread::spawn(move || {
                let mut p = passive();
                let mut g = m.lock(&mut p);
                let seen = *g;
                thread::yield_now();
                *g = seen + 1;
            })
        };
        {
            let mut p = passive();
            let mut g = m.lock(&mut p);
            let seen = *g;
            thread::yield_now();
            *g = seen + 1;
        }
        other.join().unwrap();
        let mut p = passive();
        assert_eq!(*m.lock(&mut p), 2);
    });
}

/// The driver's use of a [`PassiveMutex`]: each writer stores a value in
/// a "registry" outside the mutex's data (as `ZwSetValueKey` does, with a
/// yield standing for the call), then in the copy inside. Without mutual
/// exclusion one interleaving ends with the two differing; with it, they
/// always agree, and each thread ends with normal kernel APCs enabled.
#[test]
fn passive_mutex_keeps_registry_and_memory_consistent() {
    model(|| {
        let m: Arc<Pin<Box<PassiveMutex<usize>>>> = Arc::new({
            let mut m = Box::pin(PassiveMutex::new(0usize));
            m.as_mut().init();
            m
        });
        let registry = Arc::new(AtomicUsize::new(0));
        let write = |m: &PassiveMutex<usize>, registry: &AtomicUsize, value: usize| {
            let mut p = passive();
            let mut g = m.lock(&mut p);
            registry.store(value, SeqCst);
            thread::yield_now();
            *g = value;
            drop(g);
            assert_eq!(ndis_sync::host::kernel_apcs_disabled(), 0);
        };
        let other = {
            let (m, registry) = (Arc::clone(&m), Arc::clone(&registry));
            thread::spawn(move || write(&m, &registry, 2))
        };
        write(&m, &registry, 1);
        other.join().unwrap();
        let mut p = passive();
        assert_eq!(*m.lock(&mut p), registry.load(SeqCst));
    });
}

/// A semaphore of one permit: never two holders; a waiter either gets the
/// permit back or times out, and every permit returns.
#[test]
fn semaphore_bounds_holders_and_times_out() {
    model(|| {
        let mut s = Box::pin(Semaphore::new(1));
        s.as_mut().init();
        let s: Arc<Pin<Box<Semaphore>>> = Arc::new(s);
        let inside = Arc::new(AtomicUsize::new(0));
        let run = |s: &Semaphore, inside: &AtomicUsize| {
            if let Ok(_permit) = s.acquire(&passive(), Duration::from_millis(1)) {
                assert_eq!(inside.fetch_add(1, SeqCst), 0, "two holders of one permit");
                inside.fetch_sub(1, SeqCst);
            }
        };
        let other = {
            let (s, inside) = (Arc::clone(&s), Arc::clone(&inside));
            thread::spawn(move || run(&s, &inside))
        };
        run(&s, &inside);
        other.join().unwrap();
        assert_eq!(s.available(), 1);
    });
}
