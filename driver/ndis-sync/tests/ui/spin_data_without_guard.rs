// The data of a SpinLock is reachable only through a guard.
use ndis_sync::SpinLock;

fn main() {
    let lock = SpinLock::new(0u32);
    *lock += 1;
}
