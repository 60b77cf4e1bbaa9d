// Tokens are forged only in unsafe code.
use ndis_sync::Passive;

fn main() {
    let _ = Passive::new_unchecked();
}
