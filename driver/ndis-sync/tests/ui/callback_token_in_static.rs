// A callback's token cannot be kept in a static for use after the callback.
use ndis_sync::{CallbackIrql, Dispatch};
use std::cell::Cell;

thread_local! {
    static KEPT: Cell<Option<&'static mut Dispatch>> = const { Cell::new(None) };
}

fn main() {
    // SAFETY: the flag is NDIS's (this is a compile-fail test).
    unsafe {
        CallbackIrql::with(true, |irql| {
            if let CallbackIrql::Dispatch(dispatch) = irql {
                KEPT.set(Some(dispatch));
            }
        })
    };
}
