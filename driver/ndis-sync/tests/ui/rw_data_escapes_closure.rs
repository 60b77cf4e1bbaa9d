// A reference from a read closure cannot outlive the closure (the lock).
use ndis_sync::{Passive, RwLock};

fn main() {
    let lock = RwLock::new(0u32).unwrap();
    let mut passive = unsafe { Passive::new_unchecked() };
    let escaped: &u32 = lock.read(&mut passive, |value, _| value);
    println!("{escaped}");
}
