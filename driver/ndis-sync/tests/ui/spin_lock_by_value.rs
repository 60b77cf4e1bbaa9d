// There is no spin lock by value: `new` is an in-place initialiser, so a
// lock cannot be initialised on the stack and then copied into pool.
use ndis_sync::SpinLock;

fn main() {
    let lock: SpinLock<u32> = SpinLock::new(0);
    let pool = Box::new(lock);
    drop(pool);
}
