//! `portwatch.exe`, PortWatch's one Windows command-line tool: install and
//! uninstall the filter, Driver Verifier on and off, the HLK-style stress
//! scenarios against the installed driver (or, on x86_64 Linux, against
//! the real `portwatch.sys` in the harness), status, manual IOCTLs and live
//! counters.
//!
//! Everything that can be is plain, portable code: the command line
//! ([`cli`]), the argument vectors of every external tool ([`commands`]),
//! the IOCTL-level operations over any [`portwatch_scenarios::Target`]
//! ([`device`]), the scheduling of `watch`'s pending reads ([`reads`]).
//! Only elevation, the first open of `\\.\PortWatch`, Ctrl+C and the
//! overlapped I/O under [`reads::ReadQueue`] are Windows-specific (a small
//! `cfg(windows)` module).

pub mod cli;
pub mod commands;
pub mod device;
pub mod exit;
pub mod ops;
pub mod reads;

#[cfg(windows)]
mod win;

pub use exit::Failure;
