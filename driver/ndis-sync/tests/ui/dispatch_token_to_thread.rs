// Not even a DISPATCH_LEVEL token lent by a held lock can leave the processor.
use ndis_sync::{Passive, RwLock};

fn main() {
    let table = RwLock::new(0).unwrap();
    let mut passive = unsafe { Passive::new_unchecked() };
    table.read(&mut passive, |_, dispatch| {
        std::thread::scope(|s| {
            s.spawn(|| {
                let _ = &dispatch;
            });
        });
    });
}
