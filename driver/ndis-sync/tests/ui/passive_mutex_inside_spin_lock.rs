// A mutex object is waited for at PASSIVE_LEVEL by PassiveMutex: taking one
// inside a spin lock (DISPATCH_LEVEL) must not compile.
use ndis_sync::{Passive, PassiveMutex, SpinLock};

fn main() {
    ndis_sync::stack_pin_init!(let mutex = PassiveMutex::in_place(0));
    ndis_sync::stack_pin_init!(let spin = SpinLock::new(0));
    let mut t = unsafe { Passive::new_unchecked() };
    let mut guard = spin.lock(&mut t);
    let inner = mutex.lock(guard.dispatch());
    drop(inner);
}
