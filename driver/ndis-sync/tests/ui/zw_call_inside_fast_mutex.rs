// A fast mutex raises to APC_LEVEL: the IrqlZwPassive page's own example of
// the violation. Its Apc token is not AtPassive.
use ndis_sync::{AtPassive, Mutex, Passive};

fn zw_close(_irql: &impl AtPassive) {}

fn main() {
    ndis_sync::stack_pin_init!(let fast = Mutex::in_place(0));
    let mut t = unsafe { Passive::new_unchecked() };
    let mut guard = fast.lock(&mut t);
    zw_close(guard.apc());
}
