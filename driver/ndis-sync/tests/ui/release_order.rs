// Seed 002 / NdisAllocateSpinLock remarks: acquire A then B with the same
// token, release A first. Between the releases the code would run at
// PASSIVE_LEVEL with B held, and after them at DISPATCH_LEVEL.
use ndis_sync::{Passive, SpinLock};

fn main() {
    ndis_sync::stack_pin_init!(let a_lock = SpinLock::new(1));
    ndis_sync::stack_pin_init!(let b_lock = SpinLock::new(2));
    let mut t = unsafe { Passive::new_unchecked() };
    let a = a_lock.lock(&mut t);
    let b = b_lock.lock(&mut t);
    drop(a);
    drop(b);
}
