// An IRQL token describes the current processor: it cannot go elsewhere.
use ndis_sync::Passive;

fn main() {
    let passive = unsafe { Passive::new_unchecked() };
    std::thread::spawn(move || drop(passive));
}
