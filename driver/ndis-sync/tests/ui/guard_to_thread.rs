// A spin lock guard belongs to the processor that took the lock.
use ndis_sync::{Passive, SpinLock};

fn leak<T>(init: impl ndis_sync::PinInit<T>) -> &'static T {
    let pinned = ndis_sync::try_pin_box(init).unwrap();
    unsafe { &*Box::into_raw(std::pin::Pin::into_inner_unchecked(pinned)) }
}

fn main() {
    let lock: &'static SpinLock<u32> = leak(SpinLock::new(0));
    let passive: &'static mut Passive = Box::leak(Box::new(unsafe { Passive::new_unchecked() }));
    let guard = lock.lock(passive);
    std::thread::spawn(move || drop(guard));
}
