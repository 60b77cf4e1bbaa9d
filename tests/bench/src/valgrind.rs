//! Callgrind client requests (`valgrind/callgrind.h`), so a run under
//! `valgrind --tool=callgrind` counts only the measured loop. Outside
//! Valgrind the magic sequence is a no-op (four rotations of `rdi` by 128
//! bits in all, and `xchg rbx, rbx`).

/// `VG_USERREQ_TOOL_BASE('C','T')`.
const CALLGRIND_BASE: u64 = ((b'C' as u64) << 24) | ((b'T' as u64) << 16);
/// `CALLGRIND_DUMP_STATS_AT(label)`.
const DUMP_STATS_AT: u64 = CALLGRIND_BASE + 3;
/// `CALLGRIND_ZERO_STATS`.
const ZERO_STATS: u64 = CALLGRIND_BASE + 1;

fn client_request(request: u64, arg1: u64) -> u64 {
    let args: [u64; 6] = [request, arg1, 0, 0, 0, 0];
    let mut result: u64 = 0;
    // SAFETY: Valgrind's documented amd64 client-request sequence: it only
    // reads `args` (through rax) and writes rdx; natively it changes nothing.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3", "rol rdi, 13", "rol rdi, 61", "rol rdi, 51", "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            out("rdi") _,
            options(nostack, preserves_flags),
        );
    }
    result
}

/// Zeroes callgrind's counters.
pub fn zero_stats() {
    client_request(ZERO_STATS, 0);
}

/// Writes callgrind's counters since the last zero to a new dump labelled
/// `label` (its `desc: Trigger:` line).
pub fn dump_stats_at(label: &str) {
    let c = std::ffi::CString::new(label).expect("label without NUL");
    client_request(DUMP_STATS_AT, c.as_ptr() as u64);
}
