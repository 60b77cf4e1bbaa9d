// A lock nested with the outer guard's token cannot outlive the outer guard.
use ndis_sync::{Passive, SpinLock};

fn main() {
    ndis_sync::stack_pin_init!(let outer = SpinLock::new(1));
    ndis_sync::stack_pin_init!(let inner = SpinLock::new(2));
    let mut passive = unsafe { Passive::new_unchecked() };
    let mut a = outer.lock(&mut passive);
    let b = inner.lock_at_dispatch(a.dispatch());
    drop(a);
    drop(b);
}
