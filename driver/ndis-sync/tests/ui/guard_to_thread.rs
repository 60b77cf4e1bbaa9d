// A spin lock guard belongs to the processor that took the lock.
use ndis_sync::{Passive, SpinLock};

fn main() {
    let lock: &'static SpinLock<u32> = Box::leak(Box::new(SpinLock::new(0)));
    let passive: &'static mut Passive = Box::leak(Box::new(unsafe { Passive::new_unchecked() }));
    let guard = lock.lock(passive);
    std::thread::spawn(move || drop(guard));
}
