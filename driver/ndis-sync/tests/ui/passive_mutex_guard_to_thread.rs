// KeReleaseMutex must run on the thread that owns the mutex (else
// STATUS_MUTANT_NOT_OWNED): a guard cannot be sent to another thread.
use ndis_sync::{Passive, PassiveMutex};

fn main() {
    let mut mutex = Box::pin(PassiveMutex::new(0));
    mutex.as_mut().init();
    let mutex: &'static PassiveMutex<i32> = Box::leak(Box::new(mutex));
    let t = Box::leak(Box::new(unsafe { Passive::new_unchecked() }));
    let guard = mutex.lock(t);
    std::thread::spawn(move || drop(guard));
}
