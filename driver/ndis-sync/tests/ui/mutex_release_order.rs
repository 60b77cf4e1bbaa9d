// Two mutexes taken with the same token could be released in the wrong
// order (restoring PASSIVE_LEVEL while the second is held): the second must
// be taken with the first guard's APC token.
use ndis_sync::{Mutex, Passive};

fn main() {
    let (mut a_m, mut b_m) = (Box::pin(Mutex::new(1)), Box::pin(Mutex::new(2)));
    a_m.as_mut().init();
    b_m.as_mut().init();
    let mut t = unsafe { Passive::new_unchecked() };
    let a = a_m.lock(&mut t);
    let b = b_m.lock(&mut t);
    drop(a);
    drop(b);
}
