// The data of a SpinLock is reachable only through a guard.
use ndis_sync::SpinLock;

fn main() {
    ndis_sync::stack_pin_init!(let lock = SpinLock::new(0u32));
    *lock += 1;
}
