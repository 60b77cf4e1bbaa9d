// A fast mutex is initialised at its final address and must never move:
// `Mutex` is !Unpin, so a pin cannot be taken apart safely.
use core::pin::Pin;
use ndis_sync::Mutex;

fn main() {
    let mut mutex = Box::pin(Mutex::new(0));
    mutex.as_mut().init();
    let moved: Mutex<i32> = std::mem::replace(Pin::into_inner(mutex.as_mut()), Mutex::new(1));
    drop(moved);
}
