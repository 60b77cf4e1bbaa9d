// Tokens cannot be built by hand.
use ndis_sync::Dispatch;

fn main() {
    let _ = Dispatch { _not_send_sync: core::marker::PhantomData };
}
