//! The windows-drivers-rs runtime of the Windows build (`wdk` feature).
//!
//! Only the allocator and the panic handler differ from the Linux build; all
//! driver logic is shared. wdk-alloc allocates from non-paged pool with
//! `ExAllocatePool2`, and wdk-panic's handler bug-checks with `KeBugCheckEx`,
//! as the Linux build's own runtime does.

/// Kernel allocator of the Windows build: non-paged pool.
#[global_allocator]
static GLOBAL: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

// Linked only for its `#[panic_handler]`.
use wdk_panic as _;
