// Inside a lock taken with a callback's token, safe code has no way to a
// second token: the callback's is borrowed by the guard.
use ndis_sync::{CallbackIrql, SpinLock};

fn main() {
    ndis_sync::stack_pin_init!(let a = SpinLock::new(1));
    ndis_sync::stack_pin_init!(let b = SpinLock::new(2));
    // SAFETY: the flag is NDIS's (this is a compile-fail test).
    unsafe {
        CallbackIrql::with(false, |irql| {
            let CallbackIrql::Unknown(maybe) = irql else { return };
            let guard_a = a.lock(maybe);
            let CallbackIrql::Unknown(again) = irql else { return };
            let guard_b = b.lock(again);
            drop(guard_a); // the release order NdisAllocateSpinLock warns about
            drop(guard_b);
        })
    };
}
