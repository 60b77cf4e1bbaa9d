// "At most DISPATCH" tokens are !Send as well.
use ndis_sync::MaybeDispatch;

fn needs_send<T: Send>(_: T) {}

fn main() {
    needs_send(unsafe { MaybeDispatch::new_unchecked() });
}
