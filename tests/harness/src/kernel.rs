//! Other ntoskrnl functions: debug output (`DbgPrint`, `DbgPrintEx`),
//! `KeBugCheckEx`, `KeGetCurrentIrql` and the memory functions LLVM emits
//! calls to (`memcpy`, `memset`, `memmove`, `memcmp`).
//!
//! `DbgPrint` and `DbgPrintEx` are variadic. The Windows x64 convention
//! passes the first four arguments in rcx, rdx, r8, r9 and reserves home
//! space for them right above the return address, with the rest following
//! on the stack; a tiny assembly trampoline spills the four registers into
//! that home space, so all arguments lie contiguous in memory, and hands a
//! pointer to them to a printf-style formatter ([`format_debug`]).
//! The memory functions are plain loops: they run on the driver's small
//! stack and must stay tiny.

use std::sync::{Mutex, PoisonError};

use crate::imports::Import;
use crate::irql;
use crate::stack::on_host;
use crate::verifier::{self, Violation};

static OUTPUT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Session reset: forgets the recorded debug output and frees the cancel
/// spin lock.
pub(crate) fn reset() {
    OUTPUT.lock().unwrap_or_else(PoisonError::into_inner).clear();
    crate::cancel::reset();
}

/// Every line the driver printed with DbgPrint/DbgPrintEx this session.
pub fn debug_output() -> Vec<String> {
    OUTPUT.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

std::arch::global_asm!(
    ".text",
    ".globl pw_harness_dbgprint",
    ".type pw_harness_dbgprint,@function",
    "pw_harness_dbgprint:",
    "    mov [rsp + 8], rcx",
    "    mov [rsp + 16], rdx",
    "    mov [rsp + 24], r8",
    "    mov [rsp + 32], r9",
    "    sub rsp, 40",
    "    lea rcx, [rsp + 48]",
    "    xor edx, edx",
    "    call {imp}",
    "    add rsp, 40",
    "    ret",
    ".size pw_harness_dbgprint, . - pw_harness_dbgprint",
    ".globl pw_harness_dbgprintex",
    ".type pw_harness_dbgprintex,@function",
    "pw_harness_dbgprintex:",
    "    mov [rsp + 8], rcx",
    "    mov [rsp + 16], rdx",
    "    mov [rsp + 24], r8",
    "    mov [rsp + 32], r9",
    "    sub rsp, 40",
    "    lea rcx, [rsp + 48]",
    "    mov edx, 2",
    "    call {imp}",
    "    add rsp, 40",
    "    ret",
    ".size pw_harness_dbgprintex, . - pw_harness_dbgprintex",
    imp = sym debug_print,
);

extern "C" {
    fn pw_harness_dbgprint();
    fn pw_harness_dbgprintex();
}

/// Called by the trampolines with the contiguous arguments; `skip` = 2 for
/// DbgPrintEx (ComponentId, Level precede the format).
extern "win64" fn debug_print(args: *const u64, skip: u32) -> i32 {
    on_host(|| {
        // SAFETY: the trampoline passes the spilled home space followed by
        // the caller's stack arguments; the format string is the driver's.
        let line = unsafe { format_debug(args.add(skip as usize)) };
        if verifier::config().echo_debug_output {
            eprint!("[driver] {line}");
        }
        OUTPUT.lock().unwrap_or_else(PoisonError::into_inner).push(line);
        0
    })
}

/// Formats a DbgPrint call: `args[0]` is the format string, the variadic
/// arguments follow, one 8-byte slot each. Supports `%s %S %hs %ls %ws %Z
/// %wZ %c %d %i %u %x %X %o %p %%` with flags `-0+ #`, width and precision
/// (digits or `*`) and the sizes `h hh l ll w I I32 I64 z` (`long` is 32
/// bits on Windows).
///
/// # Safety
/// `args` must point to the format string's address followed by as many
/// readable argument slots as the format consumes; string arguments must be
/// valid NUL-terminated strings (or NULL) or valid (ANSI/UNICODE)_STRINGs.
pub unsafe fn format_debug(args: *const u64) -> String {
    let mut a = Args { next: args };
    // SAFETY: the first slot is the format string, per the contract.
    let fmt = unsafe { c_str(a.next_u64() as *const u8) };
    let mut out = String::new();
    let mut i = 0;
    while i < fmt.len() {
        if fmt[i] != b'%' {
            out.push(fmt[i] as char);
            i += 1;
            continue;
        }
        let (spec, used) = Spec::parse(&fmt[i + 1..]);
        i += 1 + used;
        // SAFETY: the contract covers every slot the format consumes.
        unsafe { spec.render(&mut a, &mut out) };
    }
    out
}

struct Args {
    next: *const u64,
}

impl Args {
    /// # Safety
    /// The next slot must be readable.
    unsafe fn next_u64(&mut self) -> u64 {
        // SAFETY: per the contract.
        let v = unsafe { self.next.read_unaligned() };
        // SAFETY: stays within (or one past) the argument area.
        self.next = unsafe { self.next.add(1) };
        v
    }
}

#[derive(Default)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    alt: bool,
    width: Option<usize>,
    width_arg: bool,
    precision: Option<usize>,
    precision_arg: bool,
    bits: u32,
    wide: bool,
    narrow: bool,
    conv: u8,
}

impl Spec {
    fn parse(s: &[u8]) -> (Self, usize) {
        let mut sp = Spec { bits: 32, ..Spec::default() };
        let mut i = 0;
        while let Some(&c) = s.get(i) {
            match c {
                b'-' => sp.left = true,
                b'0' => sp.zero = true,
                b'+' => sp.plus = true,
                b'#' => sp.alt = true,
                b' ' => {}
                _ => break,
            }
            i += 1;
        }
        if s.get(i) == Some(&b'*') {
            sp.width_arg = true;
            i += 1;
        } else {
            let (n, used) = digits(&s[i..]);
            sp.width = n;
            i += used;
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            if s.get(i) == Some(&b'*') {
                sp.precision_arg = true;
                i += 1;
            } else {
                let (n, used) = digits(&s[i..]);
                sp.precision = Some(n.unwrap_or(0));
                i += used;
            }
        }
        loop {
            let rest = &s[i.min(s.len())..];
            let (bits, wide, narrow, used) = match rest {
                [b'I', b'6', b'4', ..] => (64, false, false, 3),
                [b'I', b'3', b'2', ..] => (32, false, false, 3),
                [b'l', b'l', ..] | [b'h', b'h', ..] if rest[0] == b'h' => (8, false, true, 2),
                [b'l', b'l', ..] => (64, false, false, 2),
                [b'I', ..] | [b'z', ..] => (64, false, false, 1),
                [b'l', ..] => (32, true, false, 1),
                [b'w', ..] => (32, true, false, 1),
                [b'h', ..] => (16, false, true, 1),
                _ => break,
            };
            sp.bits = bits;
            sp.wide |= wide;
            sp.narrow |= narrow;
            i += used;
        }
        sp.conv = s.get(i).copied().unwrap_or(b'%');
        (sp, (i + 1).min(s.len()))
    }

    /// # Safety
    /// The argument slots this conversion consumes must be readable and
    /// hold what the conversion says.
    unsafe fn render(mut self, a: &mut Args, out: &mut String) {
        if self.width_arg {
            // SAFETY: per the contract.
            let w = unsafe { a.next_u64() } as i32;
            self.left |= w < 0;
            self.width = Some(w.unsigned_abs() as usize);
        }
        if self.precision_arg {
            // SAFETY: per the contract.
            self.precision = Some(unsafe { a.next_u64() } as i32).and_then(|p| usize::try_from(p).ok());
        }
        let body = match self.conv {
            b'%' => return out.push('%'),
            // SAFETY: per the contract.
            b'c' => char::from_u32(unsafe { a.next_u64() } as u32 & if self.wide { 0xFFFF } else { 0xFF })
                .unwrap_or('?')
                .to_string(),
            b'd' | b'i' => {
                // SAFETY: per the contract.
                let v = sign_extend(unsafe { a.next_u64() }, self.bits);
                let mut s = v.unsigned_abs().to_string();
                self.apply_precision(&mut s);
                let sign = if v < 0 {
                    "-"
                } else if self.plus {
                    "+"
                } else {
                    ""
                };
                return self.pad_number(sign, &s, out);
            }
            b'u' | b'x' | b'X' | b'o' => {
                // SAFETY: per the contract.
                let v = truncate(unsafe { a.next_u64() }, self.bits);
                let mut s = match self.conv {
                    b'u' => v.to_string(),
                    b'x' => format!("{v:x}"),
                    b'X' => format!("{v:X}"),
                    _ => format!("{v:o}"),
                };
                self.apply_precision(&mut s);
                let prefix = match (self.alt && v != 0, self.conv) {
                    (true, b'x') => "0x",
                    (true, b'X') => "0X",
                    (true, b'o') => "0",
                    _ => "",
                };
                return self.pad_number(prefix, &s, out);
            }
            // SAFETY: per the contract.
            b'p' => format!("{:016X}", unsafe { a.next_u64() }),
            b's' | b'S' => {
                let wide = if self.conv == b'S' { !self.narrow } else { self.wide };
                // SAFETY: per the contract.
                let p = unsafe { a.next_u64() } as usize;
                // SAFETY: per the contract: NULL or a NUL-terminated string.
                let s = unsafe {
                    if wide {
                        wide_str(p as *const u16)
                    } else {
                        ansi_str(p as *const u8)
                    }
                };
                self.truncate_str(s)
            }
            b'Z' => {
                // SAFETY: per the contract.
                let p = unsafe { a.next_u64() } as usize;
                // SAFETY: per the contract: NULL or a counted string.
                let s = unsafe { counted_str(p, self.wide) };
                self.truncate_str(s)
            }
            other => format!("%{}", other as char),
        };
        self.pad(&body, out);
    }

    fn apply_precision(&self, s: &mut String) {
        if let Some(p) = self.precision {
            while s.len() < p {
                s.insert(0, '0');
            }
        }
    }

    fn truncate_str(&self, s: String) -> String {
        match self.precision {
            Some(p) => s.chars().take(p).collect(),
            None => s,
        }
    }

    fn pad_number(&self, prefix: &str, digits: &str, out: &mut String) {
        let len = prefix.len() + digits.len();
        let width = self.width.unwrap_or(0);
        if self.zero && !self.left && self.precision.is_none() && width > len {
            out.push_str(prefix);
            out.extend(std::iter::repeat_n('0', width - len));
            out.push_str(digits);
        } else {
            self.pad(&format!("{prefix}{digits}"), out);
        }
    }

    fn pad(&self, body: &str, out: &mut String) {
        let fill = self.width.unwrap_or(0).saturating_sub(body.chars().count());
        if !self.left {
            out.extend(std::iter::repeat_n(' ', fill));
        }
        out.push_str(body);
        if self.left {
            out.extend(std::iter::repeat_n(' ', fill));
        }
    }
}

fn digits(s: &[u8]) -> (Option<usize>, usize) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let v = std::str::from_utf8(&s[..n]).ok().and_then(|d| d.parse().ok());
    (v, n)
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn truncate(v: u64, bits: u32) -> u64 {
    if bits == 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}

/// # Safety
/// `p` is NULL or a NUL-terminated byte string.
unsafe fn c_str<'a>(p: *const u8) -> &'a [u8] {
    if p.is_null() {
        return b"(null)";
    }
    // SAFETY: per the contract.
    unsafe { std::ffi::CStr::from_ptr(p.cast()) }.to_bytes()
}

/// # Safety
/// `p` is NULL or a NUL-terminated byte string.
unsafe fn ansi_str(p: *const u8) -> String {
    // SAFETY: per the contract.
    unsafe { c_str(p) }.iter().map(|&b| b as char).collect()
}

/// # Safety
/// `p` is NULL or a NUL-terminated UTF-16 string.
unsafe fn wide_str(p: *const u16) -> String {
    if p.is_null() {
        return "(null)".into();
    }
    let mut n = 0;
    // SAFETY: per the contract, every unit up to the NUL is readable.
    while unsafe { p.add(n).read_unaligned() } != 0 {
        n += 1;
    }
    // SAFETY: the n units just scanned.
    let units: Vec<u16> = (0..n).map(|i| unsafe { p.add(i).read_unaligned() }).collect();
    String::from_utf16_lossy(&units)
}

/// # Safety
/// `p` is NULL or points to a UNICODE_STRING (`wide`) or ANSI_STRING:
/// Length (bytes) at 0, Buffer at 8.
unsafe fn counted_str(p: usize, wide: bool) -> String {
    if p == 0 {
        return "(null)".into();
    }
    // SAFETY: per the contract.
    let (len, buf) =
        unsafe { ((p as *const u16).read_unaligned() as usize, ((p + 8) as *const usize).read_unaligned()) };
    if buf == 0 {
        return "(null)".into();
    }
    if wide {
        // SAFETY: Buffer holds Length bytes.
        let units: Vec<u16> = (0..len / 2).map(|i| unsafe { (buf as *const u16).add(i).read_unaligned() }).collect();
        String::from_utf16_lossy(&units)
    } else {
        // SAFETY: Buffer holds Length bytes.
        unsafe { std::slice::from_raw_parts(buf as *const u8, len) }.iter().map(|&b| b as char).collect()
    }
}

/// `KeBugCheckEx(BugCheckCode, P1, P2, P3, P4)`: the driver stops the run.
extern "win64" fn ke_bug_check_ex(code: u32, p1: u64, p2: u64, p3: u64, p4: u64) -> ! {
    on_host(|| -> () {
        verifier::violation(Violation::new(
            "KeBugCheckEx called by the driver",
            code,
            [p1, p2, p3, p4],
            format!("KeBugCheckEx({code:#x}, {p1:#x}, {p2:#x}, {p3:#x}, {p4:#x})"),
        ))
    });
    unreachable!("violation() does not return")
}

/// `KeGetCurrentThread()`: a stable, non-zero, per-thread address (any
/// IRQL), standing in for the thread's `KTHREAD`.
extern "win64" fn ke_get_current_thread() -> usize {
    thread_local! {
        static KTHREAD: u8 = const { 0 };
    }
    KTHREAD.with(|t| t as *const u8 as usize)
}

/// `KeGetCurrentIrql()`.
extern "win64" fn ke_get_current_irql() -> u8 {
    irql::current()
}

/// `memcpy`. A byte loop: runs on the driver's stack.
extern "win64" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the driver guarantees both ranges are valid for `n` bytes.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
    dst
}

/// `memmove`.
extern "win64" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the driver guarantees both ranges are valid for `n` bytes.
    unsafe { std::ptr::copy(src, dst, n) };
    dst
}

/// `memset`.
extern "win64" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the driver guarantees the range is valid for `n` bytes.
    unsafe { std::ptr::write_bytes(dst, c as u8, n) };
    dst
}

/// `memcmp`.
extern "win64" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the driver guarantees both ranges are valid for `n` bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// The ntoskrnl functions of this module.
pub(crate) fn imports() -> Vec<Import> {
    vec![
        Import::ntoskrnl("DbgPrint", pw_harness_dbgprint as *const () as usize),
        Import::ntoskrnl("DbgPrintEx", pw_harness_dbgprintex as *const () as usize),
        Import::ntoskrnl("KeBugCheckEx", ke_bug_check_ex as *const () as usize),
        Import::ntoskrnl("KeGetCurrentIrql", ke_get_current_irql as *const () as usize),
        Import::ntoskrnl("KeGetCurrentThread", ke_get_current_thread as *const () as usize),
        Import::ntoskrnl("memcpy", memcpy as *const () as usize),
        Import::ntoskrnl("memmove", memmove as *const () as usize),
        Import::ntoskrnl("memset", memset as *const () as usize),
        Import::ntoskrnl("memcmp", memcmp as *const () as usize),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(args: &[u64]) -> String {
        // SAFETY: the slices below hold exactly what their formats consume.
        unsafe { format_debug(args.as_ptr()) }
    }

    #[test]
    fn integers_widths_and_sizes() {
        let f = b"%d|%5u|%-4x|%08X|%ld|%lu|%lx|%I64x|%llu|%llx|%%|%c\0";
        let args = [
            f.as_ptr() as u64,
            (-5i64) as u64,
            42,
            0xab,
            0xbeef,
            u64::MAX,
            0xFFFF_FFFF,
            0x1_0000_0001,
            0x1234_5678_9abc,
            u64::MAX,
            0xdead,
            u64::from(b'Z'),
        ];
        assert_eq!(fmt(&args), "-5|   42|ab  |0000BEEF|-1|4294967295|1|123456789abc|18446744073709551615|dead|%|Z");
    }

    #[test]
    fn strings_and_pointers() {
        let f = b"%s %S %wZ %p %.3s\0";
        let wide: Vec<u16> = "wide\0".encode_utf16().collect();
        let us_buf: Vec<u16> = "ustr".encode_utf16().collect();
        let mut us = [0u8; 16];
        us[..2].copy_from_slice(&8u16.to_le_bytes());
        us[2..4].copy_from_slice(&8u16.to_le_bytes());
        us[8..].copy_from_slice(&(us_buf.as_ptr() as u64).to_le_bytes());
        let args = [
            f.as_ptr() as u64,
            c"ansi".as_ptr() as u64,
            wide.as_ptr() as u64,
            us.as_ptr() as u64,
            0x1234,
            c"abcdef".as_ptr() as u64,
        ];
        assert_eq!(fmt(&args), "ansi wide ustr 0000000000001234 abc");
    }

    #[test]
    fn variadic_trampoline_passes_stack_arguments() {
        let _s = crate::verifier::Session::begin(crate::verifier::Config::default());
        // SAFETY: called exactly as a driver would call DbgPrintEx.
        let f: extern "win64" fn(u32, u32, *const u8, u64, u64, u64, u64) -> i32 =
            unsafe { std::mem::transmute(pw_harness_dbgprintex as *const ()) };
        let r = f(77, 0, c"%u %u %u %u\n".as_ptr().cast(), 1, 2, 3, 4);
        assert_eq!(r, 0);
        assert_eq!(debug_output(), vec!["1 2 3 4\n".to_string()]);
    }
}
