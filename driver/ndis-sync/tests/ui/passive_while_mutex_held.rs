// While a fast mutex is held the IRQL is APC_LEVEL: nothing that needs a
// PASSIVE_LEVEL token (ZwSetValueKey, for one) may run with the caller's token.
use ndis_sync::{Mutex, Passive};

fn needs_passive(_: &Passive) {}

fn main() {
    let mut mutex = Box::pin(Mutex::new(0));
    mutex.as_mut().init();
    let mut t = unsafe { Passive::new_unchecked() };
    let guard = mutex.lock(&mut t);
    needs_passive(&t);
    drop(guard);
}
