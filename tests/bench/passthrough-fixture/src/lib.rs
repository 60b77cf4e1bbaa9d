//! passthrough-fixture: the data-path baseline. `DriverEntry` registers a
//! filter that forwards every NBL untouched (completing sends and
//! returning receives while paused, as NDIS requires); PortWatch's cost per
//! packet is measured against it. Raw FFI only, so it does not change when
//! the guards do.
#![cfg_attr(target_os = "windows", no_std)]

#[cfg(target_os = "windows")]
mod passthrough;
#[cfg(target_os = "windows")]
use fixture_rt as _;
