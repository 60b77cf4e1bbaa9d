// run_down waits, so it needs PASSIVE_LEVEL: not while a spin lock is held.
use ndis_sync::{Passive, Rundown, SpinLock};

fn main() {
    ndis_sync::stack_pin_init!(let lock = SpinLock::new(0));
    ndis_sync::stack_pin_init!(let endpoint = Rundown::new(&unsafe { ndis_sync::Passive::new_unchecked() }, 1));
    let mut passive = unsafe { Passive::new_unchecked() };
    let guard = lock.lock(&mut passive);
    let _ = endpoint.run_down(&passive);
    drop(guard);
}
