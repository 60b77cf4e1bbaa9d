// A callback's token cannot be kept in a struct that outlives the callback.
use ndis_sync::{CallbackIrql, SpinLock};

struct Later<'a> {
    irql: &'a mut CallbackIrql,
}

fn main() {
    ndis_sync::stack_pin_init!(let lock = SpinLock::new(0));
    let mut later = None;
    // SAFETY: the flag is NDIS's (this is a compile-fail test).
    unsafe { CallbackIrql::with(false, |irql| later = Some(Later { irql })) };
    // Back at PASSIVE_LEVEL, or on another callback's stack:
    if let Some(Later { irql: CallbackIrql::Unknown(maybe) }) = later {
        let _guard = lock.lock(maybe);
    }
}
