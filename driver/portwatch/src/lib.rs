//! PortWatch: an NDIS 6.30 lightweight filter driver that counts traffic per
//! (protocol, port) for user-mode endpoints, with every lock taken through
//! the safe guards of `ndis-sync`.
//!
//! The crate is the driver (`portwatch.sys`, built for
//! `x86_64-pc-windows-msvc`) and, on other hosts, a library of its logic for
//! unit tests:
//!
//! | module | what | built for |
//! |---|---|---|
//! | [`parse`] | frame classification | all |
//! | [`ports`] | the port table | all |
//! | [`endpoint`] | per-handle state (FsContext) | all |
//! | [`events`] | the event stream: ring, pending reads | all |
//! | [`modules`] | filter modules and their list | all |
//! | [`globals`] | driver-wide state | all |
//! | [`registry`] | the port name's copy in the registry | all |
//! | [`ioctl`] | IOCTL decoding and replies | all |
//! | [`control`] | what each IOCTL does; cleanup | all |
//! | [`datapath`] | per-packet counting | all |
//! | [`version`] | the driver's version (Cargo's) | all |
//! | `entry`, `filter`, `device`, `irp`, `nbl`, `rt` | the NDIS/WDM glue | Windows |
#![cfg_attr(target_os = "windows", no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod control;
pub mod datapath;
pub mod endpoint;
pub mod events;
pub mod globals;
pub mod ioctl;
pub mod modules;
pub mod parse;
pub mod percpu;
pub mod pool;
pub mod ports;
pub mod registry;
pub mod version;

#[cfg(target_os = "windows")]
mod device;
#[cfg(target_os = "windows")]
mod entry;
#[cfg(target_os = "windows")]
mod filter;
#[cfg(target_os = "windows")]
mod irp;
#[cfg(target_os = "windows")]
mod nbl;
#[cfg(target_os = "windows")]
mod rt;
#[cfg(target_os = "windows")]
mod trace;
#[cfg(all(target_os = "windows", feature = "wdk"))]
mod wdk;
