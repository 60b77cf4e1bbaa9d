// Zw* functions are PASSIVE_LEVEL only (IrqlZwPassive): a spin lock taken
// inside a PassiveMutex lends a Dispatch token, which is not AtPassive.
use ndis_sync::{AtPassive, Passive, PassiveMutex, SpinLock};

fn zw_set_value_key(_irql: &impl AtPassive) {}

fn main() {
    ndis_sync::stack_pin_init!(let mutex = PassiveMutex::in_place(0));
    ndis_sync::stack_pin_init!(let spin = SpinLock::new(0));
    let mut t = unsafe { Passive::new_unchecked() };
    let mut guard = mutex.lock(&mut t);
    zw_set_value_key(guard.critical()); // fine: PASSIVE_LEVEL
    let mut inner = spin.lock(guard.critical());
    zw_set_value_key(inner.dispatch()); // DISPATCH_LEVEL: refused
}
