// `run_down` moves the value out, so it needs `T: Unpin`: a spin lock
// inside a Rundown is consumed in place with `run_down_with` instead of
// being copied out before NdisFreeSpinLock.
use ndis_sync::{stack_pin_init, Passive, Rundown, SpinLock};

fn main() {
    stack_pin_init!(let endpoint = Rundown::new(&unsafe { ndis_sync::Passive::new_unchecked() }, SpinLock::new(0)));
    let passive = unsafe { Passive::new_unchecked() };
    let _lock = endpoint.run_down(&passive);
}
