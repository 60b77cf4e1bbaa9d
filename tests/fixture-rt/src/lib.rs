//! The runtime every test fixture driver links (`use fixture_rt as _;`):
//! what a `no_std` kernel cdylib needs besides its own code. The driver has
//! its own, with a global allocator, in `driver/portwatch/src/rt.rs`.
//!
//! Only built into kernel images (`x86_64-pc-windows-msvc`); on other hosts
//! the fixtures use std and this crate is empty.
#![no_std]

/// Bug check code of a panic in a fixture driver ("FXPA").
pub const PANIC_BUGCHECK: u32 = 0x4658_5041;

#[cfg(target_os = "windows")]
mod kernel {
    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let line = info.location().map_or(0, |l| l.line());
        // SAFETY: KeBugCheckEx may be called at any IRQL and never returns.
        unsafe { ndis_sys::KeBugCheckEx(super::PANIC_BUGCHECK, line as usize, 0, 0, 0) }
    }

    /// The MSVC ABI's floating-point marker (core references it).
    #[no_mangle]
    #[used]
    pub static _fltused: i32 = 0;

    // LLVM lowers copies and fills to these; ntoskrnl.exe exports them.
    // Never called from Rust, hence dead_code.
    #[allow(dead_code)]
    #[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
    extern "C" {
        fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
        fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8;
        fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
        fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32;
    }
}
