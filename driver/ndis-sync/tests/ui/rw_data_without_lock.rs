// The data of an RwLock is reachable only inside read/write closures.
use ndis_sync::RwLock;

fn main() {
    let lock = RwLock::new(0u32).unwrap();
    let value: &u32 = &lock;
    println!("{value}");
}
