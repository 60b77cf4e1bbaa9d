// Rundown protection is released by the thread that acquired it.
use ndis_sync::Rundown;

fn leak<T>(init: impl ndis_sync::PinInit<T>) -> &'static T {
    let pinned = ndis_sync::try_pin_box(init).unwrap();
    unsafe { &*Box::into_raw(std::pin::Pin::into_inner_unchecked(pinned)) }
}

fn main() {
    let endpoint: &'static Rundown<u32> = leak(Rundown::new(&unsafe { ndis_sync::Passive::new_unchecked() }, 0));
    let guard = endpoint.try_acquire().unwrap();
    std::thread::spawn(move || drop(guard));
}
