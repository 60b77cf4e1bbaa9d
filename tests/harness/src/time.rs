//! Time: `KeQueryPerformanceCounter`.
//!
//! [R:KeQueryPerformanceCounter] (learn.microsoft.com, wdm.h
//! KeQueryPerformanceCounter): callable at any IRQL; returns the counter
//! and, when `PerformanceFrequency` is not NULL, writes its frequency in
//! ticks per second. The counter is monotonic and system-wide. The model:
//! a 10 MHz count (the frequency Windows 10 and later report on most
//! machines) of the time since the process first asked, from the host's
//! monotonic clock, so values are comparable across threads and never go
//! back. No verifier rule applies (any IRQL, no resource).

use std::sync::OnceLock;
use std::time::Instant;

use crate::imports::Import;
use crate::stack::on_host;

/// Ticks per second of the modelled counter.
pub const PERFORMANCE_FREQUENCY: i64 = 10_000_000;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The counter now, in ticks of [`PERFORMANCE_FREQUENCY`].
pub fn performance_counter() -> i64 {
    let ticks = epoch().elapsed().as_nanos() / 100;
    // 2^63 ticks of 100 ns are 29,000 years.
    i64::try_from(ticks).unwrap_or(i64::MAX)
}

/// `KeQueryPerformanceCounter(PLARGE_INTEGER PerformanceFrequency)`.
extern "win64" fn ke_query_performance_counter(frequency: *mut i64) -> i64 {
    on_host(|| {
        if !frequency.is_null() {
            // SAFETY: the driver passes NULL or a writable LARGE_INTEGER.
            unsafe { frequency.write(PERFORMANCE_FREQUENCY) };
        }
        performance_counter()
    })
}

/// The time functions the model binds.
pub(crate) fn imports() -> Vec<Import> {
    vec![Import::hal("KeQueryPerformanceCounter", ke_query_performance_counter as *const () as usize)]
}
