//! The harness's hottest per-thread words, in the executable's static TLS
//! block: each read or written with one `fs`-relative instruction that
//! calls nothing.
//!
//! A `thread_local!` in this library is reached through `__tls_get_addr`
//! (the general-dynamic model of position-independent code), a System V
//! call; a Windows-convention import that touches one must then save and
//! restore xmm6-15 on every call, which Windows' convention keeps and
//! System V's does not. The IRQL, the thread id and the processor seat are
//! read by imports the driver calls on every packet, so they live here
//! instead. The local-exec relocation (`@tpoff`) is for executables only:
//! linking the harness into a shared object fails at link time rather than
//! misbehaving. Every word is zero in a new thread; none has a destructor.

/// Defines one word: its symbol in `.tbss` and its load and store
/// functions. `$ptr` is the operand size, `$class` and `$modifier` the
/// register class and template modifier that name a register of that size.
macro_rules! static_tls_word {
    (
        $(#[$doc:meta])*
        $symbol:literal: $ty:ty, $size:literal, $ptr:literal, $class:ident, $modifier:literal;
        load $load:ident, store $store:ident
    ) => {
        std::arch::global_asm!(
            ".pushsection .tbss,\"awT\",@nobits",
            concat!(".balign ", $size),
            concat!(".globl ", $symbol),
            concat!(".hidden ", $symbol),
            concat!(".type ", $symbol, ",@tls_object"),
            concat!(".size ", $symbol, ",", $size),
            concat!($symbol, ":"),
            concat!(".zero ", $size),
            ".popsection",
        );

        $(#[$doc])*
        #[inline(always)]
        pub(crate) fn $load() -> $ty {
            let value: $ty;
            // SAFETY: reads the calling thread's own word, defined above in
            // the static TLS block (local-exec: at a fixed offset from the
            // thread pointer in every thread of the executable).
            unsafe {
                std::arch::asm!(
                    concat!("mov {0", $modifier, "}, ", $ptr, " ptr fs:[", $symbol, "@tpoff]"),
                    out($class) value,
                    options(nostack, readonly, preserves_flags)
                );
            }
            value
        }

        #[doc = concat!("Sets the word [`", stringify!($load), "`] reads.")]
        #[inline(always)]
        pub(crate) fn $store(value: $ty) {
            // SAFETY: writes the calling thread's own word (see the load);
            // no other thread reaches it.
            unsafe {
                std::arch::asm!(
                    concat!("mov ", $ptr, " ptr fs:[", $symbol, "@tpoff], {0", $modifier, "}"),
                    in($class) value,
                    options(nostack, preserves_flags)
                );
            }
        }
    };
}

static_tls_word! {
    /// The thread's modelled IRQL (see `crate::irql`).
    "pw_harness_irql": u8, 1, "byte", reg_byte, "";
    load irql, store set_irql
}

static_tls_word! {
    /// The thread's id, 0 until it is numbered (see `crate::irql::thread_id`).
    "pw_harness_thread_id": u64, 8, "qword", reg, "";
    load thread_id, store set_thread_id
}

static_tls_word! {
    /// The thread's processor seat (see `crate::processor`).
    "pw_harness_seat": u32, 4, "dword", reg, ":e";
    load seat, store set_seat
}
