// ExInitializeRundownProtection runs at IRQL <= APC_LEVEL: the initialiser
// borrows the Passive token and cannot be kept past it (or sent to a thread).
use ndis_sync::{Passive, PinInit, Rundown};

fn later() -> impl PinInit<Rundown<u32>> {
    let passive = unsafe { Passive::new_unchecked() };
    Rundown::new(&passive, 1)
}

fn main() {
    let _ = later();
}
