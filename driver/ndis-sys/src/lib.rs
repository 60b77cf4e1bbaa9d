//! Raw FFI for PortWatch, an NDIS 6.30 lightweight filter driver.
//!
//! * Kernel base types (IRP, FILE_OBJECT, DEVICE_OBJECT, EX_RUNDOWN_REF, ...)
//!   are re-exported from `windows-sys`, which Microsoft generates from its own
//!   metadata and which compiles on every host.
//! * The NDIS 6 LWF subset is written by hand (windows-sys has no NDIS filter
//!   APIs, wdk-sys has no ndis.h). Every hand-written struct carries `const`
//!   assertions of its x64 size and field offsets, with numbers taken from an
//!   independent source named next to them, never from these definitions.
//!   The `windows-sys` kernel types the driver touches get the same checks.
//! * Kernel *functions* are declared here against `ntoskrnl.exe` and
//!   `ndis.sys` (raw-dylib, `+verbatim`), only when building for Windows.
//!   windows-sys declares many Wdk functions against `ntdll.dll`, which a
//!   driver must never import, so none of its functions are used. The test
//!   `tests/imports.rs` checks every declared name against the x64 import
//!   libraries of the module it is imported from.
//!
//! Layouts are those of x64 (the only target of the driver and of the
//! harness that runs it); the layout assertions fail to compile elsewhere.
//!
//! Modules, all re-exported at the crate root:
//! [`kernel`] (base types, layout checks of the windows-sys types),
//! [`status`] (NTSTATUS / NDIS_STATUS codes), [`object`] (NDIS_OBJECT_HEADER),
//! [`net`] (interface types), [`filter`] (filter registration and callbacks),
//! [`nbl`] (NET_BUFFER_LIST / NET_BUFFER), [`device`] (control device, IRPs),
//! [`sync`] (locks and rundown), [`wait`] (fast mutex, mutex object, semaphore),
//! [`registry`] (`Zw*Key`), [`functions`] (the other kernel imports).
#![no_std]
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals, clippy::upper_case_acronyms)]

pub mod device;
pub mod filter;
pub mod functions;
pub mod kernel;
pub mod nbl;
pub mod net;
pub mod object;
pub mod registry;
pub mod status;
pub mod sync;
pub mod wait;

pub use device::*;
pub use filter::*;
pub use functions::*;
pub use kernel::*;
pub use nbl::*;
pub use net::*;
pub use object::*;
pub use registry::*;
pub use status::*;
pub use sync::*;
pub use wait::*;
