//! What a no_std kernel cdylib needs from its runtime (as in portwatch):
//! a panic handler (a bug check), `_fltused`, and memcpy/memset from
//! ntoskrnl.exe.

/// Bug check code of a panic in the fixture.
const PANIC_BUGCHECK: u32 = 0x5042_4650; // "PFBP"

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: KeBugCheckEx may be called at any IRQL and never returns.
    unsafe { ndis_sys::KeBugCheckEx(PANIC_BUGCHECK, 0, 0, 0, 0) }
}

/// The MSVC marker that floating point is used.
#[no_mangle]
#[used]
pub static _fltused: i32 = 0;

#[allow(dead_code)]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "C" {
    fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
    fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8;
}
