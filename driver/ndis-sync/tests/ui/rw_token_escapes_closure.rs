// The DISPATCH_LEVEL token lent by a held RW lock cannot outlive the hold.
use ndis_sync::{Passive, RwLock, SpinLock};

fn main() {
    let table = RwLock::new(0).unwrap();
    ndis_sync::stack_pin_init!(let endpoint = SpinLock::new(0));
    let mut passive = unsafe { Passive::new_unchecked() };
    let dispatch = table.read(&mut passive, |_, dispatch| dispatch);
    let _ = endpoint.lock_at_dispatch(dispatch);
}
