// The DISPATCH_LEVEL token lent by a held RW lock cannot outlive the hold.
use ndis_sync::{Passive, RwLock, SpinLock};

fn main() {
    let (table, endpoint) = (RwLock::new(0).unwrap(), SpinLock::new(0));
    let mut passive = unsafe { Passive::new_unchecked() };
    let dispatch = table.read(&mut passive, |_, dispatch| dispatch);
    let _ = endpoint.lock_at_dispatch(dispatch);
}
