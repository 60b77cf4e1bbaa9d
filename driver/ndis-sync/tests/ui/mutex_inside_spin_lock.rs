// A fast mutex waits, and ExAcquireFastMutex is callable only at IRQL <=
// APC_LEVEL: taking one inside a spin lock (DISPATCH_LEVEL) must not compile.
use ndis_sync::{Mutex, Passive, SpinLock};

fn main() {
    let mut mutex = Box::pin(Mutex::new(0));
    mutex.as_mut().init();
    ndis_sync::stack_pin_init!(let spin = SpinLock::new(0));
    let mut t = unsafe { Passive::new_unchecked() };
    let mut guard = spin.lock(&mut t);
    let inner = mutex.lock(guard.dispatch());
    drop(inner);
}
