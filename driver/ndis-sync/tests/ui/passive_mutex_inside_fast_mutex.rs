// A fast mutex raises to APC_LEVEL; PassiveMutex holders must stay at
// PASSIVE_LEVEL (Zw* calls): one cannot be taken inside a fast mutex.
use ndis_sync::{Mutex, Passive, PassiveMutex};

fn main() {
    ndis_sync::stack_pin_init!(let fast = Mutex::in_place(0));
    ndis_sync::stack_pin_init!(let mutex = PassiveMutex::in_place(0));
    let mut t = unsafe { Passive::new_unchecked() };
    let mut guard = fast.lock(&mut t);
    let inner = mutex.lock(guard.apc());
    drop(inner);
}
