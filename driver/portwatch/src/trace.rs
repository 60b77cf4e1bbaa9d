//! Debug output through `DbgPrintEx`, component `DPFLTR_IHVNETWORK_ID`.
//!
//! Levels follow the debug print filter: errors (0) always reach a
//! debugger; lifecycle events are INFO (3), shown once the
//! `Kd_IHVNETWORK_Mask` (or the `Debug Print Filter` registry value) enables
//! them. Nothing is printed per packet or per IOCTL.

/// Prints `"PortWatch: <format>\n"` at `level` with C varargs.
///
/// Arguments must be what the format's conversions expect (`%u`/`%x`: u32,
/// `%d`: i32, `%p`: a pointer); the format is checked by nothing but review.
macro_rules! trace {
    ($level:expr, $format:literal $(, $arg:expr)* $(,)?) => {{
        // SAFETY: DbgPrintEx may be called at any IRQL <= DIRQL; the format
        // is a NUL-terminated literal, and each argument matches its
        // conversion (the macro's contract).
        unsafe {
            ndis_sys::DbgPrintEx(
                ndis_sys::DPFLTR_IHVNETWORK_ID,
                $level,
                concat!("PortWatch: ", $format, "\n\0").as_ptr(),
                $($arg),*
            );
        }
    }};
}

pub(crate) use trace;
