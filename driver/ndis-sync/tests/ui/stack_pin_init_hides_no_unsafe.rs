// The in-place initialisation macro's own `unsafe` does not cover the
// caller's expression: forging a token inside it still needs `unsafe`.
use ndis_sync::{stack_pin_init, Passive, SpinLock};

fn main() {
    stack_pin_init!(let lock = SpinLock::new(Passive::new_unchecked()));
    let _ = lock;
}
