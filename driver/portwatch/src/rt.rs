//! Kernel runtime of the Linux-built driver: the global allocator (non-paged
//! pool), the panic handler (a bug check), and the symbols LLVM expects from
//! a C runtime. The `wdk` build replaces the allocator and panic handler with
//! windows-drivers-rs's (see `wdk.rs`).

#[cfg(not(feature = "wdk"))]
mod alloc_and_panic {
    use core::alloc::{GlobalAlloc, Layout};

    use ndis_sys::{ExAllocatePool2, ExFreePoolWithTag, KeBugCheckEx, POOL_FLAG_NON_PAGED};

    /// Pool tag of every allocation: shows as "PwPw" in `!poolused`.
    pub const POOL_TAG: u32 = u32::from_le_bytes(*b"PwPw");

    /// Bug check code of a Rust panic in the driver (a driver-defined code).
    pub const PANIC_BUGCHECK: u32 = 0x5057_5041; // "PWPA"

    /// Pool allocations are 16-byte aligned on x64; larger alignments are
    /// refused (the driver has none).
    const POOL_ALIGNMENT: usize = 16;

    struct NonPagedPool;

    // SAFETY: ExAllocatePool2 returns NULL or a fresh non-paged block of at
    // least `size` bytes aligned to 16 on x64 (larger alignments are refused
    // below); ExFreePoolWithTag frees exactly such a block with the same tag.
    unsafe impl GlobalAlloc for NonPagedPool {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() > POOL_ALIGNMENT {
                return core::ptr::null_mut();
            }
            // SAFETY: any size is valid (GlobalAlloc never asks for 0); the
            // caller runs at <= DISPATCH_LEVEL, as non-paged allocation needs.
            unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, layout.size(), POOL_TAG).cast() }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            // SAFETY: `ptr` came from `alloc` above, with the same tag.
            unsafe { ExFreePoolWithTag(ptr.cast(), POOL_TAG) }
        }
    }

    #[global_allocator]
    static GLOBAL: NonPagedPool = NonPagedPool;

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let line = info.location().map_or(0, |l| l.line());
        // SAFETY: KeBugCheckEx may be called at any IRQL and never returns.
        unsafe { KeBugCheckEx(PANIC_BUGCHECK, line as usize, 0, 0, 0) }
    }
}

/// The MSVC ABI's marker that floating point is used (the driver uses none,
/// but core's formatting code references it). wdk-sys defines its own.
#[cfg(not(feature = "wdk"))]
#[no_mangle]
#[used]
pub static _fltused: i32 = 0;

// LLVM lowers copies and fills to these C functions; ntoskrnl.exe exports
// them on x64, so the driver imports them instead of carrying its own.
// Never called from Rust (hence dead_code); declaring them makes the linker
// resolve LLVM's calls to the ntoskrnl.exe exports.
#[allow(dead_code)]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "C" {
    fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8;
    fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32;
}
