// A spin lock is initialised where it lives (NdisAllocateSpinLock
// identifies it by that address): safe code cannot move it afterwards.
use ndis_sync::{stack_pin_init, SpinLock};

fn main() {
    stack_pin_init!(let a = SpinLock::new(1));
    stack_pin_init!(let b = SpinLock::new(2));
    core::mem::swap(&mut *a, &mut *b);
}
