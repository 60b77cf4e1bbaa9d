// A lock nested with the outer guard's token cannot outlive the outer guard.
use ndis_sync::{Passive, SpinLock};

fn main() {
    let (outer, inner) = (SpinLock::new(1), SpinLock::new(2));
    let mut passive = unsafe { Passive::new_unchecked() };
    let mut a = outer.lock(&mut passive);
    let b = inner.lock_at_dispatch(a.dispatch());
    drop(a);
    drop(b);
}
