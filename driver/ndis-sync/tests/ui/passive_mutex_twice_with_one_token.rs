// The caller's Passive token is borrowed by the guard: it cannot take the
// mutex again (recursion) or any other PassiveMutex while it is held.
use ndis_sync::{Passive, PassiveMutex};

fn main() {
    ndis_sync::stack_pin_init!(let mutex = PassiveMutex::in_place(0));
    let mut t = unsafe { Passive::new_unchecked() };
    let outer = mutex.lock(&mut t);
    let inner = mutex.lock(&mut t);
    drop(inner);
    drop(outer);
}
