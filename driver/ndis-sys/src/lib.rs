//! Raw FFI for PortWatch, an NDIS 6.30 lightweight filter driver.
//!
//! * Kernel base types (IRP, FILE_OBJECT, DEVICE_OBJECT, EX_RUNDOWN_REF, ...)
//!   are re-exported from `windows-sys`, which Microsoft generates from its own
//!   metadata and which compiles on every host.
//! * The NDIS 6 LWF subset is written by hand (windows-sys has no NDIS filter
//!   APIs, wdk-sys has no ndis.h). Every hand-written struct carries `const`
//!   assertions of its x64 size and field offsets, with numbers taken from an
//!   independent source named next to them, never from these definitions.
//! * Kernel *functions* are declared here against `ntoskrnl.exe` and
//!   `ndis.sys` (raw-dylib, `+verbatim`), only when building for Windows.
//!   windows-sys declares many Wdk functions against `ntdll.dll`, which a
//!   driver must never import, so none of its functions are used.
#![no_std]
#![allow(non_camel_case_types, non_snake_case, clippy::upper_case_acronyms)]

pub mod kernel;
pub mod sync;

pub use kernel::*;
pub use sync::*;
