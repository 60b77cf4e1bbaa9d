//! PortWatch benchmarks: what the safe guards and the data path cost, read
//! from the built images and measured through the harness.
//!
//! * [`guards`]: each `ndis-sync` guard sequence against the same sequence
//!   written with raw FFI, from the disassembly of the fixture driver;
//!   [`reentry`] is what an `RwLock` guard may add (its re-entry check),
//!   [`panic_paths`] separates the code that bug-checks from the code that
//!   runs.
//! * [`handlers`]: the imports the data-path handlers of `portwatch.sys`
//!   can reach, and every store and locked instruction on that path.
//! * [`retire_cost`]: the operating system's cost of the harness's NBL
//!   retirement alone, with 1 and 2 threads.
//!
//! The images are located by [`artifacts`]; [`pe`] and [`disasm`] read them.

pub mod artifacts;
pub mod callgrind;
pub mod disasm;
pub mod guards;
pub mod handlers;
pub mod panic_paths;
pub mod pe;
pub mod percpu;
pub mod profile;
pub mod reentry;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod retire_cost;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod run;
#[cfg(target_arch = "x86_64")]
pub mod valgrind;
