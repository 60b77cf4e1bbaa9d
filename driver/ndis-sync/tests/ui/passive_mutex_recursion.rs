// A mutex object is recursive, but a second guard would alias `&mut T`:
// the guard's own token cannot take a PassiveMutex, this one included.
use ndis_sync::{Passive, PassiveMutex};

fn main() {
    ndis_sync::stack_pin_init!(let mutex = PassiveMutex::in_place(0));
    let mut t = unsafe { Passive::new_unchecked() };
    let mut outer = mutex.lock(&mut t);
    let inner = mutex.lock(outer.critical());
    drop(inner);
}
