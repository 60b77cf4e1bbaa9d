// Waiting for run-down is impossible inside a lock: its token is DISPATCH.
use ndis_sync::{Passive, Rundown, SpinLock};

fn main() {
    let (lock, endpoint) = (SpinLock::new(0), Rundown::new(1));
    let mut passive = unsafe { Passive::new_unchecked() };
    let mut guard = lock.lock(&mut passive);
    let _ = endpoint.run_down(guard.dispatch());
}
