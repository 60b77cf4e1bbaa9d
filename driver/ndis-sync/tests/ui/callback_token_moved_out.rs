// A callback's token cannot be moved out of its borrow.
use ndis_sync::{CallbackIrql, MaybeDispatch};

fn main() {
    // SAFETY: the flag is NDIS's (this is a compile-fail test).
    let kept: MaybeDispatch = unsafe {
        CallbackIrql::with(false, |irql| match *irql {
            CallbackIrql::Unknown(maybe) => maybe,
            CallbackIrql::Dispatch(_) => unreachable!(),
        })
    };
    let _ = kept;
}
