//! HLK-style stress scenarios for PortWatch, written once against the small
//! [`Target`] trait and run against either
//!
//! * [`harness_target::HarnessTarget`] (Linux x86_64): the real, cross-built
//!   `portwatch.sys` loaded into this process by `portwatch-harness`, with
//!   Driver Verifier's checks, special pool and low-resources simulation; or
//! * `device_target::DeviceTarget` (Windows): the installed driver through
//!   `\\.\PortWatch`.
//!
//! The scenarios ([`scenarios::Scenario`]): 1 IOCTL storm, 2 data path storm
//! with an exact counting check, 3 lifecycle storm (1 and 2 while adapters
//! pause, restart, detach and attach; handles closed with IOCTLs in flight;
//! load/unload cycles), 4 seed-000 races, 5 the HLK LWF logo stress
//! ([`scenarios::lwf_logo`], the default of `portwatch.exe stress`: LSO-sized
//! sends, RESOURCES receives, pause/restart, media and reset status
//! indications and IOCTLs at once, then connectivity). Each ends by unloading the driver
//! and requires no verifier violation, no leaked pool, every NBL returned and
//! every IRP completed. [`lowres`] fails every allocation of a scenario
//! script in turn.
//!
//! ```no_run
//! # #[cfg(all(target_arch = "x86_64", target_os = "linux"))] {
//! use portwatch_scenarios::harness_target::{driver_path, HarnessConfig, HarnessTarget};
//! use portwatch_scenarios::{Params, Scenario};
//!
//! let target = HarnessTarget::load(HarnessConfig::new(&driver_path(), 2)).unwrap();
//! let summary = Scenario::DataPath.run(&target, &Params::ops(4, 10_000, 1));
//! assert!(summary.is_clean(), "{summary}");
//! # }
//! ```

pub mod client;
pub mod expect;
pub mod rng;
pub mod run;
pub mod scenarios;
pub mod target;

#[cfg(windows)]
pub mod device_target;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod fuzz_options;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod harness_target;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod lowres;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod resources;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod verdict;

pub use run::{Budget, Params, Summary};
pub use scenarios::Scenario;
pub use target::Target;
