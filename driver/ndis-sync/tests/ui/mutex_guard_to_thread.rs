// ExReleaseFastMutex must run on the thread that owns the mutex: a guard
// cannot be sent to another thread.
use ndis_sync::{Mutex, Passive};

fn main() {
    let mut mutex = Box::pin(Mutex::new(0));
    mutex.as_mut().init();
    let mutex: &'static Mutex<i32> = Box::leak(Box::new(mutex));
    let mut t = Box::leak(Box::new(unsafe { Passive::new_unchecked() }));
    let guard = mutex.lock(t);
    std::thread::spawn(move || drop(guard));
}
