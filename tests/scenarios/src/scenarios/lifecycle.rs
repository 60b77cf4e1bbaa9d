//! Scenario 3, the lifecycle storm: the IOCTL storm and the data path storm
//! at once while one thread per adapter pauses, restarts, detaches and
//! re-attaches its filter module; then load/unload cycles, each closing
//! handles with IOCTLs in flight before the driver is unloaded.

use std::time::Duration;

use super::traffic::Adapters;
use super::{datapath, ioctl_storm};
use crate::client;
use crate::rng::Rng;
use crate::run::Run;
use crate::target::{Adapter, AdapterOp, Target, TargetError};

/// Where an adapter's PortWatch module is in NDIS's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Paused,
    Detached,
}

/// Drives one valid transition from `state`; returns the new state.
fn step(t: &dyn Target, adapters: &Adapters, a: usize, state: State, rng: &mut Rng, run: &Run) -> State {
    let op = |op: AdapterOp| t.adapter_op(Adapter(a), op);
    let result = match state {
        State::Running => op(AdapterOp::Pause).map(|()| State::Paused),
        State::Paused if rng.chance(50) => op(AdapterOp::Restart).map(|()| State::Running),
        State::Paused => {
            let mut attached = adapters.gate(a).write().unwrap_or_else(std::sync::PoisonError::into_inner);
            *attached = false;
            op(AdapterOp::Detach).map(|()| State::Detached)
        }
        State::Detached => {
            let mut attached = adapters.gate(a).write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let r = op(AdapterOp::Attach).map(|()| State::Paused);
            *attached = r.is_ok();
            r
        }
    };
    result.unwrap_or_else(|e| {
        run.error(&format!("adapter {a} from {state:?}"), &e);
        state
    })
}

/// One adapter's lifecycle thread: random valid transitions while the
/// storm lasts (holding a state for up to 2 ms so traffic meets it), then
/// back to Running.
pub fn adapter_worker(t: &dyn Target, adapters: &Adapters, a: usize, run: &Run, mut rng: Rng) {
    if !t.supports(AdapterOp::Pause) {
        return cycle_worker(t, adapters, a, run);
    }
    let mut state = State::Running;
    while !run.spent() {
        state = step(t, adapters, a, state, &mut rng, run);
        run.done_op();
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
    }
    for _ in 0..3 {
        if state == State::Running || run.stopped() {
            break;
        }
        state = match state {
            State::Paused => t.adapter_op(Adapter(a), AdapterOp::Restart).map(|()| State::Running),
            _ => Ok(step(t, adapters, a, state, &mut rng, run)),
        }
        .unwrap_or_else(|e| {
            run.error("restart at the end", &e);
            state
        });
    }
}

/// One excursion of adapter `a` from Running and back: a pause, then a
/// restart, or a detach, a re-attach and a restart, each state held up to
/// 2 ms. A target that only cycles adapters as a whole gets one cycle.
pub fn excursion(t: &dyn Target, adapters: &Adapters, a: usize, run: &Run, rng: &mut Rng) {
    if !t.supports(AdapterOp::Pause) {
        if t.supports(AdapterOp::Cycle) {
            let mut attached = adapters.gate(a).write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = t.adapter_op(Adapter(a), AdapterOp::Cycle) {
                run.error("adapter cycle", &e);
            }
            *attached = true;
        }
        return;
    }
    let mut state = step(t, adapters, a, State::Running, rng, run);
    // Paused -> Running (3 in 4) or Detached; Detached -> Paused. A step
    // that fails is recorded (a violation stops the run) and retried.
    for _ in 0..64 {
        if state == State::Running || run.stopped() {
            return;
        }
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        state = match state {
            State::Paused if rng.chance(50) => step(t, adapters, a, state, rng, run),
            State::Paused => match t.adapter_op(Adapter(a), AdapterOp::Restart) {
                Ok(()) => State::Running,
                Err(e) => {
                    run.error("restart after an excursion", &e);
                    state
                }
            },
            _ => step(t, adapters, a, state, rng, run),
        };
    }
    if state != State::Running && !run.stopped() {
        run.fail(format!("adapter {a} not Running again after its excursion: {state:?}"));
    }
}

/// A target that only restarts adapters as a whole (Windows).
fn cycle_worker(t: &dyn Target, adapters: &Adapters, a: usize, run: &Run) {
    if !t.supports(AdapterOp::Cycle) {
        eprintln!("adapter {a}: the target cannot change adapter states; lifecycle operations skipped");
        return;
    }
    while !run.spent() {
        let mut attached = adapters.gate(a).write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = t.adapter_op(Adapter(a), AdapterOp::Cycle) {
            run.error("adapter cycle", &e);
        }
        *attached = true;
        drop(attached);
        run.done_op();
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Opens a handle, gives it state, and closes it while another thread has
/// IOCTLs in flight on it.
fn close_with_ioctls_in_flight(t: &dyn Target, run: &Run, rng: &mut Rng) {
    let h = match t.open() {
        Ok(h) => h,
        Err(e) => return run.error("open", &e),
    };
    let _ = client::bind(t, h, portwatch_proto::PROTO_UDP, 45_000);
    let _ = client::set_local_address(t, h, &[4; 4]);
    let seed = rng.next_u64();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut rng = Rng::new(seed, 0);
            for _ in 0..50 {
                let (code, input, out_len) = ioctl_storm::random_request(&mut rng);
                match t.ioctl(h, code, &input, out_len) {
                    Ok(_) => {}
                    Err(TargetError::Status(crate::client::status::INVALID_HANDLE)) => break,
                    Err(e) => return run.error("ioctl racing close", &e),
                }
            }
        });
        std::thread::sleep(Duration::from_micros(rng.below(300)));
        if let Err(e) = t.close(h) {
            run.error("close racing ioctls", &e);
        }
    });
}

/// `cycles` unload/load cycles; every unloaded instance must be healthy.
pub fn reload_cycles(t: &dyn Target, run: &Run, cycles: usize, rng: &mut Rng) {
    for c in 0..cycles {
        if run.stopped() {
            return;
        }
        for _ in 0..3 {
            close_with_ioctls_in_flight(t, run, rng);
        }
        match t.reload() {
            Ok(health) => {
                for p in health.problems() {
                    run.fail(format!("load/unload cycle {c}: {p}"));
                }
            }
            Err(TargetError::Unsupported(why)) => return eprintln!("load/unload cycles skipped: {why}"),
            Err(e) => return run.error("reload", &e),
        }
        run.done_op();
    }
}

/// The whole scenario: both storms with adapter workers, then `cycles`
/// load/unload cycles.
pub fn storm(t: &dyn Target, run: &Run, threads: usize, seed: u64, cycles: usize) {
    let adapters = Adapters::attached(t.adapter_count());
    let ioctl_threads = (threads / 2).max(1);
    let data_threads = threads.saturating_sub(ioctl_threads).max(1);
    std::thread::scope(|s| {
        s.spawn(|| ioctl_storm::storm(t, run, ioctl_threads, seed ^ 0x10C7));
        datapath::storm(t, run, data_threads, seed, &adapters, true);
    });
    reload_cycles(t, run, cycles, &mut Rng::new(seed, 500));
}
