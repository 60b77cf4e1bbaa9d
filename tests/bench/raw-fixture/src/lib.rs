//! bench-fixture: a driver built exactly like `portwatch.sys` whose exports
//! the benchmarks disassemble and run.
//!
//! * `raw_*`: lock/unlock sequences written with hand-written raw FFI calls
//!   (`NdisAcquireSpinLock`, `NdisAcquireRWLockRead` with a stack
//!   `LOCK_STATE_EX`, `ExAcquireRundownProtection`, ...).
//! * `guard_*`: the very same sequences through the `ndis-sync` guards. The
//!   guard-overhead test checks that each `guard_*` export calls the same
//!   imports in the same order as its `raw_*` twin and nothing else.
//!
//! * `control_*`: raw sequences with something a guard must not add (a
//!   panic path on a spin lock, a holder count or a second check on an RW
//!   lock): the check must reject each of them.
//!
//! `DriverEntry` only succeeds: the exports are disassembled, not run.
#![cfg_attr(target_os = "windows", no_std)]

#[cfg(target_os = "windows")]
mod controls;
#[cfg(target_os = "windows")]
mod entry;
#[cfg(target_os = "windows")]
mod guarded;
#[cfg(target_os = "windows")]
mod raw;
#[cfg(target_os = "windows")]
mod wait_guarded;
#[cfg(target_os = "windows")]
mod wait_raw;
#[cfg(target_os = "windows")]
use fixture_rt as _;
