//! Per-thread modelled IRQL.
//!
//! Every host thread that runs driver code has its own IRQL, as a processor
//! would; it starts at PASSIVE_LEVEL. Raising and lowering are checked like
//! `KfRaiseIrql`/`KeLowerIrql` under Driver Verifier, and [`require`] applies
//! the IRQL rule of a modelled function. Linux may still preempt a thread
//! "at DISPATCH_LEVEL", which is why every wait loop in the model yields.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::static_tls;
use crate::verifier::{self, codes, Violation};

/// `PASSIVE_LEVEL`.
pub const PASSIVE: u8 = 0;
/// `APC_LEVEL`.
pub const APC: u8 = 1;
/// `DISPATCH_LEVEL`.
pub const DISPATCH: u8 = 2;

static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

/// The calling thread's modelled IRQL.
#[inline]
pub fn current() -> u8 {
    static_tls::irql()
}

/// Sets the calling thread's IRQL without any check (the harness uses it to
/// enter callbacks at the IRQL NDIS or the I/O manager would use). Every
/// raise to DISPATCH_LEVEL or above trims pageable memory, as Driver
/// Verifier's Force IRQL checking does (see `crate::pool`, paged pool).
#[inline]
pub fn set(irql: u8) {
    let old = static_tls::irql();
    static_tls::set_irql(irql);
    if irql >= DISPATCH && old < DISPATCH {
        crate::pool::trim_paged();
    }
}

/// Raises to `to` and returns the previous IRQL; raising to a lower level is
/// a violation (0xC4/0x30).
#[inline]
pub fn raise(to: u8) -> u8 {
    let old = current();
    if to < old {
        raised_below(old, to);
    }
    set(to);
    old
}

#[cold]
#[inline(never)]
fn raised_below(old: u8, to: u8) -> ! {
    verifier::violation(Violation::new(
        "IRQL raised to a lower level",
        codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [codes::C4_RAISE_IRQL_INVALID, u64::from(old), u64::from(to), 0],
        format!("raise from {} to {}", name(old), name(to)),
    ))
}

/// Lowers to `to`; lowering to a higher level is a violation (0xC4/0x31).
#[inline]
pub fn lower(to: u8) {
    let old = current();
    if to > old {
        lowered_above(old, to);
    }
    set(to);
}

#[cold]
#[inline(never)]
fn lowered_above(old: u8, to: u8) -> ! {
    verifier::violation(Violation::new(
        "IRQL lowered to a higher level",
        codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [codes::C4_LOWER_IRQL_INVALID, u64::from(old), u64::from(to), 0],
        format!("lower from {} to {}", name(old), name(to)),
    ))
}

/// Applies the IRQL rule of `function`: it may only be called at an IRQL in
/// `min..=max`. Outside it the verdict is Driver Verifier's "kernel API
/// called at the incorrect IRQL" (0xC4/0xE5, parameter 2 the current IRQL).
#[inline]
pub fn require(function: &str, min: u8, max: u8) {
    let now = current();
    if now > max || now < min {
        wrong_irql(function, now, min, max);
    }
}

#[cold]
#[inline(never)]
fn wrong_irql(function: &str, now: u8, min: u8, max: u8) -> ! {
    let rule =
        if now > max { "function called above its maximum IRQL" } else { "function called below its minimum IRQL" };
    verifier::violation(Violation::c4(
        rule,
        codes::C4_KERNEL_API_WRONG_IRQL,
        u64::from(now),
        u64::from(min),
        u64::from(max),
        format!("{function} requires {}..={}, called at {}", name(min), name(max), name(now)),
    ));
}

/// A readable IRQL name.
pub fn name(irql: u8) -> String {
    match irql {
        PASSIVE => "PASSIVE_LEVEL".into(),
        APC => "APC_LEVEL".into(),
        DISPATCH => "DISPATCH_LEVEL".into(),
        other => format!("IRQL {other}"),
    }
}

/// A small, stable identifier of the calling thread (the model's notion of
/// "processor" for lock ownership). Never 0.
#[inline]
pub fn thread_id() -> u64 {
    match static_tls::thread_id() {
        0 => new_thread_id(),
        id => id,
    }
}

/// The calling thread's first [`thread_id`]: numbered now (out of line:
/// once per thread).
#[cold]
#[inline(never)]
fn new_thread_id() -> u64 {
    let id = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
    static_tls::set_thread_id(id);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_returns_old_and_lower_restores() {
        set(PASSIVE);
        assert_eq!(raise(DISPATCH), PASSIVE);
        assert_eq!(current(), DISPATCH);
        lower(PASSIVE);
        assert_eq!(current(), PASSIVE);
    }

    #[test]
    fn irql_is_per_thread() {
        set(DISPATCH);
        let other = std::thread::spawn(current).join().unwrap();
        assert_eq!(other, PASSIVE);
        set(PASSIVE);
    }

    #[test]
    fn thread_ids_differ() {
        let mine = thread_id();
        let theirs = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(mine, theirs);
        assert_ne!(mine, 0);
    }
}
