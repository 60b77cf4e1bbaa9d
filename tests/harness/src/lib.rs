//! PortWatch harness: loads the real, cross-compiled `portwatch.sys` into a
//! Linux process and runs it natively against a Rust model of the ntoskrnl,
//! NDIS and I/O-manager functions it imports, with Driver Verifier's checks
//! built into that model.
//!
//! Runtime layers (bottom up):
//! * [`loader`]: maps the PE image (sections with their protections, base
//!   relocations, imports bound by DLL and name, export table).
//! * [`stack`]: runs every call into the driver on its own small, guarded
//!   stack; catches stack overflows, faults, hangs and verifier stops there.
//! * [`irql`], [`locks`], [`wait`], [`kmutex`], [`registry`], [`pool`], [`kernel`], [`cancel`], [`time`]: the modelled
//!   kernel state and the `extern "win64"` functions the driver imports.
//! * [`frames`], [`frame_oracle`]: test frames, and an independent decoder
//!   the driver's frame classifier is checked against.
//! * [`guarded`]: buffers lent to the driver (IRP system buffers, MDL data)
//!   with a guard page after them.
//! * [`verifier`]: violations ("bug checks"), options and the session state.
//! * [`imports`]: the registry of every modelled import.
//!
//! # Sessions
//! All verifier state is process-global. A test takes
//! [`verifier::Session::begin`], which serialises sessions behind a global
//! mutex and resets the state; dropping it ends the session.
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

pub mod cancel;
pub mod frame_oracle;
pub mod frames;
pub mod guarded;
pub mod imports;
pub mod io;
pub mod irql;
pub mod kernel;
pub mod kmutex;
pub mod lent;
pub mod loader;
pub mod locks;
pub mod nbl;
pub mod ndis;
pub mod pool;
pub mod processor;
pub mod registry;
pub mod session;
pub mod stack;
pub(crate) mod static_tls;
pub mod time;
pub mod verifier;
pub mod wait;
