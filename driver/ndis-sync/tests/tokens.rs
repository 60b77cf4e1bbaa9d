//! IRQL tokens and their host-model checks.
#![cfg(not(loom))]

mod common;

use ndis_sync::stack_pin_init;

use common::passive;
use ndis_sync::host::{self, at_dispatch, at_irql};
use ndis_sync::{CallbackIrql, Dispatch, MaybeDispatch, Passive, APC_LEVEL, DISPATCH_LEVEL};

#[test]
fn tokens_are_zero_sized() {
    assert_eq!(core::mem::size_of::<Passive>(), 0);
    assert_eq!(core::mem::size_of::<Dispatch>(), 0);
    assert_eq!(core::mem::size_of::<MaybeDispatch>(), 0);
}

#[test]
fn dispatch_flag_set_gives_a_dispatch_token() {
    // SAFETY: at_dispatch runs the closure at DISPATCH_LEVEL, as the flag says.
    let irql = at_dispatch(|_| unsafe { CallbackIrql::with(true, |irql| irql.is_dispatch()) });
    assert!(irql);
}

#[test]
fn dispatch_flag_clear_at_dispatch_gives_an_unknown_token() {
    // SAFETY: a clear flag only says "<= DISPATCH", which holds here.
    let unknown =
        at_dispatch(|_| unsafe { CallbackIrql::with(false, |irql| matches!(irql, CallbackIrql::Unknown(_))) });
    assert!(unknown);
}

#[test]
#[should_panic(expected = "PassiveTokenNotAtPassive")]
fn passive_token_at_dispatch_is_reported() {
    at_dispatch(|_| {
        let _token = passive();
    });
}

#[test]
#[should_panic(expected = "PassiveTokenNotAtPassive")]
fn passive_token_at_apc_is_reported() {
    at_irql(APC_LEVEL, || {
        let _token = passive();
    });
}

#[test]
#[should_panic(expected = "DispatchTokenNotAtDispatch")]
fn dispatch_token_at_passive_is_reported() {
    // SAFETY: deliberately wrong: the model must report it.
    let _token = unsafe { Dispatch::new_unchecked() };
}

#[test]
#[should_panic(expected = "DispatchTokenNotAtDispatch")]
fn dispatch_flag_set_at_passive_is_reported() {
    // SAFETY: deliberately wrong: the model must report it.
    unsafe { CallbackIrql::with(true, |_| ()) };
}

#[test]
#[should_panic(expected = "CallbackTokenInsideLock")]
fn second_callback_token_inside_a_held_lock_is_reported() {
    stack_pin_init!(let a = ndis_sync::SpinLock::new(1));
    stack_pin_init!(let b = ndis_sync::SpinLock::new(2));
    // SAFETY: flag clear, and a test thread runs at PASSIVE_LEVEL.
    unsafe {
        CallbackIrql::with(false, |irql| {
            let CallbackIrql::Unknown(maybe) = irql else { unreachable!() };
            let guard = a.lock(maybe);
            // SAFETY: deliberately wrong (a second token while `a` is held):
            // the model must report it.
            CallbackIrql::with(false, |again| {
                let CallbackIrql::Unknown(maybe) = again else { unreachable!() };
                let inner = b.lock(maybe);
                drop(guard); // would restore PASSIVE_LEVEL while `b` is held
                drop(inner);
            })
        })
    }
}

#[test]
#[should_panic(expected = "MaybeDispatchTokenAboveDispatch")]
fn maybe_dispatch_token_above_dispatch_is_reported() {
    at_irql(DISPATCH_LEVEL + 1, || {
        // SAFETY: deliberately wrong: the model must report it.
        let _token = unsafe { MaybeDispatch::new_unchecked() };
    });
}

#[test]
fn at_irql_restores_the_previous_irql_also_on_panic() {
    let result = std::panic::catch_unwind(|| at_irql(APC_LEVEL, || panic!("inside")));
    assert!(result.is_err());
    assert_eq!(host::current_irql(), ndis_sync::PASSIVE_LEVEL);
}

#[test]
#[should_panic(expected = "IrqlNotRaised")]
fn at_irql_cannot_lower() {
    at_dispatch(|_| at_irql(APC_LEVEL, || ()));
}
