// KeWaitForSingleObject with a non-zero timeout at DISPATCH_LEVEL is a bug
// check (IRQL_NOT_LESS_OR_EQUAL): a timed wait inside a spin lock must not
// compile (try_acquire, a zero timeout, is the form DISPATCH allows).
use core::time::Duration;
use ndis_sync::{Passive, Semaphore, SpinLock};

fn main() {
    let mut semaphore = Box::pin(Semaphore::new(1));
    semaphore.as_mut().init();
    ndis_sync::stack_pin_init!(let spin = SpinLock::new(0));
    let mut t = unsafe { Passive::new_unchecked() };
    let mut guard = spin.lock(&mut t);
    let permit = semaphore.acquire(guard.dispatch(), Duration::from_millis(1));
    drop(permit);
}
