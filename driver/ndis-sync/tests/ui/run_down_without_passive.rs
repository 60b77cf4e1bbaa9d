// Waiting for run-down needs an IRQL <= APC token (Passive, or a mutex guard's Apc); MaybeDispatch does not do.
use ndis_sync::{MaybeDispatch, Rundown};

fn main() {
    ndis_sync::stack_pin_init!(let endpoint = Rundown::new(&unsafe { ndis_sync::Passive::new_unchecked() }, 1));
    let maybe = unsafe { MaybeDispatch::new_unchecked() };
    let _ = endpoint.run_down(&maybe);
}
