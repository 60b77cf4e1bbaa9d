// Rundown protection is released by the thread that acquired it.
use ndis_sync::Rundown;

fn main() {
    let endpoint: &'static Rundown<u32> = Box::leak(Box::new(Rundown::new(0)));
    let guard = endpoint.try_acquire().unwrap();
    std::thread::spawn(move || drop(guard));
}
